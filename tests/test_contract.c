/* The operator contract (engine/op.h, docs/design.md#operators), checked for
 * every operator of the registry with a small config each:
 *   - fini on a zeroed state is safe (twice, too);
 *   - mem_bound equals the bytes init allocates;
 *   - process allocates nothing after warm-up;
 *   - save then load, and both copies give identical output on the same
 *     stream (and save identical states at its end);
 *   - a refused record leaves the state unchanged (same saved bytes, no
 *     output).
 * A new operator gets these checks by being registered: the test fails until
 * it has a case in `cases` below (a config and the shape of its records).
 *
 * Allocations are counted by a malloc/calloc/realloc/aligned_alloc
 * interposer that counts only calls whose return address lies in this
 * executable (the engine and the operators are linked in statically), not in
 * libopenblas or liblapack, which may allocate per call depending on the CPU.
 * Under AddressSanitizer, which owns malloc, the two allocation checks are
 * skipped; the others run. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/buf.h"
#include "engine/codec.h"
#include "engine/config.h"
#include "engine/op.h"
#include "engine/rng.h"
#include "operators/kll.h"
#include "operators/partial.h"
#include "alloc_count.h"
#include "ink_test.h"

/* ---- allocation tally: inkflow's calls, not BLAS/LAPACK's (tests/alloc_count.h) ---- */

#define COUNTING ink_alloc_count_available()
static struct ink_alloc_counts tally;

static void tally_setup(void) {}

static void tally_arm(void)
{
    ink_alloc_count_start();
}

static void tally_disarm(void)
{
    tally = ink_alloc_count_stop();
}

/* ---- the cases: one small config per operator, or several ---- */

struct contract_case {
    const char *type;  /* registry name */
    const char *label; /* for messages */
    const char *keys;  /* the node's own keys, YAML flow-map body */
    int dim;           /* length of x (0: records carry no x) */
    bool y;            /* records carry y */
    int arms;          /* > 0: records carry `arm` in [0, arms) */
    bool partials;     /* records carry an ecdf kll partial (k 16) of one of 5 keys: merge */
};

static const struct contract_case cases[] = {
    {"passthrough", "passthrough", "", 2, true, 0, false},
    {"rls_sketch", "rls_sketch predict",
     "dim: 2, max_dict: 24, predict: true, mu: 0.1, kernel: {type: gaussian, sigma: 0.5}", 2, true,
     0, false},
    {"rls_sketch", "rls_sketch batch cholesky",
     "dim: 3, max_dict: 16, gamma: 0.1, batch: 4, rescore: cholesky", 3, false, 0, false},
    {"bkb", "bkb", "arms: {grid: {lo: [0, 0], hi: [1, 1], n: 6}}, max_dict: 12", 0, true, 36,
     false},
    {"bkb", "bbkb", "arms: {grid: {lo: [0, 0], hi: [1, 1], n: 5}}, batch: {ratio: 2}", 0, true, 25,
     false},
    {"ecdf", "ecdf kll", "mode: kll, k: 16", 1, false, 0, false},
    {"ecdf", "ecdf grid", "mode: grid, grid: {lo: [0, 0], hi: [1, 1], n: [6, 5]}", 2, false, 0,
     false},
    {"ecdf", "ecdf kll publish", "mode: kll, k: 16, publish: 7", 1, false, 0, false},
    {"ecdf", "ecdf grid publish",
     "mode: grid, grid: {lo: [0, 0], hi: [1, 1], n: [6, 5]}, publish: 5", 2, false, 0, false},
    {"ecdf", "ecdf exact", "mode: exact, dim: 2, window: 16", 2, false, 0, false},
    {"ecdf", "ecdf kde",
     "mode: kde, grid: {lo: [0, 0], hi: [1, 1], n: [7, 7]}, h: [0.2, 0.3], "
     "regression: true",
     2, true, 0, false},
    {"merge", "merge kll", "mode: kll, k: 16, max_sources: 8", 0, false, 0, true},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

enum { WARM = 48, STREAM = 96 }; /* records before the checks, records checked */

/* A loaded one-node graph: the conf of node `op`. */
struct loaded {
    struct ink_config cfg;
    const struct ink_op_vtable *vt;
    const void *conf;
};

static int load_case(const struct contract_case *c, struct loaded *L)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "sources:\n  in: {type: file, path: in.csv}\n"
             "operators:\n  op: {type: %s, inputs: [in]%s%s}\n"
             "sinks:\n  out: {type: file, path: out.jsonl, inputs: [op]}\n",
             c->type, c->keys[0] ? ", " : "", c->keys);
    struct ink_diags d = {0};
    memset(L, 0, sizeof *L);
    int rc = ink_config_load_buf("contract.yaml", yaml, strlen(yaml), &L->cfg, &d);
    if (rc) {
        fprintf(stderr, "%s: config refused:\n", c->label);
        ink_diags_print(&d, "contract.yaml", stderr);
        ink_diags_free(&d);
        return rc;
    }
    ink_diags_free(&d);
    L->vt = ink_op_find(c->type);
    for (int i = 0; i < L->cfg.nnodes; i++)
        if (strcmp(L->cfg.nodes[i].name, "op") == 0) L->conf = L->cfg.nodes[i].conf;
    return L->vt && L->conf ? 0 : -1;
}

/* One operator instance and what it emits (msgpack bytes, concatenated). */
struct inst {
    const struct ink_op_vtable *vt;
    void *st, *scratch;
    struct ink_buf out;
    long nout;
    struct ink_emitter em;
};

static int capture(void *ctx, const struct ink_record *r)
{
    struct inst *in = ctx;
    bool was = ink_alloc_count_pause(); /* the harness's own encoding is not the operator's */
    int rc = ink_encode_msgpack(r, INK_ENC_SEQ, &in->out);
    ink_alloc_count_resume(was);
    in->nout++;
    return rc;
}

static int inst_open(struct inst *in, const struct loaded *L, struct ink_err *err)
{
    memset(in, 0, sizeof *in);
    in->vt = L->vt;
    in->em = (struct ink_emitter){capture, in};
    in->st = calloc(1, L->vt->state_size);
    size_t sb = L->vt->scratch_bytes ? L->vt->scratch_bytes(L->conf) : 0;
    if (sb) in->scratch = calloc(1, sb);
    struct ink_op_init ini = {
        .name = "op", .seed = 12345, .base_dir = L->cfg.base_dir, .scratch = in->scratch};
    return L->vt->init(in->st, L->conf, &ini, err);
}

static void inst_close(struct inst *in)
{
    if (in->st) ink__op_fini(in->vt, in->st);
    free(in->st);
    free(in->scratch);
    free(in->out.p);
    memset(in, 0, sizeof *in);
}

/* Record i of the case's stream: x in the unit cube, y, arm. */
struct rec {
    struct ink_record r;
    double x[8];
    char key[4];
};

/* The merge case's partial for record i: the KLL (k 16) of the values of
 * records j <= i with j = i mod 5, key "s<i mod 5>": a function of i alone,
 * in static buffers (no allocation in the harness). */
static uint8_t partial_buf[1 << 16];
static uint64_t kll_mem[1 << 12];

static void attach_partial(uint64_t i, struct rec *out)
{
    struct ink__kll q;
    if (ink__kll_bytes(16, false) > sizeof kll_mem ||
        ink__partial_kll_bytes(16) > sizeof partial_buf)
        abort();
    ink__kll_init(&q, 16, 7 + i % 5, kll_mem, false);
    for (uint64_t j = i % 5; j <= i; j += 5) ink__kll_update(&q, sin(0.7 * (double)j) + 0.01 * j);
    size_t n = ink__partial_put_kll(partial_buf, &q);
    snprintf(out->key, sizeof out->key, "s%d", (int)(i % 5));
    out->r.key = out->key;
    out->r.key_len = (uint32_t)strlen(out->key);
    out->r.flags |= INK_HAS_KEY;
    ink_record_add(&out->r, "partial",
                   (struct ink_value){.type = INK_V_RAW, .raw = {partial_buf, (uint32_t)n}});
    ink_record_add_str(&out->r, "source", "feed", 4);
}

static void make_rec(const struct contract_case *c, uint64_t i, struct rec *out)
{
    struct ink_rng g;
    ink_rng_seed(&g, 0x5eed + i);
    memset(out, 0, sizeof *out);
    struct ink_record *r = &out->r;
    r->seq = i;
    r->flags = INK_HAS_SEQ;
    if (c->dim > 0) {
        for (int k = 0; k < c->dim; k++) out->x[k] = ink_rng_uniform(&g);
        r->x = out->x;
        r->dim = (uint32_t)c->dim;
        r->flags |= INK_HAS_X;
    }
    if (c->y) {
        r->y = sin(6 * out->x[0]) + ink_rng_uniform(&g) - 0.5;
        r->flags |= INK_HAS_Y;
    }
    if (c->arms > 0) {
        r->arm = (int64_t)(ink_rng_next(&g) % (uint64_t)c->arms);
        r->y = cos(0.3 * (double)r->arm) + 0.1 * (ink_rng_uniform(&g) - 0.5);
        r->flags |= INK_HAS_ARM | INK_HAS_Y;
    }
    if (c->partials) attach_partial(i, out);
}

static int feed(const struct contract_case *c, struct inst *in, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to; i++) {
        struct rec rr;
        struct ink_err err = {0};
        make_rec(c, i, &rr);
        int rc = in->vt->process(in->st, &rr.r, &in->em, &err);
        if (rc) {
            fprintf(stderr, "%s: record %llu refused: %s\n", c->label, (unsigned long long)i,
                    err.msg);
            return rc;
        }
    }
    return 0;
}

/* The saved state's bytes (through the engine's call, as a snapshot does). */
static int save_bytes(struct inst *in, msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    return ink__op_save(in->vt, in->st, &pk);
}

static bool same_bytes(const msgpack_sbuffer *a, const msgpack_sbuffer *b)
{
    return a->size == b->size && (a->size == 0 || memcmp(a->data, b->data, a->size) == 0);
}

/* ---- the checks ---- */

TEST(every_registered_operator_has_a_case)
{
    for (int i = 0; ink_operators[i]; i++) {
        bool found = false;
        for (int c = 0; c < NCASES; c++)
            found |= strcmp(cases[c].type, ink_operators[i]->name) == 0;
        CHECK_MSG(found, "operator '%s' is registered but has no case in tests/test_contract.c",
                  ink_operators[i]->name);
    }
    for (int c = 0; c < NCASES; c++) {
        struct loaded L;
        CHECK_MSG(load_case(&cases[c], &L) == 0, "%s", cases[c].label);
        ink_config_free(&L.cfg);
    }
}

TEST(fini_on_zeroed_state)
{
    for (int c = 0; c < NCASES; c++) {
        const struct ink_op_vtable *vt = ink_op_find(cases[c].type);
        REQUIRE(vt);
        void *st = calloc(1, vt->state_size);
        ink__op_fini(vt, st);
        ink__op_fini(vt, st); /* and again: fini leaves a state fini can take */
        free(st);
        /* after a real init, fini twice as well */
        struct loaded L;
        REQUIRE(load_case(&cases[c], &L) == 0);
        struct inst in;
        struct ink_err err = {0};
        CHECK_MSG(inst_open(&in, &L, &err) == 0, "%s: %s", cases[c].label, err.msg);
        ink__op_fini(vt, in.st);
        inst_close(&in);
        ink_config_free(&L.cfg);
    }
}

TEST(mem_bound_is_what_init_allocates)
{
    if (!COUNTING) {
        printf("skipped under AddressSanitizer (it owns malloc)\n");
        return;
    }
    for (int c = 0; c < NCASES; c++) {
        struct loaded L;
        REQUIRE(load_case(&cases[c], &L) == 0);
        size_t bound = L.vt->mem_bound(L.conf);
        struct inst in;
        memset(&in, 0, sizeof in);
        in.vt = L.vt;
        in.em = (struct ink_emitter){capture, &in};
        in.st = calloc(1, L.vt->state_size);
        size_t sb = L.vt->scratch_bytes ? L.vt->scratch_bytes(L.conf) : 0;
        if (sb) in.scratch = calloc(1, sb); /* the engine's, counted apart from the bound */
        struct ink_op_init ini = {.name = "op", .seed = 1, .scratch = in.scratch};
        struct ink_err err = {0};
        tally_arm();
        int rc = L.vt->init(in.st, L.conf, &ini, &err);
        tally_disarm();
        CHECK_MSG(rc == 0, "%s: %s", cases[c].label, err.msg);
        CHECK_MSG(tally.bytes == bound, "%s: init allocated %zu bytes in %zu calls, mem_bound %zu",
                  cases[c].label, tally.bytes, tally.calls, bound);
        printf("%-26s mem_bound %9zu  init %9zu bytes in %zu call(s)\n", cases[c].label, bound,
               tally.bytes, tally.calls);
        inst_close(&in);
        ink_config_free(&L.cfg);
    }
}

TEST(no_allocation_per_record_after_warm_up)
{
    if (!COUNTING) {
        printf("skipped under AddressSanitizer (it owns malloc)\n");
        return;
    }
    /* The tally is live: a call from this executable counts... */
    tally_arm();
    void *volatile probe = malloc(24);
    tally_disarm();
    free(probe);
    REQUIRE(tally.calls == 1 && tally.bytes == 24);
    for (int c = 0; c < NCASES; c++) {
        struct loaded L;
        REQUIRE(load_case(&cases[c], &L) == 0);
        struct inst in;
        struct ink_err err = {0};
        REQUIRE(inst_open(&in, &L, &err) == 0);
        ink_buf_reserve(&in.out, 1 << 20);
        REQUIRE(feed(&cases[c], &in, 0, WARM) == 0);
        tally_arm();
        int rc = feed(&cases[c], &in, WARM, WARM + STREAM);
        tally_disarm();
        CHECK_MSG(rc == 0, "%s", cases[c].label);
        CHECK_MSG(tally.calls == 0, "%s: %zu allocations (%zu bytes) in %d records after warm-up",
                  cases[c].label, tally.calls, tally.bytes, STREAM);
        inst_close(&in);
        ink_config_free(&L.cfg);
    }
}

TEST(save_load_gives_the_same_output)
{
    for (int c = 0; c < NCASES; c++) {
        const struct contract_case *k = &cases[c];
        struct loaded L;
        REQUIRE(load_case(k, &L) == 0);
        struct inst a, b;
        struct ink_err err = {0};
        REQUIRE(inst_open(&a, &L, &err) == 0);
        REQUIRE(inst_open(&b, &L, &err) == 0);
        REQUIRE(feed(k, &a, 0, WARM) == 0);
        msgpack_sbuffer blob;
        REQUIRE(save_bytes(&a, &blob) == 0);
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0;
        REQUIRE(msgpack_unpack_next(&up, blob.data, blob.size, &off) == MSGPACK_UNPACK_SUCCESS);
        CHECK_MSG(off == blob.size, "%s: trailing bytes after the state", k->label);
        int rc = ink__op_load(b.vt, b.st, &up.data, &err);
        CHECK_MSG(rc == 0, "%s: load: %s", k->label, err.msg);
        msgpack_unpacked_destroy(&up);
        /* the loaded copy saves what it loaded */
        msgpack_sbuffer again;
        REQUIRE(save_bytes(&b, &again) == 0);
        CHECK_MSG(same_bytes(&blob, &again), "%s: load then save differs (%zu vs %zu bytes)",
                  k->label, blob.size, again.size);
        a.out.len = 0, a.nout = 0;
        REQUIRE(feed(k, &a, WARM, WARM + STREAM) == 0);
        REQUIRE(feed(k, &b, WARM, WARM + STREAM) == 0);
        CHECK_MSG(a.nout > 0, "%s: nothing emitted to compare", k->label);
        CHECK_MSG(a.nout == b.nout && a.out.len == b.out.len &&
                      memcmp(a.out.p, b.out.p, a.out.len) == 0,
                  "%s: outputs differ after load (%ld vs %ld records, %zu vs %zu bytes)", k->label,
                  a.nout, b.nout, a.out.len, b.out.len);
        msgpack_sbuffer ea, eb;
        REQUIRE(save_bytes(&a, &ea) == 0 && save_bytes(&b, &eb) == 0);
        CHECK_MSG(same_bytes(&ea, &eb), "%s: states differ at the end of the stream", k->label);
        msgpack_sbuffer_destroy(&blob);
        msgpack_sbuffer_destroy(&again);
        msgpack_sbuffer_destroy(&ea);
        msgpack_sbuffer_destroy(&eb);
        inst_close(&a);
        inst_close(&b);
        ink_config_free(&L.cfg);
    }
}

/* Records every operator with an x, y or arm must refuse. */
static int bad_records(const struct contract_case *c, struct rec *bad, const char **why)
{
    int n = 0;
    if (c->dim > 0) {
        make_rec(c, 1000, &bad[n]);
        bad[n].x[c->dim] = 0.5;
        bad[n].r.dim = (uint32_t)c->dim + 1;
        why[n++] = "x one too long";
        make_rec(c, 1001, &bad[n]);
        bad[n].x[0] = NAN;
        why[n++] = "x[0] NaN";
    }
    if (c->y) {
        make_rec(c, 1002, &bad[n]);
        bad[n].r.y = INFINITY;
        why[n++] = "y infinite";
    }
    if (c->arms > 0) {
        make_rec(c, 1003, &bad[n]);
        bad[n].r.arm = c->arms;
        why[n++] = "arm past the last";
        make_rec(c, 1004, &bad[n]);
        bad[n].r.arm = -1;
        why[n++] = "arm negative";
    }
    return n;
}

TEST(a_refused_record_leaves_the_state_unchanged)
{
    for (int c = 0; c < NCASES; c++) {
        const struct contract_case *k = &cases[c];
        struct loaded L;
        REQUIRE(load_case(k, &L) == 0);
        struct inst in;
        struct ink_err err = {0};
        REQUIRE(inst_open(&in, &L, &err) == 0);
        REQUIRE(feed(k, &in, 0, WARM) == 0);
        struct rec bad[8];
        const char *why[8];
        int nb = bad_records(k, bad, why), refused = 0;
        for (int i = 0; i < nb; i++) {
            msgpack_sbuffer before, after;
            REQUIRE(save_bytes(&in, &before) == 0);
            in.nout = 0;
            int rc = in.vt->process(in.st, &bad[i].r, &in.em, &err);
            if (rc) {
                refused++;
                CHECK_MSG(rc == INK_EDIM || rc == INK_EINVAL, "%s, %s: code %d", k->label, why[i],
                          rc);
                CHECK_MSG(in.nout == 0, "%s, %s: refused but emitted %ld record(s)", k->label,
                          why[i], in.nout);
                REQUIRE(save_bytes(&in, &after) == 0);
                CHECK_MSG(same_bytes(&before, &after), "%s, %s: refused but the state changed",
                          k->label, why[i]);
                msgpack_sbuffer_destroy(&after);
            } else if (strcmp(k->type, "passthrough") != 0) {
                /* only an operator that reads nothing may accept these */
                CHECK_MSG(0, "%s accepted a record with %s", k->label, why[i]);
            }
            msgpack_sbuffer_destroy(&before);
        }
        printf("%-26s refused %d of %d bad records\n", k->label, refused, nb);
        inst_close(&in);
        ink_config_free(&L.cfg);
    }
}

int main(int argc, char **argv)
{
    tally_setup();
    return ink_test_main(argc, argv);
}
