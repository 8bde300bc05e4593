/* Test-only transports on inherited file descriptors. The source `testfd`: numbers, one a line,
 * read from an inherited file descriptor (a pipe) and emitted as records {x: [v], t: line}. It is
 * polled through its fd, as a broker client's socket or queue fd would be,
 * saves its position (lines read), reports itself not ready until its
 * first line (/ready) and exports its line count (/metrics). Registered in transports/registry.c
 * only in test builds (INK_TEST_TRANSPORTS): it shows that a new source is
 * its own file, its registry line and its CMakeLists.txt entry. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../engine/graph.h"
#include "../engine/state.h"

struct testfd_conf {
    int64_t fd;
};

static const struct ink_param testfd_params[] = {
    {.name = "fd",
     .type = INK_P_INT,
     .offset = offsetof(struct testfd_conf, fd),
     .flags = INK_PF_REQUIRED,
     .min = 0,
     .max = 1048576,
     .help = "file descriptor to read (inherited, e.g. a pipe)"},
    {0},
};

struct testfd {
    int fd;
    char buf[256];
    size_t len;
    uint64_t lines; /* lines read: the position */
};

static int testfd_open(struct ink_node *n, struct ink_err *err)
{
    struct testfd *s = n->impl;
    const struct testfd_conf *c = n->nc->conf;
    s->fd = (int)c->fd;
    int fl = fcntl(s->fd, F_GETFL);
    if (fl < 0 || fcntl(s->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return ink_err_set(err, INK_EIO, "fd %d: %s", s->fd, strerror(errno));
    return 0;
}

static int testfd_pollitem(struct ink_node *n, struct ink_pollitem *pi)
{
    struct testfd *s = n->impl;
    *pi = (struct ink_pollitem){.fd = s->fd, .events = INK_POLLIN};
    return 1;
}

static int emit_line(struct ink_node *n, struct testfd *s, const char *line, size_t len)
{
    char tmp[sizeof s->buf + 1];
    memcpy(tmp, line, len);
    tmp[len] = 0;
    char *end = NULL;
    double v = strtod(tmp, &end);
    s->lines++;
    if (end == tmp) {
        ink__source_reject(n, INK_REJ_DECODE, "not a number", line, len);
        return 0;
    }
    struct ink_record rec;
    memset(&rec, 0, sizeof rec);
    rec.flags = INK_HAS_X | INK_HAS_T;
    rec.x = &v;
    rec.dim = 1;
    rec.t = (int64_t)s->lines;
    return ink__source_emit(n, &rec);
}

static int testfd_pump(struct ink_node *n, int budget)
{
    struct testfd *s = n->impl;
    int done = 0;
    while (done < budget) {
        char *nl = memchr(s->buf, '\n', s->len);
        if (nl) {
            size_t k = (size_t)(nl - s->buf);
            int rc = emit_line(n, s, s->buf, k);
            memmove(s->buf, nl + 1, s->len - k - 1);
            s->len -= k + 1;
            done++;
            if (rc < 0) return rc;
            continue;
        }
        if (s->len == sizeof s->buf) return INK_EPARSE; /* a line longer than the buffer */
        ssize_t r = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) break;
        if (r == 0 && s->len > 0) { /* a last line without its newline */
            int rc = emit_line(n, s, s->buf, s->len);
            s->len = 0;
            done++;
            if (rc < 0) return rc;
            continue;
        }
        if (r <= 0) return -1; /* end of file (or an error): ended */
        s->len += (size_t)r;
    }
    return done;
}

static void testfd_close(struct ink_node *n)
{
    (void)n; /* the fd belongs to whoever passed it */
}

static int testfd_save(struct ink_node *n, msgpack_packer *pk)
{
    struct testfd *s = n->impl;
    msgpack_pack_map(pk, 1);
    ink_pack_key(pk, "lines");
    return msgpack_pack_uint64(pk, s->lines) ? INK_ENOMEM : 0;
}

static int testfd_restore(struct ink_node *n, const msgpack_object *pos, struct ink_err *err)
{
    struct testfd *s = n->impl;
    return ink_state_u64(pos, "lines", &s->lines, err);
}

static bool testfd_ready(struct ink_node *n, char *why, size_t len)
{
    struct testfd *s = n->impl;
    if (s->lines == 0) snprintf(why, len, "no line read yet");
    return s->lines > 0;
}

static void testfd_metrics(struct ink_node *n, struct ink_buf *out)
{
    struct testfd *s = n->impl;
    char line[300];
    int k = snprintf(line, sizeof line,
                     "# HELP inkflow_testfd_lines lines read\n# TYPE inkflow_testfd_lines "
                     "counter\ninkflow_testfd_lines{node=\"%s\"} %llu\n",
                     n->name, (unsigned long long)s->lines);
    if (k > 0 && (size_t)k < sizeof line) ink_buf_append(out, line, (size_t)k);
}

static bool testfd_finite(const void *conf)
{
    (void)conf;
    return true;
}

const struct ink_source_type ink_source_testfd = {
    .type =
        {
            .name = "testfd",
            .kind = INK_NODE_SOURCE,
            .summary = "test builds only: numbers, one a line, from an inherited fd",
            .params = testfd_params,
            .conf_size = sizeof(struct testfd_conf),
        },
    .impl_size = sizeof(struct testfd),
    .finite = testfd_finite,
    .open = testfd_open,
    .pollitem = testfd_pollitem,
    .pump = testfd_pump,
    .close = testfd_close,
    .save = testfd_save,
    .restore = testfd_restore,
    .ready = testfd_ready,
    .metrics = testfd_metrics,
};

/* ---- the sink ------------------------------------------------------------ */

struct testfd_sink_conf {
    int64_t fd, ack_fd;
    bool durable; /* give fd to the snapshot writer to fdatasync (a pipe: it fails) */
};

static const struct ink_param testfd_sink_params[] = {
    {.name = "fd",
     .type = INK_P_INT,
     .offset = offsetof(struct testfd_sink_conf, fd),
     .flags = INK_PF_REQUIRED,
     .min = 0,
     .max = 1048576,
     .help = "file descriptor to write lines to"},
    {.name = "ack_fd",
     .type = INK_P_INT,
     .offset = offsetof(struct testfd_sink_conf, ack_fd),
     .flags = INK_PF_REQUIRED,
     .min = 0,
     .max = 1048576,
     .help = "file descriptor polled for acknowledgements (bytes, counted)"},
    {.name = "durable",
     .type = INK_P_BOOL,
     .offset = offsetof(struct testfd_sink_conf, durable),
     .def = "false",
     .help = "hand fd to the snapshot writer as the output to fdatasync (durable_fd)"},
    {0},
};

struct testfd_sink {
    int fd, ack_fd;
    uint64_t acks; /* bytes read from ack_fd */
};

static int tsnk_open(struct ink_node *n, struct ink_err *err)
{
    struct testfd_sink *k = n->impl;
    const struct testfd_sink_conf *c = n->nc->conf;
    k->fd = (int)c->fd;
    k->ack_fd = (int)c->ack_fd;
    int fl = fcntl(k->ack_fd, F_GETFL);
    if (fl < 0 || fcntl(k->ack_fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return ink_err_set(err, INK_EIO, "ack_fd %d: %s", k->ack_fd, strerror(errno));
    return 0;
}

static int tsnk_write(struct ink_node *n, const struct ink_record *rec)
{
    struct testfd_sink *k = n->impl;
    char line[64];
    int len = snprintf(line, sizeof line, "%.17g\n", rec->dim ? rec->x[0] : 0.0);
    if (write(k->fd, line, (size_t)len) != len) {
        n->c.dropped++;
        return 1;
    }
    return 0;
}

static void tsnk_nothing(struct ink_node *n)
{
    (void)n;
}

static int tsnk_pollitem(struct ink_node *n, struct ink_pollitem *pi)
{
    struct testfd_sink *k = n->impl;
    *pi = (struct ink_pollitem){.fd = k->ack_fd, .events = INK_POLLIN};
    return 1;
}

static void tsnk_service(struct ink_node *n)
{
    struct testfd_sink *k = n->impl;
    char b[64];
    ssize_t r;
    while ((r = read(k->ack_fd, b, sizeof b)) > 0) k->acks += (uint64_t)r;
}

static int tsnk_durable_fd(struct ink_node *n)
{
    const struct testfd_sink_conf *c = n->nc->conf;
    return c->durable ? ((struct testfd_sink *)n->impl)->fd : -1;
}

static void tsnk_metrics(struct ink_node *n, struct ink_buf *out)
{
    struct testfd_sink *k = n->impl;
    char line[300];
    int len = snprintf(line, sizeof line,
                       "# HELP inkflow_testfd_acks acknowledgement bytes read\n# TYPE "
                       "inkflow_testfd_acks counter\ninkflow_testfd_acks{node=\"%s\"} %llu\n",
                       n->name, (unsigned long long)k->acks);
    if (len > 0 && (size_t)len < sizeof line) ink_buf_append(out, line, (size_t)len);
}

const struct ink_sink_type ink_sink_testfd = {
    .type =
        {
            .name = "testfd",
            .kind = INK_NODE_SINK,
            .summary = "test builds only: x[0] as lines to an fd, acknowledgements from another",
            .params = testfd_sink_params,
            .conf_size = sizeof(struct testfd_sink_conf),
        },
    .impl_size = sizeof(struct testfd_sink),
    .open = tsnk_open,
    .write = tsnk_write,
    .flush = tsnk_nothing,
    .finish = tsnk_nothing,
    .close = tsnk_nothing,
    .pollitem = tsnk_pollitem,
    .service = tsnk_service,
    .metrics = tsnk_metrics,
    .durable_fd = tsnk_durable_fd,
};
