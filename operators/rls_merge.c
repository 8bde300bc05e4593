/* rls_sketch partials and the DISQUEAK merge (Calandriello, Lazaric, Valko,
 * AISTATS 2017; docs/algorithms.md 1.10, docs/rls_sketch.md#publish-and-merge).
 *
 * The merge folds the held partials in order: the running dictionary and
 * the next partial's are concatenated (each atom keeps its p and q), K is
 * extended by the cross block, every atom is re-estimated against the union
 * (1.5 steps 2-6, at the largest gamma_eff of the partials; Cholesky form,
 * eigen when it fails),
 * thinned with p = min(new, old), q ~ Binomial(q, p_new / p_old), compacted,
 * and gamma_eff doubled while the union exceeds max_dict (1.7 a). The RNG is
 * seeded afresh for each rebuild, so the same partials in the same order give
 * the same merged sketch (and a restored merge answers bit for bit).
 *
 * KRR: each partial carries H_i = sum z_i z_i^T and g_i = sum y z_i in the
 * coordinates of its own basis B_i (z_i(x) = R_i^-T k_Bi(x)). The merged
 * basis B is built from the merged dictionary as a sketch builds its own;
 * each partial's data, projected on span B_i, are mapped to B by
 * T_i = R^-T K_B,Bi R_i^-1 (exact when span B_i lies in span B, else the
 * projection of docs/algorithms.md 5.1's eviction), H = sum T_i H_i T_i^T,
 * g = sum T_i g_i. */
#include "rls_merge.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <string.h>

#include "partial.h"

#define P_FLOOR   1e-12 /* as rls_sketch.c: keeps s^2 = q/(qbar p) finite */
#define BASIS_TOL 1e-10 /* as rls_sketch.c: an atom adds a KRR coordinate above this */
#define MAX_D     (1 << 20)
#define MAX_M     16384

/* ------------------------------------------------------------ the bytes */

static size_t fixed_bytes(int d, bool l1)
{
    return 16 + 8 + 16 + 4 + (l1 ? 8 * (size_t)d : 0) + 48;
}

size_t ink__rls_partial_bytes(int d, int m, bool krr)
{
    size_t b = 5 + 8 + fixed_bytes(d, true) + (size_t)m * (8 * (size_t)d + 20);
    if (krr) b += 20 + (size_t)m * (4 + 8) + 8 * ((size_t)m * (m + 1) / 2);
    return b;
}

static uint8_t *put_u32(uint8_t *o, uint32_t v)
{
    return ink__put(o, &v, 4);
}

static uint8_t *put_f64(uint8_t *o, double v)
{
    return ink__put(o, &v, 8);
}

size_t ink__rls_partial_put(uint8_t *out, const struct ink__rls_pub *v)
{
    uint8_t *o = ink__partial_begin(out, INK_PARTIAL_RLS);
    const struct ink_kernel *k = v->kern;
    uint32_t flags = (v->ink_mode ? INK_RLS_PART_INK : 0) | (v->nb >= 0 ? INK_RLS_PART_KRR : 0);
    uint32_t nh = k->type == INK_K_LAPLACIAN_L1 ? (uint32_t)v->d : 0;
    o = put_u32(o, (uint32_t)v->d);
    o = put_u32(o, (uint32_t)v->m);
    o = put_u32(o, (uint32_t)v->qbar);
    o = put_u32(o, flags);
    o = put_u32(o, (uint32_t)k->type);
    o = put_u32(o, (uint32_t)k->degree);
    o = put_f64(o, k->sigma);
    o = put_f64(o, k->c);
    o = put_u32(o, nh);
    o = ink__put(o, k->h, 8 * (size_t)nh);
    o = put_f64(o, v->gamma);
    o = put_f64(o, v->eps);
    o = put_f64(o, v->c_est);
    o = put_f64(o, v->gamma_eff);
    o = put_f64(o, v->dhat);
    o = ink__put(o, &v->n, 8);
    o = ink__put(o, v->X, 8 * (size_t)v->m * v->d);
    o = ink__put(o, v->id, 8 * (size_t)v->m);
    o = ink__put(o, v->p, 8 * (size_t)v->m);
    for (int j = 0; j < v->m; j++) o = put_u32(o, (uint32_t)v->q[j]);
    if (v->nb >= 0) {
        o = put_f64(o, v->mu);
        o = ink__put(o, &v->nobs, 8);
        o = put_u32(o, (uint32_t)v->nb);
        for (int j = 0; j < v->nb; j++) o = put_u32(o, (uint32_t)v->bpos[j]);
        for (int j = 0; j < v->nb; j++)
            o = ink__put(o, v->H + j + (size_t)j * v->ldh, 8 * (size_t)(v->nb - j));
        o = ink__put(o, v->g, 8 * (size_t)v->nb);
    }
    return ink__partial_end(out, o);
}

int ink__rls_partial_parse(const uint8_t *body, size_t len, struct ink__rls_part *o,
                           struct ink_err *err)
{
    struct ink__cur c = {body, body + len, false};
    memset(o, 0, sizeof *o);
    o->d = ink__take_u32(&c);
    o->m = ink__take_u32(&c);
    o->qbar = ink__take_u32(&c);
    o->flags = ink__take_u32(&c);
    o->ktype = ink__take_u32(&c);
    o->kdegree = ink__take_u32(&c);
    o->ksigma = ink__take_f64(&c);
    o->kc = ink__take_f64(&c);
    o->nh = ink__take_u32(&c);
    if (c.bad || o->d < 1 || o->d > MAX_D || o->m > MAX_M || o->qbar < 1 || o->flags > 3 ||
        (o->nh != 0 && o->nh != o->d))
        return ink_err_set(err, INK_EINVAL, "partial: corrupt rls header");
    o->kh = ink__take(&c, 8 * (size_t)o->nh);
    o->gamma = ink__take_f64(&c);
    o->eps = ink__take_f64(&c);
    o->c_est = ink__take_f64(&c);
    o->gamma_eff = ink__take_f64(&c);
    o->dhat = ink__take_f64(&c);
    o->n = ink__take_u64(&c);
    size_t m = o->m;
    o->X = ink__take(&c, 8 * m * o->d);
    o->id = ink__take(&c, 8 * m);
    o->p = ink__take(&c, 8 * m);
    o->q = ink__take(&c, 4 * m);
    if (!c.bad && (o->flags & INK_RLS_PART_KRR)) {
        o->mu = ink__take_f64(&c);
        o->nobs = ink__take_u64(&c);
        o->nb = ink__take_u32(&c);
        if (o->nb > o->m) c.bad = true;
        o->bpos = ink__take(&c, 4 * (size_t)o->nb);
        o->H = ink__take(&c, 8 * ((size_t)o->nb * (o->nb + 1) / 2));
        o->g = ink__take(&c, 8 * (size_t)o->nb);
    }
    if (c.bad || c.p != c.end)
        return ink_err_set(err, INK_EINVAL, "partial: rls %s",
                           c.bad ? "truncated" : "trailing bytes");
    if (!(o->gamma > 0) || !(o->gamma_eff >= o->gamma) || !isfinite(o->gamma_eff) ||
        !(o->c_est > 0 && o->c_est <= 1))
        return ink_err_set(err, INK_EINVAL, "partial: rls gamma, gamma_eff or est_scale corrupt");
    for (size_t j = 0; j < m; j++) {
        double p = ink__partial_f64(o->p, j);
        uint32_t q = ink__partial_u32(o->q, j);
        if (!(p > 0 && p <= 1) || q < 1 || q > o->qbar)
            return ink_err_set(err, INK_EINVAL, "partial: rls atom %zu has p or q out of range", j);
    }
    for (size_t i = 0; i < m * o->d; i++)
        if (!isfinite(ink__partial_f64(o->X, i)))
            return ink_err_set(err, INK_EINVAL, "partial: rls atom point not finite");
    for (uint32_t k = 0; k < o->nb; k++)
        if (ink__partial_u32(o->bpos, k) >= o->m ||
            (k > 0 && ink__partial_u32(o->bpos, k) <= ink__partial_u32(o->bpos, k - 1)))
            return ink_err_set(err, INK_EINVAL, "partial: rls basis position out of range");
    return 0;
}

/* ------------------------------------------------------------ the merge */

static void dsyevr_query(int n, int *lwork, int *liwork)
{
    double a = 0, w = 0, z = 0, wq = 0;
    lapack_int nf = 0, isuppz[2] = {0, 0}, iwq = 0;
    lapack_int info = LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'A', 'L', n, &a, n, 0, 0, 0, 0,
                                          0.0, &nf, &w, &z, n, isuppz, &wq, -1, &iwq, -1);
    *lwork = info == 0 && wq >= 26.0 * n ? (int)wq : 26 * n;
    *liwork = info == 0 && iwq >= 10 * n ? (int)iwq : 10 * n;
}

void ink__rlsm_layout(struct ink__rlsm *s, const struct ink__rlsm_conf *c, struct ink_carve *cv)
{
    size_t cap = 2 * (size_t)c->max_dict, d = (size_t)c->d, mx = (size_t)c->max_dict;
    size_t mat = cap * cap * 8, vec = cap * 8;
    int lwork, liwork;
    dsyevr_query((int)cap, &lwork, &liwork);
    s->c = *c;
    s->cap = (int)cap;
    s->lwork = lwork;
    s->liwork = liwork;
    s->X = ink_carve_take(cv, d * vec);
    s->p = ink_carve_take(cv, vec);
    s->s = ink_carve_take(cv, vec);
    s->q = ink_carve_take(cv, cap * 4);
    s->keep = ink_carve_take(cv, cap * 4);
    s->K = ink_carve_take(cv, mat);
    s->A = ink_carve_take(cv, mat);
    s->U = ink_carve_take(cv, mat); /* eigenvectors; KRR scratch afterwards */
    s->w = ink_carve_take(cv, vec);
    s->tau = ink_carve_take(cv, vec);
    s->ev_work = ink_carve_take(cv, (size_t)lwork * 8);
    s->isuppz = ink_carve_take(cv, 2 * cap * 4);
    s->ev_iwork = ink_carve_take(cv, (size_t)liwork * 4);
    s->kx = ink_carve_take(cv, vec);
    s->u = ink_carve_take(cv, vec);
    s->kwork = ink_carve_take(cv, 2 * vec + 16);
    if (c->predict) {
        s->bpos = ink_carve_take(cv, mx * 4);
        s->R = ink_carve_take(cv, mx * mx * 8);
        s->H = ink_carve_take(cv, mx * mx * 8); /* H, then its Cholesky factor Lh */
        s->Lh = s->H;
        s->tmp = ink_carve_take(cv, 2 * d * mx * 8); /* basis points: merged, then a partial's */
        s->g = ink_carve_take(cv, mx * 8);
        s->z = ink_carve_take(cv, mx * 8);
        s->v = ink_carve_take(cv, mx * 8);
        s->h = ink_carve_take(cv, mx * 8);
        /* Ri, Hi, T and T Hi each take a quarter of U (cap^2 = 4 max_dict^2) */
        s->Ri = s->U;
        s->T = s->U + 2 * mx * mx;
    }
}

static bool same_kernel(const struct ink_kernel *k, const struct ink__rls_part *pt)
{
    if ((int)pt->ktype != k->type) return false;
    switch (k->type) {
    case INK_K_LAPLACIAN_L1:
        for (uint32_t i = 0; i < pt->nh; i++)
            if (ink__partial_f64(pt->kh, i) != k->h[i]) return false;
        return pt->nh == (uint32_t)k->d;
    case INK_K_LINEAR:
        return pt->kc == k->c;
    case INK_K_POLYNOMIAL:
        return pt->kc == k->c && (int)pt->kdegree == k->degree;
    default:
        return pt->ksigma == k->sigma;
    }
}

static const char *const ktypes[] = {"gaussian", "laplacian", "laplacian_l1", "matern32",
                                     "matern52", "linear",    "polynomial"};

int ink__rlsm_admit(const struct ink__rlsm *s, const struct ink__rls_part *pt,
                    const struct ink__rls_part *ref, struct ink_err *err)
{
    const struct ink__rlsm_conf *c = &s->c;
    if ((int)pt->d != c->d)
        return ink_err_set(err, INK_EINVAL, "partial: rls dim %u, this merge has dim %d", pt->d,
                           c->d);
    if (!same_kernel(&c->kern, pt))
        return ink_err_set(err, INK_EINVAL,
                           "partial: rls kernel %s (sigma %g, c %g, degree %u) differs from this "
                           "merge's %s (DISQUEAK merges need the same kernel)",
                           pt->ktype < 7 ? ktypes[pt->ktype] : "?", pt->ksigma, pt->kc, pt->kdegree,
                           ktypes[c->kern.type]);
    if (pt->gamma != c->gamma)
        return ink_err_set(err, INK_EINVAL,
                           "partial: rls gamma %g, this merge has gamma %g (DISQUEAK merges need "
                           "the same gamma)",
                           pt->gamma, c->gamma);
    if (pt->eps != c->eps)
        return ink_err_set(err, INK_EINVAL, "partial: rls eps %g, this merge has eps %g", pt->eps,
                           c->eps);
    if ((int)pt->qbar != c->qbar)
        return ink_err_set(err, INK_EINVAL, "partial: rls qbar %u, this merge has qbar %d",
                           pt->qbar, c->qbar);
    if ((int)pt->m > c->max_dict)
        return ink_err_set(err, INK_EINVAL,
                           "partial: rls dictionary of %u atoms, this merge's max_dict is %d "
                           "(raise it to the publishers' max_dict)",
                           pt->m, c->max_dict);
    if (c->predict && !(pt->flags & INK_RLS_PART_KRR))
        return ink_err_set(err, INK_EINVAL,
                           "partial: rls without KRR statistics, this merge has predict: true "
                           "(publish from an rls_sketch with predict: true)");
    if (ref && (pt->c_est != ref->c_est ||
                (pt->flags & INK_RLS_PART_INK) != (ref->flags & INK_RLS_PART_INK)))
        return ink_err_set(err, INK_EINVAL,
                           "partial: rls est_scale %g / mode %s, the merge holds est_scale %g / "
                           "mode %s",
                           pt->c_est, pt->flags & INK_RLS_PART_INK ? "ink" : "squeak", ref->c_est,
                           ref->flags & INK_RLS_PART_INK ? "ink" : "squeak");
    if (c->predict && ref && pt->mu != ref->mu)
        return ink_err_set(err, INK_EINVAL, "partial: rls mu %g, the merge holds mu %g", pt->mu,
                           ref->mu);
    return 0;
}

static void set_weights(struct ink__rlsm *s)
{
    for (int j = 0; j < s->m; j++) s->s[j] = sqrt(s->q[j] / (s->c.qbar * s->p[j]));
}

/* The partial's atoms after the current ones; K extended (kept symmetric). */
static void append_part(struct ink__rlsm *s, const struct ink__rls_part *pt)
{
    int m0 = s->m, mi = (int)pt->m, m = m0 + mi, d = s->c.d;
    size_t cap = (size_t)s->cap;
    memcpy(s->X + (size_t)m0 * d, pt->X, 8 * (size_t)mi * d);
    for (int j = 0; j < mi; j++) {
        s->p[m0 + j] = ink__partial_f64(pt->p, (size_t)j);
        s->q[m0 + j] = (int32_t)ink__partial_u32(pt->q, (size_t)j);
    }
    s->m = m;
    if (mi == 0) return;
    ink_kernel_block(&s->c.kern, s->X, m, s->X + (size_t)m0 * d, mi, s->K + (size_t)m0 * cap,
                     s->cap, s->kwork);
    ink_kernel_diag(&s->c.kern, s->X + (size_t)m0 * d, mi, s->kx);
    for (int j = m0; j < m; j++) {
        s->K[j + j * cap] = s->kx[j - m0];
        for (int i = 0; i < j; i++) s->K[j + i * cap] = s->K[i + j * cap];
    }
}

/* 1.5 steps 2-6 over the union in the Cholesky form (docs/algorithms.md 1.7's
 * faster alternative, the form rls_sketch's default path reads its scores
 * from): S K S + gamma I = L L^T, r_j = 1 - gamma |column j of L^-1|^2,
 * ~2 m^3 / 3 flops against dsyevr's ~10 m^3. Nonzero when the factorisation
 * fails (the caller falls back to the eigen form). */
static int estimate_chol(struct ink__rlsm *s)
{
    int m = s->m;
    size_t cap = (size_t)s->cap;
    double gam = s->gamma_eff, rsum = 0;
    for (int j = 0; j < m; j++) {
        for (int i = j; i < m; i++) s->A[i + j * cap] = s->s[i] * s->K[i + j * cap] * s->s[j];
        s->A[j + j * cap] += gam;
    }
    if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', m, s->A, s->cap) != 0) return INK_ENUMERIC;
    if (LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', m, s->A, s->cap) != 0) return INK_ENUMERIC;
    for (int j = 0; j < m; j++) {
        const double *col = s->A + j + j * cap;
        double r = 1.0 - gam * cblas_ddot(m - j, col, 1, col, 1);
        r = r > 0 ? r : 0;
        rsum += r;
        s->tau[j] = s->c_est * r / (s->s[j] * s->s[j]);
    }
    s->dhat = s->c_est * rsum;
    return 0;
}

/* 1.5 steps 2-6 over the union: tau_j, dhat; the eigen form (no
 * cancellation) when the Cholesky form fails. */
static int estimate(struct ink__rlsm *s)
{
    int m = s->m;
    size_t cap = (size_t)s->cap;
    double gam = s->gamma_eff;
    set_weights(s);
    s->dhat = 0;
    if (m == 0) return 0;
    if (estimate_chol(s) == 0) return 0;
    for (int j = 0; j < m; j++)
        for (int i = j; i < m; i++) s->A[i + j * cap] = s->s[i] * s->K[i + j * cap] * s->s[j];
    lapack_int nf = 0;
    lapack_int info = LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'A', 'L', m, s->A, s->cap, 0, 0, 0,
                                          0, 0.0, &nf, s->w, s->U, s->cap, s->isuppz, s->ev_work,
                                          s->lwork, s->ev_iwork, s->liwork);
    if (info != 0 || nf != m) return INK_ENUMERIC;
    for (int j = 0; j < m; j++) s->tau[j] = 0;
    double fsum = 0;
    for (int i = 0; i < m; i++) {
        double lam = s->w[i] > 0 ? s->w[i] : 0, f = lam / (lam + gam);
        fsum += f;
        const double *ui = s->U + (size_t)i * cap;
        for (int j = 0; j < m; j++) s->tau[j] += ui[j] * ui[j] * f;
    }
    for (int j = 0; j < m; j++) s->tau[j] *= s->c_est / (s->s[j] * s->s[j]);
    s->dhat = s->c_est * fsum;
    return 0;
}

static int binomial(struct ink_rng *rng, int n, double r)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += ink_rng_uniform(rng) < r;
    return k;
}

/* 1.5 steps 7-8: p = min(new, old), q thinned, members with q = 0 dropped
 * (X, p, q and K, both triangles: destinations never pass their sources). */
static void thin(struct ink__rlsm *s)
{
    int m = s->m, d = s->c.d, k = 0;
    size_t cap = (size_t)s->cap;
    double dh = s->dhat > 0 ? s->dhat : 1.0;
    for (int j = 0; j < m; j++) {
        double target = s->ink_mode ? s->tau[j] / dh : s->tau[j];
        double pn = fmin(fmax(target, P_FLOOR), s->p[j]);
        s->q[j] = binomial(&s->rng, s->q[j], pn / s->p[j]);
        s->p[j] = pn;
        if (s->q[j] > 0) s->keep[k++] = j;
    }
    for (int a = 0; a < k; a++) {
        int j = s->keep[a];
        if (j == a) continue;
        memmove(s->X + (size_t)a * d, s->X + (size_t)j * d, (size_t)d * 8);
        s->p[a] = s->p[j];
        s->q[a] = s->q[j];
        s->tau[a] = s->tau[j];
    }
    for (int b = 0; b < k; b++)
        for (int a = 0; a < k; a++)
            s->K[a + (size_t)b * cap] = s->K[s->keep[a] + (size_t)s->keep[b] * cap];
    s->m = k;
}

/* A = chol(S K S + gamma_eff I), lower, for the queries. */
static int factor(struct ink__rlsm *s)
{
    int m = s->m;
    size_t cap = (size_t)s->cap;
    set_weights(s);
    for (int j = 0; j < m; j++) {
        for (int i = j; i < m; i++) s->A[i + j * cap] = s->s[i] * s->K[i + j * cap] * s->s[j];
        s->A[j + j * cap] += s->gamma_eff;
    }
    if (m == 0) return 0;
    return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', m, s->A, s->cap) == 0 ? 0 : INK_ENUMERIC;
}

/* Re-estimate, thin, and escalate gamma_eff while over max_dict (1.7 a). */
static int reduce(struct ink__rlsm *s, bool shrink)
{
    for (int guard = 0; guard < 200; guard++) {
        if (estimate(s)) return INK_ENUMERIC;
        if (shrink) thin(s);
        if (s->m <= s->c.max_dict && factor(s) == 0) return 0;
        s->gamma_eff *= 2;
        s->escalations++;
        shrink = true;
    }
    return INK_ENUMERIC;
}

/* The merged basis: dictionary atoms that add a direction (as rls_sketch's
 * krr_append); R upper with R^T R = K_BB, leading dimension max_dict. */
static void build_basis(struct ink__rlsm *s)
{
    size_t cap = (size_t)s->cap, mx = (size_t)s->c.max_dict;
    s->nb = 0;
    for (int j = 0; j < s->m; j++) {
        int nb = s->nb;
        for (int k = 0; k < nb; k++) s->z[k] = s->K[s->bpos[k] + j * cap];
        if (nb > 0)
            cblas_dtrsv(CblasColMajor, CblasUpper, CblasTrans, CblasNonUnit, nb, s->R, (int)mx,
                        s->z, 1);
        double kxx = s->K[j + j * cap], rho2 = kxx - (nb ? cblas_ddot(nb, s->z, 1, s->z, 1) : 0);
        if (!(rho2 > BASIS_TOL * kxx)) continue;
        double *rc = s->R + (size_t)nb * mx;
        memcpy(rc, s->z, (size_t)nb * 8);
        rc[nb] = sqrt(rho2);
        s->bpos[nb] = j;
        s->nb = nb + 1;
    }
}

/* H += T_i H_i T_i^T, g += T_i g_i for one partial (see the top). */
static int add_krr(struct ink__rlsm *s, const struct ink__rls_part *pt)
{
    int nb = s->nb, ni = (int)pt->nb, d = s->c.d, mx = s->c.max_dict;
    if (ni == 0 || nb == 0) return 0;
    size_t m2 = (size_t)mx * mx;
    double *Ri = s->Ri, *Hi = s->U + m2, *T = s->T, *W = s->U + 3 * m2;
    double *XB = s->tmp, *Xi = s->tmp + (size_t)d * mx;
    for (int k = 0; k < nb; k++)
        memcpy(XB + (size_t)k * d, s->X + (size_t)s->bpos[k] * d, (size_t)d * 8);
    for (int k = 0; k < ni; k++)
        memcpy(Xi + (size_t)k * d, pt->X + 8 * (size_t)ink__partial_u32(pt->bpos, (size_t)k) * d,
               (size_t)d * 8);
    /* R_i: the partial's basis factor, recomputed (upper, R_i^T R_i = K_BiBi) */
    ink_kernel_block(&s->c.kern, Xi, ni, Xi, ni, Ri, mx, s->kwork);
    ink_kernel_diag(&s->c.kern, Xi, ni, s->kx);
    for (int k = 0; k < ni; k++) Ri[k + (size_t)k * mx] = s->kx[k];
    if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'U', ni, Ri, mx) != 0) return INK_ENUMERIC;
    /* T = R^-T K_B,Bi R_i^-1 */
    ink_kernel_block(&s->c.kern, XB, nb, Xi, ni, T, mx, s->kwork);
    cblas_dtrsm(CblasColMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, nb, ni, 1.0, s->R,
                mx, T, mx);
    cblas_dtrsm(CblasColMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, nb, ni, 1.0, Ri,
                mx, T, mx);
    /* H_i from its packed lower triangle */
    size_t o = 0;
    for (int j = 0; j < ni; j++)
        for (int i = j; i < ni; i++, o++) Hi[i + (size_t)j * mx] = ink__partial_f64(pt->H, o);
    for (int k = 0; k < ni; k++) s->kx[k] = ink__partial_f64(pt->g, (size_t)k);
    cblas_dsymm(CblasColMajor, CblasRight, CblasLower, nb, ni, 1.0, Hi, mx, T, mx, 0.0, W, mx);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, nb, nb, ni, 1.0, W, mx, T, mx, 1.0, s->H,
                mx);
    cblas_dgemv(CblasColMajor, CblasNoTrans, nb, ni, 1.0, T, mx, s->kx, 1, 1.0, s->g, 1);
    return 0;
}

static int build_krr(struct ink__rlsm *s, const struct ink__rls_part *parts, int n)
{
    int mx = s->c.max_dict;
    s->mu = parts[0].mu;
    build_basis(s);
    int nb = s->nb;
    for (int j = 0; j < nb; j++) memset(s->H + (size_t)j * mx, 0, (size_t)nb * 8);
    memset(s->g, 0, (size_t)nb * 8);
    for (int i = 0; i < n; i++)
        if (add_krr(s, &parts[i])) return INK_ENUMERIC;
    for (int j = 0; j < nb; j++) s->Lh[j + (size_t)j * mx] += s->mu;
    if (nb > 0 && LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', nb, s->Lh, mx) != 0)
        return INK_ENUMERIC;
    memcpy(s->h, s->g, (size_t)nb * 8);
    if (nb > 0)
        cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, nb, s->Lh, mx, s->h, 1);
    s->krr = true;
    return 0;
}

int ink__rlsm_rebuild(struct ink__rlsm *s, const struct ink__rls_part *parts, int n, uint64_t seed,
                      struct ink_err *err)
{
    ink_rng_seed(&s->rng, seed);
    s->m = 0;
    s->nb = 0;
    s->n = 0;
    s->dhat = 0;
    s->escalations = 0;
    s->krr = false;
    s->gamma_eff = s->c.gamma;
    s->c_est = n > 0 ? parts[0].c_est : 1 - s->c.eps;
    s->ink_mode = n > 0 && (parts[0].flags & INK_RLS_PART_INK);
    for (int i = 0; i < n; i++) {
        if (parts[i].gamma_eff > s->gamma_eff) s->gamma_eff = parts[i].gamma_eff;
        s->n += parts[i].n;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        append_part(s, &parts[i]);
        /* one partial: scored against itself, not thinned; then each union */
        if (i > 0 || n == 1) rc = reduce(s, i > 0);
    }
    if (rc == 0 && s->c.predict && n > 0) rc = build_krr(s, parts, n);
    if (rc) {
        s->m = 0;
        s->krr = false;
        return ink_err_set(err, INK_ENUMERIC, "merge: rls eigen/Cholesky failure");
    }
    return 0;
}

/* kx and k(x, x); returns the residual k(x,x) - a^T (S K S + gamma I)^-1 a. */
static double residual(struct ink__rlsm *s, const double *x, double *kxx)
{
    int m = s->m;
    ink_kernel_diag(&s->c.kern, x, 1, kxx);
    if (m == 0) return *kxx > 0 ? *kxx : 0;
    ink_kernel_block(&s->c.kern, s->X, m, x, 1, s->kx, m, s->kwork);
    for (int j = 0; j < m; j++) s->u[j] = s->s[j] * s->kx[j];
    cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, m, s->A, s->cap, s->u, 1);
    double r = *kxx - cblas_ddot(m, s->u, 1, s->u, 1);
    return r > 0 ? r : 0;
}

void ink__rlsm_tau(struct ink__rlsm *s, const double *x, double *tau, double *tau_new)
{
    double kxx, res = residual(s, x, &kxx);
    *tau = s->c_est * res / s->gamma_eff;
    *tau_new = s->c_est * res / (res + s->gamma_eff);
}

void ink__rlsm_predict(struct ink__rlsm *s, const double *x, double *yhat, double *var)
{
    int nb = s->nb, mx = s->c.max_dict;
    double kxx;
    residual(s, x, &kxx); /* fills kx */
    if (nb == 0) {
        *yhat = 0;
        *var = kxx / s->mu;
        return;
    }
    for (int k = 0; k < nb; k++) s->z[k] = s->kx[s->bpos[k]];
    cblas_dtrsv(CblasColMajor, CblasUpper, CblasTrans, CblasNonUnit, nb, s->R, mx, s->z, 1);
    double zz = cblas_ddot(nb, s->z, 1, s->z, 1);
    memcpy(s->v, s->z, (size_t)nb * 8);
    cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, nb, s->Lh, mx, s->v, 1);
    double res = kxx - zz;
    *var = (res > 0 ? res : 0) / s->mu + cblas_ddot(nb, s->v, 1, s->v, 1);
    *yhat = cblas_ddot(nb, s->v, 1, s->h, 1);
}
