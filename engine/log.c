#include "log.h"

#include <stdio.h>
#include "clock.h"

void ink_log_limited(struct ink_ratelimit *rl, const char *who, const char *fmt, va_list ap)
{
    double t = ink_now();
    if (rl->last != 0 && t - rl->last < 0.2) {
        rl->suppressed++;
        return;
    }
    rl->last = t;
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (rl->suppressed)
        fprintf(stderr, "inkflow: [%s] %s (%llu similar lines suppressed)\n", who, msg,
                (unsigned long long)rl->suppressed);
    else
        fprintf(stderr, "inkflow: [%s] %s\n", who, msg);
    rl->suppressed = 0;
}
