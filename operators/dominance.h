/* Exact weighted dominance sums by divide and conquer (docs/algorithms.md 3.3):
 * F_t = sum of w_s over sources s with src_s <= tgt_t componentwise, exact
 * with ties (source/target doubling), in O(n log^(d-1) n) for d >= 2, where
 * n = number of sources + targets. All memory comes from the caller, sized by
 * ink__dom_bytes, so a run never allocates. */
#ifndef INK_DOMINANCE_H
#define INK_DOMINANCE_H

#include <stddef.h>
#include <stdint.h>

#define INK_DOM_MAX_DIM 16

struct ink__dom {
    int d;
    size_t cap;    /* max sources + targets */
    int32_t *key;  /* d x cap: rank of each item per coordinate */
    int32_t *list; /* d x cap: items sorted by each coordinate */
    int32_t *stk;  /* cross-set lists: cap * d (d-1) / 2 */
    int32_t *tmp;  /* cap */
    int32_t *rank; /* cap: local ranks in the k = 2 sweep */
    double *val;   /* cap: one coordinate's values while ranking */
    /* Current run. */
    size_t ns;
    const double *w;
    double *F;
};

/* Bytes for d dimensions and at most `cap` sources + targets. */
size_t ink__dom_bytes(int d, size_t cap);
void ink__dom_init(struct ink__dom *D, int d, size_t cap, void *mem);

/* Bichromatic run: sources src (ns points, point i at src + i*d) with weights
 * w (NULL = all 1), targets tgt (nt points); F[t] = sum of w_s over sources
 * with src_s <= tgt_t (<= in every coordinate). Monochromatic use (the ECDF
 * at every sample, self included) passes tgt = src. Requires ns + nt <= cap. */
void ink__dom_run(struct ink__dom *D, const double *src, const double *w, size_t ns,
                  const double *tgt, size_t nt, double *F);

#endif
