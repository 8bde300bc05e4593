/* Snapshots (engine/snapshot.c): the CRC, a keyed graph's round trip with its
 * LRU order, and refusal of every single-bit flip of a whole snapshot file. */
#include "../engine/snapshot.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../engine/graph.h"
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

/* A snapshot of another format version (1: before transports saved their
 * own positions) is refused, with the versions named, even when its CRC and
 * config hash are right. */
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
    CHECK(b[8] == INK_SNAP_VERSION && INK_SNAP_VERSION == 2);
    b[8] = 1; /* version 1, CRC recomputed */
    uint32_t crc = ink_crc32c(0, b, len - 4);
    for (int i = 0; i < 4; i++) b[len - 4 + i] = (uint8_t)(crc >> (8 * i));
    char sp[600];
    ink_snapshot_path(&cfg, sp, sizeof sp);
    FILE *f = fopen(sp, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    s = NULL;
    err = (struct ink_err){0};
    CHECK(ink_snapshot_read(&cfg, &s, &err) == INK_ESTATE);
    CHECK_MSG(strstr(err.msg, "format version 1, this inkflow reads version 2") != NULL, "%s",
              err.msg);
    ink_snapshot_free(s);
    free(b);
    ink_config_free(&cfg);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
