/* The DISQUEAK merge of two rls_sketch dictionaries of 256 points, d = 8
 * (issue 14; docs/rls_sketch.md#publish-and-merge), against rebuilding one
 * sketch. Prints `name value unit`.
 *
 *   bench_rls_merge [reps [sketches]]
 *
 * Two (or `sketches`, at most 8) sketches with default settings (batch 0, slack 0.1, qbar 8, eps
 * 0.5; gaussian sigma 2, gamma 50, max_dict 1024) are fed disjoint N(0, I) streams until each
 * dictionary holds 256 points; each publishes its partial (the real emission path). Timed, CPU time
 * of the process, BLAS on one thread, median of `reps` (default 9): merge      parse both partials
 * and rebuild the merged sketch (what the merge operator runs on the first query after a partial
 * changed) union      one fresh sketch fed the union's 512 points stream     one fresh sketch fed
 * both original streams (all the points the two sketches saw: the alternative when the data can be
 * moved). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/rng.h"
#include "../operators/partial.h"
#include "../operators/rls_merge.h"
#include "../operators/rls_sketch.h"

void openblas_set_num_threads(int);

enum { D = 8, TARGET = 256, MAXN = 200000, MAXS = 8 };

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
    int64_t dict;
    uint8_t *part;
    uint32_t plen;
};

static int grab(void *ctx, const struct ink_record *r)
{
    struct sink *s = ctx;
    for (uint32_t i = 0; i < r->nfields; i++) {
        const struct ink_field *f = &r->fields[i];
        if (!strcmp(f->name, "dict")) s->dict = f->v.i;
        if (!strcmp(f->name, "partial") && f->v.type == INK_V_RAW) {
            free(s->part);
            s->part = malloc(f->v.raw.n);
            memcpy(s->part, f->v.raw.p, f->v.raw.n);
            s->plen = f->v.raw.n;
        }
    }
    return 0;
}

static struct ink_rls_conf conf(bool publish)
{
    struct ink_rls_conf c = {0};
    c.kernel.set = true;
    c.kernel.type = INK_K_GAUSSIAN;
    c.kernel.sigma = 2.0;
    c.dim = D;
    c.gamma = 50;
    c.eps = 0.5;
    c.qbar = 8;
    c.max_dict = 1024;
    c.slack = 0.1; /* the defaults: batch 0, slack 0.1, est_scale 1 - eps */
    c.seed = 1;
    c.mu = 0.1;
    c.shrink = true;
    c.publish = publish ? (int64_t)1 << 40 : 0;
    return c;
}

static void *sketch(const struct ink_rls_conf *c, uint64_t seed)
{
    void *st = calloc(1, ink_op_rls_sketch.state_size);
    struct ink_err err = {0};
    struct ink_op_init ini = {.name = "sk", .seed = seed};
    if (ink_op_rls_sketch.init(st, c, &ini, &err)) {
        fprintf(stderr, "init: %s\n", err.msg);
        exit(1);
    }
    return st;
}

static void feed(void *st, const double *x, struct sink *s)
{
    struct ink_record r = {0};
    r.flags = INK_HAS_X;
    r.dim = D;
    r.x = x;
    struct ink_emitter em = {grab, s};
    struct ink_err err = {0};
    if (ink_op_rls_sketch.process(st, &r, &em, &err)) {
        fprintf(stderr, "process: %s\n", err.msg);
        exit(1);
    }
}

static void done(void *st)
{
    ink_op_rls_sketch.fini(st);
    free(st);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 9;
    int S = argc > 2 ? atoi(argv[2]) : 2;
    if (reps < 1) reps = 1;
    if (S < 2 || S > MAXS) S = 2;
    openblas_set_num_threads(1);
    double *X = malloc(sizeof(double) * D * MAXN * MAXS);
    struct ink_rng g;
    ink_rng_seed(&g, 2017);
    for (long i = 0; i < (long)D * MAXN * S; i++) X[i] = gauss(&g);
    /* two sketches on disjoint streams, each until it holds 256 points */
    struct ink_rls_conf cp = conf(true), c1 = conf(false);
    struct sink part[MAXS] = {{0}};
    long used[MAXS] = {0};
    for (int k = 0; k < S; k++) {
        void *st = sketch(&cp, 11 + k);
        const double *Xk = X + (size_t)k * MAXN * D;
        while (used[k] < MAXN && part[k].dict != TARGET) feed(st, Xk + used[k]++ * D, &part[k]);
        struct ink_emitter em = {grab, &part[k]};
        struct ink_err err = {0};
        ink_op_rls_sketch.flush(st, &em, &err);
        done(st);
        if (part[k].dict != TARGET || !part[k].part) {
            fprintf(stderr, "sketch %d: dictionary %lld after %ld points\n", k,
                    (long long)part[k].dict, used[k]);
            return 1;
        }
    }
    /* the merge, as merge.c runs it */
    struct ink__rlsm m;
    memset(&m, 0, sizeof m);
    struct ink__rlsm_conf mc = {.d = D, .max_dict = 1024, .qbar = 8, .gamma = 50, .eps = 0.5};
    struct ink_err err = {0};
    if (ink_kernel_init(&mc.kern, &cp.kernel, D, &err)) return 1;
    struct ink_carve cv = {NULL, 0, 8};
    ink__rlsm_layout(&m, &mc, &cv);
    void *mem = ink_arena_alloc(ink_carve_size(&cv), 8, "bench", &err);
    cv = (struct ink_carve){mem, 0, 8};
    ink__rlsm_layout(&m, &mc, &cv);
    double *tm = malloc(sizeof(double) * reps), *tu = malloc(sizeof(double) * reps);
    double *ts = malloc(sizeof(double) * reps), *sdict = malloc(sizeof(double) * reps);
    struct ink__rls_part pr[MAXS];
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int k = 0; k < S; k++) {
            struct ink__partial pt;
            if (ink__partial_parse(part[k].part, part[k].plen, &pt, &err) ||
                ink__rls_partial_parse(pt.body, pt.body_len, &pr[k], &err) ||
                ink__rlsm_admit(&m, &pr[k], k ? &pr[0] : NULL, &err)) {
                fprintf(stderr, "partial %d: %s\n", k, err.msg);
                return 1;
            }
        }
        if (ink__rlsm_rebuild(&m, pr, S, 99, &err)) {
            fprintf(stderr, "merge: %s\n", err.msg);
            return 1;
        }
        tm[r] = now() - t0;
    }
    int merged = m.m;
    double mdeff = m.dhat;
    /* one sketch over the union's points */
    double *U = malloc(sizeof(double) * D * S * TARGET);
    for (int k = 0; k < S; k++) memcpy(U + (size_t)k * TARGET * D, pr[k].X, 8 * TARGET * D);
    struct sink su = {0}, ss = {0};
    for (int r = 0; r < reps; r++) {
        void *st = sketch(&c1, 21);
        double t0 = now();
        for (int i = 0; i < S * TARGET; i++) feed(st, U + (size_t)i * D, &su);
        tu[r] = now() - t0;
        done(st);
    }
    /* one sketch over both original streams */
    for (int r = 0; r < reps; r++) {
        void *st = sketch(&c1, 21 + (uint64_t)r);
        double t0 = now();
        for (int k = 0; k < S; k++)
            for (long i = 0; i < used[k]; i++) feed(st, X + ((size_t)k * MAXN + i) * D, &ss);
        ts[r] = now() - t0;
        sdict[r] = (double)ss.dict;
        done(st);
    }
    double a = median(tm, reps), b = median(tu, reps), c = median(ts, reps);
    long pts = 0;
    for (int k = 0; k < S; k++) pts += used[k];
    printf("rls_merge_sketches %d -\n", S);
    printf("rls_merge_points_per_sketch %ld+%ld%s points\n", used[0], used[1], S > 2 ? "+..." : "");
    printf("rls_merge_points_total %ld points\n", pts);
    printf("rls_merge_partial_bytes %u+%u%s bytes\n", part[0].plen, part[1].plen,
           S > 2 ? "+..." : "");
    printf("rls_merge_time %.6f s\n", a);
    printf("rls_merge_dict %d points\n", merged);
    printf("rls_merge_deff %.3f -\n", mdeff);
    printf("rls_union_sketch_time %.6f s\n", b);
    printf("rls_union_sketch_dict %lld points\n", (long long)su.dict);
    printf("rls_stream_sketch_time %.6f s\n", c);
    printf("rls_stream_sketch_dict %.0f points\n", median(sdict, reps)); /* median over seeds */
    printf("rls_merge_gamma_eff %g -\n", m.gamma_eff);
    printf("rls_merge_vs_union_speedup %.3f x\n", b / a);
    printf("rls_merge_vs_stream_speedup %.3f x\n", c / a);
    free(mem);
    free(X);
    free(U);
    free(tm);
    free(tu);
    free(ts);
    free(sdict);
    for (int k = 0; k < S; k++) free(part[k].part);
    return 0;
}
