/* The text encoder (codec.h ink_encode_text): one readable line per record,
 * for people, not for parsing. Numbers and strings come from the JSON
 * pieces of jsonl.c. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "codec_int.h"

static int text_f64(struct ink_buf *out, double v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%.6g", v);
    return ink_buf_append(out, tmp, (size_t)n);
}

static int text_str(struct ink_buf *out, const char *s, size_t n)
{
    if (ink_buf_reserve(out, n)) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out->p[out->len++] = c < 0x20 || c == 0x7f ? '?' : c;
    }
    return 0;
}

static int text_f64s(struct ink_buf *out, const double *v, uint32_t n)
{
    int rc = ink_buf_putc(out, '[');
    uint32_t shown = n > 8 ? 8 : n;
    for (uint32_t i = 0; i < shown; i++) {
        if (i) rc |= ink_buf_putc(out, ',');
        rc |= text_f64(out, v[i]);
    }
    if (shown < n) {
        char tmp[40];
        int k = snprintf(tmp, sizeof tmp, ",...(%u)", n);
        rc |= ink_buf_append(out, tmp, (size_t)k);
    }
    return rc | ink_buf_putc(out, ']');
}

static int text_value(struct ink_buf *out, const struct ink_value *v)
{
    char tmp[40];
    switch (v->type) {
    case INK_V_BOOL:
        return ink_buf_puts(out, v->b ? "true" : "false");
    case INK_V_I64:
        return ink_buf_append(out, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v->i));
    case INK_V_F64:
        return text_f64(out, v->f);
    case INK_V_STR:
        return text_str(out, v->s.p, v->s.n);
    case INK_V_F64S:
        return text_f64s(out, v->fa.p, v->fa.n);
    case INK_V_I64S:
        return ink_buf_append(out, tmp, (size_t)snprintf(tmp, sizeof tmp, "[%u ints]", v->ia.n));
    case INK_V_F64M:
        return ink_buf_append(out, tmp,
                              (size_t)snprintf(tmp, sizeof tmp, "[%ux%u]", v->fm.rows, v->fm.cols));
    case INK_V_RAW:
        return ink_buf_puts(out, "<raw>");
    default:
        return ink_buf_puts(out, "nil");
    }
}

/* Event time for people: UTC ISO 8601 (fraction only when not whole seconds). */
static int text_time(struct ink_buf *out, int64_t t)
{
    char tmp[64];
    int64_t sec = t >= 0 ? t / 1000000000 : -((-t + 999999999) / 1000000000);
    int64_t ns = t - sec * 1000000000;
    time_t tt = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return ink_buf_append(out, tmp, (size_t)snprintf(tmp, sizeof tmp, " t=%lld", (long long)t));
    size_t n = strftime(tmp, sizeof tmp, " t=%Y-%m-%dT%H:%M:%S", &tm);
    if (ns) n += (size_t)snprintf(tmp + n, sizeof tmp - n, ".%09lld", (long long)ns);
    tmp[n++] = 'Z';
    return ink_buf_append(out, tmp, n);
}

int ink_encode_text(const struct ink_record *r, unsigned flags, struct ink_buf *out)
{
    (void)flags;
    size_t save = out->len;
    char tmp[48];
    uint32_t f = r->flags;
    int rc = ink_buf_append(out, tmp,
                            (size_t)snprintf(tmp, sizeof tmp, "#%llu", (unsigned long long)r->seq));
    if (f & INK_HAS_T) rc |= text_time(out, r->t);
    if (f & INK_HAS_KEY) rc |= ink_buf_puts(out, " key=") | text_str(out, r->key, r->key_len);
    if (f & INK_HAS_OP) rc |= ink_buf_puts(out, " op=") | text_str(out, r->op, r->op_len);
    if (f & INK_HAS_X) rc |= ink_buf_puts(out, " x=") | text_f64s(out, r->x, r->dim);
    if (f & INK_HAS_Y) rc |= ink_buf_puts(out, " y=") | text_f64(out, r->y);
    if (f & INK_HAS_ARM)
        rc |= ink_buf_append(out, tmp,
                             (size_t)snprintf(tmp, sizeof tmp, " arm=%lld", (long long)r->arm));
    /* Extras as name=JSON, so nested values stay readable. */
    const uint8_t *p = r->extra,
                  *end = r->extra_len ? r->extra + r->extra_len : p; /* NULL + 0 is UB */
    for (uint32_t i = 0; i < r->extra_n; i++) {
        const char *k;
        uint32_t kn;
        size_t vl;
        enum ink_reject why;
        if (ink__mp_str(&p, end, &k, &kn)) break;
        if (ink_msgpack_scan(p, (size_t)(end - p), INK_DEPTH_CAP, &vl, &why) != 0) break;
        if (!ink__field_shadows(r, k, kn)) {
            rc |= ink_buf_putc(out, ' ') | text_str(out, k, kn) | ink_buf_putc(out, '=');
            rc |= ink__mp_to_json(out, p, p + vl);
        }
        p += vl;
    }
    for (uint32_t i = 0; i < r->nfields; i++) {
        rc |=
            ink_buf_putc(out, ' ') | ink_buf_puts(out, r->fields[i].name) | ink_buf_putc(out, '=');
        rc |= text_value(out, &r->fields[i].v);
    }
    rc |= ink_buf_putc(out, '\n');
    if (rc) {
        out->len = save;
        return -1;
    }
    return 0;
}
