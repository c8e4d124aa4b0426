/* src/nn/conv_transpose2d_module.c - the conv_transpose2d layer (torch.nn.ConvTranspose2d):
 * weight (C_in, C_out/groups, kh, kw) and optional bias (C_out) with PyTorch's names and
 * default init, forward through clg_conv_transpose2d (src/ops/conv_transpose2d.c). Tests:
 * tests/nn/test_conv_transpose2d_module.c.
 */
#include "nn/nn.h"

typedef struct clg_conv_transpose2d_module {
    clg_conv_transpose2d_params p;
} clg_conv_transpose2d_module;

static clg_status conv_transpose2d_forward(clg_context *ctx, clg_module *m, const clg_tensor *x,
                                           clg_tensor **out) {
    const clg_conv_transpose2d_module *s = m->state;
    return clg_conv_transpose2d(ctx, x, clg_module_get_tensor(m, "weight"), clg_module_get_tensor(m, "bias"),
                                s->p, out);
}

/* reset_parameters is conv2d's: torch's _ConvNd takes the fans from the weight's shape, so the
 * transposed layer's fan_in is C_out/groups * kh * kw (weight.size(1)), as here. */
static const clg_module_def conv_transpose2d_def = {.kind = "conv_transpose2d",
                                                    .state_size = sizeof(clg_conv_transpose2d_module),
                                                    .forward = conv_transpose2d_forward,
                                                    .reset_parameters = clg__reset_weight_and_bias};

clg_status clg_conv_transpose2d_module_create(clg_context *ctx, const char *name, int in_channels,
                                              int out_channels, int kernel_h, int kernel_w,
                                              clg_conv_transpose2d_params p, bool bias, uint64_t seed,
                                              clg_module **out) {
    static const char fn[] = "clg_conv_transpose2d_module_create";
    CLG__CHECK_CREATE(ctx, out, "clg_conv_transpose2d_module_create");
    if (in_channels <= 0 || out_channels <= 0 || kernel_h <= 0 || kernel_w <= 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: channels %d -> %d and kernel %dx%d must be positive",
                         fn, in_channels, out_channels, kernel_h, kernel_w);
    if (p.stride_h <= 0 || p.stride_w <= 0 || p.dilation_h <= 0 || p.dilation_w <= 0 || p.pad_h < 0 ||
        p.pad_w < 0 || p.output_pad_h < 0 || p.output_pad_w < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: stride %dx%d and dilation %dx%d must be positive, padding %dx%d and output "
                         "padding %dx%d not negative",
                         fn, p.stride_h, p.stride_w, p.dilation_h, p.dilation_w, p.pad_h, p.pad_w,
                         p.output_pad_h, p.output_pad_w);
    /* torch.nn.ConvTranspose2d refuses this at its first forward; a layer that can never run is
     * refused here */
    if ((p.output_pad_h >= p.stride_h && p.output_pad_h >= p.dilation_h) ||
        (p.output_pad_w >= p.stride_w && p.output_pad_w >= p.dilation_w))
        return clg__fail(
            ctx, CLG_INVALID_ARGUMENT,
            "%s: output padding %dx%d must be smaller than either stride %dx%d or dilation %dx%d", fn,
            p.output_pad_h, p.output_pad_w, p.stride_h, p.stride_w, p.dilation_h, p.dilation_w);
    if (p.groups <= 0 || in_channels % p.groups || out_channels % p.groups)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: groups %d must divide in_channels %d and out_channels %d", fn, p.groups,
                         in_channels, out_channels);
    clg_module *m;
    clg_status st = clg_module_create(ctx, &conv_transpose2d_def, name, &m);
    if (st != CLG_OK) return st;
    ((clg_conv_transpose2d_module *)m->state)->p = p;
    const int cg = out_channels / p.groups;
    const int wshape[4] = {in_channels, cg, kernel_h, kernel_w};
    const double fan_in = (double)cg * kernel_h * kernel_w;
    if ((st = clg__init_weight_and_bias(m, 4, wshape, out_channels, fan_in, bias, seed)))
        return clg__module_drop(m, st);
    *out = m;
    return CLG_OK;
}
