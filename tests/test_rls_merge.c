/* rls_sketch `publish` partials and their DISQUEAK merge in the merge
 * operator (operators/rls_merge.c, docs/rls_sketch.md#publish-and-merge):
 * three sketches on disjoint thirds of a 3,000-point stream, merged, against
 * exact ridge leverage scores over all 3,000 points; the merged dictionary
 * against one sketch over the whole stream; the refusals; the same partials
 * giving the same bytes, through save/load too; the merged KRR against one
 * sketch's. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/config.h"
#include "../engine/op.h"
#include "../engine/rng.h"
#include "ink_test.h"
#include "opnode.h"

enum { D = 3, N = 3000, S = 3, MAXP = 32, MAXM = 4096 };

static void node_open(struct node *n, const char *type, const char *keys, uint64_t seed)
{
    struct ink_err err = {0};
    int rc = node_try(n, type, keys, "sk", seed, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    REQUIRE(rc == 0);
}

/* Captured partials (copies) and the last reply's fields. */
struct sink {
    int np;
    uint8_t *p[MAXP];
    uint32_t len[MAXP];
    int64_t pn[MAXP], pkoff[MAXP]; /* a partial's n and kafka_offset */
    double tau, deff, gamma_eff, yhat, var;
    int64_t dict, n, sources, kpart, koff;
    int m;
    double pts[MAXM * D];
};

static int capture(void *ctx, const struct ink_record *r)
{
    struct sink *s = ctx;
    const uint8_t *part = NULL;
    uint32_t plen = 0;
    for (uint32_t i = 0; i < r->nfields; i++) {
        const struct ink_field *f = &r->fields[i];
        const struct ink_value *v = &f->v;
        if (!strcmp(f->name, "partial") && v->type == INK_V_RAW) part = v->raw.p, plen = v->raw.n;
        if (!strcmp(f->name, "tau")) s->tau = v->f;
        if (!strcmp(f->name, "deff")) s->deff = v->f;
        if (!strcmp(f->name, "gamma_eff")) s->gamma_eff = v->f;
        if (!strcmp(f->name, "yhat")) s->yhat = v->f;
        if (!strcmp(f->name, "var")) s->var = v->f;
        if (!strcmp(f->name, "dict")) s->dict = v->i;
        if (!strcmp(f->name, "n")) s->n = v->i;
        if (!strcmp(f->name, "sources")) s->sources = v->i;
        if (!strcmp(f->name, "kafka_partition")) s->kpart = v->i;
        if (!strcmp(f->name, "kafka_offset")) s->koff = v->i;
        if (!strcmp(f->name, "points") && v->fm.cols <= MAXM) {
            s->m = (int)v->fm.cols;
            memcpy(s->pts, v->fm.p, sizeof(double) * v->fm.rows * v->fm.cols);
        }
    }
    if (part && s->np < MAXP) {
        s->p[s->np] = malloc(plen);
        memcpy(s->p[s->np], part, plen);
        s->len[s->np] = plen;
        s->pn[s->np] = s->n;
        s->pkoff[s->np] = s->koff;
        s->np++;
    }
    return 0;
}

static void sink_free(struct sink *s)
{
    for (int i = 0; i < s->np; i++) free(s->p[i]);
    s->np = 0;
}

static int64_t kafka_offset = -1; /* >= 0: feed tags records as from kafka partition 2 */

static int feed(struct node *n, const double *x, const double *y, struct sink *out)
{
    struct ink_record r;
    memset(&r, 0, sizeof r);
    r.flags = INK_HAS_X | (y ? INK_HAS_Y : 0);
    r.x = x;
    r.dim = D;
    r.y = y ? *y : 0;
    if (kafka_offset >= 0) {
        ink_record_add_i64(&r, "kafka_partition", 2);
        ink_record_add_i64(&r, "kafka_offset", kafka_offset++);
    }
    struct ink_emitter em = {capture, out};
    struct ink_err err = {0};
    int rc = n->vt->process(n->st, &r, &em, &err);
    if (rc) fprintf(stderr, "process: %s\n", err.msg);
    return rc;
}

static void flush(struct node *n, struct sink *out)
{
    struct ink_emitter em = {capture, out};
    struct ink_err err = {0};
    REQUIRE(n->vt->flush(n->st, &em, &err) == 0);
}

/* A partial to the merge, from source `src` (the key tells the sources apart). */
static int give(struct node *m, const uint8_t *p, uint32_t len, const char *key,
                struct ink_err *err)
{
    struct sink dummy = {0};
    struct ink_emitter em = {capture, &dummy};
    struct ink_record r;
    memset(&r, 0, sizeof r);
    r.flags = INK_HAS_KEY;
    r.key = key;
    r.key_len = (uint32_t)strlen(key);
    ink_record_add(&r, "partial", (struct ink_value){.type = INK_V_RAW, .raw = {p, len}});
    ink_record_add_str(&r, "source", "sk", 2);
    return m->vt->process(m->st, &r, &em, err);
}

static int ask(struct node *m, const char *op, const double *x, struct sink *out)
{
    struct ink_record q;
    memset(&q, 0, sizeof q);
    q.flags = INK_HAS_OP;
    q.op = op;
    q.op_len = (uint32_t)strlen(op);
    if (x) q.flags |= INK_HAS_X, q.x = x, q.dim = D;
    struct ink_emitter em = {capture, out};
    struct ink_err err = {0};
    int rc = m->vt->query(m->st, &q, &em, &err);
    if (rc) fprintf(stderr, "query %s: %s\n", op, err.msg);
    return rc;
}

static double gauss(struct ink_rng *g)
{
    double u = ink_rng_uniform(g), v = ink_rng_uniform(g);
    return sqrt(-2 * log1p(-u)) * cos(2 * M_PI * v);
}

/* The stream of tests/test_rls_sketch.c's band test: standard normal points
 * in 3-D, a third of them in a tight blob at (2, 2, 2). */
static void stream(double *X, uint64_t seed)
{
    struct ink_rng g;
    ink_rng_seed(&g, seed);
    for (int i = 0; i < N * D; i++) X[i] = gauss(&g);
    for (int i = 0; i < N; i += 3)
        for (int k = 0; k < D; k++) X[i * D + k] = 2.0 + 0.1 * X[i * D + k];
}

/* Exact RLS tau_i = [K (K + g I)^-1]_ii = 1 - g [(K + g I)^-1]_ii over all N. */
static void exact_rls(const double *X, double sigma, double g, double *tau, double *deff)
{
    double *A = malloc((size_t)N * N * 8);
    REQUIRE(A);
    for (int j = 0; j < N; j++)
        for (int i = j; i < N; i++) {
            double r2 = 0;
            for (int k = 0; k < D; k++) {
                double t = X[i * D + k] - X[j * D + k];
                r2 += t * t;
            }
            A[i + (size_t)j * N] = exp(-r2 / (2 * sigma * sigma)) + (i == j ? g : 0);
        }
    /* [(K + g I)^-1]_ii = |column i of L^-1|^2 (L L^T = K + g I): a third fewer
     * flops than dpotri */
    REQUIRE(LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', N, A, N) == 0);
    REQUIRE(LAPACKE_dtrtri(LAPACK_COL_MAJOR, 'L', 'N', N, A, N) == 0);
    *deff = 0;
    for (int i = 0; i < N; i++) {
        const double *col = A + i + (size_t)i * N;
        tau[i] = 1 - g * cblas_ddot(N - i, col, 1, col, 1);
        *deff += tau[i];
    }
    free(A);
}

#define SKETCH "dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 1.0, qbar: 64, max_dict: 1024"

TEST(disqueak_three_thirds_in_the_band_and_no_larger_than_one_sketch)
{
    static double X[N * D], tau[N];
    stream(X, 1414);
    double deff = 0, alpha = 3.0; /* eps 0.5 */
    exact_rls(X, 1.5, 1.0, tau, &deff);
    struct node sk[S], one, m;
    struct sink parts = {0}, none = {0};
    for (int j = 0; j < S; j++) node_open(&sk[j], "rls_sketch", SKETCH ", publish: 400", 100 + j);
    node_open(&one, "rls_sketch", SKETCH, 200);
    for (int j = 0; j < S; j++) {
        for (int i = j * (N / S); i < (j + 1) * (N / S); i++)
            REQUIRE(feed(&sk[j], X + (size_t)i * D, NULL, &parts) == 0);
        flush(&sk[j], &parts); /* 1000 = 2 x 400 + 200 since: the last partial */
    }
    for (int i = 0; i < N; i++) REQUIRE(feed(&one, X + (size_t)i * D, NULL, &none) == 0);
    CHECK_MSG(parts.np == 3 * S, "%d partials", parts.np);
    node_open(&m, "merge", "mode: rls, " SKETCH ", max_sources: 4", 7);
    for (int i = 0; i < parts.np; i++) {
        struct ink_err err = {0};
        char key[4] = {'k', (char)('0' + i / 3), 0, 0};
        CHECK_MSG(give(&m, parts.p[i], parts.len[i], key, &err) == 0, "%s", err.msg);
    }
    struct sink r = {0}, r1 = {0};
    REQUIRE(ask(&m, "dict", NULL, &r) == 0);
    REQUIRE(ask(&one, "dict", NULL, &r1) == 0);
    CHECK(r.n == N && r.sources == S && r.m == r.dict && r.gamma_eff == 1.0);
    /* every merged atom: its merged score against its exact RLS over all N */
    double lo = INFINITY, hi = -INFINITY;
    int found = 0, out = 0;
    for (int a = 0; a < r.m; a++) {
        const double *x = r.pts + (size_t)a * D;
        int i = 0;
        while (i < N && memcmp(X + (size_t)i * D, x, sizeof(double) * D)) i++;
        if (i == N) continue;
        found++;
        struct sink q = {0};
        REQUIRE(ask(&m, "tau", x, &q) == 0);
        double ratio = q.tau / tau[i];
        lo = fmin(lo, ratio), hi = fmax(hi, ratio);
        out += !(ratio >= 1 / alpha - 1e-9 && ratio <= 1 + 1e-9);
    }
    /* and every point of the stream */
    double plo = INFINITY, phi = -INFINITY;
    int pout = 0;
    for (int i = 0; i < N; i++) {
        struct sink q = {0};
        REQUIRE(ask(&m, "tau", X + (size_t)i * D, &q) == 0);
        double ratio = q.tau / tau[i];
        plo = fmin(plo, ratio), phi = fmax(phi, ratio);
        pout += !(ratio >= 1 / alpha - 1e-9 && ratio <= 1 + 1e-9);
    }
    struct sink dq = {0};
    REQUIRE(ask(&m, "deff", NULL, &dq) == 0);
    printf("DISQUEAK merge of 3 sketches over disjoint thirds of %d points (d_eff %.2f): "
           "%d atoms (one sketch over all: %d, ratio %.3f); tau~/tau of the %d atoms in "
           "[%.4f, %.4f], of all %d points in [%.4f, %.4f] (band [%.4f, 1]); deff %.2f\n",
           N, deff, r.m, r1.m, (double)r.m / r1.m, found, lo, hi, N, plo, phi, 1 / alpha, dq.deff);
    CHECK(found == r.m);
    CHECK_MSG(out == 0, "%d atoms outside the band", out);
    CHECK_MSG(pout == 0, "%d stream points outside the band", pout);
    CHECK_MSG(r.m <= 1.5 * r1.m, "merged %d > 1.5 x %d", r.m, r1.m);
    CHECK(dq.deff >= deff / alpha * 0.8 && dq.deff <= deff * 1.2);

    /* the same partials in the same order: the same merged sketch, also after
     * save -> load into a fresh merge node */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    REQUIRE(m.vt->save(m.st, &pk) == 0);
    struct node m2;
    node_open(&m2, "merge", "mode: rls, " SKETCH ", max_sources: 4", 7);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    REQUIRE(msgpack_unpack_next(&up, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    struct ink_err err = {0};
    CHECK_MSG(m2.vt->load(m2.st, &up.data, &err) == 0, "%s", err.msg);
    struct sink r2 = {0};
    REQUIRE(ask(&m2, "dict", NULL, &r2) == 0);
    CHECK(r2.m == r.m && memcmp(r2.pts, r.pts, sizeof(double) * D * r.m) == 0);
    int same = 0;
    for (int i = 0; i < N; i += 37) {
        struct sink a = {0}, b = {0};
        REQUIRE(ask(&m, "tau", X + (size_t)i * D, &a) == 0);
        REQUIRE(ask(&m2, "tau", X + (size_t)i * D, &b) == 0);
        same += memcmp(&a.tau, &b.tau, sizeof a.tau) == 0;
    }
    CHECK(same == (N + 36) / 37);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    node_close(&m2);
    for (int j = 0; j < S; j++) node_close(&sk[j]);
    node_close(&one);
    node_close(&m);
    sink_free(&parts);
}

TEST(mismatched_partials_are_refused)
{
    static const struct {
        const char *keys, *want;
    } bad[] = {
        {"dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 2.0, publish: 50", "gamma"},
        {"dim: 3, kernel: {type: gaussian, sigma: 1.0}, gamma: 1.0, publish: 50", "kernel"},
        {"dim: 3, kernel: {type: laplacian, sigma: 1.5}, gamma: 1.0, publish: 50", "kernel"},
        {"dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 1.0, qbar: 4, publish: 50", "qbar"},
        {"dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 1.0, eps: 0.25, publish: 50", "eps"},
        {"dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 1.0, max_dict: 64, publish: 50",
         NULL},
    };
    struct node m, kll;
    node_open(&m, "merge", "mode: rls, dim: 3, kernel: {type: gaussian, sigma: 1.5}, max_dict: 64",
              7);
    node_open(&kll, "merge", "mode: kll, k: 200", 7);
    static double X[N * D];
    stream(X, 5);
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        struct node sk;
        struct sink parts = {0};
        node_open(&sk, "rls_sketch", bad[b].keys, 3);
        for (int i = 0; i < 50; i++) REQUIRE(feed(&sk, X + (size_t)i * D, NULL, &parts) == 0);
        REQUIRE(parts.np == 1);
        struct ink_err err = {0};
        int rc = give(&m, parts.p[0], parts.len[0], "a", &err);
        if (bad[b].want) {
            CHECK_MSG(rc == INK_EINVAL && strstr(err.msg, bad[b].want), "%s: rc %d '%s'",
                      bad[b].keys, rc, err.msg);
        } else { /* the matching one is taken */
            CHECK_MSG(rc == 0, "%s", err.msg);
            CHECK(give(&kll, parts.p[0], parts.len[0], "a", &err) == INK_EINVAL);
            CHECK_MSG(strstr(err.msg, "rls partial") != NULL, "%s", err.msg);
            /* truncated, or any one byte changed: refused or taken, never read past */
            CHECK(give(&m, parts.p[0], parts.len[0] - 4, "x", &err) == INK_EINVAL);
            uint8_t *c = malloc(parts.len[0]);
            int refused = 0;
            for (uint32_t k = 0; k < parts.len[0]; k += 7) {
                memcpy(c, parts.p[0], parts.len[0]);
                c[k] ^= 0xa5;
                refused += give(&m, c, parts.len[0], "x", &err) != 0;
                struct sink r = {0};
                ask(&m, "deff", NULL, &r);
            }
            printf("one byte changed at %u places: %d refused\n", (parts.len[0] + 6) / 7, refused);
            REQUIRE(give(&m, parts.p[0], parts.len[0], "x", &err) == 0);
            free(c);
        }
        node_close(&sk);
        sink_free(&parts);
    }
    struct sink r = {0};
    REQUIRE(ask(&m, "deff", NULL, &r) == 0);
    CHECK(r.sources == 2 && r.n == 100); /* "a" and "x" */
    /* a kll partial to an rls merge; predict on a merge without it */
    struct node e;
    struct sink ep = {0};
    node_open(&e, "ecdf", "mode: kll, k: 200, publish: 10", 3);
    for (int i = 0; i < 10; i++) {
        struct ink_record rec;
        memset(&rec, 0, sizeof rec);
        rec.flags = INK_HAS_X;
        rec.x = X + i;
        rec.dim = 1;
        struct ink_emitter em = {capture, &ep};
        struct ink_err err = {0};
        REQUIRE(e.vt->process(e.st, &rec, &em, &err) == 0);
    }
    REQUIRE(ep.np == 1);
    struct ink_err err = {0};
    CHECK(give(&m, ep.p[0], ep.len[0], "b", &err) == INK_EINVAL);
    CHECK_MSG(strstr(err.msg, "mode rls") != NULL, "%s", err.msg);
    CHECK(ask(&m, "predict", X, &r) == INK_ENOTSUP);
    /* configs that cannot be an rls merge */
    struct node bad_m;
    CHECK(node_try(&bad_m, "merge", "mode: kll, dim: 3", "sk", 1, &err) != 0);
    CHECK_MSG(strstr(err.msg, "only for mode rls") != NULL, "%s", err.msg);
    CHECK(node_try(&bad_m, "merge", "mode: rls", "sk", 1, &err) != 0);
    CHECK_MSG(strstr(err.msg, "needs dim") != NULL, "%s", err.msg);
    node_close(&e);
    node_close(&m);
    node_close(&kll);
    sink_free(&ep);
}

/* f(x) = sin(2 x0) + x1 x2 with noise: three sketches with predict on
 * disjoint thirds; the merged KRR's held-out MSE against one sketch over the
 * whole stream. */
TEST(merged_predict_close_to_one_sketch)
{
    static double X[N * D], Y[N];
    stream(X, 99);
    struct ink_rng g;
    ink_rng_seed(&g, 3);
    for (int i = 0; i < N; i++)
        Y[i] = sin(2 * X[i * D]) + X[i * D + 1] * X[i * D + 2] + 0.1 * gauss(&g);
    const char *keys = "dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 0.1, qbar: 16, "
                       "max_dict: 1024, predict: true, mu: 0.1";
    char pk[512];
    snprintf(pk, sizeof pk, "%s, publish: 1000", keys);
    struct node sk[S], one, m;
    struct sink parts = {0}, none = {0};
    for (int j = 0; j < S; j++) node_open(&sk[j], "rls_sketch", pk, 300 + j);
    node_open(&one, "rls_sketch", keys, 400);
    for (int j = 0; j < S; j++)
        for (int i = j * (N / S); i < (j + 1) * (N / S); i++)
            REQUIRE(feed(&sk[j], X + (size_t)i * D, Y + i, &parts) == 0);
    for (int i = 0; i < N; i++) REQUIRE(feed(&one, X + (size_t)i * D, Y + i, &none) == 0);
    REQUIRE(parts.np == S);
    node_open(&m, "merge",
              "mode: rls, dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 0.1, qbar: 16, "
              "predict: true",
              7);
    for (int i = 0; i < S; i++) {
        struct ink_err err = {0};
        char key[3] = {'k', (char)('0' + i), 0};
        CHECK_MSG(give(&m, parts.p[i], parts.len[i], key, &err) == 0, "%s", err.msg);
    }
    double se_m = 0, se_1 = 0, se_0 = 0;
    enum { T = 500 };
    for (int t = 0; t < T; t++) {
        double x[D];
        for (int k = 0; k < D; k++) x[k] = gauss(&g);
        double f = sin(2 * x[0]) + x[1] * x[2];
        struct sink a = {0}, b = {0};
        REQUIRE(ask(&m, "predict", x, &a) == 0);
        REQUIRE(ask(&one, "predict", x, &b) == 0);
        se_m += (a.yhat - f) * (a.yhat - f);
        se_1 += (b.yhat - f) * (b.yhat - f);
        se_0 += f * f;
        CHECK(a.var > 0 && isfinite(a.var));
    }
    printf("merged KRR: held-out MSE %.6g, one sketch over all %.6g (ratio %.4f), predicting 0: "
           "%.4f\n",
           se_m / T, se_1 / T, se_m / se_1, se_0 / T);
    CHECK_MSG(se_m <= 1.2 * se_1, "merged MSE %g > 1.2 x %g", se_m / T, se_1 / T);
    for (int j = 0; j < S; j++) node_close(&sk[j]);
    node_close(&one);
    node_close(&m);
    sink_free(&parts);
}

/* A sketch with publish: partials every 100 arrivals carry the kafka tag of
 * the last record; save -> load -> continue publishes the same bytes as the
 * uninterrupted sketch (KRR statistics included). */
TEST(publish_tags_and_save_load)
{
    static double X[N * D], Y[N];
    stream(X, 8);
    for (int i = 0; i < N; i++) Y[i] = X[i * D] - X[i * D + 2];
    const char *keys = "dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 0.5, qbar: 8, "
                       "max_dict: 256, predict: true, publish: 100";
    struct node a, b;
    struct sink pa = {0}, pb = {0};
    node_open(&a, "rls_sketch", keys, 5);
    node_open(&b, "rls_sketch", keys, 5);
    kafka_offset = 1000;
    for (int i = 0; i < 250; i++) REQUIRE(feed(&a, X + (size_t)i * D, Y + i, &pa) == 0);
    CHECK_MSG(pa.np == 2 && pa.kpart == 2 && pa.pkoff[1] == 1000 + 199 && pa.pn[1] == 200,
              "%d partials, partition %lld, offset %lld, n %lld", pa.np, (long long)pa.kpart,
              (long long)pa.pkoff[1], (long long)pa.pn[1]);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    REQUIRE(a.vt->save(a.st, &pk) == 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    REQUIRE(msgpack_unpack_next(&up, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    struct ink_err err = {0};
    CHECK_MSG(b.vt->load(b.st, &up.data, &err) == 0, "%s", err.msg);
    int64_t o = kafka_offset;
    for (int i = 250; i < 430; i++) REQUIRE(feed(&a, X + (size_t)i * D, Y + i, &pa) == 0);
    flush(&a, &pa);
    kafka_offset = o;
    for (int i = 250; i < 430; i++) REQUIRE(feed(&b, X + (size_t)i * D, Y + i, &pb) == 0);
    flush(&b, &pb);
    kafka_offset = -1;
    /* 300, 400 and the flush's 430 */
    CHECK_MSG(pa.np == 5 && pb.np == 3, "%d %d", pa.np, pb.np);
    for (int i = 0; i < 3 && pb.np == 3 && pa.np == 5; i++)
        CHECK(pa.len[i + 2] == pb.len[i] && memcmp(pa.p[i + 2], pb.p[i], pb.len[i]) == 0);
    CHECK(pb.np == 3 && pb.pkoff[2] == 1000 + 429 && pb.pn[2] == 430);
    /* a merge of the last partial answers predict like the sketch did */
    struct node m;
    node_open(&m, "merge",
              "mode: rls, dim: 3, kernel: {type: gaussian, sigma: 1.5}, gamma: 0.5, qbar: 8, "
              "max_dict: 256, predict: true",
              1);
    REQUIRE(give(&m, pb.p[2], pb.len[2], "k", &err) == 0);
    double worst = 0;
    for (int i = 500; i < 600; i++) {
        struct sink qa = {0}, qm = {0};
        REQUIRE(ask(&a, "predict", X + (size_t)i * D, &qa) == 0);
        REQUIRE(ask(&m, "predict", X + (size_t)i * D, &qm) == 0);
        worst = fmax(worst, fabs(qa.yhat - qm.yhat));
    }
    printf("one partial merged: predict within %.3g of the sketch's\n", worst);
    CHECK(worst < 1e-6);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    node_close(&a);
    node_close(&b);
    node_close(&m);
    sink_free(&pa);
    sink_free(&pb);
}

int main(int argc, char **argv)
{
    openblas_set_num_threads(
        1); /* as test_rls_sketch: no BLAS threads spinning on 2 shared cores */
    return ink_test_main(argc, argv);
}
