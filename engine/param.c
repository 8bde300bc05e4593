/* Param tables: the YAML tree with positions, parsing a value of each
 * INK_P_* type, defaults, release, `inkflow help` and the config reference.
 * Units (documented in docs/config-reference.md):
 *   size:     B; KiB MiB GiB TiB and the one-letter K M G T are binary (1024);
 *             KB MB GB TB are decimal (1000); case-insensitive; a plain
 *             integer is bytes; fractions are rounded down to whole bytes.
 *   duration: ns us ms s m h, summed when chained ("1m30s"); a plain number
 *             is seconds. */
#define _GNU_SOURCE /* memmem, qsort_r */
#include "config_impl.h"
#include "fields.h"
#include "transport.h"

#include <ctype.h>
#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* ------------------------------------------------------------------ */
/* Suggestions                                                         */

/* Optimal string alignment distance (adjacent transpositions count 1). */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int dp[65][65];
    for (size_t i = 0; i <= la; i++) dp[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) dp[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = dp[i - 1][j] + 1;
            if (dp[i][j - 1] + 1 < v) v = dp[i][j - 1] + 1;
            if (dp[i - 1][j - 1] + cost < v) v = dp[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                dp[i - 2][j - 2] + 1 < v)
                v = dp[i - 2][j - 2] + 1;
            dp[i][j] = v;
        }
    return dp[la][lb];
}

const char *ink__suggest(const char *word, const char *const *cands, int ncands)
{
    const char *best = NULL;
    int bestd = 1000;
    size_t lw = strlen(word);
    for (int i = 0; i < ncands; i++) {
        int dist = edit_distance(word, cands[i]);
        if (dist < bestd) bestd = dist, best = cands[i];
    }
    /* close = at most a third of the word wrong (at least one edit, at most 3) */
    int limit = (int)(lw / 3);
    if (limit < 1) limit = 1;
    if (limit > 3) limit = 3;
    return bestd <= limit && (size_t)bestd < lw ? best : NULL;
}

/* ------------------------------------------------------------------ */
/* Values                                                              */

static const char *kind_name(const struct ink__ynode *n)
{
    if (n->kind == INK__Y_MAP) return "a map";
    if (n->kind == INK__Y_SEQ) return "a list";
    return n->plain ? "a plain scalar" : "a quoted string";
}

static bool yaml_float_syntax(const char *s)
{
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    int digits = 0;
    while (isdigit((unsigned char)*p)) p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) p++, digits++;
    }
    if (!digits) return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!isdigit((unsigned char)*p)) return false;
        while (isdigit((unsigned char)*p)) p++;
    }
    return *p == 0;
}

static bool yaml_nonfinite(const char *s)
{
    if (*s == '+' || *s == '-') s++;
    return !strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF") || !strcmp(s, ".nan") ||
           !strcmp(s, ".NaN") || !strcmp(s, ".NAN");
}

/* A YAML 1.2 core-schema number. */
static bool text_double(const char *s, double *out)
{
    if (!yaml_float_syntax(s)) return false;
    errno = 0;
    *out = strtod(s, NULL);
    return true;
}

static bool text_int(const char *s, int64_t *out)
{
    const char *p = s;
    bool neg = *p == '-';
    if (*p == '+' || *p == '-') p++;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && isxdigit((unsigned char)p[2])) {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(p + 2, &end, 16);
        if (*end || errno || u > (unsigned long long)INT64_MAX) return false;
        *out = neg ? -(int64_t)u : (int64_t)u;
        return true;
    }
    double v;
    if (!text_double(s, &v)) return false;
    bool plain_digits = true;
    for (const char *q = p; *q; q++) plain_digits &= isdigit((unsigned char)*q) != 0;
    if (plain_digits) {
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (*end || errno) return false;
        *out = x;
        return true;
    }
    /* 1e6 and 2.0 are integers too; 1.5 is not */
    if (!isfinite(v) || v != floor(v) || fabs(v) >= 9223372036854775808.0) return false;
    *out = (int64_t)v;
    return true;
}

struct unit {
    const char *name;
    double mult;
};

static const struct unit size_units[] = {
    {"b", 1},
    {"k", 1024.0},
    {"kib", 1024.0},
    {"kb", 1e3},
    {"m", 1048576.0},
    {"mib", 1048576.0},
    {"mb", 1e6},
    {"g", 1073741824.0},
    {"gib", 1073741824.0},
    {"gb", 1e9},
    {"t", 1099511627776.0},
    {"tib", 1099511627776.0},
    {"tb", 1e12},
    {NULL, 0},
};

static const struct unit duration_units[] = {
    {"ns", 1e-9}, {"us", 1e-6}, {"ms", 1e-3}, {"s", 1}, {"m", 60}, {"h", 3600}, {NULL, 0},
};

/* "<number><unit>" parts, summed; a bare number uses `bare` (0 = forbidden). */
static bool text_units(const char *s, const struct unit *units, bool chain, double *out)
{
    double total = 0;
    const char *p = s;
    int parts = 0;
    while (*p) {
        const char *q = p;
        if (parts == 0 && (*q == '+' || *q == '-')) q++;
        while (isdigit((unsigned char)*q) || *q == '.') q++;
        if (q == p) return false;
        /* an exponent: 1e6 */
        if ((*q == 'e' || *q == 'E') &&
            (isdigit((unsigned char)q[1]) ||
             ((q[1] == '-' || q[1] == '+') && isdigit((unsigned char)q[2])))) {
            q += 2;
            while (isdigit((unsigned char)*q)) q++;
        }
        char num[64];
        size_t nl = (size_t)(q - p);
        if (nl >= sizeof num) return false;
        memcpy(num, p, nl);
        num[nl] = 0;
        double v;
        if (!text_double(num, &v)) return false;
        while (*q == ' ') q++;
        const char *u = q;
        while (isalpha((unsigned char)*q)) q++;
        size_t ul = (size_t)(q - u);
        double mult = 0;
        if (ul == 0) {
            if (parts > 0 || *q) return false;
            mult = 1; /* bare number: bytes / seconds */
        } else {
            for (const struct unit *un = units; un->name; un++)
                if (strlen(un->name) == ul && !strncasecmp(un->name, u, ul)) mult = un->mult;
            /* durations are case-sensitive: "m" is minutes, "M" is nothing */
            if (units == duration_units)
                for (size_t i = 0; i < ul; i++)
                    if (isupper((unsigned char)u[i])) mult = 0;
        }
        if (mult == 0) return false;
        total += v * mult;
        parts++;
        p = q;
        if (!chain && *p) return false;
        while (*p == ' ') p++;
    }
    if (!parts) return false;
    *out = total;
    return true;
}

static bool unbounded(const struct ink_param *p)
{
    return p->min == 0 && p->max == 0;
}

static void fmt_num(char *buf, size_t n, double v)
{
    if (fabs(v) < 1e9 && v == floor(v)) {
        snprintf(buf, n, "%.0f", v);
        return;
    }
    char tmp[32];
    /* the shortest text that reads back as v */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* 1e+12 -> 1e12, 1e-05 -> 1e-5 */
    char *e = strchr(tmp, 'e');
    if (e) {
        char *src = e + 1, *dst = e + 1;
        if (*src == '+')
            src++;
        else if (*src == '-')
            *dst++ = *src++;
        while (*src == '0' && src[1]) src++;
        memmove(dst, src, strlen(src) + 1);
    }
    snprintf(buf, n, "%s", tmp);
}

void ink__fmt_size(char *buf, size_t n, uint64_t bytes)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    uint64_t v = bytes;
    while (u < 6 && v >= 1024 && v % 1024 == 0) v /= 1024, u++;
    if (v < 1024 || u == 6) {
        snprintf(buf, n, "%llu%s", (unsigned long long)v, names[u]);
        return;
    }
    double x = (double)bytes;
    u = 0;
    while (u < 6 && x >= 1024) x /= 1024, u++;
    snprintf(buf, n, "%.2f%s", x, names[u]);
}

static void fmt_duration(char *buf, size_t n, double s)
{
    char num[40];
    if (s != 0 && fmod(s, 3600) == 0)
        fmt_num(num, sizeof num, s / 3600), snprintf(buf, n, "%sh", num);
    else if (s != 0 && fmod(s, 60) == 0)
        fmt_num(num, sizeof num, s / 60), snprintf(buf, n, "%sm", num);
    else if (s != 0 && fabs(s) < 1)
        fmt_num(num, sizeof num, s * 1e3), snprintf(buf, n, "%sms", num);
    else
        fmt_num(num, sizeof num, s), snprintf(buf, n, "%ss", num);
}

static void fmt_bound(char *buf, size_t n, const struct ink_param *p, double v)
{
    if (p->type == INK_P_SIZE)
        ink__fmt_size(buf, n, v >= 1.8e19 ? UINT64_MAX : (uint64_t)v);
    else if (p->type == INK_P_DURATION)
        fmt_duration(buf, n, v);
    else
        fmt_num(buf, n, v);
}

/* "in [a, b]", ">= a" or "<= b" (an end at the type's limit is left out). */
static void fmt_range(char *buf, size_t n, const struct ink_param *p)
{
    char a[64], b[64];
    fmt_bound(a, sizeof a, p, p->min);
    fmt_bound(b, sizeof b, p, p->max);
    bool nomax = p->max >= 9.2e18, nomin = p->min <= -9.2e18;
    if (nomax && nomin)
        snprintf(buf, n, "any");
    else if (nomax)
        snprintf(buf, n, ">= %s", a);
    else if (nomin)
        snprintf(buf, n, "<= %s", b);
    else
        snprintf(buf, n, "in [%s, %s]", a, b);
}

static bool range_ok(const struct ink_param *p, double v)
{
    return unbounded(p) || (v >= p->min && v <= p->max);
}

static void range_error(struct ink_diags *d, const char *path, const struct ink_param *p,
                        const struct ink__ynode *n)
{
    char r[160];
    fmt_range(r, sizeof r, p);
    ink__diag_add(d, n->line, n->col, "%s: %s is out of range (must be %s)", path, n->s, r);
}

static bool want_scalar(struct ink_diags *d, const char *path, const struct ink__ynode *n,
                        const char *what)
{
    if (n->kind == INK__Y_SCALAR) return true;
    ink__diag_add(d, n->line, n->col, "%s: expected %s, got %s", path, what, kind_name(n));
    return false;
}

/* A finite number in range, from a plain scalar. */
static bool parse_number(struct ink_diags *d, const char *path, const struct ink_param *p,
                         const struct ink__ynode *n, double *out)
{
    if (!want_scalar(d, path, n, "a number")) return false;
    if (n->plain && yaml_nonfinite(n->s)) {
        ink__diag_add(d, n->line, n->col, "%s: %s is not a finite number", path, n->s);
        return false;
    }
    if (!n->plain || !text_double(n->s, out)) {
        ink__diag_add(d, n->line, n->col, "%s: expected a number, got %s'%s'", path,
                      n->plain ? "" : "the quoted string ", n->s);
        return false;
    }
    if (!isfinite(*out)) {
        ink__diag_add(d, n->line, n->col, "%s: %s is not a finite number", path, n->s);
        return false;
    }
    if (!range_ok(p, *out)) {
        range_error(d, path, p, n);
        return false;
    }
    return true;
}

static bool parse_list(struct ink_diags *d, const char *path, const struct ink_param *p,
                       const struct ink__ynode *n, struct ink_f64_list *out, bool check_len)
{
    int cnt = n->kind == INK__Y_SEQ ? n->n : 1;
    if (n->kind == INK__Y_MAP) {
        ink__diag_add(d, n->line, n->col, "%s: expected a number or a list of numbers, got a map",
                      path);
        return false;
    }
    if (check_len && (p->len_min || p->len_max) &&
        (cnt < p->len_min || (p->len_max && cnt > p->len_max))) {
        if (p->len_max == 0)
            ink__diag_add(d, n->line, n->col, "%s: %d values given, expected at least %d", path,
                          cnt, p->len_min);
        else if (p->len_min == p->len_max)
            ink__diag_add(d, n->line, n->col, "%s: %d values given, expected %d", path, cnt,
                          p->len_min);
        else
            ink__diag_add(d, n->line, n->col, "%s: %d values given, expected %d to %d", path, cnt,
                          p->len_min, p->len_max);
        return false;
    }
    if (!check_len && cnt == 0) {
        ink__diag_add(d, n->line, n->col, "%s: empty list", path);
        return false;
    }
    double *v = calloc((size_t)(cnt ? cnt : 1), sizeof *v);
    if (!v) {
        ink__diag_add(d, n->line, n->col, "%s: out of memory", path);
        return false;
    }
    bool ok = true;
    for (int i = 0; i < cnt; i++) {
        const struct ink__ynode *e = n->kind == INK__Y_SEQ ? n->v[i] : n;
        char ep[600];
        snprintf(ep, sizeof ep, "%s[%d]", path, i);
        if (n->kind == INK__Y_SEQ)
            ok &= parse_number(d, ep, p, e, &v[i]);
        else
            ok &= parse_number(d, path, p, e, &v[i]);
    }
    if (!ok) {
        free(v);
        return false;
    }
    out->v = v;
    out->n = cnt;
    return true;
}

static void free_value(const struct ink_param *p, void *field)
{
    switch (p->type) {
    case INK_P_STRING: {
        char **s = field;
        free(*s);
        *s = NULL;
        break;
    }
    case INK_P_F64_LIST: {
        struct ink_f64_list *l = field;
        free(l->v);
        l->v = NULL;
        l->n = 0;
        break;
    }
    case INK_P_F64_LISTS: {
        struct ink_f64_lists *l = field;
        for (int i = 0; i < l->n; i++) free(l->v[i].v);
        free(l->v);
        l->v = NULL;
        l->n = 0;
        break;
    }
    case INK_P_OBJECT:
        ink_params_free(p->sub, field);
        break;
    case INK_P_FIELDS:
        ink_fields_conf_free(field);
        break;
    case INK_P_STRINGS: {
        struct ink_str_list *l = field;
        for (int i = 0; i < l->n; i++) free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = 0;
        break;
    }
    default:
        break;
    }
}

#define MAX_LIST_NUMBERS (1 << 22)

static bool parse_lists(struct ink_diags *d, const char *path, const struct ink_param *p,
                        const struct ink__ynode *n, struct ink_f64_lists *out)
{
    if (n->kind != INK__Y_SEQ) {
        ink__diag_add(d, n->line, n->col, "%s: expected a list of lists of numbers, got %s", path,
                      kind_name(n));
        return false;
    }
    if ((p->len_min || p->len_max) && (n->n < p->len_min || (p->len_max && n->n > p->len_max))) {
        ink__diag_add(d, n->line, n->col, "%s: %d lists given, expected %d to %d", path, n->n,
                      p->len_min, p->len_max ? p->len_max : INT32_MAX);
        return false;
    }
    /* aliases can repeat one long list many times: bound the total */
    long total = 0;
    for (int i = 0; i < n->n; i++) total += n->v[i]->kind == INK__Y_SEQ ? n->v[i]->n : 1;
    if (total > MAX_LIST_NUMBERS) {
        ink__diag_add(d, n->line, n->col, "%s: %ld numbers in all, more than %d", path, total,
                      MAX_LIST_NUMBERS);
        return false;
    }
    struct ink_f64_lists l = {calloc(n->n > 0 ? (size_t)n->n : 1, sizeof *l.v), 0};
    if (!l.v) return false;
    bool ok = true;
    for (int i = 0; i < n->n; i++) {
        char ep[600];
        snprintf(ep, sizeof ep, "%s[%d]", path, i);
        if (parse_list(d, ep, p, n->v[i], &l.v[l.n], false))
            l.n++;
        else
            ok = false;
    }
    if (!ok) {
        free_value(p, &l);
        return false;
    }
    *out = l;
    return true;
}

static bool parse_enum(struct ink_diags *d, const char *path, const struct ink_param *p,
                       const struct ink__ynode *n, int *out)
{
    if (!want_scalar(d, path, n, "one of its choices")) return false;
    int nc = 0;
    for (; p->choices[nc]; nc++)
        if (!strcmp(p->choices[nc], n->s)) {
            *out = nc;
            return true;
        }
    const char *s = ink__suggest(n->s, p->choices, nc);
    if (s) {
        ink__diag_add(d, n->line, n->col, "%s: unknown value '%s' (did you mean '%s'?)", path, n->s,
                      s);
        return false;
    }
    char list[400] = "";
    size_t off = 0;
    for (int i = 0; i < nc && off < sizeof list; i++)
        off +=
            (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", p->choices[i]);
    ink__diag_add(d, n->line, n->col, "%s: unknown value '%s' (expected one of: %s)", path, n->s,
                  list);
    return false;
}

static bool parse_value(struct ink_diags *d, const char *path, const struct ink_param *p,
                        const struct ink__ynode *n, void *field)
{
    double x;
    switch (p->type) {
    case INK_P_BOOL: {
        if (!want_scalar(d, path, n, "true or false")) return false;
        const char *s = n->s;
        int v = -1;
        if (n->plain && (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))) v = 1;
        if (n->plain && (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))) v = 0;
        if (v < 0) {
            ink__diag_add(d, n->line, n->col, "%s: expected true or false, got %s'%s'", path,
                          n->plain ? "" : "the quoted string ", s);
            return false;
        }
        if (p->flags & INK_PF_I64)
            *(int64_t *)field = v;
        else
            *(bool *)field = v;
        return true;
    }
    case INK_P_INT: {
        int64_t v;
        if (!want_scalar(d, path, n, "an integer")) return false;
        if (!n->plain || !text_int(n->s, &v)) {
            ink__diag_add(d, n->line, n->col, "%s: expected an integer, got %s'%s'", path,
                          n->plain ? "" : "the quoted string ", n->s);
            return false;
        }
        if (!range_ok(p, (double)v)) {
            range_error(d, path, p, n);
            return false;
        }
        *(int64_t *)field = v;
        return true;
    }
    case INK_P_DOUBLE:
        if (!parse_number(d, path, p, n, &x)) return false;
        *(double *)field = x;
        return true;
    case INK_P_STRING: {
        if (!want_scalar(d, path, n, "a string")) return false;
        char *s = strdup(n->s);
        if (!s) return false;
        free(*(char **)field);
        *(char **)field = s;
        return true;
    }
    case INK_P_ENUM:
        return parse_enum(d, path, p, n, (int *)field);
    case INK_P_SIZE:
    case INK_P_DURATION: {
        bool size = p->type == INK_P_SIZE;
        if (!want_scalar(d, path, n, size ? "a size" : "a duration")) return false;
        if (!text_units(n->s, size ? size_units : duration_units, !size, &x) || !isfinite(x)) {
            ink__diag_add(d, n->line, n->col,
                          size ? "%s: '%s' is not a size (expected bytes, or a number with B, "
                                 "KiB, MiB, GiB, TiB, KB, MB, GB, TB; e.g. 64KiB)"
                               : "%s: '%s' is not a duration (expected seconds, or numbers with "
                                 "ns, us, ms, s, m, h; e.g. 500ms, 1m30s)",
                          path, n->s);
            return false;
        }
        if (size && (x < 0 || x >= 18446744073709551616.0)) {
            ink__diag_add(d, n->line, n->col, "%s: %s is not a byte count in [0, 2^64)", path,
                          n->s);
            return false;
        }
        if (!range_ok(p, size ? floor(x) : x)) {
            range_error(d, path, p, n);
            return false;
        }
        if (size)
            *(uint64_t *)field = (uint64_t)x;
        else
            *(double *)field = x;
        return true;
    }
    case INK_P_F64_LIST: {
        struct ink_f64_list l;
        if (!parse_list(d, path, p, n, &l, true)) return false;
        free_value(p, field);
        *(struct ink_f64_list *)field = l;
        return true;
    }
    case INK_P_F64_LISTS: {
        struct ink_f64_lists l;
        if (!parse_lists(d, path, p, n, &l)) return false;
        free_value(p, field);
        *(struct ink_f64_lists *)field = l;
        return true;
    }
    case INK_P_FIELDS:
        return ink__fields_parse(d, path, n, field);
    case INK_P_STRINGS: {
        int cnt = n->kind == INK__Y_SEQ ? n->n : 1;
        if (n->kind == INK__Y_MAP) {
            ink__diag_add(d, n->line, n->col, "%s: expected a string or a list of strings, got a map",
                          path);
            return false;
        }
        if ((p->len_min || p->len_max) && (cnt < p->len_min || (p->len_max && cnt > p->len_max))) {
            ink__diag_add(d, n->line, n->col, "%s: %d strings given, expected %d to %d", path, cnt,
                          p->len_min, p->len_max ? p->len_max : INT32_MAX);
            return false;
        }
        struct ink_str_list l = {calloc(cnt > 0 ? (size_t)cnt : 1, sizeof(char *)), 0};
        if (!l.v) return false;
        bool ok = true;
        for (int i = 0; i < cnt && ok; i++) {
            const struct ink__ynode *e = n->kind == INK__Y_SEQ ? n->v[i] : n;
            char ep[700];
            snprintf(ep, sizeof ep, "%s[%d]", path, i);
            ok = want_scalar(d, n->kind == INK__Y_SEQ ? ep : path, e, "a string") &&
                 (l.v[l.n] = strdup(e->s)) != NULL;
            if (ok) l.n++;
        }
        if (!ok) {
            free_value(p, &l);
            return false;
        }
        free_value(p, field);
        *(struct ink_str_list *)field = l;
        return true;
    }
    case INK_P_OBJECT: {
        if (n->kind != INK__Y_MAP) {
            ink__diag_add(d, n->line, n->col, "%s: expected a map of keys, got %s", path,
                          kind_name(n));
            return false;
        }
        struct ink__ptab tab = {p->sub, field};
        int errs = ink__params_parse_map(d, path, n, &tab, 1, NULL, n->line, n->col);
        *(bool *)field = true;
        return errs == 0;
    }
    }
    return false;
}

static int table_len(const struct ink_param *t)
{
    int n = 0;
    while (t && t[n].name) n++;
    return n;
}

static void unknown_key(struct ink_diags *d, const char *path, const struct ink__ynode *k,
                        const struct ink__ptab *tabs, int ntabs, const char *const *reserved)
{
    const char *cands[256];
    int nc = 0;
    for (int t = 0; t < ntabs; t++)
        for (int i = 0; tabs[t].params && tabs[t].params[i].name && nc < 256; i++)
            cands[nc++] = tabs[t].params[i].name;
    for (int i = 0; reserved && reserved[i] && nc < 256; i++) cands[nc++] = reserved[i];
    const char *s = ink__suggest(k->s, cands, nc);
    const char *sep = *path ? "." : "";
    if (s) {
        ink__diag_add(d, k->line, k->col, "%s%s%s: unknown key (did you mean '%s'?)", path, sep,
                      k->s, s);
        return;
    }
    char list[400] = "";
    size_t off = 0;
    for (int i = 0; i < nc && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? ", " : "", cands[i]);
    if (nc == 0) snprintf(list, sizeof list, "none");
    ink__diag_add(d, k->line, k->col, "%s%s%s: unknown key (valid keys: %s)", path, sep, k->s,
                  list);
}

int ink__params_parse_map(struct ink_diags *d, const char *path, const struct ink__ynode *map,
                          const struct ink__ptab *tabs, int ntabs, const char *const *reserved,
                          int line, int col)
{
    int n0 = d->n;
    int total = 0;
    for (int t = 0; t < ntabs; t++) total += table_len(tabs[t].params);
    bool *given = calloc((size_t)total + 1, 1);
    if (!given) {
        ink__diag_add(d, line, col, "%s: out of memory", path);
        return 1;
    }
    for (int i = 0; i + 1 < map->n; i += 2) {
        const struct ink__ynode *k = map->v[i], *v = map->v[i + 1];
        if (k->kind != INK__Y_SCALAR) continue; /* reported by the tree builder */
        bool res = false;
        for (int r = 0; reserved && reserved[r]; r++) res |= !strcmp(reserved[r], k->s);
        if (res) continue;
        /* A key may be declared by more than one table (an operator that
         * repeats an engine-level key such as `seed`): every table that
         * declares it gets the value, and errors are reported once. */
        char kp[600];
        snprintf(kp, sizeof kp, "%s%s%s", path, *path ? "." : "", k->s);
        int found = 0, base = 0;
        for (int t = 0; t < ntabs; t++) {
            for (int j = 0; tabs[t].params && tabs[t].params[j].name; j++) {
                const struct ink_param *p = &tabs[t].params[j];
                if (strcmp(p->name, k->s)) continue;
                if (found++ == 0 && ink__ynull(v)) break; /* null = the default */
                if (ink__ynull(v)) continue;
                given[base + j] = true;
                struct ink_diags quiet = {0};
                parse_value(found == 1 ? d : &quiet, kp, p, v, (char *)tabs[t].conf + p->offset);
                ink_diags_free(&quiet);
            }
            base += table_len(tabs[t].params);
        }
        if (!found) unknown_key(d, path, k, tabs, ntabs, reserved);
    }
    int base = 0;
    for (int t = 0; t < ntabs; t++) {
        for (int j = 0; tabs[t].params && tabs[t].params[j].name; j++) {
            const struct ink_param *p = &tabs[t].params[j];
            if ((p->flags & INK_PF_REQUIRED) && !given[base + j])
                ink__diag_add(d, line, col, "%s: missing required key '%s' (%s)", path, p->name,
                              p->help ? p->help : p->name);
        }
        base += table_len(tabs[t].params);
    }
    free(given);
    return d->n - n0;
}

/* ------------------------------------------------------------------ */
/* Defaults and release                                                */

/* A default written as one plain word needs no YAML parser. */
static bool simple_default(const char *s)
{
    if (!*s || strpbrk(s, "[]{}\"'#:,&*!|>%@`") || isspace((unsigned char)*s)) return false;
    return !isspace((unsigned char)s[strlen(s) - 1]);
}

static int apply_default(const struct ink_param *p, void *field, struct ink_err *err)
{
    struct ink_diags d = {0};
    struct ink__ytree t = {0};
    struct ink__ynode tmp = {.kind = INK__Y_SCALAR, .line = 1, .col = 1, .plain = true};
    const struct ink__ynode *n = &tmp;
    if (simple_default(p->def)) {
        tmp.s = (char *)p->def;
        tmp.len = strlen(p->def);
    } else {
        ink__ytree_parse(p->def, strlen(p->def), &t, &d);
        n = t.root;
    }
    if (!d.n && n && !ink__ynull(n)) parse_value(&d, p->name, p, n, field);
    int rc = 0;
    if (d.n || !n) {
        rc = ink_err_set(err, INK_EINVAL, "default of '%s' (%s): %s", p->name, p->def,
                         d.n ? d.v[0].msg : "empty");
    }
    if (p->type == INK_P_OBJECT) *(bool *)field = false; /* set = given in the config */
    ink__ytree_free(&t);
    ink_diags_free(&d);
    return rc;
}

int ink_params_defaults(const struct ink_param *table, void *conf, struct ink_err *err)
{
    for (int i = 0; table && table[i].name; i++) {
        const struct ink_param *p = &table[i];
        void *field = (char *)conf + p->offset;
        if (p->type == INK_P_OBJECT) {
            int rc = ink_params_defaults(p->sub, field, err);
            if (rc) return rc;
            *(bool *)field = false;
        }
        if (!p->def) continue;
        int rc = apply_default(p, field, err);
        if (rc) return rc;
    }
    return 0;
}

void ink_params_free(const struct ink_param *table, void *conf)
{
    if (!conf) return;
    for (int i = 0; table && table[i].name; i++)
        free_value(&table[i], (char *)conf + table[i].offset);
}

/* ------------------------------------------------------------------ */
/* Help and reference                                                  */

static const char *type_name(const struct ink_param *p)
{
    switch (p->type) {
    case INK_P_BOOL:
        return "bool";
    case INK_P_INT:
        return "int";
    case INK_P_DOUBLE:
        return "number";
    case INK_P_STRING:
        return "string";
    case INK_P_ENUM:
        return "enum";
    case INK_P_SIZE:
        return "size";
    case INK_P_DURATION:
        return "duration";
    case INK_P_F64_LIST:
        return "numbers";
    case INK_P_F64_LISTS:
        return "lists";
    case INK_P_OBJECT:
        return "object";
    case INK_P_FIELDS:
        return "fields";
    case INK_P_STRINGS:
        return "strings";
    }
    return "?";
}

/* Range, choices or list length, as one short string. */
static void constraint(char *buf, size_t n, const struct ink_param *p)
{
    buf[0] = 0;
    size_t off = 0;
    if (p->type == INK_P_ENUM && p->choices) {
        for (int i = 0; p->choices[i] && off < n; i++)
            off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? "|" : "", p->choices[i]);
        return;
    }
    bool numeric = p->type == INK_P_INT || p->type == INK_P_DOUBLE || p->type == INK_P_SIZE ||
                   p->type == INK_P_DURATION || p->type == INK_P_F64_LIST ||
                   p->type == INK_P_F64_LISTS;
    if (numeric && !unbounded(p)) {
        char r[160];
        fmt_range(r, sizeof r, p);
        off += (size_t)snprintf(buf, n, "%s", r);
    }
    if ((p->type == INK_P_F64_LIST || p->type == INK_P_F64_LISTS) && (p->len_min || p->len_max) &&
        off < n) {
        if (p->len_max)
            snprintf(buf + off, n - off, "%slength %d..%d", off ? "; " : "", p->len_min,
                     p->len_max);
        else
            snprintf(buf + off, n - off, "%slength >= %d", off ? "; " : "", p->len_min);
    }
}

static const char *def_text(const struct ink_param *p)
{
    if (p->flags & INK_PF_REQUIRED) return "(required)";
    if (!p->def) return "-";
    return p->def;
}

static void help_rows(const struct ink_param *t, int indent, FILE *out)
{
    for (int i = 0; t && t[i].name; i++) {
        const struct ink_param *p = &t[i];
        char c[400];
        constraint(c, sizeof c, p);
        fprintf(out, "  %*s%-*s %-9s %-14s %-22s %s\n", indent, "", 20 - indent, p->name,
                type_name(p), def_text(p), c, p->help ? p->help : "");
        if (p->type == INK_P_OBJECT) help_rows(p->sub, indent + 2, out);
    }
}

static void help_header(FILE *out)
{
    fprintf(out, "  %-20s %-9s %-14s %-22s %s\n", "KEY", "TYPE", "DEFAULT", "RANGE", "DESCRIPTION");
}

static const char *kind_word(enum ink_node_kind k)
{
    return k == INK_NODE_SOURCE ? "source" : k == INK_NODE_SINK ? "sink" : "operator";
}

/* Keys the loader itself handles for every node of a kind (not in a table). */
struct skey {
    const char *name, *type, *def, *help;
};

static const struct skey *structural_keys(enum ink_node_kind k)
{
    static const struct skey src[] = {
        {"type", "string", "(required)", NULL}, /* the registered types */
        {"dead_letter", "string", "-", "sink that receives records that fail decoding"},
        {0}};
    static const struct skey op[] = {
        {"type", "string", "(required)", "the operator type"},
        {"inputs", "names", "(required)",
         "sources/operators this node reads from (a list, or one name)"},
        {0}};
    static const struct skey snk[] = {
        {"type", "string", "(required)", NULL},
        {"inputs", "names", "(required)",
         "sources/operators this sink writes (a list, or one name); may be left out when the "
         "sink is only a dead_letter"},
        {0}};
    return k == INK_NODE_SOURCE ? src : k == INK_NODE_SINK ? snk : op;
}

void ink_params_help(const struct ink_node_type *nt, FILE *out)
{
    if (nt->params == ink_engine_params) {
        /* the engine section, wrapped in a node type by `inkflow help engine` */
        fprintf(out, "engine: %s\n\n", nt->summary ? nt->summary : "");
        help_header(out);
        help_rows(nt->params, 0, out);
        return;
    }
    fprintf(out, "%s (%s): %s\n\n", nt->name, kind_word(nt->kind), nt->summary ? nt->summary : "");
    help_header(out);
    for (const struct skey *k = structural_keys(nt->kind); k->name; k++) {
        char types[400];
        const char *help = k->help;
        if (!help) { /* `type` of a source or sink: the types of the registry */
            const struct ink_node_type *const *v =
                nt->kind == INK_NODE_SOURCE ? ink_source_types : ink_sink_types;
            size_t off =
                (size_t)snprintf(types, sizeof types, "the %s type (", kind_word(nt->kind));
            for (int i = 0; v[i] && off < sizeof types; i++)
                off += (size_t)snprintf(types + off, sizeof types - off, "%s%s", i ? ", " : "",
                                        v[i]->name);
            if (off < sizeof types) snprintf(types + off, sizeof types - off, ")");
            help = types;
        }
        fprintf(out, "  %-20s %-9s %-14s %-22s %s\n", k->name, k->type, k->def, "", help);
    }
    help_rows(nt->params, 0, out);
    if (nt->kind == INK_NODE_OPERATOR) {
        fprintf(out, "\n  Keys every operator accepts:\n");
        for (int i = 0; ink_op_common_params[i].name; i++) {
            /* a key the operator repeats is shown once, above */
            bool own = false;
            for (int j = 0; nt->params && nt->params[j].name; j++)
                own |= !strcmp(nt->params[j].name, ink_op_common_params[i].name);
            struct ink_param one[2] = {ink_op_common_params[i], {0}};
            if (!own) help_rows(one, 0, out);
        }
    }
}

static void list_kind(const char *title, const struct ink_node_type *const *types, FILE *out)
{
    fprintf(out, "%s:\n", title);
    for (int i = 0; types[i]; i++)
        fprintf(out, "  %-14s %s\n", types[i]->name, types[i]->summary ? types[i]->summary : "");
}

void ink_params_help_list(FILE *out)
{
    fprintf(out, "Usage: inkflow help TYPE   (keys of a source, operator or sink type)\n\n");
    list_kind("sources", ink_source_types, out);
    fprintf(out, "operators:\n");
    for (int i = 0; ink_operators[i]; i++)
        fprintf(out, "  %-14s %s\n", ink_operators[i]->name,
                ink_operators[i]->summary ? ink_operators[i]->summary : "");
    list_kind("sinks", ink_sink_types, out);
    fprintf(out, "\nengine: (all optional)\n");
    help_header(out);
    help_rows(ink_engine_params, 0, out);
}

/* Markdown escapes for table cells: '|' would end the cell. */
static void md_cell(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else
            fputc(*s, out);
    }
}

static void md_rows(const struct ink_param *t, const char *prefix, FILE *out)
{
    for (int i = 0; t && t[i].name; i++) {
        const struct ink_param *p = &t[i];
        char c[400], name[200];
        constraint(c, sizeof c, p);
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        fprintf(out, "| `%s` | %s | ", name, type_name(p));
        if (p->flags & INK_PF_REQUIRED)
            fputs("required", out);
        else if (p->def) {
            fputc('`', out);
            md_cell(out, p->def);
            fputc('`', out);
        }
        fputs(" | ", out);
        md_cell(out, c);
        fputs(" | ", out);
        md_cell(out, p->help);
        fputs(" |\n", out);
        if (p->type == INK_P_OBJECT) {
            char sub[220];
            snprintf(sub, sizeof sub, "%s.", name);
            md_rows(p->sub, sub, out);
        }
    }
}

static void md_table(const struct ink_param *t, FILE *out)
{
    fputs("| key | type | default | range | description |\n| --- | --- | --- | --- | --- |\n", out);
    md_rows(t, "", out);
}

static void md_type(const struct ink_node_type *nt, FILE *out)
{
    fprintf(out, "### `%s`\n\n%s.\n\n", nt->name, nt->summary ? nt->summary : "");
    if (table_len(nt->params))
        md_table(nt->params, out);
    else
        fputs("No keys of its own.\n", out);
    fputc('\n', out);
}

void ink_params_markdown(FILE *out)
{
    fputs("# Configuration reference\n\n"
          "<!-- Generated by `inkflow help --markdown` from the parameter tables; do not edit. "
          "-->\n\n"
          "A config is one YAML file with four top-level keys: `engine` (optional), `sources`, "
          "`operators` and `sinks`, each a map from node name to the node's keys. Node names are "
          "unique across the three sections and use letters, digits, `_`, `-` and `.`. "
          "Every node has a `type`; operators and sinks have `inputs` (a list of source or "
          "operator names, or one name). A key set to `null` (or `~`, or left empty) takes its "
          "default.\n\n"
          "Value types:\n\n"
          "- **int**: a plain integer (`10`, `0x1f`, or an integral number such as `1e6`).\n"
          "- **number**: a finite plain number (`.inf` and `.nan` are refused).\n"
          "- **size**: bytes, either a plain integer or a number with a unit: `B`; `KiB`, "
          "`MiB`, `GiB`, `TiB` and the one-letter `K`, `M`, `G`, `T` are powers of 1024; "
          "`KB`, `MB`, `GB`, `TB` are powers of 1000. Units are case-insensitive; fractions "
          "round down to whole bytes (`1.5KiB` = 1536).\n"
          "- **duration**: seconds, either a plain number or numbers with units `ns`, `us`, "
          "`ms`, `s`, `m`, `h`, summed when chained (`1m30s` = 90). Units are lower-case.\n"
          "- **numbers**: a list of numbers; one number is a list of one.\n"
          "- **lists**: a list of lists of numbers.\n"
          "- **enum**: one of the listed words.\n"
          "- **object**: a nested map with its own keys.\n\n"
          "Numbers written in quotes are strings and are refused where a number is expected.\n\n"
          "`inkflow validate FILE` prints every problem as `FILE:LINE:COL: error: message` and "
          "exits 2.\n\n",
          out);
    fputs("## `engine`\n\n", out);
    md_table(ink_engine_params, out);
    fputs("\n## Sources\n\nEvery source also accepts `dead_letter` (the name of a sink that "
          "receives records that fail decoding). Sources have no `inputs`.\n\n",
          out);
    for (int i = 0; ink_source_types[i]; i++) md_type(ink_source_types[i], out);
    fputs("## Operators\n\nEvery operator has `inputs` and also accepts these keys:\n\n", out);
    md_table(ink_op_common_params, out);
    fputc('\n', out);
    for (int i = 0; ink_operators[i]; i++) md_type(&ink_operators[i]->type, out);
    fputs("## Sinks\n\nEvery sink has `inputs`.\n\n", out);
    for (int i = 0; ink_sink_types[i]; i++) md_type(ink_sink_types[i], out);
}
