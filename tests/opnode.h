/* One operator driven without a graph, for unit tests (test_merge.c,
 * test_rls_merge.c): its conf from a one-node YAML config whose operator
 * `op` has the flow-map body `keys`, its state initialised like the engine
 * does. Include after ink_test.h. */
#ifndef INK_TEST_OPNODE_H
#define INK_TEST_OPNODE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/config.h"
#include "../engine/op.h"

struct node {
    struct ink_config cfg;
    const struct ink_op_vtable *vt;
    void *st;
};

/* 0, or the config's first diagnostic or the init's error in err. */
static inline int node_try(struct node *n, const char *type, const char *keys, const char *name,
                           uint64_t seed, struct ink_err *err)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "sources:\n  in: {type: file, path: in.csv}\n"
             "operators:\n  op: {type: %s, inputs: [in], %s}\n"
             "sinks:\n  out: {type: file, path: out.jsonl, inputs: [op]}\n",
             type, keys);
    struct ink_diags d = {0};
    memset(n, 0, sizeof *n);
    int rc = ink_config_load_buf("t.yaml", yaml, strlen(yaml), &n->cfg, &d);
    if (rc && d.n) snprintf(err->msg, sizeof err->msg, "%s", d.v[0].msg);
    ink_diags_free(&d);
    if (rc) return rc;
    n->vt = ink_op_find(type);
    const void *conf = NULL;
    for (int i = 0; i < n->cfg.nnodes; i++)
        if (!strcmp(n->cfg.nodes[i].name, "op")) conf = n->cfg.nodes[i].conf;
    if (!n->vt || !conf) return INK_EINVAL;
    n->st = calloc(1, n->vt->state_size);
    struct ink_op_init ini = {.name = name, .seed = seed};
    return n->vt->init(n->st, conf, &ini, err);
}

static inline void node_close(struct node *n)
{
    ink__op_fini(n->vt, n->st);
    free(n->st);
    ink_config_free(&n->cfg);
}

#endif
