/* operators/kernel.c: every kernel's block, pair and diagonal against a
 * brute-force pairwise formula written here; clipping and near-duplicates. */
#include <cblas.h>

#include "../operators/kernel.h"
#include "ink_test.h"

static double urand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffffff) / (double)0x1000000;
}

/* Brute force, straight from the definitions in docs/design.md#kernels. */
static double brute(int type, const double *x, const double *z, int d, double sigma,
                    const double *h, double c, int degree)
{
    double r2 = 0, l1 = 0, dot = 0;
    for (int i = 0; i < d; i++) {
        r2 += (x[i] - z[i]) * (x[i] - z[i]);
        l1 += fabs(x[i] - z[i]) / h[i];
        dot += x[i] * z[i];
    }
    double r = sqrt(r2);
    switch (type) {
    case INK_K_GAUSSIAN:
        return exp(-r2 / (2 * sigma * sigma));
    case INK_K_LAPLACIAN:
        return exp(-r / sigma);
    case INK_K_LAPLACIAN_L1: {
        double p = 1;
        for (int i = 0; i < d; i++) p *= exp(-fabs(x[i] - z[i]) / h[i]);
        (void)l1;
        return p;
    }
    case INK_K_MATERN32:
        return (1 + sqrt(3) * r / sigma) * exp(-sqrt(3) * r / sigma);
    case INK_K_MATERN52:
        return (1 + sqrt(5) * r / sigma + 5 * r2 / (3 * sigma * sigma)) * exp(-sqrt(5) * r / sigma);
    case INK_K_LINEAR:
        return dot + c;
    case INK_K_POLYNOMIAL:
        return pow(dot + c, degree);
    }
    return NAN;
}

enum { D = 5, NA = 37, NB = 23, LDO = 41 };

/* Points far from the origin (norm ~ 30) so that the norm formula cancels,
 * with exact duplicates and 1e-7 perturbations of Xa among Xb. */
static void make_points(double *Xa, double *Xb, double offset, unsigned seed)
{
    unsigned s = seed;
    for (int j = 0; j < NA * D; j++) Xa[j] = offset + 2 * urand(&s) - 1;
    for (int j = 0; j < NB * D; j++) Xb[j] = offset + 2 * urand(&s) - 1;
    for (int i = 0; i < D; i++) {
        Xb[0 * D + i] = Xa[3 * D + i];                  /* exact duplicate */
        Xb[1 * D + i] = Xa[5 * D + i] + 1e-7 * (i + 1); /* near duplicate */
        Xb[2 * D + i] = Xa[7 * D + i] + (i == 0 ? 1e-12 : 0);
    }
}

static void check_kernel(int type, double offset)
{
    struct ink_kernel_conf kc = {.set = true, .type = type, .sigma = 1.7, .c = 0.5, .degree = 3};
    double hv[D] = {0.5, 1, 1.5, 2, 2.5};
    kc.h.v = hv;
    kc.h.n = D;
    if (type == INK_K_LINEAR || type == INK_K_POLYNOMIAL) offset = 0; /* keep values modest */
    struct ink_kernel k;
    struct ink_err err = {0};
    REQUIRE(ink_kernel_init(&k, &kc, D, &err) == 0);
    double Xa[NA * D], Xb[NB * D], out[LDO * NB], work[NA + NB], diag[NA];
    make_points(Xa, Xb, offset, 1234u + type);
    for (int i = 0; i < LDO * NB; i++) out[i] = -99;
    ink_kernel_block(&k, Xa, NA, Xb, NB, out, LDO, work);
    double maxerr = 0;
    for (int j = 0; j < NB; j++) {
        for (int i = 0; i < NA; i++) {
            double b = brute(type, Xa + i * D, Xb + j * D, D, 1.7, hv, 0.5, 3);
            double e = fabs(out[i + j * LDO] - b) / fmax(1, fabs(b));
            if (e > maxerr) maxerr = e;
            CHECK_NEAR(ink_kernel_eval(&k, Xa + i * D, Xb + j * D), b, 1e-13 * fmax(1, fabs(b)));
        }
        for (int i = NA; i < LDO; i++) CHECK(out[i + j * LDO] == -99); /* padding untouched */
    }
    CHECK_MSG(maxerr <= 1e-12, "type %d offset %g: max rel err %.3g", type, offset, maxerr);
    /* The exact duplicate gives exactly k(x, x) for the stationary kernels. */
    if (type != INK_K_LINEAR && type != INK_K_POLYNOMIAL) CHECK(out[3 + 0 * LDO] == 1.0);

    /* A single column (the dgemv path) equals the block's column. Both carry
     * the norm formula's rounding: ~eps * (||x||^2 + ||z||^2) ~ 1e-12 here. */
    double col[NA];
    ink_kernel_block(&k, Xa, NA, Xb + 4 * D, 1, col, NA, work);
    for (int i = 0; i < NA; i++) CHECK_NEAR(col[i], out[i + 4 * LDO], 1e-12);

    /* Diagonal: exact, not through the block formula. */
    ink_kernel_diag(&k, Xa, NA, diag);
    for (int i = 0; i < NA; i++) {
        double b = brute(type, Xa + i * D, Xa + i * D, D, 1.7, hv, 0.5, 3);
        CHECK_NEAR(diag[i], b, 1e-14 * fmax(1, fabs(b)));
    }
    double kap = ink_kernel_kappa2(&k);
    if (type == INK_K_LINEAR || type == INK_K_POLYNOMIAL)
        CHECK(isnan(kap));
    else
        CHECK(kap == 1.0);
}

TEST(gaussian)
{
    check_kernel(INK_K_GAUSSIAN, 30);
}
TEST(laplacian)
{
    check_kernel(INK_K_LAPLACIAN, 30);
}
TEST(laplacian_l1)
{
    check_kernel(INK_K_LAPLACIAN_L1, 30);
}
TEST(matern32)
{
    check_kernel(INK_K_MATERN32, 30);
}
TEST(matern52)
{
    check_kernel(INK_K_MATERN52, 30);
}
TEST(linear)
{
    check_kernel(INK_K_LINEAR, 0);
}
TEST(polynomial)
{
    check_kernel(INK_K_POLYNOMIAL, 0);
}
TEST(gaussian_near_origin)
{
    check_kernel(INK_K_GAUSSIAN, 0);
}
TEST(laplacian_near_origin)
{
    check_kernel(INK_K_LAPLACIAN, 0);
}

/* The block of a set with itself: symmetric, unit diagonal, every entry in
 * [0, 1] (clipping: a negative squared distance would give exp(+) > 1). */
TEST(self_block_clipped)
{
    for (int type = INK_K_GAUSSIAN; type <= INK_K_MATERN52; type++) {
        struct ink_kernel_conf kc = {.set = true, .type = type, .sigma = 0.3};
        struct ink_kernel k;
        struct ink_err err = {0};
        REQUIRE(ink_kernel_init(&k, &kc, 3, &err) == 0);
        enum { N = 50 };
        double X[N * 3], K[N * N], work[2 * N];
        unsigned s = 99;
        for (int i = 0; i < N * 3; i++) X[i] = 1e4 + urand(&s); /* heavy cancellation */
        for (int i = 0; i < 3; i++) X[9 * 3 + i] = X[8 * 3 + i];
        ink_kernel_block(&k, X, N, X, N, K, N, work);
        for (int j = 0; j < N; j++) {
            CHECK(K[j + j * N] == 1.0);
            for (int i = 0; i < N; i++) {
                CHECK(K[i + j * N] >= 0 && K[i + j * N] <= 1.0);
                CHECK(K[i + j * N] == K[j + i * N]);
                double b = ink_kernel_eval(&k, X + i * 3, X + j * 3);
                CHECK_NEAR(K[i + j * N], b, 1e-12);
            }
        }
        CHECK(K[8 + 9 * N] == 1.0);
    }
}

TEST(init_checks)
{
    struct ink_kernel k;
    struct ink_err err = {0};
    struct ink_kernel_conf kc = {.set = true, .type = INK_K_GAUSSIAN, .sigma = 0};
    CHECK(ink_kernel_init(&k, &kc, 3, &err) == INK_EINVAL);
    CHECK(strstr(err.msg, "sigma") != NULL);
    double hv[2] = {1, 2};
    kc = (struct ink_kernel_conf){.set = true, .type = INK_K_LAPLACIAN_L1, .sigma = 1};
    kc.h.v = hv;
    kc.h.n = 2;
    CHECK(ink_kernel_init(&k, &kc, 3, &err) == INK_EINVAL);
    CHECK(strstr(err.msg, "expected 1 or 3") != NULL);
    CHECK(ink_kernel_init(&k, &kc, 2, &err) == 0);
    CHECK(k.h[0] == 1 && k.h[1] == 2);
    kc.h.n = 1;
    CHECK(ink_kernel_init(&k, &kc, 65, &err) == INK_EINVAL);
    CHECK(ink_kernel_init(&k, &kc, 0, &err) == INK_EINVAL);
    /* h absent: sigma on every axis. */
    kc.h.n = 0;
    kc.sigma = 0.25;
    CHECK(ink_kernel_init(&k, &kc, 4, &err) == 0);
    CHECK(k.h[3] == 0.25);
    kc = (struct ink_kernel_conf){.set = true, .type = INK_K_POLYNOMIAL, .degree = 0};
    CHECK(ink_kernel_init(&k, &kc, 3, &err) == INK_EINVAL);
    /* A zeroed, unset conf means the defaults (gaussian, sigma 1). */
    kc = (struct ink_kernel_conf){0};
    CHECK(ink_kernel_init(&k, &kc, 3, &err) == 0);
    CHECK(k.type == INK_K_GAUSSIAN && k.sigma == 1.0);
    kc = (struct ink_kernel_conf){.set = true, .type = 99, .sigma = 1};
    CHECK(ink_kernel_init(&k, &kc, 3, &err) == INK_EINVAL);
}

TEST(param_table)
{
    int n = 0;
    for (const struct ink_param *p = ink_kernel_params; p->name; p++) n++;
    CHECK(n == 5);
    const char *const *ch = ink_kernel_params[0].choices;
    CHECK(strcmp(ch[INK_K_GAUSSIAN], "gaussian") == 0);
    CHECK(strcmp(ch[INK_K_LAPLACIAN_L1], "laplacian_l1") == 0);
    CHECK(strcmp(ch[INK_K_POLYNOMIAL], "polynomial") == 0);
    CHECK(ch[INK_K_POLYNOMIAL + 1] == NULL);
}

int main(int argc, char **argv)
{
    openblas_set_num_threads(1);
    return ink_test_main(argc, argv);
}
