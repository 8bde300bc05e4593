/* ink_count: receive N frames on a PULL socket (connects) and print the rate
 * between the first and the last: "count N seconds S rate R". With --gaps,
 * also the largest time between two consecutive records and how many gaps
 * exceeded 1 ms and 5 ms: "maxgap_ms G over1ms A over5ms B" (a snapshot
 * that stalls the sender shows here); with --gaps FILE, also every record's
 * arrival time (CLOCK_MONOTONIC seconds, native doubles) into FILE, for
 * bench/rows_state.py to lay over inkflow's snapshot windows
 * (INKFLOW_SNAPSHOT_TRACE, docs/state.md). Exit 1 when fewer than N arrive
 * within the timeout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "../transports/zmq_util.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ink_count ENDPOINT N [TIMEOUT_S [--gaps [TIMES_FILE]]]\n");
        return 2;
    }
    long long n = atoll(argv[2]);
    double timeout = argc > 3 ? atof(argv[3]) : 60;
    int gaps = argc > 4 && strcmp(argv[4], "--gaps") == 0;
    const char *times_path = gaps && argc > 5 ? argv[5] : NULL;
    double *times = NULL;
    if (times_path && n > 0 && !(times = malloc((size_t)n * sizeof *times))) {
        fprintf(stderr, "ink_count: out of memory for %lld times\n", n);
        return 1;
    }
    double prev = 0, maxgap = 0;
    long long over1 = 0, over5 = 0;
    void *ctx = zmq_ctx_new();
    struct ink_zmq_conf c = {
        .hwm = 10000, .linger = 0, .connect = argv[1], .max_message_bytes = 1 << 20};
    struct ink_err err = {0};
    void *s = ink_zmq_open(ctx, ZMQ_PULL, &c, &err);
    if (!s) {
        fprintf(stderr, "ink_count: %s\n", err.msg);
        return 1;
    }
    int ms = (int)(timeout * 1000);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    long long got = 0;
    double t0 = 0, t1 = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    int in_multi = 0;
    while (got < n) {
        if (zmq_msg_recv(&m, s, 0) < 0) break;
        int more = zmq_msg_more(&m);
        if (more || in_multi) { /* control messages (several frames) are not records */
            in_multi = more;
            continue;
        }
        if (got == 0) t0 = ink_now();
        if (gaps) {
            double t = ink_now();
            if (got > 0) {
                double gap = t - prev;
                if (gap > maxgap) maxgap = gap;
                over1 += gap > 1e-3;
                over5 += gap > 5e-3;
            }
            prev = t;
            if (times) times[got] = t;
        }
        got++;
    }
    t1 = ink_now();
    zmq_msg_close(&m);
    printf("count %lld seconds %.6f rate %.1f\n", got, t1 - t0,
           got > 1 ? (double)(got - 1) / (t1 - t0) : 0.0);
    if (gaps) printf("maxgap_ms %.3f over1ms %lld over5ms %lld\n", 1e3 * maxgap, over1, over5);
    if (times) {
        FILE *f = fopen(times_path, "wb");
        if (!f || fwrite(times, sizeof *times, (size_t)got, f) != (size_t)got || fclose(f)) {
            fprintf(stderr, "ink_count: %s: cannot write the times\n", times_path);
            return 1;
        }
        free(times);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return got == n ? 0 : 1;
}
