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

/* ---- element-wise binary (src/ops/eltwise.c): torch.add, torch.sub, torch.mul, torch.div
 * (true division) with PyTorch's broadcasting: shapes are aligned from the last dimension,
 * a missing leading dimension counts as 1, and in each dimension the sizes are equal or one
 * of them is 1 (it repeats along the other's size). *out is a new tensor of the broadcast
 * shape (ndim = the larger of the two), owned by the caller; a and b are only read and may be
 * the same tensor. Each input's gradient is PyTorch's (dy, -dy, dy * other, dy / b and
 * -dy * (a / b) / b) summed over the dimensions it was broadcast along, in a fixed order (no
 * atomics). Errors: CLG_INVALID_ARGUMENT for a NULL tensor or out, a tensor of another context,
 * or two dtypes (no type promotion); CLG_SHAPE_MISMATCH for shapes that do not broadcast (the
 * message names both); CLG_UNSUPPORTED for a result past INT_MAX elements. NaN and infinity
 * follow IEEE arithmetic, as PyTorch (x / 0 is +-inf, 0 / 0 NaN). */
CLG_API clg_status clg_add(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out);
/* a - b (torch.sub with alpha 1); the gradient of b is -dy. */
CLG_API clg_status clg_sub(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out);
CLG_API clg_status clg_mul(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out);
/* a / b (torch.div, rounding_mode None). */
CLG_API clg_status clg_div(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out);
/* s * x into a new tensor of x's shape (torch.mul by a Python number). */
CLG_API clg_status clg_scale(clg_context *ctx, const clg_tensor *x, double s, clg_tensor **out);

/* ---- element-wise unary (src/ops/unary.c): out is a new tensor of x's shape and dtype, owned
 * by the caller; gradients as PyTorch's derivatives.yaml. Errors: CLG_INVALID_ARGUMENT for a
 * NULL x or out or a tensor of another context. NaN in, NaN out (forward and gradient), and
 * values outside an op's domain give what PyTorch gives (log(-1) NaN, log(0) -inf,
 * sqrt(-1) NaN). ---- */
/* -x; gradient -dy. */
CLG_API clg_status clg_neg(clg_context *ctx, const clg_tensor *x, clg_tensor **out);
/* e^x; gradient dy * e^x. */
CLG_API clg_status clg_exp(clg_context *ctx, const clg_tensor *x, clg_tensor **out);
/* The natural logarithm; gradient dy / x (+-inf at 0). */
CLG_API clg_status clg_log(clg_context *ctx, const clg_tensor *x, clg_tensor **out);
/* The square root; gradient dy / (2 sqrt(x)) (inf at 0). */
CLG_API clg_status clg_sqrt(clg_context *ctx, const clg_tensor *x, clg_tensor **out);
/* |x|; gradient dy * sign(x), where sign is 0 at 0 and at NaN (torch.sgn). */
CLG_API clg_status clg_abs(clg_context *ctx, const clg_tensor *x, clg_tensor **out);
/* torch.clamp(x, min, max) = min(max(x, min), max): -INFINITY / INFINITY mean no bound, and
 * min > max gives max everywhere, as PyTorch. NaN in x stays NaN. The gradient passes dy where
 * min <= x <= max and is 0 elsewhere (also where x is NaN), as PyTorch's clamp_backward. A NaN
 * bound is CLG_INVALID_ARGUMENT. In f32 the bounds are rounded to f32 first, as PyTorch. */
CLG_API clg_status clg_clamp(clg_context *ctx, const clg_tensor *x, double min, double max, clg_tensor **out);
/* torch.pow(x, exponent) for a scalar exponent, with PyTorch's special cases (exponent 0 gives
 * 1 even at NaN; 0.5 is sqrt, so pow(-inf, 0.5) is NaN; -0.5, -1, -2 are 1/sqrt(x), 1/x,
 * 1/(x*x)); other exponents follow C's pow (a negative x with a non-integer exponent is NaN).
 * Gradient dy * (exponent * x^(exponent - 1)) with x^(exponent - 1) by the same rules, so at
 * x = 0 it is 0 for exponent > 1, dy for 1, +-inf for exponents below 1; exponent 0 gives a
 * zero gradient, as PyTorch. */
CLG_API clg_status clg_pow_scalar(clg_context *ctx, const clg_tensor *x, double exponent, clg_tensor **out);

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

/* ---- cat (src/ops/cat.c): torch.cat of n (1..CLG_CAT_MAX) tensors along dim (-ndim..ndim-1,
 * negatives from the end); every other dimension and the dtype equal. A tensor may appear twice
 * (its gradient gets both slices). */
#define CLG_CAT_MAX 5
/* torch.cat(xs[0..n-1], dim) into a new tensor; each input's gradient gets its slice back. */
CLG_API clg_status clg_cat(clg_context *ctx, int n, const clg_tensor *const *xs, int dim, clg_tensor **out);

/* ---- split, chunk, narrow (src/ops/split.c): slices of x along dim (-ndim..ndim-1, negatives
 * from the end). Every piece is a new tensor (a copy, not a view as in PyTorch) owned by the
 * caller, with its own graph node: its gradient goes into its slice of x's gradient, and a piece
 * not used in the loss leaves zeros there, as PyTorch. A tensor has no empty dimension, so a
 * piece of size 0 is refused. On failure no piece is kept and every out entry is NULL.
 * Errors: CLG_INVALID_ARGUMENT for NULLs, a dim out of range or a size, start, length or count
 * out of range; CLG_SHAPE_MISMATCH for split sizes that do not sum to the dim's size;
 * CLG_UNSUPPORTED past INT_MAX elements. ---- */
/* torch.split(x, sizes, dim): n (>= 1) pieces of sizes[0..n-1] (each >= 1, summing to the
 * dim's size) into outs[0..n-1]. */
CLG_API clg_status clg_split(clg_context *ctx, const clg_tensor *x, int dim, int n, const int *sizes,
                             clg_tensor **outs);
/* torch.chunk(x, chunks, dim): pieces of ceil(size / chunks), the last one smaller, which can
 * make fewer than chunks pieces (6 into 4 gives 2, 2, 2). outs must have room for chunks
 * entries; *n_out gets the number of pieces made, the entries after them are set to NULL. */
CLG_API clg_status clg_chunk(clg_context *ctx, const clg_tensor *x, int chunks, int dim, clg_tensor **outs,
                             int *n_out);
/* torch.narrow(x, dim, start, length): the piece [start, start + length) along dim; start may be
 * negative (from the end), length >= 1. */
CLG_API clg_status clg_narrow(clg_context *ctx, const clg_tensor *x, int dim, int start, int length,
                              clg_tensor **out);

/* ---- permute, transpose (src/ops/permute.c): torch.permute / torch.transpose, but the result
 * is a new contiguous tensor (a copy, not a strided view) owned by the caller; its gradient is
 * dy permuted back. dims are -ndim..ndim-1 (negatives from the end). Errors:
 * CLG_INVALID_ARGUMENT for NULLs or dims out of range or repeated; CLG_UNSUPPORTED past
 * INT_MAX elements. ---- */
/* y's dim i is x's dim dims[i]; dims has ndim(x) entries, each dim once. */
CLG_API clg_status clg_permute(clg_context *ctx, const clg_tensor *x, const int *dims, clg_tensor **out);
/* dim0 and dim1 swapped (the same dim twice gives a copy). (N, C) -> (C, N) and NCHW <-> NHWC
 * run as a tiled transpose on CPU devices. */
CLG_API clg_status clg_transpose(clg_context *ctx, const clg_tensor *x, int dim0, int dim1, clg_tensor **out);

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

/* A sum over the replicas of a data-parallel group: values[0..n) replaced by their sum over
 * every replica, the same bits on each; CLG_OK, or an error it has set on ctx. Every replica
 * must make the same calls in the same order (it is collective). clg_dist_replica_sum
 * (clgrad/dist.h) provides one over MPI. */
typedef struct clg_replica_sum {
    /* replaces values[0..n) by their sum over the replicas; user is the field below */
    clg_status (*sum)(void *user, clg_context *ctx, double *values, int n);
    void *user; /* passed to sum; must outlive every forward and backward that uses it */
} clg_replica_sum;
/* Synchronized batch norm (PyTorch's SyncBatchNorm): clg_batch_norm2d, with sync (NULL: as
 * clg_batch_norm2d) summing over the replicas. Training takes the mean and variance over the
 * global batch, one sum of 2C + 1 doubles per forward (each replica's count, sums and sums of
 * squares about its own mean, combined in double), and moves the running stats by them (the
 * variance unbiased with the global count), the same on every replica; backward sums the two
 * per-channel sums dx needs (one sum of 2C doubles), so each replica's dx is its share of the
 * single-big-batch one, while dweight and dbias stay this replica's, for the gradient
 * averaging to combine. The global batch needs 2 values per channel (a replica may hold
 * fewer). Evaluation uses the running stats and never calls sum. *sync is copied. */
CLG_API clg_status clg_sync_batch_norm2d(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                                         const clg_tensor *bias, clg_tensor *running_mean, clg_tensor *running_var,
                                         clg_batch_norm2d_params p, const clg_replica_sum *sync,
                                         clg_tensor **out);
/* clg_batch_norm2d followed by clg_relu, fused: the forward writes max(0, y) in the same pass
 * (NaN stays NaN, as clg_relu and PyTorch), backward masks dy by the saved output inside the
 * batch norm's kernels. Bit for bit the two ops' results, statistics, running-stat updates
 * and gradients (x, weight, bias, each accumulated into with its own beta as batch_norm2d's),
 * with one activation pass less each way and no intermediate kept. Argument errors name
 * batch_norm2d. */
CLG_API clg_status clg_batch_norm2d_relu(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                                         const clg_tensor *bias, clg_tensor *running_mean,
                                         clg_tensor *running_var, clg_batch_norm2d_params p,
                                         clg_tensor **out);
/* clg_sync_batch_norm2d followed by clg_relu, fused as clg_batch_norm2d_relu (the ReLU is
 * per element, so the replicas' sums are the same ones, of the masked dy). */
CLG_API clg_status clg_sync_batch_norm2d_relu(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                                              const clg_tensor *bias, clg_tensor *running_mean,
                                              clg_tensor *running_var, clg_batch_norm2d_params p,
                                              const clg_replica_sum *sync, clg_tensor **out);

/* ---- dropout (src/ops/dropout.c): zeroes with probability p, scales the rest by 1/(1-p).
 * The mask comes from a counter-based generator keyed by (seed, element index): the same
 * on every device. Not training: returns x unchanged (a new reference). */
CLG_API clg_status clg_dropout(clg_context *ctx, const clg_tensor *x, double p, bool training,
                               uint64_t seed, clg_tensor **out);

/* ---- softmax (src/ops/softmax.c): torch.softmax / torch.log_softmax of x (1- to 4-D) over
 * dim, in [-ndim, ndim) (negative counts from the end: -1 is the last); out has x's shape.
 * The slice's max is subtracted before exp, so large values do not overflow. As in PyTorch, a
 * NaN or +inf in a slice makes that whole slice NaN, and so does a slice of only -inf; a -inf
 * among finite values gives 0 (log_softmax: -inf). Backward reads the output (kept by
 * reference: do not write into *out before backward). A dim out of range is
 * CLG_INVALID_ARGUMENT. */
CLG_API clg_status clg_softmax(clg_context *ctx, const clg_tensor *x, int dim, clg_tensor **out);
CLG_API clg_status clg_log_softmax(clg_context *ctx, const clg_tensor *x, int dim, clg_tensor **out);

/* ---- losses (src/ops/loss.c): each returns a one-element tensor of shape (1), except
 * reduction CLG_LOSS_NONE of the class losses below ---- */
/* logits (N, C), targets: N class indices in [0, C), read from host memory. Mean over N.
 * The same as clg_cross_entropy with its default params, apart from ignore_index: here every
 * target must be a class. */
CLG_API clg_status clg_softmax_cross_entropy(clg_context *ctx, const clg_tensor *logits,
                                             const int32_t *targets, size_t n_targets,
                                             clg_tensor **out);

/* How a class loss combines its per-sample values l_i (PyTorch's `reduction`). */
typedef enum clg_loss_reduction {
    CLG_LOSS_MEAN = 0, /* sum(l_i) / sum(weight[target_i]) over the samples not ignored (their count
                        * without weights; NaN when that is 0, as PyTorch): shape (1) */
    CLG_LOSS_SUM = 1,  /* sum(l_i): shape (1) */
    CLG_LOSS_NONE = 2  /* l_i itself: shape (N), 0 where the target is ignore_index */
} clg_loss_reduction;

/* torch.nn.functional.nll_loss's arguments (clg_nll_loss_default_params: no weight, mean,
 * ignore_index -100). */
typedef struct clg_nll_loss_params {
    /* (C) class weights of the input's dtype, or NULL for all 1. Borrowed: the graph keeps its
     * own reference until backward, so it may be freed after the call. A constant, as in
     * PyTorch: it gets no gradient. */
    const clg_tensor *weight;
    clg_loss_reduction reduction; /* how the samples' losses combine */
    int32_t ignore_index; /* targets equal to it add nothing and do not count in the mean */
} clg_nll_loss_params;
CLG_API clg_nll_loss_params clg_nll_loss_default_params(void); /* no weight, mean, ignore_index -100 */

/* torch.nn.functional.nll_loss: log_probs (N, C) (log-probabilities, e.g. from clg_log_softmax
 * over dim 1), targets N class indices from host memory; l_i = -weight[t_i] * log_probs[i, t_i].
 * p may be NULL (the defaults). A target outside [0, C) that is not ignore_index is
 * CLG_INVALID_ARGUMENT naming its index; the gradient goes to log_probs only. */
CLG_API clg_status clg_nll_loss(clg_context *ctx, const clg_tensor *log_probs, const int32_t *targets,
                                size_t n_targets, const clg_nll_loss_params *p, clg_tensor **out);

/* torch.nn.functional.cross_entropy's arguments (clg_cross_entropy_default_params: no weight,
 * no label smoothing, mean, ignore_index -100). */
typedef struct clg_cross_entropy_params {
    const clg_tensor *weight;     /* (C) class weights or NULL: as in clg_nll_loss_params */
    double label_smoothing;       /* in [0, 1]: the target's share moved evenly to all C classes */
    clg_loss_reduction reduction; /* how the samples' losses combine */
    int32_t ignore_index;         /* targets equal to it add nothing and do not count in the mean */
} clg_cross_entropy_params;
/* No weight, label smoothing 0, mean, ignore_index -100 (F.cross_entropy's defaults). */
CLG_API clg_cross_entropy_params clg_cross_entropy_default_params(void);

/* torch.nn.functional.cross_entropy (torch 1.13) of logits (N, C) and N class targets from host
 * memory: with logp = log_softmax(logits) and s = label_smoothing,
 *   l_i = (1 - s) * -w[t_i] logp[i, t_i] + s / C * sum_j -w[j] logp[i, j]
 * (w = 1 without weights) and the mean divides by sum(w[t_i]) over the samples not ignored,
 * the weighted-mean denominator of nll_loss, for both terms, as PyTorch does. p may be NULL
 * (the defaults). One launch forward (softmax, loss and its reduction in a fixed order) and one
 * backward. A target outside [0, C) that is not ignore_index is CLG_INVALID_ARGUMENT naming its
 * index; a label_smoothing outside [0, 1] is CLG_INVALID_ARGUMENT. */
CLG_API clg_status clg_cross_entropy(clg_context *ctx, const clg_tensor *logits, const int32_t *targets,
                                     size_t n_targets, const clg_cross_entropy_params *p, clg_tensor **out);
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
