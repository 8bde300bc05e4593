/* rls_sketch: the conf struct its parameter table fills (tests and nodes
 * built in code fill it directly). docs/algorithms.md sections 1 and 5.1. */
#ifndef INK_RLS_SKETCH_H
#define INK_RLS_SKETCH_H

#include <stdbool.h>
#include <stdint.h>

#include "../engine/op.h"
#include "kernel.h"

enum ink_rls_mode {
    INK_RLS_SQUEAK = 0, /* unnormalised RLS (default) */
    INK_RLS_INK = 1     /* INK-Estimate: scores normalised by the d_eff estimate */
};

enum ink_rls_rescore {
    INK_RLS_EIGEN = 0,   /* r_j from the eigen form (dsyevr; no cancellation; default) */
    INK_RLS_CHOLESKY = 1 /* r_j = 1 - gamma [(A_s + gamma I)^-1]_jj (dpotrf + dtrtri, 1.7) */
};

struct ink_rls_conf {
    struct ink_kernel_conf kernel;
    int64_t dim;      /* length of x (required: buffers are sized at init) */
    double gamma;     /* RLS regulariser (1.2) */
    double eps;       /* accuracy; alpha = (1+eps)/(1-eps) */
    double est_scale; /* estimator scale c_est (1.2); 0 = 1 - eps */
    int64_t qbar;     /* copies per point (1.4) */
    int64_t max_dict; /* hard cap m_max (1.7) */
    int64_t batch;    /* 0: step by step (1.5); N: re-estimate all members every N arrivals */
    double slack;     /* batch 0: re-thin a member once its estimate < p / (1 + slack) */
    int mode;         /* enum ink_rls_mode */
    int64_t seed;     /* -1 = the seed the engine derives for the node */
    bool predict;     /* Nystrom KRR (5.1) */
    double mu;        /* KRR regulariser */
    bool shrink;      /* false: keep every point with p = 1 (diagnostic, 1.8 T6) */
    int rescore;      /* enum ink_rls_rescore: how the batch re-estimation scores members */
    int64_t publish;  /* every this many arrivals, emit the dictionary as a partial (0: never) */
};

extern const struct ink_param ink_rls_params[];
extern const struct ink_op_vtable ink_op_rls_sketch;

#endif
