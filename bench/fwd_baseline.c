/* fwd_baseline: the ceiling for the passthrough row. A plain C forwarder that
 * only pulls, decodes (msgpack-c, one persistent zone: no malloc per frame),
 * re-encodes (msgpack_pack_object into a reused buffer) and pushes the same
 * frames. Same three-process topology as the engine's row.
 *
 *   fwd_baseline IN_ENDPOINT OUT_ENDPOINT   (binds both) */
#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "../transports/zmq_util.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fwd_baseline IN OUT\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    struct ink_zmq_conf ci = {.hwm = 10000, .linger = 1, .bind = argv[1]};
    struct ink_zmq_conf co = {.hwm = 10000, .linger = 1, .bind = argv[2]};
    struct ink_err err = {0};
    void *in = ink_zmq_open(ctx, ZMQ_PULL, &ci, &err);
    void *out = in ? ink_zmq_open(ctx, ZMQ_PUSH, &co, &err) : NULL;
    if (!in || !out) {
        fprintf(stderr, "fwd_baseline: %s\n", err.msg);
        return 1;
    }
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    struct ink_eos_seen seen = {0};
    uint64_t n = 0;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, in, 0) < 0) break;
        if (zmq_msg_more(&m)) { /* end-of-stream marker: acknowledge, like the engine */
            int fresh;
            ink_eos_handle(ctx, in, &m, n, &seen, &fresh, &err);
            zmq_msg_close(&m);
            continue;
        }
        msgpack_object obj;
        size_t off = 0;
        msgpack_zone_clear(&zone);
        if (msgpack_unpack(zmq_msg_data(&m), zmq_msg_size(&m), &off, &zone, &obj) ==
            MSGPACK_UNPACK_SUCCESS) {
            msgpack_sbuffer_clear(&sb);
            msgpack_pack_object(&pk, obj);
            zmq_send(out, sb.data, sb.size, 0);
            n++;
        }
        zmq_msg_close(&m);
    }
    return 0;
}
