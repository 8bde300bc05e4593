/* Error codes and the caller-supplied error detail (docs/style.md rule 4).
 * A function either fills a struct ink_err and returns a negative code,
 * or prints; never both. */
#ifndef INK_ERR_H
#define INK_ERR_H

#include <stdarg.h>

enum {
    INK_OK = 0,
    INK_EINVAL = -1,    /* bad argument, bad parameter, bad request */
    INK_ENOMEM = -2,    /* allocation failed or a memory bound would be exceeded */
    INK_EIO = -3,       /* file or socket failure */
    INK_ERANGE = -4,    /* value out of range */
    INK_EDIM = -5,      /* record dimension does not match the operator */
    INK_EPARSE = -6,    /* malformed input (config, record, state blob) */
    INK_ESTATE = -7,    /* saved state refused: version, config, corruption */
    INK_EAGAIN = -8,    /* try again later (socket would block) */
    INK_ENOTSUP = -9,   /* not supported by this node (e.g. unknown query op) */
    INK_ENUMERIC = -10, /* numerical failure that could not be repaired */
    INK_ENOX = -11,     /* the record has no x and the operator needs one (reject: missing_x) */
    INK_EBUSY = -12     /* state or output owned by another process (engine/lock.h) */
};

struct ink_err {
    int code;
    int line, col; /* 1-based position in the config, 0 = none */
    char msg[512];
};

/* Set code and message (printf-style); returns code so callers can
 * `return ink_err_set(err, INK_EINVAL, "...")`. err may be NULL. */
int ink_err_set(struct ink_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int ink_err_vset(struct ink_err *err, int code, const char *fmt, va_list ap);
const char *ink_strerror(int code);

#endif
