/* src/nn/layers.c - the layers: conv2d, linear, batch_norm2d (own parameters and buffers
 * with PyTorch's names and default initialisation) and relu, max_pool2d, flatten, dropout.
 * Each is a constructor plus a forward that calls the graph op of src/ops/. The shared
 * module machinery is src/nn/module.c. Tests: tests/graph/test_nn.c.
 */
#include <math.h>
#include <stdlib.h>

#include "nn/nn.h"

/* Frees m and passes st on: the constructors' one failure path. */
static clg_status drop(clg_module *m, clg_status st) {
    clg_module_free(m);
    return st;
}

/* PyTorch's default init of conv and linear layers: kaiming_uniform(a = sqrt(5)) gives the
 * weight U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias gets the same bound. Weight and
 * bias draw from two sub-streams of seed so that neither repeats the other's numbers. */
static clg_status add_weight_and_bias(clg_module *m, int ndim, const int *wshape, int out_features,
                                      double fan_in, bool bias, uint64_t seed) {
    const double bound = 1.0 / sqrt(fan_in);
    clg_tensor *t = NULL;
    clg_status st = clg_tensor_rand_uniform(m->ctx, CLG_F32, ndim, wshape, -bound, bound, seed * 2, &t);
    if (st == CLG_OK) st = clg_tensor_set_requires_grad(t, true);
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    if ((st = clg__module_add(m, "weight", t, true, &m->weight))) return st;
    if (!bias) return CLG_OK;
    st = clg_tensor_rand_uniform(m->ctx, CLG_F32, 1, &out_features, -bound, bound, seed * 2 + 1, &t);
    if (st == CLG_OK) st = clg_tensor_set_requires_grad(t, true);
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    return clg__module_add(m, "bias", t, true, &m->bias);
}

/* ---------------------------------------------------------------- conv2d */

static clg_status conv2d_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    return clg_conv2d(ctx, x, clg__module_entry_tensor(m, m->weight), clg__module_entry_tensor(m, m->bias),
                      m->conv, out);
}
static const clg__module_def conv2d_def = {"conv2d", conv2d_forward};

clg_status clg_conv2d_module_create(clg_context *ctx, const char *name, int in_channels, int out_channels,
                                    int kernel_h, int kernel_w, clg_conv2d_params p, bool bias, uint64_t seed,
                                    clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_conv2d_module_create: out is NULL");
    *out = NULL;
    if (in_channels <= 0 || out_channels <= 0 || kernel_h <= 0 || kernel_w <= 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_conv2d_module_create: channels %d -> %d and kernel %dx%d must be positive",
                         in_channels, out_channels, kernel_h, kernel_w);
    if (p.stride_h <= 0 || p.stride_w <= 0 || p.dilation_h <= 0 || p.dilation_w <= 0 || p.pad_h < 0 ||
        p.pad_w < 0)
        return clg__fail(
            ctx, CLG_INVALID_ARGUMENT,
            "clg_conv2d_module_create: stride %dx%d and dilation %dx%d must be positive, padding "
            "%dx%d not negative",
            p.stride_h, p.stride_w, p.dilation_h, p.dilation_w, p.pad_h, p.pad_w);
    if (p.groups <= 0 || in_channels % p.groups || out_channels % p.groups)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_conv2d_module_create: groups %d must divide in_channels %d and out_channels %d",
                         p.groups, in_channels, out_channels);
    clg_module *m;
    clg_status st = clg__module_new(ctx, &conv2d_def, name, &m);
    if (st != CLG_OK) return st;
    m->conv = p;
    const int cg = in_channels / p.groups;
    const int wshape[4] = {out_channels, cg, kernel_h, kernel_w}; // (K, C/groups, kh, kw)
    const double fan_in = (double)cg * kernel_h * kernel_w;
    if ((st = add_weight_and_bias(m, 4, wshape, out_channels, fan_in, bias, seed))) return drop(m, st);
    *out = m;
    return CLG_OK;
}

/* ---------------------------------------------------------------- linear */

static clg_status linear_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    return clg_linear(ctx, x, clg__module_entry_tensor(m, m->weight), clg__module_entry_tensor(m, m->bias),
                      out);
}
static const clg__module_def linear_def = {"linear", linear_forward};

clg_status clg_linear_module_create(clg_context *ctx, const char *name, int in_features, int out_features,
                                    bool bias, uint64_t seed, clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_linear_module_create: out is NULL");
    *out = NULL;
    if (in_features <= 0 || out_features <= 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_linear_module_create: features %d -> %d must be positive", in_features,
                         out_features);
    clg_module *m;
    clg_status st = clg__module_new(ctx, &linear_def, name, &m);
    if (st != CLG_OK) return st;
    const int wshape[2] = {out_features, in_features}; // (out, in)
    if ((st = add_weight_and_bias(m, 2, wshape, out_features, (double)in_features, bias, seed)))
        return drop(m, st);
    *out = m;
    return CLG_OK;
}

/* ---------------------------------------------------------------- batch_norm2d */

static clg_status batch_norm2d_forward(clg_context *ctx, clg_module *m, const clg_tensor *x,
                                       clg_tensor **out) {
    clg_status st =
        clg_batch_norm2d(ctx, x, clg__module_entry_tensor(m, m->weight), clg__module_entry_tensor(m, m->bias),
                         clg__module_entry_tensor(m, m->running_mean),
                         clg__module_entry_tensor(m, m->running_var),
                         (clg_batch_norm2d_params){m->training, m->momentum, m->eps}, out);
    if (st != CLG_OK || !m->training) return st;
    /* num_batches_tracked += 1 on the device: no host sync, and it stays right after a
     * checkpoint load writes the buffer behind our back. */
    st = clg__axpby(ctx, 1.0, m->one, 1.0, clg__module_entry_tensor(m, m->num_batches_tracked));
    if (st != CLG_OK) {
        clg_tensor_free(*out);
        *out = NULL;
    }
    return st;
}
static const clg__module_def batch_norm2d_def = {"batch_norm2d", batch_norm2d_forward};

/* A (n) f32 tensor filled with value; trainable ones require gradients. */
static clg_status add_filled(clg_module *m, const char *leaf, int n, double value, bool trainable,
                             int *index) {
    clg_tensor *t = NULL;
    clg_status st = clg__tensor_new(m->ctx, CLG_F32, 1, &n, &t);
    if (st == CLG_OK) st = clg_tensor_fill(t, value);
    if (st == CLG_OK && trainable) st = clg_tensor_set_requires_grad(t, true);
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    return clg__module_add(m, leaf, t, trainable, index);
}

clg_status clg_batch_norm2d_module_create(clg_context *ctx, const char *name, int channels, double eps,
                                          double momentum, clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_batch_norm2d_module_create: out is NULL");
    *out = NULL;
    if (channels <= 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_batch_norm2d_module_create: channels is %d, must be positive", channels);
    if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_batch_norm2d_module_create: eps %g must be positive and momentum %g in [0, 1]",
                         eps, momentum);
    clg_module *m;
    clg_status st = clg__module_new(ctx, &batch_norm2d_def, name, &m);
    if (st != CLG_OK) return st;
    m->eps = eps;
    m->momentum = momentum;
    /* PyTorch's order: parameters, then buffers. */
    if ((st = add_filled(m, "weight", channels, 1.0, true, &m->weight)) ||
        (st = add_filled(m, "bias", channels, 0.0, true, &m->bias)) ||
        (st = add_filled(m, "running_mean", channels, 0.0, false, &m->running_mean)) ||
        (st = add_filled(m, "running_var", channels, 1.0, false, &m->running_var)) ||
        (st = add_filled(m, "num_batches_tracked", 1, 0.0, false, &m->num_batches_tracked)))
        return drop(m, st);
    const int one = 1;
    if ((st = clg__tensor_new(ctx, CLG_F32, 1, &one, &m->one)) || (st = clg_tensor_fill(m->one, 1.0)))
        return drop(m, st);
    *out = m;
    return CLG_OK;
}

/* ---------------------------------------------------------------- layers without parameters */

static clg_status relu_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    (void)m;
    return clg_relu(ctx, x, out);
}
static const clg__module_def relu_def = {"relu", relu_forward};

clg_status clg_relu_module_create(clg_context *ctx, clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_relu_module_create: out is NULL");
    return clg__module_new(ctx, &relu_def, NULL, out);
}

static clg_status max_pool2d_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    return clg_max_pool2d(ctx, x, m->pool, out);
}
static const clg__module_def max_pool2d_def = {"max_pool2d", max_pool2d_forward};

clg_status clg_max_pool2d_module_create(clg_context *ctx, clg_pool2d_params p, clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_max_pool2d_module_create: out is NULL");
    *out = NULL;
    if (p.kernel_h <= 0 || p.kernel_w <= 0 || p.stride_h < 0 || p.stride_w < 0 || p.pad_h < 0 || p.pad_w < 0)
        return clg__fail(
            ctx, CLG_INVALID_ARGUMENT,
            "clg_max_pool2d_module_create: kernel %dx%d must be positive, stride %dx%d and padding "
            "%dx%d not negative",
            p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_h, p.pad_w);
    clg_status st = clg__module_new(ctx, &max_pool2d_def, NULL, out);
    if (st == CLG_OK) (*out)->pool = p;
    return st;
}

static clg_status flatten_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    (void)m;
    return clg_flatten(ctx, x, out);
}
static const clg__module_def flatten_def = {"flatten", flatten_forward};

clg_status clg_flatten_module_create(clg_context *ctx, clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_flatten_module_create: out is NULL");
    return clg__module_new(ctx, &flatten_def, NULL, out);
}

static clg_status dropout_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    /* A fresh mask per training forward; evaluation passes x through and draws nothing. */
    const uint64_t seed = m->seed + m->calls;
    if (m->training) m->calls++;
    return clg_dropout(ctx, x, m->p, m->training, seed, out);
}
static const clg__module_def dropout_def = {"dropout", dropout_forward};

clg_status clg_dropout_module_create(clg_context *ctx, double p, uint64_t seed, clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_dropout_module_create: out is NULL");
    *out = NULL;
    if (!(p >= 0 && p <= 1))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_dropout_module_create: p is %g, must be in [0, 1]",
                         p);
    clg_status st = clg__module_new(ctx, &dropout_def, NULL, out);
    if (st == CLG_OK) {
        (*out)->p = p;
        (*out)->seed = seed;
    }
    return st;
}
