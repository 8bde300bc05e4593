/* The config loader (phase one of a run): YAML -> engine settings and the
 * node list with positions, every key checked against its table, then the
 * graph checks (inputs resolve, no cycles, dead letters and reply_from name
 * the right kind of node, declared memory fits engine.memory_limit).
 * Every problem is collected; nothing stops at the first. */
#define _GNU_SOURCE
#include "config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "transport.h"

/* ------------------------------------------------------------------ */
/* Tables of the engine section and of the keys every node accepts     */

#define SNOFF(f) offsetof(struct ink_snapshot_conf, f)
static const struct ink_param snapshot_params[] = {
    {.name = "dir",
     .type = INK_P_STRING,
     .offset = SNOFF(dir),
     .flags = INK_PF_REQUIRED,
     .help = "directory of the snapshot file (relative to the config's directory)"},
    {.name = "every",
     .type = INK_P_DURATION,
     .offset = SNOFF(every),
     .def = "10s",
     .min = 0,
     .max = 31536000,
     .help = "interval between snapshots (0 = only on shutdown)"},
    {.name = "every_records",
     .type = INK_P_INT,
     .offset = SNOFF(every_records),
     .def = "0",
     .min = 0,
     .max = 1e15,
     .help = "also snapshot every this many records read by the sources (0 = off)"},
    {.name = "max_failures",
     .type = INK_P_INT,
     .offset = SNOFF(max_failures),
     .def = "3",
     .min = 1,
     .max = 1000000,
     .help = "consecutive failed snapshots after which /health answers 503 (and /ready says "
             "why)"},
    {0},
};

#define HTOFF(f) offsetof(struct ink_http_conf, f)
static const struct ink_param http_params[] = {
    {.name = "listen",
     .type = INK_P_STRING,
     .offset = HTOFF(listen),
     .def = "127.0.0.1:9464",
     .help = "host:port of /metrics, /health and /ready"},
    {0},
};

#define EOFF(f) offsetof(struct ink_engine_conf, f)
const struct ink_param ink_engine_params[] = {
    {.name = "seed",
     .type = INK_P_INT,
     .offset = EOFF(seed),
     .def = "42",
     .flags = INK_PF_STATE,
     .help = "every operator's RNG seed derives from this and the operator's name"},
    {.name = "memory_limit",
     .type = INK_P_SIZE,
     .offset = EOFF(memory_limit),
     .def = "1GiB",
     .min = 1,
     .max = 1125899906842624.0,
     .help = "the operators' declared memory bounds (times max_keys when keyed) must fit"},
    {.name = "blas_threads",
     .type = INK_P_INT,
     .offset = EOFF(blas_threads),
     .def = "1",
     .min = 1,
     .max = 256,
     .help = "OpenBLAS threads (1 is fastest at the operators' sizes)"},
    {.name = "grace",
     .type = INK_P_DURATION,
     .offset = EOFF(grace),
     .def = "5s",
     .min = 0,
     .max = 3600,
     .help = "time allowed to drain and snapshot on SIGTERM/SIGINT"},
    {.name = "max_dim",
     .type = INK_P_INT,
     .offset = EOFF(max_dim),
     .def = "1024",
     .min = 1,
     .max = 1048576,
     .help = "longest x accepted from any source"},
    {.name = "max_record_bytes",
     .type = INK_P_SIZE,
     .offset = EOFF(max_record_bytes),
     .def = "64KiB",
     .min = 64,
     .max = 1073741824.0,
     .help = "cap on one record's carried-through extra fields"},
    {.name = "max_depth",
     .type = INK_P_INT,
     .offset = EOFF(max_depth),
     .def = "16",
     .min = 1,
     .max = 64,
     .help = "nesting limit of msgpack / JSON records"},
    {.name = "progress",
     .type = INK_P_BOOL,
     .offset = EOFF(progress),
     .def = "true",
     .flags = INK_PF_I64,
     .help = "show a progress line on a terminal for file runs"},
    {.name = "max_reject_ratio",
     .type = INK_P_DOUBLE,
     .offset = EOFF(max_reject_ratio),
     .def = "1",
     .min = 0,
     .max = 1,
     .help = "run exits 1 when a node rejects more than this share of its input (and always "
             "when it rejects all of it)"},
    {.name = "snapshot",
     .type = INK_P_OBJECT,
     .offset = EOFF(snapshot),
     .sub = snapshot_params,
     .help = "periodic state snapshots (also written on SIGTERM); absent = none"},
    {.name = "http",
     .type = INK_P_OBJECT,
     .offset = EOFF(http),
     .sub = http_params,
     .help = "metrics and health endpoint; absent = not served"},
    {0},
};

static const char *const on_new_key_choices[] = {"reject", "evict", NULL};

#define COFF(f) offsetof(struct ink_op_common_conf, f)
const struct ink_param ink_op_common_params[] = {
    {.name = "key_by",
     .type = INK_P_STRING,
     .offset = COFF(key_by),
     .flags = INK_PF_STATE,
     .help = "'key': keep one state per value of the record's key field"},
    {.name = "max_keys",
     .type = INK_P_INT,
     .offset = COFF(max_keys),
     .def = "1024",
     .flags = INK_PF_STATE,
     .min = 1,
     .max = 100000000,
     .help = "with key_by: most keys kept at once (memory is reserved for all)"},
    {.name = "on_new_key",
     .type = INK_P_ENUM,
     .offset = COFF(on_new_key),
     .def = "reject",
     .flags = INK_PF_STATE,
     .choices = on_new_key_choices,
     .help = "with key_by, when max_keys are in use: reject the record or evict the least "
             "recently used key (what its state holds back, e.g. ecdf exact's partial window, "
             "is emitted first)"},
    {.name = "dead_letter",
     .type = INK_P_STRING,
     .offset = COFF(dead_letter),
     .help = "sink that receives the records this operator refuses"},
    {.name = "seed",
     .type = INK_P_INT,
     .offset = COFF(seed),
     .def = "-1",
     .flags = INK_PF_STATE,
     .min = -1,
     .max = 9223372036854775807.0,
     .help = "RNG seed (-1 = derived from engine.seed and the name)"},
    {0},
};

static const struct ink_param io_common_params[] = {
    {.name = "dead_letter",
     .type = INK_P_STRING,
     .offset = offsetof(struct ink_io_common_conf, dead_letter),
     .help = "sink that receives records that fail decoding"},
    {0},
};

/* ------------------------------------------------------------------ */
/* Diagnostics                                                         */

/* Stable sort of the diagnostics appended since n0, by position. */
static void diags_sort(struct ink_diags *d, int n0)
{
    for (int i = n0 + 1; i < d->n; i++) {
        struct ink_diag x = d->v[i];
        int j = i;
        while (j > n0 && (d->v[j - 1].line > x.line ||
                          (d->v[j - 1].line == x.line && d->v[j - 1].col > x.col))) {
            d->v[j] = d->v[j - 1];
            j--;
        }
        d->v[j] = x;
    }
}

/* ------------------------------------------------------------------ */
/* Node types                                                          */

static const struct ink_op_vtable *const *test_ops;

void ink__config_test_ops(const struct ink_op_vtable *const *ops)
{
    test_ops = ops;
}

const struct ink_op_vtable *ink__op_vtable_find(const char *name)
{
    const struct ink_op_vtable *vt = ink_op_find(name);
    for (int i = 0; !vt && test_ops && test_ops[i]; i++)
        if (!strcmp(test_ops[i]->name, name)) vt = test_ops[i];
    return vt;
}

/* An operator's node type is the head of its vtable (op.h). */
const struct ink_node_type *ink_node_type_find(enum ink_node_kind kind, const char *name)
{
    if (!name) return NULL;
    if (kind == INK_NODE_OPERATOR) {
        const struct ink_op_vtable *vt = ink__op_vtable_find(name);
        return vt ? &vt->type : NULL;
    }
    const struct ink_node_type *const *types =
        kind == INK_NODE_SOURCE ? ink_source_types : ink_sink_types;
    for (int i = 0; types[i]; i++)
        if (!strcmp(types[i]->name, name)) return types[i];
    return NULL;
}

/* Names of the types of a kind, for suggestions and lists. */
static int type_names(enum ink_node_kind kind, const char **out, int max)
{
    int n = 0;
    if (kind == INK_NODE_OPERATOR) {
        for (int i = 0; ink_operators[i] && n < max; i++) out[n++] = ink_operators[i]->name;
        for (int i = 0; test_ops && test_ops[i] && n < max; i++) out[n++] = test_ops[i]->name;
        return n;
    }
    const struct ink_node_type *const *types =
        kind == INK_NODE_SOURCE ? ink_source_types : ink_sink_types;
    for (int i = 0; types[i] && n < max; i++) out[n++] = types[i]->name;
    return n;
}

static void join(char *buf, size_t n, const char *const *names, int count)
{
    size_t off = 0;
    buf[0] = 0;
    for (int i = 0; i < count && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", names[i]);
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

enum { SEC_ENGINE, SEC_SOURCES, SEC_OPERATORS, SEC_SINKS, NSEC };
static const char *const sec_names[NSEC] = {"engine", "sources", "operators", "sinks"};
static const char *const kind_words[] = {"source", "operator", "sink"};
static const char *const kind_sections[] = {"sources", "operators", "sinks"};

static const char *article(const char *word)
{
    return strchr("aeiou", word[0]) ? "an" : "a";
}

struct loader {
    struct ink_diags *d;
    struct ink_config *cfg;
    const struct ink__ynode *sec_key[NSEC], *sec_val[NSEC];
    const struct ink__ynode **ymap; /* per node: its map of keys */
    bool *ok;                       /* per node: keys parsed and checked without error */
    bool *dl_target;                /* per node: named as a dead_letter */
};

static void node_path(char *buf, size_t n, const struct ink_node_conf *nc)
{
    snprintf(buf, n, "%s.%s", kind_sections[nc->kind], nc->name);
}

static int find_node(const struct ink_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nnodes; i++)
        if (!strcmp(cfg->nodes[i].name, name)) return i;
    return -1;
}

static void load_root(struct loader *L, const struct ink__ynode *root)
{
    if (!root || ink__ynull(root)) {
        ink__diag_add(L->d, 1, 1,
                      "empty config: expected a map with 'sources', 'operators' and 'sinks'");
        return;
    }
    if (root->kind != INK__Y_MAP) {
        ink__diag_add(L->d, root->line, root->col,
                      "the config must be a map with 'sources', 'operators' and 'sinks'");
        return;
    }
    for (int i = 0; i + 1 < root->n; i += 2) {
        const struct ink__ynode *k = root->v[i];
        if (k->kind != INK__Y_SCALAR) continue;
        int s = 0;
        while (s < NSEC && strcmp(sec_names[s], k->s)) s++;
        if (s < NSEC) {
            if (!L->sec_key[s]) L->sec_key[s] = k, L->sec_val[s] = root->v[i + 1];
            continue;
        }
        const char *sug = ink__suggest(k->s, sec_names, NSEC);
        if (sug)
            ink__diag_add(L->d, k->line, k->col, "unknown top-level key '%s' (did you mean '%s'?)",
                          k->s, sug);
        else
            ink__diag_add(L->d, k->line, k->col,
                          "unknown top-level key '%s' (valid keys: engine, sources, operators, "
                          "sinks)",
                          k->s);
    }
}

static void load_engine(struct loader *L)
{
    struct ink_err err = {0};
    if (ink_params_defaults(ink_engine_params, &L->cfg->engine, &err))
        ink__diag_add(L->d, 0, 0, "internal: engine: %s", err.msg);
    const struct ink__ynode *k = L->sec_key[SEC_ENGINE], *v = L->sec_val[SEC_ENGINE];
    if (!k || ink__ynull(v)) return;
    if (v->kind != INK__Y_MAP) {
        ink__diag_add(L->d, v->line, v->col, "engine: expected a map of settings");
        return;
    }
    struct ink__ptab tab = {ink_engine_params, &L->cfg->engine};
    ink__params_parse_map(L->d, "engine", v, &tab, 1, NULL, k->line, k->col);
    const struct ink_http_conf *h = &L->cfg->engine.http;
    if (h->set && h->listen) {
        const char *colon = strrchr(h->listen, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == h->listen || !colon[1] || *end || port < 0 || port > 65535) {
            const struct ink__ynode *lv = ink__ymap_get(ink__ymap_get(v, "http"), "listen");
            ink__diag_add(L->d, lv ? lv->line : k->line, lv ? lv->col : k->col,
                          "engine.http.listen: '%s' is not host:port (e.g. 127.0.0.1:9464)",
                          h->listen);
        }
    }
}

static bool name_ok(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.') return false;
    return true;
}

/* Collect the nodes of the three sections, in the order sources, operators,
 * sinks (file order within each). */
static int collect_nodes(struct loader *L)
{
    int count = 0;
    for (int s = SEC_SOURCES; s <= SEC_SINKS; s++) {
        const struct ink__ynode *v = L->sec_val[s];
        if (!L->sec_key[s] || ink__ynull(v)) continue;
        if (v->kind != INK__Y_MAP) {
            ink__diag_add(L->d, v->line, v->col,
                          "%s: expected a map from node name to its keys, got a %s", sec_names[s],
                          v->kind == INK__Y_SEQ ? "list" : "scalar");
            continue;
        }
        for (int i = 0; i + 1 < v->n; i += 2) count += v->v[i]->kind == INK__Y_SCALAR;
    }
    struct ink_config *cfg = L->cfg;
    cfg->nodes = calloc((size_t)count + 1, sizeof *cfg->nodes);
    L->ymap = calloc((size_t)count + 1, sizeof *L->ymap);
    L->ok = calloc((size_t)count + 1, sizeof *L->ok);
    L->dl_target = calloc((size_t)count + 1, sizeof *L->dl_target);
    if (!cfg->nodes || !L->ymap || !L->ok || !L->dl_target) return INK_ENOMEM;
    for (int s = SEC_SOURCES; s <= SEC_SINKS; s++) {
        const struct ink__ynode *v = L->sec_val[s];
        if (!L->sec_key[s] || ink__ynull(v) || v->kind != INK__Y_MAP) continue;
        for (int i = 0; i + 1 < v->n; i += 2) {
            const struct ink__ynode *k = v->v[i];
            if (k->kind != INK__Y_SCALAR) continue;
            struct ink_node_conf *nc = &cfg->nodes[cfg->nnodes];
            if (!(nc->name = strdup(k->s))) return INK_ENOMEM;
            nc->kind = (enum ink_node_kind)(s - SEC_SOURCES);
            nc->line = k->line;
            nc->col = k->col;
            L->ymap[cfg->nnodes++] = v->v[i + 1];
            if (!name_ok(k->s))
                ink__diag_add(L->d, k->line, k->col,
                              "%s: node name '%s' may only contain letters, digits, '_', '-' "
                              "and '.'",
                              sec_names[s], k->s);
        }
    }
    /* names are unique across sections (duplicates within one map were
     * reported by the YAML reader) */
    for (int i = 0; i < cfg->nnodes; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(cfg->nodes[i].name, cfg->nodes[j].name) &&
                cfg->nodes[i].kind != cfg->nodes[j].kind) {
                ink__diag_add(L->d, cfg->nodes[i].line, cfg->nodes[i].col,
                              "%s.%s: node name '%s' is already used by the %s at %d:%d",
                              kind_sections[cfg->nodes[i].kind], cfg->nodes[i].name,
                              cfg->nodes[i].name, kind_words[cfg->nodes[j].kind],
                              cfg->nodes[j].line, cfg->nodes[j].col);
                break;
            }
    return 0;
}

static const struct ink_node_type *resolve_type(struct loader *L, struct ink_node_conf *nc,
                                                const struct ink__ynode *m, const char *path)
{
    const struct ink__ynode *tv = ink__ymap_get(m, "type");
    const char *names[256];
    char list[600];
    int nn = type_names(nc->kind, names, 256);
    join(list, sizeof list, names, nn);
    if (ink__ynull(tv)) {
        ink__diag_add(L->d, nc->line, nc->col, "%s: missing required key 'type' (one of: %s)", path,
                      list);
        return NULL;
    }
    if (tv->kind != INK__Y_SCALAR) {
        ink__diag_add(L->d, tv->line, tv->col, "%s.type: expected a type name (one of: %s)", path,
                      list);
        return NULL;
    }
    const struct ink_node_type *nt = ink_node_type_find(nc->kind, tv->s);
    if (nt) return nt;
    const char *kw = kind_words[nc->kind];
    for (int k = 0; k < 3; k++)
        if (k != (int)nc->kind && ink_node_type_find((enum ink_node_kind)k, tv->s)) {
            ink__diag_add(L->d, tv->line, tv->col, "%s.type: '%s' is %s %s type, not %s %s type",
                          path, tv->s, article(kind_words[k]), kind_words[k], article(kw), kw);
            return NULL;
        }
    const char *sug = ink__suggest(tv->s, names, nn);
    if (sug)
        ink__diag_add(L->d, tv->line, tv->col, "%s.type: unknown %s type '%s' (did you mean '%s'?)",
                      path, kw, tv->s, sug);
    else
        ink__diag_add(L->d, tv->line, tv->col, "%s.type: unknown %s type '%s' (%s types: %s)", path,
                      kw, tv->s, kw, list);
    return NULL;
}

static void load_inputs(struct loader *L, struct ink_node_conf *nc, const struct ink__ynode *m,
                        const char *path)
{
    const struct ink__ynode *ik = ink__ymap_key(m, "inputs"), *iv = ink__ymap_get(m, "inputs");
    if (!ik || ink__ynull(iv)) return;
    if (nc->kind == INK_NODE_SOURCE) {
        ink__diag_add(L->d, ik->line, ik->col,
                      "%s.inputs: a source has no inputs (it reads from its socket or file)", path);
        return;
    }
    if (iv->kind == INK__Y_MAP) {
        ink__diag_add(L->d, iv->line, iv->col,
                      "%s.inputs: expected a list of node names (or one name), got a map", path);
        return;
    }
    int n = iv->kind == INK__Y_SEQ ? iv->n : 1;
    nc->inputs = calloc((size_t)n + 1, sizeof *nc->inputs);
    nc->input_idx = calloc((size_t)n + 1, sizeof *nc->input_idx);
    nc->input_line = calloc((size_t)n + 1, sizeof *nc->input_line);
    nc->input_col = calloc((size_t)n + 1, sizeof *nc->input_col);
    if (!nc->inputs || !nc->input_idx || !nc->input_line || !nc->input_col) return;
    for (int i = 0; i < n; i++) {
        const struct ink__ynode *e = iv->kind == INK__Y_SEQ ? iv->v[i] : iv;
        if (e->kind != INK__Y_SCALAR || ink__ynull(e)) {
            ink__diag_add(L->d, e->line, e->col, "%s.inputs[%d]: expected a node name", path, i);
            continue;
        }
        if (!(nc->inputs[nc->ninputs] = strdup(e->s))) return;
        nc->input_idx[nc->ninputs] = -1;
        nc->input_line[nc->ninputs] = e->line;
        nc->input_col[nc->ninputs] = e->col;
        nc->ninputs++;
    }
}

/* Checks of the engine-level operator keys that depend on each other. */
static void check_common(struct loader *L, struct ink_node_conf *nc, const struct ink__ynode *m,
                         const char *path)
{
    struct ink_op_common_conf *c = &nc->common;
    if (c->key_by && strcmp(c->key_by, "key")) {
        const struct ink__ynode *v = ink__ymap_get(m, "key_by");
        ink__diag_add(L->d, v->line, v->col,
                      "%s.key_by: only 'key' is supported (the record's key field), got '%s'", path,
                      c->key_by);
    }
    if (!c->key_by) {
        static const char *const keyed[] = {"max_keys", "on_new_key"};
        for (int i = 0; i < 2; i++) {
            const struct ink__ynode *k = ink__ymap_key(m, keyed[i]);
            if (k && !ink__ynull(ink__ymap_get(m, keyed[i])))
                ink__diag_add(L->d, k->line, k->col, "%s.%s: only applies with 'key_by: key'", path,
                              keyed[i]);
        }
        c->max_keys = 1;
    }
}

static void load_node(struct loader *L, int idx)
{
    struct ink_node_conf *nc = &L->cfg->nodes[idx];
    const struct ink__ynode *m = L->ymap[idx];
    char path[300];
    node_path(path, sizeof path, nc);
    int n0 = L->d->n;
    if (ink__ynull(m) || m->kind != INK__Y_MAP) {
        ink__diag_add(L->d, m && !ink__ynull(m) ? m->line : nc->line,
                      m && !ink__ynull(m) ? m->col : nc->col,
                      "%s: expected a map with 'type' and the node's keys", path);
        return;
    }
    load_inputs(L, nc, m, path);
    nc->type = resolve_type(L, nc, m, path);
    if (!nc->type) return;
    struct ink_err err = {0};
    nc->conf = calloc(1, nc->type->conf_size ? nc->type->conf_size : 1);
    if (!nc->conf) {
        ink__diag_add(L->d, nc->line, nc->col, "%s: out of memory", path);
        return;
    }
    if (ink_params_defaults(nc->type->params, nc->conf, &err))
        ink__diag_add(L->d, nc->line, nc->col, "internal: %s: %s", path, err.msg);
    struct ink__ptab tabs[2] = {{nc->type->params, nc->conf}};
    struct ink_io_common_conf io = {0};
    if (nc->kind == INK_NODE_OPERATOR) {
        if (ink_params_defaults(ink_op_common_params, &nc->common, &err))
            ink__diag_add(L->d, nc->line, nc->col, "internal: %s: %s", path, err.msg);
        tabs[1] = (struct ink__ptab){ink_op_common_params, &nc->common};
    } else if (nc->kind == INK_NODE_SOURCE) {
        tabs[1] = (struct ink__ptab){io_common_params, &io};
    }
    /* Keys the loader handles itself: skipped here, and offered in the "valid
     * keys" of an unknown one. A source takes no inputs, so they are not
     * offered there (load_inputs explains why when a source has some). */
    static const char *const reserved[] = {"type", "inputs", NULL};
    static const char *const reserved_source[] = {"type", NULL};
    bool src_without_inputs = nc->kind == INK_NODE_SOURCE && !ink__ymap_key(m, "inputs");
    int ntabs = nc->kind == INK_NODE_SINK ? 1 : 2;
    ink__params_parse_map(L->d, path, m, tabs, ntabs,
                          src_without_inputs ? reserved_source : reserved, nc->line, nc->col);
    if (nc->kind == INK_NODE_OPERATOR) {
        check_common(L, nc, m, path);
        if (nc->common.dead_letter && !(nc->dead_letter = strdup(nc->common.dead_letter)))
            ink__diag_add(L->d, nc->line, nc->col, "%s: out of memory", path);
    } else if (nc->kind == INK_NODE_SOURCE) {
        nc->dead_letter = io.dead_letter;
    }
    if (L->d->n == n0 && nc->type->check) {
        err = (struct ink_err){0};
        if (nc->type->check(nc->conf, &err))
            ink__diag_add(L->d, err.line > 0 ? err.line : nc->line,
                          err.line > 0 ? err.col : nc->col, "%s: %s", path, err.msg);
    }
    L->ok[idx] = L->d->n == n0;
}

/* Suggest a node name of the wanted kinds (mask of 1 << kind). */
static const char *suggest_node(const struct ink_config *cfg, const char *name, unsigned mask)
{
    const char **c = malloc(sizeof(char *) * (size_t)(cfg->nnodes + 1));
    if (!c) return NULL;
    int n = 0;
    for (int i = 0; i < cfg->nnodes; i++)
        if (mask & (1u << cfg->nodes[i].kind)) c[n++] = cfg->nodes[i].name;
    const char *s = ink__suggest(name, c, n);
    free(c);
    return s;
}

static void resolve_inputs(struct loader *L)
{
    struct ink_config *cfg = L->cfg;
    for (int i = 0; i < cfg->nnodes; i++) {
        struct ink_node_conf *nc = &cfg->nodes[i];
        char path[300];
        node_path(path, sizeof path, nc);
        for (int k = 0; k < nc->ninputs; k++) {
            int line = nc->input_line[k], col = nc->input_col[k];
            int j = find_node(cfg, nc->inputs[k]);
            bool dup = false;
            for (int p = 0; p < k; p++) dup |= !strcmp(nc->inputs[p], nc->inputs[k]);
            if (dup) {
                ink__diag_add(L->d, line, col, "%s.inputs: '%s' is listed twice", path,
                              nc->inputs[k]);
            } else if (j < 0) {
                const char *s = suggest_node(cfg, nc->inputs[k],
                                             1u << INK_NODE_SOURCE | 1u << INK_NODE_OPERATOR);
                if (s)
                    ink__diag_add(L->d, line, col,
                                  "%s.inputs: unknown node '%s' (did you mean '%s'?)", path,
                                  nc->inputs[k], s);
                else
                    ink__diag_add(L->d, line, col,
                                  "%s.inputs: unknown node '%s' (inputs name sources or "
                                  "operators)",
                                  path, nc->inputs[k]);
            } else if (cfg->nodes[j].kind == INK_NODE_SINK) {
                ink__diag_add(L->d, line, col,
                              "%s.inputs: '%s' is a sink; inputs name sources or operators", path,
                              nc->inputs[k]);
            } else {
                nc->input_idx[k] = j;
            }
        }
    }
}

static void check_dead_letters(struct loader *L)
{
    struct ink_config *cfg = L->cfg;
    for (int i = 0; i < cfg->nnodes; i++) {
        struct ink_node_conf *nc = &cfg->nodes[i];
        if (!nc->dead_letter) continue;
        const struct ink__ynode *v = ink__ymap_get(L->ymap[i], "dead_letter");
        int line = v ? v->line : nc->line, col = v ? v->col : nc->col;
        char path[300];
        node_path(path, sizeof path, nc);
        int j = find_node(cfg, nc->dead_letter);
        if (j >= 0 && cfg->nodes[j].kind == INK_NODE_SINK) {
            L->dl_target[j] = true;
            continue;
        }
        const char *s = suggest_node(cfg, nc->dead_letter, 1u << INK_NODE_SINK);
        if (j >= 0)
            ink__diag_add(L->d, line, col,
                          "%s.dead_letter: '%s' is %s %s; a dead letter goes to a sink", path,
                          nc->dead_letter, article(kind_words[cfg->nodes[j].kind]),
                          kind_words[cfg->nodes[j].kind]);
        else if (s)
            ink__diag_add(L->d, line, col, "%s.dead_letter: unknown sink '%s' (did you mean '%s'?)",
                          path, nc->dead_letter, s);
        else
            ink__diag_add(L->d, line, col, "%s.dead_letter: unknown sink '%s'", path,
                          nc->dead_letter);
    }
}

static void check_counts(struct loader *L)
{
    struct ink_config *cfg = L->cfg;
    int count[3] = {0, 0, 0};
    for (int i = 0; i < cfg->nnodes; i++) count[cfg->nodes[i].kind]++;
    for (int k = 0; k < 3; k += 2)
        if (!count[k]) {
            const struct ink__ynode *sk = L->sec_key[SEC_SOURCES + k];
            ink__diag_add(L->d, sk ? sk->line : 1, sk ? sk->col : 1,
                          "no %s: a graph needs at least one %s", kind_sections[k], kind_words[k]);
        }
    for (int i = 0; i < cfg->nnodes; i++) {
        struct ink_node_conf *nc = &cfg->nodes[i];
        if (nc->kind == INK_NODE_SOURCE || nc->ninputs > 0 || !L->ymap[i] ||
            L->ymap[i]->kind != INK__Y_MAP)
            continue;
        /* inputs given but all of them malformed were reported already */
        if (!ink__ynull(ink__ymap_get(L->ymap[i], "inputs"))) continue;
        if (nc->kind == INK_NODE_OPERATOR)
            ink__diag_add(L->d, nc->line, nc->col,
                          "operators.%s: no inputs (add 'inputs: [a source or operator]')",
                          nc->name);
        else if (!L->dl_target[i])
            ink__diag_add(L->d, nc->line, nc->col,
                          "sinks.%s: no inputs (add 'inputs: [...]', or name it as a "
                          "'dead_letter')",
                          nc->name);
    }
}

/* Edges in data-flow direction: producer -> (consumer, index in its inputs). */
struct edges {
    int *start; /* per node, into to/at; start[n] = total */
    int *to, *at;
};

static int build_edges(const struct ink_config *cfg, struct edges *e)
{
    int n = cfg->nnodes, total = 0;
    e->start = calloc((size_t)n + 1, sizeof(int));
    for (int i = 0; i < n; i++) total += cfg->nodes[i].ninputs;
    e->to = calloc((size_t)total + 1, sizeof(int));
    e->at = calloc((size_t)total + 1, sizeof(int));
    int *fill = calloc((size_t)n + 1, sizeof(int));
    if (!e->start || !e->to || !e->at || !fill) {
        free(fill);
        return INK_ENOMEM;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < cfg->nodes[i].ninputs; k++)
            if (cfg->nodes[i].input_idx[k] >= 0) e->start[cfg->nodes[i].input_idx[k] + 1]++;
    for (int i = 0; i < n; i++) e->start[i + 1] += e->start[i];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < cfg->nodes[i].ninputs; k++) {
            int j = cfg->nodes[i].input_idx[k];
            if (j < 0) continue;
            int slot = e->start[j] + fill[j]++;
            e->to[slot] = i;
            e->at[slot] = k;
        }
    free(fill);
    return 0;
}

static void edges_free(struct edges *e)
{
    free(e->start);
    free(e->to);
    free(e->at);
}

/* Depth-first search along the data flow; a back edge closes a cycle, which
 * is reported at the input that closes it: "cycle: a -> b -> a". Iterative,
 * so a long chain cannot overflow the stack. */
static void check_cycles(struct loader *L, const struct edges *e)
{
    struct ink_config *cfg = L->cfg;
    int n = cfg->nnodes;
    int *color = calloc((size_t)n + 1, sizeof(int)); /* 0 new, 1 on stack, 2 done */
    int *stack = calloc((size_t)n + 1, sizeof(int));
    int *next = calloc((size_t)n + 1, sizeof(int));
    if (!color || !stack || !next) goto out;
    for (int r = 0; r < n; r++) {
        if (color[r]) continue;
        int sp = 0;
        stack[sp++] = r;
        color[r] = 1;
        next[r] = e->start[r];
        while (sp > 0) {
            int u = stack[sp - 1];
            if (next[u] == e->start[u + 1]) {
                color[u] = 2;
                sp--;
                continue;
            }
            int slot = next[u]++;
            int v = e->to[slot];
            if (color[v] == 0) {
                color[v] = 1;
                next[v] = e->start[v];
                stack[sp++] = v;
            } else if (color[v] == 1) {
                char msg[400];
                size_t off = 0;
                int from = sp - 1;
                while (from > 0 && stack[from] != v) from--;
                for (int s = from; s < sp && off < sizeof msg; s++)
                    off += (size_t)snprintf(msg + off, sizeof msg - off, "%s -> ",
                                            cfg->nodes[stack[s]].name);
                if (off < sizeof msg)
                    snprintf(msg + off, sizeof msg - off, "%s", cfg->nodes[v].name);
                const struct ink_node_conf *c = &cfg->nodes[v];
                int k = e->at[slot];
                ink__diag_add(L->d, c->input_line[k], c->input_col[k], "%s.%s.inputs: cycle: %s",
                              kind_sections[c->kind], c->name, msg);
            }
        }
    }
out:
    free(color);
    free(stack);
    free(next);
}

/* A request/reply source's reply_from (its type's reply_from hook) names an
 * operator fed (transitively) by it. */
static void check_reply_from(struct loader *L, const struct edges *e)
{
    struct ink_config *cfg = L->cfg;
    for (int i = 0; i < cfg->nnodes; i++) {
        const struct ink_node_conf *nc = &cfg->nodes[i];
        const struct ink_source_type *st = ink_source_of(nc->type);
        if (!st || !st->reply_from || !L->ok[i]) continue;
        const char *reply_from = st->reply_from(nc->conf);
        if (!reply_from) continue;
        const struct ink__ynode *v = ink__ymap_get(L->ymap[i], "reply_from");
        int line = v ? v->line : nc->line, col = v ? v->col : nc->col;
        int j = find_node(cfg, reply_from);
        if (j < 0 || cfg->nodes[j].kind != INK_NODE_OPERATOR) {
            const char *s = suggest_node(cfg, reply_from, 1u << INK_NODE_OPERATOR);
            if (j >= 0)
                ink__diag_add(L->d, line, col,
                              "sources.%s.reply_from: '%s' is %s %s; replies come from an operator",
                              nc->name, reply_from, article(kind_words[cfg->nodes[j].kind]),
                              kind_words[cfg->nodes[j].kind]);
            else if (s)
                ink__diag_add(L->d, line, col,
                              "sources.%s.reply_from: unknown operator '%s' (did you mean '%s'?)",
                              nc->name, reply_from, s);
            else
                ink__diag_add(L->d, line, col, "sources.%s.reply_from: unknown operator '%s'",
                              nc->name, reply_from);
            continue;
        }
        /* breadth-first from the source along the data flow */
        int *queue = calloc((size_t)cfg->nnodes + 1, sizeof(int));
        bool *seen = calloc((size_t)cfg->nnodes + 1, sizeof(bool));
        bool found = false;
        if (queue && seen) {
            int qh = 0, qt = 0;
            queue[qt++] = i;
            seen[i] = true;
            while (qh < qt && !found) {
                int u = queue[qh++];
                for (int s = e->start[u]; s < e->start[u + 1]; s++)
                    if (!seen[e->to[s]]) {
                        seen[e->to[s]] = true;
                        found |= e->to[s] == j;
                        queue[qt++] = e->to[s];
                    }
            }
        }
        free(queue);
        free(seen);
        if (!found)
            ink__diag_add(L->d, line, col,
                          "sources.%s.reply_from: operator '%s' does not read from source '%s' "
                          "(directly or through other operators)",
                          nc->name, reply_from, nc->name);
    }
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* The operators' declared bounds must fit engine.memory_limit (keyed
 * operators reserve max_keys states). Only operators that parsed cleanly are
 * asked: mem_bound may assume a valid conf. */
static void check_memory(struct loader *L)
{
    struct ink_config *cfg = L->cfg;
    uint64_t total = 0;
    for (int i = 0; i < cfg->nnodes; i++) {
        const struct ink_node_conf *nc = &cfg->nodes[i];
        if (nc->kind != INK_NODE_OPERATOR || !L->ok[i]) continue;
        const struct ink_op_vtable *vt = ink_op_of(nc->type);
        uint64_t b = vt && vt->mem_bound ? vt->mem_bound(nc->conf) : 0;
        b = sat_mul(b, nc->common.key_by ? (uint64_t)nc->common.max_keys : 1);
        uint64_t sb = vt && vt->scratch_bytes ? vt->scratch_bytes(nc->conf) : 0;
        b = b + sb < b ? UINT64_MAX : b + sb; /* one per node, whatever the keys */
        total = total + b < total ? UINT64_MAX : total + b;
    }
    uint64_t limit = cfg->engine.memory_limit;
    if (total <= limit) return;
    char msg[512], a[32], b[32];
    ink__fmt_size(a, sizeof a, total);
    ink__fmt_size(b, sizeof b, limit);
    size_t off = (size_t)snprintf(msg, sizeof msg,
                                  "operators: declared memory %llu bytes (%s) exceeds "
                                  "engine.memory_limit %llu bytes (%s):",
                                  (unsigned long long)total, a, (unsigned long long)limit, b);
    for (int i = 0; i < cfg->nnodes && off < sizeof msg; i++) {
        const struct ink_node_conf *nc = &cfg->nodes[i];
        if (nc->kind != INK_NODE_OPERATOR || !L->ok[i]) continue;
        const struct ink_op_vtable *vt = ink_op_of(nc->type);
        uint64_t one = vt && vt->mem_bound ? vt->mem_bound(nc->conf) : 0;
        if (nc->common.key_by)
            off +=
                (size_t)snprintf(msg + off, sizeof msg - off, " %s %lld keys x %llu bytes,",
                                 nc->name, (long long)nc->common.max_keys, (unsigned long long)one);
        else
            off += (size_t)snprintf(msg + off, sizeof msg - off, " %s %llu bytes,", nc->name,
                                    (unsigned long long)one);
    }
    if (off < sizeof msg && msg[off - 1] == ',') msg[off - 1] = 0;
    const struct ink__ynode *k = L->sec_key[SEC_OPERATORS];
    ink__diag_add(L->d, k ? k->line : 1, k ? k->col : 1, "%s", msg);
}

/* Shard mode (engine/shard.h): one sharded source per graph, snapshots in a
 * directory, and every stateful operator it feeds (directly or not) keyed by
 * the record's key, which a sharded source takes from the message key: a
 * key's state then lives in the partition Kafka put the key in. An
 * unkeyed state would mix partitions, which move between processes. */
static void check_shards(struct loader *L, const struct edges *e)
{
    struct ink_config *cfg = L->cfg;
    int n = cfg->nnodes, src = -1;
    for (int i = 0; i < n; i++) {
        const struct ink_node_conf *nc = &cfg->nodes[i];
        const struct ink_source_type *st = ink_source_of(nc->type);
        if (!st || !st->sharded || !L->ok[i] || !st->sharded(nc->conf)) continue;
        if (src >= 0) {
            ink__diag_add(L->d, nc->line, nc->col,
                          "sources.%s: shards: only one sharded source per graph ('%s' is one)",
                          nc->name, cfg->nodes[src].name);
            continue;
        }
        src = i;
        if (!cfg->engine.snapshot.set || !cfg->engine.snapshot.dir)
            ink__diag_add(L->d, nc->line, nc->col,
                          "sources.%s: shards: true keeps the state in shard files under "
                          "engine.snapshot.dir (a directory every process of the group mounts): "
                          "set engine.snapshot",
                          nc->name);
    }
    if (src < 0) return;
    cfg->sharded = true;
    bool *seen = calloc((size_t)n + 1, sizeof *seen);
    int *stack = calloc((size_t)n + 1, sizeof *stack);
    int sp = 0;
    if (!seen || !stack) goto out;
    stack[sp++] = src;
    seen[src] = true;
    while (sp > 0) {
        int u = stack[--sp];
        for (int k = e->start[u]; k < e->start[u + 1]; k++) {
            int v = e->to[k];
            if (seen[v]) continue;
            seen[v] = true;
            stack[sp++] = v;
            const struct ink_node_conf *c = &cfg->nodes[v];
            const struct ink_op_vtable *vt = ink_op_of(c->type);
            if (c->kind != INK_NODE_OPERATOR || !vt || !vt->save || c->common.key_by) continue;
            ink__diag_add(L->d, c->line, c->col,
                          "operators.%s: keeps one state for every record, but source '%s' "
                          "keeps state per partition (shards: true) and partitions move "
                          "between processes: give it key_by: key (the message key), or, to key "
                          "by another field or keep one global state, repartition first: a "
                          "kafka sink keyed by that field into a topic, and a second graph "
                          "reading it (docs/kafka.md#scale-out)",
                          c->name, cfg->nodes[src].name);
        }
    }
out:
    free(seen);
    free(stack);
}

/* Kahn's algorithm, always taking the ready node of lowest index, so sources
 * come first and ties follow file order. */
static int build_topo(struct ink_config *cfg, const struct edges *e)
{
    int n = cfg->nnodes;
    int *indeg = calloc((size_t)n + 1, sizeof(int));
    bool *done = calloc((size_t)n + 1, sizeof(bool));
    cfg->topo = calloc((size_t)n + 1, sizeof(int));
    if (!indeg || !done || !cfg->topo) {
        free(indeg);
        free(done);
        return INK_ENOMEM;
    }
    for (int s = 0; s < e->start[n]; s++) indeg[e->to[s]]++;
    int lo = 0;
    for (int t = 0; t < n; t++) {
        int u = lo;
        while (u < n && (done[u] || indeg[u])) u++;
        if (u == n) break; /* a cycle: reported already */
        done[u] = true;
        cfg->topo[t] = u;
        for (int s = e->start[u]; s < e->start[u + 1]; s++)
            if (--indeg[e->to[s]] == 0 && e->to[s] < lo) lo = e->to[s];
        while (lo < n && done[lo]) lo++;
    }
    free(indeg);
    free(done);
    return 0;
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static uint64_t fnv1a64(const char *buf, size_t len)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a 64 offset basis */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)buf[i];
        h *= 1099511628211ull;
    }
    return h;
}

int ink_config_load_buf(const char *path, const char *buf, size_t len, struct ink_config *cfg,
                        struct ink_diags *diags)
{
    memset(cfg, 0, sizeof *cfg);
    int n0 = diags->n;
    struct loader L = {.d = diags, .cfg = cfg};
    struct ink__ytree tree = {0};
    int rc = 0;
    cfg->path = strdup(path ? path : "");
    cfg->base_dir = dir_of(path ? path : "");
    cfg->hash = fnv1a64(buf, len);
    if (!cfg->path || !cfg->base_dir) rc = INK_ENOMEM;
    if (!rc && ink__ytree_parse(buf, len, &tree, diags)) rc = INK_EPARSE;
    if (!rc) {
        load_root(&L, tree.root);
        load_engine(&L);
        rc = collect_nodes(&L);
    }
    if (!rc) {
        for (int i = 0; i < cfg->nnodes; i++) load_node(&L, i);
        resolve_inputs(&L);
        check_dead_letters(&L);
        if (tree.root && tree.root->kind == INK__Y_MAP) check_counts(&L);
        struct edges e = {0};
        rc = build_edges(cfg, &e);
        if (!rc) {
            check_cycles(&L, &e);
            check_reply_from(&L, &e);
            check_memory(&L);
            check_shards(&L, &e);
            if (diags->n == n0) rc = build_topo(cfg, &e);
        }
        edges_free(&e);
    }
    if (rc == INK_ENOMEM) ink__diag_add(diags, 0, 0, "out of memory while loading the config");
    diags_sort(diags, n0);
    free(L.ymap);
    free(L.ok);
    free(L.dl_target);
    ink__ytree_free(&tree);
    if (diags->n > n0 || rc) {
        ink_config_free(cfg);
        return rc == INK_EPARSE ? INK_EPARSE : rc ? rc : INK_EINVAL;
    }
    return 0;
}

/* Configs are small; anything larger is not a config. */
#define MAX_CONFIG_BYTES (16u << 20)

int ink_config_load(const char *path, struct ink_config *cfg, struct ink_diags *diags)
{
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        ink__diag_add(diags, 0, 0, "cannot open config: %s", strerror(errno));
        if (f) fclose(f);
        return INK_EIO;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)MAX_CONFIG_BYTES) {
        ink__diag_add(diags, 0, 0,
                      S_ISREG(st.st_mode) ? "config is larger than 16MiB"
                                          : "config is not a regular file");
        fclose(f);
        return INK_EIO;
    }
    size_t len = (size_t)st.st_size;
    char *buf = malloc(len + 1);
    if (!buf || fread(buf, 1, len, f) != len) {
        ink__diag_add(diags, 0, 0, "cannot read config: %s",
                      buf ? strerror(errno) : "out of memory");
        free(buf);
        fclose(f);
        return INK_EIO;
    }
    fclose(f);
    buf[len] = 0;
    int rc = ink_config_load_buf(path, buf, len, cfg, diags);
    free(buf);
    return rc;
}

void ink_config_free(struct ink_config *cfg)
{
    if (!cfg) return;
    for (int i = 0; cfg->nodes && i < cfg->nnodes; i++) {
        struct ink_node_conf *nc = &cfg->nodes[i];
        if (nc->type && nc->conf) ink_params_free(nc->type->params, nc->conf);
        free(nc->conf);
        ink_params_free(ink_op_common_params, &nc->common);
        free(nc->dead_letter);
        for (int k = 0; k < nc->ninputs; k++) free(nc->inputs[k]);
        free(nc->inputs);
        free(nc->input_idx);
        free(nc->input_line);
        free(nc->input_col);
        free(nc->name);
    }
    free(cfg->nodes);
    free(cfg->topo);
    free(cfg->path);
    free(cfg->base_dir);
    ink_params_free(ink_engine_params, &cfg->engine);
    memset(cfg, 0, sizeof *cfg);
}
