/* bkb: budgeted kernelized bandit (BKB) and batched BKB (BBKB) over a fixed
 * set of arms (docs/algorithms.md sections 2 and 5.3).
 *
 * State: the posterior built at the last "rebuild" (resampled dictionary D,
 * projection Nystrom embedding B, Cholesky factor L of G, weights w, and per
 * arm mu, var, ucb), plus a hallucinated factor Lh = chol(G + sum_j h_j z_j
 * z_j^T) over the arms that were handed out since (BBKB batch members) or are
 * still waiting for their reward (service asks). Suggestions maximise
 * mu + beta * sqrt(var_h) with the mean frozen, so concurrent workers are
 * not sent the same arm and BBKB batches spread out.
 *
 * Driving it:
 *  - process: a reward record (`arm`, or `x` equal to an arm, and `y`) is
 *    learnt from, then the next suggestion is emitted (`arm`, `x`, `mu`,
 *    `sigma`, `ucb`, `beta`, `dict`, `round`). The very first process call
 *    emits the start suggestion (round 0) before anything else; a record
 *    with neither `y`, `arm` nor `x` only asks for a suggestion. Streaming
 *    suggestions are advisory: rewards for any arm are accepted.
 *  - query (changes state, unlike other operators' queries):
 *      {"op": "ask"}            one suggestion record, as above; the arm is
 *                               pending until told and is not handed out
 *                               again meanwhile (INK_ERANGE when every arm is
 *                               pending: the runtime treats EAGAIN as fatal).
 *      {"op": "ask", "n": k}    k arms at once (1 <= k <= 256), one record with
 *                               array fields `arms`, `xs` (d x k), `mu`, `sigma`,
 *                               `ucb` and scalars `beta`, `dict`, `round`
 *                               (of the first); n: 0 = as many as the BBKB
 *                               global rule allows (one for BKB).
 *      {"op": "tell", "arm": i, "y": r}  (or "x") the reward of a pending arm;
 *                               replies `pulls`, `dict`, `beta`, `round`.
 *                               Unknown or not-pending arms: INK_EINVAL.
 *      {"op": "predict", "arm": i}  read-only: posterior `mu`, `sigma`, `ucb`.
 *      fail / release, best, trials, pending, and pending_timeout: the
 *                               service bookkeeping of bkb_service.c.
 *  BKB rebuilds the posterior at every reward; BBKB only at a reward that
 *  arrives once the current batch is closed (1 + sum var0 > ratio) and all
 *  of its asked arms are told (or as many rewards came in as it had arms),
 *  so the dictionary is resampled only at batch starts. The first `init`
 *  suggestions are uniformly random among the arms not pending; before the
 *  first reward, ties of the prior UCB are broken at random. State, pending
 *  asks included, is saved and restored whole. See docs/bkb.md. */
#include "bkb.h"

#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/opkit.h"
#include "../engine/path.h"
#include "../engine/rng.h"
#include "../engine/state.h"
#include "bkb_arms.h"
#include "bkb_gp.h"
#include "bkb_service.h"

#define BKB_MAX_ASK       256
#define BKB_STATE_VERSION 2    /* 2: + the service state (bkb_service.c) */
#define BKB_X_TOL         1e-9 /* an `x` names the arm whose coordinates match within this */

/* pend[i]: PEND_* of bkb_service.h */

static const char *const bkb_op_names = "ask, tell, fail, release, predict, best, trials, pending";

/* ---- parameters ---------------------------------------------------------------------- */

#define GOFF(f) offsetof(struct ink_bkb_grid_conf, f)
#define ROFF(f) offsetof(struct ink_bkb_random_conf, f)
#define AOFF(f) offsetof(struct ink_bkb_arms_conf, f)
#define BOFF(f) offsetof(struct ink_bkb_batch_conf, f)
#define COFF(f) offsetof(struct ink_bkb_conf, f)

static const struct ink_param grid_params[] = {
    {.name = "lo",
     .type = INK_P_F64_LIST,
     .offset = GOFF(lo),
     .len_min = 1,
     .len_max = 64,
     .flags = INK_PF_REQUIRED,
     .help = "lower corner, one value per axis"},
    {.name = "hi",
     .type = INK_P_F64_LIST,
     .offset = GOFF(hi),
     .len_min = 1,
     .len_max = 64,
     .flags = INK_PF_REQUIRED,
     .help = "upper corner, one value per axis"},
    {.name = "n",
     .type = INK_P_F64_LIST,
     .offset = GOFF(n),
     .def = "10",
     .min = 1,
     .max = 1e8,
     .len_min = 1,
     .len_max = 64,
     .help = "points per axis: one value for all axes or one per axis"},
    {0},
};

static const struct ink_param random_params[] = {
    {.name = "n",
     .type = INK_P_INT,
     .offset = ROFF(n),
     .min = 1,
     .max = BKB_MAX_ARMS,
     .flags = INK_PF_REQUIRED,
     .help = "number of arms"},
    {.name = "lo",
     .type = INK_P_F64_LIST,
     .offset = ROFF(lo),
     .len_min = 1,
     .len_max = 1024,
     .flags = INK_PF_REQUIRED,
     .help = "lower corner of the box, one value per axis"},
    {.name = "hi",
     .type = INK_P_F64_LIST,
     .offset = ROFF(hi),
     .len_min = 1,
     .len_max = 1024,
     .flags = INK_PF_REQUIRED,
     .help = "upper corner of the box, one value per axis"},
    {.name = "seed",
     .type = INK_P_INT,
     .offset = ROFF(seed),
     .def = "1",
     .min = 0,
     .max = 9.2e18,
     .help = "seed of the arm draw (independent of the operator's seed)"},
    {0},
};

static const struct ink_param arms_params[] = {
    {.name = "grid",
     .type = INK_P_OBJECT,
     .offset = AOFF(grid),
     .sub = grid_params,
     .help = "arms on a grid: {lo, hi, n}"},
    {.name = "file",
     .type = INK_P_STRING,
     .offset = AOFF(file),
     .help = "CSV file, one arm per row (a header row is skipped), relative to the config"},
    {.name = "max_arms",
     .type = INK_P_INT,
     .offset = AOFF(max_arms),
     .def = "100000",
     .min = 1,
     .max = BKB_MAX_ARMS,
     .help = "file: most rows accepted (sizes the memory bound)"},
    {.name = "max_dim",
     .type = INK_P_INT,
     .offset = AOFF(max_dim),
     .def = "64",
     .min = 1,
     .max = 1024,
     .help = "file: most columns accepted (sizes the memory bound)"},
    {.name = "random",
     .type = INK_P_OBJECT,
     .offset = AOFF(random),
     .sub = random_params,
     .help = "random arms: {n, lo, hi, seed}"},
    {.name = "space",
     .type = INK_P_JSON,
     .offset = AOFF(space),
     .help = "named parameters: {name: {log: [lo, hi], n} | {lin: [lo, hi], n} | {int: [lo, hi]} "
             "| {choice: [a, b]}, ...} (docs/bkb.md)"},
    {0},
};

static const struct ink_param batch_params[] = {
    {.name = "ratio",
     .type = INK_P_DOUBLE,
     .offset = BOFF(ratio),
     .def = "2",
     .min = 1e-12,
     .max = 1e12,
     .help = "C~: a batch closes when 1 + sum of its arms' batch-start variances exceeds it "
             "(<= 1: sequential)"},
    {0},
};

static const struct ink_param bkb_params[] = {
    {.name = "arms",
     .type = INK_P_OBJECT,
     .offset = COFF(arms),
     .sub = arms_params,
     .flags = INK_PF_REQUIRED,
     .help = "the candidate set: {grid: ...}, {file: ...} or {random: ...}"},
    {.name = "kernel",
     .type = INK_P_OBJECT,
     .offset = COFF(kernel),
     .sub = ink_kernel_params,
     .help = "prior covariance (divided by lambda), e.g. {type: gaussian, sigma: 0.2}"},
    {.name = "lambda",
     .type = INK_P_DOUBLE,
     .offset = COFF(lambda),
     .def = "1",
     .min = 1e-12,
     .max = 1e12,
     .help = "regularizer (heuristic: the noise variance)"},
    {.name = "F",
     .type = INK_P_DOUBLE,
     .offset = COFF(F),
     .def = "1",
     .min = 0,
     .max = 1e12,
     .help = "bound on the RKHS norm of the reward function"},
    {.name = "noise_var",
     .type = INK_P_DOUBLE,
     .offset = COFF(noise_var),
     .def = "1",
     .min = 0,
     .max = 1e12,
     .help = "noise variance proxy"},
    {.name = "delta",
     .type = INK_P_DOUBLE,
     .offset = COFF(delta),
     .def = "0.5",
     .min = 1e-300,
     .max = 0.999999,
     .help = "confidence parameter of beta"},
    {.name = "qbar",
     .type = INK_P_DOUBLE,
     .offset = COFF(qbar),
     .def = "0",
     .min = 0,
     .max = 1e300,
     .help = "dictionary oversampling; 0 = 2 (1 + lambda / mean k(a, a)): 2.02 at lambda 0.01, "
             "4 at lambda 1 for a gaussian kernel (docs/bkb.md, Choosing qbar)"},
    {.name = "max_dict",
     .type = INK_P_INT,
     .offset = COFF(max_dict),
     .def = "512",
     .min = 1,
     .max = 32768,
     .help = "dictionary cap m_max (weighted subsampling above it)"},
    {.name = "beta",
     .type = INK_P_DOUBLE,
     .offset = COFF(beta),
     .def = "0",
     .min = 0,
     .max = 1e12,
     .help = "fixed exploration factor on sigma; 0 = the reference formula"},
    {.name = "batch",
     .type = INK_P_OBJECT,
     .offset = COFF(batch),
     .sub = batch_params,
     .help = "BBKB: {ratio: C} (absent: sequential BKB)"},
    {.name = "seed",
     .type = INK_P_INT,
     .offset = COFF(seed),
     .def = "-1",
     .min = -1,
     .max = 9.2e18,
     .help = "RNG seed; -1 derives it from engine.seed and the node name; with key_by each key "
             "gets one derived from it and the key"},
    {.name = "init",
     .type = INK_P_INT,
     .offset = COFF(init),
     .def = "2",
     .min = 0,
     .max = 1e9,
     .help = "uniformly random arms played before the first UCB suggestion"},
    {.name = "arm_block",
     .type = INK_P_INT,
     .offset = COFF(arm_block),
     .def = "1024",
     .min = 1,
     .max = 1 << 20,
     .help = "arms embedded per block"},
    {.name = "max_memory",
     .type = INK_P_SIZE,
     .offset = COFF(max_memory),
     .def = "1GiB",
     .min = 1 << 16,
     .max = 1e15,
     .help = "memory budget; the arms' embedding is recomputed per block when it does not fit"},
    {.name = "pending_timeout",
     .type = INK_P_DURATION,
     .offset = COFF(pending_timeout),
     .def = "0",
     .min = 0,
     .max = 1e9,
     .help = "service: an asked arm not told or failed within this time is released (0: never)"},
    {.name = "max_trials",
     .type = INK_P_INT,
     .offset = COFF(max_trials),
     .def = "10000",
     .min = 1,
     .max = 1e8,
     .help = "service: finished trials kept for `trials` (older ones are dropped; best stays)"},
    {.name = "lazy",
     .type = INK_P_BOOL,
     .offset = COFF(lazy),
     .def = "true",
     .help = "lazy UCB refresh between batch picks (false: recompute every arm)"},
    {0},
};

/* qbar: 0 picks 2 (1 + lambda / kbar), kbar the mean of k(a, a) over the
 * arms (1 for the gaussian and matern kernels). An arm pulled once with no
 * close neighbour has c var = k/(k + lambda): 1/2 at lambda = k = 1, ~1 at
 * lambda = 0.01. The default keeps such an arm with p = min(1, 2) whatever
 * lambda is; a dropped one is not explained by other arms and forgets its
 * reward (mean back to 0, variance back to k/lambda). Measurements in
 * docs/bkb.md (Choosing qbar). */
double ink_bkb_default_qbar(double lambda, double kbar)
{
    if (!(kbar > 0) || !(lambda > 0)) return 2;
    return 2 * (1 + lambda / kbar);
}

static int bkb_check(const void *conf, struct ink_err *err)
{
    const struct ink_bkb_conf *c = conf;
    const struct ink_bkb_arms_conf *a = &c->arms;
    int rc = bkb_arms_check(a, err);
    if (rc) return rc;
    if (!(c->lambda > 0)) return ink_err_set(err, INK_EINVAL, "lambda must be > 0");
    if (!(c->delta > 0 && c->delta < 1))
        return ink_err_set(err, INK_EINVAL, "delta must be in (0, 1)");
    if (!(c->qbar >= 0))
        return ink_err_set(err, INK_EINVAL, "qbar must be >= 0 (0: the default, from lambda)");
    if (c->max_dict < 1) return ink_err_set(err, INK_EINVAL, "max_dict must be >= 1");
    if (c->arm_block < 1) return ink_err_set(err, INK_EINVAL, "arm_block must be >= 1");
    if (c->batch.set && !(c->batch.ratio > 0))
        return ink_err_set(err, INK_EINVAL, "batch.ratio must be > 0");
    return 0;
}

/* ---- state --------------------------------------------------------------------------- */

struct bkb {
    struct bkb_gp g; /* the posterior and its observations (bkb_gp.c) */
    struct bkb_beta_conf bc;
    double ratio;
    bool batch, lazy;
    int64_t init_rand;
    uint64_t arms_hash;
    size_t bytes;
    void *arena;

    /* per arm, beside g's */
    double *ucb;           /* mu + beta sqrt(var) of the last rebuild (2.4) */
    double *var_h, *ucb_h; /* hallucinated (2.6), upper bounds unless fresh[i] == gen */
    int32_t *pend;         /* waiting for a reward: PEND_OLD or PEND_BATCH (this batch) */
    int32_t *hcount;       /* hallucinated multiplicity */
    uint32_t *fresh;

    /* ask n replies */
    int64_t *out_arms;
    double *out_x, *out_mu, *out_sigma, *out_ucb;

    /* counters */
    int64_t t;                  /* rewards learnt */
    int64_t round;              /* suggestions made */
    int64_t npend;              /* arms asked through the service and not yet told */
    int64_t bpend;              /* ... of which belong to the current BBKB batch */
    int64_t nbatch, told_since; /* picks in the current batch; rewards since the rebuild */
    double beta;
    double logdet; /* BBKB: sum of log(1 + var0) over rewards (2.6 update step 1) */
    double gsum;   /* BBKB global ratio 1 + sum of batch-start variances (2.6 step 6) */
    uint32_t gen;
    bool hall_ready, started;
    struct ink_rng rng;
    struct bkb_svc svc; /* service bookkeeping (bkb_service.c) */
};

/* One allocation, carved the same way by mem_bound (base NULL) and init. */
static void *take(struct ink_carve *c, size_t bytes)
{
    return ink_carve_take(c, bytes);
}

static void layout(struct bkb *s, struct ink_carve *c)
{
    size_t A = (size_t)s->g.A, d = (size_t)s->g.d, mm = (size_t)s->g.mmax, blk = (size_t)s->g.blk;
    size_t D8 = sizeof(double);
    s->g.X = take(c, A * d * D8);
    s->g.kdiag = take(c, A * D8);
    s->g.zn = take(c, A * D8);
    s->g.mu = take(c, A * D8);
    s->g.var = take(c, A * D8);
    s->ucb = take(c, A * D8);
    s->var_h = take(c, A * D8);
    s->ucb_h = take(c, A * D8);
    s->g.ysum = take(c, A * D8);
    s->g.cand_key = take(c, A * D8);
    s->g.cnt = take(c, A * sizeof(int64_t));
    s->pend = take(c, A * sizeof(int32_t));
    s->hcount = take(c, A * sizeof(int32_t));
    s->g.cand = take(c, A * sizeof(int32_t));
    s->g.pulled = take(c, A * sizeof(int32_t));
    s->fresh = take(c, A * sizeof(uint32_t));
    s->g.Z = s->g.storeZ ? take(c, A * mm * D8) : NULL;
    s->g.Kc = s->g.storeZ ? take(c, A * mm * D8) : NULL;
    s->g.slot_of = s->g.storeZ ? take(c, A * sizeof(int32_t)) : NULL;
    s->g.D = take(c, mm * sizeof(int32_t));
    s->g.XD = take(c, d * mm * D8);
    s->g.KDD = take(c, mm * mm * D8);
    s->g.U = take(c, mm * mm * D8);
    s->g.ev = take(c, mm * D8);
    s->g.B = take(c, mm * mm * D8);
    s->g.L = take(c, mm * mm * D8);
    s->g.Lh = take(c, mm * mm * D8);
    s->g.w = take(c, mm * D8);
    s->g.bvec = take(c, mm * D8);
    s->g.r1 = take(c, mm * D8);
    s->g.work = take(c, (size_t)s->g.lwork * D8);
    s->g.iwork = take(c, (size_t)s->g.liwork * sizeof(lapack_int));
    s->g.isuppz = take(c, 2 * mm * sizeof(lapack_int));
    s->g.Xb = take(c, d * blk * D8);
    s->g.Kb = take(c, blk * mm * D8);
    s->g.Zb = take(c, blk * mm * D8);
    s->g.kwork = take(c, ((blk > mm ? blk : mm) + mm) * D8); /* ink_kernel_block: na + nb */
    s->g.yb = take(c, blk * D8);
    s->out_arms = take(c, BKB_MAX_ASK * sizeof(int64_t));
    s->out_x = take(c, BKB_MAX_ASK * d * D8);
    s->out_mu = take(c, BKB_MAX_ASK * D8);
    s->out_sigma = take(c, BKB_MAX_ASK * D8);
    s->out_ucb = take(c, BKB_MAX_ASK * D8);
    bkb_svc_layout(&s->svc, c, s->g.A, s->g.d);
}

/* Sizes for A arms of dimension d; decides whether Z is stored. */
static size_t plan(struct bkb *s, const struct ink_bkb_conf *c, int A, int d)
{
    if (A < 1) A = 1; /* an unchecked conf: sizes stay meaningful */
    if (d < 1) d = 1;
    s->g.A = A;
    s->g.d = d;
    s->g.mmax = (int)(c->max_dict < A ? c->max_dict : A);
    s->g.blk = (int)(c->arm_block < A ? c->arm_block : A);
    if (s->g.mmax < 1) s->g.mmax = 1;
    if (s->g.blk < 1) s->g.blk = 1;
    bkb_gp_lwork(s->g.mmax, &s->g.lwork, &s->g.liwork);
    s->svc.cap = c->max_trials > 0 ? c->max_trials : 1;
    s->svc.space_axes = c->arms.space ? bkb_space_axes(c->arms.space) : 0;
    struct ink_carve cv = {0, 0, 64};
    s->g.storeZ = true;
    layout(s, &cv);
    if (cv.off <= c->max_memory) return cv.off;
    s->g.storeZ = false;
    cv.off = 0;
    layout(s, &cv);
    return cv.off;
}

/* ---- arms ---------------------------------------------------------------------------- */

static void set_ucb(struct bkb *s)
{
    for (int i = 0; i < s->g.A; i++) s->ucb[i] = s->g.mu[i] + s->beta * sqrt(s->g.var[i]);
}

/* Resample, embed, rebuild the posterior; the hallucination restarts from
 * the arms still pending (docs/algorithms.md 2.5 update, 2.6 update step 3). */
static int rebuild(struct bkb *s, struct ink_err *err)
{
    bkb_gp_resample(&s->g, &s->rng, s->hcount); /* hcount: scratch, reset below */
    int rc = bkb_gp_embed(&s->g, err);
    if (rc) return rc;
    rc = bkb_gp_posterior(&s->g, err);
    if (rc) return rc;
    s->beta = bkb_gp_beta(&s->g, &s->bc, s->t, s->logdet);
    set_ucb(s);
    for (int i = 0; i < s->g.A; i++) {
        s->hcount[i] = s->pend[i] ? 1 : 0;
        if (s->pend[i]) s->pend[i] = PEND_OLD;
    }
    s->bpend = 0;
    s->nbatch = s->told_since = 0;
    s->gsum = 1;
    s->hall_ready = false;
    return 0;
}

/* ---- hallucination and picks (docs/algorithms.md 2.6, 5.3) ---------------------------------- */

static void bump_gen(struct bkb *s)
{
    if (++s->gen == 0) {
        memset(s->fresh, 0, (size_t)s->g.A * sizeof(uint32_t));
        s->gen = 1;
    }
}

/* Adds arm j (times h) to the hallucinated factor; every var_h becomes stale. */
static void hallucinate(struct bkb *s, int32_t j, double h)
{
    bkb_gp_hallucinate(&s->g, j, h);
    bump_gen(s);
}

static void ensure_hall(struct bkb *s)
{
    if (s->hall_ready) return;
    for (int k = 0; k < s->g.mr; k++)
        memcpy(s->g.Lh + (size_t)k * s->g.mmax, s->g.L + (size_t)k * s->g.mmax,
               (size_t)s->g.mr * sizeof(double));
    memcpy(s->var_h, s->g.var, (size_t)s->g.A * sizeof(double));
    memcpy(s->ucb_h, s->ucb, (size_t)s->g.A * sizeof(double));
    bump_gen(s);
    for (int i = 0; i < s->g.A; i++) s->fresh[i] = s->gen;
    for (int i = 0; i < s->g.A; i++)
        if (s->hcount[i] > 0) hallucinate(s, i, s->hcount[i]);
    s->hall_ready = true;
}

/* Recomputes var_h, ucb_h of the n arms listed with the hallucinated factor. */
static void refresh(struct bkb *s, const int32_t *idx, int n)
{
    for (int p0 = 0; p0 < n; p0 += s->g.blk) {
        int nb = n - p0 < s->g.blk ? n - p0 : s->g.blk;
        bkb_gp_var_rows(&s->g, s->g.Lh, idx + p0, nb, s->var_h);
        for (int r = 0; r < nb; r++) {
            int i = idx[p0 + r];
            s->ucb_h[i] = s->g.mu[i] + s->beta * sqrt(s->var_h[i]);
            s->fresh[i] = s->gen;
        }
    }
}

static int argmax_free(const struct bkb *s)
{
    int j = -1;
    for (int i = 0; i < s->g.A; i++)
        if (!s->pend[i] && (j < 0 || s->ucb_h[i] > s->ucb_h[j])) j = i;
    return j;
}

/* Exact argmax of the hallucinated UCB over arms not pending. Stale values are
 * upper bounds (variances only shrink as points are added), so refreshing j
 * and every stale arm whose bound reaches j's fresh value suffices. */
static int pick_ucb(struct bkb *s)
{
    if (!s->lazy) {
        int n = 0;
        for (int i = 0; i < s->g.A; i++)
            if (!s->pend[i] && s->fresh[i] != s->gen) s->g.cand[n++] = i;
        refresh(s, s->g.cand, n);
        return argmax_free(s);
    }
    for (;;) {
        int j = argmax_free(s);
        if (j < 0 || s->fresh[j] == s->gen) return j;
        int32_t jj = j;
        refresh(s, &jj, 1);
        double thr = s->ucb_h[j];
        int n = 0;
        for (int i = 0; i < s->g.A; i++)
            if (!s->pend[i] && s->fresh[i] != s->gen && s->ucb_h[i] >= thr) s->g.cand[n++] = i;
        refresh(s, s->g.cand, n);
    }
}

static int pick_random(struct bkb *s)
{
    int j = (int)(ink_rng_uniform(&s->rng) * s->g.A);
    if (j >= s->g.A) j = s->g.A - 1;
    for (int k = 0; k < s->g.A; k++, j = (j + 1) % s->g.A)
        if (!s->pend[j]) break;
    if (s->fresh[j] != s->gen) {
        int32_t jj = j;
        refresh(s, &jj, 1);
    }
    return j;
}

static bool batch_closed(const struct bkb *s)
{
    return s->gsum > s->ratio;
}

/* Before the first reward the embedding is empty: var_h = var for every arm
 * and hallucinated points change nothing, so for a stationary kernel every
 * arm ties. Ties are then broken uniformly at random (not by the smallest
 * index, docs/algorithms.md 2.5) so that parallel workers spread out. */
static int pick_prior(struct bkb *s)
{
    double best = -INFINITY;
    int nt = 0;
    for (int i = 0; i < s->g.A; i++) {
        if (s->pend[i]) continue;
        if (s->ucb[i] > best) best = s->ucb[i], nt = 0;
        if (s->ucb[i] == best) s->g.cand[nt++] = i;
    }
    int k = (int)(ink_rng_uniform(&s->rng) * nt);
    int j = s->g.cand[k < nt ? k : nt - 1];
    s->var_h[j] = s->g.var[j];
    s->ucb_h[j] = s->ucb[j];
    s->fresh[j] = s->gen;
    return j;
}

struct pick {
    int arm;
    double mu, sigma, ucb;
    int64_t round;
};

/* Next arm: random while fewer than `init` arms were played or are pending,
 * then the hallucinated UCB argmax; the arm joins the hallucination. Returns
 * -1 when every arm is pending. */
static int pick_next(struct bkb *s, struct pick *pk)
{
    if (s->npend >= s->g.A) return -1;
    ensure_hall(s);
    if (!batch_closed(s)) s->nbatch++;
    int j = s->t + s->npend < s->init_rand ? pick_random(s)
            : s->g.mr == 0                 ? pick_prior(s)
                                           : pick_ucb(s);
    pk->arm = j;
    pk->mu = s->g.mu[j];
    pk->sigma = sqrt(s->var_h[j]);
    pk->ucb = s->ucb_h[j];
    pk->round = s->round++;
    s->hcount[j]++;
    s->gsum += s->g.var[j]; /* BBKB global rule: batch-start variance (2.6 step 6) */
    hallucinate(s, j, 1.0);
    return 0;
}

/* Learns one reward. BKB rebuilds now; BBKB once its batch is closed and none
 * of the batch's arms is still waiting for its reward, or as many rewards as
 * the batch had arms came in (a worker that never reports cannot stall the
 * model). Arms still pending then are carried into the next batch as
 * hallucinated points. */
static int apply_reward(struct bkb *s, int j, double y, struct ink_err *err)
{
    if (s->g.cnt[j] == 0) s->g.pulled[s->g.npulled++] = j;
    s->g.cnt[j]++;
    s->g.ysum[j] += y;
    s->t++;
    if (s->batch) s->logdet += log1p(s->g.var[j]); /* 2.6 update step 1, batch-start var */
    s->told_since++;
    if (!s->batch) return rebuild(s, err);
    if (batch_closed(s) && (s->bpend == 0 || s->told_since >= s->nbatch)) return rebuild(s, err);
    return 0;
}

/* ---- records ------------------------------------------------------------------------- */

static int find_arm(const struct bkb *s, const struct ink_record *r, int *j, struct ink_err *err)
{
    if (r->flags & INK_HAS_ARM) {
        if (r->arm < 0 || r->arm >= s->g.A)
            return ink_err_set(err, INK_EINVAL, "arm %lld out of range [0, %d)", (long long)r->arm,
                               s->g.A);
        *j = (int)r->arm;
        return 0;
    }
    if (r->flags & INK_HAS_X) {
        if ((int)r->dim != s->g.d)
            return ink_err_set(err, INK_EDIM, "x has %u values, bkb takes %d (its arms' dimension)",
                               r->dim, s->g.d);
        for (int i = 0; i < s->g.A; i++) {
            const double *a = s->g.X + (size_t)i * s->g.d;
            int k = 0;
            while (k < s->g.d && fabs(a[k] - r->x[k]) <= BKB_X_TOL * (1 + fabs(a[k]))) k++;
            if (k == s->g.d) {
                *j = i;
                return 0;
            }
        }
        return ink_err_set(err, INK_EINVAL, "x is not one of the %d arms", s->g.A);
    }
    int rc = bkb_svc_find_params(&s->svc, r, j, err); /* named space: `params` */
    if (rc <= 0) return rc;
    return ink_err_set(err, INK_EINVAL, "the record names no arm (give `arm`, `x` or `params`)");
}

static int check_y(const struct ink_record *r, struct ink_err *err)
{
    if (!(r->flags & INK_HAS_Y)) return ink_err_set(err, INK_EINVAL, "a reward needs `y`");
    if (!isfinite(r->y)) return ink_err_set(err, INK_EINVAL, "y is not finite");
    return 0;
}

static void add_common(const struct bkb *s, struct ink_record *r, int64_t round)
{
    ink_record_add_f64(r, "beta", s->beta);
    ink_record_add_i64(r, "dict", s->g.m);
    ink_record_add_i64(r, "round", round);
}

static int emit_pick(struct bkb *s, const struct ink_record *in, const struct pick *pk,
                     const struct ink_emitter *out)
{
    struct ink_record r;
    ink_record_derive(&r, in);
    r.flags &= ~(uint32_t)INK_HAS_Y;
    r.flags |= INK_HAS_ARM | INK_HAS_X;
    r.arm = pk->arm;
    r.x = s->g.X + (size_t)pk->arm * s->g.d;
    r.dim = (uint32_t)s->g.d;
    ink_record_add_f64(&r, "mu", pk->mu);
    ink_record_add_f64(&r, "sigma", pk->sigma);
    ink_record_add_f64(&r, "ucb", pk->ucb);
    add_common(s, &r, pk->round);
    int64_t arm = pk->arm;
    bkb_svc_add_params(&s->svc, &r, "params", &arm, 1, false);
    return ink_emit(out, &r);
}

static int suggest(struct bkb *s, const struct ink_record *in, const struct ink_emitter *out,
                   struct ink_err *err)
{
    struct pick pk;
    if (pick_next(s, &pk) < 0)
        return ink_err_set(err, INK_ERANGE, "every arm is waiting for its reward");
    return emit_pick(s, in, &pk, out);
}

static int bkb_process(void *state, const struct ink_record *in, const struct ink_emitter *out,
                       struct ink_err *err)
{
    struct bkb *s = state;
    bool kick = !(in->flags & (INK_HAS_Y | INK_HAS_ARM | INK_HAS_X));
    int j = -1, rc;
    if (!kick) {
        if ((rc = check_y(in, err)) || (rc = find_arm(s, in, &j, err))) return rc;
    }
    if (!s->started) {
        s->started = true;
        rc = suggest(s, in, out, err);
        if (rc || kick) return rc;
    } else if (kick) {
        return suggest(s, in, out, err);
    }
    if ((rc = apply_reward(s, j, in->y, err))) return rc;
    return suggest(s, in, out, err);
}

/* A service pick: the arm waits for its reward; it belongs to the current
 * BBKB batch unless that batch was already closed. */
static int pick_pending(struct bkb *s, struct pick *pk)
{
    bool in_batch = s->batch && !batch_closed(s);
    if (pick_next(s, pk) < 0) return -1;
    s->pend[pk->arm] = in_batch ? PEND_BATCH : PEND_OLD;
    s->npend++;
    bkb_svc_asked(&s->svc, pk->arm, pk->round);
    if (in_batch) s->bpend++;
    return 0;
}

static int ask(struct bkb *s, const struct ink_record *req, const struct ink_emitter *out,
               struct ink_err *err)
{
    int64_t n = 1;
    int has_n = ink_record_extra_i64(req, "n", &n);
    if (has_n < 0) return ink_err_set(err, INK_EINVAL, "ask: n must be an integer");
    if (!has_n) {
        struct pick pk;
        if (pick_pending(s, &pk) < 0)
            return ink_err_set(err, INK_ERANGE, "every arm is waiting for its reward");
        return emit_pick(s, req, &pk, out);
    }
    int64_t nfree = s->g.A - s->npend;
    if (n < 0 || n > BKB_MAX_ASK)
        return ink_err_set(err, INK_EINVAL, "ask: n = %lld, expected 0 .. %d", (long long)n,
                           BKB_MAX_ASK);
    if (nfree == 0) return ink_err_set(err, INK_ERANGE, "every arm is waiting for its reward");
    if (n > nfree)
        return ink_err_set(err, INK_EINVAL, "ask: n = %lld but only %lld arms are free",
                           (long long)n, (long long)nfree);
    bool automatic = n == 0;
    int k = 0;
    int64_t round0 = s->round;
    for (;;) {
        struct pick pk;
        if (pick_pending(s, &pk) < 0) break;
        s->out_arms[k] = pk.arm;
        memcpy(s->out_x + (size_t)k * s->g.d, s->g.X + (size_t)pk.arm * s->g.d,
               s->g.d * sizeof(double));
        s->out_mu[k] = pk.mu;
        s->out_sigma[k] = pk.sigma;
        s->out_ucb[k] = pk.ucb;
        k++;
        if (!automatic && k == n) break;
        if (automatic && (!s->batch || batch_closed(s) || k == BKB_MAX_ASK)) break;
    }
    struct ink_record r;
    ink_record_derive(&r, req);
    r.flags &= ~(uint32_t)(INK_HAS_Y | INK_HAS_ARM | INK_HAS_X);
    r.dim = 0;
    r.x = NULL;
    ink_record_add_i64s(&r, "arms", s->out_arms, (uint32_t)k);
    ink_record_add_f64m(&r, "xs", s->out_x, (uint32_t)s->g.d, (uint32_t)k);
    ink_record_add_f64s(&r, "mu", s->out_mu, (uint32_t)k);
    ink_record_add_f64s(&r, "sigma", s->out_sigma, (uint32_t)k);
    ink_record_add_f64s(&r, "ucb", s->out_ucb, (uint32_t)k);
    add_common(s, &r, round0);
    bkb_svc_add_params(&s->svc, &r, "params", s->out_arms, k, true);
    return ink_emit(out, &r);
}

static int tell(struct bkb *s, const struct ink_record *req, const struct ink_emitter *out,
                struct ink_err *err)
{
    int j, rc;
    if ((rc = check_y(req, err)) || (rc = find_arm(s, req, &j, err))) return rc;
    if (!s->pend[j])
        return ink_err_set(err, INK_EINVAL,
                           "tell: arm %d is not waiting for a reward (never asked, already "
                           "told, failed, or expired after pending_timeout)",
                           j);
    if (s->pend[j] == PEND_BATCH) s->bpend--;
    s->pend[j] = PEND_NONE;
    s->npend--;
    if ((rc = apply_reward(s, j, req->y, err))) return rc;
    bkb_svc_told(&s->svc, j, req->y);
    struct ink_record r;
    ink_record_derive(&r, req);
    ink_record_add_i64(&r, "pulls", s->t);
    add_common(s, &r, s->round);
    return ink_emit(out, &r);
}

static int predict(struct bkb *s, const struct ink_record *req, const struct ink_emitter *out,
                   struct ink_err *err)
{
    int j, rc;
    if ((rc = find_arm(s, req, &j, err))) return rc;
    struct ink_record r;
    ink_record_derive(&r, req);
    double sig = sqrt(s->g.var[j]);
    ink_record_add_f64(&r, "mu", s->g.mu[j]);
    ink_record_add_f64(&r, "sigma", sig);
    ink_record_add_f64(&r, "ucb", s->g.mu[j] + s->beta * sig);
    add_common(s, &r, s->round);
    return ink_emit(out, &r);
}

/* A keyed study (key_by) is created by its first ask (docs/bkb.md). */
static bool bkb_query_creates(const struct ink_record *req)
{
    return ink_record_op_is(req, "ask");
}

static int bkb_query(void *state, const struct ink_record *req, const struct ink_emitter *out,
                     struct ink_err *err)
{
    struct bkb *s = state;
    struct bkb_arms_view v = {s->g.A,  s->g.d,  s->g.X,    s->g.mu,  s->g.var,
                              s->beta, s->pend, &s->npend, &s->bpend};
    bkb_svc_begin(&s->svc, &v, req); /* request time; pending_timeout */
    if (ink_record_op_is(req, "ask")) return ask(s, req, out, err);
    if (ink_record_op_is(req, "tell")) return tell(s, req, out, err);
    if (ink_record_op_is(req, "predict")) return predict(s, req, out, err);
    int rc = bkb_svc_query(&s->svc, &v, req, out, err);
    if (rc <= 0) return rc;
    if (!(req->flags & INK_HAS_OP))
        return ink_err_set(err, INK_EINVAL, "a request needs `op` (%s)", bkb_op_names);
    return ink_err_set(err, INK_ENOTSUP, "unknown op '%.*s' (bkb knows %s)",
                       (int)(req->op_len > 64 ? 64 : req->op_len), req->op, bkb_op_names);
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static size_t bkb_mem_bound(const void *conf)
{
    const struct ink_bkb_conf *c = conf;
    struct bkb s = {0};
    int A, d;
    if (bkb_arms_dims(&c->arms, &A, &d) == 0) return plan(&s, c, A, d) + 64; /* + arena alignment */
    /* file: sized by max_arms x max_dim; init never exceeds max_memory */
    size_t b = plan(&s, c, (int)c->arms.max_arms, (int)c->arms.max_dim);
    struct ink_carve cv = {0, 0, 64};
    s.g.storeZ = true;
    layout(&s, &cv);
    size_t hi = cv.off < c->max_memory ? cv.off : (b > c->max_memory ? b : c->max_memory);
    return hi + 64;
}

static void bkb_fini(void *state)
{
    struct bkb *s = state;
    free(s->arena);
    s->arena = NULL;
}

static int bkb_init(void *state, const void *conf, const struct ink_op_init *ini,
                    struct ink_err *err)
{
    struct bkb *s = state;
    const struct ink_bkb_conf *c = conf;
    int rc = bkb_check(c, err);
    if (rc) return rc;
    int A = 0, d = 0;
    char path[4096];
    bool from_file = bkb_arms_dims(&c->arms, &A, &d) != 0;
    if (from_file) {
        if (!ink_path_resolve(ini ? ini->base_dir : NULL, c->arms.file, path, sizeof path))
            return ink_err_set(err, INK_EINVAL, "arms.file: path too long");
        if ((rc = bkb_arms_file(path, NULL, &A, &d, c->arms.max_arms, c->arms.max_dim, err)))
            return rc;
    }
    if ((rc = ink_kernel_init(&s->g.kern, &c->kernel, d, err))) return rc;
    s->g.lambda = c->lambda;
    s->g.qbar = c->qbar;
    s->batch = c->batch.set;
    s->ratio = c->batch.set ? c->batch.ratio : 0;
    s->bc = (struct bkb_beta_conf){.F = c->F,
                                   .noise_var = c->noise_var,
                                   .delta = c->delta,
                                   .fixed = c->beta,
                                   .batch = s->batch,
                                   .ratio = s->ratio};
    s->lazy = c->lazy;
    s->init_rand = c->init;
    size_t bytes = plan(s, c, A, d);
    if (bytes > c->max_memory)
        return ink_err_set(err, INK_ENOMEM, "needs %zu bytes, max_memory is %llu", bytes,
                           (unsigned long long)c->max_memory);
    s->arena = calloc(1, bytes + 64);
    if (!s->arena) return ink_err_set(err, INK_ENOMEM, "cannot allocate %zu bytes", bytes);
    s->bytes = bytes;
    struct ink_carve cv = {(char *)(((uintptr_t)s->arena + 63) & ~(uintptr_t)63), 0, 64};
    layout(s, &cv);
    if (c->arms.grid.set)
        bkb_arms_grid(&c->arms.grid, s->g.X, A, d);
    else if (c->arms.random.set)
        bkb_arms_random(&c->arms.random, s->g.X, A, d);
    else if (c->arms.space && s->svc.space) {
        bkb_space_parse(c->arms.space, s->svc.space, err); /* checked by bkb_check */
        bkb_space_arms(s->svc.space, s->g.X);
    } else if ((rc = bkb_arms_file(path, s->g.X, &A, &d, c->arms.max_arms, c->arms.max_dim, err))) {
        bkb_fini(s);
        return rc;
    }
    s->arms_hash = bkb_arms_hash(s->g.A, s->g.d, s->g.X);
    ink_kernel_diag(&s->g.kern, s->g.X, A, s->g.kdiag);
    if (!(s->g.qbar > 0)) {
        double kbar = 0;
        for (int i = 0; i < A; i++) kbar += s->g.kdiag[i];
        s->g.qbar = ink_bkb_default_qbar(s->g.lambda, kbar / A);
    }
    if (s->g.storeZ)
        for (int i = 0; i < A; i++) s->g.slot_of[i] = -1;
    /* The engine's seed (rls_sketch.c: `seed` itself unkeyed, one per key
     * with key_by); c->seed for a caller without the engine. */
    uint64_t seed = ini ? ini->seed : (c->seed >= 0 ? (uint64_t)c->seed : 0);
    ink_rng_seed(&s->rng, seed);
    /* Prior: D empty, mu = 0, var = kdiag / lambda (docs/algorithms.md 2.11). */
    s->g.m = s->g.mr = 0;
    if ((rc = bkb_gp_posterior(&s->g, err))) {
        bkb_fini(s);
        return rc;
    }
    s->beta = bkb_gp_beta(&s->g, &s->bc, s->t, s->logdet);
    set_ucb(s);
    s->gsum = 1;
    bkb_svc_init(&s->svc, c->pending_timeout);
    return 0;
}

/* ---- save / load --------------------------------------------------------------------- */

static int bkb_save(const void *state, msgpack_packer *pk)
{
    const struct bkb *s = state;
    size_t A = (size_t)s->g.A, blk = (size_t)s->g.mmax * s->g.mr;
    msgpack_pack_map(pk, 37 + BKB_SVC_SAVE_KEYS);
#define PI64(k, v) (ink_pack_key(pk, k), msgpack_pack_int64(pk, (int64_t)(v)))
#define PF64(k, v) (ink_pack_key(pk, k), msgpack_pack_double(pk, (v)))
    PI64("version", BKB_STATE_VERSION);
    PI64("A", s->g.A);
    PI64("d", s->g.d);
    PI64("mmax", s->g.mmax);
    ink_pack_key(pk, "arms_hash");
    msgpack_pack_uint64(pk, s->arms_hash);
    PI64("t", s->t);
    PI64("round", s->round);
    PI64("npend", s->npend);
    PI64("bpend", s->bpend);
    PI64("nbatch", s->nbatch);
    PI64("told_since", s->told_since);
    PI64("npulled", s->g.npulled);
    PI64("cap_hits", s->g.cap_hits);
    PI64("empty_fixes", s->g.empty_fixes);
    PI64("m", s->g.m);
    PI64("mr", s->g.mr);
    PI64("gen", s->gen);
    PI64("flags", (s->hall_ready ? 1 : 0) | (s->started ? 2 : 0));
    PF64("beta", s->beta);
    PF64("logdet", s->logdet);
    PF64("gsum", s->gsum);
    ink_pack_key(pk, "rng");
    ink_pack_rng(pk, &s->rng);
    ink_pack_key(pk, "cnt");
    ink_pack_i64s(pk, s->g.cnt, A);
    ink_pack_key(pk, "ysum");
    ink_pack_f64s(pk, s->g.ysum, A);
    ink_pack_key(pk, "pend");
    ink_pack_i32s(pk, s->pend, A);
    ink_pack_key(pk, "hcount");
    ink_pack_i32s(pk, s->hcount, A);
    ink_pack_key(pk, "fresh");
    ink_pack_i32s(pk, (const int32_t *)s->fresh, A);
    ink_pack_key(pk, "pulled");
    ink_pack_i32s(pk, s->g.pulled, (size_t)s->g.npulled);
    ink_pack_key(pk, "D");
    ink_pack_i32s(pk, s->g.D, (size_t)s->g.m);
    /* first mr columns (ld mmax) are contiguous */
    ink_pack_key(pk, "B");
    ink_pack_f64s(pk, s->g.B, blk);
    ink_pack_key(pk, "L");
    ink_pack_f64s(pk, s->g.L, blk);
    ink_pack_key(pk, "Lh");
    ink_pack_f64s(pk, s->g.Lh, blk);
    ink_pack_key(pk, "w");
    ink_pack_f64s(pk, s->g.w, (size_t)s->g.mr);
    ink_pack_key(pk, "zn");
    ink_pack_f64s(pk, s->g.zn, A);
    ink_pack_key(pk, "mu");
    ink_pack_f64s(pk, s->g.mu, A);
    ink_pack_key(pk, "var");
    ink_pack_f64s(pk, s->g.var, A);
    ink_pack_key(pk, "var_h");
    ink_pack_f64s(pk, s->var_h, A);
    /* ucb and ucb_h follow from mu, var, var_h, beta bit-exactly, but are cheap */
    bkb_svc_save(&s->svc, pk, s->g.A);
#undef PI64
#undef PF64
    return 0;
}

static int get_i64(const msgpack_object *o, const char *k, int64_t lo, int64_t hi, int64_t *v,
                   struct ink_err *err)
{
    int rc = ink_state_i64(o, k, v, err);
    if (rc) return rc;
    if (*v < lo || *v > hi)
        return ink_err_set(err, INK_ESTATE, "state: %s = %lld out of range", k, (long long)*v);
    return 0;
}

/* n int32 values of a stored array, each in [lo, hi]; D must not repeat an arm
 * (a quadratic scan, m <= max_dict). */
static int check_i32s(const msgpack_object *obj, const char *key, int64_t n, int64_t lo, int64_t hi,
                      struct ink_err *err)
{
    const msgpack_object *o;
    int rc = ink_state_get(obj, key, &o, err);
    if (rc) return rc;
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != (uint64_t)n * 4)
        return ink_err_set(err, INK_ESTATE, "state: %s is not %lld int32 values", key,
                           (long long)n);
    const char *p = o->via.bin.ptr;
    bool distinct = strcmp(key, "D") == 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        if (v < lo || v > hi)
            return ink_err_set(err, INK_ESTATE, "state: %s[%lld] = %d out of range", key,
                               (long long)i, (int)v);
        for (int64_t j = 0; distinct && j < i; j++) {
            int32_t u;
            memcpy(&u, p + 4 * j, 4);
            if (u == v) return ink_err_set(err, INK_ESTATE, "state: D repeats arm %d", (int)v);
        }
    }
    return 0;
}

static int bkb_load(void *state, const msgpack_object *obj, struct ink_err *err)
{
    struct bkb *s = state;
    if (obj->type != MSGPACK_OBJECT_MAP) return ink_err_set(err, INK_ESTATE, "state: not a map");
    int64_t ver, A, d, mmax, t, round, npend, bpend, nbatch, told, npulled, caph, empf, m, mr, gen,
        flags;
    uint64_t hash;
    double beta, logdet, gsum;
    int rc;
    if ((rc = ink_state_i64(obj, "version", &ver, err))) return rc;
    if (ver != 1 && ver != BKB_STATE_VERSION)
        return ink_err_set(err, INK_ESTATE, "state: bkb version %lld, this build reads 1 and %d",
                           (long long)ver, BKB_STATE_VERSION);
    if ((rc = ink_state_i64(obj, "A", &A, err)) || (rc = ink_state_i64(obj, "d", &d, err)) ||
        (rc = ink_state_i64(obj, "mmax", &mmax, err)) ||
        (rc = ink_state_u64(obj, "arms_hash", &hash, err)))
        return rc;
    if (A != s->g.A || d != s->g.d || mmax != s->g.mmax || hash != s->arms_hash)
        return ink_err_set(err, INK_ESTATE,
                           "state: saved for %lld arms of dimension %lld (max_dict %lld), not "
                           "this arm set",
                           (long long)A, (long long)d, (long long)mmax);
    if ((rc = get_i64(obj, "t", 0, INT64_MAX, &t, err)) ||
        (rc = get_i64(obj, "round", 0, INT64_MAX, &round, err)) ||
        (rc = get_i64(obj, "npend", 0, A, &npend, err)) ||
        (rc = get_i64(obj, "bpend", 0, npend, &bpend, err)) ||
        (rc = get_i64(obj, "nbatch", 0, INT64_MAX, &nbatch, err)) ||
        (rc = get_i64(obj, "told_since", 0, INT64_MAX, &told, err)) ||
        (rc = get_i64(obj, "npulled", 0, A, &npulled, err)) ||
        (rc = get_i64(obj, "cap_hits", 0, INT64_MAX, &caph, err)) ||
        (rc = get_i64(obj, "empty_fixes", 0, INT64_MAX, &empf, err)) ||
        (rc = get_i64(obj, "m", 0, mmax, &m, err)) || (rc = get_i64(obj, "mr", 0, m, &mr, err)) ||
        (rc = get_i64(obj, "gen", 0, UINT32_MAX, &gen, err)) ||
        (rc = get_i64(obj, "flags", 0, 3, &flags, err)) ||
        (rc = ink_state_f64(obj, "beta", &beta, err)) ||
        (rc = ink_state_f64(obj, "logdet", &logdet, err)) ||
        (rc = ink_state_f64(obj, "gsum", &gsum, err)))
        return rc;
    size_t nb = (size_t)mmax * (size_t)mr;
    struct {
        const char *k;
        size_t elem, want;
    } arrays[] = {{"cnt", 8, A},   {"ysum", 8, A},         {"pend", 4, A}, {"hcount", 4, A},
                  {"fresh", 4, A}, {"pulled", 4, npulled}, {"D", 4, m},    {"B", 8, nb},
                  {"L", 8, nb},    {"Lh", 8, nb},          {"w", 8, mr},   {"zn", 8, A},
                  {"mu", 8, A},    {"var", 8, A},          {"var_h", 8, A}};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        if ((rc = ink_state_need_len(obj, arrays[i].k, arrays[i].elem, arrays[i].want, err)))
            return rc;
    }
    struct ink_rng rng;
    if ((rc = ink_state_rng(obj, "rng", &rng, err))) return rc;
    /* Index arrays are range-checked in the blob, before anything is copied. */
    if ((rc = check_i32s(obj, "D", m, 0, A - 1, err)) ||
        (rc = check_i32s(obj, "pulled", npulled, 0, A - 1, err)) ||
        (rc = check_i32s(obj, "pend", A, PEND_NONE, PEND_BATCH, err)) ||
        (rc = check_i32s(obj, "hcount", A, 0, INT32_MAX, err)))
        return rc;
    if ((rc = bkb_svc_load(&s->svc, obj, s->g.A, (int)ver, err))) return rc;
    /* Everything checked: copy (cannot fail past this point). */
    ink_state_i64s(obj, "cnt", s->g.cnt, A, err);
    ink_state_f64s(obj, "ysum", s->g.ysum, A, err);
    ink_state_i32s(obj, "pend", s->pend, A, err);
    ink_state_i32s(obj, "hcount", s->hcount, A, err);
    ink_state_i32s(obj, "fresh", (int32_t *)s->fresh, A, err);
    ink_state_i32s(obj, "pulled", s->g.pulled, npulled, err);
    ink_state_i32s(obj, "D", s->g.D, m, err);
    ink_state_f64s(obj, "B", s->g.B, nb, err);
    ink_state_f64s(obj, "L", s->g.L, nb, err);
    ink_state_f64s(obj, "Lh", s->g.Lh, nb, err);
    ink_state_f64s(obj, "w", s->g.w, mr, err);
    ink_state_f64s(obj, "zn", s->g.zn, A, err);
    ink_state_f64s(obj, "mu", s->g.mu, A, err);
    ink_state_f64s(obj, "var", s->g.var, A, err);
    ink_state_f64s(obj, "var_h", s->var_h, A, err);
    s->rng = rng;
    s->t = t;
    s->round = round;
    s->npend = npend;
    s->bpend = bpend;
    s->nbatch = nbatch;
    s->told_since = told;
    s->g.npulled = npulled;
    s->g.cap_hits = caph;
    s->g.empty_fixes = empf;
    s->g.m = (int)m;
    s->g.mr = (int)mr;
    s->gen = (uint32_t)gen;
    s->hall_ready = flags & 1;
    s->started = (flags & 2) != 0;
    s->beta = beta;
    s->logdet = logdet;
    s->gsum = gsum;
    bkb_gp_restore(&s->g);
    set_ucb(s);
    for (int i = 0; i < s->g.A; i++) s->ucb_h[i] = s->g.mu[i] + s->beta * sqrt(s->var_h[i]);
    return 0;
}

static double gauge_dict(const void *state)
{
    return ((const struct bkb *)state)->g.m;
}

static double gauge_expired(const void *state)
{
    return bkb_svc_gauge_expired(&((const struct bkb *)state)->svc);
}

static double gauge_pending(const void *state)
{
    return (double)((const struct bkb *)state)->npend;
}

static const struct ink_op_gauge bkb_gauges[] = {
    {"dict", "dictionary size", gauge_dict},
    {"pending", "bkb: arms asked and not yet told, failed or expired", gauge_pending},
    {"pending_expired", "bkb: asked arms released by pending_timeout (total)", gauge_expired},
    {0},
};

const struct ink_op_vtable ink_op_bkb = {
    .name = "bkb",
    .kind = INK_NODE_OPERATOR,
    .summary = "budgeted kernelized bandit (BKB / batched BBKB): ask for arms, tell rewards",
    .params = bkb_params,
    .conf_size = sizeof(struct ink_bkb_conf),
    .state_size = sizeof(struct bkb),
    .check = bkb_check,
    .mem_bound = bkb_mem_bound,
    .init = bkb_init,
    .process = bkb_process,
    .query = bkb_query,
    .query_creates = bkb_query_creates,
    .save = bkb_save,
    .load = bkb_load,
    .fini = bkb_fini,
    .gauges = bkb_gauges,
};
