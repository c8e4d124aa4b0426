/* src/ops/cat.c - clg_cat: concatenation of up to CLG_CAT_MAX tensors along one dimension
 * (torch.cat), forward and backward (each input gets its slice of dy). Kernels:
 * cl/ops/cat.cl. Tests: tests/ops/test_cat.c.
 */
#include <limits.h>
#include <string.h>

#include "ops/op.h"

_Static_assert(CLG_CAT_MAX <= CLG_NODE_MAX_INPUTS, "a node holds every input of a cat");

/* What backward needs, copied into the node. */
typedef struct cat_geom {
    int n;               /* inputs */
    int outer, inner, D; /* y viewed as (outer, D, inner) */
    int d[CLG_CAT_MAX];  /* each input's size along the dimension */
    int off[CLG_CAT_MAX];
} cat_geom;

/* Copies x (input i) into y, or dy's slice into dx (backward: beta given). */
static clg_status cat_launch(clg_context *ctx, const cat_geom *g, int i, clg_tensor *dst,
                             const clg_tensor *src, const double *beta, const char *what) {
    cl_kernel k;
    clg_status st = clg__op_kernel(ctx, "ops/cat", beta ? "cat_bwd" : "cat_fwd", dst->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem dm = clg__mem(dst), sm = clg__mem(src);
    const int rows = g->outer * g->d[i], n = rows * g->inner;
    clg_real b;
    if (beta) {
        const clg_karg bk = clg__real(dst->dtype, &b, *beta);
        if (clg__cpu_style(ctx))
            return CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, (size_t)g->inner, what, CLG_ARG(dm), CLG_ARG(sm),
                                   CLG_ARG(g->D), CLG_ARG(g->d[i]), CLG_ARG(g->off[i]), CLG_ARG(g->inner), bk,
                                   CLG_ARG(rows));
        return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dm), CLG_ARG(sm), CLG_ARG(g->D),
                                CLG_ARG(g->d[i]), CLG_ARG(g->off[i]), CLG_ARG(g->inner), bk, CLG_ARG(n));
    }
    if (clg__cpu_style(ctx))
        return CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, (size_t)g->inner, what, CLG_ARG(dm), CLG_ARG(sm),
                               CLG_ARG(g->D), CLG_ARG(g->d[i]), CLG_ARG(g->off[i]), CLG_ARG(g->inner),
                               CLG_ARG(rows));
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dm), CLG_ARG(sm), CLG_ARG(g->D),
                            CLG_ARG(g->d[i]), CLG_ARG(g->off[i]), CLG_ARG(g->inner), CLG_ARG(n));
}

static clg_status cat_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                               const double *beta) {
    cat_geom g;
    memcpy(&g, node->params, sizeof g);
    clg_status st = clg__check(ctx, dy, "cat backward", "dy");
    if (st != CLG_OK) return st;
    if (dy->numel != (size_t)g.outer * g.D * g.inner)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "cat backward: dy has %zu elements, want %d", dy->numel,
                         g.outer * g.D * g.inner);
    for (int i = 0; i < g.n && st == CLG_OK; i++) {
        if (!dx[i]) continue;
        if (dx[i]->numel != (size_t)g.outer * g.d[i] * g.inner || dx[i]->dtype != dy->dtype)
            return clg__fail(ctx, CLG_SHAPE_MISMATCH, "cat backward: dx[%d] does not fit input %d", i, i);
        st = cat_launch(ctx, &g, i, dx[i], dy, &beta[i], "cat backward");
    }
    return st;
}

static const clg_op_def cat_op = {"cat", cat_backward};

clg_status clg_cat(clg_context *ctx, int n, const clg_tensor *const *xs, int dim, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "cat: out is NULL");
    *out = NULL;
    if (n < 1 || n > CLG_CAT_MAX || !xs)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "cat: takes 1 to %d tensors, got %d", CLG_CAT_MAX, n);
    clg_status st = CLG_OK;
    /* Each input indexes with int (so its outer * d * inner products below fit one). */
    for (int i = 0; i < n && st == CLG_OK; i++)
        if ((st = clg__check(ctx, xs[i], "cat", "an input")) == CLG_OK)
            st = clg__check_int_index(ctx, xs[i], "cat");
    if (st != CLG_OK) return st;
    const clg_tensor *x0 = xs[0];
    if (dim < -x0->ndim || dim >= x0->ndim)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "cat: dim %d out of range for %d-D tensors", dim,
                         x0->ndim);
    if (dim < 0) dim += x0->ndim; /* from the end, as torch.cat */
    char s0[64], s1[64];
    cat_geom g = {.n = n, .outer = 1, .inner = 1};
    for (int d = 0; d < dim; d++)
        g.outer *= x0->shape[d];
    for (int d = dim + 1; d < x0->ndim; d++)
        g.inner *= x0->shape[d];
    long long total = 0;
    for (int i = 0; i < n; i++) {
        const clg_tensor *x = xs[i];
        bool fits = x->ndim == x0->ndim && x->dtype == x0->dtype;
        for (int d = 0; fits && d < x0->ndim; d++)
            fits = d == dim || x->shape[d] == x0->shape[d];
        if (!fits)
            return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                             "cat: input %d %s %s does not fit input 0 %s %s outside dim %d", i,
                             clg_dtype_name(x->dtype), clg__shape_str(x, s1, sizeof s1),
                             clg_dtype_name(x0->dtype), clg__shape_str(x0, s0, sizeof s0), dim);
        g.d[i] = x->shape[dim];
        g.off[i] = (int)total;
        total += x->shape[dim];
    }
    if (total > INT_MAX / ((long long)g.outer * g.inner))
        return clg__fail(ctx, CLG_UNSUPPORTED, "cat: the result has more than INT_MAX elements");
    g.D = (int)total;
    int yshape[CLG_MAX_DIMS];
    memcpy(yshape, x0->shape, sizeof yshape);
    yshape[dim] = g.D;
    clg_tensor *y = NULL;
    st = clg__tensor_new(ctx, x0->dtype, x0->ndim, yshape, &y);
    for (int i = 0; i < n && st == CLG_OK; i++)
        st = cat_launch(ctx, &g, i, y, xs[i], NULL, "cat");
    if (st == CLG_OK && clg__needs_grad(ctx, n, xs))
        st = clg__record(ctx, &cat_op, y, n, xs, &g, sizeof g, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}
