/* ZeroMQ plumbing shared by the zmq source/sink and the send/recv/query
 * commands: socket set-up from a conf with CURVE and the ZAP handler
 * (zmq_sec.c), and the end-of-stream exchange (zmq_eos.c).
 *
 * End of stream (docs/design.md#end-of-stream): libzmq 4.3.4 can
 * drop the last messages of a PUSH socket closed right after its last send
 * (zeromq/libzmq#4660). So a sender finishes with a two-frame control
 * message ["INKFLOW-EOS", msgpack {id, sent, ack}] on the same pipe as the
 * data; data messages are always one frame, so the receiver tells them
 * apart by ZMQ_RCVMORE. `ack` is an endpoint the sender has bound a PULL
 * socket on; the receiver connects a PUSH there and sends
 * ["INKFLOW-EOS-ACK", msgpack {id, received}]. Messages on one pipe arrive
 * in order, so the acknowledgement proves every data message before the
 * marker arrived. The sender re-sends the marker until acknowledged or its
 * timeout runs out; the receiver counts each id once. For tcp the ack
 * endpoint's host "@peer" means "the address the marker came from". */
#ifndef INK_ZMQ_UTIL_H
#define INK_ZMQ_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "../engine/clock.h"
#include "../engine/err.h"
#include "../engine/fields.h"

/* `socket:` indexes the node's own choices: sources pull/sub/router, sinks push/pub. */
enum ink_zmq_socket { INK_ZMQ_PULL, INK_ZMQ_SUB, INK_ZMQ_ROUTER };
enum ink_zmq_sink_socket { INK_ZMQ_SINK_PUSH, INK_ZMQ_SINK_PUB };

/* `curve:` on a zmq endpoint (docs/security.md). With `server_key` the
 * socket is a CURVE client of that server; without it, a CURVE server that
 * admits only the keys in `authorized_keys` (checked by the engine's ZAP
 * handler). Key files hold Z85 text, as `inkflow keygen` writes them. */
struct ink_curve_conf {
    bool set;
    char *secret_key_file; /* this socket's secret key (server and client) */
    char *public_key_file; /* this socket's public key (optional: derived from the secret) */
    char *server_key;      /* client: the server's public key, Z85 text or a key file */
    char *authorized_keys; /* server: allow-list, a file (one key a line) or a directory */
};

/* `type: zmq` source or sink. */
struct ink_zmq_conf {
    int socket;           /* enum ink_zmq_socket (sources) or ink_zmq_sink_socket (sinks) */
    char *bind, *connect; /* exactly one */
    char *subscribe;      /* sub: topic prefix ("" = everything) */
    int64_t hwm;          /* high-water mark, messages */
    uint64_t max_message_bytes;
    bool conflate;
    double linger;    /* seconds */
    char *reply_from; /* router: the operator whose output is the reply */
    int64_t
        stop_after_eos; /* pull: end the source after this many end-of-stream markers (0 = never) */
    int eos;            /* push sink: enum ink_eos_mode */
    double eos_timeout; /* push sink: how long to wait for the acknowledgement */
    struct ink_curve_conf curve;
    struct ink_fields_conf fields; /* sources: where record fields come from (docs/fields.md) */
    const char *base_dir;          /* set at open: where relative key paths start (NULL = cwd) */
    const char *metadata;          /* set at open: a ZMTP property "X-Name:value" (ZMQ_METADATA) */
};

/* `eos:` of a push sink (`--eos` of inkflow send): the order of the choices. */
enum ink_eos_mode { INK_EOS_AUTO, INK_EOS_ON, INK_EOS_OFF };

#define INK_EOS_TAG       "INKFLOW-EOS"
#define INK_EOS_ACK_TAG   "INKFLOW-EOS-ACK"
#define INK_EOS_HELLO_TAG "INKFLOW-EOS-HELLO"
/* The ZMTP property a sender that takes part in the exchange sets on its
 * PUSH socket: "1 <id, 16 hex digits> <ack endpoint>". */
#define INK_EOS_PROPERTY "X-Inkflow-Eos"

/* Open a socket of zmq type `zt` configured from c (hwm, max size, linger,
 * conflate, subscribe, curve) and bound or connected. NULL with err filled. */
void *ink_zmq_open(void *ctx, int zt, const struct ink_zmq_conf *c, struct ink_err *err);

/* Connection events of one graph socket, counted by the engine's security
 * thread (docs/security.md). Read with ink_zmq_stats. */
struct ink_zmq_stats {
    uint64_t accepted;         /* connections accepted or made */
    uint64_t handshakes;       /* ZMTP handshakes completed (and admitted) */
    uint64_t refused_auth;     /* refused by the ZAP handler: key not authorised */
    uint64_t refused_protocol; /* handshake failed: no CURVE, wrong server key, bad greeting */
    uint64_t disconnects;      /* connections closed after a handshake (peer left, or a frame
                                  over the socket's size cap) */
    uint64_t dropped;          /* of those, closed by the socket itself: a frame over its cap
                                  (4 x max_message_bytes) or a ZMTP protocol error */
    uint64_t open;             /* connections open now (handshake done, not yet closed) */
    double last_open;          /* ink_now() of the last handshake done (0 = never) */
};

/* As ink_zmq_open, for a graph node: `name` is the ZAP domain of a CURVE
 * server socket, and the socket's connection events are counted under it
 * (and logged with the peer's address). */
void *ink_zmq_open_node(void *ctx, int zt, const struct ink_zmq_conf *c, const char *name,
                        struct ink_err *err);
/* Snapshot of the counters of node `name` (zeros when unknown). */
void ink_zmq_stats(const char *name, struct ink_zmq_stats *out);

/* Read a CURVE key (40 Z85 characters) from `path`: the first line that is
 * not a # comment, or the quoted value of a zcert `public-key =` /
 * `secret-key =` line (the one `secret` asks for). A secret key file that
 * others can read is refused. 0 or INK_EINVAL. */
int ink_curve_key_read(const char *path, char key[41], bool secret, struct ink_err *err);
/* Write a key pair: `base` (public) and `base`_secret (mode 0600). */
int ink_curve_keygen(const char *base, struct ink_err *err);

/* Sender side of the end-of-stream exchange on `sock` (PUSH), whose data
 * endpoint is `endpoint` (used to choose where the ack socket binds), for
 * senders that always send the marker (ink_blast, older callers): binds an
 * ack socket for the exchange, waits for one acknowledgement. Returns 0 when
 * acknowledged (*received = the receiver's count of data messages, may be
 * NULL), INK_EAGAIN on timeout, other negative on error. */
int ink_eos_send(void *ctx, void *sock, const char *endpoint, uint64_t sent, double timeout,
                 uint64_t *received, struct ink_err *err);

/* A sender that negotiates (docs/wire-format.md#end-of-stream): its ack
 * socket is bound before the data socket opens, and the data socket carries
 * `meta` as its ZMTP property (ink_zmq_conf.metadata), from which inkflow
 * receivers learn where to say hello. `name` is the data socket's node name
 * in ink_zmq_stats (its open connections). */
struct ink_eos_sender {
    uint64_t id;
    void *ack;
    char told[300];
    char meta[400];
    const char *name;
    uint64_t hello[64], acked[64]; /* receivers that said hello, and that acknowledged */
    int nhello, nacked;
    double first_send; /* ink_now() of the first data message, 0 = none yet */
};
int ink_eos_sender_open(struct ink_eos_sender *s, void *ctx, const char *endpoint, const char *name,
                        struct ink_err *err);
void ink_eos_sender_close(struct ink_eos_sender *s);
/* At the end of the stream: `mode` decides (auto: only when every connected
 * receiver said hello). `stopping`: a stop was asked for, do not wait to
 * detect receivers. Returns 0 when every receiver acknowledged (*received =
 * the last one's count), 1 when the marker was not sent (`note` says why),
 * INK_EAGAIN on timeout, other negative on error. */
int ink_eos_finish(struct ink_eos_sender *s, void *sock, int mode, uint64_t sent, double timeout,
                   bool stopping, uint64_t *received, char *note, size_t nnote,
                   struct ink_err *err);

/* Receiver side. `tag` is the first frame just received with RCVMORE set;
 * this reads the rest of the message from sock. Returns 1 when it was an
 * end-of-stream marker (acknowledged; *fresh = 1 the first time this id is
 * seen), 0 when it was some other multi-frame message (consumed, caller
 * counts it as a decode reject), <0 on error. */
struct ink_eos_seen {
    uint64_t ids[64];
    int n, next;
    uint64_t rid;        /* this receiver's id in acks and hellos (set on first use) */
    uint64_t hellos[64]; /* senders greeted */
    int nh, nexth;
    const char *last_prop; /* the property of the previous data message, and its id: a */
    char last_id[16];      /* message of the same sender skips the parsing */
};
int ink_eos_handle(void *ctx, void *sock, zmq_msg_t *tag, uint64_t received,
                   struct ink_eos_seen *seen, int *fresh, struct ink_err *err);
/* Every data message of a pull receiver: when it comes from a sender that
 * negotiates and was not greeted yet, say hello to it. 1 when a hello was
 * sent, 0 nothing to do, <0 with err (a refused ack endpoint). Costs one
 * zmq_msg_gets (a map lookup in libzmq) per message: libzmq 4.3 offers no
 * cheaper way to tell which connection a message came from (ZMQ_SRCFD costs
 * the same). */
int ink_eos_notice(void *ctx, zmq_msg_t *m, struct ink_eos_seen *seen, struct ink_err *err);

/* zmq_setsockopt of an int (zmq_sec.c, zmq_eos.c). */
int ink__zmq_setint(void *s, int opt, int v);

#endif
