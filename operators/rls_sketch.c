/* rls_sketch: sequential ridge-leverage-score sampling (SQUEAK, or
 * INK-Estimate with `mode: ink`) keeping a weighted Nystrom dictionary whose
 * size follows the effective dimension, with a prequential Nystrom KRR on
 * top (docs/algorithms.md sections 1 and 5.1).
 *
 * Default (batch 0, step_arrival), O(m^2 + m d) per arrival: every member
 * re-scored and re-thinned from an updated inverse G = (K_DD + gamma_eff W)^-1,
 * all of an arrival's changes to G applied as one low-rank update (left
 * pending for the next arrival's product when nothing was evicted), KRR
 * predict and update in one pass; the O(m^2) passes are in rls_linalg.c
 * (docs/rls_sketch.md, "The default path" and "Where the time goes").
 *
 * batch N >= 1, O(m^2) per arrival: the new point's score from a Cholesky
 * factor L of S K_DD S + gamma_eff I kept in step with the dictionary,
 * thinning of the new point, and the KRR prediction and update. Every `batch`
 * arrivals (or when the dictionary overflows max_dict), O(m^3): all members
 * re-estimated from the eigen form and thinned (expand / estimate / shrink,
 * 1.5), the cap enforced by doubling gamma_eff (1.7), L refactored. */
#include "rls_sketch.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/opkit.h"
#include "../engine/rng.h"
#include "../engine/state.h"
#include "partial.h"
#include "rls_linalg.h"
#include "rls_merge.h"

#define STATE_VERSION 2
#define P_FLOOR       1e-12 /* 1.7: keeps s_j^2 = q/(qbar p) finite */
/* 5.1: a dictionary point whose feature lies within this fraction of
 * k(x, x) of the current basis span adds no KRR coordinate (it would make
 * the basis Cholesky factor singular). */
#define BASIS_TOL 1e-10
/* batch 0: an arrival's update to G of at most this many rank-one terms, with
 * no eviction, is left pending and applied by the next arrival's product
 * (one pass over G instead of two; docs/rls_sketch.md). */
#define PEND_MAX 16

static const char *const rls_modes[] = {"squeak", "ink", NULL};
static const char *const rls_rescores[] = {"eigen", "cholesky", NULL};

#define COFF(f) offsetof(struct ink_rls_conf, f)

const struct ink_param ink_rls_params[] = {
    {.name = "kernel",
     .type = INK_P_OBJECT,
     .offset = COFF(kernel),
     .sub = ink_kernel_params,
     .help = "kernel, e.g. {type: gaussian, sigma: 1.0} (default gaussian, sigma 1)"},
    {.name = "dim",
     .type = INK_P_INT,
     .offset = COFF(dim),
     .min = 1,
     .max = 1 << 20,
     .flags = INK_PF_REQUIRED,
     .help = "length of x (memory is sized from it at start)"},
    {.name = "gamma",
     .type = INK_P_DOUBLE,
     .offset = COFF(gamma),
     .def = "1.0",
     .min = 1e-12,
     .max = 1e12,
     .help = "RLS regulariser: larger gives a smaller, coarser dictionary"},
    {.name = "eps",
     .type = INK_P_DOUBLE,
     .offset = COFF(eps),
     .def = "0.5",
     .min = 1e-6,
     .max = 0.999,
     .help = "accuracy; scores are guaranteed in [tau/alpha, tau], alpha = (1+eps)/(1-eps)"},
    {.name = "est_scale",
     .type = INK_P_DOUBLE,
     .offset = COFF(est_scale),
     .def = "0",
     .min = 0,
     .max = 1,
     .help = "scale of the RLS estimator; 0 means 1 - eps (the value the band needs)"},
    {.name = "qbar",
     .type = INK_P_INT,
     .offset = COFF(qbar),
     .def = "8",
     .min = 1,
     .max = 100000,
     .help = "copies per point (oversampling); the total budget in mode ink"},
    {.name = "max_dict",
     .type = INK_P_INT,
     .offset = COFF(max_dict),
     .def = "1024",
     .min = 1,
     .max = 16384,
     .help = "hard cap on the dictionary; reaching it doubles gamma_eff"},
    {.name = "batch",
     .type = INK_P_INT,
     .offset = COFF(batch),
     .def = "0",
     .min = 0,
     .max = 16384,
     .help = "0 (default): every member re-thinned at every arrival, O(m^2) per arrival from an "
             "updated inverse; N >= 1: re-estimate all members from scratch every N arrivals"},
    {.name = "slack",
     .type = INK_P_DOUBLE,
     .offset = COFF(slack),
     .def = "0.1",
     .min = 0,
     .max = 10,
     .help = "batch 0: a member is re-thinned once its estimate falls below p/(1 + slack) "
             "(0: at every decrease, the papers' rule, ~10x slower; docs/rls_sketch.md)"},
    {.name = "mode",
     .type = INK_P_ENUM,
     .offset = COFF(mode),
     .def = "squeak",
     .choices = rls_modes,
     .help = "squeak (unnormalised scores) or ink (scores divided by the d_eff estimate)"},
    {.name = "seed",
     .type = INK_P_INT,
     .offset = COFF(seed),
     .def = "-1",
     .min = -1,
     .max = 9.2e18,
     .help = "RNG seed; -1 derives it from engine.seed and the node name; with key_by each key "
             "gets one derived from it and the key"},
    {.name = "predict",
     .type = INK_P_BOOL,
     .offset = COFF(predict),
     .def = "false",
     .help = "Nystrom kernel ridge regression on y: adds yhat, made before learning from y"},
    {.name = "mu",
     .type = INK_P_DOUBLE,
     .offset = COFF(mu),
     .def = "0.1",
     .min = 1e-12,
     .max = 1e12,
     .help = "KRR regulariser (gamma = 0.1..1 x mu keeps the risk close to exact KRR)"},
    {.name = "shrink",
     .type = INK_P_BOOL,
     .offset = COFF(shrink),
     .def = "true",
     .help = "false keeps every point with p = 1 until max_dict (diagnostic: exact RLS)"},
    {.name = "rescore",
     .type = INK_P_ENUM,
     .offset = COFF(rescore),
     .def = "eigen",
     .choices = rls_rescores,
     .help = "re-estimation of all members: eigen (dsyevr, exact small scores) or cholesky "
             "(~2m^3/3 flops instead of ~10m^3; relative error eps_mach * cond on small scores)"},
    {.name = "publish",
     .type = INK_P_INT,
     .offset = COFF(publish),
     .def = "0",
     .min = 0,
     .max = 1099511627776.0,
     .help = "every this many arrivals a state counts, and at the end of the stream, emit its "
             "dictionary as a partial for a merge node (mode rls); 0 = never"},
    {0},
};

/* One sketch. Matrices are column-major with leading dimension cap. */
struct rls_state {
    struct ink_kernel kern;
    int d, qbar, m_max, b, cap;
    bool normalize, predict, shrink, chol_rescore;
    bool step; /* batch 0: the step-by-step path, L holds G = (K_DD + gamma_eff W)^-1 */
    double gamma, c_est, mu; /* c_est: est_scale of 1.2 */
    double slack;            /* batch 0: re-thin when the estimate < p / (1 + slack) */

    struct ink_rng rng;
    double gamma_eff; /* 1.7: only ever doubled */
    double dhat;      /* d_eff estimate (1.5 step 6), plus arrivals since */
    int64_t t;        /* arrivals so far (the next id) */
    int64_t escalations;
    int64_t reestimations; /* O(m^3) steps run (a throughput diagnostic) */
    int m, since;          /* dictionary size, arrivals since the last re-estimation */
    int64_t nupd;          /* step path: rank-one changes to G since it was last refactored */
    int64_t refreshes;     /* step path: exact refactorisations of G (diagnostic) */
    double yhat;           /* the last arrival's prequential prediction (not state) */
    /* Step path: G's true value is G - Zd Ad^T (lower triangle) while dk > 0;
     * the next pass over G (the residual's product) applies it. */
    double *Zd, *Ad;
    int dk;

    /* Dictionary I_t (1.2): points, ids, p, q, weights s = sqrt(q/(qbar p)). */
    double *X;
    int64_t *id;
    double *p;
    int32_t *q;
    double *s;
    double *K; /* K_DD, lower triangle (the upper one is stale after a compaction) */
    /* batch >= 1: lower Cholesky of S K_DD S + gamma_eff I. batch 0: lower triangle of
     * G = (K_DD + gamma_eff W)^-1, W = diag(1/s_j^2) (docs/rls_sketch.md). Both: dsyevr
     * input while re-estimating. */
    double *L;

    double *U, *w, *tau, *ev_work; /* re-estimation scratch */
    int *isuppz, *ev_iwork;
    int lwork, liwork;
    double *kx, *u, *kwork; /* per-record scratch */
    int64_t *qi;            /* query scratch */

    /* Nystrom KRR (5.1): basis = dictionary members with a new direction;
     * z(x) = R^{-T} k_b(x), K_bb = R^T R; H + mu I = C^T C with C upper,
     * stored transposed (the lower factor C^T, so that the rank-one update
     * runs down columns); g = sum z y; h = C^{-T} g, kept by the same
     * rotations as C, so yhat = (C^{-T} z) . h costs one solve. */
    int nb;
    int64_t nobs;
    int64_t *bid;
    int32_t *bpos; /* dictionary position of each basis point */
    double *R, *C, *g, *z, *v, *h;

    /* publish (docs/rls_sketch.md#publish-and-merge): t at the last partial */
    int64_t publish, published;
    double eps;
    struct ink__partial_tag tag;
    const char *node;
    uint8_t *pbuf;

    void *arena;
};

/* ---------------------------------------------------------------- memory */

static size_t carve(char *base, size_t *off, size_t bytes, void *out)
{
    struct ink_carve c = {base, *off, 64};
    void *p = ink_carve_take(&c, bytes);
    if (base) *(void **)out = p;
    return *off = c.off;
}

static void dsyevr_query(int cap, int *lwork, int *liwork)
{
    double a = 0, w = 0, z = 0, wq = 0;
    lapack_int nf = 0, isuppz[2] = {0, 0}, iwq = 0;
    lapack_int info = LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'A', 'L', cap, &a, cap, 0, 0, 0, 0,
                                          0.0, &nf, &w, &z, cap, isuppz, &wq, -1, &iwq, -1);
    /* Documented minimums when the query fails. */
    *lwork = info == 0 && wq >= 26.0 * cap ? (int)wq : 26 * cap;
    *liwork = info == 0 && iwq >= 10 * cap ? (int)iwq : 10 * cap;
}

/* Lays the buffers out in one arena; with base NULL only sizes it. The same
 * function serves mem_bound and init, so the bound is exact. */
static size_t layout(const struct ink_rls_conf *c, struct rls_state *st, char *base)
{
    /* Re-estimation runs as soon as an arrival overflows max_dict, so one
     * spare slot is all the expand step needs, whatever the batch. */
    size_t cap = (size_t)c->max_dict + 1, d = (size_t)c->dim, off = 0;
    size_t mat = cap * cap * sizeof(double), vec = cap * sizeof(double);
    int lwork, liwork;
    dsyevr_query((int)cap, &lwork, &liwork);
    struct rls_state dummy;
    if (!st) st = &dummy;
    carve(base, &off, d * vec, &st->X);
    carve(base, &off, cap * sizeof(int64_t), &st->id);
    carve(base, &off, vec, &st->p);
    carve(base, &off, cap * sizeof(int32_t), &st->q);
    carve(base, &off, vec, &st->s);
    carve(base, &off, mat, &st->K);
    carve(base, &off, mat, &st->L);
    carve(base, &off, mat, &st->U);
    carve(base, &off, vec, &st->w);
    carve(base, &off, vec, &st->tau);
    carve(base, &off, (size_t)lwork * sizeof(double), &st->ev_work);
    carve(base, &off, 2 * cap * sizeof(int), &st->isuppz);
    carve(base, &off, (size_t)liwork * sizeof(int), &st->ev_iwork);
    carve(base, &off, vec, &st->kx);
    carve(base, &off, vec, &st->u);
    carve(base, &off, vec + sizeof(double), &st->kwork);
    carve(base, &off, cap * sizeof(int64_t), &st->qi);
    if (c->batch == 0) {
        carve(base, &off, PEND_MAX * vec, &st->Zd);
        carve(base, &off, PEND_MAX * vec, &st->Ad);
    }
    if (c->predict) {
        carve(base, &off, cap * sizeof(int64_t), &st->bid);
        carve(base, &off, cap * sizeof(int32_t), &st->bpos);
        carve(base, &off, mat, &st->R);
        carve(base, &off, mat, &st->C);
        carve(base, &off, vec, &st->g);
        carve(base, &off, vec + sizeof(double), &st->z);
        carve(base, &off, vec + sizeof(double), &st->v);
        carve(base, &off, vec + sizeof(double), &st->h);
    }
    if (c->publish > 0)
        carve(base, &off, ink__rls_partial_bytes((int)d, (int)cap, c->predict), &st->pbuf);
    st->lwork = lwork;
    st->liwork = liwork;
    return ink_carve_size(&(struct ink_carve){base, off, 64});
}

static size_t rls_mem_bound(const void *conf)
{
    return layout(conf, NULL, NULL);
}

static int rls_check(const void *conf, struct ink_err *err)
{
    const struct ink_rls_conf *c = conf;
    if (c->dim < 1) return ink_err_set(err, INK_EINVAL, "rls_sketch: dim must be >= 1");
    if (!(c->eps > 0 && c->eps < 1))
        return ink_err_set(err, INK_EINVAL, "rls_sketch: eps must be in (0, 1), got %g", c->eps);
    if (!(c->gamma > 0) || !isfinite(c->gamma))
        return ink_err_set(err, INK_EINVAL, "rls_sketch: gamma must be > 0, got %g", c->gamma);
    if (c->predict && !(c->mu > 0))
        return ink_err_set(err, INK_EINVAL, "rls_sketch: mu must be > 0 with predict");
    if (c->qbar < 1 || c->max_dict < 1)
        return ink_err_set(err, INK_EINVAL, "rls_sketch: qbar and max_dict must be >= 1");
    if (!(c->slack >= 0) || !isfinite(c->slack))
        return ink_err_set(err, INK_EINVAL, "rls_sketch: slack must be >= 0");
    if (c->batch < 0)
        return ink_err_set(err, INK_EINVAL, "rls_sketch: batch must be >= 0 (0: step by step)");
    if (c->est_scale < 0 || c->est_scale > 1)
        return ink_err_set(err, INK_EINVAL, "rls_sketch: est_scale must be in [0, 1]");
    if (c->mode != INK_RLS_SQUEAK && c->mode != INK_RLS_INK)
        return ink_err_set(err, INK_EINVAL, "rls_sketch: unknown mode %d", c->mode);
    struct ink_kernel k;
    return ink_kernel_init(&k, &c->kernel, (int)c->dim, err);
}

static int rls_init(void *state, const void *conf, const struct ink_op_init *ini,
                    struct ink_err *err)
{
    struct rls_state *st = state;
    const struct ink_rls_conf *c = conf;
    int rc = rls_check(conf, err);
    if (rc) return rc;
    ink_kernel_init(&st->kern, &c->kernel, (int)c->dim, err);
    size_t bytes = layout(c, NULL, NULL);
    st->arena = ink_arena_alloc(bytes, 64, "rls_sketch", err);
    if (!st->arena) return INK_ENOMEM;
    layout(c, st, st->arena);
    st->d = (int)c->dim;
    st->qbar = (int)c->qbar;
    st->m_max = (int)c->max_dict;
    st->b = (int)c->batch;
    st->step = c->batch == 0;
    st->slack = c->slack;
    st->cap = st->m_max + 1;
    st->normalize = c->mode == INK_RLS_INK;
    st->predict = c->predict;
    st->shrink = c->shrink;
    st->chol_rescore = c->rescore == INK_RLS_CHOLESKY;
    st->gamma = st->gamma_eff = c->gamma;
    st->c_est = c->est_scale > 0 ? c->est_scale : 1.0 - c->eps;
    st->mu = c->mu;
    st->eps = c->eps;
    st->publish = c->publish;
    st->node = ini && ini->name ? ini->name : "rls_sketch";
    /* The engine's seed: `seed` itself when set, unkeyed; with key_by, one
     * derived from it (or from engine.seed) per key, so keys never share a
     * random stream. A caller without the engine gets c->seed. */
    ink_rng_seed(&st->rng, ini ? ini->seed : (c->seed >= 0 ? (uint64_t)c->seed : 0));
    return 0;
}

static void rls_fini(void *state)
{
    struct rls_state *st = state;
    free(st->arena);
    st->arena = NULL;
}

/* ------------------------------------------------------------ estimation */

static void set_weights(struct rls_state *st)
{
    for (int j = 0; j < st->m; j++) st->s[j] = sqrt(st->q[j] / (st->qbar * st->p[j]));
}

/* Binomial(n, r) as n Bernoulli draws (0.2; n <= qbar is small). */
static int binomial(struct ink_rng *rng, int n, double r)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += ink_rng_uniform(rng) < r;
    return k;
}

/* 1.7's faster alternative: with A_s + gamma I = L L^T (in U), and L^{-1} from
 * dtrtri, [(A_s + gamma I)^{-1}]_jj = |column j of L^{-1}|^2 and
 * r_j = 1 - gamma inv_jj: about 2 m^3 / 3 flops against dsyevr's ~10 m^3, with
 * a relative error of about eps_mach cond(A_s + gamma I) / r_j on small r_j.
 * Returns nonzero when the factorisation fails (the caller falls back). */
static int estimate_cholesky(struct rls_state *st)
{
    int m = st->m, cap = st->cap;
    double *A = st->U, gam = st->gamma_eff;
    for (int j = 0; j < m; j++) {
        for (int i = j; i < m; i++)
            A[i + (size_t)j * cap] = st->s[i] * st->K[i + (size_t)j * cap] * st->s[j];
        A[j + (size_t)j * cap] += gam;
    }
    if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', m, A, cap) != 0) return INK_ENUMERIC;
    if (LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', m, A, cap) != 0) return INK_ENUMERIC;
    double fsum = 0;
    for (int j = 0; j < m; j++) {
        const double *col = A + j + (size_t)j * cap;
        double r = 1.0 - gam * cblas_ddot(m - j, col, 1, col, 1);
        r = r > 0 ? r : 0;
        fsum += r;
        st->tau[j] = st->c_est * r / (st->s[j] * st->s[j]);
    }
    st->dhat = st->c_est * fsum;
    return 0;
}

/* 1.5 steps 3-6: A_s = S K_DD S = U Lam U^T; r_j = sum_i U_ji^2 lam_i/(lam_i+gamma)
 * (eigen form: every term >= 0, no cancellation); tau_j = c_est r_j / s_j^2;
 * dhat = sum_j s_j^2 tau_j. With rescore: cholesky, estimate_cholesky first. */
static int estimate(struct rls_state *st)
{
    int m = st->m, cap = st->cap;
    double *A = st->L, gam = st->gamma_eff;
    if (st->chol_rescore && estimate_cholesky(st) == 0) return 0;
    for (int j = 0; j < m; j++)
        for (int i = j; i < m; i++)
            A[i + (size_t)j * cap] = st->s[i] * st->K[i + (size_t)j * cap] * st->s[j];
    lapack_int nf = 0;
    lapack_int info = LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'A', 'L', m, A, cap, 0, 0, 0, 0,
                                          0.0, &nf, st->w, st->U, cap, st->isuppz, st->ev_work,
                                          st->lwork, st->ev_iwork, st->liwork);
    if (info != 0 || nf != m) return INK_ENUMERIC;
    for (int j = 0; j < m; j++) st->tau[j] = 0;
    double fsum = 0;
    for (int i = 0; i < m; i++) {
        double lam = st->w[i] > 0 ? st->w[i] : 0;
        double f = lam / (lam + gam);
        fsum += f;
        const double *ui = st->U + (size_t)i * cap;
        for (int j = 0; j < m; j++) st->tau[j] += ui[j] * ui[j] * f;
    }
    for (int j = 0; j < m; j++) st->tau[j] *= st->c_est / (st->s[j] * st->s[j]);
    st->dhat = st->c_est * fsum; /* sum_j s_j^2 tau_j = c_est tr(A_s (A_s + gamma I)^-1) */
    return 0;
}

/* Stable compaction to the members with q > 0 (X, id, p, q, tau, K; with
 * with_g also the lower triangle of G). Returns the number kept; keep (in qi)
 * lists their old indices. */
static int compact(struct rls_state *st, bool with_g)
{
    int m = st->m, cap = st->cap, d = st->d, k = 0;
    int32_t *keep = (int32_t *)st->qi; /* old index of each kept member */
    for (int j = 0; j < m; j++)
        if (st->q[j] > 0) keep[k++] = j;
    if (k == m) return k;
    int f = 0; /* members before f stay where they are */
    while (f < k && keep[f] == f) f++;
    for (int a = f; a < k; a++) {
        int j = keep[a];
        memmove(st->X + (size_t)a * d, st->X + (size_t)j * d, (size_t)d * sizeof(double));
        st->id[a] = st->id[j];
        st->p[a] = st->p[j];
        st->q[a] = st->q[j];
        st->tau[a] = st->tau[j];
    }
    /* Lower triangles only (nothing reads the upper ones). Destination
     * indices never exceed source ones, in column-major order; the leading
     * f x f block is in place. */
    for (int b = 0; b < k; b++) {
        double *kd = st->K + (size_t)b * cap, *gd = st->L + (size_t)b * cap;
        const double *ks = st->K + (size_t)keep[b] * cap, *gs = st->L + (size_t)keep[b] * cap;
        for (int a = b < f ? f : b; a < k; a++) kd[a] = ks[keep[a]];
        if (with_g)
            for (int a = b < f ? f : b; a < k; a++) gd[a] = gs[keep[a]];
    }
    st->m = k;
    return k;
}

/* 1.5 steps 7-8: p_new = min(target, p); q ~ Binomial(q, p_new / p); stable
 * compaction of the members with q > 0. */
static void thin_and_compact(struct rls_state *st)
{
    int m = st->m;
    double dh = st->dhat > 0 ? st->dhat : 1.0;
    for (int j = 0; j < m; j++) {
        double target = st->normalize ? st->tau[j] / dh : st->tau[j];
        double pn = fmin(fmax(target, P_FLOOR), st->p[j]);
        st->q[j] = binomial(&st->rng, st->q[j], pn / st->p[j]);
        st->p[j] = pn;
    }
    compact(st, false);
}

/* batch 0: G = (K_DD + gamma_eff W)^-1 from scratch (dpotrf + dpotri, lower
 * triangle), W = diag(1/s_j^2) = diag(qbar p_j / q_j). */
static int refresh_inverse(struct rls_state *st)
{
    int m = st->m, cap = st->cap;
    double *G = st->L;
    st->nupd = 0;
    st->dk = 0;
    if (m == 0) return 0;
    st->refreshes++;
    for (int j = 0; j < m; j++) {
        for (int i = j; i < m; i++) G[i + (size_t)j * cap] = st->K[i + (size_t)j * cap];
        G[j + (size_t)j * cap] += st->gamma_eff / (st->s[j] * st->s[j]);
    }
    if (LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', m, G, cap) != 0) return INK_ENUMERIC;
    if (LAPACKE_dpotri_work(LAPACK_COL_MAJOR, 'L', m, G, cap) != 0) return INK_ENUMERIC;
    return 0;
}

/* L = chol(S K_DD S + gamma_eff I), lower; with batch 0, G instead. */
static int factor(struct rls_state *st)
{
    int m = st->m, cap = st->cap;
    double *L = st->L;
    if (st->step) return refresh_inverse(st);
    for (int j = 0; j < m; j++) {
        for (int i = j; i < m; i++)
            L[i + (size_t)j * cap] = st->s[i] * st->K[i + (size_t)j * cap] * st->s[j];
        L[j + (size_t)j * cap] += st->gamma_eff;
    }
    if (m == 0) return 0;
    return LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', m, L, cap) == 0 ? 0 : INK_ENUMERIC;
}

static void krr_sync_basis(struct rls_state *st);

/* Re-estimate and thin every member; enforce the cap by doubling gamma_eff
 * (1.7 a): RLS are non-increasing in gamma, so min(tau(2 gamma), p) keeps a
 * valid sequential sampling for the larger gamma. A Cholesky that fails
 * (gamma_eff below the rounding of K_DD) is escalated the same way. */
static int reestimate(struct rls_state *st)
{
    st->reestimations++;
    for (int guard = 0; guard < 200; guard++) {
        set_weights(st);
        if (st->m > 0) {
            if (estimate(st) != 0) return INK_ENUMERIC;
            if (st->shrink) thin_and_compact(st);
        } else {
            st->dhat = 0;
        }
        set_weights(st);
        if (st->m <= st->m_max && factor(st) == 0) {
            if (st->predict) krr_sync_basis(st);
            st->since = 0;
            return 0;
        }
        st->gamma_eff *= 2;
        st->escalations++;
    }
    return INK_ENUMERIC;
}

/* kx[j] = k(x, X_j) for the m members; returns k(x, x). */
static double kernel_row(struct rls_state *st, const double *x)
{
    if (st->m > 0) ink_kernel_block(&st->kern, st->X, st->m, x, 1, st->kx, st->m, st->kwork);
    double kxx;
    ink_kernel_diag(&st->kern, x, 1, &kxx);
    return kxx;
}

/* Posterior variance of x given the weighted dictionary (1.2):
 * s = k(x,x) - a^T (A_s + gamma I)^{-1} a, a = S k_D(x); leaves u = L^{-1} a. */
static double residual(struct rls_state *st, double kxx)
{
    int m = st->m;
    if (m == 0) return kxx > 0 ? kxx : 0;
    if (st->step) { /* a^T (S K S + gamma I)^-1 a = k^T G k; leaves u = G k */
        if (st->dk > 0)
            ink_rls_symv_lower_pending(m, st->L, st->cap, st->Zd, st->Ad, st->cap, st->dk, st->kx,
                                       st->u);
        else
            ink_rls_symv_lower(m, st->L, st->cap, st->kx, st->u);
        st->dk = 0;
        double r = kxx - ink_rls_dot(st->kx, st->u, m);
        return r > 0 ? r : 0;
    }
    for (int j = 0; j < m; j++) st->u[j] = st->s[j] * st->kx[j];
    cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, m, st->L, st->cap, st->u, 1);
    double r = kxx - cblas_ddot(m, st->u, 1, st->u, 1);
    return r > 0 ? r : 0;
}

/* ------------------------------------------------------------------- KRR */

/* z = R^{-T} k_b(x) from kx; returns ||z||^2. */
static double krr_embed(struct rls_state *st)
{
    int nb = st->nb;
    for (int i = 0; i < nb; i++) st->z[i] = st->kx[st->bpos[i]];
    if (nb == 0) return 0;
    ink_rls_trsv_upper_t(nb, st->R, st->cap, st->z);
    return ink_rls_dot(st->z, st->z, nb);
}

/* The predict query: yhat = z^T (H + mu I)^{-1} g;
 * var = (k(x,x) - ||z||^2)/mu + z^T (H + mu I)^{-1} z. yhat is summed in the
 * order ink_rls_krr_step sums the arrival's, so the two agree bit for bit. */
static double krr_predict(struct rls_state *st, double kxx, double zz, double *var)
{
    int nb = st->nb;
    memcpy(st->v, st->z, (size_t)nb * sizeof(double));
    ink_rls_trsv_lower(nb, st->C, st->cap, st->v);
    double res = kxx - zz, yhat = 0;
    *var = (res > 0 ? res : 0) / st->mu + ink_rls_dot(st->v, st->v, nb);
    for (int k = 0; k < nb; k++) yhat += st->v[k] * st->h[k];
    return yhat;
}

/* The member just appended at dictionary position pos joins the basis when
 * it adds a direction: R gains column [z; rho], rho^2 = k(x,x) - ||z||^2;
 * H and g get a zero coordinate (old data stay projected on the old span). */
static void krr_append(struct rls_state *st, int pos, double kxx, double zz)
{
    double rho2 = kxx - zz;
    if (!(rho2 > BASIS_TOL * kxx)) return;
    int nb = st->nb, cap = st->cap;
    double *rc = st->R + (size_t)nb * cap, *C = st->C;
    memcpy(rc, st->z, (size_t)nb * sizeof(double));
    rc[nb] = sqrt(rho2);
    for (int i = 0; i < nb; i++) C[nb + (size_t)i * cap] = 0; /* row nb of C^T */
    C[nb + (size_t)nb * cap] = sqrt(st->mu);
    st->g[nb] = 0;
    st->h[nb] = 0;
    st->z[nb] = rc[nb]; /* the new point's own coordinate */
    st->bid[nb] = st->id[pos];
    st->bpos[nb] = pos;
    st->nb = nb + 1;
}

/* Predict, then learn y: H += z z^T as a rank-one update of C (C^T C =
 * H + mu I): rotation k turns (C_kk, z_k) into (r, 0) and is applied to row
 * k of C (column k of the stored C^T, contiguous) and z; the same rotations
 * carry (h, y) to the new h = C^{-T} g (the QR update of least squares);
 * g += y z. The prediction z^T (H + mu I)^{-1} g with the C and h before the
 * update (prequential) rides on the same pass over C (ink_rls_krr_step);
 * a coordinate appended at this arrival has h = 0 and adds nothing to it.
 * Returns the prediction; z is spent. */
static double krr_learn(struct rls_state *st, double y)
{
    int nb = st->nb;
    for (int k = 0; k < nb; k++) st->g[k] += y * st->z[k];
    st->nobs++;
    return ink_rls_krr_step(nb, st->C, st->cap, st->z, st->v, st->h, y);
}

static void givens(double a, double b, double *c, double *s)
{
    double r = hypot(a, b);
    if (r == 0) {
        *c = 1;
        *s = 0;
    } else {
        *c = a / r;
        *s = b / r;
    }
}

/* Drop basis coordinate j (5.1): with R~ = R minus column j = Q [R'; 0],
 * the map to the new coordinates is T = [I 0] Q^T; apply the same
 * rotations to g and to H + mu I = C^T C (as C Q, re-triangularised).
 * Every loop runs down contiguous memory: R column by column (rotation k,
 * which zeroes R'(k+1, k), is found when column k is reached), C Q row by
 * row (columns of the stored C^T), then the left rotations of C on pairs of
 * its rows (pairs of columns of C^T). Left and right rotations commute, so
 * this is the interleaved chase of the textbook, reordered. */
static void krr_delete(struct rls_state *st, int j)
{
    int nb = st->nb, cap = st->cap;
    double *R = st->R, *C = st->C, *g = st->g, *cs = st->v, *sn = st->z;
#define CU(i, l) C[(l) + (size_t)(i)*cap] /* C(i, l) of the upper factor */
    int *k0 = (int *)st->qi, l = j;       /* qi: 2 cap ints, free outside compact() */
    for (; l + 4 <= nb - 1; l += 4) {
        /* Columns l..l+3 together: the rotations found before them in four
         * chains at once (ink_rls_rot_chains), then each finishes in turn;
         * every column sees the same operations as alone. */
        for (int q = 0; q < 4; q++) {
            memcpy(R + (size_t)(l + q) * cap, R + (size_t)(l + q + 1) * cap,
                   (size_t)(l + q + 2) * sizeof(double));
            k0[q] = j;
        }
        ink_rls_rot_chains(4, R + (size_t)l * cap, cap, k0, l, cs, sn);
        for (int q = 0; q < 4; q++) {
            double *col = R + (size_t)(l + q) * cap;
            int a = l + q;
            k0[0] = l;
            ink_rls_rot_chains(1, col, cap, k0, a, cs, sn);
            givens(col[a], col[a + 1], &cs[a], &sn[a]);
            col[a] = cs[a] * col[a] + sn[a] * col[a + 1];
            col[a + 1] = 0;
        }
    }
    for (; l < nb - 1; l++) {
        double *col = R + (size_t)l * cap;
        memcpy(col, R + (size_t)(l + 1) * cap, (size_t)(l + 2) * sizeof(double));
        k0[0] = j;
        ink_rls_rot_chains(1, col, cap, k0, l, cs, sn);
        givens(col[l], col[l + 1], &cs[l], &sn[l]);
        col[l] = cs[l] * col[l] + sn[l] * col[l + 1];
        col[l + 1] = 0;
    }
    for (int k = j; k < nb - 1; k++) {
        double ga = g[k], gb = g[k + 1];
        g[k] = cs[k] * ga + sn[k] * gb;
        g[k + 1] = -sn[k] * ga + cs[k] * gb;
    }
    /* Row i of C Q: rotations k >= max(j, i - 1) reach it; below the
     * diagonal (i - 1 >= j) the storage is stale and enters as 0. */
    for (int i = 0; i < nb; i++) {
        k0[i] = j > i - 1 ? j : i - 1;
        if (i - 1 >= j) C[(i - 1) + (size_t)i * cap] = 0;
    }
    ink_rls_rot_chains(nb, C, cap, k0, nb - 1, cs, sn);
    for (int k = j; k < nb - 1; k++) {
        double c2, s2;
        givens(CU(k, k), CU(k + 1, k), &c2, &s2);
        ink_rls_rot_pair(nb - k, &CU(k, k), &CU(k + 1, k), c2, s2);
        CU(k + 1, k) = 0;
    }
    memmove(st->bid + j, st->bid + j + 1, (size_t)(nb - 1 - j) * sizeof(int64_t));
    memmove(st->bpos + j, st->bpos + j + 1, (size_t)(nb - 1 - j) * sizeof(int32_t));
#undef CU
    st->nb = nb - 1;
}

/* After a compaction: map basis ids to dictionary positions (both sorted by
 * id) and drop the coordinates of evicted members, last first. */
static void krr_sync_basis(struct rls_state *st)
{
    int pos = 0;
    for (int k = 0; k < st->nb; k++) {
        while (pos < st->m && st->id[pos] < st->bid[k]) pos++;
        st->bpos[k] = (pos < st->m && st->id[pos] == st->bid[k]) ? pos : -1;
    }
    int nb0 = st->nb;
    for (int k = st->nb - 1; k >= 0; k--)
        if (st->bpos[k] < 0) krr_delete(st, k);
    if (st->nb < nb0 && st->nb > 0) { /* h = C^{-T} g afresh after the rotations */
        memcpy(st->h, st->g, (size_t)st->nb * sizeof(double));
        ink_rls_trsv_lower(st->nb, st->C, st->cap, st->h);
    }
}

/* --------------------------------------------------------------- process */

static int check_x(const struct rls_state *st, const struct ink_record *in, struct ink_err *err)
{
    if (!(in->flags & INK_HAS_X) || !in->x)
        return ink_err_set(err, INK_ENOX, "rls_sketch: record has no x");
    if ((int64_t)in->dim != st->d)
        return ink_err_set(err, INK_EDIM, "x has %u values, rls_sketch takes %d", in->dim,
                           (int)st->d);
    for (int i = 0; i < st->d; i++)
        if (!isfinite(in->x[i]))
            return ink_err_set(err, INK_EINVAL, "rls_sketch: x[%d] is not finite", i);
    return 0;
}

/* Append x with (p, q): K_DD, L (one new row: [s u^T, sqrt(s^2 res + gamma)],
 * exact since u = L^{-1} S k_D(x)) and the KRR basis. */
static void append(struct rls_state *st, const double *x, double kxx, double res, double zz,
                   double p, int q)
{
    int m = st->m, cap = st->cap;
    double sw = sqrt(q / (st->qbar * p));
    memcpy(st->X + (size_t)m * st->d, x, (size_t)st->d * sizeof(double));
    st->id[m] = st->t;
    st->p[m] = p;
    st->q[m] = q;
    st->s[m] = sw;
    for (int j = 0; j < m; j++) {
        st->K[j + (size_t)m * cap] = st->kx[j];
        st->K[m + (size_t)j * cap] = st->kx[j];
    }
    st->K[m + (size_t)m * cap] = kxx;
    if (!st->step) { /* batch 0 updates G itself (step_arrival) */
        for (int j = 0; j < m; j++) st->L[m + (size_t)j * cap] = sw * st->u[j];
        st->L[m + (size_t)m * cap] = sqrt(sw * sw * res + st->gamma_eff);
    }
    st->kx[m] = kxx;
    st->m = m + 1;
    if (st->predict) krr_append(st, m, kxx, zz);
}

/* ------------------------------------------------- batch 0: step by step */

/* G is refactored from scratch once it has taken this many rank-one changes
 * per member (and at least REFRESH_MIN): amortised O(m^2) per change, and
 * a bounded drift (docs/rls_sketch.md, "The default path"). */
#define REFRESH_PER_MEMBER 16
#define REFRESH_MIN        32
/* A weight change whose Sherman-Morrison denominator 1 + delta G_jj falls
 * below this is not applied; G is refactored instead. */
#define SM_MIN_DEN 1e-8

/* Column j of G (lower storage) into out[0..n). */
static void g_column(const struct rls_state *st, int j, int n, double *out)
{
    const double *G = st->L;
    size_t cap = (size_t)st->cap;
    for (int i = 0; i < j; i++) out[i] = G[j + i * cap];
    for (int i = j; i < n; i++) out[i] = G[i + j * cap];
}

/* batch 0, the dictionary over max_dict after an arrival's thinning (which
 * already used estimates at the current gamma_eff): 1.7 a, gamma_eff doubled
 * and steps 2-8 redone with no new arrival until the dictionary fits, each
 * round scored from a fresh G = (K_DD + gamma_eff W)^-1 (O(m^3) with dpotrf +
 * dpotri, about a tenth of an eigensolve). G is left current. */
static int step_escalate(struct rls_state *st)
{
    st->reestimations++;
    for (int guard = 0; guard < 200; guard++) {
        st->gamma_eff *= 2;
        st->escalations++;
        set_weights(st);
        if (refresh_inverse(st) != 0) continue; /* rounding: escalate further */
        int m = st->m, cap = st->cap;
        double gam = st->gamma_eff, rsum = 0;
        for (int j = 0; j < m; j++) {
            double w = 1.0 / (st->s[j] * st->s[j]);
            double r = 1.0 - gam * w * st->L[j + (size_t)j * cap];
            r = r > 0 ? r : 0;
            rsum += r;
            st->tau[j] = st->c_est * w * r;
        }
        st->dhat = st->c_est * rsum;
        if (st->shrink) thin_and_compact(st);
        set_weights(st);
        if (st->predict) krr_sync_basis(st);
        if (st->m <= st->m_max && refresh_inverse(st) == 0) return 0;
    }
    return INK_ENUMERIC;
}

/* One arrival of docs/algorithms.md 1.5 with batch 0, in O(m^2 + m d): x joins
 * with s = 1; every member's score is read from the diagonal of
 * (K_aug + gamma W_aug)^-1 = G bordered by x (O(m) after u = G k); every
 * member and x are thinned; then G follows the dictionary by rank-one
 * changes: x appended with its weight (bordering), each member whose weight
 * q/(qbar p) changed (Sherman-Morrison on W_jj), each evicted member
 * (Schur downdate), and is refactored on a schedule. kx holds the kernel
 * row; on return *tau_out is x's score. */
static int step_arrival(struct rls_state *st, const double *x, double kxx, double zz, bool learn,
                        double y, double *tau_out)
{
    int m = st->m, cap = st->cap, rc;
    double gam = st->gamma_eff, c = st->c_est, *G = st->L;
    double res = residual(st, kxx); /* u = G k */
    double sig = res + gam;
    double tau = c * res / sig, rsum = res / sig;
    /* 1.5 steps 1-6: G_aug_jj = G_jj + u_j^2 / sig; r_j = 1 - gamma w_j G_aug_jj,
     * tau_j = c r_j / s_j^2 = c w_j r_j. */
    for (int j = 0; j < m; j++) {
        double w = 1.0 / (st->s[j] * st->s[j]);
        double gjj = G[j + (size_t)j * cap] + st->u[j] * st->u[j] / sig;
        double r = 1.0 - gam * w * gjj;
        r = r > 0 ? r : 0;
        rsum += r;
        st->tau[j] = c * w * r;
    }
    st->dhat = c * rsum;
    *tau_out = tau;
    /* Step 7, the members: which weights change, which members leave. */
    int32_t *chg = (int32_t *)st->isuppz;
    double *wold = st->w;
    int nchg = 0, nev = 0;
    if (st->shrink) {
        double dh = st->dhat > 0 ? st->dhat : 1.0;
        for (int j = 0; j < m; j++) {
            double target = st->normalize ? st->tau[j] / dh : st->tau[j];
            double pn = fmin(fmax(target, P_FLOOR), st->p[j]);
            if (!(pn * (1.0 + st->slack) < st->p[j])) continue;
            wold[j] = 1.0 / (st->s[j] * st->s[j]);
            st->q[j] = binomial(&st->rng, st->q[j], pn / st->p[j]);
            st->p[j] = pn;
            chg[nchg++] = j;
            nev += st->q[j] == 0;
        }
    }
    /* ... and x, which entered with p = 1, q = qbar. */
    double target = st->normalize ? tau / fmax(st->dhat, 1e-300) : tau;
    target = fmin(target, 1.0);
    double p = 1;
    int q = st->qbar;
    if (st->shrink) {
        p = fmax(target, P_FLOOR);
        q = binomial(&st->rng, st->qbar, target);
    } else if (m >= st->m_max) {
        q = 0; /* full, and nothing may be thinned */
    }
    if (q > 0 && m - nev + 1 > st->m_max) {
        /* Over the cap: the full re-estimation with gamma escalation (1.7 a),
         * which refactors G. */
        append(st, x, kxx, res, zz, p, q);
        if (learn) st->yhat = krr_learn(st, y);
        compact(st, false);
        set_weights(st);
        if (st->predict) krr_sync_basis(st);
        return step_escalate(st);
    }
    bool border = q > 0, refresh = false;
    double sig2 = border ? res + gam * (st->qbar * p / q) : 0;
    if (border) append(st, x, kxx, res, zz, p, q);
    if (learn) st->yhat = krr_learn(st, y);
    /* Every change to G at this arrival as one update (docs/rls_sketch.md,
     * "The default path", step 4): x bordered in at weight qbar p / q, a change
     * of W_jj for each member whose weight changed, the limit W_jj -> inf
     * (Schur downdate) for each evicted one:
     *   G_bord = [G 0; 0 0] + v v^T / sig2,  v = [u; -1],
     *   G_new  = G_bord - C S^-1 C^T,  C = G_bord E_J,
     *   S = diag(1 / delta_J) + G_bord_JJ  (1 / delta = 0 for an eviction),
     * applied as G <- [G 0; 0 0] - Z M Z^T, Z = [v C], M = diag(-1/sig2, S^-1),
     * in one pass over the triangle that also compacts out the evicted, or,
     * with no eviction, left pending for the next product (Zd, Ad). */
    int n = st->m;
    int32_t *J = (int32_t *)st->ev_iwork, k = 0;
    double *dl = st->kwork; /* delta of each change; 0 marks an eviction */
    for (int a = 0; a < nchg; a++) {
        int j = chg[a];
        double delta = st->q[j] ? gam * (st->qbar * st->p[j] / st->q[j] - wold[j]) : 0;
        if (st->q[j] && delta == 0) continue;
        J[k] = j;
        dl[k++] = delta;
    }
    int kk = border + k;
    if (kk > 65 || 2 * (size_t)n * kk + (size_t)kk * kk > (size_t)cap * cap || k * k > st->lwork)
        refresh = true; /* more changes than the scratch holds: refactor */
    double *Z = st->U, *M = Z + (size_t)n * kk, *A = M + (size_t)kk * kk, *S = st->ev_work;
    if (!refresh && kk > 0) {
        if (border) {
            memcpy(Z, st->u, (size_t)m * sizeof(double));
            Z[m] = -1;
        }
        for (int b = 0; b < k && !refresh; b++) {
            double *cb = Z + (size_t)(border + b) * n;
            g_column(st, J[b], m, cb);
            if (border) { /* column J_b of G_bord */
                double f = st->u[J[b]] / sig2;
                cb[m] = 0;
                for (int i = 0; i < n; i++) cb[i] += Z[i] * f;
            }
            double gjj = cb[J[b]];
            /* An eviction needs G_jj > 0, a weight change a Sherman-Morrison
             * denominator 1 + delta G_jj away from 0; otherwise refactor. */
            refresh = dl[b] == 0 ? !(gjj > 0) : !(1.0 + dl[b] * gjj > SM_MIN_DEN);
        }
        for (int b = 0; b < k && !refresh; b++)
            for (int a = 0; a < k; a++)
                S[a + b * k] =
                    Z[J[a] + (size_t)(border + b) * n] + (a == b && dl[b] != 0 ? 1.0 / dl[b] : 0);
        for (size_t i = 0; i < (size_t)kk * kk; i++) M[i] = 0;
        if (border) M[0] = -1.0 / sig2;
        for (int b = 0; b < k; b++)
            M[(size_t)(border + b) * (kk + 1)] = 1; /* S^-1 solved in place */
        if (!refresh && k > 0 &&
            LAPACKE_dgesv_work(LAPACK_COL_MAJOR, k, k, S, k, st->ev_iwork + cap,
                               M + (size_t)border * (kk + 1), kk) != 0)
            refresh = true;
        for (size_t i = 0; i < (size_t)kk * kk && !refresh; i++) refresh = !isfinite(M[i]);
        for (int b = 0; b < kk && !refresh; b++) { /* A = Z M, so that Z M Z^T = Z A^T */
            double *ab = A + (size_t)b * n;
            for (int i = 0; i < n; i++) ab[i] = 0;
            for (int l = 0; l < kk; l++) {
                double f = M[l + (size_t)b * kk];
                const double *zl = Z + (size_t)l * n;
                for (int i = 0; i < n; i++) ab[i] += zl[i] * f;
            }
        }
    }
    int nk = n;
    if (nev > 0) {
        compact(st, false); /* all but G, which the update compacts */
        if (st->predict) krr_sync_basis(st);
    }
    if (!refresh && kk > 0) {
        int *keep = NULL;
        if (nev > 0) { /* the survivors' positions before compaction */
            keep = (int *)st->isuppz + cap;
            nk = 0;
            for (int b = 0, a = 0; a < n; a++) {
                if (b < k && J[b] == a && dl[b] == 0) {
                    b++;
                    continue;
                }
                if (b < k && J[b] == a) b++;
                keep[nk++] = a;
            }
        }
        if (border)
            for (int i = 0; i <= m; i++) G[m + (size_t)i * cap] = 0;
        if (nev == 0 && kk <= PEND_MAX) { /* left for the next product to apply */
            for (int b = 0; b < kk; b++) {
                memcpy(st->Zd + (size_t)b * cap, Z + (size_t)b * n, (size_t)n * sizeof(double));
                memcpy(st->Ad + (size_t)b * cap, A + (size_t)b * n, (size_t)n * sizeof(double));
            }
            st->dk = kk;
        } else {
            ink_rls_lowrank_compact(n, G, cap, Z, A, n, kk, keep, nk);
        }
        st->nupd += kk;
    }
    set_weights(st);
    int64_t period = (int64_t)REFRESH_PER_MEMBER * st->m;
    if (refresh || st->nupd >= (period > REFRESH_MIN ? period : REFRESH_MIN)) {
        if ((rc = refresh_inverse(st)) != 0) return reestimate(st);
    }
    return 0;
}

/* One arrival with batch >= 1: x scored and thinned against the current
 * dictionary, appended (L gains a row); every `batch` arrivals, or when the
 * dictionary overflows, all members re-estimated from scratch. */
static int batch_arrival(struct rls_state *st, const double *x, double kxx, double zz, bool learn,
                         double y, double *tau_out)
{
    /* tau~ of the newest point, in the dictionary with s = 1 (1.5): c s/(s + gamma). */
    double res = residual(st, kxx);
    double tau = st->c_est * res / (res + st->gamma_eff);
    *tau_out = tau;
    st->dhat += tau;
    double target = st->normalize ? tau / fmax(st->dhat, 1e-300) : tau;
    target = fmin(target, 1.0);
    double p = 1;
    int q = st->qbar;
    if (st->shrink) {
        p = fmax(target, P_FLOOR);
        q = binomial(&st->rng, st->qbar, target);
    } else if (st->m >= st->m_max) {
        q = 0; /* full, and nothing may be thinned */
    }
    if (q > 0) append(st, x, kxx, res, zz, p, q);
    if (learn) st->yhat = krr_learn(st, y);
    st->since++;
    if (st->since >= st->b || st->m > st->m_max) return reestimate(st);
    return 0;
}

/* The cumulative partial (docs/rls_sketch.md#publish-and-merge): the
 * dictionary, its p and q, the parameters a merge checks and, with predict,
 * the KRR statistics H = C^T C - mu I (formed in U, scratch between records)
 * and g in the basis coordinates. */
static int emit_partial(struct rls_state *st, const struct ink_record *in,
                        const struct ink_emitter *out)
{
    struct ink__rls_pub v = {.d = st->d,
                             .m = st->m,
                             .qbar = st->qbar,
                             .ink_mode = st->normalize,
                             .kern = &st->kern,
                             .gamma = st->gamma,
                             .eps = st->eps,
                             .c_est = st->c_est,
                             .gamma_eff = st->gamma_eff,
                             .dhat = st->dhat,
                             .n = (uint64_t)st->t,
                             .X = st->X,
                             .p = st->p,
                             .q = st->q,
                             .id = st->id,
                             .nb = -1};
    if (st->predict) {
        int nb = st->nb;
        double *H = st->U;
        for (int j = 0; j < nb; j++)
            for (int i = 0; i < nb; i++)
                H[i + (size_t)j * nb] = i >= j ? st->C[i + (size_t)j * st->cap] : 0;
        if (nb > 0)
            cblas_dtrmm(CblasColMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, nb,
                        1.0, st->C, st->cap, H, nb);
        for (int j = 0; j < nb; j++) H[j + (size_t)j * nb] -= st->mu;
        v.nb = nb, v.mu = st->mu, v.nobs = (uint64_t)st->nobs, v.bpos = st->bpos;
        v.H = H, v.ldh = nb > 0 ? nb : 1, v.g = st->g;
    }
    size_t len = ink__rls_partial_put(st->pbuf, &v);
    st->published = st->t;
    return ink__partial_emit(in, st->pbuf, len, st->node, (uint64_t)st->t, &st->tag, out);
}

static int rls_process(void *state, const struct ink_record *in, const struct ink_emitter *out,
                       struct ink_err *err)
{
    struct rls_state *st = state;
    int rc = check_x(st, in, err);
    if (rc) return rc;
    bool learn = st->predict && (in->flags & INK_HAS_Y);
    if (learn && !isfinite(in->y))
        return ink_err_set(err, INK_EINVAL, "rls_sketch: y is not finite");

    double kxx = kernel_row(st, in->x), zz = 0;
    if (st->predict) zz = krr_embed(st);
    st->yhat = 0; /* the prediction made before learning y (krr_learn) */

    int64_t id = st->t;
    double tau;
    rc = st->step ? step_arrival(st, in->x, kxx, zz, learn, learn ? in->y : 0, &tau)
                  : batch_arrival(st, in->x, kxx, zz, learn, learn ? in->y : 0, &tau);
    st->t++;
    if (rc) return ink_err_set(err, rc, "rls_sketch: eigen/Cholesky failure");

    struct ink_record o;
    ink_record_derive(&o, in);
    ink_record_add_f64(&o, "tau", tau);
    /* Accepted = in the dictionary after the step (a re-estimation right
     * after the arrival may already have thinned it out; it is last). */
    ink_record_add_bool(&o, "accepted", st->m > 0 && st->id[st->m - 1] == id);
    ink_record_add_i64(&o, "dict", st->m);
    ink_record_add_f64(&o, "deff", st->dhat);
    ink_record_add_f64(&o, "gamma_eff", st->gamma_eff);
    if (learn) ink_record_add_f64(&o, "yhat", st->yhat);
    if (st->publish) ink__partial_note(&st->tag, in);
    rc = ink_emit(out, &o);
    if (rc == 0 && st->publish && st->t - st->published >= st->publish)
        rc = emit_partial(st, in, out);
    return rc;
}

/* The graph ended naturally: the arrivals since the last partial go out in
 * one more (under key_by the engine puts the state's key on it). */
static int rls_flush(void *state, const struct ink_emitter *out, struct ink_err *err)
{
    (void)err;
    struct rls_state *st = state;
    if (!st->publish || st->t <= st->published) return 0;
    struct ink_record none;
    memset(&none, 0, sizeof none);
    return emit_partial(st, &none, out);
}

/* ----------------------------------------------------------------- query */

static int rls_query(void *state, const struct ink_record *req, const struct ink_emitter *out,
                     struct ink_err *err)
{
    struct rls_state *st = state;
    struct ink_record o;
    ink_record_derive(&o, req);
    if (ink_record_op_is(req, "tau") || ink_record_op_is(req, "predict")) {
        int rc = check_x(st, req, err);
        if (rc) return rc;
        double kxx = kernel_row(st, req->x);
        if (ink_record_op_is(req, "tau")) {
            /* General formula (1.2): c/gamma (k(x,x) - a^T (A_s + gamma I)^{-1} a), the
             * estimate of tau_{t,i} for a point of the stream; tau_new is the score x
             * would get if it arrived now. */
            double res = residual(st, kxx);
            ink_record_add_f64(&o, "tau", st->c_est * res / st->gamma_eff);
            ink_record_add_f64(&o, "tau_new", st->c_est * res / (res + st->gamma_eff));
        } else {
            if (!st->predict)
                return ink_err_set(err, INK_ENOTSUP, "rls_sketch: predict is off for this node");
            double var, zz = krr_embed(st);
            double yhat = krr_predict(st, kxx, zz, &var);
            ink_record_add_f64(&o, "yhat", yhat);
            ink_record_add_f64(&o, "var", var);
        }
    } else if (ink_record_op_is(req, "deff")) {
        ink_record_add_f64(&o, "deff", st->dhat);
    } else if (ink_record_op_is(req, "dict")) {
        for (int j = 0; j < st->m; j++) st->qi[j] = st->q[j];
        ink_record_add_f64m(&o, "points", st->X, (uint32_t)st->d, (uint32_t)st->m);
        ink_record_add_i64s(&o, "ids", st->id, (uint32_t)st->m);
        ink_record_add_f64s(&o, "weights", st->s, (uint32_t)st->m);
        ink_record_add_f64s(&o, "p", st->p, (uint32_t)st->m);
        ink_record_add_i64s(&o, "q", st->qi, (uint32_t)st->m);
        ink_record_add_i64(&o, "escalations", st->escalations);
        ink_record_add_i64(&o, "reestimations", st->reestimations);
        ink_record_add_i64(&o, "refreshes", st->refreshes);
    } else {
        return ink_err_set(err, INK_ENOTSUP,
                           "rls_sketch: unknown op '%.*s' (tau, predict, deff, dict)",
                           (int)req->op_len, req->op ? req->op : "");
    }
    ink_record_add_i64(&o, "dict", st->m);
    ink_record_add_f64(&o, "gamma_eff", st->gamma_eff);
    ink_record_add_i64(&o, "n", st->t);
    return ink_emit(out, &o);
}

static double gauge_dict(const void *state)
{
    return ((const struct rls_state *)state)->m;
}

static double gauge_deff(const void *state)
{
    return ((const struct rls_state *)state)->dhat;
}

static double gauge_gamma_eff(const void *state)
{
    return ((const struct rls_state *)state)->gamma_eff;
}

static const struct ink_op_gauge rls_gauges[] = {
    {"dict", "dictionary size", gauge_dict},
    {"deff", "effective dimension estimate", gauge_deff},
    {"gamma_eff", "effective regularisation", gauge_gamma_eff},
    {0},
};

/* ------------------------------------------------------------ save/load */

/* Leading n x n block of a cap-strided matrix, packed (scratch: U). */
static const double *pack_block(const struct rls_state *st, const double *A, int n)
{
    for (int j = 0; j < n; j++)
        memcpy(st->U + (size_t)j * n, A + (size_t)j * st->cap, (size_t)n * sizeof(double));
    return st->U;
}

/* A symmetric matrix of which only the lower triangle is kept, packed
 * whole (the upper triangle mirrored). */
static const double *pack_sym(const struct rls_state *st, const double *A, int n)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++)
            st->U[i + (size_t)j * n] =
                i >= j ? A[i + (size_t)j * st->cap] : A[j + (size_t)i * st->cap];
    return st->U;
}

/* The same for the stored C^T, packed as C (the upper factor of 5.1). */
static const double *pack_block_t(const struct rls_state *st, const double *A, int n)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) st->U[i + (size_t)j * n] = A[j + (size_t)i * st->cap];
    return st->U;
}

static void unpack_block_t(const struct rls_state *st, double *A, int n)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) A[j + (size_t)i * st->cap] = st->U[i + (size_t)j * n];
}

static void unpack_block(const struct rls_state *st, double *A, int n)
{
    for (int j = n - 1; j >= 0; j--)
        memmove(A + (size_t)j * st->cap, st->U + (size_t)j * n, (size_t)n * sizeof(double));
}

static int rls_save(const void *state, msgpack_packer *pk)
{
    const struct rls_state *st = state;
    int m = st->m, nb = st->nb;
    msgpack_pack_map(pk, (st->predict ? 31 : 23) + (st->publish ? 1 : 0));
    if (st->publish) {
        ink_pack_key(pk, "publish");
        int64_t pb[4] = {st->published, st->tag.has_kafka, st->tag.kpart, st->tag.koff};
        ink_pack_i64s(pk, pb, 4);
    }
    ink_pack_key(pk, "version");
    msgpack_pack_int64(pk, STATE_VERSION);
    ink_pack_key(pk, "dim");
    msgpack_pack_int64(pk, st->d);
    ink_pack_key(pk, "qbar");
    msgpack_pack_int64(pk, st->qbar);
    ink_pack_key(pk, "max_dict");
    msgpack_pack_int64(pk, st->m_max);
    ink_pack_key(pk, "batch");
    msgpack_pack_int64(pk, st->b);
    ink_pack_key(pk, "predict");
    msgpack_pack_int64(pk, st->predict);
    ink_pack_key(pk, "gamma");
    msgpack_pack_double(pk, st->gamma);
    ink_pack_key(pk, "gamma_eff");
    msgpack_pack_double(pk, st->gamma_eff);
    ink_pack_key(pk, "dhat");
    msgpack_pack_double(pk, st->dhat);
    ink_pack_key(pk, "t");
    msgpack_pack_int64(pk, st->t);
    ink_pack_key(pk, "escalations");
    msgpack_pack_int64(pk, st->escalations);
    ink_pack_key(pk, "reestimations");
    msgpack_pack_int64(pk, st->reestimations);
    ink_pack_key(pk, "m");
    msgpack_pack_int64(pk, m);
    ink_pack_key(pk, "since");
    msgpack_pack_int64(pk, st->since);
    ink_pack_key(pk, "nupd");
    msgpack_pack_int64(pk, st->nupd);
    ink_pack_key(pk, "refreshes");
    msgpack_pack_int64(pk, st->refreshes);
    ink_pack_key(pk, "rng");
    ink_pack_rng(pk, &st->rng);
    ink_pack_key(pk, "X");
    ink_pack_f64s(pk, st->X, (size_t)m * st->d);
    ink_pack_key(pk, "id");
    ink_pack_i64s(pk, st->id, (size_t)m);
    ink_pack_key(pk, "p");
    ink_pack_f64s(pk, st->p, (size_t)m);
    ink_pack_key(pk, "q");
    ink_pack_i32s(pk, st->q, (size_t)m);
    /* K_DD and L (G with batch 0) are stored, not recomputed: a restore
     * continues bit for bit (5.2). U is scratch between records, so it can stage the packing. */
    ink_pack_key(pk, "K");
    ink_pack_f64s(pk, pack_sym(st, st->K, m), (size_t)m * m);
    ink_pack_key(pk, "L");
    const double *Lp = pack_block(st, st->L, m);
    if (st->dk > 0) /* G as the next product will see it (same bits): G - Zd Ad^T */
        ink_rls_lowrank_compact(m, st->U, m, st->Zd, st->Ad, st->cap, st->dk, NULL, m);
    ink_pack_f64s(pk, Lp, (size_t)m * m);
    if (st->predict) {
        ink_pack_key(pk, "nb");
        msgpack_pack_int64(pk, nb);
        ink_pack_key(pk, "nobs");
        msgpack_pack_int64(pk, st->nobs);
        ink_pack_key(pk, "bid");
        ink_pack_i64s(pk, st->bid, (size_t)nb);
        ink_pack_key(pk, "bpos");
        ink_pack_i32s(pk, st->bpos, (size_t)nb);
        ink_pack_key(pk, "R");
        ink_pack_f64s(pk, pack_block(st, st->R, nb), (size_t)nb * nb);
        ink_pack_key(pk, "C");
        ink_pack_f64s(pk, pack_block_t(st, st->C, nb), (size_t)nb * nb);
        ink_pack_key(pk, "g");
        ink_pack_f64s(pk, st->g, (size_t)nb);
        ink_pack_key(pk, "h");
        ink_pack_f64s(pk, st->h, (size_t)nb);
    }
    return 0;
}

static int expect_i64(const msgpack_object *obj, const char *key, int64_t want, struct ink_err *err)
{
    int64_t v;
    int rc = ink_state_i64(obj, key, &v, err);
    if (rc) return rc;
    if (v != want)
        return ink_err_set(err, INK_ESTATE, "state: %s is %lld, this node has %lld", key,
                           (long long)v, (long long)want);
    return 0;
}

/* Everything is checked before anything is written: a refused state leaves
 * the node as it was. */
static int rls_load(void *state, const msgpack_object *obj, struct ink_err *err)
{
    struct rls_state *st = state;
    int64_t m, since, t, esc, nre, nupd, nref, nb = 0, nobs = 0;
    double gamma_eff, dhat, gamma;
    struct ink_rng rng;
    int rc;
    if ((rc = expect_i64(obj, "version", STATE_VERSION, err)) ||
        (rc = expect_i64(obj, "dim", st->d, err)) ||
        (rc = expect_i64(obj, "qbar", st->qbar, err)) ||
        (rc = expect_i64(obj, "max_dict", st->m_max, err)) ||
        (rc = expect_i64(obj, "batch", st->b, err)) ||
        (rc = expect_i64(obj, "predict", st->predict, err)) ||
        (rc = ink_state_f64(obj, "gamma", &gamma, err)) ||
        (rc = ink_state_f64(obj, "gamma_eff", &gamma_eff, err)) ||
        (rc = ink_state_f64(obj, "dhat", &dhat, err)) || (rc = ink_state_i64(obj, "t", &t, err)) ||
        (rc = ink_state_i64(obj, "escalations", &esc, err)) ||
        (rc = ink_state_i64(obj, "reestimations", &nre, err)) ||
        (rc = ink_state_i64(obj, "m", &m, err)) ||
        (rc = ink_state_i64(obj, "since", &since, err)) ||
        (rc = ink_state_i64(obj, "nupd", &nupd, err)) ||
        (rc = ink_state_i64(obj, "refreshes", &nref, err)) ||
        (rc = ink_state_rng(obj, "rng", &rng, err)))
        return rc;
    if (gamma != st->gamma)
        return ink_err_set(err, INK_ESTATE, "state: gamma %g differs from the config's %g", gamma,
                           st->gamma);
    int64_t pb[4] = {0, 0, 0, 0}; /* absent in a state saved without publish */
    const msgpack_object *po;
    if (st->publish && ink_state_get(obj, "publish", &po, NULL) == 0 &&
        (rc = ink_state_i64s(obj, "publish", pb, 4, err)))
        return rc;
    if (m < 0 || m > st->m_max || since < 0 || (st->b > 0 ? since >= st->b : since != 0) ||
        nupd < 0 || nref < 0 || t < 0 || !(gamma_eff >= st->gamma) || !isfinite(gamma_eff))
        return ink_err_set(err, INK_ESTATE, "state: inconsistent sizes or gamma_eff");
    size_t mm = (size_t)m;
    if ((rc = ink_state_need_len(obj, "X", 8, mm * st->d, err)) ||
        (rc = ink_state_need_len(obj, "id", 8, mm, err)) ||
        (rc = ink_state_need_len(obj, "p", 8, mm, err)) ||
        (rc = ink_state_need_len(obj, "q", 4, mm, err)) ||
        (rc = ink_state_need_len(obj, "K", 8, mm * mm, err)) ||
        (rc = ink_state_need_len(obj, "L", 8, mm * mm, err)))
        return rc;
    if (st->predict) {
        if ((rc = ink_state_i64(obj, "nb", &nb, err)) ||
            (rc = ink_state_i64(obj, "nobs", &nobs, err)))
            return rc;
        if (nb < 0 || nb > m) return ink_err_set(err, INK_ESTATE, "state: nb out of range");
        size_t n = (size_t)nb;
        if ((rc = ink_state_need_len(obj, "bid", 8, n, err)) ||
            (rc = ink_state_need_len(obj, "bpos", 4, n, err)) ||
            (rc = ink_state_need_len(obj, "R", 8, n * n, err)) ||
            (rc = ink_state_need_len(obj, "C", 8, n * n, err)) ||
            (rc = ink_state_need_len(obj, "g", 8, n, err)) ||
            (rc = ink_state_need_len(obj, "h", 8, n, err)))
            return rc;
    }
    /* Sizes are right; copy. Values are validated where a bad one could
     * break an invariant (p in (0, 1], 1 <= q <= qbar, bpos in range). */
    ink_state_f64s(obj, "p", st->tau, mm, err);
    ink_state_i32s(obj, "q", (int32_t *)st->qi, mm, err);
    for (size_t j = 0; j < mm; j++) {
        int32_t qj = ((int32_t *)st->qi)[j];
        if (!(st->tau[j] > 0 && st->tau[j] <= 1) || qj < 1 || qj > st->qbar)
            return ink_err_set(err, INK_ESTATE, "state: member %zu has p or q out of range", j);
    }
    if (st->predict) {
        int32_t *bpos = (int32_t *)st->isuppz;
        ink_state_i32s(obj, "bpos", bpos, (size_t)nb, err);
        for (int64_t k = 0; k < nb; k++)
            if (bpos[k] < 0 || bpos[k] >= m)
                return ink_err_set(err, INK_ESTATE, "state: basis position out of range");
    }
    memcpy(st->p, st->tau, mm * sizeof(double));
    memcpy(st->q, st->qi, mm * sizeof(int32_t));
    ink_state_f64s(obj, "X", st->X, mm * st->d, err);
    ink_state_i64s(obj, "id", st->id, mm, err);
    ink_state_f64s(obj, "K", st->U, mm * mm, err);
    unpack_block(st, st->K, (int)m);
    ink_state_f64s(obj, "L", st->U, mm * mm, err);
    unpack_block(st, st->L, (int)m);
    if (st->predict) {
        size_t n = (size_t)nb;
        ink_state_i64s(obj, "bid", st->bid, n, err);
        memcpy(st->bpos, st->isuppz, n * sizeof(int32_t));
        ink_state_f64s(obj, "R", st->U, n * n, err);
        unpack_block(st, st->R, (int)nb);
        ink_state_f64s(obj, "C", st->U, n * n, err);
        unpack_block_t(st, st->C, (int)nb);
        ink_state_f64s(obj, "g", st->g, n, err);
        ink_state_f64s(obj, "h", st->h, n, err);
        st->nb = (int)nb;
        st->nobs = nobs;
    }
    st->m = (int)m;
    st->since = (int)since;
    st->t = t;
    st->escalations = esc;
    st->reestimations = nre;
    st->nupd = nupd;
    st->refreshes = nref;
    st->dk = 0; /* the saved G has any pending update applied */
    st->gamma_eff = gamma_eff;
    st->dhat = dhat;
    st->rng = rng;
    st->published = pb[0];
    st->tag = (struct ink__partial_tag){pb[1] != 0, pb[2], pb[3]};
    set_weights(st);
    return 0;
}

const struct ink_op_vtable ink_op_rls_sketch = {
    .name = "rls_sketch",
    .kind = INK_NODE_OPERATOR,
    .summary = "ridge-leverage-score Nystrom sketch (SQUEAK / INK-Estimate) with online KRR",
    .params = ink_rls_params,
    .conf_size = sizeof(struct ink_rls_conf),
    .state_size = sizeof(struct rls_state),
    .check = rls_check,
    .mem_bound = rls_mem_bound,
    .init = rls_init,
    .process = rls_process,
    .query = rls_query,
    .save = rls_save,
    .load = rls_load,
    .fini = rls_fini,
    .flush = rls_flush,
    .gauges = rls_gauges,
};
