/* The `ecdf` operator's configuration (docs/design.md#operators): filled by the
 * parameter table from YAML, or directly by code (tests, embedding). */
#ifndef INK_ECDF_H
#define INK_ECDF_H

#include <stdbool.h>
#include <stdint.h>

#include "../engine/op.h"

enum ink_ecdf_mode {
    INK_ECDF_KLL,   /* 1-D KLL sketch, rank error eps(k) */
    INK_ECDF_GRID,  /* d-dim Fenwick tree, exact at the grid nodes */
    INK_ECDF_EXACT, /* tumbling window, exact ECDF at every point (D&C) */
    INK_ECDF_KDE    /* grid + product-Laplacian KDE / Nadaraya-Watson at the nodes */
};

/* `grid: {lo: [...], hi: [...], n: [...]}` or `grid: {nodes: [[...], ...]}`. */
struct ink_ecdf_grid_conf {
    bool set;
    struct ink_f64_list lo, hi, n;
    struct ink_f64_lists nodes;
};

struct ink_ecdf_conf {
    int mode; /* enum ink_ecdf_mode */
    int64_t k;
    struct ink_ecdf_grid_conf grid;
    int64_t window;
    int64_t dim;           /* exact mode; 0 = implied (kll: 1, grid/kde: the grid's axes) */
    struct ink_f64_list h; /* kde bandwidths: one value or one per axis */
    bool weighted;         /* grid/exact: y is each record's weight */
    bool regression;       /* kde: also Nadaraya-Watson yhat (records need y) */
    /* exact: flush (natural end of the stream) emits the partial window. The
     * table's default is true; a conf built in code gets it from
     * ink_params_defaults or sets it. Ignored by the other modes. */
    bool emit_partial;
    /* exact: most points one `cdf` request may carry in `points` (the
     * bichromatic D&C over the window); capped at window, 0 = none. */
    int64_t max_query_points;
    /* kll: ranks r whose quantile is added to each record as q<100 r> (q50, q99.9) */
    struct ink_f64_list quantiles;
    /* kll, grid: every `publish` records a state counts, and when the stream
     * ends, it also emits its cumulative partial for a `merge` node
     * (docs/ecdf.md#global-answers-by-merging); 0 = never */
    int64_t publish;
};

#define INK_ECDF_MAX_QUANTILES 8

extern const struct ink_op_vtable ink_op_ecdf;
/* The `grid` parameter table, shared with the merge operator. */
extern const struct ink_param ink_ecdf_grid_params[];
/* The grid's nodes per axis into z (concatenated) and M; returns the axes.
 * c must have passed the ecdf check with mode grid or kde. */
int ink_ecdf_grid_nodes(const struct ink_ecdf_conf *c, double *z, uint32_t *M);
/* The ecdf check (the merge operator checks its mode/k/grid with it). */
int ink_ecdf_check(const struct ink_ecdf_conf *c, struct ink_err *err);

#endif
