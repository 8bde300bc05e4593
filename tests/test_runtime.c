/* engine/runtime.c through its API: graphs built from YAML text with file
 * sources and sinks in a temporary directory, run to their natural end, and
 * their outputs and counters read back.
 *   - keyed state is least-recently-used: a key used again survives, the
 *     least recently used one is evicted and comes back empty;
 *   - an evicted key is flushed first (ecdf exact: its partial window goes
 *     out with its key before the record that evicted it), and the live keys
 *     are flushed at the end;
 *   - a record an operator refuses is counted by reason and sent to the
 *     node's dead_letter sink with _reject, _node and _error; the others flow;
 *   - fan-out and fan-in: one source feeds two operators, each feeds its own
 *     sink and a shared one;
 *   - shard mode (engine/shard.h): a key's identity is (shard, key); a shard
 *     is written, fenced by a higher offset on disk, dropped (its slots free
 *     for others, max_keys the bound), locked while open, and loaded back. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/graph.h"
#include "engine/lock.h"
#include "engine/shard.h"
#include "ink_test.h"

static char dir[256];

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* The JSON objects of a JSON Lines file, or NULL. */
static json_t *read_jsonl(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    json_t *all = json_array();
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        if (o) json_array_append_new(all, o);
    }
    fclose(f);
    return all;
}

/* Load graph.yaml from `yaml`, build and run it to its end. */
static int run_graph(const char *yaml, struct ink_config *cfg, struct ink_graph **g)
{
    write_file("graph.yaml", yaml);
    char path[512];
    snprintf(path, sizeof path, "%s/graph.yaml", dir);
    struct ink_diags d = {0};
    int rc = ink_config_load(path, cfg, &d);
    if (rc) {
        ink_diags_print(&d, path, stderr);
        ink_diags_free(&d);
        return rc;
    }
    ink_diags_free(&d);
    struct ink_err err = {0};
    rc = ink_graph_build(g, cfg, &err);
    if (rc) {
        fprintf(stderr, "build: %s\n", err.msg);
        return rc;
    }
    return ink_graph_run(*g);
}

static struct ink_node *node(struct ink_graph *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
    return NULL;
}

static const char *str_of(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long int_of(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

TEST(keyed_state_is_least_recently_used)
{
    /* a1 b1 a2 c1: c evicts b (least recently used), not a (first in);
     * a3 keeps a's count; b2 comes back empty and evicts c; c2 evicts a. */
    write_file("keys.jsonl", "{\"x\": [1], \"key\": \"a\"}\n"
                             "{\"x\": [2], \"key\": \"b\"}\n"
                             "{\"x\": [3], \"key\": \"a\"}\n"
                             "{\"x\": [4], \"key\": \"c\"}\n"
                             "{\"x\": [5], \"key\": \"a\"}\n"
                             "{\"x\": [6], \"key\": \"b\"}\n"
                             "{\"x\": [7], \"key\": \"c\"}\n");
    struct ink_config cfg = {0};
    struct ink_graph *g = NULL;
    int rc = run_graph("sources:\n"
                       "  in: {type: file, path: keys.jsonl, format: jsonl}\n"
                       "operators:\n"
                       "  cdf: {type: ecdf, inputs: [in], mode: kll, k: 16,\n"
                       "        key_by: key, max_keys: 2, on_new_key: evict}\n"
                       "sinks:\n"
                       "  out: {type: file, path: lru.jsonl, format: jsonl, inputs: [cdf]}\n",
                       &cfg, &g);
    CHECK(rc == 0);
    REQUIRE(g);
    struct ink_node *cdf = node(g, "cdf");
    REQUIRE(cdf);
    CHECK_MSG(cdf->evicted == 3, "evicted %llu", (unsigned long long)cdf->evicted);
    CHECK(cdf->keys_used == 2);
    CHECK(cdf->c.in == 7 && cdf->c.out == 7);
    ink_graph_free(g);
    ink_config_free(&cfg);
    json_t *out = read_jsonl("lru.jsonl");
    REQUIRE(out && json_array_size(out) == 7);
    static const char *const keys[7] = {"a", "b", "a", "c", "a", "b", "c"};
    static const long long n[7] = {0, 0, 1, 0, 2, 0, 0};
    for (size_t i = 0; i < 7; i++) {
        json_t *o = json_array_get(out, i);
        CHECK_MSG(strcmp(str_of(o, "key"), keys[i]) == 0 && int_of(o, "n") == n[i],
                  "record %zu: key %s n %lld, expected %s n %lld", i, str_of(o, "key"),
                  int_of(o, "n"), keys[i], n[i]);
    }
    json_decref(out);
}

TEST(an_evicted_key_is_flushed_before_it_goes)
{
    /* exact windows of 3 per key, one key at a time: b evicts a, whose two
     * held-back points go out first (key a, n = 2); b's single point goes out
     * at the natural end (key b, n = 1). */
    write_file("win.jsonl", "{\"x\": [1, 1], \"key\": \"a\"}\n"
                            "{\"x\": [2, 0], \"key\": \"a\"}\n"
                            "{\"x\": [5, 5], \"key\": \"b\"}\n");
    struct ink_config cfg = {0};
    struct ink_graph *g = NULL;
    int rc = run_graph("sources:\n"
                       "  in: {type: file, path: win.jsonl, format: jsonl}\n"
                       "operators:\n"
                       "  win: {type: ecdf, inputs: [in], mode: exact, dim: 2, window: 3,\n"
                       "        key_by: key, max_keys: 1, on_new_key: evict}\n"
                       "sinks:\n"
                       "  out: {type: file, path: flushed.jsonl, format: jsonl, inputs: [win]}\n",
                       &cfg, &g);
    CHECK(rc == 0);
    REQUIRE(g);
    struct ink_node *win = node(g, "win");
    REQUIRE(win);
    CHECK(win->evicted == 1 && win->keys_used == 1);
    ink_graph_free(g);
    ink_config_free(&cfg);
    json_t *out = read_jsonl("flushed.jsonl");
    REQUIRE(out);
    CHECK_MSG(json_array_size(out) == 3, "%zu records", json_array_size(out));
    if (json_array_size(out) == 3) {
        json_t *a1 = json_array_get(out, 0), *a2 = json_array_get(out, 1);
        json_t *b1 = json_array_get(out, 2);
        CHECK(strcmp(str_of(a1, "key"), "a") == 0 && strcmp(str_of(a2, "key"), "a") == 0);
        CHECK(int_of(a1, "n") == 2 && int_of(a2, "n") == 2);
        /* F at (1,1): only itself of the two is <= it; at (2,0): only itself */
        CHECK(json_real_value(json_object_get(a1, "F")) == 0.5);
        CHECK(json_real_value(json_object_get(a2, "F")) == 0.5);
        CHECK(strcmp(str_of(b1, "key"), "b") == 0 && int_of(b1, "n") == 1);
    }
    json_decref(out);
}

TEST(refused_records_go_to_the_dead_letter_sink)
{
    write_file("mixed.jsonl", "{\"x\": [0.1, 0.2]}\n"
                              "{\"x\": [0.1, 0.2, 0.3], \"tag\": \"long\"}\n"
                              "{\"x\": [0.3, 0.4]}\n"
                              "{\"x\": [0.5]}\n"
                              "{\"x\": [0.6, 0.7]}\n");
    struct ink_config cfg = {0};
    struct ink_graph *g = NULL;
    int rc = run_graph("sources:\n"
                       "  in: {type: file, path: mixed.jsonl, format: jsonl}\n"
                       "operators:\n"
                       "  cdf: {type: ecdf, inputs: [in], mode: grid, dead_letter: dl,\n"
                       "        grid: {lo: [0, 0], hi: [1, 1], n: [5, 5]}}\n"
                       "sinks:\n"
                       "  good: {type: file, path: good.jsonl, format: jsonl, inputs: [cdf]}\n"
                       "  dl: {type: file, path: dl.jsonl, format: jsonl}\n",
                       &cfg, &g);
    CHECK(rc == 0);
    REQUIRE(g);
    struct ink_node *cdf = node(g, "cdf");
    REQUIRE(cdf);
    CHECK(cdf->c.in == 5 && cdf->c.out == 3);
    CHECK_MSG(cdf->c.rejected[INK_REJ_DIM] == 2, "dim rejections %llu",
              (unsigned long long)cdf->c.rejected[INK_REJ_DIM]);
    CHECK(node(g, "dl")->c.in == 2);
    ink_graph_free(g);
    ink_config_free(&cfg);
    json_t *good = read_jsonl("good.jsonl"), *dl = read_jsonl("dl.jsonl");
    REQUIRE(good && dl);
    CHECK(json_array_size(good) == 3);
    CHECK_MSG(json_array_size(dl) == 2, "%zu dead letters", json_array_size(dl));
    if (json_array_size(dl) == 2) {
        json_t *d0 = json_array_get(dl, 0), *d1 = json_array_get(dl, 1);
        CHECK(strcmp(str_of(d0, "_reject"), "dim") == 0 && strcmp(str_of(d0, "_node"), "cdf") == 0);
        CHECK(strlen(str_of(d0, "_error")) > 0);
        CHECK(strcmp(str_of(d0, "tag"), "long") == 0); /* the record's own fields travel along */
        CHECK(json_array_size(json_object_get(d0, "x")) == 3);
        CHECK(json_array_size(json_object_get(d1, "x")) == 1);
        CHECK(strcmp(str_of(d1, "_reject"), "dim") == 0);
    }
    json_decref(good);
    json_decref(dl);
}

TEST(fan_out_and_fan_in)
{
    char text[4096] = "";
    for (int i = 0; i < 20; i++) {
        char line[64];
        snprintf(line, sizeof line, "{\"x\": [%d]}\n", i);
        strcat(text, line);
    }
    write_file("fan.jsonl", text);
    struct ink_config cfg = {0};
    struct ink_graph *g = NULL;
    int rc =
        run_graph("sources:\n"
                  "  in: {type: file, path: fan.jsonl, format: jsonl}\n"
                  "operators:\n"
                  "  copy: {type: passthrough, inputs: [in]}\n"
                  "  cdf: {type: ecdf, inputs: [in], mode: kll, k: 16}\n"
                  "sinks:\n"
                  "  a: {type: file, path: a.jsonl, format: jsonl, inputs: [copy]}\n"
                  "  b: {type: file, path: b.jsonl, format: jsonl, inputs: [cdf]}\n"
                  "  both: {type: file, path: both.jsonl, format: jsonl, inputs: [copy, cdf]}\n",
                  &cfg, &g);
    CHECK(rc == 0);
    REQUIRE(g);
    CHECK(node(g, "in")->c.out == 20);
    CHECK(node(g, "copy")->c.in == 20 && node(g, "cdf")->c.in == 20);
    CHECK(node(g, "both")->c.in == 40);
    ink_graph_free(g);
    ink_config_free(&cfg);
    json_t *a = read_jsonl("a.jsonl"), *b = read_jsonl("b.jsonl"), *both = read_jsonl("both.jsonl");
    REQUIRE(a && b && both);
    CHECK(json_array_size(a) == 20 && json_array_size(b) == 20 && json_array_size(both) == 40);
    /* every record reaches both branches, in order: passthrough's copy has no F,
     * the cdf's has; the shared sink gets each record from both. */
    int with_f = 0;
    for (size_t i = 0; i < json_array_size(both); i++)
        with_f += json_object_get(json_array_get(both, i), "F") != NULL;
    CHECK(with_f == 20);
    for (size_t i = 0; i < 20; i++) {
        CHECK(json_object_get(json_array_get(a, i), "F") == NULL);
        CHECK(int_of(json_array_get(b, i), "n") == (long long)i);
        json_t *xa = json_array_get(json_object_get(json_array_get(a, i), "x"), 0);
        CHECK(json_number_value(xa) == (double)i);
    }
    json_decref(a);
    json_decref(b);
    json_decref(both);
}

/* A record of `key` with x = v, emitted by src as one of shard's. */
static int emit(struct ink_node *src, int32_t shard, const char *key, double v)
{
    struct ink_record r;
    memset(&r, 0, sizeof r);
    r.flags = INK_HAS_KEY | INK_HAS_X;
    r.key = key;
    r.key_len = (uint32_t)strlen(key);
    r.x = &v;
    r.dim = 1;
    return ink__source_emit_shard(src, &r, shard);
}

static uint64_t count_of(struct ink_node *n, int32_t shard, const char *key)
{
    for (int64_t s = ink__keyed_first(n); s >= 0; s = n->slots[s].next)
        if (n->slots[s].shard == shard && strcmp(n->slots[s].key, key) == 0)
            return n->vt->records(n->slots[s].state);
    return 0;
}

TEST(shards_hold_keys_apart_and_move_whole)
{
    write_file("none.jsonl", "");
    write_file("graph.yaml",
               "engine:\n"
               "  snapshot: {dir: shards, every: 0}\n"
               "sources:\n"
               "  in: {type: file, path: none.jsonl, format: jsonl}\n"
               "operators:\n"
               "  cdf: {type: ecdf, inputs: [in], mode: kll, k: 16,\n"
               "        key_by: key, max_keys: 4, on_new_key: evict}\n"
               "sinks:\n"
               "  out: {type: file, path: shards.jsonl, format: jsonl, inputs: [cdf]}\n");
    char path[512], lock[600], file[600];
    snprintf(path, sizeof path, "%s/graph.yaml", dir);
    snprintf(lock, sizeof lock, "%s/shards/s2.lock", dir);
    snprintf(file, sizeof file, "%s/shards/s2.shard", dir);
    struct ink_diags d = {0};
    struct ink_config cfg = {0};
    REQUIRE(ink_config_load(path, &cfg, &d) == 0);
    ink_diags_free(&d);
    struct ink_graph *g = NULL;
    struct ink_err err = {0};
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    g->sharded = true; /* as a sharded source's config would set it */
    struct ink_node *in = node(g, "in"), *cdf = node(g, "cdf");
    REQUIRE(in && cdf);
    struct ink_shard_pos pos;
    CHECK(ink_shard_open(g, 1, "s1", &pos, &err) == 0 && pos.offset == -1);
    CHECK(ink_shard_open(g, 2, "s2", &pos, &err) == 0 && pos.offset == -1);
    /* the same key in two shards is two keys */
    emit(in, 1, "a", 1);
    emit(in, 1, "a", 2);
    emit(in, 2, "a", 3);
    emit(in, 2, "b", 4);
    CHECK_MSG(cdf->keys_used == 3, "keys %lld", (long long)cdf->keys_used);
    CHECK(count_of(cdf, 1, "a") == 2 && count_of(cdf, 2, "a") == 1 && ink_shard_keys(g, 2) == 2);
    /* written; a lower offset than the file's is fenced, also when another
     * process replaced the file (a new inode) */
    struct ink_shard_pos at = {.offset = 10};
    CHECK(ink_shard_write(g, 2, &at, &err) == 0);
    at.offset = 9;
    CHECK(ink_shard_write(g, 2, &at, &err) == INK_SHARD_FENCED);
    char tmp[700], buf[65536];
    snprintf(tmp, sizeof tmp, "%s.x", file);
    FILE *src = fopen(file, "rb"), *dst = fopen(tmp, "wb");
    REQUIRE(src && dst);
    size_t got = fread(buf, 1, sizeof buf, src);
    CHECK(got > 0 && got < sizeof buf && fwrite(buf, 1, got, dst) == got);
    fclose(src);
    fclose(dst);
    CHECK(rename(tmp, file) == 0);
    CHECK(ink_shard_write(g, 2, &at, &err) == INK_SHARD_FENCED);
    at.offset = 12;
    CHECK(ink_shard_write(g, 2, &at, &err) == 0);
    /* held: another open of its lock is refused while the shard is open */
    int fd = -1;
    CHECK(ink_lock_file(lock, "test", &fd, &err) == INK_EBUSY);
    /* dropped: its keys' slots serve others, without eviction */
    ink_shard_drop(g, 2);
    CHECK(cdf->keys_used == 1 && ink_shard_keys(g, 2) == 0);
    CHECK(ink_lock_file(lock, "test", &fd, &err) == 0);
    close(fd);
    emit(in, 1, "c", 5);
    emit(in, 1, "d", 6);
    emit(in, 1, "e", 7);
    CHECK(cdf->keys_used == 4 && cdf->evicted == 0);
    /* no room for its two keys: refused whole, nothing loaded, lock released */
    CHECK(ink_shard_open(g, 2, "s2", &pos, &err) == INK_ESTATE);
    CHECK(cdf->keys_used == 4 && ink_shard_keys(g, 2) == 0);
    CHECK(ink_lock_file(lock, "test", &fd, &err) == 0);
    close(fd);
    /* once shard 1 goes, shard 2 comes back as it was written */
    ink_shard_drop(g, 1);
    CHECK(cdf->keys_used == 0);
    CHECK(ink_shard_open(g, 2, "s2", &pos, &err) == 0);
    CHECK_MSG(pos.offset == 12 && !pos.final, "offset %lld", (long long)pos.offset);
    CHECK(cdf->keys_used == 2 && count_of(cdf, 2, "a") == 1 && count_of(cdf, 2, "b") == 1);
    emit(in, 2, "a", 8);
    CHECK(count_of(cdf, 2, "a") == 2);
    /* a request from outside the sharded source finds a key in the shard
     * that holds it, and never creates one */
    uint64_t refused = cdf->c.rejected[INK_REJ_INVALID];
    double v = 3.5;
    struct ink_record q;
    memset(&q, 0, sizeof q);
    q.flags = INK_HAS_KEY | INK_HAS_X | INK_HAS_OP;
    q.op = "cdf";
    q.op_len = 3;
    q.x = &v;
    q.dim = 1;
    q.key = "b";
    q.key_len = 1;
    CHECK(ink__source_emit(in, &q) == 0);
    CHECK(cdf->c.rejected[INK_REJ_INVALID] == refused);
    q.key = "zz";
    q.key_len = 2;
    CHECK(ink__source_emit(in, &q) == 0);
    CHECK(cdf->c.rejected[INK_REJ_INVALID] == refused + 1 && cdf->keys_used == 2);
    ink_graph_free(g);
    ink_config_free(&cfg);
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "%s/inkflow-runtime-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = ink_test_main(argc, argv);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
