/* tools/models.h - the model catalogue of the command-line tools: each model's name, builder
 * (public nn API, PyTorch state_dict names), default optimizer and rate, input shape and
 * classes. clgrad-train, clgrad-soak and clgrad-bench take their --model choices from it;
 * tools/clgrad_torch.py mirrors it in torch (checked by tests/tools/check_models.py).
 */
#ifndef CLGRAD_TOOLS_MODELS_H
#define CLGRAD_TOOLS_MODELS_H

#include <stdio.h>

#include <clgrad.h>

typedef struct model_entry {
    const char *name;
    /* *out is owned by the caller (clg_module_free); seed picks the initial weights. */
    clg_status (*build)(clg_context *ctx, uint64_t seed, clg_module **out);
    const char *optimizer; /* default: "sgd" (with MODEL_SGD_MOMENTUM) or "adam" */
    double lr;             /* default learning rate */
    int channels, height, width; /* one input image, (C, H, W) */
    int classes;
    const char *description;
} model_entry;

/* SGD's momentum in the tools unless told otherwise (clgrad-train --momentum) */
#define MODEL_SGD_MOMENTUM 0.9

extern const model_entry model_catalogue[];
extern const int model_count;

/* The entry called name, or NULL. */
const model_entry *model_find(const char *name);
/* Writes the names joined by sep ("lenet|cnn") into buf. */
void model_names(char *buf, size_t len, const char *sep);
/* One line per model for --help texts: name, description, defaults. */
void model_print_list(FILE *f, const char *indent);
/* Creates the optimizer a tool trains with: optimizer "sgd" or "adam" over the parameters
 * of model; momentum applies to SGD only. */
clg_status model_optimizer_create(clg_context *ctx, clg_module *model, const char *optimizer, double lr,
                                  double momentum, double weight_decay, clg_optimizer **out);

#endif
