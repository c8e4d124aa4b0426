/* clgrad/nn.h - modules: a public definition (vtable) any code can implement, the generic
 * core every module shares (named parameters, buffers and children with PyTorch's state_dict
 * names), the built-in layers and the sequential container. Implemented in src/nn/.
 * Tests: tests/nn/ (test_module.c for the core and custom modules).
 */
#ifndef CLGRAD_NN_H
#define CLGRAD_NN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clg_module clg_module;

/* ---- modules: the generic part (src/nn/module.c) ----
 *
 * A module is a generic core plus a definition (clg_module_def) that says what its kind
 * does. The core holds the module's name, training flag, dtype, parent, its own named
 * parameters and buffers, its named children, and a zeroed block of kind-specific state of
 * def->state_size bytes. state, parameters, train/eval, to_dtype, save/load and free all
 * recurse through the core, so a module defined outside the library behaves like a built-in
 * one. Every built-in layer below is such a definition.
 *
 * Naming (PyTorch's state_dict): a module's state names are the non-empty names on the path
 * from the outermost module down to it, then the leaf, joined by dots: a conv2d named "conv1"
 * inside an unnamed sequential lists "conv1.weight"; inside a module named "block" that adds it
 * as child "conv1", "block.conv1.weight". A module's state lists its own parameters, then its
 * own persistent buffers (each in registration order), then each child's state in the order
 * the children were added.
 *
 * Ownership: a module owns its parameters, buffers, children and kind state. A child belongs
 * to its parent from the moment it is added: freeing the root frees it, and freeing it alone
 * is an error (the parent would keep a dangling pointer). Every tensor or module pointer these
 * functions return is borrowed: valid until the module frees or replaces it (to_dtype replaces
 * parameters and buffers, so look them up again by name rather than keeping the pointer). */

/* What one kind of module does. The core never copies the definition: keep it alive as long
 * as any module of that kind (a static const object is the usual choice). */
typedef struct clg_module_def {
    /* "conv2d": names the kind in error messages. Required. */
    const char *kind;
    /* Bytes of kind-specific state the core allocates (zeroed, aligned for any type) and
     * frees with the module; 0 for none. Reach it with clg_module_kind_state. */
    size_t state_size;
    /* y = m(x): a new tensor owned by the caller, *out NULL on failure. Required. Called by
     * clg_module_forward after it checked ctx, m and x. */
    clg_status (*forward)(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out);
    /* Optional: releases what the kind state holds (not the state block itself, nor the
     * parameters, buffers or children: the core frees those). */
    void (*free)(void *state);
    /* Optional: told after the module's training flag changed (clg_module_train sets the flag
     * of every module in the tree first). */
    void (*train)(clg_module *m, bool training);
} clg_module_def;

/* A module of kind def, named name (copied; NULL or "" for none), in training mode, f32, with
 * no parameters, buffers or children. Fails when def, def->kind or def->forward is NULL. */
CLG_API clg_status clg_module_create(clg_context *ctx, const clg_module_def *def, const char *name,
                                     clg_module **out);
/* Registers t as the module's parameter leaf ("weight"): it is listed in the state as
 * trainable and returned by clg_module_parameters, and made to require gradients. A leaf is
 * non-empty, has no '.', and is unique among the module's own parameters and buffers. The
 * module takes ownership of the reference t, also on failure. */
CLG_API clg_status clg_module_add_parameter(clg_module *m, const char *leaf, clg_tensor *t);
/* Registers t as a buffer (running statistics): not trainable. A persistent buffer is in the
 * state and so in checkpoints; a non-persistent one (a constant the forward needs) is not,
 * but to_dtype still converts it, as PyTorch's register_buffer(persistent=False). Same rules
 * for leaf and ownership as clg_module_add_parameter. */
CLG_API clg_status clg_module_add_buffer(clg_module *m, const char *leaf, clg_tensor *t, bool persistent);
/* Adds child under parent, after the children it has, named name (copied; NULL keeps the
 * name the child was created with). Ownership of child is taken, also on failure, except in
 * the two cases where freeing it would be wrong, which return CLG_INVALID_ARGUMENT and leave
 * child with its caller: child already has a parent (a module has one owner; it is not moved)
 * or child is parent or one of its ancestors. A NULL child is CLG_INVALID_ARGUMENT. */
CLG_API clg_status clg_module_add_child(clg_module *parent, const char *name, clg_module *child);

/* The module's own parameter or buffer (persistent or not) with that leaf name, or NULL:
 * borrowed. Children are not searched. */
CLG_API clg_tensor *clg_module_get_tensor(const clg_module *m, const char *leaf);
/* The children in the order they were added: the count, and the i-th (NULL past the end). */
CLG_API size_t clg_module_child_count(const clg_module *m);
CLG_API clg_module *clg_module_child(const clg_module *m, size_t i);
/* The kind state (def->state_size zeroed bytes at creation; NULL when state_size is 0). */
CLG_API void *clg_module_kind_state(const clg_module *m);
CLG_API const clg_module_def *clg_module_def_of(const clg_module *m);
CLG_API clg_context *clg_module_context(const clg_module *m);
/* Its own name component ("" for none), not the dotted path. */
CLG_API const char *clg_module_name(const clg_module *m);
CLG_API clg_module *clg_module_parent(const clg_module *m);
CLG_API bool clg_module_is_training(const clg_module *m);
/* The dtype the last clg_module_to_dtype gave the tree; CLG_F32 before any. */
CLG_API clg_dtype clg_module_dtype(const clg_module *m);

/* ---- built-in layers (src/nn/<kind>_module.c, src/nn/sequential.c) ---- */

/* Layers with parameters. name is the state_dict prefix ("conv1"); it is copied.
 * Weights: kaiming-uniform(a = sqrt(5)) as PyTorch, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * and the same bound for the bias; from a host generator seeded by seed. */
CLG_API clg_status clg_conv2d_module_create(clg_context *ctx, const char *name, int in_channels,
                                            int out_channels, int kernel_h, int kernel_w,
                                            clg_conv2d_params p, bool bias, uint64_t seed,
                                            clg_module **out);
CLG_API clg_status clg_linear_module_create(clg_context *ctx, const char *name, int in_features,
                                            int out_features, bool bias, uint64_t seed,
                                            clg_module **out);
/* weight = 1, bias = 0, running_mean = 0, running_var = 1, num_batches_tracked = 0. */
CLG_API clg_status clg_batch_norm2d_module_create(clg_context *ctx, const char *name, int channels,
                                                  double eps, double momentum, clg_module **out);
/* Layers without parameters. */
CLG_API clg_status clg_relu_module_create(clg_context *ctx, clg_module **out);
CLG_API clg_status clg_max_pool2d_module_create(clg_context *ctx, clg_pool2d_params p, clg_module **out);
CLG_API clg_status clg_flatten_module_create(clg_context *ctx, clg_module **out);
/* Each training-mode forward draws a fresh mask: seed advances by one per call. */
CLG_API clg_status clg_dropout_module_create(clg_context *ctx, double p, uint64_t seed, clg_module **out);
/* A container running its children in order (an unnamed module). */
CLG_API clg_status clg_sequential_create(clg_context *ctx, clg_module **out);
/* Appends child, keeping its own name: clg_module_add_child(seq, NULL, child) for a seq that
 * is a sequential (otherwise CLG_INVALID_ARGUMENT, child freed). Ownership as there. */
CLG_API clg_status clg_sequential_add(clg_module *seq, clg_module *child);

/* Frees the module, its children, parameters, buffers and kind state (calling def->free).
 * NULL is a no-op. Only for a module without a parent: a child is freed by its root. */
CLG_API void clg_module_free(clg_module *m);
/* y = m(x): a new tensor owned by the caller. */
CLG_API clg_status clg_module_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out);
/* Training mode (batch statistics, dropout on) or evaluation mode; recursive (def->train
 * is told after every flag in the tree is set). */
CLG_API void clg_module_train(clg_module *m, bool training);
/* Converts every parameter and buffer, persistent or not (recursively) to dtype, e.g. CLG_F64 for gradient
 * checks; parameters keep requiring gradients, their gradients are dropped. All or nothing:
 * on failure the module is unchanged. Do it before handing the parameters to an optimizer
 * (they become new tensors). Modules start as CLG_F32. */
CLG_API clg_status clg_module_to_dtype(clg_module *m, clg_dtype dtype);

/* State: own parameters (trainable), then own persistent buffers, then each child's, depth
 * first (PyTorch's state_dict order and dotted names: conv1.weight, conv1.bias, bn1.weight,
 * ...). Returns the count; fills up to cap entries. names and tensors are borrowed from m. */
typedef struct clg_named_tensor {
    const char *name;
    clg_tensor *tensor;
    bool trainable;
} clg_named_tensor;
CLG_API size_t clg_module_state(const clg_module *m, clg_named_tensor *entries, size_t cap);
/* Only the trainable parameters (for an optimizer), as borrowed tensors. */
CLG_API size_t clg_module_parameters(const clg_module *m, clg_tensor **params, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
