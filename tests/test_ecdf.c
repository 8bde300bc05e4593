/* operators/ecdf.c (+ fenwick.c, dominance.c): every mode against an exact
 * computation written here (O(N^2) brute force), with heavy ties, exact
 * duplicates, nodes equal to data values and points outside the grid. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../engine/config.h"
#include "../engine/rng.h"
#include "../operators/dominance.h"
#include "../operators/ecdf.h"
#include "../operators/fenwick.h"
#include "alloc_count.h"
#include "../operators/kll.h"
#include "ink_test.h"

static double test_scale(void)
{
    const char *e = getenv("INK_TEST_SCALE");
    double s = e ? atof(e) : 1.0;
    return s > 0 ? s : 1.0;
}

static int scaled(int n, int floor_n)
{
    double s = test_scale();
    int m = (int)(n * (s < 1 ? s : 1));
    return m < floor_n ? floor_n : m;
}

static double gauss(struct ink_rng *r)
{
    double u = ink_rng_uniform(r), v = ink_rng_uniform(r);
    return sqrt(-2 * log1p(-u)) * cos(2 * M_PI * v);
}

/* ---- a captured output stream ---- */

#define CAP_MAX 20000

struct out_rec {
    double F, Flo, Fhi, dens, yhat, q;
    int64_t n;
    uint64_t seq;
    double x[8];
    uint32_t dim;
    bool has_y, has_key;
    double y;
    char key[16];
};

struct capture {
    int n;
    struct out_rec r[CAP_MAX];
};

static double field(const struct ink_record *r, const char *name)
{
    for (uint32_t i = 0; i < r->nfields; i++) {
        if (strcmp(r->fields[i].name, name) != 0) continue;
        if (r->fields[i].v.type == INK_V_F64) return r->fields[i].v.f;
        if (r->fields[i].v.type == INK_V_I64) return (double)r->fields[i].v.i;
    }
    return NAN;
}

static int capture_emit(void *ctx, const struct ink_record *rec)
{
    struct capture *c = ctx;
    if (c->n >= CAP_MAX) return INK_ENOMEM;
    struct out_rec *o = &c->r[c->n++];
    o->F = field(rec, "F");
    o->Flo = field(rec, "F_lo");
    o->Fhi = field(rec, "F_hi");
    o->dens = field(rec, "density");
    o->yhat = field(rec, "yhat");
    o->q = field(rec, "q");
    o->n = (int64_t)field(rec, "n");
    o->seq = rec->seq;
    o->dim = rec->dim;
    o->has_y = rec->flags & INK_HAS_Y;
    o->y = rec->y;
    o->has_key = rec->flags & INK_HAS_KEY;
    memset(o->key, 0, sizeof o->key);
    if (o->has_key) memcpy(o->key, rec->key, rec->key_len < 15 ? rec->key_len : 15);
    for (uint32_t k = 0; k < rec->dim && k < 8; k++) o->x[k] = rec->x[k];
    return 0;
}

static struct capture *capture_new(void)
{
    return calloc(1, sizeof(struct capture));
}

/* ---- operator lifecycle ---- */

struct op {
    const struct ink_op_vtable *vt;
    void *st;
    void *scratch; /* as the engine gives it (kll: the query view), or NULL */
    struct capture *cap;
    struct ink_emitter em;
};

static struct ink_ecdf_conf conf_kll(int64_t k)
{
    struct ink_ecdf_conf c = {.mode = INK_ECDF_KLL, .k = k, .window = 1000};
    return c;
}

/* with_scratch: hand init the node scratch as the engine does; without it
 * the operator must still work (and give the same answers). */
static int op_open_x(struct op *o, const struct ink_ecdf_conf *c, uint64_t seed, bool with_scratch)
{
    o->vt = &ink_op_ecdf;
    o->st = calloc(1, o->vt->state_size);
    size_t sb = o->vt->scratch_bytes(c);
    o->scratch = with_scratch && sb ? calloc(1, sb) : NULL;
    o->cap = capture_new();
    o->em = (struct ink_emitter){capture_emit, o->cap};
    struct ink_op_init ini = {.name = "test", .seed = seed, .base_dir = ".", .scratch = o->scratch};
    struct ink_err err = {0};
    int rc = o->vt->init(o->st, c, &ini, &err);
    if (rc) fprintf(stderr, "init: %s\n", err.msg);
    return rc;
}

static int op_open(struct op *o, const struct ink_ecdf_conf *c, uint64_t seed)
{
    return op_open_x(o, c, seed, true);
}

static void op_close(struct op *o)
{
    o->vt->fini(o->st);
    o->vt->fini(o->st); /* fini twice is safe */
    free(o->st);
    free(o->scratch);
    free(o->cap);
}

static struct ink_record mkrec(const double *x, uint32_t d, uint64_t seq)
{
    struct ink_record r;
    memset(&r, 0, sizeof r);
    r.flags = INK_HAS_X | INK_HAS_SEQ;
    r.x = x;
    r.dim = d;
    r.seq = seq;
    return r;
}

static int op_feed(struct op *o, const double *x, uint32_t d, uint64_t seq, const double *y)
{
    struct ink_record r = mkrec(x, d, seq);
    if (y) {
        r.flags |= INK_HAS_Y;
        r.y = *y;
    }
    struct ink_err err = {0};
    return o->vt->process(o->st, &r, &o->em, &err);
}

/* A request with op and an optional numeric extra (name, value). */
static int op_query(struct op *o, const char *verb, const double *x, uint32_t d, const char *xname,
                    double xval)
{
    struct ink_record r = mkrec(x, d, 0);
    if (!x) r.flags &= ~INK_HAS_X;
    r.flags |= INK_HAS_OP;
    r.op = verb;
    r.op_len = (uint32_t)strlen(verb);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (xname) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_str(&pk, strlen(xname));
        msgpack_pack_str_body(&pk, xname, strlen(xname));
        msgpack_pack_double(&pk, xval);
        r.extra = (const uint8_t *)sb.data;
        r.extra_len = (uint32_t)sb.size;
        r.extra_n = 1;
    }
    struct ink_err err = {0};
    int rc = o->vt->query(o->st, &r, &o->em, &err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* The message of the last refused load (printed where success is expected). */
static char last_load_err[512];

/* save -> a fresh state -> load. */
static int op_clone(struct op *dst, struct op *src, const struct ink_ecdf_conf *c)
{
    if (op_open(dst, c, 999)) return -1; /* a different seed: the RNG must come from the blob */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rc = src->vt->save(src->st, &pk);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    if (!rc && msgpack_unpack_next(&up, sb.data, sb.size, &off) != MSGPACK_UNPACK_SUCCESS) rc = -1;
    struct ink_err err = {0};
    if (!rc) rc = dst->vt->load(dst->st, &up.data, &err);
    if (rc) snprintf(last_load_err, sizeof last_load_err, "%s", err.msg);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* ---- brute force ---- */

static double brute_le(const double *P, const double *w, int n, int d, const double *z)
{
    double s = 0;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (k < d && P[i * d + k] <= z[k]) k++;
        if (k == d) s += w ? w[i] : 1.0;
    }
    return s;
}

/* ---- grid ---- */

static void grid_conf_regular(struct ink_ecdf_conf *c, int d, double lo, double hi, int M,
                              double *lov, double *hiv, double *nv)
{
    for (int k = 0; k < d; k++) lov[k] = lo, hiv[k] = hi, nv[k] = M;
    c->grid.set = true;
    c->grid.lo = (struct ink_f64_list){lov, d};
    c->grid.hi = (struct ink_f64_list){hiv, d};
    c->grid.n = (struct ink_f64_list){nv, d};
}

/* Largest node <= v (-1 when none) and smallest node >= v (M when none). */
static void bracket_nodes(const double *z, int M, double v, int *lo, int *hi)
{
    *lo = -1;
    *hi = M;
    for (int j = 0; j < M; j++) {
        if (z[j] <= v) *lo = j;
        if (z[j] >= v && *hi == M) *hi = j;
    }
}

/* Streams integer points in {-1..4}^d (ties, duplicates, both sides of the
 * grid) through mode grid on nodes z (same per axis) and checks every
 * per-record bracket against brute-force counts of the records before it. */
static void grid_case(int d, const double *z, int M, bool explicit_nodes, int N, uint64_t seed)
{
    struct ink_ecdf_conf c = {.mode = INK_ECDF_GRID, .k = 200, .window = 1};
    double lov[8], hiv[8], nv[8];
    struct ink_f64_list axes[8];
    if (explicit_nodes) {
        for (int k = 0; k < d; k++) axes[k] = (struct ink_f64_list){(double *)z, M};
        c.grid.set = true;
        c.grid.nodes = (struct ink_f64_lists){axes, d};
    } else {
        grid_conf_regular(&c, d, z[0], z[M - 1], M, lov, hiv, nv);
    }
    struct op o;
    REQUIRE(op_open(&o, &c, seed) == 0);
    double *P = malloc(sizeof(double) * N * d);
    struct ink_rng r;
    ink_rng_seed(&r, seed);
    int bad_lo = 0, bad_hi = 0, bad_exact = 0, on_nodes = 0;
    for (int i = 0; i < N; i++) {
        double *x = P + i * d;
        for (int k = 0; k < d; k++) {
            /* integers -1..4, sometimes a half-integer (off the nodes) */
            x[k] = (double)(int)(ink_rng_next(&r) % 6) - 1;
            if (ink_rng_next(&r) % 5 == 0) x[k] += 0.5;
        }
        REQUIRE(op_feed(&o, x, d, i, NULL) == 0);
        const struct out_rec *e = &o.cap->r[o.cap->n - 1];
        double zlo[8], zhi[8];
        bool has_lo = true, exact = true, over = false;
        for (int k = 0; k < d; k++) {
            int a, b;
            bracket_nodes(z, M, x[k], &a, &b);
            if (a < 0) has_lo = false;
            zlo[k] = a < 0 ? 0 : z[a];
            if (b == M) over = true, b = M - 1;
            zhi[k] = z[b];
            exact = exact && a >= 0 && z[a] == x[k];
        }
        double clo = has_lo ? brute_le(P, NULL, i, d, zlo) : 0;
        double chi = brute_le(P, NULL, i, d, zhi);
        if (over) { /* plus everything beyond the last node on some axis */
            for (int j = 0; j < i; j++) {
                int out = 0;
                for (int k = 0; k < d; k++) out |= P[j * d + k] > z[M - 1];
                chi += out;
            }
        }
        double n = i;
        bad_lo += e->Flo != (i ? clo / n : 0);
        bad_hi += e->Fhi != (i ? chi / n : 0);
        bad_hi += e->n != i;
        if (exact) {
            on_nodes++;
            bad_exact += e->F != (i ? brute_le(P, NULL, i, d, x) / n : 0);
        }
    }
    CHECK_MSG(bad_lo == 0 && bad_hi == 0 && bad_exact == 0,
              "d=%d: %d F_lo, %d F_hi, %d on-node mismatches", d, bad_lo, bad_hi, bad_exact);
    CHECK(on_nodes > 0);
    /* cdf queries at every node (and one beyond) equal the brute-force counts. */
    size_t cells = 1;
    for (int k = 0; k < d; k++) cells *= (size_t)M;
    int bad_q = 0;
    for (size_t cidx = 0; cidx < cells; cidx++) {
        double q[8];
        size_t rem = cidx;
        for (int k = 0; k < d; k++) q[k] = z[rem % M], rem /= M;
        int before = o.cap->n;
        REQUIRE(op_query(&o, "cdf", q, d, NULL, 0) == 0 && o.cap->n == before + 1);
        const struct out_rec *e = &o.cap->r[o.cap->n - 1];
        double want = brute_le(P, NULL, N, d, q) / N;
        bad_q += e->F != want || e->Flo != want || e->Fhi != want || e->n != N;
        o.cap->n = before;
    }
    CHECK_MSG(bad_q == 0, "d=%d: %d node queries differ", d, bad_q);
    op_close(&o);
    free(P);
}

TEST(grid_exact_counts_d1_to_d4)
{
    static const double z[4] = {0, 1, 2, 3}; /* data are -1..4: both sides outside */
    int N[5] = {0, 2000, 2000, 1200, 800};
    for (int d = 1; d <= 4; d++) {
        grid_case(d, z, 4, false, scaled(N[d], 200), 100 + d);
        grid_case(d, z, 4, true, scaled(N[d], 200), 200 + d);
    }
    static const double zi[5] = {-0.5, 0.5, 1, 2.5, 3}; /* irregular, some at data values */
    for (int d = 1; d <= 3; d++) grid_case(d, zi, 5, true, scaled(N[d], 200), 300 + d);
}

TEST(grid_single_node_and_tiny)
{
    static const double z[1] = {1};
    grid_case(1, z, 1, true, 500, 7);
    grid_case(2, z, 1, true, 500, 8);
}

TEST(grid_weighted_sums)
{
    for (int d = 1; d <= 3; d++) {
        struct ink_ecdf_conf c = {.mode = INK_ECDF_GRID, .window = 1, .weighted = true};
        double lov[8], hiv[8], nv[8];
        int M = d == 3 ? 9 : 17;
        grid_conf_regular(&c, d, -2, 2, M, lov, hiv, nv);
        struct op o;
        REQUIRE(op_open(&o, &c, 1) == 0);
        int N = scaled(3000, 300);
        double *P = malloc(sizeof(double) * N * d), *w = malloc(sizeof(double) * N), sabs = 0;
        struct ink_rng r;
        ink_rng_seed(&r, 77 + d);
        for (int i = 0; i < N; i++) {
            for (int k = 0; k < d; k++) P[i * d + k] = gauss(&r);
            w[i] = gauss(&r);
            sabs += fabs(w[i]);
            REQUIRE(op_feed(&o, P + i * d, d, i, &w[i]) == 0);
        }
        double worst = 0;
        size_t cells = 1;
        for (int k = 0; k < d; k++) cells *= (size_t)M;
        for (size_t cidx = 0; cidx < cells; cidx++) {
            double q[8];
            size_t rem = cidx;
            for (int k = 0; k < d; k++) q[k] = -2 + 4.0 * (double)(rem % M) / (M - 1), rem /= M;
            o.cap->n = 0;
            REQUIRE(op_query(&o, "cdf", q, d, NULL, 0) == 0);
            double got = o.cap->r[0].F * N, want = brute_le(P, w, N, d, q);
            if (fabs(got - want) > worst) worst = fabs(got - want);
        }
        printf("  grid weighted d=%d: max |fast - brute| / sum|y| = %.3g\n", d, worst / sabs);
        CHECK(worst <= 1e-12 * sabs);
        /* Records without y are refused and leave the state unchanged. */
        o.cap->n = 0;
        CHECK(op_feed(&o, P, d, 0, NULL) == INK_EINVAL && o.cap->n == 0);
        op_close(&o);
        free(P);
        free(w);
    }
}

TEST(grid_rejects_bad_records_unchanged)
{
    struct ink_ecdf_conf c = {.mode = INK_ECDF_GRID, .window = 1};
    double lov[2], hiv[2], nv[2];
    grid_conf_regular(&c, 2, 0, 1, 3, lov, hiv, nv);
    struct op o;
    REQUIRE(op_open(&o, &c, 1) == 0);
    double x[3] = {0.5, 0.5, 0.5}, bad[2] = {NAN, 0};
    CHECK(op_feed(&o, x, 3, 0, NULL) == INK_EDIM);
    CHECK(op_feed(&o, bad, 2, 0, NULL) == INK_EINVAL);
    CHECK(o.cap->n == 0);
    CHECK(op_feed(&o, x, 2, 0, NULL) == 0 && o.cap->r[0].n == 0);
    CHECK(op_feed(&o, x, 2, 1, NULL) == 0 && o.cap->r[1].n == 1);
    /* No room left for F: refused, state unchanged (the next n is still 2). */
    struct ink_record full = mkrec(x, 2, 9);
    static const char *const names[INK_MAX_FIELDS] = {
        "f0",  "f1",  "f2",  "f3",  "f4",  "f5",  "f6",  "f7",  "f8",  "f9",  "f10", "f11",
        "f12", "f13", "f14", "f15", "f16", "f17", "f18", "f19", "f20", "f21", "f22", "f23"};
    for (int i = 0; i < INK_MAX_FIELDS; i++) ink_record_add_i64(&full, names[i], i);
    struct ink_err err = {0};
    CHECK(o.vt->process(o.st, &full, &o.em, &err) == INK_EINVAL && o.cap->n == 2);
    CHECK(op_feed(&o, x, 2, 2, NULL) == 0 && o.cap->r[2].n == 2);
    CHECK(op_query(&o, "nope", x, 2, NULL, 0) == INK_ENOTSUP);
    CHECK(op_query(&o, "quantile", NULL, 0, "r", 0.5) == INK_ENOTSUP);
    op_close(&o);
}

/* ---- exact (D&C) ---- */

static void exact_case(int d, int W, int nwin, int vals, bool weighted, uint64_t seed)
{
    struct ink_ecdf_conf c = {.mode = INK_ECDF_EXACT, .window = W, .dim = d, .weighted = weighted};
    struct op o;
    REQUIRE(op_open(&o, &c, seed) == 0);
    int N = W * nwin + W / 2; /* a partial window stays pending */
    double *P = malloc(sizeof(double) * N * d), *w = malloc(sizeof(double) * N);
    struct ink_rng r;
    ink_rng_seed(&r, seed);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < d; k++)
            P[i * d + k] = vals ? (double)(ink_rng_next(&r) % (uint64_t)vals) : gauss(&r);
        if (i % 7 == 3 && i > 0) memcpy(P + i * d, P + (i - 1) * d, sizeof(double) * d);
        w[i] = weighted ? gauss(&r) : 1.0;
        REQUIRE(op_feed(&o, P + i * d, d, i, weighted ? &w[i] : NULL) == 0);
    }
    REQUIRE(o.cap->n == W * nwin);
    int bad = 0;
    double worst = 0;
    for (int i = 0; i < W * nwin; i++) {
        const struct out_rec *e = &o.cap->r[i];
        int win = i / W;
        const double *Pw = P + (size_t)win * W * d;
        double want = brute_le(Pw, w + (size_t)win * W, W, d, Pw + (size_t)(i % W) * d), sabs = 0;
        bad += e->seq != (uint64_t)i || e->n != W || e->dim != (uint32_t)d;
        bad += memcmp(e->x, P + (size_t)i * d, sizeof(double) * d) != 0;
        if (weighted) {
            for (int j = 0; j < W; j++) sabs += fabs(w[win * W + j]);
            double err = fabs(e->F * W - want) / sabs;
            if (err > worst) worst = err;
            bad += !(err <= 1e-12);
        } else {
            bad += e->F != want / W;
        }
    }
    CHECK_MSG(bad == 0, "d=%d W=%d vals=%d weighted=%d: %d mismatches (worst rel %.3g)", d, W, vals,
              weighted, bad, worst);
    /* The pending partial window answers cdf queries by its own points. */
    int pend = N - W * nwin;
    o.cap->n = 0;
    REQUIRE(op_query(&o, "cdf", P + (size_t)(N - 1) * d, d, NULL, 0) == 0);
    double want = brute_le(P + (size_t)W * nwin * d, weighted ? w + W * nwin : NULL, pend, d,
                           P + (size_t)(N - 1) * d);
    CHECK_NEAR(o.cap->r[0].F * pend, want, 1e-9 * (fabs(want) + 1));
    CHECK(o.cap->r[0].n == pend);
    op_close(&o);
    free(P);
    free(w);
}

TEST(exact_window_counts_d1_to_d4)
{
    for (int d = 1; d <= 4; d++) {
        int W = scaled(d <= 2 ? 2000 : 1000, 100);
        exact_case(d, W, 2, 4, false, 10 + d); /* integer coordinates 0..3: heavy ties */
        exact_case(d, W, 1, 0, false, 20 + d); /* continuous, deep recursion */
        exact_case(d, 1, 3, 4, false, 30 + d); /* windows of one and two */
        exact_case(d, 2, 3, 2, false, 40 + d);
        exact_case(d, 37, 3, 3, false, 50 + d);
    }
}

TEST(exact_window_keeps_matching_keys)
{
    /* Unkeyed use on a mixed stream: only points with the closing record's key keep it. */
    struct ink_ecdf_conf c = {.mode = INK_ECDF_EXACT, .window = 4, .dim = 1};
    struct op o;
    REQUIRE(op_open(&o, &c, 1) == 0);
    static const char *const keys[4] = {"a", "b", NULL, "a"};
    for (int i = 0; i < 4; i++) {
        double x = i;
        struct ink_record r = mkrec(&x, 1, (uint64_t)i);
        if (keys[i]) {
            r.flags |= INK_HAS_KEY;
            r.key = keys[i];
            r.key_len = 1;
        }
        struct ink_err err;
        REQUIRE(o.vt->process(o.st, &r, &o.em, &err) == 0);
    }
    REQUIRE(o.cap->n == 4);
    CHECK(o.cap->r[0].has_key && !strcmp(o.cap->r[0].key, "a"));
    CHECK(!o.cap->r[1].has_key && !o.cap->r[2].has_key);
    CHECK(o.cap->r[3].has_key && !strcmp(o.cap->r[3].key, "a"));
    CHECK(o.cap->r[3].F == 1.0 && o.cap->r[0].F == 0.25);
    op_close(&o);
}

TEST(exact_window_weighted)
{
    for (int d = 1; d <= 4; d++) {
        exact_case(d, scaled(1500, 100), 2, 4, true, 60 + d);
        exact_case(d, scaled(1000, 100), 1, 0, true, 70 + d);
    }
}

/* A cdf request with `points` (m points of d numbers; inner length dd, so a
 * test can send a wrong one); the reply's F array lands in F[], n in *n. */
static double qp_F[4096];
static int64_t qp_n;
static uint32_t qp_m;

static int qp_emit(void *ctx, const struct ink_record *rec)
{
    (void)ctx;
    qp_m = 0, qp_n = -1;
    for (uint32_t i = 0; i < rec->nfields; i++) {
        const struct ink_field *f = &rec->fields[i];
        if (!strcmp(f->name, "F") && f->v.type == INK_V_F64S) {
            qp_m = f->v.fa.n;
            memcpy(qp_F, f->v.fa.p, sizeof(double) * qp_m);
        }
        if (!strcmp(f->name, "n") && f->v.type == INK_V_I64) qp_n = f->v.i;
    }
    return 0;
}

static int op_query_points(struct op *o, const double *Q, uint32_t m, uint32_t dd)
{
    struct ink_record r = mkrec(NULL, 0, 0);
    r.flags = INK_HAS_OP;
    r.op = "cdf";
    r.op_len = 3;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "points", 6);
    msgpack_pack_array(&pk, m);
    for (uint32_t i = 0; i < m; i++) {
        msgpack_pack_array(&pk, dd);
        for (uint32_t k = 0; k < dd; k++) msgpack_pack_double(&pk, Q[(size_t)i * dd + k]);
    }
    r.extra = (const uint8_t *)sb.data;
    r.extra_len = (uint32_t)sb.size;
    r.extra_n = 1;
    struct ink_err err = {0};
    struct ink_emitter em = {qp_emit, NULL};
    qp_m = 0, qp_n = -1;
    int rc = o->vt->query(o->st, &r, &em, &err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* exact: F of the pending window at many points at once (bichromatic D&C)
 * equals the brute-force count, d = 1..4, heavy ties, query points on the
 * data values, between them and outside on both sides; weighted too. */
TEST(exact_query_points_bichromatic)
{
    for (int d = 1; d <= 4; d++) {
        for (int weighted = 0; weighted < 2; weighted++) {
            int W = 600, cnt = 437, M = 300;
            struct ink_ecdf_conf c = {.mode = INK_ECDF_EXACT,
                                      .window = W,
                                      .dim = d,
                                      .weighted = weighted,
                                      .max_query_points = M};
            struct op o;
            REQUIRE(op_open(&o, &c, 90 + d) == 0);
            struct ink_rng r;
            ink_rng_seed(&r, 100 + d);
            double *P = malloc(sizeof(double) * cnt * d), *w = malloc(sizeof(double) * cnt);
            double *Q = malloc(sizeof(double) * (M + 1) * (d + 1));
            REQUIRE(op_query_points(&o, Q, 0, d) == INK_EINVAL); /* no points */
            for (int k = 0; k < M * d; k++) Q[k] = 0;
            REQUIRE(op_query_points(&o, Q, 5, d) == 0); /* empty window: all 0, n = 0 */
            CHECK(qp_m == 5 && qp_n == 0 && qp_F[0] == 0 && qp_F[4] == 0);
            for (int i = 0; i < cnt; i++) {
                for (int k = 0; k < d; k++) P[i * d + k] = (double)(ink_rng_next(&r) % 6);
                w[i] = weighted ? 0.5 + ink_rng_uniform(&r) : 1.0;
                REQUIRE(op_feed(&o, P + i * d, d, i, weighted ? &w[i] : NULL) == 0);
            }
            for (int i = 0; i < M * d; i++)
                Q[i] = i % 3 ? (double)((int)(ink_rng_next(&r) % 9) - 1) /* -1..7: on, off, out */
                             : -1.5 + 9 * ink_rng_uniform(&r);
            REQUIRE(op_query_points(&o, Q, M, d) == 0);
            int bad = qp_m != (uint32_t)M || qp_n != cnt;
            double tot = 0;
            for (int i = 0; i < cnt; i++) tot += w[i];
            for (int t = 0; t < M && !bad; t++) {
                double want = brute_le(P, weighted ? w : NULL, cnt, d, Q + (size_t)t * d) / cnt;
                bad += weighted ? !(fabs(qp_F[t] - want) <= 1e-12 * tot / cnt) : qp_F[t] != want;
            }
            CHECK_MSG(bad == 0, "d %d weighted %d: %d wrong", d, weighted, bad);
            /* refused: one point too many, a point of the wrong length */
            CHECK(op_query_points(&o, Q, M + 1, d) == INK_EINVAL);
            CHECK(op_query_points(&o, Q, 3, d + 1) == INK_EINVAL);
            op_close(&o);
            free(P), free(w), free(Q);
        }
    }
    /* other modes ask one x; max_query_points 0 takes none */
    struct ink_ecdf_conf k = conf_kll(64);
    struct op o;
    REQUIRE(op_open(&o, &k, 1) == 0);
    double q[2] = {0, 0};
    CHECK(op_query_points(&o, q, 1, 1) == INK_ENOTSUP);
    op_close(&o);
    struct ink_ecdf_conf e = {.mode = INK_ECDF_EXACT, .window = 10, .dim = 1};
    REQUIRE(op_open(&o, &e, 1) == 0);
    CHECK(op_query_points(&o, q, 1, 1) == INK_EINVAL);
    op_close(&o);
}

TEST(dominance_bichromatic_vs_bruteforce)
{
    for (int d = 1; d <= 5; d++) {
        int ns = scaled(2000, 200), nt = scaled(700, 70);
        double *S = malloc(sizeof(double) * ns * d), *T = malloc(sizeof(double) * nt * d);
        double *w = malloc(sizeof(double) * ns), *F = malloc(sizeof(double) * nt);
        struct ink_rng r;
        ink_rng_seed(&r, 500 + d);
        for (int i = 0; i < ns; i++) {
            for (int k = 0; k < d; k++) S[i * d + k] = (double)(ink_rng_next(&r) % 5);
            w[i] = gauss(&r);
        }
        /* Targets: half copies of sources (ties across the two sets), half fresh. */
        for (int t = 0; t < nt; t++)
            for (int k = 0; k < d; k++)
                T[t * d + k] = t % 2 ? S[(t * 13 % ns) * d + k]
                                     : (double)(ink_rng_next(&r) % 6) - 0.5 * (k % 2);
        struct ink__dom D;
        void *mem = malloc(ink__dom_bytes(d, (size_t)(ns + nt)));
        ink__dom_init(&D, d, (size_t)(ns + nt), mem);
        ink__dom_run(&D, S, NULL, ns, T, nt, F);
        int bad = 0;
        for (int t = 0; t < nt; t++) bad += F[t] != brute_le(S, NULL, ns, d, T + t * d);
        ink__dom_run(&D, S, w, ns, T, nt, F);
        double sabs = 0, worst = 0;
        for (int i = 0; i < ns; i++) sabs += fabs(w[i]);
        for (int t = 0; t < nt; t++) {
            double e = fabs(F[t] - brute_le(S, w, ns, d, T + t * d));
            if (e > worst) worst = e;
        }
        CHECK_MSG(bad == 0, "d=%d: %d count mismatches", d, bad);
        CHECK_MSG(worst <= 1e-12 * sabs, "d=%d: weighted error %.3g of sum|w| %.3g", d, worst,
                  sabs);
        /* No sources, no targets: all zero, nothing read. */
        ink__dom_run(&D, S, NULL, 0, T, nt, F);
        CHECK(F[0] == 0 && F[nt - 1] == 0);
        free(mem);
        free(S);
        free(T);
        free(w);
        free(F);
    }
}

/* ---- kde ---- */

static double brute_kernel_sum(const double *P, const double *w, int n, int d, const double *z,
                               const double *h)
{
    double s = 0;
    for (int i = 0; i < n; i++) {
        double e = 0;
        for (int k = 0; k < d; k++) e += fabs(z[k] - P[i * d + k]) / h[k];
        s += (w ? w[i] : 1.0) * exp(-e);
    }
    return s;
}

static void kde_case(int d, int M, double spread, double hval, int N, uint64_t seed, bool uniform)
{
    struct ink_ecdf_conf c = {.mode = INK_ECDF_KDE, .window = 1, .regression = true};
    double lov[8], hiv[8], nv[8], hv[8];
    grid_conf_regular(&c, d, -spread, spread, M, lov, hiv, nv);
    for (int k = 0; k < d; k++) hv[k] = hval * (1 + 0.25 * k);
    c.h = (struct ink_f64_list){hv, d};
    struct op o;
    REQUIRE(op_open(&o, &c, seed) == 0);
    double *P = malloc(sizeof(double) * N * d), *y = malloc(sizeof(double) * N);
    struct ink_rng r;
    ink_rng_seed(&r, seed);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < d; k++)
            P[i * d + k] =
                uniform ? (2 * ink_rng_uniform(&r) - 1) * spread * 1.05 : gauss(&r) * spread / 2.5;
        y[i] = sin(P[i * d]) + 0.1 * gauss(&r);
        REQUIRE(op_feed(&o, P + i * d, d, i, &y[i]) == 0);
    }
    double norm = N * ldexp(1, d);
    for (int k = 0; k < d; k++) norm *= hv[k];
    size_t cells = 1;
    for (int k = 0; k < d; k++) cells *= (size_t)M;
    double worst_d = 0, worst_y = 0;
    int nz = 0;
    for (size_t cidx = 0; cidx < cells; cidx++) {
        double q[8];
        size_t rem = cidx;
        for (int k = 0; k < d; k++)
            q[k] = (rem % M + 1 == (size_t)M)
                       ? spread
                       : -spread + 2 * spread * ((double)(rem % M) / (M - 1)),
            rem /= M;
        o.cap->n = 0;
        REQUIRE(op_query(&o, "density", q, d, NULL, 0) == 0);
        double s1 = brute_kernel_sum(P, NULL, N, d, q, hv),
               sy = brute_kernel_sum(P, y, N, d, q, hv);
        double want = s1 / norm, got = o.cap->r[0].dens;
        double e = fabs(got - want) / want;
        if (want > 0 && e > worst_d) worst_d = e;
        nz += want > 0;
        if (s1 > 0) {
            /* yhat is a ratio of sums that may cancel: scale by sum|y| K. */
            double sabs = 0;
            for (int i = 0; i < N; i++) {
                double ee = 0;
                for (int k = 0; k < d; k++) ee += fabs(q[k] - P[i * d + k]) / hv[k];
                sabs += fabs(y[i]) * exp(-ee);
            }
            double ey = fabs(o.cap->r[0].yhat - sy / s1) / (sabs / s1);
            if (ey > worst_y) worst_y = ey;
        }
    }
    printf("  kde d=%d M=%d spread %g h %g N %d: max rel err density %.3g, yhat %.3g (%d nodes "
           "with mass)\n",
           d, M, spread, hval, N, worst_d, worst_y, nz);
    CHECK(nz > 0);
    CHECK(worst_d <= 1e-10);
    CHECK(worst_y <= 1e-10);
    op_close(&o);
    free(P);
    free(y);
}

TEST(kde_equals_bruteforce_at_nodes)
{
    kde_case(1, 64, 3, 0.2, scaled(3000, 300), 1, false);
    kde_case(2, 24, 3, 0.2, scaled(2000, 200), 2, false);
    kde_case(3, 10, 3, 0.3, scaled(800, 100), 3, false);
}

TEST(kde_stable_with_spread_150_h_01)
{
    /* Global weights exp(+-x/h) would need exp(1500): not representable. */
    CHECK(isinf(exp(150 / 0.1)));
    kde_case(1, 61, 150, 0.1, scaled(3000, 300), 4, true);
    kde_case(2, 31, 150, 0.1, scaled(2000, 200), 5, true);
}

TEST(kde_per_record_density_is_nearest_node_before_update)
{
    struct ink_ecdf_conf c = {.mode = INK_ECDF_KDE, .window = 1};
    double lov[1], hiv[1], nv[1], hv[1] = {0.5};
    grid_conf_regular(&c, 1, -2, 2, 9, lov, hiv, nv);
    c.h = (struct ink_f64_list){hv, 1};
    struct op o;
    REQUIRE(op_open(&o, &c, 3) == 0);
    double P[200];
    struct ink_rng r;
    ink_rng_seed(&r, 3);
    int bad = 0;
    for (int i = 0; i < 200; i++) {
        P[i] = gauss(&r);
        REQUIRE(op_feed(&o, &P[i], 1, i, NULL) == 0);
        const struct out_rec *e = &o.cap->r[i];
        double node = fmin(2, fmax(-2, round(P[i] * 2) / 2)); /* nodes every 0.5 */
        double want = i ? brute_kernel_sum(P, NULL, i, 1, &node, hv) / (i * 2 * hv[0]) : 0;
        bad += !(fabs(e->dens - want) <= 1e-12 * (want + 1e-300));
        bad += !isnan(e->yhat); /* no regression: no yhat field */
    }
    CHECK(bad == 0);
    op_close(&o);
}

/* ---- kll through the operator ---- */

TEST(kll_operator_fields_and_queries)
{
    struct ink_ecdf_conf c = conf_kll(200);
    struct op o;
    REQUIRE(op_open(&o, &c, 42) == 0);
    int N = 20000, bad = 0;
    double *x = malloc(sizeof(double) * N);
    struct ink_rng r;
    ink_rng_seed(&r, 5);
    double eps = ink__kll_eps(200, false);
    for (int i = 0; i < N; i++) {
        x[i] = gauss(&r);
        o.cap->n = 0;
        REQUIRE(op_feed(&o, &x[i], 1, i, NULL) == 0);
        const struct out_rec *e = &o.cap->r[0];
        bad += e->n != i;
        if (i % 97 == 0 && i > 0) bad += fabs(e->F - brute_le(x, NULL, i, 1, &x[i]) / i) > eps;
    }
    CHECK(bad == 0);
    o.cap->n = 0;
    double med = 0;
    REQUIRE(op_query(&o, "quantile", NULL, 0, "r", 0.5) == 0);
    double q = o.cap->r[0].q;
    CHECK(fabs(brute_le(x, NULL, N, 1, &q) / N - 0.5) <= eps);
    CHECK(op_query(&o, "cdf", &med, 1, NULL, 0) == 0);
    CHECK(fabs(o.cap->r[1].F - brute_le(x, NULL, N, 1, &med) / N) <= eps);
    CHECK(o.cap->r[1].n == N);
    CHECK(op_query(&o, "quantile", NULL, 0, "r", 1.5) == INK_EINVAL);
    CHECK(op_query(&o, "quantile", NULL, 0, NULL, 0) == INK_EINVAL);
    CHECK(op_query(&o, "density", &med, 1, NULL, 0) == INK_ENOTSUP);
    double two[2] = {0, 0};
    CHECK(op_feed(&o, two, 2, 0, NULL) == INK_EDIM);
    op_close(&o);
    free(x);
}

/* The KLL query view (node scratch, kll.h) changes speed, never answers: F
 * of every record equals the operator's without scratch, bit for bit, for
 * several k, on a stream that stays with one state long enough for the view
 * to adopt it. */
TEST(kll_view_scratch_same_answers)
{
    int N = 60000;
    double *x = malloc(sizeof(double) * N);
    struct ink_rng r;
    ink_rng_seed(&r, 17);
    for (int i = 0; i < N; i++) x[i] = i % 5 == 0 ? (double)(i % 37) : gauss(&r);
    int64_t ks[] = {8, 50, 200, 1000};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        struct ink_ecdf_conf c = conf_kll(ks[t]);
        struct op a, b;
        REQUIRE(op_open_x(&a, &c, 3, true) == 0);
        REQUIRE(op_open_x(&b, &c, 3, false) == 0);
        REQUIRE(a.scratch != NULL && b.scratch == NULL);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            a.cap->n = b.cap->n = 0;
            REQUIRE(op_feed(&a, &x[i], 1, i, NULL) == 0);
            REQUIRE(op_feed(&b, &x[i], 1, i, NULL) == 0);
            bad += a.cap->r[0].F != b.cap->r[0].F || a.cap->r[0].n != b.cap->r[0].n;
        }
        fprintf(stderr, "k %lld: %d of %d records differ\n", (long long)ks[t], bad, N);
        CHECK(bad == 0);
        op_close(&a);
        op_close(&b);
    }
    free(x);
}

/* ---- memory bounds ---- */

TEST(mem_bound_fixed_by_parameters)
{
    const struct ink_op_vtable *vt = &ink_op_ecdf;
    struct ink_ecdf_conf c = conf_kll(200);
    CHECK(vt->mem_bound(&c) == ink__kll_bytes(200, false));
    CHECK(ink__kll_bytes(200, false) <= 9 * 1024); /* per key: ~1000 doubles at k = 200 */
    /* the query views are per node, not per key: fixed by k, 4 views of under
     * 44 KiB at k = 200, one view at the largest k */
    CHECK(ink__kll_pool_views(200) == 4 && ink__kll_view_bytes(200) <= 44 * 1024);
    CHECK(vt->scratch_bytes(&c) == sizeof(struct ink__kll_pool) + 4 * ink__kll_view_bytes(200));
    CHECK(ink__kll_pool_views(65535) == 1);
    c.k = 1000;
    CHECK(vt->mem_bound(&c) == ink__kll_bytes(1000, false) &&
          ink__kll_bytes(1000, false) > ink__kll_bytes(200, false));

    struct ink_ecdf_conf g = {.mode = INK_ECDF_GRID, .window = 1};
    double lov[3], hiv[3], nv[3];
    grid_conf_regular(&g, 3, 0, 1, 64, lov, hiv, nv);
    size_t cells = 64 * 64 * 64;
    CHECK(vt->mem_bound(&g) == cells * 8 + 3 * 64 * 8);
    g.mode = INK_ECDF_KDE;
    double hv[1] = {0.1};
    g.h = (struct ink_f64_list){hv, 1};
    CHECK(vt->mem_bound(&g) == cells * 8 * (1 + 8) + 3 * 64 * 8);
    g.regression = true;
    CHECK(vt->mem_bound(&g) == cells * 8 * (1 + 16) + 3 * 64 * 8);

    struct ink_ecdf_conf e = {.mode = INK_ECDF_EXACT, .window = 1000, .dim = 3};
    size_t b = vt->mem_bound(&e);
    CHECK(b == ink__dom_bytes(3, 2000) + 1000 * (3 * 8 + 5 * 8 + 4));
    /* kde's scratch is the grid-wide density reply (density and yhat per node),
     * once per node */
    CHECK(vt->scratch_bytes(&e) == 0 && vt->scratch_bytes(&g) == cells * 8 * 2);
    /* exact's batch-query buffer is node scratch, not per key: capped at the
     * window, 1000 points of 3 and their F */
    e.max_query_points = 1024;
    CHECK(vt->scratch_bytes(&e) == 1000 * (3 + 1) * 8 && vt->mem_bound(&e) == b);
    e.max_query_points = 0;
    /* The bound does not depend on what flows: a KLL state never grows. */
    struct op o;
    REQUIRE(op_open(&o, &c, 1) == 0);
    struct ink_rng r;
    ink_rng_seed(&r, 1);
    for (int i = 0; i < 300000; i++) {
        double x = ink_rng_uniform(&r);
        o.cap->n = 0;
        REQUIRE(op_feed(&o, &x, 1, i, NULL) == 0);
    }
    CHECK(vt->mem_bound(&c) == ink__kll_bytes(1000, false));
    op_close(&o);
}

TEST(config_checks)
{
    const struct ink_op_vtable *vt = &ink_op_ecdf;
    struct ink_err err = {0};
    struct ink_ecdf_conf c = {.mode = INK_ECDF_GRID, .window = 1};
    CHECK(vt->check(&c, &err) == INK_EINVAL && strstr(err.msg, "grid") != NULL);
    double lo[2] = {0, 0}, hi[2] = {1, 1}, n[2] = {3, 3.5};
    c.grid = (struct ink_ecdf_grid_conf){true, {lo, 2}, {hi, 2}, {n, 2}, {NULL, 0}};
    CHECK(vt->check(&c, &err) == INK_EINVAL); /* n not an integer */
    n[1] = 3;
    CHECK(vt->check(&c, &err) == 0);
    c.dim = 3;
    CHECK(vt->check(&c, &err) == INK_EINVAL);
    c.dim = 0;
    c.mode = INK_ECDF_KDE;
    CHECK(vt->check(&c, &err) == 0); /* no h: the default, twice the node spacing */
    n[0] = 1, hi[0] = 0;             /* one node on axis 0: no spacing, so h is needed */
    CHECK(vt->check(&c, &err) == INK_EINVAL && strstr(err.msg, "give h") != NULL);
    n[0] = 3, hi[0] = 1;
    double nodes_bad[3] = {0, 2, 1};
    struct ink_f64_list ax[1] = {{nodes_bad, 3}};
    struct ink_ecdf_conf e = {.mode = INK_ECDF_GRID, .window = 1};
    e.grid.set = true;
    e.grid.nodes = (struct ink_f64_lists){ax, 1};
    CHECK(vt->check(&e, &err) == INK_EINVAL && strstr(err.msg, "increasing") != NULL);
    struct ink_ecdf_conf x = {.mode = INK_ECDF_EXACT, .window = 10};
    CHECK(vt->check(&x, &err) == INK_EINVAL && strstr(err.msg, "dim") != NULL);
    struct ink_ecdf_conf k = conf_kll(4);
    CHECK(vt->check(&k, &err) == INK_ERANGE);
    k.k = 200;
    k.weighted = true;
    CHECK(vt->check(&k, &err) == INK_EINVAL && strstr(err.msg, "weighted") != NULL);
    k.weighted = false;
    k.regression = true;
    CHECK(vt->check(&k, &err) == INK_EINVAL && strstr(err.msg, "regression") != NULL);
}

/* ---- save -> load -> identical continuation ---- */

static void continuation_case(const struct ink_ecdf_conf *c, int d, int N, bool with_y)
{
    struct op a, b;
    REQUIRE(op_open(&a, c, 17) == 0);
    struct ink_rng r;
    ink_rng_seed(&r, 23);
    double *P = malloc(sizeof(double) * N * d), *y = malloc(sizeof(double) * N);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < d; k++) P[i * d + k] = gauss(&r);
        y[i] = gauss(&r);
    }
    int half = N / 2 + 3;
    for (int i = 0; i < half; i++) {
        a.cap->n = 0;
        REQUIRE(op_feed(&a, P + i * d, d, i, with_y ? &y[i] : NULL) == 0);
    }
    int crc = op_clone(&b, &a, c);
    if (crc) fprintf(stderr, "load: %s\n", last_load_err);
    REQUIRE(crc == 0);
    a.cap->n = 0;
    for (int i = half; i < N; i++) {
        REQUIRE(op_feed(&a, P + i * d, d, i, with_y ? &y[i] : NULL) == 0);
        REQUIRE(op_feed(&b, P + i * d, d, i, with_y ? &y[i] : NULL) == 0);
    }
    REQUIRE(a.cap->n == b.cap->n && a.cap->n > 0);
    CHECK(memcmp(a.cap->r, b.cap->r, sizeof(struct out_rec) * (size_t)a.cap->n) == 0);
    /* A blob from another mode is refused. */
    struct ink_ecdf_conf other = conf_kll(64);
    struct op z;
    if (c->mode != INK_ECDF_KLL) {
        CHECK(op_clone(&z, &a, &other) == INK_ESTATE);
        op_close(&z);
    }
    op_close(&a);
    op_close(&b);
    free(P);
    free(y);
}

TEST(save_load_identical_continuation)
{
    struct ink_ecdf_conf k = conf_kll(64);
    continuation_case(&k, 1, 30000, false);
    struct ink_ecdf_conf g = {.mode = INK_ECDF_GRID, .window = 1, .weighted = true};
    double lov[2], hiv[2], nv[2], hv[1] = {0.3};
    grid_conf_regular(&g, 2, -1, 1, 11, lov, hiv, nv);
    continuation_case(&g, 2, 4000, true);
    struct ink_ecdf_conf kd = g;
    kd.mode = INK_ECDF_KDE;
    kd.weighted = false;
    kd.regression = true;
    kd.h = (struct ink_f64_list){hv, 1};
    continuation_case(&kd, 2, 3000, true);
    struct ink_ecdf_conf e = {.mode = INK_ECDF_EXACT, .window = 300, .dim = 3};
    continuation_case(&e, 3, 2000, false);
}

TEST(load_refuses_mismatch_and_leaves_state)
{
    /* A kll blob of k = 64 into k = 32, a 2x11 grid blob into 2x12: refused,
     * and the refused state goes on exactly like a fresh one. */
    struct ink_ecdf_conf k64 = conf_kll(64), k32 = conf_kll(32);
    struct ink_ecdf_conf g11 = {.mode = INK_ECDF_GRID, .window = 1}, g12 = g11;
    double lo[2], hi[2], n11[2], lo2[2], hi2[2], n12[2];
    grid_conf_regular(&g11, 2, -1, 1, 11, lo, hi, n11);
    grid_conf_regular(&g12, 2, -1, 1, 12, lo2, hi2, n12);
    const struct ink_ecdf_conf *from[2] = {&k64, &g11}, *to[2] = {&k32, &g12};
    int d[2] = {1, 2};
    for (int c = 0; c < 2; c++) {
        struct op a, b, fresh;
        REQUIRE(op_open(&a, from[c], 1) == 0 && op_open(&fresh, to[c], 999) == 0);
        struct ink_rng r;
        ink_rng_seed(&r, 4);
        for (int i = 0; i < 5000; i++) {
            double x[2] = {gauss(&r), gauss(&r)};
            a.cap->n = 0;
            REQUIRE(op_feed(&a, x, d[c], i, NULL) == 0);
        }
        CHECK(op_clone(&b, &a, to[c]) == INK_ESTATE);
        CHECK(strstr(last_load_err, c == 0 ? "k 64" : "expected 144") != NULL);
        b.cap->n = fresh.cap->n = 0;
        for (int i = 0; i < 3000; i++) {
            double x[2] = {gauss(&r), gauss(&r)};
            REQUIRE(op_feed(&b, x, d[c], i, NULL) == 0 && op_feed(&fresh, x, d[c], i, NULL) == 0);
        }
        CHECK(memcmp(b.cap->r, fresh.cap->r, sizeof(struct out_rec) * 3000) == 0);
        op_close(&a);
        op_close(&b);
        op_close(&fresh);
    }
}

TEST(kll_many_levels_save_load)
{
    /* A sketch with many levels survives a save/load (k = 32, n = 1e5). */
    struct ink_ecdf_conf c = conf_kll(32);
    struct op a, b;
    REQUIRE(op_open(&a, &c, 1) == 0);
    for (int i = 0; i < 100000; i++) {
        double x = (double)((i * 7919) % 100003);
        a.cap->n = 0;
        REQUIRE(op_feed(&a, &x, 1, i, NULL) == 0);
    }
    REQUIRE(op_clone(&b, &a, &c) == 0);
    double q = 50000;
    a.cap->n = b.cap->n = 0;
    CHECK(op_query(&a, "cdf", &q, 1, NULL, 0) == 0 && op_query(&b, "cdf", &q, 1, NULL, 0) == 0);
    CHECK(a.cap->r[0].F == b.cap->r[0].F);
    op_close(&a);
    op_close(&b);
}

/* ---- no allocation once records flow (tests/alloc_count.h) ---- */

/* Allocations counted so far while counting is on (started once in main). */
static long alloc_calls_now(void)
{
    return (long)ink_alloc_count_peek().calls;
}
#define alloc_calls alloc_calls_now()

/* Allocations made inside process and query only (the request's extra
 * bytes are packed before counting starts). */
static long flow_allocs(const struct ink_ecdf_conf *c, int d, int N)
{
    struct op o;
    if (op_open(&o, c, 5)) return -1;
    struct ink_rng r;
    ink_rng_seed(&r, 5);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "r", 1);
    msgpack_pack_double(&pk, 0.25);
    static const char *const verbs[3] = {"cdf", "quantile", "density"};
    long n = 0;
    for (int i = 0; i < N; i++) {
        double x[8], y = gauss(&r);
        for (int k = 0; k < d; k++) x[k] = gauss(&r);
        struct ink_record rec = mkrec(x, (uint32_t)d, (uint64_t)i);
        rec.flags |= INK_HAS_Y;
        rec.y = y;
        struct ink_err err;
        o.cap->n = 0;
        long before = alloc_calls;
        int rc = o.vt->process(o.st, &rec, &o.em, &err);
        for (int v = 0; v < 3 && i % 100 == 0; v++) {
            struct ink_record q = mkrec(x, (uint32_t)d, 0);
            q.flags |= INK_HAS_OP;
            q.op = verbs[v];
            q.op_len = (uint32_t)strlen(verbs[v]);
            q.extra = (const uint8_t *)sb.data;
            q.extra_len = (uint32_t)sb.size;
            q.extra_n = 1;
            o.cap->n = 0;
            o.vt->query(o.st, &q, &o.em, &err);
        }
        n += alloc_calls - before;
        if (rc) n = -1000000;
    }
    msgpack_sbuffer_destroy(&sb);
    op_close(&o);
    return n;
}

TEST(no_allocation_in_process_or_query)
{
    if (!ink_alloc_count_available()) {
        printf("  (allocation counting skipped under ASan)\n");
        return;
    }
    /* The wrap is live: an allocation here is counted. */
    long a0 = alloc_calls;
    void *volatile probe = malloc(16);
    free(probe);
    REQUIRE(alloc_calls == a0 + 1);
    struct ink_ecdf_conf k = conf_kll(200);
    /* ...also inside the library: init makes exactly one allocation. */
    void *st = calloc(1, ink_op_ecdf.state_size);
    struct ink_op_init ini = {.name = "t", .seed = 1};
    long a1 = alloc_calls;
    REQUIRE(ink_op_ecdf.init(st, &k, &ini, NULL) == 0);
    CHECK(alloc_calls == a1 + 1);
    ink_op_ecdf.fini(st);
    free(st);
    struct ink_ecdf_conf g = {.mode = INK_ECDF_GRID, .window = 1, .weighted = true};
    double lov[3], hiv[3], nv[3], hv[1] = {0.4};
    grid_conf_regular(&g, 3, -2, 2, 16, lov, hiv, nv);
    struct ink_ecdf_conf kd = g;
    kd.mode = INK_ECDF_KDE;
    kd.weighted = false;
    kd.regression = true;
    kd.h = (struct ink_f64_list){hv, 1};
    struct ink_ecdf_conf e = {.mode = INK_ECDF_EXACT, .window = 500, .dim = 3, .weighted = true};
    CHECK(flow_allocs(&k, 1, 100000) == 0);
    CHECK(flow_allocs(&g, 3, 20000) == 0);
    CHECK(flow_allocs(&kd, 3, 5000) == 0);
    CHECK(flow_allocs(&e, 3, 5000) == 0); /* ten window closes */
}

/* ---- flush: the partial window at the natural end of the stream ---- */

static int op_flush(struct op *o)
{
    struct ink_err err = {0};
    return o->vt->flush(o->st, &o->em, &err);
}

TEST(exact_flush_emits_partial_window)
{
    /* Two full windows, then a partial one of P points with heavy ties
     * (coordinates 0..2) and a y on every other point. */
    enum { d = 2, W = 16, P = 7, N = 2 * W + P };
    struct ink_ecdf_conf c = {.mode = INK_ECDF_EXACT, .window = W, .dim = d, .emit_partial = true};
    struct op o;
    REQUIRE(op_open(&o, &c, 3) == 0);
    REQUIRE(o.vt->flush != NULL);
    double X[N * d], Y[N];
    struct ink_rng r;
    ink_rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < d; k++) X[i * d + k] = (double)(ink_rng_next(&r) % 3);
        Y[i] = gauss(&r);
        REQUIRE(op_feed(&o, X + i * d, d, (uint64_t)i, i % 2 ? &Y[i] : NULL) == 0);
    }
    REQUIRE(o.cap->n == 2 * W);
    o.cap->n = 0;
    REQUIRE(op_flush(&o) == 0);
    REQUIRE(o.cap->n == P);
    const double *part = X + 2 * W * d;
    int bad = 0;
    for (int i = 0; i < P; i++) {
        const struct out_rec *e = &o.cap->r[i];
        int j = 2 * W + i;
        /* F over the P points held (self and ties included), by brute force */
        double want = brute_le(part, NULL, P, d, part + i * d) / P;
        bad += e->F != want || e->n != P || e->seq != (uint64_t)j || e->dim != (uint32_t)d;
        bad += memcmp(e->x, part + i * d, sizeof(double) * d) != 0;
        bad += e->has_y != (j % 2 == 1) || (e->has_y && e->y != Y[j]) || e->has_key;
    }
    CHECK_MSG(bad == 0, "%d mismatches in the flushed partial window", bad);
    /* Flushed means emitted: the window is empty (nothing twice, cdf sees n = 0),
     * and the next window starts from nothing. */
    o.cap->n = 0;
    CHECK(op_flush(&o) == 0 && o.cap->n == 0);
    REQUIRE(op_query(&o, "cdf", X, d, NULL, 0) == 0);
    CHECK(o.cap->n == 1 && o.cap->r[0].n == 0);
    o.cap->n = 0;
    for (int i = 0; i < W; i++) REQUIRE(op_feed(&o, X + i * d, d, (uint64_t)(N + i), NULL) == 0);
    REQUIRE(o.cap->n == W);
    CHECK(o.cap->r[0].n == W && o.cap->r[0].seq == (uint64_t)N);
    CHECK(o.cap->r[0].F == brute_le(X, NULL, W, d, X) / W);
    /* ...and right after a window closed there is nothing to flush. */
    o.cap->n = 0;
    CHECK(op_flush(&o) == 0 && o.cap->n == 0);
    op_close(&o);
}

TEST(exact_flush_small_by_hand)
{
    /* window 4, records 3 1 3 5 | 2 1: the flush gives the last two F = 1, 1/2, n = 2 */
    struct ink_ecdf_conf c = {.mode = INK_ECDF_EXACT, .window = 4, .dim = 1, .emit_partial = true};
    struct op o;
    REQUIRE(op_open(&o, &c, 1) == 0);
    static const double xs[6] = {3, 1, 3, 5, 2, 1};
    for (int i = 0; i < 6; i++) REQUIRE(op_feed(&o, &xs[i], 1, (uint64_t)i, NULL) == 0);
    REQUIRE(o.cap->n == 4);
    CHECK(o.cap->r[0].F == 0.75 && o.cap->r[1].F == 0.25 && o.cap->r[3].F == 1.0);
    REQUIRE(op_flush(&o) == 0);
    REQUIRE(o.cap->n == 6);
    CHECK(o.cap->r[4].x[0] == 2 && o.cap->r[4].F == 1.0 && o.cap->r[4].n == 2);
    CHECK(o.cap->r[5].x[0] == 1 && o.cap->r[5].F == 0.5 && o.cap->r[5].n == 2);
    CHECK(o.cap->r[4].seq == 4 && o.cap->r[5].seq == 5);
    op_close(&o);
}

TEST(exact_flush_off_or_nothing_held)
{
    /* emit_partial: false: flush emits nothing and the window stays (a query
     * still sees its points). */
    struct ink_ecdf_conf c = {.mode = INK_ECDF_EXACT, .window = 8, .dim = 1, .emit_partial = false};
    struct op o;
    REQUIRE(op_open(&o, &c, 1) == 0);
    for (int i = 0; i < 5; i++) {
        double x = i;
        REQUIRE(op_feed(&o, &x, 1, (uint64_t)i, NULL) == 0);
    }
    CHECK(op_flush(&o) == 0 && o.cap->n == 0);
    double q = 10;
    REQUIRE(op_query(&o, "cdf", &q, 1, NULL, 0) == 0);
    CHECK(o.cap->n == 1 && o.cap->r[0].n == 5 && o.cap->r[0].F == 1.0);
    op_close(&o);
    /* an empty window: nothing */
    c.emit_partial = true;
    REQUIRE(op_open(&o, &c, 1) == 0);
    CHECK(op_flush(&o) == 0 && o.cap->n == 0);
    op_close(&o);
    /* the other modes hold nothing back: flush emits nothing and changes nothing */
    struct ink_ecdf_conf k = conf_kll(200);
    k.emit_partial = true;
    REQUIRE(op_open(&o, &k, 1) == 0);
    for (int i = 0; i < 50; i++) {
        double x = i;
        REQUIRE(op_feed(&o, &x, 1, (uint64_t)i, NULL) == 0);
    }
    o.cap->n = 0;
    CHECK(op_flush(&o) == 0 && o.cap->n == 0);
    double x = 24.5;
    REQUIRE(op_query(&o, "cdf", &x, 1, NULL, 0) == 0);
    CHECK(o.cap->n == 1 && o.cap->r[0].n == 50 && o.cap->r[0].F == 0.5);
    op_close(&o);
}

TEST(exact_flush_after_save_load_and_without_allocation)
{
    /* The partial window is part of the saved state: flushing the restored
     * copy emits exactly what the original emits. Flush allocates nothing. */
    enum { d = 3, W = 200, N = 3 * W + 77 };
    struct ink_ecdf_conf c = {
        .mode = INK_ECDF_EXACT, .window = W, .dim = d, .weighted = true, .emit_partial = true};
    struct op a, b;
    REQUIRE(op_open(&a, &c, 9) == 0);
    struct ink_rng r;
    ink_rng_seed(&r, 9);
    for (int i = 0; i < N; i++) {
        double x[d], y = gauss(&r);
        for (int k = 0; k < d; k++) x[k] = gauss(&r);
        REQUIRE(op_feed(&a, x, d, (uint64_t)i, &y) == 0);
    }
    REQUIRE(op_clone(&b, &a, &c) == 0);
    a.cap->n = 0;
    long before = alloc_calls;
    REQUIRE(op_flush(&a) == 0);
    if (ink_alloc_count_available()) CHECK(alloc_calls == before);
    REQUIRE(op_flush(&b) == 0);
    REQUIRE(a.cap->n == 77 && b.cap->n == 77);
    int diff = 0;
    for (int i = 0; i < 77; i++)
        diff += a.cap->r[i].F != b.cap->r[i].F || a.cap->r[i].n != 77 || b.cap->r[i].n != 77 ||
                a.cap->r[i].seq != b.cap->r[i].seq || a.cap->r[i].seq != (uint64_t)(3 * W + i);
    CHECK_MSG(diff == 0, "%d differences between the original and the restored flush", diff);
    op_close(&a);
    op_close(&b);
}

/* ---- the parameter table through the real YAML loader ---- */

static const char ecdf_yaml[] =
    "sources:\n"
    "  in: {type: file, path: data/r.csv}\n"
    "operators:\n"
    "  a: {type: ecdf, inputs: [in], mode: kll, k: 100}\n"
    "  b: {type: ecdf, inputs: [in], mode: grid, grid: {lo: [0, -1], hi: [1, 1], n: [5, 3]}}\n"
    "  c: {type: ecdf, inputs: [in], mode: exact, window: 64, dim: 2, weighted: true}\n"
    "  d: {type: ecdf, inputs: [in], mode: kde, h: 0.5, regression: true,\n"
    "      grid: {nodes: [[-1, 0, 2.5], [0, 1]]}}\n"
    "sinks:\n"
    "  out: {type: file, path: \"-\", format: jsonl, inputs: [a, b, c, d]}\n";

TEST(yaml_config_builds_every_mode)
{
    struct ink_config cfg;
    struct ink_diags dg = {0};
    int rc = ink_config_load_buf("ecdf.yaml", ecdf_yaml, sizeof ecdf_yaml - 1, &cfg, &dg);
    if (rc) ink_diags_print(&dg, "ecdf.yaml", stderr);
    REQUIRE(rc == 0);
    int seen = 0;
    for (int i = 0; i < cfg.nnodes; i++) {
        const struct ink_node_conf *nc = &cfg.nodes[i];
        if (nc->kind != INK_NODE_OPERATOR) continue;
        const struct ink_ecdf_conf *c = nc->conf;
        struct op o;
        REQUIRE(op_open(&o, c, 1) == 0);
        double x[2] = {0.5, 0.5}, y = 2;
        uint32_t d = c->mode == INK_ECDF_KLL ? 1 : 2;
        CHECK(ink_op_ecdf.mem_bound(c) > 0);
        CHECK(op_feed(&o, x, d, 0, &y) == 0);
        switch (nc->name[0]) {
        case 'a':
            CHECK(c->mode == INK_ECDF_KLL && c->k == 100);
            break;
        case 'b':
            CHECK(c->mode == INK_ECDF_GRID && c->grid.set && c->grid.lo.n == 2 &&
                  c->grid.n.v[0] == 5);
            CHECK(ink_op_ecdf.mem_bound(c) == (5 * 3 + 5 + 3) * 8);
            break;
        case 'c':
            CHECK(c->mode == INK_ECDF_EXACT && c->window == 64 && c->weighted);
            CHECK(c->emit_partial); /* the default */
            break;
        case 'd':
            CHECK(c->mode == INK_ECDF_KDE && c->regression && c->h.n == 1 && c->grid.nodes.n == 2 &&
                  c->grid.nodes.v[0].v[2] == 2.5);
            CHECK(o.cap->n == 1 && isnan(o.cap->r[0].yhat)); /* no data yet: no yhat */
            break;
        }
        seen++;
        op_close(&o);
    }
    CHECK(seen == 4);
    ink_config_free(&cfg);
    ink_diags_free(&dg);
    /* A cross-key error comes back as a diagnostic. */
    static const char bad[] = "sources:\n  in: {type: file, path: x.csv}\n"
                              "operators:\n  e: {type: ecdf, inputs: [in], mode: grid}\n"
                              "sinks:\n  out: {type: file, path: \"-\", inputs: [e]}\n";
    struct ink_diags d2 = {0};
    rc = ink_config_load_buf("bad.yaml", bad, sizeof bad - 1, &cfg, &d2);
    CHECK(rc != 0 && d2.n >= 1);
    if (d2.n >= 1) CHECK(strstr(d2.v[0].msg, "grid") != NULL);
    ink_diags_free(&d2);
    /* emit_partial: false is read; like window, it is ignored by the other modes. */
    static const char off[] =
        "sources:\n  in: {type: file, path: x.csv}\n"
        "operators:\n  e: {type: ecdf, inputs: [in], mode: exact, dim: 1, emit_partial: false}\n"
        "  k: {type: ecdf, inputs: [in], mode: kll, emit_partial: false}\n"
        "sinks:\n  out: {type: file, path: \"-\", inputs: [e, k]}\n";
    struct ink_diags d3 = {0};
    rc = ink_config_load_buf("off.yaml", off, sizeof off - 1, &cfg, &d3);
    if (rc) ink_diags_print(&d3, "off.yaml", stderr);
    REQUIRE(rc == 0);
    int offs = 0;
    for (int i = 0; i < cfg.nnodes; i++)
        if (cfg.nodes[i].kind == INK_NODE_OPERATOR)
            offs += !((const struct ink_ecdf_conf *)cfg.nodes[i].conf)->emit_partial;
    CHECK(offs == 2);
    ink_config_free(&cfg);
    ink_diags_free(&d3);
}

int main(int argc, char **argv)
{
    ink_alloc_count_start(); /* the allocation checks read differences of the running count */
    return ink_test_main(argc, argv);
}
