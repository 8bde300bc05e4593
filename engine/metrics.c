/* The metrics and health endpoint (metrics.h). Metric names: docs/state.md. */
#include "metrics.h"

#include <arpa/inet.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "graph.h"
#include "ink_version.h"

const double ink_lat_bounds[INK_LAT_NB] = {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5,
                                           1e-4, 2.5e-4, 1e-3, 1e-2, 0.1,    1.0};
const double ink_pause_bounds[INK_PAUSE_NB] = {5e-4, 1e-3, 2e-3, 5e-3, 1e-2,
                                               2e-2, 5e-2, 0.1,  0.25, 1.0};

/* One node as last published by the main loop. */
struct node_copy {
    struct ink_counters c;
    uint64_t evicted, keys;
    uint64_t lat[INK_LAT_NB + 1];
    double lat_sum;
    const struct ink_op_gauge *gt; /* the operator's static table, or NULL */
    double gv[INK_OP_GAUGES_MAX];
    double mem_bound;
    bool has_conn; /* a transport with a conn hook */
    uint64_t conn[INK_CONN__COUNT];
    bool not_ready;       /* a transport's ready hook said no */
    char why[256];        /* its reason */
    struct ink_buf extra; /* a transport's own lines (metrics hook) */
};

struct ink_metrics {
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    int n;
    const char **names, **types; /* borrowed from the config: outlive the server */
    enum ink_node_kind *kinds;
    bool *keyed;
    struct node_copy *nodes;
    bool ready;
    double snap_wall, snap_duration;
    uint64_t snap_bytes, snap_count, snap_failed;
    double snap_pause, snap_pause_max, snap_pause_sum;
    uint64_t snap_pause_hist[INK_PAUSE_NB + 1];
    uint64_t snap_streak, snap_max_failures; /* consecutive failures; the /health bound */
    char snap_error[512];                    /* the last failure */
};

/* ---- rendering ------------------------------------------------------------ */

static void out(struct ink_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(struct ink_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) ink_buf_append(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* A label value: backslash, quote and newline escaped. */
static const char *esc(const char *s, char *buf, size_t n)
{
    size_t j = 0;
    for (; *s && j + 3 < n; s++) {
        if (*s == '\\' || *s == '"')
            buf[j++] = '\\', buf[j++] = *s;
        else if (*s == '\n')
            buf[j++] = '\\', buf[j++] = 'n';
        else
            buf[j++] = *s;
    }
    buf[j] = 0;
    return buf;
}

static const char *kind_name(enum ink_node_kind k)
{
    return k == INK_NODE_SOURCE ? "source" : k == INK_NODE_OPERATOR ? "operator" : "sink";
}

static void head(struct ink_buf *b, const char *name, const char *type, const char *help)
{
    out(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct ink_buf *b, const struct ink_metrics *m, const char *name,
                    const char *help, size_t field)
{
    head(b, name, "counter", help);
    char e[512];
    for (int i = 0; i < m->n; i++) {
        uint64_t v = *(const uint64_t *)((const char *)&m->nodes[i] + field);
        out(b, "%s{node=\"%s\",kind=\"%s\"} %llu\n", name, esc(m->names[i], e, sizeof e),
            kind_name(m->kinds[i]), (unsigned long long)v);
    }
}

static void render_latency(struct ink_buf *b, const struct ink_metrics *m)
{
    head(b, "inkflow_process_latency_seconds", "histogram",
         "time an operator spends on one record, downstream dispatch included");
    char e[512];
    for (int i = 0; i < m->n; i++) {
        if (m->kinds[i] != INK_NODE_OPERATOR) continue;
        const struct node_copy *c = &m->nodes[i];
        const char *nm = esc(m->names[i], e, sizeof e);
        uint64_t cum = 0;
        for (int k = 0; k < INK_LAT_NB; k++) {
            cum += c->lat[k];
            out(b, "inkflow_process_latency_seconds_bucket{node=\"%s\",le=\"%g\"} %llu\n", nm,
                ink_lat_bounds[k], (unsigned long long)cum);
        }
        cum += c->lat[INK_LAT_NB];
        out(b, "inkflow_process_latency_seconds_bucket{node=\"%s\",le=\"+Inf\"} %llu\n", nm,
            (unsigned long long)cum);
        out(b, "inkflow_process_latency_seconds_sum{node=\"%s\"} %.9g\n", nm, c->lat_sum);
        out(b, "inkflow_process_latency_seconds_count{node=\"%s\"} %llu\n", nm,
            (unsigned long long)cum);
    }
}

/* How long each periodic snapshot stopped the data path (docs/state.md). */
static void render_pause(struct ink_buf *b, const struct ink_metrics *m)
{
    head(b, "inkflow_snapshot_pause_seconds", "histogram",
         "main-loop pause per periodic snapshot: cut, fork, collection of the writer's outcome");
    uint64_t cum = 0;
    for (int k = 0; k < INK_PAUSE_NB; k++) {
        cum += m->snap_pause_hist[k];
        out(b, "inkflow_snapshot_pause_seconds_bucket{le=\"%g\"} %llu\n", ink_pause_bounds[k],
            (unsigned long long)cum);
    }
    cum += m->snap_pause_hist[INK_PAUSE_NB];
    out(b, "inkflow_snapshot_pause_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    out(b, "inkflow_snapshot_pause_seconds_sum %.9g\n", m->snap_pause_sum);
    out(b, "inkflow_snapshot_pause_seconds_count %llu\n", (unsigned long long)cum);
    head(b, "inkflow_snapshot_pause_last_seconds", "gauge",
         "main-loop pause of the last periodic snapshot");
    out(b, "inkflow_snapshot_pause_last_seconds %.9f\n", m->snap_pause);
    head(b, "inkflow_snapshot_pause_max_seconds", "gauge",
         "longest main-loop pause of a periodic snapshot in this run");
    out(b, "inkflow_snapshot_pause_max_seconds %.9f\n", m->snap_pause_max);
}

static void gauge_val(struct ink_buf *b, const char *name, const char *node, double v)
{
    if (isnan(v))
        out(b, "%s{node=\"%s\"} NaN\n", name, node);
    else
        out(b, "%s{node=\"%s\"} %.17g\n", name, node, v);
}

/* Index of gauge `name` in node i's table, or -1. */
static int gauge_index(const struct ink_metrics *m, int i, const char *name)
{
    const struct ink_op_gauge *t = m->kinds[i] == INK_NODE_OPERATOR ? m->nodes[i].gt : NULL;
    for (int g = 0; t && g < INK_OP_GAUGES_MAX && t[g].name; g++)
        if (strcmp(t[g].name, name) == 0) return g;
    return -1;
}

/* Every operator's own gauges (op.h), one metric family per distinct name:
 * the family is rendered where its name first appears, with every node that
 * has it, so its samples stay together. */
static void render_operator_gauges(struct ink_buf *b, const struct ink_metrics *m)
{
    char e[512], metric[160];
    for (int i = 0; i < m->n; i++) {
        const struct ink_op_gauge *t = m->kinds[i] == INK_NODE_OPERATOR ? m->nodes[i].gt : NULL;
        for (int g = 0; t && g < INK_OP_GAUGES_MAX && t[g].name; g++) {
            bool seen = false;
            for (int j = 0; j < i && !seen; j++) seen = gauge_index(m, j, t[g].name) >= 0;
            for (int h = 0; h < g && !seen; h++) seen = strcmp(t[h].name, t[g].name) == 0;
            if (seen) continue;
            snprintf(metric, sizeof metric, "inkflow_operator_%s", t[g].name);
            head(b, metric, "gauge", t[g].help);
            for (int j = i; j < m->n; j++) {
                int k = gauge_index(m, j, t[g].name);
                if (k >= 0) gauge_val(b, metric, esc(m->names[j], e, sizeof e), m->nodes[j].gv[k]);
            }
        }
    }
}

static void render_operators(struct ink_buf *b, const struct ink_metrics *m)
{
    char e[512];
    render_operator_gauges(b, m);
    head(b, "inkflow_operator_memory_bound_bytes", "gauge",
         "bytes the operator's state may use (all keys)");
    for (int i = 0; i < m->n; i++)
        if (m->kinds[i] == INK_NODE_OPERATOR)
            gauge_val(b, "inkflow_operator_memory_bound_bytes", esc(m->names[i], e, sizeof e),
                      m->nodes[i].mem_bound);
    head(b, "inkflow_operator_keys", "gauge", "key states held (1 for an unkeyed operator)");
    for (int i = 0; i < m->n; i++)
        if (m->kinds[i] == INK_NODE_OPERATOR)
            gauge_val(b, "inkflow_operator_keys", esc(m->names[i], e, sizeof e),
                      (double)m->nodes[i].keys);
}

static void render_connections(struct ink_buf *b, const struct ink_metrics *m)
{
    static const char *const ev[INK_CONN__COUNT] = {
        [INK_CONN_ACCEPTED] = "accepted",
        [INK_CONN_ADMITTED] = "admitted",
        [INK_CONN_REFUSED_AUTH] = "refused_auth",
        [INK_CONN_REFUSED_HANDSHAKE] = "refused_handshake",
        [INK_CONN_DISCONNECTED] = "disconnected",
        [INK_CONN_DROPPED] = "dropped"};
    head(b, "inkflow_connections_total", "counter",
         "connection events of a transport's sockets: accepted or made, admitted "
         "(handshake done), refused by authentication (zmq: CURVE/ZAP) or a failed "
         "handshake, disconnected, and of those dropped by the socket itself (zmq: a "
         "frame over its cap)");
    char e[512];
    for (int i = 0; i < m->n; i++)
        if (m->nodes[i].has_conn)
            for (int k = 0; k < INK_CONN__COUNT; k++)
                out(b, "inkflow_connections_total{node=\"%s\",event=\"%s\"} %llu\n",
                    esc(m->names[i], e, sizeof e), ev[k], (unsigned long long)m->nodes[i].conn[k]);
}

/* Transports' own lines, one group per family (the text format wants every
 * line of a family together, its HELP and TYPE once): two nodes of one
 * transport (two kafka sources) print the same families; their samples are
 * gathered under the first node's header, in node order. */
struct tline {
    const char *p, *f; /* the line (with its newline); its family, NULL: a lone comment */
    size_t n, fl;
    int node;
    bool head; /* # HELP or # TYPE */
};

static void render_transport_lines(struct ink_buf *b, const struct ink_metrics *m)
{
    size_t cnt = 0;
    for (int i = 0; i < m->n; i++) {
        const struct ink_buf *e = &m->nodes[i].extra;
        for (size_t k = 0; k < e->len; k++) cnt += e->p[k] == '\n' || k + 1 == e->len;
    }
    if (!cnt) return;
    struct tline *t = malloc(cnt * sizeof *t);
    if (!t) { /* out of memory: as the transports wrote them */
        for (int i = 0; i < m->n; i++)
            ink_buf_append(b, m->nodes[i].extra.p, m->nodes[i].extra.len);
        return;
    }
    size_t L = 0;
    for (int i = 0; i < m->n; i++) {
        const struct ink_buf *e = &m->nodes[i].extra;
        const char *x = (const char *)e->p, *end = x + e->len, *cur = NULL;
        size_t curlen = 0;
        while (x < end && L < cnt) {
            const char *nl = memchr(x, '\n', (size_t)(end - x));
            size_t n = nl ? (size_t)(nl - x) + 1 : (size_t)(end - x);
            struct tline *l = &t[L++];
            *l = (struct tline){.p = x, .n = n, .node = i};
            l->head = n >= 7 && (!memcmp(x, "# HELP ", 7) || !memcmp(x, "# TYPE ", 7));
            if (l->head || x[0] != '#') {
                const char *f = l->head ? x + 7 : x;
                size_t k = 0;
                while (f + k < x + n && !strchr(" {\n", f[k])) k++;
                /* a histogram's or summary's _bucket/_sum/_count: the family declared before */
                if (!l->head && cur && k > curlen && !memcmp(f, cur, curlen) && f[curlen] == '_')
                    k = curlen;
                l->f = f, l->fl = k;
                if (l->head) cur = f, curlen = k;
            }
            x += n;
        }
    }
    for (size_t i = 0; i < L; i++) {
        if (!t[i].f) {
            ink_buf_append(b, t[i].p, t[i].n);
            continue;
        }
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = t[j].f && t[j].fl == t[i].fl && !memcmp(t[j].f, t[i].f, t[i].fl);
        if (seen) continue;
        for (size_t j = i; j < L; j++)
            if (t[j].f && t[j].fl == t[i].fl && !memcmp(t[j].f, t[i].f, t[i].fl) &&
                (!t[j].head || t[j].node == t[i].node)) {
                ink_buf_append(b, t[j].p, t[j].n);
                if (t[j].p[t[j].n - 1] != '\n') ink_buf_append(b, "\n", 1);
            }
    }
    free(t);
}

static void render_rejects(struct ink_buf *b, const struct ink_metrics *m)
{
    head(b, "inkflow_records_rejected_total", "counter", "records refused, by reason");
    char e[512];
    for (int i = 0; i < m->n; i++)
        for (int r = 1; r < INK_REJ__COUNT; r++)
            out(b, "inkflow_records_rejected_total{node=\"%s\",kind=\"%s\",reason=\"%s\"} %llu\n",
                esc(m->names[i], e, sizeof e), kind_name(m->kinds[i]), ink_reject_name(r),
                (unsigned long long)m->nodes[i].c.rejected[r]);
}

static void render_process(struct ink_buf *b);

static void render(struct ink_metrics *m, struct ink_buf *b)
{
    counter(b, m, "inkflow_records_in_total", "records received by the node",
            offsetof(struct node_copy, c.in));
    counter(b, m, "inkflow_records_out_total", "records emitted (sinks: written)",
            offsetof(struct node_copy, c.out));
    counter(b, m, "inkflow_records_dropped_total", "records lost at the node (sinks)",
            offsetof(struct node_copy, c.dropped));
    counter(b, m, "inkflow_keys_evicted_total", "key states evicted (on_new_key: evict)",
            offsetof(struct node_copy, evicted));
    render_rejects(b, m);
    render_connections(b, m);
    render_latency(b, m);
    render_operators(b, m);
    render_transport_lines(b, m);
    head(b, "inkflow_snapshot_age_seconds", "gauge",
         "seconds since the last snapshot (NaN: none yet)");
    out(b, "inkflow_snapshot_age_seconds %.6f\n",
        m->snap_wall > 0 ? ink_wall() - m->snap_wall : NAN);
    head(b, "inkflow_snapshot_duration_seconds", "gauge", "time the last snapshot took");
    out(b, "inkflow_snapshot_duration_seconds %.9f\n", m->snap_duration);
    render_pause(b, m);
    head(b, "inkflow_snapshot_bytes", "gauge", "size of the last snapshot file");
    out(b, "inkflow_snapshot_bytes %llu\n", (unsigned long long)m->snap_bytes);
    head(b, "inkflow_snapshots_total", "counter", "snapshots written");
    out(b, "inkflow_snapshots_total %llu\n", (unsigned long long)m->snap_count);
    head(b, "inkflow_snapshot_failures_total", "counter", "snapshots that failed");
    out(b, "inkflow_snapshot_failures_total %llu\n", (unsigned long long)m->snap_failed);
    head(b, "inkflow_snapshot_consecutive_failures", "gauge",
         "snapshots failed in a row (0 after a success); /health is 503 from "
         "engine.snapshot.max_failures");
    out(b, "inkflow_snapshot_consecutive_failures %llu\n", (unsigned long long)m->snap_streak);
    head(b, "inkflow_ready", "gauge", "1 once every source is open and any restore is done");
    out(b, "inkflow_ready %d\n", m->ready ? 1 : 0);
    head(b, "inkflow_build_info", "gauge", "the version and commit of this build (always 1)");
    out(b, "inkflow_build_info{version=\"%s\",commit=\"%s\"} 1\n", INK_VERSION, INK_COMMIT);
    render_process(b);
}

/* The process, as Prometheus' client libraries name it (process_*), read
 * when /metrics is asked: CPU seconds, resident memory, open descriptors and
 * the start time (from /proc). A value that cannot be read is left out. */
static void render_process(struct ink_buf *b)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                     (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
        head(b, "process_cpu_seconds_total", "counter", "user and system CPU time spent");
        out(b, "process_cpu_seconds_total %.6f\n", cpu);
    }
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &resident) == 2 && page > 0) {
            head(b, "process_resident_memory_bytes", "gauge", "resident memory size");
            out(b, "process_resident_memory_bytes %llu\n", resident * (unsigned long long)page);
            head(b, "process_virtual_memory_bytes", "gauge", "virtual memory size");
            out(b, "process_virtual_memory_bytes %llu\n", size * (unsigned long long)page);
        }
        fclose(f);
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        long n = -1; /* the directory's own descriptor is not counted */
        while (readdir(dir)) n++;
        closedir(dir);
        n -= 2; /* . and .. */
        head(b, "process_open_fds", "gauge", "open file descriptors");
        out(b, "process_open_fds %ld\n", n);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        head(b, "process_max_fds", "gauge", "limit on open file descriptors");
        out(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
    /* start: field 22 of /proc/self/stat (clock ticks since boot) + btime */
    unsigned long long start = 0, btime = 0;
    char line[1024];
    if ((f = fopen("/proc/self/stat", "r"))) {
        if (fgets(line, sizeof line, f)) {
            const char *p = strrchr(line, ')'); /* the command may hold spaces */
            for (int field = 2; p && *p && field < 22; p++)
                if (*p == ' ') field++;
            if (p) start = strtoull(p, NULL, 10);
        }
        fclose(f);
    }
    if ((f = fopen("/proc/stat", "r"))) {
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "btime %llu", &btime) == 1) break;
        fclose(f);
    }
    long hz = sysconf(_SC_CLK_TCK);
    if (start && btime && hz > 0) {
        head(b, "process_start_time_seconds", "gauge", "start time since the Unix epoch");
        out(b, "process_start_time_seconds %.2f\n", (double)btime + (double)start / (double)hz);
    }
}

/* ---- the server -------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             void *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result text_reply(struct MHD_Connection *c, unsigned status, const char *s)
{
    char *p = strdup(s);
    return p ? reply(c, status, "text/plain; charset=utf-8", p, strlen(p)) : MHD_NO;
}

/* Under the mutex: snapshots have failed max_failures times in a row (or
 * more); the reason in msg. */
static bool snapshots_failing(const struct ink_metrics *m, char *msg, size_t n)
{
    if (!m->snap_max_failures || m->snap_streak < m->snap_max_failures) return false;
    snprintf(msg, n,
             "unhealthy: %llu snapshots failed in a row (engine.snapshot.max_failures %llu); "
             "last: %s\n",
             (unsigned long long)m->snap_streak, (unsigned long long)m->snap_max_failures,
             m->snap_error);
    return true;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *data_size, void **con_cls)
{
    (void)version, (void)data, (void)data_size, (void)con_cls;
    struct ink_metrics *m = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return text_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
    if (strcmp(url, "/health") == 0) {
        /* 503 when it no longer keeps its state safe (snapshots failing): a
         * restart (elsewhere) is better than a process that cannot be
         * resumed after a crash. Otherwise alive, 200, even while a
         * transport waits (a broker away): a restart would not bring the
         * broker back, but the operator should see why nothing moves. */
        char msg[2048] = "ok\n";
        size_t off = 3;
        pthread_mutex_lock(&m->mu);
        bool bad = snapshots_failing(m, msg, sizeof msg);
        if (!bad)
            for (int i = 0; i < m->n && off < sizeof msg; i++)
                if (m->nodes[i].not_ready)
                    off += (size_t)snprintf(msg + off, sizeof msg - off, "waiting: %s: %s\n",
                                            m->names[i], m->nodes[i].why);
        pthread_mutex_unlock(&m->mu);
        return text_reply(c, bad ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, msg);
    }
    if (strcmp(url, "/ready") == 0) {
        char msg[2048] = "not ready\n";
        pthread_mutex_lock(&m->mu);
        bool ready = m->ready;
        /* a transport that says it is not ready (broker down) says why */
        size_t off = 0;
        for (int i = 0; i < m->n && off < sizeof msg; i++)
            if (m->nodes[i].not_ready) {
                ready = false;
                off += (size_t)snprintf(msg + off, sizeof msg - off, "not ready: %s: %s\n",
                                        m->names[i], m->nodes[i].why);
            }
        char why[1024];
        if (off < sizeof msg && snapshots_failing(m, why, sizeof why)) {
            ready = false;
            snprintf(msg + off, sizeof msg - off, "not ready: snapshot: %s", why);
        }
        pthread_mutex_unlock(&m->mu);
        return ready ? text_reply(c, MHD_HTTP_OK, "ready\n")
                     : text_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
    }
    if (strcmp(url, "/metrics") == 0) {
        struct ink_buf b = {0};
        pthread_mutex_lock(&m->mu);
        render(m, &b);
        pthread_mutex_unlock(&m->mu);
        if (!b.p) return text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    }
    return text_reply(c, MHD_HTTP_NOT_FOUND, "not found: /metrics, /health, /ready\n");
}

static int parse_listen(const char *s, struct sockaddr_in *sa, struct ink_err *err)
{
    const char *colon = strrchr(s, ':');
    if (!colon) return ink_err_set(err, INK_EINVAL, "engine.http.listen '%s': no port", s);
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    long port = strtol(colon + 1, NULL, 10);
    sa->sin_port = htons((uint16_t)port);
    if (!host[0] || strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return ink_err_set(err, INK_EINVAL, "engine.http.listen '%s': not an IPv4 address", s);
    return 0;
}

int ink_metrics_start(struct ink_graph *g, struct ink_err *err)
{
    struct ink_metrics *m = calloc(1, sizeof *m);
    if (!m) return ink_err_set(err, INK_ENOMEM, "out of memory");
    g->metrics = m;
    pthread_mutex_init(&m->mu, NULL);
    m->n = g->n;
    m->names = calloc((size_t)g->n, sizeof *m->names);
    m->types = calloc((size_t)g->n, sizeof *m->types);
    m->kinds = calloc((size_t)g->n, sizeof *m->kinds);
    m->keyed = calloc((size_t)g->n, sizeof *m->keyed);
    m->nodes = calloc((size_t)g->n, sizeof *m->nodes);
    if (!m->names || !m->types || !m->kinds || !m->keyed || !m->nodes)
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    for (int i = 0; i < g->n; i++) {
        m->names[i] = g->nodes[i].name;
        m->kinds[i] = g->nodes[i].kind;
    }
    struct sockaddr_in sa;
    int rc = parse_listen(g->cfg->engine.http.listen, &sa, err);
    if (rc) return rc;
    m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                            handle, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!m->d)
        return ink_err_set(err, INK_EIO, "engine.http.listen %s: cannot listen there",
                           g->cfg->engine.http.listen);
    if (sa.sin_port == 0) {
        /* port 0: the kernel picks one (several processes on one config,
         * as a consumer group's members); say which */
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
        char host[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
        fprintf(stderr, "inkflow: engine.http: listening on %s:%u\n", host,
                di ? (unsigned)di->port : 0u);
    }
    return 0;
}

/* A source's or sink's optional hooks: connection events, readiness, its
 * own lines. Called under the mutex from the main thread. */
static void publish_transport(const struct ink_node *cn, struct node_copy *c)
{
    struct ink_node *n = (struct ink_node *)cn;
    bool src = n->kind == INK_NODE_SOURCE;
    if (src ? !n->src : !n->snk) return;
    void (*conn)(struct ink_node *, uint64_t *) = src ? n->src->conn : n->snk->conn;
    bool (*ready)(struct ink_node *, char *, size_t) = src ? n->src->ready : n->snk->ready;
    void (*extra)(struct ink_node *, struct ink_buf *) = src ? n->src->metrics : n->snk->metrics;
    c->has_conn = conn != NULL;
    if (conn) conn(n, c->conn);
    c->why[0] = 0;
    c->not_ready = ready && !ready(n, c->why, sizeof c->why);
    ink_buf_reset(&c->extra);
    if (extra) extra(n, &c->extra);
}

void ink_metrics_publish(struct ink_graph *g)
{
    struct ink_metrics *m = g->metrics;
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < g->n; i++) {
        const struct ink_node *n = &g->nodes[i];
        struct node_copy *c = &m->nodes[i];
        c->c = n->c;
        c->evicted = n->evicted;
        memcpy(c->lat, n->lat, sizeof c->lat);
        c->lat_sum = n->lat_sum;
        if (n->kind != INK_NODE_OPERATOR && n->impl) publish_transport(n, c);
        if (n->kind != INK_NODE_OPERATOR || !n->vt) continue;
        c->keys = n->slots ? (uint64_t)n->keys_used : 1;
        c->mem_bound = (double)n->vt->mem_bound(n->nc->conf) * (n->slots ? (double)n->nslots : 1) +
                       (double)(n->vt->scratch_bytes ? n->vt->scratch_bytes(n->nc->conf) : 0);
        c->gt = n->state ? n->vt->gauges : NULL;
        for (int k = 0; c->gt && k < INK_OP_GAUGES_MAX && c->gt[k].name; k++)
            c->gv[k] = c->gt[k].read(n->state);
    }
    m->snap_wall = g->snap_wall;
    m->snap_duration = g->snap_duration;
    m->snap_pause = g->snap_pause;
    m->snap_pause_max = g->snap_pause_max;
    m->snap_pause_sum = g->snap_pause_sum;
    memcpy(m->snap_pause_hist, g->snap_pause_hist, sizeof m->snap_pause_hist);
    m->snap_bytes = g->snap_bytes;
    m->snap_count = g->snap_count;
    m->snap_failed = g->snap_failed;
    m->snap_streak = g->snap_streak;
    m->snap_max_failures = (uint64_t)g->cfg->engine.snapshot.max_failures;
    snprintf(m->snap_error, sizeof m->snap_error, "%s", g->snap_error);
    pthread_mutex_unlock(&m->mu);
}

void ink_metrics_publish_ready(struct ink_graph *g)
{
    ink_metrics_publish(g);
    pthread_mutex_lock(&g->metrics->mu);
    g->metrics->ready = true;
    pthread_mutex_unlock(&g->metrics->mu);
}

void ink_metrics_stop(struct ink_graph *g)
{
    struct ink_metrics *m = g->metrics;
    if (!m) return;
    if (m->d) MHD_stop_daemon(m->d);
    pthread_mutex_destroy(&m->mu);
    free(m->names);
    free(m->types);
    free(m->kinds);
    free(m->keyed);
    for (int i = 0; m->nodes && i < m->n; i++) ink_buf_fini(&m->nodes[i].extra);
    free(m->nodes);
    free(m);
    g->metrics = NULL;
}
