/* passthrough: emits every record unchanged. Exercises the graph and is the
 * baseline row of the benchmark table. Stateless, so it leaves save, load and
 * fini to the engine's defaults (op.h). */
#include "../engine/op.h"

struct passthrough_conf {
    int unused;
};

static const struct ink_param passthrough_params[] = {{0}};

static size_t passthrough_mem_bound(const void *conf)
{
    (void)conf;
    return 0;
}

static int passthrough_init(void *state, const void *conf, const struct ink_op_init *ini,
                            struct ink_err *err)
{
    (void)state, (void)conf, (void)ini, (void)err;
    return 0;
}

static int passthrough_process(void *state, const struct ink_record *in,
                               const struct ink_emitter *out, struct ink_err *err)
{
    (void)state, (void)err;
    return ink_emit(out, in);
}

const struct ink_op_vtable ink_op_passthrough = {
    .name = "passthrough",
    .kind = INK_NODE_OPERATOR,
    .summary = "emit every record unchanged",
    .params = passthrough_params,
    .conf_size = sizeof(struct passthrough_conf),
    .state_size = 1,
    .mem_bound = passthrough_mem_bound,
    .init = passthrough_init,
    .process = passthrough_process, /* stateless: no save, load or fini */
};
