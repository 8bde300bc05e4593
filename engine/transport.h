/* The transport contract (docs/transports.md): a source type and a sink
 * type are each one descriptor, exported by the transport's own file next to
 * its conf struct and parameter table, and listed in transports/registry.c.
 * The engine drives every transport through these hooks and never names one.
 *
 * A transport reads its node through engine/graph.h (n->nc->conf, n->impl,
 * n->name, n->g->cfg, n->c) and hands records to the engine with
 * ink__source_emit / ink__source_reject. This header does not include
 * <zmq.h>: a transport describes what the loop polls with an ink_pollitem,
 * and only the poll loop (engine/runtime.c) turns it into a zmq_pollitem_t.
 *
 * Lifecycle, owned by the engine:
 *   the loader parses `type.params` into conf_size bytes and calls type.check
 *   open(n)     n->impl points at impl_size zeroed bytes (owned by the engine)
 *   restore(n)  only when resuming from a snapshot, after open; sources
 *               before sinks, sinks only once everything else succeeded
 *   loop        sources: pollitem, pump; sinks: write, flush (periodic),
 *               pollitem/service when a sink has something to poll
 *   snapshot    sinks: sync, then every source's and sink's save (between
 *               two records), always on the main thread: the operators'
 *               state is then encoded and written by a forked child
 *               (engine/snapshot.h), which calls no transport hook (it
 *               fdatasyncs the sinks' durable_fd before its rename);
 *               committed, on the main thread, once the file is durable
 *   finish(n)   sinks, once, when the graph has ended (natural end or signal)
 *   close(n)    always, even after a failed open: safe on zeroed impl */
#ifndef INK_TRANSPORT_H
#define INK_TRANSPORT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "param.h"
#include "record.h"

struct ink_node;

/* What the loop waits on for a node: a zmq socket, or else a file
 * descriptor (a librdkafka queue fd, a mosquitto socket, a pipe). */
enum { INK_POLLIN = 1, INK_POLLOUT = 2 };
struct ink_pollitem {
    void *socket; /* a zmq socket, or NULL */
    int fd;       /* used when socket is NULL; >= 0 */
    short events; /* INK_POLLIN | INK_POLLOUT */
};

/* Connection events of a socket node, for /metrics (conn hook). */
enum {
    INK_CONN_ACCEPTED,
    INK_CONN_ADMITTED,
    INK_CONN_REFUSED_AUTH,
    INK_CONN_REFUSED_HANDSHAKE,
    INK_CONN_DISCONNECTED,
    INK_CONN_DROPPED, /* of the disconnects, the ones the transport made (zmq: a frame over the cap)
                       */
    INK_CONN__COUNT
};

struct ink_source_type {
    /* name (`type:`), kind INK_NODE_SOURCE, summary, params, conf_size and
     * the optional cross-key check: what the loader and `inkflow help` see */
    struct ink_node_type type;
    size_t impl_size; /* zeroed bytes at n->impl from open to close */
    /* Optional: ends by itself (a file; a pull socket with stop_after_eos). */
    bool (*finite)(const void *conf);
    /* Optional: a request/reply source names the operator whose output is
     * the reply (the loader checks it reads from this source); NULL = none. */
    const char *(*reply_from)(const void *conf);
    int (*open)(struct ink_node *n, struct ink_err *err);
    /* Called every loop turn (so a reconnect may change the fd): fill *pi
     * and return 1 to be pumped when it is readable, or 0 when the source is
     * always ready (files: pumped every turn). */
    int (*pollitem)(struct ink_node *n, struct ink_pollitem *pi);
    /* Optional: longest the loop may wait for this source, in ms (reconnect
     * backoff, keepalive); < 0 = no opinion. The loop waits at most 100 ms. */
    int (*timeout_ms)(struct ink_node *n);
    /* Read up to `budget` records, dispatching each through
     * ink__source_emit / ink__source_reject. Returns records handled (>= 0),
     * -1 when the source has ended, or another negative code (fatal). */
    int (*pump)(struct ink_node *n, int budget);
    void (*close)(struct ink_node *n);
    /* Optional: its position, one msgpack object (file offset; partition
     * offsets). restore gets back exactly what save wrote; a source with
     * save but no saved position in a snapshot is refused. */
    int (*save)(struct ink_node *n, msgpack_packer *pk);
    int (*restore)(struct ink_node *n, const msgpack_object *pos, struct ink_err *err);
    /* Optional: the snapshot holding the last save is durable (commit
     * offsets upstream). */
    void (*committed)(struct ink_node *n);
    /* Optional: false with a reason in why (broker unreachable): /ready
     * answers 503 with it. Main thread, at every metrics publication. */
    bool (*ready)(struct ink_node *n, char *why, size_t len);
    /* Optional: extra Prometheus lines for /metrics (complete lines with
     * their # HELP / # TYPE), e.g. per-partition lag. Main thread. */
    void (*metrics)(struct ink_node *n, struct ink_buf *out);
    /* Optional: connection events so far (INK_CONN_*). Main thread. */
    void (*conn)(struct ink_node *n, uint64_t out[INK_CONN__COUNT]);
    /* Optional, shard mode (engine/shard.h, docs/kafka.md#scale-out): true
     * when this source keeps the keyed state of its graph per partition. The
     * loader then requires engine.snapshot and refuses stateful operators
     * fed by the source without key_by; the engine takes no whole-graph
     * snapshot and calls checkpoint instead. */
    bool (*sharded)(const void *conf);
    /* Shard mode: the graph's snapshot is due (periodic, or final), sinks
     * are synced: write every shard the source owns (ink_shard_write), then
     * commit their positions upstream. */
    int (*checkpoint)(struct ink_node *n, bool final, struct ink_err *err);
};

struct ink_sink_type {
    struct ink_node_type type; /* kind INK_NODE_SINK; as above */
    size_t impl_size;
    int (*open)(struct ink_node *n, struct ink_err *err);
    /* One record: 0 = written, 1 = not written (skipped on purpose, or
     * dropped and counted in n->c.dropped by the sink), INK_EAGAIN = not now
     * (counted as not written), other negative = fatal. */
    int (*write)(struct ink_node *n, const struct ink_record *rec);
    void (*flush)(struct ink_node *n); /* periodic (~100 ms): make output visible */
    /* Optional: before a snapshot, everything written so far is durable
     * (file: fdatasync; a broker: every record acknowledged). */
    int (*sync)(struct ink_node *n, struct ink_err *err);
    /* Optional: a descriptor of the output whose fdatasync makes what sync
     * wrote durable, or -1. When a sink gives one, its sync only hands its
     * buffer to the kernel (write) and the snapshot writer fdatasyncs the
     * descriptor before its rename, off the data path (docs/state.md). It
     * must not hold the output's lock (another open of the file). */
    int (*durable_fd)(struct ink_node *n);
    void (*finish)(struct ink_node *n); /* the graph has ended: flush, end of stream */
    void (*close)(struct ink_node *n);
    /* Optional: something to poll (a broker connection that needs service
     * while no record is written); service runs when it is ready. */
    int (*pollitem)(struct ink_node *n, struct ink_pollitem *pi);
    void (*service)(struct ink_node *n);
    /* Optional, as for sources: save/restore (file sink: its length, cut
     * back on restore), committed, ready, metrics, conn. */
    int (*save)(struct ink_node *n, msgpack_packer *pk);
    int (*restore)(struct ink_node *n, const msgpack_object *pos, struct ink_err *err);
    void (*committed)(struct ink_node *n);
    bool (*ready)(struct ink_node *n, char *why, size_t len);
    void (*metrics)(struct ink_node *n, struct ink_buf *out);
    void (*conn)(struct ink_node *n, uint64_t out[INK_CONN__COUNT]);
};

/* The registry (transports/registry.c): the node type of every source and
 * every sink, NULL-terminated; each is the `type` member of a descriptor.
 * Adding a transport is one line in each list it belongs to. */
extern const struct ink_node_type *const ink_source_types[];
extern const struct ink_node_type *const ink_sink_types[];

/* The descriptor a source or sink node type belongs to (NULL for another
 * kind). */
static inline const struct ink_source_type *ink_source_of(const struct ink_node_type *nt)
{
    return nt && nt->kind == INK_NODE_SOURCE
               ? (const struct ink_source_type *)((const char *)nt -
                                                  offsetof(struct ink_source_type, type))
               : NULL;
}

static inline const struct ink_sink_type *ink_sink_of(const struct ink_node_type *nt)
{
    return nt && nt->kind == INK_NODE_SINK
               ? (const struct ink_sink_type *)((const char *)nt -
                                                offsetof(struct ink_sink_type, type))
               : NULL;
}

#endif
