/* Fenwick trees on a grid (docs/algorithms.md 4.4) and decayed orthant trees for
 * the online Laplacian KDE (docs/algorithms.md 5.4). Every operation is a product
 * over axes of Fenwick paths: each axis contributes a list of (flat offset,
 * factor) pairs and the nested loop visits all combinations. */
#include "fenwick.h"

#include <math.h>
#include <stdbool.h>

/* One axis' Fenwick path: at most floor(log2 M) + 1 entries. */
struct path {
    int n;
    size_t off[24];
    double f[24];
};

void ink__grid_setup(struct ink__grid *g)
{
    size_t s = 1;
    for (int k = 0; k < g->d; k++) {
        g->stride[k] = s;
        s *= g->M[k];
    }
    g->size = s;
}

uint32_t ink__grid_cell(const struct ink__grid *g, int k, double x)
{
    const double *z = g->z[k];
    uint32_t lo = 0, hi = g->M[k];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Nested loops over the axes' paths, axis 0 innermost (contiguous runs of
 * the flat array); d >= 1. */
static void add_rec(double *T, const struct path *p, int k, size_t off, double w)
{
    if (k == 0) {
        for (int i = 0; i < p[0].n; i++) T[off + p[0].off[i]] += w * p[0].f[i];
        return;
    }
    for (int i = 0; i < p[k].n; i++) add_rec(T, p, k - 1, off + p[k].off[i], w * p[k].f[i]);
}

static double sum_rec(const double *T, const struct path *p, int k, size_t off)
{
    double s = 0;
    if (k == 0) {
        for (int i = 0; i < p[0].n; i++) s += p[0].f[i] * T[off + p[0].off[i]];
        return s;
    }
    for (int i = 0; i < p[k].n; i++) s += p[k].f[i] * sum_rec(T, p, k - 1, off + p[k].off[i]);
    return s;
}

/* Upward path from cell c (0-based) and downward path from node q. */
static void path_up(struct path *p, uint32_t M, size_t stride, uint32_t c)
{
    p->n = 0;
    for (uint32_t i = c + 1; i <= M; i += i & -i) {
        p->off[p->n] = (size_t)(i - 1) * stride;
        p->f[p->n++] = 1.0;
    }
}

static void path_down(struct path *p, size_t stride, uint32_t q)
{
    p->n = 0;
    for (uint32_t i = q + 1; i > 0; i -= i & -i) {
        p->off[p->n] = (size_t)(i - 1) * stride;
        p->f[p->n++] = 1.0;
    }
}

void ink__fenwick_add(const struct ink__grid *g, double *T, const uint32_t *c, double w)
{
    struct path p[INK_GRID_MAX_DIM];
    for (int k = 0; k < g->d; k++) path_up(&p[k], g->M[k], g->stride[k], c[k]);
    add_rec(T, p, g->d - 1, 0, w);
}

double ink__fenwick_prefix(const struct ink__grid *g, const double *T, const uint32_t *j)
{
    struct path p[INK_GRID_MAX_DIM];
    for (int k = 0; k < g->d; k++) path_down(&p[k], g->stride[k], j[k]);
    return sum_rec(T, p, g->d - 1, 0);
}

/* Node u_i of axis k in the orientation of the orthant: forward u_i = z_i;
 * reversed u_i = -z_{M-1-i}, so points above a node become "below" it. */
static double unode(const struct ink__grid *g, int k, int rev, uint32_t i)
{
    return rev ? -g->z[k][g->M[k] - 1 - i] : g->z[k][i];
}

/* Decayed update path (docs/algorithms.md 5.4): T[j] += v exp(-(u_j - u_c)/h). */
static void path_up_decay(struct path *p, const struct ink__grid *g, int k, int rev, uint32_t c,
                          double v, double hinv)
{
    path_up(p, g->M[k], g->stride[k], c);
    double uc = unode(g, k, rev, c);
    for (int i = 0; i < p->n; i++) {
        uint32_t j = (uint32_t)(p->off[i] / g->stride[k]);
        p->f[i] = v * exp(-(unode(g, k, rev, j) - uc) * hinv);
    }
}

void ink__kde_add(const struct ink__grid *g, const double *hinv, double *trees, const double *x,
                  double y)
{
    /* pa[k][0]: forward path (x <= node); pa[k][1]: reversed (x > node). */
    struct path pa[INK_GRID_MAX_DIM][2];
    int have[INK_GRID_MAX_DIM][2];
    for (int k = 0; k < g->d; k++) {
        uint32_t M = g->M[k], c = ink__grid_cell(g, k, x[k]);
        const double *z = g->z[k];
        have[k][0] = c < M;
        have[k][1] = c >= 1;
        /* Reference the point to its cell's node: exp(-(z_c - x)/h) <= 1. */
        if (have[k][0])
            path_up_decay(&pa[k][0], g, k, 0, c, exp(-(z[c] - x[k]) * hinv[k]), hinv[k]);
        if (have[k][1])
            path_up_decay(&pa[k][1], g, k, 1, M - c, exp(-(x[k] - z[c - 1]) * hinv[k]), hinv[k]);
    }
    struct path p[INK_GRID_MAX_DIM];
    for (unsigned s = 0; s < (1u << g->d); s++) {
        int ok = 1;
        for (int k = 0; k < g->d && ok; k++) {
            int rev = (s >> k) & 1;
            ok = have[k][rev];
            if (ok) p[k] = pa[k][rev];
        }
        if (ok) add_rec(trees + (size_t)s * g->size, p, g->d - 1, 0, y);
    }
}

double ink__kde_sum(const struct ink__grid *g, const double *hinv, const double *trees,
                    const uint32_t *j)
{
    struct path pa[INK_GRID_MAX_DIM][2];
    for (int k = 0; k < g->d; k++) {
        for (int rev = 0; rev < 2; rev++) {
            uint32_t q = rev ? g->M[k] - 1 - j[k] : j[k];
            struct path *p = &pa[k][rev];
            path_down(p, g->stride[k], q);
            double uq = unode(g, k, rev, q);
            /* s += T[i] exp(-(u_q - u_i)/h): the tree node is referenced to u_i. */
            for (int i = 0; i < p->n; i++) {
                uint32_t ii = (uint32_t)(p->off[i] / g->stride[k]);
                p->f[i] = exp(-(uq - unode(g, k, rev, ii)) * hinv[k]);
            }
        }
    }
    struct path p[INK_GRID_MAX_DIM];
    double sum = 0;
    for (unsigned s = 0; s < (1u << g->d); s++) {
        for (int k = 0; k < g->d; k++) p[k] = pa[k][(s >> k) & 1];
        sum += sum_rec(trees + (size_t)s * g->size, p, g->d - 1, 0);
    }
    return sum;
}

void ink__fenwick_bracket(const struct ink__grid *g, const double *T, double wout, uint64_t n,
                          const double *x, double *flo, double *fhi)
{
    uint32_t lo[INK_GRID_MAX_DIM], hi[INK_GRID_MAX_DIM];
    bool has_lo = true, over = false;
    for (int k = 0; k < g->d; k++) {
        uint32_t c = ink__grid_cell(g, k, x[k]);
        if (c < g->M[k] && g->z[k][c] == x[k])
            lo[k] = c;
        else if (c == 0)
            has_lo = false;
        else
            lo[k] = c - 1;
        if (c == g->M[k]) over = true, c = g->M[k] - 1;
        hi[k] = c;
    }
    double a = has_lo ? ink__fenwick_prefix(g, T, lo) : 0;
    double b = ink__fenwick_prefix(g, T, hi) + (over ? wout : 0);
    *flo = n ? a / (double)n : 0.0;
    *fhi = n ? b / (double)n : 0.0;
}
