/* Standard optimisation test functions on the unit cube, shared by the bkb
 * tests (tests/test_bkb.c) and the bkb bench (bench/bench_bkb_fns.c) so that
 * both optimise exactly the same functions. Header-only: static inline. */
#ifndef INK_TESTFNS_H
#define INK_TESTFNS_H

#include <math.h>

/* Branin on its usual box [-5, 10] x [0, 15], u in [0, 1]^2 (minimum
 * 0.397887). */
static inline double ink_branin(const double *u)
{
    double x1 = 15 * u[0] - 5, x2 = 15 * u[1];
    double a = x2 - 5.1 / (4 * M_PI * M_PI) * x1 * x1 + 5 / M_PI * x1 - 6;
    return a * a + 10 * (1 - 1 / (8 * M_PI)) * cos(x1) + 10;
}

/* Hartmann in d = 3..6 dimensions with the 6-D constants (d = 6: Hartmann-6,
 * maximum 3.32237), as the positive sum: negate it to minimise. */
static inline double ink_hartmann_sum(const double *u, int d)
{
    static const double al[4] = {1.0, 1.2, 3.0, 3.2};
    static const double a[4][6] = {{10, 3, 17, 3.5, 1.7, 8},
                                   {0.05, 10, 17, 0.1, 8, 14},
                                   {3, 3.5, 1.7, 10, 17, 8},
                                   {17, 8, 0.05, 10, 0.1, 14}};
    static const double p[4][6] = {{.1312, .1696, .5569, .0124, .8283, .5886},
                                   {.2329, .4135, .8307, .3736, .1004, .9991},
                                   {.2348, .1451, .3522, .2883, .3047, .6650},
                                   {.4047, .8828, .8732, .5743, .1091, .0381}};
    double s = 0;
    for (int i = 0; i < 4; i++) {
        double e = 0;
        for (int j = 0; j < d; j++) e += a[i][j] * (u[j] - p[i][j]) * (u[j] - p[i][j]);
        s += al[i] * exp(-e);
    }
    return s;
}

#endif
