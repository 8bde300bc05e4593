/* The GP / Nystrom posterior of bkb (docs/algorithms.md 2.4-2.8): dictionary
 * resampling, the projection embedding, the Cholesky factor of G, and
 * mu / var / beta for every arm. Plain arrays in, arrays out: no records,
 * no operator bookkeeping, so it can be tested against an exact GP.
 *
 * The caller provides every array (bkb.c carves them from the operator's
 * arena) and the observations: cnt (pulls per arm), ysum (reward sums) and
 * pulled[0..npulled) (the arms with cnt > 0). */
#ifndef INK_BKB_GP_H
#define INK_BKB_GP_H

#include <lapacke.h>
#include <stdbool.h>
#include <stdint.h>

#include "../engine/err.h"
#include "../engine/rng.h"
#include "kernel.h"

struct bkb_gp {
    struct ink_kernel kern;
    double lambda; /* regularizer: prior variance k(a, a) / lambda */
    double qbar;   /* resampling oversampling (> 0) */
    int A, d;      /* arms, dimension */
    int mmax, blk; /* dictionary cap (<= A), rows per block (<= A) */
    bool storeZ;   /* Z and Kc are stored (A x mmax each) */

    /* per arm */
    double *X;               /* A x d, row per arm */
    double *kdiag, *zn;      /* k(a, a) (filled by the caller), ||z(a)||^2 */
    double *mu, *var;        /* posterior mean and variance (2.4) */
    double *ysum, *cand_key; /* reward sums; resampling keys (scratch) */
    int64_t *cnt;            /* pulls */
    int32_t *cand, *pulled;  /* scratch index list; arms with cnt > 0 */
    int64_t npulled;
    double *Z, *Kc;   /* when storeZ: embedding, K(arms, D) columns (ld A) */
    int32_t *slot_of; /* when storeZ: column of Kc holding arm i, or -1 */

    /* dictionary and posterior, O(mmax^2) */
    int32_t *D;
    int m, mr; /* |D|, rank of the embedding */
    double *XD, *KDD, *U, *ev, *B, *L, *Lh, *w, *bvec, *r1;
    double *work;
    lapack_int *iwork, *isuppz; /* liwork, 2 mmax */
    lapack_int lwork, liwork;   /* from bkb_gp_lwork(mmax) */

    /* blocks */
    double *Xb, *Kb, *Zb, *kwork, *yb; /* d blk, blk mmax, blk mmax, max(blk, mmax) + mmax, blk */

    int64_t cap_hits, empty_fixes; /* resamples above mmax; empty draws fixed */
};

/* Confidence width parameters (2.4 / 2.6). */
struct bkb_beta_conf {
    double F, noise_var, delta;
    double fixed; /* > 0: beta itself */
    bool batch;   /* BBKB form, with ratio */
    double ratio;
};

/* Workspace sizes of the eigensolver for an n x n dictionary. */
void bkb_gp_lwork(int n, lapack_int *lwork, lapack_int *liwork);

/* New dictionary: each pulled arm enters with p = min(1, qbar cnt var)
 * (var from before), capped at mmax (2.4, 2.8). scratch: A int32 values. */
void bkb_gp_resample(struct bkb_gp *g, struct ink_rng *rng, int32_t *scratch);
/* The embedding B of the dictionary D[0..m), then Z when stored (2.5 steps 4-5). */
int bkb_gp_embed(struct bkb_gp *g, struct ink_err *err);
/* L = chol(G), w, then mu and var of every arm (2.5 steps 6-8). With m = 0:
 * the prior, mu = 0, var = kdiag / lambda. */
int bkb_gp_posterior(struct bkb_gp *g, struct ink_err *err);
/* beta after t rewards (logdet: BBKB's sum of log(1 + var)). */
double bkb_gp_beta(const struct bkb_gp *g, const struct bkb_beta_conf *b, int64_t t, double logdet);
/* Lh += h z_j z_j^T (rank-one Cholesky update). */
void bkb_gp_hallucinate(struct bkb_gp *g, int32_t j, double h);
/* var_out[idx[r]] for nb <= blk arms, with the factor Lf (L or Lh). */
void bkb_gp_var_rows(struct bkb_gp *g, const double *Lf, const int32_t *idx, int nb,
                     double *var_out);
/* After D, m, mr, B and the observations are restored: XD, Kc, slot_of and Z. */
void bkb_gp_restore(struct bkb_gp *g);

#endif
