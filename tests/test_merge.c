/* operators/merge.c with partials published by operators/ecdf.c
 * (docs/ecdf.md#global-answers-by-merging): the merge of 4 KLL partials of
 * disjoint streams against the exact ECDF of their union, the Fenwick merge
 * against one grid over the union (exactly), replays that replace, and the
 * partials refused. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/config.h"
#include "../engine/op.h"
#include "../engine/rng.h"
#include "../operators/kll.h"
#include "ink_test.h"
#include "opnode.h"

/* A one-node operator from a YAML flow-map body (tests/opnode.h). */
static void node_open(struct node *n, const char *type, const char *keys)
{
    struct ink_err err = {0};
    int rc = node_try(n, type, keys, "src", 99, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    REQUIRE(rc == 0);
}

/* Captured partial records (copies) and the last reply's fields. */
#define MAXP 64
struct sink {
    int np;
    uint8_t *p[MAXP];
    uint32_t len[MAXP];
    char key[MAXP][8];
    int64_t n[MAXP];
    double F, Flo, Fhi, q;
    int64_t rn, sources;
    int nrec;
};

static int capture(void *ctx, const struct ink_record *r)
{
    struct sink *s = ctx;
    s->nrec++;
    for (uint32_t i = 0; i < r->nfields; i++) {
        const struct ink_field *f = &r->fields[i];
        if (!strcmp(f->name, "partial") && f->v.type == INK_V_RAW && s->np < MAXP) {
            s->p[s->np] = malloc(f->v.raw.n);
            memcpy(s->p[s->np], f->v.raw.p, f->v.raw.n);
            s->len[s->np] = f->v.raw.n;
            snprintf(s->key[s->np], 8, "%.*s", (int)r->key_len, r->key ? r->key : "");
            s->np++;
        }
        if (!strcmp(f->name, "F")) s->F = f->v.f;
        if (!strcmp(f->name, "F_lo")) s->Flo = f->v.f;
        if (!strcmp(f->name, "F_hi")) s->Fhi = f->v.f;
        if (!strcmp(f->name, "q")) s->q = f->v.f;
        if (!strcmp(f->name, "n")) s->rn = f->v.i;
        if (!strcmp(f->name, "sources")) s->sources = f->v.i;
    }
    return 0;
}

static void sink_free(struct sink *s)
{
    for (int i = 0; i < s->np; i++) free(s->p[i]);
    memset(s, 0, sizeof *s);
}

static int feed_value(struct node *n, const double *x, int d, const char *key,
                      const struct ink_emitter *em)
{
    struct ink_record r;
    memset(&r, 0, sizeof r);
    r.flags = INK_HAS_X | INK_HAS_KEY;
    r.x = x;
    r.dim = (uint32_t)d;
    r.key = key;
    r.key_len = (uint32_t)strlen(key);
    struct ink_err err = {0};
    return n->vt->process(n->st, &r, em, &err);
}

/* A partial record to the merge: key, source, and optionally a kafka tag. */
static int give(struct node *m, const uint8_t *p, uint32_t len, const char *key, int64_t part,
                int64_t off, struct ink_err *err)
{
    struct sink dummy = {0};
    struct ink_emitter em = {capture, &dummy};
    struct ink_record r;
    memset(&r, 0, sizeof r);
    r.flags = INK_HAS_KEY;
    r.key = key;
    r.key_len = (uint32_t)strlen(key);
    ink_record_add(&r, "partial", (struct ink_value){.type = INK_V_RAW, .raw = {p, len}});
    ink_record_add_str(&r, "source", "src", 3);
    if (part >= 0) {
        ink_record_add_i64(&r, "kafka_partition", part);
        ink_record_add_i64(&r, "kafka_offset", off);
    }
    return m->vt->process(m->st, &r, &em, err);
}

static int ask(struct node *m, const char *op, const double *x, int d, double r, struct sink *out)
{
    uint8_t extra[16];
    struct ink_record q;
    memset(&q, 0, sizeof q);
    q.flags = INK_HAS_OP;
    q.op = op;
    q.op_len = (uint32_t)strlen(op);
    if (x) q.flags |= INK_HAS_X, q.x = x, q.dim = (uint32_t)d;
    if (r >= 0) { /* extra {"r": r}: fixstr "r", float 64 */
        extra[0] = 0xa1, extra[1] = 'r', extra[2] = 0xcb;
        uint64_t b;
        memcpy(&b, &r, 8);
        for (int i = 0; i < 8; i++) extra[3 + i] = (uint8_t)(b >> (56 - 8 * i));
        q.extra = extra, q.extra_len = 11, q.extra_n = 1;
    }
    struct ink_emitter em = {capture, out};
    struct ink_err err = {0};
    int rc = m->vt->query(m->st, &q, &em, &err);
    if (rc) fprintf(stderr, "query %s: %s\n", op, err.msg);
    return rc;
}

/* The end of the stream, as the engine runs it under key_by: flush, and the
 * state's key on what it emits. */
static void flush_keyed(struct node *n, struct sink *parts, const char *key)
{
    struct ink_emitter em = {capture, parts};
    struct ink_err err = {0};
    int before = parts->np;
    REQUIRE(n->vt->flush(n->st, &em, &err) == 0);
    for (int i = before; i < parts->np; i++) snprintf(parts->key[i], 8, "%s", key);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Number of v[0, n) (sorted) <= x. */
static size_t count_le(const double *v, size_t n, double x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

TEST(kll_merge_of_4_disjoint_streams_within_the_bound)
{
    enum { PER = 50000, S = 4, Q = 100 };
    static double all[PER * S];
    struct node e[S], m;
    struct sink parts = {0};
    struct ink_emitter em = {capture, &parts};
    struct ink_rng g;
    ink_rng_seed(&g, 2024);
    for (int j = 0; j < S; j++) {
        node_open(&e[j], "ecdf", "mode: kll, k: 200, publish: 20000");
        char key[8];
        snprintf(key, sizeof key, "s%d", j);
        for (int i = 0; i < PER; i++) {
            /* stream j: its own distribution (shifted, scaled, skewed) */
            double u = ink_rng_uniform(&g), v = ink_rng_uniform(&g);
            double x = j == 3 ? -log1p(-u) * 2
                              : (j - 1.5) * 2 + (1 + j) * sqrt(-2 * log1p(-u)) * cos(2 * M_PI * v);
            all[j * PER + i] = x;
            REQUIRE(feed_value(&e[j], &x, 1, key, &em) == 0);
        }
        flush_keyed(&e[j], &parts, key);
    }
    /* 20000, 40000 and the final 50000 per stream: 12 partials, 3 per source */
    CHECK_MSG(parts.np == 3 * S, "%d partials", parts.np);
    node_open(&m, "merge", "mode: kll, k: 200, max_sources: 8");
    for (int i = 0; i < parts.np; i++) {
        struct ink_err err = {0};
        CHECK_MSG(give(&m, parts.p[i], parts.len[i], parts.key[i], -1, 0, &err) == 0, "%s",
                  err.msg);
    }
    qsort(all, PER * S, sizeof *all, cmp_d);
    double eps = ink__kll_eps(200, false), worst = 0;
    struct sink r = {0};
    for (int i = 0; i < Q; i++) {
        double x = all[(size_t)((i + 0.5) / Q * PER * S)];
        REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
        CHECK(r.rn == PER * S && r.sources == S); /* replaced, not added */
        double exact = (double)count_le(all, PER * S, x) / (PER * S);
        double e = fabs(r.F - exact);
        if (e > worst) worst = e;
        /* quantile: the exact rank of the answer within eps of the rank asked */
        double rk = (i + 0.5) / Q;
        REQUIRE(ask(&m, "quantile", NULL, 0, rk, &r) == 0);
        double got = (double)count_le(all, PER * S, r.q) / (PER * S);
        CHECK_MSG(fabs(got - rk) <= eps, "quantile %g: rank %g", rk, got);
    }
    printf("merged KLL over %d values: worst rank error %.5f, bound eps(200) %.5f\n", PER * S,
           worst, eps);
    CHECK_MSG(worst <= eps, "worst %g > eps %g", worst, eps);
    for (int j = 0; j < S; j++) node_close(&e[j]);
    node_close(&m);
    sink_free(&parts);
}

TEST(fenwick_merge_equals_the_grid_over_the_union)
{
    enum { PER = 3000, S = 4 };
    const char *grid = "mode: grid, grid: {lo: [-2, 0], hi: [2, 3], n: [9, 7]}";
    char keys[256];
    snprintf(keys, sizeof keys, "%s, publish: 1000", grid);
    struct node e[S], one, m;
    struct sink parts = {0}, none = {0};
    struct ink_emitter em = {capture, &parts}, drop = {capture, &none};
    node_open(&one, "ecdf", grid);
    struct ink_rng g;
    ink_rng_seed(&g, 77);
    for (int j = 0; j < S; j++) {
        node_open(&e[j], "ecdf", keys);
        char key[8];
        snprintf(key, sizeof key, "g%d", j);
        for (int i = 0; i < PER + 17 * j;
             i++) { /* not a multiple of publish: flush sends the rest */
            double x[2] = {-2.5 + 5 * ink_rng_uniform(&g) * (0.5 + 0.15 * j),
                           floor(4 * ink_rng_uniform(&g)) * 0.5 + (j == 2 ? 0.5 : 0)};
            REQUIRE(feed_value(&e[j], x, 2, key, &em) == 0);
            REQUIRE(feed_value(&one, x, 2, key, &drop) == 0);
        }
        flush_keyed(&e[j], &parts, key);
    }
    node_open(&m, "merge", "mode: grid, grid: {lo: [-2, 0], hi: [2, 3], n: [9, 7]}");
    for (int i = 0; i < parts.np; i++) {
        struct ink_err err = {0};
        CHECK_MSG(give(&m, parts.p[i], parts.len[i], parts.key[i], -1, 0, &err) == 0, "%s",
                  err.msg);
    }
    int checked = 0;
    for (double a = -3; a <= 3; a += 0.25)
        for (double b = -0.5; b <= 3.5; b += 0.25) {
            double x[2] = {a, b};
            struct sink rm = {0}, ro = {0};
            REQUIRE(ask(&m, "cdf", x, 2, -1, &rm) == 0);
            REQUIRE(ask(&one, "cdf", x, 2, -1, &ro) == 0);
            CHECK(rm.rn == ro.rn && rm.F == ro.F && rm.Flo == ro.Flo && rm.Fhi == ro.Fhi);
            checked++;
        }
    printf("grid merge of %d partials equals the union's grid at %d points\n", parts.np, checked);
    for (int j = 0; j < S; j++) node_close(&e[j]);
    node_close(&one);
    node_close(&m);
    sink_free(&parts);
}

TEST(replays_replace_stale_is_ignored_mismatches_refused)
{
    struct node e, e16, m;
    struct sink parts = {0}, p16 = {0};
    struct ink_emitter em = {capture, &parts}, em16 = {capture, &p16};
    node_open(&e, "ecdf", "mode: kll, k: 64, publish: 100");
    node_open(&e16, "ecdf", "mode: kll, k: 16, publish: 100");
    for (int i = 0; i < 300; i++) {
        double x = sin(i * 0.37);
        REQUIRE(feed_value(&e, &x, 1, "a", &em) == 0);
        REQUIRE(feed_value(&e16, &x, 1, "a", &em16) == 0);
    }
    REQUIRE(parts.np == 3 && p16.np == 1 + 2);
    node_open(&m, "merge", "mode: kll, k: 64, max_sources: 2");
    struct ink_err err = {0};
    struct sink r = {0};
    double x = 0.1;
    /* the same partial twice: held once */
    REQUIRE(give(&m, parts.p[2], parts.len[2], "a", -1, 0, &err) == 0);
    REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
    double F = r.F;
    REQUIRE(give(&m, parts.p[2], parts.len[2], "a", -1, 0, &err) == 0);
    REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
    CHECK(r.rn == 300 && r.sources == 1 && r.F == F);
    /* a file replay from the start: the earlier partial replaces the later */
    REQUIRE(give(&m, parts.p[0], parts.len[0], "a", -1, 0, &err) == 0);
    REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
    CHECK(r.rn == 100 && r.sources == 1);
    /* kafka-tagged: another source (partition 3); an older offset is stale */
    REQUIRE(give(&m, parts.p[1], parts.len[1], "a", 3, 199, &err) == 0);
    REQUIRE(give(&m, parts.p[0], parts.len[0], "a", 3, 99, &err) == 0);
    REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
    CHECK(r.rn == 100 + 200 && r.sources == 2);
    CHECK(ink_op_gauge_read(m.vt, m.st, "merge_stale_partials") == 1);
    /* refused, state unchanged: another k, a third source, a corrupt partial */
    CHECK(give(&m, p16.p[0], p16.len[0], "b", -1, 0, &err) == INK_EINVAL);
    CHECK_MSG(strstr(err.msg, "k 16") != NULL, "%s", err.msg);
    CHECK(give(&m, parts.p[2], parts.len[2], "c", -1, 0, &err) == INK_EINVAL);
    CHECK_MSG(strstr(err.msg, "max_sources") != NULL, "%s", err.msg);
    uint8_t bad[4096];
    REQUIRE(parts.len[2] <= sizeof bad);
    memcpy(bad, parts.p[2], parts.len[2]);
    CHECK(give(&m, bad, parts.len[2] - 8, "a", -1, 0, &err) == INK_EINVAL);
    bad[5] = 'X'; /* the magic */
    CHECK(give(&m, bad, parts.len[2], "a", -1, 0, &err) == INK_EINVAL);
    REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
    CHECK(r.rn == 300 && r.sources == 2);
    /* a grid partial to a kll merge, and a grid of other nodes to a grid merge */
    struct node eg, mg;
    struct sink pg = {0};
    struct ink_emitter emg = {capture, &pg};
    node_open(&eg, "ecdf", "mode: grid, grid: {lo: [0], hi: [1], n: [5]}, publish: 1");
    double y = 0.3;
    REQUIRE(feed_value(&eg, &y, 1, "a", &emg) == 0 && pg.np == 1);
    CHECK(give(&m, pg.p[0], pg.len[0], "a", -1, 0, &err) == INK_EINVAL);
    node_open(&mg, "merge", "mode: grid, grid: {lo: [0], hi: [1], n: [6]}");
    CHECK(give(&mg, pg.p[0], pg.len[0], "a", -1, 0, &err) == INK_EINVAL);
    CHECK_MSG(strstr(err.msg, "grid differs") != NULL, "%s", err.msg);
    node_close(&e);
    node_close(&e16);
    node_close(&m);
    node_close(&eg);
    node_close(&mg);
    sink_free(&parts);
    sink_free(&p16);
    sink_free(&pg);
}

/* A partial as a transport delivers it: the payload's map (partial, its
 * kafka tags) as extras, and the transport's own kafka_partition and
 * kafka_offset (where the message was in the partials topic) as fields. */
static int give_wire(struct node *m, const uint8_t *p, uint32_t len, int64_t part, int64_t off,
                     int64_t topic_part, int64_t topic_off, struct ink_err *err)
{
    static uint8_t ex[8192];
    size_t o = 0;
    ex[o++] = 0xa7, memcpy(ex + o, "partial", 7), o += 7;
    memcpy(ex + o, p, len), o += len; /* the partial field is a msgpack bin already */
    const char *names[2] = {"kafka_partition", "kafka_offset"};
    int64_t vals[2] = {part, off};
    for (int f = 0; f < 2; f++) {
        size_t nl = strlen(names[f]);
        ex[o++] = (uint8_t)(0xa0 | nl), memcpy(ex + o, names[f], nl), o += nl;
        ex[o++] = 0xd3; /* int 64, big-endian */
        for (int i = 0; i < 8; i++) ex[o++] = (uint8_t)((uint64_t)vals[f] >> (56 - 8 * i));
    }
    struct sink dummy = {0};
    struct ink_emitter em = {capture, &dummy};
    struct ink_record r;
    memset(&r, 0, sizeof r);
    r.flags = INK_HAS_KEY;
    r.key = "a";
    r.key_len = 1;
    r.extra = ex, r.extra_len = (uint32_t)o, r.extra_n = 3;
    ink_record_add_i64(&r, "kafka_partition", topic_part);
    ink_record_add_i64(&r, "kafka_offset", topic_off);
    return m->vt->process(m->st, &r, &em, err);
}

/* Partials read back from a kafka topic: the source and the staleness are the
 * payload's tags (the input partition and offset the partial covers), not
 * the partials topic's coordinates that the kafka source adds. */
TEST(partials_from_a_topic_keep_their_own_tags)
{
    struct node e, m;
    struct sink parts = {0};
    struct ink_emitter em = {capture, &parts};
    node_open(&e, "ecdf", "mode: kll, k: 64, publish: 100");
    for (int i = 0; i < 300; i++) {
        double x = cos(i * 0.29);
        REQUIRE(feed_value(&e, &x, 1, "a", &em) == 0);
    }
    REQUIRE(parts.np == 3 && parts.len[2] < 4096);
    node_open(&m, "merge", "mode: kll, k: 64, max_sources: 4");
    struct ink_err err = {0};
    struct sink r = {0};
    double x = 0.1;
    REQUIRE(give_wire(&m, parts.p[1], parts.len[1], 2, 199, 5, 1000, &err) == 0);
    /* a replay re-published later in the topic: older by its own tag, stale */
    REQUIRE(give_wire(&m, parts.p[0], parts.len[0], 2, 99, 5, 1001, &err) == 0);
    REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
    CHECK(r.rn == 200 && r.sources == 1);
    CHECK(ink_op_gauge_read(m.vt, m.st, "merge_stale_partials") == 1);
    /* the same input partition from another topic partition: the same source */
    REQUIRE(give_wire(&m, parts.p[2], parts.len[2], 2, 299, 7, 3, &err) == 0);
    REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
    CHECK(r.rn == 300 && r.sources == 1);
    /* another input partition: another source */
    REQUIRE(give_wire(&m, parts.p[0], parts.len[0], 3, 99, 5, 1002, &err) == 0);
    REQUIRE(ask(&m, "cdf", &x, 1, -1, &r) == 0);
    CHECK(r.rn == 400 && r.sources == 2);
    node_close(&e);
    node_close(&m);
    sink_free(&parts);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
