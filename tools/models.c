/* tools/models.c - the catalogue of tools/models.h: the lenet and cnn models layer by layer and
 * the small ResNet (clg_resnet_small_create), the same as tools/clgrad_torch.py's LeNet, CNN
 * and ResNet, with their training defaults and shapes.
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

/* Each layer's seed differs so that the weights are independent. */
static clg_status build_lenet(clg_context *ctx, uint64_t seed, clg_module **out) {
    clg_module *seq = NULL, *m = NULL;
    clg_status st = clg_sequential_create(ctx, &seq);
    if (st != CLG_OK) return st;
    clg_pool2d_params pool = {2, 2, 2, 2, 0, 0};
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
    return finish(seq, st, out);
}

static clg_status build_cnn(clg_context *ctx, uint64_t seed, clg_module **out) {
    clg_module *seq = NULL, *m = NULL;
    clg_status st = clg_sequential_create(ctx, &seq);
    if (st != CLG_OK) return st;
    clg_pool2d_params pool = {2, 2, 2, 2, 0, 0};
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
    return finish(seq, st, out);
}

/* Stem conv3x3-16 + BN + ReLU, one BasicBlock per stage at 16/32/64 channels (stride 2 at
 * stages 2-3), global average pool, linear 10; torchvision's init from the seed. */
static clg_status build_resnet_blocks(clg_context *ctx, uint64_t seed, int blocks, clg_module **out) {
    const int per_stage[3] = {blocks, blocks, blocks};
    return clg_resnet_small_create(ctx, 1, per_stage, 10, seed, out);
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
     PLAIN_RECIPE, NULL},
    {"cnn", build_cnn, "adam", 0.001, 1, 28, 28, 10,
     "two 3x3 convolutions with batch norm, two linear layers with dropout", PLAIN_RECIPE, NULL},
    {"resnet", build_resnet, "sgd", 0.1, 1, 28, 28, 10,
     "ResNet: 3x3 stem, three stages of BasicBlocks at 16/32/64 channels, global average pool", RESNET_RECIPE,
     build_resnet_blocks},
};
const int model_count = (int)(sizeof model_catalogue / sizeof *model_catalogue);

const model_entry *model_find(const char *name) {
    for (int i = 0; name && i < model_count; i++)
        if (!strcmp(model_catalogue[i].name, name)) return &model_catalogue[i];
    return NULL;
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
