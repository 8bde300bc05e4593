/* JSON Lines codec. Parsing is jansson's (no hand-written JSON parser);
 * a lexical pre-scan bounds the nesting before jansson recurses. Writing is
 * done here, so numbers come out in their shortest exact form and records
 * need no intermediate json_t tree. */
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_int.h"
#include "fields.h"

#define rd16 ink__rd16
#define rd32 ink__rd32
#define rd64 ink__rd64
#define rej  ink__rej

/* ---- writing ---- */

/* Decimal digits of u at o; returns the end. */
static char *utoa(char *o, uint64_t u)
{
    char rev[20];
    int n = 0;
    do rev[n++] = (char)('0' + u % 10), u /= 10;
    while (u);
    while (n) *o++ = rev[--n];
    return o;
}

/* Fast path for the usual sensor value: an integer, or a decimal with at
 * most 6 places, in [1e-4, 1e9). m / 10^k == |v| with m, 10^k exact and the
 * division correctly rounded means v is the double nearest m * 10^-k, so
 * that text reads back as v; the smallest such k is what %.15g prints.
 * Returns the length, or 0 when v is not such a number. */
static int fmt_short(char tmp[32], double v)
{
    static const double p10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
    static const uint64_t u10[] = {1, 10, 100, 1000, 10000, 100000, 1000000};
    double a = fabs(v);
    char *o = tmp;
    if (v < 0) *o++ = '-';
    if (a == floor(a) && a < 1e15) { /* integral: no fraction, no exponent */
        o = utoa(o, (uint64_t)a);
        return (int)(o - tmp);
    }
    if (!(a >= 1e-4 && a < 1e9)) return 0;
    for (int k = 1; k <= 6; k++) {
        double m = nearbyint(a * p10[k]);
        if (m / p10[k] != a) continue;
        uint64_t mi = (uint64_t)m, ip = mi / u10[k], fp = mi % u10[k];
        o = utoa(o, ip);
        *o++ = '.';
        for (int j = k - 1; j >= 0; j--) o[j] = (char)('0' + fp % 10), fp /= 10;
        o += k;
        return (int)(o - tmp);
    }
    return 0;
}

int ink__fmt_f64(char tmp[32], double v)
{
    /* "-0" would read back as the integer 0: keep the sign with a fraction. */
    if (v == 0 && signbit(v)) return snprintf(tmp, 32, "-0.0");
    int n = fmt_short(tmp, v);
    if (n) {
        tmp[n] = '\0';
        return n;
    }
    n = 0;
    int prec = 15;
    for (; prec <= 17; prec++) {
        n = snprintf(tmp, 32, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* With exponent 15 or 16 a higher precision switches to plain digits,
     * which can be shorter than the exponent form. */
    if (prec < 17 && memchr(tmp, 'e', (size_t)n)) {
        char alt[32];
        for (int p2 = prec + 1; p2 <= 17; p2++) {
            int m = snprintf(alt, 32, "%.*g", p2, v);
            if (m < n && strtod(alt, NULL) == v) {
                memcpy(tmp, alt, (size_t)m + 1);
                n = m;
            }
        }
    }
    return n;
}

int ink__json_number(struct ink_buf *out, double v)
{
    if (!isfinite(v)) return ink_buf_append(out, "null", 4);
    char tmp[32];
    return ink_buf_append(out, tmp, (size_t)ink__fmt_f64(tmp, v));
}

int ink__json_i64(struct ink_buf *out, int64_t v)
{
    char tmp[24], *o = tmp;
    if (v < 0) *o++ = '-';
    o = utoa(o, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    return ink_buf_append(out, tmp, (size_t)(o - tmp));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c >= 0xc2 && c <= 0xdf) return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) return 0;
        if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
        if (c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90) return 0;
        if (c == 0xf4 && s[1] > 0x8f) return 0;
        return 4;
    }
    return 0;
}

int ink__json_string(struct ink_buf *out, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    /* Worst case: every byte becomes \ufffd (6 bytes). */
    if (n > (SIZE_MAX - 2) / 6 || ink_buf_reserve(out, 6 * n + 2)) return -1;
    uint8_t *o = out->p + out->len;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = c, i++;
            continue;
        }
        if (c >= 0x80) {
            size_t l = utf8_len(s + i, n - i);
            if (l) {
                memcpy(o, s + i, l), o += l, i += l;
            } else {
                memcpy(o, "\\ufffd", 6), o += 6, i++;
            }
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        default:
            memcpy(o, "u00", 3), o += 3;
            *o++ = (uint8_t)hex[c >> 4];
            *o++ = (uint8_t)hex[c & 15];
        }
        i++;
    }
    *o++ = '"';
    out->len = (size_t)(o - out->p);
    return 0;
}

/* Write one pre-validated msgpack object at *pp as JSON, advancing *pp. */
static int mp_json(struct ink_buf *out, const uint8_t **pp)
{
    const uint8_t *p = *pp;
    uint8_t c = *p;
    int rc = 0;
    uint32_t n = 0;
    size_t h = 1;
    /* Containers first: they recurse. */
    int cont = 0;
    if (c >= 0x80 && c <= 0x8f)
        cont = 2, n = c & 15;
    else if (c >= 0x90 && c <= 0x9f)
        cont = 1, n = c & 15;
    else if (c == 0xdc || c == 0xde)
        cont = c == 0xdc ? 1 : 2, n = rd16(p + 1), h = 3;
    else if (c == 0xdd || c == 0xdf)
        cont = c == 0xdd ? 1 : 2, n = rd32(p + 1), h = 5;
    if (cont) {
        p += h;
        rc |= ink_buf_putc(out, cont == 1 ? '[' : '{');
        for (uint32_t i = 0; i < n; i++) {
            if (i) rc |= ink_buf_putc(out, ',');
            if (cont == 2) {
                uint8_t k = *p;
                if ((k >= 0xa0 && k <= 0xbf) || (k >= 0xd9 && k <= 0xdb)) {
                    rc |= mp_json(out, &p);
                } else {
                    /* A non-string key: its JSON text, quoted (quotes inside
                     * become apostrophes so the key stays one string). */
                    size_t at = out->len;
                    rc |= mp_json(out, &p);
                    if (!rc && !ink_buf_reserve(out, 2)) {
                        for (size_t j = at; j < out->len; j++)
                            if (out->p[j] == '"') out->p[j] = '\'';
                        memmove(out->p + at + 1, out->p + at, out->len - at);
                        out->p[at] = '"';
                        out->len++;
                        out->p[out->len++] = '"';
                    }
                }
                rc |= ink_buf_putc(out, ':');
            }
            rc |= mp_json(out, &p);
        }
        rc |= ink_buf_putc(out, cont == 1 ? ']' : '}');
        *pp = p;
        return rc;
    }
    if (c <= 0x7f || c >= 0xe0) {
        *pp = p + 1;
        return ink__json_i64(out, c <= 0x7f ? (int64_t)c : (int64_t)(int8_t)c);
    }
    switch (c) {
    case 0xc0:
        *pp = p + 1;
        return ink_buf_append(out, "null", 4);
    case 0xc2:
        *pp = p + 1;
        return ink_buf_append(out, "false", 5);
    case 0xc3:
        *pp = p + 1;
        return ink_buf_append(out, "true", 4);
    case 0xcc:
        *pp = p + 2;
        return ink__json_i64(out, p[1]);
    case 0xcd:
        *pp = p + 3;
        return ink__json_i64(out, rd16(p + 1));
    case 0xce:
        *pp = p + 5;
        return ink__json_i64(out, rd32(p + 1));
    case 0xcf: {
        char tmp[24];
        *pp = p + 9;
        int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)rd64(p + 1));
        return ink_buf_append(out, tmp, (size_t)k);
    }
    case 0xd0:
        *pp = p + 2;
        return ink__json_i64(out, (int8_t)p[1]);
    case 0xd1:
        *pp = p + 3;
        return ink__json_i64(out, (int16_t)rd16(p + 1));
    case 0xd2:
        *pp = p + 5;
        return ink__json_i64(out, (int32_t)rd32(p + 1));
    case 0xd3:
        *pp = p + 9;
        return ink__json_i64(out, (int64_t)rd64(p + 1));
    case 0xca: {
        uint32_t u = rd32(p + 1);
        float f;
        memcpy(&f, &u, 4);
        *pp = p + 5;
        return ink__json_number(out, f);
    }
    case 0xcb: {
        uint64_t u = rd64(p + 1);
        double v;
        memcpy(&v, &u, 8);
        *pp = p + 9;
        return ink__json_number(out, v);
    }
    default:
        break;
    }
    /* str and bin: a JSON string of the bytes. */
    if ((c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb) || (c >= 0xc4 && c <= 0xc6)) {
        size_t l = c >= 0xa0 && c <= 0xbf   ? c & 0x1f
                   : c == 0xd9 || c == 0xc4 ? p[1]
                   : c == 0xda || c == 0xc5 ? rd16(p + 1)
                                            : rd32(p + 1);
        h = c >= 0xa0 && c <= 0xbf   ? 1
            : c == 0xd9 || c == 0xc4 ? 2
            : c == 0xda || c == 0xc5 ? 3
                                     : 5;
        *pp = p + h + l;
        return ink__json_string(out, (const char *)p + h, l);
    }
    /* ext: no JSON form. */
    size_t l = 0;
    switch (c) {
    case 0xc7:
        l = 3 + (size_t)p[1];
        break;
    case 0xc8:
        l = 4 + (size_t)rd16(p + 1);
        break;
    case 0xc9:
        l = 6 + (size_t)rd32(p + 1);
        break;
    case 0xd4:
        l = 3;
        break;
    case 0xd5:
        l = 4;
        break;
    case 0xd6:
        l = 6;
        break;
    case 0xd7:
        l = 10;
        break;
    case 0xd8:
        l = 18;
        break;
    default:
        l = 1;
        break; /* unreachable after validation */
    }
    *pp = p + l;
    return ink_buf_append(out, "null", 4);
}

int ink__mp_to_json(struct ink_buf *out, const uint8_t *p, const uint8_t *end)
{
    size_t l;
    enum ink_reject why;
    if (p >= end || ink_msgpack_scan(p, (size_t)(end - p), INK_DEPTH_CAP, &l, &why) != 0)
        return ink_buf_append(out, "null", 4);
    return mp_json(out, &p);
}

static int json_f64s(struct ink_buf *out, const double *v, uint32_t n)
{
    int rc = ink_buf_putc(out, '[');
    for (uint32_t i = 0; i < n; i++) {
        if (i) rc |= ink_buf_putc(out, ',');
        rc |= ink__json_number(out, v[i]);
    }
    return rc | ink_buf_putc(out, ']');
}

static int json_value(struct ink_buf *out, const struct ink_value *v)
{
    int rc = 0;
    switch (v->type) {
    case INK_V_BOOL:
        return v->b ? ink_buf_append(out, "true", 4) : ink_buf_append(out, "false", 5);
    case INK_V_I64:
        return ink__json_i64(out, v->i);
    case INK_V_F64:
        return ink__json_number(out, v->f);
    case INK_V_STR:
        return ink__json_string(out, v->s.p, v->s.n);
    case INK_V_F64S:
        return json_f64s(out, v->fa.p, v->fa.n);
    case INK_V_I64S:
        rc = ink_buf_putc(out, '[');
        for (uint32_t i = 0; i < v->ia.n; i++) {
            if (i) rc |= ink_buf_putc(out, ',');
            rc |= ink__json_i64(out, v->ia.p[i]);
        }
        return rc | ink_buf_putc(out, ']');
    case INK_V_F64M:
        rc = ink_buf_putc(out, '[');
        for (uint32_t j = 0; j < v->fm.cols; j++) {
            if (j) rc |= ink_buf_putc(out, ',');
            rc |= json_f64s(out, v->fm.p + (size_t)j * v->fm.rows, v->fm.rows);
        }
        return rc | ink_buf_putc(out, ']');
    case INK_V_RAW:
        return ink__mp_to_json(out, v->raw.p, v->raw.p + v->raw.n);
    case INK_V_NIL:
    default:
        return ink_buf_append(out, "null", 4);
    }
}

/* `,"name":` (without the comma before the first member). */
static int json_key(struct ink_buf *out, bool *first, const char *k, size_t n)
{
    int rc = *first ? 0 : ink_buf_putc(out, ',');
    *first = false;
    return rc | ink__json_string(out, k, n) | ink_buf_putc(out, ':');
}

int ink_encode_json(const struct ink_record *r, unsigned flags, struct ink_buf *out)
{
    size_t save = out->len;
    uint32_t f = r->flags;
    bool first = true;
    int rc = ink_buf_putc(out, '{');
    if (f & INK_HAS_T) rc |= json_key(out, &first, "t", 1) | ink__json_i64(out, r->t);
    if (f & INK_HAS_KEY)
        rc |= json_key(out, &first, "key", 3) | ink__json_string(out, r->key, r->key_len);
    if (f & INK_HAS_X) rc |= json_key(out, &first, "x", 1) | json_f64s(out, r->x, r->dim);
    if (f & INK_HAS_Y) rc |= json_key(out, &first, "y", 1) | ink__json_number(out, r->y);
    if (f & INK_HAS_ARM) rc |= json_key(out, &first, "arm", 3) | ink__json_i64(out, r->arm);
    if (f & INK_HAS_OP)
        rc |= json_key(out, &first, "op", 2) | ink__json_string(out, r->op, r->op_len);
    if (flags & INK_ENC_SEQ) {
        char tmp[24];
        int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)r->seq);
        rc |= json_key(out, &first, "seq", 3) | ink_buf_append(out, tmp, (size_t)n);
    }
    const uint8_t *p = r->extra,
                  *end = r->extra_len ? r->extra + r->extra_len : p; /* NULL + 0 is UB */
    for (uint32_t i = 0; i < r->extra_n; i++) {
        const char *k;
        uint32_t kn;
        size_t vl;
        enum ink_reject why;
        if (ink__mp_str(&p, end, &k, &kn)) break;
        if (p >= end || ink_msgpack_scan(p, (size_t)(end - p), INK_DEPTH_CAP, &vl, &why) != 0)
            break;
        if (r->nfields && ink__field_shadows(r, k, kn)) {
            p += vl; /* the operator's field of that name replaces it */
            continue;
        }
        rc |= json_key(out, &first, k, kn) | mp_json(out, &p);
    }
    for (uint32_t i = 0; i < r->nfields; i++) {
        const char *name = r->fields[i].name;
        rc |= json_key(out, &first, name, strlen(name)) | json_value(out, &r->fields[i].v);
    }
    rc |= ink_buf_append(out, "}\n", 2);
    if (rc) {
        out->len = save;
        return -1;
    }
    return 0;
}

/* ---- reading ---- */

bool ink_line_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\n') return false;
    return true;
}

/* Nesting of [ and { outside strings, before jansson recurses into it; also
 * notes bare NaN / Infinity tokens so their parse error can say why. */
static enum ink_reject json_prescan(struct ink_decoder *d, const char *s, size_t len, bool *nonfin)
{
    uint32_t depth = 0;
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in = false;
            continue;
        }
        switch (c) {
        case '"':
            in = true;
            break;
        case '[':
        case '{':
            if (++depth > d->lim.max_depth)
                return rej(d, INK_REJ_DEPTH, "nesting deeper than max_depth %u", d->lim.max_depth);
            break;
        case ']':
        case '}':
            if (depth) depth--;
            break;
        case 'N':
            if (len - i >= 3 && !memcmp(s + i, "NaN", 3)) *nonfin = true;
            break;
        case 'I':
            if (len - i >= 8 && !memcmp(s + i, "Infinity", 8)) *nonfin = true;
            break;
        default:
            break;
        }
    }
    return INK_REJ_NONE;
}

static enum ink_reject json_error(struct ink_decoder *d, const json_error_t *e, bool nonfin)
{
    enum ink_reject r = INK_REJ_DECODE;
    switch (json_error_code(e)) {
    case json_error_premature_end_of_input:
        r = INK_REJ_TRUNCATED;
        break;
    case json_error_numeric_overflow:
        r = strncmp(e->text, "real", 4) == 0 ? INK_REJ_NONFINITE : INK_REJ_TYPE;
        break;
    default:
        r = nonfin ? INK_REJ_NONFINITE : INK_REJ_DECODE;
        break;
    }
    return rej(d, r, "JSON: %s (column %d)", e->text, e->column);
}

/* Bounded msgpack writer into the decoder's extra scratch. */
struct bounded {
    uint8_t *p;
    size_t len, cap;
};

static int bounded_write(void *data, const char *s, size_t n)
{
    struct bounded *b = data;
    if (n > b->cap - b->len) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Depth is bounded by json_prescan. */
static int json_to_mp(msgpack_packer *pk, json_t *v)
{
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *e;
        rc = msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach(v, k, e)
        {
            size_t kn = strlen(k);
            rc |= msgpack_pack_str(pk, kn) | msgpack_pack_str_body(pk, k, kn) | json_to_mp(pk, e);
            if (rc) return rc;
        }
        return rc;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        rc = msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, e)
        {
            rc |= json_to_mp(pk, e);
            if (rc) return rc;
        }
        return rc;
    }
    case JSON_STRING: {
        size_t n = json_string_length(v);
        return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, json_string_value(v), n);
    }
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(v));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(v));
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    default:
        return msgpack_pack_nil(pk);
    }
}

static enum ink_reject json_x(struct ink_decoder *d, json_t *v, struct ink_record *rec)
{
    if (!json_is_array(v)) return rej(d, INK_REJ_TYPE, "x: expected an array of numbers");
    size_t n = json_array_size(v);
    if (n > d->lim.max_dim)
        return rej(d, INK_REJ_DIM, "x: %zu values over max_dim %u", n, d->lim.max_dim);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_number(e)) return rej(d, INK_REJ_TYPE, "x[%zu]: not a number", i);
        d->x[i] = json_number_value(e);
        if (!isfinite(d->x[i])) return rej(d, INK_REJ_NONFINITE, "x[%zu]: not finite", i);
    }
    rec->x = d->x;
    rec->dim = (uint32_t)n;
    rec->flags |= INK_HAS_X;
    return INK_REJ_NONE;
}

static enum ink_reject json_field(struct ink_decoder *d, enum ink__field f, json_t *v,
                                  struct ink_record *rec)
{
    const char *name = ink__field_names[f];
    switch (f) {
    case INK__F_X:
        return json_x(d, v, rec);
    case INK__F_Y:
        if (!json_is_number(v)) return rej(d, INK_REJ_TYPE, "y: expected a number");
        rec->y = json_number_value(v);
        if (!isfinite(rec->y)) return rej(d, INK_REJ_NONFINITE, "y: not finite");
        rec->flags |= INK_HAS_Y;
        return INK_REJ_NONE;
    case INK__F_T:
    case INK__F_ARM:
    case INK__F_SEQ: {
        if (!json_is_integer(v)) return rej(d, INK_REJ_TYPE, "%s: expected an integer", name);
        json_int_t i = json_integer_value(v);
        if (f == INK__F_T)
            rec->t = i, rec->flags |= INK_HAS_T;
        else if (f == INK__F_ARM)
            rec->arm = i, rec->flags |= INK_HAS_ARM;
        else if (i < 0)
            return rej(d, INK_REJ_TYPE, "seq: expected an unsigned integer");
        else
            rec->seq = (uint64_t)i, rec->flags |= INK_HAS_SEQ;
        return INK_REJ_NONE;
    }
    case INK__F_KEY:
    case INK__F_OP: {
        if (!json_is_string(v)) return rej(d, INK_REJ_TYPE, "%s: expected a string", name);
        size_t n = json_string_length(v);
        if (n > d->lim.max_str)
            return rej(d, INK_REJ_TOO_BIG, "%s: %zu bytes over max_str %u", name, n,
                       d->lim.max_str);
        char *dst = d->str + (f == INK__F_KEY ? 0 : d->lim.max_str);
        memcpy(dst, json_string_value(v), n);
        if (f == INK__F_KEY)
            rec->key = dst, rec->key_len = (uint32_t)n, rec->flags |= INK_HAS_KEY;
        else
            rec->op = dst, rec->op_len = (uint32_t)n, rec->flags |= INK_HAS_OP;
        return INK_REJ_NONE;
    }
    default:
        return INK_REJ_NONE;
    }
}

static enum ink_reject json_fields(struct ink_decoder *d, json_t *root, struct ink_record *rec)
{
    struct bounded ex = {d->extra, 0, d->lim.max_extra};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ex, bounded_write);
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        size_t kn = strlen(k);
        enum ink__field f = ink__field_of(k, kn);
        if (f == INK__F_UNKNOWN) {
            if (msgpack_pack_str(&pk, kn) | msgpack_pack_str_body(&pk, k, kn) | json_to_mp(&pk, v))
                return rej(d, INK_REJ_TOO_BIG, "unknown fields over max_extra %u bytes",
                           d->lim.max_extra);
            rec->extra_n++;
            continue;
        }
        if (json_is_null(v)) continue; /* null = absent */
        enum ink_reject r = json_field(d, f, v, rec);
        if (r) return r;
    }
    rec->extra = ex.len ? d->extra : NULL;
    rec->extra_len = (uint32_t)ex.len;
    return INK_REJ_NONE;
}

/* fields: (engine/fields.h): each mapped name looked up in the object. */
static void json_fval(json_t *v, struct ink_fval *f)
{
    memset(f, 0, sizeof *f);
    if (!v || json_is_null(v)) return;
    if (json_is_integer(v)) {
        f->kind = INK_FV_I64, f->i = json_integer_value(v);
    } else if (json_is_real(v)) {
        f->kind = INK_FV_F64, f->f = json_real_value(v);
    } else if (json_is_string(v)) {
        f->kind = INK_FV_STR, f->s = json_string_value(v), f->n = json_string_length(v);
    } else {
        f->kind = INK_FV_OTHER;
        f->what = json_is_boolean(v) ? "a boolean" : json_is_array(v) ? "an array" : "an object";
    }
}

static enum ink_reject json_mapped(struct ink_decoder *d, json_t *root, struct ink_record *rec)
{
    enum ink_reject r = ink__fields_begin(d, rec);
    if (r) return r;
    const struct ink_fmap *m = d->fmap;
    for (uint32_t i = 0; i < m->nslots; i++) {
        const struct ink_fslot *s = &m->slot[i];
        json_t *v = json_object_getn(root, s->name, s->name_len); /* a name with dots */
        if (!v && s->nseg > 1) {
            v = root;
            for (uint32_t g = 0; v && g < s->nseg; g++)
                v = json_is_object(v) ? json_object_getn(v, s->seg[g], s->seg_len[g]) : NULL;
        }
        struct ink_fval fv;
        json_fval(v, &fv);
        r = ink__fields_put(d, i, &fv, rec);
        if (r) return r;
    }
    return INK_REJ_NONE;
}

enum ink_reject ink_decode_json(struct ink_decoder *d, const char *line, size_t len,
                                struct ink_record *rec)
{
    memset(rec, 0, offsetof(struct ink_record, fields));
    if (len > d->lim.max_frame)
        return rej(d, INK_REJ_TOO_LARGE, "line of %zu bytes over max_frame %u", len,
                   d->lim.max_frame);
    bool nonfin = false;
    /* JSON_ALLOW_NUL: msgpack strings may hold NUL bytes, and what the JSON
     * encoder writes for them (\u0000) must read back. */
    enum ink_reject r = json_prescan(d, line, len, &nonfin);
    if (r) return r;
    json_error_t e;
    json_t *root =
        json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    if (!root) return json_error(d, &e, nonfin);
    if (!json_is_object(root))
        r = rej(d, INK_REJ_NOT_MAP, "top level is not an object");
    else if (d->fmap)
        r = json_mapped(d, root, rec);
    else
        r = json_fields(d, root, rec);
    json_decref(root);
    return r;
}
