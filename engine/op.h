/* The operator contract (docs/design.md#operators, docs/style.md rule 1).
 *
 * One operator = one file in operators/ exporting one
 * `const struct ink_op_vtable`, listed in operators/registry.c. The vtable
 * starts with the operator's node type (name, kind INK_NODE_OPERATOR,
 * summary, params, conf_size, check): the loader, `inkflow help` and the
 * runtime all use that one object, found by one lookup of the name.
 * Lifecycle, owned by the engine:
 *   mem_bound(conf)     bytes init will allocate, before anything is allocated
 *   scratch_bytes(conf) optional: bytes of scratch the engine allocates
 *                       (zeroed) once per node and hands to every init of
 *                       that node, all keys alike: a cache rebuilt from the
 *                       state, never saved (ecdf's KLL query view)
 *   init(state, ...)    state points at state_size zeroed bytes; allocate
 *                       everything from the parameters
 *   process / query     per record / per request; no allocation
 *   flush(state, out)   optional; once, when the graph ends naturally (every
 *                       source ended), before the final snapshot: emit what
 *                       the state still holds back (a partial window)
 *   save / load         versioned msgpack state
 *   fini(state)         frees; safe on a zeroed or half-initialised state
 *   gauges              optional table of numbers for /metrics
 * A stateless operator leaves save, load and fini NULL: the engine then saves
 * an empty map and loads nothing (ink__op_save and friends below). What
 * operators share to implement the rest is in opkit.h. tests/test_contract.c
 * checks every registered operator against this contract.
 * Keyed state (`key_by`) is the engine's business: it creates one state per
 * key, so operators never see keys as state selectors (flush runs once per
 * live key, and the engine puts that key on what it emits). */
#ifndef INK_OP_H
#define INK_OP_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "param.h"
#include "record.h"

/* What the engine gives init besides the conf. */
struct ink_op_init {
    const char *name;     /* node name, for messages */
    uint64_t seed;        /* derived from engine.seed, the node name (and key slot) */
    const char *base_dir; /* directory of the config file, for relative paths */
    /* scratch_bytes(conf) zeroed bytes shared by every state of the node, or
     * NULL (no scratch_bytes, or a caller outside the engine): the operator
     * must work without it. Freed by the engine after every fini. */
    void *scratch;
};

/* One gauge an operator exports on /metrics, as inkflow_operator_<name>
 * {node="..."}; operators that share a name share the metric (one HELP line,
 * the first operator's). `read` runs on the main loop between records and
 * returns NAN when the value does not apply to this state. A vtable's table
 * ends with a {0} row and has at most INK_OP_GAUGES_MAX rows. */
struct ink_op_gauge {
    const char *name; /* [a-z_]+ */
    const char *help;
    double (*read)(const void *state);
};

#define INK_OP_GAUGES_MAX 8

struct ink_op_vtable {
    /* The node type, also reachable member by member (vt->name, vt->params:
     * the same storage, C11 6.5.2.3p6). Set .kind = INK_NODE_OPERATOR. */
    union {
        struct ink_node_type type;
        struct {
            const char *name; /* the `type:` in the config */
            enum ink_node_kind kind;
            const char *summary; /* one line for `inkflow help` */
            const struct ink_param *params;
            size_t conf_size;
            int (*check)(const void *conf, struct ink_err *err); /* optional cross-key checks */
        };
    };
    size_t state_size;
    size_t (*mem_bound)(const void *conf);
    size_t (*scratch_bytes)(const void *conf); /* optional, see above */
    int (*init)(void *state, const void *conf, const struct ink_op_init *ini, struct ink_err *err);
    /* One record in, zero or more out through `out`. Return 0; or INK_EDIM /
     * INK_EINVAL with err filled when the record is refused (the engine counts
     * it and dead-letters it: the state must be unchanged); or another
     * negative code from a failed ink_emit. */
    int (*process)(void *state, const struct ink_record *in, const struct ink_emitter *out,
                   struct ink_err *err);
    /* A request (a record with `op`). Answers through `out`; an error return
     * with err filled becomes an error reply. Read-only, except for requests
     * documented to change state (bkb's ask/tell). Optional. */
    int (*query)(void *state, const struct ink_record *req, const struct ink_emitter *out,
                 struct ink_err *err);
    /* With key_by, a request for a key that has no state yet is refused
     * ("unknown key"), unless this returns true for it: the state is then
     * created (within max_keys; a request never evicts another key), as a
     * record would create it. Optional (bkb: `ask` starts a study). */
    bool (*query_creates)(const struct ink_record *req);
    /* The graph ends naturally: every source has ended (files read to the
     * end, pull sources that stop after end of stream); also just before a
     * key's state is evicted (on_new_key: evict). Emit, through `out`
     * as process does, what the state holds back (ecdf exact: the partial
     * window), and leave the state as if it had been emitted: the final
     * snapshot is taken after flush, and a restore from it must not emit the
     * same records again. Never called when the graph is stopped by
     * SIGINT/SIGTERM or a runtime failure: the held-back records are then
     * part of the snapshot, and emitting them would duplicate them on
     * resume. Called in topological order, so records flushed upstream pass
     * through this operator's process before its own flush; with key_by,
     * once per live key (most recently used first), and every emitted record
     * gets that key. Return 0, or a negative code with err filled (counted
     * as a rejection on the node and logged; the other flushes go on). No
     * allocation. Optional (NULL: nothing is held back). */
    int (*flush)(void *state, const struct ink_emitter *out, struct ink_err *err);
    int (*save)(const void *state, msgpack_packer *pk);
    int (*load)(void *state, const msgpack_object *obj, struct ink_err *err);
    void (*fini)(void *state);
    const struct ink_op_gauge *gauges; /* optional, see above */
    /* Optional: how many records the state has counted; with key_by the
     * engine answers {"op": "keys"} with every live key and this count. */
    uint64_t (*records)(const void *state);
};

/* The member-by-member view lays out exactly as struct ink_node_type. */
#define INK__OP_SAME(f)                                                                            \
    _Static_assert(offsetof(struct ink_op_vtable, f) == offsetof(struct ink_op_vtable, type.f),    \
                   "ink_op_vtable." #f " is not ink_node_type." #f)
INK__OP_SAME(name);
INK__OP_SAME(kind);
INK__OP_SAME(summary);
INK__OP_SAME(params);
INK__OP_SAME(conf_size);
INK__OP_SAME(check);
#undef INK__OP_SAME

/* The static registry (operators/registry.c). */
extern const struct ink_op_vtable *const ink_operators[];
const struct ink_op_vtable *ink_op_find(const char *name);

/* The vtable an operator node type belongs to (NULL for another kind). */
static inline const struct ink_op_vtable *ink_op_of(const struct ink_node_type *nt)
{
    return nt && nt->kind == INK_NODE_OPERATOR
               ? (const struct ink_op_vtable *)((const char *)nt -
                                                offsetof(struct ink_op_vtable, type))
               : NULL;
}

/* The engine's calls to the optional hooks (engine/opkit.c): save packs an
 * empty map, load accepts only a map, fini does nothing when the operator
 * has no such hook. */
int ink__op_save(const struct ink_op_vtable *vt, const void *state, msgpack_packer *pk);
int ink__op_load(const struct ink_op_vtable *vt, void *state, const msgpack_object *obj,
                 struct ink_err *err);
void ink__op_fini(const struct ink_op_vtable *vt, void *state);
/* The value of the operator's gauge `name` for this state; NAN when the
 * operator has no such gauge. */
double ink_op_gauge_read(const struct ink_op_vtable *vt, const void *state, const char *name);

#endif
