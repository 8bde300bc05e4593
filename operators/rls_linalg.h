/* rls_sketch's per-arrival O(m^2) passes, written out so that each reads
 * the big matrix once and the compiler vectorises them (docs/rls_sketch.md,
 * "Where the time goes"). Every result is defined by the source order of
 * its operations (reductions run in 8 fixed lanes, combined in a fixed
 * tree; no FMA contraction, see CMakeLists.txt), so the bits do not depend
 * on the vector width the compiler or the CPU picks (AVX2 or baseline, chosen
 * at run time). Matrices are column-major with leading dimension ld. */
#ifndef INK_RLS_LINALG_H
#define INK_RLS_LINALG_H

/* sum_i a_i b_i in the fixed order above. */
double ink_rls_dot(const double *a, const double *b, int n);

/* y = A x, A symmetric n x n of which the lower triangle is read. */
void ink_rls_symv_lower(int n, const double *A, int ld, const double *x, double *y);

/* v <- L^-1 v, L lower triangular (column-oriented forward substitution). */
void ink_rls_trsv_lower(int n, const double *L, int ld, double *v);

/* z <- R^-T z, R upper triangular (dot form, one column of R per step). */
void ink_rls_trsv_upper_t(int n, const double *R, int ld, double *z);

/* The KRR step of 5.1 in one pass over the lower factor F = C^T of
 * H + mu I (n x n): returns (F^-1 z) . h with the F and h given (the
 * prediction made before learning), and leaves F, h updated by the
 * rotations of H += z z^T that carry (h, y) along (the QR update of least
 * squares). z is consumed (it becomes the rotated remainder); acc is n
 * doubles of scratch. With z_last appended by a new basis coordinate (F's
 * last row zero but its diagonal, h_last = 0) the prediction is that of the
 * basis without it. */
double ink_rls_krr_step(int n, double *F, int ld, double *z, double *acc, double *h, double y);

/* G <- G - Z A^T on the lower triangle of the leading n x n block (A = Z M
 * with M symmetric, so Z A^T = Z M Z^T), Z and A n x k with leading
 * dimension ldz, then compacted to the rows and columns listed in keep (nk
 * increasing indices; NULL: all n kept). One read and one write of the
 * triangle. */
void ink_rls_lowrank_compact(int n, double *G, int ld, const double *Z, const double *A, int ldz,
                             int k, const int *keep, int nk);

/* y = (G - Z A^T) x, and G <- G - Z A^T (lower triangle) with the same bits
 * as ink_rls_lowrank_compact: a pending update applied in the pass that
 * reads G for the product. */
void ink_rls_symv_lower_pending(int n, double *G, int ld, const double *Z, const double *A, int ldz,
                                int k, const double *x, double *y);

/* Vector r = X + r ld (r < nv) gets the plane rotations k = k0[r] .. kend-1
 * in order, rotation k acting on (x_k, x_{k+1}) as
 * (cs_k x_k + sn_k x_{k+1}, -sn_k x_k + cs_k x_{k+1}); four vectors at a time,
 * each with the same operations as alone. */
void ink_rls_rot_chains(int nv, double *X, int ld, const int *k0, int kend, const double *cs,
                        const double *sn);

/* (x, y) <- (c x + s y, -s x + c y), element-wise. */
void ink_rls_rot_pair(int n, double *x, double *y, double c, double s);

/* Which build of the passes runs: 1 AVX2, 0 the x86-64 baseline (both give the
 * same bits). The default is AVX2 where the CPU has it. Returns -1 (and changes
 * nothing) when `on` is not available. For tests. */
int ink_rls_set_simd(int on);

#endif
