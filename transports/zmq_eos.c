/* The end-of-stream exchange of the zmq transport (zmq_util.h): the sender
 * side for push sinks and `inkflow send`, the receiver side for pull sources
 * and `inkflow recv`. */
#include <arpa/inet.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/rng.h"
#include "zmq_util.h"

#define setint ink__zmq_setint

/* The ack socket of a sender over ipc (ink_eos_handle accepts no other ipc
 * endpoint). */
#define INK_EOS_IPC_PREFIX "ipc:///tmp/inkflow-eos-"

/* An IPv4 or IPv6 literal: the Peer-Address of a tcp peer. */
static bool peer_is_ip(const char *peer)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return peer[0] && (inet_pton(AF_INET, peer, buf) == 1 || inet_pton(AF_INET6, peer, buf) == 1);
}

/* Where the sender binds its ack socket, and what it tells the receiver. */
static void ack_endpoints(const char *endpoint, uint64_t id, char *bind_ep, size_t nb)
{
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        snprintf(bind_ep, nb, INK_EOS_IPC_PREFIX "%llx.sock", (unsigned long long)id);
    } else if (strncmp(endpoint, "inproc://", 9) == 0) {
        snprintf(bind_ep, nb, "inproc://inkflow-eos-%llx", (unsigned long long)id);
    } else {
        /* Loopback peers get a loopback ack socket; anything else binds all
         * interfaces and lets the receiver use the marker's source address. */
        const char *h = strstr(endpoint, "://");
        h = h ? h + 3 : endpoint;
        int loop = strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost", 9) == 0;
        snprintf(bind_ep, nb, "%s", loop ? "tcp://127.0.0.1:*" : "tcp://0.0.0.0:*");
    }
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int ink_eos_send(void *ctx, void *sock, const char *endpoint, uint64_t sent, double timeout,
                 uint64_t *received, struct ink_err *err)
{
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)sock << 16) ^ sent;
    uint64_t id = ink_splitmix64(&seed);
    char bind_ep[256], last[256];
    ack_endpoints(endpoint, id, bind_ep, sizeof bind_ep);
    void *ack = zmq_socket(ctx, ZMQ_PULL);
    setint(ack, ZMQ_LINGER, 0);
    if (zmq_bind(ack, bind_ep) != 0) {
        int e = zmq_errno();
        zmq_close(ack);
        return ink_err_set(err, INK_EIO, "end of stream: bind %s: %s", bind_ep, zmq_strerror(e));
    }
    size_t ll = sizeof last;
    zmq_getsockopt(ack, ZMQ_LAST_ENDPOINT, last, &ll);
    char told[300];
    if (strncmp(last, "tcp://0.0.0.0:", 14) == 0)
        snprintf(told, sizeof told, "tcp://@peer:%s", last + 14);
    else
        snprintf(told, sizeof told, "%s", last);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, id);
    pack_str(&pk, "sent");
    msgpack_pack_uint64(&pk, sent);
    pack_str(&pk, "ack");
    pack_str(&pk, told);

    int rc = INK_EAGAIN;
    double deadline = ink_now() + timeout, next_send = 0;
    while (ink_now() < deadline) {
        if (ink_now() >= next_send) {
            /* Blocking send bounded by the deadline: the data before the
             * marker may still be draining through the HWM. */
            int ms = (int)((deadline - ink_now()) * 1000) + 1;
            setint(sock, ZMQ_SNDTIMEO, ms);
            if (zmq_send(sock, INK_EOS_TAG, strlen(INK_EOS_TAG), ZMQ_SNDMORE) < 0 ||
                zmq_send(sock, sb.data, sb.size, 0) < 0) {
                if (zmq_errno() == EAGAIN) break;
                rc =
                    ink_err_set(err, INK_EIO, "end of stream: send: %s", zmq_strerror(zmq_errno()));
                break;
            }
            next_send = ink_now() + 0.5;
        }
        zmq_pollitem_t it = {.socket = ack, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 100) <= 0) continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, ack, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        int more = zmq_msg_more(&m);
        int is_ack = more && zmq_msg_size(&m) == strlen(INK_EOS_ACK_TAG) &&
                     memcmp(zmq_msg_data(&m), INK_EOS_ACK_TAG, zmq_msg_size(&m)) == 0;
        zmq_msg_close(&m);
        if (!more) continue;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, ack, 0);
        if (is_ack) {
            msgpack_unpacked up;
            msgpack_unpacked_init(&up);
            size_t off = 0;
            uint64_t got_id = 0, got_n = 0;
            if (msgpack_unpack_next(&up, zmq_msg_data(&m), zmq_msg_size(&m), &off) ==
                    MSGPACK_UNPACK_SUCCESS &&
                up.data.type == MSGPACK_OBJECT_MAP) {
                for (uint32_t i = 0; i < up.data.via.map.size; i++) {
                    msgpack_object_kv *kv = &up.data.via.map.ptr[i];
                    if (kv->key.type != MSGPACK_OBJECT_STR ||
                        kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                        continue;
                    if (kv->key.via.str.size == 2 && !memcmp(kv->key.via.str.ptr, "id", 2))
                        got_id = kv->val.via.u64;
                    if (kv->key.via.str.size == 8 && !memcmp(kv->key.via.str.ptr, "received", 8))
                        got_n = kv->val.via.u64;
                }
            }
            msgpack_unpacked_destroy(&up);
            if (got_id == id) {
                if (received) *received = got_n;
                rc = 0;
                zmq_msg_close(&m);
                break;
            }
        }
        zmq_msg_close(&m);
        /* drain any further frames of a malformed message */
        int64_t rm = 0;
        size_t rl = sizeof rm;
        while (zmq_getsockopt(ack, ZMQ_RCVMORE, &rm, &rl) == 0 && rm) {
            zmq_msg_init(&m);
            zmq_msg_recv(&m, ack, 0);
            zmq_msg_close(&m);
        }
    }
    if (rc == INK_EAGAIN)
        ink_err_set(err, INK_EAGAIN,
                    "end of stream: no acknowledgement within %.1f s (is the receiver running an "
                    "inkflow source?); the last messages may be lost",
                    timeout);
    zmq_close(ack);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void drain_more(void *sock)
{
    int64_t rm = 0;
    size_t rl = sizeof rm;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &rm, &rl) == 0 && rm) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        zmq_msg_close(&m);
        rl = sizeof rm;
    }
}

int ink_eos_handle(void *ctx, void *sock, zmq_msg_t *tag, uint64_t received,
                   struct ink_eos_seen *seen, int *fresh, struct ink_err *err)
{
    *fresh = 0;
    if (!(zmq_msg_size(tag) == strlen(INK_EOS_TAG) &&
          memcmp(zmq_msg_data(tag), INK_EOS_TAG, zmq_msg_size(tag)) == 0)) {
        drain_more(sock);
        return 0;
    }
    zmq_msg_t body;
    zmq_msg_init(&body);
    if (zmq_msg_recv(&body, sock, 0) < 0) {
        zmq_msg_close(&body);
        return 0;
    }
    int is_more = zmq_msg_more(&body);
    char peer[128] = "";
    const char *pa = zmq_msg_gets(&body, "Peer-Address");
    if (pa) snprintf(peer, sizeof peer, "%s", pa);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    uint64_t id = 0;
    char ack_ep[300] = "";
    int ok = !is_more &&
             msgpack_unpack_next(&up, zmq_msg_data(&body), zmq_msg_size(&body), &off) ==
                 MSGPACK_UNPACK_SUCCESS &&
             up.data.type == MSGPACK_OBJECT_MAP;
    if (ok) {
        for (uint32_t i = 0; i < up.data.via.map.size; i++) {
            msgpack_object_kv *kv = &up.data.via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) continue;
            if (kv->key.via.str.size == 2 && !memcmp(kv->key.via.str.ptr, "id", 2) &&
                kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                id = kv->val.via.u64;
            if (kv->key.via.str.size == 3 && !memcmp(kv->key.via.str.ptr, "ack", 3) &&
                kv->val.type == MSGPACK_OBJECT_STR && kv->val.via.str.size < 200) {
                memcpy(ack_ep, kv->val.via.str.ptr, kv->val.via.str.size);
                ack_ep[kv->val.via.str.size] = 0;
            }
        }
    }
    msgpack_unpacked_destroy(&up);
    zmq_msg_close(&body);
    if (is_more) drain_more(sock);
    if (!ok || !ack_ep[0]) return 0;

    char ep[400];
    const char *at = strstr(ack_ep, "@peer");
    bool ip_peer = peer_is_ip(peer);
    if (at) {
        if (!ip_peer) return ink_err_set(err, INK_EIO, "end of stream: no peer address for ack");
        snprintf(ep, sizeof ep, "%.*s%s%s", (int)(at - ack_ep), ack_ep, peer, at + 5);
    } else {
        snprintf(ep, sizeof ep, "%s", ack_ep);
    }
    /* A marker that came over tcp is acknowledged only to the host it came
     * from, and one that came over ipc only to an inkflow ack socket (the
     * sender's, ack_endpoints): a peer cannot make the graph connect to third
     * parties. libzmq gives ipc peers an address too ("host:uid:gid:pid"). */
    if (ip_peer) {
        size_t pl = strlen(peer);
        if (strncmp(ep, "tcp://", 6) != 0 || strncmp(ep + 6, peer, pl) != 0 || ep[6 + pl] != ':')
            return ink_err_set(err, INK_EINVAL,
                               "end of stream: ack endpoint %s is not on the sender's host %s; "
                               "ignored",
                               ep, peer);
    } else if (peer[0] && strncmp(ep, INK_EOS_IPC_PREFIX, strlen(INK_EOS_IPC_PREFIX)) != 0) {
        return ink_err_set(err, INK_EINVAL,
                           "end of stream: ack endpoint %s of a local (ipc) peer is not an "
                           "inkflow ack socket (%s...); ignored",
                           ep, INK_EOS_IPC_PREFIX);
    }
    int known = 0;
    for (int i = 0; i < seen->n; i++) known |= seen->ids[i] == id;
    if (!known) {
        seen->ids[seen->next] = id;
        seen->next = (seen->next + 1) % 64;
        if (seen->n < 64) seen->n++;
        *fresh = 1;
    }
    void *a = zmq_socket(ctx, ZMQ_PUSH);
    setint(a, ZMQ_LINGER, 1000);
    setint(a, ZMQ_SNDTIMEO, 1000);
    if (zmq_connect(a, ep) != 0) {
        int e = zmq_errno();
        zmq_close(a);
        return ink_err_set(err, INK_EIO, "end of stream: connect %s: %s", ep, zmq_strerror(e));
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, id);
    pack_str(&pk, "received");
    msgpack_pack_uint64(&pk, received);
    zmq_send(a, INK_EOS_ACK_TAG, strlen(INK_EOS_ACK_TAG), ZMQ_SNDMORE);
    zmq_send(a, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(a); /* if this ack is lost (libzmq#4660) the sender re-sends the marker */
    return 1;
}
