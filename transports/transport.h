/* Sources and sinks: their config (parsed by the loader through the param
 * tables below) and the runtime interface the engine drives. */
#ifndef INK_TRANSPORT_H
#define INK_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "../engine/fields.h"
#include "../engine/param.h"

/* `socket:` indexes the node's own choices: sources pull/sub/router, sinks push/pub. */
enum ink_zmq_socket { INK_ZMQ_PULL, INK_ZMQ_SUB, INK_ZMQ_ROUTER };
enum ink_zmq_sink_socket { INK_ZMQ_SINK_PUSH, INK_ZMQ_SINK_PUB };
enum ink_file_format { INK_FMT_AUTO, INK_FMT_CSV, INK_FMT_JSONL, INK_FMT_MSGPACK, INK_FMT_TEXT };

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
    bool eos;           /* push sink: finish with the end-of-stream exchange */
    double eos_timeout; /* push sink: how long to wait for the acknowledgement */
    struct ink_curve_conf curve;
    struct ink_fields_conf fields; /* sources: where record fields come from (docs/fields.md) */
    const char *base_dir; /* set at open: where relative key paths start (NULL = cwd) */
};

/* `type: file` source. */
struct ink_file_src_conf {
    char *path;  /* "-" = stdin */
    int format;  /* enum ink_file_format; auto = from the extension */
    double rate; /* records per second, 0 = as fast as possible */
    struct ink_fields_conf fields; /* docs/fields.md */
};

/* `type: file` sink. */
struct ink_file_sink_conf {
    char *path; /* "-" = stdout */
    int format; /* jsonl, csv, msgpack, text; auto = from the extension (stdout: jsonl) */
    bool append;
    int64_t every; /* write one record in `every` (1 = all); for human-readable samples */
    int64_t head;  /* write at most this many records (0 = no limit) */
};

extern const struct ink_node_type ink_src_zmq, ink_src_file, ink_snk_zmq, ink_snk_file;

#endif
