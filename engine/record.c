#include "record.h"

#include <string.h>

static const char *const reject_names[INK_REJ__COUNT] = {
    [INK_REJ_NONE] = "none",          [INK_REJ_DECODE] = "decode",
    [INK_REJ_TRUNCATED] = "truncated", [INK_REJ_TOO_LARGE] = "too_large",
    [INK_REJ_DEPTH] = "depth",        [INK_REJ_NOT_MAP] = "not_map",
    [INK_REJ_TYPE] = "type",          [INK_REJ_NONFINITE] = "nonfinite",
    [INK_REJ_MISSING_X] = "missing_x", [INK_REJ_DIM] = "dim",
    [INK_REJ_TOO_BIG] = "too_big",    [INK_REJ_INVALID] = "invalid",
    [INK_REJ_KEYS] = "keys_full",
};

const char *ink_reject_name(enum ink_reject r)
{
    if ((unsigned)r >= INK_REJ__COUNT) return "unknown";
    return reject_names[r];
}

int ink_record_add(struct ink_record *r, const char *name, struct ink_value v)
{
    for (uint32_t i = 0; i < r->nfields; i++) {
        if (strcmp(r->fields[i].name, name) == 0) {
            r->fields[i].v = v;
            return 0;
        }
    }
    if (r->nfields >= INK_MAX_FIELDS) return -1;
    r->fields[r->nfields].name = name;
    r->fields[r->nfields].v = v;
    r->nfields++;
    return 0;
}

int ink_record_add_f64(struct ink_record *r, const char *name, double f)
{
    struct ink_value v = {.type = INK_V_F64, .f = f};
    return ink_record_add(r, name, v);
}

int ink_record_add_i64(struct ink_record *r, const char *name, int64_t i)
{
    struct ink_value v = {.type = INK_V_I64, .i = i};
    return ink_record_add(r, name, v);
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
