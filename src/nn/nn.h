/* src/nn/module.h - the module layout shared by src/nn/module.c (the generic part: state,
 * children, dispatch, free) and src/nn/layers.c (each layer's constructor and forward).
 * Public API: include/clgrad/nn.h. Tests: tests/graph/test_nn.c.
 */
#ifndef CLGRAD_NN_NN_H
#define CLGRAD_NN_NN_H

#include "tensor/tensor.h"

/* One parameter or buffer the module owns. name is the full state_dict name. */
typedef struct clg__module_entry {
    char *name;         /* "conv1.weight"; owned */
    clg_tensor *tensor; /* owned reference */
    bool trainable;
} clg__module_entry;

typedef clg_status (*clg__module_forward_fn)(clg_context *ctx, clg_module *m, const clg_tensor *x,
                                             clg_tensor **out);

/* What differs from one kind of layer to the next. */
typedef struct clg__module_def {
    const char *kind; /* "conv2d", for error messages */
    clg__module_forward_fn forward;
} clg__module_def;

/* Index of an absent entry (a layer without bias). */
#define CLG__NO_ENTRY (-1)

struct clg_module {
    clg_context *ctx;
    const clg__module_def *def;
    char *name; /* state_dict prefix; "" for none */
    bool training;
    clg_dtype dtype;    /* of its parameters and buffers */
    clg_module *parent; /* the sequential that owns it, or NULL */

    clg_module **children; /* owned; sequential only */
    size_t n_children, cap_children;

    clg__module_entry *state; /* own parameters first, then own buffers (PyTorch's order) */
    size_t n_state, cap_state;

    /* Indices into state (CLG__NO_ENTRY when absent), so a dtype change keeps them valid. */
    int weight, bias, running_mean, running_var, num_batches_tracked;

    /* Per-kind settings. */
    clg_conv2d_params conv;
    clg_pool2d_params pool;
    double eps, momentum; /* batch_norm2d */
    clg_tensor *one;      /* batch_norm2d: a (1) tensor holding 1, to count batches on the device */
    double p;             /* dropout */
    uint64_t seed, calls; /* dropout: each training forward uses seed + calls++ */
};

/* A new module of kind def with prefix name (copied; NULL means none). Not training-specific:
 * every module starts in training mode, f32, as in PyTorch. */
clg_status clg__module_new(clg_context *ctx, const clg__module_def *def, const char *name, clg_module **out);
/* Appends t (ownership taken, also on failure) as "<prefix>.<leaf>"; *index gets its slot. */
clg_status clg__module_add(clg_module *m, const char *leaf, clg_tensor *t, bool trainable, int *index);
/* The tensor in slot i, or NULL for CLG__NO_ENTRY. */
clg_tensor *clg__module_entry_tensor(const clg_module *m, int i);

#endif
