/* src/nn/pool_module.c - the max_pool2d layer: its window in the kind state, forward through
 * clg_max_pool2d. Tests: tests/nn/test_nn.c.
 */
#include "nn/nn.h"

typedef struct clg_pool2d_module {
    clg_pool2d_params p;
} clg_pool2d_module;

static clg_status max_pool2d_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    const clg_pool2d_module *s = m->state;
    return clg_max_pool2d(ctx, x, s->p, out);
}

static const clg_module_def max_pool2d_def = {
    .kind = "max_pool2d", .state_size = sizeof(clg_pool2d_module), .forward = max_pool2d_forward};

clg_status clg_max_pool2d_module_create(clg_context *ctx, clg_pool2d_params p, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_max_pool2d_module_create");
    if (p.kernel_h <= 0 || p.kernel_w <= 0 || p.stride_h < 0 || p.stride_w < 0 || p.pad_h < 0 || p.pad_w < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_max_pool2d_module_create: kernel %dx%d must be positive, stride %dx%d and padding "
                         "%dx%d not negative",
                         p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w);
    clg_status st = clg_module_create(ctx, &max_pool2d_def, NULL, out);
    if (st == CLG_OK) ((clg_pool2d_module *)(*out)->state)->p = p;
    return st;
}
