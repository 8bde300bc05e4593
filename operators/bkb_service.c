/* bkb's service operations beyond ask / tell / predict (docs/bkb.md "As a
 * service"): `fail` / `release` give a pending arm back without a reward,
 * `pending_timeout` does so for arms whose worker went silent, `best`
 * reports the best told reward and the arm of highest posterior mean,
 * `trials` and `pending` page through the history. Memory is fixed at
 * start: the history is a ring of `max_trials` finished trials (older ones
 * are dropped from `trials`, counted in `first`; `best` and the counters are
 * kept whole). Nothing here allocates. */
#include "bkb_service.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../engine/state.h"

void bkb_svc_layout(struct bkb_svc *v, struct ink_carve *c, int A, int d)
{
    size_t cap = v->cap > 0 ? (size_t)v->cap : 1;
    v->ask_t = ink_carve_take(c, (size_t)A * sizeof(int64_t));
    v->ask_trial = ink_carve_take(c, (size_t)A * sizeof(int64_t));
    v->hist = ink_carve_take(c, cap * sizeof(struct bkb_trial));
    /* one page: per entry a map of up to 7 keys (< 100 bytes) and x (9 bytes a value) */
    v->out_cap = (size_t)BKB_SVC_PAGE * (128 + 9 * (size_t)d) + 64;
    v->out = ink_carve_take(c, v->out_cap);
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
    for (int j = 0; j < a->A && *a->npend > 0; j++) {
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

static int find_pending(const struct bkb_arms_view *a, const struct ink_record *req, const char *op,
                        int *j, struct ink_err *err)
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
        return ink_err_set(err, INK_EINVAL, "%s: give the pending arm (`arm` or `x`)", op);
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
    if ((rc = find_pending(a, req, op, &j, err))) return rc;
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
        msgpack_pack_map(&pk, told ? 7 : 6);
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
    }
    struct ink_record r;
    ink_record_derive(&r, req);
    ink_record_add_i64(&r, "total", v->nhist);
    ink_record_add_i64(&r, "first", first);
    ink_record_add_i64(&r, "next", to);
    ink_record_add_i64(&r, "pending", *a->npend);
    ink_record_add(&r, "trials",
                   (struct ink_value){.type = INK_V_RAW,
                                      .raw = {(const uint8_t *)fb.p, (uint32_t)fb.n}});
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
        msgpack_pack_map(&pk, 4);
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
        k++;
    }
    struct ink_record r;
    ink_record_derive(&r, req);
    ink_record_add_i64(&r, "total", *a->npend);
    ink_record_add_i64(&r, "next", start + n);
    ink_record_add(&r, "pending",
                   (struct ink_value){.type = INK_V_RAW,
                                      .raw = {(const uint8_t *)fb.p, (uint32_t)fb.n}});
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
