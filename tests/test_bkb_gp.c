/* bkb's GP / Nystrom maths (operators/bkb_gp.c) on arrays, against the exact
 * GP posterior computed here from the definitions (docs/algorithms.md 2.4):
 * with every pulled arm in the dictionary the projection is exact, so
 *   mu(x)  = k_xS (C K_SS + lambda I)^-1 ysum
 *   var(x) = (k(x,x) - k_xS (C K_SS + lambda I)^-1 C k_Sx) / lambda
 * with S the pulled arms and C their pull counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../operators/bkb_gp.h"
#include "ink_test.h"

#define A_  7
#define D_  2
#define SIG 0.7
#define LAM 0.3

static const double arms[A_ * D_] = {0,   0,   0.5,  0.1, 1,   1,   -0.4,
                                     0.8, 0.3, -0.6, 1.2, 0.2, 0.1, 0.4};

static double rbf(const double *x, const double *z)
{
    double s = 0;
    for (int k = 0; k < D_; k++) s += (x[k] - z[k]) * (x[k] - z[k]);
    return exp(-s / (2 * SIG * SIG));
}

/* Solves M x = b in place (n <= A_, partial pivoting). */
static void solve(double *M, double *b, int n)
{
    for (int c = 0; c < n; c++) {
        int p = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(M[r * n + c]) > fabs(M[p * n + c])) p = r;
        for (int k = 0; k < n; k++) {
            double t = M[c * n + k];
            M[c * n + k] = M[p * n + k];
            M[p * n + k] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int r = c + 1; r < n; r++) {
            double f = M[r * n + c] / M[c * n + c];
            for (int k = c; k < n; k++) M[r * n + k] -= f * M[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (int c = n - 1; c >= 0; c--) {
        for (int k = c + 1; k < n; k++) b[c] -= M[c * n + k] * b[k];
        b[c] /= M[c * n + c];
    }
}

/* Exact posterior of arm x given pulls cnt (real-valued: hallucinated
 * counts) and reward sums ysum. */
static void exact(const double *cnt, const double *ysum, int x, double *mu, double *var)
{
    int S[A_], n = 0;
    for (int i = 0; i < A_; i++)
        if (cnt[i] > 0) S[n++] = i;
    double M[A_ * A_], b[A_], v[A_];
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++)
            M[r * n + c] = cnt[S[r]] * rbf(arms + S[r] * D_, arms + S[c] * D_) + (r == c ? LAM : 0);
    for (int r = 0; r < n; r++) b[r] = ysum[S[r]];
    solve(M, b, n);
    *mu = 0;
    for (int r = 0; r < n; r++) *mu += rbf(arms + x * D_, arms + S[r] * D_) * b[r];
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++)
            M[r * n + c] = cnt[S[r]] * rbf(arms + S[r] * D_, arms + S[c] * D_) + (r == c ? LAM : 0);
    for (int r = 0; r < n; r++) v[r] = cnt[S[r]] * rbf(arms + S[r] * D_, arms + x * D_);
    solve(M, v, n);
    double q = 0;
    for (int r = 0; r < n; r++) q += rbf(arms + x * D_, arms + S[r] * D_) * v[r];
    *var = (1.0 - q) / LAM;
}

struct fixture {
    struct bkb_gp g;
    struct ink_rng rng;
    int32_t scratch[A_];
    void *blocks[64];
    int nb;
};

static void *arr(struct fixture *f, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    f->blocks[f->nb++] = p;
    return p;
}

/* Every array of a bkb_gp over the arms above, blk rows per block. */
static void setup(struct fixture *f, bool storeZ, int blk)
{
    memset(f, 0, sizeof *f);
    struct bkb_gp *g = &f->g;
    struct ink_kernel_conf kc = {.set = true, .type = INK_K_GAUSSIAN, .sigma = SIG};
    struct ink_err err = {0};
    REQUIRE(ink_kernel_init(&g->kern, &kc, D_, &err) == 0);
    g->lambda = LAM;
    g->qbar = 1e9; /* every pulled arm enters the dictionary */
    g->A = A_, g->d = D_, g->mmax = A_, g->blk = blk, g->storeZ = storeZ;
    size_t A = A_, d = D_, mm = A_, b = (size_t)blk, D8 = sizeof(double);
    bkb_gp_lwork(g->mmax, &g->lwork, &g->liwork);
    g->X = arr(f, A * d, D8);
    memcpy(g->X, arms, sizeof arms);
    g->kdiag = arr(f, A, D8), g->zn = arr(f, A, D8), g->mu = arr(f, A, D8);
    g->var = arr(f, A, D8), g->ysum = arr(f, A, D8), g->cand_key = arr(f, A, D8);
    g->cnt = arr(f, A, sizeof(int64_t));
    g->cand = arr(f, A, sizeof(int32_t)), g->pulled = arr(f, A, sizeof(int32_t));
    if (storeZ) {
        g->Z = arr(f, A * mm, D8), g->Kc = arr(f, A * mm, D8);
        g->slot_of = arr(f, A, sizeof(int32_t));
        for (int i = 0; i < A_; i++) g->slot_of[i] = -1;
    }
    g->D = arr(f, mm, sizeof(int32_t));
    double **mats[] = {&g->KDD, &g->U, &g->B, &g->L, &g->Lh};
    for (size_t i = 0; i < sizeof mats / sizeof *mats; i++) *mats[i] = arr(f, mm * mm, D8);
    g->XD = arr(f, d * mm, D8), g->ev = arr(f, mm, D8), g->w = arr(f, mm, D8);
    g->bvec = arr(f, mm, D8), g->r1 = arr(f, mm, D8);
    g->work = arr(f, (size_t)g->lwork, D8);
    g->iwork = arr(f, (size_t)g->liwork, sizeof(lapack_int));
    g->isuppz = arr(f, 2 * mm, sizeof(lapack_int));
    g->Xb = arr(f, d * b, D8), g->Kb = arr(f, b * mm, D8), g->Zb = arr(f, b * mm, D8);
    g->kwork = arr(f, ((b > mm ? b : mm) + mm), D8), g->yb = arr(f, b, D8);
    ink_kernel_diag(&g->kern, g->X, A_, g->kdiag);
    ink_rng_seed(&f->rng, 7);
}

static void teardown(struct fixture *f)
{
    for (int i = 0; i < f->nb; i++) free(f->blocks[i]);
}

static void pull(struct bkb_gp *g, int i, double y)
{
    if (g->cnt[i]++ == 0) g->pulled[g->npulled++] = i;
    g->ysum[i] += y;
}

static void check_exact(struct fixture *f)
{
    struct bkb_gp *g = &f->g;
    double cnt[A_];
    for (int i = 0; i < A_; i++) cnt[i] = (double)g->cnt[i];
    for (int x = 0; x < A_; x++) {
        double mu, var;
        exact(cnt, g->ysum, x, &mu, &var);
        CHECK_NEAR(g->mu[x], mu, 1e-9);
        CHECK_NEAR(g->var[x], var, 1e-9);
    }
}

static void posterior_matches_exact_gp(bool storeZ, int blk)
{
    struct fixture f;
    setup(&f, storeZ, blk);
    struct bkb_gp *g = &f.g;
    struct ink_err err = {0};
    REQUIRE(bkb_gp_posterior(g, &err) == 0); /* prior: D empty */
    for (int i = 0; i < A_; i++) {
        CHECK(g->mu[i] == 0);
        CHECK_NEAR(g->var[i], 1 / LAM, 1e-15);
    }
    pull(g, 0, 1.0), pull(g, 0, 0.6), pull(g, 2, -0.5), pull(g, 5, 0.9), pull(g, 5, 1.1);
    pull(g, 5, 0.7);
    bkb_gp_resample(g, &f.rng, f.scratch);
    CHECK(g->m == 3 && g->cap_hits == 0 && g->empty_fixes == 0);
    REQUIRE(bkb_gp_embed(g, &err) == 0);
    CHECK(g->mr == 3);
    REQUIRE(bkb_gp_posterior(g, &err) == 0);
    check_exact(&f);

    /* more pulls, one new arm: a second rebuild keeps the dictionary's columns */
    pull(g, 3, -0.2), pull(g, 2, 0.4);
    bkb_gp_resample(g, &f.rng, f.scratch);
    CHECK(g->m == 4);
    REQUIRE(bkb_gp_embed(g, &err) == 0);
    REQUIRE(bkb_gp_posterior(g, &err) == 0);
    check_exact(&f);

    /* hallucinating arm 4 (in D) twice: var with Lh is the exact posterior
     * variance with two more pulls of arm 4 (the variance ignores rewards) */
    pull(g, 4, 0.0);
    bkb_gp_resample(g, &f.rng, f.scratch);
    REQUIRE(bkb_gp_embed(g, &err) == 0);
    REQUIRE(bkb_gp_posterior(g, &err) == 0);
    check_exact(&f);
    for (int k = 0; k < g->mr; k++) memcpy(g->Lh + k * g->mmax, g->L + k * g->mmax, g->mr * 8);
    bkb_gp_hallucinate(g, 4, 2.0);
    double cnt[A_], var_h[A_];
    for (int i = 0; i < A_; i++) cnt[i] = (double)g->cnt[i];
    cnt[4] += 2;
    int32_t all[A_];
    for (int i = 0; i < A_; i++) all[i] = i;
    for (int p0 = 0; p0 < A_; p0 += blk)
        bkb_gp_var_rows(g, g->Lh, all + p0, A_ - p0 < blk ? A_ - p0 : blk, var_h);
    for (int x = 0; x < A_; x++) {
        double mu, var;
        exact(cnt, g->ysum, x, &mu, &var);
        CHECK_NEAR(var_h[x], var, 1e-9);
        CHECK(var_h[x] <= g->var[x] + 1e-12);
    }
    teardown(&f);
}

TEST(posterior_exact_stored_z)
{
    posterior_matches_exact_gp(true, A_);
}
TEST(posterior_exact_blocks_no_z)
{
    posterior_matches_exact_gp(false, 3);
}

TEST(dictionary_cap)
{
    struct fixture f;
    setup(&f, true, 4);
    struct bkb_gp *g = &f.g;
    g->mmax = 2;
    struct ink_err err = {0};
    REQUIRE(bkb_gp_posterior(g, &err) == 0); /* prior var: every p = 1 */
    for (int i = 0; i < A_; i++) pull(g, i, 0.1 * i);
    bkb_gp_resample(g, &f.rng, f.scratch);
    CHECK(g->m == 2 && g->cap_hits == 1);
    CHECK(g->D[0] != g->D[1] && g->D[0] >= 0 && g->D[1] >= 0);
    CHECK(g->slot_of[g->D[0]] == 0 && g->slot_of[g->D[1]] == 1);
    teardown(&f);
}

TEST(beta_formulas)
{
    struct fixture f;
    setup(&f, true, A_);
    struct bkb_gp *g = &f.g;
    struct ink_err err = {0};
    pull(g, 1, 1), pull(g, 1, 1), pull(g, 6, 0);
    REQUIRE(bkb_gp_posterior(g, &err) == 0); /* var: the prior, 1 / LAM */
    struct bkb_beta_conf b = {.F = 2, .noise_var = 0.25, .delta = 0.1};
    double base = sqrt(LAM) * 2, l1d = log(10);
    /* sum_i c_i var_i = 3 / LAM; log t with t >= 2 */
    CHECK_NEAR(bkb_gp_beta(g, &b, 1, 0), base + sqrt(0.25 * (3 / LAM * log(2) + l1d)), 1e-12);
    CHECK_NEAR(bkb_gp_beta(g, &b, 3, 0), base + sqrt(0.25 * (3 / LAM * log(3) + l1d)), 1e-12);
    b.batch = true, b.ratio = 4;
    CHECK_NEAR(bkb_gp_beta(g, &b, 3, 0.5), base + sqrt(0.25 * (4 * 0.5 + l1d)), 1e-12);
    b.fixed = 1.5;
    CHECK(bkb_gp_beta(g, &b, 3, 0.5) == 1.5);
    teardown(&f);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
