/* clgrad/ops.h - operations on tensors. Each op lives in src/ops/<stem>.c with its kernels
 * in cl/ops/<stem>.cl and tests in tests/ops/test_<stem>.c.
 *
 * Graph ops (clg_conv2d, clg_relu, ...) compute their result and, when grad mode is on and
 * an input requires gradients, record a node so clg_backward can reach the inputs. Each
 * returns a new tensor owned by the caller (*out; NULL on failure).
 *
 * Raw forward/backward calls (clg_conv2d_forward, clg_conv2d_backward) record nothing: they
 * are the building blocks, exposed for people who want to drive backprop by hand. Every
 * raw backward takes beta: 0 overwrites the gradient, 1 adds to it.
 */
#ifndef CLGRAD_OPS_H
#define CLGRAD_OPS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- GEMM (src/blas): C = alpha * op(A) * op(B) + beta * C, row-major ----
 * op(A) is M x K, op(B) is K x N, C is M x N; offsets and leading dimensions in elements.
 * All three tensors share one dtype. */
CLG_API clg_status clg_gemm(clg_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n,
                            size_t k, double alpha, const clg_tensor *a, size_t a_offset,
                            size_t lda, const clg_tensor *b, size_t b_offset, size_t ldb,
                            double beta, clg_tensor *c, size_t c_offset, size_t ldc);

/* ---- conv2d (src/ops/conv2d.c) ---- */
/* PyTorch's Conv2d arguments (clg_conv2d_default_params: stride 1, pad 0, dilation 1, groups 1). */
typedef struct clg_conv2d_params {
    int stride_h, stride_w; /* step between windows: rows, columns */
    int pad_h, pad_w; /* zeros added on each side: rows, columns */
    int dilation_h, dilation_w; /* spacing between kernel taps: rows, columns */
    int groups; /* channels split into this many independent groups (C and K divisible by it) */
} clg_conv2d_params;
CLG_API clg_conv2d_params clg_conv2d_default_params(void); /* stride 1, pad 0, dilation 1, groups 1 */

/* x (N, C, H, W), w (K, C/groups, kh, kw), b (K) or NULL -> y (N, K, OH, OW). */
CLG_API clg_status clg_conv2d(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                              const clg_tensor *b, clg_conv2d_params p, clg_tensor **out);
/* y must already have the output shape. Records nothing. */
CLG_API clg_status clg_conv2d_forward(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                                      const clg_tensor *b, clg_conv2d_params p, clg_tensor *y);
/* Gradients from dy (N, K, OH, OW): dx (N, C, H, W), dw (K, C/groups, kh, kw), db (K).
 * Any of dx, dw, db may be NULL to skip it. Each is written as beta*old + new. */
CLG_API clg_status clg_conv2d_backward(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                                       const clg_tensor *dy, clg_conv2d_params p,
                                       clg_tensor *dx, clg_tensor *dw, clg_tensor *db, double beta);
/* Output size of one spatial dimension, or -1 when the kernel does not fit. */
CLG_API int clg_conv2d_out_size(int in, int kernel, int stride, int pad, int dilation);

/* ---- conv_transpose2d (src/ops/conv_transpose2d.c) ----
 * torch.nn.functional.conv_transpose2d: the gradient of conv2d with respect to its input, used
 * as a layer (upsampling). x (N, C_in, H, W), w (C_in, C_out/groups, kh, kw) as
 * torch.nn.ConvTranspose2d stores it, b (C_out) or NULL -> y (N, C_out, OH, OW) with
 * OH = (H - 1)*stride_h - 2*pad_h + dilation_h*(kh - 1) + output_pad_h + 1 (OW likewise).
 * Errors as PyTorch refuses: CLG_INVALID_ARGUMENT for stride or dilation < 1, padding or
 * output padding < 0, an output padding not smaller than either the stride or the dilation,
 * groups < 1 or not dividing C_in; CLG_SHAPE_MISMATCH for w's first dimension != C_in, b not
 * (C_out), or an output size below 1; CLG_UNSUPPORTED past 32-bit kernel indexing. */
typedef struct clg_conv_transpose2d_params {
    int stride_h, stride_w;         /* step between x's pixels in the output: rows, columns */
    int pad_h, pad_w;               /* rows, columns removed from each side of the full output */
    int output_pad_h, output_pad_w; /* rows, columns added at the bottom and right (PyTorch's output_padding) */
    int dilation_h, dilation_w;     /* spacing between kernel taps: rows, columns */
    int groups;                     /* channels split into this many independent groups */
} clg_conv_transpose2d_params;
/* stride 1, pad 0, output_pad 0, dilation 1, groups 1 (torch.nn.ConvTranspose2d's defaults). */
CLG_API clg_conv_transpose2d_params clg_conv_transpose2d_default_params(void);

/* y = conv_transpose2d(x, w, b) into a new tensor; records a node when an input requires
 * gradients (x, w and b each get theirs). */
CLG_API clg_status clg_conv_transpose2d(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                                        const clg_tensor *b, clg_conv_transpose2d_params p, clg_tensor **out);
/* y must already have the output shape; it is overwritten. Records nothing. */
CLG_API clg_status clg_conv_transpose2d_forward(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                                                const clg_tensor *b, clg_conv_transpose2d_params p,
                                                clg_tensor *y);
/* Gradients from dy (N, C_out, OH, OW): dx (N, C_in, H, W), dw (C_in, C_out/groups, kh, kw),
 * db (C_out). Any of dx, dw, db may be NULL to skip it. Each is written as beta*old + new. */
CLG_API clg_status clg_conv_transpose2d_backward(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                                                 const clg_tensor *dy, clg_conv_transpose2d_params p,
                                                 clg_tensor *dx, clg_tensor *dw, clg_tensor *db, double beta);
/* Output size of one spatial dimension (the formula above), or -1 when an argument is out of
 * range (in or kernel < 1, stride or dilation < 1, pad or output_pad < 0, output_pad not
 * smaller than stride or dilation) or the size is below 1 or past INT_MAX. */
CLG_API int clg_conv_transpose2d_out_size(int in, int kernel, int stride, int pad, int output_pad,
                                          int dilation);

/* ---- linear (src/ops/linear.c): x (N, in), w (out, in), b (out) or NULL -> (N, out) ---- */
CLG_API clg_status clg_linear(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                              const clg_tensor *b, clg_tensor **out);

/* ---- element-wise (src/ops/eltwise.c): same shapes in, same shape out ---- */
CLG_API clg_status clg_add(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out);
CLG_API clg_status clg_mul(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out);
CLG_API clg_status clg_scale(clg_context *ctx, const clg_tensor *x, double s, clg_tensor **out);

/* ---- activations (src/ops/activation.c) ---- */
/* Element-wise activations as PyTorch's relu, leaky_relu(negative_slope), sigmoid, tanh: out has x's
 * shape. */
CLG_API clg_status clg_relu(clg_context *ctx, const clg_tensor *x, clg_tensor **out);
CLG_API clg_status clg_leaky_relu(clg_context *ctx, const clg_tensor *x, double negative_slope, clg_tensor **out);
CLG_API clg_status clg_sigmoid(clg_context *ctx, const clg_tensor *x, clg_tensor **out);
CLG_API clg_status clg_tanh(clg_context *ctx, const clg_tensor *x, clg_tensor **out);
/* The exact (erf) form, PyTorch's default. */
CLG_API clg_status clg_gelu(clg_context *ctx, const clg_tensor *x, clg_tensor **out);

/* ---- shape (src/ops/reshape.c): views share the buffer ---- */
/* x viewed as shape (ndim entries, one may be -1: inferred; same element count), sharing x's buffer. */
CLG_API clg_status clg_reshape(clg_context *ctx, const clg_tensor *x, int ndim, const int *shape, clg_tensor **out);
/* (N, ...) -> (N, rest) */
CLG_API clg_status clg_flatten(clg_context *ctx, const clg_tensor *x, clg_tensor **out);

/* ---- pooling (src/ops/pool2d.c): x (N, C, H, W) ---- */
typedef struct clg_pool2d_params {
    int kernel_h, kernel_w; /* window: rows, columns */
    int stride_h, stride_w; /* 0 = the kernel size, as in PyTorch */
    int pad_h, pad_w; /* zeros added on each side: rows, columns */
} clg_pool2d_params;
/* All zero: set kernel_h/kernel_w (stride then follows the kernel, no padding). */
CLG_API clg_pool2d_params clg_pool2d_default_params(void);
CLG_API clg_status clg_max_pool2d(clg_context *ctx, const clg_tensor *x, clg_pool2d_params p, clg_tensor **out);
/* count_include_pad = true, PyTorch's default. */
CLG_API clg_status clg_avg_pool2d(clg_context *ctx, const clg_tensor *x, clg_pool2d_params p, clg_tensor **out);

/* ---- adaptive_avg_pool2d (src/ops/adaptive_pool2d.c): x (N, C, H, W) -> (N, C, out_h, out_w),
 * PyTorch's windows: output row i averages rows [floor(i H / out_h), ceil((i + 1) H / out_h)),
 * columns likewise (windows may overlap; out_h may exceed H). (1, 1) is global average pooling. */
CLG_API clg_status clg_adaptive_avg_pool2d(clg_context *ctx, const clg_tensor *x, int out_h, int out_w,
                                           clg_tensor **out);

/* ---- cat (src/ops/cat.c): torch.cat of n (1..CLG_CAT_MAX) tensors along dim; every other
 * dimension and the dtype equal. A tensor may appear twice (its gradient gets both slices). */
#define CLG_CAT_MAX 5
/* torch.cat(xs[0..n-1], dim) into a new tensor; each input's gradient gets its slice back. */
CLG_API clg_status clg_cat(clg_context *ctx, int n, const clg_tensor *const *xs, int dim, clg_tensor **out);

/* ---- reductions (src/ops/reduce.c): torch.sum / mean / var / std / max(x, dim) / argmax ----
 * x is 1- to 4-D. dims lists ndims dimensions to reduce, each in [-ndim, ndim) (negative
 * counts from the end, as PyTorch); ndims == 0 (dims may be NULL) reduces all of them. With
 * keepdim the reduced dims stay as size 1, else they go; when every dim goes the result is
 * (1), where PyTorch gives a 0-d tensor (clgrad has none). *out is a new tensor of x's dtype,
 * owned by the caller; x is only read. Errors: CLG_INVALID_ARGUMENT for a NULL x or out, a
 * tensor of another context, ndims < 0 or > x's ndim, dims NULL with ndims > 0, a dim out of
 * range or one listed twice (the message names it).
 * Deterministic: each output's sum has one fixed order, the same in both kernel styles and
 * for any work-group size (in-order blocks of 64 elements added as a pairwise tree), so f32
 * errors grow with log2 of the count rather than the count, without fp64. Gradients as
 * PyTorch; backward writes beta * old + new. */
CLG_API clg_status clg_sum(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                           clg_tensor **out);
/* The sum divided by the number of elements reduced; gradient dy / that number. */
CLG_API clg_status clg_mean(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                            clg_tensor **out);
/* torch.var(x, dims, correction=correction, keepdim): sum((x - mean)^2) / max(0, M - correction)
 * over the M elements reduced, in two passes (the mean first: no E[x^2] - E[x]^2
 * cancellation). correction 1 is the unbiased estimate (unbiased=True), 0 the population
 * variance. A divisor of 0 gives NaN (or inf), as PyTorch's forward; the gradient
 * (2 / divisor) * dy * (x - mean) then is NaN or +-inf too (PyTorch 1.13's backward instead
 * uses the negative M - correction when correction > M). */
CLG_API clg_status clg_var(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                           int correction, clg_tensor **out);
/* sqrt of clg_var; its gradient is 0 where the std is 0 (a constant set), as PyTorch. */
CLG_API clg_status clg_std(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                           int correction, clg_tensor **out);
/* The largest value of each reduced set; a NaN in the set makes it NaN (as PyTorch). The
 * gradient goes whole to the FIRST maximum (the first NaN, if any) in row-major order of the
 * reduced elements: exactly torch.max(x, dim).values for one dim. torch.amax, and torch.max(x)
 * without a dim, instead split the gradient evenly among tied maxima; without ties all agree. */
CLG_API clg_status clg_max(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                           clg_tensor **out);
/* torch.argmax(x, dim, keepdim): the index along dim of the first maximum, NaN counting as the
 * maximum (the first NaN's index, as PyTorch). Stored as an exact integer value in x's dtype
 * (0.0, 1.0, ...; PyTorch gives int64); f32 holds them exactly to 2^24, so a longer dim is
 * CLG_UNSUPPORTED in f32. No gradient: records nothing. */
CLG_API clg_status clg_argmax(clg_context *ctx, const clg_tensor *x, int dim, bool keepdim, clg_tensor **out);

/* ---- batch_norm2d (src/ops/batchnorm.c) ----
 * training: normalises with the batch statistics and updates running_mean/var in place
 * (running = (1 - momentum) * running + momentum * batch, var unbiased), as PyTorch.
 * evaluation: uses running_mean/var. weight/bias (C) may be NULL (affine = false). */
typedef struct clg_batch_norm2d_params {
    bool training;   /* batch statistics (and running-statistics update) or running ones */
    double momentum; /* 0.1, PyTorch's default */
    double eps;      /* 1e-5 */
} clg_batch_norm2d_params;
/* training = true, momentum = 0.1, eps = 1e-5 (torch.nn.BatchNorm2d's defaults). */
CLG_API clg_batch_norm2d_params clg_batch_norm2d_default_params(void);
CLG_API clg_status clg_batch_norm2d(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                                    const clg_tensor *bias, clg_tensor *running_mean,
                                    clg_tensor *running_var, clg_batch_norm2d_params p, clg_tensor **out);

/* ---- dropout (src/ops/dropout.c): zeroes with probability p, scales the rest by 1/(1-p).
 * The mask comes from a counter-based generator keyed by (seed, element index): the same
 * on every device. Not training: returns x unchanged (a new reference). */
CLG_API clg_status clg_dropout(clg_context *ctx, const clg_tensor *x, double p, bool training,
                               uint64_t seed, clg_tensor **out);

/* ---- losses (src/ops/loss.c): each returns a one-element tensor of shape (1) ---- */
/* logits (N, C), targets: N class indices in [0, C), read from host memory. Mean over N. */
CLG_API clg_status clg_softmax_cross_entropy(clg_context *ctx, const clg_tensor *logits,
                                             const int32_t *targets, size_t n_targets,
                                             clg_tensor **out);
/* mean((pred - target)^2); target needs no gradient. */
CLG_API clg_status clg_mse_loss(clg_context *ctx, const clg_tensor *pred, const clg_tensor *target, clg_tensor **out);
/* sum(x^2): the worked example's loss. */
CLG_API clg_status clg_sum_of_squares(clg_context *ctx, const clg_tensor *x, clg_tensor **out);

/* ---- autograd (src/tensor/autograd.c) ---- */
/* Backpropagates from a one-element tensor (seeded with 1) to every leaf that requires
 * gradients; their .grad accumulates. What the graph saved is released afterwards. */
CLG_API clg_status clg_backward(clg_context *ctx, clg_tensor *loss);
/* Backpropagates from any tensor y, seeded with dy (same shape): PyTorch's y.backward(dy). */
CLG_API clg_status clg_backward_grad(clg_context *ctx, clg_tensor *y, const clg_tensor *dy);

#ifdef __cplusplus
}
#endif
#endif
