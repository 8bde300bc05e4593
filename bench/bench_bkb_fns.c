/* bkb regret against exact GP-UCB on standard test functions, over many seeds
 * (docs/bkb.md, "Regret in higher dimensions (and lambda)").
 *
 *   bench_bkb_fns FUNC [A] [T] [SEEDS] [SIGMA] [QBAR] [MODE] [ALGO]
 *     FUNC   branin (d 2), hartmann4, hartmann6, ackley5, levy6, rosenbrock4, ...
 *            (ackleyD, levyD, rosenbrockD for any D in 2..16)
 *     A      random arms, uniform in the function's box           (default 3000)
 *     T      rounds                                                (default 300)
 *     SEEDS  seeds 1..SEEDS: each draws its own arms and noise      (default 20)
 *     SIGMA  gaussian kernel width on the unit cube                 (default 0.3)
 *     QBAR   bkb's qbar; `default` leaves the operator's default    (default `default`)
 *     MODE   regret: one row per seed and the totals;
 *            diag: per round, bkb's mu, sigma and beta against the exact
 *            posterior on bkb's own history (same arms pulled, same rewards);
 *            exact2: exact GP-UCB against itself started from other random
 *            init arms (the spread of the per-seed ratio without any approximation);
 *            tiny: exact GP-UCB against itself with every reward moved by 1e-12
 *     ALGO   bkb (default) or bbkb (batch ratio 2)
 *
 * Rewards are standardised over the arms (mean 0, sd 1, larger is better) plus
 * N(0, 0.1^2) noise; lambda 0.01, noise_var 0.01, F = 1, delta = 0.5. Exact
 * GP-UCB uses the same kernel, lambda and beta formula (beta multiplies sigma,
 * docs/bkb.md) and plays the same `init` random arms as the operator did, so a
 * seed's ratio measures the algorithms, not the luck of the first arms.
 * Environment: BKB_LAMBDA sets lambda; BKB_OFFSET adds a constant to every
 * reward (uncentred rewards, e.g. negated losses; regret is unchanged).
 * The operator is driven in-process through its vtable (streaming mode).
 * Rows: bench/rows_bkb.py (bench/run bkb_fns). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../engine/rng.h"
#include "../operators/bkb.h"
#include "../tests/testfns.h"

enum { DMAX = 16 };

static int D = 6;
static double SIGMA = 0.3;
static const double NVAR = 0.01;
static double LAMBDA = 0.01;
static const char *FUNC = "hartmann6";

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

/* ---- test functions, minimised on their usual box; u in [0, 1]^D ---- */

static double branin(const double *u)
{
    return ink_branin(u);
}

static double hartmann(const double *u, int d)
{
    return -ink_hartmann_sum(u, d);
}

static double ackley(const double *u) /* box [-32.768, 32.768]^D */
{
    double s1 = 0, s2 = 0;
    for (int k = 0; k < D; k++) {
        double x = -32.768 + 65.536 * u[k];
        s1 += x * x;
        s2 += cos(2 * M_PI * x);
    }
    return -20 * exp(-0.2 * sqrt(s1 / D)) - exp(s2 / D) + 20 + M_E;
}

static double levy(const double *u) /* box [-10, 10]^D */
{
    double w[DMAX] = {0};
    for (int k = 0; k < D; k++) w[k] = 1 + (-10 + 20 * u[k] - 1) / 4;
    double s = pow(sin(M_PI * w[0]), 2);
    for (int k = 0; k + 1 < D; k++)
        s += (w[k] - 1) * (w[k] - 1) * (1 + 10 * pow(sin(M_PI * w[k] + 1), 2));
    s += (w[D - 1] - 1) * (w[D - 1] - 1) * (1 + pow(sin(2 * M_PI * w[D - 1]), 2));
    return s;
}

static double rosenbrock(const double *u) /* box [-2, 2]^D */
{
    double s = 0;
    for (int k = 0; k + 1 < D; k++) {
        double x = -2 + 4 * u[k], y = -2 + 4 * u[k + 1];
        s += 100 * (y - x * x) * (y - x * x) + (1 - x) * (1 - x);
    }
    return s;
}

static double objective(const double *u)
{
    if (!strncmp(FUNC, "branin", 6)) return branin(u);
    if (!strncmp(FUNC, "hartmann", 8)) return hartmann(u, D);
    if (!strncmp(FUNC, "ackley", 6)) return ackley(u);
    if (!strncmp(FUNC, "levy", 4)) return levy(u);
    return rosenbrock(u);
}

static int func_dim(const char *f)
{
    const char *names[] = {"branin", "hartmann", "ackley", "levy", "rosenbrock"};
    for (int i = 0; i < 5; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(f, names[i], n)) continue;
        if (i == 0) return f[n] ? -1 : 2;
        int d = atoi(f + n);
        if (i == 1) return d == 4 || d == 6 ? d : -1;
        return d >= 2 && d <= DMAX ? d : -1;
    }
    return -1;
}

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

/* Exact posterior maintained by sequential conditioning (bench/bench_bkb.c):
 * prior K/lambda, unit noise in KRR units; H holds one column per pull. */
struct exact {
    int A, t;
    const double *X;
    double *H, *mu, *var, *g;
    int *cnt;
};

static void exact_init(struct exact *e, const double *X, int A, int T)
{
    e->A = A, e->t = 0, e->X = X;
    e->H = malloc(sizeof(double) * A * (size_t)T);
    e->mu = calloc(A, sizeof(double));
    e->var = malloc(sizeof(double) * A);
    e->g = malloc(sizeof(double) * A);
    e->cnt = calloc(A, sizeof(int));
    if (!e->H || !e->mu || !e->var || !e->g || !e->cnt) {
        fprintf(stderr, "exact: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < A; i++) e->var[i] = 1 / LAMBDA;
}

static void exact_free(struct exact *e)
{
    free(e->H), free(e->mu), free(e->var), free(e->g), free(e->cnt);
}

static void exact_learn(struct exact *e, int j, double y)
{
    int A = e->A;
    e->cnt[j]++;
    for (int i = 0; i < A; i++) e->g[i] = rbf(e->X + (size_t)i * D, e->X + (size_t)j * D) / LAMBDA;
    if (e->t > 0)
        cblas_dgemv(CblasColMajor, CblasNoTrans, A, e->t, -1.0, e->H, A, e->H + j, A, 1.0, e->g, 1);
    double s = sqrt(e->g[j] + 1), r = y - e->mu[j];
    double *h = e->H + (size_t)e->t * A;
    for (int i = 0; i < A; i++) {
        h[i] = e->g[i] / s;
        e->mu[i] += h[i] * r / s;
        e->var[i] -= h[i] * h[i];
    }
    e->t++;
}

static double exact_beta(const struct exact *e)
{
    double sumcv = 0;
    for (int i = 0; i < e->A; i++)
        if (e->cnt[i]) sumcv += e->cnt[i] * e->var[i];
    return beta_ref(e->t, sumcv);
}

static int exact_argmax(const struct exact *e, double beta)
{
    int j = 0;
    double best = -INFINITY;
    for (int i = 0; i < e->A; i++) {
        double u = e->mu[i] + beta * sqrt(e->var[i] > 0 ? e->var[i] : 0);
        if (u > best) best = u, j = i;
    }
    return j;
}

/* Exact GP-UCB; the first n0 arms are the given ones (the operator's init). */
static double gpucb(const double *X, int A, const double *f, double fmax, int T,
                    const double *noise, const int *first, int n0)
{
    struct exact e;
    exact_init(&e, X, A, T);
    double regret = 0;
    for (int t = 0; t < T; t++) {
        int j = t < n0 ? first[t] : exact_argmax(&e, exact_beta(&e));
        regret += fmax - f[j];
        exact_learn(&e, j, f[j] + noise[t]);
    }
    exact_free(&e);
    return regret;
}

/* ---- the operator ---- */

struct op {
    void *st;
    struct ink_emitter em;
    struct ink_err err;
    int64_t arm, dict;
    double mu, sigma, beta;
};

static int grab(void *ctx, const struct ink_record *r)
{
    struct op *o = ctx;
    o->arm = (r->flags & INK_HAS_ARM) ? r->arm : -1;
    for (uint32_t i = 0; i < r->nfields; i++) {
        const char *n = r->fields[i].name;
        if (!strcmp(n, "dict")) o->dict = r->fields[i].v.i;
        if (!strcmp(n, "mu")) o->mu = r->fields[i].v.f;
        if (!strcmp(n, "sigma")) o->sigma = r->fields[i].v.f;
        if (!strcmp(n, "beta")) o->beta = r->fields[i].v.f;
    }
    return 0;
}

static double QBAR = 0; /* 0: the operator's default */

static double param_default(const char *name)
{
    for (const struct ink_param *p = ink_op_bkb.params; p->name; p++)
        if (!strcmp(p->name, name)) return atof(p->def);
    return NAN;
}

static void op_start(struct op *o, const char *path, int A, double ratio, int64_t opseed)
{
    struct ink_bkb_conf c;
    memset(&c, 0, sizeof c);
    c.arms.set = true;
    c.arms.file = (char *)path;
    c.arms.max_arms = A;
    c.arms.max_dim = D;
    c.kernel = (struct ink_kernel_conf){.set = true, .type = INK_K_GAUSSIAN, .sigma = SIGMA};
    c.lambda = LAMBDA, c.noise_var = NVAR, c.F = 1, c.delta = 0.5;
    c.qbar = QBAR > 0 ? QBAR : param_default("qbar");
    c.max_dict = (int64_t)param_default("max_dict");
    c.init = (int64_t)param_default("init");
    c.seed = opseed, c.arm_block = 1024, c.max_memory = 1ull << 31, c.lazy = true;
    if (ratio > 0) c.batch.set = true, c.batch.ratio = ratio;
    o->st = calloc(1, ink_op_bkb.state_size);
    o->em = (struct ink_emitter){grab, o};
    struct ink_op_init ini = {.name = "bench", .seed = (uint64_t)opseed};
    if (ink_op_bkb.init(o->st, &c, &ini, &o->err) != 0) {
        fprintf(stderr, "init: %s\n", o->err.msg);
        exit(1);
    }
    struct ink_record rec;
    memset(&rec, 0, sizeof rec);
    ink_op_bkb.process(o->st, &rec, &o->em, &o->err); /* start suggestion */
}

static void op_reward(struct op *o, int64_t j, double y)
{
    struct ink_record rec;
    memset(&rec, 0, sizeof rec);
    rec.flags = INK_HAS_ARM | INK_HAS_Y;
    rec.arm = j;
    rec.y = y;
    if (ink_op_bkb.process(o->st, &rec, &o->em, &o->err) != 0) {
        fprintf(stderr, "process: %s\n", o->err.msg);
        exit(1);
    }
}

static void op_predict(struct op *o, int64_t j)
{
    struct ink_record rec;
    memset(&rec, 0, sizeof rec);
    rec.flags = INK_HAS_OP | INK_HAS_ARM;
    rec.op = "predict";
    rec.op_len = 7;
    rec.arm = j;
    ink_op_bkb.query(o->st, &rec, &o->em, &o->err);
}

static void op_stop(struct op *o)
{
    ink_op_bkb.fini(o->st);
    free(o->st);
}

/* ---- one seed ---- */

struct arms {
    double *X, *f, *noise, fmax;
    int A, T;
    char path[64];
};

static void arms_make(struct arms *a, int A, int T, uint64_t seed)
{
    a->A = A, a->T = T;
    a->X = malloc(sizeof(double) * D * A);
    a->f = malloc(sizeof(double) * A);
    a->noise = malloc(sizeof(double) * T);
    struct ink_rng r;
    ink_rng_seed(&r, 1000 + seed);
    for (int i = 0; i < A * D; i++) a->X[i] = ink_rng_uniform(&r);
    double m = 0, s = 0, fmax = -INFINITY;
    for (int i = 0; i < A; i++) {
        a->f[i] = -objective(a->X + (size_t)i * D); /* larger is better */
        m += a->f[i];
    }
    m /= A;
    for (int i = 0; i < A; i++) s += (a->f[i] - m) * (a->f[i] - m);
    s = sqrt(s / A);
    for (int i = 0; i < A; i++) {
        a->f[i] = (a->f[i] - m) / s;
        if (a->f[i] > fmax) fmax = a->f[i];
    }
    a->fmax = fmax;
    /* BKB_OFFSET: rewards not centred (a constant added to every f; the
     * regret, fmax - f, is unchanged) */
    const char *off = getenv("BKB_OFFSET");
    if (off)
        for (int i = 0; i < A; i++) a->f[i] += atof(off);
    a->fmax += off ? atof(off) : 0;
    for (int t = 0; t < T; t++) a->noise[t] = sqrt(NVAR) * gauss(&r);
    snprintf(a->path, sizeof a->path, "/tmp/bench_bkb_fns_%d.csv", (int)getpid());
    FILE *fp = fopen(a->path, "w");
    if (!fp) {
        fprintf(stderr, "cannot write %s\n", a->path);
        exit(1);
    }
    for (int i = 0; i < A; i++)
        for (int k = 0; k < D; k++)
            fprintf(fp, "%.17g%c", a->X[(size_t)i * D + k], k + 1 < D ? ',' : '\n');
    fclose(fp);
}

static void arms_free(struct arms *a)
{
    remove(a->path);
    free(a->X), free(a->f), free(a->noise);
}

static int INIT;

static double run_op(const struct arms *a, double ratio, int64_t opseed, int *first, double *secs,
                     int64_t *dict)
{
    struct op o = {0};
    double t0 = now(), regret = 0;
    op_start(&o, a->path, a->A, ratio, opseed);
    for (int t = 0; t < a->T; t++) {
        int64_t j = o.arm;
        if (t < INIT) first[t] = (int)j;
        regret += a->fmax - a->f[j];
        op_reward(&o, j, a->f[j] + a->noise[t]);
    }
    *secs = now() - t0;
    *dict = o.dict;
    op_stop(&o);
    return regret;
}

/* Per round on bkb's own history: the operator's posterior against the exact one. */
static void diag(const struct arms *a, double ratio, int64_t opseed)
{
    struct op o = {0};
    struct exact e;
    exact_init(&e, a->X, a->A, a->T);
    op_start(&o, a->path, a->A, ratio, opseed);
    int A = a->A;
    double *mu = malloc(sizeof(double) * A), *sd = malloc(sizeof(double) * A);
    double *rat = malloc(sizeof(double) * A);
    printf("# t dict beta_op beta_ex max|dmu| q01(s~/s) q50 q99 max out1.5 pulled_max(s~/s) "
           "pick_op f_op pick_ex f_ex\n");
    double reg_op = 0, reg_ex = 0;
    int agree = 0;
    for (int t = 0; t < a->T; t++) {
        int64_t j = o.arm;
        double fo = a->f[j];
        int je = t < INIT ? (int)j : exact_argmax(&e, exact_beta(&e));
        reg_op += a->fmax - fo, reg_ex += a->fmax - a->f[je];
        agree += je == j;
        op_reward(&o, j, a->f[j] + a->noise[t]);
        exact_learn(&e, (int)j, a->f[j] + a->noise[t]);
        double beta_op = o.beta;
        int64_t dict = o.dict;
        int64_t next = o.arm;
        for (int i = 0; i < A; i++) {
            op_predict(&o, i);
            mu[i] = o.mu;
            sd[i] = o.sigma;
        }
        o.arm = next;
        double dmu = 0, out = 0, pmax = 0;
        for (int i = 0; i < A; i++) {
            double se = sqrt(e.var[i] > 0 ? e.var[i] : 0);
            rat[i] = sd[i] / se;
            if (fabs(mu[i] - e.mu[i]) > dmu) dmu = fabs(mu[i] - e.mu[i]);
            if (rat[i] > 1.5 || rat[i] < 1 / 1.5) out++;
            if (e.cnt[i] && rat[i] > pmax) pmax = rat[i];
        }
        int tt = t + 1;
        if (tt == 10 || tt == 25 || tt % 50 == 0) {
            /* quantiles by sorting a copy */
            for (int i = 1; i < A; i++) { /* insertion sort is fine for a few thousand */
                double v = rat[i];
                int k = i - 1;
                while (k >= 0 && rat[k] > v) rat[k + 1] = rat[k], k--;
                rat[k + 1] = v;
            }
            printf("%d %lld %.3f %.3f %.3g %.3f %.3f %.3f %.3f %.0f %.3f %lld %.3f %d %.3f\n", tt,
                   (long long)dict, beta_op, exact_beta(&e), dmu, rat[A / 100], rat[A / 2],
                   rat[A - A / 100 - 1], rat[A - 1], out, pmax, (long long)next, a->f[next],
                   exact_argmax(&e, exact_beta(&e)), a->f[exact_argmax(&e, exact_beta(&e))]);
            fflush(stdout);
        }
    }
    printf("# regret on bkb's history: bkb %.2f, exact's choices %.2f; same pick %d of %d\n",
           reg_op, reg_ex, agree, a->T);
    free(mu), free(sd), free(rat);
    exact_free(&e);
    op_stop(&o);
}

int main(int argc, char **argv)
{
    FUNC = argc > 1 ? argv[1] : "hartmann6";
    D = func_dim(FUNC);
    int A = argc > 2 ? atoi(argv[2]) : 3000, T = argc > 3 ? atoi(argv[3]) : 300;
    int seeds = argc > 4 ? atoi(argv[4]) : 20;
    if (argc > 5) SIGMA = atof(argv[5]);
    if (argc > 6 && strcmp(argv[6], "default")) QBAR = atof(argv[6]);
    const char *mode = argc > 7 ? argv[7] : "regret";
    const char *algo = argc > 8 ? argv[8] : "bkb";
    if (D < 0 || A < 2 || T < 1 || seeds < 1 || !(SIGMA > 0) ||
        (strcmp(mode, "regret") && strcmp(mode, "diag") && strcmp(mode, "exact2") &&
         strcmp(mode, "tiny")) ||
        (strcmp(algo, "bkb") && strcmp(algo, "bbkb"))) {
        fprintf(stderr, "usage: bench_bkb_fns FUNC [A] [T] [SEEDS] [SIGMA] [QBAR|default] "
                        "[regret|diag|exact2|tiny] [bkb|bbkb]\n");
        return 2;
    }
    const char *lam = getenv("BKB_LAMBDA");
    if (lam) LAMBDA = atof(lam);
    openblas_set_num_threads(1);
    INIT = (int)param_default("init");
    double ratio = strcmp(algo, "bbkb") ? 0 : 2;
    char pre[96];
    snprintf(pre, sizeof pre, "%s_%s_A%d_T%d", algo, FUNC, A, T);
    double Rop = 0, Rex = 0, worst = 0, Sop = 0;
    int first[64];
    for (int s = 1; s <= seeds; s++) {
        struct arms a;
        arms_make(&a, A, T, (uint64_t)s);
        if (!strcmp(mode, "diag")) {
            printf("# %s seed %d\n", pre, s);
            diag(&a, ratio, 5 + s);
            arms_free(&a);
            continue;
        }
        if (!strcmp(mode, "exact2") ||
            !strcmp(mode, "tiny")) { /* exact against exact, other init arms */
            struct ink_rng r;
            int other[64];
            ink_rng_seed(&r, 77 + (uint64_t)s);
            for (int k = 0; k < INIT && k < 64; k++) {
                first[k] = (int)(ink_rng_uniform(&r) * A);
                other[k] = (int)(ink_rng_uniform(&r) * A);
            }
            double r1 = gpucb(a.X, A, a.f, a.fmax, T, a.noise, first, INIT < 64 ? INIT : 64);
            if (!strcmp(mode, "tiny")) { /* same init arms, rewards moved by 1e-12 */
                memcpy(other, first, sizeof other);
                for (int t = 0; t < T; t++) a.noise[t] += 1e-12;
            }
            double r2 = gpucb(a.X, A, a.f, a.fmax, T, a.noise, other, INIT < 64 ? INIT : 64);
            printf("%s_seed%d_exact_vs_exact %.3f x (regret %.2f / %.2f)\n", pre, s, r2 / r1, r2,
                   r1);
            Rop += r2, Rex += r1;
            if (r2 / r1 > worst) worst = r2 / r1;
            arms_free(&a);
            continue;
        }
        double secs;
        int64_t dict;
        double ro = run_op(&a, ratio, 5 + s, first, &secs, &dict);
        double re = gpucb(a.X, A, a.f, a.fmax, T, a.noise, first, INIT < 64 ? INIT : 64);
        printf("%s_seed%d_ratio %.3f x (regret %.2f / exact %.2f, dict %lld, %.2f s)\n", pre, s,
               ro / re, ro, re, (long long)dict, secs);
        fflush(stdout);
        Rop += ro, Rex += re, Sop += secs;
        if (ro / re > worst) worst = ro / re;
        arms_free(&a);
    }
    if (strcmp(mode, "diag")) {
        printf("%s_total_ratio %.3f x\n", pre, Rop / Rex);
        printf("%s_worst_seed_ratio %.3f x\n", pre, worst);
        printf("%s_op_seconds %.2f s\n", pre, Sop);
    }
    return 0;
}
