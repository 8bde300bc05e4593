/* ecdf benchmarks (docs/algorithms.md 3.7, 4.1, 4.4). Prints `name value unit`.
 *
 *   bench_ecdf [scale]     scale multiplies every size (default 1)
 *
 * Rows: D&C ECDF at every sample point (N = 1e6, d = 2 and 3) against the
 * naive O(N^2 d) count (timed at N = 2e4, where both run, and extrapolated
 * quadratically to 1e6); KLL records/s through the operator's process (the F
 * of every record is a rank query, then the update; median and best of 5
 * runs with the node's query views as the engine gives them, and one run
 * without; the same for 3 keys fed round-robin, with and without), and the
 * sketch's bare updates/s and rank queries/s; Fenwick d = 3 with 64 nodes per
 * axis, updates/s and node queries/s, against a plain count array (O(1) update, a query sums the
 * prefix box).
 *
 * BENCH_ECDF_DUMP=prefix writes, for d = 2 and 3, the naive-size points
 * (prefix_dD.points, n x d doubles) and the D&C counts (prefix_dD.F, n doubles)
 * so that bench/rows_ecdf.py can time numpy's brute force on the same points
 * and check it agrees. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/rng.h"
#include "../operators/dominance.h"
#include "../operators/ecdf.h"
#include "../operators/fenwick.h"
#include "../operators/kll.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double gauss(struct ink_rng *r)
{
    double u = ink_rng_uniform(r), v = ink_rng_uniform(r);
    return sqrt(-2 * log1p(-u)) * cos(2 * M_PI * v);
}

static void naive(const double *P, size_t n, int d, double *F)
{
    for (size_t t = 0; t < n; t++) {
        double c = 0;
        for (size_t s = 0; s < n; s++) {
            int k = 0;
            while (k < d && P[s * d + k] <= P[t * d + k]) k++;
            c += k == d;
        }
        F[t] = c;
    }
}

static void bench_dc(int d, size_t N, size_t Nn)
{
    struct ink_rng r;
    ink_rng_seed(&r, 42);
    double *P = malloc(sizeof(double) * N * d), *F = malloc(sizeof(double) * N);
    for (size_t i = 0; i < N * d; i++) P[i] = gauss(&r);
    struct ink__dom D;
    void *mem = malloc(ink__dom_bytes(d, 2 * N));
    ink__dom_init(&D, d, 2 * N, mem);
    double t0 = now();
    ink__dom_run(&D, P, NULL, N, P, N, F);
    double tdc = now() - t0;
    printf("ecdf_dc_d%d_n%zu_seconds %.3f s\n", d, N, tdc);
    /* naive on the first Nn points, checked against the D&C on the same points */
    double *Fn = malloc(sizeof(double) * Nn), *Fd = malloc(sizeof(double) * Nn);
    t0 = now();
    naive(P, Nn, d, Fn);
    double tn = now() - t0;
    t0 = now();
    ink__dom_run(&D, P, NULL, Nn, P, Nn, Fd);
    double tsmall = now() - t0;
    size_t bad = 0;
    for (size_t i = 0; i < Nn; i++) bad += Fn[i] != Fd[i];
    printf("ecdf_naive_d%d_n%zu_seconds %.3f s\n", d, Nn, tn);
    printf("ecdf_dc_d%d_n%zu_seconds %.4f s\n", d, Nn, tsmall);
    printf("ecdf_dc_d%d_mismatches_vs_naive %zu count\n", d, bad);
    const char *dump = getenv("BENCH_ECDF_DUMP");
    if (dump) {
        char path[4096];
        snprintf(path, sizeof path, "%s_d%d.points", dump, d);
        FILE *f = fopen(path, "wb");
        if (f) fwrite(P, sizeof(double) * d, Nn, f), fclose(f);
        snprintf(path, sizeof path, "%s_d%d.F", dump, d);
        f = fopen(path, "wb");
        if (f) fwrite(Fd, sizeof(double), Nn, f), fclose(f);
    }
    double est = tn * ((double)N / Nn) * ((double)N / Nn);
    printf("ecdf_naive_d%d_n%zu_extrapolated_seconds %.0f s\n", d, N, est);
    printf("ecdf_dc_d%d_speedup_at_n%zu %.0f x\n", d, N, est / tdc);
    /* complexity smoke (docs/algorithms.md 3.6): time(N) / time(N/2) against
     * 2 (1 + 1/log2(N/2))^(d-1) for O(N log^(d-1) N) */
    t0 = now();
    ink__dom_run(&D, P, NULL, N / 2, P, N / 2, F);
    double thalf = now() - t0;
    printf("ecdf_dc_d%d_time_ratio_n_over_half %.2f ratio\n", d, tdc / thalf);
    printf("ecdf_dc_d%d_time_ratio_expected %.2f ratio\n", d,
           2 * pow(1 + 1 / log2(N / 2.0), d - 1));
    free(P), free(F), free(Fn), free(Fd), free(mem);
}

static int sink(void *ctx, const struct ink_record *rec)
{
    (void)rec;
    ++*(long *)ctx;
    return 0;
}

/* Records/s of the operator's process over x[0, n) with `keys` fresh states
 * fed round-robin (record i goes to key i % keys), sharing one scratch as the
 * engine runs a node; with_view: the scratch (the KLL query views) is given. */
static double kll_process_rate(const double *x, size_t n, int keys, bool with_view)
{
    struct ink_ecdf_conf c = {.mode = INK_ECDF_KLL, .k = 200, .window = 1};
    void *scratch = with_view ? calloc(1, ink_op_ecdf.scratch_bytes(&c)) : NULL;
    void *st[16];
    struct ink_err err;
    for (int k = 0; k < keys; k++) {
        st[k] = calloc(1, ink_op_ecdf.state_size);
        struct ink_op_init ini = {.name = "bench", .seed = 1 + k, .scratch = scratch};
        if (ink_op_ecdf.init(st[k], &c, &ini, &err)) return 0;
    }
    long outs = 0;
    struct ink_emitter em = {sink, &outs};
    struct ink_record rec;
    memset(&rec, 0, sizeof rec);
    rec.flags = INK_HAS_X;
    rec.dim = 1;
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        rec.x = &x[i];
        ink_op_ecdf.process(st[i % (size_t)keys], &rec, &em, &err);
    }
    double t = now() - t0;
    for (int k = 0; k < keys; k++) ink_op_ecdf.fini(st[k]), free(st[k]);
    free(scratch);
    return (double)outs / t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_kll(size_t n)
{
    double *x = malloc(sizeof(double) * n);
    struct ink_rng r;
    ink_rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++) x[i] = gauss(&r);
    /* The machine is shared: the median of 5 runs, and the best. */
    enum { RUNS = 5 };
    double rate[RUNS];
    for (int i = 0; i < RUNS; i++) rate[i] = kll_process_rate(x, n, 1, true);
    qsort(rate, RUNS, sizeof rate[0], cmp_double);
    printf("ecdf_kll_k200_process_per_second %.0f records/s\n", rate[RUNS / 2]);
    printf("ecdf_kll_k200_process_best_per_second %.0f records/s\n", rate[RUNS - 1]);
    printf("ecdf_kll_k200_process_noview_per_second %.0f records/s\n",
           kll_process_rate(x, n, 1, false));
    printf("ecdf_kll_k200_3keys_process_per_second %.0f records/s\n",
           kll_process_rate(x, n, 3, true));
    printf("ecdf_kll_k200_3keys_process_noview_per_second %.0f records/s\n",
           kll_process_rate(x, n, 3, false));
    struct ink__kll q;
    void *qm = malloc(ink__kll_bytes(200, false));
    ink__kll_init(&q, 200, 1, qm, false);
    double t0 = now();
    for (size_t i = 0; i < n; i++) ink__kll_update(&q, x[i]);
    double t = now() - t0;
    printf("ecdf_kll_k200_update_per_second %.0f updates/s\n", n / t);
    uint64_t acc = 0;
    t0 = now();
    for (size_t i = 0; i < n; i++) acc += ink__kll_weight_le(&q, x[i]);
    t = now() - t0;
    printf("ecdf_kll_k200_rank_query_per_second %.0f queries/s\n", n / t);
    if (acc == 1) printf("impossible\n");
    free(qm);
    free(x);
}

static void bench_fenwick(size_t n)
{
    enum { D = 3, M = 64 };
    double z[M];
    for (int j = 0; j < M; j++) z[j] = -3 + 6.0 * j / (M - 1);
    struct ink__grid g = {.d = D};
    for (int k = 0; k < D; k++) g.z[k] = z, g.M[k] = M;
    ink__grid_setup(&g);
    double *T = calloc(g.size, sizeof *T);
    struct ink_rng r;
    ink_rng_seed(&r, 3);
    uint32_t *cells = malloc(sizeof(uint32_t) * n * D);
    for (size_t i = 0; i < n * D; i++) cells[i] = (uint32_t)(ink_rng_next(&r) % M);
    double t0 = now();
    for (size_t i = 0; i < n; i++) ink__fenwick_add(&g, T, cells + i * D, 1.0);
    double tu = now() - t0;
    double acc = 0;
    t0 = now();
    for (size_t i = 0; i < n; i++) acc += ink__fenwick_prefix(&g, T, cells + i * D);
    double tq = now() - t0;
    printf("ecdf_fenwick_d3_m64_updates_per_second %.0f updates/s\n", n / tu);
    printf("ecdf_fenwick_d3_m64_queries_per_second %.0f queries/s\n", n / tq);
    /* baseline: a plain count array, O(1) update, a query sums the box */
    memset(T, 0, g.size * sizeof *T);
    t0 = now();
    for (size_t i = 0; i < n; i++) {
        const uint32_t *c = cells + i * D;
        T[((size_t)c[0] * M + c[1]) * M + c[2]] += 1.0;
    }
    tu = now() - t0;
    size_t nq = n / 100 > 1000 ? n / 100 : 1000;
    if (nq > n) nq = n;
    t0 = now();
    for (size_t i = 0; i < nq; i++) {
        const uint32_t *c = cells + i * D;
        double s = 0;
        for (uint32_t a = 0; a <= c[0]; a++)
            for (uint32_t b = 0; b <= c[1]; b++) {
                const double *row = T + ((size_t)a * M + b) * M;
                for (uint32_t e = 0; e <= c[2]; e++) s += row[e];
            }
        acc += s;
    }
    tq = now() - t0;
    printf("ecdf_countarray_d3_m64_updates_per_second %.0f updates/s\n", n / tu);
    printf("ecdf_countarray_d3_m64_queries_per_second %.0f queries/s\n", nq / tq);
    if (acc < 0) printf("impossible\n");
    free(T);
    free(cells);
}

int main(int argc, char **argv)
{
    double sc = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(sc > 0)) sc = 1;
    size_t N = (size_t)(1e6 * sc), Nn = (size_t)(2e4 * sc);
    if (Nn < 100) Nn = 100;
    bench_dc(2, N, Nn);
    bench_dc(3, N, Nn);
    bench_kll((size_t)(1e7 * sc));
    bench_fenwick((size_t)(2e6 * sc));
    return 0;
}
