/* inkflow top [ENDPOINT]: a live terminal view of a running graph, read from
 * its /metrics (engine.http). Plain ANSI, no curses: per node the in / out /
 * rejected rates between two scrapes, totals, keys and memory bound; the
 * process's resident memory, CPU and the snapshot age. q or ^C quits. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define MAX_NODES 64
#define BODY_MAX  (4 << 20)

struct node_row {
    char name[64], kind[12];
    double in, out, rej, keys, mem;
    bool has_keys, has_mem;
};

struct scrape {
    int n;
    struct node_row v[MAX_NODES];
    double rss, cpu, start, snap_age, ready;
    bool has_rss, has_cpu, has_start, has_snap;
    double t; /* monotonic time of the scrape */
};

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GET /metrics over HTTP/1.0 from host:port; the body in *body (malloc'd).
 * 0, or -1 with why. */
static int http_get(const char *host, const char *port, char **body, char *why, size_t wn)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int e = getaddrinfo(host, port, &hints, &ai);
    if (e) {
        snprintf(why, wn, "%s", gai_strerror(e));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            snprintf(why, wn, "%s", strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[512];
    int rn = snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nHost: %s:%s\r\n\r\n", host, port);
    if (write(fd, req, (size_t)rn) != rn) {
        snprintf(why, wn, "write: %s", strerror(errno));
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) break;
        if (len == cap) {
            if (cap >= BODY_MAX) break;
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) break;
            buf = nb, cap *= 2;
        }
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        len += (size_t)k;
    }
    close(fd);
    if (!buf) {
        snprintf(why, wn, "out of memory");
        return -1;
    }
    buf[len] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || !sep || strncmp(buf + 9, "200", 3) != 0) {
        snprintf(why, wn, "no metrics there (%.40s)", len ? buf : "empty reply");
        free(buf);
        return -1;
    }
    memmove(buf, sep + 4, strlen(sep + 4) + 1);
    *body = buf;
    return 0;
}

/* The value of label `key` in `a="x",b="y"}` into out. */
static bool label(const char *labels, const char *key, char *out, size_t n)
{
    size_t kl = strlen(key);
    for (const char *p = labels; (p = strstr(p, key)); p += kl) {
        if ((p != labels && p[-1] != '{' && p[-1] != ',') || strncmp(p + kl, "=\"", 2)) continue;
        p += kl + 2;
        size_t j = 0;
        while (*p && *p != '"' && j + 1 < n) {
            if (*p == '\\' && p[1]) p++;
            out[j++] = *p++;
        }
        out[j] = 0;
        return true;
    }
    return false;
}

static struct node_row *row_of(struct scrape *s, const char *labels)
{
    char name[64], kind[12] = "";
    if (!label(labels, "node", name, sizeof name)) return NULL;
    label(labels, "kind", kind, sizeof kind);
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].name, name)) {
            if (kind[0] && !s->v[i].kind[0])
                snprintf(s->v[i].kind, sizeof s->v[i].kind, "%s", kind);
            return &s->v[i];
        }
    if (s->n == MAX_NODES) return NULL;
    struct node_row *r = &s->v[s->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    return r;
}

/* Prometheus text into the rows (docs/state.md names). */
static void parse(char *body, struct scrape *s)
{
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *sp = strrchr(line, ' ');
        if (!sp) continue;
        double v = strtod(sp + 1, NULL);
        *sp = 0;
        char *lb = strchr(line, '{');
        const char *labels = lb ? lb + 1 : ""; /* name="value",... } */
        if (lb) *lb = 0;
        struct node_row *r;
        if (!strcmp(line, "inkflow_records_in_total") && (r = row_of(s, labels)))
            r->in = v;
        else if (!strcmp(line, "inkflow_records_out_total") && (r = row_of(s, labels)))
            r->out = v;
        else if (!strcmp(line, "inkflow_records_rejected_total") && (r = row_of(s, labels)))
            r->rej += v;
        else if (!strcmp(line, "inkflow_operator_keys") && (r = row_of(s, labels)))
            r->keys = v, r->has_keys = true;
        else if (!strcmp(line, "inkflow_operator_memory_bound_bytes") && (r = row_of(s, labels)))
            r->mem = v, r->has_mem = true;
        else if (!strcmp(line, "process_resident_memory_bytes"))
            s->rss = v, s->has_rss = true;
        else if (!strcmp(line, "process_cpu_seconds_total"))
            s->cpu = v, s->has_cpu = true;
        else if (!strcmp(line, "process_start_time_seconds"))
            s->start = v, s->has_start = true;
        else if (!strcmp(line, "inkflow_snapshot_age_seconds"))
            s->snap_age = v, s->has_snap = true;
        else if (!strcmp(line, "inkflow_ready"))
            s->ready = v;
    }
}

static const char *human(double b, char *buf, size_t n)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) b /= 1024, i++;
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
    return buf;
}

static const char *rate(double r, char *buf, size_t n)
{
    if (r >= 1e6)
        snprintf(buf, n, "%.2fM", r / 1e6);
    else if (r >= 1e4)
        snprintf(buf, n, "%.1fk", r / 1e3);
    else
        snprintf(buf, n, "%.1f", r);
    return buf;
}

/* One frame: the table of rates since `prev` (NULL: the first scrape). */
static void draw(FILE *o, const char *ep, const struct scrape *s, const struct scrape *prev,
                 const char *err, bool ansi)
{
    char a[32], b[32], c[32];
    if (ansi) fputs("\x1b[H\x1b[2J", o);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    fprintf(o, "inkflow top  %s  %02d:%02d:%02d UTC  (q or ^C to quit)\n", ep, tm.tm_hour,
            tm.tm_min, tm.tm_sec);
    if (err) {
        fprintf(o, "\n  cannot read http://%s/metrics: %s (retrying)\n", ep, err);
        fflush(o);
        return;
    }
    double dt = prev ? s->t - prev->t : 0;
    double cpu = prev && dt > 0 && s->has_cpu ? (s->cpu - prev->cpu) / dt : NAN;
    fprintf(o, "  ready %s   rss %s   cpu %s   up %s   snapshot age %s\n",
            s->ready > 0 ? "yes" : "no", s->has_rss ? human(s->rss, a, sizeof a) : "-",
            isfinite(cpu) ? (snprintf(b, sizeof b, "%.0f%%", 100 * cpu), b) : "-",
            s->has_start ? (snprintf(c, sizeof c, "%.0fs", fmax(0, wall() - s->start)), c) : "-",
            s->has_snap && isfinite(s->snap_age) ? (snprintf(a, sizeof a, "%.1fs", s->snap_age), a)
                                                 : "none");
    fprintf(o, "\n  %-20s %-8s %10s %10s %10s %14s %10s %8s %10s\n", "NODE", "KIND", "IN/s",
            "OUT/s", "REJ/s", "IN", "REJECTED", "KEYS", "MEM");
    for (int i = 0; i < s->n; i++) {
        const struct node_row *r = &s->v[i];
        const struct node_row *p = NULL;
        for (int j = 0; prev && j < prev->n; j++)
            if (!strcmp(prev->v[j].name, r->name)) p = &prev->v[j];
        char ri[16] = "-", ro[16] = "-", rr[16] = "-", k[16] = "", m[32] = "";
        if (p && dt > 0) {
            rate((r->in - p->in) / dt, ri, sizeof ri);
            rate((r->out - p->out) / dt, ro, sizeof ro);
            rate((r->rej - p->rej) / dt, rr, sizeof rr);
        }
        if (r->has_keys) snprintf(k, sizeof k, "%.0f", r->keys);
        if (r->has_mem) human(r->mem, m, sizeof m);
        fprintf(o, "  %-20.20s %-8s %10s %10s %10s %14.0f %10.0f %8s %10s\n", r->name, r->kind, ri,
                ro, rr, r->in, r->rej, k, m);
    }
    fflush(o);
}

static volatile sig_atomic_t quit;
static void on_quit(int sig)
{
    (void)sig;
    quit = 1;
}

static const char top_usage[] =
    "usage: inkflow top [HOST:PORT] [--interval SECONDS] [--once]\n"
    "A live view of a running graph from its /metrics (engine.http; default\n"
    "127.0.0.1:9464): per node the records in, out and rejected per second, totals,\n"
    "keys and memory bound; the process's memory, CPU and snapshot age. q or ^C quits.\n"
    "--once prints one frame (two scrapes, SECONDS apart) without escape codes and exits:\n"
    "0, or 1 when the metrics cannot be read.\n";

int ink_cmd_top(int argc, char **argv)
{
    double interval = 1;
    bool once = false;
    static const struct option opts[] = {{"interval", required_argument, NULL, 'i'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(top_usage, stdout);
            return 0;
        } else if (c == 'i') {
            if (ink_opt_double("top", "interval", optarg, 0.05, 3600, &interval)) return 2;
        } else if (c == 'o') {
            once = true;
        } else {
            return ink_opt_error("top", c, optind, argv);
        }
    }
    if (argc - optind > 1) return ink_usage("top: unexpected argument '%s'", argv[optind + 1]);
    char ep[256] = "127.0.0.1:9464";
    if (argc - optind == 1) {
        const char *a = argv[optind];
        if (!strncmp(a, "http://", 7)) a += 7;
        snprintf(ep, sizeof ep, "%s", a);
        size_t l = strlen(ep);
        if (l && ep[l - 1] == '/') ep[l - 1] = 0;
    }
    char host[256], *colon = strrchr(ep, ':');
    if (!colon || colon == ep || !colon[1])
        return ink_usage("top: give the metrics endpoint as HOST:PORT, not '%s'", ep);
    snprintf(host, sizeof host, "%.*s", (int)(colon - ep), ep);
    const char *port = colon + 1;

    bool tty = !once && isatty(0) && isatty(1);
    struct termios saved;
    if (tty && tcgetattr(0, &saved) == 0) {
        struct termios raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO); /* keys one by one; ^C stays a signal */
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(0, TCSANOW, &raw);
        fputs("\x1b[?1049h\x1b[?25l", stdout); /* alternate screen, no cursor */
    } else {
        tty = false;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_quit;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct scrape cur, prev;
    bool have_prev = false, keys = tty;
    int rc = 0;
    while (!quit) {
        char *body = NULL, why[200] = "";
        memset(&cur, 0, sizeof cur);
        cur.t = mono();
        bool ok = http_get(host, port, &body, why, sizeof why) == 0;
        if (ok) {
            parse(body, &cur);
            free(body);
        }
        if (once) {
            if (!ok) {
                fprintf(stderr, "inkflow top: cannot read http://%s/metrics: %s\n", ep, why);
                rc = 1;
                break;
            }
            if (have_prev) {
                draw(stdout, ep, &cur, &prev, NULL, false);
                break;
            }
        } else {
            draw(stdout, ep, &cur, have_prev ? &prev : NULL, ok ? NULL : why, tty);
        }
        if (ok) prev = cur, have_prev = true;
        /* wait for the next frame, or a key */
        double until = mono() + interval;
        while (!quit) {
            double left = until - mono();
            if (left <= 0) break;
            struct pollfd pf = {.fd = 0, .events = POLLIN};
            int pr = poll(&pf, keys ? 1 : 0, (int)(left * 1000) + 1);
            if (pr > 0 && (pf.revents & POLLIN)) {
                char ch;
                ssize_t k = read(0, &ch, 1);
                if (k == 1 && (ch == 'q' || ch == 'Q')) quit = 1;
                if (k == 0) keys = false; /* the terminal went away: ^C only */
            } else if (pr > 0) {
                keys = false;
            }
        }
    }
    if (tty) {
        fputs("\x1b[?25h\x1b[?1049l", stdout);
        fflush(stdout);
        tcsetattr(0, TCSANOW, &saved);
    }
    return rc;
}
