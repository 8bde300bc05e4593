/* ink_blast: send N msgpack records of dimension DIM to a PUSH endpoint as
 * fast as possible, then (with --eos) the end-of-stream exchange, whose
 * acknowledgement proves that the receiver has handled every record.
 * Used by the benchmarks and the memory test.
 *
 *   ink_blast ENDPOINT N DIM [--bind] [--eos] [--pool K]
 * Prints "sent N in S s (R/s)" on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/codec.h"
#include "../transports/zmq_util.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: ink_blast ENDPOINT N DIM [--bind] [--eos] [--pool K]\n");
        return 2;
    }
    const char *ep = argv[1];
    long long n = atoll(argv[2]);
    int dim = atoi(argv[3]);
    int bind = 0, eos = 0, pool = 1024;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--bind"))
            bind = 1;
        else if (!strcmp(argv[i], "--eos"))
            eos = 1;
        else if (!strcmp(argv[i], "--pool") && i + 1 < argc)
            pool = atoi(argv[++i]);
    }
    if (dim < 1 || dim > 1024 || pool < 1) return 2;
    /* a pool of distinct pre-encoded frames, so encoding is not measured */
    struct ink_buf *frames = calloc((size_t)pool, sizeof *frames);
    double *x = calloc((size_t)dim, sizeof *x);
    for (int k = 0; k < pool; k++) {
        for (int j = 0; j < dim; j++) x[j] = (double)((k * 31 + j * 17) % 1000) / 7.0 - 50.0;
        struct ink_record r = {0};
        r.x = x;
        r.dim = (uint32_t)dim;
        r.flags = INK_HAS_X;
        ink_encode_msgpack(&r, 0, &frames[k]);
    }
    void *ctx = zmq_ctx_new();
    struct ink_zmq_conf c = {.hwm = 100000, .linger = 5};
    if (bind)
        c.bind = (char *)ep;
    else
        c.connect = (char *)ep;
    struct ink_err err = {0};
    void *s = ink_zmq_open(ctx, ZMQ_PUSH, &c, &err);
    if (!s) {
        fprintf(stderr, "ink_blast: %s\n", err.msg);
        return 1;
    }
    double t0 = ink_now();
    for (long long i = 0; i < n; i++) {
        const struct ink_buf *f = &frames[i % pool];
        while (zmq_send(s, f->p, f->len, 0) < 0)
            if (zmq_errno() != EINTR) {
                fprintf(stderr, "ink_blast: send: %s\n", zmq_strerror(zmq_errno()));
                return 1;
            }
    }
    int rc = 0;
    if (eos) {
        uint64_t got = 0;
        if (ink_eos_send(ctx, s, ep, (uint64_t)n, 60, &got, &err)) {
            fprintf(stderr, "ink_blast: %s\n", err.msg);
            rc = 1;
        }
    }
    double el = ink_now() - t0;
    fprintf(stderr, "ink_blast: sent %lld in %.3f s (%.0f/s)\n", n, el, (double)n / el);
    zmq_close(s);
    zmq_ctx_term(ctx);
    for (int k = 0; k < pool; k++) ink_buf_fini(&frames[k]);
    free(frames);
    free(x);
    return rc;
}
