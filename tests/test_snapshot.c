/* Snapshots (engine/snapshot.c): the CRC, a keyed graph's round trip with its
 * LRU order, and refusal of every single-bit flip of a whole snapshot file. */
#include "../engine/snapshot.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../engine/buf.h"
#include "../engine/graph.h"
#include "../engine/state.h"
#include "ink_test.h"

TEST(crc32c_known_vector)
{
    /* the CRC-32C check value (RFC 3720 / iSCSI) */
    CHECK(ink_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(ink_crc32c(ink_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
    CHECK(ink_crc32c(0, "", 0) == 0);
    CHECK(ink__crc32c_sw(0, "123456789", 9) == 0xE3069283u);
    /* hardware and table paths agree on every length and alignment */
    uint8_t buf[300];
    for (int i = 0; i < 300; i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (int off = 0; off < 8; off++)
        for (int n = 0; n + off <= 300; n += 13)
            CHECK(ink_crc32c(5, buf + off, (size_t)n) == ink__crc32c_sw(5, buf + off, (size_t)n));
}

static char dir[256];

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static const char graph[] = "engine: {snapshot: {dir: snap, every: 0}}\n"
                            "sources:\n  src: {type: file, path: in.jsonl}\n"
                            "operators:\n  cdf: {type: ecdf, inputs: [src], mode: kll, k: 16,\n"
                            "        key_by: key, max_keys: 3, on_new_key: evict}\n"
                            "sinks:\n  out: {type: file, path: out.jsonl, inputs: [cdf]}\n";

static int load(struct ink_config *cfg)
{
    char p[512];
    snprintf(p, sizeof p, "%s/g.yaml", dir);
    struct ink_diags d = {0};
    int rc = ink_config_load(p, cfg, &d);
    ink_diags_free(&d);
    return rc;
}

/* Keys from the most recently used on, as one string. */
static void lru_keys(const struct ink_graph *g, char *buf, size_t n)
{
    const struct ink_node *cdf = &g->nodes[1];
    buf[0] = 0;
    for (int64_t s = ink__keyed_first(cdf); s >= 0; s = cdf->slots[s].next) {
        strncat(buf, cdf->slots[s].key, n - strlen(buf) - 2);
        strcat(buf, ",");
    }
}

TEST(keyed_roundtrip_and_every_bit_flip_refused)
{
    snprintf(dir, sizeof dir, "/tmp/ink-test-snapshot-%d", (int)getpid());
    mkdir(dir, 0755);
    char p[512];
    snprintf(p, sizeof p, "%s/snap", dir);
    mkdir(p, 0755);
    write_file("g.yaml", graph);
    /* four keys for three slots: b is evicted when d arrives; then c, a used */
    write_file("in.jsonl", "{\"x\":[1],\"key\":\"a\"}\n{\"x\":[2],\"key\":\"b\"}\n"
                           "{\"x\":[3],\"key\":\"c\"}\n{\"x\":[4],\"key\":\"a\"}\n"
                           "{\"x\":[5],\"key\":\"d\"}\n{\"x\":[6],\"key\":\"c\"}\n");
    struct ink_config cfg = {0};
    CHECK(load(&cfg) == 0);
    struct ink_graph *g = NULL;
    struct ink_err err = {0};
    CHECK(ink_graph_build(&g, &cfg, &err) == 0);
    CHECK(ink_graph_run(g) == 0); /* ends with the final snapshot */
    char before[64];
    lru_keys(g, before, sizeof before);
    CHECK_MSG(strcmp(before, "c,d,a,") == 0, "LRU order %s", before);
    CHECK(g->snap_count == 1 && g->nodes[1].evicted == 1);
    ink_graph_free(g);

    struct ink_snap *s = NULL;
    CHECK(ink_snapshot_read(&cfg, &s, &err) == 0);
    CHECK(s && s->src_records == 6);
    g = NULL;
    CHECK(ink_graph_build_restore(&g, &cfg, s, &err) == 0);
    char after[64];
    lru_keys(g, after, sizeof after);
    CHECK_MSG(strcmp(after, before) == 0, "restored LRU order %s, saved %s", after, before);
    CHECK(g->nodes[1].evicted == 1 && g->nodes[1].keys_used == 3 && g->nodes[0].seq == 6);
    ink_graph_free(g);

    /* every single-bit flip anywhere in the file is refused, the file untouched */
    char sp[600];
    ink_snapshot_path(&cfg, sp, sizeof sp);
    size_t len = s->len;
    uint8_t *good = malloc(len);
    memcpy(good, s->bytes, len);
    ink_snapshot_free(s);
    int accepted = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t *b = malloc(len);
        memcpy(b, good, len);
        b[i] ^= (uint8_t)(1u << (i % 8));
        FILE *f = fopen(sp, "wb");
        fwrite(b, 1, len, f);
        fclose(f);
        struct ink_snap *t = NULL;
        struct ink_err e = {0};
        if (ink_snapshot_read(&cfg, &t, &e) != INK_ESTATE) accepted++;
        ink_snapshot_free(t);
        free(b);
    }
    CHECK_MSG(accepted == 0, "%d of %zu flipped files accepted", accepted, len);
    free(good);
    ink_config_free(&cfg);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* A snapshot of an older format version: 1 (before transports saved their
 * own positions) is refused, with the versions named, even when its CRC is
 * right; 2 (a hash of the config's bytes, no structure) is read when the
 * config is the very file it was taken with, and refused, saying why, after
 * any edit. */
TEST(other_format_version_refused)
{
    snprintf(dir, sizeof dir, "/tmp/ink-test-snapshot-v-%d", (int)getpid());
    mkdir(dir, 0755);
    char p[512];
    snprintf(p, sizeof p, "%s/snap", dir);
    mkdir(p, 0755);
    write_file("g.yaml", graph);
    write_file("in.jsonl", "{\"x\":[1],\"key\":\"a\"}\n");
    struct ink_config cfg = {0};
    CHECK(load(&cfg) == 0);
    struct ink_graph *g = NULL;
    struct ink_err err = {0};
    CHECK(ink_graph_build(&g, &cfg, &err) == 0);
    CHECK(ink_graph_run(g) == 0);
    ink_graph_free(g);
    struct ink_snap *s = NULL;
    CHECK(ink_snapshot_read(&cfg, &s, &err) == 0);
    size_t len = s->len;
    uint8_t *b = malloc(len);
    memcpy(b, s->bytes, len);
    ink_snapshot_free(s);
    CHECK(b[8] == INK_SNAP_VERSION && INK_SNAP_VERSION == 3);
    /* the same snapshot as version 2 would have written it: the config's
     * hash at 16, no structure section, the same payload */
    uint64_t slen = 0;
    for (int i = 0; i < 8; i++) slen |= (uint64_t)b[16 + i] << (8 * i);
    size_t len2 = len - (size_t)slen;
    uint8_t *v2 = malloc(len2);
    memcpy(v2, b, len2 - 4); /* header and payload */
    v2[8] = 2;
    for (int i = 0; i < 8; i++) v2[16 + i] = (uint8_t)(cfg.hash >> (8 * i));
    uint32_t crc = ink_crc32c(0, v2, len2 - 4);
    for (int i = 0; i < 4; i++) v2[len2 - 4 + i] = (uint8_t)(crc >> (8 * i));
    char sp[600];
    ink_snapshot_path(&cfg, sp, sizeof sp);
    FILE *f = fopen(sp, "wb");
    fwrite(v2, 1, len2, f);
    fclose(f);
    s = NULL;
    err = (struct ink_err){0};
    CHECK_MSG(ink_snapshot_read(&cfg, &s, &err) == 0, "%s", err.msg);
    g = NULL;
    CHECK_MSG(s && ink_graph_build_restore(&g, &cfg, s, &err) == 0, "%s", err.msg);
    CHECK(g && g->nodes[0].seq == 1);
    ink_graph_free(g);
    ink_snapshot_free(s);
    /* ... and not with the config edited (a comment): the hash says nothing more */
    write_file("g.yaml", "# edited\nengine: {snapshot: {dir: snap, every: 0}}\n"
                         "sources:\n  src: {type: file, path: in.jsonl}\n"
                         "operators:\n  cdf: {type: ecdf, inputs: [src], mode: kll, k: 16,\n"
                         "        key_by: key, max_keys: 3, on_new_key: evict}\n"
                         "sinks:\n  out: {type: file, path: out.jsonl, inputs: [cdf]}\n");
    struct ink_config cfg2 = {0};
    CHECK(load(&cfg2) == 0);
    s = NULL;
    err = (struct ink_err){0};
    CHECK(ink_snapshot_read(&cfg2, &s, &err) == INK_ESTATE);
    CHECK_MSG(strstr(err.msg, "format version 2, taken with a different config") != NULL, "%s",
              err.msg);
    ink_snapshot_free(s);
    ink_config_free(&cfg2);
    free(v2);

    b[8] = 1; /* version 1, CRC recomputed */
    crc = ink_crc32c(0, b, len - 4);
    for (int i = 0; i < 4; i++) b[len - 4 + i] = (uint8_t)(crc >> (8 * i));
    f = fopen(sp, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    s = NULL;
    err = (struct ink_err){0};
    CHECK(ink_snapshot_read(&cfg, &s, &err) == INK_ESTATE);
    CHECK_MSG(strstr(err.msg, "format version 1, this inkflow reads versions 2 and 3") != NULL,
              "%s", err.msg);
    ink_snapshot_free(s);
    free(b);
    ink_config_free(&cfg);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* ---- restore compatibility by structure (ink_structure_pack / _check) ----- */

static const char base[] =
    "engine: {seed: 5, snapshot: {dir: snap, every: 10s}}\n"
    "sources:\n  src: {type: file, path: in.csv}\n"
    "operators:\n"
    "  cdf: {type: ecdf, inputs: [src], mode: kll, k: 16, key_by: key, max_keys: 8}\n"
    "  sketch: {type: rls_sketch, inputs: [src], dim: 2, kernel: {type: gaussian, sigma: 1},\n"
    "           gamma: 0.5, mu: 1, qbar: 2, max_dict: 16}\n"
    "sinks:\n"
    "  out: {type: file, path: out.jsonl, inputs: [cdf]}\n"
    "  out2: {type: file, path: out2.jsonl, inputs: [sketch]}\n";

/* Check config `now` against the structure of config `then`: the code, the
 * message in msg, node_of in map. */
static int compare(const char *then, const char *now, char *msg, size_t n, int *map)
{
    struct ink_config a = {0}, b = {0};
    struct ink_diags d = {0};
    int rc = ink_config_load_buf("/tmp/g.yaml", then, strlen(then), &a, &d);
    if (!rc) rc = ink_config_load_buf("/tmp/g.yaml", now, strlen(now), &b, &d);
    if (rc) {
        snprintf(msg, n, "config: %s", d.n ? d.v[0].msg : "?");
        ink_diags_free(&d);
        ink_config_free(&a);
        return 99;
    }
    struct ink_buf buf = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, ink_buf_write);
    rc = ink_structure_pack(&a, &pk);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    struct ink_err err = {0};
    if (!rc &&
        msgpack_unpack_next(&u, (const char *)buf.p, buf.len, &off) == MSGPACK_UNPACK_SUCCESS)
        rc = ink_structure_check(&u.data, &b, map, &err);
    else
        rc = 98;
    snprintf(msg, n, "%s", err.msg);
    msgpack_unpacked_destroy(&u);
    ink_buf_fini(&buf);
    ink_config_free(&a);
    ink_config_free(&b);
    return rc;
}

/* `src` with the first `from` replaced by `to` (in one of two buffers). */
static const char *edit_in(const char *src, const char *from, const char *to)
{
    static char out[2][4096];
    static int w;
    const char *at = strstr(src, from);
    if (!at) return "not found";
    char tmp[4096]; /* src may be the other buffer */
    snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(at - src), src, to, at + strlen(from));
    w ^= 1;
    memcpy(out[w], tmp, sizeof tmp);
    return out[w];
}

static const char *edit(const char *from, const char *to)
{
    return edit_in(base, from, to);
}

#define ACCEPTED(now)                                                                              \
    do {                                                                                           \
        char m_[600];                                                                              \
        int r_ = compare(base, now, m_, sizeof m_, NULL);                                          \
        CHECK_MSG(r_ == 0, "refused (%d): %s", r_, m_);                                            \
    } while (0)

#define REFUSED(now, says)                                                                         \
    do {                                                                                           \
        char m_[600];                                                                              \
        int r_ = compare(base, now, m_, sizeof m_, NULL);                                          \
        CHECK_MSG(r_ == INK_ESTATE && strstr(m_, says), "%d: %s", r_, m_);                         \
    } while (0)

TEST(structure_accepts_what_does_not_shape_state)
{
    int map[8];
    char m[600];
    CHECK(compare(base, base, m, sizeof m, map) == 0);
    for (int i = 0; i < 5; i++) CHECK(map[i] == i);
    /* comments, layout, key order, the same values spelled otherwise */
    ACCEPTED("# a comment\n"
             "engine:\n  snapshot: {every: 10s, dir: snap}   # and another\n  seed: 5\n"
             "sources:\n  src: {path: in.csv, type: file}\n"
             "operators:\n"
             "  cdf: {max_keys: 8, key_by: key, type: ecdf, k: 1.6e1, mode: kll, inputs: [src]}\n"
             "  sketch:\n    type: rls_sketch\n    inputs: [src]\n    dim: 2\n"
             "    kernel: {sigma: 1.0, type: gaussian}\n    qbar: 2\n    gamma: 0.5\n"
             "    mu: 1\n    max_dict: 16\n"
             "sinks:\n"
             "  out: {type: file, path: out.jsonl, inputs: [cdf]}\n"
             "  out2: {type: file, path: out2.jsonl, inputs: [sketch]}\n");
    /* a sink's format and sampling, the snapshot period, http, limits */
    ACCEPTED(edit("path: out.jsonl,", "path: out.jsonl, format: csv, every: 3,"));
    ACCEPTED(edit("every: 10s}", "every: 1s, every_records: 500}, http: {listen: "
                                 "\"127.0.0.1:0\"}, max_dim: 8, memory_limit: 2GiB"));
    /* an operator key declared free of state (ecdf quantiles: output only) */
    ACCEPTED(edit("k: 16,", "k: 16, quantiles: [0.5, 0.9],"));
    /* the default written out is the default */
    ACCEPTED(edit("k: 16,", "k: 16, on_new_key: reject,"));
    /* nodes reordered where no consumer order changes: matched by name */
    const char *swapped = edit("  out: {type: file, path: out.jsonl, inputs: [cdf]}\n"
                               "  out2: {type: file, path: out2.jsonl, inputs: [sketch]}\n",
                               "  out2: {type: file, path: out2.jsonl, inputs: [sketch]}\n"
                               "  out: {type: file, path: out.jsonl, inputs: [cdf]}\n");
    CHECK_MSG(compare(base, swapped, m, sizeof m, map) == 0, "%s", m);
    CHECK(map[3] == 4 && map[4] == 3);
}

TEST(structure_refuses_naming_node_key_and_values)
{
    REFUSED(edit("k: 16", "k: 32"), "node 'cdf' (ecdf): k is 16 in the snapshot, 32 in the config");
    REFUSED(edit("sigma: 1}", "sigma: 2}"),
            "node 'sketch' (rls_sketch): kernel.sigma is 1 in the snapshot, 2 in the config");
    REFUSED(edit("seed: 5", "seed: 6"), "engine: seed is 5 in the snapshot, 6 in the config");
    REFUSED(edit("key_by: key, max_keys: 8", ""),
            "node 'cdf' (ecdf): key_by is key in the snapshot, (not set) in the config");
    REFUSED(edit("max_keys: 8", "max_keys: 9"), "max_keys is 8 in the snapshot, 9 in the config");
    REFUSED(edit("mode: kll", "mode: kll, seed: 3"),
            "node 'cdf' (ecdf): seed is -1 in the snapshot, 3 in the config");
    /* two at once: both named in the one message */
    char m[600];
    CHECK(compare(base, edit("k: 16", "k: 17"), m, sizeof m, NULL) == INK_ESTATE);
    const char *two = edit("gamma: 0.5", "gamma: 0.25");
    char both[4096];
    snprintf(both, sizeof both, "%s", two);
    char *k = strstr(both, "k: 16");
    CHECK(k != NULL);
    k[3] = '2'; /* k: 26 */
    CHECK(compare(base, both, m, sizeof m, NULL) == INK_ESTATE);
    CHECK_MSG(strstr(m, "k is 16 in the snapshot, 26") && strstr(m, "gamma is 0.5 in the snapshot, "
                                                                    "0.25 in the config"),
              "%s", m);
}

/* A long explicit grid is kept as a hash of its numbers: equal grids are
 * accepted however they are written, one number changed is refused. */
TEST(structure_long_lists_by_hash)
{
    char nodes[2][4096], cfgs[3][8192];
    for (int v = 0; v < 2; v++) {
        size_t off = 0;
        for (int i = 0; i < 200; i++)
            off += (size_t)snprintf(nodes[v] + off, sizeof nodes[v] - off, "%s%g", i ? ", " : "",
                                    v && i == 150 ? 150.5 : (double)i);
    }
    const char *fmt = "engine: {snapshot: {dir: snap}}\n"
                      "sources:\n  src: {type: file, path: in.csv}\n"
                      "operators:\n  g: {type: ecdf, inputs: [src], mode: grid,\n"
                      "      grid: {nodes: [[%s]]}}\n"
                      "sinks:\n  out: {type: file, path: out.jsonl, inputs: [g]}\n";
    snprintf(cfgs[0], sizeof cfgs[0], fmt, nodes[0]);
    snprintf(cfgs[1], sizeof cfgs[1], fmt, nodes[1]);
    /* the same numbers written as 0.0, 1e0, ... */
    char alt[4096];
    size_t off = 0;
    for (int i = 0; i < 200; i++)
        off += (size_t)snprintf(alt + off, sizeof alt - off, "%s%.1f", i ? ", " : "", (double)i);
    snprintf(cfgs[2], sizeof cfgs[2], fmt, alt);
    char m[600];
    CHECK_MSG(compare(cfgs[0], cfgs[2], m, sizeof m, NULL) == 0, "%s", m);
    CHECK(compare(cfgs[0], cfgs[1], m, sizeof m, NULL) == INK_ESTATE);
    CHECK_MSG(strstr(m, "node 'g' (ecdf): grid.nodes is [0, 1, 2, 3, ...] (200 numbers in 1 "
                        "list, FNV-1a") != NULL,
              "%s", m);
}

TEST(structure_refuses_nodes_renamed_added_removed_retyped_rewired)
{
    REFUSED(edit_in(edit("  cdf: {", "  cdf2: {"), "inputs: [cdf]", "inputs: [cdf2]"),
            "node 'cdf' (ecdf) of the snapshot is not in the "
            "config, which has 'cdf2' (ecdf) instead");
    REFUSED(edit("  out2: {", "  out3: {type: file, path: o3.jsonl, inputs: [cdf]}\n  out2: {"),
            "node 'out3' (sink file) is not in the snapshot (added: its output would start "
            "mid-stream)");
    REFUSED(edit("  out2: {type: file, path: out2.jsonl, inputs: [sketch]}\n", ""),
            "node 'out2' (sink file) of the snapshot is not in the config (removed)");
    REFUSED(edit("type: ecdf, inputs: [src], mode: kll, k: 16, key_by: key, max_keys: 8",
                 "type: passthrough, inputs: [src]"),
            "node 'cdf': operator ecdf in the snapshot, operator passthrough in the config");
    REFUSED(edit("inputs: [cdf]", "inputs: [cdf, sketch]"),
            "node 'out': inputs [cdf] in the snapshot, [cdf, sketch] in the config");
    /* the two operators swapped in the file: src feeds them in the other order */
    char swapped[4096];
    const char *c = strstr(base, "  cdf: {"), *sk = strstr(base, "  sketch: {"),
               *sinks = strstr(base, "sinks:");
    snprintf(swapped, sizeof swapped, "%.*s%.*s%.*s%s", (int)(c - base), base, (int)(sinks - sk),
             sk, (int)(sk - c), c, sinks);
    REFUSED(swapped, "node 'src': its consumers come in another order");
}

/* The envelope any snapshot file uses (Kafka shard files too): a payload
 * sealed with one config's structure verifies with that config or one
 * edited in what does not shape state, and is refused, naming the key,
 * after a change that does; every bit flip is refused. */
TEST(envelope_seal_and_verify)
{
    struct ink_config a = {0}, b = {0};
    struct ink_diags d = {0};
    const char *edited = edit("k: 16,", "k: 16, quantiles: [0.5],  # edited\n    ");
    CHECK(ink_config_load_buf("/tmp/g.yaml", base, strlen(base), &a, &d) == 0);
    CHECK(ink_config_load_buf("/tmp/g.yaml", edited, strlen(edited), &b, &d) == 0);
    struct ink_buf buf = {0};
    uint8_t hdr[INK_SNAP_HEADER] = {0};
    CHECK(ink_buf_append(&buf, hdr, sizeof hdr) == 0);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, ink_buf_write);
    msgpack_pack_map(&pk, 1);
    ink_pack_key(&pk, "offset");
    msgpack_pack_uint64(&pk, 12345);
    struct ink_err err = {0};
    CHECK(ink_snapshot_seal(&a, &buf, &err) == 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    CHECK_MSG(ink_snapshot_verify(&b, "shard", buf.p, buf.len, &u, &err) == 0, "%s", err.msg);
    CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 1 &&
          u.data.via.map.ptr[0].val.via.u64 == 12345);
    msgpack_unpacked_destroy(&u);
    ink_config_free(&b);
    edited = edit("max_dict: 16", "max_dict: 32");
    CHECK(ink_config_load_buf("/tmp/g.yaml", edited, strlen(edited), &b, &d) == 0);
    msgpack_unpacked_init(&u);
    CHECK(ink_snapshot_verify(&b, "shard", buf.p, buf.len, &u, &err) == INK_ESTATE);
    CHECK_MSG(strstr(err.msg, "snapshot shard refused: taken with a different config: node "
                              "'sketch' (rls_sketch): max_dict is 16 in the snapshot, 32") != NULL,
              "%s", err.msg);
    msgpack_unpacked_destroy(&u);
    int accepted = 0;
    for (size_t i = 0; i < buf.len; i++) {
        buf.p[i] ^= (uint8_t)(1u << (i % 8));
        msgpack_unpacked_init(&u);
        accepted += ink_snapshot_verify(&a, "shard", buf.p, buf.len, &u, &err) != INK_ESTATE;
        msgpack_unpacked_destroy(&u);
        buf.p[i] ^= (uint8_t)(1u << (i % 8));
    }
    CHECK_MSG(accepted == 0, "%d of %zu flipped files accepted", accepted, buf.len);
    ink_buf_fini(&buf);
    ink_config_free(&a);
    ink_config_free(&b);
    ink_diags_free(&d);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
