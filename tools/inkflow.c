/* inkflow: the command-line program. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engine/config.h"
#include "../engine/graph.h"
#include "../engine/snapshot.h"
#include "../transports/file_io.h"
#include "../transports/zmq_util.h"
#include "cli.h"
#include "ink_version.h"

static const char usage[] =
    "usage: inkflow COMMAND ...\n"
    "\n"
    "  run CONFIG [--restore[=auto]] run the graph described by CONFIG\n"
    "  validate CONFIG [--restore]   check CONFIG; print every error; exit 2 if any\n"
    "  help [TYPE | --markdown]      list node types, or the keys of one type\n"
    "  send ENDPOINT [FILE]          send a CSV / JSONL / msgpack file (or stdin) to a socket\n"
    "  recv ENDPOINT [--count N]     print records from a socket as JSON Lines\n"
    "  query ENDPOINT JSON           send one request to a router source, print the reply\n"
    "  keygen NAME                   write a CURVE key pair: NAME and NAME_secret\n"
    "  test CONFIG [TESTS]           run CONFIG's graph on test records, compare outputs\n"
    "  top [HOST:PORT]               live view of a running graph from its /metrics\n"
    "\n"
    "Run `inkflow COMMAND --help` for the options of a command.\n"
    "Exit codes: 0 done, 1 runtime failure, a failed last snapshot, or a node rejected all\n"
    "its input (engine.max_reject_ratio: more than that share), 2 bad config or usage, a\n"
    "refused snapshot, or state owned by another running inkflow.\n";

/* ---- run ------------------------------------------------------------------ */

static struct ink_graph *running;
static volatile sig_atomic_t signals_seen;
static double grace_s = 5;

static void on_signal(int sig)
{
    (void)sig;
    signals_seen++;
    if (running) running->stop = 1;
    if (signals_seen == 1) {
        /* bounded grace period: drain and finish within it, or give up */
        alarm((unsigned)ceil(grace_s) + 1);
    } else {
        static const char m[] = "inkflow: second signal, exiting now\n";
        ssize_t w = write(2, m, sizeof m - 1);
        (void)w;
        _exit(1);
    }
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "inkflow: grace period exceeded while draining; exiting\n";
    ssize_t w = write(2, m, sizeof m - 1);
    (void)w;
    _exit(1);
}

static int load_config(const char *path, struct ink_config *cfg)
{
    struct ink_diags d = {0};
    int rc = ink_config_load(path, cfg, &d);
    if (rc) {
        ink_diags_print(&d, path, stderr);
        fprintf(stderr, "inkflow: %s: %d error%s\n", path, d.n, d.n == 1 ? "" : "s");
    }
    ink_diags_free(&d);
    return rc;
}

static int cmd_run(int argc, char **argv)
{
    const char *path = NULL;
    int restore = 0, c;
    static const struct option opts[] = {
        {"restore", optional_argument, NULL, 'r'}, {"help", no_argument, NULL, 'h'}, {0}};
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'r') {
            if (optarg && strcmp(optarg, "auto") != 0)
                return ink_usage("run: --restore takes no value or 'auto', not '%s'", optarg);
            restore = optarg ? 2 : 1;
        } else if (c == 'h') {
            printf("usage: inkflow run CONFIG [--restore | --restore=auto]\n"
                   "--restore continues from the snapshot of engine.snapshot (it must exist);\n"
                   "--restore=auto does so when the snapshot file exists and starts fresh when\n"
                   "it does not (a service's first start); a snapshot that is refused still\n"
                   "fails, with exit 2.\n");
            return 0;
        } else {
            return ink_opt_error("run", c, optind, argv);
        }
    }
    if (argc - optind > 1) return ink_usage("run: unexpected argument '%s'", argv[optind + 1]);
    if (argc - optind == 1) path = argv[optind];
    if (!path) return ink_usage("run: missing CONFIG");
    struct ink_config cfg = {0};
    if (load_config(path, &cfg)) return 2;
    if (restore && cfg.sharded) {
        /* shard mode: each partition's state is loaded from its shard file
         * when the group assigns it (docs/kafka.md#scale-out) */
        fprintf(stderr, "inkflow: --restore: shard mode loads each partition's shard when it is "
                        "assigned; nothing else to restore\n");
        restore = 0;
    }
    struct ink_snap *snap = NULL;
    char snap_path[4096];
    struct stat st;
    if (restore == 2) { /* auto: restore what exists; no snapshot (yet) is a fresh start */
        if (ink_snapshot_path(&cfg, snap_path, sizeof snap_path) != 0) {
            restore = 0; /* the config keeps no snapshots */
        } else if (stat(snap_path, &st) != 0 && errno == ENOENT) {
            fprintf(stderr, "inkflow: --restore=auto: no snapshot at %s yet; starting fresh\n",
                    snap_path);
            restore = 0;
        }
    }
    if (restore) {
        /* read and verify everything before building anything */
        struct ink_err e = {0};
        if (ink_snapshot_read(&cfg, &snap, &e)) {
            fprintf(stderr, "inkflow: --restore: %s\n", e.msg);
            ink_snapshot_free(snap);
            ink_config_free(&cfg);
            return 2;
        }
    }
    grace_s = cfg.engine.grace;
    struct ink_graph *g = NULL;
    struct ink_err err = {0};
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = snap ? ink_graph_build_restore(&g, &cfg, snap, &err) : ink_graph_build(&g, &cfg, &err);
    if (snap) {
        if (!rc)
            fprintf(stderr, "inkflow: restored from %s (%llu source records in)\n", snap->path,
                    (unsigned long long)snap->src_records);
        ink_snapshot_free(snap);
    }
    if (rc) {
        fprintf(stderr, "inkflow: %s%s\n", restore ? "--restore: " : "", err.msg);
        ink_graph_free(g);
        ink_config_free(&cfg);
        return rc == INK_ESTATE || rc == INK_EBUSY ? 2 : 1;
    }
    running = g;
    if (signals_seen) g->stop = 1;
    rc = ink_graph_run(g);
    running = NULL;
    ink_graph_summary(g, stderr);
    /* a run that rejected what it was given did not do its job: say so, exit 1 */
    if (!rc && ink_graph_reject_check(g, stderr)) rc = 1;
    if (g->snap_streak)
        fprintf(stderr, "inkflow: the last snapshot failed (%s): exit status 1\n", g->snap_error);
    ink_graph_free(g);
    ink_config_free(&cfg);
    return rc ? 1 : 0;
}

/* A file source with fields: over a CSV file that exists: every mapped
 * name must be a column of its header. Returns the number of errors
 * printed. (A missing file is not an error here: it may be written later.) */
static int check_csv_fields(const char *cfgpath, const struct ink_config *cfg,
                            const struct ink_node_conf *n)
{
    const struct ink_file_src_conf *c = n->conf;
    if (strcmp(n->type->name, "file") != 0 || !c->fields.set || strcmp(c->path, "-") == 0) return 0;
    char buf[4096];
    const char *path = ink_path_resolve(cfg->base_dir, c->path, buf, sizeof buf);
    int fmt = c->format == INK_FMT_AUTO ? ink_format_from_path(path, INK_FMT_JSONL) : c->format;
    if (fmt != INK_FMT_CSV) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = getline(&line, &cap, f);
    fclose(f);
    struct ink_csv_header h;
    struct ink_err e = {0};
    int errs = 0;
    if (len <= 0 || ink_csv_header_parse(&h, line, (size_t)len, &e)) {
        fprintf(stderr, "%s:%d:%d: error: source '%s': %s: no CSV header row%s%s\n", cfgpath,
                n->line, n->col, n->name, c->path, e.msg[0] ? ": " : "", e.msg);
        free(line);
        return 1;
    }
    free(line);
    const struct ink_fields_conf *fc = &c->fields;
    for (int i = 0; i < fc->nx + 3; i++) {
        const char *name = i < fc->nx        ? fc->x[i]
                           : i == fc->nx     ? fc->y
                           : i == fc->nx + 1 ? fc->key
                                             : fc->t;
        if (!name) continue;
        uint32_t col = 0;
        while (col < h.ncols && strcmp(h.name[col], name)) col++;
        if (col < h.ncols) continue;
        char cols[1024];
        size_t o = 0;
        for (uint32_t k = 0; k < h.ncols && o < sizeof cols - 8; k++)
            o += (size_t)snprintf(cols + o, sizeof cols - o, "%s%s", k ? ", " : "", h.name[k]);
        char role[32];
        if (i < fc->nx)
            snprintf(role, sizeof role, "x[%d]", i);
        else
            snprintf(role, sizeof role, "%s", i == fc->nx ? "y" : i == fc->nx + 1 ? "key" : "t");
        fprintf(stderr,
                "%s:%d:%d: error: source '%s': fields.%s: '%s' is not a column of %s (its "
                "columns: %s)\n",
                cfgpath, n->line, n->col, n->name, role, name, c->path, cols);
        errs++;
    }
    ink_csv_header_fini(&h);
    return errs;
}

static int cmd_validate(int argc, char **argv)
{
    int c, restore = 0;
    static const struct option opts[] = {
        {"restore", no_argument, NULL, 'r'}, {"help", no_argument, NULL, 'h'}, {0}};
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'r') {
            restore = 1;
            continue;
        }
        if (c != 'h') return ink_opt_error("validate", c, optind, argv);
        printf("usage: inkflow validate CONFIG [--restore]\n"
               "--restore also checks that CONFIG can restore the snapshot of\n"
               "engine.snapshot (read only: a running inkflow may own it): what shapes the\n"
               "state is unchanged (docs/state.md, \"What a restore compares\")\n");
        return 0;
    }
    if (argc - optind != 1) return ink_usage("validate: give exactly one CONFIG");
    argv += optind;
    struct ink_config cfg = {0};
    if (load_config(argv[0], &cfg)) return 2;
    int ns = 0, no = 0, nk = 0, errs = 0;
    uint64_t mem = 0;
    for (int i = 0; i < cfg.nnodes; i++)
        if (cfg.nodes[i].kind == INK_NODE_SOURCE)
            errs += check_csv_fields(argv[0], &cfg, &cfg.nodes[i]);
    if (errs) {
        fprintf(stderr, "inkflow: %s: %d error%s\n", argv[0], errs, errs == 1 ? "" : "s");
        ink_config_free(&cfg);
        return 2;
    }
    for (int i = 0; i < cfg.nnodes; i++) {
        const struct ink_node_conf *n = &cfg.nodes[i];
        ns += n->kind == INK_NODE_SOURCE;
        nk += n->kind == INK_NODE_SINK;
        if (n->kind == INK_NODE_OPERATOR) {
            no++;
            const struct ink_op_vtable *vt = ink_op_find(n->type->name);
            uint64_t b = vt ? vt->mem_bound(n->conf) : 0;
            if (n->common.key_by) b *= (uint64_t)n->common.max_keys;
            mem += b + (vt && vt->scratch_bytes ? vt->scratch_bytes(n->conf) : 0);
        }
    }
    char snap[4096] = "";
    if (restore) {
        struct ink_err e = {0};
        if (ink_snapshot_check_restore(&cfg, snap, sizeof snap, &e)) {
            fprintf(stderr, "inkflow: %s: --restore: %s\n", argv[0], e.msg);
            ink_config_free(&cfg);
            return 2;
        }
    }
    printf("%s: ok: %d source%s, %d operator%s, %d sink%s; operator memory bound %.1f MiB of "
           "%.1f MiB\n",
           argv[0], ns, ns == 1 ? "" : "s", no, no == 1 ? "" : "s", nk, nk == 1 ? "" : "s",
           (double)mem / 1048576.0, (double)cfg.engine.memory_limit / 1048576.0);
    if (restore) printf("%s: can restore %s\n", argv[0], snap);
    ink_config_free(&cfg);
    return 0;
}

static void list_types(const char *title, const struct ink_node_type *const *v)
{
    printf("%s:\n", title);
    for (int i = 0; v[i]; i++) printf("  %-14s %s\n", v[i]->name, v[i]->summary);
}

static int cmd_help(int argc, char **argv)
{
    argc--, argv++; /* TYPE or --markdown: operands, not options */
    if (argc > 1) return ink_usage("help: give at most one TYPE");
    if (argc == 0) {
        fputs(usage, stdout);
        printf("\n");
        list_types("sources", ink_source_types);
        printf("operators:\n");
        for (int i = 0; ink_operators[i]; i++)
            printf("  %-14s %s\n", ink_operators[i]->name, ink_operators[i]->summary);
        list_types("sinks", ink_sink_types);
        printf("\nRun `inkflow help TYPE` for the keys of a type, `inkflow help engine` for the "
               "engine section.\n");
        return 0;
    }
    if (strcmp(argv[0], "--markdown") == 0) {
        ink_params_markdown(stdout);
        return 0;
    }
    int found = 0;
    if (strcmp(argv[0], "engine") == 0) {
        static const struct ink_node_type eng = {.name = "engine",
                                                 .summary = "the engine: section (all optional)",
                                                 .params = ink_engine_params};
        ink_params_help(&eng, stdout);
        return 0;
    }
    static const enum ink_node_kind kinds[] = {INK_NODE_SOURCE, INK_NODE_OPERATOR, INK_NODE_SINK};
    for (int k = 0; k < 3; k++) {
        const struct ink_node_type *nt = ink_node_type_find(kinds[k], argv[0]);
        if (!nt) continue;
        if (found) printf("\n");
        ink_params_help(nt, stdout);
        found = 1;
    }
    if (!found)
        return ink_usage("help: no node type '%s' (run `inkflow help` for the list)", argv[0]);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    int n = argc - 1; /* each subcommand sees its name as argv[0], as getopt_long expects */
    char **a = argv + 1;
    if (strcmp(cmd, "run") == 0) return cmd_run(n, a);
    if (strcmp(cmd, "validate") == 0) return cmd_validate(n, a);
    if (strcmp(cmd, "help") == 0) return cmd_help(n, a);
    if (strcmp(cmd, "send") == 0) return ink_cmd_send(n, a);
    if (strcmp(cmd, "recv") == 0) return ink_cmd_recv(n, a);
    if (strcmp(cmd, "query") == 0) return ink_cmd_query(n, a);
    if (strcmp(cmd, "keygen") == 0) return ink_cmd_keygen(n, a);
    if (strcmp(cmd, "top") == 0) return ink_cmd_top(n, a);
    if (strcmp(cmd, "test") == 0) return ink_cmd_test(n, a);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("inkflow %s (commit %s)\n", INK_VERSION, INK_COMMIT);
        return 0;
    }
    fprintf(stderr, "inkflow: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}
