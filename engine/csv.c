/* CSV codec (RFC 4180 quoting). A header names the columns: t, key, y, arm
 * are those fields and every other column, in order, is x
 * (docs/design.md#records). Decoding allocates nothing: cells are read in place and
 * numbers are parsed from a small stack copy. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_int.h"
#include "fields.h"

#define rej ink__rej

/* One cell of a line: [p, p+n) raw (still quoted when q). */
struct cell {
    const char *p;
    size_t n;
    bool q;
};

/* Split the next cell off *s (up to end). 1 = a cell, 0 = no more cells,
 * -1 = malformed quoting. A line always has at least one cell. */
static int next_cell(const char **s, const char *end, bool *more, struct cell *c)
{
    const char *p = *s;
    if (!*more) return 0;
    if (p < end && *p == '"') {
        const char *q = p + 1;
        for (;;) {
            if (q >= end) return -1; /* unterminated */
            if (*q == '"') {
                if (q + 1 < end && q[1] == '"') {
                    q += 2;
                    continue;
                }
                break;
            }
            q++;
        }
        c->p = p + 1, c->n = (size_t)(q - p - 1), c->q = true;
        q++;
        if (q < end && *q != ',') return -1; /* text after the closing quote */
        *more = q < end;
        *s = q < end ? q + 1 : q;
        return 1;
    }
    const char *q = memchr(p, ',', (size_t)(end - p));
    if (!q) q = end;
    c->p = p, c->n = (size_t)(q - p), c->q = false;
    *more = q < end;
    *s = q < end ? q + 1 : q;
    return 1;
}

/* The cell's text, unquoted, into dst (cap bytes). Its length, or -1 when
 * it does not fit. */
static long cell_text(const struct cell *c, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (o >= cap) return -1;
        dst[o++] = c->p[i];
        if (c->q && c->p[i] == '"') i++; /* "" -> " */
    }
    return (long)o;
}

/* Strip the line terminator ("\n" or "\r\n"). */
static size_t chomp(const char *line, size_t len)
{
    if (len && line[len - 1] == '\n') len--;
    if (len && line[len - 1] == '\r') len--;
    return len;
}

static void trim(const char **p, size_t *n)
{
    while (*n && (**p == ' ' || **p == '\t')) (*p)++, (*n)--;
    while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t')) (*n)--;
}

int ink_csv_header_parse(struct ink_csv_header *h, const char *line, size_t len,
                         struct ink_err *err)
{
    memset(h, 0, sizeof *h);
    len = chomp(line, len);
    if (len >= 3 && !memcmp(line, "\xef\xbb\xbf", 3)) line += 3, len -= 3; /* UTF-8 BOM */
    if (ink_line_blank(line, len)) return ink_err_set(err, INK_EPARSE, "CSV: empty header row");
    const char *s = line, *end = line + len;
    bool more = true;
    struct cell c;
    uint32_t n = 0;
    int rc;
    while ((rc = next_cell(&s, end, &more, &c)) == 1) n++;
    if (rc < 0) return ink_err_set(err, INK_EPARSE, "CSV header: bad quoting");
    static uint64_t next_id;
    h->role = calloc(n, 1);
    h->name = calloc(n, sizeof *h->name);
    if (!h->role || !h->name) {
        ink_csv_header_fini(h);
        return ink_err_set(err, INK_ENOMEM, "CSV header: out of memory");
    }
    h->ncols = n;
    h->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    static const char *const names[] = {
        [INK_CSV_T] = "t", [INK_CSV_KEY] = "key", [INK_CSV_Y] = "y", [INK_CSV_ARM] = "arm"};
    unsigned seen = 0;
    s = line, more = true;
    for (uint32_t i = 0; next_cell(&s, end, &more, &c) == 1; i++) {
        char *name = malloc(c.n + 1);
        if (!name) {
            ink_csv_header_fini(h);
            return ink_err_set(err, INK_ENOMEM, "CSV header: out of memory");
        }
        long l = cell_text(&c, name, c.n);
        const char *np = name;
        size_t nn = (size_t)l;
        trim(&np, &nn);
        memmove(name, np, nn);
        name[nn] = 0;
        h->name[i] = name;
        np = name;
        enum ink_csv_role role = INK_CSV_X;
        for (int r = INK_CSV_T; r <= INK_CSV_ARM; r++)
            if (strlen(names[r]) == nn && !memcmp(np, names[r], nn)) role = (enum ink_csv_role)r;
        if (role != INK_CSV_X) {
            if (seen & (1u << role)) {
                ink_csv_header_fini(h);
                return ink_err_set(err, INK_EPARSE, "CSV header: column '%s' given twice",
                                   names[role]);
            }
            seen |= 1u << role;
        } else {
            h->dim++;
        }
        h->role[i] = (uint8_t)role;
    }
    return 0;
}

void ink_csv_header_fini(struct ink_csv_header *h)
{
    for (uint32_t i = 0; h->name && i < h->ncols; i++) free(h->name[i]);
    free(h->name);
    h->name = NULL;
    free(h->role);
    h->role = NULL;
    h->ncols = h->dim = 0;
}

/* A cell's text, trimmed and NUL-terminated in tmp: 0 ok, 1 empty,
 * INK_REJ_TYPE when it does not fit. */
static int cell_cstr(const struct cell *c, char *tmp, size_t cap)
{
    long l = cell_text(c, tmp, cap - 1);
    if (l < 0) return INK_REJ_TYPE;
    const char *p = tmp;
    size_t n = (size_t)l;
    trim(&p, &n);
    if (!n) return 1;
    memmove(tmp, p, n);
    tmp[n] = '\0';
    return 0;
}

/* A number cell. 0 ok, 1 empty, INK_REJ_TYPE / INK_REJ_NONFINITE. */
static int cell_f64(const struct cell *c, double *v)
{
    char tmp[128], *e;
    int rc = cell_cstr(c, tmp, sizeof tmp);
    if (rc) return rc;
    *v = strtod(tmp, &e);
    if (*e) return INK_REJ_TYPE;
    return isfinite(*v) ? 0 : INK_REJ_NONFINITE;
}

/* A row where every cell is a number: no column roles, no header (data
 * files read whole at init, e.g. bkb's arm files). */
int ink_csv_numbers(const char *line, size_t len, double *out, int cap)
{
    const char *s = line, *end = line + chomp(line, len);
    bool more = true;
    struct cell c;
    int n = 0, rc;
    while ((rc = next_cell(&s, end, &more, &c)) == 1) {
        double v;
        if (cell_f64(&c, &v)) return -1;
        if (out && n < cap) out[n] = v;
        n++;
    }
    return rc < 0 ? -1 : n;
}

static int cell_i64(const struct cell *c, int64_t *v)
{
    char tmp[64], *e;
    int rc = cell_cstr(c, tmp, sizeof tmp);
    if (rc) return rc;
    errno = 0;
    long long x = strtoll(tmp, &e, 10);
    if (*e || errno == ERANGE) return INK_REJ_TYPE;
    *v = x;
    return 0;
}

static const char *const role_names[] = {"x", "t", "key", "y", "arm"};

static enum ink_reject csv_cell(struct ink_decoder *d, enum ink_csv_role role, const struct cell *c,
                                uint32_t col, uint32_t *xi, struct ink_record *rec)
{
    int rc;
    switch (role) {
    case INK_CSV_X:
        rc = cell_f64(c, &d->x[*xi]);
        if (rc == 1) rc = INK_REJ_TYPE;
        if (rc)
            return rej(d, rc, "column %u (x%u): %s", col + 1, *xi,
                       rc == INK_REJ_NONFINITE ? "not finite" : "not a number");
        (*xi)++;
        return INK_REJ_NONE;
    case INK_CSV_Y:
        rc = cell_f64(c, &rec->y);
        if (rc == 0) rec->flags |= INK_HAS_Y;
        break;
    case INK_CSV_T:
        rc = cell_i64(c, &rec->t);
        if (rc == 0) rec->flags |= INK_HAS_T;
        break;
    case INK_CSV_ARM:
        rc = cell_i64(c, &rec->arm);
        if (rc == 0) rec->flags |= INK_HAS_ARM;
        break;
    case INK_CSV_KEY: {
        long l = cell_text(c, d->str, d->lim.max_str);
        if (l < 0)
            return rej(d, INK_REJ_TOO_BIG, "column %u (key): over max_str %u bytes", col + 1,
                       d->lim.max_str);
        if (l > 0) rec->key = d->str, rec->key_len = (uint32_t)l, rec->flags |= INK_HAS_KEY;
        return INK_REJ_NONE;
    }
    default:
        return INK_REJ_NONE;
    }
    if (rc > 1)
        return rej(d, rc, "column %u (%s): %s", col + 1, role_names[role],
                   rc == INK_REJ_NONFINITE ? "not finite"
                   : role == INK_CSV_Y     ? "not a number"
                                           : "not an integer");
    return INK_REJ_NONE;
}

/* fields: the slot of each column, once per header. */
static enum ink_reject csv_bind(struct ink_decoder *d, const struct ink_csv_header *h)
{
    if (d->csv_hdr_id == h->id && d->csv_slot) return INK_REJ_NONE;
    int32_t *slot = realloc(d->csv_slot, (h->ncols ? h->ncols : 1) * sizeof *slot);
    if (!slot) return rej(d, INK_REJ_TOO_BIG, "fields: out of memory binding the CSV header");
    d->csv_slot = slot;
    d->csv_ncols = h->ncols;
    d->csv_missing = -1;
    for (uint32_t c = 0; c < h->ncols; c++) slot[c] = -1;
    const struct ink_fmap *m = d->fmap;
    for (uint32_t i = 0; i < m->nslots; i++) {
        uint32_t c = 0;
        while (c < h->ncols && strcmp(h->name[c], m->slot[i].name)) c++;
        if (c == h->ncols) {
            if (d->csv_missing < 0) d->csv_missing = (int32_t)i;
            continue;
        }
        slot[c] = (int32_t)i; /* a column mapped twice: the last slot wins, checked below */
    }
    for (uint32_t i = 0; i < m->nslots && d->csv_missing < 0; i++) {
        bool found = false;
        for (uint32_t c = 0; c < h->ncols; c++) found |= slot[c] == (int32_t)i;
        if (!found) d->csv_missing = (int32_t)i;
    }
    d->csv_hdr_id = h->id;
    return INK_REJ_NONE;
}

static enum ink_reject csv_mapped(struct ink_decoder *d, const struct ink_csv_header *h,
                                  const char *line, size_t len, struct ink_record *rec)
{
    enum ink_reject r = csv_bind(d, h);
    if (r) return r;
    const struct ink_fmap *m = d->fmap;
    if (d->csv_missing >= 0) {
        const struct ink_fslot *s = &m->slot[d->csv_missing];
        char cols[96];
        size_t o = 0;
        for (uint32_t c = 0; c < h->ncols && o < sizeof cols - 8; c++)
            o += (size_t)snprintf(cols + o, sizeof cols - o, "%s%s", c ? ", " : "", h->name[c]);
        return rej(d, INK_REJ_MISSING, "'%s': no such column (the header has: %s)", s->name, cols);
    }
    r = ink__fields_begin(d, rec);
    if (r) return r;
    len = chomp(line, len);
    const char *s = line, *end = line + len;
    bool more = true;
    struct cell c;
    uint32_t col = 0;
    int rc;
    char *tmp = d->str + d->lim.max_str; /* the op's half: a mapped record has no op */
    while ((rc = next_cell(&s, end, &more, &c)) == 1) {
        if (col >= h->ncols)
            return rej(d, INK_REJ_DECODE, "more cells than the header's %u", h->ncols);
        int32_t i = d->csv_slot[col++];
        if (i < 0) continue;
        long l = cell_text(&c, tmp, d->lim.max_str);
        if (l < 0)
            return rej(d, INK_REJ_TOO_BIG, "column '%s': over max_str %u bytes", h->name[col - 1],
                       d->lim.max_str);
        const char *p = tmp;
        size_t n = (size_t)l;
        trim(&p, &n);
        if (!n)
            return rej(d, INK_REJ_MISSING, "'%s': empty cell in column %u", d->fmap->slot[i].name,
                       col);
        struct ink_fval fv = {.kind = INK_FV_TEXT, .s = p, .n = n};
        r = ink__fields_put(d, (uint32_t)i, &fv, rec);
        if (r) return r;
    }
    if (rc < 0) return rej(d, INK_REJ_DECODE, "column %u: bad quoting", col + 1);
    if (col != h->ncols)
        return rej(d, INK_REJ_DECODE, "%u cells, the header has %u", col, h->ncols);
    return INK_REJ_NONE;
}

enum ink_reject ink_decode_csv(struct ink_decoder *d, const struct ink_csv_header *h,
                               const char *line, size_t len, struct ink_record *rec)
{
    memset(rec, 0, offsetof(struct ink_record, fields));
    if (len > d->lim.max_frame)
        return rej(d, INK_REJ_TOO_LARGE, "line of %zu bytes over max_frame %u", len,
                   d->lim.max_frame);
    if (d->fmap) return csv_mapped(d, h, line, len, rec);
    if (h->dim > d->lim.max_dim)
        return rej(d, INK_REJ_DIM, "%u x columns over max_dim %u", h->dim, d->lim.max_dim);
    len = chomp(line, len);
    const char *s = line, *end = line + len;
    bool more = true;
    struct cell c;
    uint32_t col = 0, xi = 0;
    int rc;
    while ((rc = next_cell(&s, end, &more, &c)) == 1) {
        if (col >= h->ncols)
            return rej(d, INK_REJ_DECODE, "more cells than the header's %u", h->ncols);
        enum ink_reject r = csv_cell(d, (enum ink_csv_role)h->role[col], &c, col, &xi, rec);
        if (r) return r;
        col++;
    }
    if (rc < 0) return rej(d, INK_REJ_DECODE, "column %u: bad quoting", col + 1);
    if (col != h->ncols)
        return rej(d, INK_REJ_DECODE, "%u cells, the header has %u", col, h->ncols);
    if (h->dim) rec->x = d->x, rec->dim = h->dim, rec->flags |= INK_HAS_X;
    return INK_REJ_NONE;
}

int ink_csv_record_len(const char *buf, size_t len, size_t *rec_len)
{
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '"')
            in = !in; /* "" inside a quoted cell toggles twice */
        else if (buf[i] == '\n' && !in) {
            *rec_len = i + 1;
            return 0;
        }
    }
    return 1;
}

/* ---- writing ---- */

static int csv_string(struct ink_buf *out, const char *s, size_t n)
{
    bool quote = n && (s[0] == ' ' || s[n - 1] == ' ');
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r';
    if (!quote) return ink_buf_append(out, s, n);
    int rc = ink_buf_putc(out, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') rc |= ink_buf_putc(out, '"');
        rc |= ink_buf_putc(out, s[i]);
    }
    return rc | ink_buf_putc(out, '"');
}

static int csv_f64(struct ink_buf *out, double v)
{
    if (!isfinite(v)) return 0; /* empty cell = absent */
    char tmp[32];
    return ink_buf_append(out, tmp, (size_t)ink__fmt_f64(tmp, v));
}

static bool scalar(enum ink_vtype t)
{
    return t == INK_V_NIL || t == INK_V_BOOL || t == INK_V_I64 || t == INK_V_F64 || t == INK_V_STR;
}

int ink_encode_csv_header(struct ink_csv_layout *lay, const struct ink_record *first,
                          unsigned flags, struct ink_buf *out)
{
    size_t save = out->len;
    memset(lay, 0, sizeof *lay);
    lay->has = first->flags & (INK_HAS_T | INK_HAS_KEY | INK_HAS_Y | INK_HAS_ARM);
    if (flags & INK_ENC_SEQ) lay->has |= INK_HAS_SEQ;
    lay->dim = first->flags & INK_HAS_X ? first->dim : 0;
    for (uint32_t i = 0; i < first->nfields; i++) {
        if (!scalar(first->fields[i].v.type)) continue;
        snprintf(lay->names[lay->nfields++], sizeof lay->names[0], "%s", first->fields[i].name);
    }
    bool sep = false;
    int rc = 0;
#define COL(s) (rc |= (sep ? ink_buf_putc(out, ',') : 0) | ink_buf_puts(out, s), sep = true)
    if (lay->has & INK_HAS_T) COL("t");
    if (lay->has & INK_HAS_KEY) COL("key");
    for (uint32_t i = 0; i < lay->dim; i++) {
        char tmp[16];
        snprintf(tmp, sizeof tmp, "x%u", i);
        COL(tmp);
    }
    if (lay->has & INK_HAS_Y) COL("y");
    if (lay->has & INK_HAS_ARM) COL("arm");
    if (lay->has & INK_HAS_SEQ) COL("seq");
#undef COL
    for (uint32_t i = 0; i < lay->nfields; i++) {
        rc |= sep ? ink_buf_putc(out, ',') : 0;
        rc |= csv_string(out, lay->names[i], strlen(lay->names[i]));
        sep = true;
    }
    rc |= ink_buf_putc(out, '\n');
    if (rc) {
        out->len = save;
        return -1;
    }
    return 0;
}

static int csv_value(struct ink_buf *out, const struct ink_value *v)
{
    switch (v->type) {
    case INK_V_BOOL:
        return ink_buf_puts(out, v->b ? "true" : "false");
    case INK_V_I64:
        return ink__json_i64(out, v->i);
    case INK_V_F64:
        return csv_f64(out, v->f);
    case INK_V_STR:
        return csv_string(out, v->s.p, v->s.n);
    default:
        return 0; /* nil and arrays: empty cell */
    }
}

int ink_encode_csv(const struct ink_csv_layout *lay, const struct ink_record *r,
                   struct ink_buf *out)
{
    size_t save = out->len;
    uint32_t f = r->flags;
    bool sep = false;
    int rc = 0;
#define SEP() (rc |= (sep ? ink_buf_putc(out, ',') : 0), sep = true)
    if (lay->has & INK_HAS_T) {
        SEP();
        if (f & INK_HAS_T) rc |= ink__json_i64(out, r->t);
    }
    if (lay->has & INK_HAS_KEY) {
        SEP();
        if (f & INK_HAS_KEY) rc |= csv_string(out, r->key, r->key_len);
    }
    uint32_t dim = f & INK_HAS_X ? r->dim : 0;
    for (uint32_t i = 0; i < lay->dim; i++) {
        SEP();
        if (i < dim) rc |= csv_f64(out, r->x[i]);
    }
    if (lay->has & INK_HAS_Y) {
        SEP();
        if (f & INK_HAS_Y) rc |= csv_f64(out, r->y);
    }
    if (lay->has & INK_HAS_ARM) {
        SEP();
        if (f & INK_HAS_ARM) rc |= ink__json_i64(out, r->arm);
    }
    if (lay->has & INK_HAS_SEQ) {
        char tmp[24];
        SEP();
        rc |= ink_buf_append(out, tmp,
                             (size_t)snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)r->seq));
    }
    for (uint32_t i = 0; i < lay->nfields; i++) {
        SEP();
        for (uint32_t j = 0; j < r->nfields; j++) {
            if (strcmp(r->fields[j].name, lay->names[i]) == 0) {
                rc |= csv_value(out, &r->fields[j].v);
                break;
            }
        }
    }
#undef SEP
    rc |= ink_buf_putc(out, '\n');
    if (rc) {
        out->len = save;
        return -1;
    }
    return 0;
}
