/* KLL quantile sketch, DataSketches variant (docs/algorithms.md 4.1), in memory
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
    /* For a view (struct ink__kll_view): this sketch's identity (unique in the
     * process, renewed by ink__kll_touch) and bit h = level h moved or changed
     * since the view owning the sketch last synced (the view clears it). */
    uint64_t uid, dirty;
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
/* After writing a sketch's items or levels directly (state load): a new uid
 * and every level dirty, so no view trusts what it saw before. */
void ink__kll_touch(struct ink__kll *s);

/* A query view: the operator's per-record F is one weight_le before each
 * update, and weight_le searches every level (about 16 at k = 200 and 10^7
 * records, half of them short runs). The view keeps
 *  - the high levels merged into one sorted run with cumulative weights,
 *    searched by two flat SIMD passes (fences, then one block of 16); they
 *    change only when a level of capacity ~20 compacts into them (about once
 *    per 600+ updates at k = 200);
 *  - a weight per item slot of the low levels (capacity <= 20, level 0
 *    included), so their count is one flat branch-free pass; synced per
 *    dirty level (new level-0 items one by one).
 * The answer equals ink__kll_weight_le exactly. A view follows one sketch
 * (by uid), chosen by the pool below. Memory: ink__kll_view_bytes(k) each.
 * bench_ecdf: the operator's records/s at k = 200 went from ~5.5M to ~11M. */
struct ink__kll_view {
    uint32_t k, cap, depth;
    uint64_t uid;      /* the sketch followed, 0 = none */
    uint32_t nlevels;  /* of the sketch at the last sync */
    uint32_t flat, lo; /* levels [0, flat) flat, [flat, lo) searched, [lo, H) merged */
    uint32_t l0;       /* levels[0] at the last sync: wt is valid from there */
    uint32_t nv, nf;
    double *v;     /* nv merged high items, ascending, NaN-padded to a block */
    double *fence; /* nf: every 16th of them, NaN-padded to a multiple of 4 */
    uint64_t *cw;  /* nv + 1 cumulative weights, cw[0] = 0 */
    uint64_t *wt;  /* per item slot of the low levels: 2^level */
    double *tmp;   /* 2 cap, merge scratch */
    uint8_t *tag;  /* 2 cap, merge scratch: the level of each merged item */
};
size_t ink__kll_view_bytes(uint32_t k);
/* mem: ink__kll_view_bytes(k) bytes, 8-aligned, owned by the caller. */
void ink__kll_view_init(struct ink__kll_view *v, uint32_t k, void *mem);

/* A few views for keyed streams (one sketch per key, keys interleaved): a
 * key is adopted by a free view, or one idle for INK_KLL_POOL_IDLE queries,
 * once it has been asked INK_KLL_VIEW_ADOPT times while it was among the
 * pool's candidates (2 per view, the least asked replaced by a newcomer).
 * Up to `n` keys that keep coming get the view's speed; round-robin over
 * many more keys never adopts (no rebuild per query), and an adopted key
 * keeps its view while it is asked. Answers equal ink__kll_weight_le(s, x);
 * a view syncs with s and clears s->dirty. s->k must be the pool's k. */
#define INK_KLL_VIEW_ADOPT 16
#define INK_KLL_POOL_MAX   4
#define INK_KLL_POOL_IDLE  4096
struct ink__kll_pool {
    uint32_t n; /* views (1..INK_KLL_POOL_MAX), 0 = not initialised */
    uint64_t tick, adoptions;
    struct ink__kll_view v[INK_KLL_POOL_MAX];
    uint64_t last[INK_KLL_POOL_MAX]; /* tick of each view's last query */
    struct {
        uint64_t uid;
        uint32_t count;
    } cand[2 * INK_KLL_POOL_MAX];
};
/* Views for k within a memory budget: at most INK_KLL_POOL_MAX, at least 1. */
uint32_t ink__kll_pool_views(uint32_t k);
size_t ink__kll_pool_bytes(uint32_t k); /* the views' memory (the struct apart) */
void ink__kll_pool_init(struct ink__kll_pool *p, uint32_t k, void *mem);
uint64_t ink__kll_pool_weight_le(struct ink__kll_pool *p, struct ink__kll *s, double x);
/* ink__kll_quantile(s, r), the same value, through the view that follows s
 * (else directly): binary searches over the view's merged run and the
 * searched levels with the view's weight_le, then only the flat levels'
 * items that fall between an item short of the rank and the best so far.
 * About log2(retained) view queries instead of H log k level searches. */
double ink__kll_pool_quantile(struct ink__kll_pool *p, struct ink__kll *s, double r);

#endif
