/* KLL quantile sketch, DataSketches variant (ALGORITHMS.md 4.1), in memory
 * fixed by k: the buffer is sized at init for the largest number of levels an
 * int64 count can need, so update and merge never allocate. The compaction
 * bit comes from the sketch's own seeded RNG (never the clock). */
#ifndef INK_KLL_H
#define INK_KLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/rng.h"

#define INK_KLL_M          8  /* minimum level width (DataSketches default) */
#define INK_KLL_MAX_LEVELS 64 /* level h weighs 2^h; n < 2^64 needs no more */

struct ink__kll {
    uint32_t k, m;
    uint32_t min_k;   /* smallest k of the sketches merged in (error bound) */
    uint32_t cap;     /* item slots allocated (capacity of MAX_LEVELS levels) */
    uint32_t nlevels; /* H */
    uint32_t base;    /* the live buffer is items[base, cap); free space [base, levels[0]) */
    uint32_t levels[INK_KLL_MAX_LEVELS + 2]; /* absolute level bounds in items */
    uint32_t capd[INK_KLL_MAX_LEVELS];       /* capacity of a level at depth H-1-h */
    uint64_t n;
    double min, max;
    bool l0_sorted;
    struct ink_rng rng;
    uint64_t bits; /* cached random bits for compactions */
    uint32_t nbits;
    double *items; /* cap */
    double *work;  /* 2 cap, merge work buffer; NULL when not mergeable */
};

/* Bytes ink__kll_init needs in `mem` for this k: the items, plus the merge
 * work buffer (twice as large) when the sketch must be able to merge others. */
size_t ink__kll_bytes(uint32_t k, bool mergeable);
/* k in [8, 65535]; mem holds ink__kll_bytes(k, mergeable) bytes, 8-aligned,
 * owned by the caller. */
void ink__kll_init(struct ink__kll *s, uint32_t k, uint64_t seed, void *mem, bool mergeable);
/* x must not be NaN (the operator rejects those records). */
void ink__kll_update(struct ink__kll *s, double x);
/* Merge `o` into `s` (same k, `s` mergeable; `o` unchanged). Returns 0 or
 * INK_EINVAL. */
int ink__kll_merge(struct ink__kll *s, const struct ink__kll *o);
/* Weight of retained items <= x (inclusive) or < x; the ECDF estimate is this / n. */
uint64_t ink__kll_weight_le(const struct ink__kll *s, double x);
uint64_t ink__kll_weight_lt(const struct ink__kll *s, double x);
/* The smallest retained item whose inclusive weight reaches ceil(r n), r in
 * [0, 1]; NAN when empty. No buffer: one binary search per level over
 * weight_le, O(H^2 log k). */
double ink__kll_quantile(const struct ink__kll *s, double r);
/* sum_h 2^h pop(h): equals n after every update and merge (test invariant). */
uint64_t ink__kll_total_weight(const struct ink__kll *s);
uint32_t ink__kll_retained(const struct ink__kll *s);
/* Normalized rank error at 99% confidence (DataSketches' fitted constants). */
double ink__kll_eps(uint32_t k, bool pmf);

#endif
