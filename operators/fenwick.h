/* d-dimensional Fenwick trees on a fixed rectilinear grid (docs/algorithms.md 4.4)
 * and the decayed per-orthant trees of the online product-Laplacian KDE
 * (docs/algorithms.md 5.4). Trees are flat column-major arrays of prod M_k
 * doubles (axis 0 fastest) owned by the caller; nothing here allocates. */
#ifndef INK_FENWICK_H
#define INK_FENWICK_H

#include <stddef.h>
#include <stdint.h>

#define INK_GRID_MAX_DIM   8
#define INK_GRID_MAX_NODES (1 << 20) /* per axis: a Fenwick path has <= 21 entries */

/* The grid: sorted nodes per axis (strictly increasing, borrowed). */
struct ink__grid {
    int d;
    uint32_t M[INK_GRID_MAX_DIM];
    size_t stride[INK_GRID_MAX_DIM];
    size_t size;                       /* prod M_k */
    const double *z[INK_GRID_MAX_DIM]; /* nodes of axis k, M[k] values */
};

/* Fills M/stride/size from the node pointers and counts already set. */
void ink__grid_setup(struct ink__grid *g);

/* Cell of a coordinate: smallest j with x <= z[j]; M when x is above every node. */
uint32_t ink__grid_cell(const struct ink__grid *g, int k, double x);

/* Plain tree of cell sums. add: w at the cell vector c (every c_k < M_k). */
void ink__fenwick_add(const struct ink__grid *g, double *T, const uint32_t *c, double w);
/* Sum of the weights of the cells <= node j componentwise, i.e. of every point
 * with x <= z_j (points below the first node sit in cell 0). */
double ink__fenwick_prefix(const struct ink__grid *g, const double *T, const uint32_t *j);
/* Bracket of F at x (docs/algorithms.md 4.4): F_lo at the nearest node below x on
 * every axis, F_hi at the nearest node above; wout is the weight above the last
 * node of some axis (not in T), n the records counted (0: both 0). */
void ink__fenwick_bracket(const struct ink__grid *g, const double *T, double wout, uint64_t n,
                          const double *x, double *flo, double *fhi);

/* Decayed trees for the Laplacian KDE: one per orthant s in {+1,-1}^d (bit k
 * of the orthant index set = axis k reversed). hinv[k] = 1 / h_k.
 * kde_add adds y exp(-sum_k |z_k - x_k| / h_k) to every node's kernel sum, in
 * O(2^d prod log M_k), every exponent <= 0. trees: 2^d * g->size doubles. */
void ink__kde_add(const struct ink__grid *g, const double *hinv, double *trees, const double *x,
                  double y);
/* sum_i y_i exp(-sum_k |z_jk - x_ik| / h_k) at node j. */
double ink__kde_sum(const struct ink__grid *g, const double *hinv, const double *trees,
                    const uint32_t *j);

#endif
