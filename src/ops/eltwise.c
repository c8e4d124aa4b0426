/* src/ops/eltwise.c - element-wise graph ops on tensors of one shape: add, mul, scale.
 * Kernels: cl/ops/eltwise.cl (add's and scale's backward is clg__axpby).
 * Tests: tests/ops/test_eltwise.c.
 */
#include <limits.h>
#include <string.h>

#include "ops/op.h"

static const clg_op_def add_op, mul_op, scale_op;


/* Kernels index with int: a tensor past INT_MAX elements would wrap. */
/* a, b: same dtype and shape. */
static clg_status check_pair(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, const char *op) {
    clg_status st = clg__check(ctx, a, op, "a");
    if (st == CLG_OK) st = clg__check(ctx, b, op, "b");
    if (st != CLG_OK) return st;
    if (a->dtype != b->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dtypes differ: a is %s, b is %s", op,
                         clg_dtype_name(a->dtype), clg_dtype_name(b->dtype));
    st = clg__check_same(ctx, a, b, op, "a and b");
    return st == CLG_OK ? clg__check_int_index(ctx, a, op) : st;
}

/* y = a (op) b through one kernel, recording def when a gradient is needed. */
static clg_status binary(clg_context *ctx, const clg_op_def *def, const char *kname, const clg_tensor *a,
                         const clg_tensor *b, clg_tensor **out) {
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", def->name);
    *out = NULL;
    clg_status st = check_pair(ctx, a, b, def->name);
    if (st != CLG_OK) return st;
    cl_kernel k;
    st = clg__kernel_dt(ctx, "ops/eltwise", kname, a->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    clg_tensor *y;
    st = clg__tensor_like(a, &y);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), am = clg__mem(a), bm = clg__mem(b);
    const int n = (int)a->numel;
    st = CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, def->name, CLG_ARG(ym), CLG_ARG(am), CLG_ARG(bm), CLG_ARG(n));
    const clg_tensor *in[2] = {a, b};
    if (st == CLG_OK && clg__needs_grad(ctx, 2, in)) st = clg__record(ctx, def, y, 2, in, NULL, 0, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_add(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out) {
    return binary(ctx, &add_op, "add_forward", a, b, out);
}

clg_status clg_mul(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out) {
    return binary(ctx, &mul_op, "mul_forward", a, b, out);
}

clg_status clg_scale(clg_context *ctx, const clg_tensor *x, double s, clg_tensor **out) {
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "scale: out is NULL");
    *out = NULL;
    clg_status st = clg__check(ctx, x, "scale", "x");
    clg_tensor *y = NULL;
    if (st == CLG_OK) st = clg__map_real(ctx, "ops/eltwise", "scale_forward", "scale", x, s, &y);
    if (st != CLG_OK) return st;
    if (clg__needs_grad(ctx, 1, &x))
        st = clg__record(ctx, &scale_op, y, 1, &x, &s, sizeof s, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

/* ---------------------------------------------------------------- backward */

/* d(a + b) = dy for both inputs. */
static clg_status add_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                               const double *beta) {
    for (int i = 0; i < 2; i++) {
        if (!dx[i]) continue;
        clg_status st = clg__axpby(ctx, 1.0, dy, beta[i], dx[i]);
        if (st != CLG_OK) return st;
    }
    (void)node;
    return CLG_OK;
}

/* d(a * b): dy * b for a, dy * a for b. Reads only inputs and dy, so x*x (dx[0] == dx[1])
 * is safe: the second write adds with the beta the engine passes for it. */
static clg_status mul_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                               const double *beta) {
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/eltwise", "mul_backward", dy->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    const int n = (int)dy->numel;
    cl_mem dym = clg__mem(dy);
    for (int i = 0; i < 2; i++) {
        if (!dx[i]) continue;
        cl_mem dxm = clg__mem(dx[i]), om = clg__mem(node->inputs[1 - i]);
        clg_real br;
        st = CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "mul backward", CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(om),
                              clg__real(dy->dtype, &br, beta[i]), CLG_ARG(n));
        if (st != CLG_OK) return st;
    }
    return CLG_OK;
}

/* d(s * x) = s * dy. */
static clg_status scale_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                 clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    double s;
    memcpy(&s, node->params, sizeof s);
    return clg__axpby(ctx, s, dy, beta[0], dx[0]);
}

static const clg_op_def add_op = {"add", add_backward};
static const clg_op_def mul_op = {"mul", mul_backward};
static const clg_op_def scale_op = {"scale", scale_backward};
