/* src/ops/permute.c - clg_permute (torch.permute) and clg_transpose (torch.transpose), as
 * copies; backward is the inverse permutation under the beta rule. Dimensions that stay
 * together are merged first, so the common cases ((N, C) -> (C, N), NCHW -> NHWC and back) run
 * as a batched 2-D transpose, tiled in CPU style. Kernels: cl/ops/permute.cl.
 * Tests: tests/ops/test_permute.c.
 */
#include <string.h>

#include "ops/op.h"

/* The CPU-style transpose's tile edge: its private copy (32 x 33 f64, 8 KiB) stays in L1.
 * Measured on PoCL (README): 32 beat 16 by 2-3x; 64 spills the f64 tile out of a 32 KiB L1. */
#define TRANSPOSE_TILE 32
#define STR_(v) #v
#define STR(v) STR_(v)

/* What backward needs: the permutation, y[i_0, ...] = x[..., i_k at dims[k], ...]. */
typedef struct permute_geom {
    int ndim;
    int dims[CLG_MAX_DIMS];
} permute_geom;

/* dst = beta * dst + src permuted by dims (dst's dim i is src's dim dims[i]). */
static clg_status permute_launch(clg_context *ctx, clg_tensor *dst, const clg_tensor *src, int ndim,
                                 const int *dims, double beta, const char *what) {
    int src_stride[CLG_MAX_DIMS];
    src_stride[ndim - 1] = 1;
    for (int d = ndim - 1; d > 0; d--)
        src_stride[d - 1] = src_stride[d] * src->shape[d];
    /* dst's dims in order, each with its step in src; size-1 dims dropped, and a dim merged
     * into the one before it when that one steps over it exactly (they move together). */
    int size[CLG_MAX_DIMS], stride[CLG_MAX_DIMS], m = 0;
    for (int i = 0; i < ndim; i++) {
        const int s = src->shape[dims[i]], st = src_stride[dims[i]];
        if (s == 1) continue;
        if (m > 0 && stride[m - 1] == st * s) {
            size[m - 1] *= s;
            stride[m - 1] = st;
        } else {
            size[m] = s;
            stride[m++] = st;
        }
    }
    if (m == 0) size[m] = 1, stride[m++] = 1; /* one element */
    const int n = (int)src->numel;
    clg_real b;
    const clg_karg bk = clg__real(dst->dtype, &b, beta);
    cl_mem dm = clg__mem(dst), sm = clg__mem(src);
    cl_kernel k;
    clg_status st;
    /* (batch, C, R) of dst with steps (R * C, 1, C): src is (batch, R, C) transposed. */
    const bool tr2 = m == 2 && stride[0] == 1 && stride[1] == size[0];
    const bool tr3 = m == 3 && stride[1] == 1 && stride[2] == size[1] && stride[0] == size[1] * size[2];
    if (tr2 || tr3) {
        const int batch = tr3 ? size[0] : 1, C = size[m - 2], R = size[m - 1];
        if ((st = clg__op_kernel(ctx, "ops/permute", "transpose", dst->dtype, "-DTILE=" STR(TRANSPOSE_TILE), &k)))
            return st;
        if (clg__cpu_style(ctx)) {
            const int T = TRANSPOSE_TILE, tiles = batch * ((R + T - 1) / T) * ((C + T - 1) / T);
            return CLG_LAUNCH_ROWS(ctx, k, (size_t)tiles, (size_t)T * T, what, CLG_ARG(dm), CLG_ARG(sm), CLG_ARG(R),
                                   CLG_ARG(C), bk, CLG_ARG(tiles));
        }
        return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dm), CLG_ARG(sm), CLG_ARG(R), CLG_ARG(C), bk,
                                CLG_ARG(n));
    }
    /* Anything else: a gather over 4 dims, the missing leading ones of size 1. */
    cl_int4 size4, stride4;
    for (int i = 0; i < 4; i++) {
        const int j = i - (4 - m);
        size4.s[i] = j >= 0 ? size[j] : 1;
        stride4.s[i] = j >= 0 ? stride[j] : 0;
    }
    if ((st = clg__kernel_dt(ctx, "ops/permute", "permute_gather", dst->dtype, NULL, &k))) return st;
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dm), CLG_ARG(sm), CLG_ARG(size4), CLG_ARG(stride4), bk,
                            CLG_ARG(n));
}

static clg_status permute_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                                   const double *beta) {
    permute_geom g;
    memcpy(&g, node->params, sizeof g);
    clg_status st = clg__check(ctx, dy, "permute backward", "dy");
    if (st != CLG_OK || !dx[0]) return st;
    bool fits = dy->ndim == g.ndim && dx[0]->ndim == g.ndim && dx[0]->dtype == dy->dtype;
    for (int i = 0; fits && i < g.ndim; i++)
        fits = dy->shape[i] == dx[0]->shape[g.dims[i]];
    if (!fits) {
        char a[64], b[64];
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "permute backward: dy %s does not fit dx %s",
                         clg__shape_str(dy, a, sizeof a), clg__shape_str(dx[0], b, sizeof b));
    }
    int inverse[CLG_MAX_DIMS]; /* dx's dim dims[i] is dy's dim i */
    for (int i = 0; i < g.ndim; i++)
        inverse[g.dims[i]] = i;
    return permute_launch(ctx, dx[0], dy, g.ndim, inverse, beta[0], "permute backward");
}

static const clg_op_def permute_op = {"permute", permute_backward};

/* dim in [-ndim, ndim) as PyTorch takes it; false when out of range. */
static bool wrap_dim(int *dim, int ndim) {
    if (*dim < -ndim || *dim >= ndim) return false;
    if (*dim < 0) *dim += ndim;
    return true;
}

clg_status clg_permute(clg_context *ctx, const clg_tensor *x, const int *dims, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "permute: out is NULL");
    *out = NULL;
    clg_status st = clg__check(ctx, x, "permute", "x");
    if (st == CLG_OK) st = clg__check_int_index(ctx, x, "permute");
    if (st != CLG_OK) return st;
    if (!dims) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "permute: dims is NULL");
    permute_geom g = {.ndim = x->ndim};
    bool seen[CLG_MAX_DIMS] = {false};
    for (int i = 0; i < x->ndim; i++) {
        int d = dims[i];
        const bool in_range = wrap_dim(&d, x->ndim);
        if (!in_range || seen[d]) {
            char xs[64];
            return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                             "permute: dims[%d] = %d is %s for x %s (each of -%d to %d once, negatives from the end)",
                             i, dims[i], in_range ? "repeated" : "out of range", clg__shape_str(x, xs, sizeof xs),
                             x->ndim, x->ndim - 1);
        }
        seen[d] = true;
        g.dims[i] = d;
    }
    int yshape[CLG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        yshape[i] = x->shape[g.dims[i]];
    clg_tensor *y = NULL;
    st = clg__tensor_new(ctx, x->dtype, x->ndim, yshape, &y);
    if (st == CLG_OK) st = permute_launch(ctx, y, x, g.ndim, g.dims, 0.0, "permute");
    if (st == CLG_OK && clg__needs_grad(ctx, 1, &x)) st = clg__record(ctx, &permute_op, y, 1, &x, &g, sizeof g, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_transpose(clg_context *ctx, const clg_tensor *x, int dim0, int dim1, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "transpose: out is NULL");
    *out = NULL;
    clg_status st = clg__check(ctx, x, "transpose", "x");
    if (st != CLG_OK) return st;
    const int d0 = dim0, d1 = dim1;
    if (!wrap_dim(&dim0, x->ndim) || !wrap_dim(&dim1, x->ndim)) {
        char xs[64];
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "transpose: dims %d and %d: out of range for x %s (-%d to %d)",
                         d0, d1, clg__shape_str(x, xs, sizeof xs), x->ndim, x->ndim - 1);
    }
    int dims[CLG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        dims[i] = i;
    dims[dim0] = dim1;
    dims[dim1] = dim0;
    return clg_permute(ctx, x, dims, out);
}
