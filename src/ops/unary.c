/* src/ops/unary.c - element-wise unary math as graph ops: neg, exp, log, sqrt, abs, clamp and
 * pow by a scalar (PyTorch's values and derivatives). Kernels: cl/ops/unary.cl, where every
 * forward and every backward has one signature, so one table drives all seven.
 * Tests: tests/ops/test_unary.c.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/op.h"

static const clg_op_def neg_op, exp_op, log_op, sqrt_op, abs_op, clamp_op, pow_op;

typedef struct unary_kind {
    const char *name;     /* op name, for errors */
    const char *forward;  /* kernel names in ops/unary */
    const char *backward;
    bool from_output; /* the derivative is taken from y (saved) rather than x */
    const clg_op_def *op;
} unary_kind;

static const unary_kind NEG = {"neg", "neg_forward", "neg_backward", false, &neg_op};
static const unary_kind EXP = {"exp", "exp_forward", "exp_backward", true, &exp_op};
static const unary_kind LOG = {"log", "log_forward", "log_backward", false, &log_op};
static const unary_kind SQRT = {"sqrt", "sqrt_forward", "sqrt_backward", true, &sqrt_op};
static const unary_kind ABS = {"abs", "abs_forward", "abs_backward", false, &abs_op};
static const unary_kind CLAMP = {"clamp", "clamp_forward", "clamp_backward", false, &clamp_op};
static const unary_kind POW = {"pow_scalar", "pow_forward", "pow_backward", false, &pow_op};

/* pow's cases, as cl/ops/unary.cl numbers them. */
enum { POW_ONE, POW_COPY, POW_SQUARE, POW_CUBE, POW_SQRT, POW_RSQRT, POW_RECIP, POW_RECIP_SQUARE, POW_GENERAL,
       POW_ZERO_GRAD };

/* How torch.pow(x, e) computes (aten's pow_out and pow_tensor_scalar_kernel): decided from e in
 * double, so an exponent that merely rounds to 0.5 in f32 still takes the general path. */
static int pow_mode(double e) {
    if (e == 0.0) return POW_ONE;
    if (e == 1.0) return POW_COPY;
    if (e == 2.0) return POW_SQUARE;
    if (e == 3.0) return POW_CUBE;
    if (e == 0.5) return POW_SQRT;
    if (e == -0.5) return POW_RSQRT;
    if (e == -1.0) return POW_RECIP;
    if (e == -2.0) return POW_RECIP_SQUARE;
    return POW_GENERAL;
}

/* What a node keeps: which op and its kernels' parameters. */
typedef struct unary_params {
    const unary_kind *kind;
    double p0, p1;
    int backward_mode;
} unary_params;

/* A user's double as the kernels' REAL: past f32's range it is that infinity (converting an
 * out-of-range double to float is undefined in C), as PyTorch's f32 scalar would be. */
static double in_range(clg_dtype dtype, double v) {
    return dtype == CLG_F32 && fabs(v) > FLT_MAX ? copysign(INFINITY, v) : v;
}

static clg_status unary(clg_context *ctx, const unary_kind *kind, const clg_tensor *x, double p0, double p1,
                        int forward_mode, int backward_mode, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", kind->name);
    *out = NULL;
    clg_status st = clg__check(ctx, x, kind->name, "x");
    if (st != CLG_OK) return st;
    cl_kernel k;
    st = clg__kernel_dt(ctx, "ops/unary", kind->forward, x->dtype, NULL, &k);
    clg_tensor *y = NULL;
    if (st == CLG_OK) st = clg__tensor_like(x, &y);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), xm = clg__mem(x);
    const int n = (int)x->numel; /* a tensor has at most INT_MAX elements */
    p0 = in_range(x->dtype, p0), p1 = in_range(x->dtype, p1);
    clg_real r0, r1;
    st = CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, kind->name, CLG_ARG(ym), CLG_ARG(xm), clg__real(x->dtype, &r0, p0),
                          clg__real(x->dtype, &r1, p1), CLG_ARG(forward_mode), CLG_ARG(n));
    if (st == CLG_OK && clg__needs_grad(ctx, 1, &x)) {
        const unary_params p = {kind, p0, p1, backward_mode};
        clg_node *node = NULL;
        st = clg__record(ctx, kind->op, y, 1, &x, &p, sizeof p, &node);
        if (st == CLG_OK && kind->from_output) st = clg__save_output(node, 0, y);
    }
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_neg(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return unary(ctx, &NEG, x, 0, 0, 0, 0, out);
}

clg_status clg_exp(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return unary(ctx, &EXP, x, 0, 0, 0, 0, out);
}

clg_status clg_log(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return unary(ctx, &LOG, x, 0, 0, 0, 0, out);
}

clg_status clg_sqrt(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return unary(ctx, &SQRT, x, 0, 0, 0, 0, out);
}

clg_status clg_abs(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return unary(ctx, &ABS, x, 0, 0, 0, 0, out);
}

clg_status clg_clamp(clg_context *ctx, const clg_tensor *x, double min, double max, clg_tensor **out) {
    if (ctx && (isnan(min) || isnan(max))) {
        if (out) *out = NULL;
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clamp: the %s bound is NaN (use -INFINITY or INFINITY for none)",
                         isnan(min) ? "min" : "max");
    }
    return unary(ctx, &CLAMP, x, min, max, 0, 0, out);
}

clg_status clg_pow_scalar(clg_context *ctx, const clg_tensor *x, double exponent, clg_tensor **out) {
    const int backward_mode = exponent == 0.0 ? POW_ZERO_GRAD : pow_mode(exponent - 1.0);
    return unary(ctx, &POW, x, exponent, exponent - 1.0, pow_mode(exponent), backward_mode, out);
}

/* One backward for all seven: dx = beta * dx + dy * f'(s), s = x or the saved y. */
static clg_status unary_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                                 const double *beta) {
    if (!dx[0]) return CLG_OK;
    unary_params p;
    memcpy(&p, node->params, sizeof p);
    const clg_tensor *s = p.kind->from_output ? node->saved[0] : node->inputs[0];
    if (!s) return clg__fail(ctx, CLG_INVALID_STATE, "%s backward: the saved output is gone", p.kind->name);
    if (dy->numel != s->numel || dx[0]->numel != s->numel || dy->dtype != s->dtype || dx[0]->dtype != s->dtype)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s backward: dy or dx does not fit the input", p.kind->name);
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/unary", p.kind->backward, dy->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem dxm = clg__mem(dx[0]), dym = clg__mem(dy), sm = clg__mem(s);
    const int n = (int)dy->numel;
    clg_real r0, r1, br;
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, p.kind->name, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(sm),
                            clg__real(dy->dtype, &r0, p.p0), clg__real(dy->dtype, &r1, p.p1),
                            CLG_ARG(p.backward_mode), clg__real(dy->dtype, &br, beta[0]), CLG_ARG(n));
}

static const clg_op_def neg_op = {"neg", unary_backward};
static const clg_op_def exp_op = {"exp", unary_backward};
static const clg_op_def log_op = {"log", unary_backward};
static const clg_op_def sqrt_op = {"sqrt", unary_backward};
static const clg_op_def abs_op = {"abs", unary_backward};
static const clg_op_def clamp_op = {"clamp", unary_backward};
static const clg_op_def pow_op = {"pow_scalar", unary_backward};
