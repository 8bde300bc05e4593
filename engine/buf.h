/* A growable byte buffer for encoders and line readers. It grows to the
 * largest record seen and then stays: in steady state appending allocates
 * nothing. The owner zero-initialises it (`struct ink_buf b = {0};`),
 * resets `len` between records and calls ink_buf_fini once. */
#ifndef INK_BUF_H
#define INK_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct ink_buf {
    uint8_t *p;
    size_t len, cap;
};

/* Slow path of ink_buf_reserve; 0 or -1 (allocation failed, buffer unchanged). */
static inline int ink__buf_grow(struct ink_buf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return -1;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Make room for n more bytes. 0 or -1. */
static inline int ink_buf_reserve(struct ink_buf *b, size_t n)
{
    if (n > SIZE_MAX - b->len) return -1;
    if (b->len + n <= b->cap) return 0;
    return ink__buf_grow(b, b->len + n);
}

static inline int ink_buf_append(struct ink_buf *b, const void *s, size_t n)
{
    if (ink_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static inline int ink_buf_putc(struct ink_buf *b, char c)
{
    if (b->len == b->cap && ink__buf_grow(b, b->len + 1)) return -1;
    b->p[b->len++] = (uint8_t)c;
    return 0;
}

static inline int ink_buf_puts(struct ink_buf *b, const char *s)
{
    return ink_buf_append(b, s, strlen(s));
}

static inline void ink_buf_reset(struct ink_buf *b)
{
    b->len = 0;
}

/* Safe on a zeroed buffer and twice in a row. */
static inline void ink_buf_fini(struct ink_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* msgpack_packer_write callback: `msgpack_packer_init(&pk, buf, ink_buf_write)`. */
static inline int ink_buf_write(void *data, const char *s, size_t n)
{
    struct ink_buf *b = (struct ink_buf *)data;
    if (n == 0) return 0; /* msgpack-c writes empty bodies; p may still be NULL */
    if (n > b->cap - b->len && ink_buf_reserve(b, n)) return -1;
    uint8_t *o = b->p + b->len;
    b->len += n;
    /* The packer writes 1 to 9 bytes at a time: a call to memcpy costs more. */
    if (n <= 16) {
        for (size_t i = 0; i < n; i++) o[i] = (uint8_t)s[i];
        return 0;
    }
    memcpy(o, s, n);
    return 0;
}

#endif
