/* Rate-limited log lines (docs/design.md#records: "logged with rate limiting"): at most
 * 5 lines a second per limiter; the lines in between are counted and the
 * count is reported with the next line that gets through. Every line names
 * its node: `inkflow: [node] message`. */
#ifndef INK_LOG_H
#define INK_LOG_H

#include <stdarg.h>
#include <stdint.h>

struct ink_ratelimit {
    double last; /* monotonic seconds of the last line written, 0 = never */
    uint64_t suppressed;
};

/* Not thread-safe per limiter: each limiter belongs to one thread. */
void ink_log_limited(struct ink_ratelimit *rl, const char *who, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
