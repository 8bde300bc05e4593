/* Internals shared by the codec files (codec.c, jsonl.c, csv.c) and
 * record.c's extra lookups. Not part of the API. */
#ifndef INK_CODEC_INT_H
#define INK_CODEC_INT_H

#include <stdint.h>
#include <string.h>

#include "codec.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the codec assumes a little-endian host"
#endif

/* Big-endian loads (msgpack's byte order). */
static inline uint16_t ink__rd16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t ink__rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
static inline uint64_t ink__rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* The well-known record fields, by name. */
enum ink__field {
    INK__F_X,
    INK__F_Y,
    INK__F_T,
    INK__F_KEY,
    INK__F_ARM,
    INK__F_OP,
    INK__F_SEQ,
    INK__F_UNKNOWN
};
extern const char *const ink__field_names[];

static inline enum ink__field ink__field_of(const char *k, size_t n)
{
    switch (n) {
    case 1:
        return k[0] == 'x'   ? INK__F_X
               : k[0] == 'y' ? INK__F_Y
               : k[0] == 't' ? INK__F_T
                             : INK__F_UNKNOWN;
    case 2:
        return k[0] == 'o' && k[1] == 'p' ? INK__F_OP : INK__F_UNKNOWN;
    case 3:
        if (!memcmp(k, "key", 3)) return INK__F_KEY;
        if (!memcmp(k, "arm", 3)) return INK__F_ARM;
        if (!memcmp(k, "seq", 3)) return INK__F_SEQ;
        return INK__F_UNKNOWN;
    default:
        return INK__F_UNKNOWN;
    }
}

/* Set d->why (printf-style) and return r. */
enum ink_reject ink__rej(struct ink_decoder *d, enum ink_reject r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* JSON text pieces (jsonl.c), also used by the text and CSV encoders. */
int ink__json_number(struct ink_buf *out, double v); /* non-finite -> null */
int ink__json_i64(struct ink_buf *out, int64_t v);
int ink__json_string(struct ink_buf *out, const char *s, size_t n);
/* The msgpack object [p, end) as JSON; `null` when it is not one valid object. */
int ink__mp_to_json(struct ink_buf *out, const uint8_t *p, const uint8_t *end);
/* Whether r has an operator field named k (kn bytes): encoders then leave out
 * the extra of that name, so no map carries a key twice (the field wins). */
bool ink__field_shadows(const struct ink_record *r, const char *k, uint32_t kn);
/* Shortest %.15g / %.16g / %.17g text that reads back as v (finite v);
 * returns its length (< 32). */
int ink__fmt_f64(char tmp[32], double v);

/* Bounded readers of one msgpack object in [p, end): 0 or -1 (not that type
 * or malformed). ink__mp_str and ink__mp_array advance *pp past the header
 * (a string past its body). ink__mp_i64 accepts integers only. */
int ink__mp_str(const uint8_t **pp, const uint8_t *end, const char **s, uint32_t *n);
int ink__mp_array(const uint8_t **pp, const uint8_t *end, uint32_t *n);
int ink__mp_f64(const uint8_t **pp, const uint8_t *end, double *v);
int ink__mp_i64(const uint8_t **pp, const uint8_t *end, int64_t *v);

#endif
