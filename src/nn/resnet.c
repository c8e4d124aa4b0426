/* src/nn/resnet.c - a small CIFAR-style ResNet built from the public blocks: stem conv + BN +
 * ReLU, three stages of BasicBlocks (16, 32, 64 channels), global average pooling, linear;
 * torchvision's names and init. Its torch twin: tests/fixtures/make_fixtures.py (ResNetSmall).
 * Tests: tests/nn/test_resnet.c.
 */
#include <string.h>

#include "nn/nn.h"

/* Adds *c (made with status made) to parent as name, unless an earlier step failed. (A
 * pointer: the constructor, the argument before, writes it.) A constructor is still called
 * after a failure, so a child made then is freed. */
static clg_status put(clg_status st, clg_module *parent, const char *name, clg_status made, clg_module **c) {
    if (st != CLG_OK || made != CLG_OK) {
        if (made == CLG_OK) clg_module_free(*c);
        return st != CLG_OK ? st : made;
    }
    return clg_module_add_child(parent, name, *c);
}

/* torchvision's ResNet init: kaiming_normal_(fan_out, relu) on every conv weight (4-D
 * parameters named weight), from the root's generator, in state order. BN is 1 / 0 already. */
static clg_status init_convs(clg_module *net) {
    clg_named_tensor e[128];
    const size_t n = clg_module_named_parameters(net, e, 128);
    if (n > 128)
        return clg__fail(net->ctx, CLG_INVALID_ARGUMENT, "clg_resnet_small_create: too many parameters");
    for (size_t i = 0; i < n; i++) {
        const size_t len = strlen(e[i].name);
        if (clg_tensor_ndim(e[i].tensor) != 4 || len < 6 || strcmp(e[i].name + len - 6, "weight") != 0)
            continue;
        clg_status st = clg_init_kaiming_normal_(net, e[i].tensor, 0.0, CLG_FAN_OUT, CLG_NONLINEARITY_RELU);
        if (st != CLG_OK) return st;
    }
    return CLG_OK;
}

clg_status clg_resnet_small_create(clg_context *ctx, int in_channels, const int blocks[3], int classes,
                                   uint64_t seed, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_resnet_small_create");
    if (in_channels <= 0 || classes <= 0 || !blocks || blocks[0] <= 0 || blocks[1] <= 0 || blocks[2] <= 0)
        return clg__fail(
            ctx, CLG_INVALID_ARGUMENT,
            "clg_resnet_small_create: in_channels %d, classes %d and three block counts must be positive",
            in_channels, classes);
    clg_module *net = NULL, *c = NULL;
    clg_status st = clg_sequential_create(ctx, &net);
    if (st != CLG_OK) return st;
    clg_module_manual_seed(net, seed);
    clg_conv2d_params p = clg_conv2d_default_params();
    p.pad_h = p.pad_w = 1;
    st = put(st, net, "conv1", clg_conv2d_module_create(ctx, NULL, in_channels, 16, 3, 3, p, false, 0, &c),
             &c);
    st = put(st, net, "bn1", clg_batch_norm2d_module_create(ctx, NULL, 16, 1e-5, 0.1, &c), &c);
    st = put(st, net, "relu", clg_relu_module_create(ctx, &c), &c);
    static const char *const names[3] = {"layer1", "layer2", "layer3"};
    int inplanes = 16;
    for (int s = 0; s < 3 && st == CLG_OK; s++) {
        const int planes = 16 << s;
        clg_module *stage = NULL;
        st = put(st, net, names[s], clg_sequential_create(ctx, &stage), &stage);
        for (int b = 0; b < blocks[s] && st == CLG_OK; b++) {
            st = put(st, stage, NULL,
                     clg_basic_block_create(ctx, NULL, inplanes, planes, b == 0 && s > 0 ? 2 : 1, 0, &c), &c);
            inplanes = planes;
        }
    }
    st = put(st, net, "avgpool", clg_adaptive_avg_pool2d_module_create(ctx, 1, 1, &c), &c);
    st = put(st, net, "flatten", clg_flatten_module_create(ctx, &c), &c);
    st = put(st, net, "fc", clg_linear_module_create(ctx, NULL, 64, classes, true, 0, &c), &c);
    /* The layers' own seeds do not matter: everything is drawn again from net's generator. */
    if (st == CLG_OK) st = clg_module_reset_parameters(net);
    if (st == CLG_OK) st = init_convs(net);
    if (st != CLG_OK) return clg__module_drop(net, st);
    *out = net;
    return CLG_OK;
}
