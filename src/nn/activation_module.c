/* src/nn/activation_module.c - the parameterless activation layers (relu), forward through
 * the op of the same name. Tests: tests/nn/test_nn.c.
 */
#include "nn/nn.h"

static clg_status relu_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    (void)m;
    return clg_relu(ctx, x, out);
}

static const clg_module_def relu_def = {.kind = "relu", .forward = relu_forward};

bool clg__is_relu_module(const clg_module *m) { return m && m->def == &relu_def; }

clg_status clg_relu_module_create(clg_context *ctx, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_relu_module_create");
    return clg_module_create(ctx, &relu_def, NULL, out);
}
