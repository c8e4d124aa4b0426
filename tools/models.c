/* tools/models.c - the lenet and cnn models of clgrad-train, layer by layer as in issue 5
 * and tools/clgrad_torch.py. Each layer's seed differs so weights are independent.
 */
#include <string.h>

#include "models.h"

/* Creates one layer (expr writes m) and appends it, unless an earlier step failed. */
#define ADD(expr)                                      \
    do {                                               \
        if (st == CLG_OK && (st = (expr)) == CLG_OK)   \
            st = clg_sequential_add(seq, m);           \
    } while (0)

static clg_conv2d_params pad(int p) {
    clg_conv2d_params c = clg_conv2d_default_params();
    c.pad_h = c.pad_w = p;
    return c;
}

clg_status model_create(clg_context *ctx, const char *name, uint64_t seed, clg_module **out) {
    clg_module *seq = NULL, *m = NULL;
    clg_status st = clg_sequential_create(ctx, &seq);
    if (st != CLG_OK) return st;
    clg_pool2d_params pool = {2, 2, 2, 2, 0, 0};
    if (!strcmp(name, "lenet")) {
        ADD(clg_conv2d_module_create(ctx, "conv1", 1, 6, 5, 5, pad(2), true, seed + 1, &m));
        ADD(clg_relu_module_create(ctx, &m));
        ADD(clg_max_pool2d_module_create(ctx, pool, &m));
        ADD(clg_conv2d_module_create(ctx, "conv2", 6, 16, 5, 5, pad(0), true, seed + 2, &m));
        ADD(clg_relu_module_create(ctx, &m));
        ADD(clg_max_pool2d_module_create(ctx, pool, &m));
        ADD(clg_flatten_module_create(ctx, &m));
        ADD(clg_linear_module_create(ctx, "fc1", 400, 120, true, seed + 3, &m));
        ADD(clg_relu_module_create(ctx, &m));
        ADD(clg_linear_module_create(ctx, "fc2", 120, 84, true, seed + 4, &m));
        ADD(clg_relu_module_create(ctx, &m));
        ADD(clg_linear_module_create(ctx, "fc3", 84, 10, true, seed + 5, &m));
    } else if (!strcmp(name, "cnn")) {
        ADD(clg_conv2d_module_create(ctx, "conv1", 1, 32, 3, 3, pad(1), true, seed + 1, &m));
        ADD(clg_batch_norm2d_module_create(ctx, "bn1", 32, 1e-5, 0.1, &m));
        ADD(clg_relu_module_create(ctx, &m));
        ADD(clg_max_pool2d_module_create(ctx, pool, &m));
        ADD(clg_conv2d_module_create(ctx, "conv2", 32, 64, 3, 3, pad(1), true, seed + 2, &m));
        ADD(clg_batch_norm2d_module_create(ctx, "bn2", 64, 1e-5, 0.1, &m));
        ADD(clg_relu_module_create(ctx, &m));
        ADD(clg_max_pool2d_module_create(ctx, pool, &m));
        ADD(clg_flatten_module_create(ctx, &m));
        ADD(clg_linear_module_create(ctx, "fc1", 3136, 128, true, seed + 3, &m));
        ADD(clg_relu_module_create(ctx, &m));
        ADD(clg_dropout_module_create(ctx, 0.25, seed + 4, &m));
        ADD(clg_linear_module_create(ctx, "fc2", 128, 10, true, seed + 5, &m));
    } else {
        st = CLG_INVALID_ARGUMENT;
    }
    if (st != CLG_OK) {
        clg_module_free(seq);
        return st;
    }
    *out = seq;
    return CLG_OK;
}
