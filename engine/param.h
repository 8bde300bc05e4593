/* Static parameter tables (docs/style.md rule 2): one table per node type
 * describes every key once. The same table parses YAML into the node's conf
 * struct, range-checks, rejects unknown keys with a suggestion, prints
 * `inkflow help TYPE` and generates the config reference. */
#ifndef INK_PARAM_H
#define INK_PARAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

enum ink_ptype {
    INK_P_BOOL,      /* bool */
    INK_P_INT,       /* int64_t, range [min, max] */
    INK_P_DOUBLE,    /* double, finite, range [min, max] */
    INK_P_STRING,    /* char * (owned by the conf; freed by ink_params_free) */
    INK_P_ENUM,      /* int: index into choices */
    INK_P_SIZE,      /* uint64_t bytes: 4096, "64KiB", "512MiB", "2GiB"; range in bytes */
    INK_P_DURATION,  /* double seconds: 10, "10s", "500ms", "2m", "1h" */
    INK_P_F64_LIST,  /* struct ink_f64_list; a scalar is accepted as a 1-list; range per element;
                        length within [len_min, len_max] */
    INK_P_F64_LISTS, /* struct ink_f64_lists: list of lists of numbers */
    INK_P_OBJECT,    /* nested table `sub`, parsed into an inline struct at offset whose first
                        member is `bool set` (true when the key was given) */
    INK_P_FIELDS,    /* struct ink_fields_conf (engine/fields.h): a source's `fields:` */
    INK_P_STRINGS,   /* struct ink_strings: a list of strings; a scalar is accepted as a 1-list;
                        length within [len_min, len_max] */
    INK_P_STRMAP,    /* struct ink_strmap: a map of names to scalar values, kept as written
                        (client properties passed through to a library) */
    INK_P_JSON       /* char *: any YAML value (a map of user-chosen names, say), kept as
                        JSON text for the node to check (jansson); plain scalars that read
                        as numbers become numbers, true/false booleans, null null */
};

struct ink_strings {
    char **v;
    int n;
};

struct ink_strmap {
    char **key, **val;
    int n;
};

struct ink_f64_list {
    double *v;
    int n;
};

struct ink_f64_lists {
    struct ink_f64_list *v;
    int n;
};

enum {
    INK_PF_REQUIRED = 1u << 0, /* no default: must be given */
    INK_PF_I64 = 1u << 1,      /* INK_P_BOOL stored as int64_t 0/1 instead of bool */
    /* Restore compatibility (docs/state.md, "What a restore compares"): a key
     * that shapes a node's state is kept in every snapshot, and --restore
     * refuses a config that changes it. An operator's own table (and the
     * tables nested in it) shapes state key by key unless INK_PF_FREE says
     * otherwise, so that a new operator key is safe by default; in every
     * other table (engine, the keys common to operators, transports) only the
     * keys marked INK_PF_STATE do. */
    INK_PF_STATE = 1u << 2, /* shapes the state */
    INK_PF_FREE = 1u << 3,  /* in an operator's table: does not shape the state */
};

struct ink_param {
    const char *name;
    enum ink_ptype type;
    size_t offset;               /* where the value goes in the conf struct */
    const char *def;             /* default, written as YAML (also shown by help); NULL = none */
    double min, max;             /* numeric range (inclusive); min == max == 0 means unbounded */
    int len_min, len_max;        /* lists: allowed lengths (0, 0 = any) */
    const char *const *choices;  /* ENUM: NULL-terminated names */
    const struct ink_param *sub; /* OBJECT: nested table, NULL-name terminated */
    unsigned flags;              /* INK_PF_* */
    const char *help;            /* one line */
};

/* A node type as the config loader sees it (sources, sinks, operators). */
enum ink_node_kind { INK_NODE_SOURCE, INK_NODE_OPERATOR, INK_NODE_SINK };

struct ink_node_type {
    const char *name; /* `type:` value */
    enum ink_node_kind kind;
    const char *summary;            /* one line for `inkflow help` */
    const struct ink_param *params; /* NULL-name terminated */
    size_t conf_size;               /* size of the conf struct the table fills */
    /* Cross-key checks after parsing (e.g. lo < hi). On error fill err
     * (line/col may stay 0: the loader then points at the node). */
    int (*check)(const void *conf, struct ink_err *err);
};

/* Release what parsing allocated inside conf (strings, lists), recursively;
 * safe on a zeroed conf. Does not free conf itself. */
void ink_params_free(const struct ink_param *table, void *conf);

/* Fill conf with the defaults of the table (used by tests and by nodes built
 * in code). Returns 0 or a negative code (a default that does not parse is a
 * programmer error). */
int ink_params_defaults(const struct ink_param *table, void *conf, struct ink_err *err);

/* The keys of a table that shape state (INK_PF_STATE / INK_PF_FREE above),
 * in table order, as canonical text: cb(ctx, name, text) for each; nested
 * tables give "parent.child" names; text is NULL for a string that is not
 * set. Equal values give equal text whatever way the config spelled them
 * (10s or 10000ms, key order inside a JSON value); a list of more than 32
 * numbers is kept as its first 4, its count and a hash of their bits, any
 * other text longer than 400 bytes is cut, its length and hash appended. operator: the
 * table is an operator's own (every key shapes state unless INK_PF_FREE).
 * Returns 0, or INK_ENOMEM. */
int ink_params_state(const struct ink_param *table, const void *conf, bool operator,
                     int (*cb)(void *ctx, const char *name, const char *text), void *ctx);

/* Print the help of a node type (as `inkflow help TYPE`). */
void ink_params_help(const struct ink_node_type *nt, FILE *out);

/* Print the list of node types with their summaries, and the engine keys
 * (as `inkflow help` without a type). */
void ink_params_help_list(FILE *out);

/* Print docs/config-reference.md: every key of the engine section and of
 * every node type, from the tables (as `inkflow help --markdown`). */
void ink_params_markdown(FILE *out);

#endif
