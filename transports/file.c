/* File transport: the reader/writer of record files and the `file` source
 * and sink nodes, with their parameter tables. Their snapshot position is
 * the source's byte offset and the sink's length (docs/state.md). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../engine/graph.h"
#include "../engine/clock.h"
#include "../engine/lock.h"
#include "../engine/state.h"
#include "file_io.h"

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int ink_format_from_path(const char *path, int fallback)
{
    if (ends_with(path, ".csv")) return INK_FMT_CSV;
    if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson") || ends_with(path, ".json"))
        return INK_FMT_JSONL;
    if (ends_with(path, ".msgpack") || ends_with(path, ".mp") || ends_with(path, ".mpk"))
        return INK_FMT_MSGPACK;
    if (ends_with(path, ".txt") || ends_with(path, ".log")) return INK_FMT_TEXT;
    return fallback;
}

/* ---- reader ---------------------------------------------------------------- */

int ink_file_reader_open(struct ink_file_reader *r, const char *path, int format,
                         const struct ink_limits *lim, struct ink_err *err)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->lineno = 1;
    r->is_stdin = strcmp(path, "-") == 0;
    if (format == INK_FMT_AUTO)
        format = ink_format_from_path(path, r->is_stdin ? INK_FMT_JSONL : -1);
    if (format < 0 || format == INK_FMT_TEXT)
        return ink_err_set(
            err, INK_EINVAL,
            "%s: cannot tell the format from the name; say format: csv, jsonl or msgpack", path);
    r->format = format;
    if (ink_decoder_init(&r->dec, lim)) return ink_err_set(err, INK_ENOMEM, "out of memory");
    r->fd = r->is_stdin ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        ink_decoder_fini(&r->dec);
        return ink_err_set(err, INK_EIO, "%s: %s", path, strerror(e));
    }
    struct stat st;
    if (!r->is_stdin && fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode))
        r->size = (uint64_t)st.st_size;
    /* room for the largest record plus slack so reads stay large */
    r->cap = (size_t)r->dec.lim.max_frame * 2 + (1u << 20);
    r->buf = malloc(r->cap + 1);
    if (!r->buf) {
        ink_file_reader_close(r);
        return ink_err_set(err, INK_ENOMEM, "out of memory");
    }
    return 0;
}

void ink_file_reader_close(struct ink_file_reader *r)
{
    if (r->fd > 0) close(r->fd);
    r->fd = -1;
    free(r->buf);
    r->buf = NULL;
    if (r->have_hdr) ink_csv_header_fini(&r->hdr);
    r->have_hdr = false;
    ink_decoder_fini(&r->dec);
}

/* Move the unread tail to the front and read more. 1 = got bytes, 0 = EOF, <0 error. */
static int fill(struct ink_file_reader *r)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->eof || r->len >= r->cap) return 0;
    for (;;) {
        ssize_t got = read(r->fd, r->buf + r->len, r->cap - r->len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            snprintf(r->why, sizeof r->why, "read: %s", strerror(errno));
            return INK_EIO;
        }
        if (got == 0) {
            r->eof = true;
            return 0;
        }
        r->len += (size_t)got;
        return 1;
    }
}

static void consume(struct ink_file_reader *r, size_t n)
{
    r->pos += n;
    r->consumed += n;
}

/* Find the extent of the next text record (line or CSV record). 1 found, 0 need more. */
static int text_extent(struct ink_file_reader *r, size_t *n)
{
    const char *p = (const char *)r->buf + r->pos;
    size_t avail = r->len - r->pos;
    if (r->format == INK_FMT_CSV) {
        if (ink_csv_record_len(p, avail, n) == 0) return 1;
    } else {
        const char *nl = memchr(p, '\n', avail);
        if (nl) {
            *n = (size_t)(nl - p) + 1;
            return 1;
        }
    }
    if (r->eof && avail > 0) {
        *n = avail; /* last record without a newline */
        return 1;
    }
    return 0;
}

static int next_text(struct ink_file_reader *r, struct ink_record *rec, enum ink_reject *why,
                     const uint8_t **raw, size_t *rawlen)
{
    for (;;) {
        size_t n = 0;
        int have = text_extent(r, &n);
        size_t maxrec = r->dec.lim.max_frame;
        if (!have) {
            if (r->len - r->pos > maxrec) {
                /* Over the cap and still no end: reject it and skip to the
                 * next newline without holding it all. */
                *why = INK_REJ_TOO_LARGE;
                snprintf(r->why, sizeof r->why, "line %llu longer than %zu bytes",
                         (unsigned long long)r->lineno, maxrec);
                *raw = NULL; /* the bytes are skipped, not held */
                *rawlen = 0;
                for (;;) {
                    const char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
                    if (nl) {
                        consume(r, (size_t)((const uint8_t *)nl - (r->buf + r->pos)) + 1);
                        break;
                    }
                    consume(r, r->len - r->pos);
                    int f = fill(r);
                    if (f <= 0) break;
                }
                r->lineno++;
                return 2;
            }
            int f = fill(r);
            if (f < 0) return f;
            if (f == 0 && !r->eof) continue; /* buffer compacted */
            if (f == 0 && r->pos == r->len) return 0;
            continue;
        }
        const char *line = (const char *)r->buf + r->pos;
        uint64_t lineno = r->lineno;
        for (size_t i = 0; i < n; i++) r->lineno += line[i] == '\n';
        if (r->eof && n == r->len - r->pos && line[n - 1] != '\n') r->lineno++;
        consume(r, n);
        if (ink_line_blank(line, n)) continue;
        if (n > maxrec) {
            *why = INK_REJ_TOO_LARGE;
            snprintf(r->why, sizeof r->why, "line %llu: %zu bytes, more than %zu",
                     (unsigned long long)lineno, n, maxrec);
            *raw = (const uint8_t *)line;
            *rawlen = n;
            return 2;
        }
        if (r->format == INK_FMT_CSV && !r->have_hdr) {
            struct ink_err e = {0};
            if (ink_csv_header_parse(&r->hdr, line, n, &e)) {
                snprintf(r->why, sizeof r->why, "line %llu: CSV header: %s",
                         (unsigned long long)lineno, e.msg);
                return INK_EPARSE;
            }
            r->have_hdr = true;
            continue;
        }
        enum ink_reject rj = r->format == INK_FMT_CSV
                                 ? ink_decode_csv(&r->dec, &r->hdr, line, n, rec)
                                 : ink_decode_json(&r->dec, line, n, rec);
        if (rj != INK_REJ_NONE) {
            *why = rj;
            snprintf(r->why, sizeof r->why, "line %llu: %s", (unsigned long long)lineno,
                     r->dec.why);
            *raw = (const uint8_t *)line;
            *rawlen = n;
            return 2;
        }
        return 1;
    }
}

static int next_msgpack(struct ink_file_reader *r, struct ink_record *rec, enum ink_reject *why,
                        const uint8_t **raw, size_t *rawlen)
{
    for (;;) {
        size_t avail = r->len - r->pos, n = 0;
        if (avail == 0 && r->eof) return 0;
        enum ink_reject sw = INK_REJ_NONE;
        int s = avail ? ink_msgpack_scan(r->buf + r->pos, avail, r->dec.lim.max_depth, &n, &sw) : 1;
        if (s == 1) {
            if (avail > r->dec.lim.max_frame) {
                snprintf(r->why, sizeof r->why,
                         "msgpack object at byte %llu is larger than %u bytes (or its declared "
                         "length is corrupt); the rest of the stream cannot be framed",
                         (unsigned long long)r->consumed, r->dec.lim.max_frame);
                r->fatal = true;
                return INK_EPARSE;
            }
            if (r->eof) {
                snprintf(r->why, sizeof r->why, "truncated msgpack object at the end (byte %llu)",
                         (unsigned long long)r->consumed);
                *why = INK_REJ_TRUNCATED;
                *raw = r->buf + r->pos;
                *rawlen = avail;
                consume(r, avail);
                return 2;
            }
            int f = fill(r);
            if (f < 0) return f;
            continue;
        }
        if (s < 0) {
            snprintf(r->why, sizeof r->why,
                     "malformed msgpack at byte %llu; the rest of the stream cannot be framed",
                     (unsigned long long)r->consumed);
            r->fatal = true;
            return INK_EPARSE;
        }
        const uint8_t *p = r->buf + r->pos;
        uint64_t at = r->consumed;
        consume(r, n);
        enum ink_reject rj = ink_decode_msgpack(&r->dec, p, n, rec);
        if (rj != INK_REJ_NONE) {
            *why = rj;
            snprintf(r->why, sizeof r->why, "object at byte %llu: %s", (unsigned long long)at,
                     r->dec.why);
            *raw = p;
            *rawlen = n;
            return 2;
        }
        return 1;
    }
}

int ink_file_reader_next(struct ink_file_reader *r, struct ink_record *rec, enum ink_reject *why,
                         const uint8_t **raw, size_t *rawlen)
{
    if (r->fatal) return INK_EPARSE;
    if (r->format == INK_FMT_MSGPACK) return next_msgpack(r, rec, why, raw, rawlen);
    return next_text(r, rec, why, raw, rawlen);
}

int ink_file_reader_seek(struct ink_file_reader *r, uint64_t offset, struct ink_err *err)
{
    /* Text formats re-read from the start so that the CSV header and line
     * numbers are right; then skip whole records up to the offset. */
    struct ink_record rec;
    enum ink_reject why;
    const uint8_t *raw;
    size_t rawlen;
    while (r->consumed < offset) {
        int rc = ink_file_reader_next(r, &rec, &why, &raw, &rawlen);
        if (rc <= 0)
            return ink_err_set(err, INK_ESTATE, "cannot resume at byte %llu: the file is shorter",
                               (unsigned long long)offset);
    }
    if (r->consumed != offset)
        return ink_err_set(err, INK_ESTATE, "byte %llu is not a record boundary",
                           (unsigned long long)offset);
    return 0;
}

/* ---- writer ---------------------------------------------------------------- */

int ink_file_writer_open(struct ink_file_writer *w, const char *path, int format, bool append,
                         bool lock, struct ink_err *err)
{
    memset(w, 0, sizeof *w);
    w->is_stdout = strcmp(path, "-") == 0;
    if (format == INK_FMT_AUTO) format = ink_format_from_path(path, INK_FMT_JSONL);
    w->format = format;
    if (w->is_stdout) {
        w->f = stdout;
        return 0;
    }
    /* opened without O_TRUNC: the lock comes before the first change */
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : 0), 0644);
    if (fd < 0) return ink_err_set(err, INK_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st))
        rc = ink_err_set(err, INK_EIO, "%s: %s", path, strerror(errno));
    else if (lock && S_ISREG(st.st_mode))
        rc = ink_lock_fd(fd, path, "a file sink's output", err);
    if (!rc && !append && S_ISREG(st.st_mode) && ftruncate(fd, 0))
        rc = ink_err_set(err, INK_EIO, "%s: truncate: %s", path, strerror(errno));
    if (!rc && !(w->f = fdopen(fd, append ? "ab" : "wb")))
        rc = ink_err_set(err, INK_EIO, "%s: %s", path, strerror(errno));
    if (rc) close(fd);
    return rc;
}

int ink_file_writer_write(struct ink_file_writer *w, const struct ink_record *rec)
{
    int rc;
    switch (w->format) {
    case INK_FMT_CSV:
        if (!w->header_done) {
            size_t mark = w->buf.len;
            rc = ink_encode_csv_header(&w->lay, rec, w->flags, &w->buf);
            if (rc) return INK_ENOMEM;
            if (w->header_skip) w->buf.len = mark;
            w->header_done = true;
        }
        rc = ink_encode_csv(&w->lay, rec, &w->buf);
        break;
    case INK_FMT_MSGPACK:
        rc = ink_encode_msgpack(rec, w->flags, &w->buf);
        break;
    case INK_FMT_TEXT:
        rc = ink_encode_text(rec, w->flags, &w->buf);
        break;
    default:
        rc = ink_encode_json(rec, w->flags, &w->buf);
        break;
    }
    if (rc) return INK_ENOMEM;
    if (w->buf.len >= (1u << 16)) return ink_file_writer_flush(w) ? INK_EIO : 0;
    return 0;
}

int ink_file_writer_flush(struct ink_file_writer *w)
{
    int bad = 0;
    if (w->buf.len) {
        bad = fwrite(w->buf.p, 1, w->buf.len, w->f) != w->buf.len;
        ink_buf_reset(&w->buf);
    }
    if (fflush(w->f)) bad = 1;
    return bad ? INK_EIO : 0;
}

int ink_file_writer_close(struct ink_file_writer *w)
{
    if (!w->f) return 0;
    int rc = ink_file_writer_flush(w);
    if (!w->is_stdout && fclose(w->f)) rc = INK_EIO;
    w->f = NULL;
    ink_buf_fini(&w->buf);
    return rc;
}

/* ---- the file source node ------------------------------------------------------ */

static const char *const src_formats[] = {"auto", "csv", "jsonl", "msgpack", NULL};
static const char *const sink_formats[] = {"auto", "csv", "jsonl", "msgpack", "text", NULL};

#define FSOFF(f) offsetof(struct ink_file_src_conf, f)
static const struct ink_param file_src_params[] = {
    {.name = "path",
     .type = INK_P_STRING,
     .offset = FSOFF(path),
     .flags = INK_PF_REQUIRED,
     .help = "file to read (relative to the config's directory), or - for standard input"},
    {.name = "format",
     .type = INK_P_ENUM,
     .offset = FSOFF(format),
     .def = "auto",
     .choices = src_formats,
     .help = "csv (header row; t, key, y, arm columns, the rest is x), jsonl or msgpack; auto = "
             "from the extension"},
    {.name = "rate",
     .type = INK_P_DOUBLE,
     .offset = FSOFF(rate),
     .def = "0",
     .min = 0,
     .max = 1e9,
     .help = "replay at this many records per second (0 = as fast as possible)"},
    INK_FIELDS_PARAM(struct ink_file_src_conf),
    {0},
};

#define FKOFF(f) offsetof(struct ink_file_sink_conf, f)
static const struct ink_param file_sink_params[] = {
    {.name = "path",
     .type = INK_P_STRING,
     .offset = FKOFF(path),
     .flags = INK_PF_REQUIRED,
     .help = "file to write (relative to the config's directory), or - for standard output"},
    {.name = "format",
     .type = INK_P_ENUM,
     .offset = FKOFF(format),
     .def = "auto",
     .choices = sink_formats,
     .help = "jsonl, csv, msgpack or text (one readable line per record); auto = from the "
             "extension, jsonl for -"},
    {.name = "append",
     .type = INK_P_BOOL,
     .offset = FKOFF(append),
     .def = "false",
     .help = "append instead of truncating"},
    {.name = "every",
     .type = INK_P_INT,
     .offset = FKOFF(every),
     .def = "1",
     .min = 1,
     .max = 1000000000,
     .help = "write one record in every N (a readable sample of a long stream)"},
    {.name = "head",
     .type = INK_P_INT,
     .offset = FKOFF(head),
     .def = "0",
     .min = 0,
     .max = (double)INT64_MAX,
     .help = "write at most this many records (0 = all)"},
    {0},
};

struct file_src {
    struct ink_file_reader r;
    const struct ink_file_src_conf *c;
    char path[4096];
    double t_start, last_progress;
    bool progress, progress_shown;
};

static int fsrc_open(struct ink_node *n, struct ink_err *err)
{
    struct file_src *fs = n->impl;
    fs->r.fd = -1;
    fs->c = n->nc->conf;
    if (!ink_path_resolve(n->g->cfg->base_dir, fs->c->path, fs->path, sizeof fs->path))
        return ink_err_set(err, INK_EINVAL, "path too long: %s", fs->c->path);
    struct ink_limits lim =
        ink__source_limits(n, (uint64_t)n->g->cfg->engine.max_record_bytes + 65536);
    int rc = ink_file_reader_open(&fs->r, fs->path, fs->c->format, &lim, err);
    if (!rc) rc = ink_decoder_set_fields(&fs->r.dec, &fs->c->fields, err);
    if (rc) return rc;
    fs->t_start = ink_now();
    fs->progress = n->g->cfg->engine.progress && isatty(2) && fs->r.size > 0;
    return 0;
}

static int fsrc_pollitem(struct ink_node *n, struct ink_pollitem *pi)
{
    (void)n, (void)pi;
    return 0; /* always ready */
}

static void progress(struct ink_node *n, struct file_src *fs, bool final)
{
    double t = ink_now();
    if (!final && t - fs->last_progress < 0.5) return;
    fs->last_progress = t;
    double el = t - fs->t_start;
    double pct = fs->r.size ? 100.0 * (double)fs->r.consumed / (double)fs->r.size : 0;
    fprintf(stderr, "\r\033[K[%s] %llu records  %5.1f%%  %.0f records/s%s", n->name,
            (unsigned long long)n->c.in, pct, el > 0 ? (double)n->c.in / el : 0.0,
            final ? "\n" : "");
    fs->progress_shown = true;
}

static int fsrc_pump(struct ink_node *n, int budget)
{
    struct file_src *fs = n->impl;
    int done = 0;
    for (; done < budget && !n->g->stop; done++) {
        if (fs->c->rate > 0) {
            double due = fs->t_start + (double)n->c.in / fs->c->rate;
            double wait = due - ink_now();
            if (wait > 0) {
                if (wait > 0.05) return done; /* let the loop serve sockets meanwhile */
                struct timespec ts = {0, (long)(wait * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        struct ink_record rec;
        enum ink_reject why;
        const uint8_t *raw;
        size_t rawlen;
        int rc = ink_file_reader_next(&fs->r, &rec, &why, &raw, &rawlen);
        if (rc == 1) {
            int e = ink__source_emit(n, &rec);
            if (e < 0) return e;
        } else if (rc == 2) {
            ink__source_reject(n, why, fs->r.why, raw, rawlen);
        } else if (rc == 0) {
            if (fs->progress_shown) progress(n, fs, true);
            return -1;
        } else {
            ink__log(n, "%s: %s; stopping this source", fs->path, fs->r.why);
            if (fs->progress_shown) progress(n, fs, true);
            return -1;
        }
    }
    if (fs->progress) progress(n, fs, false);
    return done;
}

static void fsrc_close(struct ink_node *n)
{
    struct file_src *fs = n->impl;
    if (fs->r.buf || fs->r.fd > 0) ink_file_reader_close(&fs->r);
}

/* The position: the byte offset of the next record. */
static int fsrc_save(struct ink_node *n, msgpack_packer *pk)
{
    struct file_src *fs = n->impl;
    msgpack_pack_map(pk, 1);
    ink_pack_key(pk, "offset");
    return msgpack_pack_uint64(pk, fs->r.consumed) ? INK_ENOMEM : 0;
}

static int fsrc_restore(struct ink_node *n, const msgpack_object *pos, struct ink_err *err)
{
    struct file_src *fs = n->impl;
    uint64_t offset = 0;
    int rc = ink_state_u64(pos, "offset", &offset, err);
    if (rc) return rc;
    if (fs->r.is_stdin && offset)
        return ink_err_set(err, INK_ESTATE, "cannot resume stdin at byte %llu",
                           (unsigned long long)offset);
    return ink_file_reader_seek(&fs->r, offset, err);
}

static bool fsrc_finite(const void *conf)
{
    (void)conf;
    return true;
}

const struct ink_source_type ink_source_file = {
    .type =
        {
            .name = "file",
            .kind = INK_NODE_SOURCE,
            .summary = "records from a CSV, JSON Lines or msgpack file",
            .params = file_src_params,
            .conf_size = sizeof(struct ink_file_src_conf),
        },
    .impl_size = sizeof(struct file_src),
    .finite = fsrc_finite,
    .open = fsrc_open,
    .pollitem = fsrc_pollitem,
    .pump = fsrc_pump,
    .close = fsrc_close,
    .save = fsrc_save,
    .restore = fsrc_restore,
};

/* ---- the file sink node -------------------------------------------------------- */

struct file_snk {
    struct ink_file_writer w;
    const struct ink_file_sink_conf *c;
    uint64_t seen;
    int sync_fd1; /* 1 + a second, unlocked descriptor of a regular output
                     (the snapshot writer fdatasyncs it); 0 = none */
    bool failed;
    char why[128]; /* the first failed write's reason (errno) */
};

/* The first write failure: what it was, logged once; the records from
 * here on are counted as dropped, and no snapshot vouches for the output. */
static void sink_failed(struct ink_node *n, struct file_snk *fk, int rc, int e)
{
    if (fk->failed) return;
    fk->failed = true;
    snprintf(fk->why, sizeof fk->why, "%s", rc == INK_EIO && e ? strerror(e) : ink_strerror(rc));
    ink__log(n, "write failed (%s); further records are counted as dropped", fk->why);
}

static int fsnk_open(struct ink_node *n, struct ink_err *err)
{
    struct file_snk *fk = n->impl;
    fk->c = n->nc->conf;
    char buf[4096];
    const char *p = ink_path_resolve(n->g->cfg->base_dir, fk->c->path, buf, sizeof buf);
    if (!p) return ink_err_set(err, INK_EINVAL, "path too long: %s", fk->c->path);
    /* A restore must not truncate: the snapshot says how much of it to keep.
     * One owner: a regular file is locked before anything is written to it
     * (docs/state.md), so a second instance is refused, not interleaved. */
    bool append = fk->c->append || n->g->restoring;
    int rc = ink_file_writer_open(&fk->w, p, fk->c->format, append, true, err);
    if (rc || fk->w.is_stdout || !fk->w.f) return rc;
    /* The output's durability is the snapshot writer's (docs/state.md): it
     * gets a descriptor of the same file that does not carry the lock, so
     * that a writer outliving a killed inkflow for a moment holds no lock a
     * restore needs. Through /proc, the very file opened above; without
     * /proc, the main thread fdatasyncs as before. */
    struct stat st;
    char self[64];
    int fd = fileno(fk->w.f);
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        int sfd = open(self, O_RDONLY | O_CLOEXEC);
        struct stat st2;
        if (sfd >= 0 && fstat(sfd, &st2) == 0 && st2.st_dev == st.st_dev && st2.st_ino == st.st_ino)
            fk->sync_fd1 = sfd + 1;
        else if (sfd >= 0)
            close(sfd);
    }
    return 0;
}

static int fsnk_write(struct ink_node *n, const struct ink_record *rec)
{
    struct file_snk *fk = n->impl;
    uint64_t k = fk->seen++;
    int64_t every = fk->c->every > 0 ? fk->c->every : 1;
    if (k % (uint64_t)every != 0 ||
        (fk->c->head > 0 && k / (uint64_t)every >= (uint64_t)fk->c->head)) {
        return 1; /* deliberately skipped (sampling): not an output, not a drop */
    }
    if (fk->failed) {
        n->c.dropped++;
        return 1;
    }
    errno = 0;
    int rc = ink_file_writer_write(&fk->w, rec);
    if (rc) {
        sink_failed(n, fk, rc, errno);
        n->c.dropped++;
        return 1;
    }
    return 0;
}

static void fsnk_flush(struct ink_node *n)
{
    struct file_snk *fk = n->impl;
    errno = 0;
    if (fk->w.f && ink_file_writer_flush(&fk->w)) sink_failed(n, fk, INK_EIO, errno);
}

static void fsnk_finish(struct ink_node *n)
{
    fsnk_flush(n);
}

static void fsnk_close(struct ink_node *n)
{
    struct file_snk *fk = n->impl;
    ink_file_writer_close(&fk->w);
    if (fk->sync_fd1) close(fk->sync_fd1 - 1);
    fk->sync_fd1 = 0;
}

static int fsnk_durable_fd(struct ink_node *n)
{
    struct file_snk *fk = n->impl;
    return fk->sync_fd1 - 1;
}

/* Before a snapshot: what was written is handed to the kernel, so the
 * length saved next is what the snapshot writer makes durable (through
 * fsnk_durable_fd) before its rename; without that descriptor, it is made
 * durable here. */
static int fsnk_sync(struct ink_node *n, struct ink_err *err)
{
    struct file_snk *fk = n->impl;
    /* records were lost: a snapshot now would vouch for an output without them */
    if (fk->failed)
        return ink_err_set(err, INK_EIO,
                           "the output lost records after a failed write (%s; %llu dropped)",
                           fk->why, (unsigned long long)n->c.dropped);
    if (fk->w.is_stdout || !fk->w.f) return 0;
    struct stat st;
    int fd = fileno(fk->w.f);
    if (ink_file_writer_flush(&fk->w) ||
        (!fk->sync_fd1 && (fstat(fd, &st) || (S_ISREG(st.st_mode) && fdatasync(fd)))))
        return ink_err_set(err, INK_EIO, "cannot flush and sync the output: %s", strerror(errno));
    return 0;
}

/* The position: the output's length (to cut back to on restore), the
 * records offered so far (sampling with every/head resumes in step) and
 * whether the CSV header is out. */
static int fsnk_save(struct ink_node *n, msgpack_packer *pk)
{
    struct file_snk *fk = n->impl;
    uint64_t offset = 0;
    bool is_file = false;
    if (!fk->w.is_stdout && fk->w.f) {
        if (ink_file_writer_flush(&fk->w)) return INK_EIO;
        struct stat st;
        if (fstat(fileno(fk->w.f), &st)) return INK_EIO;
        offset = (uint64_t)st.st_size;
        is_file = S_ISREG(st.st_mode);
    }
    msgpack_pack_map(pk, 4);
    ink_pack_key(pk, "offset");
    msgpack_pack_uint64(pk, offset);
    ink_pack_key(pk, "seen");
    msgpack_pack_uint64(pk, fk->seen);
    ink_pack_key(pk, "header");
    msgpack_pack_int(pk, fk->w.header_done);
    ink_pack_key(pk, "is_file");
    return msgpack_pack_int(pk, is_file) ? INK_ENOMEM : 0;
}

static int fsnk_restore(struct ink_node *n, const msgpack_object *pos, struct ink_err *err)
{
    struct file_snk *fk = n->impl;
    uint64_t offset = 0, seen = 0, header = 0, is_file = 0;
    int rc = ink_state_u64(pos, "offset", &offset, err);
    if (!rc) rc = ink_state_u64(pos, "seen", &seen, err);
    if (!rc) rc = ink_state_u64(pos, "header", &header, err);
    if (!rc) rc = ink_state_u64(pos, "is_file", &is_file, err);
    if (rc) return rc;
    fk->seen = seen;
    fk->w.header_skip = header; /* the columns are laid out again, silently */
    if (fk->w.is_stdout || !is_file) return 0;
    int fd = fileno(fk->w.f);
    struct stat st;
    if (fstat(fd, &st)) return ink_err_set(err, INK_EIO, "%s", strerror(errno));
    if ((uint64_t)st.st_size < offset)
        return ink_err_set(err, INK_ESTATE,
                           "output is %llu bytes, shorter than the %llu bytes the snapshot saw",
                           (unsigned long long)st.st_size, (unsigned long long)offset);
    if (ftruncate(fd, (off_t)offset))
        return ink_err_set(err, INK_EIO, "truncate: %s", strerror(errno));
    return 0;
}

const struct ink_sink_type ink_sink_file = {
    .type =
        {
            .name = "file",
            .kind = INK_NODE_SINK,
            .summary = "records to a JSON Lines, CSV, msgpack or text file (or standard output)",
            .params = file_sink_params,
            .conf_size = sizeof(struct ink_file_sink_conf),
        },
    .impl_size = sizeof(struct file_snk),
    .open = fsnk_open,
    .write = fsnk_write,
    .flush = fsnk_flush,
    .sync = fsnk_sync,
    .durable_fd = fsnk_durable_fd,
    .finish = fsnk_finish,
    .close = fsnk_close,
    .save = fsnk_save,
    .restore = fsnk_restore,
};
