/* Shard mode: keyed state per shard, shard files, one lock per shard. The
 * format and the rules are in shard.h and docs/kafka.md#scale-out. */
#include "shard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "graph.h"
#include "lock.h"
#include "path.h"
#include "snapshot.h"
#include "state.h"

/* <dir>/<name><ext>; 0, or INK_EINVAL when it does not fit. */
static int shard_path(const struct ink_graph *g, const char *name, const char *ext, char *buf,
                      size_t n)
{
    char dir[4096];
    const struct ink_config *cfg = g->cfg;
    if (!cfg->engine.snapshot.dir) return INK_EINVAL;
    const char *d = ink_path_resolve(cfg->base_dir, cfg->engine.snapshot.dir, dir, sizeof dir);
    if (!d) return INK_EINVAL;
    int k = snprintf(buf, n, "%s/%s%s", d, name, ext);
    return k > 0 && (size_t)k < n ? 0 : INK_EINVAL;
}

static struct ink_shard_slot *slot_of(struct ink_graph *g, int32_t id)
{
    for (int i = 0; i < g->nshd; i++)
        if (g->shd[i].id == id) return &g->shd[i];
    return NULL;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* Under the lock: NAME.shard.tmp.PID files are what a writer killed before
 * its rename left behind (ink_snapshot_commit_file's temporary names). */
static void remove_stale_tmp(const struct ink_graph *g, const char *name)
{
    char dir[4096], prefix[300];
    if (shard_path(g, "", "", dir, sizeof dir)) return;
    int pl = snprintf(prefix, sizeof prefix, "%s.shard.tmp.", name);
    if (pl <= 0 || (size_t)pl >= sizeof prefix) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, (size_t)pl) == 0) unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

/* The whole file: 0 with *p (malloc'd) and *len, 1 when there is none, or
 * INK_EIO. */
static int slurp(const char *path, uint8_t **p, size_t *len, struct ink_err *err)
{
    *p = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 1;
        return ink_err_set(err, INK_EIO, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return ink_err_set(err, INK_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        close(fd);
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    }
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(b);
        return ink_err_set(err, INK_EIO, "%s: short read", path);
    }
    *p = b;
    *len = n;
    return 0;
}

static int i64_of(const msgpack_object *o, int64_t *v)
{
    if (!o) return INK_ESTATE;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = o->via.i64;
    else
        return INK_ESTATE;
    return 0;
}

/* The position fields of a verified payload. */
static int read_pos(const msgpack_object *root, const char *name, struct ink_shard_pos *pos,
                    const char *path, struct ink_err *err)
{
    const msgpack_object *nm = ink_state_find(root, "shard"), *fin = ink_state_find(root, "final"),
                         *mem = ink_state_find(root, "member"), *w = ink_state_find(root, "wall");
    if (!nm || nm->type != MSGPACK_OBJECT_STR || nm->via.str.size != strlen(name) ||
        memcmp(nm->via.str.ptr, name, nm->via.str.size) != 0)
        return ink_err_set(err, INK_ESTATE, "shard %s refused: it is not shard '%s'", path, name);
    if (i64_of(ink_state_find(root, "offset"), &pos->offset) ||
        i64_of(ink_state_find(root, "generation"), &pos->generation) ||
        i64_of(ink_state_find(root, "pid"), &pos->pid) || !fin ||
        fin->type != MSGPACK_OBJECT_BOOLEAN)
        return ink_err_set(err, INK_ESTATE, "shard %s refused: position missing", path);
    pos->final = fin->via.boolean;
    pos->wall = w && w->type == MSGPACK_OBJECT_FLOAT64 ? w->via.f64 : 0;
    pos->member[0] = 0;
    if (mem && mem->type == MSGPACK_OBJECT_STR)
        snprintf(pos->member, sizeof pos->member, "%.*s", (int)mem->via.str.size, mem->via.str.ptr);
    return 0;
}

/* Keyed states of a verified payload into shard id. */
static int load_keys(struct ink_graph *g, int32_t id, const msgpack_object *root, const char *path,
                     uint64_t *nkeys, struct ink_err *err)
{
    const msgpack_object *nodes = ink_state_find(root, "nodes");
    if (!nodes || nodes->type != MSGPACK_OBJECT_ARRAY)
        return ink_err_set(err, INK_ESTATE, "shard %s refused: no node list", path);
    for (uint32_t i = 0; i < nodes->via.array.size; i++) {
        const msgpack_object *m = &nodes->via.array.ptr[i], *nm = ink_state_find(m, "name"),
                             *keys = ink_state_find(m, "keys");
        if (!nm || nm->type != MSGPACK_OBJECT_STR || !keys || keys->type != MSGPACK_OBJECT_ARRAY)
            return ink_err_set(err, INK_ESTATE, "shard %s refused: node %u malformed", path, i);
        struct ink_node *n = NULL;
        for (int j = 0; j < g->n && !n; j++)
            if (g->nodes[j].slots && strlen(g->nodes[j].name) == nm->via.str.size &&
                memcmp(g->nodes[j].name, nm->via.str.ptr, nm->via.str.size) == 0)
                n = &g->nodes[j];
        if (!n)
            return ink_err_set(err, INK_ESTATE,
                               "shard %s refused: it holds keys of '%.*s', which is not a keyed "
                               "operator of this graph",
                               path, (int)nm->via.str.size, nm->via.str.ptr);
        /* saved most recent first: loaded from the least recent */
        for (uint32_t k = keys->via.array.size; k-- > 0;) {
            const msgpack_object *kv = &keys->via.array.ptr[k];
            if (kv->type != MSGPACK_OBJECT_ARRAY || kv->via.array.size != 2 ||
                kv->via.array.ptr[0].type != MSGPACK_OBJECT_STR)
                return ink_err_set(err, INK_ESTATE, "shard %s refused: %s: bad key entry %u", path,
                                   n->name, k);
            const msgpack_object_str *ks = &kv->via.array.ptr[0].via.str;
            void *st;
            struct ink_err e = {0};
            int rc = ink__keyed_load_slot(n, id, ks->ptr, ks->size, &st, &e);
            if (!rc) rc = ink__op_load(n->vt, st, &kv->via.array.ptr[1], &e);
            if (rc)
                return ink_err_set(err, INK_ESTATE, "shard %s refused: %s[%.*s]: %s", path, n->name,
                                   (int)ks->size, ks->ptr, e.msg);
            (*nkeys)++;
        }
    }
    return 0;
}

static void drop_keys(struct ink_graph *g, int32_t id)
{
    for (int j = 0; j < g->n; j++)
        if (g->nodes[j].slots) ink__keyed_drop_shard(&g->nodes[j], id);
}

int ink_shard_open(struct ink_graph *g, int32_t id, const char *name, struct ink_shard_pos *pos,
                   struct ink_err *err)
{
    memset(pos, 0, sizeof *pos);
    pos->offset = -1;
    if (id < 0 || slot_of(g, id))
        return ink_err_set(err, INK_EINVAL, "shard %s: already open in this process", name);
    char path[4096], lpath[4096];
    if (strlen(name) >= sizeof g->shd[0].name || shard_path(g, name, ".shard", path, sizeof path) ||
        shard_path(g, name, ".lock", lpath, sizeof lpath))
        return ink_err_set(err, INK_EINVAL, "shard %s: name or path too long", name);
    if (g->nshd == g->shd_cap) {
        int cap = g->shd_cap ? 2 * g->shd_cap : 8;
        struct ink_shard_slot *v = realloc(g->shd, (size_t)cap * sizeof *v);
        if (!v) return ink_err_set(err, INK_ENOMEM, "out of memory");
        g->shd = v;
        g->shd_cap = cap;
    }
    int fd = -1;
    int rc = ink_lock_file(lpath, "the shard's lock (its partition's state)", &fd, err);
    if (rc) return rc;
    remove_stale_tmp(g, name);
    struct ink_shard_slot sl = {.id = id, .lock_fd = fd, .written = -1};
    snprintf(sl.name, sizeof sl.name, "%s", name);
    uint8_t *bytes = NULL;
    size_t len = 0;
    rc = slurp(path, &bytes, &len, err);
    if (rc == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        rc = ink_snapshot_verify(g->cfg, path, bytes, len, &u, err);
        if (!rc) rc = read_pos(&u.data, name, pos, path, err);
        if (!rc) rc = load_keys(g, id, &u.data, path, &sl.keys, err);
        msgpack_unpacked_destroy(&u);
        if (rc) {
            drop_keys(g, id);
            pos->offset = -1;
        }
    } else if (rc == 1) {
        rc = 0; /* no file: the partition starts with no state */
    }
    free(bytes);
    if (rc) {
        close(fd);
        return rc < 0 ? rc : INK_EIO;
    }
    g->shd[g->nshd++] = sl;
    return 0;
}

/* The shard's payload: position, then every keyed operator's keys of it. */
static int encode(struct ink_graph *g, const struct ink_shard_slot *sl,
                  const struct ink_shard_pos *pos, struct ink_buf *b, struct ink_err *err)
{
    ink_buf_reset(b);
    uint8_t hdr[INK_SNAP_HEADER] = {0};
    if (ink_buf_append(b, hdr, sizeof hdr)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, ink_buf_write);
    msgpack_pack_map(&pk, 8);
    ink_pack_key(&pk, "shard");
    pack_str(&pk, sl->name, strlen(sl->name));
    ink_pack_key(&pk, "offset");
    msgpack_pack_int64(&pk, pos->offset);
    ink_pack_key(&pk, "generation");
    msgpack_pack_int64(&pk, pos->generation);
    ink_pack_key(&pk, "final");
    if (pos->final)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    ink_pack_key(&pk, "pid");
    msgpack_pack_int64(&pk, (int64_t)getpid());
    ink_pack_key(&pk, "member");
    pack_str(&pk, pos->member, strlen(pos->member));
    ink_pack_key(&pk, "wall");
    msgpack_pack_double(&pk, ink_wall());
    ink_pack_key(&pk, "nodes");
    int nk = 0;
    for (int j = 0; j < g->n; j++) nk += g->nodes[j].slots != NULL;
    msgpack_pack_array(&pk, (size_t)nk);
    for (int j = 0; j < g->n; j++) {
        struct ink_node *n = &g->nodes[j];
        if (!n->slots) continue;
        size_t cnt = 0;
        for (int64_t s = ink__keyed_first(n); s >= 0; s = n->slots[s].next)
            cnt += n->slots[s].shard == sl->id;
        msgpack_pack_map(&pk, 2);
        ink_pack_key(&pk, "name");
        pack_str(&pk, n->name, strlen(n->name));
        ink_pack_key(&pk, "keys");
        msgpack_pack_array(&pk, cnt);
        for (int64_t s = ink__keyed_first(n); s >= 0; s = n->slots[s].next) {
            if (n->slots[s].shard != sl->id) continue;
            msgpack_pack_array(&pk, 2);
            pack_str(&pk, n->slots[s].key, n->slots[s].len);
            int rc = ink__op_save(n->vt, n->slots[s].state, &pk);
            if (rc) return ink_err_set(err, rc, "%s[%s]: save failed", n->name, n->slots[s].key);
        }
    }
    return ink_snapshot_seal(g->cfg, b, err);
}

/* The offset held by the file at path, when someone else may have written
 * it since this process's last write; -1 when there is none to respect. */
static int64_t offset_on_disk(struct ink_graph *g, const struct ink_shard_slot *sl,
                              const char *path)
{
    struct stat st;
    if (stat(path, &st)) return -1;
    if (sl->written >= 0 && (uint64_t)st.st_dev == sl->dev && (uint64_t)st.st_ino == sl->ino)
        return sl->written; /* still ours */
    uint8_t *bytes = NULL;
    size_t len = 0;
    struct ink_err e = {0};
    int64_t off = -1;
    if (slurp(path, &bytes, &len, &e) == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        struct ink_shard_pos p;
        if (ink_snapshot_verify(g->cfg, path, bytes, len, &u, &e) == 0 &&
            read_pos(&u.data, sl->name, &p, path, &e) == 0)
            off = p.offset;
        msgpack_unpacked_destroy(&u);
    }
    free(bytes);
    return off;
}

int ink_shard_write(struct ink_graph *g, int32_t id, const struct ink_shard_pos *pos,
                    struct ink_err *err)
{
    struct ink_shard_slot *sl = slot_of(g, id);
    if (!sl) return ink_err_set(err, INK_EINVAL, "shard %d is not open in this process", id);
    char path[4096];
    if (shard_path(g, sl->name, ".shard", path, sizeof path))
        return ink_err_set(err, INK_EINVAL, "shard %s: path too long", sl->name);
    int64_t have = offset_on_disk(g, sl, path);
    if (have > pos->offset)
        return ink_err_set(err, INK_SHARD_FENCED,
                           "shard %s: the file holds offset %lld, this process is at %lld: another "
                           "process owns the partition now (not written)",
                           path, (long long)have, (long long)pos->offset);
    struct ink_buf b = {0};
    int rc = encode(g, sl, pos, &b, err);
    if (!rc) rc = ink_snapshot_commit_file(path, &b, err);
    if (!rc) {
        struct stat st;
        sl->written = pos->offset;
        if (stat(path, &st) == 0) {
            sl->dev = (uint64_t)st.st_dev;
            sl->ino = (uint64_t)st.st_ino;
        }
        g->snap_bytes = b.len;
    }
    ink_buf_fini(&b);
    return rc;
}

void ink_shard_drop(struct ink_graph *g, int32_t id)
{
    struct ink_shard_slot *sl = slot_of(g, id);
    if (!sl) return;
    drop_keys(g, id);
    if (sl->lock_fd >= 0) close(sl->lock_fd);
    *sl = g->shd[--g->nshd];
}

uint64_t ink_shard_keys(const struct ink_graph *g, int32_t id)
{
    uint64_t k = 0;
    for (int j = 0; j < g->n; j++) {
        const struct ink_node *n = &g->nodes[j];
        if (!n->slots) continue;
        for (int64_t s = ink__keyed_first(n); s >= 0; s = n->slots[s].next)
            k += n->slots[s].shard == id;
    }
    return k;
}

int ink_shard_sync_sinks(struct ink_graph *g, struct ink_err *err)
{
    for (int i = 0; i < g->n; i++) {
        struct ink_node *n = &g->nodes[i];
        if (n->kind != INK_NODE_SINK || !n->snk->sync) continue;
        struct ink_err e = {0};
        int rc = n->snk->sync(n, &e);
        if (rc) return ink_err_set(err, rc, "%s: %s", n->name, e.msg[0] ? e.msg : ink_strerror(rc));
    }
    /* a sink with a durable_fd left its fdatasync to the snapshot writer,
     * which shard files do not go through */
    return ink_snapshot_sync_outputs(g, err);
}

int ink_shard_checkpoint(struct ink_graph *g, bool final, struct ink_err *err)
{
    double t0 = ink_now();
    int rc = ink_shard_sync_sinks(g, err);
    for (int i = 0; i < g->n && !rc; i++) {
        struct ink_node *n = &g->nodes[i];
        if (n->kind == INK_NODE_SOURCE && n->src->checkpoint)
            rc = n->src->checkpoint(n, final, err);
    }
    if (rc) return rc;
    g->snap_wall = ink_wall();
    g->snap_last = ink_now();
    g->snap_duration = g->snap_last - t0;
    g->snap_count++;
    return 0;
}

void ink_shard_close_all(struct ink_graph *g)
{
    /* teardown: the key states are freed with their nodes */
    for (int i = 0; i < g->nshd; i++)
        if (g->shd[i].lock_fd >= 0) close(g->shd[i].lock_fd);
    free(g->shd);
    g->shd = NULL;
    g->nshd = g->shd_cap = 0;
}
