/* tools/models.h - the model catalogue of the command-line tools: each model's name, builder
 * (public nn API, PyTorch state_dict names), default optimizer and rate, input shape and
 * classes. clgrad-train, clgrad-soak and clgrad-bench take their --model choices from it;
 * tools/clgrad_torch.py mirrors it in torch (checked by tests/tools/check_models.py).
 */
#ifndef CLGRAD_TOOLS_MODELS_H
#define CLGRAD_TOOLS_MODELS_H

#include <stdio.h>

#include <clgrad.h>

/* How clgrad-train trains a model unless told otherwise (tools/clgrad_torch.py's recipe). */
typedef struct model_recipe {
    int batch;                  /* batch size */
    bool nesterov;              /* SGD's Nesterov momentum */
    double weight_decay;        /* 0: none */
    bool decay_split;           /* decay on weights (2+ dims) only, not biases or norm parameters */
    const char *schedule;       /* "none" or "cosine" (to 0 at the last step) */
    double warmup_epochs;       /* linear warm-up in front of the schedule */
    double warmup_start_factor; /* the warm-up's first rate, as a fraction of the peak */
    int crop_padding;           /* per-image random crop from the image padded by this (0: off) */
    bool hflip;                 /* per-image random horizontal flip */
    bool normalize;             /* inputs by the training set's mean and std */
} model_recipe;

/* What a model is built for: (channels, height, width) input images and classes outputs. */
typedef struct model_shape {
    int channels, height, width;
    int classes;
} model_shape;

typedef struct model_entry {
    const char *name;
    /* *out is owned by the caller (clg_module_free); seed picks the initial weights. */
    clg_status (*build)(clg_context *ctx, uint64_t seed, clg_module **out);
    const char *optimizer; /* default: "sgd" (with MODEL_SGD_MOMENTUM) or "adam" */
    double lr;             /* default learning rate */
    int channels, height, width; /* one input image, (C, H, W) */
    int classes;
    const char *description;
    model_recipe recipe;
    /* Optional: the model with `blocks` blocks per stage (resnet; build uses 1). */
    clg_status (*build_blocks)(clg_context *ctx, uint64_t seed, int blocks, clg_module **out);
    /* The model for another input shape and class count (blocks: as build_blocks; 1 for a model
     * without them); called through model_build, which checks the shape first. */
    clg_status (*build_for)(clg_context *ctx, uint64_t seed, int blocks, const model_shape *shape,
                            clg_module **out);
    /* The smallest height and width the model takes: its convolutions and pools leave at least
     * one pixel of it. */
    int min_size;
} model_entry;

/* SGD's momentum in the tools unless told otherwise (clgrad-train --momentum) */
#define MODEL_SGD_MOMENTUM 0.9

extern const model_entry model_catalogue[];
extern const int model_count;

/* The entry called name, or NULL. */
const model_entry *model_find(const char *name);
/* The catalogue row's own shape (Fashion-MNIST's for every model today). */
model_shape model_default_shape(const model_entry *e);
/* Builds e for shape with blocks per stage (1 for a model without blocks); *out is owned by
 * the caller (clg_module_free). A shape the model cannot take (below min_size, a dense layer too
 * big to address, no classes) gives CLG_INVALID_ARGUMENT and a message in err saying why;
 * other failures are the library's (clg_context_errmsg). */
clg_status model_build(const model_entry *e, clg_context *ctx, uint64_t seed, int blocks, const model_shape *shape,
                       clg_module **out, char *err, size_t err_len);
/* Writes the names joined by sep ("lenet|cnn") into buf. */
void model_names(char *buf, size_t len, const char *sep);
/* One line per model for --help texts: name, description, defaults. */
void model_print_list(FILE *f, const char *indent);
/* Creates the optimizer a tool trains with: optimizer "sgd" or "adam" over the parameters
 * of model; momentum applies to SGD only. */
clg_status model_optimizer_create(clg_context *ctx, clg_module *model, const char *optimizer, double lr,
                                  double momentum, double weight_decay, clg_optimizer **out);
/* The same with Nesterov momentum (SGD) and, with decay_split, weight decay on the weights
 * only (clg_param_groups_decay_split). */
clg_status model_optimizer_create_ex(clg_context *ctx, clg_module *model, const char *optimizer, double lr,
                                     double momentum, bool nesterov, double weight_decay, bool decay_split,
                                     clg_optimizer **out);

#endif
