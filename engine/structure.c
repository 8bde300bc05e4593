/* The structure of a graph as a snapshot keeps it, and the comparison a
 * restore makes (docs/state.md, "What a restore compares"): per node its
 * name, kind, type, inputs and the keys that shape its state (declared in the
 * param tables: INK_PF_STATE / INK_PF_FREE, engine/param.h), and the engine
 * keys that shape every node's state (engine.seed). Everything else in the
 * config (comments, layout, key order, sinks' formats, engine.snapshot,
 * engine.http, limits) may change between a snapshot and its restore. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"
#include "state.h"

/* ---- the keys of one node (or of the engine) as (name, text) pairs --------- */

struct kv {
    char *name, *text; /* text NULL: not set */
};

struct kvs {
    struct kv *v;
    int n, cap;
};

static int kv_add(void *ctx, const char *name, const char *text)
{
    struct kvs *l = ctx;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].name, name)) return 0; /* declared twice (an operator's seed) */
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        struct kv *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return INK_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    struct kv *e = &l->v[l->n];
    e->name = strdup(name);
    e->text = text ? strdup(text) : NULL;
    if (!e->name || (text && !e->text)) {
        free(e->name);
        free(e->text);
        return INK_ENOMEM;
    }
    l->n++;
    return 0;
}

static void kvs_free(struct kvs *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].text);
    }
    free(l->v);
    *l = (struct kvs){0};
}

static int node_keys(const struct ink_node_conf *nc, struct kvs *l)
{
    bool op = nc->kind == INK_NODE_OPERATOR;
    int rc = ink_params_state(nc->type->params, nc->conf, op, kv_add, l);
    if (!rc && op) rc = ink_params_state(ink_op_common_params, &nc->common, false, kv_add, l);
    return rc;
}

/* ---- pack --------------------------------------------------------------------- */

static int pack_str(msgpack_packer *pk, const char *s)
{
    if (!s) return msgpack_pack_nil(pk);
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

static int pack_kvs(msgpack_packer *pk, const struct kvs *l)
{
    int rc = msgpack_pack_map(pk, (size_t)l->n);
    for (int i = 0; i < l->n; i++) rc |= pack_str(pk, l->v[i].name) | pack_str(pk, l->v[i].text);
    return rc;
}

static const char *const kind_names[] = {"source", "operator", "sink"};

int ink_structure_pack(const struct ink_config *cfg, msgpack_packer *pk)
{
    struct kvs l = {0};
    int rc = ink_params_state(ink_engine_params, &cfg->engine, false, kv_add, &l);
    if (rc) goto out;
    int w = msgpack_pack_map(pk, 2) | pack_str(pk, "engine") | pack_kvs(pk, &l);
    w |= pack_str(pk, "nodes") | msgpack_pack_array(pk, (size_t)cfg->nnodes);
    for (int i = 0; i < cfg->nnodes && !rc; i++) {
        const struct ink_node_conf *nc = &cfg->nodes[i];
        kvs_free(&l);
        if ((rc = node_keys(nc, &l))) break;
        w |= msgpack_pack_map(pk, 5) | pack_str(pk, "name") | pack_str(pk, nc->name);
        w |= pack_str(pk, "kind") | pack_str(pk, kind_names[nc->kind]);
        w |= pack_str(pk, "type") | pack_str(pk, nc->type->name);
        w |= pack_str(pk, "inputs") | msgpack_pack_array(pk, (size_t)nc->ninputs);
        for (int k = 0; k < nc->ninputs; k++) w |= pack_str(pk, nc->inputs[k]);
        w |= pack_str(pk, "keys") | pack_kvs(pk, &l);
    }
    if (!rc && w) rc = INK_ENOMEM;
out:
    kvs_free(&l);
    return rc;
}

/* ---- check ---------------------------------------------------------------------- */

static bool str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* The differences found, one message: the first ones in full, then a count. */
struct diffs {
    char msg[400];
    size_t len;
    int n, shown;
};

static void diff(struct diffs *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diff(struct diffs *d, const char *fmt, ...)
{
    d->n++;
    char one[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(one, sizeof one, fmt, ap);
    va_end(ap);
    /* room is kept for the "; and N more" that may follow */
    size_t need = strlen(one) + (d->len ? 2 : 0);
    if (d->shown < d->n - 1 || d->len + need > sizeof d->msg - 24) return;
    d->len +=
        (size_t)snprintf(d->msg + d->len, sizeof d->msg - d->len, "%s%s", d->len ? "; " : "", one);
    d->shown++;
}

/* A saved value as text for a message (at most 100 characters). */
static void show(char *buf, size_t n, const msgpack_object *o)
{
    if (!o || o->type == MSGPACK_OBJECT_NIL) {
        snprintf(buf, n, "(not set)");
        return;
    }
    if (o->type != MSGPACK_OBJECT_STR) {
        snprintf(buf, n, "(malformed)");
        return;
    }
    int len = (int)o->via.str.size;
    if (len > 100)
        snprintf(buf, n, "%.97s...", o->via.str.ptr);
    else
        snprintf(buf, n, "%.*s", len, o->via.str.ptr);
}

static void show_text(char *buf, size_t n, const char *s)
{
    if (!s)
        snprintf(buf, n, "(not set)");
    else if (strlen(s) > 100)
        snprintf(buf, n, "%.97s...", s);
    else
        snprintf(buf, n, "%s", s);
}

static bool same_text(const msgpack_object *o, const char *s)
{
    if (!s) return o && o->type == MSGPACK_OBJECT_NIL;
    return str_is(o, s);
}

/* The keys that shape state, the config's against the snapshot's. A key
 * the snapshot does not hold was added to inkflow after it was written:
 * refused too (its old behaviour is unknown); a key the snapshot holds that
 * this inkflow does not list no longer shapes state. */
static void compare_keys(struct diffs *d, const char *who, const msgpack_object *saved,
                         const struct kvs *now)
{
    for (int i = 0; i < now->n; i++) {
        const msgpack_object *o = ink_state_find(saved, now->v[i].name);
        if (o && same_text(o, now->v[i].text)) continue;
        char a[112], b[112];
        show_text(b, sizeof b, now->v[i].text);
        if (!o) {
            diff(d,
                 "%s: %s is %s in the config and not recorded in the snapshot (written by an "
                 "older inkflow)",
                 who, now->v[i].name, b);
            continue;
        }
        show(a, sizeof a, o);
        diff(d, "%s: %s is %s in the snapshot, %s in the config", who, now->v[i].name, a, b);
    }
}

static const msgpack_object *saved_node(const msgpack_object *nodes, const char *name, int *at)
{
    for (uint32_t j = 0; j < nodes->via.array.size; j++)
        if (str_is(ink_state_find(&nodes->via.array.ptr[j], "name"), name)) {
            *at = (int)j;
            return &nodes->via.array.ptr[j];
        }
    return NULL;
}

static void show_inputs(char *buf, size_t n, const msgpack_object *in)
{
    size_t off = (size_t)snprintf(buf, n, "[");
    for (uint32_t k = 0; in && in->type == MSGPACK_OBJECT_ARRAY && k < in->via.array.size; k++)
        if (off < n) {
            const msgpack_object *e = &in->via.array.ptr[k];
            off += (size_t)snprintf(buf + off, n - off, "%s%.*s", k ? ", " : "",
                                    e->type == MSGPACK_OBJECT_STR ? (int)e->via.str.size : 1,
                                    e->type == MSGPACK_OBJECT_STR ? e->via.str.ptr : "?");
        }
    if (off < n) snprintf(buf + off, n - off, "]");
}

static void compare_inputs(struct diffs *d, const struct ink_node_conf *nc,
                           const msgpack_object *in)
{
    bool same =
        in && in->type == MSGPACK_OBJECT_ARRAY && in->via.array.size == (uint32_t)nc->ninputs;
    for (int k = 0; same && k < nc->ninputs; k++)
        same = str_is(&in->via.array.ptr[k], nc->inputs[k]);
    if (same) return;
    char a[120], b[120] = "[";
    show_inputs(a, sizeof a, in);
    size_t off = 1;
    for (int k = 0; k < nc->ninputs && off < sizeof b; k++)
        off += (size_t)snprintf(b + off, sizeof b - off, "%s%s", k ? ", " : "", nc->inputs[k]);
    if (off < sizeof b) snprintf(b + off, sizeof b - off, "]");
    diff(d, "node '%s': inputs %s in the snapshot, %s in the config", nc->name, a, b);
}

/* Records reach a node's consumers in the order of the nodes in the file
 * (engine/runtime.c): a sink fed by two of them sees their outputs in that
 * order, so the restored run must keep it to write the same bytes. */
static bool feeds(const msgpack_object *m, const char *from)
{
    const msgpack_object *in = ink_state_find(m, "inputs");
    for (uint32_t k = 0; in && in->type == MSGPACK_OBJECT_ARRAY && k < in->via.array.size; k++)
        if (str_is(&in->via.array.ptr[k], from)) return true;
    return false;
}

static void compare_order(struct diffs *d, const struct ink_config *cfg,
                          const msgpack_object *nodes)
{
    for (int i = 0; i < cfg->nnodes; i++) {
        const char *from = cfg->nodes[i].name;
        int j = 0;
        for (uint32_t s = 0; s < nodes->via.array.size; s++) {
            const msgpack_object *m = &nodes->via.array.ptr[s];
            if (!feeds(m, from)) continue;
            while (j < cfg->nnodes) {
                const struct ink_node_conf *c = &cfg->nodes[j];
                bool fed = false;
                for (int k = 0; k < c->ninputs; k++) fed |= !strcmp(c->inputs[k], from);
                if (fed) break;
                j++;
            }
            if (j == cfg->nnodes || !str_is(ink_state_find(m, "name"), cfg->nodes[j].name)) {
                diff(d,
                     "node '%s': its consumers come in another order in the config than in the "
                     "snapshot (records reach them in the order of the nodes in the file: keep "
                     "that order)",
                     from);
                break;
            }
            j++;
        }
    }
}

int ink_structure_check(const msgpack_object *saved, const struct ink_config *cfg, int *map,
                        struct ink_err *err)
{
    const msgpack_object *eng = ink_state_find(saved, "engine"),
                         *nodes = ink_state_find(saved, "nodes");
    if (!eng || eng->type != MSGPACK_OBJECT_MAP || !nodes || nodes->type != MSGPACK_OBJECT_ARRAY)
        return ink_err_set(err, INK_ESTATE, "its structure section is malformed");
    for (uint32_t j = 0; j < nodes->via.array.size; j++) {
        const msgpack_object *m = &nodes->via.array.ptr[j];
        const msgpack_object *nm = ink_state_find(m, "name"), *kd = ink_state_find(m, "kind"),
                             *ty = ink_state_find(m, "type"), *ks = ink_state_find(m, "keys");
        if (!nm || nm->type != MSGPACK_OBJECT_STR || !kd || kd->type != MSGPACK_OBJECT_STR || !ty ||
            ty->type != MSGPACK_OBJECT_STR || !ks || ks->type != MSGPACK_OBJECT_MAP)
            return ink_err_set(err, INK_ESTATE, "its structure section is malformed (node %u)", j);
    }
    struct diffs d = {0};
    struct kvs l = {0};
    bool *seen = calloc((size_t)nodes->via.array.size + 1, 1);
    int *at = calloc((size_t)cfg->nnodes + 1, sizeof *at);
    int rc = seen && at ? ink_params_state(ink_engine_params, &cfg->engine, false, kv_add, &l)
                        : INK_ENOMEM;
    if (rc) goto out;
    compare_keys(&d, "engine", eng, &l);

    /* nodes by name: added, removed (a rename is both) */
    int added = 0, removed = 0, last_added = -1, last_removed = -1;
    for (int i = 0; i < cfg->nnodes; i++) {
        if (!saved_node(nodes, cfg->nodes[i].name, &at[i])) {
            at[i] = -1;
            added++, last_added = i;
            continue;
        }
        seen[at[i]] = true;
    }
    for (uint32_t j = 0; j < nodes->via.array.size; j++)
        if (!seen[j]) removed++, last_removed = (int)j;
    if (added == 1 && removed == 1) {
        const msgpack_object *m = &nodes->via.array.ptr[last_removed];
        const msgpack_object *nm = ink_state_find(m, "name"), *ty = ink_state_find(m, "type");
        diff(&d,
             "node '%.*s' (%.*s) of the snapshot is not in the config, which has '%s' (%s) "
             "instead: a node's name is its identity in the snapshot (renamed?)",
             (int)nm->via.str.size, nm->via.str.ptr, (int)ty->via.str.size, ty->via.str.ptr,
             cfg->nodes[last_added].name, cfg->nodes[last_added].type->name);
    } else {
        for (int i = 0; i < cfg->nnodes; i++)
            if (at[i] < 0)
                diff(&d, "node '%s' (%s %s) is not in the snapshot (added%s)", cfg->nodes[i].name,
                     kind_names[cfg->nodes[i].kind], cfg->nodes[i].type->name,
                     cfg->nodes[i].kind == INK_NODE_SINK ? ": its output would start mid-stream"
                                                         : "");
        for (uint32_t j = 0; j < nodes->via.array.size; j++)
            if (!seen[j]) {
                const msgpack_object *m = &nodes->via.array.ptr[j];
                const msgpack_object *nm = ink_state_find(m, "name"),
                                     *kd = ink_state_find(m, "kind"),
                                     *ty = ink_state_find(m, "type");
                diff(&d, "node '%.*s' (%.*s %.*s) of the snapshot is not in the config (removed)",
                     (int)nm->via.str.size, nm->via.str.ptr, (int)kd->via.str.size, kd->via.str.ptr,
                     (int)ty->via.str.size, ty->via.str.ptr);
            }
    }

    /* the nodes in both: kind, type, inputs, keys */
    for (int i = 0; i < cfg->nnodes; i++) {
        const struct ink_node_conf *nc = &cfg->nodes[i];
        if (at[i] < 0) continue;
        const msgpack_object *m = &nodes->via.array.ptr[at[i]];
        const msgpack_object *kd = ink_state_find(m, "kind"), *ty = ink_state_find(m, "type");
        if (!str_is(kd, kind_names[nc->kind]) || !str_is(ty, nc->type->name)) {
            diff(&d, "node '%s': %.*s %.*s in the snapshot, %s %s in the config", nc->name,
                 (int)kd->via.str.size, kd->via.str.ptr, (int)ty->via.str.size, ty->via.str.ptr,
                 kind_names[nc->kind], nc->type->name);
            continue;
        }
        compare_inputs(&d, nc, ink_state_find(m, "inputs"));
        kvs_free(&l);
        if ((rc = node_keys(nc, &l))) goto out;
        char who[300];
        snprintf(who, sizeof who, "node '%s' (%s)", nc->name, nc->type->name);
        compare_keys(&d, who, ink_state_find(m, "keys"), &l);
    }
    if (d.n == 0) compare_order(&d, cfg, nodes);
    if (d.n) {
        if (d.shown < d.n)
            snprintf(d.msg + d.len, sizeof d.msg - d.len, "; and %d more", d.n - d.shown);
        rc = ink_err_set(err, INK_ESTATE,
                         "taken with a different config: %s (these shape the state: keep them "
                         "as they were to restore, or start afresh without --restore)",
                         d.msg);
    }
    if (!rc && map) memcpy(map, at, (size_t)cfg->nnodes * sizeof *at);
out:
    kvs_free(&l);
    free(seen);
    free(at);
    if (rc == INK_ENOMEM) return ink_err_set(err, INK_ENOMEM, "out of memory");
    return rc;
}
