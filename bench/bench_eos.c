/* The receiver's per-record price of the end-of-stream negotiation
 * (docs/wire-format.md#end-of-stream): ink_eos_notice on a record from a
 * plain sender and from one that negotiates, against decoding the same
 * 8-dim record (ink_decode_msgpack, what a pull source does to every record
 * anyway), in the same run. Prints `name value unit` lines.
 *
 *   bench_eos [N]        (default N = 5,000,000 calls each) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/clock.h"
#include "../engine/codec.h"
#include "../transports/zmq_util.h"

static zmq_msg_t one_record(void *ctx, const char *meta, const struct ink_buf *rec)
{
    void *s = zmq_socket(ctx, ZMQ_PUSH), *p = zmq_socket(ctx, ZMQ_PULL);
    if (meta) zmq_setsockopt(s, 95 /* ZMQ_METADATA */, meta, strlen(meta));
    char ep[256];
    size_t l = sizeof ep;
    zmq_bind(p, "tcp://127.0.0.1:*");
    zmq_getsockopt(p, ZMQ_LAST_ENDPOINT, ep, &l);
    zmq_connect(s, ep);
    zmq_send(s, rec->p, rec->len, 0);
    zmq_msg_t m;
    zmq_msg_init(&m);
    zmq_msg_recv(&m, p, 0);
    return m;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000000;
    void *ctx = zmq_ctx_new();
    struct ink_record r = {.flags = INK_HAS_X};
    double x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    r.x = x;
    r.dim = 8;
    struct ink_buf b = {0};
    ink_encode_msgpack(&r, 0, &b);
    zmq_msg_t plain = one_record(ctx, NULL, &b);
    /* an already greeted sender: its id is in `seen`, no hello is sent */
    zmq_msg_t nego = one_record(ctx, INK_EOS_PROPERTY ":1 0123456789abcdef tcp://127.0.0.1:9", &b);
    struct ink_eos_seen seen = {.hellos = {0x0123456789abcdefULL}, .nh = 1, .rid = 1};
    struct ink_err err = {0};
    struct ink_decoder dec;
    ink_decoder_init(&dec, NULL);
    struct ink_record out;
    long sink = 0;
    double t = ink_now();
    for (long i = 0; i < n; i++)
        sink += ink_decode_msgpack(&dec, zmq_msg_data(&plain), zmq_msg_size(&plain), &out);
    double dec_ns = (ink_now() - t) / (double)n * 1e9;
    t = ink_now();
    for (long i = 0; i < n; i++) sink += ink_eos_notice(ctx, &plain, &seen, &err);
    double plain_ns = (ink_now() - t) / (double)n * 1e9;
    t = ink_now();
    for (long i = 0; i < n; i++) sink += ink_eos_notice(ctx, &nego, &seen, &err);
    double nego_ns = (ink_now() - t) / (double)n * 1e9;
    printf("decode_ns %.1f ns\nnotice_plain_ns %.1f ns\nnotice_negotiating_ns %.1f ns\n"
           "check %ld x\n",
           dec_ns, plain_ns, nego_ns, sink);
    ink_decoder_fini(&dec);
    zmq_msg_close(&plain);
    zmq_msg_close(&nego);
    ink_buf_fini(&b);
    return 0;
}
