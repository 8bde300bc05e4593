/* operators/kll.c: the KLL sketch (docs/algorithms.md 4.1) against exact counts.
 * The accuracy cases are heavy (100 seeds x 5 streams x 1e6 values, single
 * and merged from 16 parts); INK_TEST_SCALE shrinks seeds and n, never eps. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../engine/rng.h"
#include "../operators/kll.h"
#include "ink_test.h"

#define NQ 1000

static double test_scale(void)
{
    const char *e = getenv("INK_TEST_SCALE");
    double s = e ? atof(e) : 1.0;
    return s > 0 ? s : 1.0;
}

static struct ink__kll *kll_new(uint32_t k, uint64_t seed)
{
    struct ink__kll *s = malloc(sizeof *s);
    void *mem = malloc(ink__kll_bytes(k, true));
    ink__kll_init(s, k, seed, mem, true);
    return s;
}

static void kll_free(struct ink__kll *s)
{
    if (!s) return;
    free(s->items);
    free(s);
}

TEST(kll_invariant_every_update_and_merge)
{
    struct ink_rng r;
    ink_rng_seed(&r, 1);
    struct ink__kll *a = kll_new(200, 11), *b = kll_new(200, 12);
    double mn = INFINITY, mx = -INFINITY;
    uint64_t expect_a = 0;
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        double x = ink_rng_uniform(&r) * 1000 - 500;
        struct ink__kll *s = i % 3 ? a : b;
        ink__kll_update(s, x);
        expect_a += s == a;
        bad += ink__kll_total_weight(s) != s->n;
        if (x < mn) mn = x;
        if (x > mx) mx = x;
        if (i % 50000 == 49999) {
            CHECK(ink__kll_merge(a, b) == 0);
            expect_a += b->n;
            bad += ink__kll_total_weight(a) != a->n;
        }
    }
    CHECK(bad == 0);
    /* Each merge adds b's whole count again. */
    CHECK(a->n == expect_a);
    /* The last merge came after the last update: a has seen every value. */
    CHECK(a->min == mn && a->max == mx);
    CHECK(b->min >= mn && b->max <= mx && ink__kll_quantile(a, 0) >= mn);
    CHECK(ink__kll_retained(a) <= a->cap);
    kll_free(a);
    kll_free(b);
}

TEST(kll_exact_below_capacity)
{
    /* Fewer than k items: no compaction, every rank exact. */
    struct ink__kll *s = kll_new(200, 3);
    for (int i = 0; i < 150; i++) ink__kll_update(s, (double)(i % 50));
    CHECK(s->n == 150 && ink__kll_retained(s) == 150);
    CHECK(ink__kll_weight_le(s, 10) == 33);
    CHECK(ink__kll_weight_lt(s, 10) == 30);
    CHECK(ink__kll_quantile(s, 0.5) == 24);
    CHECK(ink__kll_quantile(s, 0) == 0 && ink__kll_quantile(s, 1) == 49);
    CHECK(s->min == 0 && s->max == 49);
    kll_free(s);
}

TEST(kll_same_seed_same_sketch)
{
    struct ink__kll *a = kll_new(64, 5), *b = kll_new(64, 5);
    struct ink_rng r;
    ink_rng_seed(&r, 9);
    for (int i = 0; i < 100000; i++) {
        double x = ink_rng_uniform(&r);
        ink__kll_update(a, x);
        ink__kll_update(b, x);
    }
    REQUIRE(a->nlevels == b->nlevels);
    CHECK(memcmp(a->levels, b->levels, sizeof a->levels) == 0);
    CHECK(memcmp(a->items + a->levels[0], b->items + b->levels[0],
                 ink__kll_retained(a) * sizeof(double)) == 0);
    kll_free(a);
    kll_free(b);
}

/* ---- accuracy over seeds ---- */

enum { S_UNIFORM, S_NORMAL, S_SORTED, S_REVERSE, S_DUPS, S_COUNT };
static const char *const stream_names[] = {"uniform", "normal", "sorted", "reverse", "dups"};

static void gen_stream(int kind, struct ink_rng *r, double *x, size_t n, double *q)
{
    for (size_t i = 0; i < n; i++) {
        switch (kind) {
        case S_UNIFORM:
            x[i] = ink_rng_uniform(r);
            break;
        case S_NORMAL: {
            double u = ink_rng_uniform(r), v = ink_rng_uniform(r);
            x[i] = sqrt(-2 * log1p(-u)) * cos(2 * M_PI * v);
            break;
        }
        case S_SORTED:
            x[i] = (double)i;
            break;
        case S_REVERSE:
            x[i] = (double)(n - 1 - i);
            break;
        default:
            x[i] = floor(ink_rng_uniform(r) * 100);
            break;
        }
    }
    for (int j = 0; j < NQ; j++) {
        double t = (j + 0.5) / NQ;
        switch (kind) {
        case S_UNIFORM:
            q[j] = t;
            break;
        case S_NORMAL:
            q[j] = -3.5 + 7 * t;
            break;
        case S_SORTED:
        case S_REVERSE:
            q[j] = floor(t * n);
            break;
        default:
            q[j] = (j - 5) / 10.0;
            break; /* every integer 0..99 and between */
        }
    }
}

/* truth[j] = #{x <= q_j}, q increasing and nearly evenly spaced: the bucket
 * pos = #{q < x} is guessed from the spacing and corrected by comparisons. */
static void exact_counts(const double *x, size_t n, const double *q, uint64_t *truth)
{
    static uint64_t cnt[NQ + 1];
    memset(cnt, 0, sizeof cnt);
    double q0 = q[0], inv = (NQ - 1) / (q[NQ - 1] - q[0]);
    for (size_t i = 0; i < n; i++) {
        double g = ceil((x[i] - q0) * inv);
        long pos = g < 0 ? 0 : g > NQ ? NQ : (long)g;
        while (pos > 0 && q[pos - 1] >= x[i]) pos--;
        while (pos < NQ && q[pos] < x[i]) pos++;
        cnt[pos]++;
    }
    uint64_t acc = 0;
    for (int j = 0; j < NQ; j++) truth[j] = (acc += cnt[j]);
}

struct acc_result {
    int worst_fails[2]; /* over query points: seeds where |err| > eps (single, merged) */
    double worst_err[2];
};

static void run_stream(int kind, int seeds, size_t n, uint32_t k, struct acc_result *res)
{
    double *x = malloc(n * sizeof *x), q[NQ], eps = ink__kll_eps(k, false);
    uint64_t truth[NQ];
    static int fails[2][NQ];
    memset(fails, 0, sizeof fails);
    struct ink__kll *one = kll_new(k, 0), *merged = kll_new(k, 0), *part[16];
    for (int p = 0; p < 16; p++) part[p] = kll_new(k, 0);
    res->worst_err[0] = res->worst_err[1] = 0;
    for (int sd = 0; sd < seeds; sd++) {
        uint64_t base = 1000003ull * (uint64_t)(kind + 1) + (uint64_t)sd;
        struct ink_rng r;
        ink_rng_seed(&r, base);
        gen_stream(kind, &r, x, n, q);
        exact_counts(x, n, q, truth);
        ink__kll_init(one, k, base ^ 0xabcdef, one->items, true);
        for (size_t i = 0; i < n; i++) ink__kll_update(one, x[i]);
        /* 16 contiguous parts, merged in a random order. */
        int order[16];
        for (int p = 0; p < 16; p++) {
            order[p] = p;
            ink__kll_init(part[p], k, base * 31 + (uint64_t)p, part[p]->items, true);
            size_t lo = n * p / 16, hi = n * (p + 1) / 16;
            for (size_t i = lo; i < hi; i++) ink__kll_update(part[p], x[i]);
        }
        for (int p = 15; p > 0; p--) {
            int j = (int)(ink_rng_next(&r) % (uint64_t)(p + 1)), t = order[p];
            order[p] = order[j];
            order[j] = t;
        }
        ink__kll_init(merged, k, base ^ 0x5555, merged->items, true);
        for (int p = 0; p < 16; p++) {
            CHECK(ink__kll_merge(merged, part[order[p]]) == 0);
            CHECK(ink__kll_total_weight(merged) == merged->n);
        }
        CHECK(one->n == n && merged->n == n);
        /* Quantiles (first 10 seeds): the returned item's rank interval
         * [#{x < q}, #{x <= q}] / n must come within eps of r. */
        static const double rs[5] = {0.01, 0.1, 0.5, 0.9, 0.99};
        for (int qi = 0; qi < 5 && sd < 10; qi++) {
            double qv = ink__kll_quantile(one, rs[qi]);
            size_t lt = 0, le = 0;
            for (size_t i = 0; i < n; i++) lt += x[i] < qv, le += x[i] <= qv;
            bool ok = (double)le / n >= rs[qi] - eps && (double)lt / n <= rs[qi] + eps;
            CHECK_MSG(ok, "%s seed %d: quantile(%g) = %g has ranks [%g, %g]", stream_names[kind],
                      sd, rs[qi], qv, (double)lt / n, (double)le / n);
        }
        CHECK(ink__kll_total_weight(one) == n);
        for (int j = 0; j < NQ; j++) {
            double f = (double)truth[j] / (double)n;
            const struct ink__kll *sk[2] = {one, merged};
            for (int v = 0; v < 2; v++) {
                double e = fabs((double)ink__kll_weight_le(sk[v], q[j]) / (double)n - f);
                if (e > res->worst_err[v]) res->worst_err[v] = e;
                fails[v][j] += e > eps;
            }
        }
    }
    for (int v = 0; v < 2; v++) {
        res->worst_fails[v] = 0;
        for (int j = 0; j < NQ; j++)
            if (fails[v][j] > res->worst_fails[v]) res->worst_fails[v] = fails[v][j];
    }
    for (int p = 0; p < 16; p++) kll_free(part[p]);
    kll_free(one);
    kll_free(merged);
    free(x);
}

static void accuracy_case(int kind)
{
    double sc = test_scale();
    int seeds = (int)lround(100 * (sc < 1 ? sc : 1));
    if (seeds < 5) seeds = 5;
    size_t n = (size_t)(1e6 * (sc < 1 ? sc : 1));
    if (n < 100000) n = 100000;
    uint32_t k = 200;
    struct acc_result res;
    run_stream(kind, seeds, n, k, &res);
    int allowed = (int)floor(0.02 * seeds + 1e-9);
    printf("  %-8s seeds %d n %zu eps %.5f: worst |err| single %.5f merged %.5f; "
           "max seeds over eps at one point single %d merged %d (allowed %d)\n",
           stream_names[kind], seeds, n, ink__kll_eps(k, false), res.worst_err[0], res.worst_err[1],
           res.worst_fails[0], res.worst_fails[1], allowed);
    CHECK(res.worst_fails[0] <= allowed);
    CHECK(res.worst_fails[1] <= allowed);
}

TEST(kll_accuracy_uniform)
{
    accuracy_case(S_UNIFORM);
}
TEST(kll_accuracy_normal)
{
    accuracy_case(S_NORMAL);
}
TEST(kll_accuracy_sorted)
{
    accuracy_case(S_SORTED);
}
TEST(kll_accuracy_reverse)
{
    accuracy_case(S_REVERSE);
}
TEST(kll_accuracy_duplicates)
{
    accuracy_case(S_DUPS);
}

/* ---- the query view (kll.h) ---- */

static struct ink__kll_pool *pool_new(uint32_t k)
{
    struct ink__kll_pool *p = malloc(sizeof *p);
    ink__kll_pool_init(p, k, malloc(ink__kll_pool_bytes(k)));
    return p;
}

static void pool_free(struct ink__kll_pool *p)
{
    free(p->v[0].v); /* the first region of the views' memory */
    free(p);
}

/* Whether a view of the pool follows s. */
static bool pool_follows(const struct ink__kll_pool *p, const struct ink__kll *s)
{
    for (uint32_t i = 0; i < p->n; i++)
        if (p->v[i].uid == s->uid) return true;
    return false;
}

/* The operator's pattern (query at the next value, then update) plus a
 * second query at a fixed set of points, on every stream kind and several k,
 * with merges into the sketch and a reload-like touch on the way: the
 * answer through the views equals weight_le at every step. */
TEST(kll_view_equals_weight_le_every_step)
{
    size_t n = (size_t)(150000 * test_scale());
    if (n < 20000) n = 20000;
    double *x = malloc(sizeof(double) * n), q[NQ];
    const double probes[] = {-1e300, -1, 0, 0.5, 1, 37, 1e300};
    uint32_t ks[] = {8, 50, 200, 2000};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        for (int kind = 0; kind < S_COUNT; kind++) {
            struct ink_rng r;
            ink_rng_seed(&r, 100 + kind);
            gen_stream(kind, &r, x, n, q);
            struct ink__kll *s = kll_new(ks[t], 7), *o = kll_new(ks[t], 8);
            struct ink__kll_pool *v = pool_new(ks[t]);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) {
                bad += ink__kll_pool_weight_le(v, s, x[i]) != ink__kll_weight_le(s, x[i]);
                double p = probes[i % 7];
                bad += ink__kll_pool_weight_le(v, s, p) != ink__kll_weight_le(s, p);
                ink__kll_update(s, x[i]);
                ink__kll_update(o, x[n - 1 - i]);
                if (i % 40000 == 39999) REQUIRE(ink__kll_merge(s, o) == 0);
                if (i % 50000 == 25000) ink__kll_touch(s);
            }
            if (bad)
                fprintf(stderr, "k %u %s: %zu wrong answers\n", ks[t], stream_names[kind], bad);
            CHECK(bad == 0);
            CHECK(ink__kll_total_weight(s) == s->n);
            CHECK(pool_follows(v, s)); /* followed all along (re-adopted after touch) */
            pool_free(v);
            kll_free(s);
            kll_free(o);
        }
    }
    free(x);
}

/* Quantiles through the view equal ink__kll_quantile bit for bit, at every
 * step of every stream kind and several k, with merges and touches on the
 * way (the operator's per-record quantiles use this path). */
TEST(kll_pool_quantile_equals_quantile_every_step)
{
    size_t n = (size_t)(40000 * test_scale());
    if (n < 20000) n = 20000;
    double *x = malloc(sizeof(double) * n), q[NQ];
    const double rs[] = {0, 1e-9, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1};
    const int nr = (int)(sizeof rs / sizeof rs[0]);
    uint32_t ks[] = {8, 50, 200, 2000};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        for (int kind = 0; kind < S_COUNT; kind++) {
            struct ink_rng r;
            ink_rng_seed(&r, 300 + kind);
            gen_stream(kind, &r, x, n, q);
            struct ink__kll *s = kll_new(ks[t], 9), *o = kll_new(ks[t], 10);
            struct ink__kll_pool *v = pool_new(ks[t]);
            size_t bad = 0, checked = 0;
            for (size_t i = 0; i < n; i++) {
                (void)ink__kll_pool_weight_le(v, s, x[i]); /* as the operator: F, then q */
                if (s->n && (i < 1000 || i % 41 == 0)) {
                    double rr = rs[i % nr];
                    double a = ink__kll_pool_quantile(v, s, rr), b = ink__kll_quantile(s, rr);
                    bad += memcmp(&a, &b, sizeof a) != 0;
                    checked++;
                }
                ink__kll_update(s, x[i]);
                ink__kll_update(o, x[n - 1 - i]);
                if (i % 25000 == 24999) REQUIRE(ink__kll_merge(s, o) == 0);
                if (i % 30000 == 15000) ink__kll_touch(s);
            }
            if (bad)
                fprintf(stderr, "k %u %s: %zu of %zu quantiles differ\n", ks[t], stream_names[kind],
                        bad, checked);
            CHECK(bad == 0);
            CHECK(pool_follows(v, s));
            pool_free(v);
            kll_free(s);
            kll_free(o);
        }
    }
    free(x);
}

/* A key is adopted on its INK_KLL_VIEW_ADOPT-th query, not before; two
 * keys then alternating keep their views (no more adoptions); every answer
 * is exact. */
TEST(kll_pool_adopts_on_the_16th_query)
{
    struct ink__kll *a = kll_new(200, 1), *b = kll_new(200, 2);
    struct ink__kll_pool *p = pool_new(200);
    struct ink_rng r;
    ink_rng_seed(&r, 4);
    size_t bad = 0;
    struct ink__kll *ab[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < INK_KLL_VIEW_ADOPT; i++) {
            double x = ink_rng_uniform(&r);
            bad += pool_follows(p, ab[k]);
            bad += ink__kll_pool_weight_le(p, ab[k], x) != ink__kll_weight_le(ab[k], x);
            ink__kll_update(ab[k], x);
        }
        bad += !pool_follows(p, ab[k]);
    }
    for (int i = 0; i < 50000; i++) {
        struct ink__kll *s = ab[i % 2];
        double x = ink_rng_uniform(&r);
        bad += ink__kll_pool_weight_le(p, s, x) != ink__kll_weight_le(s, x);
        ink__kll_update(s, x);
    }
    CHECK(bad == 0);
    CHECK(p->adoptions == 2);
    CHECK(ink__kll_view_bytes(200) <= 48 * 1024); /* fixed by k */
    pool_free(p);
    kll_free(a);
    kll_free(b);
}

/* Interleaved keys through a pool of views (4 at k = 200): every answer is
 * exact; 3 keys that keep coming are all adopted, 5 or 40 round-robin fill
 * the 4 views once and never thrash (no adoption after that), and an idle
 * view is taken over by a key that keeps coming. */
static size_t pool_round(struct ink__kll_pool *p, struct ink__kll **ks, int nk, int queries,
                         struct ink_rng *r)
{
    size_t bad = 0;
    for (int i = 0; i < queries; i++) {
        struct ink__kll *s = ks[i % nk];
        double x = ink_rng_uniform(r);
        bad += ink__kll_pool_weight_le(p, s, x) != ink__kll_weight_le(s, x);
        ink__kll_update(s, x);
    }
    return bad;
}

TEST(kll_pool_interleaved_keys)
{
    enum { NK = 40 };
    struct ink__kll *ks[NK];
    for (int i = 0; i < NK; i++) ks[i] = kll_new(200, 50 + i);
    REQUIRE(ink__kll_pool_views(200) == 4);
    struct ink__kll_pool *p = malloc(sizeof *p);
    void *mem = malloc(ink__kll_pool_bytes(200));
    struct ink_rng r;
    ink_rng_seed(&r, 8);
    size_t bad = 0;
    /* 3 keys: all adopted; 5 or 40: the 4 views fill up once (40 keys come
     * back every 40 queries, never idle) and no key ever takes one over */
    int cases[] = {3, 5, NK};
    for (int c = 0; c < 3; c++) {
        ink__kll_pool_init(p, 200, mem);
        bad += pool_round(p, ks, cases[c], 60000, &r);
        uint64_t first = p->adoptions;
        bad += pool_round(p, ks, cases[c], 60000, &r);
        CHECK_MSG(first == (cases[c] == 3 ? 3u : 4u) && p->adoptions == first,
                  "%d keys round-robin: %llu adoptions, then %llu", cases[c],
                  (unsigned long long)first, (unsigned long long)p->adoptions);
    }
    /* 4 keys adopted; then only a fifth: after the idle time it takes a view */
    ink__kll_pool_init(p, 200, mem);
    bad += pool_round(p, ks, 4, 4000, &r);
    CHECK(p->adoptions == 4);
    bad += pool_round(p, ks + 4, 1, INK_KLL_POOL_IDLE / 2, &r);
    CHECK(p->adoptions == 4);
    bad += pool_round(p, ks + 4, 1, INK_KLL_POOL_IDLE, &r);
    CHECK(p->adoptions == 5);
    CHECK(bad == 0);
    free(mem);
    free(p);
    for (int i = 0; i < NK; i++) kll_free(ks[i]);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
