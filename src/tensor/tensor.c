/* src/tensor/tensor.c - refcounted device tensors: creation, accessors, host transfers,
 * views that share a buffer, and the gradient-accumulation helper (clg__axpby).
 * Kernels: cl/tensor/tensor.cl. Random numbers: random.c. Tests: tests/tensor/test_tensor.c.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor.h"

size_t clg_dtype_size(clg_dtype dtype) { return dtype == CLG_F64 ? 8 : 4; }
const char *clg_dtype_name(clg_dtype dtype) { return dtype == CLG_F64 ? "f64" : "f32"; }

const char *clg__shape_str(const clg_tensor *t, char *buf, size_t len) {
    if (!t) {
        snprintf(buf, len, "(null)");
        return buf;
    }
    int w = snprintf(buf, len, "(");
    for (int i = 0; i < t->ndim && w >= 0 && (size_t)w < len; i++)
        w += snprintf(buf + w, len - (size_t)w, "%s%d", i ? ", " : "", t->shape[i]);
    if (w >= 0 && (size_t)w < len) snprintf(buf + w, len - (size_t)w, ")");
    return buf;
}

/* Validates dtype/ndim/shape; *numel gets the product. */
static clg_status check_shape(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape,
                              size_t *numel, const char *op) {
    if (dtype != CLG_F32 && dtype != CLG_F64)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: unknown dtype %d", op, (int)dtype);
    if (dtype == CLG_F64 && !ctx->info.fp64)
        return clg__fail(ctx, CLG_UNSUPPORTED, "%s: f64 needs a device with fp64; %s has none", op, ctx->info.name);
    if (ndim < 1 || ndim > CLG_MAX_DIMS)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: ndim is %d, must be 1..%d", op, ndim, CLG_MAX_DIMS);
    if (!shape) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: shape is NULL", op);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dimension %d is %d, must be positive", op, i, shape[i]);
        if (n > (size_t)INT_MAX / (size_t)shape[i])
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: more than %d elements", op, INT_MAX);
        n *= (size_t)shape[i];
    }
    *numel = n;
    return CLG_OK;
}

clg_status clg__tensor_new(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape, clg_tensor **out) {
    size_t numel;
    clg_status st = check_shape(ctx, dtype, ndim, shape, &numel, "tensor");
    if (st != CLG_OK) return st;
    clg_tensor *t = calloc(1, sizeof *t);
    clg_buffer *b = calloc(1, sizeof *b);
    if (!t || !b) {
        free(t);
        free(b);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "tensor: out of host memory");
    }
    st = clg__pool_alloc(ctx, numel * clg_dtype_size(dtype), &b->block);
    if (st != CLG_OK) {
        free(t);
        free(b);
        return st;
    }
    b->refcount = 1;
    t->refcount = 1;
    t->ctx = ctx;
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    t->buf = b;
    *out = t;
    return CLG_OK;
}

clg_status clg__tensor_like(const clg_tensor *like, clg_tensor **out) {
    return clg__tensor_new(like->ctx, like->dtype, like->ndim, like->shape, out);
}

clg_status clg__tensor_view(const clg_tensor *src, int ndim, const int *shape, clg_tensor **out) {
    clg_context *ctx = src->ctx;
    size_t numel;
    clg_status st = check_shape(ctx, src->dtype, ndim, shape, &numel, "reshape");
    if (st != CLG_OK) return st;
    if (numel != src->numel) {
        char a[64];
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "reshape: %s has %zu elements, the new shape %zu",
                         clg__shape_str(src, a, sizeof a), src->numel, numel);
    }
    clg_tensor *t = calloc(1, sizeof *t);
    if (!t) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "reshape: out of host memory");
    t->refcount = 1;
    t->ctx = ctx;
    t->dtype = src->dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = numel;
    t->buf = src->buf;
    t->buf->refcount++;
    *out = t;
    return CLG_OK;
}

clg_status clg_tensor_zeros(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_tensor_zeros: out is NULL");
    *out = NULL;
    clg_tensor *t = NULL;
    clg_status st = clg__tensor_new(ctx, dtype, ndim, shape, &t);
    if (st == CLG_OK) st = clg_tensor_fill(t, 0.0);
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    *out = t;
    return CLG_OK;
}

clg_status clg_tensor_from_host(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape,
                                const void *data, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out || !data) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_tensor_from_host: %s is NULL", out ? "data" : "out");
    *out = NULL;
    clg_tensor *t;
    clg_status st = clg__tensor_new(ctx, dtype, ndim, shape, &t);
    if (st != CLG_OK) return st;
    st = clg_tensor_write(t, data, clg_tensor_bytes(t));
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    *out = t;
    return CLG_OK;
}

clg_tensor *clg_tensor_ref(clg_tensor *t) {
    if (t) t->refcount++;
    return t;
}

void clg_tensor_free(clg_tensor *t) {
    if (!t || --t->refcount > 0) return;
    clg_tensor_free(t->grad);
    clg__node_release(t->grad_fn);
    if (--t->buf->refcount == 0) {
        clg__pool_release(t->ctx, t->buf->block);
        free(t->buf);
    }
    free(t);
}

clg_context *clg_tensor_context(const clg_tensor *t) { return t ? t->ctx : NULL; }
clg_dtype clg_tensor_dtype(const clg_tensor *t) { return t ? t->dtype : CLG_F32; }
int clg_tensor_ndim(const clg_tensor *t) { return t ? t->ndim : 0; }
const int *clg_tensor_shape(const clg_tensor *t) { return t ? t->shape : NULL; }
size_t clg_tensor_numel(const clg_tensor *t) { return t ? t->numel : 0; }
size_t clg_tensor_bytes(const clg_tensor *t) { return t ? t->numel * clg_dtype_size(t->dtype) : 0; }
cl_mem clg_tensor_cl_mem(const clg_tensor *t) { return clg__mem(t); }

static clg_status check_bytes(const clg_tensor *t, size_t bytes, const char *op) {
    if (bytes != clg_tensor_bytes(t)) {
        char a[64];
        return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "%s: tensor %s %s holds %zu bytes, got %zu", op,
                         clg__shape_str(t, a, sizeof a), clg_dtype_name(t->dtype), clg_tensor_bytes(t), bytes);
    }
    return CLG_OK;
}

clg_status clg_tensor_to_host(const clg_tensor *t, void *dst, size_t dst_bytes) {
    if (!t) return CLG_INVALID_ARGUMENT;
    if (!dst) return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_to_host: dst is NULL");
    clg_status st = check_bytes(t, dst_bytes, "clg_tensor_to_host");
    if (st != CLG_OK) return st;
    cl_int e = clEnqueueReadBuffer(t->ctx->queue, clg__mem(t), CL_TRUE, 0, dst_bytes, dst, 0, NULL, NULL);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(t->ctx, e, "clEnqueueReadBuffer");
}

clg_status clg_tensor_write(clg_tensor *t, const void *src, size_t src_bytes) {
    if (!t) return CLG_INVALID_ARGUMENT;
    if (!src) return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_write: src is NULL");
    clg_status st = check_bytes(t, src_bytes, "clg_tensor_write");
    if (st != CLG_OK) return st;
    if (clg__fault(t->ctx, CLG_FAULT_ENQUEUE))
        return clg__fail(t->ctx, CLG_OPENCL_ERROR, "clEnqueueWriteBuffer: injected fault");
    /* Blocking: the caller may reuse src as soon as we return. */
    cl_int e = clEnqueueWriteBuffer(t->ctx->queue, clg__mem(t), CL_TRUE, 0, src_bytes, src, 0, NULL, NULL);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(t->ctx, e, "clEnqueueWriteBuffer");
}

/* Elements [offset, offset + bytes / element size) of t, checked before any arithmetic that
 * could wrap: bytes a whole number of elements, offset and the count each within numel. */
static clg_status check_range(const clg_tensor *t, size_t offset, size_t bytes, const char *op) {
    const size_t es = clg_dtype_size(t->dtype);
    if (bytes % es != 0)
        return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "%s: %zu bytes is not a whole number of %s elements", op,
                         bytes, clg_dtype_name(t->dtype));
    const size_t n = bytes / es;
    if (offset > t->numel || n > t->numel - offset) {
        char a[64];
        return clg__fail(t->ctx, CLG_INVALID_ARGUMENT,
                         "%s: %zu elements at offset %zu run past the %zu of tensor %s %s", op, n, offset,
                         t->numel, clg__shape_str(t, a, sizeof a), clg_dtype_name(t->dtype));
    }
    return CLG_OK;
}

clg_status clg_tensor_to_host_at(const clg_tensor *t, size_t offset, void *dst, size_t dst_bytes) {
    if (!t) return CLG_INVALID_ARGUMENT;
    if (!dst) return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_to_host_at: dst is NULL");
    clg_status st = check_range(t, offset, dst_bytes, "clg_tensor_to_host_at");
    if (st != CLG_OK || dst_bytes == 0) return st; /* OpenCL refuses a read of 0 bytes */
    const size_t at = offset * clg_dtype_size(t->dtype); /* offset <= numel: no wrap */
    cl_int e = clEnqueueReadBuffer(t->ctx->queue, clg__mem(t), CL_TRUE, at, dst_bytes, dst, 0, NULL, NULL);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(t->ctx, e, "clEnqueueReadBuffer");
}

clg_status clg_tensor_write_at(clg_tensor *t, size_t offset, const void *src, size_t src_bytes) {
    if (!t) return CLG_INVALID_ARGUMENT;
    if (!src) return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_write_at: src is NULL");
    clg_status st = check_range(t, offset, src_bytes, "clg_tensor_write_at");
    if (st != CLG_OK || src_bytes == 0) return st;
    if (clg__fault(t->ctx, CLG_FAULT_ENQUEUE))
        return clg__fail(t->ctx, CLG_OPENCL_ERROR, "clEnqueueWriteBuffer: injected fault");
    const size_t at = offset * clg_dtype_size(t->dtype);
    /* Blocking, as clg_tensor_write: src is the caller's again when this returns. */
    cl_int e = clEnqueueWriteBuffer(t->ctx->queue, clg__mem(t), CL_TRUE, at, src_bytes, src, 0, NULL, NULL);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(t->ctx, e, "clEnqueueWriteBuffer");
}

clg_status clg_tensor_fill(clg_tensor *t, double value) {
    if (!t) return CLG_INVALID_ARGUMENT;
    float f = (float)value;
    const void *pattern = t->dtype == CLG_F64 ? (const void *)&value : (const void *)&f;
    if (clg__fault(t->ctx, CLG_FAULT_ENQUEUE))
        return clg__fail(t->ctx, CLG_OPENCL_ERROR, "clEnqueueFillBuffer: injected fault");
    cl_int e = clEnqueueFillBuffer(t->ctx->queue, clg__mem(t), pattern, clg_dtype_size(t->dtype), 0,
                                   clg_tensor_bytes(t), 0, NULL, NULL);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(t->ctx, e, "clEnqueueFillBuffer");
}

clg_status clg_tensor_copy(clg_tensor *dst, const clg_tensor *src) {
    if (!dst) return CLG_INVALID_ARGUMENT;
    if (!src) return clg__fail(dst->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_copy: src is NULL");
    if (src->ctx != dst->ctx) return clg__fail(dst->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_copy: tensors of two contexts");
    if (src->dtype != dst->dtype)
        return clg__fail(dst->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_copy: dst is %s but src is %s",
                         clg_dtype_name(dst->dtype), clg_dtype_name(src->dtype));
    if (src->numel != dst->numel) {
        char a[64], b[64];
        return clg__fail(dst->ctx, CLG_SHAPE_MISMATCH, "clg_tensor_copy: dst is %s %s but src is %s %s",
                         clg__shape_str(dst, a, sizeof a), clg_dtype_name(dst->dtype),
                         clg__shape_str(src, b, sizeof b), clg_dtype_name(src->dtype));
    }
    if (src->buf == dst->buf) return CLG_OK;
    if (clg__fault(dst->ctx, CLG_FAULT_ENQUEUE))
        return clg__fail(dst->ctx, CLG_OPENCL_ERROR, "clEnqueueCopyBuffer: injected fault");
    cl_int e = clEnqueueCopyBuffer(dst->ctx->queue, clg__mem(src), clg__mem(dst), 0, 0,
                                   clg_tensor_bytes(dst), 0, NULL, NULL);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(dst->ctx, e, "clEnqueueCopyBuffer");
}

clg_status clg_tensor_cast(const clg_tensor *t, clg_dtype dtype, clg_tensor **out) {
    if (!t) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_cast: out is NULL");
    *out = NULL;
    void *host = malloc(t->numel * 8), *conv = malloc(t->numel * 8);
    clg_status st = host && conv ? clg_tensor_to_host(t, host, clg_tensor_bytes(t))
                                 : clg__fail(t->ctx, CLG_OUT_OF_HOST_MEMORY, "clg_tensor_cast: out of host memory");
    if (st == CLG_OK) {
        for (size_t i = 0; i < t->numel; i++) {
            double v = t->dtype == CLG_F64 ? ((double *)host)[i] : ((float *)host)[i];
            if (dtype == CLG_F64) ((double *)conv)[i] = v;
            else ((float *)conv)[i] = (float)v;
        }
        st = clg_tensor_from_host(t->ctx, dtype, t->ndim, t->shape, conv, out);
    }
    free(host);
    free(conv);
    return st;
}

clg_status clg_tensor_item(const clg_tensor *t, double *value) {
    if (!t) return CLG_INVALID_ARGUMENT;
    if (!value) return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "clg_tensor_item: value is NULL");
    if (t->numel != 1) {
        char a[64];
        return clg__fail(t->ctx, CLG_SHAPE_MISMATCH, "clg_tensor_item: tensor %s has %zu elements, needs 1",
                         clg__shape_str(t, a, sizeof a), t->numel);
    }
    double d = 0;
    float f = 0;
    clg_status st = t->dtype == CLG_F64 ? clg_tensor_to_host(t, &d, 8) : clg_tensor_to_host(t, &f, 4);
    *value = t->dtype == CLG_F64 ? d : f;
    return st;
}

bool clg__same_shape(const clg_tensor *a, const clg_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

clg_status clg__check(clg_context *ctx, const clg_tensor *t, const char *op, const char *what) {
    if (!t) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %s is NULL", op, what);
    if (t->ctx != ctx) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %s belongs to another context", op, what);
    return CLG_OK;
}

clg_status clg__check_same(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, const char *op,
                           const char *what) {
    if (a->dtype != b->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %s: dtypes %s and %s differ", op, what,
                         clg_dtype_name(a->dtype), clg_dtype_name(b->dtype));
    if (!clg__same_shape(a, b)) {
        char x[64], y[64];
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: %s: shapes %s and %s differ", op, what,
                         clg__shape_str(a, x, sizeof x), clg__shape_str(b, y, sizeof y));
    }
    return CLG_OK;
}

clg_status clg__check_int_index(clg_context *ctx, const clg_tensor *t, const char *op) {
    if (t->numel > (size_t)INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED, "%s: %zu elements exceed the kernels' int index", op,
                         t->numel);
    return CLG_OK;
}

clg_status clg__map_real(clg_context *ctx, const char *program, const char *kernel, const char *op,
                         const clg_tensor *x, double param, clg_tensor **out) {
    *out = NULL;
    clg_status st = clg__check_int_index(ctx, x, op);
    cl_kernel k;
    if (st == CLG_OK) st = clg__kernel_dt(ctx, program, kernel, x->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    clg_tensor *y;
    st = clg__tensor_like(x, &y);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), xm = clg__mem(x);
    const int n = (int)x->numel;
    clg_real pr;
    st = CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, op, CLG_ARG(ym), CLG_ARG(xm), clg__real(x->dtype, &pr, param),
                          CLG_ARG(n));
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg__axpby(clg_context *ctx, double alpha, const clg_tensor *x, double beta, clg_tensor *y) {
    if (x->numel != y->numel || x->dtype != y->dtype)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "axpby: %zu and %zu elements", x->numel, y->numel);
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "tensor/tensor", "axpby", x->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), xm = clg__mem(x);
    int n = (int)x->numel;
    if (x->dtype == CLG_F64) {
        return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "axpby", CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(alpha), CLG_ARG(beta), CLG_ARG(n));
    }
    float a = (float)alpha, b = (float)beta;
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "axpby", CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(a), CLG_ARG(b), CLG_ARG(n));
}

/* ---- autograd state ---- */
clg_status clg_tensor_set_requires_grad(clg_tensor *t, bool requires_grad) {
    if (!t) return CLG_INVALID_ARGUMENT;
    if (t->grad_fn && !requires_grad)
        return clg__fail(t->ctx, CLG_INVALID_STATE,
                         "clg_tensor_set_requires_grad: only leaves can stop requiring gradients; detach first");
    t->requires_grad = requires_grad;
    return CLG_OK;
}
bool clg_tensor_requires_grad(const clg_tensor *t) { return t && t->requires_grad; }
clg_tensor *clg_tensor_grad(const clg_tensor *t) { return t && t->grad_valid ? t->grad : NULL; }
void clg_tensor_zero_grad(clg_tensor *t) {
    if (t) t->grad_valid = false;
}
void clg_tensor_detach(clg_tensor *t) {
    if (!t || !t->grad_fn) return;
    clg__node_release(t->grad_fn);
    t->grad_fn = NULL;
    t->requires_grad = false;
}
