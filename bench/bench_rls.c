/* rls_sketch throughput (ALGORITHMS.md 1.9 B1): arrivals per second at d = 8,
 * gaussian kernel, for dictionaries near 64 / 256 / 1024 points, and the
 * speed-up over exact incremental leverage scores. Prints `name value unit`.
 *
 *   bench_rls [n]        n arrivals per row (default 20000)
 *
 * The dictionary size is held near the target by max_dict with a small gamma:
 * the cap doubles gamma_eff until the sketch fits (1.7), as a user sizing the
 * sketch by memory would run it. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/rng.h"
#include "../operators/rls_sketch.h"

enum { D = 8 };

/* CPU time of the process: the benchmark machines are shared, and the
 * targets are per core (BLAS runs on one thread). */
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

struct sink {
    double dict_sum;
    long n;
    double gamma_eff;
    int64_t reest;
};

static int count(void *ctx, const struct ink_record *r)
{
    struct sink *s = ctx;
    for (uint32_t i = 0; i < r->nfields; i++) {
        if (!strcmp(r->fields[i].name, "dict")) s->dict_sum += (double)r->fields[i].v.i;
        if (!strcmp(r->fields[i].name, "gamma_eff")) s->gamma_eff = r->fields[i].v.f;
        if (!strcmp(r->fields[i].name, "reestimations")) s->reest = r->fields[i].v.i;
    }
    s->n++;
    return 0;
}

static double *make_data(long n, uint64_t seed)
{
    struct ink_rng rng;
    ink_rng_seed(&rng, seed);
    double *X = malloc(sizeof(double) * D * (size_t)n);
    for (long i = 0; i < n * D; i++) X[i] = gauss(&rng);
    return X;
}

/* Seconds for n arrivals (after `warm` unmeasured ones); *mean_dict. */
static double run_sketch(int max_dict, int batch, double gamma, const double *X, long warm, long n,
                         double *mean_dict, double *gamma_eff)
{
    struct ink_rls_conf c = {0};
    c.kernel.set = true;
    c.kernel.type = INK_K_GAUSSIAN;
    c.kernel.sigma = 2.0;
    c.dim = D;
    c.gamma = gamma;
    c.eps = 0.5;
    c.qbar = 8;
    c.max_dict = max_dict;
    c.batch = batch;
    c.seed = 1;
    c.mu = 0.1;
    c.shrink = true;
    void *st = calloc(1, ink_op_rls_sketch.state_size);
    struct ink_err err = {0};
    if (ink_op_rls_sketch.init(st, &c, NULL, &err)) {
        fprintf(stderr, "init: %s\n", err.msg);
        exit(1);
    }
    struct sink sk = {0};
    struct ink_emitter em = {count, &sk};
    struct ink_record r = {0};
    r.flags = INK_HAS_X;
    r.dim = D;
    double t0 = 0;
    for (long i = 0; i < warm + n; i++) {
        if (i == warm) {
            t0 = now();
            sk = (struct sink){0};
        }
        r.x = X + (size_t)i * D;
        if (ink_op_rls_sketch.process(st, &r, &em, &err)) {
            fprintf(stderr, "process: %s\n", err.msg);
            exit(1);
        }
    }
    double dt = now() - t0;
    *mean_dict = sk.dict_sum / (double)sk.n;
    struct ink_record q = {.flags = INK_HAS_OP, .op = "dict", .op_len = 4};
    ink_op_rls_sketch.query(st, &q, &em, &err);
    fprintf(stderr, "max_dict %d batch %d: %lld re-estimations in %ld arrivals\n", max_dict, batch,
            (long long)sk.reest, warm + n);
    *gamma_eff = sk.gamma_eff;
    ink_op_rls_sketch.fini(st);
    free(st);
    return dt;
}

/* Exact incremental RLS of each arrival: tau_t = s/(s+gamma), s = k - |L^{-1} k|^2
 * with L the Cholesky factor of K_{t-1} + gamma I grown by one row per step.
 * Returns the seconds for steps [t0, t1) (the O(t^2) step at the end of a
 * 20,000 stream needs 3.2 GB, so the caller extrapolates from a window). */
static double exact_window(const double *X, long t0, long t1, double gamma, double sigma)
{
    double *L = calloc((size_t)t1 * t1, sizeof(double)), *k = malloc(sizeof(double) * t1);
    double start = 0, sum = 0;
    for (long t = 0; t < t1; t++) {
        if (t == t0) start = now();
        for (long j = 0; j < t; j++) {
            double r2 = 0;
            for (int a = 0; a < D; a++) {
                double u = X[t * D + a] - X[j * D + a];
                r2 += u * u;
            }
            k[j] = exp(-r2 / (2 * sigma * sigma));
        }
        if (t > 0)
            cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, (int)t, L, (int)t1,
                        k, 1);
        double s = 1.0 - (t > 0 ? cblas_ddot((int)t, k, 1, k, 1) : 0);
        if (s < 0) s = 0;
        sum += s / (s + gamma);
        for (long j = 0; j < t; j++) L[t + j * t1] = k[j];
        L[t + t * t1] = sqrt(s + gamma);
    }
    double dt = now() - start;
    free(L), free(k);
    if (sum < 0) printf("impossible\n");
    return dt;
}

int main(int argc, char **argv)
{
    openblas_set_num_threads(1);
    long n = argc > 1 ? atol(argv[1]) : 20000;
    long warm = 2000;
    double *X = make_data(warm + n, 7);
    if (argc > 3) { /* one row: bench_rls n max_dict batch [gamma] */
        int md0 = atoi(argv[2]), b0 = atoi(argv[3]);
        double g0 = argc > 4 ? atof(argv[4]) : 1e-3, md, ge;
        double dt = run_sketch(md0, b0, g0, X, warm, n, &md, &ge);
        printf("rls_d8_dict%d_batch%d_arrivals %.0f 1/s\n", md0, b0, n / dt);
        printf("rls_d8_dict%d_batch%d_mean_dict %.1f points\n", md0, b0, md);
        printf("rls_d8_dict%d_batch%d_gamma_eff %.4g -\n", md0, b0, ge);
        free(X);
        return 0;
    }
    /* gamma per row puts the dictionary near 64 / 256 / 1024 for this stream
     * (N(0, I_8), sigma 2) without the cap binding; max_dict leaves room. */
    static const int targets[] = {64, 256, 1024};
    static const double gammas[] = {250, 30, 4};
    for (int s = 0; s < 3; s++) {
        for (int b = 0; b < 2; b++) {
            int batch = b == 0 ? 1 : 1024;
            if (batch == 1 && targets[s] > 256) continue; /* O(m^3) per arrival: minutes */
            long nn = batch == 1 ? n / (targets[s] > 64 ? 100 : 10) : n;
            double md, ge;
            double dt = run_sketch(targets[s] * 3 / 2, batch, gammas[s], X, warm, nn, &md, &ge);
            printf("rls_d8_near%d_batch%d_arrivals %.0f 1/s\n", targets[s], batch, nn / dt);
            printf("rls_d8_near%d_batch%d_mean_dict %.1f points\n", targets[s], batch, md);
            fflush(stdout);
        }
    }
    /* Exact incremental leverage scores at n = 20,000: time a window of steps
     * at t in [w0, w1) and scale by sum t^2 (the step cost is O(t^2)). */
    long N = 20000, w0 = 3000, w1 = 3200;
    double *Y = make_data(N, 9);
    double dtw = exact_window(Y, w0, w1, 1.0, 2.0);
    double sum_all = 0, sum_win = 0;
    for (long t = 1; t < N; t++) sum_all += (double)t * t;
    for (long t = w0; t < w1; t++) sum_win += (double)t * t;
    double exact_total = dtw * sum_all / sum_win;
    double md, ge;
    double sk_total = run_sketch(384, 1024, 30, Y, 0, N, &md, &ge);
    printf("exact_incremental_rls_n20000_extrapolated %.1f s\n", exact_total);
    printf("rls_sketch_n20000_near256_batch1024 %.2f s\n", sk_total);
    printf("rls_sketch_n20000_mean_dict %.1f points\n", md);
    printf("rls_speedup_vs_exact_n20000 %.0f x\n", exact_total / sk_total);
    free(X), free(Y);
    return 0;
}
