#include "err.h"

#include <stdio.h>
#include <string.h>

int ink_err_vset(struct ink_err *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    }
    return code;
}

int ink_err_set(struct ink_err *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ink_err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

const char *ink_strerror(int code)
{
    switch (code) {
    case INK_OK:
        return "ok";
    case INK_EINVAL:
        return "invalid argument";
    case INK_ENOMEM:
        return "out of memory";
    case INK_EIO:
        return "i/o error";
    case INK_ERANGE:
        return "out of range";
    case INK_EDIM:
        return "wrong dimension";
    case INK_ENOX:
        return "no x";
    case INK_EPARSE:
        return "parse error";
    case INK_ESTATE:
        return "bad state";
    case INK_EAGAIN:
        return "try again";
    case INK_EBUSY:
        return "in use by another process";
    case INK_ENOTSUP:
        return "not supported";
    case INK_ENUMERIC:
        return "numerical failure";
    }
    return "unknown error";
}
