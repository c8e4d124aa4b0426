/* src/nn/basic_block.c - torchvision's BasicBlock as a module of children (conv1, bn1, relu,
 * conv2, bn2 and, when the shape changes, downsample = sequential(conv 1x1, batch norm)):
 * relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), with torchvision's state names.
 * Tests: tests/nn/test_resnet.c.
 */
#include "nn/nn.h"

/* Borrowed pointers to the children, which the core owns (to_dtype keeps modules). */
typedef struct clg_basic_block {
    clg_module *conv1, *bn1, *relu, *conv2, *bn2, *downsample; /* downsample may be NULL */
} clg_basic_block;

static clg_status basic_block_forward(clg_context *ctx, clg_module *m, const clg_tensor *x,
                                      clg_tensor **out) {
    const clg_basic_block *b = m->state;
    clg_tensor *t[6] = {NULL}, *shortcut = NULL;
    clg_status st = clg_module_forward(ctx, b->conv1, x, &t[0]);
    if (st == CLG_OK && clg__bn_relu_fusable(b->bn1, b->relu)) { /* one fused op, the same bits */
        st = clg__bn_relu_module_forward(ctx, b->bn1, t[0], &t[2]);
    } else if (st == CLG_OK) {
        st = clg_module_forward(ctx, b->bn1, t[0], &t[1]);
        if (st == CLG_OK) st = clg_module_forward(ctx, b->relu, t[1], &t[2]);
    }
    if (st == CLG_OK) st = clg_module_forward(ctx, b->conv2, t[2], &t[3]);
    if (st == CLG_OK) st = clg_module_forward(ctx, b->bn2, t[3], &t[4]);
    if (st == CLG_OK && b->downsample) st = clg_module_forward(ctx, b->downsample, x, &shortcut);
    if (st == CLG_OK) st = clg_add(ctx, t[4], shortcut ? shortcut : x, &t[5]);
    if (st == CLG_OK) st = clg_module_forward(ctx, b->relu, t[5], out);
    for (int i = 0; i < 6; i++) /* the graph holds what backward needs */
        clg_tensor_free(t[i]);
    clg_tensor_free(shortcut);
    return st;
}

static const clg_module_def basic_block_def = {
    .kind = "basic_block", .state_size = sizeof(clg_basic_block), .forward = basic_block_forward};

/* Adds *c, just made with status made, as child name and keeps it in *slot. (A pointer to
 * it: the constructor, the argument before, writes it, and arguments have no evaluation
 * order.) */
static clg_status child(clg_module *m, const char *name, clg_status made, clg_module **c, clg_module **slot) {
    if (made != CLG_OK) return made;
    clg_status st = clg_module_add_child(m, name, *c);
    if (st == CLG_OK) *slot = *c;
    return st;
}

clg_status clg_basic_block_create(clg_context *ctx, const char *name, int inplanes, int planes, int stride,
                                  uint64_t seed, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_basic_block_create");
    if (inplanes <= 0 || planes <= 0 || stride <= 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_basic_block_create: inplanes %d, planes %d and stride %d must be positive",
                         inplanes, planes, stride);
    clg_module *m, *c = NULL;
    clg_status st = clg_module_create(ctx, &basic_block_def, name, &m);
    if (st != CLG_OK) return st;
    clg_basic_block *b = m->state;
    clg_conv2d_params p3 = clg_conv2d_default_params(), p1 = clg_conv2d_default_params();
    p3.stride_h = p3.stride_w = stride;
    p3.pad_h = p3.pad_w = 1;
    p1.stride_h = p1.stride_w = stride;
    /* Independent sub-streams of seed per conv, so blocks seeded 1, 2, ... share no weights. */
    st = child(
        m, "conv1",
        clg_conv2d_module_create(ctx, NULL, inplanes, planes, 3, 3, p3, false, clg__rand_u64(seed, 0), &c),
        &c, &b->conv1);
    if (st == CLG_OK)
        st = child(m, "bn1", clg_batch_norm2d_module_create(ctx, NULL, planes, 1e-5, 0.1, &c), &c, &b->bn1);
    if (st == CLG_OK) st = child(m, "relu", clg_relu_module_create(ctx, &c), &c, &b->relu);
    p3.stride_h = p3.stride_w = 1;
    if (st == CLG_OK)
        st = child(
            m, "conv2",
            clg_conv2d_module_create(ctx, NULL, planes, planes, 3, 3, p3, false, clg__rand_u64(seed, 1), &c),
            &c, &b->conv2);
    if (st == CLG_OK)
        st = child(m, "bn2", clg_batch_norm2d_module_create(ctx, NULL, planes, 1e-5, 0.1, &c), &c, &b->bn2);
    if (st == CLG_OK && (stride != 1 || inplanes != planes)) {
        clg_module *ds = NULL;
        st = clg_sequential_create(ctx, &ds);
        if (st == CLG_OK) st = child(m, "downsample", st, &ds, &b->downsample);
        if (st == CLG_OK)
            st = clg_conv2d_module_create(ctx, NULL, inplanes, planes, 1, 1, p1, false,
                                          clg__rand_u64(seed, 2), &c);
        if (st == CLG_OK) st = clg_sequential_add(ds, c);
        if (st == CLG_OK) st = clg_batch_norm2d_module_create(ctx, NULL, planes, 1e-5, 0.1, &c);
        if (st == CLG_OK) st = clg_sequential_add(ds, c);
    }
    if (st != CLG_OK) return clg__module_drop(m, st);
    *out = m;
    return CLG_OK;
}
