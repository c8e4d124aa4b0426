/* clgrad/nn.h - modules: a public definition (vtable) any code can implement, the generic
 * core every module shares (named parameters, buffers and children with PyTorch's state_dict
 * names), the built-in layers and blocks (BasicBlock, a small ResNet), the containers
 * (sequential, module list and dict), module-wide helpers and torch.nn.init's functions.
 * Implemented in src/nn/. Tests: tests/nn/ (test_module.c for the core and custom modules,
 * test_containers.c, test_init.c, test_resnet.c).
 */
#ifndef CLGRAD_NN_H
#define CLGRAD_NN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A layer or a container of layers (opaque): parameters, buffers and children by name. */
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
 * as child "conv1", "block.conv1.weight"; torchvision's ResNet gives
 * "layer2.0.downsample.0.weight". A module's state lists its own parameters, then its own
 * persistent buffers (each in registration order), then each child's state in the order the
 * children were added.
 *
 * What a container does with a child's name: the name given to clg_module_add_child wins;
 * NULL keeps the name the child was created with; a child that still has no name gets its
 * position ("0", "1", ...) in a container whose definition sets index_names (sequential,
 * module_list, as nn.Sequential and nn.ModuleList), and otherwise stays unnamed, adding no
 * component to the names below it (its parameters read as its parent's). Named siblings are
 * unique, and no name has a '.'. Names are fixed when the child is added: adding a module to
 * a parent renames its whole subtree (the prefix of every state name below it).
 *
 * Ownership: a module owns its parameters, buffers, children and kind state. A child belongs
 * to its parent from the moment it is added: freeing the root frees it, and freeing it alone
 * is an error (the parent would keep a dangling pointer). A module has one parent: adding a
 * child that already has one fails (CLG_INVALID_ARGUMENT) and leaves it where it is, with its
 * owner; modules are never moved or shared between parents. Every tensor or module pointer
 * these functions return is borrowed: valid until the module frees or replaces it (to_dtype
 * replaces parameters and buffers, so look them up again by name rather than keeping the
 * pointer).
 *
 * Errors: when a module's forward fails, the context's message starts with the dotted path of
 * the innermost named module that failed, then the op's own message:
 * "encoder.fc2: linear: x (4, 30) and w (10, 20) do not fit: want x (N, in) and w (out, in)". */

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
    /* Unnamed children get their position as name ("0", "1", ...), as in nn.Sequential. */
    bool index_names;
    /* Optional: re-initialises the module's own parameters and buffers as its constructor did
     * (PyTorch's reset_parameters), drawing random numbers from gen's generator (see
     * clg_init_uniform_). Called by clg_module_reset_parameters. */
    clg_status (*reset_parameters)(clg_module *m, clg_module *gen);
    /* Optional: the module's random-draw counter (dropout's count of training forwards), which
     * a training checkpoint saves and restores (clg_train_state_save) so that a resumed run
     * draws what the uninterrupted one would have. */
    uint64_t *(*rng_counter)(clg_module *m);
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
 * name the child was created with; see "What a container does with a child's name" above).
 * Ownership of child is taken, also on failure (a name with a '.', a name a sibling has,
 * another context: the child is freed), except in the two cases where freeing it would be
 * wrong, which return CLG_INVALID_ARGUMENT and leave child with its caller: child already has
 * a parent (a module has one owner; it is not moved) or child is parent or one of its
 * ancestors. A NULL child is CLG_INVALID_ARGUMENT. */
CLG_API clg_status clg_module_add_child(clg_module *parent, const char *name, clg_module *child);

/* The module's own parameter or buffer (persistent or not) with that leaf name, or NULL:
 * borrowed. Children are not searched. */
CLG_API clg_tensor *clg_module_get_tensor(const clg_module *m, const char *leaf);
/* The tensor of state name `name` relative to m ("layer1.0.conv1.weight", or a leaf),
 * non-persistent buffers included, or NULL: borrowed. */
CLG_API clg_tensor *clg_module_find_tensor(const clg_module *m, const char *name);
/* The children in the order they were added: the count, and the i-th (NULL past the end). */
CLG_API size_t clg_module_child_count(const clg_module *m);
CLG_API clg_module *clg_module_child(const clg_module *m, size_t i);
/* The child named name (its own name: "layer1", "0"), or NULL. */
CLG_API clg_module *clg_module_get_child(const clg_module *m, const char *name);
/* The kind state (def->state_size zeroed bytes at creation; NULL when state_size is 0). */
CLG_API void *clg_module_kind_state(const clg_module *m);
CLG_API const clg_module_def *clg_module_def_of(const clg_module *m);
CLG_API clg_context *clg_module_context(const clg_module *m);
/* Its own name component ("" for none), not the dotted path. */
CLG_API const char *clg_module_name(const clg_module *m);
/* The dotted prefix of its state names from the root ("layer2.0.downsample"; "" for none). */
CLG_API const char *clg_module_path(const clg_module *m);
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
/* torch.nn.ConvTranspose2d: weight (in_channels, out_channels/groups, kh, kw) and bias
 * (out_channels) when bias, torch's names; the same init as conv2d's with torch's fan_in for
 * this weight, out_channels/groups * kh * kw. Forward: clg_conv_transpose2d (clgrad/ops.h) with
 * p. CLG_INVALID_ARGUMENT for sizes < 1, p out of range (as clg_conv_transpose2d refuses it)
 * or groups not dividing both channel counts. */
CLG_API clg_status clg_conv_transpose2d_module_create(clg_context *ctx, const char *name, int in_channels,
                                                      int out_channels, int kernel_h, int kernel_w,
                                                      clg_conv_transpose2d_params p, bool bias, uint64_t seed,
                                                      clg_module **out);
CLG_API clg_status clg_linear_module_create(clg_context *ctx, const char *name, int in_features,
                                            int out_features, bool bias, uint64_t seed,
                                            clg_module **out);
/* weight = 1, bias = 0, running_mean = 0, running_var = 1, num_batches_tracked = 0. */
CLG_API clg_status clg_batch_norm2d_module_create(clg_context *ctx, const char *name, int channels,
                                                  double eps, double momentum, clg_module **out);
/* Synchronized batch norm (SyncBatchNorm) for every batch_norm2d layer in m's tree, m
 * included: their training forwards go through clg_sync_batch_norm2d with *sync (copied; its
 * user must outlive their use); NULL turns it off again (the default: each replica's own
 * batch). Returns how many layers it set. clg_dist_sync_batch_norm (clgrad/dist.h) calls it. */
CLG_API size_t clg_module_sync_batch_norm(clg_module *m, const clg_replica_sum *sync);
/* Layers without parameters. */
CLG_API clg_status clg_relu_module_create(clg_context *ctx, clg_module **out);
CLG_API clg_status clg_max_pool2d_module_create(clg_context *ctx, clg_pool2d_params p, clg_module **out);
CLG_API clg_status clg_flatten_module_create(clg_context *ctx, clg_module **out);
/* Each training-mode forward draws a fresh mask: seed advances by one per call. */
CLG_API clg_status clg_dropout_module_create(clg_context *ctx, double p, uint64_t seed, clg_module **out);
/* y = x (a new reference to x): torch.nn.Identity. */
CLG_API clg_status clg_identity_module_create(clg_context *ctx, clg_module **out);
/* avg_pool2d (count_include_pad, as clg_avg_pool2d) and adaptive_avg_pool2d to out_h x out_w
 * (1 x 1: global average pooling, torch.nn.AdaptiveAvgPool2d((1, 1))). */
CLG_API clg_status clg_avg_pool2d_module_create(clg_context *ctx, clg_pool2d_params p, clg_module **out);
CLG_API clg_status clg_adaptive_avg_pool2d_module_create(clg_context *ctx, int out_h, int out_w,
                                                         clg_module **out);

/* ---- containers (src/nn/sequential.c, src/nn/containers.c) ---- */

/* A container running its children in order (an unnamed module), torch.nn.Sequential: an
 * unnamed child is named by its index ("0", "1", ...); a named one keeps its name. */
CLG_API clg_status clg_sequential_create(clg_context *ctx, clg_module **out);
/* Appends child: clg_module_add_child(seq, NULL, child) for a seq that is a sequential
 * (otherwise CLG_INVALID_ARGUMENT, child freed). Ownership as there. */
CLG_API clg_status clg_sequential_add(clg_module *seq, clg_module *child);
/* torch.nn.ModuleList: children named by index, for models that are not a chain (the
 * parent's forward runs them). Its own forward fails (CLG_UNSUPPORTED), as ModuleList has
 * none. Append with clg_module_list_append (clg_module_add_child rules, name NULL); get with
 * clg_module_child. */
CLG_API clg_status clg_module_list_create(clg_context *ctx, clg_module **out);
CLG_API clg_status clg_module_list_append(clg_module *list, clg_module *child);
/* torch.nn.ModuleDict: children by key (non-empty, unique, no '.'), in insertion order; get
 * with clg_module_get_child. No forward (CLG_UNSUPPORTED). */
CLG_API clg_status clg_module_dict_create(clg_context *ctx, clg_module **out);
CLG_API clg_status clg_module_dict_set(clg_module *dict, const char *key, clg_module *child);

/* ---- built-in blocks (src/nn/basic_block.c, src/nn/resnet.c) ---- */

/* torchvision's BasicBlock (expansion 1): conv1 (3x3, stride, pad 1, no bias) -> bn1 -> relu
 * -> conv2 (3x3, pad 1, no bias) -> bn2, plus the shortcut, add, relu. The shortcut is the
 * identity, or when stride != 1 or inplanes != planes, downsample = sequential(conv 1x1 with
 * stride, no bias; batch norm), state names downsample.0.weight, downsample.1.weight, ...
 * Children in torchvision's order: conv1, bn1, relu, conv2, bn2[, downsample]. BN eps 1e-5,
 * momentum 0.1; convs PyTorch's default init from sub-streams of seed. */
CLG_API clg_status clg_basic_block_create(clg_context *ctx, const char *name, int inplanes, int planes,
                                          int stride, uint64_t seed, clg_module **out);
/* A CIFAR-style ResNet: conv1 (in_channels -> 16, 3x3, pad 1, no bias), bn1, relu, then
 * layer1..layer3 (sequentials of blocks[i] BasicBlocks at 16, 32, 64 channels; the first
 * block of layer2 and layer3 has stride 2), avgpool (adaptive 1x1), flatten, fc (64 ->
 * classes). State names are those of the same model in torch.nn with torchvision's blocks
 * (tests/fixtures/make_fixtures.py's ResNetSmall). Init as torchvision: every conv weight
 * kaiming_normal_ (fan_out, relu), BN 1 / 0, fc PyTorch's default; all from the root's
 * generator seeded with seed. */
CLG_API clg_status clg_resnet_small_create(clg_context *ctx, int in_channels, const int blocks[3], int classes,
                                           uint64_t seed, clg_module **out);

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
    const char *name; /* dotted state name, e.g. "conv1.weight" */
    clg_tensor *tensor; /* borrowed from the module */
    bool trainable; /* a parameter (true) or a buffer (false) */
} clg_named_tensor;
/* The count; fills up to cap entries. */
CLG_API size_t clg_module_state(const clg_module *m, clg_named_tensor *entries, size_t cap);
/* Only the parameters (for an optimizer), as borrowed tensors, frozen ones included (an
 * optimizer skips a parameter without a gradient, as PyTorch's). */
CLG_API size_t clg_module_parameters(const clg_module *m, clg_tensor **params, size_t cap);
/* The parameters with their state names (named_parameters()); trainable is true in each. */
CLG_API size_t clg_module_named_parameters(const clg_module *m, clg_named_tensor *entries, size_t cap);
/* The number of parameter elements: sum(p.numel() for p in m.parameters()). */
CLG_API size_t clg_module_parameter_count(const clg_module *m);
/* Drops every parameter's gradient in the tree (PyTorch's zero_grad(set_to_none=True)). */
CLG_API void clg_module_zero_grad(clg_module *m);
/* Sets requires_grad on every parameter of the subtree (m.requires_grad_(flag)): false
 * freezes it (backward leaves its gradients alone), true unfreezes it. */
CLG_API void clg_module_requires_grad(clg_module *m, bool requires_grad);

/* ---- initialisation (src/nn/nn_init.c): torch.nn.init's functions, same semantics ----
 * Each fills t in place (any dtype; shape (out, in, ...) for the fan-based ones: fan_in =
 * in * receptive field, fan_out = out * receptive field) and records nothing. The random ones
 * draw from gen's generator: each call takes the next seed of gen's stream, so a model seeded
 * once (clg_module_manual_seed on the root) initialises every layer from it, reproducibly in
 * call order, whatever the device. gen may be any module of t's context, usually the root. */
typedef enum clg_fan_mode { CLG_FAN_IN = 0, CLG_FAN_OUT = 1 } clg_fan_mode;
/* The nonlinearities of torch.nn.init.calculate_gain, with their gains. */
typedef enum clg_nonlinearity {
    CLG_NONLINEARITY_LINEAR = 0, /* also conv1d/2d/3d and their transposes: gain 1 */
    CLG_NONLINEARITY_SIGMOID,    /* 1 */
    CLG_NONLINEARITY_TANH,       /* 5/3 */
    CLG_NONLINEARITY_RELU,       /* sqrt(2) */
    CLG_NONLINEARITY_LEAKY_RELU, /* sqrt(2 / (1 + slope^2)) */
    CLG_NONLINEARITY_SELU,       /* 3/4 */
} clg_nonlinearity;
/* torch.nn.init.calculate_gain; param is leaky_relu's negative slope (PyTorch's default when
 * none is given: 0.01), ignored by the others. NaN for an unknown nonlinearity. */
CLG_API double clg_init_calculate_gain(clg_nonlinearity nl, double param);
/* Starts m's generator over at seed (a new module's generator starts at seed 0). */
CLG_API void clg_module_manual_seed(clg_module *m, uint64_t seed);
/* Re-initialises every module of the tree that has a reset_parameters hook (conv2d and linear:
 * PyTorch's default kaiming_uniform_(a = sqrt(5)) weight and U(+-1/sqrt(fan_in)) bias; batch
 * norm: 1, 0 and fresh running statistics), depth first in state order, all drawing from m's
 * generator: clg_module_manual_seed(net, 42) then this gives the whole model from one seed,
 * whatever seeds its layers were created with. Stops at the first failure. */
CLG_API clg_status clg_module_reset_parameters(clg_module *m);
CLG_API clg_status clg_init_uniform_(clg_module *gen, clg_tensor *t, double a, double b);
CLG_API clg_status clg_init_normal_(clg_module *gen, clg_tensor *t, double mean, double std);
CLG_API clg_status clg_init_constant_(clg_tensor *t, double value);
CLG_API clg_status clg_init_zeros_(clg_tensor *t);
CLG_API clg_status clg_init_ones_(clg_tensor *t);
/* U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)); N(0, gain * sqrt(2 / (fan_in + fan_out))). */
CLG_API clg_status clg_init_xavier_uniform_(clg_module *gen, clg_tensor *t, double gain);
CLG_API clg_status clg_init_xavier_normal_(clg_module *gen, clg_tensor *t, double gain);
/* std = calculate_gain(nl, a) / sqrt(fan), fan by mode: U(-sqrt(3) std, sqrt(3) std) or
 * N(0, std). a is leaky_relu's slope (0 for relu). PyTorch's defaults: a 0, CLG_FAN_IN,
 * CLG_NONLINEARITY_LEAKY_RELU. */
CLG_API clg_status clg_init_kaiming_uniform_(clg_module *gen, clg_tensor *t, double a, clg_fan_mode mode,
                                             clg_nonlinearity nl);
CLG_API clg_status clg_init_kaiming_normal_(clg_module *gen, clg_tensor *t, double a, clg_fan_mode mode,
                                            clg_nonlinearity nl);

#ifdef __cplusplus
}
#endif
#endif
