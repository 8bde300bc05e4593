/* Record codecs: msgpack (the wire format), JSON Lines, CSV, and a
 * human-readable text line (output only). docs/design.md#records.
 *
 * Decoding is for untrusted input. Every decoder checks, in this order:
 * the frame/line size cap (INK_REJ_TOO_LARGE), then a structural pre-scan
 * that allocates nothing (msgpack: every declared length against the bytes
 * present -> INK_REJ_TRUNCATED, nesting -> INK_REJ_DEPTH, reserved bytes and
 * trailing bytes -> INK_REJ_DECODE; JSON: bracket nesting before jansson
 * sees the text), then the fields. A rejected record leaves nothing behind
 * but the decoder's `why` text.
 *
 * Field rules (all formats):
 *   x    array of numbers (integers widened to double). A scalar is NOT an
 *        x (INK_REJ_TYPE): one-dimensional points are [v]. More than
 *        max_dim values -> INK_REJ_DIM. NaN/Inf -> INK_REJ_NONFINITE.
 *        A record without x is valid (requests); INK_HAS_X is then clear.
 *   y    number, finite.           t, arm   integer (a float is INK_REJ_TYPE).
 *   key, op   string of at most max_str bytes (else INK_REJ_TOO_BIG).
 *   seq  unsigned integer; kept in rec->seq with INK_HAS_SEQ (the source
 *        normally overwrites it with its own count).
 *   nil / null for any of these means "absent" (our encoders write a
 *   non-finite y as null, so their output decodes again).
 *   A known field given twice -> INK_REJ_DECODE.
 *   Any other field is carried through in rec->extra as raw msgpack
 *   key/value pairs (JSON values are converted to msgpack); its key must be a
 *   string (else INK_REJ_TYPE); more than max_extra bytes in total ->
 *   INK_REJ_TOO_BIG.
 *
 * Lifetime: the pointers a decoder stores in the record (x, key, op, extra)
 * point into the input buffer or into the decoder's scratch. They are valid
 * until the next decode call on the same decoder, or until the input buffer
 * is released, whichever comes first. The decoder never keeps a pointer to
 * the input after returning.
 *
 * Allocation: msgpack and CSV decoding and all encoders (once their output
 * buffer has grown) allocate nothing per record. JSON decoding goes through
 * jansson, which allocates a tree per line and frees it before returning. */
#ifndef INK_CODEC_H
#define INK_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "record.h"

/* Caps for untrusted input (engine.max_dim, max_record_bytes, max_depth and
 * the transport's max_message_bytes). */
struct ink_limits {
    uint32_t max_frame; /* bytes of one msgpack frame or one text line (default 64 KiB) */
    uint32_t max_depth; /* container nesting, the top-level map counts 1 (default 16, cap 128) */
    uint32_t max_dim;   /* length of x (default 1024) */
    uint32_t max_str;   /* bytes of key / op (default 4096) */
    uint32_t max_extra; /* bytes of carried-through unknown fields (default 64 KiB) */
};

#define INK_LIMITS_DEFAULT                                                                         \
    {                                                                                              \
        65536, 16, 1024, 4096, 65536                                                               \
    }
#define INK_DEPTH_CAP 128 /* max_depth is clamped to this */

/* Per-source decode context: scratch sized from the limits at init.
 * One decoder per thread; not shared. */
struct ink_decoder {
    struct ink_limits lim;
    double *x;      /* max_dim doubles */
    uint8_t *extra; /* max_extra bytes: extras that are not contiguous in the input, or JSON's */
    char *str;      /* 2 * max_str bytes: key and op when they must be copied (JSON, CSV) */
    char why[160];  /* human-readable detail of the last reject ("x[3]: NaN") */
    /* `fields:` (engine/fields.h): NULL = records decode as described above. */
    struct ink_fmap *fmap;
    const char *topic; /* the message's topic (MQTT), for key: {topic_level: n} */
    size_t topic_len;
    /* CSV with fields: the slot of each column of the header bound last */
    uint64_t csv_hdr_id;
    int32_t *csv_slot;
    uint32_t csv_ncols;
    int32_t csv_missing; /* a slot whose column the header lacks, -1 = none */
};

/* Bytes ink_decoder_init allocates for these limits (for memory bounds). */
size_t ink_decoder_mem(const struct ink_limits *lim);
/* lim NULL = defaults; zero members take their default. 0 or INK_ENOMEM. */
int ink_decoder_init(struct ink_decoder *d, const struct ink_limits *lim);
/* Safe on a zeroed decoder and twice in a row. */
void ink_decoder_fini(struct ink_decoder *d);

/* Decode one msgpack map (one ZeroMQ frame: trailing bytes are
 * INK_REJ_DECODE). Returns INK_REJ_NONE and fills *rec (every member reset;
 * seq 0, nfields 0), or a reason with d->why set and *rec unspecified.
 * buf is borrowed; rec points into buf (see Lifetime). */
enum ink_reject ink_decode_msgpack(struct ink_decoder *d, const uint8_t *buf, size_t len,
                                   struct ink_record *rec);

/* Decode one JSON object. `line` need not be NUL-terminated; a trailing
 * "\n" / "\r\n" and surrounding whitespace are allowed. NaN / Infinity
 * tokens and numbers that overflow a double are INK_REJ_NONFINITE; an
 * integer beyond 64 bits is INK_REJ_TYPE; a line that ends inside a value
 * is INK_REJ_TRUNCATED. rec points into the decoder (not into line). */
enum ink_reject ink_decode_json(struct ink_decoder *d, const char *line, size_t len,
                                struct ink_record *rec);

/* True when the line holds only whitespace: file readers skip such lines
 * (CSV and JSON Lines) instead of decoding them. */
bool ink_line_blank(const char *line, size_t len);

/* CSV (RFC 4180 quoting). Header required: columns named t, key, y, arm
 * are those fields; every other column, in order, is x. Rows: the same
 * number of cells as the header (else INK_REJ_DECODE); an empty cell for
 * t / key / y / arm means absent; x cells must be numbers (empty or text ->
 * INK_REJ_TYPE); more x columns than max_dim -> INK_REJ_DIM on every row. */
enum ink_csv_role { INK_CSV_X, INK_CSV_T, INK_CSV_KEY, INK_CSV_Y, INK_CSV_ARM };
struct ink_csv_header {
    uint32_t ncols;
    uint32_t dim;  /* number of x columns */
    uint8_t *role; /* ncols enum ink_csv_role; owned, freed by ink_csv_header_fini */
    char **name;   /* ncols column names, trimmed and unquoted (for fields:) */
    uint64_t id;   /* unique per parse: decoders bind fields: to it */
};
/* 0, or INK_EPARSE (bad quoting, empty header, a role column named twice)
 * / INK_ENOMEM with err filled. Allocates role; call ink_csv_header_fini. */
int ink_csv_header_parse(struct ink_csv_header *h, const char *line, size_t len,
                         struct ink_err *err);
void ink_csv_header_fini(struct ink_csv_header *h);
/* Decode one row (line without or with its "\n" / "\r\n"). rec points into
 * the decoder (not into line). */
enum ink_reject ink_decode_csv(struct ink_decoder *d, const struct ink_csv_header *h,
                               const char *line, size_t len, struct ink_record *rec);
/* One row in which every cell is a coordinate (no t / key / y / arm roles,
 * no header): the number of cells, the first cap of them written to out
 * when out is not NULL; -1 when a cell is empty, not a finite number, or
 * badly quoted. For data files read whole (bkb's arms.file). */
int ink_csv_numbers(const char *line, size_t len, double *out, int cap);
/* Where the CSV record that starts at buf ends (a quoted cell may hold a
 * newline): 0 = complete, *rec_len bytes including its '\n'; 1 = need more
 * bytes (at end of file the rest of the buffer is the last record). */
int ink_csv_record_len(const char *buf, size_t len, size_t *rec_len);

/* Length of the next complete msgpack object in a stream (files): 0 =
 * complete (*obj_len set), 1 = need more bytes (also when a declared length
 * runs past len: a reader that already holds max_frame bytes rejects the
 * object as INK_REJ_TOO_LARGE), -1 = bad (*why: INK_REJ_DEPTH or
 * INK_REJ_DECODE). Reads only buf[0, len), allocates nothing, iterative. */
int ink_msgpack_scan(const uint8_t *buf, size_t len, uint32_t max_depth, size_t *obj_len,
                     enum ink_reject *why);

/* Encoders. Each appends one record to `out` (caller-owned, grows then
 * stays) and returns 0, or -1 when out could not grow (out->len is then
 * restored). They never fail on record contents: non-finite numbers are
 * written as nil / null. Output field order: t, key, x, y, arm, op, seq
 * (with INK_ENC_SEQ), the extras in input order, then rec->fields in order.
 * Operator values: INK_V_F64M is an array of `cols` arrays of `rows`
 * numbers; INK_V_RAW is copied as msgpack (converted for JSON). */
enum {
    INK_ENC_SEQ = 1u << 0, /* write `seq` (off: file -> passthrough -> file reproduces the input) */
};

/* One msgpack map. */
int ink_encode_msgpack(const struct ink_record *r, unsigned flags, struct ink_buf *out);
/* One JSON object and '\n'. Numbers: integers as integers, doubles in the
 * shortest of %.15g/%.16g/%.17g that reads back exactly. Strings escaped;
 * invalid UTF-8 becomes U+FFFD. msgpack bin is written as a string, ext as
 * null, non-string map keys as their JSON text in quotes. */
int ink_encode_json(const struct ink_record *r, unsigned flags, struct ink_buf *out);

/* CSV output: the columns are fixed by the first record (its header) and
 * every later row follows them: t, key (when the first record has them),
 * x0..x{dim-1}, y, arm (when present), seq (INK_ENC_SEQ), then the operator
 * fields with scalar values (nil, bool, integer, double, string). Array
 * fields, op and extras are not written to CSV (use JSON Lines for them).
 * A later record that lacks a column gets an empty cell; a field it lacks
 * too; an x longer than the header's is cut, shorter is padded with empty
 * cells. */
struct ink_csv_layout {
    uint32_t has; /* INK_HAS_T | INK_HAS_KEY | INK_HAS_Y | INK_HAS_ARM | INK_HAS_SEQ */
    uint32_t dim;
    uint32_t nfields;
    char names[INK_MAX_FIELDS][48]; /* copies: records are borrowed */
};
int ink_encode_csv_header(struct ink_csv_layout *lay, const struct ink_record *first,
                          unsigned flags, struct ink_buf *out);
int ink_encode_csv(const struct ink_csv_layout *lay, const struct ink_record *r,
                   struct ink_buf *out);

/* One human-readable line, e.g. `#12 key=seattle x=[39.4] F=0.231 n=12`
 * (numbers with 6 significant digits; arrays over 8 values abridged). */
int ink_encode_text(const struct ink_record *r, unsigned flags, struct ink_buf *out);

#endif
