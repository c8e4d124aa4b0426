/* src/ops/linear.c - the fully connected layer as a graph op: y = x wT + b, PyTorch's
 * F.linear. The products run on GEMM (clg__gemm_mem: CLBlast or our packed kernel); the
 * bias broadcast and its gradient (column sums of dy) are in cl/ops/linear.cl.
 * Tests: tests/ops/test_linear.c.
 */
#include <limits.h>

#include "ops/op.h"

static const clg_op_def linear_op;


static clg_status check_inputs(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                               const clg_tensor *b) {
    const char *op = "linear";
    clg_status st = clg__check(ctx, x, op, "x");
    if (st == CLG_OK) st = clg__check(ctx, w, op, "w");
    if (st == CLG_OK && b) st = clg__check(ctx, b, op, "b");
    if (st != CLG_OK) return st;
    if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dtypes differ: x %s, w %s, b %s", op,
                         clg_dtype_name(x->dtype), clg_dtype_name(w->dtype),
                         b ? clg_dtype_name(b->dtype) : "none");
    char xs[64], ws[64], bs[64];
    if (x->ndim != 2 || w->ndim != 2 || x->shape[1] != w->shape[1])
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "%s: x %s and w %s do not fit: want x (N, in) and w (out, in)", op,
                         clg__shape_str(x, xs, sizeof xs), clg__shape_str(w, ws, sizeof ws));
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: b %s does not fit w %s: want b (out)", op,
                         clg__shape_str(b, bs, sizeof bs), clg__shape_str(w, ws, sizeof ws));
    if (x->numel > (size_t)INT_MAX || (size_t)x->shape[0] * (size_t)w->shape[0] > (size_t)INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED, "%s: x %s is too large for the kernels' int index", op,
                         clg__shape_str(x, xs, sizeof xs));
    return CLG_OK;
}

clg_status clg_linear(clg_context *ctx, const clg_tensor *x, const clg_tensor *w, const clg_tensor *b,
                      clg_tensor **out) {
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "linear: out is NULL");
    *out = NULL;
    clg_status st = check_inputs(ctx, x, w, b);
    if (st != CLG_OK) return st;
    const int n = x->shape[0], in = x->shape[1], nout = w->shape[0];
    clg_tensor *y; // (N, out)
    const int yshape[2] = {n, nout};
    st = clg__tensor_new(ctx, x->dtype, 2, yshape, &y);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y);
    /* With a bias, y starts as b on every row and the GEMM adds x wT on top (beta = 1). */
    if (b) {
        cl_kernel k;
        st = clg__kernel_dt(ctx, "ops/linear", "bias_rows", x->dtype, NULL, &k);
        cl_mem bm = clg__mem(b);
        if (st == CLG_OK)
            st = CLG_LAUNCH_ELEMS(ctx, k, y->numel, "linear bias", CLG_ARG(ym), CLG_ARG(bm), CLG_ARG(n),
                                  CLG_ARG(nout));
    }
    if (st == CLG_OK)
        st = clg__gemm_mem(ctx, x->dtype, false, true, (size_t)n, (size_t)nout, (size_t)in, 1.0,
                           clg__mem(x), 0, (size_t)in, clg__mem(w), 0, (size_t)in, b ? 1.0 : 0.0,
                           ym, 0, (size_t)nout);
    const clg_tensor *inputs[3] = {x, w, b};
    const int n_in = b ? 3 : 2;
    if (st == CLG_OK && clg__needs_grad(ctx, n_in, inputs))
        st = clg__record(ctx, &linear_op, y, n_in, inputs, NULL, 0, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

/* dx = dy w, dw = dyT x, db = column sums of dy; each with its own beta. Every product
 * reads only inputs and dy, so aliased dx entries are safe in this order. */
static clg_status linear_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                  clg_tensor *const *dx, const double *beta) {
    const clg_tensor *x = node->inputs[0], *w = node->inputs[1]; // (N, in), (out, in)
    const int n = x->shape[0], in = x->shape[1], nout = w->shape[0];
    cl_mem dym = clg__mem(dy); // (N, out)
    clg_status st = CLG_OK;
    if (dx[0]) // (N, in) = (N, out) . (out, in)
        st = clg__gemm_mem(ctx, dy->dtype, false, false, (size_t)n, (size_t)in, (size_t)nout, 1.0, dym, 0,
                           (size_t)nout, clg__mem(w), 0, (size_t)in, beta[0], clg__mem(dx[0]), 0,
                           (size_t)in);
    if (st == CLG_OK && dx[1]) // (out, in) = (out, N) . (N, in)
        st = clg__gemm_mem(ctx, dy->dtype, true, false, (size_t)nout, (size_t)in, (size_t)n, 1.0, dym, 0,
                           (size_t)nout, clg__mem(x), 0, (size_t)in, beta[1], clg__mem(dx[1]), 0,
                           (size_t)in);
    if (st == CLG_OK && node->n_inputs > 2 && dx[2]) { // (out)
        cl_kernel k;
        st = clg__kernel_dt(ctx, "ops/linear", "col_sum", dy->dtype, NULL, &k);
        cl_mem dbm = clg__mem(dx[2]);
        clg_real br;
        if (st == CLG_OK)
            st = CLG_LAUNCH1D(ctx, k, (size_t)nout, "linear backward (bias)", CLG_ARG(dbm), CLG_ARG(dym),
                              clg__real(dy->dtype, &br, beta[2]), CLG_ARG(n), CLG_ARG(nout));
    }
    return st;
}

static const clg_op_def linear_op = {"linear", linear_backward};
