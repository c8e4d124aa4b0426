/* src/nn/linear_module.c - the linear layer: weight (out, in) and optional bias with
 * PyTorch's names and default init, forward through clg_linear. Tests: tests/nn/test_nn.c.
 */
#include "nn/nn.h"

static clg_status linear_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    return clg_linear(ctx, x, clg_module_get_tensor(m, "weight"), clg_module_get_tensor(m, "bias"), out);
}

static const clg_module_def linear_def = {
    .kind = "linear", .forward = linear_forward, .reset_parameters = clg__reset_weight_and_bias};

clg_status clg_linear_module_create(clg_context *ctx, const char *name, int in_features, int out_features,
                                    bool bias, uint64_t seed, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_linear_module_create");
    if (in_features <= 0 || out_features <= 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_linear_module_create: features %d -> %d must be positive",
                         in_features, out_features);
    clg_module *m;
    clg_status st = clg_module_create(ctx, &linear_def, name, &m);
    if (st != CLG_OK) return st;
    const int wshape[2] = {out_features, in_features};
    if ((st = clg__init_weight_and_bias(m, 2, wshape, out_features, (double)in_features, bias, seed)))
        return clg__module_drop(m, st);
    *out = m;
    return CLG_OK;
}
