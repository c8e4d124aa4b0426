/* src/nn/pool_module.c - the pooling layers: max_pool2d and avg_pool2d (their window in the
 * kind state) and adaptive_avg_pool2d (its output size), forward through the ops of the same
 * names. Tests: tests/nn/test_nn.c, tests/nn/test_containers.c.
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

static clg_status avg_pool2d_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    const clg_pool2d_module *s = m->state;
    return clg_avg_pool2d(ctx, x, s->p, out);
}

static const clg_module_def avg_pool2d_def = {
    .kind = "avg_pool2d", .state_size = sizeof(clg_pool2d_module), .forward = avg_pool2d_forward};

/* The checks both window pools make when created (the op checks the rest against x). */
static clg_status pool_create(clg_context *ctx, const clg_module_def *def, clg_pool2d_params p, const char *fn,
                              clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = NULL;
    if (p.kernel_h <= 0 || p.kernel_w <= 0 || p.stride_h < 0 || p.stride_w < 0 || p.pad_h < 0 || p.pad_w < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: kernel %dx%d must be positive, stride %dx%d and padding %dx%d not negative", fn,
                         p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w);
    clg_status st = clg_module_create(ctx, def, NULL, out);
    if (st == CLG_OK) ((clg_pool2d_module *)(*out)->state)->p = p;
    return st;
}

clg_status clg_max_pool2d_module_create(clg_context *ctx, clg_pool2d_params p, clg_module **out) {
    return pool_create(ctx, &max_pool2d_def, p, "clg_max_pool2d_module_create", out);
}

clg_status clg_avg_pool2d_module_create(clg_context *ctx, clg_pool2d_params p, clg_module **out) {
    return pool_create(ctx, &avg_pool2d_def, p, "clg_avg_pool2d_module_create", out);
}

typedef struct clg_adaptive_pool2d_module {
    int out_h, out_w;
} clg_adaptive_pool2d_module;

static clg_status adaptive_avg_pool2d_forward(clg_context *ctx, clg_module *m, const clg_tensor *x,
                                              clg_tensor **out) {
    const clg_adaptive_pool2d_module *s = m->state;
    return clg_adaptive_avg_pool2d(ctx, x, s->out_h, s->out_w, out);
}

static const clg_module_def adaptive_avg_pool2d_def = {.kind = "adaptive_avg_pool2d",
                                                       .state_size = sizeof(clg_adaptive_pool2d_module),
                                                       .forward = adaptive_avg_pool2d_forward};

clg_status clg_adaptive_avg_pool2d_module_create(clg_context *ctx, int out_h, int out_w, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_adaptive_avg_pool2d_module_create");
    if (out_h <= 0 || out_w <= 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_adaptive_avg_pool2d_module_create: output size %dx%d must be positive", out_h, out_w);
    clg_status st = clg_module_create(ctx, &adaptive_avg_pool2d_def, NULL, out);
    if (st == CLG_OK) *(clg_adaptive_pool2d_module *)(*out)->state = (clg_adaptive_pool2d_module){out_h, out_w};
    return st;
}
