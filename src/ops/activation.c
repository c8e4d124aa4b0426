/* src/ops/activation.c - element-wise activations as graph ops: relu, leaky_relu,
 * sigmoid, tanh and the exact (erf) gelu. Kernels: cl/ops/activation.cl, where every
 * forward and every backward has one signature, so one table drives all five.
 * Tests: tests/ops/test_activation.c.
 */
#include <string.h>

#include "ops/op.h"

static const clg_op_def relu_op, leaky_relu_op, sigmoid_op, tanh_op, gelu_op;

typedef struct act_kind {
    const char *name;    /* op name, for errors */
    const char *forward; /* kernel names in ops/activation */
    const char *backward;
    bool from_output; /* the derivative is taken from y (saved) rather than x */
} act_kind;

static const act_kind RELU = {"relu", "relu_forward", "relu_backward", false};
static const act_kind LEAKY = {"leaky_relu", "leaky_relu_forward", "leaky_relu_backward", false};
static const act_kind SIGMOID = {"sigmoid", "sigmoid_forward", "sigmoid_backward", true};
static const act_kind TANH = {"tanh", "tanh_forward", "tanh_backward", true};
static const act_kind GELU = {"gelu", "gelu_forward", "gelu_backward", false};

/* What a node keeps: which activation and its parameter. */
typedef struct act_params {
    const act_kind *kind;
    double param;
} act_params;


static clg_status activate(clg_context *ctx, const act_kind *kind, const clg_op_def *def, const clg_tensor *x,
                           double param, clg_tensor **out) {
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", kind->name);
    *out = NULL;
    clg_status st = clg__check(ctx, x, kind->name, "x");
    clg_tensor *y = NULL;
    if (st == CLG_OK) st = clg__map_real(ctx, "ops/activation", kind->forward, kind->name, x, param, &y);
    if (st != CLG_OK) return st;
    if (clg__needs_grad(ctx, 1, &x)) {
        const act_params p = {kind, param};
        clg_node *node = NULL;
        st = clg__record(ctx, def, y, 1, &x, &p, sizeof p, &node);
        if (st == CLG_OK && kind->from_output) st = clg__save_output(node, 0, y);
    }
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_relu(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return activate(ctx, &RELU, &relu_op, x, 0.0, out);
}

clg_status clg_leaky_relu(clg_context *ctx, const clg_tensor *x, double negative_slope, clg_tensor **out) {
    return activate(ctx, &LEAKY, &leaky_relu_op, x, negative_slope, out);
}

clg_status clg_sigmoid(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return activate(ctx, &SIGMOID, &sigmoid_op, x, 0.0, out);
}

clg_status clg_tanh(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return activate(ctx, &TANH, &tanh_op, x, 0.0, out);
}

clg_status clg_gelu(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    return activate(ctx, &GELU, &gelu_op, x, 0.0, out);
}

/* One backward for all five: dx = beta * dx + dy * f'(s), s = x or the saved y. */
static clg_status act_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                               const double *beta) {
    if (!dx[0]) return CLG_OK;
    act_params p;
    memcpy(&p, node->params, sizeof p);
    const clg_tensor *s = p.kind->from_output ? node->saved[0] : node->inputs[0];
    if (!s) return clg__fail(ctx, CLG_INVALID_STATE, "%s backward: the saved output is gone", p.kind->name);
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/activation", p.kind->backward, dy->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem dxm = clg__mem(dx[0]), dym = clg__mem(dy), sm = clg__mem(s);
    const int n = (int)dy->numel;
    clg_real pr, br;
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, p.kind->name, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(sm),
                            clg__real(dy->dtype, &pr, p.param), clg__real(dy->dtype, &br, beta[0]),
                            CLG_ARG(n));
}

static const clg_op_def relu_op = {"relu", act_backward};
static const clg_op_def leaky_relu_op = {"leaky_relu", act_backward};
static const clg_op_def sigmoid_op = {"sigmoid", act_backward};
static const clg_op_def tanh_op = {"tanh", act_backward};
static const clg_op_def gelu_op = {"gelu", act_backward};
