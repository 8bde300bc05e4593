/* ZeroMQ transport: the `zmq` source (pull, sub, router) and sink (push, pub). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/codec.h"
#include "../engine/graph.h"
#include "zmq_util.h"

struct zmq_src {
    void *sock;
    const struct ink_zmq_conf *c;
    struct ink_decoder dec;
    struct ink_node *reply_node;
    struct ink_eos_seen seen;
    int64_t eos_count;
    uint64_t received; /* data frames */
};

static const int src_types[] = {
    [INK_ZMQ_PULL] = ZMQ_PULL, [INK_ZMQ_SUB] = ZMQ_SUB, [INK_ZMQ_ROUTER] = ZMQ_ROUTER};

static struct ink_limits zlimits(const struct ink_graph *g, const struct ink_zmq_conf *c)
{
    const struct ink_engine_conf *e = &g->cfg->engine;
    struct ink_limits l = INK_LIMITS_DEFAULT;
    l.max_frame = (uint32_t)c->max_message_bytes;
    if (e->max_dim > 0) l.max_dim = (uint32_t)e->max_dim;
    if (e->max_depth > 0) l.max_depth = (uint32_t)e->max_depth;
    if (e->max_record_bytes > 0) l.max_extra = (uint32_t)e->max_record_bytes;
    return l;
}

/* Open a node's socket: key paths relative to the config, connection events
 * counted under the node's name, and a warning for a socket open to every
 * interface without CURVE (docs/security.md). */
static void *open_node(struct ink_node *n, int zt, struct ink_zmq_conf *c, struct ink_err *err)
{
    c->base_dir = n->g->cfg->base_dir;
    const char *ep = c->bind ? c->bind : c->connect;
    if (c->bind && !c->curve.set &&
        (strncmp(ep, "tcp://*", 7) == 0 || strncmp(ep, "tcp://0.0.0.0", 13) == 0 ||
         strncmp(ep, "tcp://[::]", 10) == 0))
        fprintf(stderr,
                "inkflow: [%s] warning: %s accepts connections from every interface without "
                "CURVE: any host that can reach it can %s; bind to 127.0.0.1 or set curve "
                "(docs/security.md)\n",
                n->name, ep,
                n->kind == INK_NODE_SOURCE ? "feed records into the graph" : "read its output");
    return ink_zmq_open_node(n->g->zctx, zt, c, n->name, err);
}

/* What the security thread saw on this socket so far (/metrics). */
static void zmq_conn(struct ink_node *n, uint64_t out[INK_CONN__COUNT])
{
    struct ink_zmq_stats st;
    ink_zmq_stats(n->name, &st);
    out[INK_CONN_ACCEPTED] = st.accepted;
    out[INK_CONN_ADMITTED] = st.handshakes;
    out[INK_CONN_REFUSED_AUTH] = st.refused_auth;
    out[INK_CONN_REFUSED_HANDSHAKE] = st.refused_protocol;
    out[INK_CONN_DISCONNECTED] = st.disconnects;
}

/* At close: what the security thread saw on this socket. */
static void log_conn_stats(struct ink_node *n)
{
    struct ink_zmq_stats st;
    ink_zmq_stats(n->name, &st);
    fprintf(stderr,
            "inkflow: [%s] connections: %llu accepted, %llu admitted, refused %llu "
            "(auth %llu, handshake %llu), %llu disconnected\n",
            n->name, (unsigned long long)st.accepted, (unsigned long long)st.handshakes,
            (unsigned long long)(st.refused_auth + st.refused_protocol),
            (unsigned long long)st.refused_auth, (unsigned long long)st.refused_protocol,
            (unsigned long long)st.disconnects);
}

static int zsrc_open(struct ink_node *n, struct ink_err *err)
{
    struct zmq_src *z = calloc(1, sizeof *z);
    if (!z) return ink_err_set(err, INK_ENOMEM, "out of memory");
    n->impl = z;
    z->c = n->nc->conf;
    struct ink_limits lim = zlimits(n->g, z->c);
    if (ink_decoder_init(&z->dec, &lim)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    if (ink_decoder_set_fields(&z->dec, &z->c->fields, err)) return err->code;
    if (z->c->reply_from) {
        for (int i = 0; i < n->g->n; i++)
            if (strcmp(n->g->nodes[i].name, z->c->reply_from) == 0) z->reply_node = &n->g->nodes[i];
        if (!z->reply_node)
            return ink_err_set(err, INK_EINVAL, "reply_from '%s' is not a node", z->c->reply_from);
    }
    /* The socket refuses (disconnects) frames over 4x the cap; frames between
     * the cap and that are delivered, so they can be counted as too_large. */
    struct ink_zmq_conf sc = *z->c;
    sc.max_message_bytes = z->c->max_message_bytes * 4;
    z->sock = open_node(n, src_types[z->c->socket], &sc, err);
    return z->sock ? 0 : INK_EIO;
}

static void *zsrc_socket(struct ink_node *n)
{
    return ((struct zmq_src *)n->impl)->sock;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Decode one payload and dispatch it. */
static int handle_payload(struct ink_node *n, struct zmq_src *z, zmq_msg_t *m)
{
    const uint8_t *p = zmq_msg_data(m);
    size_t len = zmq_msg_size(m);
    struct ink_record rec;
    if (len > z->dec.lim.max_frame) {
        const char *peer = zmq_msg_gets(m, "Peer-Address"); /* only here: a map lookup */
        char msg[200];
        snprintf(msg, sizeof msg, "frame of %zu bytes from %s, over max_message_bytes %u", len,
                 peer ? peer : "an unknown peer", z->dec.lim.max_frame);
        ink__source_reject(n, INK_REJ_TOO_LARGE, msg, p, len);
        return 0;
    }
    enum ink_reject why = ink_decode_msgpack(&z->dec, p, len, &rec);
    if (why != INK_REJ_NONE) {
        ink__source_reject(n, why, z->dec.why, p, len);
        return 0;
    }
    if (!(rec.flags & INK_HAS_T)) {
        rec.t = wall_ns();
        rec.flags |= INK_HAS_T;
    }
    return ink__source_emit(n, &rec);
}

static void drain_frames(void *sock)
{
    int64_t more = 0;
    size_t l = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &l) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, 0);
        zmq_msg_close(&m);
        l = sizeof more;
    }
}

static int router_one(struct ink_node *n, struct zmq_src *z, zmq_msg_t *id)
{
    /* [identity][empty delimiter if REQ][payload] */
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (!zmq_msg_more(id) || zmq_msg_recv(&m, z->sock, 0) < 0) {
        zmq_msg_close(&m);
        return 0;
    }
    bool delim = false;
    if (zmq_msg_size(&m) == 0 && zmq_msg_more(&m)) {
        delim = true;
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->sock, 0) < 0) {
            zmq_msg_close(&m);
            return 0;
        }
    }
    int rc = 0;
    ink__request_begin(n->g, z->reply_node);
    if (zmq_msg_more(&m)) {
        drain_frames(z->sock);
        ink__source_reject(n, INK_REJ_DECODE, "request of more than one frame", NULL, 0);
    } else {
        z->received++;
        rc = handle_payload(n, z, &m);
    }
    zmq_msg_close(&m);
    size_t len;
    const uint8_t *reply = ink__request_end(n->g, &len);
    zmq_send(z->sock, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (delim) zmq_send(z->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (zmq_send(z->sock, reply, len, ZMQ_DONTWAIT) < 0) {
        n->c.dropped++;
        ink__log(n, "reply could not be sent: %s", zmq_strerror(zmq_errno()));
    }
    return rc;
}

static int zsrc_pump(struct ink_node *n, int budget)
{
    struct zmq_src *z = n->impl;
    int done = 0;
    while (done < budget && !n->g->stop) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        done++;
        int rc = 0;
        if (z->c->socket == INK_ZMQ_ROUTER) {
            rc = router_one(n, z, &m);
        } else if (zmq_msg_more(&m)) {
            struct ink_err err = {0};
            int fresh = 0;
            int e = ink_eos_handle(n->g->zctx, z->sock, &m, z->received, &z->seen, &fresh, &err);
            if (e == 0) {
                ink__source_reject(n, INK_REJ_DECODE, "multi-frame message (records are one frame)",
                                   NULL, 0);
            } else if (e < 0) {
                ink__log(n, "%s", err.msg);
            } else if (fresh) {
                z->eos_count++;
                ink__log(n, "end of stream from a sender (%llu records received so far)",
                         (unsigned long long)z->received);
                if (z->c->stop_after_eos > 0 && z->eos_count >= z->c->stop_after_eos) {
                    zmq_msg_close(&m);
                    return -1;
                }
            }
        } else {
            z->received++;
            rc = handle_payload(n, z, &m);
        }
        zmq_msg_close(&m);
        if (rc < 0) return rc;
    }
    return done;
}

static void zsrc_close(struct ink_node *n)
{
    struct zmq_src *z = n->impl;
    if (!z) return;
    if (z->sock) log_conn_stats(n);
    if (z->sock) zmq_close(z->sock);
    ink_decoder_fini(&z->dec);
    free(z);
    n->impl = NULL;
}

const struct ink_source_impl ink__zmq_source = {
    .open = zsrc_open,
    .socket = zsrc_socket,
    .pump = zsrc_pump,
    .close = zsrc_close,
    .finite = false,
    .conn = zmq_conn,
};

/* ---- sink -------------------------------------------------------------------- */

struct zmq_snk {
    void *sock;
    const struct ink_zmq_conf *c;
    struct ink_buf buf;
    struct ink_zmq_conf conf; /* a copy, with base_dir set */
    double stop_deadline;
    bool pub; /* else push */
};

static int zsnk_open(struct ink_node *n, struct ink_err *err)
{
    struct zmq_snk *z = calloc(1, sizeof *z);
    if (!z) return ink_err_set(err, INK_ENOMEM, "out of memory");
    n->impl = z;
    z->c = n->nc->conf;
    /* a sink's `socket` indexes its own choices: 0 push, 1 pub */
    z->pub = z->c->socket == INK_ZMQ_SINK_PUB;
    z->conf = *z->c;
    z->sock = open_node(n, z->pub ? ZMQ_PUB : ZMQ_PUSH, &z->conf, err);
    return z->sock ? 0 : INK_EIO;
}

static int zsnk_write(struct ink_node *n, const struct ink_record *rec)
{
    struct zmq_snk *z = n->impl;
    ink_buf_reset(&z->buf);
    if (ink_encode_msgpack(rec, 0, &z->buf)) {
        n->c.dropped++;
        return 1;
    }
    for (;;) {
        if (zmq_send(z->sock, z->buf.p, z->buf.len, ZMQ_DONTWAIT) >= 0) return 0;
        int e = zmq_errno();
        if (e == EINTR) continue;
        if (e != EAGAIN || z->pub) {
            n->c.dropped++; /* pub at its high-water mark, or a socket error */
            if (e != EAGAIN) ink__log(n, "send failed: %s", zmq_strerror(e));
            return 1;
        }
        /* push at the high-water mark: block (backpressure), but not past the
         * grace period once a stop was requested */
        if (n->g->stop) {
            double t = ink_now();
            if (z->stop_deadline == 0) z->stop_deadline = t + n->g->cfg->engine.grace;
            if (t > z->stop_deadline) {
                n->c.dropped++;
                return 1;
            }
        }
        zmq_pollitem_t it = {.socket = z->sock, .events = ZMQ_POLLOUT};
        zmq_poll(&it, 1, 100);
    }
}

static void zsnk_flush(struct ink_node *n)
{
    (void)n;
}

static void zsnk_finish(struct ink_node *n)
{
    struct zmq_snk *z = n->impl;
    if (z->pub || !z->c->eos) return;
    double timeout = z->c->eos_timeout;
    if (n->g->stop && timeout > n->g->cfg->engine.grace) timeout = n->g->cfg->engine.grace;
    struct ink_err err = {0};
    uint64_t got = 0;
    const char *ep = z->c->bind ? z->c->bind : z->c->connect;
    int rc = ink_eos_send(n->g->zctx, z->sock, ep, n->c.out, timeout, &got, &err);
    if (rc) ink__log(n, "%s", err.msg);
}

static void zsnk_close(struct ink_node *n)
{
    struct zmq_snk *z = n->impl;
    if (!z) return;
    if (z->sock) log_conn_stats(n);
    if (z->sock) zmq_close(z->sock);
    ink_buf_fini(&z->buf);
    free(z);
    n->impl = NULL;
}

const struct ink_sink_impl ink__zmq_sink = {
    .open = zsnk_open,
    .write = zsnk_write,
    .flush = zsnk_flush,
    .finish = zsnk_finish,
    .close = zsnk_close,
    .conn = zmq_conn,
};
