/* rls_sketch throughput (docs/algorithms.md 1.9 B1): arrivals per second at d = 8,
 * gaussian kernel, for dictionaries near 64 / 256 / 1024 points, and the
 * speed-up over exact incremental leverage scores. Prints `name value unit`.
 *
 *   bench_rls [n]                   n arrivals per row (default 20000), then the
 *                                   comparison with exact RLS and KRR at n = 20,000
 *   bench_rls n max_dict batch [g [eigen|cholesky [slack [predict]]]]  one throughput row
 *   bench_rls rss n1 n2 [predict]   peak RSS after n1 and after n2 arrivals
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
#include <sys/resource.h>
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

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
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
    int64_t reest, refreshes;
};

static int count(void *ctx, const struct ink_record *r)
{
    struct sink *s = ctx;
    for (uint32_t i = 0; i < r->nfields; i++) {
        if (!strcmp(r->fields[i].name, "dict")) s->dict_sum += (double)r->fields[i].v.i;
        if (!strcmp(r->fields[i].name, "gamma_eff")) s->gamma_eff = r->fields[i].v.f;
        if (!strcmp(r->fields[i].name, "reestimations")) s->reest = r->fields[i].v.i;
        if (!strcmp(r->fields[i].name, "refreshes")) s->refreshes = r->fields[i].v.i;
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

static int rescore = INK_RLS_EIGEN; /* rls_sketch `rescore` for the next run */
static double slack;                /* rls_sketch `slack` (main sets its default) */

static struct ink_rls_conf sketch_conf(int max_dict, int batch, double gamma)
{
    struct ink_rls_conf c = {0};
    c.rescore = rescore;
    c.slack = slack;
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
    return c;
}

static void *sketch_init(const struct ink_rls_conf *c)
{
    void *st = calloc(1, ink_op_rls_sketch.state_size);
    struct ink_err err = {0};
    if (ink_op_rls_sketch.init(st, c, NULL, &err)) {
        fprintf(stderr, "init: %s\n", err.msg);
        exit(1);
    }
    return st;
}

/* Seconds for n arrivals (after `warm` unmeasured ones); *mean_dict. */
static const double *targets_y; /* with predict: y for each row of X (run_sketch) */

static double run_sketch(int max_dict, int batch, double gamma, const double *X, long warm, long n,
                         double *mean_dict, double *gamma_eff)
{
    struct ink_rls_conf c = sketch_conf(max_dict, batch, gamma);
    c.rescore = rescore;
    if (targets_y) {
        c.predict = true;
        c.mu = gamma;
    }
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
        if (targets_y) {
            r.flags = INK_HAS_X | INK_HAS_Y;
            r.y = targets_y[i];
        }
        if (ink_op_rls_sketch.process(st, &r, &em, &err)) {
            fprintf(stderr, "process: %s\n", err.msg);
            exit(1);
        }
    }
    double dt = now() - t0;
    *mean_dict = sk.dict_sum / (double)sk.n;
    struct ink_record q = {.flags = INK_HAS_OP, .op = "dict", .op_len = 4};
    ink_op_rls_sketch.query(st, &q, &em, &err);
    fprintf(stderr, "max_dict %d batch %d: %lld re-estimations, %lld refreshes in %ld arrivals\n",
            max_dict, batch, (long long)sk.reest, (long long)sk.refreshes, warm + n);
    *gamma_eff = sk.gamma_eff;
    ink_op_rls_sketch.fini(st);
    free(st);
    return dt;
}

/* Exact incremental RLS of each arrival: tau_t = s/(s+gamma), s = k - |L^{-1} k|^2
 * with L the Cholesky factor of K_{t-1} + gamma I grown by one row per step.
 * Returns the seconds for steps [t0, t1) (the O(t^2) step at the end of a
 * 20,000 stream needs 3.2 GB, so the caller extrapolates from a window).
 * With y: tau[t] and the exact prequential KRR prediction with mu = gamma,
 * yhat[t] = k^T (K_{t-1} + gamma I)^{-1} y_{<t} = (L^{-1} k) . (L^{-1} y)_{<t},
 * an O(t) addition to the step (w holds L^{-1} y). */
static double exact_window(const double *X, long t0, long t1, double gamma, double sigma,
                           const double *y, double *tau, double *yhat)
{
    double *w = y ? malloc(sizeof(double) * t1) : NULL;
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
        if (y) {
            double pred = t > 0 ? cblas_ddot((int)t, k, 1, w, 1) : 0;
            tau[t] = s / (s + gamma);
            yhat[t] = pred;
            w[t] = (y[t] - pred) / L[t + t * t1];
        }
    }
    double dt = now() - start;
    free(L), free(k), free(w);
    if (sum < 0) printf("impossible\n");
    return dt;
}

struct capture {
    double *tau, *yhat, gamma_eff;
    long n;
};

static int capture(void *ctx, const struct ink_record *r)
{
    struct capture *c = ctx;
    for (uint32_t i = 0; i < r->nfields; i++) {
        if (!strcmp(r->fields[i].name, "tau")) c->tau[c->n] = r->fields[i].v.f;
        if (!strcmp(r->fields[i].name, "yhat")) c->yhat[c->n] = r->fields[i].v.f;
        if (!strcmp(r->fields[i].name, "gamma_eff")) c->gamma_eff = r->fields[i].v.f;
    }
    c->n++;
    return 0;
}

/* A smooth target on N(0, I_8) inputs, plus N(0, 0.1^2) noise. */
static double *make_targets(const double *X, long n, uint64_t seed)
{
    struct ink_rng rng;
    ink_rng_seed(&rng, seed);
    double *y = malloc(sizeof(double) * (size_t)n);
    for (long t = 0; t < n; t++) {
        const double *x = X + t * D;
        y[t] = sin(x[0]) + 0.5 * cos(x[1] + x[2]) + 0.3 * x[3] * x[4] + 0.1 * gauss(&rng);
    }
    return y;
}

/* Peak RSS after n1 and after n2 arrivals (near 256 members, batch 1024;
 * `predict` adds KRR, about 6x slower per arrival): inputs are drawn one at
 * a time, so nothing grows with the stream except what the operator itself
 * might allocate. */
static int rss_mode(long n1, long n2, bool predict)
{
    struct ink_rls_conf c = sketch_conf(384, 1024, 30);
    c.predict = predict;
    c.mu = 30;
    void *st = sketch_init(&c);
    long rss0 = peak_rss_kib();
    struct sink sk = {0};
    struct ink_emitter em = {count, &sk};
    struct ink_rng rng;
    ink_rng_seed(&rng, 3);
    double x[D];
    struct ink_record r = {0};
    r.flags = INK_HAS_X | INK_HAS_Y;
    r.dim = D;
    r.x = x;
    struct ink_err err = {0};
    double t0 = now();
    for (long t = 1; t <= n2; t++) {
        for (int a = 0; a < D; a++) x[a] = gauss(&rng);
        r.y = sin(x[0]) + 0.5 * cos(x[1] + x[2]) + 0.3 * x[3] * x[4] + 0.1 * gauss(&rng);
        if (ink_op_rls_sketch.process(st, &r, &em, &err)) {
            fprintf(stderr, "process: %s\n", err.msg);
            return 1;
        }
        if (t == n1 || t == n2) {
            printf("rls_peak_rss_after_%ld %ld KiB\n", t, peak_rss_kib());
            printf("rls_mean_dict_to_%ld %.1f points\n", t, sk.dict_sum / (double)sk.n);
            printf("rls_seconds_to_%ld %.1f s\n", t, now() - t0);
            fflush(stdout);
        }
    }
    printf("rls_peak_rss_after_init %ld KiB\n", rss0);
    printf("rls_gamma_eff_at_end %.4g -\n", sk.gamma_eff);
    ink_op_rls_sketch.fini(st);
    free(st);
    return 0;
}

/* Accuracy on a stream's first w1 points: the sketch (gamma = mu = 30) with
 * predict on against the exact scores and exact prequential KRR.
 * alpha = (1+eps)/(1-eps) = 3. */
static int accuracy(const double *Y, const double *y, long w1, const double *tau,
                    const double *yhat, int max_dict, int batch, const char *tag)
{
    struct ink_rls_conf c = sketch_conf(max_dict, batch, 30);
    c.predict = true;
    c.mu = 30;
    void *st = sketch_init(&c);
    struct capture cap = {malloc(sizeof(double) * w1), malloc(sizeof(double) * w1), 0, 0};
    struct ink_emitter em = {capture, &cap};
    struct ink_record r = {0};
    r.flags = INK_HAS_X | INK_HAS_Y;
    r.dim = D;
    struct ink_err err = {0};
    for (long t = 0; t < w1; t++) {
        r.x = Y + t * D;
        r.y = y[t];
        if (ink_op_rls_sketch.process(st, &r, &em, &err)) {
            fprintf(stderr, "process: %s\n", err.msg);
            return 1;
        }
    }
    long in_band = 0, skip = 200;
    double se = 0, se_exact = 0, worst_lo = 1e300, worst_hi = 0;
    for (long t = 0; t < w1; t++) {
        double ratio = cap.tau[t] / tau[t];
        in_band += ratio >= 1.0 / 3 - 1e-12 && ratio <= 1 + 1e-12;
        worst_lo = fmin(worst_lo, ratio), worst_hi = fmax(worst_hi, ratio);
        if (t >= skip) {
            se += (cap.yhat[t] - y[t]) * (cap.yhat[t] - y[t]);
            se_exact += (yhat[t] - y[t]) * (yhat[t] - y[t]);
        }
    }
    printf("rls%s_band_share_n%ld %.4f -\n", tag, w1, (double)in_band / (double)w1);
    printf("rls%s_band_ratio_min %.4f -\n", tag, worst_lo);
    printf("rls%s_band_ratio_max %.4f -\n", tag, worst_hi);
    printf("rls%s_krr_mse_sketch_n%ld %.5f -\n", tag, w1, se / (double)(w1 - skip));
    printf("rls%s_krr_mse_exact_n%ld %.5f -\n", tag, w1, se_exact / (double)(w1 - skip));
    printf("rls%s_krr_mse_ratio %.4f -\n", tag, se / se_exact);
    printf("rls%s_accuracy_gamma_eff %.4g -\n", tag, cap.gamma_eff);
    ink_op_rls_sketch.fini(st);
    free(st), free(cap.tau), free(cap.yhat);
    return 0;
}

int main(int argc, char **argv)
{
    openblas_set_num_threads(1);
    for (const struct ink_param *p = ink_rls_params; p->name; p++)
        if (!strcmp(p->name, "slack")) slack = atof(p->def); /* the operator's default */
    if (argc >= 4 && !strcmp(argv[1], "rss"))
        return rss_mode(atol(argv[2]), atol(argv[3]), argc > 4 && !strcmp(argv[4], "predict"));
    long n = argc > 1 ? atol(argv[1]) : 20000;
    long warm = 2000;
    double *X = make_data(warm + n, 7);
    if (argc > 3) { /* one row: bench_rls n max_dict batch [gamma] */
        int md0 = atoi(argv[2]), b0 = atoi(argv[3]);
        double g0 = argc > 4 ? atof(argv[4]) : 1e-3, md, ge;
        if (argc > 5 && !strcmp(argv[5], "cholesky")) rescore = INK_RLS_CHOLESKY;
        if (argc > 6) slack = atof(argv[6]);
        double *y = argc > 7 && !strcmp(argv[7], "predict") ? make_targets(X, warm + n, 5) : NULL;
        targets_y = y;
        const char *tag = y ? "_predict" : "";
        double dt = run_sketch(md0, b0, g0, X, warm, n, &md, &ge);
        printf("rls_d8_dict%d_batch%d%s_arrivals %.0f 1/s\n", md0, b0, tag, n / dt);
        printf("rls_d8_dict%d_batch%d%s_mean_dict %.1f points\n", md0, b0, tag, md);
        printf("rls_d8_dict%d_batch%d%s_gamma_eff %.4g -\n", md0, b0, tag, ge);
        free(X), free(y);
        return 0;
    }
    /* gamma per row puts the dictionary near 64 / 256 / 1024 for this stream
     * (N(0, I_8), sigma 2) without the cap binding; max_dict leaves room. */
    static const int targets[] = {64, 256, 1024};
    static const double gammas[] = {250, 30, 4};
    /* The default (batch 0) keeps ~3x fewer points than batch 1024 at the
     * same gamma (members are thinned at every arrival), so its rows use the
     * gamma that puts its own dictionary near the target. */
    static const double gammas0[] = {300, 50, 6};
    for (int s = 0; s < 3; s++) {
        for (int pr = 0; pr < 2; pr++) {
            double md, ge, *yy = pr ? make_targets(X, warm + n, 5) : NULL;
            targets_y = yy;
            long nn = targets[s] > 256 ? n / 4 : n;
            double dt = run_sketch(targets[s] * 3 / 2, 0, gammas0[s], X, warm, nn, &md, &ge);
            const char *tag = pr ? "_predict" : "";
            printf("rls_d8_near%d_default%s_arrivals %.0f 1/s\n", targets[s], tag, nn / dt);
            printf("rls_d8_near%d_default%s_mean_dict %.1f points\n", targets[s], tag, md);
            fflush(stdout);
            targets_y = NULL;
            free(yy);
        }
        for (int b = 0; b < 3; b++) { /* batch 1, 1024, 1024 with rescore: cholesky */
            int batch = b == 0 ? 1 : 1024;
            const char *tag = b == 2 ? "chol" : "";
            if (batch == 1 && targets[s] > 256) continue; /* O(m^3) per arrival: minutes */
            long nn = batch == 1 ? n / (targets[s] > 64 ? 100 : 10) : n;
            double md, ge;
            rescore = b == 2 ? INK_RLS_CHOLESKY : INK_RLS_EIGEN;
            double dt = run_sketch(targets[s] * 3 / 2, batch, gammas[s], X, warm, nn, &md, &ge);
            printf("rls_d8_near%d_batch%d%s_arrivals %.0f 1/s\n", targets[s], batch, tag, nn / dt);
            printf("rls_d8_near%d_batch%d%s_mean_dict %.1f points\n", targets[s], batch, tag, md);
            fflush(stdout);
        }
        rescore = INK_RLS_EIGEN;
    }
    /* Exact incremental leverage scores at n = 20,000: time a window of steps
     * at t in [w0, w1) and scale by sum t^2 (the step cost is O(t^2)). */
    long N = 20000, w0 = 3000, w1 = 3200;
    double *Y = make_data(N, 9), *y = make_targets(Y, w1, 10);
    double *tau = malloc(sizeof(double) * w1), *yhat = malloc(sizeof(double) * w1);
    /* The same gamma (30) and sigma (2) as the sketch run below, mu = gamma. */
    double dtw = exact_window(Y, w0, w1, 30, 2.0, y, tau, yhat);
    double sum_all = 0, sum_win = 0;
    for (long t = 1; t < N; t++) sum_all += (double)t * t;
    for (long t = w0; t < w1; t++) sum_win += (double)t * t;
    double exact_total = dtw * sum_all / sum_win;
    double md, ge;
    double sk_total = run_sketch(384, 1024, 30, Y, 0, N, &md, &ge), md0;
    double sk0 = run_sketch(1024, 0, 30, Y, 0, N, &md0, &ge);
    printf("rls_sketch_n20000_default %.2f s\n", sk0);
    printf("rls_sketch_n20000_default_mean_dict %.1f points\n", md0);
    printf("rls_speedup_default_vs_exact_n20000 %.0f x\n", exact_total / sk0);
    printf("exact_incremental_rls_n20000_extrapolated %.1f s\n", exact_total);
    printf("rls_sketch_n20000_near256_batch1024 %.2f s\n", sk_total);
    printf("rls_sketch_n20000_mean_dict %.1f points\n", md);
    printf("exact_window_steps_%ld_%ld %.3f s\n", w0, w1, dtw);
    printf("rls_speedup_vs_exact_n20000 %.0f x\n", exact_total / sk_total);

    accuracy(Y, y, w1, tau, yhat, 384, 1024, "");
    accuracy(Y, y, w1, tau, yhat, 1024, 0, "_default");
    free(tau), free(yhat), free(y);
    free(X), free(Y);
    return 0;
}
