/* `fields:` (docs/fields.md): the compiled mapping, and the conversion of
 * each mapped value into the record. The lookups by name are the
 * decoders' (one per format); everything they have in common is here, so
 * a field is converted, checked and named in its errors the same way
 * whatever the format or the transport. */
#include "fields.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const ink_tfmt_names[] = {"auto", "unix_s", "unix_ms", "unix_ns", "rfc3339", NULL};

void ink_fields_conf_free(struct ink_fields_conf *c)
{
    for (int i = 0; i < c->nx; i++) free(c->x[i]);
    free(c->x);
    free(c->y);
    free(c->key);
    free(c->t);
    memset(c, 0, sizeof *c);
}

void ink__fmap_free(struct ink_fmap *m)
{
    if (!m) return;
    free(m->slot);
    free(m->names);
    free(m);
}

static enum ink_reject frej(struct ink_decoder *d, enum ink_reject r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum ink_reject frej(struct ink_decoder *d, enum ink_reject r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->why, sizeof d->why, fmt, ap);
    va_end(ap);
    return r;
}

/* Split name at its dots into the slot. -1 when a segment is empty or
 * there are too many. */
static int slot_path(struct ink_fslot *s)
{
    const char *p = s->name, *end = s->name + s->name_len;
    s->nseg = 0;
    for (;;) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        const char *e = dot ? dot : end;
        if (e == p || s->nseg == INK_FIELDS_MAX_DEPTH) return -1;
        s->seg[s->nseg] = p;
        s->seg_len[s->nseg++] = (uint32_t)(e - p);
        if (!dot) return 0;
        p = dot + 1;
    }
}

int ink_decoder_set_fields(struct ink_decoder *d, const struct ink_fields_conf *c,
                           struct ink_err *err)
{
    ink__fmap_free(d->fmap);
    d->fmap = NULL;
    d->csv_hdr_id = 0;
    if (!c || !c->set) return 0;
    if (c->nx < 0 || c->nx > INK_FIELDS_MAX_X)
        return ink_err_set(err, INK_EINVAL, "fields.x: at most %d names", INK_FIELDS_MAX_X);
    if ((uint32_t)c->nx > d->lim.max_dim)
        return ink_err_set(err, INK_EINVAL, "fields.x: %d names over engine.max_dim %u", c->nx,
                           d->lim.max_dim);
    const char *names[INK_FIELDS_MAX_X + 3];
    enum ink_fslot_role roles[INK_FIELDS_MAX_X + 3];
    uint32_t ns = 0;
    size_t total = 0;
    for (int i = 0; i < c->nx; i++) roles[ns] = INK_FS_X, names[ns++] = c->x[i];
    if (c->y) roles[ns] = INK_FS_Y, names[ns++] = c->y;
    if (c->key && c->key_topic_level == 0) roles[ns] = INK_FS_KEY, names[ns++] = c->key;
    if (c->t) roles[ns] = INK_FS_T, names[ns++] = c->t;
    for (uint32_t i = 0; i < ns; i++) total += strlen(names[i]) + 1;
    struct ink_fmap *m = calloc(1, sizeof *m);
    if (!m) return ink_err_set(err, INK_ENOMEM, "out of memory");
    m->slot = calloc(ns ? ns : 1, sizeof *m->slot);
    m->names = malloc(total ? total : 1);
    if (!m->slot || !m->names) {
        ink__fmap_free(m);
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    }
    char *o = m->names;
    for (uint32_t i = 0; i < ns; i++) {
        struct ink_fslot *s = &m->slot[i];
        size_t l = strlen(names[i]);
        memcpy(o, names[i], l + 1);
        s->role = roles[i];
        s->xi = roles[i] == INK_FS_X ? i : 0;
        s->name = o;
        s->name_len = (uint32_t)l;
        o += l + 1;
        if (slot_path(s)) {
            ink__fmap_free(m);
            return ink_err_set(err, INK_EINVAL,
                               "fields: '%s' is not a name or a dotted path of at most %d names",
                               names[i], INK_FIELDS_MAX_DEPTH);
        }
    }
    m->nslots = ns;
    m->nx = (uint32_t)c->nx;
    m->key_topic_level = c->key ? 0 : c->key_topic_level;
    m->t_format = c->t_format;
    d->fmap = m;
    return 0;
}

/* ---- per record ---- */

static const char *role_word(const struct ink_fslot *s, char *buf, size_t n)
{
    switch (s->role) {
    case INK_FS_X:
        snprintf(buf, n, "x[%u]", s->xi);
        return buf;
    case INK_FS_Y:
        return "y";
    case INK_FS_KEY:
        return "key";
    default:
        return "t";
    }
}

enum ink_reject ink__fields_begin(struct ink_decoder *d, struct ink_record *rec)
{
    const struct ink_fmap *m = d->fmap;
    memset(rec, 0, offsetof(struct ink_record, fields));
    if (m->nx) rec->x = d->x, rec->dim = m->nx, rec->flags |= INK_HAS_X;
    if (m->key_topic_level == 0) return INK_REJ_NONE;
    if (!d->topic)
        return frej(d, INK_REJ_MISSING, "key: mapped from the topic, and this message has none");
    const char *p = d->topic, *end = d->topic + d->topic_len;
    size_t n = d->topic_len;
    if (m->key_topic_level > 0) {
        for (int lvl = 1; lvl < m->key_topic_level; lvl++) {
            const char *sl = memchr(p, '/', (size_t)(end - p));
            if (!sl)
                return frej(d, INK_REJ_MISSING, "key: topic '%.*s' has no level %d",
                            (int)(d->topic_len < 80 ? d->topic_len : 80), d->topic,
                            m->key_topic_level);
            p = sl + 1;
        }
        const char *sl = memchr(p, '/', (size_t)(end - p));
        n = (size_t)((sl ? sl : end) - p);
    }
    if (n > d->lim.max_str)
        return frej(d, INK_REJ_TOO_BIG, "key: %zu bytes of topic over max_str %u", n,
                    d->lim.max_str);
    memcpy(d->str, p, n); /* the topic is the transport's: the record outlives this call */
    rec->key = d->str;
    rec->key_len = (uint32_t)n;
    rec->flags |= INK_HAS_KEY;
    return INK_REJ_NONE;
}

/* A CSV cell's text as a number. 0, -1 not a number. */
static int text_f64(const char *s, size_t n, double *v)
{
    char tmp[128], *e;
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (!n || n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    errno = 0;
    *v = strtod(tmp, &e);
    return *e ? -1 : 0;
}

static int text_i64(const char *s, size_t n, int64_t *v)
{
    char tmp[64], *e;
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (!n || n >= sizeof tmp) return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    errno = 0;
    long long x = strtoll(tmp, &e, 10);
    if (*e || errno == ERANGE) return -1;
    *v = x;
    return 0;
}

static const char *kind_word(const struct ink_fval *v)
{
    switch (v->kind) {
    case INK_FV_STR:
        return "a string";
    case INK_FV_TEXT:
        return "text";
    case INK_FV_OTHER:
        return v->what ? v->what : "not a number";
    default:
        return "a number";
    }
}

/* The value as a double, for x, y and numeric times. 0, or a reject. */
static enum ink_reject want_f64(struct ink_decoder *d, const struct ink_fslot *s, const char *role,
                                const struct ink_fval *v, double *out)
{
    switch (v->kind) {
    case INK_FV_F64:
        *out = v->f;
        break;
    case INK_FV_I64:
        *out = (double)v->i;
        break;
    case INK_FV_TEXT:
        if (text_f64(v->s, v->n, out) == 0) break;
        return frej(d, INK_REJ_TYPE, "%s '%s': '%.*s' is not a number", role, s->name,
                    (int)(v->n < 40 ? v->n : 40), v->s);
    default:
        return frej(d, INK_REJ_TYPE, "%s '%s': expected a number, got %s", role, s->name,
                    kind_word(v));
    }
    if (!isfinite(*out)) return frej(d, INK_REJ_NONFINITE, "%s '%s': not finite", role, s->name);
    return INK_REJ_NONE;
}

static enum ink_reject put_time(struct ink_decoder *d, const struct ink_fslot *s,
                                const struct ink_fval *v, struct ink_record *rec)
{
    int fmt = d->fmap->t_format;
    bool text = v->kind == INK_FV_STR || v->kind == INK_FV_TEXT;
    if (fmt == INK_TF_AUTO) {
        /* a CSV cell that reads as a number is one */
        double tmp;
        bool num = v->kind == INK_FV_F64 || v->kind == INK_FV_I64 ||
                   (v->kind == INK_FV_TEXT && text_f64(v->s, v->n, &tmp) == 0);
        fmt = num ? INK_TF_UNIX_S : INK_TF_RFC3339;
    }
    if (fmt == INK_TF_RFC3339) {
        if (!text)
            return frej(d, INK_REJ_TYPE, "t '%s': expected an RFC 3339 date-time, got %s", s->name,
                        kind_word(v));
        if (ink_rfc3339_parse(v->s, v->n, &rec->t))
            return frej(d, INK_REJ_TYPE,
                        "t '%s': '%.*s' is not an RFC 3339 date-time (2026-12-05T10:00:00Z)",
                        s->name, (int)(v->n < 40 ? v->n : 40), v->s);
        rec->flags |= INK_HAS_T;
        return INK_REJ_NONE;
    }
    if (fmt == INK_TF_UNIX_NS) {
        int64_t i;
        if (v->kind == INK_FV_I64)
            i = v->i;
        else if (v->kind == INK_FV_TEXT && text_i64(v->s, v->n, &i) == 0)
            ;
        else
            return frej(d, INK_REJ_TYPE, "t '%s': unix_ns expects an integer, got %s", s->name,
                        kind_word(v));
        rec->t = i;
        rec->flags |= INK_HAS_T;
        return INK_REJ_NONE;
    }
    /* seconds or milliseconds: integers exactly, fractions to the nearest ns */
    int64_t mul = fmt == INK_TF_UNIX_S ? 1000000000 : 1000000;
    int64_t i;
    if (v->kind == INK_FV_I64 || (v->kind == INK_FV_TEXT && text_i64(v->s, v->n, &i) == 0)) {
        if (v->kind == INK_FV_I64) i = v->i;
        if (__builtin_mul_overflow(i, mul, &rec->t))
            return frej(d, INK_REJ_TYPE, "t '%s': %lld is out of range", s->name, (long long)i);
    } else {
        double f;
        enum ink_reject r = want_f64(d, s, "t", v, &f);
        if (r) return r;
        /* whole units and the fraction apart: 1764928800.25 s * 1e9 in one
         * double would be off by up to 256 ns */
        double whole = floor(f);
        if (!(whole * (double)mul > -9.2e18 && whole * (double)mul < 9.2e18))
            return frej(d, INK_REJ_TYPE, "t '%s': %g is out of range", s->name, f);
        rec->t = (int64_t)whole * mul + (int64_t)llround((f - whole) * (double)mul);
    }
    rec->flags |= INK_HAS_T;
    return INK_REJ_NONE;
}

enum ink_reject ink__fields_put(struct ink_decoder *d, uint32_t i, const struct ink_fval *v,
                                struct ink_record *rec)
{
    const struct ink_fslot *s = &d->fmap->slot[i];
    char rb[24];
    const char *role = role_word(s, rb, sizeof rb);
    if (v->kind == INK_FV_MISSING)
        return frej(d, INK_REJ_MISSING, "%s '%s': no such field", role, s->name);
    switch (s->role) {
    case INK_FS_X:
        return want_f64(d, s, role, v, &d->x[s->xi]);
    case INK_FS_Y: {
        enum ink_reject r = want_f64(d, s, role, v, &rec->y);
        if (!r) rec->flags |= INK_HAS_Y;
        return r;
    }
    case INK_FS_KEY: {
        const char *p = v->s;
        size_t n = v->n;
        char num[24];
        if (v->kind == INK_FV_I64) { /* station: 42 -> key "42" */
            n = (size_t)snprintf(num, sizeof num, "%lld", (long long)v->i);
            p = num;
        } else if (v->kind != INK_FV_STR && v->kind != INK_FV_TEXT) {
            return frej(d, INK_REJ_TYPE, "key '%s': expected a string or an integer, got %s",
                        s->name, kind_word(v));
        }
        if (n > d->lim.max_str)
            return frej(d, INK_REJ_TOO_BIG, "key '%s': %zu bytes over max_str %u", s->name, n,
                        d->lim.max_str);
        if (n == 0) return frej(d, INK_REJ_MISSING, "key '%s': empty", s->name);
        memcpy(d->str, p, n);
        rec->key = d->str;
        rec->key_len = (uint32_t)n;
        rec->flags |= INK_HAS_KEY;
        return INK_REJ_NONE;
    }
    default:
        return put_time(d, s, v, rec);
    }
}

/* ---- RFC 3339 ---- */

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int ink_rfc3339_parse(const char *s, size_t n, int64_t *ns)
{
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    int Y, M, D, h, mi, sec;
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        s[13] != ':' || s[16] != ':')
        return -1;
    if (digits(s, 4, &Y) || digits(s + 5, 2, &M) || digits(s + 8, 2, &D) || digits(s + 11, 2, &h) ||
        digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
        return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || (M == 2 && D == 29 && !leap) || h > 23 ||
        mi > 59 || sec > 60)
        return -1;
    size_t p = 19;
    int64_t frac = 0;
    if (p < n && s[p] == '.') {
        p++;
        int nd = 0;
        while (p < n && s[p] >= '0' && s[p] <= '9') {
            if (nd < 9) frac = frac * 10 + (s[p] - '0'), nd++;
            p++;
        }
        if (nd == 0) return -1;
        for (; nd < 9; nd++) frac *= 10;
    }
    if (p >= n) return -1;
    int off = 0;
    if (s[p] == 'Z' || s[p] == 'z') {
        p++;
    } else if (s[p] == '+' || s[p] == '-') {
        int oh, om;
        if (n - p != 6 || s[p + 3] != ':' || digits(s + p + 1, 2, &oh) ||
            digits(s + p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * 60 * (s[p] == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (p != n) return -1;
    if (sec == 60) sec = 59; /* a leap second: POSIX time has none */
    int64_t t = days_from_civil(Y, M, D) * 86400 + h * 3600 + mi * 60 + sec - off;
    if (t < -9223372036LL || t > 9223372035LL) return -1;
    *ns = t * 1000000000 + frac;
    return 0;
}
