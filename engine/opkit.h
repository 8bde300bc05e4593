/* The operator kit: what every operator would otherwise write again
 * (docs/design.md#operators, docs/style.md rule 1).
 *
 * - ink_carve: one allocation per state, laid out by one function that
 *   serves both mem_bound (sizing pass, base NULL) and init (carving pass),
 *   so that the bound is exactly what init allocates.
 * - ink_state_need_len: a saved array holds exactly the expected count.
 * - ink_map: pack a state map without counting its keys by hand.
 * - struct ink_op_gauge (op.h): the operator's own /metrics gauges. */
#ifndef INK_OPKIT_H
#define INK_OPKIT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "rng.h"

/* ---- one carved allocation ---------------------------------------------- */

/* A layout pass. Sizing: base NULL, every take returns NULL and only the
 * offset moves. Carving: base is the block of ink_carve_size() bytes from
 * ink_arena_alloc with the same alignment. `align` (a power of two, 8 to 64;
 * 0 means 64, a cache line) is where every region starts: 64 keeps BLAS
 * operands on cache lines, 8 packs a state of doubles and words tightly. */
struct ink_carve {
    char *base;
    size_t off;
    size_t align;
};

/* Next region of `bytes`; NULL when sizing. */
void *ink_carve_take(struct ink_carve *c, size_t bytes);
/* Bytes the layout needs so far, rounded up to the alignment. */
size_t ink_carve_size(const struct ink_carve *c);
/* Zeroed block of `bytes` (ink_carve_size() of the sizing pass) aligned to
 * `align` as above; at least 1 byte, so that an empty layout still has a
 * base. One malloc-family call (calloc up to 16, aligned_alloc above).
 * NULL with err filled (INK_ENOMEM, naming `who`) when it cannot be had.
 * free() it. */
void *ink_arena_alloc(size_t bytes, size_t align, const char *who, struct ink_err *err);

/* ---- load-side checks ---------------------------------------------------- */

/* `key` in the loaded map holds exactly n elements of `elem` bytes; 0, or
 * INK_ESTATE ("state: 'p' has 10 values, expected 12"). */
int ink_state_need_len(const msgpack_object *map, const char *key, size_t elem, size_t n,
                       struct ink_err *err);

/* ---- save-side map writer ------------------------------------------------ */

/* Writes one state map whose key count the code need not know: the writer
 * function runs twice, once counting (pk NULL) and once packing after the
 * map header. Every ink_map_* call adds one key. */
struct ink_map {
    msgpack_packer *pk; /* NULL on the counting pass */
    uint32_t n;         /* keys seen so far */
};

typedef void (*ink_map_writer)(const void *state, struct ink_map *m);

/* Packs the map: header with the counted size, then the writer's pairs. */
void ink_pack_map_of(msgpack_packer *pk, ink_map_writer write, const void *state);

void ink_map_i64(struct ink_map *m, const char *key, int64_t v);
void ink_map_u64(struct ink_map *m, const char *key, uint64_t v);
void ink_map_f64(struct ink_map *m, const char *key, double v);
void ink_map_f64s(struct ink_map *m, const char *key, const double *v, size_t n);
void ink_map_i64s(struct ink_map *m, const char *key, const int64_t *v, size_t n);
void ink_map_i32s(struct ink_map *m, const char *key, const int32_t *v, size_t n);
void ink_map_u64s(struct ink_map *m, const char *key, const uint64_t *v, size_t n);
void ink_map_rng(struct ink_map *m, const char *key, const struct ink_rng *r);

#endif
