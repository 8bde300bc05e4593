/* The operator kit (opkit.h). */
#include "opkit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"
#include "state.h"

static size_t align_of(size_t align)
{
    return align ? align : 64;
}

static size_t round_up(size_t v, size_t align)
{
    return (v + align - 1) & ~(align - 1);
}

void *ink_carve_take(struct ink_carve *c, size_t bytes)
{
    size_t o = round_up(c->off, align_of(c->align));
    c->off = o + bytes;
    return c->base ? c->base + o : NULL;
}

size_t ink_carve_size(const struct ink_carve *c)
{
    return round_up(c->off, align_of(c->align));
}

void *ink_arena_alloc(size_t bytes, size_t align, const char *who, struct ink_err *err)
{
    size_t a = align_of(align), n = bytes ? bytes : 1;
    void *p;
    if (a <= 16) {
        p = calloc(1, n);
    } else {
        n = round_up(n, a);
        p = aligned_alloc(a, n);
        if (p) memset(p, 0, n);
    }
    if (!p) ink_err_set(err, INK_ENOMEM, "%s: cannot allocate %zu bytes", who, bytes);
    return p;
}

int ink_state_need_len(const msgpack_object *map, const char *key, size_t elem, size_t n,
                       struct ink_err *err)
{
    size_t got;
    int rc = ink_state_len(map, key, elem, &got, err);
    if (rc) return rc;
    if (got != n)
        return ink_err_set(err, INK_ESTATE, "state: '%s' has %zu values, expected %zu", key, got,
                           n);
    return 0;
}

void ink_pack_map_of(msgpack_packer *pk, ink_map_writer write, const void *state)
{
    struct ink_map m = {NULL, 0};
    write(state, &m);
    msgpack_pack_map(pk, m.n);
    m.pk = pk;
    m.n = 0;
    write(state, &m);
}

/* Counts the key; true when the value is to be packed. */
static bool key(struct ink_map *m, const char *k)
{
    m->n++;
    if (!m->pk) return false;
    ink_pack_key(m->pk, k);
    return true;
}

void ink_map_i64(struct ink_map *m, const char *k, int64_t v)
{
    if (key(m, k)) msgpack_pack_int64(m->pk, v);
}

void ink_map_u64(struct ink_map *m, const char *k, uint64_t v)
{
    if (key(m, k)) msgpack_pack_uint64(m->pk, v);
}

void ink_map_f64(struct ink_map *m, const char *k, double v)
{
    if (key(m, k)) msgpack_pack_double(m->pk, v);
}

void ink_map_f64s(struct ink_map *m, const char *k, const double *v, size_t n)
{
    if (key(m, k)) ink_pack_f64s(m->pk, v, n);
}

void ink_map_i64s(struct ink_map *m, const char *k, const int64_t *v, size_t n)
{
    if (key(m, k)) ink_pack_i64s(m->pk, v, n);
}

void ink_map_i32s(struct ink_map *m, const char *k, const int32_t *v, size_t n)
{
    if (key(m, k)) ink_pack_i32s(m->pk, v, n);
}

void ink_map_u64s(struct ink_map *m, const char *k, const uint64_t *v, size_t n)
{
    if (key(m, k)) ink_pack_u64s(m->pk, v, n);
}

void ink_map_rng(struct ink_map *m, const char *k, const struct ink_rng *r)
{
    if (key(m, k)) ink_pack_rng(m->pk, r);
}

/* ---- the engine's side of the optional hooks (op.h) ---------------------- */

int ink__op_save(const struct ink_op_vtable *vt, const void *state, msgpack_packer *pk)
{
    if (vt->save) return vt->save(state, pk);
    msgpack_pack_map(pk, 0);
    return 0;
}

int ink__op_load(const struct ink_op_vtable *vt, void *state, const msgpack_object *obj,
                 struct ink_err *err)
{
    if (vt->load) return vt->load(state, obj, err);
    if (obj->type != MSGPACK_OBJECT_MAP) return ink_err_set(err, INK_ESTATE, "state: not a map");
    return 0;
}

void ink__op_fini(const struct ink_op_vtable *vt, void *state)
{
    if (vt->fini) vt->fini(state);
}

double ink_op_gauge_read(const struct ink_op_vtable *vt, const void *state, const char *name)
{
    for (int g = 0; vt->gauges && g < INK_OP_GAUGES_MAX && vt->gauges[g].name; g++)
        if (strcmp(vt->gauges[g].name, name) == 0) return vt->gauges[g].read(state);
    return NAN;
}
