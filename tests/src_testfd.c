/* A test-only source, `testfd`: numbers, one a line, read from an inherited
 * file descriptor (a pipe) and emitted as records {x: [v], t: line}. It is
 * polled through its fd, as a broker client's socket or queue fd would be,
 * and saves its position (lines read). Registered in transports/registry.c
 * only in test builds (INK_TEST_TRANSPORTS): it shows that a new source is
 * its own file, its registry line and its CMakeLists.txt entry. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
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
};
