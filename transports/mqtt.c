#define _GNU_SOURCE /* pipe2 */
/* MQTT transport (docs/mqtt.md): the `mqtt` source (subscribe to topic
 * filters; JSON, msgpack, a plain number or a CSV line per message) and
 * sink (publish each record to a topic made from a template), over
 * libmosquitto 2.0 without its thread.
 *
 * The client's socket joins the engine's poll loop (engine/transport.h):
 * pollitem hands the loop mosquitto_socket() (readable; writable while
 * libmosquitto has bytes queued) and runs mosquitto_loop_misc (keepalive)
 * and the reconnect attempts, which is why it is called every turn; pump
 * runs mosquitto_loop_read / loop_write, and the message callback decodes
 * and dispatches each record synchronously, on the loop's thread.
 *
 * While disconnected the source polls a pipe that never becomes readable,
 * so the loop sleeps until the next attempt (timeout_ms) instead of
 * spinning. Attempts back off from 100 ms, doubling, to reconnect_max.
 *
 * Delivery (docs/mqtt.md): QoS 0 or 1 only (the Debian 2.0.11 broker
 * stalls QoS 2 over MQTT v5). libmosquitto acknowledges a QoS 1 message
 * when it reads it, before the callback, so what was received after the
 * last snapshot is lost if the process is killed: the source counts those
 * records (inkflow_mqtt_records_since_snapshot). With clean_session false
 * and a fixed client_id, the broker keeps what is published while the
 * client is away and delivers it on reconnect. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <mosquitto.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../engine/clock.h"
#include "../engine/codec.h"
#include "../engine/fields.h"
#include "../engine/graph.h"
#include "../engine/path.h"
#include "../engine/transport.h"

extern const struct ink_source_type ink_source_mqtt;
extern const struct ink_sink_type ink_sink_mqtt;

/* ---- configuration ------------------------------------------------------------ */

enum mqtt_format { MQ_JSON, MQ_MSGPACK, MQ_NUMBER, MQ_CSV };

struct mqtt_tls_conf {
    bool set;
    char *ca_file, *cert_file, *key_file;
    bool insecure;
};

struct mqtt_conf {
    char *broker;              /* host[:port] */
    struct ink_strings topics; /* source: topic filters */
    char *topic;               /* sink: template, {key} replaced */
    int64_t qos;
    char *client_id;
    bool clean_session;
    double keepalive;
    char *username, *password_file;
    struct mqtt_tls_conf tls;
    int format;
    struct ink_strings columns; /* format csv: the column names */
    uint64_t max_message_bytes;
    double reconnect_max;
    bool retain;        /* sink */
    int64_t max_queued; /* sink: unacknowledged publishes before write waits */
    struct ink_fields_conf fields;
};

#define MOFF(f) offsetof(struct mqtt_conf, f)
#define TOFF(f) offsetof(struct mqtt_tls_conf, f)

static const char *const src_formats[] = {"json", "msgpack", "number", "csv", NULL};
static const char *const sink_formats[] = {"json", "msgpack", NULL};

static const struct ink_param tls_params[] = {
    {.name = "ca_file",
     .type = INK_P_STRING,
     .offset = TOFF(ca_file),
     .flags = INK_PF_REQUIRED,
     .help = "PEM file of the CA that signed the broker's certificate"},
    {.name = "cert_file",
     .type = INK_P_STRING,
     .offset = TOFF(cert_file),
     .help = "this client's certificate (PEM), for brokers that require one"},
    {.name = "key_file",
     .type = INK_P_STRING,
     .offset = TOFF(key_file),
     .help = "this client's private key (PEM, unencrypted)"},
    {.name = "insecure",
     .type = INK_P_BOOL,
     .offset = TOFF(insecure),
     .def = "false",
     .help = "do not check the broker's host name against its certificate (testing only)"},
    {0},
};

/* The keys a source and a sink share; `clean_session` differs by default. */
#define CLIENT_PARAMS                                                                              \
    {.name = "broker",                                                                             \
     .type = INK_P_STRING,                                                                         \
     .offset = MOFF(broker),                                                                       \
     .flags = INK_PF_REQUIRED,                                                                     \
     .help = "host:port of the broker (port 1883, or 8883 with tls)"},                             \
        {.name = "qos",                                                                            \
         .type = INK_P_INT,                                                                        \
         .offset = MOFF(qos),                                                                      \
         .def = "1",                                                                               \
         .min = 0,                                                                                 \
         .max = 1,                                                                                 \
         .help = "0 (at most once) or 1 (at least once); QoS 2 is not offered (docs/mqtt.md)"},    \
        {.name = "client_id",                                                                      \
         .type = INK_P_STRING,                                                                     \
         .offset = MOFF(client_id),                                                                \
         .help = "MQTT client id (default inkflow-NODE); fixed, so that the broker keeps the "     \
                 "session"},                                                                       \
        {.name = "keepalive",                                                                      \
         .type = INK_P_DURATION,                                                                   \
         .offset = MOFF(keepalive),                                                                \
         .def = "30s",                                                                             \
         .min = 5,                                                                                 \
         .max = 65535,                                                                             \
         .help = "MQTT keepalive: a broker silent for about twice this is taken as gone"},         \
        {.name = "username",                                                                       \
         .type = INK_P_STRING,                                                                     \
         .offset = MOFF(username),                                                                 \
         .help = "user name for the broker"},                                                      \
        {.name = "password_file",                                                                  \
         .type = INK_P_STRING,                                                                     \
         .offset = MOFF(password_file),                                                            \
         .help = "file whose first line is the password (relative to the config)"},                \
        {.name = "tls",                                                                            \
         .type = INK_P_OBJECT,                                                                     \
         .offset = MOFF(tls),                                                                      \
         .sub = tls_params,                                                                        \
         .help = "TLS to the broker: {ca_file, cert_file, key_file, insecure}"},                   \
    {                                                                                              \
        .name = "reconnect_max", .type = INK_P_DURATION, .offset = MOFF(reconnect_max),            \
        .def = "5s", .min = 0.1, .max = 3600,                                                      \
        .help = "longest wait between two connection attempts (from 100 ms, doubling)"             \
    }

static const struct ink_param mqtt_src_params[] = {
    CLIENT_PARAMS,
    {.name = "topics",
     .type = INK_P_STRINGS,
     .offset = MOFF(topics),
     .flags = INK_PF_REQUIRED,
     .len_min = 1,
     .len_max = 64,
     .help = "topic filters to subscribe to, with + and # wildcards: [site/+/temp]"},
    {.name = "clean_session",
     .type = INK_P_BOOL,
     .offset = MOFF(clean_session),
     .def = "false",
     .help = "false: the broker keeps the subscription and queues QoS 1 messages while "
             "inkflow is away"},
    {.name = "format",
     .type = INK_P_ENUM,
     .offset = MOFF(format),
     .def = "json",
     .choices = src_formats,
     .help = "payload: a JSON object, a msgpack map, a plain number (x = [value]; `value` for "
             "fields:) or a CSV line (columns)"},
    {.name = "columns",
     .type = INK_P_STRINGS,
     .offset = MOFF(columns),
     .len_min = 0,
     .len_max = 1024,
     .help = "format csv: the names of the columns (the payload has no header)"},
    {.name = "max_message_bytes",
     .type = INK_P_SIZE,
     .offset = MOFF(max_message_bytes),
     .def = "64KiB",
     .min = 64,
     .max = 268435455,
     .help = "payloads larger than this are rejected (too_large) and counted"},
    INK_FIELDS_PARAM(struct mqtt_conf),
    {0},
};

static const struct ink_param mqtt_sink_params[] = {
    CLIENT_PARAMS,
    {.name = "topic",
     .type = INK_P_STRING,
     .offset = MOFF(topic),
     .flags = INK_PF_REQUIRED,
     .help = "topic to publish to; {key} is replaced by the record's key: out/{key}"},
    {.name = "clean_session",
     .type = INK_P_BOOL,
     .offset = MOFF(clean_session),
     .def = "true",
     .help = "start each connection with a new session"},
    {.name = "retain",
     .type = INK_P_BOOL,
     .offset = MOFF(retain),
     .def = "false",
     .help = "publish retained messages (the broker keeps the last one per topic)"},
    {.name = "format",
     .type = INK_P_ENUM,
     .offset = MOFF(format),
     .def = "json",
     .choices = sink_formats,
     .help = "payload: a JSON object or a msgpack map per record"},
    {.name = "max_queued",
     .type = INK_P_INT,
     .offset = MOFF(max_queued),
     .def = "10000",
     .min = 1,
     .max = 10000000,
     .help = "publishes not yet acknowledged before a write waits for the broker "
             "(backpressure)"},
    {0},
};

/* host[:port], [v6]:port. 0, or -1. */
static int parse_broker(const char *s, bool tls, char *host, size_t hn, int *port)
{
    const char *colon = NULL, *h = s, *he;
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) return -1;
        h = s + 1, he = rb;
        if (rb[1] == ':')
            colon = rb + 1;
        else if (rb[1])
            return -1;
    } else {
        colon = strrchr(s, ':');
        he = colon ? colon : s + strlen(s);
    }
    if (he == h || (size_t)(he - h) >= hn) return -1;
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = 0;
    *port = tls ? 8883 : 1883;
    if (colon) {
        char *e;
        long p = strtol(colon + 1, &e, 10);
        if (*e || p < 1 || p > 65535 || !colon[1]) return -1;
        *port = (int)p;
    }
    return 0;
}

static int mqtt_check(const void *conf, struct ink_err *err)
{
    const struct mqtt_conf *c = conf;
    char host[256];
    int port;
    if (parse_broker(c->broker, c->tls.set, host, sizeof host, &port))
        return ink_err_set(err, INK_EINVAL, "broker: '%s' is not host:port", c->broker);
    for (int i = 0; i < c->topics.n; i++) {
        const char *t = c->topics.v[i];
        if (!*t || mosquitto_sub_topic_check(t) != MOSQ_ERR_SUCCESS)
            return ink_err_set(err, INK_EINVAL,
                               "topics[%d]: '%s' is not a topic filter (+ and # stand for whole "
                               "levels: site/+/temp, site/#)",
                               i, t);
    }
    if (c->topic && (!*c->topic || strpbrk(c->topic, "+#")))
        return ink_err_set(err, INK_EINVAL,
                           "topic: '%s': a topic to publish to has no + or # wildcards", c->topic);
    if (c->format == MQ_CSV && c->topics.n && c->columns.n == 0)
        return ink_err_set(err, INK_EINVAL, "format csv needs 'columns' (the names of the cells)");
    if (c->tls.set && !c->tls.cert_file != !c->tls.key_file)
        return ink_err_set(err, INK_EINVAL,
                           "tls: give both 'cert_file' and 'key_file', or neither");
    return 0;
}

/* ---- the client, shared by the source and the sink --------------------------------- */

static int lib_refs; /* mosquitto_lib_init / cleanup, main thread only */

struct client {
    struct ink_node *n;
    const struct mqtt_conf *c;
    struct mosquitto *m;
    char host[200];
    int port;
    bool started;   /* connect_async was called once: reconnect_async from now on */
    bool connected; /* CONNACK accepted */
    bool closing;   /* client_close sent DISCONNECT */
    double next_try, backoff;
    uint64_t connects, disconnects;
    char why[512]; /* why it is not connected */
    int idle[2];   /* a pipe nobody writes: what a disconnected source polls */
};

static void schedule_retry(struct client *cl)
{
    cl->next_try = ink_now() + cl->backoff;
    cl->backoff = fmin(cl->backoff * 2, cl->c->reconnect_max);
}

static void try_connect(struct client *cl)
{
    int rc = cl->started
                 ? mosquitto_reconnect_async(cl->m)
                 : mosquitto_connect_async(cl->m, cl->host, cl->port, (int)cl->c->keepalive);
    if (rc != MOSQ_ERR_INVAL) cl->started = true;
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(cl->why, sizeof cl->why, "cannot connect to %s:%d: %s", cl->host, cl->port,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        ink__log(cl->n, "%s (next attempt in %.1f s)", cl->why, cl->backoff);
        schedule_retry(cl);
    }
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags);
static void on_disconnect(struct mosquitto *m, void *obj, int rc);

/* A loop call failed: the connection is gone (libmosquitto closed the
 * socket and called on_disconnect) or never was. */
static void loop_failed(struct client *cl, int rc)
{
    if (rc == MOSQ_ERR_SUCCESS) return;
    const char *what = rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc);
    if (mosquitto_socket(cl->m) >= 0) mosquitto_disconnect(cl->m);
    if (cl->connected) {
        on_disconnect(cl->m, cl->n, rc); /* says why, schedules the next attempt */
        return;
    }
    if (cl->next_try <= ink_now()) { /* libmosquitto did not report it: a TLS handshake */
        snprintf(cl->why, sizeof cl->why, "cannot connect to %s:%d: %s", cl->host, cl->port, what);
        ink__log(cl->n, "%s (next attempt in %.1f s)", cl->why, cl->backoff);
        schedule_retry(cl);
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    struct ink_node *n = obj;
    struct client *cl = n->impl;
    const char *what = rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc);
    if (cl->closing) { /* our own DISCONNECT */
        cl->connected = false;
        return;
    }
    if (cl->connected) {
        cl->disconnects++;
        snprintf(cl->why, sizeof cl->why, "connection to %s:%d lost: %s", cl->host, cl->port, what);
        ink__log(n, "%s; reconnecting", cl->why);
    } else if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(cl->why, sizeof cl->why, "cannot connect to %s:%d: %s", cl->host, cl->port, what);
        ink__log(n, "%s (next attempt in %.1f s)", cl->why, cl->backoff);
    }
    cl->connected = false;
    schedule_retry(cl);
}

static char *read_password(const char *base, const char *path, struct ink_err *err)
{
    char pb[4096];
    const char *p = ink_path_resolve(base, path, pb, sizeof pb);
    FILE *f = fopen(p, "r");
    if (!f) {
        ink_err_set(err, INK_EIO, "password_file %s: %s", p, strerror(errno));
        return NULL;
    }
    char line[1024];
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    return strdup(line);
}

static int client_open(struct client *cl, struct ink_node *n, struct ink_err *err)
{
    cl->n = n;
    cl->c = n->nc->conf;
    cl->idle[0] = cl->idle[1] = -1;
    const struct mqtt_conf *c = cl->c;
    const char *base = n->g->cfg->base_dir;
    if (lib_refs++ == 0) mosquitto_lib_init();
    parse_broker(c->broker, c->tls.set, cl->host, sizeof cl->host, &cl->port);
    char id[256];
    snprintf(id, sizeof id, "%s", c->client_id ? c->client_id : "");
    if (!c->client_id) snprintf(id, sizeof id, "inkflow-%s", n->name);
    cl->m = mosquitto_new(id, c->clean_session, n);
    if (!cl->m) return ink_err_set(err, INK_ENOMEM, "mosquitto_new: %s", strerror(errno));
    mosquitto_int_option(cl->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    if (c->username || c->password_file) {
        char *pw = c->password_file ? read_password(base, c->password_file, err) : NULL;
        if (c->password_file && !pw) return err->code;
        int rc = mosquitto_username_pw_set(cl->m, c->username, pw);
        free(pw);
        if (rc) return ink_err_set(err, INK_EINVAL, "username: %s", mosquitto_strerror(rc));
    }
    if (c->tls.set) {
        char ca[4096], cert[4096], key[4096];
        const char *pca = ink_path_resolve(base, c->tls.ca_file, ca, sizeof ca);
        const char *pcert =
            c->tls.cert_file ? ink_path_resolve(base, c->tls.cert_file, cert, sizeof cert) : NULL;
        const char *pkey =
            c->tls.key_file ? ink_path_resolve(base, c->tls.key_file, key, sizeof key) : NULL;
        int rc = mosquitto_tls_set(cl->m, pca, NULL, pcert, pkey, NULL);
        if (!rc && c->tls.insecure) rc = mosquitto_tls_insecure_set(cl->m, true);
        if (rc)
            return ink_err_set(err, INK_EINVAL, "tls: %s (ca_file %s)",
                               rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                               pca);
    }
    if (pipe2(cl->idle, O_CLOEXEC)) return ink_err_set(err, INK_EIO, "pipe: %s", strerror(errno));
    mosquitto_connect_with_flags_callback_set(cl->m, on_connect);
    mosquitto_disconnect_callback_set(cl->m, on_disconnect);
    cl->backoff = 0.1;
    snprintf(cl->why, sizeof cl->why, "connecting to %s:%d", cl->host, cl->port);
    try_connect(cl);
    return 0;
}

/* Every loop turn: keepalive, and a connection attempt when one is due. */
static void client_tick(struct client *cl)
{
    if (mosquitto_socket(cl->m) >= 0) {
        int rc = mosquitto_loop_misc(cl->m);
        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) loop_failed(cl, rc);
    }
    if (mosquitto_socket(cl->m) < 0 && ink_now() >= cl->next_try) try_connect(cl);
}

static int client_timeout_ms(struct client *cl)
{
    if (mosquitto_socket(cl->m) >= 0) return -1;
    double w = cl->next_try - ink_now();
    return w <= 0 ? 0 : (int)ceil(w * 1e3);
}

/* Read what is there, write what is queued. */
static void client_io(struct client *cl, bool readable)
{
    int rc = MOSQ_ERR_SUCCESS;
    if (readable) rc = mosquitto_loop_read(cl->m, 1);
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_want_write(cl->m)) rc = mosquitto_loop_write(cl->m, 1);
    loop_failed(cl, rc);
}

static void client_close(struct client *cl)
{
    if (cl->m) {
        cl->closing = true;
        if (cl->connected) {
            mosquitto_disconnect(cl->m);
            mosquitto_loop_write(cl->m, 1);
        }
        mosquitto_destroy(cl->m);
        cl->m = NULL;
        if (--lib_refs == 0) mosquitto_lib_cleanup();
    }
    for (int i = 0; i < 2; i++)
        if (cl->idle[i] >= 0) close(cl->idle[i]);
    cl->idle[0] = cl->idle[1] = -1;
}

static bool client_ready(struct client *cl, char *why, size_t len)
{
    if (cl->connected) return true;
    snprintf(why, len, "%s", cl->why[0] ? cl->why : "not connected to the broker");
    return false;
}

/* /metrics: one family per line kind, a sample per mqtt node; the first
 * mqtt node of the graph writes them all (a family's samples must be
 * together, with one # HELP). */
static bool is_mqtt(const struct ink_node *n);
static uint64_t at_risk(const struct ink_node *n);

static void client_metrics(struct client *cl, struct ink_buf *b)
{
    struct ink_graph *g = cl->n->g;
    int first = 0;
    while (first < g->n && !is_mqtt(&g->nodes[first])) first++;
    if (&g->nodes[first] != cl->n) return;
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"inkflow_mqtt_connected", "gauge", "1 while the node is connected to its broker"},
        {"inkflow_mqtt_connections_total", "counter", "connections accepted by the broker"},
        {"inkflow_mqtt_records_since_snapshot", "gauge",
         "source: records acknowledged to the broker since the last durable snapshot, lost if "
         "the process is killed now (docs/mqtt.md)"},
    };
    for (int f = 0; f < 3; f++) {
        char line[512];
        int k = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name,
                         fam[f].help, fam[f].name, fam[f].type);
        ink_buf_append(b, line, (size_t)k);
        for (int i = first; i < g->n; i++) {
            const struct ink_node *n = &g->nodes[i];
            if (!is_mqtt(n) || !n->impl) continue;
            const struct client *c = n->impl;
            if (f == 2 && n->kind != INK_NODE_SOURCE) continue;
            unsigned long long v = f == 0   ? (unsigned long long)c->connected
                                   : f == 1 ? (unsigned long long)c->connects
                                            : (unsigned long long)at_risk(n);
            k = snprintf(line, sizeof line, "%s{node=\"%s\"} %llu\n", fam[f].name, n->name, v);
            ink_buf_append(b, line, (size_t)k);
        }
    }
}

/* ---- source ----------------------------------------------------------------------------- */

struct mqtt_src {
    struct client cl; /* first: on_connect / on_disconnect see the node's impl as a client */
    struct ink_decoder dec;
    struct ink_csv_header hdr;
    bool have_hdr;
    int budget, handled, fatal;
    bool more;        /* the last pump stopped at its budget */
    int subs_pending; /* SUBSCRIBEs without their SUBACK */
    bool sub_refused;
    uint64_t received, at_snapshot;
};

/* The CONNACK, for sources and sinks alike: a refusal is logged and retried
 * with backoff (false); an acceptance resets the backoff (true). */
static bool client_connected(struct ink_node *n, struct mosquitto *m, int rc, int flags)
{
    struct client *cl = n->impl;
    if (rc != 0) {
        snprintf(cl->why, sizeof cl->why, "broker %s:%d refused the connection: %s", cl->host,
                 cl->port, mosquitto_connack_string(rc));
        ink__log(n, "%s", cl->why);
        cl->connected = false;
        mosquitto_disconnect(m);
        schedule_retry(cl);
        return false;
    }
    cl->connected = true;
    cl->connects++;
    cl->why[0] = 0;
    cl->backoff = 0.1;
    if (cl->connects > 1)
        ink__log_event(n, "connected to %s:%d again%s", cl->host, cl->port,
                       (flags & 1) ? " (session resumed)" : "");
    return true;
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags)
{
    struct ink_node *n = obj;
    if (!client_connected(n, m, rc, flags)) return;
    struct client *cl = n->impl;
    const struct mqtt_conf *c = cl->c;
    struct mqtt_src *src = n->impl;
    src->subs_pending = 0;
    src->sub_refused = false;
    for (int i = 0; i < c->topics.n; i++) {
        int s = mosquitto_subscribe(m, NULL, c->topics.v[i], (int)c->qos);
        if (s == MOSQ_ERR_SUCCESS)
            src->subs_pending++;
        else
            ink__log(n, "subscribe %s: %s", c->topics.v[i], mosquitto_strerror(s));
    }
}

/* SUBACK: ready once every filter is granted; a refused one (0x80, e.g. an
 * ACL) is said on /ready and in the log. */
static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n_granted, const int *granted)
{
    (void)m, (void)mid;
    struct ink_node *n = obj;
    struct mqtt_src *s = n->impl;
    if (s->subs_pending > 0) s->subs_pending--;
    for (int i = 0; i < n_granted; i++)
        if (granted[i] == 0x80) {
            s->sub_refused = true;
            ink__log(n, "the broker refused a subscription (its ACL?); topics: %s%s",
                     s->cl.c->topics.v[0], s->cl.c->topics.n > 1 ? ", ..." : "");
        }
}

/* One message: decoded and dispatched now (the loop's thread). */
static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    struct ink_node *n = obj;
    struct mqtt_src *s = n->impl;
    const struct mqtt_conf *c = s->cl.c;
    s->received++;
    s->handled++;
    const uint8_t *p = msg->payload;
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    char why[400];
    if (len > s->dec.lim.max_frame) {
        snprintf(why, sizeof why, "payload of %zu bytes on %.100s, over max_message_bytes %u", len,
                 msg->topic, s->dec.lim.max_frame);
        ink__source_reject(n, INK_REJ_TOO_LARGE, why, p, len);
        return;
    }
    struct ink_record rec;
    enum ink_reject rj = INK_REJ_NONE;
    ink_decoder_set_topic(&s->dec, msg->topic, strlen(msg->topic));
    switch (c->format) {
    case MQ_MSGPACK:
        rj = ink_decode_msgpack(&s->dec, p, len, &rec);
        break;
    case MQ_CSV:
        rj = ink_decode_csv(&s->dec, &s->hdr, (const char *)p, len, &rec);
        break;
    case MQ_NUMBER: {
        char tmp[64], *e;
        size_t k = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
        memcpy(tmp, p, k);
        tmp[k] = 0;
        double v = strtod(tmp, &e);
        while (*e == ' ' || *e == '\n' || *e == '\r' || *e == '\t') e++;
        if (len == 0 || len >= sizeof tmp || *e || e == tmp) {
            rj = INK_REJ_DECODE;
            snprintf(s->dec.why, sizeof s->dec.why, "not a number");
        } else if (!isfinite(v)) {
            rj = INK_REJ_NONFINITE;
            snprintf(s->dec.why, sizeof s->dec.why, "value: not finite");
        } else {
            /* {"value": v} through the msgpack decoder, so that fields:
             * (value, topic levels) applies as to any other payload */
            uint8_t mp[16] = {0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0xcb};
            uint64_t u;
            memcpy(&u, &v, 8);
            u = __builtin_bswap64(u);
            memcpy(mp + 8, &u, 8);
            if (s->dec.fmap) {
                rj = ink_decode_msgpack(&s->dec, mp, sizeof mp, &rec);
            } else {
                memset(&rec, 0, offsetof(struct ink_record, fields));
                s->dec.x[0] = v;
                rec.x = s->dec.x, rec.dim = 1, rec.flags = INK_HAS_X;
            }
        }
        break;
    }
    default:
        rj = ink_decode_json(&s->dec, (const char *)p, len, &rec);
    }
    ink_decoder_set_topic(&s->dec, NULL, 0);
    if (rj != INK_REJ_NONE) {
        snprintf(why, sizeof why, "%s (topic %.100s)", s->dec.why, msg->topic);
        ink__source_reject(n, rj, why, p, len);
        return;
    }
    int rc = ink__source_emit(n, &rec);
    if (rc < 0) s->fatal = rc;
}

static int src_open(struct ink_node *n, struct ink_err *err)
{
    struct mqtt_src *s = n->impl;
    const struct mqtt_conf *c = n->nc->conf;
    struct ink_limits lim = ink__source_limits(n, c->max_message_bytes);
    s->cl.idle[0] = s->cl.idle[1] = -1;
    if (ink_decoder_init(&s->dec, &lim)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    if (ink_decoder_set_fields(&s->dec, &c->fields, err)) return err->code;
    if (c->format == MQ_CSV) {
        struct ink_buf h = {0};
        for (int i = 0; i < c->columns.n; i++) {
            if (i) ink_buf_putc(&h, ',');
            ink_buf_puts(&h, c->columns.v[i]);
        }
        int rc = ink_csv_header_parse(&s->hdr, h.p ? (const char *)h.p : "", h.len, err);
        ink_buf_fini(&h);
        if (rc) return rc;
        s->have_hdr = true;
    }
    int rc = client_open(&s->cl, n, err);
    if (rc) return rc;
    mosquitto_message_callback_set(s->cl.m, on_message);
    mosquitto_subscribe_callback_set(s->cl.m, on_subscribe);
    return 0;
}

static int src_pollitem(struct ink_node *n, struct ink_pollitem *pi)
{
    struct mqtt_src *s = n->impl;
    client_tick(&s->cl);
    if (s->more) return 0; /* more is waiting: pumped again without polling */
    int fd = mosquitto_socket(s->cl.m);
    pi->socket = NULL;
    if (fd >= 0) {
        pi->fd = fd;
        pi->events = INK_POLLIN | (mosquitto_want_write(s->cl.m) ? INK_POLLOUT : 0);
    } else {
        pi->fd = s->cl.idle[0]; /* never readable: the loop sleeps until timeout_ms */
        pi->events = INK_POLLIN;
    }
    return 1;
}

static int src_timeout_ms(struct ink_node *n)
{
    return client_timeout_ms(&((struct mqtt_src *)n->impl)->cl);
}

static int src_pump(struct ink_node *n, int budget)
{
    struct mqtt_src *s = n->impl;
    s->handled = 0;
    s->more = false;
    if (mosquitto_socket(s->cl.m) < 0) return 0;
    if (mosquitto_want_write(s->cl.m)) client_io(&s->cl, false);
    while (s->handled < budget && mosquitto_socket(s->cl.m) >= 0 && !s->fatal) {
        int before = s->handled;
        int rc = mosquitto_loop_read(s->cl.m, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            loop_failed(&s->cl, rc);
            break;
        }
        if (s->handled == before) break; /* nothing complete: wait for the socket */
    }
    if (mosquitto_socket(s->cl.m) >= 0 && mosquitto_want_write(s->cl.m)) client_io(&s->cl, false);
    s->more = s->handled >= budget;
    if (s->fatal) return s->fatal;
    return s->handled;
}

static void src_close(struct ink_node *n)
{
    struct mqtt_src *s = n->impl;
    client_close(&s->cl);
    ink_decoder_fini(&s->dec);
    if (s->have_hdr) ink_csv_header_fini(&s->hdr);
    s->have_hdr = false;
}

static void src_committed(struct ink_node *n)
{
    struct mqtt_src *s = n->impl;
    s->at_snapshot = s->received;
}

static bool src_ready(struct ink_node *n, char *why, size_t len)
{
    struct mqtt_src *s = n->impl;
    if (!client_ready(&s->cl, why, len)) return false;
    if (s->sub_refused) {
        snprintf(why, len, "the broker refused a subscription (see the log)");
        return false;
    }
    if (s->subs_pending > 0) {
        snprintf(why, len, "waiting for the broker to confirm the subscriptions");
        return false;
    }
    return true;
}

static void src_metrics(struct ink_node *n, struct ink_buf *out)
{
    client_metrics(&((struct mqtt_src *)n->impl)->cl, out);
}

static uint64_t at_risk(const struct ink_node *n)
{
    const struct mqtt_src *s = n->impl;
    return s->received - s->at_snapshot;
}

const struct ink_source_type ink_source_mqtt = {
    .type =
        {
            .name = "mqtt",
            .kind = INK_NODE_SOURCE,
            .summary = "records from MQTT topics (JSON, msgpack, a number or a CSV line per "
                       "message)",
            .params = mqtt_src_params,
            .conf_size = sizeof(struct mqtt_conf),
            .check = mqtt_check,
        },
    .impl_size = sizeof(struct mqtt_src),
    .open = src_open,
    .pollitem = src_pollitem,
    .timeout_ms = src_timeout_ms,
    .pump = src_pump,
    .close = src_close,
    .committed = src_committed,
    .ready = src_ready,
    .metrics = src_metrics,
};

/* ---- sink ------------------------------------------------------------------------------- */

struct mqtt_snk {
    struct client cl; /* first, as in the source */
    struct ink_buf buf;
    char *topic; /* the rendered topic */
    size_t topic_cap;
    int64_t outstanding; /* published, not yet acknowledged (QoS 1) or sent (QoS 0) */
};

static void on_connect_snk(struct mosquitto *m, void *obj, int rc, int flags)
{
    client_connected(obj, m, rc, flags);
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m, (void)mid;
    struct ink_node *n = obj;
    struct mqtt_snk *k = n->impl;
    if (k->outstanding > 0) k->outstanding--;
}

static int snk_open(struct ink_node *n, struct ink_err *err)
{
    struct mqtt_snk *k = n->impl;
    k->cl.idle[0] = k->cl.idle[1] = -1;
    int rc = client_open(&k->cl, n, err);
    if (rc) return rc;
    mosquitto_connect_with_flags_callback_set(k->cl.m, on_connect_snk);
    mosquitto_publish_callback_set(k->cl.m, on_publish);
    return 0;
}

/* The topic for rec: the template with {key} replaced. 0, or -1 (no key,
 * or a key that would make a wildcard). */
static int render_topic(struct mqtt_snk *k, const struct ink_record *rec, const char **why)
{
    const char *t = k->cl.c->topic;
    size_t need = strlen(t) + 1 + ((rec->flags & INK_HAS_KEY) ? rec->key_len : 0) * 4;
    if (need > k->topic_cap) {
        char *p = realloc(k->topic, need);
        if (!p) return *why = "out of memory", -1;
        k->topic = p, k->topic_cap = need;
    }
    char *o = k->topic;
    while (*t) {
        if (!strncmp(t, "{key}", 5)) {
            if (!(rec->flags & INK_HAS_KEY)) return *why = "the record has no key for {key}", -1;
            for (uint32_t i = 0; i < rec->key_len; i++)
                if (rec->key[i] == '+' || rec->key[i] == '#' || rec->key[i] == 0)
                    return *why = "the key holds + or # (wildcards) or NUL", -1;
            memcpy(o, rec->key, rec->key_len);
            o += rec->key_len;
            t += 5;
        } else {
            *o++ = *t++;
        }
    }
    *o = 0;
    return 0;
}

/* Service the connection until fewer than `limit` publishes are pending,
 * the connection is gone, or the deadline passes. 0, or -1. */
static int drain(struct ink_node *n, int64_t limit, double deadline)
{
    struct mqtt_snk *k = n->impl;
    while (k->outstanding >= limit) {
        int fd = mosquitto_socket(k->cl.m);
        if (fd < 0 || !k->cl.connected || ink_now() > deadline) return -1;
        struct pollfd pf = {
            .fd = fd, .events = (short)(POLLIN | (mosquitto_want_write(k->cl.m) ? POLLOUT : 0))};
        if (poll(&pf, 1, 100) < 0 && errno != EINTR) return -1;
        client_io(&k->cl, (pf.revents & (POLLIN | POLLERR | POLLHUP)) != 0);
        client_tick(&k->cl);
    }
    return 0;
}

/* Until connected: 0, or -1 when stopping and the grace period is over. */
static int wait_connected(struct ink_node *n)
{
    struct mqtt_snk *k = n->impl;
    double stop_at = 0;
    while (!k->cl.connected) {
        if (n->g->stop) {
            if (stop_at == 0) stop_at = ink_now() + n->g->cfg->engine.grace;
            if (ink_now() > stop_at) return -1;
        }
        client_tick(&k->cl);
        int fd = mosquitto_socket(k->cl.m);
        if (fd < 0) {
            int ms = client_timeout_ms(&k->cl);
            struct timespec ts = {0, (long)(ms < 100 ? ms : 100) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        struct pollfd pf = {
            .fd = fd, .events = (short)(POLLIN | (mosquitto_want_write(k->cl.m) ? POLLOUT : 0))};
        if (poll(&pf, 1, 100) < 0 && errno != EINTR) return -1;
        client_io(&k->cl, (pf.revents & (POLLIN | POLLERR | POLLHUP)) != 0);
    }
    return 0;
}

static int snk_write(struct ink_node *n, const struct ink_record *rec)
{
    struct mqtt_snk *k = n->impl;
    const struct mqtt_conf *c = k->cl.c;
    const char *why = NULL;
    if (render_topic(k, rec, &why)) {
        n->c.dropped++;
        ink__log(n, "record not published: %s", why);
        return 1;
    }
    /* QoS 1, or no connection yet: wait for the broker (backpressure), up
     * to the grace period once a stop was asked for; QoS 0 drops while a
     * connection it had is down. */
    if (!k->cl.connected && (c->qos == 1 || k->cl.connects == 0) && wait_connected(n)) {
        n->c.dropped++;
        ink__log(n, "record not published: %s", k->cl.why[0] ? k->cl.why : "not connected");
        return 1;
    }
    if (!k->cl.connected) {
        n->c.dropped++;
        ink__log(n, "record not published (QoS 0): %s", k->cl.why);
        return 1;
    }
    if (k->outstanding >= c->max_queued) {
        double grace = n->g->stop ? n->g->cfg->engine.grace : 3600;
        if (drain(n, c->max_queued, ink_now() + grace)) {
            n->c.dropped++;
            ink__log(n, "record not published: %s", k->cl.why[0] ? k->cl.why : "broker too slow");
            return 1;
        }
    }
    ink_buf_reset(&k->buf);
    int rc = c->format == MQ_MSGPACK ? ink_encode_msgpack(rec, 0, &k->buf)
                                     : ink_encode_json(rec, 0, &k->buf);
    if (rc) {
        n->c.dropped++;
        return 1;
    }
    size_t len = k->buf.len;
    if (c->format == MQ_JSON && len && k->buf.p[len - 1] == '\n') len--;
    k->outstanding++;
    rc = mosquitto_publish(k->cl.m, NULL, k->topic, (int)len, k->buf.p, (int)c->qos, c->retain);
    if (rc != MOSQ_ERR_SUCCESS) {
        k->outstanding--;
        n->c.dropped++;
        ink__log(n, "publish to %s: %s", k->topic,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO)
            loop_failed(&k->cl, rc);
        return 1;
    }
    return 0;
}

static int snk_pollitem(struct ink_node *n, struct ink_pollitem *pi)
{
    struct mqtt_snk *k = n->impl;
    client_tick(&k->cl);
    int fd = mosquitto_socket(k->cl.m);
    if (fd < 0) return 0;
    pi->socket = NULL;
    pi->fd = fd;
    pi->events = INK_POLLIN | (mosquitto_want_write(k->cl.m) ? INK_POLLOUT : 0);
    return 1;
}

static void snk_service(struct ink_node *n)
{
    struct mqtt_snk *k = n->impl;
    client_io(&k->cl, true);
}

static void snk_flush(struct ink_node *n)
{
    struct mqtt_snk *k = n->impl;
    if (mosquitto_socket(k->cl.m) >= 0 && mosquitto_want_write(k->cl.m)) client_io(&k->cl, false);
}

static int snk_sync(struct ink_node *n, struct ink_err *err)
{
    struct mqtt_snk *k = n->impl;
    if (drain(n, 1, ink_now() + 10))
        return ink_err_set(err, INK_EIO, "%lld publishes not acknowledged by %s:%d (%s)",
                           (long long)k->outstanding, k->cl.host, k->cl.port,
                           k->cl.why[0] ? k->cl.why : "timeout");
    return 0;
}

static void snk_finish(struct ink_node *n)
{
    struct mqtt_snk *k = n->impl;
    if (drain(n, 1, ink_now() + n->g->cfg->engine.grace) && k->outstanding)
        ink__log(n, "%lld publishes not acknowledged at the end", (long long)k->outstanding);
}

static void snk_close(struct ink_node *n)
{
    struct mqtt_snk *k = n->impl;
    client_close(&k->cl);
    ink_buf_fini(&k->buf);
    free(k->topic);
    k->topic = NULL;
}

static bool snk_ready(struct ink_node *n, char *why, size_t len)
{
    return client_ready(&((struct mqtt_snk *)n->impl)->cl, why, len);
}

static void snk_metrics(struct ink_node *n, struct ink_buf *out)
{
    client_metrics(&((struct mqtt_snk *)n->impl)->cl, out);
}

static bool is_mqtt(const struct ink_node *n)
{
    return (n->kind == INK_NODE_SOURCE && n->src == &ink_source_mqtt) ||
           (n->kind == INK_NODE_SINK && n->snk == &ink_sink_mqtt);
}

const struct ink_sink_type ink_sink_mqtt = {
    .type =
        {
            .name = "mqtt",
            .kind = INK_NODE_SINK,
            .summary = "records published to an MQTT topic (a template: out/{key})",
            .params = mqtt_sink_params,
            .conf_size = sizeof(struct mqtt_conf),
            .check = mqtt_check,
        },
    .impl_size = sizeof(struct mqtt_snk),
    .open = snk_open,
    .write = snk_write,
    .flush = snk_flush,
    .sync = snk_sync,
    .finish = snk_finish,
    .close = snk_close,
    .pollitem = snk_pollitem,
    .service = snk_service,
    .ready = snk_ready,
    .metrics = snk_metrics,
};
