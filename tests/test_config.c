/* engine/config.c and engine/param.c: golden diagnostics (exact text with
 * line:col) for broken configs, and the values, defaults, node order and
 * topological order of valid ones; the loader survives mutated input.
 *
 * Golden files: tests/golden/config/NAME.yaml and NAME.expected (what
 * ink_diags_print prints, with the path "NAME.yaml"). INK_GOLDEN_UPDATE=1
 * rewrites the .expected files from the current output (review the diff). */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>

#include "../engine/config.h"
#include "../engine/config_impl.h"
#include "../engine/path.h"
#include "../engine/rng.h"
#include "../engine/transport.h"
#include "../transports/file_io.h"
#include "../transports/zmq_util.h"
#include "ink_test.h"

/* The descriptors of transports/zmq.c and transports/file.c. */
extern const struct ink_source_type ink_source_zmq, ink_source_file;
extern const struct ink_sink_type ink_sink_file;

/* An operator with a declared memory bound taken from its conf, so the
 * memory-limit check can be tested before the real operators land. */
struct memop_conf {
    uint64_t bytes;
    int64_t seed;
    struct ink_f64_list weights;
    struct ink_f64_lists arms;
    struct ink_kernel_like {
        bool set;
        int type;
        double sigma;
    } kernel;
    struct ink_strings names;
    struct ink_strmap props;
};

static const char *const memop_kernels[] = {"gaussian", "laplacian", NULL};
static const struct ink_param memop_kernel_params[] = {
    {.name = "type",
     .type = INK_P_ENUM,
     .offset = offsetof(struct ink_kernel_like, type),
     .def = "gaussian",
     .choices = memop_kernels,
     .help = "kernel"},
    {.name = "sigma",
     .type = INK_P_DOUBLE,
     .offset = offsetof(struct ink_kernel_like, sigma),
     .def = "1.0",
     .min = 1e-12,
     .max = 1e12,
     .help = "length scale"},
    {0},
};
static const struct ink_param memop_params[] = {
    {.name = "bytes",
     .type = INK_P_SIZE,
     .offset = offsetof(struct memop_conf, bytes),
     .def = "1MiB",
     .min = 0,
     .max = 1e15,
     .help = "declared memory bound"},
    {.name = "seed",
     .type = INK_P_INT,
     .offset = offsetof(struct memop_conf, seed),
     .def = "-1",
     .min = -1,
     .max = 1e18,
     .help = "repeats the engine-level key"},
    {.name = "weights",
     .type = INK_P_F64_LIST,
     .offset = offsetof(struct memop_conf, weights),
     .def = "[1, 2.5]",
     .min = -10,
     .max = 10,
     .len_min = 1,
     .len_max = 4,
     .help = "weights"},
    {.name = "arms",
     .type = INK_P_F64_LISTS,
     .offset = offsetof(struct memop_conf, arms),
     .help = "arm set"},
    {.name = "kernel",
     .type = INK_P_OBJECT,
     .offset = offsetof(struct memop_conf, kernel),
     .sub = memop_kernel_params,
     .help = "kernel"},
    {.name = "names",
     .type = INK_P_STRINGS,
     .offset = offsetof(struct memop_conf, names),
     .len_min = 1,
     .len_max = 3,
     .help = "a string or a list of strings"},
    {.name = "props",
     .type = INK_P_STRMAP,
     .offset = offsetof(struct memop_conf, props),
     .help = "names to values, as written"},
    {0},
};
static size_t memop_bound(const void *conf)
{
    return ((const struct memop_conf *)conf)->bytes;
}
static int memop_check(const void *conf, struct ink_err *err)
{
    const struct memop_conf *c = conf;
    if (c->arms.n == 1) return ink_err_set(err, INK_EINVAL, "give no arms or at least two");
    return 0;
}
static const struct ink_op_vtable memop = {
    .name = "testop_mem",
    .kind = INK_NODE_OPERATOR,
    .summary = "test operator with a configurable memory bound",
    .params = memop_params,
    .conf_size = sizeof(struct memop_conf),
    .state_size = 1,
    .check = memop_check,
    .mem_bound = memop_bound,
};
static const struct ink_op_vtable *const test_ops[] = {&memop, NULL};

__attribute__((constructor)) static void register_test_ops(void)
{
    ink__config_test_ops(test_ops);
}

static double test_scale(void)
{
    const char *s = getenv("INK_TEST_SCALE");
    double v = s ? atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

static char *golden_dir(void)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    strncat(dir, "/golden/config", sizeof dir - strlen(dir) - 1);
    return dir;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (n + 4096 + 1) * 2;
            buf = realloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* Diagnostics of one buffer as printed, in a malloc'd string. */
static char *diag_text(const char *name, const char *buf, size_t len, int *rc)
{
    struct ink_config cfg;
    struct ink_diags d = {0};
    *rc = ink_config_load_buf(name, buf, len, &cfg, &d);
    char *out = NULL;
    size_t olen = 0;
    FILE *m = open_memstream(&out, &olen);
    ink_diags_print(&d, name, m);
    fclose(m);
    ink_diags_free(&d);
    if (*rc == 0) ink_config_free(&cfg);
    return out;
}

TEST(golden_diagnostics)
{
    const char *dir = golden_dir();
    DIR *dp = opendir(dir);
    REQUIRE(dp != NULL);
    bool update = getenv("INK_GOLDEN_UPDATE") != NULL;
    int cases = 0;
    struct dirent *de;
    while ((de = readdir(dp))) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".yaml")) continue;
        char ypath[4400], epath[4400], base[256];
        snprintf(ypath, sizeof ypath, "%s/%s", dir, de->d_name);
        snprintf(base, sizeof base, "%.*s", (int)(nl - 5), de->d_name);
        snprintf(epath, sizeof epath, "%s/%s.expected", dir, base);
        size_t len;
        char *buf = slurp(ypath, &len);
        REQUIRE(buf != NULL);
        int rc;
        char *got = diag_text(de->d_name, buf, len, &rc);
        CHECK_MSG(rc != 0, "%s loaded without error", de->d_name);
        CHECK_MSG(got && *got, "%s: no diagnostics", de->d_name);
        if (update) {
            FILE *f = fopen(epath, "w");
            fputs(got, f);
            fclose(f);
        } else {
            char *want = slurp(epath, NULL);
            CHECK_MSG(want != NULL, "missing %s", epath);
            if (want && strcmp(want, got))
                CHECK_MSG(0, "%s differs\n--- expected\n%s--- got\n%s", de->d_name, want, got);
            free(want);
        }
        free(got);
        free(buf);
        cases++;
    }
    closedir(dp);
    CHECK(cases >= 15);
}

/* The golden cases the issue names, with their exact positions, checked
 * here too so a careless INK_GOLDEN_UPDATE cannot lose them. */
TEST(golden_positions)
{
    struct {
        const char *file, *needle;
    } want[] = {
        {"unknown_key.yaml", "unknown_key.yaml:6:5: error: operators.p.inptus: unknown key (did "
                             "you mean 'inputs'?)"},
        {"bad_range.yaml", "bad_range.yaml:5:10: error: sources.in.hwm: 0 is out of range (must "
                           "be in [1, 100000000])"},
        {"dangling_input.yaml", "dangling_input.yaml:4:35: error: operators.p.inputs: unknown "
                                "node 'reading' (did you mean 'readings'?)"},
        {"cycle.yaml", "cycle.yaml:4:39: error: operators.a.inputs: cycle: a -> b -> c -> a"},
        {"yaml_syntax.yaml", "yaml_syntax.yaml:4:"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", golden_dir(), want[i].file);
        size_t len;
        char *buf = slurp(path, &len);
        REQUIRE(buf != NULL);
        int rc;
        char *got = diag_text(want[i].file, buf, len, &rc);
        CHECK_MSG(strstr(got, want[i].needle) != NULL, "%s: want '%s' in\n%s", want[i].file,
                  want[i].needle, got);
        free(got);
        free(buf);
    }
}

static const char valid_yaml[] =
    "engine:\n"
    "  seed: 7\n"
    "  memory_limit: 512MiB\n"
    "  grace: 1m30s\n"
    "  progress: false\n"
    "  snapshot: {dir: ./state}\n"
    "sinks:\n"
    "  log: {type: file, path: \"-\", format: jsonl, inputs: [b, a]}\n"
    "  dl: {type: file, path: dead.jsonl}\n"
    "operators:\n"
    "  b: {type: passthrough, inputs: a}\n"
    "  a: {type: passthrough, inputs: [in, file_in], key_by: key, max_keys: 1e4,\n"
    "      on_new_key: evict, dead_letter: dl}\n"
    "  m: {type: testop_mem, inputs: [in], bytes: 1.5KiB, weights: 3, seed: 99,\n"
    "      arms: [[0, 1], [2, 3, 4]], kernel: {sigma: 2}}\n"
    "sources:\n"
    "  in: {type: zmq, socket: router, bind: \"ipc:///tmp/x\", reply_from: b,\n"
    "       max_message_bytes: 1M, linger: 250ms, dead_letter: dl}\n"
    "  file_in: {type: file, path: data/r.csv, rate: 1e3}\n";

TEST(valid_graph_nodes_topo_values)
{
    struct ink_config cfg;
    struct ink_diags d = {0};
    int rc = ink_config_load_buf("conf/graph.yaml", valid_yaml, sizeof valid_yaml - 1, &cfg, &d);
    if (rc) ink_diags_print(&d, "graph.yaml", stderr);
    REQUIRE(rc == 0 && d.n == 0);
    CHECK(!strcmp(cfg.base_dir, "conf"));
    CHECK(!strcmp(cfg.path, "conf/graph.yaml"));
    /* FNV-1a 64 of the bytes, computed here independently */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof valid_yaml - 1; i++)
        h = (h ^ (uint8_t)valid_yaml[i]) * 0x100000001b3ull;
    CHECK(cfg.hash == h);
    /* sources, then operators, then sinks, each in file order */
    const char *order[] = {"in", "file_in", "b", "a", "m", "log", "dl"};
    REQUIRE(cfg.nnodes == 7);
    for (int i = 0; i < 7; i++) CHECK_MSG(!strcmp(cfg.nodes[i].name, order[i]), "node %d", i);
    CHECK(cfg.nodes[0].kind == INK_NODE_SOURCE && cfg.nodes[2].kind == INK_NODE_OPERATOR &&
          cfg.nodes[6].kind == INK_NODE_SINK);
    CHECK(cfg.nodes[0].type == &ink_source_zmq.type && cfg.nodes[1].type == &ink_source_file.type);
    CHECK(cfg.nodes[2].type == ink_node_type_find(INK_NODE_OPERATOR, "passthrough"));
    CHECK(cfg.nodes[0].line == 17 && cfg.nodes[0].col == 3);
    /* inputs resolved with positions */
    const struct ink_node_conf *a = &cfg.nodes[3], *log = &cfg.nodes[5];
    REQUIRE(a->ninputs == 2 && log->ninputs == 2 && cfg.nodes[2].ninputs == 1);
    CHECK(a->input_idx[0] == 0 && a->input_idx[1] == 1);
    CHECK(cfg.nodes[2].input_idx[0] == 3);
    CHECK(log->input_idx[0] == 2 && log->input_idx[1] == 3);
    CHECK(a->input_line[1] == 12 && a->input_col[1] == 39);
    /* topological: the ready node of lowest index first */
    int topo[] = {0, 1, 3, 2, 4, 5, 6};
    for (int i = 0; i < 7; i++) CHECK_MSG(cfg.topo[i] == topo[i], "topo[%d] = %d", i, cfg.topo[i]);
    /* engine values and defaults */
    CHECK(cfg.engine.seed == 7);
    CHECK(cfg.engine.memory_limit == 512ull << 20);
    CHECK(cfg.engine.grace == 90.0);
    CHECK(cfg.engine.progress == 0);
    CHECK(cfg.engine.blas_threads == 1 && cfg.engine.max_dim == 1024 && cfg.engine.max_depth == 16);
    CHECK(cfg.engine.max_record_bytes == 65536);
    CHECK(cfg.engine.snapshot.set && !strcmp(cfg.engine.snapshot.dir, "./state"));
    CHECK(cfg.engine.snapshot.every == 10.0);
    CHECK(!cfg.engine.http.set && !strcmp(cfg.engine.http.listen, "127.0.0.1:9464"));
    /* operator common keys */
    CHECK(!strcmp(a->common.key_by, "key") && a->common.max_keys == 10000);
    CHECK(a->common.on_new_key == 1 && a->common.seed == -1);
    CHECK(!strcmp(a->dead_letter, "dl") && !strcmp(a->common.dead_letter, "dl"));
    CHECK(cfg.nodes[2].common.key_by == NULL && cfg.nodes[2].common.max_keys == 1);
    CHECK(cfg.nodes[2].dead_letter == NULL);
    /* transport values and defaults */
    const struct ink_zmq_conf *z = cfg.nodes[0].conf;
    CHECK(z->socket == INK_ZMQ_ROUTER && !strcmp(z->bind, "ipc:///tmp/x") && !z->connect);
    CHECK(z->max_message_bytes == 1048576 && z->linger == 0.25 && z->hwm == 10000);
    CHECK(!strcmp(z->subscribe, "") && !z->conflate && !strcmp(z->reply_from, "b"));
    CHECK(!strcmp(cfg.nodes[0].dead_letter, "dl"));
    const struct ink_file_src_conf *fs = cfg.nodes[1].conf;
    CHECK(!strcmp(fs->path, "data/r.csv") && fs->format == INK_FMT_AUTO && fs->rate == 1000.0);
    const struct ink_file_sink_conf *fk = cfg.nodes[5].conf;
    CHECK(fk->format == INK_FMT_JSONL && fk->every == 1 && fk->head == 0 && !fk->append);
    /* lists, list of lists, nested object */
    const struct memop_conf *mc = cfg.nodes[4].conf;
    CHECK(mc->bytes == 1536);
    CHECK(mc->seed == 99 && cfg.nodes[4].common.seed == 99); /* a repeated key feeds both */
    CHECK(mc->weights.n == 1 && mc->weights.v[0] == 3.0);
    REQUIRE(mc->arms.n == 2 && mc->arms.v[0].n == 2 && mc->arms.v[1].n == 3);
    CHECK(mc->arms.v[1].v[2] == 4.0);
    CHECK(mc->kernel.set && mc->kernel.sigma == 2.0 && mc->kernel.type == 0);
    ink_config_free(&cfg);
    ink_config_free(&cfg); /* idempotent on the zeroed struct */
    ink_diags_free(&d);
}

TEST(defaults_and_object_unset)
{
    struct memop_conf c;
    memset(&c, 0xff, sizeof c);
    memset(&c.weights, 0, sizeof c.weights);
    memset(&c.arms, 0, sizeof c.arms);
    memset(&c.names, 0, sizeof c.names);
    memset(&c.props, 0, sizeof c.props);
    struct ink_err err = {0};
    CHECK(ink_params_defaults(memop_params, &c, &err) == 0);
    CHECK(c.bytes == 1048576);
    REQUIRE(c.weights.n == 2);
    CHECK(c.weights.v[0] == 1.0 && c.weights.v[1] == 2.5);
    CHECK(c.arms.n == 0);
    CHECK(!c.kernel.set && c.kernel.sigma == 1.0 && c.kernel.type == 0);
    ink_params_free(memop_params, &c);
    CHECK(c.weights.v == NULL && c.weights.n == 0);
    struct ink_engine_conf e = {0};
    CHECK(ink_params_defaults(ink_engine_params, &e, &err) == 0);
    CHECK(e.seed == 42 && e.memory_limit == 1ull << 30 && e.grace == 5.0 && e.progress == 1);
    CHECK(e.snapshot.every == 10.0 && !e.snapshot.set && e.snapshot.dir == NULL);
    ink_params_free(ink_engine_params, &e);
    struct ink_engine_conf zero = {0};
    ink_params_free(ink_engine_params, &zero); /* safe on a zeroed conf */
    /* a default that does not parse is reported, not crashed on */
    static const struct ink_param bad[] = {
        {.name = "n", .type = INK_P_INT, .offset = 0, .def = "ten", .help = "x"}, {0}};
    int64_t n;
    CHECK(ink_params_defaults(bad, &n, &err) == INK_EINVAL);
    CHECK(strstr(err.msg, "default of 'n'") != NULL);
}

/* Load "engine: {KEY: VALUE}" plus a minimal graph; return the engine. */
static int engine_value(const char *kv, struct ink_engine_conf *out, char *msg, size_t msglen)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "engine: {%s}\nsources: {in: {type: file, path: x.csv}}\n"
                     "sinks: {out: {type: file, path: \"-\", inputs: [in]}}\n",
                     kv);
    struct ink_config cfg;
    struct ink_diags d = {0};
    int rc = ink_config_load_buf("e.yaml", buf, (size_t)n, &cfg, &d);
    if (msg) snprintf(msg, msglen, "%s", d.n ? d.v[0].msg : "");
    if (rc == 0) {
        *out = cfg.engine;
        /* keep the plain values; release the strings */
        out->snapshot.dir = NULL;
        out->http.listen = NULL;
        ink_config_free(&cfg);
    }
    ink_diags_free(&d);
    return rc;
}

TEST(size_parsing)
{
    struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {
        {"4096", 4096},
        {"4096B", 4096},
        {"64KiB", 65536},
        {"64kib", 65536},
        {"64K", 65536},
        {"64k", 65536},
        {"2MiB", 2097152},
        {"2M", 2097152},
        {"3GiB", 3221225472ull},
        {"1G", 1073741824ull},
        {"1TiB", 1099511627776ull},
        {"5KB", 5000},
        {"5MB", 5000000},
        {"2GB", 2000000000ull},
        {"1.5KiB", 1536},
        {"1.3KiB", 1331}, /* 1331.2 rounds down */
        {"\"10 MiB\"", 10485760},
        {"1e6", 1000000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char kv[128], msg[600];
        snprintf(kv, sizeof kv, "max_record_bytes: 64, memory_limit: %s", ok[i].text);
        struct ink_engine_conf e;
        int rc = engine_value(kv, &e, msg, sizeof msg);
        CHECK_MSG(rc == 0, "%s: %s", ok[i].text, msg);
        if (rc == 0)
            CHECK_MSG(e.memory_limit == ok[i].bytes, "%s -> %llu", ok[i].text,
                      (unsigned long long)e.memory_limit);
    }
    const char *bad[] = {"12XB", "-5",    "KiB",  "1.5.5MiB", "10 parsecs",
                         "[1]",  "1KiB2", ".inf", "0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char kv[128], msg[600];
        snprintf(kv, sizeof kv, "memory_limit: %s", bad[i]);
        struct ink_engine_conf e;
        CHECK_MSG(engine_value(kv, &e, msg, sizeof msg) != 0, "%s accepted", bad[i]);
        CHECK_MSG(strstr(msg, "engine.memory_limit") != NULL, "%s: %s", bad[i], msg);
    }
}

TEST(duration_parsing)
{
    struct {
        const char *text;
        double s;
    } ok[] = {
        {"10", 10},    {"2.5", 2.5},  {"10s", 10},      {"500ms", 0.5},    {"2m", 120},
        {"1h", 3600},  {"1m30s", 90}, {"59m59s", 3599}, {"250us", 250e-6}, {"100ns", 100e-9},
        {"\"3s\"", 3}, {"0", 0},      {"1.5m", 90},     {"1e2", 100},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char kv[128], msg[600];
        snprintf(kv, sizeof kv, "grace: %s", ok[i].text);
        struct ink_engine_conf e;
        int rc = engine_value(kv, &e, msg, sizeof msg);
        CHECK_MSG(rc == 0, "%s: %s", ok[i].text, msg);
        if (rc == 0) CHECK_NEAR(e.grace, ok[i].s, 1e-12 * (1 + ok[i].s));
    }
    const char *bad[] = {"-1s", "10M", "5 parsecs", "s", "1.5.2s", "3601", "2h", "10sms", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char kv[128], msg[600];
        snprintf(kv, sizeof kv, "grace: %s", bad[i]);
        struct ink_engine_conf e;
        CHECK_MSG(engine_value(kv, &e, msg, sizeof msg) != 0, "%s accepted", bad[i]);
        CHECK_MSG(strstr(msg, "engine.grace") != NULL, "%s: %s", bad[i], msg);
    }
}

TEST(scalar_types)
{
    struct ink_engine_conf e;
    char msg[600];
    CHECK(engine_value("seed: -9223372036854775808", &e, msg, sizeof msg) == 0 &&
          e.seed == INT64_MIN);
    CHECK(engine_value("seed: 0x10", &e, msg, sizeof msg) == 0 && e.seed == 16);
    CHECK(engine_value("seed: 9223372036854775808", &e, msg, sizeof msg) != 0);
    CHECK(engine_value("seed: 1.5", &e, msg, sizeof msg) != 0 &&
          strstr(msg, "expected an integer, got '1.5'"));
    CHECK(engine_value("seed: \"5\"", &e, msg, sizeof msg) != 0 &&
          strstr(msg, "the quoted string '5'"));
    CHECK(engine_value("progress: True", &e, msg, sizeof msg) == 0 && e.progress == 1);
    CHECK(engine_value("progress: yes", &e, msg, sizeof msg) != 0 &&
          strstr(msg, "expected true or false"));
    CHECK(engine_value("seed: ~", &e, msg, sizeof msg) == 0 && e.seed == 42); /* null = default */
    CHECK(engine_value("max_depth: 64", &e, msg, sizeof msg) == 0 && e.max_depth == 64);
    CHECK(engine_value("max_depth: 65", &e, msg, sizeof msg) != 0 &&
          !strcmp(msg, "engine.max_depth: 65 is out of range (must be in [1, 64])"));
    CHECK(engine_value("http: {listen: \"0.0.0.0:80\"}", &e, msg, sizeof msg) == 0 && e.http.set);
    CHECK(engine_value("http: {listen: \"0.0.0.0:99999\"}", &e, msg, sizeof msg) != 0);
    CHECK(engine_value("snapshot: {}", &e, msg, sizeof msg) != 0 &&
          strstr(msg, "missing required key 'dir'"));
}

TEST(lists_and_ranges)
{
    static const char tmpl[] = "sources: {in: {type: file, path: x.csv}}\n"
                               "operators: {m: {type: testop_mem, inputs: [in], %s}}\n"
                               "sinks: {out: {type: file, path: \"-\", inputs: [m]}}\n";
    struct {
        const char *kv, *err; /* err NULL = valid */
    } cases[] = {
        {"weights: [1, -2, 3.5, 10]", NULL},
        {"weights: [1, 2, 3, 4, 5]", "operators.m.weights: 5 values given, expected 1 to 4"},
        {"weights: []", "operators.m.weights: 0 values given, expected 1 to 4"},
        {"weights: [1, 11]", "operators.m.weights[1]: 11 is out of range (must be in [-10, 10])"},
        {"weights: [1, .nan]", "operators.m.weights[1]: .nan is not a finite number"},
        {"weights: [1, x]", "operators.m.weights[1]: expected a number, got 'x'"},
        {"weights: {a: 1}",
         "operators.m.weights: expected a number or a list of numbers, got a map"},
        {"arms: [[1, 2], [3]]", NULL},
        {"arms: [[1, 2]]", "operators.m: give no arms or at least two"},
        {"arms: [1, 2]", NULL},
        {"arms: 3", "operators.m.arms: expected a list of lists of numbers, got a plain scalar"},
        {"arms: [[1], []]", "operators.m.arms[1]: empty list"},
        {"kernel: {type: laplacian, sigma: 0}",
         "operators.m.kernel.sigma: 0 is out of range (must be in [1e-12, 1e12])"},
        {"kernel: {typ: gaussian}", "operators.m.kernel.typ: unknown key (did you mean 'type'?)"},
        {"kernel: {type: gauss}",
         "operators.m.kernel.type: unknown value 'gauss' (expected one of: gaussian, laplacian)"},
        {"kernel: {type: gaussain}",
         "operators.m.kernel.type: unknown value 'gaussain' (did you mean 'gaussian'?)"},
        {"kernel: gaussian", "operators.m.kernel: expected a map of keys, got a plain scalar"},
        {"bytes: 1e16", "operators.m.bytes: 1e16 is out of range (must be in [0B, 909.49TiB])"},
        {"names: a", NULL},
        {"names: [a, \"b,c\", 3]", NULL},
        {"names: []", "operators.m.names: 0 strings given, expected 1 to 3"},
        {"names: [a, [b]]", "operators.m.names[1]: expected a string, got a list"},
        {"names: {a: b}", "operators.m.names: expected a string or a list of strings, got a map"},
        {"props: {}", NULL},
        {"props: {sasl.mechanisms: PLAIN, linger.ms: 5, \"x.y\": \"a b\"}", NULL},
        {"props: [a]", "operators.m.props: expected a map of names to values, got a list"},
        {"props: {a: [1]}", "operators.m.props.a: expected a scalar value, got a list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[1024];
        int n = snprintf(buf, sizeof buf, tmpl, cases[i].kv);
        struct ink_config cfg;
        struct ink_diags d = {0};
        int rc = ink_config_load_buf("l.yaml", buf, (size_t)n, &cfg, &d);
        if (!cases[i].err) {
            CHECK_MSG(rc == 0, "%s: %s", cases[i].kv, d.n ? d.v[0].msg : "");
            if (rc == 0) ink_config_free(&cfg);
        } else {
            CHECK_MSG(rc != 0 && d.n == 1 && !strcmp(d.v[0].msg, cases[i].err),
                      "%s: got %d diags, first '%s'", cases[i].kv, d.n, d.n ? d.v[0].msg : "");
        }
        ink_diags_free(&d);
    }
}

/* Strings and name/value maps keep what was written, in order. */
TEST(strings_and_maps)
{
    static const char y[] = "sources: {in: {type: file, path: x.csv}}\n"
                            "operators: {m: {type: testop_mem, inputs: [in], names: [a, \"b,c\"],\n"
                            "   props: {linger.ms: 5, sasl.password: \"p: w\"}}}\n"
                            "sinks: {out: {type: file, path: \"-\", inputs: [m]}}\n";
    struct ink_config cfg;
    struct ink_diags d = {0};
    REQUIRE(ink_config_load_buf("s.yaml", y, sizeof y - 1, &cfg, &d) == 0);
    const struct memop_conf *c = NULL;
    for (int i = 0; i < cfg.nnodes; i++)
        if (!strcmp(cfg.nodes[i].name, "m")) c = cfg.nodes[i].conf;
    REQUIRE(c != NULL);
    CHECK(c->names.n == 2 && !strcmp(c->names.v[0], "a") && !strcmp(c->names.v[1], "b,c"));
    CHECK(c->props.n == 2 && !strcmp(c->props.key[0], "linger.ms") &&
          !strcmp(c->props.val[0], "5") && !strcmp(c->props.key[1], "sasl.password") &&
          !strcmp(c->props.val[1], "p: w"));
    ink_config_free(&cfg);
    ink_diags_free(&d);
}

TEST(unknown_type_lists_the_registry)
{
    static const char y[] = "sources: {in: {type: file, path: x.csv}}\n"
                            "operators: {r: {type: gizmo, inputs: [in]}}\n"
                            "sinks: {out: {type: file, path: \"-\", inputs: [r]}}\n";
    struct ink_config cfg;
    struct ink_diags d = {0};
    CHECK(ink_config_load_buf("t.yaml", y, sizeof y - 1, &cfg, &d) == INK_EINVAL);
    REQUIRE(d.n == 1);
    CHECK(d.v[0].line == 2 && d.v[0].col == 23);
    CHECK(strstr(d.v[0].msg, "operators.r.type: unknown operator type 'gizmo' (operator types: "
                             "passthrough") == d.v[0].msg);
    /* every registered operator is offered, and found through the registry */
    for (int i = 0; ink_operators[i]; i++) {
        CHECK(strstr(d.v[0].msg, ink_operators[i]->name) != NULL);
        const struct ink_node_type *nt =
            ink_node_type_find(INK_NODE_OPERATOR, ink_operators[i]->name);
        CHECK(nt && nt->params == ink_operators[i]->params && nt->kind == INK_NODE_OPERATOR);
        CHECK(nt == &ink_operators[i]->type && ink_op_of(nt) == ink_operators[i]);
        CHECK(nt == ink_node_type_find(INK_NODE_OPERATOR, ink_operators[i]->name));
    }
    CHECK(ink_node_type_find(INK_NODE_SOURCE, "passthrough") == NULL);
    CHECK(ink_node_type_find(INK_NODE_SINK, "file") == &ink_sink_file.type);
    ink_diags_free(&d);
}

/* Every table the loader can meet is well formed: unique names, enums with
 * choices, objects with a sub-table, required keys without a default, and
 * every default parses and lies in its own range. Catches a bad `.def` in
 * any operator as soon as it is registered. */
static void check_table(const char *owner, const struct ink_param *t, size_t conf_size)
{
    for (int i = 0; t && t[i].name; i++) {
        const struct ink_param *p = &t[i];
        for (int j = 0; j < i; j++)
            CHECK_MSG(strcmp(t[j].name, p->name), "%s: key '%s' twice", owner, p->name);
        CHECK_MSG(p->help && *p->help, "%s.%s: no help", owner, p->name);
        CHECK_MSG(p->offset < conf_size || conf_size == 0, "%s.%s: offset past the conf", owner,
                  p->name);
        if (p->type == INK_P_ENUM) CHECK_MSG(p->choices && p->choices[0], "%s.%s", owner, p->name);
        if (p->type == INK_P_OBJECT) {
            CHECK_MSG(p->sub != NULL, "%s.%s: object without sub-table", owner, p->name);
            check_table(owner, p->sub, 0);
        }
        if (p->flags & INK_PF_REQUIRED)
            CHECK_MSG(!p->def, "%s.%s: required with a default", owner, p->name);
    }
    void *conf = calloc(1, conf_size ? conf_size : 4096);
    struct ink_err err = {0};
    int rc = ink_params_defaults(t, conf, &err);
    CHECK_MSG(rc == 0, "%s: %s", owner, err.msg);
    ink_params_free(t, conf);
    free(conf);
}

TEST(every_table_is_well_formed)
{
    check_table("engine", ink_engine_params, sizeof(struct ink_engine_conf));
    check_table("operator common", ink_op_common_params, sizeof(struct ink_op_common_conf));
    for (int i = 0; ink_source_types[i]; i++)
        check_table(ink_source_types[i]->name, ink_source_types[i]->params,
                    ink_source_types[i]->conf_size);
    for (int i = 0; ink_sink_types[i]; i++)
        check_table(ink_sink_types[i]->name, ink_sink_types[i]->params,
                    ink_sink_types[i]->conf_size);
    for (int i = 0; ink_operators[i]; i++) {
        check_table(ink_operators[i]->name, ink_operators[i]->params, ink_operators[i]->conf_size);
        /* an operator key that repeats an engine-level one receives the same
         * value, so it must have the same type */
        for (int j = 0; ink_operators[i]->params && ink_operators[i]->params[j].name; j++)
            for (int k = 0; ink_op_common_params[k].name; k++)
                if (!strcmp(ink_operators[i]->params[j].name, ink_op_common_params[k].name))
                    CHECK_MSG(ink_operators[i]->params[j].type == ink_op_common_params[k].type,
                              "%s.%s repeats an engine-level key with another type",
                              ink_operators[i]->name, ink_op_common_params[k].name);
    }
}

TEST(duplicate_keys_and_alias_bomb)
{
    static const char y[] = "sources: {in: {type: file, path: x.csv, path: y.csv, path: z.csv}}\n"
                            "sinks: {out: {type: file, path: \"-\", inputs: [in]}}\n";
    struct ink_config cfg;
    struct ink_diags d = {0};
    CHECK(ink_config_load_buf("t.yaml", y, sizeof y - 1, &cfg, &d) == INK_EINVAL);
    REQUIRE(d.n == 2);
    CHECK(!strcmp(d.v[0].msg, "duplicate key 'path' (first defined at 1:28)") && d.v[0].col == 41);
    CHECK(!strcmp(d.v[1].msg, "duplicate key 'path' (first defined at 1:28)") && d.v[1].col == 54);
    ink_diags_free(&d);
    /* 2049 aliases of a 2048-number list: 4.2M numbers from 12KB of text */
    size_t cap = 64 * 1024, n = 0;
    char *buf = malloc(cap);
    n += (size_t)snprintf(buf + n, cap - n,
                          "sources: {in: {type: file, path: x.csv}}\n"
                          "sinks: {out: {type: file, path: \"-\", inputs: [m]}}\n"
                          "operators:\n  m:\n    type: testop_mem\n    inputs: [in]\n"
                          "    bytes: &row [");
    for (int i = 0; i < 2048; i++) n += (size_t)snprintf(buf + n, cap - n, "%s1", i ? "," : "");
    n += (size_t)snprintf(buf + n, cap - n, "]\n    arms: [");
    for (int i = 0; i < 2049; i++) n += (size_t)snprintf(buf + n, cap - n, "%s*row", i ? "," : "");
    n += (size_t)snprintf(buf + n, cap - n, "]\n");
    CHECK(ink_config_load_buf("bomb.yaml", buf, n, &cfg, &d) == INK_EINVAL);
    bool bounded = false;
    for (int i = 0; i < d.n; i++)
        bounded |=
            strstr(d.v[i].msg, "operators.m.arms: 4196352 numbers in all, more than") != NULL;
    CHECK(bounded);
    ink_diags_free(&d);
    free(buf);
}

TEST(help_and_markdown)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    ink_params_help(&ink_source_zmq.type, m);
    ink_params_help(ink_node_type_find(INK_NODE_OPERATOR, "testop_mem"), m);
    ink_params_help_list(m);
    fclose(m);
    CHECK(strstr(out, "zmq (source): records from a ZeroMQ socket") != NULL);
    CHECK(strstr(out, "pull|sub|router") != NULL);
    CHECK(strstr(out, "max_message_bytes") && strstr(out, "in [64B, 1GiB]"));
    CHECK(strstr(out, "in [0s, 1h]") != NULL);
    CHECK(strstr(out, "    sigma") != NULL); /* nested keys indented */
    CHECK(strstr(out, "Keys every operator accepts") && strstr(out, "on_new_key"));
    CHECK(strstr(out, "passthrough") && strstr(out, "memory_limit"));
    free(out);
    out = NULL;
    m = open_memstream(&out, &len);
    ink_params_markdown(m);
    fclose(m);
    CHECK(strstr(out, "# Configuration reference") != NULL);
    CHECK(strstr(out, "| `snapshot.dir` | string | required |") != NULL);
    CHECK(strstr(out, "| `memory_limit` | size | `1GiB` | in [1B, 1PiB] |") != NULL);
    CHECK(strstr(out, "### `passthrough`") && strstr(out, "### `file`"));
    /* every key of every table appears */
    for (int i = 0; ink_engine_params[i].name; i++) {
        char k[80];
        snprintf(k, sizeof k, "| `%s` |", ink_engine_params[i].name);
        CHECK_MSG(strstr(out, k) != NULL, "%s", k);
    }
    free(out);
}

/* The example graphs in configs/ load as they are. */
TEST(example_configs_validate)
{
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/../../../configs", golden_dir());
    DIR *dp = opendir(dir);
    REQUIRE(dp != NULL);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(dp))) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".yaml")) continue;
        char path[8800];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct ink_config cfg;
        struct ink_diags d = {0};
        int rc = ink_config_load(path, &cfg, &d);
        if (rc) ink_diags_print(&d, de->d_name, stderr);
        CHECK_MSG(rc == 0, "%s does not validate", de->d_name);
        if (rc == 0) {
            CHECK(cfg.nnodes >= 2 && cfg.topo != NULL);
            ink_config_free(&cfg);
        }
        ink_diags_free(&d);
        n++;
    }
    closedir(dp);
    CHECK(n >= 1);
}

TEST(load_file_and_errors)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/cycle.yaml", golden_dir());
    struct ink_config cfg;
    struct ink_diags d = {0};
    CHECK(ink_config_load(path, &cfg, &d) == INK_EINVAL);
    CHECK(d.n >= 2);
    ink_diags_free(&d);
    CHECK(ink_config_load("/nonexistent/x.yaml", &cfg, &d) == INK_EIO);
    CHECK(d.n == 1 && d.v[0].line == 0 && strstr(d.v[0].msg, "cannot open config"));
    char *out = NULL;
    size_t len;
    FILE *m = open_memstream(&out, &len);
    ink_diags_print(&d, "/nonexistent/x.yaml", m);
    fclose(m);
    CHECK(!strcmp(out,
                  "/nonexistent/x.yaml: error: cannot open config: No such file or directory\n"));
    free(out);
    ink_diags_free(&d);
    CHECK(ink_config_load_buf("s.yaml", "a: [", 4, &cfg, &d) == INK_EPARSE);
    ink_diags_free(&d);
}

/* Random mutations of a valid config never crash the loader (ASan/UBSan
 * in CI check for memory errors), and every error has a position or a
 * message. */
TEST(fuzz_mutations)
{
    struct ink_rng r;
    /* INK_FUZZ_SEED explores other mutations (a longer campaign by hand) */
    const char *fs = getenv("INK_FUZZ_SEED");
    ink_rng_seed(&r, fs ? strtoull(fs, NULL, 10) : 12345);
    const size_t base = sizeof valid_yaml - 1;
    int iters = (int)(20000 * test_scale());
    char *buf = malloc(base * 2 + 64);
    REQUIRE(buf != NULL);
    static const char tokens[] = "{}[]:,-&*!|>'\"#\n \t0.9eE~%@`\\";
    int loaded = 0;
    for (int it = 0; it < iters; it++) {
        size_t len = base;
        memcpy(buf, valid_yaml, base);
        int nmut = 1 + (int)(ink_rng_next(&r) % 8);
        if (it % 10 == 9) { /* now and then, plain random bytes */
            len = ink_rng_next(&r) % base;
            for (size_t i = 0; i < len; i++) buf[i] = (char)(ink_rng_next(&r) & 0xff);
            nmut = 0;
        }
        for (int k = 0; k < nmut && len > 0; k++) {
            size_t pos = ink_rng_next(&r) % len;
            switch (ink_rng_next(&r) % 4) {
            case 0:
                buf[pos] = tokens[ink_rng_next(&r) % (sizeof tokens - 1)];
                break;
            case 1:
                buf[pos] = (char)(ink_rng_next(&r) & 0xff);
                break;
            case 2: /* delete a byte */
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
                break;
            case 3: /* duplicate a short run */
                if (len + 16 < base * 2 + 64) {
                    size_t run = 1 + ink_rng_next(&r) % 16;
                    if (pos + run > len) run = len - pos;
                    memmove(buf + pos + run, buf + pos, len - pos);
                    len += run;
                }
                break;
            }
        }
        struct ink_config cfg;
        struct ink_diags d = {0};
        int rc = ink_config_load_buf("f.yaml", buf, len, &cfg, &d);
        if (rc == 0) {
            loaded++;
            CHECK(d.n == 0 && cfg.topo != NULL);
            ink_config_free(&cfg);
        } else {
            CHECK(d.n > 0);
            for (int i = 0; i < d.n; i++) CHECK(d.v[i].msg[0] != 0 && d.v[i].line >= 0);
            CHECK(cfg.nodes == NULL);
        }
        ink_diags_free(&d);
    }
    free(buf);
    printf("  fuzz: %d mutated configs, %d still valid\n", iters, loaded);
}

/* The one path resolver: config-relative paths, and what stays as given. */
TEST(path_resolve)
{
    char b[16];
    CHECK(!strcmp(ink_path_resolve("conf", "in.csv", b, sizeof b), "conf/in.csv"));
    CHECK(!strcmp(ink_path_resolve("conf", "/abs/x", b, sizeof b), "/abs/x"));
    CHECK(!strcmp(ink_path_resolve("conf", "-", b, sizeof b), "-"));
    CHECK(!strcmp(ink_path_resolve(NULL, "in.csv", b, sizeof b), "in.csv"));
    CHECK(!strcmp(ink_path_resolve("", "in.csv", b, sizeof b), "in.csv"));
    CHECK(ink_path_resolve("conf", "in.csv", b, sizeof b) == b);
    /* 15 characters fit in 16 bytes, 16 do not: refused, never cut short */
    CHECK(ink_path_resolve("abcde", "123456789", b, sizeof b) != NULL);
    CHECK(ink_path_resolve("abcde", "1234567890", b, sizeof b) == NULL);
    CHECK(ink_path_resolve(NULL, "0123456789abcdef", b, sizeof b) == NULL);
}

int main(int argc, char **argv)
{
    return ink_test_main(argc, argv);
}
