/* Kernels shared by all operators (docs/design.md#kernels, docs/algorithms.md 0.1).
 * Points are stored column-major: point j of a set X with dimension d is
 * X + j*d (d contiguous doubles). */
#ifndef INK_KERNEL_H
#define INK_KERNEL_H

#include <stdbool.h>

#include "../engine/err.h"
#include "../engine/param.h"

enum ink_kernel_type {
    INK_K_GAUSSIAN,     /* exp(-||x-z||^2 / (2 sigma^2)) */
    INK_K_LAPLACIAN,    /* exp(-||x-z||_2 / sigma) */
    INK_K_LAPLACIAN_L1, /* prod_k exp(-|x_k - z_k| / h_k) */
    INK_K_MATERN32,     /* (1 + sqrt3 r/sigma) exp(-sqrt3 r/sigma) */
    INK_K_MATERN52,     /* (1 + sqrt5 r/sigma + 5 r^2/(3 sigma^2)) exp(-sqrt5 r/sigma) */
    INK_K_LINEAR,       /* x.z + c */
    INK_K_POLYNOMIAL    /* (x.z + c)^degree */
};

/* The `kernel:` object of a node's config: {type: gaussian, sigma: 1.0}. */
struct ink_kernel_conf {
    bool set;
    int type;              /* enum ink_kernel_type */
    double sigma;          /* length scale (gaussian, laplacian, matern) */
    struct ink_f64_list h; /* per-axis bandwidths (laplacian_l1); one value = all axes */
    double c;              /* offset (linear, polynomial) */
    int64_t degree;        /* polynomial degree */
};

/* Param table for ink_kernel_conf; nodes embed it as an INK_P_OBJECT. */
extern const struct ink_param ink_kernel_params[];

struct ink_kernel {
    int type;
    int d;
    double sigma, c;
    int degree;
    double h[64]; /* laplacian_l1 bandwidths, expanded to d (d <= 64 for that kernel) */
};

/* Checks the conf against dimension d (e.g. h has 1 or d values). */
int ink_kernel_init(struct ink_kernel *k, const struct ink_kernel_conf *c, int d,
                    struct ink_err *err);

/* k(x, z) for one pair. */
double ink_kernel_eval(const struct ink_kernel *k, const double *x, const double *z);

/* out[i + j*ldo] = k(Xa_i, Xb_j), i < na, j < nb: one dgemm plus norms for the
 * inner-product kernels, squared distances clipped at 0. work holds at least
 * na + nb doubles. No allocation. */
void ink_kernel_block(const struct ink_kernel *k, const double *Xa, int na, const double *Xb,
                      int nb, double *out, int ldo, double *work);

/* out[i] = k(X_i, X_i), computed exactly (not through the block formula). */
void ink_kernel_diag(const struct ink_kernel *k, const double *X, int n, double *out);

/* sup_x k(x, x) when bounded (1 for the stationary kernels), else NAN. */
double ink_kernel_kappa2(const struct ink_kernel *k);

#endif
