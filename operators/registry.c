/* The static operator registry: a missing operator is a link error. */
#include <string.h>

#include "../engine/op.h"

extern const struct ink_op_vtable ink_op_passthrough;
extern const struct ink_op_vtable ink_op_bkb;
extern const struct ink_op_vtable ink_op_rls_sketch;
extern const struct ink_op_vtable ink_op_ecdf;
extern const struct ink_op_vtable ink_op_merge;

const struct ink_op_vtable *const ink_operators[] = {
    &ink_op_passthrough, &ink_op_bkb, &ink_op_rls_sketch, &ink_op_ecdf, &ink_op_merge, NULL,
};

const struct ink_op_vtable *ink_op_find(const char *name)
{
    for (int i = 0; ink_operators[i]; i++)
        if (strcmp(ink_operators[i]->name, name) == 0) return ink_operators[i];
    return NULL;
}
