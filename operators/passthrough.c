/* passthrough: emits every record unchanged. Exercises the graph and is the
 * baseline row of the benchmark table. */
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

static int passthrough_save(const void *state, msgpack_packer *pk)
{
    (void)state;
    msgpack_pack_map(pk, 0);
    return 0;
}

static int passthrough_load(void *state, const msgpack_object *obj, struct ink_err *err)
{
    (void)state;
    if (obj->type != MSGPACK_OBJECT_MAP) return ink_err_set(err, INK_ESTATE, "state: not a map");
    return 0;
}

static void passthrough_fini(void *state)
{
    (void)state;
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
    .process = passthrough_process,
    .save = passthrough_save,
    .load = passthrough_load,
    .fini = passthrough_fini,
};
