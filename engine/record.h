/* The record: one sample flowing through the graph (docs/design.md#records).
 *
 * Ownership: a record handed to an operator or sink is borrowed for the
 * duration of that call. Every pointer in it (x, key, op, extra, field
 * arrays and strings) stays valid until the call returns and no longer;
 * a node that wants to keep data copies it. Dispatch is synchronous and
 * depth-first, so an operator may point output fields at its own buffers:
 * they are read before `ink_emit` returns. */
#ifndef INK_RECORD_H
#define INK_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INK_MAX_FIELDS 24 /* fields an operator chain may add to one record */

/* Presence flags for the optional well-known fields. */
enum {
    INK_HAS_Y = 1u << 0,
    INK_HAS_T = 1u << 1,
    INK_HAS_KEY = 1u << 2,
    INK_HAS_ARM = 1u << 3,
    INK_HAS_OP = 1u << 4, /* request: `op` string, from a router source or a file */
    INK_HAS_SEQ = 1u << 5,
    INK_HAS_X = 1u << 6
};

enum ink_vtype {
    INK_V_NIL,
    INK_V_BOOL,
    INK_V_I64,
    INK_V_F64,
    INK_V_STR,  /* s.p, s.n: not NUL-terminated */
    INK_V_F64S, /* fa.p, fa.n: array of doubles */
    INK_V_I64S, /* ia.p, ia.n: array of integers */
    INK_V_F64M, /* fm.p, fm.rows, fm.cols: array of rows (column-major d x n: point j at p + j*rows)
                 */
    INK_V_RAW   /* raw.p, raw.n: one complete msgpack object, passed through */
};

struct ink_value {
    enum ink_vtype type;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            uint32_t n;
        } s;
        struct {
            const double *p;
            uint32_t n;
        } fa;
        struct {
            const int64_t *p;
            uint32_t n;
        } ia;
        struct {
            const double *p;
            uint32_t rows, cols;
        } fm;
        struct {
            const uint8_t *p;
            uint32_t n;
        } raw;
    };
};

struct ink_field {
    const char *name; /* NUL-terminated; usually a string literal */
    struct ink_value v;
};

struct ink_record {
    uint32_t flags;  /* INK_HAS_* */
    uint32_t dim;    /* length of x */
    const double *x; /* the point */
    double y;
    int64_t t; /* event time, ns since the epoch */
    int64_t arm;
    uint64_t seq;    /* position in its source, from 0 */
    const char *key; /* not NUL-terminated */
    uint32_t key_len;
    uint32_t op_len;
    const char *op; /* request verb, not NUL-terminated */
    /* Unknown input fields, carried through: extra_n key/value pairs of raw
     * msgpack, concatenated (each key is a msgpack string). */
    const uint8_t *extra;
    uint32_t extra_len, extra_n;
    /* Fields added by operators, in order. */
    uint32_t nfields;
    struct ink_field fields[INK_MAX_FIELDS];
};

/* Why a record was rejected. Names (ink_reject_name) are used in counters,
 * logs, dead letters and /metrics; keep them stable. */
enum ink_reject {
    INK_REJ_NONE = 0,
    INK_REJ_DECODE,    /* malformed bytes: not msgpack / not JSON / bad CSV row */
    INK_REJ_TRUNCATED, /* a declared length runs past the bytes present */
    INK_REJ_TOO_LARGE, /* frame or line over max_message_bytes */
    INK_REJ_DEPTH,     /* nesting deeper than the limit */
    INK_REJ_NOT_MAP,   /* top level is not a map / object */
    INK_REJ_TYPE,      /* a known field has the wrong type */
    INK_REJ_NONFINITE, /* NaN or infinity */
    INK_REJ_MISSING_X, /* no x where the operator needs one */
    INK_REJ_DIM,       /* x has the wrong length (or over max_dim) */
    INK_REJ_TOO_BIG,   /* too many fields, string too long, extras over the cap */
    INK_REJ_INVALID,   /* rejected by the operator (bad value for it) */
    INK_REJ_KEYS,      /* keyed state full and policy is reject */
    INK_REJ_MISSING,   /* a field named by the source's `fields:` is absent */
    INK_REJ__COUNT
};

const char *ink_reject_name(enum ink_reject r);

/* Start an output record from an input: copies everything, including the
 * fields added upstream (they are passed on). */
static inline void ink_record_derive(struct ink_record *out, const struct ink_record *in)
{
    size_t head = offsetof(struct ink_record, fields);
    __builtin_memcpy(out, in, head);
    for (uint32_t i = 0; i < in->nfields; i++) out->fields[i] = in->fields[i];
}

/* Start an output record that keeps only the input's key, t and seq: no x,
 * no fields, no extras (a summary record, such as a partial or a window's
 * point). */
static inline void ink_record_derive_meta(struct ink_record *out, const struct ink_record *in)
{
    __builtin_memcpy(out, in, offsetof(struct ink_record, fields));
    out->nfields = 0;
    out->extra = NULL;
    out->extra_len = out->extra_n = 0;
    out->flags &= INK_HAS_KEY | INK_HAS_T | INK_HAS_SEQ;
    out->x = NULL;
    out->dim = 0;
}

/* Add a field. Returns 0, or -1 when INK_MAX_FIELDS is reached (the field
 * is then not added). A field with the same name replaces the earlier one.
 * Inline, with the scalar adders: they are on every operator's per-record
 * path (out of line, with the value built on the stack, they took about a
 * third of ecdf's KLL process time). */
static inline struct ink_field *ink__record_slot(struct ink_record *r, const char *name)
{
    for (uint32_t i = 0; i < r->nfields; i++)
        if (r->fields[i].name == name || __builtin_strcmp(r->fields[i].name, name) == 0)
            return &r->fields[i];
    if (r->nfields >= INK_MAX_FIELDS) return NULL;
    r->fields[r->nfields].name = name;
    return &r->fields[r->nfields++];
}

static inline int ink_record_add(struct ink_record *r, const char *name, struct ink_value v)
{
    struct ink_field *f = ink__record_slot(r, name);
    if (!f) return -1;
    f->v = v;
    return 0;
}

/* The scalars are written member by member: building a struct ink_value on
 * the stack and copying it whole stalls on store forwarding. */
static inline int ink_record_add_f64(struct ink_record *r, const char *name, double x)
{
    struct ink_field *f = ink__record_slot(r, name);
    if (!f) return -1;
    f->v.type = INK_V_F64;
    f->v.f = x;
    return 0;
}

static inline int ink_record_add_i64(struct ink_record *r, const char *name, int64_t i)
{
    struct ink_field *f = ink__record_slot(r, name);
    if (!f) return -1;
    f->v.type = INK_V_I64;
    f->v.i = i;
    return 0;
}
int ink_record_add_bool(struct ink_record *r, const char *name, bool v);
int ink_record_add_str(struct ink_record *r, const char *name, const char *s, uint32_t n);
int ink_record_add_f64s(struct ink_record *r, const char *name, const double *p, uint32_t n);
int ink_record_add_i64s(struct ink_record *r, const char *name, const int64_t *p, uint32_t n);
/* rows x cols matrix, emitted as an array of `cols` arrays of `rows` numbers. */
int ink_record_add_f64m(struct ink_record *r, const char *name, const double *p, uint32_t rows,
                        uint32_t cols);

/* Look up a carried-through (extra) field of the input by name: requests use
 * these for their arguments ({"op": "ask", "n": 4} -> extra "n").
 * Return 1 when found with a usable type, 0 when absent, -1 when present
 * with the wrong type (or a non-finite number). */
int ink_record_extra_i64(const struct ink_record *r, const char *name, int64_t *out);
int ink_record_extra_f64(const struct ink_record *r, const char *name, double *out);
/* A numeric array extra (e.g. "q" for a query point); copies up to cap
 * values into out and sets *n. -1 when not an array of finite numbers or
 * longer than cap. */
int ink_record_extra_f64s(const struct ink_record *r, const char *name, double *out, uint32_t cap,
                          uint32_t *n);
/* An array of `cols`-number arrays (e.g. "points"): up to max_rows rows
 * into out (row-major) and *rows. -1 when not such an array, with a
 * non-finite number, or longer than max_rows. With out NULL: only whether
 * the extra is there (1) or not (0). */
int ink_record_extra_f64m(const struct ink_record *r, const char *name, double *out,
                          uint32_t max_rows, uint32_t cols, uint32_t *rows);
/* A string extra; *s points into the record (not NUL-terminated). */
int ink_record_extra_str(const struct ink_record *r, const char *name, const char **s, uint32_t *n);
/* The raw msgpack bytes [*p, *end) of extra field `name`: 1, or 0 when absent. */
int ink_record_extra_raw(const struct ink_record *r, const char *name, const uint8_t **p,
                         const uint8_t **end);

/* Compare the op of a request with a literal. */
static inline bool ink_record_op_is(const struct ink_record *r, const char *lit)
{
    if (!(r->flags & INK_HAS_OP)) return false;
    uint32_t i = 0;
    for (; i < r->op_len; i++)
        if (lit[i] == '\0' || lit[i] != r->op[i]) return false;
    return lit[i] == '\0';
}

/* Where an operator sends its outputs. emit returns 0, or a negative INK_E*
 * code when downstream failed fatally (the operator should return it). The
 * record is borrowed by the callee for the duration of the call. */
struct ink_emitter {
    int (*emit)(void *ctx, const struct ink_record *rec);
    void *ctx;
};

static inline int ink_emit(const struct ink_emitter *em, const struct ink_record *rec)
{
    return em->emit(em->ctx, rec);
}

#endif
