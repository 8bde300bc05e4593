/* inkflow send / recv / query: talk to a running graph over ZeroMQ. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engine/codec.h"
#include "../engine/codec_int.h"
#include "../transports/file_io.h"
#include "../transports/zmq_util.h"
#include "cli.h"

static int parse_format(const char *s)
{
    if (strcmp(s, "csv") == 0) return INK_FMT_CSV;
    if (strcmp(s, "jsonl") == 0) return INK_FMT_JSONL;
    if (strcmp(s, "msgpack") == 0) return INK_FMT_MSGPACK;
    if (strcmp(s, "text") == 0) return INK_FMT_TEXT;
    return -1;
}

static volatile sig_atomic_t interrupted;
static void on_int(int s)
{
    (void)s;
    interrupted = 1;
}

/* CURVE client options shared by send, recv and query: 1 when argv[*i] was
 * one (consumed with its value), 0 otherwise. */
static int curve_opt(int argc, char **argv, int *i, struct ink_curve_conf *k)
{
    const char *o = argv[*i];
    if (*i + 1 >= argc) return 0;
    if (strcmp(o, "--server-key") == 0)
        k->server_key = argv[++*i];
    else if (strcmp(o, "--secret-key") == 0)
        k->secret_key_file = argv[++*i];
    else if (strcmp(o, "--public-key") == 0)
        k->public_key_file = argv[++*i];
    else
        return 0;
    k->set = true;
    return 1;
}

#define CURVE_USAGE                                                                                \
    "CURVE (docs/security.md): --server-key KEY|FILE --secret-key FILE [--public-key FILE]\n"      \
    "connect as a CURVE client with this key pair (from `inkflow keygen`).\n"

static int curve_check(const struct ink_curve_conf *k, const char *cmd)
{
    if (k->set && (!k->server_key || !k->secret_key_file))
        return ink_usage("%s: CURVE needs both --server-key and --secret-key", cmd);
    return 0;
}

/* ---- keygen ------------------------------------------------------------------ */

int ink_cmd_keygen(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        printf("usage: inkflow keygen NAME\n"
               "Writes a CURVE key pair: NAME (public key, Z85) and NAME_secret (mode 0600).\n"
               "Give NAME to clients as --server-key / curve.server_key, or add its line to a\n"
               "server's authorized_keys; the secret file is curve.secret_key_file.\n");
        return argc == 1 && strcmp(argv[0], "--help") == 0 ? 0 : 2;
    }
    struct ink_err err = {0};
    if (ink_curve_keygen(argv[0], &err)) {
        fprintf(stderr, "inkflow keygen: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s (public) and %s_secret (secret, mode 0600)\n", argv[0], argv[0]);
    return 0;
}

/* ---- send ------------------------------------------------------------------ */

static const char send_usage[] =
    "usage: inkflow send ENDPOINT [FILE] [--format csv|jsonl|msgpack] [--bind] [--hwm N]\n"
    "                    [--eos-timeout SECONDS] [CURVE options]\n"
    "Sends every record of FILE (or standard input) as one msgpack frame on a PUSH socket,\n"
    "then an end-of-stream marker that the receiving inkflow source acknowledges, so the tail\n"
    "of the stream is never lost. Exit 0 when acknowledged, 1 otherwise.\n" CURVE_USAGE;

int ink_cmd_send(int argc, char **argv)
{
    const char *ep = NULL, *file = "-";
    int format = INK_FMT_AUTO, bind = 0, nfile = 0;
    long hwm = 10000;
    double eos_timeout = 10;
    struct ink_curve_conf curve = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(send_usage, stdout);
            return 0;
        } else if (curve_opt(argc, argv, &i, &curve)) {
            continue;
        } else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
            format = parse_format(argv[++i]);
            if (format < 0 || format == INK_FMT_TEXT)
                return ink_usage("send: bad --format '%s'", argv[i]);
        } else if (strcmp(argv[i], "--bind") == 0) {
            bind = 1;
        } else if (strcmp(argv[i], "--hwm") == 0 && i + 1 < argc) {
            hwm = atol(argv[++i]);
        } else if (strcmp(argv[i], "--eos-timeout") == 0 && i + 1 < argc) {
            eos_timeout = atof(argv[++i]);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return ink_usage("send: unknown option '%s'", argv[i]);
        } else if (!ep) {
            ep = argv[i];
        } else if (!nfile++) {
            file = argv[i];
        } else {
            return ink_usage("send: unexpected argument '%s'", argv[i]);
        }
    }
    if (!ep) return ink_usage("send: missing ENDPOINT\n%s", send_usage);
    if (curve_check(&curve, "send")) return 2;
    struct ink_file_reader r;
    struct ink_err err = {0};
    struct ink_limits lim = INK_LIMITS_DEFAULT;
    if (ink_file_reader_open(&r, file, format, &lim, &err)) {
        fprintf(stderr, "inkflow send: %s\n", err.msg);
        return 1;
    }
    void *ctx = zmq_ctx_new();
    struct ink_zmq_conf c = {.hwm = hwm, .linger = 2.0, .curve = curve};
    if (bind)
        c.bind = (char *)ep;
    else
        c.connect = (char *)ep;
    void *s = ink_zmq_open(ctx, ZMQ_PUSH, &c, &err);
    if (!s) {
        fprintf(stderr, "inkflow send: %s\n", err.msg);
        ink_file_reader_close(&r);
        zmq_ctx_term(ctx);
        return 1;
    }
    signal(SIGINT, on_int);
    signal(SIGTERM, on_int);
    struct ink_buf buf = {0};
    uint64_t sent = 0, bad = 0;
    int rc = 0;
    for (;;) {
        struct ink_record rec;
        enum ink_reject why;
        const uint8_t *raw;
        size_t rawlen;
        int k = ink_file_reader_next(&r, &rec, &why, &raw, &rawlen);
        if (k == 0) break;
        if (k < 0) {
            fprintf(stderr, "inkflow send: %s: %s\n", file, r.why);
            rc = 1;
            break;
        }
        if (k == 2) {
            bad++;
            fprintf(stderr, "inkflow send: %s: skipped (%s): %s\n", file, ink_reject_name(why),
                    r.why);
            continue;
        }
        ink_buf_reset(&buf);
        ink_encode_msgpack(&rec, 0, &buf);
        while (zmq_send(s, buf.p, buf.len, 0) < 0) {
            if (zmq_errno() == EINTR && !interrupted) continue;
            rc = 1;
            break;
        }
        if (rc || interrupted) break;
        sent++;
    }
    if (interrupted) rc = 1;
    uint64_t got = 0;
    int e = ink_eos_send(ctx, s, ep, sent, eos_timeout, &got, &err);
    if (e) {
        fprintf(stderr, "inkflow send: %s\n", err.msg);
        rc = 1;
    }
    fprintf(stderr, "inkflow send: %llu records sent%s%s", (unsigned long long)sent,
            e ? "" : ", end of stream acknowledged", bad ? "" : "\n");
    if (bad) fprintf(stderr, ", %llu input records skipped\n", (unsigned long long)bad);
    ink_buf_fini(&buf);
    ink_file_reader_close(&r);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}

/* ---- recv ------------------------------------------------------------------- */

static const char recv_usage[] =
    "usage: inkflow recv ENDPOINT [--count N] [--bind] [--socket pull|sub]\n"
    "                    [--format jsonl|csv|text|msgpack] [--timeout SECONDS] [CURVE options]\n"
    "Prints records from a PULL (or SUB) socket on standard output. Ends after N records,\n"
    "at an end-of-stream marker (acknowledged), after SECONDS without a record, or on "
    "^C.\n" CURVE_USAGE;

int ink_cmd_recv(int argc, char **argv)
{
    const char *ep = NULL;
    long long count = -1;
    int bind = 0, sub = 0, format = INK_FMT_JSONL;
    double timeout = 0;
    struct ink_curve_conf curve = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(recv_usage, stdout);
            return 0;
        } else if (curve_opt(argc, argv, &i, &curve)) {
            continue;
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--bind") == 0) {
            bind = 1;
        } else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
            i++;
            if (strcmp(argv[i], "sub") == 0)
                sub = 1;
            else if (strcmp(argv[i], "pull") != 0)
                return ink_usage("recv: bad --socket '%s'", argv[i]);
        } else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) {
            format = parse_format(argv[++i]);
            if (format < 0) return ink_usage("recv: bad --format '%s'", argv[i]);
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout = atof(argv[++i]);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return ink_usage("recv: unknown option '%s'", argv[i]);
        } else if (!ep) {
            ep = argv[i];
        } else {
            return ink_usage("recv: unexpected argument '%s'", argv[i]);
        }
    }
    if (!ep) return ink_usage("recv: missing ENDPOINT\n%s", recv_usage);
    if (curve_check(&curve, "recv")) return 2;
    void *ctx = zmq_ctx_new();
    struct ink_zmq_conf c = {.hwm = 10000, .linger = 1.0, .subscribe = "", .curve = curve};
    if (bind)
        c.bind = (char *)ep;
    else
        c.connect = (char *)ep;
    struct ink_err err = {0};
    void *s = ink_zmq_open(ctx, sub ? ZMQ_SUB : ZMQ_PULL, &c, &err);
    if (!s) {
        fprintf(stderr, "inkflow recv: %s\n", err.msg);
        zmq_ctx_term(ctx);
        return 1;
    }
    struct ink_file_writer w;
    ink_file_writer_open(&w, "-", format, false, false, &err);
    struct ink_decoder dec;
    ink_decoder_init(&dec, NULL);
    signal(SIGINT, on_int);
    signal(SIGTERM, on_int);
    struct ink_eos_seen seen = {0};
    uint64_t got = 0, bad = 0;
    int rc = 0;
    double last = ink_now();
    while (!interrupted && (count < 0 || (long long)got < count)) {
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        int p = zmq_poll(&it, 1, 100);
        if (p <= 0) {
            ink_file_writer_flush(&w);
            if (timeout > 0 && ink_now() - last > timeout) {
                fprintf(stderr, "inkflow recv: nothing for %.1f s, stopping\n", timeout);
                rc = 1;
                break;
            }
            continue;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        last = ink_now();
        if (zmq_msg_more(&m)) {
            int fresh = 0;
            int e = ink_eos_handle(ctx, s, &m, got, &seen, &fresh, &err);
            zmq_msg_close(&m);
            if (e > 0 && fresh && count < 0) break; /* end of stream */
            continue;
        }
        struct ink_record rec;
        enum ink_reject why = ink_decode_msgpack(&dec, zmq_msg_data(&m), zmq_msg_size(&m), &rec);
        if (why != INK_REJ_NONE) {
            bad++;
            fprintf(stderr, "inkflow recv: undecodable frame (%s): %s\n", ink_reject_name(why),
                    dec.why);
        } else {
            ink_file_writer_write(&w, &rec);
            got++;
        }
        zmq_msg_close(&m);
    }
    if (ink_file_writer_close(&w)) rc = 1;
    ink_decoder_fini(&dec);
    zmq_close(s);
    zmq_ctx_term(ctx);
    if (bad) fprintf(stderr, "inkflow recv: %llu undecodable frames\n", (unsigned long long)bad);
    return rc;
}

/* ---- query ------------------------------------------------------------------- */

static const char query_usage[] =
    "usage: inkflow query ENDPOINT JSON [--timeout SECONDS] [CURVE options]\n"
    "Sends one request (a JSON object, e.g. '{\"op\": \"deff\"}') to a router source and prints\n"
    "the reply as JSON. Exit 0 on a reply without \"error\", 1 otherwise.\n" CURVE_USAGE;

int ink_cmd_query(int argc, char **argv)
{
    const char *ep = NULL, *json = NULL;
    double timeout = 5;
    struct ink_curve_conf curve = {0};
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(query_usage, stdout);
            return 0;
        } else if (curve_opt(argc, argv, &i, &curve)) {
            continue;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            timeout = atof(argv[++i]);
        } else if (!ep) {
            ep = argv[i];
        } else if (!json) {
            json = argv[i];
        } else {
            return ink_usage("query: unexpected argument '%s'", argv[i]);
        }
    }
    if (!ep || !json) return ink_usage("query: need ENDPOINT and JSON\n%s", query_usage);
    if (curve_check(&curve, "query")) return 2;
    struct ink_decoder dec;
    ink_decoder_init(&dec, NULL);
    struct ink_record rec;
    enum ink_reject why = ink_decode_json(&dec, json, strlen(json), &rec);
    if (why != INK_REJ_NONE) {
        fprintf(stderr, "inkflow query: the request is not a valid record (%s): %s\n",
                ink_reject_name(why), dec.why);
        ink_decoder_fini(&dec);
        return 2;
    }
    struct ink_buf buf = {0};
    ink_encode_msgpack(&rec, 0, &buf);
    ink_decoder_fini(&dec);
    void *ctx = zmq_ctx_new();
    struct ink_zmq_conf c = {.hwm = 100, .linger = 0, .connect = (char *)ep, .curve = curve};
    struct ink_err err = {0};
    void *s = ink_zmq_open(ctx, ZMQ_REQ, &c, &err);
    int rc = 1;
    if (!s) {
        fprintf(stderr, "inkflow query: %s\n", err.msg);
    } else if (zmq_send(s, buf.p, buf.len, 0) < 0) {
        fprintf(stderr, "inkflow query: send: %s\n", zmq_strerror(zmq_errno()));
    } else {
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, (long)(timeout * 1000)) <= 0) {
            fprintf(stderr, "inkflow query: no reply from %s within %.1f s\n", ep, timeout);
        } else {
            zmq_msg_t m;
            zmq_msg_init(&m);
            zmq_msg_recv(&m, s, 0);
            const uint8_t *p = zmq_msg_data(&m);
            size_t n = zmq_msg_size(&m), len = 0;
            enum ink_reject sw;
            struct ink_buf out = {0};
            if (ink_msgpack_scan(p, n, INK_DEPTH_CAP, &len, &sw) == 0 && len == n) {
                ink__mp_to_json(&out, p, p + n);
                ink_buf_putc(&out, '\n');
                fwrite(out.p, 1, out.len, stdout);
                /* an error reply is a map whose first key is "error" */
                rc = (n > 7 && (p[0] & 0xf0) == 0x80 && p[1] == 0xa5 &&
                      memcmp(p + 2, "error", 5) == 0)
                         ? 1
                         : 0;
            } else {
                fprintf(stderr, "inkflow query: the reply is not valid msgpack\n");
            }
            ink_buf_fini(&out);
            zmq_msg_close(&m);
        }
    }
    ink_buf_fini(&buf);
    if (s) zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}
