/* clgrad/tensor.h - refcounted device tensors: dtype, shape (up to 4 dims, NCHW), a
 * contiguous buffer from the context's pool, and autograd state (requires_grad, grad).
 * Implemented in src/tensor/tensor.c and src/tensor/random.c. Tests: tests/tensor/test_tensor.c.
 */
#ifndef CLGRAD_TENSOR_H
#define CLGRAD_TENSOR_H

#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A device tensor (opaque, refcounted): clg_tensor_ref adds a reference, clg_tensor_free drops one. */
typedef struct clg_tensor clg_tensor;

/* Element type: float (f32) or double (f64). */
typedef enum clg_dtype { CLG_F32 = 0, CLG_F64 = 1 } clg_dtype;
#define CLG_MAX_DIMS 4 /* most dimensions a tensor has */

CLG_API size_t clg_dtype_size(clg_dtype dtype); /* bytes per element: 4 or 8 */
CLG_API const char *clg_dtype_name(clg_dtype dtype); /* "f32", "f64" */

/* Creation. Every function returns a new tensor with one reference, owned by the caller,
 * released with clg_tensor_free. shape has ndim (1..4) positive entries. f64 needs a
 * device with fp64 (CLG_UNSUPPORTED otherwise). */
CLG_API clg_status clg_tensor_zeros(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape,
                                    clg_tensor **out);
/* data holds numel values of dtype (4 or 8 bytes each). */
CLG_API clg_status clg_tensor_from_host(clg_context *ctx, clg_dtype dtype, int ndim,
                                        const int *shape, const void *data, clg_tensor **out);
/* Host-generated from a counter-based generator: the same seed gives the same numbers on
 * every device and for every dtype (up to rounding to f32). */
CLG_API clg_status clg_tensor_rand_uniform(clg_context *ctx, clg_dtype dtype, int ndim,
                                           const int *shape, double lo, double hi,
                                           uint64_t seed, clg_tensor **out);
CLG_API clg_status clg_tensor_rand_normal(clg_context *ctx, clg_dtype dtype, int ndim,
                                          const int *shape, double mean, double std,
                                          uint64_t seed, clg_tensor **out);

/* Adds a reference and returns t (NULL stays NULL). */
CLG_API clg_tensor *clg_tensor_ref(clg_tensor *t);
/* Drops a reference; the buffer returns to the pool with the last one. NULL is a no-op. */
CLG_API void clg_tensor_free(clg_tensor *t);

/* Accessors. shape is owned by the tensor. */
CLG_API clg_context *clg_tensor_context(const clg_tensor *t);
CLG_API clg_dtype clg_tensor_dtype(const clg_tensor *t);
CLG_API int clg_tensor_ndim(const clg_tensor *t);
CLG_API const int *clg_tensor_shape(const clg_tensor *t);
CLG_API size_t clg_tensor_numel(const clg_tensor *t);
CLG_API size_t clg_tensor_bytes(const clg_tensor *t);
/* The device buffer (borrowed); data starts at offset 0 and is numel values long. */
CLG_API cl_mem clg_tensor_cl_mem(const clg_tensor *t);

/* Data movement. dst_bytes/src_bytes must equal clg_tensor_bytes(t). to_host waits. */
CLG_API clg_status clg_tensor_to_host(const clg_tensor *t, void *dst, size_t dst_bytes);
CLG_API clg_status clg_tensor_write(clg_tensor *t, const void *src, size_t src_bytes);
/* Part of the tensor, in its flat row-major order: offset counts elements, the byte count
 * must be a whole number of elements, and [offset, offset + count) must lie within numel
 * (CLG_INVALID_ARGUMENT otherwise, nothing moved; 0 bytes at offset <= numel does nothing).
 * A smaller last batch is written into the front of an existing (N, ...) tensor, and the
 * front of a result read back, without a second tensor. to_host_at waits; write_at is
 * blocking too, so src may be reused at once. */
CLG_API clg_status clg_tensor_to_host_at(const clg_tensor *t, size_t offset, void *dst, size_t dst_bytes);
CLG_API clg_status clg_tensor_write_at(clg_tensor *t, size_t offset, const void *src, size_t src_bytes);
CLG_API clg_status clg_tensor_fill(clg_tensor *t, double value);
/* dst = src; same dtype and numel. */
CLG_API clg_status clg_tensor_copy(clg_tensor *dst, const clg_tensor *src);
/* A new tensor (own buffer) holding the values of t converted to dtype. Not recorded. */
CLG_API clg_status clg_tensor_cast(const clg_tensor *t, clg_dtype dtype, clg_tensor **out);
/* Convenience: the single value of a one-element tensor, as double. */
CLG_API clg_status clg_tensor_item(const clg_tensor *t, double *value);

/* ---- autograd state ---- */
/* Leaves that require gradients get .grad filled by clg_backward. */
CLG_API clg_status clg_tensor_set_requires_grad(clg_tensor *t, bool requires_grad);
CLG_API bool clg_tensor_requires_grad(const clg_tensor *t);
/* The accumulated gradient (borrowed, owned by t), or NULL when there is none yet or it
 * was zeroed. Backward writes it with beta = 0 the first time after a zero_grad and adds
 * (beta = 1) afterwards, so micro-batches accumulate until zeroed. */
CLG_API clg_tensor *clg_tensor_grad(const clg_tensor *t);
/* Resets the gradient (PyTorch's zero_grad(set_to_none=True)); the buffer is kept. */
CLG_API void clg_tensor_zero_grad(clg_tensor *t);
/* Drops the tensor's link to the graph that produced it (PyTorch's detach_()). */
CLG_API void clg_tensor_detach(clg_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
