/* Record files: a reader (CSV, JSON Lines, msgpack stream) and a writer
 * (JSON Lines, CSV, msgpack, text), shared by the file source and sink and
 * by `inkflow send` / `recv`. */
#ifndef INK_FILE_IO_H
#define INK_FILE_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../engine/buf.h"
#include "../engine/codec.h"
#include "../engine/fields.h"
#include "../engine/path.h"

enum ink_file_format { INK_FMT_AUTO, INK_FMT_CSV, INK_FMT_JSONL, INK_FMT_MSGPACK, INK_FMT_TEXT };

/* `type: file` source. */
struct ink_file_src_conf {
    char *path;                    /* "-" = stdin */
    int format;                    /* enum ink_file_format; auto = from the extension */
    double rate;                   /* records per second, 0 = as fast as possible */
    struct ink_fields_conf fields; /* docs/fields.md */
};

/* `type: file` sink. */
struct ink_file_sink_conf {
    char *path; /* "-" = stdout */
    int format; /* jsonl, csv, msgpack, text; auto = from the extension (stdout: jsonl) */
    bool append;
    int64_t every; /* write one record in `every` (1 = all); for human-readable samples */
    int64_t head;  /* write at most this many records (0 = no limit) */
};

struct ink_file_reader {
    int fd;
    bool is_stdin, eof, fatal;
    int format; /* enum ink_file_format, resolved (never AUTO) */
    struct ink_decoder dec;
    struct ink_csv_header hdr;
    bool have_hdr;
    uint8_t *buf;
    size_t cap, len, pos;
    uint64_t consumed; /* bytes before buf[pos]: the offset of the next record */
    uint64_t size;     /* file size, 0 when unknown (pipes) */
    uint64_t lineno;   /* 1-based line of the next record (text formats) */
    char why[768];     /* detail of the last reject or error */
};

/* Format from a path's extension (.csv, .jsonl/.ndjson/.json, .msgpack/.mp/.mpk,
 * .txt/.log for text); `fallback` when none matches. */
int ink_format_from_path(const char *path, int fallback);

/* path "-" = stdin. format INK_FMT_AUTO = from the extension (stdin: jsonl). */
int ink_file_reader_open(struct ink_file_reader *r, const char *path, int format,
                         const struct ink_limits *lim, struct ink_err *err);
/* 1 = a record in *rec (valid until the next call); 2 = a rejected record:
 * *why set, r->why the detail, *raw and *rawlen its bytes; 0 = end of file;
 * <0 = i/o error or an unrecoverable stream (r->why says which). */
int ink_file_reader_next(struct ink_file_reader *r, struct ink_record *rec, enum ink_reject *why,
                         const uint8_t **raw, size_t *rawlen);
/* Skip to a byte offset saved earlier (restore); 0 or negative. */
int ink_file_reader_seek(struct ink_file_reader *r, uint64_t offset, struct ink_err *err);
void ink_file_reader_close(struct ink_file_reader *r);

struct ink_file_writer {
    FILE *f;
    bool is_stdout;
    int format;
    unsigned flags; /* INK_ENC_* */
    struct ink_buf buf;
    struct ink_csv_layout lay;
    bool header_done;
    bool header_skip; /* restored mid-file: lay out the CSV columns, write no header */
};

/* path "-" = stdout. lock: take an exclusive flock on a regular file before
 * truncating or writing it (engine/lock.h; INK_EBUSY when another process
 * holds it); the lock lasts until ink_file_writer_close. */
int ink_file_writer_open(struct ink_file_writer *w, const char *path, int format, bool append,
                         bool lock, struct ink_err *err);
/* 0, or INK_EIO. Output is buffered; ink_file_writer_flush makes it visible. */
int ink_file_writer_write(struct ink_file_writer *w, const struct ink_record *rec);
int ink_file_writer_flush(struct ink_file_writer *w);
/* Flushes; returns INK_EIO if anything failed to reach the file. */
int ink_file_writer_close(struct ink_file_writer *w);

#endif
