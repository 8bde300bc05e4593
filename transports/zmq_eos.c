/* The end-of-stream exchange of the zmq transport (zmq_util.h,
 * docs/wire-format.md#end-of-stream): the sender side for push sinks and
 * `inkflow send`, the receiver side for pull sources and `inkflow recv`.
 *
 * Only receivers that take part get the marker: a negotiating sender binds
 * its ack socket when it opens and names it in a ZMTP property of its data
 * socket (INK_EOS_PROPERTY); an inkflow receiver reads that property from
 * the first data message of each sender and says hello on the ack socket.
 * At the end, in `eos: auto`, the sender sends the marker only when every
 * connected receiver said hello, and waits for each one's acknowledgement;
 * a plain PULL consumer never sees a frame that is not a record. */
#include <arpa/inet.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

static uint64_t fresh_id(const void *salt);

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

/* Where to answer a sender whose ack socket is `ack_ep` (as told), the
 * data having come from `peer` (its Peer-Address). A sender over tcp is
 * answered only on the host it came from, one over ipc only on an inkflow
 * ack socket (the sender's, ack_endpoints): a peer cannot make the graph
 * connect to third parties. libzmq gives ipc peers an address too
 * ("host:uid:gid:pid"). */
static int resolve_ack(const char *ack_ep, const char *peer, char *ep, size_t n,
                       struct ink_err *err)
{
    const char *at = strstr(ack_ep, "@peer");
    bool ip_peer = peer_is_ip(peer);
    if (at) {
        if (!ip_peer) return ink_err_set(err, INK_EIO, "end of stream: no peer address for ack");
        snprintf(ep, n, "%.*s%s%s", (int)(at - ack_ep), ack_ep, peer, at + 5);
    } else {
        snprintf(ep, n, "%s", ack_ep);
    }
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
    return 0;
}

/* [tag, {id, received (acks only), rid}] to a sender's ack socket. */
static int say(void *ctx, const char *ep, const char *tag, uint64_t id, bool with_received,
               uint64_t received, struct ink_eos_seen *seen, struct ink_err *err)
{
    if (!seen->rid) seen->rid = fresh_id(seen);
    void *a = zmq_socket(ctx, ZMQ_PUSH);
    if (!a) return ink_err_set(err, INK_EIO, "end of stream: %s", zmq_strerror(zmq_errno()));
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
    msgpack_pack_map(&pk, with_received ? 3 : 2);
    pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, id);
    if (with_received) {
        pack_str(&pk, "received");
        msgpack_pack_uint64(&pk, received);
    }
    pack_str(&pk, "rid");
    msgpack_pack_uint64(&pk, seen->rid);
    zmq_send(a, tag, strlen(tag), ZMQ_SNDMORE);
    zmq_send(a, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    zmq_close(a);
    return 0;
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
    if (resolve_ack(ack_ep, peer, ep, sizeof ep, err)) return err->code;
    int known = 0;
    for (int i = 0; i < seen->n; i++) known |= seen->ids[i] == id;
    if (!known) {
        seen->ids[seen->next] = id;
        seen->next = (seen->next + 1) % 64;
        if (seen->n < 64) seen->n++;
        *fresh = 1;
    }
    /* if this ack is lost (libzmq#4660) the sender re-sends the marker */
    if (say(ctx, ep, INK_EOS_ACK_TAG, id, true, received, seen, err)) return err->code;
    return 1;
}

int ink_eos_notice(void *ctx, zmq_msg_t *m, struct ink_eos_seen *seen, struct ink_err *err)
{
    const char *v = zmq_msg_gets(m, INK_EOS_PROPERTY);
    if (!v || v[0] != '1' || v[1] != ' ') return 0;
    /* the same sender as the previous message (the pointer alone could be a
     * freed property's address reused by another connection) */
    if (v == seen->last_prop && strncmp(v + 2, seen->last_id, 16) == 0) return 0;
    char *end;
    uint64_t id = strtoull(v + 2, &end, 16);
    if (end != v + 18 || *end != ' ') return 0;
    seen->last_prop = v;
    memcpy(seen->last_id, v + 2, 16);
    for (int i = 0; i < seen->nh; i++)
        if (seen->hellos[i] == id) return 0;
    seen->hellos[seen->nexth] = id;
    seen->nexth = (seen->nexth + 1) % 64;
    if (seen->nh < 64) seen->nh++;
    char ack_ep[300], ep[400];
    snprintf(ack_ep, sizeof ack_ep, "%s", end + 1);
    const char *pa = zmq_msg_gets(m, "Peer-Address");
    if (resolve_ack(ack_ep, pa ? pa : "", ep, sizeof ep, err)) return err->code;
    if (say(ctx, ep, INK_EOS_HELLO_TAG, id, false, 0, seen, err)) return err->code;
    return 1;
}

/* A fresh 64-bit id (senders and receivers). */
static uint64_t fresh_id(const void *salt)
{
    static uint64_t counter;
    uint64_t seed = (uint64_t)ink_wall_ns() ^ ((uint64_t)(uintptr_t)salt << 16) ^
                    ((uint64_t)getpid() << 40) ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    uint64_t id = ink_splitmix64(&seed);
    return id ? id : 1;
}

/* Bind the ack socket for a sender of `id` whose data endpoint is
 * `endpoint`; `told` is what receivers are told. */
static void *bind_ack(void *ctx, const char *endpoint, uint64_t id, char *told, size_t ntold,
                      struct ink_err *err)
{
    char bind_ep[256], last[256];
    ack_endpoints(endpoint, id, bind_ep, sizeof bind_ep);
    void *ack = zmq_socket(ctx, ZMQ_PULL);
    if (!ack) {
        ink_err_set(err, INK_EIO, "end of stream: zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    setint(ack, ZMQ_LINGER, 0);
    if (zmq_bind(ack, bind_ep) != 0) {
        int e = zmq_errno();
        zmq_close(ack);
        ink_err_set(err, INK_EIO, "end of stream: bind %s: %s", bind_ep, zmq_strerror(e));
        return NULL;
    }
    size_t ll = sizeof last;
    zmq_getsockopt(ack, ZMQ_LAST_ENDPOINT, last, &ll);
    if (strncmp(last, "tcp://0.0.0.0:", 14) == 0)
        snprintf(told, ntold, "tcp://@peer:%s", last + 14);
    else
        snprintf(told, ntold, "%s", last);
    return ack;
}

static bool set_has(const uint64_t *v, int n, uint64_t x)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x) return true;
    return false;
}

static void set_add(uint64_t *v, int *n, uint64_t x)
{
    if (*n < 64 && !set_has(v, *n, x)) v[(*n)++] = x;
}

enum { MSG_OTHER, MSG_ACK, MSG_HELLO };

/* One message from the ack socket (poll first): an ack {id, received, rid}
 * or a hello {id, rid}; the rest is drained and ignored. */
static int read_ack_msg(void *ack, uint64_t *id, uint64_t *received, uint64_t *rid)
{
    *id = *received = *rid = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, ack, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return MSG_OTHER;
    }
    int more = zmq_msg_more(&m), kind = MSG_OTHER;
    size_t n = zmq_msg_size(&m);
    if (more && n == strlen(INK_EOS_ACK_TAG) && !memcmp(zmq_msg_data(&m), INK_EOS_ACK_TAG, n))
        kind = MSG_ACK;
    if (more && n == strlen(INK_EOS_HELLO_TAG) && !memcmp(zmq_msg_data(&m), INK_EOS_HELLO_TAG, n))
        kind = MSG_HELLO;
    zmq_msg_close(&m);
    if (!more) return MSG_OTHER;
    zmq_msg_init(&m);
    zmq_msg_recv(&m, ack, 0);
    bool has_id = false;
    if (kind != MSG_OTHER && !zmq_msg_more(&m)) {
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0;
        if (msgpack_unpack_next(&up, zmq_msg_data(&m), zmq_msg_size(&m), &off) ==
                MSGPACK_UNPACK_SUCCESS &&
            up.data.type == MSGPACK_OBJECT_MAP) {
            for (uint32_t i = 0; i < up.data.via.map.size; i++) {
                msgpack_object_kv *kv = &up.data.via.map.ptr[i];
                if (kv->key.type != MSGPACK_OBJECT_STR ||
                    kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                    continue;
                const char *k = kv->key.via.str.ptr;
                uint32_t kl = kv->key.via.str.size;
                if (kl == 2 && !memcmp(k, "id", 2)) *id = kv->val.via.u64, has_id = true;
                if (kl == 8 && !memcmp(k, "received", 8)) *received = kv->val.via.u64;
                if (kl == 3 && !memcmp(k, "rid", 3)) *rid = kv->val.via.u64;
            }
        }
        msgpack_unpacked_destroy(&up);
    }
    zmq_msg_close(&m);
    drain_more(ack);
    return has_id ? kind : MSG_OTHER;
}

/* Hellos and acks of sender `id` waiting on its ack socket. */
static void take(void *ack, uint64_t id, uint64_t *hello, int *nhello, uint64_t *acked, int *nacked,
                 uint64_t *received, int wait_ms)
{
    zmq_pollitem_t it = {.socket = ack, .events = ZMQ_POLLIN};
    while (zmq_poll(&it, 1, wait_ms) > 0) {
        uint64_t got_id, n, rid;
        int kind = read_ack_msg(ack, &got_id, &n, &rid);
        if (got_id != id) continue;
        if (kind == MSG_HELLO && hello) set_add(hello, nhello, rid);
        if (kind == MSG_ACK) {
            /* an older receiver sends no rid: it counts as one */
            set_add(acked, nacked, rid);
            if (received) *received = n;
        }
        wait_ms = 0;
    }
}

/* Send the marker (again every 0.5 s: PUSH spreads it over the receivers)
 * until `need` receivers (or, with hello, all that said hello) have
 * acknowledged, or the timeout. */
static int exchange(void *sock, void *ack, uint64_t id, const char *told, uint64_t sent,
                    double timeout, int need, uint64_t *hello, int *nhello, uint64_t *received,
                    struct ink_err *err)
{
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

    uint64_t acked[64];
    int nacked = 0, rc = INK_EAGAIN;
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
        take(ack, id, hello, nhello, acked, &nacked, received, 100);
        if (nacked >= need) {
            rc = 0;
            break;
        }
    }
    if (rc == INK_EAGAIN) {
        int want = need;
        ink_err_set(
            err, INK_EAGAIN,
            "end of stream: %d of %d receiver%s acknowledged within %.1f s (is the receiver "
            "running an inkflow source?); the last messages may be lost",
            nacked, want, want == 1 ? "" : "s", timeout);
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int ink_eos_send(void *ctx, void *sock, const char *endpoint, uint64_t sent, double timeout,
                 uint64_t *received, struct ink_err *err)
{
    uint64_t id = fresh_id(sock);
    char told[300];
    void *ack = bind_ack(ctx, endpoint, id, told, sizeof told, err);
    if (!ack) return err->code;
    int rc = exchange(sock, ack, id, told, sent, timeout, 1, NULL, NULL, received, err);
    zmq_close(ack);
    return rc;
}

int ink_eos_sender_open(struct ink_eos_sender *s, void *ctx, const char *endpoint, const char *name,
                        struct ink_err *err)
{
    memset(s, 0, sizeof *s);
    s->id = fresh_id(s);
    s->name = name;
    s->ack = bind_ack(ctx, endpoint, s->id, s->told, sizeof s->told, err);
    if (!s->ack) return err->code;
    snprintf(s->meta, sizeof s->meta, INK_EOS_PROPERTY ":1 %016llx %s", (unsigned long long)s->id,
             s->told);
    return 0;
}

void ink_eos_sender_close(struct ink_eos_sender *s)
{
    if (s->ack) zmq_close(s->ack);
    s->ack = NULL;
}

/* How long after a receiver could have read its first record the sender
 * waits for its hello (docs/wire-format.md#end-of-stream). */
#define HELLO_WINDOW 1.0

int ink_eos_finish(struct ink_eos_sender *s, void *sock, int mode, uint64_t sent, double timeout,
                   bool stopping, uint64_t *received, char *note, size_t nnote, struct ink_err *err)
{
    note[0] = 0;
    if (mode == INK_EOS_OFF || !s->ack) {
        snprintf(note, nnote, "end of stream not sent (eos: false)");
        return 1;
    }
    uint64_t acked[64];
    int nacked = 0;
    take(s->ack, s->id, s->hello, &s->nhello, acked, &nacked, NULL, 0);
    if (mode == INK_EOS_AUTO) {
        if (sent == 0 && s->nhello == 0) {
            snprintf(note, nnote,
                     "end of stream not sent: nothing was sent, so no receiver could say it "
                     "takes part (eos: true sends it anyway)");
            return 1;
        }
        struct ink_zmq_stats st;
        ink_zmq_stats(s->name, &st);
        double deadline = ink_now() + timeout;
        /* data waiting for a receiver that has not connected yet */
        while (st.open == 0 && s->nhello == 0 && ink_now() < deadline) {
            take(s->ack, s->id, s->hello, &s->nhello, acked, &nacked, NULL, 50);
            ink_zmq_stats(s->name, &st);
        }
        if (st.open == 0 && s->nhello == 0)
            return ink_err_set(err, INK_EAGAIN,
                               "end of stream: no receiver connected (handshake done) within "
                               "%.1f s; the %llu messages sent may be lost",
                               timeout, (unsigned long long)sent);
        /* a receiver says hello once it has read a first record */
        double t_ref = s->first_send > st.last_open ? s->first_send : st.last_open;
        double until = stopping ? 0 : t_ref + HELLO_WINDOW;
        if (until > deadline) until = deadline;
        while ((uint64_t)s->nhello < st.open && ink_now() < until) {
            take(s->ack, s->id, s->hello, &s->nhello, acked, &nacked, NULL, 20);
            ink_zmq_stats(s->name, &st);
        }
        if (s->nhello == 0) {
            snprintf(note, nnote,
                     "end of stream not sent: no receiver takes part in the exchange (a plain "
                     "consumer; eos: true sends it anyway)");
            return 1;
        }
        if ((uint64_t)s->nhello < st.open) {
            snprintf(note, nnote,
                     "end of stream not sent: %d of %llu connected receivers take part in the "
                     "exchange, and the marker could reach one that does not (eos: true sends it "
                     "anyway)",
                     s->nhello, (unsigned long long)st.open);
            return 1;
        }
    }
    /* Wait for the receivers connected now: a hello from one that has left
     * (restarted, say) is not waited for, and one that acknowledges and
     * leaves still counts. */
    struct ink_zmq_stats st;
    ink_zmq_stats(s->name, &st);
    uint64_t need = st.open < (uint64_t)s->nhello ? st.open : (uint64_t)s->nhello;
    return exchange(sock, s->ack, s->id, s->told, sent, timeout, need ? (int)need : 1, s->hello,
                    &s->nhello, received, err);
}
