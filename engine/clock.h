/* The clocks: monotonic seconds for intervals and deadlines, wall-clock
 * time for what a person or another machine reads (timestamps, snapshot
 * age). One place, so every part measures time the same way. */
#ifndef INK_CLOCK_H
#define INK_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic seconds (CLOCK_MONOTONIC): only differences mean something. */
static inline double ink_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Unix time in nanoseconds (CLOCK_REALTIME). */
static inline int64_t ink_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Unix time in seconds (CLOCK_REALTIME). */
static inline double ink_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
