/* clgrad/nn.h - layers (modules) that own named parameters and buffers with PyTorch's
 * state_dict names ("conv1.weight", "bn1.running_mean") and default initialisation, and a
 * sequential container. Implemented in src/nn/. Tests: tests/graph/test_nn.c.
 */
#ifndef CLGRAD_NN_H
#define CLGRAD_NN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clg_module clg_module;

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
/* A container running its children in order. */
CLG_API clg_status clg_sequential_create(clg_context *ctx, clg_module **out);
/* The container takes ownership of child (also on failure). */
CLG_API clg_status clg_sequential_add(clg_module *seq, clg_module *child);

/* Frees the module, its children, parameters and buffers. NULL is a no-op. */
CLG_API void clg_module_free(clg_module *m);
/* y = m(x): a new tensor owned by the caller. */
CLG_API clg_status clg_module_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out);
/* Training mode (batch statistics, dropout on) or evaluation mode; recursive. */
CLG_API void clg_module_train(clg_module *m, bool training);
/* Converts every parameter and buffer (recursively) to dtype, e.g. CLG_F64 for gradient
 * checks; parameters keep requiring gradients, their gradients are dropped. All or nothing:
 * on failure the module is unchanged. Do it before handing the parameters to an optimizer
 * (they become new tensors). Modules start as CLG_F32. */
CLG_API clg_status clg_module_to_dtype(clg_module *m, clg_dtype dtype);

/* State: parameters (trainable) then buffers (running statistics), in registration order,
 * module by module (PyTorch's state_dict order: conv1.weight, conv1.bias, bn1.weight, ...).
 * Returns the count; fills up to cap entries. names and tensors are borrowed from m. */
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
