#include "record.h"

#include <string.h>

static const char *const reject_names[INK_REJ__COUNT] = {
    [INK_REJ_NONE] = "none",           [INK_REJ_DECODE] = "decode",
    [INK_REJ_TRUNCATED] = "truncated", [INK_REJ_TOO_LARGE] = "too_large",
    [INK_REJ_DEPTH] = "depth",         [INK_REJ_NOT_MAP] = "not_map",
    [INK_REJ_TYPE] = "type",           [INK_REJ_NONFINITE] = "nonfinite",
    [INK_REJ_MISSING_X] = "missing_x", [INK_REJ_DIM] = "dim",
    [INK_REJ_TOO_BIG] = "too_big",     [INK_REJ_INVALID] = "invalid",
    [INK_REJ_KEYS] = "keys_full",      [INK_REJ_MISSING] = "missing",
};

const char *ink_reject_name(enum ink_reject r)
{
    if ((unsigned)r >= INK_REJ__COUNT) return "unknown";
    return reject_names[r];
}

int ink_record_add_bool(struct ink_record *r, const char *name, bool b)
{
    struct ink_value v = {.type = INK_V_BOOL, .b = b};
    return ink_record_add(r, name, v);
}

int ink_record_add_str(struct ink_record *r, const char *name, const char *s, uint32_t n)
{
    struct ink_value v = {.type = INK_V_STR, .s = {s, n}};
    return ink_record_add(r, name, v);
}

int ink_record_add_f64s(struct ink_record *r, const char *name, const double *p, uint32_t n)
{
    struct ink_value v = {.type = INK_V_F64S, .fa = {p, n}};
    return ink_record_add(r, name, v);
}

int ink_record_add_i64s(struct ink_record *r, const char *name, const int64_t *p, uint32_t n)
{
    struct ink_value v = {.type = INK_V_I64S, .ia = {p, n}};
    return ink_record_add(r, name, v);
}

int ink_record_add_f64m(struct ink_record *r, const char *name, const double *p, uint32_t rows,
                        uint32_t cols)
{
    struct ink_value v = {.type = INK_V_F64M, .fm = {p, rows, cols}};
    return ink_record_add(r, name, v);
}

/* ---- carried-through (extra) fields: lookups for request arguments ----
 * r->extra holds extra_n msgpack key/value pairs. Every read is bounded by
 * extra_len, so a record built by hand cannot make these read past it. */
#include <math.h>

#include "codec_int.h"

/* The value of extra `name`: 1 and [*v, *vend), or 0 when absent. */
static int extra_find(const struct ink_record *r, const char *name, const uint8_t **v,
                      const uint8_t **vend)
{
    const uint8_t *p = r->extra,
                  *end = r->extra_len ? r->extra + r->extra_len : p; /* NULL + 0 is UB */
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < r->extra_n && p < end; i++) {
        const char *k;
        uint32_t kn;
        size_t vl;
        enum ink_reject why;
        if (ink__mp_str(&p, end, &k, &kn)) return 0;
        if (p >= end || ink_msgpack_scan(p, (size_t)(end - p), INK_DEPTH_CAP, &vl, &why) != 0)
            return 0;
        if (kn == nl && memcmp(k, name, nl) == 0) {
            *v = p, *vend = p + vl;
            return 1;
        }
        p += vl;
    }
    return 0;
}

int ink_record_extra_i64(const struct ink_record *r, const char *name, int64_t *out)
{
    const uint8_t *p, *end;
    if (!extra_find(r, name, &p, &end)) return 0;
    const uint8_t *q = p;
    if (ink__mp_i64(&q, end, out) == 0) return 1;
    /* JSON writers may send 4.0 for 4: accept an exactly integral double.
     * The range is checked before the conversion: converting a double
     * outside int64_t's range is undefined behaviour (and the value comes
     * from the network). */
    double f;
    if (ink__mp_f64(&p, end, &f) == 0 && f >= -9223372036854775808.0 && f < 9223372036854775808.0 &&
        f == floor(f)) {
        *out = (int64_t)f;
        return 1;
    }
    return -1;
}

int ink_record_extra_f64(const struct ink_record *r, const char *name, double *out)
{
    const uint8_t *p, *end;
    if (!extra_find(r, name, &p, &end)) return 0;
    if (ink__mp_f64(&p, end, out) == 0 && isfinite(*out)) return 1;
    return -1;
}

int ink_record_extra_f64s(const struct ink_record *r, const char *name, double *out, uint32_t cap,
                          uint32_t *n)
{
    const uint8_t *p, *end;
    uint32_t len;
    if (!extra_find(r, name, &p, &end)) return 0;
    if (ink__mp_array(&p, end, &len) || len > cap) return -1;
    for (uint32_t i = 0; i < len; i++)
        if (ink__mp_f64(&p, end, &out[i]) || !isfinite(out[i])) return -1;
    *n = len;
    return 1;
}

int ink_record_extra_f64m(const struct ink_record *r, const char *name, double *out,
                          uint32_t max_rows, uint32_t cols, uint32_t *rows)
{
    const uint8_t *p, *end;
    uint32_t len, w;
    if (!extra_find(r, name, &p, &end)) return 0;
    if (!out) return 1;
    if (ink__mp_array(&p, end, &len) || len > max_rows) return -1;
    for (uint32_t i = 0; i < len; i++) {
        if (ink__mp_array(&p, end, &w) || w != cols) return -1;
        for (uint32_t k = 0; k < cols; k++) {
            double *v = &out[(size_t)i * cols + k];
            if (ink__mp_f64(&p, end, v) || !isfinite(*v)) return -1;
        }
    }
    *rows = len;
    return 1;
}

int ink_record_extra_raw(const struct ink_record *r, const char *name, const uint8_t **p,
                         const uint8_t **end)
{
    return extra_find(r, name, p, end);
}

int ink_record_extra_str(const struct ink_record *r, const char *name, const char **s, uint32_t *n)
{
    const uint8_t *p, *end;
    if (!extra_find(r, name, &p, &end)) return 0;
    return ink__mp_str(&p, end, s, n) == 0 ? 1 : -1;
}
