/* src/ops/softmax.c - softmax and log_softmax over one dimension of a 1- to 4-D tensor
 * (torch.softmax / torch.log_softmax), forward, graph recording and backward (from the saved
 * output, as PyTorch). Kernels: cl/ops/softmax.cl. Tests: tests/ops/test_softmax.c.
 */
#include <stdio.h>
#include <string.h>

#include "ops/op.h"

/* What backward needs, copied into the node: x viewed as (outer, D, inner). */
typedef struct softmax_geom {
    int rows, D, inner; /* rows = outer * inner */
    int log_out;        /* log_softmax */
} softmax_geom;

static const clg_op_def softmax_op, log_softmax_op;

static const char *softmax_name(const softmax_geom *g) { return g->log_out ? "log_softmax" : "softmax"; }

/* Launches kernel `name` over g's rows with the listed arguments: CPU style as whole rows per
 * item (rows and chunk appended), GPU style as a work-group per row whose local scratch is
 * appended; its size is a power of two no larger than the row needs (short rows leave few
 * items idle) nor than the device allows. */
#define SOFTMAX_MAX_ARGS 8
static clg_status launch_rows(clg_context *ctx, const softmax_geom *g, const char *name, clg_dtype dt,
                              const char *what, const clg_karg *args, cl_uint nargs) {
    cl_kernel k;
    clg_status st = clg__op_kernel(ctx, "ops/softmax", name, dt, NULL, &k);
    if (st != CLG_OK) return st;
    if (nargs > SOFTMAX_MAX_ARGS)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %u kernel arguments", what, nargs);
    clg_karg all[SOFTMAX_MAX_ARGS + 1];
    memcpy(all, args, nargs * sizeof *args);
    if (clg__cpu_style(ctx)) {
        all[nargs] = CLG_ARG(g->rows);
        return clg__launch_rows(ctx, k, (size_t)g->rows, (size_t)g->D, all, nargs + 1, what);
    }
    size_t local = 1, cap;
    if ((st = clg__reduce_local_size(ctx, k, what, &cap)) != CLG_OK) return st;
    while (local < cap && local < (size_t)g->D)
        local *= 2;
    all[nargs] = CLG_LOCAL(local * clg_dtype_size(dt));
    const size_t global = (size_t)g->rows * local;
    return clg__launch(ctx, k, 1, &global, &local, all, nargs + 1, what);
}
#define LAUNCH_ROWS(ctx, g, name, dt, what, ...)                                                             \
    launch_rows((ctx), (g), (name), (dt), (what), (clg_karg[]){__VA_ARGS__}, (cl_uint)CLG_NARGS_(__VA_ARGS__))

static clg_status softmax_any(clg_context *ctx, const clg_tensor *x, int dim, bool log_out,
                              clg_tensor **out) {
    const char *op = log_out ? "log_softmax" : "softmax";
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", op);
    *out = NULL;
    clg_status st = clg__check(ctx, x, op, "x");
    /* rows * D * inner is x's numel, so every index below fits an int. */
    if (st == CLG_OK) st = clg__check_int_index(ctx, x, op);
    if (st != CLG_OK) return st;
    char s[64];
    if (dim < -x->ndim || dim >= x->ndim)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dim %d is out of range for x %s (%d-D: [%d, %d])",
                         op, dim, clg__shape_str(x, s, sizeof s), x->ndim, -x->ndim, x->ndim - 1);
    if (dim < 0) dim += x->ndim;
    softmax_geom g = {.inner = 1, .D = x->shape[dim], .log_out = log_out};
    int outer = 1;
    for (int d = 0; d < dim; d++)
        outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++)
        g.inner *= x->shape[d];
    g.rows = outer * g.inner;

    clg_tensor *y = NULL;
    st = clg__tensor_like(x, &y);
    cl_mem ym = clg__mem(y), xm = clg__mem(x);
    if (st == CLG_OK)
        st = LAUNCH_ROWS(ctx, &g, "softmax_fwd", x->dtype, op, CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(g.D),
                         CLG_ARG(g.inner), CLG_ARG(g.log_out));
    if (st == CLG_OK && clg__needs_grad(ctx, 1, &x)) {
        clg_node *node = NULL;
        st = clg__record(ctx, log_out ? &log_softmax_op : &softmax_op, y, 1, &x, &g, sizeof g, &node);
        if (st == CLG_OK) st = clg__save_output(node, 0, y); /* backward reads the output */
    }
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_softmax(clg_context *ctx, const clg_tensor *x, int dim, clg_tensor **out) {
    return softmax_any(ctx, x, dim, false, out);
}

clg_status clg_log_softmax(clg_context *ctx, const clg_tensor *x, int dim, clg_tensor **out) {
    return softmax_any(ctx, x, dim, true, out);
}

static clg_status softmax_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                   clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    softmax_geom g;
    memcpy(&g, node->params, sizeof g);
    char what[32];
    snprintf(what, sizeof what, "%s backward", softmax_name(&g));
    const clg_tensor *y = node->saved[0];
    if (!y) return clg__fail(ctx, CLG_INVALID_STATE, "%s: the saved output is gone", what);
    clg_status st = clg__check(ctx, dy, what, "dy");
    if (st == CLG_OK) st = clg__check_same(ctx, y, dy, what, "y and dy"); /* dtypes too */
    if (st == CLG_OK) st = clg__check_same(ctx, y, dx[0], what, "y and dx");
    if (st != CLG_OK) return st;
    cl_mem dxm = clg__mem(dx[0]), ym = clg__mem(y), dym = clg__mem(dy);
    clg_real br;
    return LAUNCH_ROWS(ctx, &g, "softmax_bwd", y->dtype, what, CLG_ARG(dxm), CLG_ARG(ym), CLG_ARG(dym),
                       CLG_ARG(g.D), CLG_ARG(g.inner), CLG_ARG(g.log_out), clg__real(y->dtype, &br, beta[0]));
}

static const clg_op_def softmax_op = {"softmax", softmax_backward};
static const clg_op_def log_softmax_op = {"log_softmax", softmax_backward};
