/* bkb speed and regret against exact incremental GP-UCB (docs/algorithms.md 2.10).
 * Rewards: Branin (d = 2) or Hartmann-4 (d = 4) on A random arms of the unit
 * cube, min-max normalised to [0, 1] over the arms, noise sd 0.1; gaussian
 * kernel (prior k/lambda, unit noise in KRR units), T rounds. Prints `name value unit` rows.
 *
 *   bench_bkb [A] [T] [seed] [D] [ALGO] [SIGMA] [LAMBDA] [QBAR] [OPSEED]
 *                                 defaults 5000 500 1 2 all 0.25 0.01 0 5
 *
 * QBAR 0 leaves the operator's default (2 (1 + lambda), docs/bkb.md).
 *
 * seed draws the arms and the noise; OPSEED is the bkb operator's own RNG seed.
 *
 * ALGO is all, exact, bkb or bbkb; run one per process to read its peak RSS
 * (`*_peak_rss`). With BENCH_BKB_DUMP=PREFIX set, the arms, rewards and
 * noise are also written to PREFIX.arms and PREFIX.noise (bench/rows_bkb.py). `*_ms_per_round_at_t`
 * rows give the mean time per round over the window of T/20 rounds ending at t, for t = T/10,
 * 2T/10, ..., T.
 *
 * The baseline is exact GP-UCB with an incrementally grown Cholesky factor:
 * H = K_{A,S} L^{-T} (A x t, L the Cholesky factor of K_SS + lambda I of the
 * pulled arms S, whose rows are the rows of H at the pulled arms) grows by one
 * column per round, h = (k(A, x_j)/lambda - H H_j^T) / s, and the posterior
 * mean and variance of every arm are updated from it: O(A t) per round and
 * O(A T) memory. BKB costs O(A m^2) per rebuild and O(A m) memory with m the
 * dictionary size; BBKB rebuilds only at batch starts. All use the same arms,
 * kernel and beta formula (beta multiplies sigma). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../engine/rng.h"
#include "../operators/bkb.h"

enum { DMAX = 8 };
static int D = 2;

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

/* Hartmann-4 (Picheny et al. 2013): the first four columns of Hartmann-6;
 * returned negated so that larger is better. */
static double hartmann4(const double *x)
{
    static const double al[4] = {1.0, 1.2, 3.0, 3.2};
    static const double a[4][4] = {
        {10, 3, 17, 3.5}, {0.05, 10, 17, 0.1}, {3, 3.5, 1.7, 10}, {17, 8, 0.05, 10}};
    static const double p[4][4] = {{.1312, .1696, .5569, .0124},
                                   {.2329, .4135, .8307, .3736},
                                   {.2348, .1451, .3522, .2883},
                                   {.4047, .8828, .8732, .5743}};
    double s = 0;
    for (int i = 0; i < 4; i++) {
        double e = 0;
        for (int j = 0; j < 4; j++) e += a[i][j] * (x[j] - p[i][j]) * (x[j] - p[i][j]);
        s += al[i] * exp(-e);
    }
    return s;
}

static double SIGMA = 0.25;
static const double NVAR = 0.01; /* noise variance (noise sd 0.1) */
static double LAMBDA = 0.01;     /* regularizer, default the noise variance */
static double QBAR = 0;          /* bkb dictionary oversampling; 0: the operator's default */
static int64_t OPSEED = 5;       /* bkb operator RNG seed */

static double rbf(const double *x, const double *z)
{
    double s = 0;
    for (int k = 0; k < D; k++) s += (x[k] - z[k]) * (x[k] - z[k]);
    return exp(-s / (2 * SIGMA * SIGMA));
}

static double beta_ref(int64_t t, double sumcv)
{
    double lt = log(t < 2 ? 2.0 : (double)t);
    return sqrt(LAMBDA) + sqrt(NVAR * (sumcv * lt + log(2.0)));
}

/* Exact GP-UCB; returns the cumulative regret, *secs the time, dt[t] the
 * time of round t. */
static double exact(const double *X, int A, const double *f, int T, const double *noise,
                    double *secs, double *dt)
{
    double *H = malloc(sizeof(double) * A * (size_t)T), *mu = calloc(A, sizeof(double));
    double *var = malloc(sizeof(double) * A), *g = malloc(sizeof(double) * A);
    int *cnt = calloc(A, sizeof(int));
    if (!H || !mu || !var || !g || !cnt) {
        fprintf(stderr, "exact: out of memory\n");
        exit(1);
    }
    double t0 = now(), regret = 0, sumcv = 0, tl = t0;
    for (int i = 0; i < A; i++) var[i] = 1 / LAMBDA;
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
        for (int i = 0; i < A; i++) g[i] = rbf(X + (size_t)i * D, X + (size_t)j * D) / LAMBDA;
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
        double tn = now();
        dt[t] = tn - tl, tl = tn;
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
                      double ratio, double *secs, int64_t *dict, double *dt)
{
    struct ink_bkb_conf c;
    memset(&c, 0, sizeof c);
    c.arms.file = (char *)path;
    c.arms.max_arms = A;
    c.arms.max_dim = D;
    c.kernel = (struct ink_kernel_conf){.set = true, .type = INK_K_GAUSSIAN, .sigma = SIGMA};
    c.lambda = LAMBDA, c.noise_var = NVAR, c.F = 1, c.delta = 0.5, c.qbar = QBAR, c.max_dict = 512;
    c.seed = OPSEED, c.init = 2, c.arm_block = 1024, c.max_memory = 1ull << 31, c.lazy = true;
    if (ratio > 0) c.batch.set = true, c.batch.ratio = ratio;
    void *st = calloc(1, ink_op_bkb.state_size);
    struct ink_err err = {0};
    struct ink_op_init ini = {.name = "bench", .seed = (uint64_t)OPSEED}; /* as the engine */
    if (ink_op_bkb.init(st, &c, &ini, &err) != 0) {
        fprintf(stderr, "init: %s\n", err.msg);
        exit(1);
    }
    struct last l = {0};
    struct ink_emitter em = {grab, &l};
    struct ink_record rec;
    memset(&rec, 0, sizeof rec);
    double t0 = now(), regret = 0, tl = t0;
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
        double tn = now();
        dt[t] = tn - tl, tl = tn;
    }
    *secs = now() - t0;
    *dict = l.dict;
    ink_op_bkb.fini(st);
    free(st);
    return regret;
}

static void report(const char *pre, const char *algo, int T, double secs, double regret,
                   int64_t dict, const double *dt)
{
    printf("%s_%s_total_s %.3f s\n", pre, algo, secs);
    printf("%s_%s_ms_per_round %.4f ms\n", pre, algo, 1e3 * secs / T);
    printf("%s_%s_regret %.3f sum\n", pre, algo, regret);
    if (dict >= 0) printf("%s_%s_dict %lld arms\n", pre, algo, (long long)dict);
    int w = T / 20 > 0 ? T / 20 : 1;
    for (int k = 1; k <= 10; k++) {
        int t1 = (int)((int64_t)T * k / 10), t0 = t1 - w < 0 ? 0 : t1 - w;
        double s = 0;
        for (int t = t0; t < t1; t++) s += dt[t];
        if (t1 > t0)
            printf("%s_%s_ms_per_round_at_%d %.4f ms\n", pre, algo, t1, 1e3 * s / (t1 - t0));
    }
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int main(int argc, char **argv)
{
    int A = argc > 1 ? atoi(argv[1]) : 5000, T = argc > 2 ? atoi(argv[2]) : 500;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    D = argc > 4 ? atoi(argv[4]) : 2;
    const char *algo = argc > 5 ? argv[5] : "all";
    if (argc > 6) SIGMA = atof(argv[6]);
    if (argc > 7) LAMBDA = atof(argv[7]);
    if (argc > 8) QBAR = atof(argv[8]);
    if (argc > 9) OPSEED = atoll(argv[9]);
    if ((D != 2 && D != 4) || A < 2 || T < 1) {
        fprintf(stderr, "usage: bench_bkb [A] [T] [seed] [D: 2|4] [all|exact|bkb|bbkb] [sigma] "
                        "[lambda] [qbar] [opseed]\n");
        return 2;
    }
    openblas_set_num_threads(1);
    double *X = malloc(sizeof(double) * D * A), *f = malloc(sizeof(double) * A);
    double *noise = malloc(sizeof(double) * T), *dt = calloc(T, sizeof(double));
    struct ink_rng r;
    ink_rng_seed(&r, seed);
    for (int i = 0; i < A * D; i++) X[i] = ink_rng_uniform(&r);
    double bmin = INFINITY, bmax = -INFINITY;
    for (int i = 0; i < A; i++) {
        /* larger is better after normalisation: -branin, hartmann4 (already negated) */
        f[i] = D == 2 ? -branin(X[i * D], X[i * D + 1]) : hartmann4(X + (size_t)i * D);
        bmin = f[i] < bmin ? f[i] : bmin;
        bmax = f[i] > bmax ? f[i] : bmax;
    }
    for (int i = 0; i < A; i++) f[i] = (f[i] - bmin) / (bmax - bmin);
    for (int t = 0; t < T; t++) noise[t] = sqrt(NVAR) * gauss(&r);
    char path[64];
    snprintf(path, sizeof path, "/tmp/bench_bkb_%d.csv", (int)getpid());
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < A; i++)
        for (int k = 0; k < D; k++) fprintf(fp, "%.17g%c", X[i * D + k], k + 1 < D ? ',' : '\n');
    fclose(fp);

    /* BENCH_BKB_DUMP=PREFIX: write the arms and rewards (PREFIX.arms: x..., f) and
     * the noise sequence (PREFIX.noise) for a baseline in another language */
    const char *dump = getenv("BENCH_BKB_DUMP");
    if (dump) {
        char dp[512];
        snprintf(dp, sizeof dp, "%s.arms", dump);
        FILE *da = fopen(dp, "w");
        snprintf(dp, sizeof dp, "%s.noise", dump);
        FILE *dn = fopen(dp, "w");
        if (!da || !dn) {
            fprintf(stderr, "BENCH_BKB_DUMP: cannot write %s\n", dp);
            return 1;
        }
        for (int i = 0; i < A; i++) {
            for (int k = 0; k < D; k++) fprintf(da, "%.17g,", X[i * D + k]);
            fprintf(da, "%.17g\n", f[i]);
        }
        for (int t = 0; t < T; t++) fprintf(dn, "%.17g\n", noise[t]);
        fclose(da), fclose(dn);
    }
    char pre[64];
    snprintf(pre, sizeof pre, "bkb_%s_A%d_T%d", D == 2 ? "branin" : "hartmann4", A, T);
    long rss0 = peak_rss_kib();
    printf("%s_setup_peak_rss %ld KiB\n", pre, rss0);
    bool all = !strcmp(algo, "all");
    double se = 0, sb = 0, sbb = 0, re = 0, rb = 0, rbb = 0;
    int64_t db = 0, dbb = 0;
    if (all || !strcmp(algo, "exact")) {
        re = exact(X, A, f, T, noise, &se, dt);
        report(pre, "exact", T, se, re, -1, dt);
    }
    if (all || !strcmp(algo, "bkb")) {
        rb = run_bkb(path, A, f, T, noise, 0, &sb, &db, dt);
        report(pre, "bkb", T, sb, rb, db, dt);
    }
    if (all || !strcmp(algo, "bbkb")) {
        rbb = run_bkb(path, A, f, T, noise, 2, &sbb, &dbb, dt);
        report(pre, "bbkb", T, sbb, rbb, dbb, dt);
    }
    remove(path);
    printf("%s_%s_peak_rss %ld KiB\n", pre, algo, peak_rss_kib());
    if (all) {
        printf("%s_bkb_speedup %.2f x\n", pre, se / sb);
        printf("%s_bbkb_speedup %.2f x\n", pre, se / sbb);
        printf("%s_regret_ratio_bkb %.3f x\n", pre, rb / re);
        printf("%s_regret_ratio_bbkb %.3f x\n", pre, rbb / re);
    }
    free(X), free(f), free(noise), free(dt);
    return 0;
}
