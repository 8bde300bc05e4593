/* bkb speed and regret against exact incremental GP-UCB (ALGORITHMS.md 2.10,
 * the CI-sized stand-in): Branin on A random arms of the unit square, noise
 * sd 0.1, gaussian kernel sigma 0.25, lambda = noise variance, T rounds.
 * Prints `name value unit` rows.
 *
 *   bench_bkb [A] [T] [seed]      defaults 5000 500 1
 *
 * The baseline keeps the exact posterior covariance of the pulled arms in arm
 * space by sequential conditioning (Sigma_t = K/lambda - sum_s h_s h_s^T):
 * O(A t) per step and O(A T) memory. BKB costs O(A m^2) per step and O(A m)
 * memory with m the dictionary size; BBKB rebuilds only at batch starts.
 * Both use the same beta formula (beta multiplies sigma). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../engine/rng.h"
#include "../operators/bkb.h"

enum { D = 2 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double gauss(struct ink_rng *r)
{
    double u = ink_rng_uniform(r), v = ink_rng_uniform(r);
    return sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
}

static double branin(double u, double v)
{
    double x1 = 15 * u - 5, x2 = 15 * v;
    double a = x2 - 5.1 / (4 * M_PI * M_PI) * x1 * x1 + 5 / M_PI * x1 - 6;
    return a * a + 10 * (1 - 1 / (8 * M_PI)) * cos(x1) + 10;
}

static const double SIGMA = 0.25, NVAR = 0.01;

static double rbf(const double *x, const double *z)
{
    double s = 0;
    for (int k = 0; k < D; k++) s += (x[k] - z[k]) * (x[k] - z[k]);
    return exp(-s / (2 * SIGMA * SIGMA));
}

static double beta_ref(int64_t t, double sumcv)
{
    double lt = log(t < 2 ? 2.0 : (double)t);
    return sqrt(NVAR) + sqrt(NVAR * (sumcv * lt + log(2.0)));
}

/* Exact GP-UCB; returns the cumulative regret, *secs the time. */
static double exact(const double *X, int A, const double *f, int T, const double *noise,
                    double *secs)
{
    double *H = malloc(sizeof(double) * A * (size_t)T), *mu = calloc(A, sizeof(double));
    double *var = malloc(sizeof(double) * A), *g = malloc(sizeof(double) * A);
    int *cnt = calloc(A, sizeof(int));
    double t0 = now(), regret = 0, sumcv = 0;
    for (int i = 0; i < A; i++) var[i] = 1 / NVAR;
    struct ink_rng r;
    ink_rng_seed(&r, 77);
    for (int t = 0; t < T; t++) {
        int j = 0;
        if (t < 2) {
            j = (int)(ink_rng_uniform(&r) * A);
        } else {
            double beta = beta_ref(t, sumcv), best = -INFINITY;
            for (int i = 0; i < A; i++) {
                double u = mu[i] + beta * sqrt(var[i] > 0 ? var[i] : 0);
                if (u > best) best = u, j = i;
            }
        }
        regret += 1 - f[j];
        cnt[j]++;
        for (int i = 0; i < A; i++) g[i] = rbf(X + (size_t)i * D, X + (size_t)j * D) / NVAR;
        if (t > 0) cblas_dgemv(CblasColMajor, CblasNoTrans, A, t, -1.0, H, A, H + j, A, 1.0, g, 1);
        double s = sqrt(g[j] + 1), e = f[j] + noise[t] - mu[j];
        double *h = H + (size_t)t * A;
        sumcv = 0;
        for (int i = 0; i < A; i++) {
            h[i] = g[i] / s;
            mu[i] += h[i] * e / s;
            var[i] -= h[i] * h[i];
            if (cnt[i]) sumcv += cnt[i] * var[i];
        }
    }
    *secs = now() - t0;
    free(H), free(mu), free(var), free(g), free(cnt);
    return regret;
}

struct last {
    int64_t arm, dict;
};

static int grab(void *ctx, const struct ink_record *r)
{
    struct last *l = ctx;
    l->arm = r->arm;
    for (uint32_t i = 0; i < r->nfields; i++)
        if (!strcmp(r->fields[i].name, "dict")) l->dict = r->fields[i].v.i;
    return 0;
}

/* bkb in streaming mode over the arms written to path; batch ratio 0 = BKB. */
static double run_bkb(const char *path, int A, const double *f, int T, const double *noise,
                      double ratio, double *secs, int64_t *dict)
{
    struct ink_bkb_conf c;
    memset(&c, 0, sizeof c);
    c.arms.file = (char *)path;
    c.arms.max_arms = A;
    c.arms.max_dim = D;
    c.kernel = (struct ink_kernel_conf){.set = true, .type = INK_K_GAUSSIAN, .sigma = SIGMA};
    c.lambda = NVAR, c.noise_var = NVAR, c.F = 1, c.delta = 0.5, c.qbar = 2, c.max_dict = 512;
    c.seed = 5, c.init = 2, c.arm_block = 1024, c.max_memory = 1ull << 31, c.lazy = true;
    if (ratio > 0) c.batch.set = true, c.batch.ratio = ratio;
    void *st = calloc(1, ink_op_bkb.state_size);
    struct ink_err err = {0};
    struct ink_op_init ini = {.name = "bench", .seed = 1};
    if (ink_op_bkb.init(st, &c, &ini, &err) != 0) {
        fprintf(stderr, "init: %s\n", err.msg);
        exit(1);
    }
    struct last l = {0};
    struct ink_emitter em = {grab, &l};
    struct ink_record rec;
    memset(&rec, 0, sizeof rec);
    double t0 = now(), regret = 0;
    ink_op_bkb.process(st, &rec, &em, &err); /* start suggestion */
    for (int t = 0; t < T; t++) {
        int64_t j = l.arm;
        regret += 1 - f[j];
        memset(&rec, 0, sizeof rec);
        rec.flags = INK_HAS_ARM | INK_HAS_Y;
        rec.arm = j;
        rec.y = f[j] + noise[t];
        if (ink_op_bkb.process(st, &rec, &em, &err) != 0) {
            fprintf(stderr, "process: %s\n", err.msg);
            exit(1);
        }
    }
    *secs = now() - t0;
    *dict = l.dict;
    ink_op_bkb.fini(st);
    free(st);
    return regret;
}

int main(int argc, char **argv)
{
    int A = argc > 1 ? atoi(argv[1]) : 5000, T = argc > 2 ? atoi(argv[2]) : 500;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    openblas_set_num_threads(1);
    double *X = malloc(sizeof(double) * D * A), *f = malloc(sizeof(double) * A);
    double *noise = malloc(sizeof(double) * T);
    struct ink_rng r;
    ink_rng_seed(&r, seed);
    for (int i = 0; i < A * D; i++) X[i] = ink_rng_uniform(&r);
    double bmin = INFINITY, bmax = -INFINITY;
    for (int i = 0; i < A; i++) {
        f[i] = branin(X[i * D], X[i * D + 1]);
        bmin = f[i] < bmin ? f[i] : bmin;
        bmax = f[i] > bmax ? f[i] : bmax;
    }
    for (int i = 0; i < A; i++) f[i] = (bmax - f[i]) / (bmax - bmin);
    for (int t = 0; t < T; t++) noise[t] = sqrt(NVAR) * gauss(&r);
    char path[64];
    snprintf(path, sizeof path, "/tmp/bench_bkb_%d.csv", (int)getpid());
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < A; i++) fprintf(fp, "%.17g,%.17g\n", X[i * D], X[i * D + 1]);
    fclose(fp);

    double se, sb, sbb;
    int64_t db, dbb;
    double re = exact(X, A, f, T, noise, &se);
    double rb = run_bkb(path, A, f, T, noise, 0, &sb, &db);
    double rbb = run_bkb(path, A, f, T, noise, 2, &sbb, &dbb);
    remove(path);
    printf("bkb_branin_A%d_T%d_gpucb_exact_ms_per_step %.3f ms\n", A, T, 1e3 * se / T);
    printf("bkb_branin_A%d_T%d_bkb_ms_per_step %.3f ms\n", A, T, 1e3 * sb / T);
    printf("bkb_branin_A%d_T%d_bbkb_ms_per_step %.3f ms\n", A, T, 1e3 * sbb / T);
    printf("bkb_branin_A%d_T%d_bkb_speedup %.2f x\n", A, T, se / sb);
    printf("bkb_branin_A%d_T%d_bbkb_speedup %.2f x\n", A, T, se / sbb);
    printf("bkb_branin_A%d_T%d_regret_gpucb %.2f sum\n", A, T, re);
    printf("bkb_branin_A%d_T%d_regret_ratio_bkb %.3f x\n", A, T, rb / re);
    printf("bkb_branin_A%d_T%d_regret_ratio_bbkb %.3f x\n", A, T, rbb / re);
    printf("bkb_branin_A%d_T%d_dict_bkb %lld arms\n", A, T, (long long)db);
    printf("bkb_branin_A%d_T%d_dict_bbkb %lld arms\n", A, T, (long long)dbb);
    printf("bkb_branin_A%d_T%d_memory_exact_vs_bkb %.1f x\n", A, T,
           (double)T / (db > 0 ? (double)db : 1.0));
    free(X), free(f), free(noise);
    return 0;
}
