/* Transports through their descriptors (engine/transport.h): the file
 * source's and the file sink's save/restore, hook by hook, and the registry. */
#include "../engine/transport.h"

#include <arpa/inet.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "../engine/graph.h"
#include "../engine/metrics.h"
#include "../engine/snapshot.h"
#include "ink_test.h"

static char dir[256];

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static void write_file(const char *name, const char *text)
{
    char p[512];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

/* The whole file, NUL-terminated (caller frees); *len its size. */
static char *read_all(const char *name, size_t *len)
{
    char p[512];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    char *b = malloc(1 << 16);
    size_t n = fread(b, 1, (1 << 16) - 1, f);
    fclose(f);
    b[n] = 0;
    if (len) *len = n;
    return b;
}

static void setup(const char *tag)
{
    snprintf(dir, sizeof dir, "/tmp/ink-test-transport-%s-%d", tag, (int)getpid());
    mkdir(dir, 0755);
}

static void cleanup(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static int load(struct ink_config *cfg, const char *yaml)
{
    write_file("g.yaml", yaml);
    char p[512];
    path_of(p, sizeof p, "g.yaml");
    struct ink_diags d = {0};
    int rc = ink_config_load(p, cfg, &d);
    if (rc) ink_diags_print(&d, p, stderr);
    ink_diags_free(&d);
    return rc;
}

/* What a save hook wrote, unpacked (the object points into the bytes). */
struct saved {
    msgpack_sbuffer sb;
    msgpack_unpacked u;
};

static int save_pos(struct ink_node *n, struct saved *s)
{
    msgpack_sbuffer_init(&s->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->sb, msgpack_sbuffer_write);
    int rc = n->kind == INK_NODE_SOURCE ? n->src->save(n, &pk) : n->snk->save(n, &pk);
    msgpack_unpacked_init(&s->u);
    size_t off = 0;
    if (!rc && msgpack_unpack_next(&s->u, s->sb.data, s->sb.size, &off) != MSGPACK_UNPACK_SUCCESS)
        rc = -1;
    if (!rc && off != s->sb.size) rc = -1; /* exactly one object */
    return rc;
}

static void saved_free(struct saved *s)
{
    msgpack_unpacked_destroy(&s->u);
    msgpack_sbuffer_destroy(&s->sb);
}

static uint64_t pos_u64(const struct saved *s, const char *key)
{
    const msgpack_object *m = &s->u.data;
    for (uint32_t i = 0; m->type == MSGPACK_OBJECT_MAP && i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            !memcmp(kv->key.via.str.ptr, key, strlen(key)) &&
            kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return kv->val.via.u64;
    }
    return UINT64_MAX;
}

/* Pump a source until it has ended. */
static void drain(struct ink_node *n)
{
    for (int guard = 0; guard < 1000; guard++)
        if (n->src->pump(n, 64) == -1) return;
    CHECK_MSG(0, "source %s did not end", n->name);
}

static const char lines[] = "{\"x\":[1],\"t\":1}\n"
                            "{\"x\":[22],\"t\":2}\n"
                            "{\"x\":[333],\"t\":3}\n"
                            "{\"x\":[4444],\"t\":4}\n"
                            "{\"x\":[55555],\"t\":5}\n";

static const char graph[] = "sources:\n  src: {type: file, path: in.jsonl}\n"
                            "sinks:\n  out: {type: file, path: out.jsonl, append: true, "
                            "inputs: [src]}\n";

TEST(file_source_offset_save_restore)
{
    setup("src");
    write_file("in.jsonl", lines);
    struct ink_config cfg = {0};
    REQUIRE(load(&cfg, graph) == 0);
    struct ink_err err = {0};
    struct ink_graph *g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    struct ink_node *src = &g->nodes[0];
    CHECK(src->src->save && src->src->restore);
    CHECK(src->src->pump(src, 2) == 2);
    struct saved u;
    REQUIRE(save_pos(src, &u) == 0);
    uint64_t first_two = strlen("{\"x\":[1],\"t\":1}\n{\"x\":[22],\"t\":2}\n");
    CHECK_MSG(pos_u64(&u, "offset") == first_two, "offset %llu, want %llu",
              (unsigned long long)pos_u64(&u, "offset"), (unsigned long long)first_two);
    ink_graph_free(g);

    /* a fresh graph restored from it reads the last three records only */
    g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    src = &g->nodes[0];
    struct ink_err e = {0};
    CHECK(src->src->restore(src, &u.u.data, &e) == 0);
    drain(src);
    CHECK_MSG(src->c.in == 3, "%llu records after the restore", (unsigned long long)src->c.in);
    ink_graph_free(g);
    saved_free(&u);

    /* a position that is not a record boundary, or past the end, is refused */
    static const char *const bad[] = {"{\"offset\": 3}", "{\"offset\": 100000}", "{}",
                                      "{\"offset\": -1}"};
    for (int i = 0; i < 4; i++) {
        g = NULL;
        REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
        src = &g->nodes[0];
        /* the position as msgpack, from its JSON spelling */
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (i == 0 || i == 1) {
            msgpack_pack_map(&pk, 1);
            msgpack_pack_str(&pk, 6);
            msgpack_pack_str_body(&pk, "offset", 6);
            msgpack_pack_uint64(&pk, i == 0 ? 3 : 100000);
        } else if (i == 2) {
            msgpack_pack_map(&pk, 0);
        } else {
            msgpack_pack_map(&pk, 1);
            msgpack_pack_str(&pk, 6);
            msgpack_pack_str_body(&pk, "offset", 6);
            msgpack_pack_int64(&pk, -1);
        }
        msgpack_unpacked b;
        msgpack_unpacked_init(&b);
        size_t off = 0;
        REQUIRE(msgpack_unpack_next(&b, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
        e = (struct ink_err){0};
        CHECK_MSG(src->src->restore(src, &b.data, &e) == INK_ESTATE, "%s accepted", bad[i]);
        CHECK(e.msg[0] != 0);
        msgpack_unpacked_destroy(&b);
        msgpack_sbuffer_destroy(&sb);
        ink_graph_free(g);
    }
    ink_config_free(&cfg);
    cleanup();
}

TEST(file_sink_length_save_restore)
{
    setup("snk");
    write_file("in.jsonl", lines);
    struct ink_config cfg = {0};
    REQUIRE(load(&cfg, graph) == 0);
    struct ink_err err = {0};

    /* the uninterrupted run, for reference */
    struct ink_graph *g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    CHECK(ink_graph_run(g) == 0);
    ink_graph_free(g);
    size_t want_len = 0;
    char *want = read_all("out.jsonl", &want_len);
    REQUIRE(want && want_len > 0);
    char p[512];
    path_of(p, sizeof p, "out.jsonl");
    unlink(p);

    /* two records, then sync and save: the length is what is on disk */
    g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    struct ink_node *src = &g->nodes[0], *out = &g->nodes[1];
    CHECK(out->snk->sync && out->snk->save && out->snk->restore);
    CHECK(src->src->pump(src, 2) == 2);
    struct ink_err e = {0};
    CHECK(out->snk->sync(out, &e) == 0);
    struct saved su, ku;
    REQUIRE(save_pos(src, &su) == 0);
    REQUIRE(save_pos(out, &ku) == 0);
    size_t len2 = 0;
    char *two = read_all("out.jsonl", &len2);
    CHECK_MSG(pos_u64(&ku, "offset") == len2 && len2 > 0, "saved %llu, file %zu",
              (unsigned long long)pos_u64(&ku, "offset"), len2);
    CHECK(pos_u64(&ku, "seen") == 2 && pos_u64(&ku, "is_file") == 1);
    CHECK(len2 < want_len && memcmp(two, want, len2) == 0);
    free(two);
    /* the run goes on past the save point (output a restore must cut) */
    drain(src);
    ink_graph_free(g);

    /* restore: the sink is cut back to the saved length, the source resumes,
     * and the output is byte for byte the uninterrupted one */
    g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    src = &g->nodes[0], out = &g->nodes[1];
    e = (struct ink_err){0};
    CHECK(src->src->restore(src, &su.u.data, &e) == 0);
    CHECK_MSG(out->snk->restore(out, &ku.u.data, &e) == 0, "%s", e.msg);
    struct stat st;
    CHECK(stat(p, &st) == 0 && (size_t)st.st_size == len2);
    CHECK(ink_graph_run(g) == 0);
    ink_graph_free(g);
    size_t got_len = 0;
    char *got = read_all("out.jsonl", &got_len);
    CHECK_MSG(got && got_len == want_len && memcmp(got, want, want_len) == 0,
              "resumed output differs:\n%s\nwant:\n%s", got ? got : "(none)", want);
    free(got);

    /* an output shorter than the saved length is refused, and left alone */
    CHECK(truncate(p, 5) == 0);
    g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    out = &g->nodes[1];
    e = (struct ink_err){0};
    CHECK(out->snk->restore(out, &ku.u.data, &e) == INK_ESTATE);
    CHECK_MSG(strstr(e.msg, "shorter") != NULL, "%s", e.msg);
    CHECK(stat(p, &st) == 0 && st.st_size == 5);
    ink_graph_free(g);

    saved_free(&su);
    saved_free(&ku);
    free(want);
    ink_config_free(&cfg);
    cleanup();
}

/* The test-only source (tests/src_testfd.c) through the real loop: its fd
 * joins zmq_poll beside nothing else, every line arrives in order, a bad
 * line is rejected, its position goes through a snapshot and back. */
TEST(fd_source_polled_and_restored)
{
    setup("fd");
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const char in[] = "1.5\n2.5\nnope\n4\n5"; /* the last line has no newline */
    REQUIRE(write(fds[1], in, sizeof in - 1) == (ssize_t)(sizeof in - 1));
    close(fds[1]); /* end of file after these */
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "engine: {snapshot: {dir: snap, every: 0}}\n"
             "sources:\n  p: {type: testfd, fd: %d}\n"
             "sinks:\n  out: {type: file, path: out.jsonl, inputs: [p]}\n",
             fds[0]);
    struct ink_config cfg = {0};
    REQUIRE(load(&cfg, yaml) == 0);
    struct ink_err err = {0};
    struct ink_graph *g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    CHECK(ink_graph_run(g) == 0); /* ends at the pipe's end; final snapshot */
    CHECK(g->nodes[0].c.in == 5 && g->nodes[0].c.rejected[INK_REJ_DECODE] == 1);
    CHECK(g->snap_count == 1);
    ink_graph_free(g);
    char *out = read_all("out.jsonl", NULL);
    CHECK_MSG(out && !strcmp(out, "{\"t\":1,\"x\":[1.5]}\n{\"t\":2,\"x\":[2.5]}\n"
                                  "{\"t\":4,\"x\":[4]}\n{\"t\":5,\"x\":[5]}\n"),
              "%s", out ? out : "(none)");
    free(out);

    /* --restore: a new pipe on the same fd number (the same config); the
     * source resumes at line 6 (its saved position) and the sequence at 5 */
    int again[2];
    REQUIRE(pipe(again) == 0);
    REQUIRE(dup2(again[0], fds[0]) == fds[0]);
    close(again[0]);
    REQUIRE(write(again[1], "6\n", 2) == 2);
    close(again[1]);
    struct ink_snap *s = NULL;
    REQUIRE(ink_snapshot_read(&cfg, &s, &err) == 0);
    g = NULL;
    CHECK_MSG(ink_graph_build_restore(&g, &cfg, s, &err) == 0, "%s", err.msg);
    CHECK(ink_graph_run(g) == 0);
    CHECK(g->nodes[0].c.in == 6 && g->nodes[0].seq == 6);
    ink_graph_free(g);
    ink_snapshot_free(s);
    close(fds[0]);
    out = read_all("out.jsonl", NULL);
    CHECK_MSG(out && !strcmp(out, "{\"t\":1,\"x\":[1.5]}\n{\"t\":2,\"x\":[2.5]}\n"
                                  "{\"t\":4,\"x\":[4]}\n{\"t\":5,\"x\":[5]}\n"
                                  "{\"t\":6,\"x\":[6]}\n"),
              "%s", out ? out : "(none)");
    free(out);
    ink_config_free(&cfg);
    cleanup();
}

/* A port on 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &l)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* GET path from 127.0.0.1:port: the whole response (status line, headers,
 * body) into buf. The server closes the connection (HTTP/1.0). */
static int http_get(int port, const char *path, char *buf, size_t n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {10, 0}; /* a deadline, never a wait for a condition */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char req[256];
    int k = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    if (write(fd, req, (size_t)k) != k) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    for (ssize_t r; got + 1 < n && (r = read(fd, buf + got, n - 1 - got)) > 0;) got += (size_t)r;
    buf[got] = 0;
    close(fd);
    return 0;
}

/* A transport's ready hook decides /ready (503 with its reason), and its
 * metrics hook adds lines to /metrics; both published by the main loop. */
TEST(transport_ready_and_metrics_hooks)
{
    setup("http");
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    int port = free_port();
    REQUIRE(port > 0);
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "engine: {http: {listen: \"127.0.0.1:%d\"}}\n"
             "sources:\n  p: {type: testfd, fd: %d}\n"
             "sinks:\n  out: {type: file, path: out.jsonl, inputs: [p]}\n",
             port, fds[0]);
    struct ink_config cfg = {0};
    REQUIRE(load(&cfg, yaml) == 0);
    struct ink_err err = {0};
    struct ink_graph *g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    ink_metrics_publish_ready(g); /* sources open: now only the hook says no */
    static char resp[1 << 16];
    REQUIRE(http_get(port, "/ready", resp, sizeof resp) == 0);
    CHECK_MSG(strstr(resp, " 503 ") && strstr(resp, "not ready: p: no line read yet"), "%s", resp);
    REQUIRE(http_get(port, "/metrics", resp, sizeof resp) == 0);
    CHECK_MSG(strstr(resp, "inkflow_testfd_lines{node=\"p\"} 0\n"), "%s", resp);

    /* one line read, published: ready, and the count moves */
    REQUIRE(write(fds[1], "7\n", 2) == 2);
    struct ink_node *p = &g->nodes[0];
    CHECK(p->src->pump(p, 8) == 1);
    ink_metrics_publish(g);
    REQUIRE(http_get(port, "/ready", resp, sizeof resp) == 0);
    CHECK_MSG(strstr(resp, " 200 ") && strstr(resp, "ready"), "%s", resp);
    REQUIRE(http_get(port, "/metrics", resp, sizeof resp) == 0);
    CHECK_MSG(strstr(resp, "inkflow_testfd_lines{node=\"p\"} 1\n"), "%s", resp);
    ink_graph_free(g);
    close(fds[0]);
    close(fds[1]);
    ink_config_free(&cfg);
    cleanup();
}

/* Two nodes of one transport print the same families: /metrics holds each
 * family's HELP and TYPE once, its samples together (the text format's
 * rule; Prometheus refuses a scrape with a family split or declared twice). */
TEST(two_nodes_of_one_transport_one_family_each)
{
    setup("fam");
    int a[2], b[2], o1[2], o2[2], k1[2], k2[2];
    REQUIRE(pipe(a) == 0 && pipe(b) == 0 && pipe(o1) == 0 && pipe(o2) == 0 && pipe(k1) == 0 &&
            pipe(k2) == 0);
    int port = free_port();
    REQUIRE(port > 0);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "engine: {http: {listen: \"127.0.0.1:%d\"}}\n"
             "sources:\n  p: {type: testfd, fd: %d}\n  q: {type: testfd, fd: %d}\n"
             "sinks:\n  s1: {type: testfd, fd: %d, ack_fd: %d, inputs: [p]}\n"
             "  s2: {type: testfd, fd: %d, ack_fd: %d, inputs: [q]}\n",
             port, a[0], b[0], o1[1], k1[0], o2[1], k2[0]);
    struct ink_config cfg = {0};
    REQUIRE(load(&cfg, yaml) == 0);
    struct ink_err err = {0};
    struct ink_graph *g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    ink_metrics_publish_ready(g);
    static char resp[1 << 16];
    REQUIRE(http_get(port, "/metrics", resp, sizeof resp) == 0);
    const char *fams[] = {"inkflow_testfd_lines", "inkflow_testfd_acks"};
    const char *nodes[2][2] = {{"p", "q"}, {"s1", "s2"}};
    for (int f = 0; f < 2; f++) {
        char help[128], s0[128], s1[128];
        snprintf(help, sizeof help, "# HELP %s ", fams[f]);
        const char *h = strstr(resp, help);
        CHECK_MSG(h && !strstr(h + 1, help), "%s: HELP once\n%s", fams[f], resp);
        snprintf(help, sizeof help, "# TYPE %s ", fams[f]);
        const char *ty = strstr(resp, help);
        CHECK_MSG(ty && !strstr(ty + 1, help), "%s: TYPE once\n%s", fams[f], resp);
        snprintf(s0, sizeof s0, "\n%s{node=\"%s\"} 0\n", fams[f], nodes[f][0]);
        snprintf(s1, sizeof s1, "%s{node=\"%s\"} 0\n", fams[f], nodes[f][1]);
        const char *x = strstr(resp, s0);
        /* the second node's sample right after the first's: one group */
        CHECK_MSG(ty && x && x > ty && !strncmp(x + strlen(s0), s1, strlen(s1)), "%s grouped\n%s",
                  fams[f], resp);
    }
    ink_graph_free(g);
    int all[] = {a[0], a[1], b[0], b[1], o1[0], o1[1], o2[0], o2[1], k1[0], k1[1], k2[0], k2[1]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) close(all[i]);
    ink_config_free(&cfg);
    cleanup();
}

/* A sink's pollitem joins the loop's poll set and its service hook runs
 * when that fd is ready: acknowledgements waiting on the ack pipe are read
 * while the records flow (tests/src_testfd.c, sink). */
TEST(sink_pollitem_serviced_by_the_loop)
{
    setup("snkpoll");
    write_file("in.jsonl", lines);
    int out[2], ack[2];
    REQUIRE(pipe(out) == 0 && pipe(ack) == 0);
    REQUIRE(write(ack[1], "abc", 3) == 3); /* three acknowledgements waiting */
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "sources:\n  src: {type: file, path: in.jsonl}\n"
             "sinks:\n  k: {type: testfd, fd: %d, ack_fd: %d, inputs: [src]}\n",
             out[1], ack[0]);
    struct ink_config cfg = {0};
    REQUIRE(load(&cfg, yaml) == 0);
    struct ink_err err = {0};
    struct ink_graph *g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    CHECK(ink_graph_run(g) == 0);
    struct ink_node *k = &g->nodes[1];
    CHECK(k->c.out == 5 && k->c.dropped == 0);
    struct ink_buf m = {0};
    k->snk->metrics(k, &m); /* the sink's own count of what service read */
    ink_buf_append(&m, "", 1);
    CHECK_MSG(strstr((const char *)m.p, "inkflow_testfd_acks{node=\"k\"} 3\n"), "%s",
              (const char *)m.p);
    ink_buf_fini(&m);
    ink_graph_free(g);
    char got[256] = {0};
    CHECK(read(out[0], got, sizeof got - 1) > 0);
    CHECK_MSG(!strcmp(got, "1\n22\n333\n4444\n55555\n"), "%s", got);
    close(out[0]), close(out[1]), close(ack[0]), close(ack[1]);
    ink_config_free(&cfg);
    cleanup();
}

/* A sink whose output fails to sync (fdatasync on a pipe: EINVAL): the
 * snapshot fails, and every later one is refused too, even if a later
 * fdatasync would succeed (the kernel reports a lost writeback once); the run
 * ends non-zero and no snapshot file claims the output. */
TEST(a_failed_output_sync_fails_every_later_snapshot)
{
    setup("lostsync");
    write_file("in.jsonl", lines);
    int out[2], ack[2];
    REQUIRE(pipe(out) == 0 && pipe(ack) == 0);
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "engine: {snapshot: {dir: snap, every: 0, every_records: 2}}\n"
             "sources:\n  src: {type: file, path: in.jsonl}\n"
             "sinks:\n  k: {type: testfd, fd: %d, ack_fd: %d, durable: true, inputs: [src]}\n",
             out[1], ack[0]);
    struct ink_config cfg = {0};
    REQUIRE(load(&cfg, yaml) == 0);
    struct ink_err err = {0};
    struct ink_graph *g = NULL;
    REQUIRE(ink_graph_build(&g, &cfg, &err) == 0);
    CHECK(ink_graph_run(g) != 0); /* the last (final) snapshot failed */
    CHECK(g->snap_count == 0);
    CHECK_MSG(g->snap_failed >= 2, "%llu", (unsigned long long)g->snap_failed);
    CHECK(g->snap_lost == 2); /* 1 + the sink's node index */
    CHECK_MSG(strstr(g->snap_error, "an earlier sync of its output failed"), "%s", g->snap_error);
    CHECK(g->nodes[1].c.out == 5);
    ink_graph_free(g);
    CHECK(access("snap/graph.snap", F_OK) != 0);
    close(out[0]), close(out[1]), close(ack[0]), close(ack[1]);
    ink_config_free(&cfg);
    cleanup();
}

/* Every registered node type is a descriptor with its required hooks. */
TEST(registry_descriptors_complete)
{
    int ns = 0, nk = 0;
    for (int i = 0; ink_source_types[i]; i++, ns++) {
        const struct ink_source_type *t = ink_source_of(ink_source_types[i]);
        REQUIRE(t != NULL);
        CHECK_MSG(t->open && t->pollitem && t->pump && t->close, "source %s", t->type.name);
        CHECK(!t->save == !t->restore);
        CHECK(t->type.params && t->type.conf_size > 0 && t->type.summary);
        CHECK(ink_node_type_find(INK_NODE_SOURCE, t->type.name) == &t->type);
    }
    for (int i = 0; ink_sink_types[i]; i++, nk++) {
        const struct ink_sink_type *t = ink_sink_of(ink_sink_types[i]);
        REQUIRE(t != NULL);
        CHECK_MSG(t->open && t->write && t->flush && t->finish && t->close, "sink %s",
                  t->type.name);
        CHECK(!t->save == !t->restore);
        CHECK(!t->pollitem == !t->service);
        CHECK(t->type.params && t->type.conf_size > 0 && t->type.summary);
        CHECK(ink_node_type_find(INK_NODE_SINK, t->type.name) == &t->type);
    }
    CHECK(ns >= 2 && nk >= 2);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
