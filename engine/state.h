/* Helpers for operator save/load blobs (msgpack). Arrays of numbers go out
 * as msgpack bin of little-endian IEEE doubles / int64s, so a restore is
 * bit-exact and fast; scalars as msgpack numbers. A blob is a map; load
 * looks keys up by name and refuses what is missing or mis-sized. */
#ifndef INK_STATE_H
#define INK_STATE_H

#include <msgpack.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

void ink_pack_key(msgpack_packer *pk, const char *key);
void ink_pack_f64s(msgpack_packer *pk, const double *v, size_t n);
void ink_pack_i64s(msgpack_packer *pk, const int64_t *v, size_t n);
void ink_pack_i32s(msgpack_packer *pk, const int32_t *v, size_t n);
void ink_pack_u64s(msgpack_packer *pk, const uint64_t *v, size_t n);
void ink_pack_rng(msgpack_packer *pk, const struct ink_rng *r);

/* The value under key in a loaded map, or NULL (no such key, not a map). */
const msgpack_object *ink_state_find(const msgpack_object *map, const char *key);

/* Lookups in a loaded map. All return 0, or INK_ESTATE with err filled
 * ("state: key 'p' missing" / "has 10 values, expected 12"). */
int ink_state_get(const msgpack_object *map, const char *key, const msgpack_object **out,
                  struct ink_err *err);
int ink_state_i64(const msgpack_object *map, const char *key, int64_t *out, struct ink_err *err);
int ink_state_u64(const msgpack_object *map, const char *key, uint64_t *out, struct ink_err *err);
int ink_state_f64(const msgpack_object *map, const char *key, double *out, struct ink_err *err);
/* Exactly n values expected. */
int ink_state_f64s(const msgpack_object *map, const char *key, double *out, size_t n,
                   struct ink_err *err);
int ink_state_i64s(const msgpack_object *map, const char *key, int64_t *out, size_t n,
                   struct ink_err *err);
int ink_state_i32s(const msgpack_object *map, const char *key, int32_t *out, size_t n,
                   struct ink_err *err);
int ink_state_u64s(const msgpack_object *map, const char *key, uint64_t *out, size_t n,
                   struct ink_err *err);
/* Length of a stored array (in elements of `elem` bytes) without copying. */
int ink_state_len(const msgpack_object *map, const char *key, size_t elem, size_t *n,
                  struct ink_err *err);
int ink_state_rng(const msgpack_object *map, const char *key, struct ink_rng *r,
                  struct ink_err *err);

#endif
