/* inkflow test CONFIG [TESTS]: run a graph on records written in a test file
 * and compare what chosen nodes emit with what the file expects, without
 * opening a socket (docs/operations.md "Testing a config").
 *
 * For each test case the graph is rewritten: every source becomes a file
 * source reading the case's records for it (none when the case gives none),
 * every sink is replaced by one JSON Lines file sink per node the case
 * checks, and the engine's http and snapshot sections are dropped. The
 * rewritten graph is written as JSON (which is YAML) to a temporary
 * directory, loaded with the config's own directory as its base, and run to
 * its natural end. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libfyaml.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engine/config.h"
#include "../engine/graph.h"
#include "cli.h"

/* A YAML file as a jansson value (through libfyaml's JSON emitter). */
static json_t *yaml_to_json(const char *path, char *why, size_t wn)
{
    struct fy_document *fyd = fy_document_build_from_file(NULL, path);
    if (!fyd) {
        snprintf(why, wn, "%s: cannot read it as YAML (%s)", path,
                 access(path, R_OK) ? strerror(errno) : "syntax error");
        return NULL;
    }
    char *text = fy_emit_document_to_string(fyd, FYECF_MODE_JSON_ONELINE);
    fy_document_destroy(fyd);
    if (!text) {
        snprintf(why, wn, "%s: cannot convert to JSON", path);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    free(text);
    if (!j) snprintf(why, wn, "%s: %s", path, je.text);
    return j;
}

/* Numbers equal within 1e-9 relative (or 1e-12 absolute); other values
 * exactly; an expected object is a subset of the actual one. */
static bool matches(const json_t *want, const json_t *got)
{
    if (json_is_number(want) && json_is_number(got)) {
        double a = json_number_value(want), b = json_number_value(got);
        return a == b || fabs(a - b) <= 1e-12 + 1e-9 * fmax(fabs(a), fabs(b));
    }
    if (json_is_object(want)) {
        if (!json_is_object(got)) return false;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)want, k, v)
        {
            json_t *g = json_object_get(got, k);
            if (!g || !matches(v, g)) return false;
        }
        return true;
    }
    if (json_is_array(want)) {
        if (!json_is_array(got) || json_array_size(want) != json_array_size(got)) return false;
        for (size_t i = 0; i < json_array_size(want); i++)
            if (!matches(json_array_get(want, i), json_array_get(got, i))) return false;
        return true;
    }
    return json_equal(want, got);
}

static void print_json(FILE *o, const char *prefix, const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12));
    fprintf(o, "%s%s\n", prefix, s ? s : "?");
    free(s);
}

/* The graph of `cfg` rewritten for one case (see the top of the file). */
static json_t *rewrite(const json_t *cfg, const json_t *input, const json_t *expect,
                       const char *dir)
{
    json_t *g = json_deep_copy(cfg);
    json_t *eng = json_object_get(g, "engine");
    if (json_is_object(eng)) {
        json_object_del(eng, "http");
        json_object_del(eng, "snapshot");
        json_object_set_new(eng, "progress", json_false());
    }
    json_t *src = json_object_get(g, "sources");
    const char *name;
    json_t *v;
    json_object_foreach(src, name, v)
    {
        char path[4200];
        snprintf(path, sizeof path, "%s/in-%s.jsonl", dir, name);
        FILE *f = fopen(path, "w");
        json_t *recs = json_object_get(input, name);
        size_t i;
        json_t *r;
        json_array_foreach(recs, i, r)
        {
            if (f) {
                json_dumpf(r, f, JSON_COMPACT | JSON_REAL_PRECISION(17));
                fputc('\n', f);
            }
        }
        if (f) fclose(f);
        json_t *n = json_pack("{s:s, s:s, s:s}", "type", "file", "path", path, "format", "jsonl");
        json_t *dl = json_is_object(v) ? json_object_get(v, "dead_letter") : NULL;
        if (dl) json_object_set(n, "dead_letter", dl);
        json_object_set_new(src, name, n);
    }
    /* sinks: the dead-letter ones stay (as files), the others go */
    json_t *sinks = json_object_get(g, "sinks");
    json_t *keep = json_object();
    json_object_foreach(sinks, name, v)
    {
        json_t *in = json_is_object(v) ? json_object_get(v, "inputs") : NULL;
        if (in && !json_is_null(in)) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/dead-%s.jsonl", dir, name);
        json_object_set_new(
            keep, name,
            json_pack("{s:s, s:s, s:s}", "type", "file", "path", path, "format", "jsonl"));
    }
    json_object_foreach((json_t *)expect, name, v)
    {
        char path[4200], sname[300];
        snprintf(path, sizeof path, "%s/out-%s.jsonl", dir, name);
        snprintf(sname, sizeof sname, "inkflow_test_%s", name);
        json_object_set_new(keep, sname,
                            json_pack("{s:s, s:s, s:s, s:[s]}", "type", "file", "path", path,
                                      "format", "jsonl", "inputs", name));
    }
    json_object_set_new(g, "sinks", keep);
    return g;
}

static json_t *read_jsonl(const char *path)
{
    json_t *a = json_array();
    FILE *f = fopen(path, "r");
    if (!f) return a;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *r = json_loads(line, 0, NULL);
        if (r) json_array_append_new(a, r);
    }
    free(line);
    fclose(f);
    return a;
}

/* The case's scratch directory: only files, written above. */
static void remove_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    struct dirent *de;
    while (dp && (de = readdir(dp))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (dp) closedir(dp);
    rmdir(dir);
}

/* One case: 0 passed, 1 failed (the diff printed), 2 the graph did not run. */
static int run_case(const json_t *cfg, const char *base_dir, const json_t *tc, int idx)
{
    const char *cname = json_string_value(json_object_get(tc, "name"));
    char label[300];
    snprintf(label, sizeof label, "test %d%s%s%s", idx + 1, cname ? " '" : "", cname ? cname : "",
             cname ? "'" : "");
    json_t *input = json_object_get(tc, "input"), *expect = json_object_get(tc, "expect");
    if (!json_is_object(expect) || (input && !json_is_object(input))) {
        fprintf(stderr,
                "inkflow test: %s: needs expect: {NODE: [records]} and input: {SOURCE: "
                "[records]}\n",
                label);
        return 2;
    }
    const char *name;
    json_t *v;
    json_object_foreach(input, name, v)
    {
        if (!json_object_get(json_object_get(cfg, "sources"), name) || !json_is_array(v)) {
            fprintf(stderr, "inkflow test: %s: input.%s: %s\n", label, name,
                    json_is_array(v) ? "no source of that name" : "needs a list of records");
            return 2;
        }
    }
    json_object_foreach(expect, name, v)
    {
        if ((!json_object_get(json_object_get(cfg, "sources"), name) &&
             !json_object_get(json_object_get(cfg, "operators"), name)) ||
            !json_is_array(v)) {
            fprintf(stderr, "inkflow test: %s: expect.%s: %s\n", label, name,
                    json_is_array(v) ? "no source or operator of that name"
                                     : "needs a list of records");
            return 2;
        }
    }
    char dir[] = "/tmp/inkflow-test-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "inkflow test: mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    json_t *g = rewrite(cfg, input, expect, dir);
    char gpath[4200];
    snprintf(gpath, sizeof gpath, "%s/graph.json", dir);
    json_dump_file(g, gpath, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(g);

    int rc = 0;
    struct ink_config c = {0};
    struct ink_diags d = {0};
    struct ink_graph *gr = NULL;
    struct ink_err err = {0};
    if (ink_config_load(gpath, &c, &d)) {
        fprintf(stderr, "inkflow test: %s: the rewritten graph does not load:\n", label);
        ink_diags_print(&d, gpath, stderr);
        rc = 2;
    } else {
        free(c.base_dir); /* relative paths stay relative to the config */
        c.base_dir = strdup(base_dir);
        if (ink_graph_build(&gr, &c, &err) || ink_graph_run(gr)) {
            fprintf(stderr, "inkflow test: %s: %s\n", label, err.msg[0] ? err.msg : "run failed");
            rc = 2;
        }
    }
    ink_graph_free(gr);
    ink_diags_free(&d);
    if (rc == 0) {
        const char *node;
        json_t *want;
        json_object_foreach(expect, node, want)
        {
            char path[4200];
            snprintf(path, sizeof path, "%s/out-%s.jsonl", dir, node);
            json_t *got = read_jsonl(path);
            size_t nw = json_array_size(want), ng = json_array_size(got);
            bool head = false;
            for (size_t i = 0; i < (nw > ng ? nw : ng); i++) {
                json_t *w = json_array_get(want, i), *o = json_array_get(got, i);
                if (w && o && matches(w, o)) continue;
                if (!head) printf("FAIL %s: node %s\n", label, node), head = true;
                printf("  record %zu:\n", i + 1);
                if (w) print_json(stdout, "  - expected ", w);
                if (o) print_json(stdout, "  + got      ", o);
                if (!w) printf("  - expected no record here (%zu expected)\n", nw);
                if (!o) printf("  + got no record (%zu emitted)\n", ng);
                rc = 1;
            }
            json_decref(got);
        }
        if (rc == 0) printf("ok   %s\n", label);
    }
    ink_config_free(&c);
    remove_dir(dir);
    return rc;
}

static const char test_usage[] =
    "usage: inkflow test CONFIG [TESTS]\n"
    "Runs the graph of CONFIG on the records of each case in TESTS (default: CONFIG with\n"
    ".yaml replaced by .test.yaml) and compares what the named nodes emit, without any\n"
    "socket:\n"
    "  tests:\n"
    "    - name: first readings\n"
    "      input:  {readings: [{x: [1], key: a}, {x: [2], key: a}]}   # per source\n"
    "      expect: {percentile: [{F: 0, n: 0}, {F: 1, n: 1}]}        # per node, in order\n"
    "An expected record lists the fields to check (numbers within 1e-9 relative); the\n"
    "node must emit exactly as many records. Exit 0 when every case passes, 1 with a\n"
    "diff when one fails, 2 when the config or the test file is wrong.\n";

int ink_cmd_test(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c != 'h') return ink_opt_error("test", c, optind, argv);
        fputs(test_usage, stdout);
        return 0;
    }
    int np = argc - optind;
    if (np < 1 || np > 2) return ink_usage("test: give CONFIG [TESTS]\n%s", test_usage);
    const char *cfg_path = argv[optind];
    char tests_path[4096];
    if (np == 2) {
        snprintf(tests_path, sizeof tests_path, "%s", argv[optind + 1]);
    } else {
        size_t l = strlen(cfg_path);
        size_t stem = l > 5 && !strcmp(cfg_path + l - 5, ".yaml")  ? l - 5
                      : l > 4 && !strcmp(cfg_path + l - 4, ".yml") ? l - 4
                                                                   : l;
        snprintf(tests_path, sizeof tests_path, "%.*s.test.yaml", (int)stem, cfg_path);
    }
    /* the config itself first, with its own positions in the errors */
    struct ink_config cfg = {0};
    struct ink_diags d = {0};
    if (ink_config_load(cfg_path, &cfg, &d)) {
        ink_diags_print(&d, cfg_path, stderr);
        ink_diags_free(&d);
        return 2;
    }
    char *base = strdup(cfg.base_dir ? cfg.base_dir : ".");
    ink_config_free(&cfg);
    ink_diags_free(&d);
    char why[600];
    json_t *graph = yaml_to_json(cfg_path, why, sizeof why);
    json_t *tests = graph ? yaml_to_json(tests_path, why, sizeof why) : NULL;
    json_t *cases = json_object_get(tests, "tests");
    int rc = 0;
    if (!graph || !tests) {
        fprintf(stderr, "inkflow test: %s\n", why);
        rc = 2;
    } else if (!json_is_array(cases) || json_array_size(cases) == 0) {
        fprintf(stderr, "inkflow test: %s: needs `tests:`, a list of cases\n", tests_path);
        rc = 2;
    } else {
        size_t i, failed = 0;
        json_t *tc;
        json_array_foreach(cases, i, tc)
        {
            int r = run_case(graph, base, tc, (int)i);
            if (r > rc) rc = r;
            failed += r != 0;
        }
        printf("%zu of %zu test%s passed\n", json_array_size(cases) - failed,
               json_array_size(cases), json_array_size(cases) == 1 ? "" : "s");
    }
    json_decref(graph);
    json_decref(tests);
    free(base);
    return rc;
}
