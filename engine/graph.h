/* Phase two of a run: the live graph built from a checked config. The
 * transports see their nodes through it (the hooks are in transport.h). */
#ifndef INK_GRAPH_H
#define INK_GRAPH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "codec.h"
#include "config.h"
#include "log.h"
#include "op.h"
#include "record.h"
#include "transport.h"

struct ink_counters {
    uint64_t in, out, dropped;
    uint64_t rejected[INK_REJ__COUNT];
};

struct ink_graph;
struct ink_node;
struct ink_snap;
struct ink_metrics;

/* Processing-latency histogram buckets (seconds, upper bounds; +Inf implied). */
#define INK_LAT_NB 12
extern const double ink_lat_bounds[INK_LAT_NB];
/* Snapshot pauses of the main loop (seconds, upper bounds; +Inf implied). */
#define INK_PAUSE_NB 10
extern const double ink_pause_bounds[INK_PAUSE_NB];

/* Keyed operator state: one state per key value (ink_op_common_conf.key_by). */
struct ink_keyslot {
    char *key; /* NUL-terminated copy */
    uint32_t len;
    int32_t shard; /* the shard the key lives in (INK_SHARD_NONE outside shard mode) */
    bool live;     /* holds a key's state (else on the free list) */
    void *state;
    int64_t prev, next; /* LRU list, most recent at head; free slots: next free */
};

/* Shard mode (docs/kafka.md#scale-out): a key's identity is (shard, key).
 * Outside shard mode every slot is in INK_SHARD_NONE; in shard mode a
 * lookup without a shard (a request from a query socket) matches the key
 * in whichever shard holds it (INK_SHARD_ANY) and never creates it. */
#define INK_SHARD_NONE (-1)
#define INK_SHARD_ANY  (-2)

struct ink_node {
    struct ink_graph *g;
    int idx;
    const struct ink_node_conf *nc;
    const char *name;
    enum ink_node_kind kind;
    struct ink_counters c;
    struct ink_node **out; /* consumers */
    int nout;
    struct ink_node *dead_letter;
    /* operators */
    const struct ink_op_vtable *vt;
    void *state;               /* unkeyed */
    void *scratch;             /* vt->scratch_bytes, shared by the node's states */
    struct ink_keyslot *slots; /* keyed: max_keys slots */
    int64_t *hash;             /* keyed: open addressing, 2*max_keys entries, -1 empty */
    int64_t nslots, hcap, lru_head, lru_tail, keys_used;
    int64_t free_head, fresh; /* freed slots (a dropped shard's), then never-used ones */
    uint64_t evicted;
    struct ink_buf *keys_buf; /* {"op": "keys"} reply scratch, grown on first use */
    int64_t *keys_counts;
    struct ink_emitter emitter;
    /* sources and sinks */
    const struct ink_source_type *src;
    const struct ink_sink_type *snk;
    void *impl;                 /* transport state: impl_size zeroed bytes */
    bool ended;                 /* source ended */
    uint64_t seq;               /* next seq for a source */
    struct ink_ratelimit logrl; /* ink__log */
    char dim_hint[256];         /* the first shape refusal, explained (log and summary) */
    /* operators: processing latency (per record, seconds) */
    uint64_t lat[INK_LAT_NB + 1];
    double lat_sum;
};

struct ink_graph {
    const struct ink_config *cfg;
    int n;
    struct ink_node *nodes;
    volatile int stop; /* set by signals */
    /* the router request being answered, if any */
    struct ink_node *reply_node;
    int reply_count;
    struct ink_buf *reply_buf;
    const char *reply_error;
    char reply_errbuf[512];
    double t0;
    /* snapshots (engine/snapshot.c) */
    bool restoring;       /* built to be restored: sinks do not truncate */
    double snap_last;     /* monotonic time of the last snapshot (or of the start) */
    double snap_wall;     /* wall-clock time of the last snapshot, 0 = none yet */
    double snap_duration; /* seconds the last snapshot took */
    uint64_t snap_bytes;  /* size of the last snapshot file */
    uint64_t snap_count, snap_failed;
    uint64_t snap_streak;  /* consecutive failures (0 after a success) */
    char snap_error[512];  /* the last failure, for /health and /ready */
    uint64_t src_records;  /* records read by all sources (every_records) */
    uint64_t snap_next_at; /* src_records at which the next count-based snapshot is due */
    struct ink_buf *snap_buf;
    struct ink_buf *snap_pre;          /* sources' and sinks' maps, encoded at the cut */
    size_t *snap_off;                  /* node i's bytes in snap_pre: [off[i], off[i + 1]) */
    int snap_child;                    /* pid of the writer child, 0 = none (snapshot.h) */
    int snap_pipe;                     /* its report */
    double snap_cut_t, snap_cut_wall;  /* when its cut was taken (monotonic, wall) */
    double snap_pause, snap_pause_max; /* main loop stopped for the last / longest
                                          periodic snapshot (below) */
    double snap_pause_cpu_max;         /* the longest, in CPU time of the main thread */
    const char *snap_why;              /* what the snapshot in the child was for */
    int snap_lock; /* the snapshot's lock (snapshot.h), held for the graph's life; -1 none */
    /* shard mode (engine/shard.h): the graph's keyed state is kept per shard */
    bool sharded;
    int32_t shard_cur;          /* the shard of the record being dispatched, or -1 */
    struct ink_shard_slot *shd; /* the shards open (locked) in this process */
    int nshd, shd_cap;

    /* The main loop's pause per periodic snapshot (engine/runtime.c): its
     * cut and fork, plus the collection of its writer's outcome (and any
     * wait for it); the final snapshot, written after the stream, is not
     * counted. Wall clock, and CPU time of the main thread. */
    double snap_pause_t0;                 /* monotonic start of the pending snapshot's cut */
    double snap_pend, snap_pend_cpu;      /* its pause so far (wall, CPU) */
    long snap_pend_vcsw, snap_pend_ivcsw; /* the main thread blocked / preempted meanwhile */
    double snap_pause_sum;                /* over every pause counted in snap_pause_hist */
    uint64_t snap_pause_hist[INK_PAUSE_NB + 1];
    int *snap_sync;      /* descriptors the writer fdatasyncs before its rename */
    int *snap_sync_node; /* the sink node of each */
    int snap_nsync;
    int snap_lost;    /* 1 + the sink whose output failed to sync once (never cleared), 0 = none */
    FILE *snap_trace; /* INKFLOW_SNAPSHOT_TRACE (docs/state.md), or NULL */
    struct ink_metrics *metrics; /* NULL without engine.http */
};

/* Build everything (operators initialised, sockets opened, files opened).
 * With a snapshot (ink_snapshot_read), the state is restored from it before
 * anything is read: every operator, key, source offset and sink length; a
 * refused snapshot returns INK_ESTATE and nothing has been written. The
 * graph takes over the snapshot's lock (snap->lock_fd). With
 * engine.snapshot, INK_EBUSY when another process owns the snapshot or a
 * file sink's output (engine/lock.h), before any output is touched. */
int ink_graph_build(struct ink_graph **out, const struct ink_config *cfg, struct ink_err *err);
int ink_graph_build_restore(struct ink_graph **out, const struct ink_config *cfg,
                            struct ink_snap *snap, struct ink_err *err);
/* Run until every source has ended (all finite) or stop is set. When every
 * source ended, operators flush (op.h) before the final snapshot; then sinks
 * finish. Returns 0, or a negative code on a runtime failure or when the
 * final snapshot failed (g->snap_streak > 0). */
int ink_graph_run(struct ink_graph *g);
void ink_graph_summary(const struct ink_graph *g, FILE *out);
/* After a run: 1 when a source or operator rejected every record it received,
 * or more than engine.max_reject_ratio of them (each such node named on out,
 * with its reasons), 0 otherwise. `inkflow run` then exits 1. */
int ink_graph_reject_check(const struct ink_graph *g, FILE *out);
void ink_graph_free(struct ink_graph *g);

/* For transports: the decoder limits of the engine section (max_dim,
 * max_depth, max_record_bytes), with max_frame (0 = the codec's default). */
struct ink_limits ink__source_limits(const struct ink_node *n, uint64_t max_frame);
/* A node of the graph by name, or NULL. */
struct ink_node *ink__node_find(struct ink_graph *g, const char *name);

/* For transports. The record is borrowed. */
int ink__source_emit(struct ink_node *src, struct ink_record *rec);
/* A record that failed decoding at a source: counted, logged, dead-lettered. */
void ink__source_reject(struct ink_node *src, enum ink_reject why, const char *msg, const void *raw,
                        size_t rawlen);
/* Rate-limited log line with the node's name. */
void ink__log(struct ink_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A rare event an operator must always see (a Kafka rebalance, a broker
 * reconnect): logged every time, never suppressed by the node's limiter,
 * which the data path's lines share. */
void ink__log_event(struct ink_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Router requests: begin capturing replies from the source's reply_from
 * node; end returns the reply to send (msgpack, owned by the graph). */
void ink__request_begin(struct ink_graph *g, struct ink_node *reply_node);
void ink__request_fail(struct ink_graph *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const uint8_t *ink__request_end(struct ink_graph *g, size_t *len);

/* Shard mode: emit a record of shard `shard` (every keyed state it reaches
 * is that shard's). */
int ink__source_emit_shard(struct ink_node *src, struct ink_record *rec, int32_t shard);

/* Keyed state restore: a fresh slot for key (most recently used so far),
 * initialised; its state in *state for the operator's load. */
int ink__keyed_restore_slot(struct ink_node *n, const char *key, uint32_t len, void **state,
                            struct ink_err *err);
/* The same in a shard (engine/shard.c loads a shard file with it). */
int ink__keyed_load_slot(struct ink_node *n, int32_t shard, const char *key, uint32_t len,
                         void **state, struct ink_err *err);
/* Free every key slot of a shard (states released, slots reusable). */
void ink__keyed_drop_shard(struct ink_node *n, int32_t shard);
/* Key slots from the most recently used on: first, then next. */
int64_t ink__keyed_first(const struct ink_node *n);

#endif
