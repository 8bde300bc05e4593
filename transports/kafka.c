/* Kafka transport: the `kafka` source (a consumer group member) and sink (an
 * idempotent producer), on librdkafka. docs/kafka.md.
 *
 * Exactly-once state: the source keeps the next offset of every partition it
 * has read; a snapshot saves them with the graph state (save) and, once the
 * snapshot is durable (committed), commits the same offsets to Kafka for
 * monitoring. A restore (restore) seeks every partition back to the
 * snapshot's offset when it is assigned, whatever the group committed.
 * At-least-once output: the sink flushes its producer before every snapshot
 * (sync), so every record the snapshot covers has been acknowledged; each
 * record carries kafka_partition and kafka_offset for downstream dedup.
 *
 * No thread of ours on the data path: librdkafka's consumer queue writes a
 * byte to a pipe when it becomes non-empty (rd_kafka_queue_io_event_enable),
 * and the pipe joins the engine's poll loop. All callbacks (rebalance,
 * commit, statistics, errors, delivery reports) run from rd_kafka_consumer_poll
 * or rd_kafka_poll, i.e. on the main thread. */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engine/fields.h"
#include "../engine/clock.h"
#include "../engine/codec.h"
#include "../engine/graph.h"
#include "../engine/path.h"
#include "../engine/shard.h"
#include "../engine/transport.h"

enum kfmt { KFMT_MSGPACK, KFMT_JSON, KFMT_CSV };
enum kkey { KKEY_MESSAGE, KKEY_PAYLOAD, KKEY_NONE };

/* `type: kafka` source. */
struct kafka_src_conf {
    char *brokers;
    struct ink_strings topic;
    char *group;
    int key;          /* enum kkey */
    int format;       /* enum kfmt */
    char *csv_header; /* csv: the columns of every message (as a CSV header line) */
    uint64_t max_message_bytes;
    struct ink_strmap options;
    struct ink_strmap secret_files;
    struct ink_fields_conf fields; /* where record fields come from (docs/fields.md) */
    bool shards; /* keyed state per partition, in shard files (docs/kafka.md#scale-out) */
};

/* `type: kafka` sink. */
struct kafka_sink_conf {
    char *brokers;
    char *topic;
    int format; /* enum kfmt */
    double sync_timeout;
    struct ink_strmap options;
    struct ink_strmap secret_files;
};

static const char *const formats[] = {"msgpack", "json", "csv", NULL};
static const char *const keys[] = {"message", "payload", "none", NULL};

#define SOFF(f) offsetof(struct kafka_src_conf, f)
#define KOFF(f) offsetof(struct kafka_sink_conf, f)

#define BROKERS_HELP "bootstrap brokers, host:port[,host:port...] (librdkafka bootstrap.servers)"
#define OPTIONS_HELP                                                                               \
    "librdkafka client properties passed through, {name: value} (security.protocol, "              \
    "sasl.mechanisms, ...); docs/kafka.md lists the ones inkflow sets itself"
#define SECRETS_HELP                                                                               \
    "client properties read from files, {name: path} (sasl.password: /run/secrets/kafka); the "    \
    "file must not be readable by group or others; relative to the config"

static const struct ink_param src_params[] = {
    {.name = "brokers",
     .type = INK_P_STRING,
     .offset = SOFF(brokers),
     .flags = INK_PF_REQUIRED,
     .help = BROKERS_HELP},
    {.name = "topic",
     .type = INK_P_STRINGS,
     .offset = SOFF(topic),
     .flags = INK_PF_REQUIRED,
     .len_min = 1,
     .len_max = 64,
     .help = "topic to read, or a list of topics"},
    {.name = "group",
     .type = INK_P_STRING,
     .offset = SOFF(group),
     .flags = INK_PF_REQUIRED,
     .help = "consumer group id (offsets are committed under it after each snapshot)"},
    {.name = "key",
     .type = INK_P_ENUM,
     .offset = SOFF(key),
     .def = "message",
     .choices = keys,
     .help = "the record's key: message (the Kafka message key; a message without one keeps "
             "the payload's), payload (the payload's key field), none"},
    {.name = "format",
     .type = INK_P_ENUM,
     .offset = SOFF(format),
     .def = "msgpack",
     .choices = formats,
     .help = "payload of each message: msgpack map, json object, csv line"},
    {.name = "csv_header",
     .type = INK_P_STRING,
     .offset = SOFF(csv_header),
     .help = "format csv: the column names, as a CSV header line (t, key, y, arm; others are x)"},
    {.name = "max_message_bytes",
     .type = INK_P_SIZE,
     .offset = SOFF(max_message_bytes),
     .def = "64KiB",
     .min = 64,
     .max = 1073741824,
     .help = "payloads larger than this are rejected (too_large) and counted"},
    {.name = "options", .type = INK_P_STRMAP, .offset = SOFF(options), .help = OPTIONS_HELP},
    {.name = "secret_files",
     .type = INK_P_STRMAP,
     .offset = SOFF(secret_files),
     .help = SECRETS_HELP},
    INK_FIELDS_PARAM(struct kafka_src_conf),
    {.name = "shards",
     .type = INK_P_BOOL,
     .offset = SOFF(shards),
     .def = "false",
     .help = "scale out: keep the keyed state per partition in shard files under "
             "engine.snapshot.dir, shared by every process of the group, so that it moves with "
             "its partition (cooperative-sticky rebalancing; docs/kafka.md#scale-out)"},
    {0},
};

static const struct ink_param sink_params[] = {
    {.name = "brokers",
     .type = INK_P_STRING,
     .offset = KOFF(brokers),
     .flags = INK_PF_REQUIRED,
     .help = BROKERS_HELP},
    {.name = "topic",
     .type = INK_P_STRING,
     .offset = KOFF(topic),
     .flags = INK_PF_REQUIRED,
     .help = "topic to write; the partition comes from the record's key (murmur2, as the Java "
             "client), records without a key go to a random partition"},
    {.name = "format",
     .type = INK_P_ENUM,
     .offset = KOFF(format),
     .def = "msgpack",
     .choices = formats,
     .help = "payload: msgpack map, json object, csv line (columns fixed by the first record)"},
    {.name = "sync_timeout",
     .type = INK_P_DURATION,
     .offset = KOFF(sync_timeout),
     .def = "30s",
     .min = 0.1,
     .max = 3600,
     .help = "before a snapshot, how long to wait for every record to be acknowledged (the "
             "snapshot fails, and is retried at the next one, past it)"},
    {.name = "options", .type = INK_P_STRMAP, .offset = KOFF(options), .help = OPTIONS_HELP},
    {.name = "secret_files",
     .type = INK_P_STRMAP,
     .offset = KOFF(secret_files),
     .help = SECRETS_HELP},
    {0},
};

/* Properties inkflow sets itself: a user value would break the guarantee. */
static const char *const src_owned[] = {"enable.auto.commit",
                                        "enable.auto.offset.store",
                                        "isolation.level",
                                        "group.id",
                                        "bootstrap.servers",
                                        "statistics.interval.ms",
                                        NULL};
static const char *const sink_owned[] = {"enable.idempotence", "bootstrap.servers",
                                         "statistics.interval.ms", NULL};

static int check_options(const struct ink_strmap *o, const struct ink_strmap *s,
                         const char *const *owned, struct ink_err *err)
{
    for (int pass = 0; pass < 2; pass++) {
        const struct ink_strmap *m = pass ? s : o;
        for (int i = 0; i < m->n; i++)
            for (int j = 0; owned[j]; j++)
                if (strcmp(m->key[i], owned[j]) == 0)
                    return ink_err_set(err, INK_EINVAL,
                                       "%s: '%s' is set by inkflow (docs/kafka.md: guarantees)",
                                       pass ? "secret_files" : "options", owned[j]);
    }
    for (int i = 0; i < s->n; i++)
        for (int j = 0; j < o->n; j++)
            if (strcmp(s->key[i], o->key[j]) == 0)
                return ink_err_set(err, INK_EINVAL, "'%s' is in both options and secret_files",
                                   s->key[i]);
    return 0;
}

static int src_check(const void *conf, struct ink_err *err)
{
    const struct kafka_src_conf *c = conf;
    if (c->format == KFMT_CSV && !c->csv_header)
        return ink_err_set(err, INK_EINVAL,
                           "format csv needs 'csv_header' (the columns of every message, e.g. "
                           "\"t,key,x0,x1\")");
    if (c->format != KFMT_CSV && c->csv_header)
        return ink_err_set(err, INK_EINVAL, "'csv_header' only applies to format: csv");
    if (c->fields.set && c->fields.key_topic_level)
        return ink_err_set(err, INK_EINVAL,
                           "fields: key from a topic level is MQTT's; a kafka "
                           "source keys by the message key (key: message)");
    if (c->shards && c->key != KKEY_MESSAGE)
        return ink_err_set(err, INK_EINVAL,
                           "shards: true needs key: message: a key's state lives in the "
                           "partition Kafka put the key in; to key by another field, repartition "
                           "first (a kafka sink keyed by it into a topic, then a second graph: "
                           "docs/kafka.md#scale-out)");
    if (c->fields.set && c->fields.key && c->key != KKEY_PAYLOAD)
        return ink_err_set(err, INK_EINVAL,
                           "fields: maps key from the payload, but key: %s would replace it: set "
                           "key: payload (or map no key and keep the message key)",
                           keys[c->key]);
    return check_options(&c->options, &c->secret_files, src_owned, err);
}

static int sink_check(const void *conf, struct ink_err *err)
{
    const struct kafka_sink_conf *c = conf;
    return check_options(&c->options, &c->secret_files, sink_owned, err);
}

/* ---- shared: client configuration, broker state --------------------------- */

/* What /ready says about a client: a broker connection is up (from the
 * statistics every second, or the all-brokers-down error at once). */
struct kstate {
    bool up;           /* some broker connection is UP */
    bool ever_up;      /* for the log: "reconnected" vs "connected" */
    char fatal[256];   /* a fatal client error: never ready again */
    char problem[256]; /* another reason not to be ready (an unknown topic) */
    uint64_t errors;   /* client errors reported (error_cb) */
    bool rebalancing;  /* consumer: the group is not steady (statistics' cgrp join_state) */
};

static int conf_set(rd_kafka_conf_t *rc, const char *k, const char *v, struct ink_err *err)
{
    char e[512];
    if (rd_kafka_conf_set(rc, k, v, e, sizeof e) == RD_KAFKA_CONF_OK) return 0;
    return ink_err_set(err, INK_EINVAL, "option %s: %s", k, e);
}

/* A secret property from a file: its first line, the file private. */
static int conf_secret(rd_kafka_conf_t *rc, const struct ink_node *n, const char *k,
                       const char *path, struct ink_err *err)
{
    char pbuf[4096];
    const char *p = ink_path_resolve(n->g->cfg->base_dir, path, pbuf, sizeof pbuf);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ink_err_set(err, INK_EIO, "secret_files %s: %s: %s", k, p, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
        close(fd);
        return ink_err_set(err, INK_EINVAL,
                           "secret_files %s: %s can be read by others (mode %04o); chmod 600 it", k,
                           p, (unsigned)(st.st_mode & 07777));
    }
    char v[4096];
    ssize_t len = read(fd, v, sizeof v - 1);
    close(fd);
    if (len < 0) return ink_err_set(err, INK_EIO, "secret_files %s: %s: %s", k, p, strerror(errno));
    v[len] = '\0';
    v[strcspn(v, "\r\n")] = '\0';
    int e = conf_set(rc, k, v, err);
    memset(v, 0, sizeof v);
    return e;
}

static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque);
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque);

/* The client configuration: inkflow's settings, its defaults (name, value
 * pairs), then the user's options and secrets (the check refuses those
 * inkflow must own). */
static rd_kafka_conf_t *client_conf(struct ink_node *n, const char *brokers,
                                    const char *const *defaults, const struct ink_strmap *opts,
                                    const struct ink_strmap *secrets, struct ink_err *err)
{
    rd_kafka_conf_t *rc = rd_kafka_conf_new();
    char id[256];
    snprintf(id, sizeof id, "inkflow-%s", n->name);
    int e = conf_set(rc, "bootstrap.servers", brokers, err);
    if (!e) e = conf_set(rc, "client.id", id, err);
    if (!e) e = conf_set(rc, "statistics.interval.ms", "1000", err);
    for (int i = 0; !e && defaults[i]; i += 2) e = conf_set(rc, defaults[i], defaults[i + 1], err);
    for (int i = 0; !e && i < opts->n; i++) e = conf_set(rc, opts->key[i], opts->val[i], err);
    for (int i = 0; !e && i < secrets->n; i++)
        e = conf_secret(rc, n, secrets->key[i], secrets->val[i], err);
    if (e) {
        rd_kafka_conf_destroy(rc);
        return NULL;
    }
    rd_kafka_conf_set_opaque(rc, n);
    rd_kafka_conf_set_error_cb(rc, on_error);
    rd_kafka_conf_set_stats_cb(rc, on_stats);
    return rc;
}

static struct kstate *state_of(struct ink_node *n);

static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    struct ink_node *n = opaque;
    struct kstate *s = state_of(n);
    s->errors++;
    if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (s->up) ink__log(n, "no broker reachable: %s", reason);
        s->up = false;
        return;
    }
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
        char why[200];
        rd_kafka_fatal_error(rk, why, sizeof why);
        snprintf(s->fatal, sizeof s->fatal, "fatal client error: %s", why);
        ink__log(n, "%s", s->fatal);
        return;
    }
    ink__log(n, "client error: %s", reason);
}

/* Statistics (every second): is any broker connection UP? */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    struct ink_node *n = opaque;
    struct kstate *s = state_of(n);
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = root ? json_object_get(root, "brokers") : NULL;
    bool up = false;
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        const char *st = json_string_value(json_object_get(b, "state"));
        if (st && strcmp(st, "UP") == 0) up = true;
    }
    const char *js =
        json_string_value(json_object_get(json_object_get(root, "cgrp"), "join_state"));
    s->rebalancing = js && strcmp(js, "steady") != 0;
    json_decref(root);
    if (up && !s->up) ink__log(n, "%s the brokers", s->ever_up ? "reconnected to" : "connected to");
    if (up) s->ever_up = true;
    s->up = up;
    return 0; /* librdkafka frees json */
}

static bool state_ready(const struct kstate *s, const char *brokers, char *why, size_t len)
{
    if (s->fatal[0]) {
        snprintf(why, len, "%s", s->fatal);
        return false;
    }
    if (!s->up) {
        snprintf(why, len, "no broker reachable (%s)", brokers);
        return false;
    }
    if (s->problem[0]) {
        snprintf(why, len, "%s", s->problem);
        return false;
    }
    return true;
}

/* Append formatted text to a metrics buffer (a line that does not fit is
 * dropped whole). */
__attribute__((format(printf, 2, 3))) static void bprintf(struct ink_buf *b, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (len > 0 && (size_t)len < sizeof line) ink_buf_append(b, line, (size_t)len);
}

/* ---- source ------------------------------------------------------------- */

/* One partition the source has read or was given by a snapshot. */
struct kpart {
    int64_t next;      /* offset of the next record to read; -1 = none yet */
    int64_t saved;     /* next as of the last snapshot; -1 = none */
    int64_t committed; /* last offset committed to Kafka (acknowledged); -1 = none */
    bool assigned;
    /* shard mode (docs/kafka.md#scale-out) */
    bool owned;           /* its shard is open here: its keyed state is loaded */
    bool waiting;         /* assigned and paused: another process holds its shard's lock */
    bool written_final;   /* the last shard written here was a handover's */
    bool first_seen;      /* the first record since the assignment was logged */
    int64_t written;      /* offset of the shard file last written or loaded, -1 none */
    int64_t commit_sent;  /* offset of the last commit sent, -1 none */
    int64_t replay_until; /* after a takeover: records below this offset are replays */
    double assigned_at;   /* monotonic time the shard was taken */
};

struct ktopic {
    const char *name;
    rd_kafka_topic_t *rkt; /* the handle messages carry (cache for the lookup) */
    struct kpart *p;
    int np;
};

struct ksrc {
    struct kstate st; /* first: state_of */
    const struct kafka_src_conf *c;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q; /* the consumer queue (the main queue forwards to it) */
    int pipe[2];         /* the queue writes a byte here when it becomes non-empty */
    bool more;           /* the last pump stopped at its budget: records are waiting */
    struct ink_decoder dec;
    struct ink_csv_header hdr;
    struct ktopic *t;
    int nt;
    int last; /* topic of the previous message */
    bool restored;
    uint64_t rebalances, commits, commit_failures, consumer_errors;
    rd_kafka_topic_partition_list_t *to_commit; /* offsets of the last save */
    /* shard mode */
    uint64_t shards_loaded, shards_written, shards_fenced, shard_failures, replayed, unowned;
    uint64_t epoch;         /* assignments received: the shard's generation field */
    double rebalance_s;     /* time spent in rebalance callbacks */
    double retry_at;        /* next attempt at the locks of waiting partitions */
    char shard_fatal[1024]; /* a shard file refused: the source stops with this */
};

static struct kstate *state_of(struct ink_node *n)
{
    return (struct kstate *)n->impl; /* both impls start with their kstate */
}

static struct kpart *part_of(struct ksrc *k, int ti, int32_t p)
{
    struct ktopic *t = &k->t[ti];
    if (p < 0 || p > 1 << 20) return NULL;
    if (p >= t->np) {
        int np = p + 1;
        struct kpart *v = realloc(t->p, (size_t)np * sizeof *v);
        if (!v) return NULL;
        for (int i = t->np; i < np; i++)
            v[i] = (struct kpart){.next = -1,
                                  .saved = -1,
                                  .committed = -1,
                                  .written = -1,
                                  .commit_sent = -1,
                                  .replay_until = -1};
        t->p = v;
        t->np = np;
    }
    return &t->p[p];
}

static int topic_index(struct ksrc *k, const char *name)
{
    for (int i = 0; i < k->nt; i++)
        if (strcmp(k->t[i].name, name) == 0) return i;
    return -1;
}

/* ---- shard mode (docs/kafka.md#scale-out) ---------------------------------- */

/* A partition's shard: id (topic index, partition) and file name. */
static int32_t shard_id(int ti, int32_t p)
{
    return (int32_t)(((uint32_t)ti << 20) | (uint32_t)p);
}

/* GROUP.TOPIC.PARTITION, characters outside [A-Za-z0-9._-] as '_': the
 * group is the job, shared by its processes whatever their config files
 * are called. */
static void shard_name(const struct ksrc *k, int ti, int32_t p, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s.%d", k->c->group, k->t[ti].name, (int)p);
    for (char *c = buf; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-'))
            *c = '_';
}

/* Take a partition's shard: its lock, its file's keyed state and offset.
 * 0 (taken; *offset is the file's, -1 without one), 1 (another process
 * still holds it: wait), or negative (a refused file: the source stops). */
static int shard_take(struct ink_node *n, struct ksrc *k, int ti, int32_t p, struct kpart *kp,
                      int64_t *offset)
{
    char name[256];
    shard_name(k, ti, p, name, sizeof name);
    struct ink_shard_pos pos;
    struct ink_err e = {0};
    *offset = -1;
    int rc = ink_shard_open(n->g, shard_id(ti, p), name, &pos, &e);
    if (rc == INK_EBUSY) {
        if (!kp->waiting)
            ink__log_event(n, "%s[%d]: waiting for its shard (%s)", k->t[ti].name, p, e.msg);
        kp->waiting = true;
        return 1;
    }
    if (rc) {
        snprintf(k->shard_fatal, sizeof k->shard_fatal, "%s[%d]: %s", k->t[ti].name, p, e.msg);
        ink__log_event(n, "%s", k->shard_fatal);
        return rc;
    }
    kp->waiting = false;
    kp->owned = true;
    kp->first_seen = false;
    kp->assigned_at = ink_now();
    kp->next = kp->saved = kp->written = pos.offset;
    kp->commit_sent = -1;
    kp->written_final = pos.final;
    kp->replay_until = -1;
    *offset = pos.offset;
    if (pos.offset < 0) {
        ink__log_event(n, "%s[%d]: no shard yet: no state, read from the group's committed offset",
                       k->t[ti].name, p);
        return 0;
    }
    k->shards_loaded++;
    /* A periodic shard's writer went on reading after it (and is gone):
     * what the partition held then is read again. A handover's shard is
     * exactly where its writer stopped. */
    int64_t lo = -1, hi = -1;
    if (!pos.final &&
        rd_kafka_query_watermark_offsets(k->rk, k->t[ti].name, p, &lo, &hi, 5000) == 0)
        kp->replay_until = hi;
    ink__log_event(n,
                   "%s[%d]: shard loaded at offset %" PRId64 ", %" PRIu64
                   " key(s), written %s by pid %" PRId64
                   " %.1f s ago; replaying to offset %" PRId64,
                   k->t[ti].name, p, pos.offset, ink_shard_keys(n->g, shard_id(ti, p)),
                   pos.final ? "at a handover" : "periodically", pos.pid,
                   pos.wall > 0 ? ink_wall() - pos.wall : 0.0,
                   kp->replay_until > pos.offset ? kp->replay_until : pos.offset);
    return 0;
}

/* Write an owned partition's shard at its position (final: a handover).
 * 0 written (or nothing new to write), INK_SHARD_FENCED, or negative. */
static int shard_put(struct ink_node *n, struct ksrc *k, int ti, int32_t p, struct kpart *kp,
                     bool final, struct ink_err *err)
{
    if (!kp->owned || kp->next < 0) return 0;
    if (kp->next == kp->written && (kp->written_final || !final)) return 0;
    struct ink_shard_pos pos = {
        .offset = kp->next, .generation = (int64_t)k->epoch, .final = final};
    char *mid = rd_kafka_memberid(k->rk);
    if (mid) {
        snprintf(pos.member, sizeof pos.member, "%s", mid);
        rd_kafka_mem_free(k->rk, mid);
    }
    int rc = ink_shard_write(n->g, shard_id(ti, p), &pos, err);
    if (rc == INK_SHARD_FENCED) {
        k->shards_fenced++;
        ink__log_event(n, "fenced: %s", err->msg);
        return rc;
    }
    if (rc) {
        k->shard_failures++;
        ink__log_event(n, "%s[%d]: shard not written: %s", k->t[ti].name, p, err->msg);
        return rc;
    }
    k->shards_written++;
    kp->written = kp->saved = kp->next;
    kp->written_final = final;
    return 0;
}

/* Forget a partition's shard here (keys freed, lock released). */
static void shard_forget(struct ink_node *n, struct ksrc *k, int ti, int32_t p, struct kpart *kp)
{
    if (kp->owned) ink_shard_drop(n->g, shard_id(ti, p));
    (void)k;
    kp->owned = kp->waiting = false;
    kp->next = kp->saved = kp->written = kp->commit_sent = -1;
    kp->replay_until = -1;
}

static void pause_one(struct ksrc *k, const char *topic, int32_t p, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p);
    if (pause)
        rd_kafka_pause_partitions(k->rk, l);
    else
        rd_kafka_resume_partitions(k->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* Commit the offsets of the shards just made durable (on_commit counts
 * failures). A handover commits synchronously: an asynchronous commit
 * would still be in flight when the group moves on to its next
 * generation, and be refused (ILLEGAL_GENERATION), ending the assignment
 * this process keeps. */
static void commit_list(struct ink_node *n, struct ksrc *k, rd_kafka_topic_partition_list_t *l,
                        bool sync)
{
    if (l->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_commit(k->rk, l, sync ? 0 : 1);
        k->commits++;
        if (e) {
            k->commit_failures++;
            ink__log(n, "offset commit failed: %s", rd_kafka_err2str(e));
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Partitions assigned while another process held their shard: try again
 * (every 100 ms); once taken, seek to the shard's offset and resume. */
static int shard_retry(struct ink_node *n, struct ksrc *k)
{
    double now = ink_now();
    if (now < k->retry_at) return 0;
    k->retry_at = now + 0.1;
    for (int ti = 0; ti < k->nt; ti++)
        for (int p = 0; p < k->t[ti].np; p++) {
            struct kpart *kp = &k->t[ti].p[p];
            if (!kp->assigned || !kp->waiting) continue;
            int64_t off = -1;
            int rc = shard_take(n, k, ti, p, kp, &off);
            if (rc < 0) return rc;
            if (rc) continue;
            if (off >= 0) {
                rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(l, k->t[ti].name, p)->offset = off;
                rd_kafka_error_t *e = rd_kafka_seek_partitions(k->rk, l, 5000);
                if (e) {
                    ink__log_event(n, "%s[%d]: seek to %" PRId64 ": %s", k->t[ti].name, p, off,
                                   rd_kafka_error_string(e));
                    rd_kafka_error_destroy(e);
                }
                rd_kafka_topic_partition_list_destroy(l);
            }
            ink__log_event(n, "%s[%d]: shard taken after waiting; resumed", k->t[ti].name, p);
            pause_one(k, k->t[ti].name, p, false);
        }
    return 0;
}

/* The rebalance callback of shard mode: state follows the partitions. */
static void rebalance_shards(struct ink_node *n, struct ksrc *k, rd_kafka_t *rk,
                             rd_kafka_resp_err_t code, rd_kafka_topic_partition_list_t *parts,
                             bool coop)
{
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = 0;
    if (code == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        k->epoch++;
        int loaded = 0, waiting = 0;
        rd_kafka_topic_partition_list_t *wait = rd_kafka_topic_partition_list_new(parts->cnt),
                                        *go = rd_kafka_topic_partition_list_new(parts->cnt);
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            int ti = topic_index(k, tp->topic);
            struct kpart *kp = ti >= 0 ? part_of(k, ti, tp->partition) : NULL;
            if (!kp) continue;
            kp->assigned = true;
            if (kp->owned) continue; /* an eager strategy hands back what it took */
            int64_t off = -1;
            int rc = shard_take(n, k, ti, tp->partition, kp, &off);
            if (rc == 0) rd_kafka_topic_partition_list_add(go, tp->topic, tp->partition);
            if (rc == 0 && off >= 0) {
                tp->offset = off; /* the shard's offset wins over the group's */
                loaded++;
            } else if (rc == 1) {
                rd_kafka_topic_partition_list_add(wait, tp->topic, tp->partition);
                waiting++;
            }
        }
        ink__log_event(n,
                       "assigned %d partition(s): %d from their shards, %d waiting for another "
                       "process to release theirs",
                       parts->cnt, loaded, waiting);
        if (coop)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            re = rd_kafka_assign(rk, parts);
        /* a partition paused here before (a stale generation, a fence)
         * stays paused across assignments until resumed */
        if (go->cnt) rd_kafka_resume_partitions(rk, go);
        if (wait->cnt) rd_kafka_pause_partitions(rk, wait);
        rd_kafka_topic_partition_list_destroy(wait);
        rd_kafka_topic_partition_list_destroy(go);
    } else {
        /* Lost (the session timed out, the generation is gone): another
         * member may own these partitions already; their shards are dropped
         * without a write or a commit. Revoked: a handover. */
        bool lost = code != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS || rd_kafka_assignment_lost(rk);
        struct ink_err err = {0};
        bool synced = !lost && ink_shard_sync_sinks(n->g, &err) == 0;
        if (!lost && !synced)
            ink__log_event(n,
                           "revoke: outputs not durable (%s): shards not written, the next "
                           "owner replays from the previous ones",
                           err.msg);
        rd_kafka_topic_partition_list_t *done = rd_kafka_topic_partition_list_new(parts->cnt);
        int written = 0;
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            int ti = topic_index(k, tp->topic);
            struct kpart *kp = ti >= 0 ? part_of(k, ti, tp->partition) : NULL;
            if (!kp) continue;
            kp->assigned = false;
            if (synced && kp->owned && kp->next >= 0 &&
                shard_put(n, k, ti, tp->partition, kp, true, &err) == 0) {
                rd_kafka_topic_partition_list_add(done, tp->topic, tp->partition)->offset =
                    kp->next;
                written++;
            }
            shard_forget(n, k, ti, tp->partition, kp);
        }
        if (lost)
            ink__log_event(n, "%d partition(s) lost: their shards dropped, not written",
                           parts->cnt);
        else
            ink__log_event(n, "%d partition(s) revoked: %d shard(s) written and committed",
                           parts->cnt, written);
        if (lost)
            rd_kafka_topic_partition_list_destroy(done);
        else
            commit_list(n, k, done, true);
        if (coop)
            e = rd_kafka_incremental_unassign(rk, parts);
        else
            re = rd_kafka_assign(rk, NULL);
    }
    if (e) {
        ink__log(n, "assignment failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else if (re) {
        ink__log(n, "assignment failed: %s", rd_kafka_err2str(re));
    }
}

/* A commit refused for a stale generation: this process is no longer the
 * member the group knows, so its shards may be someone else's now. Dropped
 * without a write; the partitions wait (paused) until their shard can be
 * taken again, or the group's next assignment moves them. */
static void drop_all_shards(struct ink_node *n, struct ksrc *k, const char *why)
{
    int cnt = 0;
    for (int ti = 0; ti < k->nt; ti++)
        for (int p = 0; p < k->t[ti].np; p++) {
            struct kpart *kp = &k->t[ti].p[p];
            if (!kp->owned) continue;
            shard_forget(n, k, ti, p, kp);
            if (kp->assigned) {
                kp->waiting = true;
                pause_one(k, k->t[ti].name, p, true);
            }
            cnt++;
        }
    if (cnt) ink__log_event(n, "%s: %d shard(s) dropped without writing", why, cnt);
}

static int ksrc_checkpoint(struct ink_node *n, bool final, struct ink_err *err)
{
    struct ksrc *k = n->impl;
    (void) final; /* a handover's shard is written when the partition is revoked */
    rd_kafka_topic_partition_list_t *done = rd_kafka_topic_partition_list_new(4);
    int failed = 0;
    struct ink_err first = {0};
    for (int ti = 0; ti < k->nt; ti++)
        for (int p = 0; p < k->t[ti].np; p++) {
            struct kpart *kp = &k->t[ti].p[p];
            if (!kp->owned || kp->next < 0 || kp->next == kp->written) continue;
            struct ink_err e = {0};
            int rc = shard_put(n, k, ti, p, kp, false, &e);
            if (rc == INK_SHARD_FENCED) {
                /* a stale owner: stop reading it until the group says more */
                shard_forget(n, k, ti, p, kp);
                pause_one(k, k->t[ti].name, p, true);
            } else if (rc) {
                if (!failed++) first = e;
            }
        }
    /* Commits follow the shards. While the group rebalances a commit may
     * carry a generation that just ended (ILLEGAL_GENERATION), which ends
     * the assignment (shards dropped, reloaded): wait for a steady group
     * (as the statistics last said; the handover commits the rest). */
    for (int ti = 0; ti < k->nt && !k->st.rebalancing; ti++)
        for (int p = 0; p < k->t[ti].np; p++) {
            struct kpart *kp = &k->t[ti].p[p];
            if (kp->owned && kp->written >= 0 && kp->written != kp->committed &&
                kp->written != kp->commit_sent) {
                rd_kafka_topic_partition_list_add(done, k->t[ti].name, p)->offset = kp->written;
                kp->commit_sent = kp->written;
            }
        }
    commit_list(n, k, done, false);
    if (failed) return ink_err_set(err, INK_EIO, "%d shard(s) not written: %s", failed, first.msg);
    return 0;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t code,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct ink_node *n = opaque;
    struct ksrc *k = n->impl;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t re = 0;
    k->rebalances++;
    if (k->c->shards) {
        double t0 = ink_now();
        rebalance_shards(n, k, rk, code, parts, coop);
        k->rebalance_s += ink_now() - t0;
        return;
    }
    if (code == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        int ours = 0;
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            int ti = topic_index(k, tp->topic);
            struct kpart *kp = ti >= 0 ? part_of(k, ti, tp->partition) : NULL;
            if (!kp) continue;
            kp->assigned = true;
            /* Our own position wins over the group's committed offset: the
             * state holds exactly the records before it. */
            if (kp->next >= 0) {
                tp->offset = kp->next;
                ours++;
            }
        }
        ink__log_event(n, "assigned %d partition(s), %d at the position the state holds",
                       parts->cnt, ours);
        if (coop)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            re = rd_kafka_assign(rk, parts);
    } else {
        for (int i = 0; i < parts->cnt; i++) {
            int ti = topic_index(k, parts->elems[i].topic);
            struct kpart *kp = ti >= 0 ? part_of(k, ti, parts->elems[i].partition) : NULL;
            if (kp) kp->assigned = false;
        }
        if (code != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            ink__log(n, "rebalance error: %s", rd_kafka_err2str(code));
        else
            ink__log_event(n, "%d partition(s) revoked%s", parts->cnt,
                           rd_kafka_assignment_lost(rk) ? " (lost)" : "");
        if (coop)
            e = rd_kafka_incremental_unassign(rk, parts);
        else
            re = rd_kafka_assign(rk, NULL);
    }
    if (e) {
        ink__log(n, "assignment failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    } else if (re) {
        ink__log(n, "assignment failed: %s", rd_kafka_err2str(re));
    }
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t code,
                      rd_kafka_topic_partition_list_t *offs, void *opaque)
{
    (void)rk;
    struct ink_node *n = opaque;
    struct ksrc *k = n->impl;
    bool stale = code == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION;
    for (int i = 0; offs && i < offs->cnt; i++)
        stale |= offs->elems[i].err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION;
    if (stale && k->c->shards)
        drop_all_shards(n, k,
                        "offset commit refused (ILLEGAL_GENERATION: this member's "
                        "generation is over)");
    if (code && code != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        k->commit_failures++;
        ink__log(n,
                 "offset commit failed: %s (the snapshot holds the offsets; Kafka's committed "
                 "offsets only lag behind)",
                 rd_kafka_err2str(code));
    }
    for (int i = 0; offs && i < offs->cnt; i++) {
        int ti = topic_index(k, offs->elems[i].topic);
        struct kpart *kp = ti >= 0 ? part_of(k, ti, offs->elems[i].partition) : NULL;
        if (kp && !offs->elems[i].err && offs->elems[i].offset >= 0)
            kp->committed = offs->elems[i].offset;
        else if (kp && (offs->elems[i].err || code))
            kp->commit_sent = -1; /* the next checkpoint tries again */
    }
}

static int ksrc_open(struct ink_node *n, struct ink_err *err)
{
    struct ksrc *k = n->impl;
    k->pipe[0] = k->pipe[1] = -1;
    k->c = n->nc->conf;
    k->last = -1;
    struct ink_limits lim = ink__source_limits(n, k->c->max_message_bytes);
    if (ink_decoder_init(&k->dec, &lim)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    if (ink_decoder_set_fields(&k->dec, &k->c->fields, err)) return err->code;
    if (k->c->format == KFMT_CSV) {
        int rc = ink_csv_header_parse(&k->hdr, k->c->csv_header, strlen(k->c->csv_header), err);
        if (rc) return rc;
    }
    k->t = calloc((size_t)k->c->topic.n, sizeof *k->t);
    if (!k->t) return ink_err_set(err, INK_ENOMEM, "out of memory");
    k->nt = k->c->topic.n;
    for (int i = 0; i < k->nt; i++) k->t[i].name = k->c->topic.v[i];

    /* Defaults a user may change: read from the beginning when neither the
     * state nor the group has an offset (a new pipeline sees the topic's
     * history, as a file source sees the whole file). */
    static const char *const defaults[] = {"auto.offset.reset", "earliest", NULL};
    /* Shard mode: a rebalance moves only the partitions that change owner,
     * and each is handed over shard and all (the others keep flowing). */
    static const char *const shard_defaults[] = {"auto.offset.reset", "earliest",
                                                 "partition.assignment.strategy",
                                                 "cooperative-sticky", NULL};
    rd_kafka_conf_t *rc = client_conf(n, k->c->brokers, k->c->shards ? shard_defaults : defaults,
                                      &k->c->options, &k->c->secret_files, err);
    if (!rc) return err->code;
    /* Offsets are ours (the snapshot's): nothing automatic. */
    int e = conf_set(rc, "group.id", k->c->group, err);
    if (!e) e = conf_set(rc, "enable.auto.commit", "false", err);
    if (!e) e = conf_set(rc, "enable.auto.offset.store", "false", err);
    if (!e) e = conf_set(rc, "isolation.level", "read_committed", err);
    if (e) {
        rd_kafka_conf_destroy(rc);
        return e;
    }
    rd_kafka_conf_set_rebalance_cb(rc, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(rc, on_commit);
    char es[512];
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, rc, es, sizeof es);
    if (!k->rk) {
        rd_kafka_conf_destroy(rc);
        return ink_err_set(err, INK_EINVAL, "kafka consumer: %s", es);
    }
    rd_kafka_poll_set_consumer(k->rk);
    k->q = rd_kafka_queue_get_consumer(k->rk);
    if (pipe2(k->pipe, O_NONBLOCK | O_CLOEXEC))
        return ink_err_set(err, INK_EIO, "pipe: %s", strerror(errno));
    rd_kafka_queue_io_event_enable(k->q, k->pipe[1], "1", 1);

    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(k->nt);
    for (int i = 0; i < k->nt; i++)
        rd_kafka_topic_partition_list_add(sub, k->t[i].name, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(k->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (se) return ink_err_set(err, INK_EINVAL, "subscribe: %s", rd_kafka_err2str(se));
    k->more = true; /* poll once right away: nothing has written to the pipe yet */
    return 0;
}

static int ksrc_pollitem(struct ink_node *n, struct ink_pollitem *pi)
{
    struct ksrc *k = n->impl;
    if (k->more) return 0; /* records are queued: no new byte will come for them */
    pi->socket = NULL;
    pi->fd = k->pipe[0];
    pi->events = INK_POLLIN;
    return 1;
}

static enum ink_reject decode(struct ksrc *k, const rd_kafka_message_t *m, struct ink_record *rec)
{
    if (m->len > k->dec.lim.max_frame) {
        snprintf(k->dec.why, sizeof k->dec.why, "message of %zu bytes, over max_message_bytes %u",
                 m->len, k->dec.lim.max_frame);
        return INK_REJ_TOO_LARGE;
    }
    const char *p = m->payload ? m->payload : "";
    switch (k->c->format) {
    case KFMT_JSON:
        return ink_decode_json(&k->dec, p, m->len, rec);
    case KFMT_CSV:
        return ink_decode_csv(&k->dec, &k->hdr, p, m->len, rec);
    default:
        return ink_decode_msgpack(&k->dec, (const uint8_t *)p, m->len, rec);
    }
}

/* One message: decoded into a record that carries where it came from. */
static int handle_message(struct ink_node *n, struct ksrc *k, const rd_kafka_message_t *m)
{
    int ti = k->last;
    if (ti < 0 || k->t[ti].rkt != m->rkt) {
        ti = topic_index(k, rd_kafka_topic_name(m->rkt));
        if (ti < 0) return 0; /* not ours (cannot happen with subscribe) */
        k->t[ti].rkt = m->rkt;
        k->last = ti;
    }
    struct kpart *kp = part_of(k, ti, m->partition);
    if (k->c->shards) {
        /* fetched before a revoke or while a shard was not ours: its
         * state is elsewhere, the record is not this process's to count */
        if (!kp || !kp->owned) {
            k->unowned++;
            return 0;
        }
        if (m->offset < kp->replay_until) k->replayed++;
        if (!kp->first_seen) {
            kp->first_seen = true;
            ink__log_event(n,
                           "%s[%d]: first record, offset %" PRId64 ", %.3f s after the "
                           "assignment (Unix time %.3f)",
                           k->t[ti].name, m->partition, m->offset, ink_now() - kp->assigned_at,
                           ink_wall());
        }
    }
    if (kp) kp->next = m->offset + 1;
    struct ink_record rec;
    enum ink_reject why = decode(k, m, &rec);
    if (why != INK_REJ_NONE) {
        char msg[320];
        snprintf(msg, sizeof msg, "%s [%" PRId32 "] offset %" PRId64 ": %s", k->t[ti].name,
                 m->partition, m->offset, k->dec.why);
        ink__source_reject(n, why, msg, m->payload, m->len);
        return 0;
    }
    if (k->c->key == KKEY_NONE) {
        rec.flags &= ~(uint32_t)INK_HAS_KEY;
    } else if (k->c->key == KKEY_MESSAGE && m->key && m->key_len <= k->dec.lim.max_str) {
        rec.key = m->key;
        rec.key_len = (uint32_t)m->key_len;
        rec.flags |= INK_HAS_KEY;
    }
    if (!(rec.flags & INK_HAS_T)) {
        int64_t ms = rd_kafka_message_timestamp(m, NULL);
        rec.t = ms >= 0 ? ms * 1000000LL : ink_wall_ns();
        rec.flags |= INK_HAS_T;
    }
    ink_record_add_i64(&rec, "kafka_partition", m->partition);
    ink_record_add_i64(&rec, "kafka_offset", m->offset);
    if (k->nt > 1) ink_record_add_str(&rec, "kafka_topic", k->t[ti].name, strlen(k->t[ti].name));
    if (k->c->shards) return ink__source_emit_shard(n, &rec, shard_id(ti, m->partition));
    return ink__source_emit(n, &rec);
}

static void handle_error(struct ink_node *n, struct ksrc *k, const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
    k->consumer_errors++;
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : NULL;
    if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
        snprintf(k->st.problem, sizeof k->st.problem, "topic %s: %s", topic ? topic : "?",
                 rd_kafka_message_errstr(m));
    }
    ink__log(n, "consumer: %s%s%s", topic ? topic : "", topic ? ": " : "",
             rd_kafka_message_errstr(m));
}

static int ksrc_pump(struct ink_node *n, int budget)
{
    struct ksrc *k = n->impl;
    char drain[256];
    while (read(k->pipe[0], drain, sizeof drain) > 0) {
    }
    int done = 0;
    k->more = false;
    if (k->c->shards && shard_retry(n, k) < 0) return INK_ESTATE;
    while (done < budget) {
        if (n->g->stop) {
            k->more = true;
            return done;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, 0);
        if (!m) return done;
        int rc = 0;
        if (m->err) {
            handle_error(n, k, m);
        } else {
            k->st.problem[0] = '\0';
            done++;
            rc = handle_message(n, k, m);
        }
        rd_kafka_message_destroy(m);
        if (rc < 0) return rc;
        if (k->shard_fatal[0]) return INK_ESTATE; /* a shard refused in a rebalance */
    }
    k->more = true;
    return done;
}

/* The position: [[topic, partition, next offset], ...] of every partition
 * read so far (or restored). The assigned ones are committed to Kafka once
 * this snapshot is durable. */
static int ksrc_save(struct ink_node *n, msgpack_packer *pk)
{
    struct ksrc *k = n->impl;
    uint32_t cnt = 0;
    for (int i = 0; i < k->nt; i++)
        for (int p = 0; p < k->t[i].np; p++) cnt += k->t[i].p[p].next >= 0;
    if (k->to_commit) rd_kafka_topic_partition_list_destroy(k->to_commit);
    k->to_commit = rd_kafka_topic_partition_list_new((int)cnt);
    msgpack_pack_array(pk, cnt);
    for (int i = 0; i < k->nt; i++) {
        size_t tl = strlen(k->t[i].name);
        for (int p = 0; p < k->t[i].np; p++) {
            struct kpart *kp = &k->t[i].p[p];
            if (kp->next < 0) continue;
            msgpack_pack_array(pk, 3);
            msgpack_pack_str(pk, tl);
            msgpack_pack_str_body(pk, k->t[i].name, tl);
            msgpack_pack_int32(pk, p);
            msgpack_pack_int64(pk, kp->next);
            kp->saved = kp->next;
            if (kp->assigned && k->to_commit)
                rd_kafka_topic_partition_list_add(k->to_commit, k->t[i].name, p)->offset = kp->next;
        }
    }
    return 0;
}

/* The snapshot's topics and partitions must still be there: a restore that
 * silently started elsewhere would not be the state it claims. */
static int check_topics(struct ink_node *n, struct ksrc *k, struct ink_err *err)
{
    for (int i = 0; i < k->nt; i++) {
        int need = 0;
        for (int p = 0; p < k->t[i].np; p++)
            if (k->t[i].p[p].next >= 0) need = p + 1;
        if (!need) continue;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->rk, k->t[i].name, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(k->rk, 0, rkt, &md, 10000);
        rd_kafka_topic_destroy(rkt);
        if (e) {
            ink__log(n,
                     "could not check topic %s before restoring (%s); its partitions will be "
                     "sought to the snapshot's offsets when assigned",
                     k->t[i].name, rd_kafka_err2str(e));
            continue;
        }
        rd_kafka_resp_err_t te =
            md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        int have = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
        rd_kafka_metadata_destroy(md);
        if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || (!te && have == 0))
            return ink_err_set(err, INK_ESTATE,
                               "topic '%s' no longer exists on %s, but the snapshot holds the "
                               "offsets of %d of its partitions: refusing to restore (nothing "
                               "was read; the snapshot is untouched)",
                               k->t[i].name, k->c->brokers, need);
        if (te)
            return ink_err_set(err, INK_ESTATE,
                               "topic '%s': %s: cannot check the snapshot's "
                               "partitions",
                               k->t[i].name, rd_kafka_err2str(te));
        if (have < need)
            return ink_err_set(err, INK_ESTATE,
                               "topic '%s' has %d partitions now, the snapshot holds offsets for "
                               "partition %d: refusing to restore (the snapshot is untouched)",
                               k->t[i].name, have, need - 1);
    }
    return 0;
}

static int ksrc_restore(struct ink_node *n, const msgpack_object *pos, struct ink_err *err)
{
    struct ksrc *k = n->impl;
    if (pos->type != MSGPACK_OBJECT_ARRAY)
        return ink_err_set(err, INK_ESTATE, "kafka source position: not an array");
    for (uint32_t i = 0; i < pos->via.array.size; i++) {
        const msgpack_object *e = &pos->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 3 ||
            e->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
            e->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            e->via.array.ptr[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return ink_err_set(err, INK_ESTATE, "kafka source position: entry %u malformed", i);
        const msgpack_object_str *s = &e->via.array.ptr[0].via.str;
        char name[256];
        if (s->size >= sizeof name)
            return ink_err_set(err, INK_ESTATE, "kafka source position: topic name too long");
        memcpy(name, s->ptr, s->size);
        name[s->size] = '\0';
        int ti = topic_index(k, name);
        if (ti < 0)
            return ink_err_set(err, INK_ESTATE,
                               "the snapshot holds offsets of topic '%s', which "
                               "this source does not read",
                               name);
        uint64_t p = e->via.array.ptr[1].via.u64, off = e->via.array.ptr[2].via.u64;
        struct kpart *kp = p <= INT32_MAX && off <= INT64_MAX ? part_of(k, ti, (int32_t)p) : NULL;
        if (!kp) return ink_err_set(err, INK_ESTATE, "kafka source position: bad partition");
        kp->next = kp->saved = (int64_t)off;
    }
    k->restored = true;
    return check_topics(n, k, err);
}

static void ksrc_committed(struct ink_node *n)
{
    struct ksrc *k = n->impl;
    if (!k->to_commit || k->to_commit->cnt == 0) return;
    rd_kafka_resp_err_t e = rd_kafka_commit(k->rk, k->to_commit, 1);
    k->commits++;
    if (e) {
        k->commit_failures++;
        ink__log(n, "offset commit failed: %s", rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(k->to_commit);
    k->to_commit = NULL;
}

static bool ksrc_ready(struct ink_node *n, char *why, size_t len)
{
    struct ksrc *k = n->impl;
    return state_ready(&k->st, k->c->brokers, why, len);
}

static void label(char *buf, size_t n, const struct ink_node *node, const char *topic, int p)
{
    snprintf(buf, n, "node=\"%s\",topic=\"%s\",partition=\"%d\"", node->name, topic, p);
}

static void ksrc_metrics(struct ink_node *n, struct ink_buf *out)
{
    struct ksrc *k = n->impl;
    char l[512];
    bprintf(out, "# HELP inkflow_kafka_consumer_lag records between the source's position "
                 "and the partition's end (high-water mark)\n"
                 "# TYPE inkflow_kafka_consumer_lag gauge\n");
    for (int i = 0; i < k->nt; i++)
        for (int p = 0; p < k->t[i].np; p++) {
            struct kpart *kp = &k->t[i].p[p];
            int64_t lo = -1, hi = -1;
            if (!kp->assigned || rd_kafka_get_watermark_offsets(k->rk, k->t[i].name, p, &lo, &hi) ||
                hi < 0)
                continue;
            label(l, sizeof l, n, k->t[i].name, p);
            int64_t at = kp->next >= 0 ? kp->next : lo;
            bprintf(out, "inkflow_kafka_consumer_lag{%s} %" PRId64 "\n", l, hi > at ? hi - at : 0);
        }
    bprintf(out, "# HELP inkflow_kafka_uncommitted_offsets the last snapshot's offset "
                 "minus the offset committed to Kafka (commits follow snapshots)\n"
                 "# TYPE inkflow_kafka_uncommitted_offsets gauge\n");
    for (int i = 0; i < k->nt; i++)
        for (int p = 0; p < k->t[i].np; p++) {
            struct kpart *kp = &k->t[i].p[p];
            if (kp->saved < 0) continue;
            label(l, sizeof l, n, k->t[i].name, p);
            bprintf(out, "inkflow_kafka_uncommitted_offsets{%s} %" PRId64 "\n", l,
                    kp->saved - (kp->committed >= 0 ? kp->committed : 0));
        }
    bprintf(out,
            "# HELP inkflow_kafka_rebalances_total group rebalances (assign and revoke)\n"
            "# TYPE inkflow_kafka_rebalances_total counter\n"
            "inkflow_kafka_rebalances_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_commit_failures_total offset commits Kafka refused\n"
            "# TYPE inkflow_kafka_commit_failures_total counter\n"
            "inkflow_kafka_commit_failures_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_consumer_errors_total errors the consumer reported\n"
            "# TYPE inkflow_kafka_consumer_errors_total counter\n"
            "inkflow_kafka_consumer_errors_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_consumer_broker_up 1 while a broker connection is up\n"
            "# TYPE inkflow_kafka_consumer_broker_up gauge\n"
            "inkflow_kafka_consumer_broker_up{node=\"%s\"} %d\n",
            n->name, k->rebalances, n->name, k->commit_failures, n->name,
            k->consumer_errors + k->st.errors, n->name, k->st.up ? 1 : 0);
    if (!k->c->shards) return;
    int owned = 0, waiting = 0;
    for (int i = 0; i < k->nt; i++)
        for (int p = 0; p < k->t[i].np; p++) {
            owned += k->t[i].p[p].owned;
            waiting += k->t[i].p[p].waiting;
        }
    bprintf(out,
            "# HELP inkflow_kafka_partitions_owned partitions whose shard this process holds\n"
            "# TYPE inkflow_kafka_partitions_owned gauge\n"
            "inkflow_kafka_partitions_owned{node=\"%s\"} %d\n"
            "# HELP inkflow_kafka_partitions_waiting partitions assigned while another process "
            "still holds their shard (paused)\n"
            "# TYPE inkflow_kafka_partitions_waiting gauge\n"
            "inkflow_kafka_partitions_waiting{node=\"%s\"} %d\n",
            n->name, owned, n->name, waiting);
    bprintf(out,
            "# HELP inkflow_kafka_shards_loaded_total shard files loaded when a partition was "
            "assigned\n"
            "# TYPE inkflow_kafka_shards_loaded_total counter\n"
            "inkflow_kafka_shards_loaded_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_shards_written_total shard files written (periodic and at "
            "handovers)\n"
            "# TYPE inkflow_kafka_shards_written_total counter\n"
            "inkflow_kafka_shards_written_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_shards_fenced_total shard writes refused: the file held a "
            "higher offset (a stale owner)\n"
            "# TYPE inkflow_kafka_shards_fenced_total counter\n"
            "inkflow_kafka_shards_fenced_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_shard_write_failures_total shard writes that failed (I/O)\n"
            "# TYPE inkflow_kafka_shard_write_failures_total counter\n"
            "inkflow_kafka_shard_write_failures_total{node=\"%s\"} %" PRIu64 "\n",
            n->name, k->shards_loaded, n->name, k->shards_written, n->name, k->shards_fenced,
            n->name, k->shard_failures);
    bprintf(out,
            "# HELP inkflow_kafka_records_replayed_total records read again after a takeover: "
            "from a periodic shard's offset to the partition's end when it was taken over\n"
            "# TYPE inkflow_kafka_records_replayed_total counter\n"
            "inkflow_kafka_records_replayed_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_records_unowned_total records fetched for a partition whose "
            "shard was not held here (dropped unread)\n"
            "# TYPE inkflow_kafka_records_unowned_total counter\n"
            "inkflow_kafka_records_unowned_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_rebalance_seconds_total time spent handing shards over in "
            "rebalance callbacks\n"
            "# TYPE inkflow_kafka_rebalance_seconds_total counter\n"
            "inkflow_kafka_rebalance_seconds_total{node=\"%s\"} %.6f\n",
            n->name, k->replayed, n->name, k->unowned, n->name, k->rebalance_s);
}

static bool ksrc_sharded(const void *conf)
{
    return ((const struct kafka_src_conf *)conf)->shards;
}

static void ksrc_close(struct ink_node *n)
{
    struct ksrc *k = n->impl;
    if (!k) return;
    if (k->rk) {
        if (k->q) rd_kafka_queue_io_event_enable(k->q, -1, NULL, 0);
        /* Leave the group now (its partitions move to another member at
         * once); nothing is committed here: the last snapshot did. */
        rd_kafka_resp_err_t e = rd_kafka_consumer_close(k->rk);
        if (e) ink__log(n, "leaving the group: %s", rd_kafka_err2str(e));
        if (k->q) rd_kafka_queue_destroy(k->q);
        rd_kafka_destroy(k->rk);
    }
    if (k->to_commit) rd_kafka_topic_partition_list_destroy(k->to_commit);
    for (int i = 0; i < k->nt; i++) free(k->t[i].p);
    free(k->t);
    for (int i = 0; i < 2; i++)
        if (k->pipe[i] > 0) close(k->pipe[i]);
    ink_csv_header_fini(&k->hdr);
    ink_decoder_fini(&k->dec);
    memset(k, 0, sizeof *k);
}

const struct ink_source_type ink_source_kafka = {
    .type = {.name = "kafka",
             .kind = INK_NODE_SOURCE,
             .summary = "records from Kafka topics (a consumer group; offsets kept in snapshots)",
             .params = src_params,
             .conf_size = sizeof(struct kafka_src_conf),
             .check = src_check},
    .impl_size = sizeof(struct ksrc),
    .open = ksrc_open,
    .pollitem = ksrc_pollitem,
    .pump = ksrc_pump,
    .close = ksrc_close,
    .save = ksrc_save,
    .restore = ksrc_restore,
    .committed = ksrc_committed,
    .ready = ksrc_ready,
    .metrics = ksrc_metrics,
    .sharded = ksrc_sharded,
    .checkpoint = ksrc_checkpoint,
};

/* ---- sink --------------------------------------------------------------- */

struct ksnk {
    struct kstate st; /* first: state_of */
    const struct kafka_sink_conf *c;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    struct ink_buf buf;
    struct ink_csv_layout lay;
    bool csv_started;
    double stop_deadline;
    uint64_t delivered, failed, failed_since_sync;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct ink_node *n = opaque;
    struct ksnk *k = n->impl;
    if (!m->err) {
        k->delivered++;
        return;
    }
    k->failed++;
    k->failed_since_sync++;
    ink__log(n, "delivery to %s failed: %s (%" PRIu64 " failed so far)", k->c->topic,
             rd_kafka_err2str(m->err), k->failed);
}

static int ksnk_open(struct ink_node *n, struct ink_err *err)
{
    struct ksnk *k = n->impl;
    k->c = n->nc->conf;
    /* murmur2_random: the Java client's key hash, so a key lands where
     * Kafka Streams and other producers put it. */
    static const char *const defaults[] = {"partitioner", "murmur2_random", NULL};
    rd_kafka_conf_t *rc =
        client_conf(n, k->c->brokers, defaults, &k->c->options, &k->c->secret_files, err);
    if (!rc) return err->code;
    /* Idempotence: retries never duplicate or reorder a partition's records. */
    int e = conf_set(rc, "enable.idempotence", "true", err);
    if (e) {
        rd_kafka_conf_destroy(rc);
        return e;
    }
    rd_kafka_conf_set_dr_msg_cb(rc, on_delivery);
    char es[512];
    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, rc, es, sizeof es);
    if (!k->rk) {
        rd_kafka_conf_destroy(rc);
        return ink_err_set(err, INK_EINVAL, "kafka producer: %s", es);
    }
    k->rkt = rd_kafka_topic_new(k->rk, k->c->topic, NULL);
    if (!k->rkt)
        return ink_err_set(err, INK_EINVAL, "topic %s: %s", k->c->topic,
                           rd_kafka_err2str(rd_kafka_last_error()));
    return 0;
}

static int encode(struct ksnk *k, const struct ink_record *rec)
{
    ink_buf_reset(&k->buf);
    int rc;
    switch (k->c->format) {
    case KFMT_JSON:
        rc = ink_encode_json(rec, 0, &k->buf);
        break;
    case KFMT_CSV:
        if (!k->csv_started) { /* the first record fixes the columns (docs/kafka.md) */
            rc = ink_encode_csv_header(&k->lay, rec, 0, &k->buf);
            ink_buf_reset(&k->buf);
            k->csv_started = true;
        }
        rc = ink_encode_csv(&k->lay, rec, &k->buf);
        break;
    default:
        return ink_encode_msgpack(rec, 0, &k->buf);
    }
    while (!rc && k->buf.len &&
           (k->buf.p[k->buf.len - 1] == '\n' || k->buf.p[k->buf.len - 1] == '\r'))
        k->buf.len--; /* one message is one line: no terminator */
    return rc;
}

static int ksnk_write(struct ink_node *n, const struct ink_record *rec)
{
    struct ksnk *k = n->impl;
    if (encode(k, rec)) {
        n->c.dropped++;
        return 1;
    }
    const void *key = rec->flags & INK_HAS_KEY ? rec->key : NULL;
    size_t klen = key ? rec->key_len : 0;
    for (;;) {
        if (rd_kafka_produce(k->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, k->buf.p,
                             k->buf.len, key, klen, NULL) == 0)
            return 0;
        rd_kafka_resp_err_t e = rd_kafka_last_error();
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            n->c.dropped++;
            k->failed++;
            ink__log(n, "produce to %s: %s", k->c->topic, rd_kafka_err2str(e));
            return 1;
        }
        /* The producer's queue is full (brokers slow or away): wait for
         * acknowledgements (backpressure), but not past the grace period
         * once a stop was requested. */
        if (n->g->stop) {
            double t = ink_now();
            if (k->stop_deadline == 0) k->stop_deadline = t + n->g->cfg->engine.grace;
            if (t > k->stop_deadline) {
                n->c.dropped++;
                return 1;
            }
        }
        rd_kafka_poll(k->rk, 50);
    }
}

static void ksnk_flush(struct ink_node *n)
{
    struct ksnk *k = n->impl;
    rd_kafka_poll(k->rk, 0); /* delivery reports, statistics, errors */
}

/* Before a snapshot: every record written so far is acknowledged. */
static int ksnk_sync(struct ink_node *n, struct ink_err *err)
{
    struct ksnk *k = n->impl;
    rd_kafka_resp_err_t e = rd_kafka_flush(k->rk, (int)(k->c->sync_timeout * 1000));
    if (e)
        return ink_err_set(err, INK_EIO,
                           "kafka sink %s: %d record(s) not acknowledged after %g s (%s)", n->name,
                           rd_kafka_outq_len(k->rk), k->c->sync_timeout, rd_kafka_err2str(e));
    if (k->failed_since_sync)
        return ink_err_set(err, INK_EIO,
                           "kafka sink %s: %" PRIu64 " record(s) failed delivery since the last "
                           "good snapshot; no later snapshot is written, so that a restore "
                           "replays them (at-least-once output)",
                           n->name, k->failed_since_sync);
    return 0;
}

static void ksnk_finish(struct ink_node *n)
{
    struct ksnk *k = n->impl;
    double grace = n->g->cfg->engine.grace;
    if (rd_kafka_flush(k->rk, (int)(grace * 1000)))
        ink__log(n, "%d record(s) not acknowledged within %g s at the end",
                 rd_kafka_outq_len(k->rk), grace);
}

static bool ksnk_ready(struct ink_node *n, char *why, size_t len)
{
    struct ksnk *k = n->impl;
    return state_ready(&k->st, k->c->brokers, why, len);
}

static void ksnk_metrics(struct ink_node *n, struct ink_buf *out)
{
    struct ksnk *k = n->impl;
    bprintf(out,
            "# HELP inkflow_kafka_produced_total records the brokers acknowledged\n"
            "# TYPE inkflow_kafka_produced_total counter\n"
            "inkflow_kafka_produced_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_produce_errors_total records that could not be "
            "delivered (logged)\n"
            "# TYPE inkflow_kafka_produce_errors_total counter\n"
            "inkflow_kafka_produce_errors_total{node=\"%s\"} %" PRIu64 "\n"
            "# HELP inkflow_kafka_producer_queue records and requests waiting for the "
            "brokers\n"
            "# TYPE inkflow_kafka_producer_queue gauge\n"
            "inkflow_kafka_producer_queue{node=\"%s\"} %d\n"
            "# HELP inkflow_kafka_producer_broker_up 1 while a broker connection is up\n"
            "# TYPE inkflow_kafka_producer_broker_up gauge\n"
            "inkflow_kafka_producer_broker_up{node=\"%s\"} %d\n",
            n->name, k->delivered, n->name, k->failed, n->name,
            k->rk ? rd_kafka_outq_len(k->rk) : 0, n->name, k->st.up ? 1 : 0);
}

static void ksnk_close(struct ink_node *n)
{
    struct ksnk *k = n->impl;
    if (!k) return;
    if (k->rkt) rd_kafka_topic_destroy(k->rkt);
    if (k->rk) {
        int left = rd_kafka_outq_len(k->rk);
        if (left > 0) ink__log(n, "closing with %d record(s) or request(s) unacknowledged", left);
        rd_kafka_destroy(k->rk);
    }
    ink_buf_fini(&k->buf);
    memset(k, 0, sizeof *k);
}

const struct ink_sink_type ink_sink_kafka = {
    .type = {.name = "kafka",
             .kind = INK_NODE_SINK,
             .summary = "records to a Kafka topic (idempotent producer, acknowledged before "
                        "each snapshot)",
             .params = sink_params,
             .conf_size = sizeof(struct kafka_sink_conf),
             .check = sink_check},
    .impl_size = sizeof(struct ksnk),
    .open = ksnk_open,
    .write = ksnk_write,
    .flush = ksnk_flush,
    .sync = ksnk_sync,
    .finish = ksnk_finish,
    .close = ksnk_close,
    .ready = ksnk_ready,
    .metrics = ksnk_metrics,
};
