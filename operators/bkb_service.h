/* The bookkeeping of bkb's service protocol (docs/bkb.md "As a service"):
 * which trial asked each pending arm and when, releasing arms (`fail`,
 * `release`, `pending_timeout`), the best told reward, and the bounded
 * history of finished trials (`trials`). bkb.c owns the posterior and the
 * pending flags; it embeds a struct bkb_svc in its state, carves its arrays
 * from its own arena, and calls these hooks. */
#ifndef INK_BKB_SERVICE_H
#define INK_BKB_SERVICE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "../engine/err.h"
#include "../engine/opkit.h"
#include "../engine/record.h"

/* pend[i] of bkb's state */
enum { PEND_NONE = 0, PEND_OLD = 1, PEND_BATCH = 2 };

/* How a trial ended. */
enum { BKB_TRIAL_TOLD = 1, BKB_TRIAL_FAILED = 2, BKB_TRIAL_EXPIRED = 3 };

#define BKB_SVC_PAGE 256 /* most trials (or pending arms) in one reply */

struct bkb_trial {
    int64_t trial;        /* the `round` of its ask */
    int64_t t_ask, t_end; /* event times (ns) of the ask and of the tell / fail / expiry */
    double y;             /* reward when told, else NaN */
    int32_t arm;
    int32_t state; /* BKB_TRIAL_* */
};

/* A named search space (arms: {space: {name: {log|lin|int: [lo, hi], n} |
 * {choice: [...]}, ...}}), docs/bkb.md "Named search spaces". Arms are the
 * grid of all combinations, axis 0 (the first name) varying fastest; the
 * kernel sees every numeric axis scaled to [0, 1] (log axes in log space)
 * and every categorical axis one-hot, scaled by 1/sqrt(2). */
#define BKB_SPACE_AXES    32
#define BKB_SPACE_CHOICES 512 /* in all */
#define BKB_SPACE_NAME    64

enum { BKB_AX_LIN, BKB_AX_LOG, BKB_AX_INT, BKB_AX_CHOICE };
enum { BKB_CH_STR, BKB_CH_NUM, BKB_CH_BOOL };

struct bkb_axis {
    char name[BKB_SPACE_NAME];
    int kind, n, col; /* col: first coordinate of x */
    int ch0;          /* choices: first index in the space's choice table */
    double lo, hi;
};

struct bkb_space {
    int naxes, d, nch;
    int64_t A;
    struct bkb_axis ax[BKB_SPACE_AXES];
    int ch_kind[BKB_SPACE_CHOICES];
    double ch_num[BKB_SPACE_CHOICES];
    char ch_str[BKB_SPACE_CHOICES][BKB_SPACE_NAME];
};

/* Parse and check the JSON text of arms.space (INK_P_JSON). */
int bkb_space_parse(const char *json, struct bkb_space *sp, struct ink_err *err);
/* Number of parameters of a valid space (config time; 0 when invalid). */
int bkb_space_axes(const char *json);
/* The d x A kernel coordinates of every arm. */
void bkb_space_arms(const struct bkb_space *sp, double *X);

struct bkb_svc {
    double timeout_ns;      /* pending_timeout in ns; 0 = never */
    int64_t cap;            /* max_trials: the history ring */
    int64_t *ask_t;         /* per arm, while pending: event time of its ask (-1: unknown) */
    int64_t *ask_trial;     /* per arm, while pending: trial number of its ask */
    struct bkb_trial *hist; /* ring of cap finished trials */
    char *out;              /* reply scratch (trials / pending pages) */
    size_t out_cap;
    int64_t nhist; /* trials finished, ever; the ring holds the last cap */
    int64_t told, failed, expired;
    int64_t best_arm, best_trial; /* -1 before the first tell */
    double best_y;
    int64_t now;             /* event time of the request being served (-1: none) */
    int space_axes;          /* parameters of the named space (0: none); set before layout */
    struct bkb_space *space; /* named search space, or NULL (carved when given) */
    char *pbuf;              /* params of up to BKB_SVC_PAGE arms, msgpack */
    size_t pbuf_cap;
};

/* What bkb.c shows the service of its arms and posterior. */
struct bkb_arms_view {
    int A, d;
    const double *X;        /* d x A */
    const double *mu, *var; /* posterior of the last rebuild */
    double beta;
    int32_t *pend;          /* PEND_* per arm */
    int64_t *npend, *bpend; /* pending arms, of which in the current BBKB batch */
};

/* Carve the service arrays (cap from conf, set by the caller; `space` true
 * space_axes > 0 when the arms are a named space of that many parameters)
 * from bkb's arena. */
void bkb_svc_layout(struct bkb_svc *v, struct ink_carve *c, int A, int d);
/* Named space: add `params` (one arm: a map; k arms: a list of maps) to a
 * reply; nothing without a space. */
void bkb_svc_add_params(struct bkb_svc *v, struct ink_record *r, const char *name,
                        const int64_t *arms, int k, bool list);
/* The arm named by the request's `params` map: 0 and *j; 1 when the request
 * has no `params`; or an error. */
int bkb_svc_find_params(const struct bkb_svc *v, const struct ink_record *req, int *j,
                        struct ink_err *err);
void bkb_svc_init(struct bkb_svc *v, double pending_timeout_s);

/* Start of every request: takes its event time (`t`, stamped by the zmq
 * source) and expires pending arms older than pending_timeout. */
void bkb_svc_begin(struct bkb_svc *v, const struct bkb_arms_view *a, const struct ink_record *req);
/* Arm j was handed out as trial `trial`. */
void bkb_svc_asked(struct bkb_svc *v, int j, int64_t trial);
/* Arm j's reward y was learnt (its pending flag already cleared). */
void bkb_svc_told(struct bkb_svc *v, int j, double y);

/* fail / release, best, trials. Returns 1 when req is none of these. */
int bkb_svc_query(struct bkb_svc *v, const struct bkb_arms_view *a, const struct ink_record *req,
                  const struct ink_emitter *out, struct ink_err *err);

/* State: the keys this adds to bkb's saved map, and reading them back
 * (version 1 saved none: empty history, pending asks of unknown age,
 * stamped at the next request). Checks everything before copying. */
#define BKB_SVC_SAVE_KEYS 10
void bkb_svc_save(const struct bkb_svc *v, msgpack_packer *pk, int A);
int bkb_svc_load(struct bkb_svc *v, const msgpack_object *obj, int A, int version,
                 struct ink_err *err);

/* /metrics */
double bkb_svc_gauge_expired(const struct bkb_svc *v);

#endif
