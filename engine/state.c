#include "state.h"

#include <string.h>

/* All targets are little-endian x86_64/aarch64; blobs are documented as LE
 * and load refuses nothing on that ground. A big-endian port would byte-swap
 * here. */

void ink_pack_key(msgpack_packer *pk, const char *key)
{
    size_t n = strlen(key);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, key, n);
}

static void pack_bin(msgpack_packer *pk, const void *v, size_t bytes)
{
    msgpack_pack_bin(pk, bytes);
    msgpack_pack_bin_body(pk, bytes ? v : "", bytes);
}

void ink_pack_f64s(msgpack_packer *pk, const double *v, size_t n)
{
    pack_bin(pk, v, n * 8);
}
void ink_pack_i64s(msgpack_packer *pk, const int64_t *v, size_t n)
{
    pack_bin(pk, v, n * 8);
}
void ink_pack_i32s(msgpack_packer *pk, const int32_t *v, size_t n)
{
    pack_bin(pk, v, n * 4);
}
void ink_pack_u64s(msgpack_packer *pk, const uint64_t *v, size_t n)
{
    pack_bin(pk, v, n * 8);
}
void ink_pack_rng(msgpack_packer *pk, const struct ink_rng *r)
{
    pack_bin(pk, r->s, sizeof r->s);
}

const msgpack_object *ink_state_find(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == n &&
            memcmp(kv->key.via.str.ptr, key, n) == 0)
            return &kv->val;
    }
    return NULL;
}

int ink_state_get(const msgpack_object *map, const char *key, const msgpack_object **out,
                  struct ink_err *err)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return ink_err_set(err, INK_ESTATE, "state: not a map");
    if ((*out = ink_state_find(map, key))) return 0;
    return ink_err_set(err, INK_ESTATE, "state: key '%s' missing", key);
}

int ink_state_i64(const msgpack_object *map, const char *key, int64_t *out, struct ink_err *err)
{
    const msgpack_object *o;
    int rc = ink_state_get(map, key, &o, err);
    if (rc) return rc;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= (uint64_t)INT64_MAX)
        *out = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
        return ink_err_set(err, INK_ESTATE, "state: key '%s' is not an integer", key);
    return 0;
}

int ink_state_u64(const msgpack_object *map, const char *key, uint64_t *out, struct ink_err *err)
{
    const msgpack_object *o;
    int rc = ink_state_get(map, key, &o, err);
    if (rc) return rc;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return ink_err_set(err, INK_ESTATE, "state: key '%s' is not an unsigned integer", key);
    *out = o->via.u64;
    return 0;
}

int ink_state_f64(const msgpack_object *map, const char *key, double *out, struct ink_err *err)
{
    const msgpack_object *o;
    int rc = ink_state_get(map, key, &o, err);
    if (rc) return rc;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = o->via.f64;
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)o->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *out = (double)o->via.i64;
        return 0;
    default:
        return ink_err_set(err, INK_ESTATE, "state: key '%s' is not a number", key);
    }
}

/* The bin under key, checked to hold whole elem-byte values, in *o; or an
 * error code with err filled (and *o NULL). */
static int bin_of(const msgpack_object *map, const char *key, size_t elem, const msgpack_object **o,
                  struct ink_err *err)
{
    *o = NULL;
    const msgpack_object *b;
    int rc = ink_state_get(map, key, &b, err);
    if (rc) return rc;
    if (b->type != MSGPACK_OBJECT_BIN || b->via.bin.size % elem)
        return ink_err_set(err, INK_ESTATE, "state: key '%s' is not an array of %zu-byte values",
                           key, elem);
    *o = b;
    return 0;
}

int ink_state_len(const msgpack_object *map, const char *key, size_t elem, size_t *n,
                  struct ink_err *err)
{
    const msgpack_object *o;
    int rc = bin_of(map, key, elem, &o, err);
    if (rc || !o) return rc ? rc : INK_ESTATE;
    *n = o->via.bin.size / elem;
    return 0;
}

static int get_bin(const msgpack_object *map, const char *key, void *out, size_t n, size_t elem,
                   struct ink_err *err)
{
    const msgpack_object *o;
    int rc = bin_of(map, key, elem, &o, err);
    if (rc || !o) return rc ? rc : INK_ESTATE;
    size_t have = o->via.bin.size / elem;
    if (have != n)
        return ink_err_set(err, INK_ESTATE, "state: key '%s' has %zu values, expected %zu", key,
                           have, n);
    if (n) memcpy(out, o->via.bin.ptr, n * elem);
    return 0;
}

int ink_state_f64s(const msgpack_object *map, const char *key, double *out, size_t n,
                   struct ink_err *err)
{
    return get_bin(map, key, out, n, 8, err);
}

int ink_state_i64s(const msgpack_object *map, const char *key, int64_t *out, size_t n,
                   struct ink_err *err)
{
    return get_bin(map, key, out, n, 8, err);
}

int ink_state_i32s(const msgpack_object *map, const char *key, int32_t *out, size_t n,
                   struct ink_err *err)
{
    return get_bin(map, key, out, n, 4, err);
}

int ink_state_u64s(const msgpack_object *map, const char *key, uint64_t *out, size_t n,
                   struct ink_err *err)
{
    return get_bin(map, key, out, n, 8, err);
}

int ink_state_rng(const msgpack_object *map, const char *key, struct ink_rng *r,
                  struct ink_err *err)
{
    return get_bin(map, key, r->s, 4, 8, err);
}
