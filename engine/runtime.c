/* The runtime: builds the live graph from a checked config and runs one
 * event loop: zmq_poll over what the sources and sinks ask to be polled
 * (zmq sockets or plain fds, engine/transport.h), and the always-ready
 * sources (files) in turn; this is the one engine file that includes
 * <zmq.h>. Dispatch is synchronous and depth-first: a source's record goes
 * through every consumer (fan-out in config order) down to the sinks before
 * the next record is read, so no record is ever queued inside the engine and
 * records borrowed by a node never outlive the call. */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include "graph.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "buf.h"
#include "clock.h"
#include "codec.h"
#include "metrics.h"
#include "rng.h"
#include "shard.h"
#include "snapshot.h"

void ink__log(struct ink_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ink_log_limited(&n->logrl, n->name, fmt, ap);
    va_end(ap);
}

void ink__log_event(struct ink_node *n, const char *fmt, ...)
{
    struct ink_ratelimit once = {0}; /* a fresh limiter lets every line through */
    va_list ap;
    va_start(ap, fmt);
    ink_log_limited(&once, n->name, fmt, ap);
    va_end(ap);
}

/* ---- dispatch ------------------------------------------------------------ */

static int deliver(struct ink_node *to, const struct ink_record *rec);

static int fan_out(struct ink_node *from, const struct ink_record *rec)
{
    from->c.out++;
    struct ink_graph *g = from->g;
    if (g->reply_node == from) {
        if (g->reply_count == 0) ink_buf_reset(g->reply_buf);
        g->reply_count++;
        /* Several outputs for one request become a msgpack array: the
         * count is patched in ink__request_end. */
        ink_encode_msgpack(rec, 0, g->reply_buf);
    }
    for (int i = 0; i < from->nout; i++) {
        int rc = deliver(from->out[i], rec);
        if (rc < 0) return rc;
    }
    return 0;
}

static int op_emit(void *ctx, const struct ink_record *rec)
{
    return fan_out((struct ink_node *)ctx, rec);
}

/* Rejected record at an operator or source: counted, logged, dead-lettered
 * with the reason, the node and the message added. */
/* The first time an operator refuses a record for its shape, say what
 * would fix it, once: "x has 3 values, ecdf kll takes 1: map one column
 * with fields: {x: [...]}" (docs/fields.md). The summary repeats it. */
static bool dim_hint(struct ink_node *n, const char *msg)
{
    if (n->dim_hint[0]) return false;
    const char *t = strstr(msg, " takes ");
    long want = t ? strtol(t + 7, NULL, 10) : 0;
    char cols[32] = "the columns it takes";
    if (want == 1)
        snprintf(cols, sizeof cols, "one column");
    else if (want > 1)
        snprintf(cols, sizeof cols, "%ld columns", want);
    snprintf(n->dim_hint, sizeof n->dim_hint,
             "%.120s: map %s with fields: {x: [...]} on the source (docs/fields.md)", msg, cols);
    fprintf(stderr, "inkflow: [%s] rejected record (dim): %s\n", n->name, n->dim_hint);
    n->logrl.last = ink_now(); /* the refusals that follow go through the limiter */
    return true;
}

static void reject(struct ink_node *n, const struct ink_record *rec, enum ink_reject why,
                   const char *msg)
{
    n->c.rejected[why]++;
    if (why != INK_REJ_DIM || !dim_hint(n, msg))
        ink__log(n, "rejected record (%s): %s", ink_reject_name(why), msg);
    struct ink_graph *g = n->g;
    if (g->reply_node) ink__request_fail(g, "%s: %s: %s", n->name, ink_reject_name(why), msg);
    if (!n->dead_letter) return;
    struct ink_record dl;
    ink_record_derive(&dl, rec);
    const char *rn = ink_reject_name(why);
    ink_record_add_str(&dl, "_reject", rn, (uint32_t)strlen(rn));
    ink_record_add_str(&dl, "_node", n->name, (uint32_t)strlen(n->name));
    ink_record_add_str(&dl, "_error", msg, (uint32_t)strlen(msg));
    deliver(n->dead_letter, &dl);
}

static enum ink_reject reason_of(int rc)
{
    switch (rc) {
    case INK_EDIM:
        return INK_REJ_DIM;
    case INK_ENOX:
        return INK_REJ_MISSING_X;
    default:
        return INK_REJ_INVALID;
    }
}

/* Keyed state: find or create the slot for rec's key. */
static void *keyed_state(struct ink_node *n, const struct ink_record *rec, struct ink_err *err,
                         enum ink_reject *why);
/* An operator emits what a state holds back (op.h flush). */
static void flush_state(struct ink_node *n, void *st, const struct ink_keyslot *ks);

/* {"op": "keys", "limit": N} to a keyed operator: the live keys, most recently
 * used first, with the records each state counted (op.h records), and the
 * total. Answered here: only the engine knows the keys. */
static int keys_reply(struct ink_node *n, const struct ink_record *rec)
{
    int64_t limit = 10000;
    if (ink_record_extra_i64(rec, "limit", &limit) < 0 || limit < 0) {
        reject(n, rec, INK_REJ_INVALID, "keys: limit must be an integer >= 0");
        return 0;
    }
    int64_t m = n->keys_used < limit ? n->keys_used : limit;
    if (!n->keys_buf) n->keys_buf = calloc(1, sizeof *n->keys_buf);
    int64_t *cnt = realloc(n->keys_counts, (size_t)(m ? m : 1) * sizeof *cnt);
    if (!n->keys_buf || !cnt || ink_buf_reserve(n->keys_buf, 5 + (size_t)m * 257)) {
        if (cnt) n->keys_counts = cnt;
        reject(n, rec, INK_REJ_INVALID, "keys: out of memory");
        return 0;
    }
    n->keys_counts = cnt;
    struct ink_buf *b = n->keys_buf;
    ink_buf_reset(b);
    uint8_t hdr[5] = {0xdd, (uint8_t)(m >> 24), (uint8_t)(m >> 16), (uint8_t)(m >> 8), (uint8_t)m};
    ink_buf_append(b, hdr, 5); /* array 32: any length */
    int64_t i = 0;
    for (int64_t s = n->lru_head; s >= 0 && i < m; s = n->slots[s].next, i++) {
        const struct ink_keyslot *ks = &n->slots[s];
        uint8_t sh[2] = {0xd9, (uint8_t)ks->len}; /* str 8: keys are at most 255 bytes */
        ink_buf_append(b, sh, 2);
        ink_buf_append(b, ks->key, ks->len);
        cnt[i] = n->vt->records ? (int64_t)n->vt->records(ks->state) : -1;
    }
    struct ink_record out;
    ink_record_derive(&out, rec);
    ink_record_add(&out, "keys",
                   (struct ink_value){.type = INK_V_RAW, .raw = {b->p, (uint32_t)b->len}});
    if (n->vt->records) ink_record_add_i64s(&out, "counts", cnt, (uint32_t)m);
    ink_record_add_i64(&out, "total", n->keys_used);
    return fan_out(n, &out);
}

static int deliver_op(struct ink_node *n, const struct ink_record *rec)
{
    struct ink_err err = {0};
    void *st = n->state;
    if (n->slots && ink_record_op_is(rec, "keys")) return keys_reply(n, rec);
    if (n->slots) {
        enum ink_reject why = INK_REJ_NONE;
        st = keyed_state(n, rec, &err, &why);
        if (!st) {
            reject(n, rec, why, err.msg);
            return 0;
        }
    }
    int rc;
    /* timed only when someone can read it (engine.http): two clock reads a call */
    double t0 = n->g->metrics ? ink_now() : 0;
    if (rec->flags & INK_HAS_OP) {
        if (!n->vt->query) {
            /* Not a request this operator answers: pass it on. */
            return fan_out(n, rec);
        }
        rc = n->vt->query(st, rec, &n->emitter, &err);
        if (rc == INK_ENOTSUP && n->g->reply_node != n) return fan_out(n, rec);
    } else {
        rc = n->vt->process(st, rec, &n->emitter, &err);
    }
    if (n->g->metrics) { /* latency of the call, downstream dispatch included */
        double dt = ink_now() - t0;
        int b = 0;
        while (b < INK_LAT_NB && dt > ink_lat_bounds[b]) b++;
        n->lat[b]++;
        n->lat_sum += dt;
    }
    /* An operator that refuses a record leaves its state unchanged (the
     * contract of op.h), so every error is that record's reject, never the
     * end of the graph. Downstream failures do not come back through emit:
     * sinks count their own drops. */
    if (rc < 0) reject(n, rec, reason_of(rc), err.msg[0] ? err.msg : ink_strerror(rc));
    return 0;
}

static int deliver(struct ink_node *to, const struct ink_record *rec)
{
    to->c.in++;
    if (to->kind == INK_NODE_OPERATOR) return deliver_op(to, rec);
    /* sink */
    int rc = to->snk->write(to, rec);
    if (rc == 0) to->c.out++;
    return rc < 0 && rc != INK_EAGAIN ? rc : 0;
}

struct ink_limits ink__source_limits(const struct ink_node *n, uint64_t max_frame)
{
    const struct ink_engine_conf *e = &n->g->cfg->engine;
    struct ink_limits l = INK_LIMITS_DEFAULT;
    if (max_frame) l.max_frame = max_frame > UINT32_MAX ? UINT32_MAX : (uint32_t)max_frame;
    if (e->max_dim > 0) l.max_dim = (uint32_t)e->max_dim;
    if (e->max_depth > 0) l.max_depth = (uint32_t)e->max_depth;
    if (e->max_record_bytes > 0) l.max_extra = (uint32_t)e->max_record_bytes;
    return l;
}

struct ink_node *ink__node_find(struct ink_graph *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
    return NULL;
}

int ink__source_emit(struct ink_node *src, struct ink_record *rec)
{
    src->c.in++;
    src->g->src_records++;
    rec->seq = src->seq++;
    rec->flags |= INK_HAS_SEQ;
    return fan_out(src, rec);
}

int ink__source_emit_shard(struct ink_node *src, struct ink_record *rec, int32_t shard)
{
    src->g->shard_cur = shard;
    int rc = ink__source_emit(src, rec);
    src->g->shard_cur = -1;
    return rc;
}

static const char hexd[] = "0123456789abcdef";

void ink__source_reject(struct ink_node *src, enum ink_reject why, const char *msg, const void *raw,
                        size_t rawlen)
{
    src->c.in++;
    src->g->src_records++;
    src->seq++; /* a rejected input still has a position in its source */
    src->c.rejected[why]++;
    ink__log(src, "rejected input (%s): %s", ink_reject_name(why), msg);
    if (src->g->reply_node) ink__request_fail(src->g, "%s: %s", ink_reject_name(why), msg);
    if (!src->dead_letter) return;
    struct ink_record dl;
    memset(&dl, 0, offsetof(struct ink_record, fields));
    dl.nfields = 0;
    const char *rn = ink_reject_name(why);
    char hex[2 * 256 + 1];
    size_t k = rawlen < 256 ? rawlen : 256;
    for (size_t i = 0; i < k; i++) {
        hex[2 * i] = hexd[((const uint8_t *)raw)[i] >> 4];
        hex[2 * i + 1] = hexd[((const uint8_t *)raw)[i] & 15];
    }
    ink_record_add_str(&dl, "_reject", rn, (uint32_t)strlen(rn));
    ink_record_add_str(&dl, "_node", src->name, (uint32_t)strlen(src->name));
    ink_record_add_str(&dl, "_error", msg, (uint32_t)strlen(msg));
    ink_record_add_str(&dl, "_raw_hex", hex, (uint32_t)(2 * k));
    ink_record_add_i64(&dl, "_raw_bytes", (int64_t)rawlen);
    deliver(src->dead_letter, &dl);
}

/* ---- router requests ---------------------------------------------------- */

void ink__request_begin(struct ink_graph *g, struct ink_node *reply_node)
{
    g->reply_node = reply_node;
    g->reply_count = 0;
    g->reply_error = NULL;
    ink_buf_reset(g->reply_buf);
}

void ink__request_fail(struct ink_graph *g, const char *fmt, ...)
{
    if (g->reply_error) return; /* keep the first */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->reply_errbuf, sizeof g->reply_errbuf, fmt, ap);
    va_end(ap);
    g->reply_error = g->reply_errbuf;
}

const uint8_t *ink__request_end(struct ink_graph *g, size_t *len)
{
    struct ink_buf *b = g->reply_buf;
    if (g->reply_error || g->reply_count == 0) {
        const char *e = g->reply_error
                            ? g->reply_error
                            : "no reply: the request produced no output at the reply_from node";
        ink_buf_reset(b);
        msgpack_packer pk;
        msgpack_packer_init(&pk, b, ink_buf_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str(&pk, 5);
        msgpack_pack_str_body(&pk, "error", 5);
        size_t n = strlen(e);
        msgpack_pack_str(&pk, n);
        msgpack_pack_str_body(&pk, e, n);
    } else if (g->reply_count > 1) {
        /* prepend an array header: encode it into a small buffer and move */
        uint8_t hdr[5];
        size_t h;
        uint32_t c = (uint32_t)g->reply_count;
        if (c < 16) {
            hdr[0] = (uint8_t)(0x90 | c);
            h = 1;
        } else if (c < 65536) {
            hdr[0] = 0xdc, hdr[1] = (uint8_t)(c >> 8), hdr[2] = (uint8_t)c;
            h = 3;
        } else {
            hdr[0] = 0xdd, hdr[1] = (uint8_t)(c >> 24), hdr[2] = (uint8_t)(c >> 16);
            hdr[3] = (uint8_t)(c >> 8), hdr[4] = (uint8_t)c;
            h = 5;
        }
        if (ink_buf_reserve(b, h) == 0) {
            memmove(b->p + h, b->p, b->len);
            memcpy(b->p, hdr, h);
            b->len += h;
        }
    }
    g->reply_node = NULL;
    *len = b->len;
    return b->p;
}

/* ---- keyed state ---------------------------------------------------------- */

static uint64_t key_hash(const char *k, uint32_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (uint32_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 1099511628211ULL;
    return h;
}

static void lru_unlink(struct ink_node *n, int64_t s)
{
    struct ink_keyslot *ks = &n->slots[s];
    if (ks->prev >= 0)
        n->slots[ks->prev].next = ks->next;
    else
        n->lru_head = ks->next;
    if (ks->next >= 0)
        n->slots[ks->next].prev = ks->prev;
    else
        n->lru_tail = ks->prev;
    ks->prev = ks->next = -1;
}

static void lru_push_front(struct ink_node *n, int64_t s)
{
    struct ink_keyslot *ks = &n->slots[s];
    ks->prev = -1;
    ks->next = n->lru_head;
    if (n->lru_head >= 0) n->slots[n->lru_head].prev = s;
    n->lru_head = s;
    if (n->lru_tail < 0) n->lru_tail = s;
}

/* The entry of (shard, key), or -1 with *ins where to insert it. A shard of
 * INK_SHARD_ANY matches the key in any shard. */
static int64_t hash_find(struct ink_node *n, const char *k, uint32_t len, int32_t shard,
                         int64_t *ins)
{
    uint64_t h = key_hash(k, len) & (uint64_t)(n->hcap - 1);
    int64_t tomb = -1;
    for (int64_t probe = 0; probe < n->hcap; probe++) {
        int64_t e = n->hash[h];
        if (e == -1) {
            if (ins) *ins = tomb >= 0 ? tomb : (int64_t)h;
            return -1;
        }
        if (e == -2) {
            if (tomb < 0) tomb = (int64_t)h;
        } else if (n->slots[e].len == len && memcmp(n->slots[e].key, k, len) == 0 &&
                   (shard == INK_SHARD_ANY || n->slots[e].shard == shard)) {
            return (int64_t)h;
        }
        h = (h + 1) & (uint64_t)(n->hcap - 1);
    }
    if (ins) *ins = tomb;
    return -1;
}

/* A slot for a new key: a freed one (a dropped shard's), else one never
 * used; -1 when all max_keys are live. */
static int64_t slot_alloc(struct ink_node *n)
{
    if (n->free_head >= 0) {
        int64_t s = n->free_head;
        n->free_head = n->slots[s].next;
        n->slots[s].next = -1;
        return s;
    }
    return n->fresh < n->nslots ? n->fresh++ : -1;
}

static void slot_free(struct ink_node *n, int64_t s)
{
    n->slots[s].live = false;
    n->slots[s].prev = -1;
    n->slots[s].next = n->free_head;
    n->free_head = s;
}

static int slot_init(struct ink_node *n, int64_t s, const char *key, uint32_t len, int32_t shard,
                     struct ink_err *err)
{
    struct ink_keyslot *ks = &n->slots[s];
    memset(ks->state, 0, n->vt->state_size);
    char name[256];
    snprintf(name, sizeof name, "%s[%.*s]", n->name, (int)(len < 200 ? len : 200), key);
    struct ink_op_init ini = {
        .name = n->name, .base_dir = n->g->cfg->base_dir, .scratch = n->scratch};
    uint64_t base = n->nc->common.seed >= 0
                        ? (uint64_t)n->nc->common.seed
                        : ink_seed_derive((uint64_t)n->g->cfg->engine.seed, n->name);
    ini.seed = ink_seed_derive(base, name);
    int rc = n->vt->init(ks->state, n->nc->conf, &ini, err);
    if (rc) {
        ink__op_fini(n->vt, ks->state);
        return rc;
    }
    memcpy(ks->key, key, len);
    ks->key[len] = 0;
    ks->len = len;
    ks->shard = shard;
    ks->live = true;
    return 0;
}

/* The shard a record's key lives in: the one being dispatched, any (a
 * request from outside the sharded source), or none outside shard mode. */
static int32_t shard_of(const struct ink_node *n)
{
    if (!n->g->sharded) return INK_SHARD_NONE;
    return n->g->shard_cur >= 0 ? n->g->shard_cur : INK_SHARD_ANY;
}

static void *keyed_state(struct ink_node *n, const struct ink_record *rec, struct ink_err *err,
                         enum ink_reject *why)
{
    if (!(rec->flags & INK_HAS_KEY)) {
        *why = INK_REJ_INVALID;
        ink_err_set(err, INK_EINVAL, "no 'key' field, and this operator keeps one state per key");
        return NULL;
    }
    if (rec->key_len > 255) {
        *why = INK_REJ_TOO_BIG;
        ink_err_set(err, INK_EINVAL, "key longer than 255 bytes");
        return NULL;
    }
    int64_t ins = -1;
    int32_t shard = shard_of(n);
    int64_t h = hash_find(n, rec->key, rec->key_len, shard, &ins);
    bool query = (rec->flags & INK_HAS_OP) != 0;
    if (h < 0 && shard == INK_SHARD_ANY) { /* no partition to create it in */
        *why = INK_REJ_INVALID;
        ink_err_set(err, INK_EINVAL, "unknown key '%.*s' (in no partition this process owns)",
                    (int)rec->key_len, rec->key);
        return NULL;
    }
    /* a query never evicts, and creates state only when the operator says so (op.h) */
    if (h < 0 && query && !(n->vt->query_creates && n->vt->query_creates(rec))) {
        *why = INK_REJ_INVALID;
        ink_err_set(err, INK_EINVAL, "unknown key '%.*s'", (int)rec->key_len, rec->key);
        return NULL;
    }
    if (h >= 0) {
        int64_t s = n->hash[h];
        if (n->lru_head != s) {
            lru_unlink(n, s);
            lru_push_front(n, s);
        }
        return n->slots[s].state;
    }
    int64_t s;
    if (n->keys_used < n->nslots) {
        s = slot_alloc(n);
    } else if (n->nc->common.on_new_key == 1 && !query) {
        s = n->lru_tail;
        struct ink_keyslot *old = &n->slots[s];
        /* what the evicted state holds back goes out first, with its key
         * (and, in shard mode, its shard) */
        if (n->vt->flush) {
            int32_t cur = n->g->shard_cur;
            if (n->g->sharded) n->g->shard_cur = old->shard;
            flush_state(n, old->state, old);
            n->g->shard_cur = cur;
        }
        int64_t oh = hash_find(n, old->key, old->len, old->shard, NULL);
        if (oh >= 0) n->hash[oh] = -2;
        lru_unlink(n, s);
        ink__op_fini(n->vt, old->state);
        old->live = false;
        n->keys_used--;
        n->evicted++;
        ink__log(n, "key '%s' evicted (max_keys %lld reached)", old->key, (long long)n->nslots);
        h = hash_find(n, rec->key, rec->key_len, shard, &ins);
    } else {
        *why = INK_REJ_KEYS;
        ink_err_set(err, INK_EINVAL, "new key '%.*s' refused: max_keys (%lld) reached",
                    (int)rec->key_len, rec->key, (long long)n->nslots);
        return NULL;
    }
    if (ins < 0 || s < 0) { /* cannot happen: the table has twice as many entries as slots */
        *why = INK_REJ_INVALID;
        ink_err_set(err, INK_EINVAL, "key table full");
        return NULL;
    }
    int rc = slot_init(n, s, rec->key, rec->key_len, shard, err);
    if (rc) {
        slot_free(n, s);
        *why = INK_REJ_INVALID;
        return NULL;
    }
    n->keys_used++;
    n->hash[ins] = s;
    lru_push_front(n, s);
    return n->slots[s].state;
}

int ink__keyed_restore_slot(struct ink_node *n, const char *key, uint32_t len, void **state,
                            struct ink_err *err)
{
    return ink__keyed_load_slot(n, INK_SHARD_NONE, key, len, state, err);
}

int ink__keyed_load_slot(struct ink_node *n, int32_t shard, const char *key, uint32_t len,
                         void **state, struct ink_err *err)
{
    if (len > 255) return ink_err_set(err, INK_ESTATE, "key longer than 255 bytes");
    int64_t ins = -1;
    if (hash_find(n, key, len, shard, &ins) >= 0)
        return ink_err_set(err, INK_ESTATE, "key '%.*s' saved twice", (int)len, key);
    int64_t s = n->keys_used < n->nslots && ins >= 0 ? slot_alloc(n) : -1;
    if (s < 0)
        return ink_err_set(err, INK_ESTATE, "more keys than max_keys (%lld)", (long long)n->nslots);
    int rc = slot_init(n, s, key, len, shard, err);
    if (rc) {
        slot_free(n, s);
        return rc;
    }
    n->keys_used++;
    n->hash[ins] = s;
    lru_push_front(n, s);
    *state = n->slots[s].state;
    return 0;
}

int64_t ink__keyed_first(const struct ink_node *n)
{
    return n->lru_head;
}

void ink__keyed_drop_shard(struct ink_node *n, int32_t shard)
{
    if (!n->slots) return;
    int64_t dropped = 0;
    for (int64_t s = n->lru_head; s >= 0;) {
        int64_t next = n->slots[s].next;
        if (n->slots[s].shard == shard) {
            lru_unlink(n, s);
            ink__op_fini(n->vt, n->slots[s].state);
            slot_free(n, s);
            n->keys_used--;
            dropped++;
        }
        s = next;
    }
    if (!dropped) return;
    /* rebuilt rather than tombstoned: drops are rare (a rebalance), and
     * probes stay short however many shards come and go */
    for (int64_t i = 0; i < n->hcap; i++) n->hash[i] = -1;
    for (int64_t s = n->lru_head; s >= 0; s = n->slots[s].next) {
        int64_t ins = -1;
        hash_find(n, n->slots[s].key, n->slots[s].len, n->slots[s].shard, &ins);
        if (ins >= 0) n->hash[ins] = s;
    }
}

/* ---- build ------------------------------------------------------------------ */

static int build_operator(struct ink_node *n, struct ink_err *err)
{
    const struct ink_node_conf *nc = n->nc;
    n->vt = ink_op_of(nc->type);
    if (!n->vt) return ink_err_set(err, INK_EINVAL, "'%s' is not an operator type", nc->type->name);
    n->emitter.emit = op_emit;
    n->emitter.ctx = n;
    size_t sb = n->vt->scratch_bytes ? n->vt->scratch_bytes(nc->conf) : 0;
    if (sb && !(n->scratch = calloc(1, sb)))
        return ink_err_set(err, INK_ENOMEM, "out of memory (%zu bytes of scratch)", sb);
    if (nc->common.key_by) {
        n->nslots = nc->common.max_keys > 0 ? nc->common.max_keys : 1;
        n->hcap = 2;
        while (n->hcap < 2 * n->nslots) n->hcap *= 2;
        n->slots = calloc((size_t)n->nslots, sizeof *n->slots);
        n->hash = malloc((size_t)n->hcap * sizeof *n->hash);
        if (!n->slots || !n->hash) return ink_err_set(err, INK_ENOMEM, "out of memory");
        for (int64_t i = 0; i < n->hcap; i++) n->hash[i] = -1;
        for (int64_t i = 0; i < n->nslots; i++) {
            n->slots[i].prev = n->slots[i].next = -1;
            n->slots[i].key = malloc(256);
            n->slots[i].state = calloc(1, n->vt->state_size);
            if (!n->slots[i].key || !n->slots[i].state)
                return ink_err_set(err, INK_ENOMEM, "out of memory");
        }
        n->lru_head = n->lru_tail = n->free_head = -1;
        return 0;
    }
    n->state = calloc(1, n->vt->state_size);
    if (!n->state) return ink_err_set(err, INK_ENOMEM, "out of memory");
    struct ink_op_init ini = {
        .name = n->name, .base_dir = n->g->cfg->base_dir, .scratch = n->scratch};
    ini.seed = nc->common.seed >= 0 ? (uint64_t)nc->common.seed
                                    : ink_seed_derive((uint64_t)n->g->cfg->engine.seed, n->name);
    return n->vt->init(n->state, nc->conf, &ini, err);
}

/* The engine owns a transport node's impl: impl_size zeroed bytes, from
 * before open to after close. */
static int open_transport(struct ink_node *n, size_t impl_size, struct ink_err *err)
{
    if (!n->src && !n->snk)
        return ink_err_set(err, INK_EINVAL, "'%s' is not a registered %s type", n->nc->type->name,
                           n->kind == INK_NODE_SOURCE ? "source" : "sink");
    n->impl = calloc(1, impl_size ? impl_size : 1);
    return n->impl ? 0 : ink_err_set(err, INK_ENOMEM, "out of memory");
}

static int build(struct ink_graph **out, const struct ink_config *cfg, struct ink_snap *snap,
                 struct ink_err *err)
{
    struct ink_graph *g = calloc(1, sizeof *g);
    if (!g) return ink_err_set(err, INK_ENOMEM, "out of memory");
    *out = g;
    g->cfg = cfg;
    g->t0 = ink_now();
    g->snap_lock = -1;
    g->snap_pipe = -1;
    g->shard_cur = -1;
    g->sharded = cfg->sharded;
    const char *trace = getenv("INKFLOW_SNAPSHOT_TRACE");
    if (trace && *trace && cfg->engine.snapshot.set) {
        g->snap_trace = fopen(trace, "ae");
        if (!g->snap_trace)
            return ink_err_set(err, INK_EIO, "INKFLOW_SNAPSHOT_TRACE %s: %s", trace,
                               strerror(errno));
        setvbuf(g->snap_trace, NULL, _IOLBF, 0);
    }
    g->restoring = snap != NULL;
    openblas_set_num_threads((int)(cfg->engine.blas_threads > 0 ? cfg->engine.blas_threads : 1));
    g->reply_buf = calloc(1, sizeof *g->reply_buf);
    g->n = cfg->nnodes;
    g->nodes = calloc((size_t)g->n, sizeof *g->nodes);
    if (!g->nodes || !g->reply_buf) return ink_err_set(err, INK_ENOMEM, "out of memory");
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        n->g = g;
        n->idx = i;
        n->nc = &cfg->nodes[i];
        n->name = n->nc->name;
        n->kind = n->nc->kind;
    }
    if (cfg->engine.snapshot.set) {
        /* one owner: the lock comes before any output is opened */
        int rc = ink_snapshot_prepare(cfg, err);
        if (rc) return rc;
        if (g->sharded) {
            /* shard mode: the directory is the group's; each shard has its
             * own lock, taken when its partition is assigned (shard.h) */
        } else if (snap && snap->lock_fd >= 0) {
            g->snap_lock = snap->lock_fd; /* taken by the read, kept since */
            snap->lock_fd = -1;
        } else if ((rc = ink_snapshot_lock(cfg, &g->snap_lock, err))) {
            return rc;
        }
    }
    /* /health answers from here on; /ready once sources are open and restored */
    if (cfg->engine.http.set) {
        int rc = ink_metrics_start(g, err);
        if (rc) return rc;
    }
    /* consumers, in config order of the consumers */
    for (int i = 0; i < g->n; i++) {
        const struct ink_node_conf *nc = &cfg->nodes[i];
        for (int k = 0; k < nc->ninputs; k++) {
            struct ink_node *from = &g->nodes[nc->input_idx[k]];
            struct ink_node **v = realloc(from->out, (size_t)(from->nout + 1) * sizeof *v);
            if (!v) return ink_err_set(err, INK_ENOMEM, "out of memory");
            v[from->nout++] = &g->nodes[i];
            from->out = v;
        }
        const char *dl = nc->dead_letter ? nc->dead_letter : nc->common.dead_letter;
        if (dl) {
            for (int j = 0; j < g->n; j++)
                if (strcmp(cfg->nodes[j].name, dl) == 0) g->nodes[i].dead_letter = &g->nodes[j];
        }
    }
    for (int t = 0; t < g->n; t++) {
        struct ink_node *n = &g->nodes[cfg->topo ? cfg->topo[t] : t];
        int rc = 0;
        struct ink_err e = {0};
        switch (n->kind) {
        case INK_NODE_OPERATOR:
            rc = build_operator(n, &e);
            break;
        case INK_NODE_SOURCE:
            n->src = ink_source_of(n->nc->type);
            rc = open_transport(n, n->src ? n->src->impl_size : 0, &e);
            if (!rc) rc = n->src->open(n, &e);
            break;
        case INK_NODE_SINK:
            n->snk = ink_sink_of(n->nc->type);
            rc = open_transport(n, n->snk ? n->snk->impl_size : 0, &e);
            if (!rc) rc = n->snk->open(n, &e);
            break;
        }
        if (rc) return ink_err_set(err, rc, "%s: %s", n->name, e.msg[0] ? e.msg : ink_strerror(rc));
    }
    if (snap) {
        int rc = ink_snapshot_apply(g, snap, err);
        if (rc) return rc;
    }
    g->snap_last = ink_now();
    if (cfg->engine.snapshot.every_records > 0)
        g->snap_next_at = g->src_records + (uint64_t)cfg->engine.snapshot.every_records;
    return 0;
}

int ink_graph_build(struct ink_graph **out, const struct ink_config *cfg, struct ink_err *err)
{
    return build(out, cfg, NULL, err);
}

int ink_graph_build_restore(struct ink_graph **out, const struct ink_config *cfg,
                            struct ink_snap *snap, struct ink_err *err)
{
    return build(out, cfg, snap, err);
}

/* ---- natural end: operators flush ------------------------------------------- */

/* Under key_by, what a flush emits gets the key of the state it comes from,
 * as what process emits carries the key of its input. */
struct flush_ctx {
    struct ink_node *n;
    const struct ink_keyslot *ks;
};

static int flush_emit(void *ctx, const struct ink_record *rec)
{
    const struct flush_ctx *fc = ctx;
    struct ink_record out;
    ink_record_derive(&out, rec);
    out.flags |= INK_HAS_KEY;
    out.key = fc->ks->key;
    out.key_len = fc->ks->len;
    return fan_out(fc->n, &out);
}

/* A failed flush is counted and logged like a refused record (the
 * dead letter gets the key, when there is one); the other flushes go on. */
static void flush_state(struct ink_node *n, void *st, const struct ink_keyslot *ks)
{
    struct flush_ctx fc = {n, ks};
    struct ink_emitter em = {flush_emit, &fc};
    struct ink_err err = {0};
    int rc = n->vt->flush(st, ks ? &em : &n->emitter, &err);
    if (rc >= 0) return;
    struct ink_record ctx;
    memset(&ctx, 0, sizeof ctx);
    if (ks) {
        ctx.flags = INK_HAS_KEY;
        ctx.key = ks->key;
        ctx.key_len = ks->len;
    }
    char msg[sizeof err.msg + 16];
    snprintf(msg, sizeof msg, "flush: %s", err.msg[0] ? err.msg : ink_strerror(rc));
    reject(n, &ctx, reason_of(rc), msg);
}

/* Every source has ended: each operator emits what it holds back, in
 * topological order, so that what an upstream node flushes goes through its
 * consumers' process (dispatch is depth-first) before they flush in turn.
 * Keyed nodes flush every live key, most recently used first: the LRU order
 * is what a snapshot restores, slot order is not. Not called on a signal:
 * the held-back records stay in the state the snapshot keeps. */
static void flush_operators(struct ink_graph *g)
{
    for (int t = 0; t < g->n; t++) {
        struct ink_node *n = &g->nodes[g->cfg->topo ? g->cfg->topo[t] : t];
        if (n->kind != INK_NODE_OPERATOR || !n->vt->flush) continue;
        if (!n->slots) {
            flush_state(n, n->state, NULL);
            continue;
        }
        for (int64_t s = ink__keyed_first(n); s >= 0; s = n->slots[s].next) {
            if (g->sharded) g->shard_cur = n->slots[s].shard;
            flush_state(n, n->slots[s].state, &n->slots[s]);
        }
        g->shard_cur = -1;
    }
}

/* ---- run -------------------------------------------------------------------- */

/* What a crash would find now, said plainly after a failed snapshot. */
static void what_is_kept(const struct ink_graph *g, char *buf, size_t n)
{
    char path[4096];
    struct stat st;
    if (g->sharded)
        snprintf(buf, n, "each shard file keeps the last state its partition's owner wrote");
    else if (ink_snapshot_path(g->cfg, path, sizeof path) || stat(path, &st))
        snprintf(buf, n, "there is no snapshot on disk: a crash now leaves nothing to restore");
    else if (g->snap_count)
        snprintf(buf, n, "the previous snapshot %s, written %.1f s ago, is kept", path,
                 ink_wall() - g->snap_wall);
    else if (g->restoring)
        snprintf(buf, n, "the snapshot this run was restored from, %s, is kept", path);
    else
        snprintf(buf, n, "%s is the snapshot of an earlier run, not of this one", path);
}

/* A failed snapshot: counted, logged with what is kept. */
static void snapshot_failed(struct ink_graph *g, const char *why, const struct ink_err *err)
{
    g->snap_failed++;
    g->snap_streak++;
    snprintf(g->snap_error, sizeof g->snap_error, "%s", err->msg);
    char kept[4400];
    what_is_kept(g, kept, sizeof kept);
    fprintf(stderr, "inkflow: snapshot (%s) failed (%llu in a row, %llu in all): %s; %s\n", why,
            (unsigned long long)g->snap_streak, (unsigned long long)g->snap_failed, err->msg, kept);
}

/* ---- the data path's pause per snapshot (docs/state.md) -------------------- */

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Context switches of the main thread: voluntary (it blocked) and not
 * (it was preempted), so that a long pause says which it was. */
static void thread_switches(long *v, long *iv)
{
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru)) ru.ru_nvcsw = ru.ru_nivcsw = 0;
    *v = ru.ru_nvcsw;
    *iv = ru.ru_nivcsw;
}

/* Where a pause starts: wall, CPU and switches of the main thread. */
struct pause_mark {
    double t, cpu;
    long v, iv;
};

static struct pause_mark pause_mark(void)
{
    struct pause_mark m = {ink_now(), thread_cpu(), 0, 0};
    thread_switches(&m.v, &m.iv);
    return m;
}

/* The main loop stopped from m until now for the pending snapshot. */
static void pause_add(struct ink_graph *g, const struct pause_mark *m)
{
    long v, iv;
    thread_switches(&v, &iv);
    g->snap_pend += ink_now() - m->t;
    g->snap_pend_cpu += thread_cpu() - m->cpu;
    g->snap_pend_vcsw += v - m->v;
    g->snap_pend_ivcsw += iv - m->iv;
}

/* The pending snapshot is resolved (written, failed, or its cut failed):
 * its pause is counted, and traced for the bench when asked to
 * (INKFLOW_SNAPSHOT_TRACE: one line per snapshot, "start end pause cpu ok
 * collect vcsw ivcsw", monotonic seconds: the window in which its writer
 * ran, the part of the pause spent collecting the writer's outcome, waits
 * included, and the main thread's voluntary and involuntary context
 * switches during the pause). */
static void pause_observe(struct ink_graph *g, bool ok, double collect)
{
    double p = g->snap_pend;
    g->snap_pause = p;
    if (p > g->snap_pause_max) g->snap_pause_max = p;
    if (g->snap_pend_cpu > g->snap_pause_cpu_max) g->snap_pause_cpu_max = g->snap_pend_cpu;
    int b = 0;
    while (b < INK_PAUSE_NB && p > ink_pause_bounds[b]) b++;
    g->snap_pause_hist[b]++;
    g->snap_pause_sum += p;
    if (g->snap_trace)
        fprintf(g->snap_trace, "%.6f %.6f %.6f %.6f %d %.6f %ld %ld\n", g->snap_pause_t0, ink_now(),
                p, g->snap_pend_cpu, ok ? 1 : 0, collect, g->snap_pend_vcsw, g->snap_pend_ivcsw);
    g->snap_pend = g->snap_pend_cpu = 0;
    g->snap_pend_vcsw = g->snap_pend_ivcsw = 0;
}

/* The writer child of the last periodic snapshot, if any: its outcome
 * (0 also when none runs; 1 still writing, only when !wait). The time spent
 * here counts in that snapshot's pause, unless the stream is over (final). */
static int collect_snapshot(struct ink_graph *g, bool wait, bool final)
{
    if (!g->snap_child) return 0;
    struct pause_mark m = pause_mark();
    struct ink_err err = {0};
    int rc = ink_snapshot_poll(g, wait, &err);
    if (rc < 0)
        snapshot_failed(g, g->snap_why, &err);
    else if (rc == 0)
        g->snap_streak = 0;
    if (rc != 1) {
        double collect = final ? 0 : ink_now() - m.t;
        if (!final) pause_add(g, &m);
        pause_observe(g, rc == 0, collect);
    }
    return rc;
}

/* 0, or the failure. Periodic snapshots are written by a child (off the
 * data path); when the next one is due before the last is written, the loop
 * waits for it (a snapshot is never skipped, every_records stays on its
 * count). The final one is written here: there is nothing left to overlap. */
static int take_snapshot(struct ink_graph *g, const char *why, bool final)
{
    collect_snapshot(g, true, final);
    struct ink_err err = {0};
    g->snap_why = why;
    struct pause_mark m = pause_mark();
    g->snap_pause_t0 = m.t;
    int rc = g->sharded ? ink_shard_checkpoint(g, final, &err)
             : final    ? ink_snapshot_write(g, &err)
                        : ink_snapshot_start(g, &err);
    if (rc)
        snapshot_failed(g, why, &err);
    else if (final)
        g->snap_streak = 0;
    if (!final) {
        pause_add(g, &m);
        /* no writer child: failed at the cut, or written here (fork failed) */
        if (!g->snap_child) pause_observe(g, rc == 0, 0);
    }
    const struct ink_snapshot_conf *sc = &g->cfg->engine.snapshot;
    if (sc->every_records > 0) g->snap_next_at = g->src_records + (uint64_t)sc->every_records;
    /* the period runs from the cut; a failure retries at the next period */
    g->snap_last = ink_now();
    return rc;
}

/* Records a source may read before the next count-based snapshot is due. */
static int pump_budget(const struct ink_graph *g)
{
    const struct ink_snapshot_conf *sc = &g->cfg->engine.snapshot;
    if (!sc->set || sc->every_records <= 0) return 256;
    uint64_t left = g->snap_next_at > g->src_records ? g->snap_next_at - g->src_records : 1;
    return left < 256 ? (int)left : 256;
}

/* Between records: the consistent cut. */
static void maybe_snapshot(struct ink_graph *g)
{
    const struct ink_snapshot_conf *sc = &g->cfg->engine.snapshot;
    if (!sc->set) return;
    collect_snapshot(g, false, false);
    if (sc->every_records > 0 && g->src_records >= g->snap_next_at)
        take_snapshot(g, "every_records", false);
    else if (sc->every > 0 && ink_now() - g->snap_last >= sc->every)
        take_snapshot(g, "every", false);
}

static zmq_pollitem_t to_zmq(const struct ink_pollitem *pi)
{
    return (zmq_pollitem_t){.socket = pi->socket,
                            .fd = pi->socket ? 0 : pi->fd,
                            .events = (short)((pi->events & INK_POLLIN ? ZMQ_POLLIN : 0) |
                                              (pi->events & INK_POLLOUT ? ZMQ_POLLOUT : 0))};
}

/* One source's turn: pump, then the snapshot that may be due. */
static int pump_one(struct ink_graph *g, struct ink_node *n)
{
    int got = n->src->pump(n, pump_budget(g));
    int rc = 0;
    if (got == -1) {
        n->ended = true;
    } else if (got < -1) {
        rc = got;
        g->stop = 1;
    }
    maybe_snapshot(g);
    return rc;
}

int ink_graph_run(struct ink_graph *g)
{
    zmq_pollitem_t *items = calloc((size_t)g->n + 1, sizeof *items);
    struct ink_node **who = calloc((size_t)g->n + 1, sizeof *who);
    bool *always = calloc((size_t)g->n + 1, sizeof *always); /* per node: an always-ready source */
    if (!items || !who || !always) {
        free(items);
        free(who);
        free(always);
        return INK_ENOMEM;
    }
    int rc = 0;
    bool ended = false; /* every source ended (not a signal, not a failure) */
    double last_flush = ink_now();
    if (g->metrics) ink_metrics_publish_ready(g); /* sources open, restore done */
    while (!g->stop) {
        int npoll = 0, nready = 0, live = 0, timeout = 100;
        for (int i = 0; i < g->n; i++) {
            struct ink_node *n = &g->nodes[i];
            struct ink_pollitem pi = {.fd = -1};
            always[i] = false;
            if (n->kind == INK_NODE_SINK) {
                if (n->snk->pollitem && n->snk->service && n->snk->pollitem(n, &pi)) {
                    items[npoll] = to_zmq(&pi);
                    who[npoll++] = n;
                }
                continue;
            }
            if (n->kind != INK_NODE_SOURCE || n->ended) continue;
            live++;
            if (n->src->timeout_ms) {
                int t = n->src->timeout_ms(n);
                if (t >= 0 && t < timeout) timeout = t;
            }
            if (n->src->pollitem(n, &pi)) {
                items[npoll] = to_zmq(&pi);
                who[npoll++] = n;
            } else {
                always[i] = true;
                nready++;
            }
        }
        if (live == 0) {
            ended = true;
            break;
        }
        /* Always-ready sources (files): poll without waiting, then give
         * each of them a turn, in config order (deterministic). */
        if (nready) timeout = 0;
        int nr = npoll ? zmq_poll(items, npoll, timeout) : 0;
        if (nr < 0 && zmq_errno() != EINTR) {
            fprintf(stderr, "inkflow: zmq_poll: %s\n", zmq_strerror(zmq_errno()));
            rc = INK_EIO;
            break;
        }
        for (int k = 0; k < npoll && nr > 0 && !g->stop; k++) {
            if (!items[k].revents) continue;
            if (who[k]->kind == INK_NODE_SINK) {
                who[k]->snk->service(who[k]);
                continue;
            }
            int e = pump_one(g, who[k]);
            if (e) rc = e;
        }
        for (int i = 0; i < g->n && !g->stop; i++) {
            if (!always[i] || g->nodes[i].ended) continue;
            int e = pump_one(g, &g->nodes[i]);
            if (e) rc = e;
        }
        maybe_snapshot(g); /* time-based, also while sockets are idle */
        double t = ink_now();
        if (t - last_flush > 0.1) {
            last_flush = t;
            for (int i = 0; i < g->n; i++)
                if (g->nodes[i].kind == INK_NODE_SINK) g->nodes[i].snk->flush(&g->nodes[i]);
            if (g->metrics) ink_metrics_publish(g);
        }
    }
    free(items);
    free(who);
    free(always);
    /* Natural end: flush before the final snapshot, which then holds the
     * flushed state and outputs, so that a restore from it emits nothing twice. */
    if (ended) flush_operators(g);
    /* drained (end of input, or a signal between two records): the final cut */
    /* a run whose last snapshot failed does not end as a success */
    if (g->cfg->engine.snapshot.set && rc == 0) rc = take_snapshot(g, "final", true);
    collect_snapshot(g, true, true); /* after a failure: the child's outcome all the same */
    if (g->metrics) ink_metrics_publish(g);
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].kind == INK_NODE_SINK) g->nodes[i].snk->finish(&g->nodes[i]);
    return rc;
}

/* ---- summary and teardown ------------------------------------------------------ */

static const char *kind_name(enum ink_node_kind k)
{
    return k == INK_NODE_SOURCE ? "source" : k == INK_NODE_OPERATOR ? "operator" : "sink";
}

/* "dim=3 decode=1" from a node's reject counters; returns the total. */
static uint64_t reject_reasons(const struct ink_node *n, char *why, size_t cap)
{
    uint64_t rej = 0;
    size_t w = 0;
    why[0] = 0;
    for (int r = 1; r < INK_REJ__COUNT; r++) {
        rej += n->c.rejected[r];
        if (n->c.rejected[r] && w < cap - 64)
            w += (size_t)snprintf(why + w, cap - w, "%s%s=%llu", w ? " " : "", ink_reject_name(r),
                                  (unsigned long long)n->c.rejected[r]);
    }
    return rej;
}

void ink_graph_summary(const struct ink_graph *g, FILE *out)
{
    double el = ink_now() - g->t0;
    fprintf(out, "inkflow: summary after %.2f s\n", el);
    fprintf(out, "  %-20s %-8s %12s %12s %10s %10s  %s\n", "node", "kind", "in", "out", "rejected",
            "dropped", "");
    for (int i = 0; i < g->n; i++) {
        const struct ink_node *n = &g->nodes[i];
        char why[512];
        uint64_t rej = reject_reasons(n, why, sizeof why);
        size_t w = strlen(why);
        if (n->evicted && w < sizeof why - 64)
            snprintf(why + w, sizeof why - w, "%skeys_evicted=%llu", w ? " " : "",
                     (unsigned long long)n->evicted);
        fprintf(out, "  %-20s %-8s %12llu %12llu %10llu %10llu  %s\n", n->name, kind_name(n->kind),
                (unsigned long long)n->c.in, (unsigned long long)n->c.out, (unsigned long long)rej,
                (unsigned long long)n->c.dropped, why);
    }
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].dim_hint[0] && g->nodes[i].c.rejected[INK_REJ_DIM])
            fprintf(out, "  %s: %llu records refused for their shape: %s\n", g->nodes[i].name,
                    (unsigned long long)g->nodes[i].c.rejected[INK_REJ_DIM], g->nodes[i].dim_hint);
    if (g->snap_count || g->snap_failed)
        fprintf(out,
                "  snapshots: %llu written, %llu failed; last %llu bytes in %.3f ms; main loop "
                "paused %.3f ms at most (%.3f ms of CPU)\n",
                (unsigned long long)g->snap_count, (unsigned long long)g->snap_failed,
                (unsigned long long)g->snap_bytes, 1e3 * g->snap_duration, 1e3 * g->snap_pause_max,
                1e3 * g->snap_pause_cpu_max);
    if (g->snap_count || g->snap_failed) {
        /* the data path's CPU and the writers' apart: what the stream costs,
         * and what snapshots cost on the side (docs/state.md) */
        struct rusage self, kids;
        getrusage(RUSAGE_SELF, &self);
        getrusage(RUSAGE_CHILDREN, &kids);
        double cs = (double)self.ru_utime.tv_sec + (double)self.ru_stime.tv_sec +
                    1e-6 * (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec);
        double ck = (double)kids.ru_utime.tv_sec + (double)kids.ru_stime.tv_sec +
                    1e-6 * (double)(kids.ru_utime.tv_usec + kids.ru_stime.tv_usec);
        fprintf(out,
                "  cpu: %.3f s in this process, %.3f s in snapshot writers; %ld page faults "
                "in this process (the copy-on-write ones after each fork among them)\n",
                cs, ck, self.ru_minflt + self.ru_majflt);
    }
}

int ink_graph_reject_check(const struct ink_graph *g, FILE *out)
{
    double ratio = g->cfg->engine.max_reject_ratio;
    int bad = 0;
    for (int i = 0; i < g->n; i++) {
        const struct ink_node *n = &g->nodes[i];
        if (n->kind == INK_NODE_SINK || n->c.in == 0) continue;
        char why[512];
        uint64_t rej = reject_reasons(n, why, sizeof why);
        if (rej == 0) continue;
        if (rej >= n->c.in) {
            fprintf(out, "inkflow: %s '%s' rejected all %llu records it received (%s)\n",
                    kind_name(n->kind), n->name, (unsigned long long)n->c.in, why);
            bad = 1;
        } else if ((double)rej > ratio * (double)n->c.in) {
            fprintf(out,
                    "inkflow: %s '%s' rejected %llu of %llu records (%.3g%%: %s), above "
                    "engine.max_reject_ratio %g\n",
                    kind_name(n->kind), n->name, (unsigned long long)rej,
                    (unsigned long long)n->c.in, 100.0 * (double)rej / (double)n->c.in, why, ratio);
            bad = 1;
        }
    }
    return bad;
}

void ink_graph_free(struct ink_graph *g)
{
    if (!g) return;
    ink_snapshot_abandon(g); /* no writer child outlives its graph */
    ink_metrics_stop(g);     /* the server thread reads the graph's names */
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        if (n->kind == INK_NODE_SOURCE && n->src && n->impl) n->src->close(n);
        if (n->kind == INK_NODE_SINK && n->snk && n->impl) n->snk->close(n);
        free(n->impl);
        if (n->kind == INK_NODE_OPERATOR && n->vt) {
            if (n->state) ink__op_fini(n->vt, n->state);
            for (int64_t s = 0; s < n->nslots && n->slots; s++) {
                if (n->slots[s].live && n->slots[s].state) ink__op_fini(n->vt, n->slots[s].state);
                free(n->slots[s].state);
                free(n->slots[s].key);
            }
        }
        free(n->slots);
        free(n->hash);
        if (n->keys_buf) ink_buf_fini(n->keys_buf);
        free(n->keys_buf);
        free(n->keys_counts);
        free(n->state);
        free(n->scratch);
        free(n->out);
    }
    free(g->nodes);
    ink_shard_close_all(g);
    if (g->snap_lock >= 0) close(g->snap_lock);
    if (g->snap_trace) fclose(g->snap_trace);
    free(g->snap_sync);
    free(g->snap_sync_node);
    if (g->reply_buf) ink_buf_fini(g->reply_buf);
    free(g->reply_buf);
    if (g->snap_buf) ink_buf_fini(g->snap_buf);
    free(g->snap_buf);
    if (g->snap_pre) ink_buf_fini(g->snap_pre);
    free(g->snap_pre);
    free(g->snap_off);
    free(g);
}
