/* rls_sketch partials and their DISQUEAK merge (docs/rls_sketch.md#publish-and-merge,
 * docs/algorithms.md 1.10). A partial's body (after partial.h's header,
 * kind INK_PARTIAL_RLS) is, little-endian:
 *   u32 d, u32 m, u32 qbar, u32 flags (1: mode ink, 2: KRR statistics follow)
 *   u32 kernel type, u32 degree, f64 sigma, f64 c, u32 nh, f64 h[nh]
 *   f64 gamma, f64 eps, f64 est_scale, f64 gamma_eff, f64 deff, u64 n
 *   f64 X[m d] (point j at X + j d), i64 id[m], f64 p[m], u32 q[m]
 *   KRR: f64 mu, u64 nobs, u32 nb, u32 bpos[nb] (dictionary positions of the
 *        basis), f64 H[nb (nb + 1) / 2] (sum of z z^T over the data, lower
 *        triangle packed by columns), f64 g[nb] (sum of y z)
 * Nothing here allocates; the parser checks every length. */
#ifndef INK_RLS_MERGE_H
#define INK_RLS_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/err.h"
#include "../engine/opkit.h"
#include "../engine/rng.h"
#include "kernel.h"

/* What a sketch publishes: pointers into its state. */
struct ink__rls_pub {
    int d, m, qbar;
    bool ink_mode;
    const struct ink_kernel *kern;
    double gamma, eps, c_est, gamma_eff, dhat;
    uint64_t n;
    const double *X, *p;
    const int32_t *q;
    const int64_t *id;
    /* KRR (nb = -1: none): H lower triangle with leading dimension ldh */
    int nb;
    double mu;
    uint64_t nobs;
    const int32_t *bpos;
    const double *H, *g;
    int ldh;
};

/* Largest partial (bin object) of a sketch of dimension d, at most m atoms. */
size_t ink__rls_partial_bytes(int d, int m, bool krr);
size_t ink__rls_partial_put(uint8_t *out, const struct ink__rls_pub *v);

/* A parsed body: pointers into it (unaligned: read with memcpy). */
struct ink__rls_part {
    uint32_t d, m, qbar, flags, nb;
    uint32_t ktype, kdegree, nh;
    double ksigma, kc;
    const uint8_t *kh;
    double gamma, eps, c_est, gamma_eff, dhat, mu;
    uint64_t n, nobs;
    const uint8_t *X, *id, *p, *q, *bpos, *H, *g;
};
#define INK_RLS_PART_INK 1u
#define INK_RLS_PART_KRR 2u

int ink__rls_partial_parse(const uint8_t *body, size_t len, struct ink__rls_part *out,
                           struct ink_err *err);

/* The merge node's side. conf: what every partial must match. */
struct ink__rlsm_conf {
    struct ink_kernel kern;
    int d, max_dict, qbar;
    double gamma, eps;
    bool predict;
};

/* The merged sketch, rebuilt from the held partials; buffers carved once. */
struct ink__rlsm {
    struct ink__rlsm_conf c;
    int cap; /* 2 max_dict: the union of the running merge and one partial */
    int m, nb, lwork, liwork;
    bool ink_mode, krr;
    double gamma_eff, c_est, dhat, mu;
    uint64_t n;
    int64_t escalations;
    struct ink_rng rng;
    double *X, *p, *s, *K, *A, *U, *w, *tau, *ev_work, *kx, *u, *kwork;
    int32_t *q, *keep, *isuppz, *ev_iwork;
    /* KRR: R (upper, K_BB = R^T R), Lh (lower, H + mu I = Lh Lh^T), h = Lh^-1 g */
    int32_t *bpos;
    double *R, *Ri, *T, *H, *Lh, *g, *z, *v, *h, *tmp;
};

/* Carves (base NULL: sizes) the buffers for c into cv. */
void ink__rlsm_layout(struct ink__rlsm *s, const struct ink__rlsm_conf *c, struct ink_carve *cv);
/* pt matches the conf (and ref, the first held partial, when not NULL): 0,
 * or INK_EINVAL with err saying what differs. */
int ink__rlsm_admit(const struct ink__rlsm *s, const struct ink__rls_part *pt,
                    const struct ink__rls_part *ref, struct ink_err *err);
/* Rebuilds the merged sketch from n admitted partials (in order), with the RNG
 * seeded from seed: the same partials, order and seed give the same bytes. */
int ink__rlsm_rebuild(struct ink__rlsm *s, const struct ink__rls_part *parts, int n, uint64_t seed,
                      struct ink_err *err);
/* tau (the estimate for a stream point) and tau_new at x. */
void ink__rlsm_tau(struct ink__rlsm *s, const double *x, double *tau, double *tau_new);
/* yhat and var at x (s->krr must be true). */
void ink__rlsm_predict(struct ink__rlsm *s, const double *x, double *yhat, double *var);

#endif
