/* operators/bkb.c: BKB / BBKB against exact GP computations written here
 * (docs/algorithms.md 2.9), the service protocol (ask/tell), and save/load.
 * INK_TEST_SCALE shrinks rounds and seed counts of the statistical cases. */
#include <cblas.h>
#include <lapacke.h>
#include <msgpack.h>

#include "../engine/config.h"
#include "../engine/op.h"
#include "../engine/rng.h"
#include "../operators/bkb.h"
#include "alloc_count.h"
#include "ink_test.h"
#include "testfns.h"

#include <sys/stat.h>

static double test_scale(void)
{
    const char *e = getenv("INK_TEST_SCALE");
    double v = e ? atof(e) : 1.0;
    return v > 0 && v <= 1 ? v : 1.0;
}

static int scaled(int n, int min)
{
    int v = (int)(n * test_scale());
    return v < min ? min : v;
}

/* ---- capture of emitted records ---- */

struct out {
    int n; /* records emitted */
    bool has_arm;
    int64_t arm, dict, round, pulls;
    double mu, sigma, ucb, beta;
    int k; /* ask n: array length */
    int64_t arms[256];
    double amu[256], asig[256], aucb[256];
    double x[8];       /* first coordinates of the suggested arm */
    double xs[256][2]; /* ask n: first two coordinates of each arm */
};

static const struct ink_value *field(const struct ink_record *r, const char *name)
{
    for (uint32_t i = 0; i < r->nfields; i++)
        if (strcmp(r->fields[i].name, name) == 0) return &r->fields[i].v;
    return NULL;
}

static double f64_of(const struct ink_record *r, const char *name)
{
    const struct ink_value *v = field(r, name);
    return v && v->type == INK_V_F64 ? v->f : NAN;
}

static int64_t i64_of(const struct ink_record *r, const char *name)
{
    const struct ink_value *v = field(r, name);
    return v && v->type == INK_V_I64 ? v->i : -1;
}

static int cap_emit(void *ctx, const struct ink_record *r)
{
    struct out *o = ctx;
    o->n++;
    o->has_arm = (r->flags & INK_HAS_ARM) != 0;
    o->arm = o->has_arm ? r->arm : -1;
    o->mu = f64_of(r, "mu");
    o->sigma = f64_of(r, "sigma");
    o->ucb = f64_of(r, "ucb");
    o->beta = f64_of(r, "beta");
    o->dict = i64_of(r, "dict");
    o->round = i64_of(r, "round");
    o->pulls = i64_of(r, "pulls");
    for (uint32_t k = 0; k < 8 && o->has_arm && k < r->dim; k++) o->x[k] = r->x[k];
    o->k = 0;
    const struct ink_value *a = field(r, "arms");
    if (a && a->type == INK_V_I64S) {
        o->k = (int)a->ia.n;
        for (int i = 0; i < o->k; i++) o->arms[i] = a->ia.p[i];
        const struct ink_value *m = field(r, "mu"), *s = field(r, "sigma"), *u = field(r, "ucb");
        const struct ink_value *xs = field(r, "xs");
        for (int i = 0; i < o->k; i++) {
            for (uint32_t q = 0; q < 2 && q < xs->fm.rows; q++)
                o->xs[i][q] = xs->fm.p[(size_t)i * xs->fm.rows + q];
            o->amu[i] = m->fa.p[i];
            o->asig[i] = s->fa.p[i];
            o->aucb[i] = u->fa.p[i];
        }
    }
    return 0;
}

/* ---- an operator instance ---- */

struct bandit {
    const struct ink_op_vtable *vt;
    void *st;
    struct ink_bkb_conf c;
    struct out o;
    struct ink_emitter em;
    struct ink_err err;
};

static double lo2[2] = {0, 0}, hi2[2] = {1, 1};

static void conf_defaults(struct ink_bkb_conf *c)
{
    memset(c, 0, sizeof *c);
    c->kernel.set = true;
    c->kernel.type = INK_K_GAUSSIAN;
    c->kernel.sigma = 0.2;
    c->kernel.degree = 2;
    c->lambda = 1;
    c->F = 1;
    c->noise_var = 1;
    c->delta = 0.5;
    c->qbar = 1;
    c->max_dict = 512;
    c->seed = 7;
    c->init = 2;
    c->arm_block = 1024;
    c->max_memory = 1ull << 30;
    c->lazy = true;
}

static void conf_random_arms(struct ink_bkb_conf *c, int A, int64_t seed)
{
    c->arms.random.set = true;
    c->arms.random.n = A;
    c->arms.random.lo = (struct ink_f64_list){lo2, 2};
    c->arms.random.hi = (struct ink_f64_list){hi2, 2};
    c->arms.random.seed = seed;
}

static int bandit_start(struct bandit *b)
{
    b->vt = &ink_op_bkb;
    b->st = calloc(1, b->vt->state_size);
    b->em = (struct ink_emitter){cap_emit, &b->o};
    /* as the engine does for an unkeyed node: `seed` when set, else a derived one */
    struct ink_op_init ini = {
        .name = "bkb", .seed = b->c.seed >= 0 ? (uint64_t)b->c.seed : 99, .base_dir = "/tmp"};
    return b->vt->init(b->st, &b->c, &ini, &b->err);
}

static void bandit_stop(struct bandit *b)
{
    b->vt->fini(b->st);
    free(b->st);
    b->st = NULL;
}

static struct ink_record req(const char *op)
{
    struct ink_record r;
    memset(&r, 0, sizeof r);
    if (op) {
        r.flags = INK_HAS_OP;
        r.op = op;
        r.op_len = (uint32_t)strlen(op);
    }
    return r;
}

/* The extra {"n": v} of an ask, as the codec hands it over (raw msgpack). */
static uint8_t extra_buf[64];

static void with_n(struct ink_record *r, int64_t v, bool as_string)
{
    /* {"n": v} packed by hand: no allocation (no_allocation_after_init counts them) */
    uint32_t n = 0;
    extra_buf[n++] = 0xa1;
    extra_buf[n++] = 'n';
    if (as_string) {
        memcpy(extra_buf + n,
               "\xa3"
               "abc",
               4);
        n += 4;
    } else {
        extra_buf[n++] = 0xd3;
        for (int k = 7; k >= 0; k--) extra_buf[n++] = (uint8_t)((uint64_t)v >> (8 * k));
    }
    r->extra = extra_buf;
    r->extra_len = n;
    r->extra_n = 1;
}

static int reward(struct bandit *b, int64_t arm, double y)
{
    struct ink_record r = req(NULL);
    r.flags = INK_HAS_ARM | INK_HAS_Y;
    r.arm = arm;
    r.y = y;
    return b->vt->process(b->st, &r, &b->em, &b->err);
}

static int kick(struct bandit *b)
{
    struct ink_record r = req(NULL);
    return b->vt->process(b->st, &r, &b->em, &b->err);
}

static int ask(struct bandit *b, int64_t n) /* n < 0: plain ask */
{
    struct ink_record r = req("ask");
    if (n >= 0) with_n(&r, n, false);
    return b->vt->query(b->st, &r, &b->em, &b->err);
}

static int tell(struct bandit *b, int64_t arm, double y)
{
    struct ink_record r = req("tell");
    r.flags |= INK_HAS_ARM | INK_HAS_Y;
    r.arm = arm;
    r.y = y;
    return b->vt->query(b->st, &r, &b->em, &b->err);
}

static int predict(struct bandit *b, int64_t arm)
{
    struct ink_record r = req("predict");
    r.flags |= INK_HAS_ARM;
    r.arm = arm;
    return b->vt->query(b->st, &r, &b->em, &b->err);
}

static void save_blob(struct bandit *b, msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    b->vt->save(b->st, &pk);
}

/* ---- arms written to a CSV so the test knows them exactly ---- */

static void arms_to_file(const char *path, const double *X, int A, int d)
{
    FILE *f = fopen(path, "w");
    for (int k = 0; k < d; k++) fprintf(f, "%sx%d", k ? "," : "", k);
    fputc('\n', f);
    for (int i = 0; i < A; i++) {
        for (int k = 0; k < d; k++) fprintf(f, "%s%.17g", k ? "," : "", X[(size_t)i * d + k]);
        fputc('\n', f);
    }
    fclose(f);
}

static char path_buf[256];

static void conf_file_arms(struct ink_bkb_conf *c, const char *tag, const double *X, int A, int d)
{
    snprintf(path_buf, sizeof path_buf, "/tmp/test_bkb_%d_%s.csv", (int)getpid(), tag);
    arms_to_file(path_buf, X, A, d);
    c->arms.file = path_buf;
    c->arms.max_arms = A;
    c->arms.max_dim = d;
}

static double gauss(struct ink_rng *r)
{
    double u = ink_rng_uniform(r), v = ink_rng_uniform(r);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static double rbf(const double *x, const double *z, int d, double sigma)
{
    double s = 0;
    for (int k = 0; k < d; k++) s += (x[k] - z[k]) * (x[k] - z[k]);
    return exp(-s / (2 * sigma * sigma));
}

/* ---- T1: exactness against the GP posterior over the multiset of pulls ---- */

/* Exact posterior with prior k/lambda over the pulls (unique arms U with counts
 * c): M = C^1/2 K_UU C^1/2 + lambda I; var(a) = (k(a,a) - |L^-1 C^1/2 k_U(a)|^2)
 * / lambda; mu(a) = k_U(a)^T C^1/2 M^-1 (ysum / sqrt(c)) (docs/algorithms.md 2.4). */
static void exact_posterior(const double *X, int A, int d, double sigma, double lambda,
                            const int *cnt, const double *ysum, double *mu, double *var)
{
    int U[4096], n = 0;
    for (int i = 0; i < A; i++)
        if (cnt[i] > 0) U[n++] = i;
    double *M = calloc((size_t)n * n, sizeof(double)), *beta = calloc(n, sizeof(double));
    double *v = calloc(n, sizeof(double));
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            M[a + (size_t)b * n] = sqrt((double)cnt[U[a]] * cnt[U[b]]) *
                                   rbf(X + (size_t)U[a] * d, X + (size_t)U[b] * d, d, sigma);
    for (int a = 0; a < n; a++) M[a + (size_t)a * n] += lambda;
    if (n > 0) LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, M, n);
    for (int a = 0; a < n; a++) beta[a] = ysum[U[a]] / sqrt((double)cnt[U[a]]);
    if (n > 0) LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', n, 1, M, n, beta, n);
    for (int a = 0; a < n; a++) beta[a] *= sqrt((double)cnt[U[a]]);
    for (int i = 0; i < A; i++) {
        double m = 0;
        for (int a = 0; a < n; a++) {
            double k = rbf(X + (size_t)i * d, X + (size_t)U[a] * d, d, sigma);
            m += k * beta[a];
            v[a] = sqrt((double)cnt[U[a]]) * k;
        }
        double q = 0;
        if (n > 0) {
            cblas_dtrsv(CblasColMajor, CblasLower, CblasNoTrans, CblasNonUnit, n, M, n, v, 1);
            q = cblas_ddot(n, v, 1, v, 1);
        }
        mu[i] = m;
        var[i] = (1.0 - q) / lambda;
    }
    free(M);
    free(beta);
    free(v);
}

TEST(exact_when_every_pull_is_in_the_dictionary)
{
    openblas_set_num_threads(1);
    enum { A = 40, d = 2, T = 40 };
    struct ink_rng r;
    ink_rng_seed(&r, 3);
    static double X[A * d];
    for (int i = 0; i < A * d; i++) X[i] = ink_rng_uniform(&r);
    struct bandit b = {0};
    conf_defaults(&b.c);
    conf_file_arms(&b.c, "t1", X, A, d);
    b.c.kernel.sigma = 0.3;
    b.c.lambda = 0.5;
    b.c.qbar = 1e12; /* every pulled arm enters D (2.9 T1) */
    b.c.max_dict = A;
    REQUIRE(bandit_start(&b) == 0);
    int cnt[A] = {0};
    double ysum[A] = {0}, mu[A], var[A], worst_mu = 0, worst_sd = 0;
    for (int t = 0; t < T; t++) {
        int j = (int)(ink_rng_uniform(&r) * (t < 20 ? A : 6)); /* repeats after t = 20 */
        double y = sin(6 * X[j * d]) + 0.1 * gauss(&r);
        REQUIRE(reward(&b, j, y) == 0);
        cnt[j]++;
        ysum[j] += y;
        exact_posterior(X, A, d, 0.3, 0.5, cnt, ysum, mu, var);
        int uniq = 0;
        for (int i = 0; i < A; i++) uniq += cnt[i] > 0;
        for (int i = 0; i < A; i++) {
            REQUIRE(predict(&b, i) == 0);
            CHECK(b.o.dict == uniq);
            double emu = fabs(b.o.mu - mu[i]), esd = fabs(b.o.sigma - sqrt(var[i]));
            if (emu > worst_mu) worst_mu = emu;
            if (esd > worst_sd) worst_sd = esd;
        }
    }
    printf("    T1: max |mu - exact| = %.3g, max |sigma - exact| = %.3g\n", worst_mu, worst_sd);
    CHECK(worst_mu <= 1e-9);
    CHECK(worst_sd <= 1e-9);
    bandit_stop(&b);
    unlink(path_buf);
}

/* ---- T3: regret against exact GP-UCB (same beta convention: beta * sigma,
 * beta = sqrt(lambda) F + sqrt(noise_var (log(max(t,2)) sum_i c_i var_i + log(1/delta)))) ---- */

static double beta_ref(double lambda, double F, double nv, double delta, int64_t t, double sumcv)
{
    double lt = log(t < 2 ? 2.0 : (double)t);
    return sqrt(lambda) * F + sqrt(nv * (sumcv * lt + log(1 / delta)));
}

/* Exact GP-UCB in arm space (prior K / lambda, unit noise in these units: the
 * KRR-normalised posterior of 2.4). The posterior covariance after t pulls is
 * K/lambda - sum_s h_s h_s^T, with h_s = Sigma_{s-1}(:, j_s) / sqrt(1 +
 * Sigma_{s-1}(j_s, j_s)) kept as columns (exact sequential conditioning).
 * kcol(ctx, j, out) writes K(:, j). Returns the cumulative regret after T rounds.
 * With a linear kernel, K = Phi Phi^T (Phi: A x p, row-major, p small), the same
 * posterior is kept in weight space instead, Sigma_t = Phi S_t Phi^T with S_0 =
 * I/lambda and S_t = S_{t-1} - v v^T/(1 + phi_j^T v), v = S_{t-1} phi_j: then
 * Sigma_{t-1}(:, j) = Phi v costs O(A p) a round instead of O(A t) (the linear
 * case spent ~90% of its time in that product; same arms, regret and checks). */
typedef void (*kcol_fn)(const void *ctx, int j, double *out);

static double gpucb_exact(kcol_fn kcol, const void *ctx, const double *Phi, int p, int A,
                          const double *f, double fstar, double lambda, double F, double nv,
                          double delta, int T, int init, uint64_t seed, const double *noise,
                          const int *first)
{
    double *H = Phi ? NULL : malloc((size_t)A * T * sizeof(double));
    double *S = Phi ? calloc((size_t)p * p, sizeof(double)) : NULL,
           *v = calloc(p + 1, sizeof(double));
    for (int k = 0; k < p && S; k++) S[k * p + k] = 1 / lambda;
    double *mu = calloc(A, sizeof(double));
    double *var = malloc((size_t)A * sizeof(double)), *g = malloc((size_t)A * sizeof(double));
    int *cnt = calloc(A, sizeof(int));
    for (int i = 0; i < A; i++) {
        kcol(ctx, i, g);
        var[i] = g[i] / lambda;
    }
    struct ink_rng r;
    ink_rng_seed(&r, seed);
    double regret = 0, sumcv = 0;
    for (int t = 0; t < T; t++) {
        int j = 0;
        if (t < init) { /* first: the arms the operator played at random, when given */
            j = first ? first[t] : (int)(ink_rng_uniform(&r) * A);
        } else {
            double beta = beta_ref(lambda, F, nv, delta, t, sumcv), best = -INFINITY;
            for (int i = 0; i < A; i++) {
                double u = mu[i] + beta * sqrt(var[i] > 0 ? var[i] : 0);
                if (u > best) best = u, j = i;
            }
        }
        double y = f[j] + noise[t];
        regret += fstar - f[j];
        cnt[j]++;
        if (Phi) { /* g = Sigma_t(:, j) = Phi v, v = S phi_j; then S -= v v^T / (1 + g_j) */
            cblas_dsymv(CblasRowMajor, CblasLower, p, 1.0, S, p, Phi + (size_t)j * p, 1, 0.0, v, 1);
            cblas_dgemv(CblasRowMajor, CblasNoTrans, A, p, 1.0, Phi, p, v, 1, 0.0, g, 1);
            cblas_dsyr(CblasRowMajor, CblasLower, p, -1 / (g[j] + 1), v, 1, S, p);
        } else { /* g = Sigma_t(:, j) = K(:, j)/lambda - H H(j, :)^T */
            kcol(ctx, j, g);
            cblas_dscal(A, 1 / lambda, g, 1);
            if (t > 0)
                cblas_dgemv(CblasColMajor, CblasNoTrans, A, t, -1.0, H, A, H + j, A, 1.0, g, 1);
        }
        double s = sqrt(g[j] + 1), e = y - mu[j];
        double *h = H ? H + (size_t)t * A : g; /* in place: g is not read again */
        for (int i = 0; i < A; i++) {
            h[i] = g[i] / s;
            mu[i] += h[i] * e / s;
            var[i] -= h[i] * h[i];
        }
        sumcv = 0;
        for (int i = 0; i < A; i++)
            if (cnt[i]) sumcv += cnt[i] * var[i];
    }
    free(H);
    free(S);
    free(v);
    free(mu);
    free(var);
    free(g);
    free(cnt);
    return regret;
}

struct kctx {
    const double *X;
    int A, d;
    double sigma; /* 0: linear */
};

static void kcol_of(const void *ctx, int j, double *out)
{
    const struct kctx *k = ctx;
    for (int i = 0; i < k->A; i++) {
        const double *x = k->X + (size_t)i * k->d, *z = k->X + (size_t)j * k->d;
        if (k->sigma > 0) {
            out[i] = rbf(x, z, k->d, k->sigma);
        } else {
            double s = 0;
            for (int q = 0; q < k->d; q++) s += x[q] * z[q];
            out[i] = s;
        }
    }
}

/* Plays the bkb operator for T rounds in streaming mode; dict sizes at T/8 and T. */
static double bkb_play(struct bandit *b, const double *f, double fstar, int T, const double *noise,
                       int64_t *dict8, int64_t *dictT, int64_t *dict2)
{
    double regret = 0;
    if (kick(b) != 0) return NAN;
    for (int t = 0; t < T; t++) {
        int64_t j = b->o.arm;
        regret += fstar - f[j];
        if (reward(b, j, f[j] + noise[t]) != 0) return NAN;
        if (t + 1 == T / 8) *dict8 = b->o.dict;
        if (t + 1 == T / 2) *dict2 = b->o.dict;
    }
    *dictT = b->o.dict;
    return regret;
}

/* qbar = 1 (the reference default) measured R_T(BKB)/R_T(GP-UCB) = 44.8 on the
 * linear case (the dictionary drops a direction and the residual variance
 * ||a_perp||^2/lambda forces exploration spikes) and 2.0 on Branin; qbar = 2
 * gives 1.34 (linear) and 1.03 (Branin), qbar = 3 gives 1.09 (linear). */
#define QBAR_LIN 3
#define QBAR_RBF 2

TEST(regret_linear_kernel_close_to_exact_gpucb)
{
    openblas_set_num_threads(1);
    enum { A = 1000, d = 3 };
    int T = scaled(2000, 400), seeds = scaled(5, 2);
    static double X[A * d], f[A];
    double *noise = malloc((size_t)T * sizeof(double));
    double R_bkb = 0, R_gp = 0, D8 = 0, DT = 0;
    for (int sd = 0; sd < seeds; sd++) {
        struct ink_rng r;
        ink_rng_seed(&r, 100 + sd);
        for (int i = 0; i < A * d; i++) X[i] = gauss(&r); /* arms ~ N(0, I) (2.9 T3) */
        double w[d], wn = 0;
        for (int k = 0; k < d; k++) w[k] = gauss(&r), wn += w[k] * w[k];
        double fmin = INFINITY, fmax = -INFINITY;
        for (int i = 0; i < A; i++) {
            f[i] = 0;
            for (int k = 0; k < d; k++) f[i] += w[k] / sqrt(wn) * X[i * d + k];
            if (f[i] < fmin) fmin = f[i];
            if (f[i] > fmax) fmax = f[i];
        }
        double nvar = 0.01 * (fmax - fmin);
        for (int t = 0; t < T; t++) noise[t] = sqrt(nvar) * gauss(&r);
        struct kctx kc = {X, A, d, 0};
        R_gp += gpucb_exact(kcol_of, &kc, X, d, A, f, fmax, nvar, 1, nvar, 0.5, T, 2, 500 + sd,
                            noise, NULL);

        struct bandit b = {0};
        conf_defaults(&b.c);
        conf_file_arms(&b.c, "lin", X, A, d);
        b.c.kernel.type = INK_K_LINEAR;
        b.c.kernel.c = 0;
        b.c.lambda = nvar;
        b.c.noise_var = nvar;
        b.c.seed = 1000 + sd;
        b.c.qbar = QBAR_LIN;
        REQUIRE(bandit_start(&b) == 0);
        int64_t d8 = 0, dT = 0, d2 = 0;
        double R = bkb_play(&b, f, fmax, T, noise, &d8, &dT, &d2);
        REQUIRE(isfinite(R));
        R_bkb += R;
        D8 += (double)d8;
        DT += (double)dT;
        bandit_stop(&b);
        unlink(path_buf);
    }
    R_bkb /= seeds, R_gp /= seeds, D8 /= seeds, DT /= seeds;
    printf("    linear: T=%d seeds=%d  R_T(BKB)=%.2f  R_T(GP-UCB)=%.2f  ratio=%.3f  "
           "dict(T/8)=%.1f dict(T)=%.1f\n",
           T, seeds, R_bkb, R_gp, R_bkb / R_gp, D8, DT);
    CHECK(R_bkb > 0 && R_gp > 0);
    CHECK(R_bkb <= 1.5 * R_gp);
    CHECK(DT <= 2.0 * D8); /* log growth: log T / log(T/8) ~ 1.4, linear growth would be 8 */
    CHECK(DT <= T / 20.0);
    free(noise);
}

static double branin01(double u, double v)
{
    const double x[2] = {u, v};
    return ink_branin(x);
}

TEST(regret_rbf_branin_close_to_exact_gpucb)
{
    openblas_set_num_threads(1);
    enum { AMAX = 2000, d = 2 };
    /* The dictionary reaches its log regime only after a few hundred pulls: T is
     * not scaled; the sanitizer pass shrinks the arm set instead. */
    int A = scaled(AMAX, 500), T = 400, seeds = scaled(3, 2);
    static double X[AMAX * d], f[AMAX];
    const double sigma = 0.25, nvar = 0.01;
    double *noise = malloc((size_t)T * sizeof(double));
    double R_bkb = 0, R_gp = 0, D8 = 0, DT = 0, D2 = 0;
    for (int sd = 0; sd < seeds; sd++) {
        struct ink_rng r;
        ink_rng_seed(&r, 200 + sd);
        for (int i = 0; i < A * d; i++) X[i] = ink_rng_uniform(&r);
        double bmin = INFINITY, bmax = -INFINITY;
        for (int i = 0; i < A; i++) {
            f[i] = branin01(X[i * d], X[i * d + 1]);
            if (f[i] < bmin) bmin = f[i];
            if (f[i] > bmax) bmax = f[i];
        }
        for (int i = 0; i < A; i++) f[i] = (bmax - f[i]) / (bmax - bmin); /* max 1 */
        for (int t = 0; t < T; t++) noise[t] = sqrt(nvar) * gauss(&r);
        struct kctx kc = {X, A, d, sigma};
        R_gp += gpucb_exact(kcol_of, &kc, NULL, 0, A, f, 1.0, nvar, 1, nvar, 0.5, T, 2, 600 + sd,
                            noise, NULL);

        struct bandit b = {0};
        conf_defaults(&b.c);
        conf_file_arms(&b.c, "branin", X, A, d);
        b.c.kernel.sigma = sigma;
        b.c.lambda = nvar;
        b.c.noise_var = nvar;
        b.c.seed = 2000 + sd;
        b.c.qbar = QBAR_RBF;
        REQUIRE(bandit_start(&b) == 0);
        int64_t d8 = 0, dT = 0, d2 = 0;
        double R = bkb_play(&b, f, 1.0, T, noise, &d8, &dT, &d2);
        REQUIRE(isfinite(R));
        R_bkb += R;
        D8 += (double)d8;
        D2 += (double)d2;
        DT += (double)dT;
        bandit_stop(&b);
        unlink(path_buf);
    }
    R_bkb /= seeds, R_gp /= seeds, D8 /= seeds, DT /= seeds, D2 /= seeds;
    printf("    branin: A=%d T=%d seeds=%d  R_T(BKB)=%.2f  R_T(GP-UCB)=%.2f  ratio=%.3f  "
           "dict(T/8)=%.1f dict(T/2)=%.1f dict(T)=%.1f\n",
           A, T, seeds, R_bkb, R_gp, R_bkb / R_gp, D8, D2, DT);
    CHECK(R_bkb <= 1.5 * R_gp);
    /* log growth: doubling t adds a constant (measured 1.06x); linear growth doubles it */
    CHECK(DT <= 1.3 * D2);
    CHECK(DT <= T / 4.0);
    free(noise);
}

/* Hartmann-6 (negated: larger is better) on the unit cube. */
static double hartmann6(const double *u)
{
    return ink_hartmann_sum(u, 6);
}

static double branin_unit(const double *u)
{
    return -branin01(u[0], u[1]); /* larger is better */
}

/* bkb with the default qbar against exact GP-UCB started from the operator's
 * two random arms, A random arms in [0, 1]^d, rewards standardised over the
 * arms plus `offset`, N(0, 0.1^2) noise. Returns the total ratio, *worst the
 * worst seed's. */
static double regret_ratio_default_qbar(double (*fn)(const double *), int d, int A, int T,
                                        double sigma, double lambda, double offset, int seeds,
                                        uint64_t seed0, double *worst)
{
    double *X = malloc((size_t)A * d * sizeof(double)), *f = malloc((size_t)A * sizeof(double));
    double *noise = malloc((size_t)T * sizeof(double));
    const double nvar = 0.01;
    double R_bkb = 0, R_gp = 0;
    *worst = 0;
    for (int sd = 0; sd < seeds; sd++) {
        struct ink_rng r;
        ink_rng_seed(&r, seed0 + sd);
        for (int i = 0; i < A * d; i++) X[i] = ink_rng_uniform(&r);
        double m = 0, v = 0, fmax = -INFINITY;
        for (int i = 0; i < A; i++) m += f[i] = fn(X + (size_t)i * d);
        m /= A;
        for (int i = 0; i < A; i++) v += (f[i] - m) * (f[i] - m);
        v = sqrt(v / A);
        for (int i = 0; i < A; i++) {
            f[i] = (f[i] - m) / v + offset;
            if (f[i] > fmax) fmax = f[i];
        }
        for (int t = 0; t < T; t++) noise[t] = sqrt(nvar) * gauss(&r);

        struct bandit b = {0};
        conf_defaults(&b.c);
        conf_file_arms(&b.c, "dflt", X, A, d);
        b.c.kernel.sigma = sigma;
        b.c.lambda = lambda;
        b.c.noise_var = nvar;
        b.c.seed = (int64_t)(seed0 + 1000 + sd);
        b.c.qbar = 0; /* the default */
        if (bandit_start(&b) != 0 || kick(&b) != 0) return NAN;
        int first[2];
        double R = 0;
        for (int t = 0; t < T; t++) {
            int64_t j = b.o.arm;
            if (t < 2) first[t] = (int)j;
            R += fmax - f[j];
            if (reward(&b, j, f[j] + noise[t]) != 0) return NAN;
        }
        bandit_stop(&b);
        unlink(path_buf);
        struct kctx kc = {X, A, d, sigma};
        double Rg = gpucb_exact(kcol_of, &kc, NULL, 0, A, f, fmax, lambda, 1, nvar, 0.5, T, 2, 0,
                                noise, first);
        printf("    seed %d: R_T(BKB)=%.1f R_T(GP-UCB)=%.1f ratio=%.3f\n", sd, R, Rg, R / Rg);
        R_bkb += R, R_gp += Rg;
        if (R / Rg > *worst) *worst = R / Rg;
    }
    free(X);
    free(f);
    free(noise);
    return R_bkb / R_gp;
}

/* At lambda 1 (the default) an arm pulled once with no close neighbour has
 * c var = k/(k + lambda) = 1/2, so a fixed qbar 2 keeps it with p = 1 at most
 * and drops it as soon as a neighbour takes some of its variance; in 6-D no
 * other arm explains it, so it forgets its reward (mean back to 0, variance
 * back to the prior's). With rewards not centred (mean -5, sd 1: negated
 * losses) qbar 2 measured 1.33x exact GP-UCB's regret in total, up to 1.57x on
 * a seed (bench/bench_bkb_fns.c, 6 seeds; 1.33x here); the default
 * 2 (1 + lambda) = 4 matches it (docs/bkb.md, "Regret in higher dimensions
 * (and lambda)"). Both play the same two random arms first, so the ratio
 * measures the approximation, not the luck of the start: from other start
 * arms exact GP-UCB against itself is 0.3-1.6x per seed on Hartmann-6. */
TEST(regret_hartmann6_default_qbar_close_to_exact_gpucb)
{
    openblas_set_num_threads(1);
    double worst, ratio = regret_ratio_default_qbar(hartmann6, 6, 1000, 200, 0.3, 1.0, -5.0,
                                                    scaled(4, 2), 700, &worst);
    printf("    hartmann6: A=1000 T=200 lambda 1: total ratio %.3f, worst seed %.3f\n", ratio,
           worst);
    CHECK(ratio <= 1.1);
    CHECK(worst <= 1.5);
}

/* The same in 2-D: at lambda 1 qbar 2 measured 1.47x on Branin (1,000 arms,
 * T = 200, 4 seeds of bench/bench_bkb_fns.c; 1.53x here; standardised rewards): the
 * default depends on lambda, not on the dimension. */
TEST(regret_branin_lambda1_default_qbar_close_to_exact_gpucb)
{
    openblas_set_num_threads(1);
    double worst, ratio = regret_ratio_default_qbar(branin_unit, 2, 1000, 200, 0.15, 1.0, 0.0,
                                                    scaled(4, 2), 800, &worst);
    printf("    branin: A=1000 T=200 lambda 1: total ratio %.3f, worst seed %.3f\n", ratio, worst);
    CHECK(ratio <= 1.15);
    CHECK(worst <= 1.5);
}

/* ---- BBKB ---- */

static double smooth2(const double *x)
{
    return sin(5 * x[0]) * cos(4 * x[1]) + x[0];
}

static void bbkb_conf(struct ink_bkb_conf *c, int A, double ratio)
{
    conf_defaults(c);
    conf_random_arms(c, A, 5);
    c->kernel.sigma = 0.15;
    c->lambda = 0.05;
    c->noise_var = 0.05;
    c->qbar = 2;
    c->batch.set = true;
    c->batch.ratio = ratio;
}

TEST(bbkb_lazy_argmax_equals_full_recompute)
{
    openblas_set_num_threads(1);
    int T = scaled(300, 60);
    struct bandit a = {0}, b = {0};
    bbkb_conf(&a.c, 400, 3);
    bbkb_conf(&b.c, 400, 3);
    b.c.lazy = false;
    REQUIRE(bandit_start(&a) == 0 && bandit_start(&b) == 0);
    REQUIRE(kick(&a) == 0 && kick(&b) == 0);
    int same = 0;
    for (int t = 0; t < T; t++) { /* streaming: every suggestion is a batch member */
        CHECK(a.o.arm == b.o.arm);
        /* values agree to rounding (triangular solves over other row sets) */
        CHECK_NEAR(a.o.ucb, b.o.ucb, 1e-12 * (1 + fabs(a.o.ucb)));
        CHECK_NEAR(a.o.sigma, b.o.sigma, 1e-12 * (1 + fabs(a.o.sigma)));
        same += a.o.arm == b.o.arm;
        double y = smooth2(a.o.x);
        REQUIRE(reward(&a, a.o.arm, y) == 0 && reward(&b, b.o.arm, y) == 0);
    }
    for (int r = 0; r < 10; r++) { /* service: whole batches at once */
        REQUIRE(ask(&a, 0) == 0 && ask(&b, 0) == 0);
        REQUIRE(a.o.k == b.o.k && a.o.k > 0);
        for (int i = 0; i < a.o.k; i++) {
            CHECK(a.o.arms[i] == b.o.arms[i]);
            /* same arms; values differ in the last bits (triangular solves over other row sets) */
            CHECK_NEAR(a.o.aucb[i], b.o.aucb[i], 1e-12 * (1 + fabs(a.o.aucb[i])));
        }
        int k = a.o.k;
        int64_t arms[256];
        memcpy(arms, a.o.arms, sizeof arms);
        for (int i = 0; i < k; i++) {
            REQUIRE(tell(&a, arms[i], 0.1 * i) == 0);
            REQUIRE(tell(&b, arms[i], 0.1 * i) == 0);
        }
    }
    printf("    lazy vs full: %d/%d streaming picks identical\n", same, T);
    bandit_stop(&a);
    bandit_stop(&b);
}

/* Plays whole batches through ask n=0; returns the number of batches, sizes in k[]. */
static int play_batches(struct bandit *b, int pulls, int *k, int kcap)
{
    int nb = 0, total = 0;
    while (total < pulls && nb < kcap) {
        if (ask(b, 0) != 0) return -1;
        int n = b->o.k;
        int64_t arms[256];
        double xs[256][2];
        memcpy(arms, b->o.arms, sizeof arms);
        memcpy(xs, b->o.xs, sizeof xs);
        k[nb++] = n;
        for (int i = 0; i < n; i++)
            if (tell(b, arms[i], smooth2(xs[i])) != 0) return -1;
        total += n;
    }
    return nb;
}

TEST(bbkb_ratio_at_most_one_gives_batches_of_one)
{
    openblas_set_num_threads(1);
    double ratios[2] = {1.0, 0.5};
    for (int q = 0; q < 2; q++) {
        struct bandit b = {0};
        bbkb_conf(&b.c, 300, ratios[q]);
        REQUIRE(bandit_start(&b) == 0);
        int k[200];
        int nb = play_batches(&b, scaled(150, 40), k, 200);
        REQUIRE(nb > 0);
        int bad = 0;
        for (int i = 0; i < nb; i++) bad += k[i] != 1;
        CHECK_MSG(bad == 0, "ratio %g: %d of %d batches had more than one arm", ratios[q], bad, nb);
        bandit_stop(&b);
    }
}

TEST(bbkb_batches_grow_with_t)
{
    openblas_set_num_threads(1);
    struct bandit b = {0};
    bbkb_conf(&b.c, 400, 2);
    REQUIRE(bandit_start(&b) == 0);
    static int k[2000];
    int pulls = 600; /* cheap (A = 400); fewer pulls stay in the batch-of-one phase */
    int nb = play_batches(&b, pulls, k, 2000);
    REQUIRE(nb >= 10);
    double first = 0, last = 0;
    int kmax = 0;
    for (int i = 0; i < 5; i++) first += k[i] / 5.0;
    for (int i = nb - 5; i < nb; i++) last += k[i] / 5.0;
    for (int i = 0; i < nb; i++) kmax = k[i] > kmax ? k[i] : kmax;
    printf("    %d pulls in %d batches: first 5 mean %.1f, last 5 mean %.1f, max %d\n", pulls, nb,
           first, last, kmax);
    CHECK(last >= 2 * first);
    CHECK(kmax > 1);
    CHECK(nb < pulls / 2); /* far fewer resparsifications than pulls */
    bandit_stop(&b);
}

TEST(bbkb_straggler_does_not_stall_the_model)
{
    openblas_set_num_threads(1);
    struct bandit b = {0};
    bbkb_conf(&b.c, 400, 2);
    REQUIRE(bandit_start(&b) == 0);
    int k[400];
    REQUIRE(play_batches(&b, 300, k, 400) > 0); /* warm up until batches hold several arms */
    REQUIRE(ask(&b, 0) == 0);
    int n = b.o.k;
    REQUIRE(n >= 3);
    int64_t arms[256];
    memcpy(arms, b.o.arms, sizeof arms);
    double beta0 = b.o.beta;
    for (int i = 0; i < n - 1; i++) { /* the last worker never reports (yet) */
        REQUIRE(tell(&b, arms[i], 0.5) == 0);
        CHECK(b.o.beta == beta0); /* BBKB: beta and the posterior wait for the batch */
    }
    REQUIRE(ask(&b, -1) == 0); /* the batch is closed: this arm is carried to the next one */
    int64_t extra = b.o.arm;
    CHECK(extra != arms[n - 1]);
    REQUIRE(tell(&b, extra, 0.5) == 0);
    CHECK(b.o.beta != beta0);                 /* as many rewards as the batch had arms: rebuilt */
    REQUIRE(tell(&b, arms[n - 1], 0.5) == 0); /* the straggler is still welcome */
    bandit_stop(&b);
}

/* ---- service ---- */

TEST(service_pending_arms_are_not_handed_out_twice)
{
    openblas_set_num_threads(1);
    for (int bb = 0; bb < 2; bb++) {
        enum { A = 30 };
        struct bandit b = {0};
        conf_defaults(&b.c);
        conf_random_arms(&b.c, A, 9);
        if (bb) b.c.batch.set = true, b.c.batch.ratio = 2;
        REQUIRE(bandit_start(&b) == 0);
        int pending[A] = {0}, np = 0;
        for (int i = 0; i < 10; i++) {
            REQUIRE(ask(&b, -1) == 0);
            REQUIRE(b.o.has_arm && b.o.arm >= 0 && b.o.arm < A);
            CHECK(!pending[b.o.arm]);
            pending[b.o.arm] = 1, np++;
        }
        REQUIRE(ask(&b, 5) == 0);
        REQUIRE(b.o.k == 5);
        for (int i = 0; i < 5; i++) {
            CHECK(!pending[b.o.arms[i]]);
            pending[b.o.arms[i]] = 1, np++;
        }
        int told = 0;
        for (int i = 0; i < A && told < 3; i++)
            if (pending[i]) {
                REQUIRE(tell(&b, i, 0.5) == 0);
                CHECK(b.o.pulls == told + 1);
                pending[i] = 0, np--, told++;
            }
        REQUIRE(ask(&b, A - np - 3) == 0);
        for (int i = 0; i < b.o.k; i++) {
            CHECK(!pending[b.o.arms[i]]);
            pending[b.o.arms[i]] = 1, np++;
        }
        CHECK(np == A - 3);
        CHECK(ask(&b, 4) == INK_EINVAL); /* only 3 free */
        REQUIRE(ask(&b, 3) == 0);
        for (int i = 0; i < 3; i++) {
            CHECK(!pending[b.o.arms[i]]);
            pending[b.o.arms[i]] = 1;
        }
        CHECK(ask(&b, -1) == INK_ERANGE);
        CHECK(strstr(b.err.msg, "waiting") != NULL);
        for (int i = 0; i < A; i++) REQUIRE(tell(&b, i, 0.1 * i) == 0);
        REQUIRE(ask(&b, -1) == 0); /* free again */
        bandit_stop(&b);
    }
}

static bool blobs_equal(msgpack_sbuffer *a, msgpack_sbuffer *b)
{
    return a->size == b->size && memcmp(a->data, b->data, a->size) == 0;
}

TEST(service_bad_requests_are_errors_and_change_nothing)
{
    openblas_set_num_threads(1);
    enum { A = 30 };
    struct bandit b = {0};
    conf_defaults(&b.c);
    conf_random_arms(&b.c, A, 9);
    REQUIRE(bandit_start(&b) == 0);
    REQUIRE(kick(&b) == 0);
    for (int i = 0; i < 5; i++) REQUIRE(reward(&b, b.o.arm, 0.3) == 0);
    REQUIRE(ask(&b, -1) == 0);
    int64_t asked = b.o.arm, never = (asked + 1) % A;
    msgpack_sbuffer s0, s1;
    save_blob(&b, &s0);
    struct {
        struct ink_record r;
        int code;
        const char *what;
    } bad[24];
    int n = 0;
#define BAD(code_, what_) (bad[n].code = (code_), bad[n].what = (what_), &bad[n++].r)
    struct ink_record *r;
    r = BAD(INK_EINVAL, "tell arm out of range"), *r = req("tell"),
    r->flags |= INK_HAS_ARM | INK_HAS_Y, r->arm = A;
    r = BAD(INK_EINVAL, "tell negative arm"), *r = req("tell"), r->flags |= INK_HAS_ARM | INK_HAS_Y,
    r->arm = -1;
    r = BAD(INK_EINVAL, "tell never-asked arm"), *r = req("tell"),
    r->flags |= INK_HAS_ARM | INK_HAS_Y, r->arm = never;
    r = BAD(INK_EINVAL, "tell without y"), *r = req("tell"), r->flags |= INK_HAS_ARM,
    r->arm = asked;
    r = BAD(INK_EINVAL, "tell NaN y"), *r = req("tell"), r->flags |= INK_HAS_ARM | INK_HAS_Y,
    r->arm = asked, r->y = NAN;
    r = BAD(INK_EINVAL, "tell without arm"), *r = req("tell"), r->flags |= INK_HAS_Y;
    static double x3[3] = {0.5, 0.5, 0.5}, x2[2] = {2, 2};
    r = BAD(INK_EDIM, "tell x wrong dim"), *r = req("tell"), r->flags |= INK_HAS_X | INK_HAS_Y,
    r->x = x3, r->dim = 3;
    r = BAD(INK_EINVAL, "tell x not an arm"), *r = req("tell"), r->flags |= INK_HAS_X | INK_HAS_Y,
    r->x = x2, r->dim = 2;
    r = BAD(INK_ENOTSUP, "unknown op"), *r = req("bogus");
    r = BAD(INK_EINVAL, "predict out of range"), *r = req("predict"), r->flags |= INK_HAS_ARM,
    r->arm = 1000;
    r = BAD(INK_EINVAL, "ask n=-1"), *r = req("ask"), with_n(r, -1, false);
    int n_ask_neg = n - 1;
    for (int i = 0; i < n; i++) {
        if (i == n_ask_neg) with_n(&bad[i].r, -1, false);
        b.err.msg[0] = 0;
        int rc = b.vt->query(b.st, &bad[i].r, &b.em, &b.err);
        CHECK_MSG(rc == bad[i].code, "%s: got %d, expected %d", bad[i].what, rc, bad[i].code);
        CHECK_MSG(b.err.msg[0] != 0, "%s: no message", bad[i].what);
    }
    struct ink_record q = req("ask");
    with_n(&q, 1000, false);
    CHECK(b.vt->query(b.st, &q, &b.em, &b.err) == INK_EINVAL);
    with_n(&q, 0, true);
    CHECK(b.vt->query(b.st, &q, &b.em, &b.err) == INK_EINVAL);
    CHECK(reward(&b, A + 5, 1.0) == INK_EINVAL); /* streaming: arm out of range */
    struct ink_record p = req(NULL);
    p.flags = INK_HAS_ARM, p.arm = 1;
    CHECK(b.vt->process(b.st, &p, &b.em, &b.err) == INK_EINVAL); /* no y */
    save_blob(&b, &s1);
    CHECK(blobs_equal(&s0, &s1));
    REQUIRE(tell(&b, asked, 1.0) == 0);
    CHECK(tell(&b, asked, 1.0) == INK_EINVAL); /* already told */
    REQUIRE(ask(&b, -1) == 0);
    msgpack_sbuffer_destroy(&s0);
    msgpack_sbuffer_destroy(&s1);
    bandit_stop(&b);
}

/* ---- save / load ---- */

/* A fixed mixed workload: streaming rewards, asks (some left pending), tells. */
static void workload(struct bandit *b, int steps, uint64_t seed, double *trace, int *nt)
{
    struct ink_rng r;
    ink_rng_seed(&r, seed);
    for (int s = 0; s < steps; s++) {
        double u = ink_rng_uniform(&r);
        int rc;
        if (u < 0.5) {
            rc = reward(b, b->o.has_arm ? b->o.arm : 0, ink_rng_uniform(&r));
        } else if (u < 0.8) {
            rc = ask(b, u < 0.65 ? -1 : 3);
        } else {
            /* tell the most recent ask if still pending, else any streaming reward */
            rc = tell(b, b->o.k ? b->o.arms[0] : b->o.arm, ink_rng_uniform(&r));
            if (rc == INK_EINVAL) rc = reward(b, 1, 0.25);
        }
        if (rc != 0 && rc != INK_ERANGE) {
            trace[(*nt)++] = -1000 - rc;
            continue;
        }
        trace[(*nt)++] = (double)b->o.arm;
        trace[(*nt)++] = b->o.mu;
        trace[(*nt)++] = b->o.sigma;
        trace[(*nt)++] = b->o.k ? (double)b->o.arms[b->o.k - 1] : -1;
    }
}

static void save_load_case(struct ink_bkb_conf *c)
{
    struct bandit a = {0}, b = {0};
    a.c = *c;
    b.c = *c;
    REQUIRE(bandit_start(&a) == 0 && bandit_start(&b) == 0);
    REQUIRE(kick(&a) == 0);
    static double ta[4000], tb[4000];
    int na = 0, nb = 0;
    workload(&a, 80, 1, ta, &na);
    msgpack_sbuffer sb;
    save_blob(&a, &sb);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    REQUIRE(msgpack_unpack_next(&up, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    REQUIRE(b.vt->load(b.st, &up.data, &b.err) == 0);
    b.o = a.o; /* the workload reads the last reply */
    na = nb = 0;
    workload(&a, 120, 2, ta, &na);
    workload(&b, 120, 2, tb, &nb);
    REQUIRE(na == nb);
    CHECK(memcmp(ta, tb, (size_t)na * sizeof(double)) == 0);
    msgpack_sbuffer s1, s2;
    save_blob(&a, &s1);
    save_blob(&b, &s2);
    CHECK(blobs_equal(&s1, &s2));
    /* a blob for another arm set is refused */
    struct bandit other = {0};
    other.c = *c;
    other.c.arms.random.seed = 12345;
    REQUIRE(bandit_start(&other) == 0);
    CHECK(other.vt->load(other.st, &up.data, &other.err) == INK_ESTATE);
    bandit_stop(&other);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&s1);
    msgpack_sbuffer_destroy(&s2);
    bandit_stop(&a);
    bandit_stop(&b);
}

TEST(save_load_continues_identically)
{
    openblas_set_num_threads(1);
    struct ink_bkb_conf c;
    conf_defaults(&c);
    conf_random_arms(&c, 200, 4);
    c.qbar = 2;
    save_load_case(&c); /* BKB, Z stored */
    c.batch.set = true;
    c.batch.ratio = 3;
    save_load_case(&c);                                             /* BBKB */
    c.max_memory = ink_op_bkb.mem_bound(&c) - 200 * 200 * 8 + 4096; /* no room for Z */
    c.arm_block = 32;
    save_load_case(&c); /* BBKB, Z recomputed per block */
}

static msgpack_object_kv *kv_of(msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.via.str.size == strlen(key) && !memcmp(kv->key.via.str.ptr, key, strlen(key)))
            return kv;
    }
    return NULL;
}

TEST(load_refuses_corrupt_state_and_changes_nothing)
{
    openblas_set_num_threads(1);
    struct bandit a = {0}, b = {0};
    conf_defaults(&a.c);
    conf_random_arms(&a.c, 50, 4);
    b.c = a.c;
    REQUIRE(bandit_start(&a) == 0 && bandit_start(&b) == 0);
    REQUIRE(kick(&a) == 0 && kick(&b) == 0);
    for (int i = 0; i < 6; i++) REQUIRE(reward(&a, (i * 7) % 50, 0.1 * i) == 0);
    REQUIRE(ask(&a, 2) == 0);
    REQUIRE(reward(&b, 3, 1.0) == 0);
    msgpack_sbuffer sa, sb0, sb1;
    save_blob(&a, &sa);
    save_blob(&b, &sb0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    REQUIRE(msgpack_unpack_next(&up, sa.data, sa.size, &off) == MSGPACK_UNPACK_SUCCESS);
    uint32_t n = up.data.via.map.size;
    msgpack_object_kv *kv = malloc(n * sizeof *kv);
    msgpack_object mod = up.data;
    mod.via.map.ptr = kv;
    int32_t bad[64];
    const char *cases[] = {"version", "D-range", "D-repeat", "pend", "cnt-size", "m", "missing"};
    for (int c = 0; c < 7; c++) {
        memcpy(kv, up.data.via.map.ptr, n * sizeof *kv);
        mod.via.map.size = n;
        msgpack_object_kv *k;
        if (c == 0) {
            k = kv_of(&mod, "version");
            k->val.via.i64 = 99, k->val.via.u64 = 99;
        } else if (c == 1 || c == 2) {
            k = kv_of(&mod, "D");
            REQUIRE(k->val.via.bin.size >= 8 && k->val.via.bin.size <= sizeof bad);
            memcpy(bad, k->val.via.bin.ptr, k->val.via.bin.size);
            if (c == 1)
                bad[0] = 50;
            else
                bad[1] = bad[0];
            k->val.via.bin.ptr = (const char *)bad;
        } else if (c == 3) {
            k = kv_of(&mod, "pend");
            static int32_t pend[50];
            memcpy(pend, k->val.via.bin.ptr, sizeof pend);
            pend[7] = 7;
            k->val.via.bin.ptr = (const char *)pend;
        } else if (c == 4) {
            k = kv_of(&mod, "cnt");
            k->val.via.bin.size -= 8;
        } else if (c == 5) {
            k = kv_of(&mod, "m");
            k->val.via.u64 = 1000, k->val.via.i64 = 1000;
        } else {
            mod.via.map.size = n - 1; /* the last key (var_h) is missing */
        }
        b.err.msg[0] = 0;
        CHECK_MSG(b.vt->load(b.st, &mod, &b.err) == INK_ESTATE, "%s accepted", cases[c]);
        CHECK(b.err.msg[0] != 0);
        save_blob(&b, &sb1);
        CHECK_MSG(blobs_equal(&sb0, &sb1), "%s: refused load changed the state", cases[c]);
        msgpack_sbuffer_destroy(&sb1);
    }
    CHECK(b.vt->load(b.st, &up.data, &b.err) == 0); /* the intact blob loads */
    free(kv);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sa);
    msgpack_sbuffer_destroy(&sb0);
    bandit_stop(&a);
    bandit_stop(&b);
}

/* ---- memory ---- */

TEST(embedding_recomputed_per_block_matches_stored)
{
    openblas_set_num_threads(1);
    struct bandit a = {0}, b = {0};
    bbkb_conf(&a.c, 500, 2);
    a.c.batch.set = false;
    b.c = a.c;
    b.c.arm_block = 64;
    size_t big = a.vt ? 0 : ink_op_bkb.mem_bound(&a.c);
    b.c.max_memory = big - 500 * 500 * 8 + 4096; /* just short of room for Z */
    size_t small = ink_op_bkb.mem_bound(&b.c);
    printf("    mem_bound: %zu bytes with Z stored, %zu recomputing it\n", big, small);
    CHECK(small < big);
    REQUIRE(bandit_start(&a) == 0 && bandit_start(&b) == 0);
    REQUIRE(kick(&a) == 0 && kick(&b) == 0);
    double worst = 0;
    int T = scaled(150, 40), diff = 0;
    for (int t = 0; t < T; t++) {
        diff += a.o.arm != b.o.arm;
        double e = fabs(a.o.mu - b.o.mu) + fabs(a.o.sigma - b.o.sigma);
        worst = e > worst ? e : worst;
        double y = smooth2(a.o.x);
        int64_t j = a.o.arm;
        REQUIRE(reward(&a, j, y) == 0 && reward(&b, j, y) == 0);
    }
    printf("    stored vs per-block: %d different picks, max |d mu| + |d sigma| = %.3g\n", diff,
           worst);
    CHECK(diff == 0);
    CHECK(worst <= 1e-9);
    bandit_stop(&a);
    bandit_stop(&b);
    b.c.max_memory = 1 << 16; /* not even the per-arm state fits */
    CHECK(bandit_start(&b) == INK_ENOMEM);
    bandit_stop(&b);
}

TEST(dictionary_capped_by_max_dict)
{
    openblas_set_num_threads(1);
    struct bandit b = {0};
    conf_defaults(&b.c);
    conf_random_arms(&b.c, 200, 3);
    b.c.qbar = 1e12;
    b.c.max_dict = 8;
    REQUIRE(bandit_start(&b) == 0);
    int64_t dmax = 0;
    for (int i = 0; i < 60; i++) {
        REQUIRE(reward(&b, (i * 7) % 200, 0.01 * i) == 0);
        dmax = b.o.dict > dmax ? b.o.dict : dmax;
        CHECK(isfinite(b.o.mu) && isfinite(b.o.sigma) && b.o.sigma > 0);
    }
    CHECK(dmax == 8);
    bandit_stop(&b);
}

/* No allocation by inkflow's code after init (docs/style.md rule 6: operators allocate
 * everything in init); calls made inside OpenBLAS/LAPACK are not ours and
 * are not counted (tests/alloc_count.h). */
TEST(no_allocation_after_init)
{
    if (!ink_alloc_count_available()) {
        printf("  (allocation counting skipped under ASan)\n");
        return;
    }
    /* the counter tells BLAS/LAPACK code from ours */
    CHECK(!ink_alloc_counted_caller((const void *)cblas_dgemm));
    CHECK(ink_alloc_counted_caller((const void *)LAPACKE_dpotrf)); /* a wrapper we chose */
    CHECK(ink_alloc_counted_caller((const void *)ink_op_bkb.init));
    openblas_set_num_threads(1);
    for (int store = 0; store < 2; store++) {
        struct bandit b = {0};
        bbkb_conf(&b.c, 300, 3);
        if (!store) b.c.max_memory = ink_op_bkb.mem_bound(&b.c) - 300 * 300 * 8 + 4096;
        if (!store) b.c.arm_block = 50;
        b.vt = &ink_op_bkb;
        b.st = calloc(1, b.vt->state_size);
        b.em = (struct ink_emitter){cap_emit, &b.o};
        struct ink_op_init ini = {.name = "bkb", .seed = 99};
        ink_alloc_count_start();
        REQUIRE(b.vt->init(b.st, &b.c, &ini, &b.err) == 0);
        struct ink_alloc_counts ci = ink_alloc_count_stop();
        /* init's one arena is exactly what mem_bound announced */
        CHECK_MSG(ci.calls == 1 && ci.bytes == b.vt->mem_bound(&b.c),
                  "init: %zu allocations, %zu bytes; mem_bound %zu", ci.calls, ci.bytes,
                  b.vt->mem_bound(&b.c));
        REQUIRE(kick(&b) == 0);
        for (int i = 0; i < 5; i++) REQUIRE(reward(&b, b.o.arm, 0.5) == 0); /* warm-up */
        REQUIRE(ask(&b, 2) == 0);
        ink_alloc_count_start();
        for (int i = 0; i < 40; i++) {
            reward(&b, b.o.has_arm ? b.o.arm : 0, 0.1 * i);
            ask(&b, i % 3 == 0 ? 4 : -1);
            if (b.o.has_arm) tell(&b, b.o.arm, 0.2);
            predict(&b, i);
        }
        struct ink_alloc_counts c = ink_alloc_count_stop();
        CHECK_MSG(c.calls == 0,
                  "%zu allocations after init (store Z: %d; %zu inside BLAS/LAPACK, not counted)",
                  c.calls, store, c.skipped);
        bandit_stop(&b);
    }
}

/* ---- config ---- */

TEST(file_arms_relative_to_config_dir)
{
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "/tmp/test_bkb_dir_%d", (int)getpid());
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/arms.csv", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "u,v\n# comment\n0,0\n0.5,1\n\n1,0.25\n");
    fclose(f);
    struct bandit b = {0};
    conf_defaults(&b.c);
    b.c.arms.file = "arms.csv";
    b.c.arms.max_arms = 10;
    b.c.arms.max_dim = 4;
    b.vt = &ink_op_bkb;
    b.st = calloc(1, b.vt->state_size);
    b.em = (struct ink_emitter){cap_emit, &b.o};
    struct ink_op_init ini = {.name = "bandit", .seed = 1, .base_dir = dir};
    REQUIRE(b.vt->init(b.st, &b.c, &ini, &b.err) == 0);
    struct ink_record r = req(NULL);
    static double x[2] = {0.5, 1};
    r.flags = INK_HAS_X | INK_HAS_Y, r.x = x, r.dim = 2, r.y = 1;
    REQUIRE(b.vt->process(b.st, &r, &b.em, &b.err) == 0);
    REQUIRE(predict(&b, 1) == 0);
    CHECK(b.o.mu > 0.1);                 /* the reward landed on arm 1 = (0.5, 1) */
    CHECK(predict(&b, 3) == INK_EINVAL); /* 3 arms */
    bandit_stop(&b);

    f = fopen(path, "w");
    fprintf(f, "0,0\n0.5,1,2\n");
    fclose(f);
    b.st = calloc(1, b.vt->state_size);
    CHECK(b.vt->init(b.st, &b.c, &ini, &b.err) == INK_EPARSE);
    CHECK(strstr(b.err.msg, "arms.csv:2") != NULL);
    bandit_stop(&b);
    f = fopen(path, "w");
    fprintf(f, "0,0\n0,1\n");
    fclose(f);
    b.c.arms.max_arms = 1;
    b.st = calloc(1, b.vt->state_size);
    CHECK(b.vt->init(b.st, &b.c, &ini, &b.err) == INK_EINVAL);
    bandit_stop(&b);
    unlink(path);
    b.st = calloc(1, b.vt->state_size);
    CHECK(b.vt->init(b.st, &b.c, &ini, &b.err) == INK_EIO);
    bandit_stop(&b);
    rmdir(dir);

    struct ink_bkb_conf c;
    conf_defaults(&c);
    conf_random_arms(&c, 10, 1);
    c.arms.file = "x.csv";
    CHECK(ink_op_bkb.check(&c, &b.err) == INK_EINVAL); /* two arm sources */
    conf_defaults(&c);
    static double lo[2] = {0, 0}, hi[2] = {1, 1}, n3[3] = {2, 2, 2};
    c.arms.grid = (struct ink_bkb_grid_conf){true, {lo, 2}, {hi, 2}, {n3, 3}};
    CHECK(ink_op_bkb.check(&c, &b.err) == INK_EINVAL); /* n has 3 values for 2 axes */
    c.arms.grid.n.n = 1;
    CHECK(ink_op_bkb.check(&c, &b.err) == 0);
    CHECK(ink_op_find("bkb") == &ink_op_bkb);
}

TEST(grid_arms_and_first_suggestion)
{
    openblas_set_num_threads(1);
    struct bandit b = {0};
    conf_defaults(&b.c);
    static double lo[2] = {-1, 0}, hi[2] = {1, 2}, n[2] = {3, 5};
    b.c.arms.grid = (struct ink_bkb_grid_conf){true, {lo, 2}, {hi, 2}, {n, 2}};
    b.c.init = 0;
    REQUIRE(bandit_start(&b) == 0);
    REQUIRE(kick(&b) == 0);
    /* prior: mu = 0, sigma = sqrt(k(a,a)/lambda) = 1 everywhere: every arm ties */
    CHECK(b.o.n == 1 && b.o.arm >= 0 && b.o.arm < 15 && b.o.round == 0);
    int64_t a0 = b.o.arm;
    CHECK(b.o.x[0] == -1 + (a0 % 3) && b.o.x[1] == 0.5 * (double)(a0 / 3)); /* axis 0 fastest */
    CHECK_NEAR(b.o.sigma, 1.0, 1e-15);
    REQUIRE(kick(&b) == 0);
    CHECK(b.o.n == 2 && b.o.round == 1);
    REQUIRE(predict(&b, 14) == 0);
    REQUIRE(reward(&b, 14, 1.0) == 0); /* arm 14 = (1, 2) */
    CHECK(b.o.n == 4 && b.o.round == 2 && b.o.dict == 1);
    bandit_stop(&b);
    /* linear kernel: the prior UCB grows with ||a||: the corner (1, 2) = arm 14 */
    b.c.kernel.type = INK_K_LINEAR;
    REQUIRE(bandit_start(&b) == 0);
    REQUIRE(kick(&b) == 0);
    CHECK(b.o.arm == 14);
    bandit_stop(&b);
    /* the first process call with a reward emits the start suggestion, then the next one */
    struct bandit c = {0};
    c.c = b.c;
    REQUIRE(bandit_start(&c) == 0);
    REQUIRE(reward(&c, 3, 0.5) == 0);
    CHECK(c.o.n == 2 && c.o.round == 1);
    bandit_stop(&c);
}

/* The parameter table through the real config loader. */
TEST(config_loader)
{
    struct ink_bkb_conf d;
    memset(&d, 0, sizeof d);
    struct ink_err err = {0};
    REQUIRE(ink_params_defaults(ink_op_bkb.params, &d, &err) == 0);
    CHECK(d.lambda == 1 && d.F == 1 && d.noise_var == 1 && d.delta == 0.5 && d.qbar == 0);
    /* qbar 0: 2 (1 + lambda / mean k(a, a)) (docs/bkb.md, Choosing qbar) */
    CHECK(ink_bkb_default_qbar(1, 1) == 4 && fabs(ink_bkb_default_qbar(0.01, 1) - 2.02) < 1e-12);
    CHECK(ink_bkb_default_qbar(1, 0) == 2);
    CHECK(d.max_dict == 512 && d.beta == 0 && !d.batch.set && d.seed == -1 && d.init == 2);
    CHECK(d.arm_block == 1024 && d.max_memory == 1ull << 30 && d.lazy);
    ink_params_free(ink_op_bkb.params, &d);

    static const char good[] =
        "sources:\n"
        "  in: {type: file, path: in.csv, format: csv}\n"
        "operators:\n"
        "  bandit: {type: bkb, inputs: [in], arms: {grid: {lo: [0, 0], hi: [1, 2], n: [4, 5]}},\n"
        "           kernel: {type: matern52, sigma: 0.5}, lambda: 0.01, noise_var: 0.01,\n"
        "           batch: {ratio: 3}, max_dict: 64, init: 1, seed: 3}\n"
        "sinks:\n"
        "  out: {type: file, path: \"-\", format: jsonl, inputs: [bandit]}\n";
    struct ink_config cfg = {0};
    struct ink_diags dg = {0};
    int rc = ink_config_load_buf("good.yaml", good, sizeof good - 1, &cfg, &dg);
    if (rc) ink_diags_print(&dg, "good.yaml", stderr);
    REQUIRE(rc == 0);
    const struct ink_bkb_conf *c = NULL;
    for (int i = 0; i < cfg.nnodes; i++)
        if (!strcmp(cfg.nodes[i].name, "bandit")) c = cfg.nodes[i].conf;
    REQUIRE(c);
    CHECK(c->arms.grid.set && c->arms.grid.n.n == 2 && c->arms.grid.hi.v[1] == 2);
    CHECK(c->kernel.type == INK_K_MATERN52 && c->lambda == 0.01 && c->batch.set);
    CHECK(c->batch.ratio == 3 && c->max_dict == 64 && c->init == 1 && c->qbar == 0);
    struct bandit b = {0};
    b.c = *c;
    REQUIRE(bandit_start(&b) == 0);
    REQUIRE(ask(&b, 0) == 0);
    CHECK(b.o.k >= 1);
    bandit_stop(&b);
    ink_config_free(&cfg);
    ink_diags_free(&dg);

    static const char bad[] =
        "sources:\n"
        "  in: {type: file, path: in.csv, format: csv}\n"
        "operators:\n"
        "  b1: {type: bkb, inputs: [in], arms: {grid: {lo: [0], hi: [1]}, random: {n: 5, lo: [0],\n"
        "       hi: [1]}}}\n"
        "  b2: {type: bkb, inputs: [in], arms: {file: a.csv}, lamda: 1}\n"
        "sinks:\n"
        "  out: {type: file, path: \"-\", format: jsonl, inputs: [b1, b2]}\n";
    memset(&cfg, 0, sizeof cfg);
    memset(&dg, 0, sizeof dg);
    CHECK(ink_config_load_buf("bad.yaml", bad, sizeof bad - 1, &cfg, &dg) != 0);
    bool saw_one = false, saw_lambda = false;
    for (int i = 0; i < dg.n; i++) {
        saw_one |= strstr(dg.v[i].msg, "exactly one") != NULL;
        saw_lambda |= strstr(dg.v[i].msg, "lambda") != NULL;
    }
    if (!(saw_one && saw_lambda)) ink_diags_print(&dg, "bad.yaml", stderr);
    CHECK(saw_one && saw_lambda);
    ink_diags_free(&dg);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
