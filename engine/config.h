/* Phase one of a run (docs/style.md rule 3): load the YAML config into plain
 * structs that remember file:line:col, and check the whole graph. Nothing is
 * allocated for operators and no socket is opened here; `inkflow validate`
 * is this phase alone. */
#ifndef INK_CONFIG_H
#define INK_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "param.h"

/* engine: section. */
struct ink_snapshot_conf {
    bool set;
    char *dir;
    double every;          /* seconds; 0 = only on shutdown */
    int64_t every_records; /* also every this many source records; 0 = off */
    int64_t max_failures;  /* consecutive failed snapshots that make /health 503 */
};

struct ink_http_conf {
    bool set;
    char *listen; /* host:port */
};

struct ink_engine_conf {
    int64_t seed;
    uint64_t memory_limit;     /* bytes */
    int64_t blas_threads;      /* OpenBLAS threads for operators (default 1) */
    double grace;              /* seconds allowed to drain on SIGTERM/SIGINT */
    int64_t max_dim;           /* longest x accepted from any source */
    uint64_t max_record_bytes; /* cap on one record's carried-through extra fields */
    int64_t max_depth;         /* msgpack / JSON nesting limit */
    int64_t progress;          /* 1 = progress line on a terminal for file runs */
    double max_reject_ratio;   /* run exits 1 above this share of a node's input rejected */
    struct ink_snapshot_conf snapshot;
    struct ink_http_conf http;
};
extern const struct ink_param ink_engine_params[];

/* Keys every operator accepts besides its own table (engine-level). */
struct ink_op_common_conf {
    char *key_by; /* NULL or "key": one state per key value */
    int64_t max_keys;
    int on_new_key;    /* 0 = reject, 1 = evict (least recently used) */
    char *dead_letter; /* NULL or the name of a sink that receives rejected records */
    int64_t seed;      /* -1 = derive from engine.seed and the node name */
};
extern const struct ink_param ink_op_common_params[];

/* Keys every source/sink accepts besides its transport table. */
struct ink_io_common_conf {
    char *dead_letter; /* sources: sink that receives records that fail decoding */
};

struct ink_node_conf {
    char *name;
    enum ink_node_kind kind;
    const struct ink_node_type *type; /* resolved from `type:` */
    int line, col;                    /* position of the node's key in the file */
    void *conf;                       /* type->conf_size bytes, filled by type->params */
    struct ink_op_common_conf common; /* operators only */
    char *dead_letter;                /* sources and operators: sink name or NULL */
    int ninputs;
    char **inputs;  /* names; resolved into input_idx */
    int *input_idx; /* index into ink_config.nodes */
    int *input_line, *input_col;
};

struct ink_config {
    char *path;     /* as given */
    char *base_dir; /* directory of the file, for relative paths in it */
    uint64_t hash;  /* FNV-1a 64 of the file bytes (snapshots refuse a mismatch) */
    struct ink_engine_conf engine;
    int nnodes;
    struct ink_node_conf *nodes; /* sources first, then operators, then sinks, each in file order */
    int *topo;                   /* node indices in a topological order (sources first) */
    bool sharded;                /* a source keeps keyed state per partition (engine/shard.h) */
};

/* One diagnostic, printed as FILE:LINE:COL: error: message. */
struct ink_diag {
    int line, col;
    char msg[512];
};

struct ink_diags {
    int n, cap;
    struct ink_diag *v;
};

/* Load and check a config. Returns 0, or INK_EPARSE/INK_EINVAL with every
 * problem found appended to diags (all of them, not just the first).
 * On failure cfg is released. */
int ink_config_load(const char *path, struct ink_config *cfg, struct ink_diags *diags);
/* The same from a buffer (tests, fuzzing); `path` is used in messages. */
int ink_config_load_buf(const char *path, const char *buf, size_t len, struct ink_config *cfg,
                        struct ink_diags *diags);
void ink_config_free(struct ink_config *cfg);

void ink_diags_print(const struct ink_diags *d, const char *path, FILE *out);
void ink_diags_free(struct ink_diags *d);

/* Node types known to the loader: the transports of transports/registry.c
 * (sources, sinks; engine/transport.h) and the operators of
 * operators/registry.c. */
const struct ink_node_type *ink_node_type_find(enum ink_node_kind kind, const char *name);
/* All sources and sinks, NULL-terminated (for `inkflow help`). */
extern const struct ink_node_type *const ink_source_types[];
extern const struct ink_node_type *const ink_sink_types[];

#endif
