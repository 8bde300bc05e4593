/* libFuzzer target for the snapshot loader (engine/snapshot.h): the input is
 * a snapshot payload; the harness gives it a valid envelope (header, the
 * config's structure, CRC32C: ink_snapshot_seal) so the fuzzer exercises what comes
 * after the integrity checks: ink_snapshot_read's structure checks and
 * ink_graph_build_restore's per-operator load (rls_sketch, keyed ecdf,
 * bkb, passthrough, file source offset and sink length). A refused snapshot
 * must fail cleanly; an accepted one must give a graph that frees cleanly.
 *
 * Seed: INK_FUZZ_SNAPSHOT_SEED=FILE makes the initialiser run the graph
 * over a small CSV, take a real snapshot and write its payload to FILE
 * (that is how tests/fuzz/corpus/snapshot/real was made). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../engine/buf.h"
#include "../../engine/config.h"
#include "../../engine/graph.h"
#include "../../engine/snapshot.h"

static struct ink_config cfg;
static char snap_path[4096];

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) abort();
}

static void write_seed(const char *out)
{
    struct ink_graph *g = NULL;
    struct ink_err err = {0};
    if (ink_graph_build(&g, &cfg, &err) || ink_graph_run(g) || ink_snapshot_write(g, &err)) {
        fprintf(stderr, "fuzz_snapshot: seed: %s\n", err.msg);
        abort();
    }
    ink_graph_free(g);
    FILE *f = fopen(snap_path, "rb");
    static uint8_t buf[1 << 22];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    if (n < INK_SNAP_HEADER + 4) abort();
    uint64_t plen = get_u64(buf + 24);
    if (plen > n - INK_SNAP_HEADER - 4) abort();
    write_file(out, buf + INK_SNAP_HEADER, plen);
}

static char dir[] = "/tmp/inkflow-fuzz-snap-XXXXXX";

static void cleanup(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (!mkdtemp(dir)) abort();
    atexit(cleanup);
    char path[4200], csv[4200];
    snprintf(csv, sizeof csv, "%s/in.csv", dir);
    const char *rows = "t,key,x1,x2,y\n1,a,0.1,0.2,1\n2,b,0.3,0.1,0\n3,a,0.5,0.9,1\n"
                       "4,c,0.7,0.3,0.5\n5,b,0.2,0.8,0.2\n6,a,0.9,0.4,0.7\n";
    write_file(csv, rows, strlen(rows));
    const char *yaml =
        "engine: {seed: 3, snapshot: {dir: ., every: 0}}\n"
        "sources:\n  in: {type: file, path: in.csv}\n"
        "operators:\n"
        "  pass: {type: passthrough, inputs: [in]}\n"
        "  sketch: {type: rls_sketch, inputs: [in], dim: 2, kernel: {type: gaussian, sigma: 1},\n"
        "           gamma: 0.5, mu: 1, qbar: 2, max_dict: 16, predict: true}\n"
        "  cdf: {type: ecdf, inputs: [in], mode: kll, k: 16, key_by: key, max_keys: 4}\n"
        "  bandit: {type: bkb, inputs: [in], arms: {grid: {lo: [0, 0], hi: [1, 1], n: [3, 3]}}}\n"
        "sinks:\n  out: {type: file, path: out.jsonl, inputs: [pass, sketch, cdf, bandit]}\n";
    snprintf(path, sizeof path, "%s/graph.yaml", dir);
    write_file(path, yaml, strlen(yaml));
    struct ink_diags diags = {0};
    if (ink_config_load(path, &cfg, &diags)) {
        ink_diags_print(&diags, path, stderr);
        abort();
    }
    ink_diags_free(&diags);
    if (ink_snapshot_path(&cfg, snap_path, sizeof snap_path)) abort();
    const char *seed = getenv("INK_FUZZ_SNAPSHOT_SEED");
    if (seed) write_seed(seed);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    struct ink_buf b = {0};
    struct ink_err e0 = {0};
    uint8_t hdr[INK_SNAP_HEADER] = {0};
    if (ink_buf_append(&b, hdr, sizeof hdr) || ink_buf_append(&b, data, size) ||
        ink_snapshot_seal(&cfg, &b, &e0))
        abort();
    write_file(snap_path, b.p, b.len);
    ink_buf_fini(&b);
    struct ink_snap *s = NULL;
    struct ink_err err = {0};
    if (ink_snapshot_read(&cfg, &s, &err) == 0) {
        struct ink_graph *g = NULL;
        struct ink_err e2 = {0};
        if (ink_graph_build_restore(&g, &cfg, s, &e2) != 0 && !e2.msg[0]) abort();
        ink_graph_free(g);
    } else if (!err.msg[0]) {
        abort(); /* a refusal always says why */
    }
    ink_snapshot_free(s);
    return 0;
}
