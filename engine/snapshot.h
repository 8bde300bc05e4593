/* Crash-safe snapshots of a running graph and exact resume (docs/state.md).
 *
 * One file per graph, <engine.snapshot.dir>/<config name>.snap, replaced
 * atomically (temporary file, fsync, rename, directory fsync). Layout:
 *   0   8  magic "INKSNAP\0"
 *   8   4  format version (u32 little-endian)
 *   12  4  zero
 *   16  8  structure length S (u64 LE)
 *   24  8  payload length N (u64 LE)
 *   32  N  payload (msgpack: every node's counters, state and position, in
 *          config order)
 *   32+N S structure (msgpack: ink_structure_pack, what a restore compares)
 *   32+N+S 4 CRC32C of bytes [0, 32+N+S) (u32 LE)
 * Header, structure and CRC are the envelope of every snapshot file
 * (ink_snapshot_seal / ink_snapshot_verify below); the payload is the
 * file's own.
 * The snapshot is taken between two source records, where the synchronous
 * dispatch of engine/runtime.c makes every node's state a consistent cut. */
#ifndef INK_SNAPSHOT_H
#define INK_SNAPSHOT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

/* 3: the structure section replaces the config hash (restore compatibility
 * by structure, docs/state.md). 2 (a config hash at 16, no structure; the
 * same payload) is read when the config's bytes hash the same; 1 (file
 * offsets under fixed keys) and others are refused. */
#define INK_SNAP_VERSION 3
#define INK_SNAP_HEADER  32

struct ink_graph;
struct ink_buf;

/* A snapshot read and verified (CRC, config hash, structure), not applied. */
struct ink_snap {
    char path[4096];
    uint8_t *bytes;
    size_t len;
    msgpack_unpacked u;
    const msgpack_object *nodes; /* array, one map per node in the writer's config order */
    int *node_of;                /* config node i is nodes[node_of[i]] (matched by name) */
    double wall;                 /* when it was taken (Unix time) */
    uint64_t src_records;
    int lock_fd; /* the directory's lock, held while reading; the graph built
                    from this snapshot takes it over (-1: none or taken) */
};

/* CRC-32C (Castagnoli); crc = 0 to start, or a previous result to continue.
 * The hardware instruction when there is one, else ink__crc32c_sw (tables). */
uint32_t ink_crc32c(uint32_t crc, const void *p, size_t n);
uint32_t ink__crc32c_sw(uint32_t crc, const void *p, size_t n);

/* ---- the envelope every snapshot file uses (this graph's file, Kafka shard
 * files): header, payload, structure, CRC ------------------------------------- */

/* b holds INK_SNAP_HEADER bytes (any) then the payload: append cfg's
 * structure, fill the header in (magic, version, lengths) and append the
 * CRC. 0, or a negative code with err filled. */
int ink_snapshot_seal(const struct ink_config *cfg, struct ink_buf *b, struct ink_err *err);
/* Verify a whole file's bytes against cfg: size, magic, format version,
 * lengths, CRC, then the structure (ink_structure_check); unpack its
 * payload into u (initialised by the caller). INK_ESTATE with "snapshot
 * PATH refused: why" otherwise. */
int ink_snapshot_verify(const struct ink_config *cfg, const char *path, const uint8_t *p,
                        size_t len, msgpack_unpacked *u, struct ink_err *err);
/* The same checks without unpacking: *payload and *plen give the payload
 * inside p, and node_of (NULL, or room for cfg->nnodes) the index of each
 * config node in the saved node list. A version 2 file (no structure) is
 * accepted when cfg's bytes hash as it says (node_of then the identity). */
int ink_snapshot_check(const char *path, const uint8_t *p, size_t len, const struct ink_config *cfg,
                       const uint8_t **payload, size_t *plen, int *node_of, struct ink_err *err);

/* The structure (engine/structure.c): per node its name, kind, type,
 * inputs and the keys that shape its state (the INK_PF_STATE / INK_PF_FREE
 * declarations of the param tables), and engine.seed. */
int ink_structure_pack(const struct ink_config *cfg, msgpack_packer *pk);
/* Compare a saved structure with cfg: 0, filling node_of (NULL, or room for
 * cfg->nnodes: the saved index of each config node); or INK_ESTATE with one
 * message naming every difference (the node, the key, both values), up to
 * what fits. Accepted: anything that does not shape state (comments, layout,
 * key order, sinks' formats, engine.snapshot, engine.http, limits). */
int ink_structure_check(const msgpack_object *saved, const struct ink_config *cfg, int *node_of,
                        struct ink_err *err);

/* The snapshot file of a config: 0, or INK_EINVAL without engine.snapshot. */
int ink_snapshot_path(const struct ink_config *cfg, char *buf, size_t n);

/* Create the snapshot directory if it is missing (one level) and check that
 * it is writable, so that a bad dir fails at start, not at the first snapshot. */
int ink_snapshot_prepare(const struct ink_config *cfg, struct ink_err *err);

/* One owner (docs/state.md): lock <dir>/<name>.lock, the lock of this
 * snapshot file, for as long as *fd stays open; then remove the temporary
 * files a killed writer may have left. 0, INK_EBUSY naming the holder's pid,
 * or INK_EIO. */
int ink_snapshot_lock(const struct ink_config *cfg, int *fd, struct ink_err *err);

/* Write a snapshot of g now (between records), on this thread. 0, or a
 * negative code with err filled; the previous snapshot is then still in
 * place. */
int ink_snapshot_write(struct ink_graph *g, struct ink_err *err);

/* On this thread: fdatasync every sink's durable_fd (the outputs a shard
 * file vouches for, engine/shard.c; the forked writer does this itself).
 * After one failure, this and every later snapshot refuse (g->snap_lost). */
int ink_snapshot_sync_outputs(struct ink_graph *g, struct ink_err *err);

/* The same off the data path (docs/state.md, "Snapshots off the data
 * path"): between records, sinks are synced and every source's and sink's
 * hooks run here; then fork() and the child encodes the operators from its
 * copy-on-write image, writes, fsyncs and renames, while this thread goes
 * on. 0 once the child runs (INK_EAGAIN if one already does), or a failure
 * of the cut itself. */
int ink_snapshot_start(struct ink_graph *g, struct ink_err *err);
/* The child's outcome: 1 still writing (only when !wait), 0 written and
 * durable (committed hooks run, counted in g), negative with err filled.
 * 0 when no child runs. */
int ink_snapshot_poll(struct ink_graph *g, bool wait, struct ink_err *err);
/* Kill and reap a child still writing (teardown): its temporary file is
 * removed at the next start under the lock. */
void ink_snapshot_abandon(struct ink_graph *g);

/* Take the snapshot's lock (as ink_snapshot_lock; INK_EBUSY when another
 * process owns it), then read and verify cfg's snapshot; nothing else is
 * modified. INK_ESTATE (or INK_EIO) with a message naming the file and what
 * is wrong. */
int ink_snapshot_read(const struct ink_config *cfg, struct ink_snap **out, struct ink_err *err);
/* The same checks as ink_snapshot_read, without the lock and without keeping
 * anything (`inkflow validate CONFIG --restore`: may cfg restore the snapshot
 * a running inkflow keeps writing?). The file's path goes to path. 0, or
 * ink_snapshot_read's refusal. */
int ink_snapshot_check_restore(const struct ink_config *cfg, char *path, size_t n,
                               struct ink_err *err);
/* Called by ink_graph_build_restore: operators first (in memory), then the
 * source offsets, then, once all of that succeeded, the sinks' truncation. */
int ink_snapshot_apply(struct ink_graph *g, const struct ink_snap *s, struct ink_err *err);
void ink_snapshot_free(struct ink_snap *s);

/* Shard files (engine/shard.c) use the envelope above (seal, verify) and
 * this: */
struct ink_buf;
/* Replace path atomically by b: a temporary file, fsync, rename, fsync of
 * the directory. */
int ink_snapshot_commit_file(const char *path, const struct ink_buf *b, struct ink_err *err);

#endif
