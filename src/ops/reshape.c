/* src/ops/reshape.c - reshape and flatten: views that share the input's buffer (no copy,
 * no kernel). Backward hands dy back in the input's shape through clg__axpby.
 * Tests: tests/ops/test_reshape.c.
 */
#include <stdio.h>

#include "ops/op.h"

static const clg_op_def reshape_op, flatten_op;

static clg_status make_view(clg_context *ctx, const clg_op_def *def, const clg_tensor *x, int ndim,
                            const int *shape, clg_tensor **out) {
    clg_tensor *y;
    clg_status st = clg__tensor_view(x, ndim, shape, &y);
    if (st != CLG_OK) return st;
    if (clg__needs_grad(ctx, 1, &x)) {
        st = clg__record(ctx, def, y, 1, &x, NULL, 0, NULL);
        if (st != CLG_OK) {
            clg_tensor_free(y);
            return st;
        }
    }
    *out = y;
    return CLG_OK;
}

/* "(2, -1, 4)": the requested shape as given, for messages. */
static const char *fmt_shape(int ndim, const int *shape, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%d", i ? ", " : "(", shape[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (used < len) snprintf(buf + used, len - used, ")");
    return buf;
}

/* One entry of shape may be -1: it takes whatever makes the element counts agree. */
clg_status clg_reshape(clg_context *ctx, const clg_tensor *x, int ndim, const int *shape, clg_tensor **out) {
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "reshape: out is NULL");
    *out = NULL;
    clg_status st = clg__check(ctx, x, "reshape", "x");
    if (st != CLG_OK) return st;
    if (ndim < 1 || ndim > CLG_MAX_DIMS || !shape)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "reshape: the new shape needs 1 to %d dims, got %d%s",
                         CLG_MAX_DIMS, ndim, shape ? "" : " and no shape");
    int dims[CLG_MAX_DIMS];
    int infer = -1;
    size_t known = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
        } else if (shape[i] <= 0) {
            return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                             "reshape: dim %d of the new shape is %d (positive, or one -1)", i, shape[i]);
        } else if (!clg__mul_size(known, (size_t)shape[i], &known) || known > (size_t)INT32_MAX) {
            /* past what a tensor holds, and a product that wrapped could even be 0 (a division by
             * zero below) or equal x's element count */
            char want[64];
            return clg__fail(ctx, CLG_SHAPE_MISMATCH, "reshape: the shape %s has more than %d elements",
                             fmt_shape(ndim, shape, want, sizeof want), INT32_MAX);
        }
    }
    size_t numel = known;
    if (infer >= 0 && x->numel % known == 0 && x->numel / known <= (size_t)INT32_MAX) {
        dims[infer] = (int)(x->numel / known);
        numel *= (size_t)dims[infer];
    }
    if (numel != x->numel || (infer >= 0 && dims[infer] <= 0)) {
        char xs[64], want[64];
        return clg__fail(
            ctx, CLG_SHAPE_MISMATCH, "reshape: x %s has %zu elements, which do not fit the shape %s",
            clg__shape_str(x, xs, sizeof xs), x->numel, fmt_shape(ndim, shape, want, sizeof want));
    }
    return make_view(ctx, &reshape_op, x, ndim, dims, out);
}

/* (N, ...) -> (N, rest), as torch.flatten(x, 1). */
clg_status clg_flatten(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "flatten: out is NULL");
    *out = NULL;
    clg_status st = clg__check(ctx, x, "flatten", "x");
    if (st != CLG_OK) return st;
    if (x->ndim < 2) {
        char xs[64];
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "flatten: x %s needs a batch dim and at least one more",
                         clg__shape_str(x, xs, sizeof xs));
    }
    const int dims[2] = {x->shape[0], (int)(x->numel / (size_t)x->shape[0])};
    return make_view(ctx, &flatten_op, x, 2, dims, out);
}

/* The gradient of a view is dy read in the input's shape: the same elements in the same
 * order, so it adds straight into dx (axpby only needs equal element counts). */
static clg_status view_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                                const double *beta) {
    (void)node;
    return dx[0] ? clg__axpby(ctx, 1.0, dy, beta[0], dx[0]) : CLG_OK;
}

static const clg_op_def reshape_op = {"reshape", view_backward};
static const clg_op_def flatten_op = {"flatten", view_backward};
