/* inkflow send / recv / query: talk to a running graph over ZeroMQ. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
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

/* CURVE client options shared by send, recv and query (getopt_long codes). */
enum { OPT_SERVER_KEY = 0x100, OPT_SECRET_KEY, OPT_PUBLIC_KEY, OPT_HELP };
#define CURVE_OPTIONS                                                                              \
    {"server-key", required_argument, NULL, OPT_SERVER_KEY},                                       \
        {"secret-key", required_argument, NULL, OPT_SECRET_KEY},                                   \
        {"public-key", required_argument, NULL, OPT_PUBLIC_KEY},                                   \
    {                                                                                              \
        "help", no_argument, NULL, OPT_HELP                                                        \
    }

/* 1 when c was a CURVE option (its value stored), 0 otherwise. */
static int curve_opt(int c, char *val, struct ink_curve_conf *k)
{
    if (c == OPT_SERVER_KEY)
        k->server_key = val;
    else if (c == OPT_SECRET_KEY)
        k->secret_key_file = val;
    else if (c == OPT_PUBLIC_KEY)
        k->public_key_file = val;
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
    argc--, argv++; /* NAME only, no options */
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

/* Standard input has no extension to tell its format: read its first line,
 * decide, say what was decided, and hand the reader a pipe that replays that
 * line followed by the rest of stdin (copied by a thread, so a stream of any
 * length works). */
struct replay {
    int in, out; /* the original stdin; the pipe's write end */
    char *head;
    size_t len;
};

static void *replay_main(void *arg)
{
    struct replay *r = arg;
    char buf[65536];
    const char *p = r->head;
    size_t n = r->len;
    for (;;) {
        while (n) {
            ssize_t w = write(r->out, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) goto done; /* the reader stopped early */
            p += w, n -= (size_t)w;
        }
        ssize_t k = read(r->in, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        p = buf, n = (size_t)k;
    }
done:
    close(r->out);
    close(r->in);
    return NULL;
}

/* The format of stdin's first line: msgpack (a map's first byte), JSON Lines
 * (a '{'), CSV (a header: printable text with a comma), else JSON Lines. */
static int guess_format(const char *head, size_t len, const char **why)
{
    size_t i = 0;
    while (i < len && (head[i] == ' ' || head[i] == '\t' || head[i] == '\r' || head[i] == '\n'))
        i++;
    if (i == len) {
        *why = "it is empty";
        return INK_FMT_JSONL;
    }
    unsigned char b = (unsigned char)head[i];
    if ((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf) {
        *why = "its first byte is a msgpack map";
        return INK_FMT_MSGPACK;
    }
    if (b == '{') {
        *why = "its first line is a JSON object";
        return INK_FMT_JSONL;
    }
    bool comma = false, text = true;
    for (size_t j = i; j < len && head[j] != '\n'; j++) {
        unsigned char ch = (unsigned char)head[j];
        comma |= ch == ',';
        text &= ch >= 0x20 || ch == '\t' || ch == '\r';
    }
    if (comma && text) {
        *why = "its first line looks like a CSV header";
        return INK_FMT_CSV;
    }
    *why = "its first line is neither JSON, msgpack nor a CSV header; assuming JSON Lines";
    return INK_FMT_JSONL;
}

static const char *format_name(int f)
{
    return f == INK_FMT_CSV ? "CSV" : f == INK_FMT_MSGPACK ? "msgpack" : "JSON Lines";
}

/* Sniff stdin's format (returned), replaying what was read through a pipe on
 * fd 0; -1 on a system error (printed). */
static int sniff_stdin(pthread_t *th, struct replay *r)
{
    size_t cap = 65536;
    r->head = malloc(cap);
    r->len = 0;
    if (!r->head) return -1;
    while (r->len < cap && !memchr(r->head, '\n', r->len)) {
        ssize_t k = read(0, r->head + r->len, cap - r->len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        r->len += (size_t)k;
    }
    const char *why;
    int f = guess_format(r->head, r->len, &why);
    fprintf(stderr, "inkflow send: standard input read as %s: %s (say --format to choose)\n",
            format_name(f), why);
    int pfd[2];
    if (pipe(pfd) < 0 || (r->in = dup(0)) < 0 || dup2(pfd[0], 0) < 0) {
        fprintf(stderr, "inkflow send: stdin: %s\n", strerror(errno));
        return -1;
    }
    close(pfd[0]);
    r->out = pfd[1];
    if (pthread_create(th, NULL, replay_main, r)) {
        fprintf(stderr, "inkflow send: cannot start the stdin thread\n");
        return -1;
    }
    return f;
}

static const char send_usage[] =
    "usage: inkflow send ENDPOINT [FILE] [--format csv|jsonl|msgpack] [--bind] [--hwm N]\n"
    "                    [--eos auto|true|false] [--eos-timeout SECONDS] [CURVE options]\n"
    "Sends every record of FILE (or standard input) as one msgpack frame on a PUSH socket,\n"
    "then an end-of-stream marker that each receiving inkflow source acknowledges, so the\n"
    "tail of the stream is never lost. --eos auto (the default) sends the marker only when\n"
    "every connected receiver is an inkflow source (a plain PULL consumer never sees it);\n"
    "true always, false never. A record no receiver takes for --eos-timeout seconds (default\n"
    "10: none connected, a refused handshake, every receiver full) ends the send.\n"
    "Exit 0 when acknowledged or not sent on purpose, 1 otherwise.\n" CURVE_USAGE;

int ink_cmd_send(int argc, char **argv)
{
    const char *ep = NULL, *file = "-";
    int format = INK_FMT_AUTO, bind = 0, eos = INK_EOS_AUTO;
    long hwm = 10000;
    double eos_timeout = 10;
    struct ink_curve_conf curve = {0};
    static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
                                         {"bind", no_argument, NULL, 'b'},
                                         {"hwm", required_argument, NULL, 'H'},
                                         {"eos-timeout", required_argument, NULL, 'e'},
                                         {"eos", required_argument, NULL, 'E'},
                                         CURVE_OPTIONS,
                                         {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (curve_opt(c, optarg, &curve)) continue;
        switch (c) {
        case OPT_HELP:
            fputs(send_usage, stdout);
            return 0;
        case 'E':
            if (strcmp(optarg, "auto") == 0)
                eos = INK_EOS_AUTO;
            else if (strcmp(optarg, "true") == 0)
                eos = INK_EOS_ON;
            else if (strcmp(optarg, "false") == 0)
                eos = INK_EOS_OFF;
            else
                return ink_usage("send: bad --eos '%s' (auto, true or false)", optarg);
            break;
        case 'f':
            format = parse_format(optarg);
            if (format < 0 || format == INK_FMT_TEXT)
                return ink_usage("send: bad --format '%s' (csv, jsonl or msgpack)", optarg);
            break;
        case 'b':
            bind = 1;
            break;
        case 'H':
            if (ink_opt_long("send", "hwm", optarg, 0, 1000000000, &hwm)) return 2;
            break;
        case 'e':
            if (ink_opt_double("send", "eos-timeout", optarg, 0.001, 86400, &eos_timeout)) return 2;
            break;
        default:
            return ink_opt_error("send", c, optind, argv);
        }
    }
    int npos = argc - optind;
    if (npos > 2) return ink_usage("send: unexpected argument '%s'", argv[optind + 2]);
    if (npos >= 1) ep = argv[optind];
    if (npos == 2) file = argv[optind + 1];
    if (!ep) return ink_usage("send: missing ENDPOINT\n%s", send_usage);
    if (curve_check(&curve, "send")) return 2;
    struct ink_file_reader r;
    struct ink_err err = {0};
    struct ink_limits lim = INK_LIMITS_DEFAULT;
    static pthread_t th;
    static struct replay rep; /* static: still owned if the thread outlives us */
    bool replaying = false;
    if (strcmp(file, "-") == 0 && format == INK_FMT_AUTO) {
        format = sniff_stdin(&th, &rep);
        if (format < 0) return 1;
        replaying = true;
    }
    if (ink_file_reader_open(&r, file, format, &lim, &err)) {
        fprintf(stderr, "inkflow send: %s\n", err.msg);
        return 1;
    }
    void *ctx = zmq_ctx_new();
    struct ink_zmq_conf zc = {.hwm = hwm, .linger = 2.0, .curve = curve};
    if (bind)
        zc.bind = (char *)ep;
    else
        zc.connect = (char *)ep;
    /* the ack socket first: the data socket tells receivers where it is;
     * "send" names the socket's connection counts (ink_zmq_stats) */
    static struct ink_eos_sender es;
    void *s = NULL;
    if (eos == INK_EOS_OFF || ink_eos_sender_open(&es, ctx, ep, "send", &err) == 0) {
        zc.metadata = es.meta[0] ? es.meta : NULL;
        s = ink_zmq_open_node(ctx, ZMQ_PUSH, &zc, "send", &err);
    }
    if (!s) {
        fprintf(stderr, "inkflow send: %s\n", err.msg);
        ink_file_reader_close(&r);
        ink_eos_sender_close(&es);
        zmq_ctx_term(ctx);
        return 1;
    }
    signal(SIGINT, on_int);
    signal(SIGTERM, on_int);
    struct ink_buf buf = {0};
    const char *name = strcmp(file, "-") ? file : "stdin";
    uint64_t sent = 0, bad = 0;
    int rc = 0;
    bool stalled = false;
    for (;;) {
        struct ink_record rec;
        enum ink_reject why;
        const uint8_t *raw;
        size_t rawlen;
        int k = ink_file_reader_next(&r, &rec, &why, &raw, &rawlen);
        if (k == 0) break;
        if (k < 0) {
            fprintf(stderr, "inkflow send: %s: %s\n", name, r.why);
            rc = 1;
            break;
        }
        if (k == 2) {
            bad++;
            fprintf(stderr, "inkflow send: %s: skipped (%s): %s\n", name, ink_reject_name(why),
                    r.why);
            continue;
        }
        ink_buf_reset(&buf);
        ink_encode_msgpack(&rec, 0, &buf);
        /* Never blocked for good: a PUSH socket whose only connection was
         * refused at the handshake (no CURVE, a wrong key) has no peer to
         * queue for, and a blocking send would wait forever. */
        double stall = 0;
        while (zmq_send(s, buf.p, buf.len, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            if (interrupted || (e != EINTR && e != EAGAIN)) {
                rc = 1;
                break;
            }
            if (e == EINTR) continue;
            if (!stall) stall = ink_now();
            if (ink_now() - stall > eos_timeout) {
                fprintf(stderr,
                        "inkflow send: no receiver took a record for %.1f s (none connected, a "
                        "handshake refused: check --server-key and --secret-key, or every "
                        "receiver full); giving up\n",
                        eos_timeout);
                rc = 1;
                stalled = true;
                break;
            }
            zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLOUT};
            zmq_poll(&it, 1, 100);
        }
        if (rc || interrupted) break;
        if (!sent) es.first_send = ink_now();
        sent++;
    }
    if (interrupted) rc = 1;
    uint64_t got = 0;
    char note[300] = "";
    int e = 1;
    if (eos != INK_EOS_OFF && !stalled)
        e = ink_eos_finish(&es, s, eos, sent, eos_timeout, interrupted, &got, note, sizeof note,
                           &err);
    if (e == 1 && note[0]) fprintf(stderr, "inkflow send: %s\n", note);
    if (e < 0) {
        fprintf(stderr, "inkflow send: %s\n", err.msg);
        rc = 1;
    }
    fprintf(stderr, "inkflow send: %llu records sent%s%s", (unsigned long long)sent,
            e ? "" : ", end of stream acknowledged", bad ? "" : "\n");
    if (bad) fprintf(stderr, ", %llu input records skipped\n", (unsigned long long)bad);
    if (bad && !sent) {
        fprintf(stderr, "inkflow send: every input record was skipped; nothing was sent "
                        "(wrong --format?)\n");
        rc = 1;
    }
    bool at_eof = r.eof;
    ink_buf_fini(&buf);
    ink_file_reader_close(&r);
    if (replaying && at_eof) {
        /* the replay thread closed its end: it has finished */
        pthread_join(th, NULL);
        free(rep.head);
    }
    zmq_close(s);
    ink_eos_sender_close(&es);
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
    long count = -1;
    int bind = 0, sub = 0, format = INK_FMT_JSONL;
    double timeout = 0;
    struct ink_curve_conf curve = {0};
    static const struct option opts[] = {{"count", required_argument, NULL, 'n'},
                                         {"bind", no_argument, NULL, 'b'},
                                         {"socket", required_argument, NULL, 's'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"timeout", required_argument, NULL, 't'},
                                         CURVE_OPTIONS,
                                         {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (curve_opt(c, optarg, &curve)) continue;
        switch (c) {
        case OPT_HELP:
            fputs(recv_usage, stdout);
            return 0;
        case 'n':
            if (ink_opt_long("recv", "count", optarg, 1, LONG_MAX, &count)) return 2;
            break;
        case 'b':
            bind = 1;
            break;
        case 's':
            if (strcmp(optarg, "sub") == 0)
                sub = 1;
            else if (strcmp(optarg, "pull") != 0)
                return ink_usage("recv: bad --socket '%s' (pull or sub)", optarg);
            break;
        case 'f':
            format = parse_format(optarg);
            if (format < 0)
                return ink_usage("recv: bad --format '%s' (jsonl, csv, text or msgpack)", optarg);
            break;
        case 't':
            if (ink_opt_double("recv", "timeout", optarg, 0.001, 86400 * 365, &timeout)) return 2;
            break;
        default:
            return ink_opt_error("recv", c, optind, argv);
        }
    }
    if (argc - optind > 1) return ink_usage("recv: unexpected argument '%s'", argv[optind + 1]);
    if (argc - optind == 1) ep = argv[optind];
    if (!ep) return ink_usage("recv: missing ENDPOINT\n%s", recv_usage);
    if (curve_check(&curve, "recv")) return 2;
    void *ctx = zmq_ctx_new();
    struct ink_zmq_conf zc = {.hwm = 10000, .linger = 1.0, .subscribe = "", .curve = curve};
    if (bind)
        zc.bind = (char *)ep;
    else
        zc.connect = (char *)ep;
    struct ink_err err = {0};
    void *s = ink_zmq_open(ctx, sub ? ZMQ_SUB : ZMQ_PULL, &zc, &err);
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
    while (!interrupted && (count < 0 || got < (uint64_t)count)) {
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
        if (!sub && ink_eos_notice(ctx, &m, &seen, &err) < 0)
            fprintf(stderr, "inkflow recv: %s\n", err.msg);
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
    static const struct option opts[] = {
        {"timeout", required_argument, NULL, 't'}, CURVE_OPTIONS, {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (curve_opt(c, optarg, &curve)) continue;
        switch (c) {
        case OPT_HELP:
            fputs(query_usage, stdout);
            return 0;
        case 't':
            if (ink_opt_double("query", "timeout", optarg, 0.001, 86400, &timeout)) return 2;
            break;
        default:
            return ink_opt_error("query", c, optind, argv);
        }
    }
    if (argc - optind > 2) return ink_usage("query: unexpected argument '%s'", argv[optind + 2]);
    if (argc - optind >= 1) ep = argv[optind];
    if (argc - optind == 2) json = argv[optind + 1];
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
    struct ink_zmq_conf zc = {.hwm = 100, .linger = 0, .connect = (char *)ep, .curve = curve};
    struct ink_err err = {0};
    void *s = ink_zmq_open(ctx, ZMQ_REQ, &zc, &err);
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
