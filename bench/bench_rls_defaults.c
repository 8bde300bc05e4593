/* rls_sketch with its default settings (batch 0: every member re-thinned at
 * every arrival) against exact computations in C with LAPACK, in the same
 * process. Prints `name value unit` lines for bench/rows_rls.py.
 *
 *   bench_rls_defaults friedman n [w0 w1]
 *       Friedman #1 (x ~ U[0,1]^10, y = 10 sin(pi x1 x2) + 20 (x3 - 1/2)^2
 *       + 10 x4 + 5 x5 + N(0,1)), gaussian sigma 1, gamma = mu = 0.5, qbar 16,
 *       max_dict 2048, predict. The exact baseline grows a Cholesky factor of
 *       K_t + gamma I by one row per arrival (exact RLS of each arrival and
 *       exact prequential KRR, mu = gamma). Without w0 w1 it runs all n
 *       steps; with them it times steps [w0, w1) and extrapolates by sum t^2,
 *       and compares accuracy on the first w1 arrivals.
 *   bench_rls_defaults file PATH n d sigma gamma qbar
 *       n rows of d doubles (native byte order) from PATH, no predict: arrival
 *       scores against the exact ones, and both times.
 *
 * Times are CPU time of the process (BLAS on one thread). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/param.h"
#include "../engine/rng.h"
#include "../operators/rls_sketch.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double gauss(struct ink_rng *r)
{
    double u = ink_rng_uniform(r), v = ink_rng_uniform(r);
    return sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
}

struct out {
    double *tau, *yhat, dict_sum, gamma_eff;
    int64_t dict, refreshes;
    long n;
};

static int capture(void *ctx, const struct ink_record *r)
{
    struct out *o = ctx;
    for (uint32_t i = 0; i < r->nfields; i++) {
        const struct ink_field *f = &r->fields[i];
        if (!strcmp(f->name, "tau")) o->tau[o->n] = f->v.f;
        if (!strcmp(f->name, "yhat")) o->yhat[o->n] = f->v.f;
        if (!strcmp(f->name, "gamma_eff")) o->gamma_eff = f->v.f;
        if (!strcmp(f->name, "dict")) o->dict = f->v.i, o->dict_sum += (double)f->v.i;
        if (!strcmp(f->name, "refreshes")) o->refreshes = f->v.i;
    }
    o->n++;
    return 0;
}

/* The sketch with the parameter table's defaults, except what the stream
 * needs (dim, kernel bandwidth, gamma, mu, qbar, max_dict, predict). Returns
 * the CPU seconds of the n arrivals. */
static double run_sketch(const double *X, const double *y, long n, int d, double sigma,
                         double gamma, double qbar, long max_dict, struct out *o)
{
    struct ink_rls_conf c;
    memset(&c, 0, sizeof c);
    struct ink_err err = {0};
    if (ink_params_defaults(ink_rls_params, &c, &err)) {
        fprintf(stderr, "defaults: %s\n", err.msg);
        exit(1);
    }
    c.dim = d;
    c.kernel.set = true;
    c.kernel.sigma = sigma;
    c.gamma = gamma;
    c.mu = gamma;
    c.qbar = (int64_t)qbar;
    c.max_dict = max_dict;
    c.predict = y != NULL;
    c.seed = 1;
    /* RLS_SLACK overrides the default slack (the sweep in docs/rls_sketch.md). */
    if (getenv("RLS_SLACK")) c.slack = atof(getenv("RLS_SLACK"));
    void *st = calloc(1, ink_op_rls_sketch.state_size);
    if (ink_op_rls_sketch.init(st, &c, NULL, &err)) {
        fprintf(stderr, "init: %s\n", err.msg);
        exit(1);
    }
    struct ink_emitter em = {capture, o};
    struct ink_record r = {0};
    r.flags = INK_HAS_X | (y ? INK_HAS_Y : 0);
    r.dim = (uint32_t)d;
    double t0 = now();
    for (long t = 0; t < n; t++) {
        r.x = X + (size_t)t * d;
        if (y) r.y = y[t];
        if (ink_op_rls_sketch.process(st, &r, &em, &err)) {
            fprintf(stderr, "process: %s\n", err.msg);
            exit(1);
        }
    }
    double dt = now() - t0;
    struct ink_record q = {.flags = INK_HAS_OP, .op = "dict", .op_len = 4};
    ink_op_rls_sketch.query(st, &q, &em, &err);
    o->n--; /* the query's reply is not an arrival */
    ink_op_rls_sketch.fini(st);
    free(st);
    return dt;
}

/* Exact incremental RLS (and prequential KRR with mu = gamma when y): L is
 * the Cholesky factor of K_{t-1} + gamma I, grown by one row per arrival
 * (dtrsv for the new row). tau[t] = s/(s + gamma), s = k_tt - |L^-1 k|^2;
 * yhat[t] = (L^-1 k) . (L^-1 y)_{<t}. Returns the CPU seconds of steps
 * [t0, t1). */
static double exact(const double *X, const double *y, long t0, long t1, int d, double sigma,
                    double gamma, double *tau, double *yhat)
{
    double *L = calloc((size_t)t1 * t1, sizeof(double)), *k = malloc(sizeof(double) * t1);
    double *w = malloc(sizeof(double) * t1);
    double start = now();
    for (long t = 0; t < t1; t++) {
        if (t == t0) start = now();
        const double *xt = X + (size_t)t * d;
        for (long j = 0; j < t; j++) {
            const double *xj = X + (size_t)j * d;
            double r2 = 0;
            for (int a = 0; a < d; a++) r2 += (xt[a] - xj[a]) * (xt[a] - xj[a]);
            k[j] = exp(-r2 / (2 * sigma * sigma));
        }
        if (t > 0)
            cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)t, L, (int)t1,
                        k, 1);
        double s = 1.0 - (t > 0 ? cblas_ddot((int)t, k, 1, k, 1) : 0);
        if (s < 0) s = 0;
        tau[t] = s / (s + gamma);
        cblas_dcopy((int)t, k, 1, L + t, (int)t1); /* row t of L */
        L[t + (size_t)t * t1] = sqrt(s + gamma);
        if (y) {
            yhat[t] = t > 0 ? cblas_ddot((int)t, k, 1, w, 1) : 0;
            w[t] = (y[t] - yhat[t]) / L[t + (size_t)t * t1];
        }
    }
    double dt = now() - start;
    free(L), free(k), free(w);
    return dt;
}

/* Share of arrival scores in [tau/alpha, tau] (eps 0.5: alpha 3) and the
 * extreme ratios, over the first n arrivals. */
static void band(const char *pre, const double *est, const double *ex, long n)
{
    long in = 0;
    double lo = INFINITY, hi = 0;
    for (long t = 0; t < n; t++) {
        double r = est[t] / ex[t];
        in += est[t] >= ex[t] / 3 - 1e-12 - 1e-9 * ex[t] && est[t] <= ex[t] * (1 + 1e-9) + 1e-12;
        lo = fmin(lo, r), hi = fmax(hi, r);
    }
    printf("%s_band_share %.5f -\n", pre, (double)in / (double)n);
    printf("%s_band_ratio_min %.4f -\n", pre, lo);
    printf("%s_band_ratio_max %.4f -\n", pre, hi);
}

static int friedman(long n, long w0, long w1)
{
    enum { D = 10 };
    struct ink_rng rng;
    ink_rng_seed(&rng, 2026);
    double *X = malloc(sizeof(double) * D * (size_t)n), *y = malloc(sizeof(double) * (size_t)n);
    for (long t = 0; t < n; t++) {
        double *x = X + (size_t)t * D;
        for (int a = 0; a < D; a++) x[a] = ink_rng_uniform(&rng);
        y[t] = 10 * sin(M_PI * x[0] * x[1]) + 20 * (x[2] - 0.5) * (x[2] - 0.5) + 10 * x[3] +
               5 * x[4] + gauss(&rng);
    }
    const double sigma = 1.0, gamma = 0.5;
    bool window = w1 > 0;
    long ne = window ? w1 : n; /* arrivals the exact side computes */
    struct out o = {malloc(sizeof(double) * n), malloc(sizeof(double) * n), 0, 0, 0, 0, 0};
    double ts = run_sketch(X, y, n, D, sigma, gamma, 16, 2048, &o);
    double *tau = malloc(sizeof(double) * ne), *yhat = malloc(sizeof(double) * ne);
    double te = exact(X, y, window ? w0 : 0, ne, D, sigma, gamma, tau, yhat);
    char pre[64];
    snprintf(pre, sizeof pre, "friedman_n%ld", n);
    if (window) {
        double all = 0, win = 0;
        for (long t = 1; t < n; t++) all += (double)t * t;
        for (long t = w0; t < w1; t++) win += (double)t * t;
        printf("%s_exact_window_s %.3f s\n", pre, te);
        te *= all / win;
    }
    printf("%s_sketch_s %.3f s\n", pre, ts);
    printf("%s_sketch_rate %.1f 1/s\n", pre, n / ts);
    printf("%s_exact_s %.3f s\n", pre, te);
    printf("%s_exact_rate %.2f 1/s\n", pre, n / te);
    printf("%s_speedup %.2f x\n", pre, te / ts);
    printf("%s_dict_final %lld points\n", pre, (long long)o.dict);
    printf("%s_dict_mean %.1f points\n", pre, o.dict_sum / (double)n);
    printf("%s_gamma_eff %.4g -\n", pre, o.gamma_eff);
    printf("%s_refreshes %lld -\n", pre, (long long)o.refreshes);
    double se = 0, se_ex = 0;
    for (long t = 0; t < ne; t++) {
        se += (o.yhat[t] - y[t]) * (o.yhat[t] - y[t]);
        se_ex += (yhat[t] - y[t]) * (yhat[t] - y[t]);
    }
    printf("%s_mse_over %ld points\n", pre, ne);
    printf("%s_mse_sketch %.5f -\n", pre, se / (double)ne);
    printf("%s_mse_exact %.5f -\n", pre, se_ex / (double)ne);
    printf("%s_mse_ratio %.4f -\n", pre, se / se_ex);
    band(pre, o.tau, tau, ne);
    free(X), free(y), free(o.tau), free(o.yhat), free(tau), free(yhat);
    return 0;
}

static int from_file(const char *path, long n, int d, double sigma, double gamma, double qbar)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    double *X = malloc(sizeof(double) * (size_t)n * d);
    if (fread(X, sizeof(double), (size_t)n * d, f) != (size_t)n * d) {
        fprintf(stderr, "%s: fewer than %ld x %d doubles\n", path, n, d);
        return 1;
    }
    fclose(f);
    struct out o = {malloc(sizeof(double) * n), malloc(sizeof(double) * n), 0, 0, 0, 0, 0};
    /* Repeat the sketch (it is short) and keep the median time. */
    double ts[5];
    for (int r = 0; r < 5; r++) {
        o.n = 0, o.dict_sum = 0;
        ts[r] = run_sketch(X, NULL, n, d, sigma, gamma, qbar, 1024, &o);
    }
    for (int a = 0; a < 5; a++)
        for (int b = a + 1; b < 5; b++)
            if (ts[b] < ts[a]) {
                double t = ts[a];
                ts[a] = ts[b], ts[b] = t;
            }
    double *tau = malloc(sizeof(double) * n);
    double te = exact(X, NULL, 0, n, d, sigma, gamma, tau, NULL);
    const char *pre = "file";
    printf("%s_sketch_s %.4f s\n", pre, ts[2]);
    printf("%s_sketch_rate %.1f 1/s\n", pre, n / ts[2]);
    printf("%s_exact_s %.3f s\n", pre, te);
    printf("%s_exact_rate %.1f 1/s\n", pre, n / te);
    printf("%s_speedup %.2f x\n", pre, te / ts[2]);
    printf("%s_dict_final %lld points\n", pre, (long long)o.dict);
    printf("%s_dict_mean %.1f points\n", pre, o.dict_sum / (double)n);
    printf("%s_gamma_eff %.4g -\n", pre, o.gamma_eff);
    band(pre, o.tau, tau, n);
    free(X), free(o.tau), free(o.yhat), free(tau);
    return 0;
}

int main(int argc, char **argv)
{
    openblas_set_num_threads(1);
    if (argc >= 3 && !strcmp(argv[1], "friedman"))
        return friedman(atol(argv[2]), argc > 4 ? atol(argv[3]) : 0, argc > 4 ? atol(argv[4]) : 0);
    if (argc >= 8 && !strcmp(argv[1], "file"))
        return from_file(argv[2], atol(argv[3]), atoi(argv[4]), atof(argv[5]), atof(argv[6]),
                         atof(argv[7]));
    fprintf(stderr, "usage: bench_rls_defaults friedman n [w0 w1]\n"
                    "       bench_rls_defaults file PATH n d sigma gamma qbar\n");
    return 2;
}
