/* The YAML adapter of the config loader (config_impl.h): libfyaml's event
 * stream into a tree of nodes that remember line:col, with anchors and
 * aliases resolved, duplicate keys and directives refused. */
#define _GNU_SOURCE /* qsort_r */
#include <libfyaml.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config_impl.h"

/* ------------------------------------------------------------------ */
/* YAML tree                                                           */

static struct ink__ynode *ynew(struct ink__ytree *t, enum ink__ykind kind, int line, int col)
{
    struct ink__ynode *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = line;
    n->col = col;
    n->next = t->all;
    t->all = n;
    return n;
}

static int ypush(struct ink__ynode *parent, struct ink__ynode *child)
{
    if (parent->n == parent->cap) {
        int cap = parent->cap ? 2 * parent->cap : 8;
        struct ink__ynode **v = realloc(parent->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        parent->v = v;
        parent->cap = cap;
    }
    parent->v[parent->n++] = child;
    return 0;
}

void ink__ytree_free(struct ink__ytree *t)
{
    struct ink__ynode *n = t->all;
    while (n) {
        struct ink__ynode *next = n->next;
        free(n->s);
        free(n->v);
        free(n);
        n = next;
    }
    t->all = t->root = NULL;
}

bool ink__ynull(const struct ink__ynode *n)
{
    if (!n) return true;
    if (n->kind != INK__Y_SCALAR || !n->plain) return false;
    return n->len == 0 || !strcmp(n->s, "~") || !strcmp(n->s, "null") || !strcmp(n->s, "Null") ||
           !strcmp(n->s, "NULL");
}

const struct ink__ynode *ink__ymap_key(const struct ink__ynode *map, const char *key)
{
    if (!map || map->kind != INK__Y_MAP) return NULL;
    for (int i = 0; i + 1 < map->n; i += 2)
        if (map->v[i]->kind == INK__Y_SCALAR && !strcmp(map->v[i]->s, key)) return map->v[i];
    return NULL;
}

const struct ink__ynode *ink__ymap_get(const struct ink__ynode *map, const char *key)
{
    if (!map || map->kind != INK__Y_MAP) return NULL;
    for (int i = 0; i + 1 < map->n; i += 2)
        if (map->v[i]->kind == INK__Y_SCALAR && !strcmp(map->v[i]->s, key)) return map->v[i + 1];
    return NULL;
}

/* libfyaml prints its diagnostics; we capture them and keep the first line
 * of each ("<input>:LINE:COL: error: message") in our own format. */
struct capture {
    char *buf;
    size_t len, cap;
};

static void capture_fn(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    struct capture *c = user;
    if (c->len + len + 1 > c->cap) {
        size_t cap = (c->len + len + 1) * 2;
        if (cap > (1u << 20)) return; /* enough to find the message */
        char *b = realloc(c->buf, cap);
        if (!b) return;
        c->buf = b;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, buf, len);
    c->len += len;
    c->buf[c->len] = 0;
}

static int capture_to_diags(const struct capture *c, struct ink_diags *d)
{
    int found = 0;
    const char *p = c->buf;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        const char *e = memmem(p, ll, ": error: ", 9);
        if (e) {
            /* walk back over ":LINE:COL" */
            const char *q = e;
            long v[2] = {0, 0};
            int ok = 1;
            for (int k = 1; k >= 0 && ok; k--) {
                const char *end = q;
                while (q > p && isdigit((unsigned char)q[-1])) q--;
                if (q == end || q == p || q[-1] != ':')
                    ok = 0;
                else {
                    v[k] = strtol(q, NULL, 10);
                    q--;
                }
            }
            const char *msg = e + 9;
            int mlen = (int)(ll - (size_t)(msg - p));
            if (ok)
                ink__diag_add(d, (int)v[0], (int)v[1], "YAML syntax: %.*s", mlen, msg);
            else
                ink__diag_add(d, 0, 0, "YAML syntax: %.*s", mlen, msg);
            found++;
        }
        p = eol ? eol + 1 : NULL;
    }
    return found;
}

struct anchor {
    char *name;
    struct ink__ynode *node;
};

struct builder {
    struct ink__ytree *t;
    struct ink_diags *d;
    struct ink__ynode *stack[INK__YAML_MAX_DEPTH];
    char *stack_anchor[INK__YAML_MAX_DEPTH]; /* registered when the collection ends */
    int depth;
    struct anchor *anchors;
    int nanchors, capanchors;
    int ndocs;
    int failed;
};

static char *tok_text(struct fy_token *tok, size_t *lenp)
{
    size_t len = 0;
    const char *s = tok ? fy_token_get_text(tok, &len) : NULL;
    if (!s) s = "", len = 0;
    char *out = malloc(len + 1);
    if (!out) return NULL;
    memcpy(out, s, len);
    out[len] = 0;
    if (lenp) *lenp = len;
    return out;
}

static void pos_of(struct builder *b, struct fy_event *e, int *line, int *col)
{
    const struct fy_mark *m = fy_event_start_mark(e);
    if (m && m->line >= 0 && m->column >= 0) {
        *line = m->line + 1;
        *col = m->column + 1;
        return;
    }
    /* an empty value has no mark: point at its key, or its parent */
    *line = 1, *col = 1;
    if (b->depth > 0) {
        struct ink__ynode *p = b->stack[b->depth - 1];
        if (p->kind == INK__Y_MAP && p->n % 2 == 1) p = p->v[p->n - 1];
        *line = p->line, *col = p->col;
    }
}

/* Takes ownership of name. */
static int add_anchor(struct builder *b, char *name, struct ink__ynode *n)
{
    if (!name) return 0;
    if (b->nanchors == b->capanchors) {
        int cap = b->capanchors ? 2 * b->capanchors : 8;
        struct anchor *a = realloc(b->anchors, (size_t)cap * sizeof *a);
        if (!a) {
            free(name);
            return -1;
        }
        b->anchors = a;
        b->capanchors = cap;
    }
    b->anchors[b->nanchors++] = (struct anchor){name, n};
    return 0;
}

static struct ink__ynode *find_anchor(struct builder *b, const char *name)
{
    for (int i = b->nanchors - 1; i >= 0; i--)
        if (!strcmp(b->anchors[i].name, name)) return b->anchors[i].node;
    return NULL;
}

static int cmp_keyidx(const void *a, const void *b, void *arg)
{
    struct ink__ynode *const *v = arg;
    int i = *(const int *)a, j = *(const int *)b;
    int c = strcmp(v[i]->s, v[j]->s);
    return c ? c : (i > j) - (i < j);
}

/* Duplicate keys: sort the key indices (O(n log n) even for huge maps) and
 * report each later occurrence against the first. */
static void check_dup_keys(struct builder *b, struct ink__ynode *map)
{
    int nk = 0;
    int *idx = malloc(sizeof(int) * (size_t)(map->n / 2 + 1));
    if (!idx) return;
    for (int i = 0; i + 1 < map->n; i += 2)
        if (map->v[i]->kind == INK__Y_SCALAR) idx[nk++] = i;
    qsort_r(idx, (size_t)nk, sizeof *idx, cmp_keyidx, map->v);
    int first = 0; /* start of the current run of equal keys */
    for (int i = 1; i < nk; i++) {
        const struct ink__ynode *f = map->v[idx[first]], *k = map->v[idx[i]];
        if (strcmp(f->s, k->s)) {
            first = i;
            continue;
        }
        ink__diag_add(b->d, k->line, k->col, "duplicate key '%s' (first defined at %d:%d)", k->s,
                      f->line, f->col);
    }
    free(idx);
}

/* Attach a finished or started node to its parent (or make it the root). */
static void attach(struct builder *b, struct ink__ynode *n)
{
    if (b->depth == 0) {
        if (!b->t->root) b->t->root = n;
        return;
    }
    struct ink__ynode *p = b->stack[b->depth - 1];
    if (p->kind == INK__Y_MAP && p->n % 2 == 0 && n->kind != INK__Y_SCALAR && !b->failed)
        ink__diag_add(b->d, n->line, n->col, "keys must be plain strings, not a %s",
                      n->kind == INK__Y_MAP ? "map" : "list");
    if (ypush(p, n) < 0) b->failed = INK_ENOMEM;
}

static void on_event(struct builder *b, struct fy_event *e)
{
    int line, col;
    pos_of(b, e, &line, &col);
    struct ink__ynode *n = NULL;
    struct fy_token *tag = NULL, *anchor = NULL;
    switch (e->type) {
    case FYET_DOCUMENT_START:
        if (++b->ndocs > 1) {
            ink__diag_add(b->d, line, col, "a config holds one YAML document; found a second");
            b->failed = INK_EPARSE;
        }
        return;
    case FYET_SCALAR:
        tag = e->scalar.tag, anchor = e->scalar.anchor;
        n = ynew(b->t, INK__Y_SCALAR, line, col);
        if (!n || !(n->s = tok_text(e->scalar.value, &n->len))) {
            b->failed = INK_ENOMEM;
            return;
        }
        n->plain = fy_token_scalar_style(e->scalar.value) == FYSS_PLAIN;
        if (memchr(n->s, 0, n->len))
            ink__diag_add(b->d, line, col, "string contains a NUL character");
        break;
    case FYET_SEQUENCE_START:
    case FYET_MAPPING_START:
        if (e->type == FYET_SEQUENCE_START)
            tag = e->sequence_start.tag, anchor = e->sequence_start.anchor;
        else
            tag = e->mapping_start.tag, anchor = e->mapping_start.anchor;
        if (b->depth == INK__YAML_MAX_DEPTH) {
            ink__diag_add(b->d, line, col, "nesting deeper than %d levels", INK__YAML_MAX_DEPTH);
            b->failed = INK_EPARSE;
            return;
        }
        n = ynew(b->t, e->type == FYET_SEQUENCE_START ? INK__Y_SEQ : INK__Y_MAP, line, col);
        if (!n) {
            b->failed = INK_ENOMEM;
            return;
        }
        break;
    case FYET_SEQUENCE_END:
    case FYET_MAPPING_END:
        if (b->depth > 0) {
            n = b->stack[--b->depth];
            if (n->kind == INK__Y_MAP) check_dup_keys(b, n);
            char *name = b->stack_anchor[b->depth];
            b->stack_anchor[b->depth] = NULL;
            if (add_anchor(b, name, n) < 0) b->failed = INK_ENOMEM;
        }
        return;
    case FYET_ALIAS: {
        char *name = tok_text(e->alias.anchor, NULL);
        n = name ? find_anchor(b, name) : NULL;
        if (!n) {
            /* stand in an empty scalar so the structure stays intact */
            ink__diag_add(b->d, line, col, "unknown alias '*%s'", name ? name : "");
            n = ynew(b->t, INK__Y_SCALAR, line, col);
            if (n) n->s = calloc(1, 1);
            if (!n || !n->s) b->failed = INK_ENOMEM;
        }
        free(name);
        if (n) attach(b, n);
        return;
    }
    default:
        return;
    }
    if (tag) ink__diag_add(b->d, line, col, "YAML tags are not supported here");
    attach(b, n);
    char *name = anchor ? tok_text(anchor, NULL) : NULL;
    if (n->kind == INK__Y_SCALAR) {
        if (add_anchor(b, name, n) < 0) b->failed = INK_ENOMEM;
    } else {
        /* a collection's anchor becomes usable once it is complete, so an
         * alias can never make the tree cyclic */
        b->stack_anchor[b->depth] = name;
        b->stack[b->depth++] = n;
    }
}

/* libfyaml 0.7.12 can loop forever scanning a '%' directive line that is
 * not at the start of a document; configs never need %YAML or %TAG, so any
 * line starting with '%' is refused before the parser sees it. */
static bool refuse_directives(const char *buf, size_t len, struct ink_diags *d)
{
    int line = 1;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '%' && (i == 0 || buf[i - 1] == '\n' || buf[i - 1] == '\r')) {
            ink__diag_add(d, line, 1, "YAML directives ('%%YAML', '%%TAG') are not supported");
            return true;
        }
        if (buf[i] == '\n') line++;
    }
    return false;
}

int ink__ytree_parse(const char *buf, size_t len, struct ink__ytree *t, struct ink_diags *d)
{
    memset(t, 0, sizeof *t);
    if (refuse_directives(buf, len, d)) return INK_EPARSE;
    struct capture cap = {0};
    struct fy_diag_cfg dc;
    fy_diag_cfg_default(&dc);
    dc.fp = NULL;
    dc.output_fn = capture_fn;
    dc.user = &cap;
    dc.colorize = false;
    dc.show_source = false;
    struct fy_diag *diag = fy_diag_create(&dc);
    struct fy_parse_cfg pc = {.flags = FYPCF_QUIET, .diag = diag};
    struct fy_parser *p = diag ? fy_parser_create(&pc) : NULL;
    struct builder b = {.t = t, .d = d};
    int n0 = d->n;
    if (!p || fy_parser_set_string(p, buf, len) != 0) {
        b.failed = INK_ENOMEM;
    } else {
        struct fy_event *e;
        while (!b.failed && (e = fy_parser_parse(p))) {
            on_event(&b, e);
            fy_parser_event_free(p, e);
        }
        if (fy_parser_get_stream_error(p)) {
            if (!capture_to_diags(&cap, d)) ink__diag_add(d, 0, 0, "YAML syntax error");
            if (!b.failed) b.failed = INK_EPARSE;
        }
    }
    if (b.failed == INK_ENOMEM) ink__diag_add(d, 0, 0, "out of memory while reading the config");
    for (int i = 0; i < b.nanchors; i++) free(b.anchors[i].name);
    for (int i = 0; i < INK__YAML_MAX_DEPTH; i++) free(b.stack_anchor[i]);
    free(b.anchors);
    free(cap.buf);
    if (p) fy_parser_destroy(p);
    if (diag) fy_diag_destroy(diag);
    /* duplicate keys, tags, unknown aliases leave a usable tree: the loader
     * goes on and reports the rest too */
    return b.failed || (!t->root && d->n > n0) ? INK_EPARSE : 0;
}
