/* tools/models.c - the catalogue of tools/models.h: the lenet and cnn models layer by layer and
 * the small ResNet (clg_resnet_small_create), the same as tools/clgrad_torch.py's LeNet, CNN
 * and ResNet, with their training defaults and shapes; each can also be built for other input
 * channels, sizes and class counts (model_build: clgrad-train --data on an image folder).
 * A new model is one builder and one catalogue row here, plus its torch twin.
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

static clg_status finish(clg_module *seq, clg_status st, clg_module **out) {
    if (st != CLG_OK) {
        clg_module_free(seq);
        return st;
    }
    *out = seq;
    return CLG_OK;
}

/* lenet's side after conv 5x5 (pad 2), pool 2, conv 5x5, pool 2 (PyTorch's floor sizes); 0 when
 * nothing is left. */
static int lenet_side(int s) {
    const int conv2 = s / 2 - 4;
    return conv2 >= 2 ? conv2 / 2 : 0;
}

/* cnn's side after two (conv 3x3 pad 1, pool 2). */
static int cnn_side(int s) { return s / 2 / 2; }

/* Each layer's seed differs so that the weights are independent. */
static clg_status build_lenet_for(clg_context *ctx, uint64_t seed, int blocks, const model_shape *in,
                                  clg_module **out) {
    (void)blocks;
    clg_module *seq = NULL, *m = NULL;
    clg_status st = clg_sequential_create(ctx, &seq);
    if (st != CLG_OK) return st;
    clg_pool2d_params pool = {2, 2, 2, 2, 0, 0};
    const int features = 16 * lenet_side(in->height) * lenet_side(in->width); /* 400 at 28 x 28 */
    ADD(clg_conv2d_module_create(ctx, "conv1", in->channels, 6, 5, 5, pad(2), true, seed + 1, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_max_pool2d_module_create(ctx, pool, &m));
    ADD(clg_conv2d_module_create(ctx, "conv2", 6, 16, 5, 5, pad(0), true, seed + 2, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_max_pool2d_module_create(ctx, pool, &m));
    ADD(clg_flatten_module_create(ctx, &m));
    ADD(clg_linear_module_create(ctx, "fc1", features, 120, true, seed + 3, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_linear_module_create(ctx, "fc2", 120, 84, true, seed + 4, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_linear_module_create(ctx, "fc3", 84, in->classes, true, seed + 5, &m));
    return finish(seq, st, out);
}

static clg_status build_cnn_for(clg_context *ctx, uint64_t seed, int blocks, const model_shape *in,
                                clg_module **out) {
    (void)blocks;
    clg_module *seq = NULL, *m = NULL;
    clg_status st = clg_sequential_create(ctx, &seq);
    if (st != CLG_OK) return st;
    clg_pool2d_params pool = {2, 2, 2, 2, 0, 0};
    const int features = 64 * cnn_side(in->height) * cnn_side(in->width); /* 3136 at 28 x 28 */
    ADD(clg_conv2d_module_create(ctx, "conv1", in->channels, 32, 3, 3, pad(1), true, seed + 1, &m));
    ADD(clg_batch_norm2d_module_create(ctx, "bn1", 32, 1e-5, 0.1, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_max_pool2d_module_create(ctx, pool, &m));
    ADD(clg_conv2d_module_create(ctx, "conv2", 32, 64, 3, 3, pad(1), true, seed + 2, &m));
    ADD(clg_batch_norm2d_module_create(ctx, "bn2", 64, 1e-5, 0.1, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_max_pool2d_module_create(ctx, pool, &m));
    ADD(clg_flatten_module_create(ctx, &m));
    ADD(clg_linear_module_create(ctx, "fc1", features, 128, true, seed + 3, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_dropout_module_create(ctx, 0.25, seed + 4, &m));
    ADD(clg_linear_module_create(ctx, "fc2", 128, in->classes, true, seed + 5, &m));
    return finish(seq, st, out);
}

/* Stem conv3x3-16 + BN + ReLU, `blocks` BasicBlocks per stage at 16/32/64 channels (stride 2 at
 * stages 2-3), global average pool (any size), linear to the classes; torchvision's init from
 * the seed. */
static clg_status build_resnet_for(clg_context *ctx, uint64_t seed, int blocks, const model_shape *in,
                                   clg_module **out) {
    const int per_stage[3] = {blocks, blocks, blocks};
    return clg_resnet_small_create(ctx, in->channels, per_stage, in->classes, seed, out);
}

/* The catalogue's own shape: one 28 x 28 grey channel, ten classes (Fashion-MNIST). */
static const model_shape FASHION = {1, 28, 28, 10};

static clg_status build_lenet(clg_context *ctx, uint64_t seed, clg_module **out) {
    return build_lenet_for(ctx, seed, 1, &FASHION, out);
}

static clg_status build_cnn(clg_context *ctx, uint64_t seed, clg_module **out) {
    return build_cnn_for(ctx, seed, 1, &FASHION, out);
}

static clg_status build_resnet_blocks(clg_context *ctx, uint64_t seed, int blocks, clg_module **out) {
    return build_resnet_for(ctx, seed, blocks, &FASHION, out);
}

static clg_status build_resnet(clg_context *ctx, uint64_t seed, clg_module **out) {
    return build_resnet_blocks(ctx, seed, 1, out);
}

/* lenet and cnn: plain mini-batch training at the optimizer's rate. */
#define PLAIN_RECIPE {64, false, 0.0, false, "none", 0.0, 1.0, 0, false, false}
/* The ResNet recipe: SGD nesterov, decay 5e-4 on weights only, half an epoch of linear warm-up
 * from 1% of the peak, cosine to 0, random crop (2 px) and flip, normalised inputs. */
#define RESNET_RECIPE {128, true, 5e-4, true, "cosine", 0.5, 0.01, 2, true, true}

const model_entry model_catalogue[] = {
    {"lenet", build_lenet, "sgd", 0.01, 1, 28, 28, 10, "LeNet-5: two 5x5 convolutions, three linear layers",
     PLAIN_RECIPE, NULL, build_lenet_for, 12},
    {"cnn", build_cnn, "adam", 0.001, 1, 28, 28, 10,
     "two 3x3 convolutions with batch norm, two linear layers with dropout", PLAIN_RECIPE, NULL, build_cnn_for, 4},
    {"resnet", build_resnet, "sgd", 0.1, 1, 28, 28, 10,
     "ResNet: 3x3 stem, three stages of BasicBlocks at 16/32/64 channels, global average pool", RESNET_RECIPE,
     build_resnet_blocks, build_resnet_for, 1},
};
const int model_count = (int)(sizeof model_catalogue / sizeof *model_catalogue);

const model_entry *model_find(const char *name) {
    for (int i = 0; name && i < model_count; i++)
        if (!strcmp(model_catalogue[i].name, name)) return &model_catalogue[i];
    return NULL;
}

model_shape model_default_shape(const model_entry *e) {
    return (model_shape){e->channels, e->height, e->width, e->classes};
}

/* Values of one input image a model is built for at most: a dense layer after the convolutions
 * (cnn: 4 weights' rows per pixel) stays addressable by int, and an image this big is better
 * scaled down (clgrad-train --image-size) than trained on at full size. */
#define MODEL_MAX_IMAGE_VALUES (1 << 24)

clg_status model_build(const model_entry *e, clg_context *ctx, uint64_t seed, int blocks, const model_shape *shape,
                       clg_module **out, char *err, size_t err_len) {
    const model_shape s = *shape;
    if (s.channels < 1 || s.classes < 1) {
        snprintf(err, err_len, "model %s needs at least one input channel and one class, not %d and %d", e->name,
                 s.channels, s.classes);
        return CLG_INVALID_ARGUMENT;
    }
    if (s.height < e->min_size || s.width < e->min_size) {
        snprintf(err, err_len,
                 "model %s takes images of at least %d x %d pixels (its convolutions and pools leave nothing of "
                 "%d x %d); resize them (--image-size) or choose another model",
                 e->name, e->min_size, e->min_size, s.height, s.width);
        return CLG_INVALID_ARGUMENT;
    }
    if ((int64_t)s.channels * s.height * s.width > MODEL_MAX_IMAGE_VALUES) {
        snprintf(err, err_len, "model %s: images of %d x %d x %d are more than %d values; resize them (--image-size)",
                 e->name, s.channels, s.height, s.width, MODEL_MAX_IMAGE_VALUES);
        return CLG_INVALID_ARGUMENT;
    }
    if (blocks != 1 && !e->build_blocks) {
        snprintf(err, err_len, "model %s has no blocks to repeat", e->name);
        return CLG_INVALID_ARGUMENT;
    }
    if (err_len) err[0] = '\0';
    return e->build_for(ctx, seed, blocks, &s, out);
}

void model_names(char *buf, size_t len, const char *sep) {
    size_t used = 0;
    if (len) buf[0] = '\0';
    for (int i = 0; i < model_count && used < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? sep : "", model_catalogue[i].name);
        if (n < 0) break;
        used += (size_t)n;
    }
}

void model_print_list(FILE *f, const char *indent) {
    for (int i = 0; i < model_count; i++) {
        const model_entry *e = &model_catalogue[i];
        fprintf(f, "%s%-8s %s; input (%d, %d, %d), %d classes; default %s lr %g\n", indent, e->name,
                e->description, e->channels, e->height, e->width, e->classes, e->optimizer, e->lr);
    }
}

clg_status model_optimizer_create(clg_context *ctx, clg_module *model, const char *optimizer, double lr,
                                  double momentum, double weight_decay, clg_optimizer **out) {
    return model_optimizer_create_ex(ctx, model, optimizer, lr, momentum, false, weight_decay, false, out);
}

clg_status model_optimizer_create_ex(clg_context *ctx, clg_module *model, const char *optimizer, double lr,
                                     double momentum, bool nesterov, double weight_decay, bool decay_split,
                                     clg_optimizer **out) {
    enum { MAX_PARAMS = 512 };
    clg_tensor *params[MAX_PARAMS], *order[MAX_PARAMS];
    const size_t np = clg_module_parameters(model, params, MAX_PARAMS);
    if (np > MAX_PARAMS) return CLG_INVALID_ARGUMENT;
    clg_param_group groups[2];
    size_t ng = 1;
    groups[0] = clg_param_group_of(params, np);
    if (decay_split && weight_decay > 0) ng = clg_param_groups_decay_split(params, np, weight_decay, order, groups);
    if (!strcmp(optimizer, "sgd")) {
        clg_sgd_params sp = clg_sgd_default_params();
        sp.lr = lr, sp.momentum = momentum, sp.weight_decay = decay_split ? 0.0 : weight_decay;
        sp.nesterov = nesterov;
        return clg_sgd_create_groups(ctx, groups, ng, sp, out);
    }
    if (!strcmp(optimizer, "adam")) {
        clg_adam_params ap = clg_adam_default_params();
        ap.lr = lr, ap.weight_decay = decay_split ? 0.0 : weight_decay;
        return clg_adam_create_groups(ctx, groups, ng, ap, out);
    }
    return CLG_INVALID_ARGUMENT;
}
