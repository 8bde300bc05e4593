/* Shard mode (docs/kafka.md#scale-out): the keyed state of a graph kept per
 * shard, a shard being one partition of a Kafka source, so that it can move
 * between the processes of a consumer group with its partition.
 *
 * A key's identity is (shard, key) (engine/graph.h, INK_SHARD_*). Key slots
 * stay reserved at start (max_keys is the process's bound over all its
 * shards); a dropped shard frees its slots for the next one.
 *
 * One file per shard, <engine.snapshot.dir>/<name>.shard, in the snapshot's
 * format (the same header, checks and compatibility stamp:
 * ink_snapshot_seal / ink_snapshot_verify), replaced atomically, and one
 * lock per shard, <name>.lock (engine/lock.h), held by the process that has
 * the shard open: the directory is shared by the group's processes and is
 * never locked as a whole. Payload (msgpack map):
 *   shard: name, offset: next offset of the partition, generation: the
 *   writer's assignment epoch, final: written at a handover (revoke, end)
 *   rather than a periodic cut, pid, member: the writer, wall: Unix time,
 *   nodes: [{name: keyed operator, keys: [[key, save blob], ...] most
 *          recently used first}, ...]
 * Everything runs on the main thread, between two records. */
#ifndef INK_SHARD_H
#define INK_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct ink_graph;

/* A shard open in this process (the graph's table). */
struct ink_shard_slot {
    int32_t id;
    int lock_fd;
    char name[256];
    int64_t written;   /* offset of the last file this process wrote, -1 none */
    uint64_t dev, ino; /* that file's identity: unchanged = nobody else wrote */
    uint64_t keys;     /* keys loaded from its file */
};

/* A shard file's position and provenance. */
struct ink_shard_pos {
    int64_t offset;     /* next offset of the partition; -1: no file */
    int64_t generation; /* the writer's assignment epoch */
    bool final;         /* written at a handover: the writer read nothing after it */
    int64_t pid;        /* the writer's process id */
    double wall;        /* when it was written (Unix time) */
    char member[128];   /* the writer's group member id */
};

/* Returned by ink_shard_write when the file on disk holds a higher offset
 * than the writer's (a stale owner): nothing is written. */
#define INK_SHARD_FENCED 1

/* Take shard `name`'s lock without waiting (INK_EBUSY, the holder named,
 * while another process has it open), read its file if there is one into
 * *pos (pos->offset -1 when none) and load its keyed states as shard id.
 * A refused file (corrupt, another config) loads nothing, releases the lock
 * and returns INK_ESTATE. */
int ink_shard_open(struct ink_graph *g, int32_t id, const char *name, struct ink_shard_pos *pos,
                   struct ink_err *err);
/* Write shard id's keyed states with *pos (the caller's position, which
 * its records reflect: sinks synced first, ink_shard_sync_sinks). 0 once
 * durable; INK_SHARD_FENCED (err says why) when the file holds a higher
 * offset; a negative code on failure (the previous file stays). */
int ink_shard_write(struct ink_graph *g, int32_t id, const struct ink_shard_pos *pos,
                    struct ink_err *err);
/* Forget shard id: its key slots freed, its lock released. */
void ink_shard_drop(struct ink_graph *g, int32_t id);
/* Keys shard id holds, over every keyed operator. */
uint64_t ink_shard_keys(const struct ink_graph *g, int32_t id);
/* Every sink makes what it was given durable (its sync hook). */
int ink_shard_sync_sinks(struct ink_graph *g, struct ink_err *err);
/* The graph's snapshot in shard mode: sinks synced, then every sharded
 * source's checkpoint hook; counted as a snapshot. */
int ink_shard_checkpoint(struct ink_graph *g, bool final, struct ink_err *err);
/* Teardown, after every node is closed: release the locks still held. */
void ink_shard_close_all(struct ink_graph *g);

#endif
