/* src/nn/flatten_module.c - the flatten layer: (N, ...) -> (N, rest) through clg_flatten.
 * Tests: tests/nn/test_nn.c.
 */
#include "nn/nn.h"

static clg_status flatten_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    (void)m;
    return clg_flatten(ctx, x, out);
}

static const clg_module_def flatten_def = {.kind = "flatten", .forward = flatten_forward};

clg_status clg_flatten_module_create(clg_context *ctx, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_flatten_module_create");
    return clg_module_create(ctx, &flatten_def, NULL, out);
}
