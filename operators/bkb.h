/* The bkb operator's configuration (operators/bkb.c): budgeted kernelized
 * bandit BKB and its batched form BBKB (docs/algorithms.md sections 2 and 5.3).
 * The structs are public so that tests and nodes built in code can fill
 * them directly; the YAML loader fills them through ink_op_bkb.params. */
#ifndef INK_BKB_H
#define INK_BKB_H

#include <stdbool.h>
#include <stdint.h>

#include "../engine/op.h"
#include "kernel.h"

/* arms: {grid: {lo: [..], hi: [..], n: [..]}}: a rectilinear grid, axis 0 fastest. */
struct ink_bkb_grid_conf {
    bool set;
    struct ink_f64_list lo, hi;
    struct ink_f64_list n; /* points per axis: one value for every axis, or one per axis */
};

/* arms: {random: {n, lo, hi, seed}}: n points uniform in the box [lo, hi]. */
struct ink_bkb_random_conf {
    bool set;
    int64_t n;
    struct ink_f64_list lo, hi;
    int64_t seed;
};

/* Exactly one of grid, file, random, space. */
struct ink_bkb_arms_conf {
    bool set;
    struct ink_bkb_grid_conf grid;
    char *file;       /* CSV, one arm per row (optional header row), relative to the config */
    int64_t max_arms; /* file only: bound used by mem_bound before the file is read */
    int64_t max_dim;  /* file only: likewise for the number of columns */
    struct ink_bkb_random_conf random;
    char *space; /* named search space, JSON text (INK_P_JSON): operators/bkb_service.c */
};

/* batch: {ratio: C}: BBKB with the global stopping rule (docs/algorithms.md 2.6). */
struct ink_bkb_batch_conf {
    bool set;
    double ratio; /* C~: a batch closes once 1 + sum of its batch-start variances > ratio */
};

struct ink_bkb_conf {
    struct ink_bkb_arms_conf arms;
    struct ink_kernel_conf kernel;
    double lambda;    /* GP/KRR regularizer (prior k/lambda) */
    double F;         /* RKHS norm bound */
    double noise_var; /* sub-Gaussian noise variance proxy */
    double delta;     /* confidence */
    double qbar;      /* oversampling of the dictionary resampling; 0: ink_bkb_default_qbar */
    int64_t max_dict; /* m_max: dictionary cap (docs/algorithms.md 2.8) */
    double beta;      /* > 0: fixed beta; 0: the reference formula (2.4 / 2.6) */
    struct ink_bkb_batch_conf batch;
    int64_t seed;           /* -1: the engine's per-node seed */
    int64_t init;           /* uniformly random arms played before the first UCB suggestion */
    int64_t arm_block;      /* rows of arms embedded at once */
    uint64_t max_memory;    /* bytes; the arms' embedding Z is stored only if it fits */
    bool lazy;              /* lazy UCB refresh (false: full recompute, for tests and benchmarks) */
    double pending_timeout; /* service: seconds before an asked arm is released (0: never) */
    int64_t max_trials;     /* service: finished trials kept in the history ring */
};

extern const struct ink_op_vtable ink_op_bkb;

/* The qbar used when the configuration leaves it at 0: 2 (1 + lambda / kbar),
 * kbar the mean of k(a, a) over the arms (docs/bkb.md, Choosing qbar). */
double ink_bkb_default_qbar(double lambda, double kbar);

#endif
