/* src/ops/split.c - slices along one dimension: clg_narrow (torch.narrow), clg_split
 * (torch.split with a list of sizes) and clg_chunk (torch.chunk). Every piece is a copy with
 * its own node, whose backward puts dy into its slice of dx. Kernels: cl/ops/split.cl.
 * Tests: tests/ops/test_split.c.
 */
#include <string.h>

#include "ops/op.h"

/* What backward needs, copied into the node: x viewed as (outer, D, inner), the piece
 * (outer, d, inner) starting at off along D. */
typedef struct narrow_geom {
    int outer, D, inner;
    int d, off;
} narrow_geom;

/* kernel "narrow_fwd" (y = the slice of x), "narrow_bwd" (all of dx under beta) or "narrow_add"
 * (dx's slice += dy): the first and last run over the piece's elements, narrow_bwd over x's. */
static clg_status narrow_launch(clg_context *ctx, const narrow_geom *g, const char *kernel, clg_tensor *dst,
                                const clg_tensor *src, const double *beta, const char *what) {
    cl_kernel k;
    clg_status st = clg__op_kernel(ctx, "ops/split", kernel, dst->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem dm = clg__mem(dst), sm = clg__mem(src);
    const int rows = g->outer * (beta ? g->D : g->d), n = rows * g->inner;
    clg_real b;
    if (beta) {
        const clg_karg bk = clg__real(dst->dtype, &b, *beta);
        if (clg__cpu_style(ctx))
            return CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, (size_t)g->inner, what, CLG_ARG(dm), CLG_ARG(sm),
                                   CLG_ARG(g->D), CLG_ARG(g->d), CLG_ARG(g->off), CLG_ARG(g->inner), bk,
                                   CLG_ARG(rows));
        return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dm), CLG_ARG(sm), CLG_ARG(g->D), CLG_ARG(g->d),
                                CLG_ARG(g->off), CLG_ARG(g->inner), bk, CLG_ARG(n));
    }
    if (clg__cpu_style(ctx))
        return CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, (size_t)g->inner, what, CLG_ARG(dm), CLG_ARG(sm),
                               CLG_ARG(g->D), CLG_ARG(g->d), CLG_ARG(g->off), CLG_ARG(g->inner), CLG_ARG(rows));
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dm), CLG_ARG(sm), CLG_ARG(g->D), CLG_ARG(g->d),
                            CLG_ARG(g->off), CLG_ARG(g->inner), CLG_ARG(n));
}

static clg_status narrow_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                                  const double *beta) {
    narrow_geom g;
    memcpy(&g, node->params, sizeof g);
    clg_status st = clg__check(ctx, dy, "narrow backward", "dy");
    if (st != CLG_OK || !dx[0]) return st;
    if (dy->numel != (size_t)g.outer * g.d * g.inner || dx[0]->numel != (size_t)g.outer * g.D * g.inner ||
        dx[0]->dtype != dy->dtype)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "narrow backward: dy (%zu elements) or dx (%zu) does not fit",
                         dy->numel, dx[0]->numel);
    /* At beta = 1 the rest of dx stays as it is: only the slice is touched. */
    if (beta[0] == 1.0) return narrow_launch(ctx, &g, "narrow_add", dx[0], dy, NULL, "narrow backward");
    return narrow_launch(ctx, &g, "narrow_bwd", dx[0], dy, &beta[0], "narrow backward");
}

static const clg_op_def narrow_op = {"narrow", narrow_backward};

/* dim in [-ndim, ndim) as PyTorch takes it; false when out of range. */
static bool wrap_dim(int *dim, int ndim) {
    if (*dim < -ndim || *dim >= ndim) return false;
    if (*dim < 0) *dim += ndim;
    return true;
}

/* x checked, dim wrapped: the geometry of the piece [off, off + d) along dim. */
static narrow_geom geom_of(const clg_tensor *x, int dim, int off, int d) {
    narrow_geom g = {.outer = 1, .D = x->shape[dim], .inner = 1, .d = d, .off = off};
    for (int i = 0; i < dim; i++)
        g.outer *= x->shape[i];
    for (int i = dim + 1; i < x->ndim; i++)
        g.inner *= x->shape[i];
    return g;
}

/* The checks every entry shares: x usable by the int-indexed kernels and dim in range. */
static clg_status check_x_dim(clg_context *ctx, const clg_tensor *x, int *dim, const char *op) {
    clg_status st = clg__check(ctx, x, op, "x");
    if (st == CLG_OK) st = clg__check_int_index(ctx, x, op);
    if (st != CLG_OK) return st;
    if (!wrap_dim(dim, x->ndim)) {
        char xs[64];
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dim %d out of range for x %s (%d-D: -%d to %d)", op,
                         *dim, clg__shape_str(x, xs, sizeof xs), x->ndim, x->ndim, x->ndim - 1);
    }
    return CLG_OK;
}

/* The piece g of x (checked) as a new tensor, recorded when x needs a gradient. */
static clg_status narrow_make(clg_context *ctx, const clg_tensor *x, int dim, const narrow_geom *g,
                              const char *what, clg_tensor **out) {
    int yshape[CLG_MAX_DIMS];
    memcpy(yshape, x->shape, sizeof yshape);
    yshape[dim] = g->d;
    clg_tensor *y = NULL;
    clg_status st = clg__tensor_new(ctx, x->dtype, x->ndim, yshape, &y);
    if (st == CLG_OK) st = narrow_launch(ctx, g, "narrow_fwd", y, x, NULL, what);
    if (st == CLG_OK && clg__needs_grad(ctx, 1, &x)) st = clg__record(ctx, &narrow_op, y, 1, &x, g, sizeof *g, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_narrow(clg_context *ctx, const clg_tensor *x, int dim, int start, int length, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "narrow: out is NULL");
    *out = NULL;
    clg_status st = check_x_dim(ctx, x, &dim, "narrow");
    if (st != CLG_OK) return st;
    const int D = x->shape[dim];
    /* start may count from the end (torch.narrow); each test below stays within int */
    if (start < -D || start > D || length < 1 || (start < 0 ? start + D : start) > D - length) {
        char xs[64];
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "narrow: start %d and length %d do not fit dim %d of x %s (size %d; length >= 1)", start,
                         length, dim, clg__shape_str(x, xs, sizeof xs), D);
    }
    if (start < 0) start += D;
    const narrow_geom g = geom_of(x, dim, start, length);
    return narrow_make(ctx, x, dim, &g, "narrow", out);
}

/* Drops the pieces made so far when a later one fails: the caller keeps none. */
static void free_pieces(clg_tensor **outs, int n) {
    for (int i = 0; i < n; i++) {
        clg_tensor_free(outs[i]);
        outs[i] = NULL;
    }
}

clg_status clg_split(clg_context *ctx, const clg_tensor *x, int dim, int n, const int *sizes, clg_tensor **outs) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!outs || !sizes || n < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "split: needs n >= 1 sizes and room for n outputs (n = %d%s%s)",
                         n, sizes ? "" : ", sizes NULL", outs ? "" : ", outs NULL");
    for (int i = 0; i < n; i++)
        outs[i] = NULL;
    clg_status st = check_x_dim(ctx, x, &dim, "split");
    if (st != CLG_OK) return st;
    const int D = x->shape[dim];
    long long sum = 0; /* at most INT_MAX sizes below 2^31 each: no wrap */
    for (int i = 0; i < n; i++) {
        if (sizes[i] < 1)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "split: sizes[%d] is %d (a tensor has no empty dims)", i,
                             sizes[i]);
        sum += sizes[i];
    }
    if (sum != D) {
        char xs[64];
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "split: the %d sizes sum to %lld, not dim %d's size %d of x %s", n,
                         sum, dim, D, clg__shape_str(x, xs, sizeof xs));
    }
    int off = 0;
    for (int i = 0; i < n; i++) {
        const narrow_geom g = geom_of(x, dim, off, sizes[i]);
        if ((st = narrow_make(ctx, x, dim, &g, "split", &outs[i])) != CLG_OK) {
            free_pieces(outs, i);
            return st;
        }
        off += sizes[i];
    }
    return CLG_OK;
}

clg_status clg_chunk(clg_context *ctx, const clg_tensor *x, int chunks, int dim, clg_tensor **outs, int *n_out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (n_out) *n_out = 0;
    if (!outs || !n_out || chunks < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "chunk: needs chunks >= 1 (got %d), outs and n_out%s%s", chunks,
                         outs ? "" : " (outs NULL)", n_out ? "" : " (n_out NULL)");
    for (int i = 0; i < chunks; i++)
        outs[i] = NULL;
    clg_status st = check_x_dim(ctx, x, &dim, "chunk");
    if (st != CLG_OK) return st;
    /* torch.chunk: pieces of ceil(D / chunks), the last one smaller, so fewer than chunks
     * pieces when that size leaves nothing for the rest (6 into 4 gives 2, 2, 2). */
    const int D = x->shape[dim], size = D / chunks + (D % chunks != 0);
    const int n = D / size + (D % size != 0);
    int off = 0;
    for (int i = 0; i < n; i++) {
        const int d = D - off < size ? D - off : size;
        const narrow_geom g = geom_of(x, dim, off, d);
        if ((st = narrow_make(ctx, x, dim, &g, "chunk", &outs[i])) != CLG_OK) {
            free_pieces(outs, i);
            return st;
        }
        off += d;
    }
    *n_out = n;
    return CLG_OK;
}
