/* merge: global answers from the partials of many keyed ecdf states
 * (docs/ecdf.md#global-answers-by-merging) or rls_sketch states
 * (docs/rls_sketch.md#publish-and-merge: the DISQUEAK merge, in
 * operators/rls_merge.c). Each record carrying a
 * `partial` (operators/partial.h: an ecdf's cumulative KLL sketch or Fenwick
 * counts) replaces the partial held for its source, the triple (source,
 * key, kafka_partition), so a replayed partial replaces rather than adds;
 * one whose kafka_offset is below the held one's is stale and ignored
 * (counted). Queries answer on the merge of every held partial: KLL by the
 * standard same-k merge (ink__kll_merge, sources in arrival order, fixed
 * seed: the same partials give the same bytes), Fenwick trees by
 * element-wise addition on the identical grid. A partial with another k,
 * mode or grid is refused. Records without a partial are skipped (counted).
 * Memory is fixed at init by max_sources and the largest partial. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/opkit.h"
#include "../engine/state.h"
#include "ecdf.h"
#include "fenwick.h"
#include "kll.h"
#include "partial.h"
#include "rls_merge.h"

#define STATE_VERSION 1
#define ID_MAX        320 /* source (<= 63 bytes kept) + key (<= 255) + partition */

struct merge_conf {
    struct ink_ecdf_conf e; /* mode (kll or grid), k, grid: checked by the ecdf check */
    int64_t max_sources;
    /* mode rls: what every partial must match */
    struct ink_kernel_conf kernel;
    int64_t dim, qbar, max_dict;
    double gamma, eps;
    bool predict;
};

enum { MERGE_RLS = 2 }; /* modes 0 and 1 are the ecdf's kll and grid */
static const char *const merge_modes[] = {"kll", "grid", "rls", NULL};

#define MOFF(f) offsetof(struct merge_conf, f)

static const struct ink_param merge_params[] = {
    {.name = "mode",
     .type = INK_P_ENUM,
     .offset = MOFF(e.mode),
     .def = "kll",
     .choices = merge_modes,
     .help = "kll (merge KLL sketches) or grid (add Fenwick counts): the publishing ecdf's mode; "
             "rls: the DISQUEAK merge of rls_sketch dictionaries"},
    {.name = "k",
     .type = INK_P_INT,
     .offset = MOFF(e.k),
     .def = "200",
     .min = 8,
     .max = 65535,
     .help = "kll: the publishers' k (partials of another k are refused)"},
    {.name = "grid",
     .type = INK_P_OBJECT,
     .offset = MOFF(e.grid),
     .sub = ink_ecdf_grid_params,
     .help = "grid: the publishers' grid, node for node (others are refused)"},
    {.name = "max_sources",
     .type = INK_P_INT,
     .offset = MOFF(max_sources),
     .def = "64",
     .min = 1,
     .max = 65536,
     .help = "most sources (publishing node, key, kafka partition) held; one more is refused"},
    {.name = "dim",
     .type = INK_P_INT,
     .offset = MOFF(dim),
     .def = "0",
     .min = 0,
     .max = 1 << 20,
     .help = "rls (required): the publishers' dim"},
    {.name = "kernel",
     .type = INK_P_OBJECT,
     .offset = MOFF(kernel),
     .sub = ink_kernel_params,
     .help = "rls: the publishers' kernel (others are refused)"},
    {.name = "gamma",
     .type = INK_P_DOUBLE,
     .offset = MOFF(gamma),
     .def = "1.0",
     .min = 1e-12,
     .max = 1e12,
     .help = "rls: the publishers' gamma (others are refused)"},
    {.name = "eps",
     .type = INK_P_DOUBLE,
     .offset = MOFF(eps),
     .def = "0.5",
     .min = 1e-6,
     .max = 0.999,
     .help = "rls: the publishers' eps (others are refused)"},
    {.name = "qbar",
     .type = INK_P_INT,
     .offset = MOFF(qbar),
     .def = "8",
     .min = 1,
     .max = 100000,
     .help = "rls: the publishers' qbar (others are refused)"},
    {.name = "max_dict",
     .type = INK_P_INT,
     .offset = MOFF(max_dict),
     .def = "1024",
     .min = 1,
     .max = 16384,
     .help = "rls: largest dictionary a partial may carry, and the merged dictionary's cap "
             "(reaching it doubles gamma_eff)"},
    {.name = "predict",
     .type = INK_P_BOOL,
     .offset = MOFF(predict),
     .def = "false",
     .help = "rls: answer predict from the partials' KRR statistics (publishers with predict: "
             "true)"},
    {0},
};

struct merge {
    int mode, d;
    uint32_t k, max, nsrc;
    uint64_t seed, skipped, stale;
    size_t pmax; /* bytes of the largest partial */
    void *mem;
    uint8_t *pay; /* max x pmax: each source's latest partial (bin object) */
    uint32_t *plen, *idlen;
    char *ids;    /* max x ID_MAX */
    int64_t *off; /* kafka_offset of the held partial, -1 none */
    uint64_t *sn; /* n of each held partial */
    bool dirty;   /* the merged answer must be rebuilt */
    /* kll: one source decoded, and the merge of all */
    struct ink__kll one, all;
    /* grid */
    struct ink__grid g;
    double *nodes, *T, wout;
    uint64_t n;
    double rv[8], qv[8];
    /* rls */
    struct ink__rlsm rls;
    struct ink__rls_part *parts; /* max: the held partials, parsed at rebuild */
};

static int merge_check(const void *conf, struct ink_err *err)
{
    const struct merge_conf *c = conf;
    if (c->max_sources < 1 || c->max_sources > 65536)
        return ink_err_set(err, INK_ERANGE, "max_sources: 1..65536");
    if (c->e.mode == MERGE_RLS) {
        if (c->dim < 1)
            return ink_err_set(err, INK_EINVAL, "mode rls needs dim: the publishers' dim");
        if (c->e.grid.set) return ink_err_set(err, INK_EINVAL, "grid: only for mode grid");
        struct ink_kernel k;
        return ink_kernel_init(&k, &c->kernel, (int)c->dim, err);
    }
    if (c->dim != 0 || c->kernel.set || c->predict)
        return ink_err_set(err, INK_EINVAL, "dim, kernel, predict: only for mode rls");
    if (c->e.mode == INK_ECDF_KLL && c->e.grid.set)
        return ink_err_set(err, INK_EINVAL, "grid: only for mode grid");
    return ink_ecdf_check(&c->e, err);
}

static size_t cells_nodes(const struct ink_ecdf_conf *c, size_t *nn)
{
    int d = c->grid.nodes.n > 0 ? c->grid.nodes.n : c->grid.lo.n;
    size_t cells = 1;
    *nn = 0;
    for (int a = 0; a < d; a++) {
        size_t M = c->grid.nodes.n > 0 ? (size_t)c->grid.nodes.v[a].n : (size_t)c->grid.n.v[a];
        cells *= M;
        *nn += M;
    }
    return cells;
}

static size_t layout(struct merge *s, const struct merge_conf *c)
{
    struct ink_carve cv = {s->mem, 0, 8};
    size_t max = (size_t)c->max_sources, nn = 0, cells = 0;
    int d = 1;
    struct ink__rlsm_conf rc = {0};
    if (c->e.mode == MERGE_RLS) {
        ink_kernel_init(&rc.kern, &c->kernel, (int)c->dim, NULL);
        rc.d = (int)c->dim;
        rc.max_dict = (int)c->max_dict;
        rc.qbar = (int)c->qbar;
        rc.gamma = c->gamma;
        rc.eps = c->eps;
        rc.predict = c->predict;
        /* without predict, a partial's KRR statistics are dropped on arrival */
        s->pmax = ink__rls_partial_bytes(rc.d, rc.max_dict, rc.predict);
    } else if (c->e.mode == INK_ECDF_KLL) {
        s->pmax = ink__partial_kll_bytes((uint32_t)c->e.k);
    } else {
        d = c->e.grid.nodes.n > 0 ? c->e.grid.nodes.n : c->e.grid.lo.n;
        cells = cells_nodes(&c->e, &nn);
        s->pmax = ink__partial_grid_bytes(d, nn, cells);
    }
    s->pmax = (s->pmax + 7) & ~(size_t)7;
    s->pay = ink_carve_take(&cv, max * s->pmax);
    s->plen = ink_carve_take(&cv, max * 4);
    s->idlen = ink_carve_take(&cv, max * 4);
    s->ids = ink_carve_take(&cv, max * ID_MAX);
    s->off = ink_carve_take(&cv, max * 8);
    s->sn = ink_carve_take(&cv, max * 8);
    if (c->e.mode == INK_ECDF_KLL) {
        uint32_t k = (uint32_t)c->e.k;
        void *a = ink_carve_take(&cv, ink__kll_bytes(k, false));
        void *b = ink_carve_take(&cv, ink__kll_bytes(k, true));
        if (a) ink__kll_init(&s->one, k, 0, a, false);
        if (b) ink__kll_init(&s->all, k, s->seed, b, true);
    } else if (c->e.mode == MERGE_RLS) {
        s->parts = ink_carve_take(&cv, max * sizeof(struct ink__rls_part));
        ink__rlsm_layout(&s->rls, &rc, &cv);
    } else {
        s->nodes = ink_carve_take(&cv, nn * 8);
        s->T = ink_carve_take(&cv, cells * 8);
    }
    return ink_carve_size(&cv);
}

static size_t merge_mem_bound(const void *conf)
{
    if (merge_check(conf, NULL)) return 0;
    struct merge sizing = {0};
    return layout(&sizing, conf);
}

static void merge_fini(void *state)
{
    struct merge *s = state;
    free(s->mem);
    s->mem = NULL;
}

static int merge_init(void *state, const void *conf, const struct ink_op_init *ini,
                      struct ink_err *err)
{
    const struct merge_conf *c = conf;
    struct merge *s = state;
    int rc = merge_check(c, err);
    if (rc) return rc;
    s->mode = c->e.mode;
    s->k = (uint32_t)c->e.k;
    s->max = (uint32_t)c->max_sources;
    s->seed = ink_seed_derive(ini->seed, "merge");
    size_t bytes = layout(s, c);
    s->mem = ink_arena_alloc(bytes, 8, ini->name, err);
    if (!s->mem) return INK_ENOMEM;
    layout(s, c);
    if (s->mode == INK_ECDF_GRID) {
        s->g.d = s->d = ink_ecdf_grid_nodes(&c->e, s->nodes, s->g.M);
        double *z = s->nodes;
        for (int a = 0; a < s->d; a++) {
            s->g.z[a] = z;
            z += s->g.M[a];
        }
        ink__grid_setup(&s->g);
    } else {
        s->d = s->mode == MERGE_RLS ? (int)c->dim : 1;
    }
    s->dirty = true;
    return 0;
}

/* A partial this merge can take: its kind, k or grid must be ours. */
static int admit(const struct merge *s, const uint8_t *p, size_t len, struct ink__partial *pt,
                 struct ink_err *err)
{
    int rc = ink__partial_parse(p, len, pt, err);
    if (rc) return rc;
    if (s->mode == MERGE_RLS || pt->kind == INK_PARTIAL_RLS) {
        if (s->mode != MERGE_RLS)
            return ink_err_set(err, INK_EINVAL, "partial: an rls partial, this merge is mode %s",
                               merge_modes[s->mode]);
        if (pt->kind != INK_PARTIAL_RLS)
            return ink_err_set(err, INK_EINVAL, "partial: a %s partial, this merge is mode rls",
                               pt->kind == INK_PARTIAL_KLL ? "kll" : "grid");
        struct ink__rls_part rp, ref;
        if ((rc = ink__rls_partial_parse(pt->body, pt->body_len, &rp, err))) return rc;
        pt->n = rp.n;
        if (s->nsrc == 0) return ink__rlsm_admit(&s->rls, &rp, NULL, err);
        struct ink__partial p0;
        if (ink__partial_parse(s->pay, s->plen[0], &p0, NULL) ||
            ink__rls_partial_parse(p0.body, p0.body_len, &ref, NULL))
            return ink_err_set(err, INK_EINVAL, "merge: held partial 0 unreadable");
        return ink__rlsm_admit(&s->rls, &rp, &ref, err);
    }
    if (s->mode == INK_ECDF_KLL) {
        if (pt->kind != INK_PARTIAL_KLL)
            return ink_err_set(err, INK_EINVAL, "partial: a grid partial, this merge is mode kll");
        if (pt->k != s->k)
            return ink_err_set(err, INK_EINVAL,
                               "partial: k %u, this merge has k %u (KLL merges need the same k)",
                               pt->k, s->k);
        return 0;
    }
    if (pt->kind != INK_PARTIAL_GRID)
        return ink_err_set(err, INK_EINVAL, "partial: a kll partial, this merge is mode grid");
    bool same = pt->d == s->d;
    for (int a = 0; same && a < s->d; a++) same = pt->M[a] == s->g.M[a];
    size_t j = 0;
    for (int a = 0; same && a < s->d; a++)
        for (uint32_t i = 0; same && i < s->g.M[a]; i++, j++)
            same = ink__partial_f64(pt->nodes, j) == s->g.z[a][i];
    if (!same)
        return ink_err_set(err, INK_EINVAL,
                           "partial: its grid differs from this merge's (grids add only node "
                           "for node)");
    return 0;
}

/* A field the record carries, added upstream (fields) or read from a
 * transport (extra). */
static const struct ink_value *field_of(const struct ink_record *r, const char *name)
{
    for (uint32_t i = 0; i < r->nfields; i++)
        if (!strcmp(r->fields[i].name, name)) return &r->fields[i].v;
    return NULL;
}

/* Where the record's partial is: 0 none, PART_FIELD (emitted in this
 * process: the publisher's tags are fields too) or PART_EXTRA (decoded from
 * a payload: its tags came in the same payload). */
enum { PART_NONE, PART_FIELD, PART_EXTRA };

static int get_partial(const struct ink_record *r, const uint8_t **p, size_t *n)
{
    const struct ink_value *v = field_of(r, "partial");
    if (v && v->type == INK_V_RAW) {
        *p = v->raw.p, *n = v->raw.n;
        return PART_FIELD;
    }
    const uint8_t *end;
    if (ink_record_extra_raw(r, "partial", p, &end) == 1) {
        *n = (size_t)(end - *p);
        return PART_EXTRA;
    }
    return PART_NONE;
}

/* A tag of the partial (kafka_partition, kafka_offset), from where the
 * partial is. A partial read from a payload takes its tags from that payload
 * only: the fields a transport adds (a kafka source's kafka_partition and
 * kafka_offset of the partials topic) say where the message was, not which
 * input partition and offset the partial covers. */
static int get_i64(const struct ink_record *r, int where, const char *name, int64_t *out)
{
    const struct ink_value *v = where == PART_EXTRA ? NULL : field_of(r, name);
    if (v) {
        if (v->type != INK_V_I64) return -1;
        *out = v->i;
        return 1;
    }
    return ink_record_extra_i64(r, name, out);
}

/* The source's identity: source \x1f key \x1f partition. */
static uint32_t make_id(const struct ink_record *r, int where, char *id)
{
    const char *src = "";
    uint32_t sl = 0;
    const struct ink_value *v = field_of(r, "source");
    if (v && v->type == INK_V_STR)
        src = v->s.p, sl = v->s.n;
    else if (ink_record_extra_str(r, "source", &src, &sl) != 1)
        src = "", sl = 0;
    if (sl > 63) sl = 63;
    uint32_t n = 0;
    memcpy(id, src, sl);
    n += sl;
    id[n++] = 0x1f;
    if (r->flags & INK_HAS_KEY) {
        uint32_t kl = r->key_len > 255 ? 255 : r->key_len;
        memcpy(id + n, r->key, kl);
        n += kl;
    }
    id[n++] = 0x1f;
    int64_t part;
    if (get_i64(r, where, "kafka_partition", &part) == 1)
        n += (uint32_t)snprintf(id + n, ID_MAX - n, "%lld", (long long)part);
    return n;
}

static int64_t find_src(const struct merge *s, const char *id, uint32_t n)
{
    for (uint32_t i = 0; i < s->nsrc; i++)
        if (s->idlen[i] == n && memcmp(s->ids + (size_t)i * ID_MAX, id, n) == 0) return i;
    return -1;
}

static uint64_t total_n(const struct merge *s)
{
    uint64_t t = 0;
    for (uint32_t i = 0; i < s->nsrc; i++) t += s->sn[i];
    return t;
}

/* Holds (id, partial) in slot i, new or replaced. pt was admitted. */
static void hold(struct merge *s, uint32_t i, const char *id, uint32_t idn, const uint8_t *p,
                 size_t n, int64_t off, const struct ink__partial *pt)
{
    memcpy(s->ids + (size_t)i * ID_MAX, id, idn);
    s->idlen[i] = idn;
    uint8_t *slot = s->pay + (size_t)i * s->pmax;
    struct ink__rls_part rp;
    if (s->mode == MERGE_RLS && !s->rls.c.predict &&
        ink__rls_partial_parse(pt->body, pt->body_len, &rp, NULL) == 0 &&
        (rp.flags & INK_RLS_PART_KRR)) {
        /* KRR statistics this merge does not use: kept without them (the
         * slot is sized for partials without) */
        size_t hdr = (size_t)(pt->body - p), keep = (size_t)(rp.q + 4 * (size_t)rp.m - pt->body);
        uint8_t *o = ink__partial_begin(slot, INK_PARTIAL_RLS);
        memcpy(o, p + hdr, keep);
        uint32_t fl = rp.flags & ~INK_RLS_PART_KRR;
        memcpy(o + 12, &fl, 4); /* u32 d, m, qbar, then flags */
        n = ink__partial_end(slot, o + keep);
    } else {
        memcpy(slot, p, n);
    }
    s->plen[i] = (uint32_t)n;
    s->off[i] = off;
    s->sn[i] = pt->n;
    if (i == s->nsrc) s->nsrc++;
    s->dirty = true;
}

static int merge_process(void *state, const struct ink_record *in, const struct ink_emitter *em,
                         struct ink_err *err)
{
    struct merge *s = state;
    const uint8_t *p;
    size_t n;
    int where = get_partial(in, &p, &n);
    if (where == PART_NONE) {
        s->skipped++; /* an ecdf's per-record output: not for the merge (counted) */
        return 0;
    }
    struct ink__partial pt;
    int rc = admit(s, p, n, &pt, err);
    if (rc) return rc;
    char id[ID_MAX];
    uint32_t idn = make_id(in, where, id);
    int64_t off = -1;
    if (get_i64(in, where, "kafka_offset", &off) < 0 || off < -1)
        return ink_err_set(err, INK_EINVAL, "kafka_offset: an integer >= 0");
    int64_t i = find_src(s, id, idn);
    if (i < 0 && s->nsrc == s->max)
        return ink_err_set(err, INK_EINVAL,
                           "merge holds max_sources %u sources already: raise max_sources", s->max);
    if (i >= 0 && off >= 0 && s->off[i] > off) {
        s->stale++; /* an older partial of a source held newer: a replay, ignored */
        return 0;
    }
    hold(s, i < 0 ? s->nsrc : (uint32_t)i, id, idn, p, n, off, &pt);
    struct ink_record out;
    ink_record_derive_meta(&out, in);
    ink_record_add_i64(&out, "n", (int64_t)total_n(s));
    ink_record_add_i64(&out, "sources", s->nsrc);
    return ink_emit(em, &out);
}

/* ---- the merged answer, rebuilt when a partial changed ---- */

static int rebuild(struct merge *s, struct ink_err *err)
{
    if (!s->dirty) return 0;
    struct ink__partial pt;
    if (s->mode == MERGE_RLS) {
        int n = 0;
        for (uint32_t i = 0; i < s->nsrc; i++) {
            if (ink__partial_parse(s->pay + (size_t)i * s->pmax, s->plen[i], &pt, NULL) ||
                ink__rls_partial_parse(pt.body, pt.body_len, &s->parts[n], NULL))
                continue;
            n++;
        }
        int rc = ink__rlsm_rebuild(&s->rls, s->parts, n, s->seed, err);
        if (rc) return rc;
    } else if (s->mode == INK_ECDF_KLL) {
        ink__kll_init(&s->all, s->k, s->seed, s->all.items, true);
        for (uint32_t i = 0; i < s->nsrc; i++) {
            if (ink__partial_parse(s->pay + (size_t)i * s->pmax, s->plen[i], &pt, NULL)) continue;
            ink__partial_to_kll(&pt, &s->one);
            ink__kll_merge(&s->all, &s->one); /* same k: admitted */
        }
    } else {
        memset(s->T, 0, s->g.size * sizeof *s->T);
        s->n = 0;
        s->wout = 0;
        for (uint32_t i = 0; i < s->nsrc; i++) {
            if (ink__partial_parse(s->pay + (size_t)i * s->pmax, s->plen[i], &pt, NULL)) continue;
            for (size_t c = 0; c < s->g.size; c++) s->T[c] += ink__partial_f64(pt.T, c);
            s->n += pt.n;
            s->wout += pt.wout;
        }
    }
    s->dirty = false;
    return 0;
}

static double ratio(double a, uint64_t n)
{
    return n ? a / (double)n : 0.0;
}

static void grid_bracket(const struct merge *s, const double *x, double *flo, double *fhi)
{
    ink__fenwick_bracket(&s->g, s->T, s->wout, s->n, x, flo, fhi);
}

/* mode rls: the merged sketch answers as one rls_sketch would (tau, predict,
 * deff, dict), plus the number of sources. */
static int rls_query(struct merge *s, const struct ink_record *req, const struct ink_emitter *em,
                     struct ink_err *err)
{
    struct ink__rlsm *r = &s->rls;
    struct ink_record out;
    ink_record_derive(&out, req);
    bool tau = ink_record_op_is(req, "tau"), pred = ink_record_op_is(req, "predict");
    bool deff = ink_record_op_is(req, "deff"), dict = ink_record_op_is(req, "dict");
    if (!tau && !pred && !deff && !dict)
        return ink_err_set(err, INK_ENOTSUP, "merge: unknown op '%.*s' (tau, predict, deff, dict)",
                           (int)req->op_len, req->op ? req->op : "");
    if (pred && !r->c.predict)
        return ink_err_set(err, INK_ENOTSUP,
                           "merge: predict is off for this node (predict: true, "
                           "with partials from sketches with predict: true)");
    if (tau || pred) {
        if (!(req->flags & INK_HAS_X) || !req->x)
            return ink_err_set(err, INK_ENOX, "%s needs x", tau ? "tau" : "predict");
        if (req->dim != (uint32_t)s->d)
            return ink_err_set(err, INK_EDIM, "x has %u values, expected %d", req->dim, s->d);
        for (int k = 0; k < s->d; k++)
            if (!isfinite(req->x[k])) return ink_err_set(err, INK_EINVAL, "x[%d] is not finite", k);
    }
    int rc = rebuild(s, err);
    if (rc) return rc;
    if (tau) {
        double t, tn;
        ink__rlsm_tau(r, req->x, &t, &tn);
        ink_record_add_f64(&out, "tau", t);
        ink_record_add_f64(&out, "tau_new", tn);
    } else if (pred) {
        double yhat, var;
        ink__rlsm_predict(r, req->x, &yhat, &var);
        ink_record_add_f64(&out, "yhat", yhat);
        ink_record_add_f64(&out, "var", var);
    } else if (deff) {
        ink_record_add_f64(&out, "deff", r->dhat);
    } else {
        int64_t *qi = (int64_t *)(void *)r->isuppz; /* 2 cap int32: room for cap int64 */
        for (int j = 0; j < r->m; j++) qi[j] = r->q[j];
        ink_record_add_f64m(&out, "points", r->X, (uint32_t)s->d, (uint32_t)r->m);
        ink_record_add_f64s(&out, "weights", r->s, (uint32_t)r->m);
        ink_record_add_f64s(&out, "p", r->p, (uint32_t)r->m);
        ink_record_add_i64s(&out, "q", qi, (uint32_t)r->m);
        ink_record_add_i64(&out, "escalations", r->escalations);
    }
    ink_record_add_i64(&out, "dict", r->m);
    ink_record_add_f64(&out, "gamma_eff", r->gamma_eff);
    ink_record_add_i64(&out, "n", (int64_t)r->n);
    ink_record_add_i64(&out, "sources", s->nsrc);
    return ink_emit(em, &out);
}

static int merge_query(void *state, const struct ink_record *req, const struct ink_emitter *em,
                       struct ink_err *err)
{
    struct merge *s = state;
    if (s->mode == MERGE_RLS) return rls_query(s, req, em, err);
    struct ink_record out;
    ink_record_derive(&out, req);
    bool cdf = ink_record_op_is(req, "cdf"), quant = ink_record_op_is(req, "quantile");
    if (!cdf && !quant)
        return ink_err_set(err, INK_ENOTSUP, "merge: unknown op '%.*s' (cdf, quantile)",
                           (int)req->op_len, req->op ? req->op : "");
    int rc = rebuild(s, err);
    if (rc) return rc;
    uint64_t n = s->mode == INK_ECDF_KLL ? s->all.n : s->n;
    if (cdf) {
        if (!(req->flags & INK_HAS_X) || !req->x) return ink_err_set(err, INK_ENOX, "cdf needs x");
        if (req->dim != (uint32_t)s->d)
            return ink_err_set(err, INK_EDIM, "x has %u values, expected %d", req->dim, s->d);
        for (int k = 0; k < s->d; k++)
            if (!isfinite(req->x[k])) return ink_err_set(err, INK_EINVAL, "x[%d] is not finite", k);
        if (s->mode == INK_ECDF_KLL) {
            ink_record_add_f64(&out, "F", ratio((double)ink__kll_weight_le(&s->all, req->x[0]), n));
        } else {
            double flo, fhi;
            grid_bracket(s, req->x, &flo, &fhi);
            ink_record_add_f64(&out, "F", flo);
            ink_record_add_f64(&out, "F_lo", flo);
            ink_record_add_f64(&out, "F_hi", fhi);
        }
    } else {
        if (s->mode != INK_ECDF_KLL)
            return ink_err_set(err, INK_ENOTSUP, "quantile needs mode kll");
        double r;
        uint32_t m = 0;
        int one = ink_record_extra_f64(req, "r", &r);
        if (one == 1)
            s->rv[0] = r, m = 1;
        else if (ink_record_extra_f64s(req, "r", s->rv, 8, &m) != 1)
            m = 0;
        bool ok = m > 0;
        for (uint32_t i = 0; i < m; i++) ok &= s->rv[i] >= 0 && s->rv[i] <= 1;
        if (!ok)
            return ink_err_set(err, INK_EINVAL,
                               "quantile needs r: a number in [0, 1] or a list of 1..8 of them");
        if (n == 0) return ink_err_set(err, INK_EINVAL, "quantile of an empty merge");
        for (uint32_t i = 0; i < m; i++) s->qv[i] = ink__kll_quantile(&s->all, s->rv[i]);
        if (one == 1) {
            ink_record_add_f64(&out, "r", r);
            ink_record_add_f64(&out, "q", s->qv[0]);
        } else {
            ink_record_add_f64s(&out, "r", s->rv, m);
            ink_record_add_f64s(&out, "q", s->qv, m);
        }
    }
    ink_record_add_i64(&out, "n", (int64_t)n);
    ink_record_add_i64(&out, "sources", s->nsrc);
    return ink_emit(em, &out);
}

/* ---- save / load: the held partials, as received ---- */

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

static void save_fields(const void *state, struct ink_map *m)
{
    const struct merge *s = state;
    ink_map_i64(m, "version", STATE_VERSION);
    ink_map_i64(m, "mode", s->mode);
    ink_map_i64s(m, "offsets", s->off, s->nsrc);
    ink_map_u64(m, "skipped", s->skipped);
    ink_map_u64(m, "stale", s->stale);
    for (int which = 0; which < 2; which++) {
        m->n++;
        if (!m->pk) continue;
        pack_key(m->pk, which ? "partials" : "ids");
        msgpack_pack_array(m->pk, s->nsrc);
        for (uint32_t i = 0; i < s->nsrc; i++) {
            uint32_t n = which ? s->plen[i] : s->idlen[i];
            const void *p = which ? (const void *)(s->pay + (size_t)i * s->pmax)
                                  : (const void *)(s->ids + (size_t)i * ID_MAX);
            msgpack_pack_bin(m->pk, n);
            msgpack_pack_bin_body(m->pk, p, n);
        }
    }
}

static int merge_save(const void *state, msgpack_packer *pk)
{
    ink_pack_map_of(pk, save_fields, state);
    return 0;
}

static int merge_load(void *state, const msgpack_object *o, struct ink_err *err)
{
    struct merge *s = state;
    int64_t version, mode;
    const msgpack_object *ids, *pays;
    size_t nsrc;
    int rc;
    if ((rc = ink_state_i64(o, "version", &version, err)) ||
        (rc = ink_state_i64(o, "mode", &mode, err)) || (rc = ink_state_get(o, "ids", &ids, err)) ||
        (rc = ink_state_get(o, "partials", &pays, err)) ||
        (rc = ink_state_len(o, "offsets", 8, &nsrc, err)))
        return rc;
    if (version != STATE_VERSION || mode != s->mode)
        return ink_err_set(err, INK_ESTATE, "state: version %lld mode %lld, expected %d mode %d",
                           (long long)version, (long long)mode, STATE_VERSION, s->mode);
    if (ids->type != MSGPACK_OBJECT_ARRAY || pays->type != MSGPACK_OBJECT_ARRAY ||
        ids->via.array.size != nsrc || pays->via.array.size != nsrc || nsrc > s->max)
        return ink_err_set(err, INK_ESTATE, "state: %zu sources, at most %u (max_sources)", nsrc,
                           s->max);
    if ((rc = ink_state_i64s(o, "offsets", s->off, nsrc, err))) return rc;
    if ((rc = ink_state_u64(o, "skipped", &s->skipped, err)) ||
        (rc = ink_state_u64(o, "stale", &s->stale, err)))
        return rc;
    s->nsrc = 0;
    for (size_t i = 0; i < nsrc; i++) {
        const msgpack_object *a = &ids->via.array.ptr[i], *b = &pays->via.array.ptr[i];
        if (a->type != MSGPACK_OBJECT_BIN || b->type != MSGPACK_OBJECT_BIN ||
            a->via.bin.size > ID_MAX || b->via.bin.size > s->pmax)
            return ink_err_set(err, INK_ESTATE, "state: source %zu is corrupt", i);
        struct ink__partial pt;
        struct ink_err e2 = {0};
        if (admit(s, (const uint8_t *)b->via.bin.ptr, b->via.bin.size, &pt, &e2))
            return ink_err_set(err, INK_ESTATE, "state: source %zu: %s", i, e2.msg);
        hold(s, (uint32_t)i, a->via.bin.ptr, a->via.bin.size, (const uint8_t *)b->via.bin.ptr,
             b->via.bin.size, s->off[i], &pt);
    }
    return 0;
}

static double gauge_sources(const void *state)
{
    return ((const struct merge *)state)->nsrc;
}

static double gauge_skipped(const void *state)
{
    return (double)((const struct merge *)state)->skipped;
}

static double gauge_stale(const void *state)
{
    return (double)((const struct merge *)state)->stale;
}

static uint64_t merge_records(const void *state)
{
    return total_n(state);
}

static const struct ink_op_gauge merge_gauges[] = {
    {"merge_sources", "sources whose latest partial the merge holds", gauge_sources},
    {"merge_skipped_records", "records without a partial the merge skipped", gauge_skipped},
    {"merge_stale_partials", "partials older (kafka_offset) than the one held, ignored",
     gauge_stale},
    {0},
};

const struct ink_op_vtable ink_op_merge = {
    .name = "merge",
    .kind = INK_NODE_OPERATOR,
    .summary = "global answers from the latest partial of every source (ecdf: KLL merge, Fenwick "
               "addition; rls_sketch: DISQUEAK merge)",
    .params = merge_params,
    .conf_size = sizeof(struct merge_conf),
    .state_size = sizeof(struct merge),
    .check = merge_check,
    .mem_bound = merge_mem_bound,
    .init = merge_init,
    .process = merge_process,
    .query = merge_query,
    .save = merge_save,
    .load = merge_load,
    .fini = merge_fini,
    .gauges = merge_gauges,
    .records = merge_records,
};
