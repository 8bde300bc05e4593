/* bkb's GP / Nystrom posterior (docs/algorithms.md 2.4-2.8): see bkb_gp.h.
 * Split from bkb.c (the operator) so the maths can be tested on arrays. */
#include "bkb_gp.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

void bkb_gp_lwork(int n, lapack_int *lwork, lapack_int *liwork)
{
    double a = 0, wq = 0, ev = 0, z = 0;
    lapack_int iq = 0, isz[2], nf = 0;
    lapack_int info = LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'A', 'L', n, &a, n, 0, 0, 0, 0,
                                          0.0, &nf, &ev, &z, n, isz, &wq, -1, &iq, -1);
    *lwork = info == 0 ? (lapack_int)wq : 26 * n;
    *liwork = info == 0 ? iq : 10 * n;
    if (*lwork < 26 * n) *lwork = 26 * n;
    if (*liwork < 10 * n) *liwork = 10 * n;
}

/* ---- embedding ----------------------------------------------------------------------- */

/* z rows of arms i0 .. i0+nb-1; returns the block and its leading dimension. */
static const double *embed_range(struct bkb_gp *g, int i0, int nb, int *ld)
{
    if (g->storeZ) {
        *ld = g->A;
        return g->Z + i0;
    }
    *ld = g->blk;
    if (g->mr == 0) return g->Zb;
    ink_kernel_block(&g->kern, g->X + (size_t)i0 * g->d, nb, g->XD, g->m, g->Kb, g->blk, g->kwork);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, nb, g->mr, g->m, 1.0, g->Kb, g->blk,
                g->B, g->mmax, 0.0, g->Zb, g->blk);
    return g->Zb;
}

/* z rows of the listed arms into Zb (ld blk), nb <= blk. */
static void embed_rows(struct bkb_gp *g, const int32_t *idx, int nb)
{
    if (g->mr == 0) return;
    if (g->storeZ) {
        for (int k = 0; k < g->mr; k++)
            for (int r = 0; r < nb; r++)
                g->Zb[r + (size_t)k * g->blk] = g->Z[idx[r] + (size_t)k * g->A];
        return;
    }
    for (int r = 0; r < nb; r++)
        memcpy(g->Xb + (size_t)r * g->d, g->X + (size_t)idx[r] * g->d, g->d * sizeof(double));
    ink_kernel_block(&g->kern, g->Xb, nb, g->XD, g->m, g->Kb, g->blk, g->kwork);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, nb, g->mr, g->m, 1.0, g->Kb, g->blk,
                g->B, g->mmax, 0.0, g->Zb, g->blk);
}

/* Stores Z = K_{A,D} B when it fits (docs/algorithms.md 2.5 step 5). */
static void fill_Z(struct bkb_gp *g)
{
    if (!g->storeZ || g->mr == 0) return;
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, g->A, g->mr, g->m, 1.0, g->Kc, g->A,
                g->B, g->mmax, 0.0, g->Z, g->A);
}

/* Kc(:, j) = k(arms, arm a), in blocks of rows (kwork holds blk + 1 values). */
static void kernel_column(struct bkb_gp *g, int j, int32_t a)
{
    for (int i0 = 0; i0 < g->A; i0 += g->blk) {
        int nb = g->A - i0 < g->blk ? g->A - i0 : g->blk;
        ink_kernel_block(&g->kern, g->X + (size_t)i0 * g->d, nb, g->X + (size_t)a * g->d, 1,
                         g->Kc + (size_t)j * g->A + i0, g->A, g->kwork);
    }
}

/* The new dictionary cand[0..nc) becomes D, ordered by Kc column: arms that
 * stay keep their column, new arms fill the freed ones (then the end), and the
 * columns are compacted to 0..nc-1. Without Kc, D is cand as drawn. */
static void set_dictionary(struct bkb_gp *g, int nc, int32_t *keep)
{
    if (!g->storeZ) {
        memcpy(g->D, g->cand, (size_t)nc * sizeof(int32_t));
        g->m = nc;
        return;
    }
    int mold = g->m, top = mold, nfree = 0;
    for (int j = 0; j < nc; j++) keep[g->cand[j]] = -1;
    lapack_int *freed = g->isuppz; /* scratch: 2 mmax entries, unused between eigensolves */
    for (int j = 0; j < mold; j++) {
        int32_t a = g->D[j];
        if (keep[a] == -1) continue;
        g->slot_of[a] = -1;
        g->D[j] = -1;
        freed[nfree++] = j;
    }
    int nf = 0;
    for (int j = 0; j < nc; j++) {
        int32_t a = g->cand[j];
        keep[a] = 0;
        if (g->slot_of[a] >= 0) continue;
        int slot = nf < nfree ? freed[nf++] : top++;
        g->slot_of[a] = slot;
        g->D[slot] = a;
        kernel_column(g, slot, a);
    }
    /* compact: move the last used columns into the holes below nc */
    int hole = 0;
    for (int j = nc; j < top; j++) {
        if (g->D[j] < 0) continue;
        while (g->D[hole] >= 0) hole++;
        int32_t a = g->D[j];
        memcpy(g->Kc + (size_t)hole * g->A, g->Kc + (size_t)j * g->A,
               (size_t)g->A * sizeof(double));
        g->D[hole] = a;
        g->slot_of[a] = hole;
        g->D[j] = -1;
    }
    g->m = nc;
}

static void gather_dict(struct bkb_gp *g)
{
    for (int j = 0; j < g->m; j++)
        memcpy(g->XD + (size_t)j * g->d, g->X + (size_t)g->D[j] * g->d, g->d * sizeof(double));
}

/* B = U_thin Lam_thin^{-1/2} from eigen(K_DD), eigenvalues <= lam_max m eps dropped
 * (docs/algorithms.md 2.4, 2.5 step 4). */
static int embedding(struct bkb_gp *g, struct ink_err *err)
{
    int m = g->m, mm = g->mmax;
    g->mr = 0;
    if (m == 0) return 0;
    gather_dict(g);
    ink_kernel_block(&g->kern, g->XD, m, g->XD, m, g->KDD, mm, g->kwork);
    for (int j = 0; j < m; j++) g->KDD[j + (size_t)j * mm] = g->kdiag[g->D[j]];
    lapack_int nf = 0;
    lapack_int info =
        LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'A', 'L', m, g->KDD, mm, 0, 0, 0, 0, 0.0, &nf,
                            g->ev, g->U, mm, g->isuppz, g->work, g->lwork, g->iwork, g->liwork);
    if (info != 0) return ink_err_set(err, INK_ENUMERIC, "dsyevr failed (%d)", (int)info);
    double lmax = g->ev[m - 1];
    if (!(lmax > 0)) return 0;
    double thr = lmax * m * DBL_EPSILON;
    int k0 = 0;
    while (k0 < m && !(g->ev[k0] > thr)) k0++;
    g->mr = m - k0;
    for (int j = 0; j < g->mr; j++) {
        double sc = 1.0 / sqrt(g->ev[k0 + j]);
        const double *u = g->U + (size_t)(k0 + j) * mm;
        double *b = g->B + (size_t)j * mm;
        for (int i = 0; i < m; i++) b[i] = u[i] * sc;
    }
    return 0;
}

/* ---- resampling (docs/algorithms.md 2.4, 2.8) --------------------------------------------- */

/* Min-heap on cand_key[0..n) with cand alongside. */
static void heap_down(double *key, int32_t *idx, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, sm = i;
        if (l < n && key[l] < key[sm]) sm = l;
        if (r < n && key[r] < key[sm]) sm = r;
        if (sm == i) return;
        double tk = key[i];
        key[i] = key[sm];
        key[sm] = tk;
        int32_t ti = idx[i];
        idx[i] = idx[sm];
        idx[sm] = ti;
        i = sm;
    }
}

/* Each pulled arm enters D with p = min(1, qbar c_i var_i^old), var from
 * before this update; above m_max keep m_max by Efraimidis-Spirakis keys
 * log(u)/p (= log u^{1/p}). */
void bkb_gp_resample(struct bkb_gp *g, struct ink_rng *rng, int32_t *scratch)
{
    int nc = 0, ibest = -1;
    double pbest = -1;
    for (int i = 0; i < g->A; i++) {
        if (g->cnt[i] == 0) continue;
        double p = g->qbar * (double)g->cnt[i] * g->var[i];
        if (!(p < 1)) p = 1;
        if (!(p > 0)) p = 0;
        double u = ink_rng_uniform(rng);
        if (p > pbest) {
            pbest = p;
            ibest = i;
        }
        if (u < p) {
            double u2 = ink_rng_uniform(rng);
            g->cand[nc] = i;
            g->cand_key[nc] = log(u2 > 0 ? u2 : DBL_MIN) / p;
            nc++;
        }
    }
    if (nc == 0 && ibest >= 0) { /* the reference asserts non-empty; keep the likeliest arm */
        g->cand[nc] = ibest;
        g->cand_key[nc] = 0;
        nc = 1;
        g->empty_fixes++;
    }
    if (nc > g->mmax) {
        int k = g->mmax;
        for (int i = k / 2 - 1; i >= 0; i--) heap_down(g->cand_key, g->cand, k, i);
        for (int i = k; i < nc; i++) {
            if (g->cand_key[i] > g->cand_key[0]) {
                g->cand_key[0] = g->cand_key[i];
                g->cand[0] = g->cand[i];
                heap_down(g->cand_key, g->cand, k, 0);
            }
        }
        nc = k;
        g->cap_hits++;
    }
    set_dictionary(g, nc, scratch);
}

/* ---- posterior ----------------------------------------------------------------------- */

/* var = max(0, kdiag - zn)/lambda + ||V row||^2 for a block V = Zr L^{-T} (in Zb). */
static void block_var(struct bkb_gp *g, const double *Lf, int i0, const int32_t *idx, int nb,
                      double *var_out)
{
    int mr = g->mr, ld = g->blk;
    if (mr > 0)
        cblas_dtrsm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, mr, 1.0,
                    Lf, g->mmax, g->Zb, ld);
    double *q = g->yb; /* column by column: the block is column-major */
    for (int r = 0; r < nb; r++) q[r] = 0;
    for (int k = 0; k < mr; k++) {
        const double *col = g->Zb + (size_t)k * ld;
        for (int r = 0; r < nb; r++) q[r] += col[r] * col[r];
    }
    for (int r = 0; r < nb; r++) {
        int i = idx ? idx[r] : i0 + r;
        double res = g->kdiag[i] - g->zn[i];
        var_out[i] = (res > 0 ? res : 0) / g->lambda + q[r];
    }
}

double bkb_gp_beta(const struct bkb_gp *g, const struct bkb_beta_conf *b, int64_t t, double logdet)
{
    if (b->fixed > 0) return b->fixed;
    double base = sqrt(g->lambda) * b->F, l1d = log(1 / b->delta);
    if (b->batch) return base + sqrt(b->noise_var * (b->ratio * logdet + l1d));
    double sum = 0;
    for (int64_t p = 0; p < g->npulled; p++) {
        int i = g->pulled[p];
        sum += (double)g->cnt[i] * g->var[i];
    }
    /* log t with t >= 2 (docs/algorithms.md 2.7: log 1 = 0 drops the information term) */
    double lt = log(t < 2 ? 2.0 : (double)t);
    return base + sqrt(b->noise_var * (sum * lt + l1d));
}

/* G = sum_i c_i z_i z_i^T + lambda I, L = chol(G), w = G^{-1} sum_i z_i ysum_i,
 * then mu, var for every arm (docs/algorithms.md 2.5 steps 6-8). */
int bkb_gp_posterior(struct bkb_gp *g, struct ink_err *err)
{
    int mr = g->mr, mm = g->mmax;
    if (mr > 0) {
        for (int k = 0; k < mr; k++) {
            memset(g->L + (size_t)k * mm, 0, (size_t)mr * sizeof(double));
            g->bvec[k] = 0;
        }
        for (int64_t p0 = 0; p0 < g->npulled; p0 += g->blk) {
            int nb = (int)(g->npulled - p0 < g->blk ? g->npulled - p0 : g->blk);
            const int32_t *idx = g->pulled + p0;
            embed_rows(g, idx, nb);
            for (int r = 0; r < nb; r++) g->yb[r] = g->ysum[idx[r]];
            cblas_dgemv(CblasColMajor, CblasTrans, nb, mr, 1.0, g->Zb, g->blk, g->yb, 1, 1.0,
                        g->bvec, 1);
            for (int k = 0; k < mr; k++)
                for (int r = 0; r < nb; r++)
                    g->Zb[r + (size_t)k * g->blk] *= sqrt((double)g->cnt[idx[r]]);
            cblas_dsyrk(CblasColMajor, CblasLower, CblasTrans, mr, nb, 1.0, g->Zb, g->blk, 1.0,
                        g->L, mm);
        }
        for (int k = 0; k < mr; k++) g->L[k + (size_t)k * mm] += g->lambda;
        lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', mr, g->L, mm);
        if (info != 0)
            return ink_err_set(err, INK_ENUMERIC, "Cholesky of G failed (%d)", (int)info);
        memcpy(g->w, g->bvec, (size_t)mr * sizeof(double));
        LAPACKE_dpotrs_work(LAPACK_COL_MAJOR, 'L', mr, 1, g->L, mm, g->w, mm);
    }
    for (int i0 = 0; i0 < g->A; i0 += g->blk) {
        int nb = g->A - i0 < g->blk ? g->A - i0 : g->blk, ld;
        const double *Zr = embed_range(g, i0, nb, &ld);
        double *zn = g->zn + i0, *mu = g->mu + i0;
        for (int r = 0; r < nb; r++) zn[r] = mu[r] = 0;
        for (int k = 0; k < mr; k++) {
            const double *zc = Zr + (size_t)k * ld;
            double wk = g->w[k];
            for (int r = 0; r < nb; r++) {
                zn[r] += zc[r] * zc[r];
                mu[r] += zc[r] * wk;
            }
        }
        if (Zr != g->Zb)
            for (int k = 0; k < mr; k++)
                memcpy(g->Zb + (size_t)k * g->blk, Zr + (size_t)k * ld, nb * sizeof(double));
        block_var(g, g->L, i0, NULL, nb, g->var);
    }
    return 0;
}

/* L L^T + x x^T, lower factor in place (Givens form); x is destroyed. */
static void chol_update(double *Lf, int ld, int n, double *x)
{
    for (int k = 0; k < n; k++) {
        double lkk = Lf[k + (size_t)k * ld];
        double r = hypot(lkk, x[k]);
        double c = r / lkk, sn = x[k] / lkk;
        Lf[k + (size_t)k * ld] = r;
        double *col = Lf + (size_t)k * ld;
        for (int i = k + 1; i < n; i++) {
            col[i] = (col[i] + sn * x[i]) / c;
            x[i] = c * x[i] - sn * col[i];
        }
    }
}

int bkb_gp_embed(struct bkb_gp *g, struct ink_err *err)
{
    int rc = embedding(g, err);
    if (rc) return rc;
    fill_Z(g);
    return 0;
}

void bkb_gp_hallucinate(struct bkb_gp *g, int32_t j, double h)
{
    if (g->mr == 0) return;
    embed_rows(g, &j, 1);
    double sh = sqrt(h);
    for (int k = 0; k < g->mr; k++) g->r1[k] = sh * g->Zb[(size_t)k * g->blk];
    chol_update(g->Lh, g->mmax, g->mr, g->r1);
}

void bkb_gp_var_rows(struct bkb_gp *g, const double *Lf, const int32_t *idx, int nb,
                     double *var_out)
{
    embed_rows(g, idx, nb);
    block_var(g, Lf, 0, idx, nb, var_out);
}

void bkb_gp_restore(struct bkb_gp *g)
{
    gather_dict(g);
    if (g->storeZ) { /* Kc holds the columns of D in D's order, computed as at run time */
        for (int i = 0; i < g->A; i++) g->slot_of[i] = -1;
        for (int j = 0; j < g->m; j++) {
            g->slot_of[g->D[j]] = j;
            kernel_column(g, j, g->D[j]);
        }
    }
    fill_Z(g);
}
