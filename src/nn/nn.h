/* src/nn/nn.h - the nn floor's private header: the generic module core's layout (module.c)
 * and the helpers the built-in layers share (init.c). Each layer kind is one definition in
 * its own file (conv2d_module.c, linear_module.c, ...). Public API: include/clgrad/nn.h.
 * Tests: tests/nn/.
 */
#ifndef CLGRAD_NN_NN_H
#define CLGRAD_NN_NN_H

#include "tensor/tensor.h"

/* One parameter or buffer a module owns. */
typedef struct clg_module_entry {
    char *leaf;         /* "weight"; owned */
    char *name;         /* the full state_dict name, "conv1.weight"; owned, rebuilt on re-parenting */
    clg_tensor *tensor; /* owned reference */
    bool trainable;     /* a parameter */
    bool persistent;    /* listed in the state (parameters always are) */
} clg_module_entry;

struct clg_module {
    clg_context *ctx;
    const clg_module_def *def;
    char *name;  /* its own component; "" for none */
    char *path;  /* the dotted prefix of its state names: the non-empty names from the root down */
    void *state; /* def->state_size bytes, or NULL */
    bool training;
    clg_dtype dtype;
    clg_module *parent; /* the owner, or NULL for a root */

    clg_module **children; /* owned */
    size_t n_children, cap_children;

    clg_module_entry *entries; /* own parameters and buffers, in registration order */
    size_t n_entries, cap_entries;

    /* The module's generator for the init helpers (nn_init.c): draw i is stream
     * clg__rand_u64(gen_seed, i), so a model seeds once and inits every layer from it. */
    uint64_t gen_seed, gen_draws;
};

/* The next seed of m's generator (advances it). */
uint64_t clg__module_next_seed(clg_module *m);
/* PyTorch's reset_parameters of conv and linear (nn_init.c): "weight" kaiming_uniform_(a =
 * sqrt(5)), "bias" (when present) U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from gen. */
clg_status clg__reset_weight_and_bias(clg_module *m, clg_module *gen);

/* Shared by the layers' constructors: the checks every public constructor makes first. */
#define CLG__CHECK_CREATE(ctx, out, fn)                                                              \
    do {                                                                                             \
        if (!(ctx)) return CLG_INVALID_ARGUMENT;                                                     \
        if (!(out)) return clg__fail((ctx), CLG_INVALID_ARGUMENT, fn ": out is NULL");              \
        *(out) = NULL;                                                                               \
    } while (0)

/* clg_module_add_child, with fn naming the public caller in error messages. */
clg_status clg__module_attach(clg_module *parent, const char *name, clg_module *child, const char *fn);

/* Prefixes ctx's error message with m's path (unless it has it), as clg_module_forward does. */
void clg__module_name_failure(clg_module *m, clg_status st);

/* A batch_norm2d layer bn immediately followed by a ReLU layer next, which the containers
 * run as one fused op (clg_batch_norm2d_relu, the same bits) through clg__bn_relu_module_forward:
 * bn's forward (training or evaluation, synchronized or not) with next's ReLU folded in. */
bool clg__bn_relu_fusable(const clg_module *bn, const clg_module *next);
bool clg__is_relu_module(const clg_module *m);
clg_status clg__bn_relu_module_forward(clg_context *ctx, clg_module *bn, const clg_tensor *x,
                                       clg_tensor **out);

/* Frees m and passes st on: the constructors' one failure path. */
clg_status clg__module_drop(clg_module *m, clg_status st);

/* PyTorch's default init of conv and linear layers (init.c): kaiming_uniform(a = sqrt(5))
 * gives "weight" (shape wshape) U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and "bias" (out_features,
 * when bias) the same bound, from sub-streams 2 * seed and 2 * seed + 1. */
clg_status clg__init_weight_and_bias(clg_module *m, int ndim, const int *wshape, int out_features,
                                     double fan_in, bool bias, uint64_t seed);
/* An f32 (n) tensor filled with value, registered as a parameter (trainable) or a buffer. */
clg_status clg__init_filled(clg_module *m, const char *leaf, int n, double value, bool trainable,
                            bool persistent);

#endif
