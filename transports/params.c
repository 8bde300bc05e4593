/* Param tables of the transports: the single description of their keys
 * (parsing, range checks, `inkflow help`, docs). */
#include <stddef.h>
#include <string.h>

#include "transport.h"

#define ZOFF(f) offsetof(struct ink_zmq_conf, f)

static const char *const src_sockets[] = {"pull", "sub", "router", NULL};
static const char *const sink_sockets[] = {"push", "pub", NULL};
static const char *const src_formats[] = {"auto", "csv", "jsonl", "msgpack", NULL};
static const char *const sink_formats[] = {"auto", "csv", "jsonl", "msgpack", "text", NULL};

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
     .type = INK_P_BOOL,
     .offset = ZOFF(eos),
     .def = "true",
     .help = "push: when the graph ends, send an end-of-stream marker and wait for the receiver's "
             "acknowledgement"},
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

#define FSOFF(f) offsetof(struct ink_file_src_conf, f)
static const struct ink_param file_src_params[] = {
    {.name = "path",
     .type = INK_P_STRING,
     .offset = FSOFF(path),
     .flags = INK_PF_REQUIRED,
     .help = "file to read (relative to the config's directory), or - for standard input"},
    {.name = "format",
     .type = INK_P_ENUM,
     .offset = FSOFF(format),
     .def = "auto",
     .choices = src_formats,
     .help = "csv (header row; t, key, y, arm columns, the rest is x), jsonl or msgpack; auto = "
             "from the extension"},
    {.name = "rate",
     .type = INK_P_DOUBLE,
     .offset = FSOFF(rate),
     .def = "0",
     .min = 0,
     .max = 1e9,
     .help = "replay at this many records per second (0 = as fast as possible)"},
    INK_FIELDS_PARAM(struct ink_file_src_conf),
    {0},
};

#define FKOFF(f) offsetof(struct ink_file_sink_conf, f)
static const struct ink_param file_sink_params[] = {
    {.name = "path",
     .type = INK_P_STRING,
     .offset = FKOFF(path),
     .flags = INK_PF_REQUIRED,
     .help = "file to write (relative to the config's directory), or - for standard output"},
    {.name = "format",
     .type = INK_P_ENUM,
     .offset = FKOFF(format),
     .def = "auto",
     .choices = sink_formats,
     .help = "jsonl, csv, msgpack or text (one readable line per record); auto = from the "
             "extension, jsonl for -"},
    {.name = "append",
     .type = INK_P_BOOL,
     .offset = FKOFF(append),
     .def = "false",
     .help = "append instead of truncating"},
    {.name = "every",
     .type = INK_P_INT,
     .offset = FKOFF(every),
     .def = "1",
     .min = 1,
     .max = 1000000000,
     .help = "write one record in every N (a readable sample of a long stream)"},
    {.name = "head",
     .type = INK_P_INT,
     .offset = FKOFF(head),
     .def = "0",
     .min = 0,
     .max = (double)INT64_MAX,
     .help = "write at most this many records (0 = all)"},
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
        return ink_err_set(err, INK_EINVAL, "'fields' applies to pull and sub sockets (a router "
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

const struct ink_node_type ink_src_zmq = {
    .name = "zmq",
    .kind = INK_NODE_SOURCE,
    .summary = "records from a ZeroMQ socket (pull, sub, or router for request/reply)",
    .params = zmq_src_params,
    .conf_size = sizeof(struct ink_zmq_conf),
    .check = zmq_check,
};
const struct ink_node_type ink_snk_zmq = {
    .name = "zmq",
    .kind = INK_NODE_SINK,
    .summary = "records to a ZeroMQ socket (push or pub)",
    .params = zmq_sink_params,
    .conf_size = sizeof(struct ink_zmq_conf),
    .check = zmq_check,
};
const struct ink_node_type ink_src_file = {
    .name = "file",
    .kind = INK_NODE_SOURCE,
    .summary = "records from a CSV, JSON Lines or msgpack file",
    .params = file_src_params,
    .conf_size = sizeof(struct ink_file_src_conf),
};
const struct ink_node_type ink_snk_file = {
    .name = "file",
    .kind = INK_NODE_SINK,
    .summary = "records to a JSON Lines, CSV, msgpack or text file (or standard output)",
    .params = file_sink_params,
    .conf_size = sizeof(struct ink_file_sink_conf),
};

const struct ink_node_type *const ink_source_types[] = {&ink_src_zmq, &ink_src_file, NULL};
const struct ink_node_type *const ink_sink_types[] = {&ink_snk_zmq, &ink_snk_file, NULL};
