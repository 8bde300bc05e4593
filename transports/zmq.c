/* ZeroMQ transport: the `zmq` source (pull, sub, router) and sink (push,
 * pub), their parameter tables, and the process's ZeroMQ context. */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/codec.h"
#include "../engine/graph.h"
#include "zmq_util.h"

#define ZOFF(f) offsetof(struct ink_zmq_conf, f)

static const char *const src_sockets[] = {"pull", "sub", "router", NULL};
static const char *const sink_sockets[] = {"push", "pub", NULL};
static const char *const eos_modes[] = {"auto", "true", "false", NULL}; /* enum ink_eos_mode */

#define COFF(f) (offsetof(struct ink_zmq_conf, curve) + offsetof(struct ink_curve_conf, f))
static const struct ink_param curve_params[] = {
    {.name = "secret_key_file",
     .type = INK_P_STRING,
     .offset = offsetof(struct ink_curve_conf, secret_key_file),
     .flags = INK_PF_REQUIRED,
     .help = "this endpoint's secret key (Z85 file from `inkflow keygen`, mode 0600)"},
    {.name = "public_key_file",
     .type = INK_P_STRING,
     .offset = offsetof(struct ink_curve_conf, public_key_file),
     .help = "this endpoint's public key (default: derived from the secret key)"},
    {.name = "server_key",
     .type = INK_P_STRING,
     .offset = offsetof(struct ink_curve_conf, server_key),
     .help = "client side: the server's public key (40 Z85 characters, or a key file); "
             "absent = this endpoint is the CURVE server"},
    {.name = "authorized_keys",
     .type = INK_P_STRING,
     .offset = offsetof(struct ink_curve_conf, authorized_keys),
     .help = "server side: the client public keys let in, a file (one Z85 key a line, # "
             "comments) or a directory of key files; every other client is refused"},
    {0},
};
#define CURVE_PARAM                                                                                \
    {                                                                                              \
        .name = "curve", .type = INK_P_OBJECT, .offset = COFF(set), .sub = curve_params,           \
        .help = "CURVE encryption and client authentication: server side {secret_key_file, "       \
                "authorized_keys}, client side {server_key, secret_key_file}"                      \
    }

static const struct ink_param zmq_src_params[] = {
    {.name = "socket",
     .type = INK_P_ENUM,
     .offset = ZOFF(socket),
     .def = "pull",
     .choices = src_sockets,
     .help = "pull (pipeline), sub (publish/subscribe) or router (request/reply service)"},
    {.name = "bind",
     .type = INK_P_STRING,
     .offset = ZOFF(bind),
     .help = "endpoint to bind, e.g. tcp://127.0.0.1:5555 or ipc:///tmp/in.sock"},
    {.name = "connect",
     .type = INK_P_STRING,
     .offset = ZOFF(connect),
     .help = "endpoint to connect to (instead of bind)"},
    {.name = "subscribe",
     .type = INK_P_STRING,
     .offset = ZOFF(subscribe),
     .def = "\"\"",
     .help = "sub: topic prefix to subscribe to (empty = everything)"},
    {.name = "hwm",
     .type = INK_P_INT,
     .offset = ZOFF(hwm),
     .def = "10000",
     .min = 1,
     .max = 100000000,
     .help = "receive high-water mark, in messages"},
    {.name = "max_message_bytes",
     .type = INK_P_SIZE,
     .offset = ZOFF(max_message_bytes),
     .def = "64KiB",
     .min = 64,
     .max = 1073741824,
     .help = "frames larger than this are refused by the socket and counted"},
    {.name = "conflate",
     .type = INK_P_BOOL,
     .offset = ZOFF(conflate),
     .def = "false",
     .help = "keep only the newest message (pull/sub; single-frame only)"},
    {.name = "linger",
     .type = INK_P_DURATION,
     .offset = ZOFF(linger),
     .def = "1s",
     .min = 0,
     .max = 3600,
     .help = "how long close may wait for pending messages"},
    {.name = "reply_from",
     .type = INK_P_STRING,
     .offset = ZOFF(reply_from),
     .help = "router: the operator whose output for a request is the reply"},
    {.name = "stop_after_eos",
     .type = INK_P_INT,
     .offset = ZOFF(stop_after_eos),
     .def = "0",
     .min = 0,
     .max = 1000000,
     .help = "pull: end this source after that many end-of-stream markers (0 = run until stopped)"},
    CURVE_PARAM,
    INK_FIELDS_PARAM(struct ink_zmq_conf),
    {0},
};

static const struct ink_param zmq_sink_params[] = {
    {.name = "socket",
     .type = INK_P_ENUM,
     .offset = ZOFF(socket),
     .def = "push",
     .choices = sink_sockets,
     .help = "push (pipeline, blocks at the high-water mark) or pub (drops, counted)"},
    {.name = "bind", .type = INK_P_STRING, .offset = ZOFF(bind), .help = "endpoint to bind"},
    {.name = "connect",
     .type = INK_P_STRING,
     .offset = ZOFF(connect),
     .help = "endpoint to connect to (instead of bind)"},
    {.name = "hwm",
     .type = INK_P_INT,
     .offset = ZOFF(hwm),
     .def = "10000",
     .min = 1,
     .max = 100000000,
     .help = "send high-water mark, in messages"},
    {.name = "linger",
     .type = INK_P_DURATION,
     .offset = ZOFF(linger),
     .def = "1s",
     .min = 0,
     .max = 3600,
     .help = "how long close may wait for pending messages"},
    {.name = "conflate",
     .type = INK_P_BOOL,
     .offset = ZOFF(conflate),
     .def = "false",
     .help = "keep only the newest message"},
    {.name = "eos",
     .type = INK_P_ENUM,
     .offset = ZOFF(eos),
     .def = "auto",
     .choices = eos_modes,
     .help = "push: when the graph ends, send an end-of-stream marker and wait for each "
             "receiver's acknowledgement: auto = only when every connected receiver is an "
             "inkflow source that takes part (a plain PULL consumer never sees it), true = "
             "always, false = never"},
    {.name = "eos_timeout",
     .type = INK_P_DURATION,
     .offset = ZOFF(eos_timeout),
     .def = "5s",
     .min = 0,
     .max = 3600,
     .help = "push: how long to wait for the end-of-stream acknowledgement"},
    CURVE_PARAM,
    {0},
};

static int zmq_check(const void *conf, struct ink_err *err)
{
    const struct ink_zmq_conf *c = conf;
    if (!c->bind == !c->connect)
        return ink_err_set(err, INK_EINVAL, "give exactly one of 'bind' or 'connect'");
    if (c->socket == INK_ZMQ_ROUTER && !c->reply_from)
        return ink_err_set(err, INK_EINVAL,
                           "a router source needs 'reply_from' (the operator that answers)");
    if (c->socket == INK_ZMQ_ROUTER && c->fields.set)
        return ink_err_set(err, INK_EINVAL,
                           "'fields' applies to pull and sub sockets (a router "
                           "reads requests as they are)");
    if (c->socket != INK_ZMQ_ROUTER && c->reply_from)
        return ink_err_set(err, INK_EINVAL, "'reply_from' only applies to socket: router");
    const struct ink_curve_conf *k = &c->curve;
    if (k->set && k->server_key && k->authorized_keys)
        return ink_err_set(err, INK_EINVAL,
                           "curve: 'server_key' makes this endpoint a CURVE client, "
                           "'authorized_keys' a server; give one of them");
    if (k->set && !k->server_key && !k->authorized_keys)
        return ink_err_set(err, INK_EINVAL,
                           "curve: a CURVE server needs 'authorized_keys' (CURVE alone "
                           "encrypts but lets any client in); a client needs 'server_key'");
    return 0;
}

/* The ZeroMQ context of the graph sockets: created by the first zmq node
 * that opens, terminated when the last one closes (the security thread of
 * zmq_sec.c closes its own sockets then). A graph without zmq nodes has none. */
static struct {
    pthread_mutex_t mu;
    void *ctx;
    int users;
} zc = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *ctx_acquire(struct ink_err *err)
{
    pthread_mutex_lock(&zc.mu);
    if (!zc.ctx) zc.ctx = zmq_ctx_new();
    void *ctx = zc.ctx;
    if (ctx) zc.users++;
    pthread_mutex_unlock(&zc.mu);
    if (!ctx) ink_err_set(err, INK_EIO, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    return ctx;
}

static void ctx_release(void)
{
    pthread_mutex_lock(&zc.mu);
    void *term = NULL;
    if (--zc.users == 0) {
        term = zc.ctx;
        zc.ctx = NULL;
    }
    pthread_mutex_unlock(&zc.mu);
    if (term) zmq_ctx_term(term);
}

struct zmq_src {
    void *ctx; /* acquired at open */
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

/* Open a node's socket: key paths relative to the config, connection events
 * counted under the node's name, and a warning for a socket open to every
 * interface without CURVE (docs/security.md). */
static void *open_node(struct ink_node *n, void *ctx, int zt, struct ink_zmq_conf *c,
                       struct ink_err *err)
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
    return ink_zmq_open_node(ctx, zt, c, n->name, err);
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
    out[INK_CONN_DROPPED] = st.dropped;
}

/* At close: what the security thread saw on this socket. */
static void log_conn_stats(struct ink_node *n)
{
    struct ink_zmq_stats st;
    ink_zmq_stats(n->name, &st);
    char drops[64] = "";
    if (st.dropped)
        snprintf(drops, sizeof drops, " (%llu dropped by the socket)",
                 (unsigned long long)st.dropped);
    fprintf(stderr,
            "inkflow: [%s] connections: %llu accepted, %llu admitted, refused %llu "
            "(auth %llu, handshake %llu), %llu disconnected%s\n",
            n->name, (unsigned long long)st.accepted, (unsigned long long)st.handshakes,
            (unsigned long long)(st.refused_auth + st.refused_protocol),
            (unsigned long long)st.refused_auth, (unsigned long long)st.refused_protocol,
            (unsigned long long)st.disconnects, drops);
}

static int zsrc_open(struct ink_node *n, struct ink_err *err)
{
    struct zmq_src *z = n->impl;
    z->c = n->nc->conf;
    if (!(z->ctx = ctx_acquire(err))) return INK_EIO;
    struct ink_limits lim = ink__source_limits(n, z->c->max_message_bytes);
    if (ink_decoder_init(&z->dec, &lim)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    if (ink_decoder_set_fields(&z->dec, &z->c->fields, err)) return err->code;
    if (z->c->reply_from) {
        z->reply_node = ink__node_find(n->g, z->c->reply_from);
        if (!z->reply_node)
            return ink_err_set(err, INK_EINVAL, "reply_from '%s' is not a node", z->c->reply_from);
    }
    /* The socket refuses (disconnects) frames over 4x the cap; frames between
     * the cap and that are delivered, so they can be counted as too_large. */
    struct ink_zmq_conf sc = *z->c;
    sc.max_message_bytes = z->c->max_message_bytes * 4;
    z->sock = open_node(n, z->ctx, src_types[z->c->socket], &sc, err);
    return z->sock ? 0 : INK_EIO;
}

static int zsrc_pollitem(struct ink_node *n, struct ink_pollitem *pi)
{
    *pi = (struct ink_pollitem){.socket = ((struct zmq_src *)n->impl)->sock, .events = INK_POLLIN};
    return 1;
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
        rec.t = ink_wall_ns();
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
            int e = ink_eos_handle(z->ctx, z->sock, &m, z->received, &z->seen, &fresh, &err);
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
            if (z->c->socket == INK_ZMQ_PULL) {
                struct ink_err err = {0};
                if (ink_eos_notice(z->ctx, &m, &z->seen, &err) < 0) ink__log(n, "%s", err.msg);
            }
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
    if (z->sock) log_conn_stats(n);
    if (z->sock) zmq_close(z->sock);
    ink_decoder_fini(&z->dec);
    if (z->ctx) ctx_release();
    memset(z, 0, sizeof *z);
}

static bool zsrc_finite(const void *conf)
{
    const struct ink_zmq_conf *c = conf;
    return c->socket == INK_ZMQ_PULL && c->stop_after_eos > 0;
}

static const char *zsrc_reply_from(const void *conf)
{
    const struct ink_zmq_conf *c = conf;
    return c->socket == INK_ZMQ_ROUTER ? c->reply_from : NULL;
}

const struct ink_source_type ink_source_zmq = {
    .type =
        {
            .name = "zmq",
            .kind = INK_NODE_SOURCE,
            .summary = "records from a ZeroMQ socket (pull, sub, or router for request/reply)",
            .params = zmq_src_params,
            .conf_size = sizeof(struct ink_zmq_conf),
            .check = zmq_check,
        },
    .impl_size = sizeof(struct zmq_src),
    .finite = zsrc_finite,
    .reply_from = zsrc_reply_from,
    .open = zsrc_open,
    .pollitem = zsrc_pollitem,
    .pump = zsrc_pump,
    .close = zsrc_close,
    .conn = zmq_conn,
};

/* ---- sink -------------------------------------------------------------------- */

struct zmq_snk {
    void *ctx; /* acquired at open */
    void *sock;
    const struct ink_zmq_conf *c;
    struct ink_buf buf;
    struct ink_zmq_conf conf; /* a copy, with base_dir set */
    double stop_deadline;
    bool pub; /* else push */
    struct ink_eos_sender eos;
};

static int zsnk_open(struct ink_node *n, struct ink_err *err)
{
    struct zmq_snk *z = n->impl;
    z->c = n->nc->conf;
    if (!(z->ctx = ctx_acquire(err))) return INK_EIO;
    /* a sink's `socket` indexes its own choices: 0 push, 1 pub */
    z->pub = z->c->socket == INK_ZMQ_SINK_PUB;
    z->conf = *z->c;
    if (!z->pub && z->c->eos != INK_EOS_OFF) {
        /* the ack socket first: the data socket tells receivers where it is */
        const char *ep = z->c->bind ? z->c->bind : z->c->connect;
        if (ink_eos_sender_open(&z->eos, z->ctx, ep, n->name, err)) return err->code;
        z->conf.metadata = z->eos.meta;
    }
    z->sock = open_node(n, z->ctx, z->pub ? ZMQ_PUB : ZMQ_PUSH, &z->conf, err);
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
        if (zmq_send(z->sock, z->buf.p, z->buf.len, ZMQ_DONTWAIT) >= 0) {
            if (!z->eos.first_send) z->eos.first_send = ink_now();
            return 0;
        }
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
    if (z->pub || z->c->eos == INK_EOS_OFF) return;
    double timeout = z->c->eos_timeout;
    if (n->g->stop && timeout > n->g->cfg->engine.grace) timeout = n->g->cfg->engine.grace;
    struct ink_err err = {0};
    uint64_t got = 0;
    char note[300];
    int rc = ink_eos_finish(&z->eos, z->sock, z->c->eos, n->c.out, timeout, n->g->stop, &got, note,
                            sizeof note, &err);
    if (rc == 1)
        ink__log(n, "%s", note);
    else if (rc)
        ink__log(n, "%s", err.msg);
}

static void zsnk_close(struct ink_node *n)
{
    struct zmq_snk *z = n->impl;
    if (z->sock) log_conn_stats(n);
    if (z->sock) zmq_close(z->sock);
    ink_eos_sender_close(&z->eos);
    ink_buf_fini(&z->buf);
    if (z->ctx) ctx_release();
    memset(z, 0, sizeof *z);
}

const struct ink_sink_type ink_sink_zmq = {
    .type =
        {
            .name = "zmq",
            .kind = INK_NODE_SINK,
            .summary = "records to a ZeroMQ socket (push or pub)",
            .params = zmq_sink_params,
            .conf_size = sizeof(struct ink_zmq_conf),
            .check = zmq_check,
        },
    .impl_size = sizeof(struct zmq_snk),
    .open = zsnk_open,
    .write = zsnk_write,
    .flush = zsnk_flush,
    .finish = zsnk_finish,
    .close = zsnk_close,
    .conn = zmq_conn,
};
