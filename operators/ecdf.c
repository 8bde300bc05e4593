/* ecdf: online empirical CDF in fixed memory (docs/design.md#operators,
 * docs/algorithms.md 3, 4 and 5.4). Four modes share one state:
 *   kll    1-D KLL sketch (4.1): F within eps(k) in rank
 *   grid   d-dim Fenwick tree (4.4): exact at the nodes, a bracket between
 *   exact  tumbling window, exact ECDF at every point by D&C (3.3)
 *   kde    grid + decayed orthant trees (5.4): Laplacian KDE / Nadaraya-Watson
 * Fields added to each record (kll, grid, kde; computed before the record is
 * counted): F = sum of weights of the earlier records with x' <= x, over n;
 * n = number of earlier records (0 for the first: F = 0). grid and kde add
 * F_lo / F_hi, the exact values at the nearest nodes below / above x on every
 * axis (F = F_lo; all three equal when x is on the nodes); kde adds density
 * (and yhat with regression) at the node nearest to x, where they are exact.
 * exact emits nothing per record: when the window fills it emits one record
 * per point (x, y, t, seq kept; key of the closing record) with F = the
 * window's ECDF at that point, self and ties included, and n = window; at
 * the natural end of the stream, flush emits the partial window the same way
 * with n = its size (emit_partial, default true).
 * Queries: cdf {x} (all modes; exact: the pending window's points), cdf
 * {points: [[..], ..]} (exact: many at once, the bichromatic D&C),
 * quantile {r} (kll: q), density {x} (kde: density, yhat, node).
 * Every buffer comes from one allocation laid out by layout(), which is also what
 * mem_bound reports, so the bound is exact. */
#include "ecdf.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/opkit.h"
#include "../engine/state.h"
#include "dominance.h"
#include "fenwick.h"
#include "kll.h"
#include "partial.h"

#define STATE_VERSION 1
#define MAX_WINDOW    (1 << 26) /* keys are int32 over 2 x window items */

static const char *const mode_names[] = {"kll", "grid", "exact", "kde", NULL};

#define GOFF(f) offsetof(struct ink_ecdf_grid_conf, f)
#define COFF(f) offsetof(struct ink_ecdf_conf, f)

const struct ink_param ink_ecdf_grid_params[] = {
    {.name = "lo",
     .type = INK_P_F64_LIST,
     .offset = GOFF(lo),
     .len_min = 1,
     .len_max = INK_GRID_MAX_DIM,
     .help = "regular grid: first node per axis"},
    {.name = "hi",
     .type = INK_P_F64_LIST,
     .offset = GOFF(hi),
     .len_min = 1,
     .len_max = INK_GRID_MAX_DIM,
     .help = "regular grid: last node per axis"},
    {.name = "n",
     .type = INK_P_F64_LIST,
     .offset = GOFF(n),
     .min = 1,
     .max = INK_GRID_MAX_NODES,
     .len_min = 1,
     .len_max = INK_GRID_MAX_DIM,
     .help = "regular grid: number of nodes per axis (lo and hi included)"},
    {.name = "nodes",
     .type = INK_P_F64_LISTS,
     .offset = GOFF(nodes),
     .len_min = 1,
     .len_max = INK_GRID_MAX_DIM,
     .help = "explicit grid: one strictly increasing list of nodes per axis"},
    {0},
};

static const struct ink_param ecdf_params[] = {
    {.name = "mode",
     .type = INK_P_ENUM,
     .offset = COFF(mode),
     .def = "kll",
     .choices = mode_names,
     .help = "kll (1-D sketch), grid (d-dim Fenwick, exact at nodes), exact (window, D&C), kde "
             "(Laplacian KDE on a grid)"},
    {.name = "k",
     .type = INK_P_INT,
     .offset = COFF(k),
     .def = "200",
     .min = 8,
     .max = 65535,
     .help = "kll: sketch size; rank error about 2.3/k^0.97 (1.3% at 200)"},
    {.name = "grid",
     .type = INK_P_OBJECT,
     .offset = COFF(grid),
     .sub = ink_ecdf_grid_params,
     .help = "grid and kde: {lo: [..], hi: [..], n: [..]} or {nodes: [[..], ..]}"},
    {.name = "window",
     .type = INK_P_INT,
     .offset = COFF(window),
     .def = "1000",
     .min = 1,
     .max = MAX_WINDOW,
     .help = "exact: records per tumbling window"},
    {.name = "max_query_points",
     .type = INK_P_INT,
     .offset = COFF(max_query_points),
     .flags = INK_PF_FREE, /* sizes a query buffer, not the state */
     .def = "1024",
     .min = 0,
     .max = MAX_WINDOW,
     .help = "exact: most points a cdf request may ask at once ({points: [[..], ..]}, by the "
             "bichromatic D&C); capped at window; 8 (d + 1) bytes each, once per node"},
    {.name = "dim",
     .type = INK_P_INT,
     .offset = COFF(dim),
     .def = "0",
     .min = 0,
     .max = INK_DOM_MAX_DIM,
     .help = "exact: length of x (required); others: 0 (implied by the mode or the grid)"},
    {.name = "h",
     .type = INK_P_F64_LIST,
     .offset = COFF(h),
     .min = 1e-300,
     .max = 1e300,
     .len_min = 1,
     .len_max = INK_GRID_MAX_DIM,
     .help = "kde: Laplacian bandwidths, one for all axes or one per axis; default twice the "
             "grid's mean node spacing per axis"},
    {.name = "weighted",
     .type = INK_P_BOOL,
     .offset = COFF(weighted),
     .def = "false",
     .help = "grid and exact: each record weighs its y (F = sum of weights below / n)"},
    {.name = "regression",
     .type = INK_P_BOOL,
     .offset = COFF(regression),
     .def = "false",
     .help = "kde: also Nadaraya-Watson regression of y (every record needs y)"},
    {.name = "quantiles",
     .type = INK_P_F64_LIST,
     .offset = COFF(quantiles),
     .flags = INK_PF_FREE, /* read from the sketch at output */
     .min = 0,
     .max = 1,
     .len_min = 1,
     .len_max = INK_ECDF_MAX_QUANTILES,
     .help = "kll: add each rank's quantile of the earlier records to every record, named "
             "q<100 r>: [0.5, 0.9, 0.99] adds q50, q90, q99"},
    {.name = "publish",
     .type = INK_P_INT,
     .offset = COFF(publish),
     .def = "0",
     .min = 0,
     .max = 1LL << 40,
     .help = "kll, grid: every this many records a state counts, and at the end of the stream, "
             "emit its cumulative partial (sketch or grid counts) for a merge node; 0 = never"},
    {.name = "emit_partial",
     .type = INK_P_BOOL,
     .offset = COFF(emit_partial),
     .def = "true",
     .help = "exact: when every source has ended (not on a signal), emit the last, partial "
             "window (n = its size)"},
    {0},
};

/* The operator state: one of the four modes, all buffers in `mem`. */
struct ecdf {
    int mode, d;
    bool weighted, regression, emit_partial;
    uint64_t n; /* records counted (kll, grid, kde) */
    void *mem;
    size_t bytes;
    struct ink__kll kll;
    struct ink__kll_pool *views; /* kll: the node's query views (engine scratch), or NULL */
    /* grid, kde */
    struct ink__grid g;
    double *nodes; /* the axes' nodes, concatenated */
    double *T;     /* plain tree: weights per cell */
    double wout;   /* weight of points above the last node of some axis (not in T) */
    double *kde1;  /* 2^d decayed trees of weight 1 */
    double *kdey;  /* the same of weight y (regression) */
    double hinv[INK_GRID_MAX_DIM], hprod;
    /* exact */
    struct ink__dom dom;
    size_t W, cnt;
    double *pts, *ys, *F;
    size_t mq;         /* most query points per request: min(max_query_points, W) */
    double *qpts, *qF; /* mq points and their F: node scratch, or NULL without it */
    int64_t *ts;
    uint64_t *seqs;
    uint64_t *keyh; /* FNV-1a of each record's key (0 = no key) */
    uint32_t *flags;
    /* kll: per-record quantiles and their field names (q50, q99.9) */
    int nq;
    double qr[INK_ECDF_MAX_QUANTILES];
    char qname[INK_ECDF_MAX_QUANTILES][16];
    /* kde: the node's grid-wide density reply (scratch, shared by the keys) */
    double *dgrid, *ygrid;
    /* publish: partials every `publish` records (docs/ecdf.md#global-answers-by-merging) */
    uint64_t publish, published; /* published: n at the last partial */
    uint8_t *pbuf;               /* the partial's bin object */
    const char *node;            /* node name: the partial's source */
    struct ink__partial_tag tag; /* kafka_partition/offset of the last record counted */
    /* reply scratch */
    double qnode[INK_GRID_MAX_DIM];
    int64_t shape[INK_GRID_MAX_DIM];
    double qv[INK_ECDF_MAX_QUANTILES * 8], rv[INK_ECDF_MAX_QUANTILES * 8];
};

/* The field name of rank r: "q" and 100 r, shortest form (q50, q99.9). */
static void quantile_name(char out[16], double r)
{
    snprintf(out, 16, "q%.6g", 100 * r);
}

static int grid_axes(const struct ink_ecdf_conf *c)
{
    if (c->grid.nodes.n > 0) return c->grid.nodes.n;
    return c->grid.lo.n;
}

static uint32_t axis_nodes(const struct ink_ecdf_conf *c, int k)
{
    if (c->grid.nodes.n > 0) return (uint32_t)c->grid.nodes.v[k].n;
    return (uint32_t)c->grid.n.v[k];
}

static size_t nodes_total(const struct ink_ecdf_conf *c)
{
    size_t nn = 0;
    for (int k = 0; k < grid_axes(c); k++) nn += axis_nodes(c, k);
    return nn;
}

static size_t cells_of(const struct ink_ecdf_conf *c)
{
    size_t cells = 1;
    for (int k = 0; k < grid_axes(c); k++) cells *= axis_nodes(c, k);
    return cells;
}

static int conf_dim(const struct ink_ecdf_conf *c)
{
    switch (c->mode) {
    case INK_ECDF_KLL:
        return 1;
    case INK_ECDF_EXACT:
        return (int)c->dim;
    default:
        return grid_axes(c);
    }
}

/* Lays every buffer of the state out in one block (opkit.h): with s->mem
 * NULL it only sizes it, which is what mem_bound reports; with s->mem the
 * block of that size, it carves it. One function for both keeps the bound
 * exact. */
static size_t layout(struct ecdf *s, const struct ink_ecdf_conf *c)
{
    struct ink_carve cv = {s->mem, 0, 8}; /* doubles and words: 8 is enough */
    int d = conf_dim(c);
    if (c->mode == INK_ECDF_KLL) {
        void *p = ink_carve_take(&cv, ink__kll_bytes((uint32_t)c->k, false)); /* never merges */
        if (p) ink__kll_init(&s->kll, (uint32_t)c->k, 0, p, false);
    } else if (c->mode == INK_ECDF_EXACT) {
        size_t W = (size_t)c->window;
        void *p = ink_carve_take(&cv, ink__dom_bytes(d, 2 * W));
        if (p) ink__dom_init(&s->dom, d, 2 * W, p);
        s->pts = ink_carve_take(&cv, W * (size_t)d * 8);
        s->ys = ink_carve_take(&cv, W * 8);
        s->F = ink_carve_take(&cv, W * 8);
        s->ts = ink_carve_take(&cv, W * 8);
        s->seqs = ink_carve_take(&cv, W * 8);
        s->keyh = ink_carve_take(&cv, W * 8);
        s->flags = ink_carve_take(&cv, W * 4);
    } else {
        size_t cells = 1, nn = 0;
        for (int k = 0; k < d; k++) {
            cells *= axis_nodes(c, k);
            nn += axis_nodes(c, k);
        }
        s->nodes = ink_carve_take(&cv, nn * 8);
        s->T = ink_carve_take(&cv, cells * 8);
        if (c->mode == INK_ECDF_KDE) {
            size_t trees = ((size_t)1 << d) * cells * 8;
            s->kde1 = ink_carve_take(&cv, trees);
            s->kdey = c->regression ? ink_carve_take(&cv, trees) : NULL;
        }
    }
    if (c->publish > 0) {
        size_t pb = c->mode == INK_ECDF_KLL
                        ? ink__partial_kll_bytes((uint32_t)c->k)
                        : ink__partial_grid_bytes(d, nodes_total(c), cells_of(c));
        s->pbuf = ink_carve_take(&cv, pb);
    }
    return ink_carve_size(&cv);
}

static bool increasing(const double *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]) || (i > 0 && !(v[i] > v[i - 1]))) return false;
    return true;
}

static int check_grid(const struct ink_ecdf_conf *c, struct ink_err *err)
{
    const struct ink_ecdf_grid_conf *g = &c->grid;
    if (!g->set || (g->nodes.n == 0 && g->lo.n == 0))
        return ink_err_set(err, INK_EINVAL, "mode %s needs grid: {lo, hi, n} or {nodes}",
                           mode_names[c->mode]);
    if (g->nodes.n > 0) {
        if (g->lo.n || g->hi.n || g->n.n)
            return ink_err_set(err, INK_EINVAL, "grid: give either nodes or lo/hi/n, not both");
        if (g->nodes.n > INK_GRID_MAX_DIM)
            return ink_err_set(err, INK_EINVAL, "grid: at most %d axes", INK_GRID_MAX_DIM);
        for (int k = 0; k < g->nodes.n; k++) {
            const struct ink_f64_list *a = &g->nodes.v[k];
            if (a->n < 1 || a->n > INK_GRID_MAX_NODES || !increasing(a->v, a->n))
                return ink_err_set(err, INK_EINVAL,
                                   "grid.nodes[%d]: need 1..%d strictly increasing finite values",
                                   k, INK_GRID_MAX_NODES);
        }
    } else {
        int d = g->lo.n;
        if (g->hi.n != d || g->n.n != d || d > INK_GRID_MAX_DIM)
            return ink_err_set(
                err, INK_EINVAL,
                "grid: lo, hi and n must have the same length (1..%d), got %d, %d, %d",
                INK_GRID_MAX_DIM, g->lo.n, g->hi.n, g->n.n);
        for (int k = 0; k < d; k++) {
            double n = g->n.v[k];
            if (n != floor(n) || n < 1 || n > INK_GRID_MAX_NODES)
                return ink_err_set(err, INK_EINVAL, "grid.n[%d]: an integer in 1..%d", k,
                                   INK_GRID_MAX_NODES);
            if (!(g->hi.v[k] > g->lo.v[k]) && !(n == 1 && g->hi.v[k] == g->lo.v[k]))
                return ink_err_set(err, INK_EINVAL, "grid: axis %d needs lo < hi", k);
        }
    }
    return 0;
}

static int ecdf_check(const void *conf, struct ink_err *err)
{
    return ink_ecdf_check(conf, err);
}

int ink_ecdf_check(const struct ink_ecdf_conf *c, struct ink_err *err)
{
    if (c->mode < INK_ECDF_KLL || c->mode > INK_ECDF_KDE)
        return ink_err_set(err, INK_EINVAL, "mode: unknown");
    if (c->weighted && (c->mode == INK_ECDF_KLL || c->mode == INK_ECDF_KDE))
        return ink_err_set(err, INK_EINVAL, "weighted: only for mode grid or exact");
    if (c->regression && c->mode != INK_ECDF_KDE)
        return ink_err_set(err, INK_EINVAL, "regression: only for mode kde");
    if (c->publish < 0) return ink_err_set(err, INK_ERANGE, "publish: a count of records >= 0");
    if (c->publish > 0 && c->mode != INK_ECDF_KLL && c->mode != INK_ECDF_GRID)
        return ink_err_set(err, INK_EINVAL,
                           "publish: only for mode kll or grid (the mergeable states)");
    if (c->quantiles.n && c->mode != INK_ECDF_KLL)
        return ink_err_set(err, INK_EINVAL,
                           "quantiles: only for mode kll (grid: nodes at the values, then F)");
    for (int i = 0; i < c->quantiles.n; i++)
        for (int j = 0; j < i; j++) {
            char a[16], b[16];
            quantile_name(a, c->quantiles.v[i]);
            quantile_name(b, c->quantiles.v[j]);
            if (!strcmp(a, b))
                return ink_err_set(err, INK_EINVAL, "quantiles: %g and %g are both %s",
                                   c->quantiles.v[j], c->quantiles.v[i], a);
        }
    if (c->mode == INK_ECDF_KLL) {
        if (c->k < 8 || c->k > 65535) return ink_err_set(err, INK_ERANGE, "k: 8..65535");
        if (c->dim > 1) return ink_err_set(err, INK_EINVAL, "mode kll is 1-D (dim: 1)");
        return 0;
    }
    if (c->mode == INK_ECDF_EXACT) {
        if (c->dim < 1 || c->dim > INK_DOM_MAX_DIM)
            return ink_err_set(err, INK_EINVAL, "mode exact needs dim: 1..%d", INK_DOM_MAX_DIM);
        if (c->window < 1 || c->window > MAX_WINDOW)
            return ink_err_set(err, INK_ERANGE, "window: 1..%d", MAX_WINDOW);
        return 0;
    }
    int rc = check_grid(c, err);
    if (rc) return rc;
    int d = grid_axes(c);
    if (c->dim != 0 && c->dim != d)
        return ink_err_set(err, INK_EINVAL, "dim %lld does not match the grid's %d axes",
                           (long long)c->dim, d);
    double cells = 1;
    for (int k = 0; k < d; k++) cells *= axis_nodes(c, k);
    if (c->mode == INK_ECDF_KDE) {
        if (c->h.n != 0 && c->h.n != 1 && c->h.n != d)
            return ink_err_set(err, INK_EINVAL, "mode kde needs h: one value or %d", d);
        for (int k = 0; k < d && c->h.n == 0; k++)
            if (axis_nodes(c, k) < 2)
                return ink_err_set(err, INK_EINVAL,
                                   "kde: axis %d has one node, so no default bandwidth: give h", k);
        for (int k = 0; k < c->h.n; k++)
            if (!(c->h.v[k] > 0) || !isfinite(c->h.v[k]))
                return ink_err_set(err, INK_ERANGE, "h[%d] must be > 0", k);
        cells *= (double)(1u << d) * (c->regression ? 3 : 2);
    }
    if (cells * 8 > 0x1p46)
        return ink_err_set(err, INK_ENOMEM, "grid of %.0f cells is too large", cells);
    return 0;
}

static size_t grid_cells(const struct ink_ecdf_conf *c)
{
    size_t cells = 1;
    for (int k = 0; k < grid_axes(c); k++) cells *= axis_nodes(c, k);
    return cells;
}

/* exact: most points per batch query. */
static size_t query_points_cap(const struct ink_ecdf_conf *c)
{
    return (size_t)(c->max_query_points < c->window ? c->max_query_points : c->window);
}

/* Per node, shared by the keys, never saved: kll's query views (kll.h);
 * exact's batch-query points and their F. */
static size_t ecdf_scratch_bytes(const void *conf)
{
    const struct ink_ecdf_conf *c = conf;
    if (ecdf_check(conf, NULL)) return 0;
    if (c->mode == INK_ECDF_KLL)
        return sizeof(struct ink__kll_pool) + ink__kll_pool_bytes((uint32_t)c->k);
    if (c->mode == INK_ECDF_EXACT) return query_points_cap(c) * ((size_t)conf_dim(c) + 1) * 8;
    if (c->mode == INK_ECDF_KDE) return grid_cells(c) * 8 * (c->regression ? 2 : 1);
    return 0;
}

static size_t ecdf_mem_bound(const void *conf)
{
    if (ecdf_check(conf, NULL)) return 0;
    struct ecdf sizing = {0};
    return layout(&sizing, conf);
}

int ink_ecdf_grid_nodes(const struct ink_ecdf_conf *c, double *z, uint32_t *Ms)
{
    int d = grid_axes(c);
    for (int k = 0; k < d; k++) {
        uint32_t M = axis_nodes(c, k);
        if (c->grid.nodes.n > 0) {
            memcpy(z, c->grid.nodes.v[k].v, M * sizeof *z);
        } else {
            double lo = c->grid.lo.v[k], hi = c->grid.hi.v[k];
            for (uint32_t j = 0; j < M; j++)
                z[j] = M == 1 ? lo : (j + 1 == M ? hi : lo + (hi - lo) * ((double)j / (M - 1)));
        }
        Ms[k] = M;
        z += M;
    }
    return d;
}

static void build_grid(struct ecdf *s, const struct ink_ecdf_conf *c)
{
    struct ink__grid *g = &s->g;
    g->d = ink_ecdf_grid_nodes(c, s->nodes, g->M);
    double *z = s->nodes;
    for (int k = 0; k < g->d; k++) {
        g->z[k] = z;
        z += g->M[k];
    }
    ink__grid_setup(g);
    s->hprod = 1;
    if (c->mode == INK_ECDF_KDE)
        for (int k = 0; k < s->d; k++) {
            /* default (docs/ecdf.md): twice the mean node spacing, the finest
             * bandwidth the grid resolves */
            uint32_t M = s->g.M[k];
            double h = c->h.n ? c->h.v[c->h.n == 1 ? 0 : k]
                              : 2 * (s->g.z[k][M - 1] - s->g.z[k][0]) / (M - 1);
            s->hinv[k] = 1 / h;
            s->hprod *= h;
        }
}

static void ecdf_fini(void *state)
{
    struct ecdf *s = state;
    free(s->mem);
    s->mem = NULL;
}

static int ecdf_init(void *state, const void *conf, const struct ink_op_init *ini,
                     struct ink_err *err)
{
    const struct ink_ecdf_conf *c = conf;
    struct ecdf *s = state;
    int rc = ecdf_check(c, err);
    if (rc) return rc;
    s->mode = c->mode;
    s->d = conf_dim(c);
    s->weighted = c->weighted;
    s->regression = c->regression;
    s->emit_partial = c->emit_partial;
    s->bytes = layout(s, c);
    s->mem = ink_arena_alloc(s->bytes, 8, ini->name, err);
    if (!s->mem) return INK_ENOMEM;
    layout(s, c);
    if (s->mode == INK_ECDF_KLL) {
        ink_rng_seed(&s->kll.rng, ink_seed_derive(ini->seed, "kll"));
        if (ini->scratch) { /* the first key to come initialises the node's views */
            s->views = ini->scratch;
            if (s->views->n == 0) ink__kll_pool_init(s->views, (uint32_t)c->k, s->views + 1);
        }
    }
    if (s->mode == INK_ECDF_GRID || s->mode == INK_ECDF_KDE) build_grid(s, c);
    if (s->mode == INK_ECDF_KDE && ini->scratch) {
        s->dgrid = ini->scratch;
        s->ygrid = c->regression ? s->dgrid + s->g.size : NULL;
    }
    s->nq = c->quantiles.n;
    for (int i = 0; i < s->nq; i++) {
        s->qr[i] = c->quantiles.v[i];
        quantile_name(s->qname[i], s->qr[i]);
    }
    if (s->mode == INK_ECDF_EXACT && ini->scratch) {
        s->mq = query_points_cap(c);
        s->qpts = ini->scratch;
        s->qF = s->qpts + s->mq * (size_t)s->d;
    }
    s->W = (size_t)c->window;
    s->publish = (uint64_t)c->publish;
    s->node = ini->name;
    return 0;
}

/* ---- per-record work ---- */

static int check_record(const struct ecdf *s, const struct ink_record *in, bool need_y,
                        struct ink_err *err)
{
    if (!(in->flags & INK_HAS_X) || !in->x) return ink_err_set(err, INK_ENOX, "record has no x");
    if (in->dim != (uint32_t)s->d)
        return ink_err_set(err, INK_EDIM, "x has %u values, ecdf %s takes %d", in->dim,
                           mode_names[s->mode], s->d);
    for (int k = 0; k < s->d; k++)
        if (!isfinite(in->x[k])) return ink_err_set(err, INK_EINVAL, "x[%d] is not finite", k);
    if (need_y && !(in->flags & INK_HAS_Y))
        return ink_err_set(err, INK_EINVAL, "record has no y (needed as %s)",
                           s->mode == INK_ECDF_KDE ? "the regression target" : "the weight");
    if ((in->flags & INK_HAS_Y) && !isfinite(in->y))
        return ink_err_set(err, INK_EINVAL, "y is not finite");
    return 0;
}

static double ratio(double a, uint64_t n)
{
    return n ? a / (double)n : 0.0;
}

static void grid_bracket(const struct ecdf *s, const double *x, double *flo, double *fhi)
{
    ink__fenwick_bracket(&s->g, s->T, s->wout, s->n, x, flo, fhi);
}

static void grid_add(struct ecdf *s, const double *x, double w)
{
    uint32_t c[INK_GRID_MAX_DIM];
    for (int k = 0; k < s->d; k++) {
        c[k] = ink__grid_cell(&s->g, k, x[k]);
        if (c[k] == s->g.M[k]) {
            s->wout += w; /* counts in N, reaches no node */
            return;
        }
    }
    ink__fenwick_add(&s->g, s->T, c, w);
}

/* Nearest node per axis (the KDE is exact at nodes only). */
static void nearest_node(const struct ecdf *s, const double *x, uint32_t *j)
{
    for (int k = 0; k < s->d; k++) {
        const double *z = s->g.z[k];
        uint32_t c = ink__grid_cell(&s->g, k, x[k]);
        if (c == s->g.M[k])
            c--;
        else if (c > 0 && x[k] - z[c - 1] < z[c] - x[k])
            c--;
        j[k] = c;
    }
}

/* Density (docs/algorithms.md 3.4: K_h = prod 1/(2 h_k) exp(-|u_k|/h_k)) and the
 * Nadaraya-Watson estimate at node j; yhat is NAN where no weight reaches. */
static void kde_at(const struct ecdf *s, const uint32_t *j, double *dens, double *yhat)
{
    double s1 = ink__kde_sum(&s->g, s->hinv, s->kde1, j);
    double norm = (double)s->n * ldexp(s->hprod, s->d);
    *dens = s->n ? s1 / norm : 0.0;
    *yhat = NAN;
    if (s->kdey && s1 > 0) *yhat = ink__kde_sum(&s->g, s->hinv, s->kdey, j) / s1;
}

static int add_kde_fields(struct ecdf *s, struct ink_record *out, const double *x)
{
    uint32_t j[INK_GRID_MAX_DIM];
    double dens, yhat;
    nearest_node(s, x, j);
    kde_at(s, j, &dens, &yhat);
    int full = ink_record_add_f64(out, "density", dens);
    if (isfinite(yhat)) full |= ink_record_add_f64(out, "yhat", yhat);
    return full;
}

/* FNV-1a of a record's key; 0 for none (a real key hashing to 0 is 2^-64). */
static uint64_t key_hash(const struct ink_record *r)
{
    if (!(r->flags & INK_HAS_KEY)) return 0;
    uint64_t h = 1469598103934665603ULL;
    for (uint32_t i = 0; i < r->key_len; i++) h = (h ^ (uint8_t)r->key[i]) * 1099511628211ULL;
    return h ? h : 1;
}

/* The cumulative partial (docs/ecdf.md#global-answers-by-merging): one record
 * with the state's key (in's; under key_by the engine sets it on flush), t and
 * seq, and the fields partial (msgpack bin, operators/partial.h), source (the
 * node), n, and kafka_partition / kafka_offset when the records carry them. */
static int emit_partial(struct ecdf *s, const struct ink_record *in, const struct ink_emitter *em)
{
    size_t len = s->mode == INK_ECDF_KLL
                     ? ink__partial_put_kll(s->pbuf, &s->kll)
                     : ink__partial_put_grid(s->pbuf, &s->g, s->T, s->n, s->wout);
    s->published = s->n;
    return ink__partial_emit(in, s->pbuf, len, s->node, s->n, &s->tag, em);
}

/* Exact mode: the window is full (or the stream ended: flush); emit every
 * point with its exact ECDF over the cnt points held, n = cnt. */
static int close_window(struct ecdf *s, const struct ink_record *in, const struct ink_emitter *em)
{
    size_t n = s->cnt;
    ink__dom_run(&s->dom, s->pts, s->weighted ? s->ys : NULL, n, s->pts, n, s->F);
    s->cnt = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        /* Keys are not stored (variable length): a point whose key equals the
         * closing record's gets it back (always so under key_by, where the
         * engine keeps one state per key); any other point goes out keyless. */
        struct ink_record out;
        ink_record_derive_meta(&out, in);
        bool same_key = s->keyh[i] != 0 && s->keyh[i] == key_hash(in);
        out.flags = (same_key ? INK_HAS_KEY : 0) | (s->flags[i] & ~INK_HAS_KEY);
        out.x = s->pts + i * (size_t)s->d;
        out.dim = (uint32_t)s->d;
        out.y = s->ys[i];
        out.t = s->ts[i];
        out.seq = s->seqs[i];
        ink_record_add_f64(&out, "F", s->F[i] / (double)n);
        ink_record_add_i64(&out, "n", (int64_t)n);
        rc = ink_emit(em, &out);
    }
    return rc;
}

static int ecdf_process(void *state, const struct ink_record *in, const struct ink_emitter *outp,
                        struct ink_err *err)
{
    struct ecdf *s = state;
    bool need_y = (s->weighted && s->mode != INK_ECDF_KLL) || s->regression;
    int rc = check_record(s, in, need_y, err);
    if (rc) return rc;
    const double *x = in->x;
    double w = s->weighted ? in->y : 1.0;
    if (s->mode == INK_ECDF_EXACT) {
        size_t i = s->cnt++;
        memcpy(s->pts + i * (size_t)s->d, x, (size_t)s->d * sizeof *x);
        s->ys[i] = (in->flags & INK_HAS_Y) ? in->y : 0;
        s->ts[i] = in->t;
        s->seqs[i] = in->seq;
        s->keyh[i] = key_hash(in);
        s->flags[i] = in->flags & (INK_HAS_X | INK_HAS_Y | INK_HAS_T | INK_HAS_SEQ);
        return s->cnt == s->W ? close_window(s, in, outp) : 0;
    }
    /* Fields first (F is the ECDF before this record), state after: a record
     * refused for lack of field slots leaves the state unchanged. */
    struct ink_record out;
    ink_record_derive(&out, in);
    int full = 0;
    if (s->mode == INK_ECDF_KLL) {
        uint64_t w = s->views ? ink__kll_pool_weight_le(s->views, &s->kll, x[0])
                              : ink__kll_weight_le(&s->kll, x[0]);
        full |= ink_record_add_f64(&out, "F", ratio((double)w, s->n));
        /* of the earlier records, like F: absent on a key's first record */
        for (int i = 0; i < s->nq && s->n; i++)
            full |=
                ink_record_add_f64(&out, s->qname[i],
                                   s->views ? ink__kll_pool_quantile(s->views, &s->kll, s->qr[i])
                                            : ink__kll_quantile(&s->kll, s->qr[i]));
    } else {
        double flo, fhi;
        grid_bracket(s, x, &flo, &fhi);
        full |= ink_record_add_f64(&out, "F", flo);
        full |= ink_record_add_f64(&out, "F_lo", flo);
        full |= ink_record_add_f64(&out, "F_hi", fhi);
        if (s->mode == INK_ECDF_KDE) full |= add_kde_fields(s, &out, x);
    }
    full |= ink_record_add_i64(&out, "n", (int64_t)s->n);
    if (full)
        return ink_err_set(err, INK_EINVAL, "record already has %d fields: no room for ecdf's",
                           INK_MAX_FIELDS);
    if (s->mode == INK_ECDF_KLL) {
        ink__kll_update(&s->kll, x[0]);
    } else {
        if (s->mode == INK_ECDF_KDE) {
            ink__kde_add(&s->g, s->hinv, s->kde1, x, 1.0);
            if (s->kdey) ink__kde_add(&s->g, s->hinv, s->kdey, x, in->y);
        }
        grid_add(s, x, w);
    }
    s->n++;
    if (s->publish) ink__partial_note(&s->tag, in);
    rc = ink_emit(outp, &out);
    if (rc == 0 && s->publish && s->n - s->published >= s->publish) rc = emit_partial(s, in, outp);
    return rc;
}

/* The graph ended naturally (op.h): the partial window goes out as a full
 * one's close would send it, with n = the points it holds. There is no
 * closing record, so no point gets a key here; under key_by the engine puts
 * the state's key on every record. The buffers exist: nothing is allocated. */
static int ecdf_flush(void *state, const struct ink_emitter *out, struct ink_err *err)
{
    (void)err;
    struct ecdf *s = state;
    if (s->publish && s->n > s->published) { /* the last records since a partial */
        struct ink_record none;
        memset(&none, 0, sizeof none);
        return emit_partial(s, &none, out);
    }
    if (s->mode != INK_ECDF_EXACT || !s->emit_partial || s->cnt == 0) return 0;
    struct ink_record none;
    memset(&none, 0, sizeof none);
    return close_window(s, &none, out);
}

/* ---- queries ---- */

static int query_point(const struct ecdf *s, const struct ink_record *req, struct ink_err *err)
{
    if (!(req->flags & INK_HAS_X) || !req->x) return ink_err_set(err, INK_ENOX, "query needs x");
    if (req->dim != (uint32_t)s->d)
        return ink_err_set(err, INK_EDIM, "x has %u values, ecdf %s takes %d", req->dim,
                           mode_names[s->mode], s->d);
    for (int k = 0; k < s->d; k++)
        if (!isfinite(req->x[k])) return ink_err_set(err, INK_EINVAL, "x[%d] is not finite", k);
    return 0;
}

/* Exact mode: F of the current window's points at x, by a scan (one point). */
static double window_cdf(const struct ecdf *s, const double *x)
{
    double acc = 0;
    for (size_t i = 0; i < s->cnt; i++) {
        const double *p = s->pts + i * (size_t)s->d;
        int k = 0;
        while (k < s->d && p[k] <= x[k]) k++;
        if (k == s->d) acc += s->weighted ? s->ys[i] : 1.0;
    }
    return acc;
}

/* exact: F at many points at once, {"points": [[..], ..]}: the bichromatic
 * D&C (docs/algorithms.md 3.3) of the window's points (sources) against them
 * (targets), O((cnt + m) log^(d-1)) instead of m scans. */
static int query_points(struct ecdf *s, const struct ink_record *req, struct ink_record *out,
                        struct ink_err *err)
{
    if (s->mode != INK_ECDF_EXACT)
        return ink_err_set(err, INK_ENOTSUP, "cdf with points needs mode exact (ask one x)");
    uint32_t m = 0;
    int rc = ink_record_extra_f64m(req, "points", s->qpts, (uint32_t)s->mq, (uint32_t)s->d, &m);
    if (rc < 0 || m == 0)
        return ink_err_set(err, INK_EINVAL,
                           "points: an array of 1..%zu points (max_query_points), each %d "
                           "finite numbers",
                           s->mq, s->d);
    ink__dom_run(&s->dom, s->pts, s->weighted ? s->ys : NULL, s->cnt, s->qpts, m, s->qF);
    for (uint32_t i = 0; i < m; i++) s->qF[i] = ratio(s->qF[i], s->cnt);
    ink_record_add_f64s(out, "F", s->qF, m);
    ink_record_add_i64(out, "n", (int64_t)s->cnt);
    return 0;
}

static int query_cdf(struct ecdf *s, const struct ink_record *req, struct ink_record *out,
                     struct ink_err *err)
{
    if (ink_record_extra_f64m(req, "points", NULL, 0, 0, NULL) != 0)
        return query_points(s, req, out, err);
    int rc = query_point(s, req, err);
    if (rc) return rc;
    if (s->mode == INK_ECDF_KLL) {
        ink_record_add_f64(out, "F", ratio((double)ink__kll_weight_le(&s->kll, req->x[0]), s->n));
        ink_record_add_i64(out, "n", (int64_t)s->n);
    } else if (s->mode == INK_ECDF_EXACT) {
        ink_record_add_f64(out, "F", ratio(window_cdf(s, req->x), s->cnt));
        ink_record_add_i64(out, "n", (int64_t)s->cnt);
    } else {
        double flo, fhi;
        grid_bracket(s, req->x, &flo, &fhi);
        ink_record_add_f64(out, "F", flo);
        ink_record_add_f64(out, "F_lo", flo);
        ink_record_add_f64(out, "F_hi", fhi);
        ink_record_add_i64(out, "n", (int64_t)s->n);
    }
    return 0;
}

#define MAX_R ((uint32_t)(sizeof((struct ecdf *)0)->rv / sizeof(double)))

/* {"r": 0.9} -> r, q, n; {"r": [0.5, 0.9]} -> r, q as arrays (one request). */
static int query_quantile(struct ecdf *s, const struct ink_record *req, struct ink_record *out,
                          struct ink_err *err)
{
    if (s->mode != INK_ECDF_KLL) return ink_err_set(err, INK_ENOTSUP, "quantile needs mode kll");
    double r;
    uint32_t m = 0;
    int one = ink_record_extra_f64(req, "r", &r);
    if (one != 1 && ink_record_extra_f64s(req, "r", s->rv, MAX_R, &m) != 1)
        m = 0;
    else if (one == 1)
        s->rv[0] = r, m = 1;
    bool ok = m > 0;
    for (uint32_t i = 0; i < m; i++) ok &= s->rv[i] >= 0 && s->rv[i] <= 1;
    if (!ok)
        return ink_err_set(err, INK_EINVAL,
                           "quantile needs r: a number in [0, 1] or a list of 1..%u of them",
                           MAX_R);
    if (s->n == 0) return ink_err_set(err, INK_EINVAL, "quantile of an empty sketch");
    for (uint32_t i = 0; i < m; i++) s->qv[i] = ink__kll_quantile(&s->kll, s->rv[i]);
    if (one == 1) {
        ink_record_add_f64(out, "r", r);
        ink_record_add_f64(out, "q", s->qv[0]);
    } else {
        ink_record_add_f64s(out, "r", s->rv, m);
        ink_record_add_f64s(out, "q", s->qv, m);
    }
    ink_record_add_i64(out, "n", (int64_t)s->n);
    return 0;
}

static const char *const axis_names[INK_GRID_MAX_DIM] = {"axis0", "axis1", "axis2", "axis3",
                                                         "axis4", "axis5", "axis6", "axis7"};

/* kde: {"x": [..]} -> the nearest node's density; without x, the whole grid
 * in one reply: density (and yhat) over every node, axis 0 slowest. */
static int query_density(struct ecdf *s, const struct ink_record *req, struct ink_record *out,
                         struct ink_err *err)
{
    if (s->mode != INK_ECDF_KDE) return ink_err_set(err, INK_ENOTSUP, "density needs mode kde");
    if (req->flags & INK_HAS_X) {
        int rc = query_point(s, req, err);
        if (rc) return rc;
        uint32_t j[INK_GRID_MAX_DIM];
        nearest_node(s, req->x, j);
        for (int k = 0; k < s->d; k++) s->qnode[k] = s->g.z[k][j[k]];
        add_kde_fields(s, out, req->x);
        ink_record_add_f64s(out, "node", s->qnode, (uint32_t)s->d);
        ink_record_add_i64(out, "n", (int64_t)s->n);
        return 0;
    }
    if (!s->dgrid) return ink_err_set(err, INK_ENOTSUP, "density over the grid: no scratch");
    uint32_t j[INK_GRID_MAX_DIM] = {0};
    for (size_t c = 0; c < s->g.size; c++) {
        double y;
        kde_at(s, j, &s->dgrid[c], &y);
        if (s->ygrid) s->ygrid[c] = y; /* NaN (JSON null) where no weight reaches */
        for (int k = s->d - 1; k >= 0 && ++j[k] == s->g.M[k]; k--) j[k] = 0;
    }
    ink_record_add_f64s(out, "density", s->dgrid, (uint32_t)s->g.size);
    if (s->ygrid) ink_record_add_f64s(out, "yhat", s->ygrid, (uint32_t)s->g.size);
    for (int k = 0; k < s->d; k++) {
        s->shape[k] = s->g.M[k];
        ink_record_add_f64s(out, axis_names[k], s->g.z[k], s->g.M[k]);
    }
    ink_record_add_i64s(out, "shape", s->shape, (uint32_t)s->d);
    ink_record_add_i64(out, "n", (int64_t)s->n);
    return 0;
}

static int ecdf_query(void *state, const struct ink_record *req, const struct ink_emitter *em,
                      struct ink_err *err)
{
    struct ecdf *s = state;
    struct ink_record out;
    ink_record_derive(&out, req);
    int rc;
    if (ink_record_op_is(req, "cdf")) {
        rc = query_cdf(s, req, &out, err);
    } else if (ink_record_op_is(req, "quantile")) {
        rc = query_quantile(s, req, &out, err);
    } else if (ink_record_op_is(req, "density")) {
        rc = query_density(s, req, &out, err);
    } else {
        return ink_err_set(err, INK_ENOTSUP,
                           "ecdf: unknown op '%.*s' (cdf, quantile, density; keys with key_by)",
                           (int)req->op_len, req->op ? req->op : "");
    }
    if (rc) return rc;
    return ink_emit(em, &out);
}

/* ---- save / load ---- */

static size_t kde_len(const struct ecdf *s)
{
    return ((size_t)1 << s->d) * s->g.size;
}

/* The state map; run twice by ink_pack_map_of (count, then pack). */
static void save_fields(const void *state, struct ink_map *m)
{
    const struct ecdf *s = state;
    ink_map_i64(m, "version", STATE_VERSION);
    ink_map_i64(m, "mode", s->mode);
    ink_map_i64(m, "d", s->d);
    if (s->publish) {
        int64_t pk[4] = {(int64_t)s->published, s->tag.has_kafka, s->tag.kpart, s->tag.koff};
        ink_map_i64s(m, "publish", pk, 4);
    }
    if (s->mode == INK_ECDF_KLL) {
        const struct ink__kll *q = &s->kll;
        int32_t sizes[INK_KLL_MAX_LEVELS];
        for (uint32_t h = 0; h < q->nlevels; h++)
            sizes[h] = (int32_t)(q->levels[h + 1] - q->levels[h]);
        double mm[2] = {q->min, q->max};
        ink_map_u64(m, "n", s->n);
        ink_map_i64(m, "k", q->k);
        ink_map_u64(m, "kll_n", q->n);
        ink_map_i64(m, "min_k", q->min_k);
        ink_map_f64s(m, "minmax", mm, 2);
        ink_map_i64(m, "sorted", q->l0_sorted);
        ink_map_i32s(m, "levels", sizes, q->nlevels);
        ink_map_f64s(m, "items", q->items + q->levels[0], ink__kll_retained(q));
        ink_map_rng(m, "rng", &q->rng);
        ink_map_u64(m, "bits", q->bits);
        ink_map_i64(m, "nbits", q->nbits);
    } else if (s->mode == INK_ECDF_EXACT) {
        ink_map_u64(m, "cnt", s->cnt);
        ink_map_f64s(m, "pts", s->pts, s->cnt * (size_t)s->d);
        ink_map_f64s(m, "ys", s->ys, s->cnt);
        ink_map_i64s(m, "ts", s->ts, s->cnt);
        ink_map_u64s(m, "seqs", s->seqs, s->cnt);
        ink_map_u64s(m, "keyh", s->keyh, s->cnt);
        ink_map_i32s(m, "flags", (const int32_t *)s->flags, s->cnt);
    } else {
        ink_map_u64(m, "n", s->n);
        ink_map_f64(m, "wout", s->wout);
        ink_map_f64s(m, "T", s->T, s->g.size);
        if (s->mode == INK_ECDF_KDE) {
            ink_map_f64s(m, "kde1", s->kde1, kde_len(s));
            if (s->kdey) ink_map_f64s(m, "kdey", s->kdey, kde_len(s));
        }
    }
}

static int ecdf_save(const void *state, msgpack_packer *pk)
{
    ink_pack_map_of(pk, save_fields, state);
    return 0;
}

static int load_kll(struct ecdf *s, const msgpack_object *o, struct ink_err *err)
{
    struct ink__kll *q = &s->kll;
    int64_t k, min_k, sorted, nbits;
    uint64_t n, kn, bits;
    size_t nl, R;
    double mm[2];
    int32_t sizes[INK_KLL_MAX_LEVELS];
    struct ink_rng rng;
    int rc;
    if ((rc = ink_state_u64(o, "n", &n, err)) || (rc = ink_state_i64(o, "k", &k, err)) ||
        (rc = ink_state_u64(o, "kll_n", &kn, err)) ||
        (rc = ink_state_i64(o, "min_k", &min_k, err)) ||
        (rc = ink_state_f64s(o, "minmax", mm, 2, err)) ||
        (rc = ink_state_i64(o, "sorted", &sorted, err)) ||
        (rc = ink_state_len(o, "levels", 4, &nl, err)) ||
        (rc = ink_state_len(o, "items", 8, &R, err)) || (rc = ink_state_rng(o, "rng", &rng, err)) ||
        (rc = ink_state_u64(o, "bits", &bits, err)) ||
        (rc = ink_state_i64(o, "nbits", &nbits, err)))
        return rc;
    if (k != q->k)
        return ink_err_set(err, INK_ESTATE, "state: k %lld, config says %u", (long long)k, q->k);
    if (nl < 1 || nl > INK_KLL_MAX_LEVELS || nbits < 0 || nbits > 64)
        return ink_err_set(err, INK_ESTATE, "state: corrupt kll header");
    if ((rc = ink_state_i32s(o, "levels", sizes, nl, err))) return rc;
    uint64_t tot = 0, cnt = 0, capn = 0;
    for (size_t h = 0; h < nl; h++) {
        if (sizes[h] < 0) return ink_err_set(err, INK_ESTATE, "state: corrupt kll levels");
        cnt += (uint64_t)sizes[h];
        tot += (uint64_t)sizes[h] << h;
        capn += q->capd[h];
    }
    if (cnt != R || R > capn || tot != kn)
        return ink_err_set(err, INK_ESTATE, "state: kll levels do not add up to n");
    uint32_t dst = q->cap - (uint32_t)R;
    if ((rc = ink_state_f64s(o, "items", q->items + dst, R, err))) return rc;
    q->nlevels = (uint32_t)nl;
    q->base = q->cap - (uint32_t)capn;
    q->levels[0] = dst;
    for (size_t h = 0; h < nl; h++) q->levels[h + 1] = q->levels[h] + (uint32_t)sizes[h];
    q->n = kn;
    q->min_k = (uint32_t)min_k;
    q->min = mm[0];
    q->max = mm[1];
    q->l0_sorted = sorted != 0;
    q->rng = rng;
    q->bits = bits;
    q->nbits = (uint32_t)nbits;
    ink__kll_touch(q); /* a view must not trust what it saw of the old items */
    s->n = n;
    return 0;
}

static int load_exact(struct ecdf *s, const msgpack_object *o, struct ink_err *err)
{
    uint64_t cnt;
    int rc = ink_state_u64(o, "cnt", &cnt, err);
    if (rc) return rc;
    if (cnt >= s->W)
        return ink_err_set(err, INK_ESTATE, "state: window count %llu too large",
                           (unsigned long long)cnt);
    if ((rc = ink_state_need_len(o, "pts", 8, cnt * s->d, err)) ||
        (rc = ink_state_need_len(o, "ys", 8, cnt, err)) ||
        (rc = ink_state_need_len(o, "ts", 8, cnt, err)) ||
        (rc = ink_state_need_len(o, "seqs", 8, cnt, err)) ||
        (rc = ink_state_need_len(o, "keyh", 8, cnt, err)) ||
        (rc = ink_state_need_len(o, "flags", 4, cnt, err)))
        return rc;
    ink_state_f64s(o, "pts", s->pts, cnt * s->d, err);
    ink_state_f64s(o, "ys", s->ys, cnt, err);
    ink_state_i64s(o, "ts", s->ts, cnt, err);
    ink_state_u64s(o, "seqs", s->seqs, cnt, err);
    ink_state_u64s(o, "keyh", s->keyh, cnt, err);
    ink_state_i32s(o, "flags", (int32_t *)s->flags, cnt, err);
    s->cnt = cnt;
    return 0;
}

static int load_grid(struct ecdf *s, const msgpack_object *o, struct ink_err *err)
{
    uint64_t n;
    double wout;
    int rc;
    if ((rc = ink_state_u64(o, "n", &n, err)) || (rc = ink_state_f64(o, "wout", &wout, err)) ||
        (rc = ink_state_need_len(o, "T", 8, s->g.size, err)))
        return rc;
    if (s->mode == INK_ECDF_KDE) {
        if ((rc = ink_state_need_len(o, "kde1", 8, kde_len(s), err))) return rc;
        if (s->kdey && (rc = ink_state_need_len(o, "kdey", 8, kde_len(s), err))) return rc;
        ink_state_f64s(o, "kde1", s->kde1, kde_len(s), err);
        if (s->kdey) ink_state_f64s(o, "kdey", s->kdey, kde_len(s), err);
    }
    ink_state_f64s(o, "T", s->T, s->g.size, err);
    s->n = n;
    s->wout = wout;
    return 0;
}

static int ecdf_load(void *state, const msgpack_object *o, struct ink_err *err)
{
    struct ecdf *s = state;
    int64_t version, mode, d;
    int rc;
    if ((rc = ink_state_i64(o, "version", &version, err)) ||
        (rc = ink_state_i64(o, "mode", &mode, err)) || (rc = ink_state_i64(o, "d", &d, err)))
        return rc;
    if (version != STATE_VERSION)
        return ink_err_set(err, INK_ESTATE, "state: version %lld, this build reads %d",
                           (long long)version, STATE_VERSION);
    if (mode != s->mode || d != s->d)
        return ink_err_set(err, INK_ESTATE, "state: mode %lld dim %lld, config says %s dim %d",
                           (long long)mode, (long long)d, mode_names[s->mode], s->d);
    if (s->publish) { /* absent in a state saved without publish: nothing published yet */
        int64_t pk[4] = {0, 0, 0, 0};
        const msgpack_object *po;
        if (ink_state_get(o, "publish", &po, NULL) == 0 &&
            (rc = ink_state_i64s(o, "publish", pk, 4, err)))
            return rc;
        s->published = (uint64_t)pk[0];
        s->tag.has_kafka = pk[1] != 0;
        s->tag.kpart = pk[2];
        s->tag.koff = pk[3];
    }
    switch (s->mode) {
    case INK_ECDF_KLL:
        return load_kll(s, o, err);
    case INK_ECDF_EXACT:
        return load_exact(s, o, err);
    default:
        return load_grid(s, o, err);
    }
}

static double gauge_kll_items(const void *state)
{
    const struct ecdf *s = state;
    return s->mode == INK_ECDF_KLL ? ink__kll_retained(&s->kll) : NAN;
}

/* op keys: the records a key's state counted (exact: its pending window). */
static uint64_t ecdf_records(const void *state)
{
    const struct ecdf *s = state;
    return s->mode == INK_ECDF_EXACT ? s->cnt : s->n;
}

static const struct ink_op_gauge ecdf_gauges[] = {
    {"kll_items", "items the KLL sketch retains (ecdf mode kll)", gauge_kll_items},
    {0},
};

const struct ink_op_vtable ink_op_ecdf = {
    .name = "ecdf",
    .kind = INK_NODE_OPERATOR,
    .summary = "online empirical CDF: KLL sketch, d-dim Fenwick grid, exact windows (D&C), "
               "Laplacian KDE",
    .params = ecdf_params,
    .conf_size = sizeof(struct ink_ecdf_conf),
    .state_size = sizeof(struct ecdf),
    .check = ecdf_check,
    .mem_bound = ecdf_mem_bound,
    .scratch_bytes = ecdf_scratch_bytes,
    .init = ecdf_init,
    .process = ecdf_process,
    .query = ecdf_query,
    .flush = ecdf_flush,
    .save = ecdf_save,
    .load = ecdf_load,
    .fini = ecdf_fini,
    .gauges = ecdf_gauges,
    .records = ecdf_records,
};
