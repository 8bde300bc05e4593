/* Snapshots: write (temporary file, fsync, rename, directory fsync), read and
 * verify, apply. The format is in snapshot.h and docs/state.md. */
#define _GNU_SOURCE /* pipe2, close_range */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "codec.h"
#include "graph.h"
#include "lock.h"
#include "path.h"
#include "state.h"

static const char magic[8] = {'I', 'N', 'K', 'S', 'N', 'A', 'P', 0};

/* ---- CRC32C (Castagnoli, reflected 0x82F63B78), table-driven ------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

#if defined(__x86_64__)
/* The SSE4.2 crc32 instruction computes the same CRC-32C, 8 bytes at a time. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *b, size_t n)
{
    uint64_t c = crc;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n; n--, b++) c32 = __builtin_ia32_crc32qi(c32, *b);
    return c32;
}
#endif

uint32_t ink__crc32c_sw(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *b = p;
    if (!crc_table[1]) crc_init();
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t ink_crc32c(uint32_t crc, const void *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc_hw(~crc, p, n);
#endif
    return ink__crc32c_sw(crc, p, n);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- the envelope: header, payload, structure, CRC (snapshot.h) ------------ */

int ink_snapshot_seal(const struct ink_config *cfg, struct ink_buf *b, struct ink_err *err)
{
    if (b->len < INK_SNAP_HEADER) return ink_err_set(err, INK_EINVAL, "no room for the header");
    size_t plen = b->len - INK_SNAP_HEADER;
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, ink_buf_write);
    if (ink_structure_pack(cfg, &pk)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    memcpy(b->p, magic, 8);
    put_u32(b->p + 8, INK_SNAP_VERSION);
    put_u32(b->p + 12, 0);
    put_u64(b->p + 16, (uint64_t)(b->len - INK_SNAP_HEADER - plen));
    put_u64(b->p + 24, (uint64_t)plen);
    uint8_t crc[4];
    put_u32(crc, ink_crc32c(0, b->p, b->len));
    if (ink_buf_append(b, crc, 4)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    return 0;
}

static int refuse_path(const char *path, struct ink_err *err, const char *why)
{
    return ink_err_set(err, INK_ESTATE, "snapshot %s refused: %s", path, why);
}

/* One msgpack object in exactly [p, p + n), unpacked into u. msgpack-c
 * allocates what a container declares: a pre-scan first checks every
 * declared length against the bytes present (fuzz finding,
 * tests/fuzz/regress/snapshot). */
static bool unpack_exact(const uint8_t *p, size_t n, msgpack_unpacked *u)
{
    size_t olen = 0, off = 0;
    enum ink_reject why;
    return ink_msgpack_scan(p, n, INK_DEPTH_CAP, &olen, &why) == 0 && olen == n &&
           msgpack_unpack_next(u, (const char *)p, n, &off) == MSGPACK_UNPACK_SUCCESS && off == n;
}

int ink_snapshot_check(const char *path, const uint8_t *p, size_t len, const struct ink_config *cfg,
                       const uint8_t **payload, size_t *plen, int *node_of, struct ink_err *err)
{
    char why[400];
    if (len < INK_SNAP_HEADER + 4) {
        snprintf(why, sizeof why, "truncated (%zu bytes, a snapshot has at least %d)", len,
                 INK_SNAP_HEADER + 4);
        return refuse_path(path, err, why);
    }
    if (memcmp(p, magic, 8) != 0)
        return refuse_path(path, err, "not an inkflow snapshot (bad magic)");
    uint32_t version = get_u32(p + 8);
    if (version != INK_SNAP_VERSION && version != 2) {
        snprintf(why, sizeof why,
                 "format version %u, this inkflow reads versions 2 and %d only (written by "
                 "another inkflow release: resume with that release, or start afresh without "
                 "--restore)",
                 version, INK_SNAP_VERSION);
        return refuse_path(path, err, why);
    }
    /* version 2 had the config hash where 3 has the structure's length */
    uint64_t slen = version == 2 ? 0 : get_u64(p + 16), n = get_u64(p + 24);
    uint64_t room = len - INK_SNAP_HEADER - 4;
    if (slen > room || n != room - slen) {
        snprintf(why, sizeof why,
                 "truncated or extended: header says %llu structure and %llu payload bytes, the "
                 "file holds %llu",
                 (unsigned long long)slen, (unsigned long long)n, (unsigned long long)room);
        return refuse_path(path, err, why);
    }
    uint32_t crc = ink_crc32c(0, p, len - 4), want = get_u32(p + len - 4);
    if (crc != want) {
        snprintf(why, sizeof why, "corrupt: CRC32C is %08x, the file says %08x", crc, want);
        return refuse_path(path, err, why);
    }
    *payload = p + INK_SNAP_HEADER;
    *plen = (size_t)n;
    if (version == 2) {
        /* a hash of the config's bytes: only that very file can restore it */
        if (get_u64(p + 16) != cfg->hash) {
            snprintf(why, sizeof why,
                     "format version 2, taken with a different config (hash %016llx, %s is "
                     "%016llx): a version 2 snapshot restores only with the config file it was "
                     "taken with, byte for byte (version 3 compares what shapes the state)",
                     (unsigned long long)get_u64(p + 16), cfg->path, (unsigned long long)cfg->hash);
            return refuse_path(path, err, why);
        }
        for (int i = 0; node_of && i < cfg->nnodes; i++) node_of[i] = i;
        return 0;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc;
    struct ink_err e = {0};
    if (!unpack_exact(p + INK_SNAP_HEADER + n, (size_t)slen, &u))
        rc = refuse_path(path, err, "its structure section is not one msgpack object");
    else if ((rc = ink_structure_check(&u.data, cfg, node_of, &e)))
        rc = ink_err_set(err, rc, "snapshot %s refused: %s", path, e.msg);
    msgpack_unpacked_destroy(&u);
    return rc;
}

int ink_snapshot_verify(const struct ink_config *cfg, const char *path, const uint8_t *p,
                        size_t len, msgpack_unpacked *u, struct ink_err *err)
{
    const uint8_t *payload = NULL;
    size_t plen = 0;
    int rc = ink_snapshot_check(path, p, len, cfg, &payload, &plen, NULL, err);
    if (rc) return rc;
    if (!unpack_exact(payload, plen, u))
        return refuse_path(path, err, "the payload is not one msgpack object");
    return 0;
}

int ink_snapshot_path(const struct ink_config *cfg, char *buf, size_t n)
{
    if (!cfg->engine.snapshot.set || !cfg->engine.snapshot.dir)
        return ink_err_set(NULL, INK_EINVAL, "no engine.snapshot");
    char dir[4096];
    const char *d = ink_path_resolve(cfg->base_dir, cfg->engine.snapshot.dir, dir, sizeof dir);
    if (!d) return ink_err_set(NULL, INK_EINVAL, "engine.snapshot.dir: path too long");
    const char *base = strrchr(cfg->path, '/');
    base = base ? base + 1 : cfg->path;
    size_t bl = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) bl = (size_t)(dot - base);
    snprintf(buf, n, "%s/%.*s.snap", d, (int)bl, base);
    return 0;
}

int ink_snapshot_prepare(const struct ink_config *cfg, struct ink_err *err)
{
    char path[4096];
    if (ink_snapshot_path(cfg, path, sizeof path)) return 0;
    char *sl = strrchr(path, '/');
    if (sl) *sl = 0;
    if (mkdir(path, 0755) && errno != EEXIST)
        return ink_err_set(err, INK_EIO, "engine.snapshot.dir %s: %s", path, strerror(errno));
    if (access(path, W_OK | X_OK))
        return ink_err_set(err, INK_EIO, "engine.snapshot.dir %s: %s", path, strerror(errno));
    return 0;
}

/* The lock file of a snapshot: NAME.lock next to NAME.snap. */
static int lock_path(const struct ink_config *cfg, char *buf, size_t n)
{
    if (ink_snapshot_path(cfg, buf, n)) return INK_EINVAL;
    size_t l = strlen(buf);
    if (l < 5 || l + 1 > n) return INK_EINVAL;
    memcpy(buf + l - 5, ".lock", 6);
    return 0;
}

/* Under the lock: NAME.snap.tmp.PID files are what a writer killed before
 * its rename left behind; no live writer can own one. */
static void remove_stale_tmp(const char *snap)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", snap);
    char *sl = strrchr(dir, '/');
    if (!sl) return;
    *sl = 0;
    char prefix[512];
    int pl = snprintf(prefix, sizeof prefix, "%s.tmp.", sl + 1);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (pl > 0 && (size_t)pl < sizeof prefix && strncmp(e->d_name, prefix, (size_t)pl) == 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

int ink_snapshot_lock(const struct ink_config *cfg, int *fd, struct ink_err *err)
{
    *fd = -1;
    char lp[4096], sp[4096];
    if (lock_path(cfg, lp, sizeof lp) || ink_snapshot_path(cfg, sp, sizeof sp))
        return ink_err_set(err, INK_EINVAL, "engine.snapshot.dir: path too long");
    int rc = ink_lock_file(lp, "engine.snapshot.dir: the snapshot's lock", fd, err);
    if (rc) return rc;
    remove_stale_tmp(sp);
    return 0;
}

/* ---- write ------------------------------------------------------------------ */

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_counters(msgpack_packer *pk, const struct ink_node *n)
{
    uint64_t c[3 + INK_REJ__COUNT];
    c[0] = n->c.in, c[1] = n->c.out, c[2] = n->c.dropped;
    for (int r = 0; r < INK_REJ__COUNT; r++) c[3 + r] = n->c.rejected[r];
    ink_pack_key(pk, "c");
    ink_pack_u64s(pk, c, 3 + INK_REJ__COUNT);
}

static int pack_operator(msgpack_packer *pk, struct ink_node *n)
{
    if (!n->slots) {
        ink_pack_key(pk, "state");
        return ink__op_save(n->vt, n->state, pk);
    }
    ink_pack_key(pk, "evicted");
    msgpack_pack_uint64(pk, n->evicted);
    ink_pack_key(pk, "keys");
    msgpack_pack_array(pk, (size_t)n->keys_used);
    int64_t cnt = 0;
    for (int64_t s = ink__keyed_first(n); s >= 0; s = n->slots[s].next, cnt++) {
        msgpack_pack_array(pk, 2);
        pack_str(pk, n->slots[s].key, n->slots[s].len);
        int rc = ink__op_save(n->vt, n->slots[s].state, pk);
        if (rc) return rc;
    }
    return cnt == n->keys_used ? 0 : INK_ESTATE;
}

/* The save and restore hooks of a source or sink (NULL for operators). */
static int (*save_hook(const struct ink_node *n))(struct ink_node *, msgpack_packer *)
{
    return n->kind == INK_NODE_SOURCE ? n->src->save
           : n->kind == INK_NODE_SINK ? n->snk->save
                                      : NULL;
}

static int (*restore_hook(const struct ink_node *n))(struct ink_node *, const msgpack_object *,
                                                     struct ink_err *)
{
    return n->kind == INK_NODE_SOURCE ? n->src->restore
           : n->kind == INK_NODE_SINK ? n->snk->restore
                                      : NULL;
}

static int pack_node(msgpack_packer *pk, struct ink_node *n, struct ink_err *err)
{
    int rc = 0;
    struct ink_err e = {0};
    if (n->kind == INK_NODE_SINK && n->snk->sync && (rc = n->snk->sync(n, &e)))
        return ink_err_set(err, rc, "%s: %s", n->name, e.msg[0] ? e.msg : ink_strerror(rc));
    int (*save)(struct ink_node *, msgpack_packer *) = save_hook(n);
    int nk = 3 + (n->kind == INK_NODE_SOURCE) + (save != NULL) +
             (n->kind == INK_NODE_OPERATOR ? (n->slots ? 2 : 1) : 0);
    msgpack_pack_map(pk, (size_t)nk);
    ink_pack_key(pk, "name");
    pack_str(pk, n->name, strlen(n->name));
    ink_pack_key(pk, "kind");
    msgpack_pack_int(pk, (int)n->kind);
    pack_counters(pk, n);
    if (n->kind == INK_NODE_SOURCE) {
        ink_pack_key(pk, "seq");
        msgpack_pack_uint64(pk, n->seq);
    } else if (n->kind == INK_NODE_OPERATOR) {
        rc = pack_operator(pk, n);
        if (rc) return ink_err_set(err, rc, "%s: save failed", n->name);
    }
    if (save) {
        /* the transport's position, whatever its save writes (one object) */
        ink_pack_key(pk, "pos");
        if ((rc = save(n, pk)))
            return ink_err_set(err, rc, "%s: saving the position failed", n->name);
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *path)
{
    char d[4096];
    snprintf(d, sizeof d, "%s", path);
    char *sl = strrchr(d, '/');
    if (sl == d)
        sl[1] = 0;
    else if (sl)
        *sl = 0;
    else
        snprintf(d, sizeof d, ".");
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* parent > 0: the writer child, which renames only while its parent (the
 * lock's owner) is alive. */
static int commit_file_as(const char *path, const struct ink_buf *b, pid_t parent,
                          struct ink_err *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ink_err_set(err, INK_EIO, "%s: %s", tmp, strerror(errno));
    if (write_all(fd, b->p, b->len) || fsync(fd)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return ink_err_set(err, INK_EIO, "%s: %s", tmp, strerror(e));
    }
    close(fd);
    if (parent > 0 && getppid() != parent) {
        unlink(tmp);
        return ink_err_set(err, INK_EIO, "the process that owns the snapshot is gone");
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return ink_err_set(err, INK_EIO, "rename to %s: %s", path, strerror(e));
    }
    if (fsync_dir(path)) return ink_err_set(err, INK_EIO, "fsync of the directory of %s", path);
    return 0;
}

int ink_snapshot_commit_file(const char *path, const struct ink_buf *b, struct ink_err *err)
{
    return commit_file_as(path, b, 0, err);
}

/* The lock this graph holds is still the snapshot's lock file. When the
 * directory (or the lock file) was removed while running, a snapshot
 * written there would have no owner: re-create the directory (one level,
 * as at start) and take a fresh lock; if another process took it meanwhile,
 * it is that process's snapshot now, and this one fails loudly. */
static int check_owner(struct ink_graph *g, struct ink_err *err)
{
    char lp[4096];
    struct stat held, now;
    if (g->snap_lock < 0 || lock_path(g->cfg, lp, sizeof lp)) return 0;
    if (fstat(g->snap_lock, &held) == 0 && stat(lp, &now) == 0 && held.st_dev == now.st_dev &&
        held.st_ino == now.st_ino)
        return 0;
    struct ink_err e = {0};
    int rc = ink_snapshot_prepare(g->cfg, &e);
    int fd = -1;
    if (!rc) rc = ink_snapshot_lock(g->cfg, &fd, &e);
    if (rc)
        return ink_err_set(err, rc,
                           "the snapshot's lock file %s is gone (directory removed?) "
                           "and cannot be taken again: %s",
                           lp, e.msg);
    close(g->snap_lock);
    g->snap_lock = fd;
    fprintf(stderr, "inkflow: %s had been removed: re-created, lock taken again\n", lp);
    return 0;
}

/* Sources and sinks, on the main thread: sinks hand their output over
 * (sync), every transport node's map is encoded into g->snap_pre, node i at
 * [snap_off[i], snap_off[i + 1]) (empty for operators), and the
 * descriptors to fdatasync before the rename are listed in g->snap_sync.
 * Transport hooks never run in the writer child (they hold sockets,
 * threads, buffers). */
static int pack_transports(struct ink_graph *g, struct ink_err *err)
{
    if (!g->snap_pre && !(g->snap_pre = calloc(1, sizeof *g->snap_pre)))
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    if (!g->snap_off && !(g->snap_off = calloc((size_t)g->n + 1, sizeof *g->snap_off)))
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    if (!g->snap_sync && (!(g->snap_sync = calloc((size_t)g->n + 1, sizeof *g->snap_sync)) ||
                          !(g->snap_sync_node = calloc((size_t)g->n + 1, sizeof(int)))))
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    ink_buf_reset(g->snap_pre);
    g->snap_nsync = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, g->snap_pre, ink_buf_write);
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        g->snap_off[i] = g->snap_pre->len;
        if (n->kind == INK_NODE_OPERATOR) continue;
        int rc = pack_node(&pk, n, err);
        if (rc) return rc;
        int fd = n->kind == INK_NODE_SINK && n->snk->durable_fd ? n->snk->durable_fd(n) : -1;
        if (fd >= 0) {
            g->snap_sync[g->snap_nsync] = fd;
            g->snap_sync_node[g->snap_nsync++] = i;
        }
    }
    g->snap_off[g->n] = g->snap_pre->len;
    return 0;
}

/* An output failed to sync once: nothing may vouch for it any more. */
static int lost_error(const struct ink_graph *g, struct ink_err *err)
{
    return ink_err_set(err, INK_EIO,
                       "%s: an earlier sync of its output failed, so what it wrote may not be on "
                       "disk; no snapshot can cover it (restart from the last good snapshot "
                       "with --restore)",
                       g->nodes[g->snap_lost - 1].name);
}

static int sync_one(struct ink_graph *g, int node, int fd, struct ink_err *err)
{
    int rc;
    while ((rc = fdatasync(fd)) && errno == EINTR) {
    }
    if (!rc) return 0;
    /* The kernel reports a failed writeback once per file: a later
     * fdatasync may succeed with the data lost, so no later snapshot may
     * claim this output (cut() and ink_snapshot_sync_outputs refuse). */
    int e = errno;
    g->snap_lost = node + 1;
    return ink_err_set(err, INK_EIO, "%s: cannot sync the output: %s", g->nodes[node].name,
                       strerror(e));
}

int ink_snapshot_sync_outputs(struct ink_graph *g, struct ink_err *err)
{
    if (g->snap_lost) return lost_error(g, err);
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        int fd = n->kind == INK_NODE_SINK && n->snk->durable_fd ? n->snk->durable_fd(n) : -1;
        if (fd >= 0 && sync_one(g, i, fd, err)) return INK_EIO;
    }
    return 0;
}

/* The outputs the snapshot describes are durable before it is renamed into
 * place: the sinks wrote them at the cut, this makes them reach the disk
 * (the writer child, or the main thread for the final snapshot). */
static int sync_outputs(struct ink_graph *g, struct ink_err *err)
{
    for (int k = 0; k < g->snap_nsync; k++)
        if (sync_one(g, g->snap_sync_node[k], g->snap_sync[k], err)) return INK_EIO;
    return 0;
}

/* The whole file into b: operators encoded here (the main thread, or the
 * writer child from its copy-on-write image), transports from snap_pre. */
static int encode(struct ink_graph *g, double wall, struct ink_buf *b, struct ink_err *err)
{
    ink_buf_reset(b);
    uint8_t hdr[INK_SNAP_HEADER] = {0};
    if (ink_buf_append(b, hdr, sizeof hdr)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, ink_buf_write);
    msgpack_pack_map(&pk, 3);
    ink_pack_key(&pk, "wall");
    msgpack_pack_double(&pk, wall);
    ink_pack_key(&pk, "src_records");
    msgpack_pack_uint64(&pk, g->src_records);
    ink_pack_key(&pk, "nodes");
    msgpack_pack_array(&pk, (size_t)g->n);
    for (int i = 0; i < g->n; i++) {
        int rc = g->nodes[i].kind == INK_NODE_OPERATOR
                     ? pack_node(&pk, &g->nodes[i], err)
                     : ink_buf_append(b, g->snap_pre->p + g->snap_off[i],
                                      g->snap_off[i + 1] - g->snap_off[i]);
        if (rc) return rc < 0 && err->msg[0] ? rc : ink_err_set(err, INK_ENOMEM, "out of memory");
    }
    return ink_snapshot_seal(g->cfg, b, err);
}

/* Make the outputs durable, encode, write the file: on this thread (parent
 * > 0: the writer child, see commit_file_as). */
static int write_here(struct ink_graph *g, const char *path, double wall, pid_t parent,
                      struct ink_err *err)
{
    int rc = sync_outputs(g, err);
    if (!rc) rc = encode(g, wall, g->snap_buf, err);
    if (!rc) rc = commit_file_as(path, g->snap_buf, parent, err);
    return rc;
}

/* Durable: transports may now commit the positions they saved; counted. */
static void snapshot_done(struct ink_graph *g, double wall, double t_cut, uint64_t bytes)
{
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        void (*committed)(struct ink_node *) = n->kind == INK_NODE_SOURCE ? n->src->committed
                                               : n->kind == INK_NODE_SINK ? n->snk->committed
                                                                          : NULL;
        if (committed) committed(n);
    }
    g->snap_wall = wall;
    g->snap_last = ink_now();
    g->snap_duration = g->snap_last - t_cut;
    g->snap_bytes = bytes;
    g->snap_count++;
}

/* The cut, on the main thread: ownership, sinks synced, transports saved. */
static int cut(struct ink_graph *g, char *path, size_t n, struct ink_err *err)
{
    if (ink_snapshot_path(g->cfg, path, n))
        return ink_err_set(err, INK_EINVAL, "no engine.snapshot");
    if (g->snap_lost) return lost_error(g, err);
    int rc = check_owner(g, err);
    if (!rc) rc = pack_transports(g, err);
    if (!rc && !g->snap_buf && !(g->snap_buf = calloc(1, sizeof *g->snap_buf)))
        rc = ink_err_set(err, INK_ENOMEM, "out of memory");
    return rc;
}

int ink_snapshot_write(struct ink_graph *g, struct ink_err *err)
{
    double t0 = ink_now();
    char path[4096];
    int rc = cut(g, path, sizeof path, err);
    if (rc) return rc;
    double wall = ink_wall();
    if ((rc = write_here(g, path, wall, 0, err))) return rc;
    snapshot_done(g, wall, t0, g->snap_buf->len);
    return 0;
}

/* ---- in the background: a forked writer ------------------------------------------ */

/* What the writer child reports on its pipe (one write, < PIPE_BUF). */
struct child_report {
    int rc;
    int lost; /* the child's g->snap_lost */
    uint64_t bytes;
    char msg[sizeof(((struct ink_err *)0)->msg)];
};

static void child_report(int fd, int rc, int lost, uint64_t bytes, const char *msg)
{
    struct child_report r = {.rc = rc, .lost = lost, .bytes = bytes};
    snprintf(r.msg, sizeof r.msg, "%s", msg);
    ssize_t w = write(fd, &r, sizeof r);
    (void)w;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* In the child: close every descriptor but stderr, the report pipe and the
 * outputs to fdatasync (opened apart from the locked ones: no lock is held). */
static int close_all_but(int wfd, const int *sync, int nsync)
{
    int *keep = malloc(((size_t)nsync + 2) * sizeof *keep);
    if (!keep) return -1;
    int nk = 0;
    keep[nk++] = 2;
    keep[nk++] = wfd;
    for (int k = 0; k < nsync; k++) keep[nk++] = sync[k];
    qsort(keep, (size_t)nk, sizeof *keep, cmp_int);
    unsigned lo = 0;
    for (int k = 0; k < nk; k++) {
        if ((unsigned)keep[k] > lo) close_range(lo, (unsigned)keep[k] - 1, 0);
        lo = (unsigned)keep[k] + 1;
    }
    close_range(lo, ~0U, 0);
    free(keep);
    return 0;
}

/* The child: the parent's memory as it was at the fork, nothing else. It
 * holds no inherited descriptor but its pipe and the outputs' unlocked
 * sync descriptors (the locks and sinks stay the parent's alone), dies
 * with the parent, and renames only while the parent lives: a dead
 * parent's lock may already belong to a restore. */
static void child_main(struct ink_graph *g, const char *path, double wall, pid_t parent, int wfd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    if (getppid() != parent) _exit(1);
    struct ink_err err = {0};
    int rc = close_all_but(wfd, g->snap_sync, g->snap_nsync)
                 ? ink_err_set(&err, INK_ENOMEM, "out of memory")
                 : write_here(g, path, wall, parent, &err);
    child_report(wfd, rc, g->snap_lost, rc ? 0 : g->snap_buf->len, err.msg);
    _exit(rc ? 1 : 0);
}

int ink_snapshot_start(struct ink_graph *g, struct ink_err *err)
{
    if (g->snap_child > 0) return ink_err_set(err, INK_EAGAIN, "a snapshot is being written");
    double t0 = ink_now();
    char path[4096];
    int rc = cut(g, path, sizeof path, err);
    if (rc) return rc;
    int p[2];
    if (pipe2(p, O_CLOEXEC))
        return ink_err_set(err, INK_EIO, "pipe for the snapshot writer: %s", strerror(errno));
    double wall = ink_wall();
    pid_t parent = getpid();
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) child_main(g, path, wall, parent, p[1]);
    int e = errno;
    close(p[1]);
    if (pid < 0) {
        /* no child (memory, process limit): the snapshot is still due, so
         * it is written here, the old way, and the stall said */
        close(p[0]);
        fprintf(stderr,
                "inkflow: fork for the snapshot writer: %s; writing it on the main "
                "thread\n",
                strerror(e));
        if ((rc = write_here(g, path, wall, 0, err))) return rc;
        snapshot_done(g, wall, t0, g->snap_buf->len);
        return 0;
    }
    g->snap_child = pid;
    g->snap_pipe = p[0];
    g->snap_cut_t = t0;
    g->snap_cut_wall = wall;
    return 0;
}

int ink_snapshot_poll(struct ink_graph *g, bool wait, struct ink_err *err)
{
    if (g->snap_child <= 0) return 0;
    int status = 0;
    pid_t w;
    while ((w = waitpid(g->snap_child, &status, wait ? 0 : WNOHANG)) < 0 && errno == EINTR) {
    }
    if (w == 0) return 1;
    pid_t pid = g->snap_child;
    g->snap_child = 0;
    struct child_report r = {.rc = INK_EIO};
    ssize_t got = read(g->snap_pipe, &r, sizeof r);
    close(g->snap_pipe);
    g->snap_pipe = -1;
    if (w < 0 || got != (ssize_t)sizeof r) {
        if (w > 0 && WIFSIGNALED(status))
            return ink_err_set(err, INK_EIO,
                               "the snapshot writer (pid %ld) was killed by signal %d", (long)pid,
                               WTERMSIG(status));
        return ink_err_set(err, INK_EIO, "the snapshot writer (pid %ld) ended without a report",
                           (long)pid);
    }
    if (r.lost > 0 && r.lost <= g->n && !g->snap_lost) g->snap_lost = r.lost;
    if (r.rc) return ink_err_set(err, r.rc, "%s", r.msg);
    snapshot_done(g, g->snap_cut_wall, g->snap_cut_t, r.bytes);
    return 0;
}

void ink_snapshot_abandon(struct ink_graph *g)
{
    if (g->snap_child <= 0) return;
    kill(g->snap_child, SIGKILL);
    while (waitpid(g->snap_child, NULL, 0) < 0 && errno == EINTR) {
    }
    g->snap_child = 0;
    close(g->snap_pipe);
    g->snap_pipe = -1;
}

/* ---- read and verify -------------------------------------------------------------- */

static int refuse(struct ink_snap *s, struct ink_err *err, const char *why)
{
    return ink_err_set(err, INK_ESTATE, "snapshot %s refused: %s", s->path, why);
}

static int read_file(struct ink_snap *s, struct ink_err *err)
{
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ink_err_set(err, INK_ESTATE, "snapshot %s: %s (nothing to restore)", s->path,
                           strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return ink_err_set(err, INK_ESTATE, "snapshot %s: not a regular file", s->path);
    }
    s->len = (size_t)st.st_size;
    s->bytes = malloc(s->len ? s->len : 1);
    if (!s->bytes) {
        close(fd);
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < s->len) {
        ssize_t r = read(fd, s->bytes + got, s->len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != s->len) return ink_err_set(err, INK_EIO, "snapshot %s: short read", s->path);
    return 0;
}

static int verify_nodes(struct ink_snap *s, const struct ink_config *cfg, struct ink_err *err)
{
    const msgpack_object *nodes = s->nodes;
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY)
        return refuse(s, err, "no node list in the payload");
    if (nodes->via.array.size != (uint32_t)cfg->nnodes)
        return refuse(s, err, "the number of nodes differs from the config");
    for (int i = 0; i < cfg->nnodes; i++) {
        /* the structure matched the nodes by name: the payload must agree */
        int at = s->node_of[i];
        if (at < 0 || at >= cfg->nnodes) return refuse(s, err, "its node list is inconsistent");
        const msgpack_object *m = &nodes->via.array.ptr[at];
        const msgpack_object *nm = ink_state_find(m, "name"), *kd = ink_state_find(m, "kind");
        const char *want = cfg->nodes[i].name;
        if (!nm || nm->type != MSGPACK_OBJECT_STR || nm->via.str.size != strlen(want) ||
            memcmp(nm->via.str.ptr, want, nm->via.str.size) != 0 || !kd ||
            kd->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            kd->via.u64 != (uint64_t)cfg->nodes[i].kind) {
            char why[600];
            snprintf(why, sizeof why, "node %d is not '%s' as in the config", i, want);
            return refuse(s, err, why);
        }
    }
    return 0;
}

static int load(struct ink_snap *s, const struct ink_config *cfg, struct ink_err *err);

int ink_snapshot_read(const struct ink_config *cfg, struct ink_snap **out, struct ink_err *err)
{
    *out = NULL;
    struct ink_snap *s = calloc(1, sizeof *s);
    if (!s) return ink_err_set(err, INK_ENOMEM, "out of memory");
    msgpack_unpacked_init(&s->u);
    s->lock_fd = -1;
    *out = s;
    if (ink_snapshot_path(cfg, s->path, sizeof s->path))
        return ink_err_set(err, INK_EINVAL, "--restore needs engine.snapshot in the config");
    /* the same lock as a run: never restore under a live owner. A missing
     * directory is left to read_file ("nothing to restore"). */
    int rc = ink_snapshot_lock(cfg, &s->lock_fd, err);
    if (rc && !(rc == INK_EIO && errno == ENOENT)) return rc;
    return load(s, cfg, err);
}

int ink_snapshot_check_restore(const struct ink_config *cfg, char *path, size_t n,
                               struct ink_err *err)
{
    struct ink_snap *s = calloc(1, sizeof *s);
    if (!s) return ink_err_set(err, INK_ENOMEM, "out of memory");
    msgpack_unpacked_init(&s->u);
    s->lock_fd = -1;
    int rc = ink_snapshot_path(cfg, s->path, sizeof s->path)
                 ? ink_err_set(err, INK_EINVAL, "the config has no engine.snapshot")
                 : load(s, cfg, err);
    snprintf(path, n, "%s", s->path);
    ink_snapshot_free(s);
    return rc;
}

/* Read s->path whole and verify it against cfg: envelope, structure, the
 * payload's node list. */
static int load(struct ink_snap *s, const struct ink_config *cfg, struct ink_err *err)
{
    int rc = read_file(s, err);
    if (rc) return rc;
    const uint8_t *payload = NULL;
    size_t plen = 0;
    if (!(s->node_of = calloc((size_t)cfg->nnodes + 1, sizeof *s->node_of)))
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    rc = ink_snapshot_check(s->path, s->bytes, s->len, cfg, &payload, &plen, s->node_of, err);
    if (rc) return rc;
    if (!unpack_exact(payload, plen, &s->u))
        return refuse(s, err, "the payload is not one msgpack object");
    const msgpack_object *root = &s->u.data;
    s->nodes = ink_state_find(root, "nodes");
    const msgpack_object *w = ink_state_find(root, "wall"),
                         *sr = ink_state_find(root, "src_records");
    if (w && w->type == MSGPACK_OBJECT_FLOAT64) s->wall = w->via.f64;
    if (sr && sr->type == MSGPACK_OBJECT_POSITIVE_INTEGER) s->src_records = sr->via.u64;
    return verify_nodes(s, cfg, err);
}

void ink_snapshot_free(struct ink_snap *s)
{
    if (!s) return;
    if (s->lock_fd >= 0) close(s->lock_fd);
    msgpack_unpacked_destroy(&s->u);
    free(s->node_of);
    free(s->bytes);
    free(s);
}

/* ---- apply --------------------------------------------------------------------------- */

static int get_u64_key(const msgpack_object *m, const char *k, uint64_t *v)
{
    const msgpack_object *o = ink_state_find(m, k);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return INK_ESTATE;
    *v = o->via.u64;
    return 0;
}

static int apply_operator(struct ink_node *n, const msgpack_object *m, struct ink_err *err)
{
    struct ink_err e = {0};
    if (!n->slots) {
        const msgpack_object *st = ink_state_find(m, "state");
        int rc = st ? ink__op_load(n->vt, n->state, st, &e) : INK_ESTATE;
        if (rc)
            return ink_err_set(err, INK_ESTATE, "%s: %s", n->name, e.msg[0] ? e.msg : "no state");
        return 0;
    }
    const msgpack_object *keys = ink_state_find(m, "keys");
    if (!keys || keys->type != MSGPACK_OBJECT_ARRAY || get_u64_key(m, "evicted", &n->evicted))
        return ink_err_set(err, INK_ESTATE, "%s: keyed state missing", n->name);
    if ((int64_t)keys->via.array.size > n->nslots)
        return ink_err_set(err, INK_ESTATE, "%s: %u keys saved, max_keys is %lld", n->name,
                           keys->via.array.size, (long long)n->nslots);
    /* saved most recent first: rebuild from the least recent so the LRU order is the same */
    for (uint32_t i = keys->via.array.size; i-- > 0;) {
        const msgpack_object *kv = &keys->via.array.ptr[i];
        if (kv->type != MSGPACK_OBJECT_ARRAY || kv->via.array.size != 2 ||
            kv->via.array.ptr[0].type != MSGPACK_OBJECT_STR)
            return ink_err_set(err, INK_ESTATE, "%s: bad key entry %u", n->name, i);
        const msgpack_object *k = &kv->via.array.ptr[0];
        void *st;
        int rc = ink__keyed_restore_slot(n, k->via.str.ptr, k->via.str.size, &st, &e);
        if (!rc) rc = ink__op_load(n->vt, st, &kv->via.array.ptr[1], &e);
        if (rc)
            return ink_err_set(err, INK_ESTATE, "%s[%.*s]: %s", n->name, (int)k->via.str.size,
                               k->via.str.ptr, e.msg);
    }
    return 0;
}

static int apply_counters(struct ink_node *n, const msgpack_object *m)
{
    uint64_t c[3 + INK_REJ__COUNT];
    struct ink_err e = {0};
    memset(c, 0, sizeof c);
    /* Reasons are only ever appended: a snapshot written before the last
     * one (INK_REJ_MISSING) has one counter fewer, and it is zero. */
    if (ink_state_u64s(m, "c", c, 3 + INK_REJ__COUNT, &e) &&
        ink_state_u64s(m, "c", c, 3 + INK_REJ_MISSING, &e))
        return INK_ESTATE;
    n->c.in = c[0], n->c.out = c[1], n->c.dropped = c[2];
    for (int r = 0; r < INK_REJ__COUNT; r++) n->c.rejected[r] = c[3 + r];
    return 0;
}

/* A source's or sink's position: what its save wrote, to its restore. */
static int apply_position(struct ink_node *n, const msgpack_object *m, struct ink_err *err)
{
    int (*restore)(struct ink_node *, const msgpack_object *, struct ink_err *) = restore_hook(n);
    const msgpack_object *pos = ink_state_find(m, "pos");
    if (!restore && !pos) return 0;
    if (!restore || !pos)
        return ink_err_set(err, INK_ESTATE, "%s: %s", n->name,
                           pos ? "the snapshot holds a position this node cannot restore"
                               : "position missing");
    struct ink_err e = {0};
    if (restore(n, pos, &e))
        return ink_err_set(err, INK_ESTATE, "%s: %s", n->name, e.msg[0] ? e.msg : "bad position");
    return 0;
}

/* Config node i's saved map: the nodes were matched by name. */
static const msgpack_object *saved_of(const struct ink_snap *s, int i)
{
    return &s->nodes->via.array.ptr[s->node_of[i]];
}

int ink_snapshot_apply(struct ink_graph *g, const struct ink_snap *s, struct ink_err *err)
{
    /* 1. everything in memory: counters, operator states, keys */
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        if (apply_counters(n, saved_of(s, i)))
            return ink_err_set(err, INK_ESTATE, "%s: counters missing", n->name);
        if (n->kind == INK_NODE_OPERATOR) {
            int rc = apply_operator(n, saved_of(s, i), err);
            if (rc) return rc;
        }
    }
    /* 2. sources: sequence numbers and positions (reads input only) */
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        if (n->kind != INK_NODE_SOURCE) continue;
        if (get_u64_key(saved_of(s, i), "seq", &n->seq))
            return ink_err_set(err, INK_ESTATE, "%s: seq missing", n->name);
        int rc = apply_position(n, saved_of(s, i), err);
        if (rc) return rc;
    }
    /* 3. only now touch outputs (a file sink is cut back to what the snapshot saw) */
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        if (n->kind != INK_NODE_SINK) continue;
        int rc = apply_position(n, saved_of(s, i), err);
        if (rc) return rc;
    }
    g->src_records = s->src_records;
    g->snap_wall = s->wall;
    return 0;
}
