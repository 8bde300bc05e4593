/* Mergeable partials (docs/ecdf.md#global-answers-by-merging): the bytes an
 * ecdf state with `publish` emits and the `merge` operator reads. A partial
 * is a msgpack bin whose payload is, little-endian (x86-64 byte order):
 *   "INKP" u8 version (1) u8 kind (1 kll, 2 grid) u16 0
 *   kll:  u32 k, u32 nlevels, u64 n, f64 min, f64 max, u32 min_k,
 *         u32 size[nlevels], f64 items[sum size] (level 0 first)
 *   grid: u32 d, u32 M[d], u64 n, f64 wout, f64 nodes[sum M], f64 T[prod M]
 *         (T: the Fenwick tree, axis 0 fastest; wout: weight above the grid)
 *   rls:  the rls_sketch dictionary; body laid out and parsed by
 *         operators/rls_merge.h (docs/rls_sketch.md#publish-and-merge)
 * Nothing here allocates; the parser checks every length against the
 * payload, so a corrupt partial is refused, never read past. */
#ifndef INK_PARTIAL_H
#define INK_PARTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/err.h"
#include "../engine/op.h"
#include "fenwick.h"
#include "kll.h"

enum { INK_PARTIAL_KLL = 1, INK_PARTIAL_GRID = 2, INK_PARTIAL_RLS = 3 };
#define INK_PARTIAL_VERSION 1

/* Largest bin object (5-byte bin 32 header included) for a sketch of k / a grid. */
size_t ink__partial_kll_bytes(uint32_t k);
size_t ink__partial_grid_bytes(int d, size_t nodes, size_t cells);
/* Write the bin object to out (room: the bytes above); returns its size. */
size_t ink__partial_put_kll(uint8_t *out, const struct ink__kll *s);
size_t ink__partial_put_grid(uint8_t *out, const struct ink__grid *g, const double *T, uint64_t n,
                             double wout);

/* The bin object's header for a partial of `kind` into out; returns where
 * the body goes. ink__partial_end closes the bin at `end` and returns its size. */
uint8_t *ink__partial_begin(uint8_t *out, int kind);
size_t ink__partial_end(uint8_t *out, uint8_t *end);

/* Which kafka partition and offset a publishing state's partial covers: the
 * fields kafka_partition / kafka_offset of the last record it counted. */
struct ink__partial_tag {
    bool has_kafka;
    int64_t kpart, koff;
};
void ink__partial_note(struct ink__partial_tag *t, const struct ink_record *in);
/* Emits the partial record: in's meta (key, t, seq), `partial` (the bin
 * object [bin, bin + len)), `source` (node), `n`, and the kafka tag if any. */
int ink__partial_emit(const struct ink_record *in, const uint8_t *bin, size_t len, const char *node,
                      uint64_t n, const struct ink__partial_tag *t, const struct ink_emitter *em);

/* A parsed payload: pointers into it (unaligned: read with memcpy). */
struct ink__partial {
    int kind;
    uint64_t n;
    /* kll */
    uint32_t k, nlevels, min_k, R;
    double min, max;
    uint32_t size[INK_KLL_MAX_LEVELS];
    const uint8_t *items;
    /* grid */
    int d;
    uint32_t M[INK_GRID_MAX_DIM];
    size_t nn, cells;
    double wout;
    const uint8_t *nodes, *T;
    /* rls: the body after the header, parsed by ink__rls_partial_parse */
    const uint8_t *body;
    size_t body_len;
};

/* The bin object [p, p + len): its payload parsed into *out; 0, or INK_EINVAL
 * with err saying what is wrong. */
int ink__partial_parse(const uint8_t *p, size_t len, struct ink__partial *out, struct ink_err *err);
/* A parsed kll partial into s (ink__kll_init'ed with the same k, any
 * mergeable): s then holds exactly the published sketch. */
void ink__partial_to_kll(const struct ink__partial *pt, struct ink__kll *s);
/* f64 i of an unaligned array. */
static inline double ink__partial_f64(const uint8_t *a, size_t i)
{
    double v;
    __builtin_memcpy(&v, a + 8 * i, 8);
    return v;
}

/* u32 i of an unaligned array. */
static inline uint32_t ink__partial_u32(const uint8_t *a, size_t i)
{
    uint32_t v;
    __builtin_memcpy(&v, a + 4 * i, 4);
    return v;
}

/* Writing a partial's body: n bytes of v at o, the end returned. */
static inline uint8_t *ink__put(uint8_t *o, const void *v, size_t n)
{
    __builtin_memcpy(o, v, n);
    return o + n;
}

/* Reading one: a cursor whose every take checks the bytes left; past the end
 * it stays bad and reads zeros. */
struct ink__cur {
    const uint8_t *p, *end;
    bool bad;
};

static inline const uint8_t *ink__take(struct ink__cur *c, size_t n)
{
    if (c->bad || (size_t)(c->end - c->p) < n) {
        c->bad = true;
        return NULL;
    }
    const uint8_t *r = c->p;
    c->p += n;
    return r;
}

static inline uint32_t ink__take_u32(struct ink__cur *c)
{
    const uint8_t *p = ink__take(c, 4);
    return p ? ink__partial_u32(p, 0) : 0;
}

static inline uint64_t ink__take_u64(struct ink__cur *c)
{
    uint64_t v = 0;
    const uint8_t *p = ink__take(c, 8);
    if (p) __builtin_memcpy(&v, p, 8);
    return v;
}

static inline double ink__take_f64(struct ink__cur *c)
{
    const uint8_t *p = ink__take(c, 8);
    return p ? ink__partial_f64(p, 0) : 0;
}

#endif
