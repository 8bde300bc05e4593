/* kafka_baseline: the ceiling for the Kafka row (bench/rows_kafka.py). A plain
 * librdkafka loop that consumes a topic and produces every message, key and
 * payload unchanged, to another: the same client settings as inkflow's Kafka
 * source and sink (docs/kafka.md), none of the engine. It reads until it has
 * forwarded N messages and every one is acknowledged, then exits.
 *
 *   kafka_baseline BOOTSTRAP IN_TOPIC OUT_TOPIC N [TIMEOUT_S]
 *
 * Prints "forwarded N records in S s": S from the first message consumed to
 * the last one acknowledged. The row itself times both runs the same way, from
 * the output topic's timestamps. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err && failed++ < 5)
        fprintf(stderr, "kafka_baseline: delivery: %s\n", rd_kafka_err2str(m->err));
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka_baseline: %s\n", err);
        exit(2);
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: kafka_baseline BOOTSTRAP IN_TOPIC OUT_TOPIC N [TIMEOUT_S]\n");
        return 2;
    }
    long n = atol(argv[4]);
    double timeout = argc > 5 ? atof(argv[5]) : 120;
    char err[256], group[64];
    snprintf(group, sizeof group, "kafka_baseline-%d", (int)getpid());

    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    set(cc, "bootstrap.servers", argv[1]);
    set(cc, "group.id", group);
    set(cc, "enable.auto.commit", "false");
    set(cc, "enable.auto.offset.store", "false");
    set(cc, "isolation.level", "read_committed");
    set(cc, "auto.offset.reset", "earliest");
    set(cc, "session.timeout.ms", "6000");
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err);
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    set(pc, "bootstrap.servers", argv[1]);
    set(pc, "enable.idempotence", "true");
    set(pc, "partitioner", "murmur2_random");
    rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
    rd_kafka_t *p = c ? rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err) : NULL;
    if (!c || !p) {
        fprintf(stderr, "kafka_baseline: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, argv[2], RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c, sub);
    rd_kafka_topic_partition_list_destroy(sub);

    long done = 0;
    double t0 = 0, deadline = now() + timeout;
    while (done < n && now() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m) continue;
        if (!m->err) {
            if (!done) t0 = now();
            for (;;) {
                rd_kafka_resp_err_t e = rd_kafka_producev(
                    p, RD_KAFKA_V_TOPIC(argv[3]), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_KEY(m->key, m->key_len),
                    RD_KAFKA_V_END);
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                    if (e) failed++;
                    break;
                }
                rd_kafka_poll(p, 10);
            }
            if (++done % 1000 == 0) rd_kafka_poll(p, 0); /* delivery reports, in batches */
        }
        rd_kafka_message_destroy(m);
    }
    while (rd_kafka_outq_len(p) > 0 && now() < deadline) rd_kafka_poll(p, 10);
    double el = now() - t0;
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);
    if (done < n || failed) {
        fprintf(stderr, "kafka_baseline: forwarded %ld of %ld, %ld failed\n", done, n, failed);
        return 1;
    }
    printf("forwarded %ld records in %.3f s\n", done, el);
    return 0;
}
