/* Kernels shared by all operators (docs/design.md#kernels, docs/algorithms.md 0.1).
 * Blocks go through one dgemm plus norms; the pairwise and diagonal forms
 * are written directly so that k(x, x) is exact. */
#include "kernel.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

/* Same order as enum ink_kernel_type: the ENUM param stores the index. */
static const char *const kernel_types[] = {"gaussian", "laplacian", "laplacian_l1", "matern32",
                                           "matern52", "linear",    "polynomial",   NULL};

#define KOFF(f) offsetof(struct ink_kernel_conf, f)

const struct ink_param ink_kernel_params[] = {
    {.name = "type",
     .type = INK_P_ENUM,
     .offset = KOFF(type),
     .def = "gaussian",
     .choices = kernel_types,
     .help = "kernel: gaussian, laplacian (l2), laplacian_l1 (product), matern32, matern52, "
             "linear, polynomial"},
    {.name = "sigma",
     .type = INK_P_DOUBLE,
     .offset = KOFF(sigma),
     .def = "1.0",
     .min = 1e-300,
     .max = 1e300,
     .help = "length scale of gaussian, laplacian, matern32, matern52 (and laplacian_l1 when h "
             "is not given)"},
    {.name = "h",
     .type = INK_P_F64_LIST,
     .offset = KOFF(h),
     .def = NULL,
     .min = 1e-300,
     .max = 1e300,
     .len_min = 1,
     .len_max = 64,
     .help = "laplacian_l1 bandwidths: one for all axes or one per axis (default: sigma)"},
    {.name = "c",
     .type = INK_P_DOUBLE,
     .offset = KOFF(c),
     .def = "0",
     .help = "offset of linear (x.z + c) and polynomial ((x.z + c)^degree); use c: 1 for an "
             "inhomogeneous polynomial"},
    {.name = "degree",
     .type = INK_P_INT,
     .offset = KOFF(degree),
     .def = "2",
     .min = 1,
     .max = 32,
     .help = "polynomial degree"},
    {0},
};

/* Below this fraction of ||x||^2 + ||z||^2 the block formula's squared
 * distance has lost more than ~1e-12 relative accuracy to cancellation:
 * such (rare, near-duplicate) pairs are recomputed directly. */
#define DIST_REFINE 1e-4

static bool is_distance(int type)
{
    return type == INK_K_GAUSSIAN || type == INK_K_LAPLACIAN || type == INK_K_MATERN32 ||
           type == INK_K_MATERN52;
}

int ink_kernel_init(struct ink_kernel *k, const struct ink_kernel_conf *c, int d,
                    struct ink_err *err)
{
    memset(k, 0, sizeof *k);
    if (d < 1) return ink_err_set(err, INK_EINVAL, "kernel: dimension must be >= 1, got %d", d);
    /* An absent `kernel:` object left zeroed means the table's defaults. */
    struct ink_kernel_conf def = {.type = INK_K_GAUSSIAN, .sigma = 1.0, .degree = 2};
    if (!c->set && c->sigma == 0 && c->degree == 0) c = &def;
    if (c->type < INK_K_GAUSSIAN || c->type > INK_K_POLYNOMIAL)
        return ink_err_set(err, INK_EINVAL, "kernel: unknown type %d", c->type);
    k->type = c->type;
    k->d = d;
    k->sigma = c->sigma;
    k->c = c->c;
    k->degree = (int)c->degree;
    if (is_distance(k->type) || (k->type == INK_K_LAPLACIAN_L1 && c->h.n == 0)) {
        if (!(c->sigma > 0) || !isfinite(c->sigma))
            return ink_err_set(err, INK_EINVAL, "kernel: sigma must be > 0, got %g", c->sigma);
    }
    if (k->type == INK_K_POLYNOMIAL && (c->degree < 1 || c->degree > 32))
        return ink_err_set(err, INK_EINVAL, "kernel: degree must be in [1, 32], got %lld",
                           (long long)c->degree);
    if (!isfinite(c->c)) return ink_err_set(err, INK_EINVAL, "kernel: c must be finite");
    if (k->type == INK_K_LAPLACIAN_L1) {
        if (d > 64)
            return ink_err_set(err, INK_EINVAL, "kernel: laplacian_l1 supports d <= 64, got %d", d);
        if (c->h.n != 0 && c->h.n != 1 && c->h.n != d)
            return ink_err_set(err, INK_EINVAL, "kernel: h has %d values, expected 1 or %d", c->h.n,
                               d);
        for (int i = 0; i < d; i++) {
            double h = c->h.n == 0 ? c->sigma : c->h.v[c->h.n == 1 ? 0 : i];
            if (!(h > 0) || !isfinite(h))
                return ink_err_set(err, INK_EINVAL, "kernel: h[%d] must be > 0, got %g", i, h);
            k->h[i] = h;
        }
    }
    return 0;
}

static double ipow(double b, int e)
{
    double r = 1.0;
    while (e > 0) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return r;
}

/* The stationary kernels as functions of the squared distance r2 >= 0. */
static double of_dist2(const struct ink_kernel *k, double r2)
{
    switch (k->type) {
    case INK_K_GAUSSIAN:
        return exp(-r2 / (2.0 * k->sigma * k->sigma));
    case INK_K_LAPLACIAN:
        return exp(-sqrt(r2) / k->sigma);
    case INK_K_MATERN32: {
        double a = sqrt(3.0 * r2) / k->sigma;
        return (1.0 + a) * exp(-a);
    }
    case INK_K_MATERN52: {
        double a = sqrt(5.0 * r2) / k->sigma;
        return (1.0 + a + a * a / 3.0) * exp(-a);
    }
    default:
        return NAN;
    }
}

static double of_dot(const struct ink_kernel *k, double dot)
{
    if (k->type == INK_K_LINEAR) return dot + k->c;
    return ipow(dot + k->c, k->degree);
}

static double dist2(const double *x, const double *z, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++) {
        double t = x[i] - z[i];
        s += t * t;
    }
    return s;
}

static double l1_scaled(const struct ink_kernel *k, const double *x, const double *z)
{
    double s = 0;
    for (int i = 0; i < k->d; i++) s += fabs(x[i] - z[i]) / k->h[i];
    return exp(-s);
}

double ink_kernel_eval(const struct ink_kernel *k, const double *x, const double *z)
{
    if (is_distance(k->type)) return of_dist2(k, dist2(x, z, k->d));
    if (k->type == INK_K_LAPLACIAN_L1) return l1_scaled(k, x, z);
    double dot = 0;
    for (int i = 0; i < k->d; i++) dot += x[i] * z[i];
    return of_dot(k, dot);
}

static void sq_norms(const double *X, int n, int d, double *out)
{
    for (int j = 0; j < n; j++) {
        const double *x = X + (size_t)j * d;
        double s = 0;
        for (int i = 0; i < d; i++) s += x[i] * x[i];
        out[j] = s;
    }
}

/* out = alpha Xa^T Xb (na x nb, leading dimension ldo). */
static void gram(const double *Xa, int na, const double *Xb, int nb, int d, double alpha,
                 double *out, int ldo)
{
    if (nb == 1)
        cblas_dgemv(CblasColMajor, CblasTrans, d, na, alpha, Xa, d, Xb, 1, 0.0, out, 1);
    else
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, na, nb, d, alpha, Xa, d, Xb, d, 0.0,
                    out, ldo);
}

void ink_kernel_block(const struct ink_kernel *k, const double *Xa, int na, const double *Xb,
                      int nb, double *out, int ldo, double *work)
{
    int d = k->d;
    if (na <= 0 || nb <= 0) return;
    if (k->type == INK_K_LAPLACIAN_L1) {
        /* No inner-product form: a direct loop (no cancellation either). */
        for (int j = 0; j < nb; j++)
            for (int i = 0; i < na; i++)
                out[i + (size_t)j * ldo] = l1_scaled(k, Xa + (size_t)i * d, Xb + (size_t)j * d);
        return;
    }
    if (!is_distance(k->type)) {
        gram(Xa, na, Xb, nb, d, 1.0, out, ldo);
        for (int j = 0; j < nb; j++)
            for (int i = 0; i < na; i++) {
                double *o = &out[i + (size_t)j * ldo];
                *o = of_dot(k, *o);
            }
        return;
    }
    /* ||x - z||^2 = ||x||^2 + ||z||^2 - 2 x.z, clipped at 0. */
    double *na2 = work, *nb2 = work + na;
    sq_norms(Xa, na, d, na2);
    sq_norms(Xb, nb, d, nb2);
    gram(Xa, na, Xb, nb, d, -2.0, out, ldo);
    for (int j = 0; j < nb; j++) {
        for (int i = 0; i < na; i++) {
            double *o = &out[i + (size_t)j * ldo];
            double sum = na2[i] + nb2[j];
            double r2 = sum + *o;
            if (r2 < DIST_REFINE * sum) r2 = dist2(Xa + (size_t)i * d, Xb + (size_t)j * d, d);
            if (r2 < 0) r2 = 0;
            *o = of_dist2(k, r2);
        }
    }
}

void ink_kernel_diag(const struct ink_kernel *k, const double *X, int n, double *out)
{
    for (int j = 0; j < n; j++) {
        const double *x = X + (size_t)j * k->d;
        if (is_distance(k->type) || k->type == INK_K_LAPLACIAN_L1) {
            out[j] = 1.0; /* k(x, x) = exp(0) for every stationary kernel here */
        } else {
            double s = 0;
            for (int i = 0; i < k->d; i++) s += x[i] * x[i];
            out[j] = of_dot(k, s);
        }
    }
}

double ink_kernel_kappa2(const struct ink_kernel *k)
{
    if (is_distance(k->type) || k->type == INK_K_LAPLACIAN_L1) return 1.0;
    return NAN;
}
