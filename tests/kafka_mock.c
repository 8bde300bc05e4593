/* Test tool (not installed): a Kafka cluster for the end-to-end tests and the
 * benchmark, without a broker. librdkafka's mock cluster is real librdkafka
 * code speaking the Kafka protocol on 127.0.0.1 ports (docs/kafka.md "Tests").
 *
 *   kafka_mock serve TOPIC:PARTITIONS...
 *       start a one-broker mock cluster on 127.0.0.1, create the topics, print
 *       the bootstrap address on a line of its own, then obey commands read
 *       from stdin, each answered with a line "ok" (or "error ..."):
 *         down | up               take the broker away / bring it back
 *         topic_error TOPIC CODE  answer metadata for TOPIC with error CODE
 *                                 (3 = unknown topic: the topic "is gone")
 *       Runs until SIGTERM/SIGINT (stdin at end of file is not a stop).
 *   kafka_mock produce BOOTSTRAP TOPIC [--lines] [--partition P]
 *       stdin is a stream of msgpack maps: each becomes one message, its bytes
 *       unchanged, keyed by the map's "key" string (if any); with --lines each
 *       line (without its newline) is one message without a key. Idempotent
 *       producer, murmur2_random partitioner (as the inkflow sink). Prints the
 *       count; exit 1 if any delivery failed.
 *   kafka_mock consume BOOTSTRAP TOPIC [TIMEOUT_S]
 *       every message of every partition, from the start to the high-water
 *       mark at the time of the call: one line "partition offset timestamp key
 *       value", timestamp in ms, key and value in hex ("-" for a null key).
 *   kafka_mock count BOOTSTRAP TOPIC
 *       the sum of the partitions' high-water marks (messages ever written).
 *   kafka_mock committed BOOTSTRAP GROUP TOPIC
 *       the group's committed offset of each partition: lines "partition offset".
 *   kafka_mock commit BOOTSTRAP GROUP TOPIC P:OFFSET...
 *       commit those offsets for the group (joins it first, reads nothing; run
 *       it while no other member is in the group).
 *
 * Mock limits (librdkafka 2.0.2): a partition keeps at most 5 MiB or 100,000
 * message sets and silently drops its oldest beyond that; transactions are not
 * enforced; CreateTopics is missing (topics come from `serve`). Tests keep
 * well under the size limit. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "kafka_mock: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) die("%s", err);
}

static rd_kafka_t *client(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk) die("%s", err);
    return rk;
}

/* ---- serve --------------------------------------------------------------- */

static int serve(int argc, char **argv)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "log_level", "3");
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, conf);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) die("%s", "could not start the mock cluster");
    for (int i = 0; i < argc; i++) {
        char *colon = strrchr(argv[i], ':');
        int parts = colon ? atoi(colon + 1) : 1;
        if (colon) *colon = '\0';
        if (parts < 1 || !*argv[i]) die("bad topic '%s' (want NAME:PARTITIONS)", argv[i]);
        if (rd_kafka_mock_topic_create(mc, argv[i], parts, 1)) die("cannot create %s", argv[i]);
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    char line[512];
    size_t len = 0;
    bool eof = false;
    while (!stop) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (eof || poll(&p, 1, 200) <= 0) {
            if (eof) usleep(200000);
            continue;
        }
        ssize_t r = read(0, line + len, sizeof line - 1 - len);
        if (r <= 0) {
            eof = r == 0 || errno != EINTR;
            continue;
        }
        len += (size_t)r;
        char *nl;
        while ((nl = memchr(line, '\n', len))) {
            *nl = '\0';
            char topic[256];
            int code;
            rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
            if (strcmp(line, "down") == 0)
                e = rd_kafka_mock_broker_set_down(mc, -1);
            else if (strcmp(line, "up") == 0)
                e = rd_kafka_mock_broker_set_up(mc, -1);
            else if (sscanf(line, "topic_error %255s %d", topic, &code) == 2)
                rd_kafka_mock_topic_set_error(mc, topic, (rd_kafka_resp_err_t)code);
            else
                e = RD_KAFKA_RESP_ERR__INVALID_ARG;
            printf(e ? "error %s\n" : "ok\n", rd_kafka_err2str(e));
            fflush(stdout);
            size_t used = (size_t)(nl - line) + 1;
            memmove(line, nl + 1, len - used);
            len -= used;
        }
        if (len == sizeof line - 1) len = 0; /* an absurd line: forget it */
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}

/* ---- produce ------------------------------------------------------------- */

static long failed;
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (failed++ < 5) fprintf(stderr, "kafka_mock: delivery: %s\n", rd_kafka_err2str(m->err));
    }
}

static void send_one(rd_kafka_t *rk, const char *topic, int32_t part, const void *p, size_t n,
                     const void *key, size_t klen)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void *)p, n),
            RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_END);
        if (!e) return;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) die("produce: %s", rd_kafka_err2str(e));
        rd_kafka_poll(rk, 100);
    }
}

/* The "key" string of a msgpack map, or NULL. */
static const char *map_key(const msgpack_object *o, size_t *len)
{
    if (o->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 3 &&
            memcmp(kv->key.via.str.ptr, "key", 3) == 0 && kv->val.type == MSGPACK_OBJECT_STR) {
            *len = kv->val.via.str.size;
            return kv->val.via.str.ptr;
        }
    }
    return NULL;
}

static int produce(int argc, char **argv)
{
    if (argc < 2) die("%s", "usage: produce BOOTSTRAP TOPIC [--lines] [--partition P]");
    bool lines = false;
    int32_t part = RD_KAFKA_PARTITION_UA;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--lines") == 0)
            lines = true;
        else if (strcmp(argv[i], "--partition") == 0 && i + 1 < argc)
            part = atoi(argv[++i]);
        else
            die("unknown argument %s", argv[i]);
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", argv[0]);
    set(conf, "enable.idempotence", "true");
    set(conf, "partitioner", "murmur2_random");
    set(conf, "linger.ms", "5");
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, conf);
    long count = 0;
    if (lines) {
        char *l = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&l, &cap, stdin)) >= 0) {
            if (n > 0 && l[n - 1] == '\n') n--;
            send_one(rk, argv[1], part, l, (size_t)n, NULL, 0);
            count++;
        }
        free(l);
    } else {
        /* all of stdin, then object by object (the bytes of each are sent as they are) */
        size_t cap = 1 << 20, len = 0;
        char *buf = malloc(cap);
        ssize_t r;
        while (buf && (r = read(0, buf + len, cap - len)) != 0) {
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) die("stdin: %s", strerror(errno));
            len += (size_t)r;
            if (len == cap) buf = realloc(buf, cap *= 2);
        }
        if (!buf) die("%s", "out of memory");
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0, start = 0;
        msgpack_unpack_return ret;
        while ((ret = msgpack_unpack_next(&up, buf, len, &off)) == MSGPACK_UNPACK_SUCCESS) {
            size_t klen = 0;
            const char *key = map_key(&up.data, &klen);
            send_one(rk, argv[1], part, buf + start, off - start, key, klen);
            start = off;
            count++;
        }
        if (start != len) die("%s", "stdin is not a stream of whole msgpack objects");
        msgpack_unpacked_destroy(&up);
        free(buf);
    }
    while (rd_kafka_outq_len(rk) > 0) rd_kafka_poll(rk, 100);
    rd_kafka_destroy(rk);
    printf("%ld\n", count);
    return failed ? 1 : 0;
}

/* ---- consume, committed, commit ----------------------------------------- */

static rd_kafka_t *consumer(const char *bootstrap, const char *group)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "group.id", group);
    set(conf, "enable.auto.commit", "false");
    set(conf, "isolation.level", "read_committed");
    /* a member that is gone is noticed in seconds (the group's next
     * rebalance waits for it) */
    set(conf, "session.timeout.ms", "3000");
    set(conf, "heartbeat.interval.ms", "500");
    return client(RD_KAFKA_CONSUMER, conf);
}

static int partitions(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e) die("metadata: %s", rd_kafka_err2str(e));
    if (md->topic_cnt != 1 || md->topics[0].err) die("topic %s not found", topic);
    int n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

static void hex(const void *p, size_t n)
{
    const uint8_t *b = p;
    if (!p) {
        fputc('-', stdout);
        return;
    }
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    if (!n) fputc('=', stdout); /* empty, not null */
}

static int consume(int argc, char **argv)
{
    if (argc < 2) die("%s", "usage: consume BOOTSTRAP TOPIC [TIMEOUT_S]");
    double timeout = argc > 2 ? atof(argv[2]) : 60;
    char group[64]; /* rd_kafka_consumer_poll needs a group; nothing is committed */
    snprintf(group, sizeof group, "kafka_mock-consume-%d", (int)getpid());
    rd_kafka_t *rk = consumer(argv[0], group);
    int np = partitions(rk, argv[1]);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    int64_t *hi = calloc((size_t)np, sizeof *hi);
    int left = 0;
    for (int p = 0; p < np; p++) {
        int64_t lo;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, argv[1], p, &lo, &hi[p], 10000);
        if (e) die("watermarks: %s", rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_add(l, argv[1], p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        if (hi[p] > lo)
            left++;
        else
            hi[p] = -1;
    }
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int errors = 0;
    while (left > 0) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > timeout) {
            fprintf(stderr, "kafka_mock: consume: timed out with %d partitions unread\n", left);
            return 1;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m) continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && errors++ < 10)
                fprintf(stderr, "kafka_mock: consume: %s\n", rd_kafka_message_errstr(m));
        } else if (hi[m->partition] >= 0 && m->offset < hi[m->partition]) {
            printf("%" PRId32 " %" PRId64 " %" PRId64 " ", m->partition, m->offset,
                   rd_kafka_message_timestamp(m, NULL));
            hex(m->key, m->key_len);
            fputc(' ', stdout);
            hex(m->payload ? m->payload : "", m->len);
            fputc('\n', stdout);
            if (m->offset + 1 >= hi[m->partition]) {
                hi[m->partition] = -1;
                left--;
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(hi);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

static int count(int argc, char **argv)
{
    if (argc < 2) die("%s", "usage: count BOOTSTRAP TOPIC");
    char group[64];
    snprintf(group, sizeof group, "kafka_mock-count-%d", (int)getpid());
    rd_kafka_t *rk = consumer(argv[0], group);
    int np = partitions(rk, argv[1]);
    int64_t sum = 0;
    for (int p = 0; p < np; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, argv[1], p, &lo, &hi, 10000);
        if (e) die("watermarks: %s", rd_kafka_err2str(e));
        sum += hi;
    }
    printf("%" PRId64 "\n", sum);
    rd_kafka_destroy(rk);
    return 0;
}

static int committed(int argc, char **argv)
{
    if (argc < 3) die("%s", "usage: committed BOOTSTRAP GROUP TOPIC");
    rd_kafka_t *rk = consumer(argv[0], argv[1]);
    int np = partitions(rk, argv[2]);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++) rd_kafka_topic_partition_list_add(l, argv[2], p);
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
    if (e) die("committed: %s", rd_kafka_err2str(e));
    for (int i = 0; i < l->cnt; i++)
        printf("%" PRId32 " %" PRId64 "\n", l->elems[i].partition, l->elems[i].offset);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return 0;
}

static int commit(int argc, char **argv)
{
    if (argc < 4) die("%s", "usage: commit BOOTSTRAP GROUP TOPIC P:OFFSET...");
    rd_kafka_t *rk = consumer(argv[0], argv[1]);
    partitions(rk, argv[2]); /* the topic must exist */
    /* join the group first: the mock refuses commits from a non-member */
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, argv[2], RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    for (int i = 0; i < 300; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m) rd_kafka_message_destroy(m); /* records are not read: only the assignment */
        rd_kafka_topic_partition_list_t *a = NULL;
        bool in = rd_kafka_assignment(rk, &a) == 0 && a->cnt > 0;
        if (a) rd_kafka_topic_partition_list_destroy(a);
        if (in) break;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(argc - 3);
    for (int i = 3; i < argc; i++) {
        int p;
        long long off;
        if (sscanf(argv[i], "%d:%lld", &p, &off) != 2)
            die("bad offset '%s' (want P:OFFSET)", argv[i]);
        rd_kafka_topic_partition_list_add(l, argv[2], p)->offset = off;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 0);
    if (e) die("commit: %s", rd_kafka_err2str(e));
    for (int i = 0; i < l->cnt; i++)
        if (l->elems[i].err) die("commit: %s", rd_kafka_err2str(l->elems[i].err));
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) return serve(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "produce") == 0) return produce(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "consume") == 0) return consume(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "count") == 0) return count(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "committed") == 0) return committed(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "commit") == 0) return commit(argc - 2, argv + 2);
    fprintf(stderr, "usage: kafka_mock serve TOPIC:PARTITIONS... | produce | consume | committed | "
                    "commit (see tests/kafka_mock.c)\n");
    return 2;
}
