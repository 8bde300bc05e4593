/* bkb's service operations beyond ask / tell / predict (docs/bkb.md "As a
 * service"): `fail` / `release` give a pending arm back without a reward,
 * `pending_timeout` does so for arms whose worker went silent, `best`
 * reports the best told reward and the arm of highest posterior mean,
 * `trials` and `pending` page through the history. Memory is fixed at
 * start: the history is a ring of `max_trials` finished trials (older ones
 * are dropped from `trials`, counted in `first`; `best` and the counters are
 * kept whole). Nothing here allocates. */
#include "bkb_service.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/codec.h"
#include "../engine/codec_int.h"

#include "../engine/state.h"

static void pack_params(const struct bkb_space *sp, msgpack_packer *pk, int64_t arm);

static size_t params_bytes_n(int naxes)
{
    return 5 + (size_t)naxes * (2 * (BKB_SPACE_NAME + 5) + 9);
}

void bkb_svc_layout(struct bkb_svc *v, struct ink_carve *c, int A, int d)
{
    size_t cap = v->cap > 0 ? (size_t)v->cap : 1;
    size_t pb = v->space_axes > 0 ? params_bytes_n(v->space_axes) : 0;
    v->ask_t = ink_carve_take(c, (size_t)A * sizeof(int64_t));
    v->ask_trial = ink_carve_take(c, (size_t)A * sizeof(int64_t));
    v->hist = ink_carve_take(c, cap * sizeof(struct bkb_trial));
    /* one page: per entry a map of up to 8 keys (< 128 bytes), x (9 bytes a
     * value) and the params */
    v->out_cap = (size_t)BKB_SVC_PAGE * (128 + 9 * (size_t)d + pb) + 64;
    v->out = ink_carve_take(c, v->out_cap);
    v->space = pb ? ink_carve_take(c, sizeof(struct bkb_space)) : NULL;
    v->pbuf_cap = pb ? (size_t)BKB_SVC_PAGE * pb + 8 : 0;
    v->pbuf = pb ? ink_carve_take(c, v->pbuf_cap) : NULL;
}

void bkb_svc_init(struct bkb_svc *v, double pending_timeout_s)
{
    v->timeout_ns = pending_timeout_s > 0 ? pending_timeout_s * 1e9 : 0;
    v->nhist = v->told = v->failed = v->expired = 0;
    v->best_arm = v->best_trial = -1;
    v->best_y = NAN;
    v->now = -1;
}

static void record_end(struct bkb_svc *v, int j, int state, double y)
{
    struct bkb_trial *h = &v->hist[v->nhist % v->cap];
    h->trial = v->ask_trial[j];
    h->t_ask = v->ask_t[j];
    h->t_end = v->now;
    h->y = y;
    h->arm = j;
    h->state = state;
    v->nhist++;
}

/* Arm j stops being pending without a reward. */
static void release(struct bkb_svc *v, const struct bkb_arms_view *a, int j, int state)
{
    if (a->pend[j] == PEND_BATCH) (*a->bpend)--;
    a->pend[j] = PEND_NONE;
    (*a->npend)--;
    record_end(v, j, state, NAN);
    if (state == BKB_TRIAL_EXPIRED)
        v->expired++;
    else
        v->failed++;
}

void bkb_svc_begin(struct bkb_svc *v, const struct bkb_arms_view *a, const struct ink_record *req)
{
    v->now = (req->flags & INK_HAS_T) ? req->t : -1;
    if (v->now < 0 || *a->npend == 0) return;
    for (int j = 0; j<a->A && * a->npend> 0; j++) {
        if (!a->pend[j]) continue;
        if (v->ask_t[j] < 0) { /* restored from a snapshot without ask times */
            v->ask_t[j] = v->now;
            continue;
        }
        if (v->timeout_ns > 0 && (double)(v->now - v->ask_t[j]) > v->timeout_ns)
            release(v, a, j, BKB_TRIAL_EXPIRED);
    }
}

void bkb_svc_asked(struct bkb_svc *v, int j, int64_t trial)
{
    v->ask_t[j] = v->now;
    v->ask_trial[j] = trial;
}

void bkb_svc_told(struct bkb_svc *v, int j, double y)
{
    record_end(v, j, BKB_TRIAL_TOLD, y);
    v->told++;
    if (v->best_arm < 0 || y > v->best_y) {
        v->best_arm = j;
        v->best_y = y;
        v->best_trial = v->ask_trial[j];
    }
}

/* ---- requests ------------------------------------------------------------ */

static int find_pending(const struct bkb_svc *v, const struct bkb_arms_view *a,
                        const struct ink_record *req, const char *op, int *j, struct ink_err *err)
{
    if (req->flags & INK_HAS_ARM) {
        if (req->arm < 0 || req->arm >= a->A)
            return ink_err_set(err, INK_EINVAL, "arm %lld out of range [0, %d)",
                               (long long)req->arm, a->A);
        *j = (int)req->arm;
    } else if (req->flags & INK_HAS_X) {
        if ((int)req->dim != a->d)
            return ink_err_set(err, INK_EDIM, "x has %u values, the arms have %d", req->dim, a->d);
        int i = 0;
        for (; i < a->A; i++) {
            const double *p = a->X + (size_t)i * a->d;
            int k = 0;
            while (k < a->d && fabs(p[k] - req->x[k]) <= 1e-9 * (1 + fabs(p[k]))) k++;
            if (k == a->d) break;
        }
        if (i == a->A) return ink_err_set(err, INK_EINVAL, "x is not one of the %d arms", a->A);
        *j = i;
    } else {
        int rc = bkb_svc_find_params(v, req, j, err);
        if (rc < 0) return rc;
        if (rc > 0)
            return ink_err_set(err, INK_EINVAL, "%s: give the pending arm (`arm`, `x` or `params`)",
                               op);
    }
    if (!a->pend[*j])
        return ink_err_set(err, INK_EINVAL,
                           "%s: arm %d is not pending (never asked, already told or failed, or "
                           "expired after pending_timeout)",
                           op, *j);
    return 0;
}

static int do_fail(struct bkb_svc *v, const struct bkb_arms_view *a, const struct ink_record *req,
                   const struct ink_emitter *out, struct ink_err *err)
{
    int j = -1, rc;
    const char *op = ink_record_op_is(req, "fail") ? "fail" : "release";
    if ((rc = find_pending(v, a, req, op, &j, err))) return rc;
    int64_t trial = v->ask_trial[j];
    release(v, a, j, BKB_TRIAL_FAILED);
    struct ink_record r;
    ink_record_derive(&r, req);
    r.flags &= ~(uint32_t)(INK_HAS_X | INK_HAS_Y);
    r.flags |= INK_HAS_ARM;
    r.arm = j;
    ink_record_add_i64(&r, "trial", trial);
    ink_record_add_i64(&r, "pending", *a->npend);
    ink_record_add_i64(&r, "failed", v->failed);
    return ink_emit(out, &r);
}

static int argmax_mu(const struct bkb_arms_view *a)
{
    int j = 0;
    for (int i = 1; i < a->A; i++)
        if (a->mu[i] > a->mu[j]) j = i;
    return j;
}

static int do_best(struct bkb_svc *v, const struct bkb_arms_view *a, const struct ink_record *req,
                   const struct ink_emitter *out, struct ink_err *err)
{
    if (v->best_arm < 0) return ink_err_set(err, INK_EINVAL, "best: no trial has been told yet");
    int b = (int)v->best_arm, m = argmax_mu(a);
    struct ink_record r;
    ink_record_derive(&r, req);
    r.flags &= ~(uint32_t)(INK_HAS_X | INK_HAS_Y | INK_HAS_ARM);
    r.flags |= INK_HAS_ARM | INK_HAS_X | INK_HAS_Y;
    r.arm = b;
    r.x = a->X + (size_t)b * a->d;
    r.dim = (uint32_t)a->d;
    r.y = v->best_y;
    ink_record_add_i64(&r, "trial", v->best_trial);
    ink_record_add_f64(&r, "mu", a->mu[b]);
    ink_record_add_f64(&r, "sigma", sqrt(a->var[b]));
    ink_record_add_i64(&r, "mean_arm", m);
    ink_record_add_f64s(&r, "mean_x", a->X + (size_t)m * a->d, (uint32_t)a->d);
    ink_record_add_f64(&r, "mean_mu", a->mu[m]);
    ink_record_add_f64(&r, "mean_sigma", sqrt(a->var[m]));
    ink_record_add_i64(&r, "told", v->told);
    ink_record_add_i64(&r, "failed", v->failed);
    ink_record_add_i64(&r, "expired", v->expired);
    ink_record_add_i64(&r, "pending", *a->npend);
    int64_t two[2] = {b, m};
    bkb_svc_add_params(v, &r, "params", two, 2, false);
    return ink_emit(out, &r);
}

/* msgpack into the fixed reply buffer */
struct fixbuf {
    char *p;
    size_t n, cap;
};

static int fix_write(void *data, const char *buf, size_t len)
{
    struct fixbuf *b = data;
    if (len > b->cap - b->n) return -1;
    memcpy(b->p + b->n, buf, len);
    b->n += len;
    return 0;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pk_x(msgpack_packer *pk, const struct bkb_arms_view *a, int j)
{
    pk_str(pk, "x");
    msgpack_pack_array(pk, (size_t)a->d);
    for (int k = 0; k < a->d; k++) msgpack_pack_double(pk, a->X[(size_t)j * a->d + k]);
}

static const char *state_name(int s)
{
    return s == BKB_TRIAL_TOLD ? "told" : s == BKB_TRIAL_FAILED ? "failed" : "expired";
}

static int page_args(const struct ink_record *req, const char *op, int64_t *start, int64_t *limit,
                     struct ink_err *err)
{
    *start = 0;
    *limit = 100;
    if (ink_record_extra_i64(req, "start", start) < 0 || *start < 0)
        return ink_err_set(err, INK_EINVAL, "%s: start must be an integer >= 0", op);
    if (ink_record_extra_i64(req, "limit", limit) < 0 || *limit < 0 || *limit > BKB_SVC_PAGE)
        return ink_err_set(err, INK_EINVAL, "%s: limit must be an integer in [0, %d]", op,
                           BKB_SVC_PAGE);
    return 0;
}

static int do_trials(struct bkb_svc *v, const struct bkb_arms_view *a, const struct ink_record *req,
                     const struct ink_emitter *out, struct ink_err *err)
{
    int64_t start, limit, rc;
    if ((rc = page_args(req, "trials", &start, &limit, err))) return (int)rc;
    int64_t first = v->nhist > v->cap ? v->nhist - v->cap : 0;
    int64_t from = start < first ? first : start;
    int64_t to = from + limit < v->nhist ? from + limit : v->nhist;
    if (to < from) to = from;
    struct fixbuf fb = {v->out, 0, v->out_cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fix_write);
    msgpack_pack_array(&pk, (size_t)(to - from));
    for (int64_t i = from; i < to; i++) {
        const struct bkb_trial *h = &v->hist[i % v->cap];
        bool told = h->state == BKB_TRIAL_TOLD;
        msgpack_pack_map(&pk, (told ? 7 : 6) + (v->space ? 1 : 0));
        pk_str(&pk, "index");
        msgpack_pack_int64(&pk, i);
        pk_str(&pk, "trial");
        msgpack_pack_int64(&pk, h->trial);
        pk_str(&pk, "arm");
        msgpack_pack_int64(&pk, h->arm);
        pk_str(&pk, "state");
        pk_str(&pk, state_name(h->state));
        if (told) {
            pk_str(&pk, "y");
            msgpack_pack_double(&pk, h->y);
        }
        pk_str(&pk, "duration");
        if (h->t_ask >= 0 && h->t_end >= 0)
            msgpack_pack_double(&pk, (double)(h->t_end - h->t_ask) * 1e-9);
        else
            msgpack_pack_nil(&pk);
        pk_x(&pk, a, h->arm);
        if (v->space) {
            pk_str(&pk, "params");
            pack_params(v->space, &pk, h->arm);
        }
    }
    struct ink_record r;
    ink_record_derive(&r, req);
    ink_record_add_i64(&r, "total", v->nhist);
    ink_record_add_i64(&r, "first", first);
    ink_record_add_i64(&r, "next", to);
    ink_record_add_i64(&r, "pending", *a->npend);
    ink_record_add(
        &r, "trials",
        (struct ink_value){.type = INK_V_RAW, .raw = {(const uint8_t *)fb.p, (uint32_t)fb.n}});
    return ink_emit(out, &r);
}

/* `pending`: the arms asked and not finished, in arm order, paged like trials. */
static int do_pending(struct bkb_svc *v, const struct bkb_arms_view *a,
                      const struct ink_record *req, const struct ink_emitter *out,
                      struct ink_err *err)
{
    int64_t start, limit, rc;
    if ((rc = page_args(req, "pending", &start, &limit, err))) return (int)rc;
    int64_t seen = 0, k = 0, n = 0;
    for (int j = 0; j < a->A; j++) /* count the page first: the array header comes first */
        if (a->pend[j] && seen++ >= start && n < limit) n++;
    struct fixbuf fb = {v->out, 0, v->out_cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fix_write);
    msgpack_pack_array(&pk, (size_t)n);
    seen = 0;
    for (int j = 0; j < a->A && k < n; j++) {
        if (!a->pend[j] || seen++ < start) continue;
        msgpack_pack_map(&pk, v->space ? 5 : 4);
        pk_str(&pk, "trial");
        msgpack_pack_int64(&pk, v->ask_trial[j]);
        pk_str(&pk, "arm");
        msgpack_pack_int64(&pk, j);
        pk_str(&pk, "age");
        if (v->now >= 0 && v->ask_t[j] >= 0)
            msgpack_pack_double(&pk, (double)(v->now - v->ask_t[j]) * 1e-9);
        else
            msgpack_pack_nil(&pk);
        pk_x(&pk, a, j);
        if (v->space) {
            pk_str(&pk, "params");
            pack_params(v->space, &pk, j);
        }
        k++;
    }
    struct ink_record r;
    ink_record_derive(&r, req);
    ink_record_add_i64(&r, "total", *a->npend);
    ink_record_add_i64(&r, "next", start + n);
    ink_record_add(
        &r, "pending",
        (struct ink_value){.type = INK_V_RAW, .raw = {(const uint8_t *)fb.p, (uint32_t)fb.n}});
    return ink_emit(out, &r);
}

int bkb_svc_query(struct bkb_svc *v, const struct bkb_arms_view *a, const struct ink_record *req,
                  const struct ink_emitter *out, struct ink_err *err)
{
    if (ink_record_op_is(req, "fail") || ink_record_op_is(req, "release"))
        return do_fail(v, a, req, out, err);
    if (ink_record_op_is(req, "best")) return do_best(v, a, req, out, err);
    if (ink_record_op_is(req, "trials")) return do_trials(v, a, req, out, err);
    if (ink_record_op_is(req, "pending")) return do_pending(v, a, req, out, err);
    return 1;
}

/* ---- state --------------------------------------------------------------- */

void bkb_svc_save(const struct bkb_svc *v, msgpack_packer *pk, int A)
{
    int64_t kept = v->nhist < v->cap ? v->nhist : v->cap;
    int64_t ctr[6] = {v->nhist, v->told, v->failed, v->expired, v->best_arm, v->best_trial};
    ink_pack_key(pk, "svc");
    ink_pack_i64s(pk, ctr, 6);
    ink_pack_key(pk, "best_y");
    msgpack_pack_double(pk, v->best_y);
    ink_pack_key(pk, "ask_t");
    ink_pack_i64s(pk, v->ask_t, (size_t)A);
    ink_pack_key(pk, "ask_trial");
    ink_pack_i64s(pk, v->ask_trial, (size_t)A);
    /* the ring, oldest first: h_* arrays of `kept` entries each */
    const char *keys[6] = {"h_trial", "h_task", "h_tend", "h_y", "h_arm", "h_state"};
    for (int f = 0; f < 6; f++) {
        ink_pack_key(pk, keys[f]);
        if (f == 3) {
            msgpack_pack_bin(pk, (size_t)kept * 8);
            for (int64_t i = v->nhist - kept; i < v->nhist; i++)
                msgpack_pack_bin_body(pk, &v->hist[i % v->cap].y, 8);
        } else if (f < 3) {
            msgpack_pack_bin(pk, (size_t)kept * 8);
            for (int64_t i = v->nhist - kept; i < v->nhist; i++) {
                const struct bkb_trial *h = &v->hist[i % v->cap];
                const int64_t *p = f == 0 ? &h->trial : f == 1 ? &h->t_ask : &h->t_end;
                msgpack_pack_bin_body(pk, p, 8);
            }
        } else {
            msgpack_pack_bin(pk, (size_t)kept * 4);
            for (int64_t i = v->nhist - kept; i < v->nhist; i++) {
                const struct bkb_trial *h = &v->hist[i % v->cap];
                msgpack_pack_bin_body(pk, f == 4 ? &h->arm : &h->state, 4);
            }
        }
    }
}

static int blob(const msgpack_object *obj, const char *key, size_t bytes, const char **p,
                struct ink_err *err)
{
    const msgpack_object *o;
    int rc = ink_state_get(obj, key, &o, err);
    if (rc) return rc;
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != bytes)
        return ink_err_set(err, INK_ESTATE, "state: %s has %u bytes, expected %zu", key,
                           o->type == MSGPACK_OBJECT_BIN ? o->via.bin.size : 0, bytes);
    *p = o->via.bin.ptr;
    return 0;
}

int bkb_svc_load(struct bkb_svc *v, const msgpack_object *obj, int A, int version,
                 struct ink_err *err)
{
    if (version < 2) { /* no service state saved: no history, pending asks of unknown age */
        for (int j = 0; j < A; j++) v->ask_t[j] = v->ask_trial[j] = -1;
        v->nhist = v->told = v->failed = v->expired = 0;
        v->best_arm = v->best_trial = -1;
        v->best_y = NAN;
        return 0;
    }
    int64_t ctr[6];
    double best_y;
    int rc;
    if ((rc = ink_state_i64s(obj, "svc", ctr, 6, err)) ||
        (rc = ink_state_f64(obj, "best_y", &best_y, err)))
        return rc;
    int64_t nhist = ctr[0], kept = nhist < v->cap ? nhist : v->cap;
    if (nhist < 0 || ctr[1] < 0 || ctr[2] < 0 || ctr[3] < 0 || ctr[1] + ctr[2] + ctr[3] != nhist ||
        ctr[4] < -1 || ctr[4] >= A || (ctr[4] >= 0) != (ctr[1] > 0))
        return ink_err_set(err, INK_ESTATE, "state: inconsistent service counters");
    const char *hp[6];
    const char *keys[6] = {"h_trial", "h_task", "h_tend", "h_y", "h_arm", "h_state"};
    for (int f = 0; f < 6; f++)
        if ((rc = blob(obj, keys[f], (size_t)kept * (f < 4 ? 8 : 4), &hp[f], err))) return rc;
    if ((rc = ink_state_need_len(obj, "ask_t", 8, (size_t)A, err)) ||
        (rc = ink_state_need_len(obj, "ask_trial", 8, (size_t)A, err)))
        return rc;
    for (int64_t i = 0; i < kept; i++) {
        int32_t arm, st;
        memcpy(&arm, hp[4] + 4 * i, 4);
        memcpy(&st, hp[5] + 4 * i, 4);
        if (arm < 0 || arm >= A || st < BKB_TRIAL_TOLD || st > BKB_TRIAL_EXPIRED)
            return ink_err_set(err, INK_ESTATE, "state: trial %lld is not valid", (long long)i);
    }
    /* checked: copy */
    ink_state_i64s(obj, "ask_t", v->ask_t, (size_t)A, err);
    ink_state_i64s(obj, "ask_trial", v->ask_trial, (size_t)A, err);
    for (int64_t i = 0; i < kept; i++) {
        struct bkb_trial *h = &v->hist[(nhist - kept + i) % v->cap];
        memcpy(&h->trial, hp[0] + 8 * i, 8);
        memcpy(&h->t_ask, hp[1] + 8 * i, 8);
        memcpy(&h->t_end, hp[2] + 8 * i, 8);
        memcpy(&h->y, hp[3] + 8 * i, 8);
        memcpy(&h->arm, hp[4] + 4 * i, 4);
        memcpy(&h->state, hp[5] + 4 * i, 4);
    }
    v->nhist = nhist;
    v->told = ctr[1];
    v->failed = ctr[2];
    v->expired = ctr[3];
    v->best_arm = ctr[4];
    v->best_trial = ctr[5];
    v->best_y = best_y;
    return 0;
}

double bkb_svc_gauge_expired(const struct bkb_svc *v)
{
    return (double)v->expired;
}

/* ---- named search spaces ------------------------------------------------- */

#define BKB_SPACE_MAX_ARMS 100000000

static int axis_n(const struct bkb_axis *x)
{
    return x->n;
}

/* Value of axis x at grid index k. */
static double axis_value(const struct bkb_axis *x, int k)
{
    if (x->n == 1 || k == 0) return x->lo; /* the ends exactly as configured */
    if (k == x->n - 1) return x->hi;
    double u = (double)k / (double)(x->n - 1);
    switch (x->kind) {
    case BKB_AX_LOG:
        return exp(log(x->lo) + (log(x->hi) - log(x->lo)) * u);
    case BKB_AX_INT:
        return x->lo + round((x->hi - x->lo) * u);
    default:
        return x->lo + (x->hi - x->lo) * u;
    }
}

static int two_numbers(json_t *a, const char *name, const char *kind, double *lo, double *hi,
                       struct ink_err *err)
{
    if (!json_is_array(a) || json_array_size(a) != 2 || !json_is_number(json_array_get(a, 0)) ||
        !json_is_number(json_array_get(a, 1)))
        return ink_err_set(err, INK_EINVAL, "arms.space.%s: %s needs [lo, hi]", name, kind);
    *lo = json_number_value(json_array_get(a, 0));
    *hi = json_number_value(json_array_get(a, 1));
    if (!(*lo <= *hi))
        return ink_err_set(err, INK_EINVAL, "arms.space.%s: %s [%g, %g]: lo > hi", name, kind, *lo,
                           *hi);
    return 0;
}

static int parse_axis(struct bkb_space *sp, struct bkb_axis *x, const char *name, json_t *spec,
                      struct ink_err *err)
{
    if (strlen(name) == 0 || strlen(name) >= BKB_SPACE_NAME)
        return ink_err_set(err, INK_EINVAL, "arms.space: parameter names have 1 to %d characters",
                           BKB_SPACE_NAME - 1);
    snprintf(x->name, sizeof x->name, "%s", name);
    if (!json_is_object(spec))
        return ink_err_set(err, INK_EINVAL,
                           "arms.space.%s: expected {log: [lo, hi], n}, {lin: [lo, hi], n}, "
                           "{int: [lo, hi]} or {choice: [...]}",
                           name);
    static const char *const kinds[] = {"lin", "log", "int", "choice"};
    int kind = -1, rc;
    const char *k;
    json_t *v;
    json_object_foreach(spec, k, v)
    {
        int i = 0;
        while (i < 4 && strcmp(k, kinds[i])) i++;
        if (i < 4) {
            if (kind >= 0)
                return ink_err_set(err, INK_EINVAL,
                                   "arms.space.%s: give one of lin, log, int, "
                                   "choice",
                                   name);
            kind = i;
        } else if (strcmp(k, "n") != 0) {
            return ink_err_set(err, INK_EINVAL,
                               "arms.space.%s: unknown key '%s' (lin, log, int, choice, n)", name,
                               k);
        }
    }
    if (kind < 0)
        return ink_err_set(err, INK_EINVAL, "arms.space.%s: give one of lin, log, int, choice",
                           name);
    x->kind = kind;
    json_t *jn = json_object_get(spec, "n");
    double n = kind == BKB_AX_INT ? -1 : 10;
    if (jn) {
        if (kind == BKB_AX_CHOICE)
            return ink_err_set(err, INK_EINVAL, "arms.space.%s: n does not apply to choice", name);
        if (!json_is_number(jn) || json_number_value(jn) < 1 || json_number_value(jn) > 1e6 ||
            json_number_value(jn) != floor(json_number_value(jn)))
            return ink_err_set(err, INK_EINVAL,
                               "arms.space.%s: n must be a whole number in "
                               "[1, 1e6]",
                               name);
        n = json_number_value(jn);
    }
    if (kind == BKB_AX_CHOICE) {
        json_t *a = json_object_get(spec, "choice");
        size_t m = json_is_array(a) ? json_array_size(a) : 0;
        if (m == 0)
            return ink_err_set(err, INK_EINVAL, "arms.space.%s: choice needs a non-empty list",
                               name);
        if (sp->nch + (int)m > BKB_SPACE_CHOICES)
            return ink_err_set(err, INK_EINVAL, "arms.space: more than %d choices in all",
                               BKB_SPACE_CHOICES);
        x->ch0 = sp->nch;
        x->n = (int)m;
        for (size_t i = 0; i < m; i++) {
            json_t *c = json_array_get(a, i);
            int ci = sp->nch++;
            if (json_is_string(c) && strlen(json_string_value(c)) < BKB_SPACE_NAME) {
                sp->ch_kind[ci] = BKB_CH_STR;
                snprintf(sp->ch_str[ci], BKB_SPACE_NAME, "%s", json_string_value(c));
            } else if (json_is_number(c)) {
                sp->ch_kind[ci] = BKB_CH_NUM;
                sp->ch_num[ci] = json_number_value(c);
            } else if (json_is_boolean(c)) {
                sp->ch_kind[ci] = BKB_CH_BOOL;
                sp->ch_num[ci] = json_is_true(c);
            } else {
                return ink_err_set(err, INK_EINVAL,
                                   "arms.space.%s: choices are strings (< %d bytes), numbers or "
                                   "booleans",
                                   name, BKB_SPACE_NAME);
            }
            for (int j = x->ch0; j < ci; j++)
                if (sp->ch_kind[j] == sp->ch_kind[ci] && sp->ch_num[j] == sp->ch_num[ci] &&
                    strcmp(sp->ch_str[j], sp->ch_str[ci]) == 0)
                    return ink_err_set(err, INK_EINVAL,
                                       "arms.space.%s: choice %zu repeats one "
                                       "before it",
                                       name, i);
        }
        return 0;
    }
    if ((rc = two_numbers(json_object_get(spec, kinds[kind]), name, kinds[kind], &x->lo, &x->hi,
                          err)))
        return rc;
    if (kind == BKB_AX_LOG && !(x->lo > 0))
        return ink_err_set(err, INK_EINVAL, "arms.space.%s: log needs 0 < lo", name);
    if (kind == BKB_AX_INT) {
        if (x->lo != floor(x->lo) || x->hi != floor(x->hi) || fabs(x->lo) > 1e15 ||
            fabs(x->hi) > 1e15)
            return ink_err_set(err, INK_EINVAL, "arms.space.%s: int needs integer bounds", name);
        double count = x->hi - x->lo + 1;
        if (n < 0) n = count;
        if (n > count)
            return ink_err_set(err, INK_EINVAL,
                               "arms.space.%s: n = %g but [%g, %g] holds %g "
                               "integers",
                               name, n, x->lo, x->hi, count);
        if (n > 1e6)
            return ink_err_set(err, INK_EINVAL, "arms.space.%s: more than 1e6 integers: give n",
                               name);
    }
    if (x->lo == x->hi && n != 1)
        return ink_err_set(err, INK_EINVAL, "arms.space.%s: lo = hi needs n = 1", name);
    x->n = (int)n;
    return 0;
}

int bkb_space_parse(const char *json, struct bkb_space *sp, struct ink_err *err)
{
    memset(sp, 0, sizeof *sp);
    json_error_t je;
    json_t *root = json_loads(json ? json : "", 0, &je);
    if (!root) return ink_err_set(err, INK_EINVAL, "arms.space: %s", je.text);
    int rc = 0;
    if (!json_is_object(root) || json_object_size(root) == 0 ||
        json_object_size(root) > BKB_SPACE_AXES) {
        rc = ink_err_set(err, INK_EINVAL, "arms.space: expected a map of 1 to %d parameters",
                         BKB_SPACE_AXES);
        goto out;
    }
    const char *name;
    json_t *spec;
    double A = 1;
    json_object_foreach(root, name, spec)
    {
        struct bkb_axis *x = &sp->ax[sp->naxes++];
        if ((rc = parse_axis(sp, x, name, spec, err))) goto out;
        x->col = sp->d;
        sp->d += x->kind == BKB_AX_CHOICE ? x->n : 1;
        A *= axis_n(x);
    }
    if (A > BKB_SPACE_MAX_ARMS) {
        rc = ink_err_set(err, INK_EINVAL, "arms.space: %.0f combinations, more than %d", A,
                         BKB_SPACE_MAX_ARMS);
        goto out;
    }
    if (sp->d > 1024) {
        rc = ink_err_set(err, INK_EINVAL,
                         "arms.space: %d coordinates (one-hot choices count "
                         "one each), more than 1024",
                         sp->d);
        goto out;
    }
    sp->A = (int64_t)A;
out:
    json_decref(root);
    return rc;
}

void bkb_space_arms(const struct bkb_space *sp, double *X)
{
    for (int64_t i = 0; i < sp->A; i++) {
        double *x = X + (size_t)i * sp->d;
        int64_t r = i;
        memset(x, 0, (size_t)sp->d * sizeof(double));
        for (int a = 0; a < sp->naxes; a++) {
            const struct bkb_axis *ax = &sp->ax[a];
            int k = (int)(r % ax->n);
            r /= ax->n;
            if (ax->kind == BKB_AX_CHOICE)
                x[ax->col + k] = M_SQRT1_2;
            else if (ax->lo == ax->hi)
                x[ax->col] = 0;
            else if (ax->kind == BKB_AX_LOG)
                x[ax->col] = (log(axis_value(ax, k)) - log(ax->lo)) / (log(ax->hi) - log(ax->lo));
            else
                x[ax->col] = (axis_value(ax, k) - ax->lo) / (ax->hi - ax->lo);
        }
    }
}

static void pack_params(const struct bkb_space *sp, msgpack_packer *pk, int64_t arm)
{
    msgpack_pack_map(pk, (size_t)sp->naxes);
    int64_t r = arm;
    for (int a = 0; a < sp->naxes; a++) {
        const struct bkb_axis *ax = &sp->ax[a];
        int k = (int)(r % ax->n);
        r /= ax->n;
        pk_str(pk, ax->name);
        if (ax->kind == BKB_AX_CHOICE) {
            int c = ax->ch0 + k;
            if (sp->ch_kind[c] == BKB_CH_STR)
                pk_str(pk, sp->ch_str[c]);
            else if (sp->ch_kind[c] == BKB_CH_BOOL)
                sp->ch_num[c] ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
            else
                msgpack_pack_double(pk, sp->ch_num[c]);
        } else if (ax->kind == BKB_AX_INT) {
            msgpack_pack_int64(pk, (int64_t)axis_value(ax, k));
        } else {
            msgpack_pack_double(pk, axis_value(ax, k));
        }
    }
}

int bkb_space_axes(const char *json)
{
    struct bkb_space *sp = malloc(sizeof *sp); /* config time */
    struct ink_err e = {0};
    int n = sp && bkb_space_parse(json, sp, &e) == 0 ? sp->naxes : 0;
    free(sp);
    return n;
}

/* list: one `name` field holding a list of k maps. Otherwise k is 1 (one map
 * under `name`) or 2 (best: `params` and `mean_params`). */
void bkb_svc_add_params(struct bkb_svc *v, struct ink_record *r, const char *name,
                        const int64_t *arms, int k, bool list)
{
    if (!v->space || k < 1) return;
    struct fixbuf fb = {v->pbuf, 0, v->pbuf_cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fix_write);
    if (list) msgpack_pack_array(&pk, (size_t)k);
    size_t start[3] = {0, 0, 0};
    for (int i = 0; i < k; i++) {
        if (!list && i < 3) start[i] = fb.n;
        pack_params(v->space, &pk, arms[i]);
    }
    if (list || k == 1) {
        ink_record_add(
            r, name,
            (struct ink_value){.type = INK_V_RAW, .raw = {(const uint8_t *)fb.p, (uint32_t)fb.n}});
        return;
    }
    ink_record_add(
        r, "params",
        (struct ink_value){.type = INK_V_RAW, .raw = {(const uint8_t *)fb.p, (uint32_t)start[1]}});
    ink_record_add(
        r, "mean_params",
        (struct ink_value){.type = INK_V_RAW,
                           .raw = {(const uint8_t *)fb.p + start[1], (uint32_t)(fb.n - start[1])}});
}

static int mp_map(const uint8_t **pp, const uint8_t *end, uint32_t *n)
{
    const uint8_t *p = *pp;
    if (p >= end) return -1;
    if (*p >= 0x80 && *p <= 0x8f) {
        *n = *p & 0x0f;
        *pp = p + 1;
        return 0;
    }
    if (*p == 0xde && end - p >= 3) {
        *n = ink__rd16(p + 1);
        *pp = p + 3;
        return 0;
    }
    if (*p == 0xdf && end - p >= 5) {
        *n = ink__rd32(p + 1);
        *pp = p + 5;
        return 0;
    }
    return -1;
}

/* Grid index of value p (msgpack) on axis ax, or an error. */
static int axis_index(const struct bkb_space *sp, const struct bkb_axis *ax, const uint8_t *p,
                      const uint8_t *end, int *k, struct ink_err *err)
{
    if (ax->kind == BKB_AX_CHOICE) {
        const char *str;
        uint32_t sn;
        double num;
        const uint8_t *q = p;
        int kind = -1;
        if (ink__mp_str(&q, end, &str, &sn) == 0)
            kind = BKB_CH_STR;
        else if (*p == 0xc2 || *p == 0xc3)
            kind = BKB_CH_BOOL, num = *p == 0xc3;
        else if ((q = p, ink__mp_f64(&q, end, &num)) == 0)
            kind = BKB_CH_NUM;
        for (int i = 0; kind >= 0 && i < ax->n; i++) {
            int c = ax->ch0 + i;
            if (sp->ch_kind[c] != kind) continue;
            if (kind == BKB_CH_STR ? strlen(sp->ch_str[c]) == sn && !memcmp(sp->ch_str[c], str, sn)
                                   : sp->ch_num[c] == num) {
                *k = i;
                return 0;
            }
        }
        return ink_err_set(err, INK_EINVAL, "params.%s: not one of its %d choices", ax->name,
                           ax->n);
    }
    double v;
    const uint8_t *q = p;
    if (ink__mp_f64(&q, end, &v) || !isfinite(v))
        return ink_err_set(err, INK_EINVAL, "params.%s: expected a number", ax->name);
    double u;
    if (ax->lo == ax->hi)
        u = 0;
    else if (ax->kind == BKB_AX_LOG)
        u = v > 0 ? (log(v) - log(ax->lo)) / (log(ax->hi) - log(ax->lo)) : -1;
    else
        u = (v - ax->lo) / (ax->hi - ax->lo);
    double kk = round(u * (ax->n - 1));
    if (kk >= 0 && kk <= ax->n - 1) {
        double g = axis_value(ax, (int)kk);
        if (fabs(g - v) <= 1e-9 * (fabs(g) + fabs(v)) || g == v) {
            *k = (int)kk;
            return 0;
        }
    }
    return ink_err_set(err, INK_EINVAL, "params.%s = %.17g is not on the space's grid", ax->name,
                       v);
}

int bkb_svc_find_params(const struct bkb_svc *v, const struct ink_record *req, int *j,
                        struct ink_err *err)
{
    const uint8_t *p, *end;
    if (!ink_record_extra_raw(req, "params", &p, &end)) return 1;
    const struct bkb_space *sp = v->space;
    if (!sp) return ink_err_set(err, INK_EINVAL, "params: the arms are not a named space");
    uint32_t n;
    if (mp_map(&p, end, &n)) return ink_err_set(err, INK_EINVAL, "params: expected a map");
    int idx[BKB_SPACE_AXES];
    for (int a = 0; a < sp->naxes; a++) idx[a] = -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kn;
        size_t vl;
        enum ink_reject why;
        if (ink__mp_str(&p, end, &k, &kn) || p >= end ||
            ink_msgpack_scan(p, (size_t)(end - p), 8, &vl, &why) != 0)
            return ink_err_set(err, INK_EINVAL, "params: expected a map of names to values");
        int a = 0;
        while (a < sp->naxes && !(strlen(sp->ax[a].name) == kn && !memcmp(sp->ax[a].name, k, kn)))
            a++;
        if (a == sp->naxes)
            return ink_err_set(err, INK_EINVAL, "params: unknown parameter '%.*s'",
                               (int)(kn > 64 ? 64 : kn), k);
        int rc = axis_index(sp, &sp->ax[a], p, p + vl, &idx[a], err);
        if (rc) return rc;
        p += vl;
    }
    int64_t arm = 0, mul = 1;
    for (int a = 0; a < sp->naxes; a++) {
        if (idx[a] < 0)
            return ink_err_set(err, INK_EINVAL, "params: '%s' is missing", sp->ax[a].name);
        arm += idx[a] * mul;
        mul *= sp->ax[a].n;
    }
    *j = (int)arm;
    return 0;
}
