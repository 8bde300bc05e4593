/* Param tables: parsing a YAML value of each INK_P_* type against its
 * entry (range checks, units), defaults and release. The YAML tree is
 * yaml.c, `inkflow help` and the config reference help.c.
 * Units (documented in docs/config-reference.md):
 *   size:     B; KiB MiB GiB TiB and the one-letter K M G T are binary (1024);
 *             KB MB GB TB are decimal (1000); case-insensitive; a plain
 *             integer is bytes; fractions are rounded down to whole bytes.
 *   duration: ns us ms s m h, summed when chained ("1m30s"); a plain number
 *             is seconds. */
#define _GNU_SOURCE /* memmem, qsort_r */
#include "config_impl.h"
#include "fields.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <libfyaml.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
void ink__param_range(char *buf, size_t n, const struct ink_param *p)
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
    ink__param_range(r, sizeof r, p);
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
    case INK_P_STRING:
    case INK_P_JSON: {
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
        struct ink_strings *l = field;
        for (int i = 0; i < l->n; i++) free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = 0;
        break;
    }
    case INK_P_STRMAP: {
        struct ink_strmap *m = field;
        for (int i = 0; i < m->n; i++) {
            free(m->key[i]);
            free(m->val[i]);
        }
        free(m->key);
        free(m->val);
        m->key = m->val = NULL;
        m->n = 0;
        break;
    }
    default:
        break;
    }
}

/* A list of strings (a scalar is a list of one). */
static bool parse_strings(struct ink_diags *d, const char *path, const struct ink_param *p,
                          const struct ink__ynode *n, struct ink_strings *out)
{
    if (n->kind == INK__Y_MAP) {
        ink__diag_add(d, n->line, n->col, "%s: expected a string or a list of strings, got a map",
                      path);
        return false;
    }
    int cnt = n->kind == INK__Y_SEQ ? n->n : 1;
    if ((p->len_min || p->len_max) && (cnt < p->len_min || (p->len_max && cnt > p->len_max))) {
        ink__diag_add(d, n->line, n->col, "%s: %d strings given, expected %d to %d", path, cnt,
                      p->len_min, p->len_max ? p->len_max : INT32_MAX);
        return false;
    }
    struct ink_strings l = {calloc((size_t)(cnt ? cnt : 1), sizeof(char *)), 0};
    if (!l.v) return false;
    bool ok = true;
    for (int i = 0; i < cnt && ok; i++) {
        const struct ink__ynode *e = n->kind == INK__Y_SEQ ? n->v[i] : n;
        char ep[600];
        snprintf(ep, sizeof ep, "%s[%d]", path, i);
        ok = want_scalar(d, n->kind == INK__Y_SEQ ? ep : path, e, "a string") &&
             (l.v[l.n] = strdup(e->s)) != NULL;
        if (ok) l.n++;
    }
    if (!ok) {
        free_value(p, &l);
        return false;
    }
    *out = l;
    return true;
}

/* A map of names to scalars, as written (no type conversion). */
static bool parse_strmap(struct ink_diags *d, const char *path, const struct ink_param *p,
                         const struct ink__ynode *n, struct ink_strmap *out)
{
    if (n->kind != INK__Y_MAP) {
        ink__diag_add(d, n->line, n->col, "%s: expected a map of names to values, got %s", path,
                      kind_name(n));
        return false;
    }
    int cnt = n->n / 2;
    struct ink_strmap m = {calloc((size_t)(cnt ? cnt : 1), sizeof(char *)),
                           calloc((size_t)(cnt ? cnt : 1), sizeof(char *)), 0};
    bool ok = m.key && m.val;
    for (int i = 0; i < cnt && ok; i++) {
        const struct ink__ynode *k = n->v[2 * i], *v = n->v[2 * i + 1];
        char ep[600];
        snprintf(ep, sizeof ep, "%s.%s", path, k->s ? k->s : "?");
        ok = want_scalar(d, path, k, "a name") && want_scalar(d, ep, v, "a scalar value");
        if (ok) {
            m.key[m.n] = strdup(k->s);
            m.val[m.n] = strdup(v->s);
            ok = m.key[m.n] && m.val[m.n];
            m.n++; /* free_value releases what was copied, also on failure */
        }
    }
    if (!ok) {
        free_value(p, &m);
        return false;
    }
    *out = m;
    return true;
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

/* INK_P_JSON: the YAML subtree as JSON text. */
struct jbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void jput(struct jbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + n;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void jstr(struct jbuf *b, const char *s, size_t n)
{
    jput(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\', e[1] = (char)c;
            jput(b, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            jput(b, e, 6);
        } else {
            jput(b, (const char *)&s[i], 1);
        }
    }
    jput(b, "\"", 1);
}

static void yaml_json(struct jbuf *b, const struct ink__ynode *n, int depth)
{
    if (depth > 32) {
        b->oom = true;
        return;
    }
    if (n->kind == INK__Y_MAP || n->kind == INK__Y_SEQ) {
        bool map = n->kind == INK__Y_MAP;
        jput(b, map ? "{" : "[", 1);
        for (int i = 0; i < n->n; i++) {
            if (i) jput(b, map && i % 2 ? ":" : ",", 1);
            if (map && i % 2 == 0)
                jstr(b, n->v[i]->s ? n->v[i]->s : "", n->v[i]->s ? strlen(n->v[i]->s) : 0);
            else
                yaml_json(b, n->v[i], depth + 1);
        }
        jput(b, map ? "}" : "]", 1);
        return;
    }
    double x;
    char *end;
    if (ink__ynull(n)) {
        jput(b, "null", 4);
    } else if (n->plain && (!strcmp(n->s, "true") || !strcmp(n->s, "false"))) {
        jput(b, n->s, strlen(n->s));
    } else if (n->plain && n->s[0] && (x = strtod(n->s, &end), *end == 0) && isfinite(x)) {
        char t[40];
        int k = snprintf(t, sizeof t, "%.17g", x);
        jput(b, t, (size_t)k);
    } else {
        jstr(b, n->s, strlen(n->s));
    }
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
    case INK_P_JSON: {
        struct jbuf b = {0};
        yaml_json(&b, n, 0);
        if (b.oom || !b.p) {
            free(b.p);
            ink__diag_add(d, n->line, n->col, "%s: nested too deep, or out of memory", path);
            return false;
        }
        free(*(char **)field);
        *(char **)field = b.p;
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
    case INK_P_STRINGS: {
        struct ink_strings l;
        if (!parse_strings(d, path, p, n, &l)) return false;
        free_value(p, field);
        *(struct ink_strings *)field = l;
        return true;
    }
    case INK_P_STRMAP: {
        struct ink_strmap m;
        if (!parse_strmap(d, path, p, n, &m)) return false;
        free_value(p, field);
        *(struct ink_strmap *)field = m;
        return true;
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
/* Keys that shape state, as canonical text (restore compatibility)    */

static void jnum(struct jbuf *b, double v)
{
    char t[64];
    fmt_num(t, sizeof t, v);
    jput(b, t, strlen(t));
}

/* Lists of more numbers than this are kept as their first ones, their count
 * and a hash of their bits (an explicit grid may hold millions: formatting
 * them all for every snapshot would cost more than the snapshot). */
#define STATE_LIST_MAX 32

static uint64_t fnv_bits(uint64_t h, const double *v, int n)
{
    for (int i = 0; i < n; i++) {
        double x = v[i] == 0 ? 0 : v[i]; /* -0 is 0 */
        unsigned char c[sizeof x];
        memcpy(c, &x, sizeof x);
        for (size_t k = 0; k < sizeof x; k++) h = (h ^ c[k]) * 1099511628211ull;
    }
    return h;
}

static void jlong(struct jbuf *b, const struct ink_f64_list *ls, int nl)
{
    uint64_t h = 14695981039346656037ull;
    long total = 0;
    for (int i = 0; i < nl; i++) {
        h = fnv_bits(h, ls[i].v, ls[i].n);
        h = (h ^ (uint64_t)ls[i].n) * 1099511628211ull; /* where a list ends */
        total += ls[i].n;
    }
    jput(b, "[", 1);
    for (int i = 0; i < ls[0].n && i < 4; i++) {
        if (i) jput(b, ", ", 2);
        jnum(b, ls[0].v[i]);
    }
    char t[128];
    snprintf(t, sizeof t, ", ...] (%ld numbers in %d list%s, FNV-1a %016llx)", total, nl,
             nl == 1 ? "" : "s", (unsigned long long)h);
    jput(b, t, strlen(t));
}

static void jlist(struct jbuf *b, const struct ink_f64_list *l)
{
    jput(b, "[", 1);
    for (int i = 0; i < l->n; i++) {
        if (i) jput(b, ", ", 2);
        jnum(b, l->v[i]);
    }
    jput(b, "]", 1);
}

/* A JSON value with its object keys sorted: equal values, equal text. */
static void jjson(struct jbuf *b, const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    char *s = j ? json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    jput(b, s ? s : text, strlen(s ? s : text));
    free(s);
    json_decref(j);
}

/* The value of one key as text into b; false: not set (a NULL string). */
static bool value_text(struct jbuf *b, const struct ink_param *p, const void *field)
{
    char t[64];
    switch (p->type) {
    case INK_P_BOOL: {
        bool v = p->flags & INK_PF_I64 ? *(const int64_t *)field != 0 : *(const bool *)field;
        jput(b, v ? "true" : "false", v ? 4 : 5);
        return true;
    }
    case INK_P_INT:
        snprintf(t, sizeof t, "%lld", (long long)*(const int64_t *)field);
        jput(b, t, strlen(t));
        return true;
    case INK_P_DOUBLE:
        jnum(b, *(const double *)field);
        return true;
    case INK_P_ENUM: {
        int v = *(const int *)field, nc = 0;
        while (p->choices[nc]) nc++;
        if (v >= 0 && v < nc) {
            jput(b, p->choices[v], strlen(p->choices[v]));
        } else {
            snprintf(t, sizeof t, "#%d", v);
            jput(b, t, strlen(t));
        }
        return true;
    }
    case INK_P_SIZE: {
        uint64_t v = *(const uint64_t *)field;
        ink__fmt_size(t, sizeof t, v);
        if (strchr(t, '.')) snprintf(t, sizeof t, "%lluB", (unsigned long long)v);
        jput(b, t, strlen(t));
        return true;
    }
    case INK_P_DURATION:
        jnum(b, *(const double *)field);
        jput(b, "s", 1);
        return true;
    case INK_P_F64_LIST: {
        const struct ink_f64_list *l = field;
        if (l->n > STATE_LIST_MAX)
            jlong(b, l, 1);
        else
            jlist(b, l);
        return true;
    }
    case INK_P_F64_LISTS: {
        const struct ink_f64_lists *l = field;
        long total = 0;
        for (int i = 0; i < l->n; i++) total += l->v[i].n;
        if (total > STATE_LIST_MAX && l->n > 0) {
            jlong(b, l->v, l->n);
            return true;
        }
        jput(b, "[", 1);
        for (int i = 0; i < l->n; i++) {
            if (i) jput(b, ", ", 2);
            jlist(b, &l->v[i]);
        }
        jput(b, "]", 1);
        return true;
    }
    case INK_P_STRING: {
        const char *s = *(char *const *)field;
        if (!s) return false;
        jput(b, s, strlen(s));
        return true;
    }
    case INK_P_JSON: {
        const char *s = *(char *const *)field;
        if (!s) return false;
        jjson(b, s);
        return true;
    }
    case INK_P_STRINGS: {
        const struct ink_strings *l = field;
        jput(b, "[", 1);
        for (int i = 0; i < l->n; i++) {
            if (i) jput(b, ", ", 2);
            jput(b, l->v[i], strlen(l->v[i]));
        }
        jput(b, "]", 1);
        return true;
    }
    case INK_P_STRMAP: {
        /* names sorted: the order they were written in means nothing */
        const struct ink_strmap *m = field;
        jput(b, "{", 1);
        const char *last = NULL;
        for (int k = 0; k < m->n; k++) {
            int best = -1;
            for (int i = 0; i < m->n; i++)
                if ((!last || strcmp(m->key[i], last) > 0) &&
                    (best < 0 || strcmp(m->key[i], m->key[best]) < 0))
                    best = i;
            if (best < 0) break;
            if (k) jput(b, ", ", 2);
            jput(b, m->key[best], strlen(m->key[best]));
            jput(b, ": ", 2);
            jput(b, m->val[best], strlen(m->val[best]));
            last = m->key[best];
        }
        jput(b, "}", 1);
        return true;
    }
    case INK_P_FIELDS: /* a source's mapping: never state (the positions are checked) */
    case INK_P_OBJECT: /* walked key by key */
        break;
    }
    jput(b, "?", 1);
    return true;
}

#define STATE_TEXT_MAX 400

static int state_walk(const struct ink_param *table, const void *conf, bool operator,
                      const char * prefix, int (*cb)(void *ctx, const char *name, const char *text),
                      void *ctx)
{
    for (int i = 0; table && table[i].name; i++) {
        const struct ink_param *p = &table[i];
        const void *field = (const char *)conf + p->offset;
        bool state = operator? !(p->flags & INK_PF_FREE) : (p->flags &INK_PF_STATE) != 0;
        char name[256];
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", p->name);
        if (p->type == INK_P_OBJECT) {
            /* a nested table: all of it when the key shapes state, else its
             * own marked keys */
            int rc = state_walk(p->sub, field, operator&& state, name, cb, ctx);
            if (rc) return rc;
            continue;
        }
        if (!state || p->type == INK_P_FIELDS) continue;
        struct jbuf b = {0};
        bool set = value_text(&b, p, field);
        if (b.oom) {
            free(b.p);
            return INK_ENOMEM;
        }
        if (set && b.n > STATE_TEXT_MAX) {
            /* a long string: its head, length and hash stand for it */
            char tail[96];
            uint64_t h = 14695981039346656037ull;
            for (size_t k = 0; k < b.n; k++) h = (h ^ (unsigned char)b.p[k]) * 1099511628211ull;
            snprintf(tail, sizeof tail, " ... (%zu characters, FNV-1a %016llx)", b.n,
                     (unsigned long long)h);
            b.n = 120;
            jput(&b, tail, strlen(tail));
        }
        int rc = b.oom ? INK_ENOMEM : cb(ctx, name, set ? (b.p ? b.p : "") : NULL);
        free(b.p);
        if (rc) return rc;
    }
    return 0;
}

int ink_params_state(const struct ink_param *table, const void *conf, bool operator,
                     int (*cb)(void *ctx, const char *name, const char *text), void *ctx)
{
    return state_walk(table, conf, operator, "", cb, ctx);
}
