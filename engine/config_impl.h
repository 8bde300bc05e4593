/* Internal to the config loader: the YAML tree that remembers line:col
 * (yaml.c), diagnostics and suggestions (diag.c), parsing a map against
 * param tables (param.c), the help text (help.c) and the loader (config.c).
 * Not part of the contract between parts. */
#ifndef INK_CONFIG_IMPL_H
#define INK_CONFIG_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "op.h"
#include "param.h"

/* Nesting limit of the YAML tree (deeper input is refused, never recursed). */
#define INK__YAML_MAX_DEPTH 64
/* Diagnostics kept per load; more would only repeat the same mistake. */
#define INK__DIAGS_MAX 1000

enum ink__ykind { INK__Y_SCALAR, INK__Y_SEQ, INK__Y_MAP };

/* One YAML node. Aliases point at the anchored node, so a node may appear
 * more than once in the tree; every node is freed once through `next`. */
struct ink__ynode {
    enum ink__ykind kind;
    int line, col; /* 1-based */
    char *s;       /* scalar text, NUL-terminated */
    size_t len;
    bool plain;              /* scalar written without quotes (only those can be numbers/null) */
    struct ink__ynode **v;   /* seq: items; map: key0, value0, key1, value1, ... */
    int n, cap;              /* entries in v */
    struct ink__ynode *next; /* allocation list */
};

struct ink__ytree {
    struct ink__ynode *root; /* NULL for an empty document */
    struct ink__ynode *all;
};

/* Parse YAML text into a tree. Syntax errors (with their position) are
 * appended to d; returns 0 or INK_EPARSE. The tree is released by
 * ink__ytree_free in every case. */
int ink__ytree_parse(const char *buf, size_t len, struct ink__ytree *t, struct ink_diags *d);
void ink__ytree_free(struct ink__ytree *t);

bool ink__ynull(const struct ink__ynode *n);
/* Value of key in a map (NULL if absent), and the key node itself. */
const struct ink__ynode *ink__ymap_get(const struct ink__ynode *map, const char *key);
const struct ink__ynode *ink__ymap_key(const struct ink__ynode *map, const char *key);

/* One table and the conf struct it fills. */
struct ink__ptab {
    const struct ink_param *params;
    void *conf;
};

/* Parse every key of `map` into the tables (defaults must already be in the
 * confs). Keys listed in `reserved` (NULL-terminated, may be NULL) are left
 * to the caller but count as valid for suggestions. Missing required keys are
 * reported at (line, col). Returns the number of errors appended. */
int ink__params_parse_map(struct ink_diags *d, const char *path, const struct ink__ynode *map,
                          const struct ink__ptab *tabs, int ntabs, const char *const *reserved,
                          int line, int col);

/* A source's `fields:` (engine/fields_conf.c), for INK_P_FIELDS. */
struct ink_fields_conf;
bool ink__fields_parse(struct ink_diags *d, const char *path, const struct ink__ynode *n,
                       struct ink_fields_conf *c);

/* Append a diagnostic (capped at INK__DIAGS_MAX). */
void ink__diag_add(struct ink_diags *d, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Closest candidate by edit distance, or NULL when none is close. */
const char *ink__suggest(const char *word, const char *const *cands, int ncands);

/* Operator vtable by name: the registry, then the operators added by tests. */
const struct ink_op_vtable *ink__op_vtable_find(const char *name);
/* Tests only: extra operators (NULL-terminated) the loader accepts after the
 * registry, e.g. one with a known mem_bound for the memory-limit check. */
void ink__config_test_ops(const struct ink_op_vtable *const *ops);

/* Human-readable byte count: "64KiB" when exact, else "1.50GiB". */
void ink__fmt_size(char *buf, size_t n, uint64_t bytes);
/* A numeric entry's range as text: "in [a, b]", ">= a", "<= b" (param.c). */
void ink__param_range(char *buf, size_t n, const struct ink_param *p);

#endif
