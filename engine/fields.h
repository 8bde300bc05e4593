/* `fields:` on a source: where each record field comes from, by name
 * (docs/fields.md). One mapping for every source type and every payload
 * format: the decoders (codec.c for msgpack, jsonl.c for JSON, csv.c for
 * CSV) look each mapped name up in their own format and hand the value to
 * ink__fields_put, which converts, checks and stores it in the record.
 *
 *   fields:
 *     x: [temp, hum]          # or x: temp (one column); dotted paths: payload.temp
 *     y: precip
 *     key: station            # or key: {topic: true} / key: {topic_level: 2} (MQTT)
 *     t: ts                   # or t: {field: ts, format: unix_s|unix_ms|unix_ns|rfc3339}
 *
 * Without `fields:` a source decodes records as before (docs/wire-format.md).
 * With it, only the mapped fields make the record: every mapped field must
 * be present and of its type, else the record is rejected with a reason
 * that names the field (INK_REJ_MISSING, INK_REJ_TYPE, INK_REJ_NONFINITE). */
#ifndef INK_FIELDS_H
#define INK_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "err.h"

enum ink_tfmt { INK_TF_AUTO, INK_TF_UNIX_S, INK_TF_UNIX_MS, INK_TF_UNIX_NS, INK_TF_RFC3339 };
extern const char *const ink_tfmt_names[]; /* "auto", "unix_s", ... NULL */

#define INK_FIELDS_MAX_X     64 /* names in x */
#define INK_FIELDS_MAX_DEPTH 8  /* segments of a dotted path */

/* The parsed `fields:` value (engine/fields_conf.c fills it from YAML). */
struct ink_fields_conf {
    bool set;
    int nx;
    char **x;            /* nx names */
    char *y, *key, *t;   /* NULL = not mapped */
    int key_topic_level; /* 0 = key from `key` (or none), -1 = the whole topic, n >= 1: level n */
    int t_format;        /* enum ink_tfmt */
};
void ink_fields_conf_free(struct ink_fields_conf *c);

/* The `fields` row of a source's param table (conf: its conf struct type). */
#define INK_FIELDS_PARAM(conf)                                                                     \
    {                                                                                              \
        .name = "fields", .type = INK_P_FIELDS, .offset = offsetof(conf, fields),                  \
        .help = "where record fields come from, by name: {x: [temp, hum], y: precip, key: "        \
                "station, t: {field: ts, format: rfc3339}}; dotted paths reach into objects "      \
                "(docs/fields.md)"                                                                 \
    }

/* Map a decoder: from now on every decode uses the mapping (c NULL or not
 * set: no mapping). 0, or INK_EINVAL / INK_ENOMEM with err filled. The
 * compiled map is owned by the decoder (ink_decoder_fini frees it). */
int ink_decoder_set_fields(struct ink_decoder *d, const struct ink_fields_conf *c,
                           struct ink_err *err);
/* The topic of the message about to be decoded (MQTT), for key: {topic...}.
 * Borrowed until the decode returns. */
static inline void ink_decoder_set_topic(struct ink_decoder *d, const char *topic, size_t len)
{
    d->topic = topic;
    d->topic_len = len;
}

/* ---- for the decoders ---- */

/* One mapped field: where to find it and where it goes. */
enum ink_fslot_role { INK_FS_X, INK_FS_Y, INK_FS_KEY, INK_FS_T };
struct ink_fslot {
    enum ink_fslot_role role;
    uint32_t xi;      /* INK_FS_X: position in x */
    const char *name; /* as written in the config (NUL-terminated) */
    uint32_t name_len;
    uint32_t nseg; /* dotted path: segments (1 = a plain name) */
    const char *seg[INK_FIELDS_MAX_DEPTH];
    uint32_t seg_len[INK_FIELDS_MAX_DEPTH];
};

struct ink_fmap {
    uint32_t nslots; /* looked-up slots: x..., then y, key, t when mapped from a field */
    struct ink_fslot *slot;
    uint32_t nx;
    int key_topic_level; /* as in the conf */
    int t_format;
    char *names; /* storage of the slots' names */
};
void ink__fmap_free(struct ink_fmap *m);

/* What a format's reader found for one slot. */
enum ink_fv_kind {
    INK_FV_MISSING, /* absent, or null */
    INK_FV_F64,     /* a floating-point number */
    INK_FV_I64,     /* an integer */
    INK_FV_STR,     /* a string (JSON, msgpack) */
    INK_FV_TEXT,    /* a CSV cell: a number or a string, by its text */
    INK_FV_OTHER    /* bool, array, map: `what` names it */
};
struct ink_fval {
    enum ink_fv_kind kind;
    double f;
    int64_t i;
    const char *s; /* STR, TEXT: not NUL-terminated */
    size_t n;
    const char *what;
};

/* Start a mapped record: resets it, points x at the decoder's scratch and
 * sets the key from the topic when mapped so. INK_REJ_NONE or a reject. */
enum ink_reject ink__fields_begin(struct ink_decoder *d, struct ink_record *rec);
/* Store slot `i`'s value (found by the format's reader) in rec. */
enum ink_reject ink__fields_put(struct ink_decoder *d, uint32_t i, const struct ink_fval *v,
                                struct ink_record *rec);

/* RFC 3339 date-time ("2026-12-05T10:00:00Z", "...T10:00:00.250+01:00") to
 * ns since the epoch. 0, or -1 when the text is not one. */
int ink_rfc3339_parse(const char *s, size_t n, int64_t *ns);

#endif
