/* src/ops/dropout.c - dropout: zeroes elements with probability p and scales the rest by
 * 1 / (1 - p), the mask drawn on the device by Philox-4x32-10 keyed by (seed, element index).
 * Backward regenerates the same mask instead of saving it. Kernels: cl/ops/dropout.cl.
 * Tests: tests/ops/test_dropout.c.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "ops/op.h"

/* The mask is a function of these alone, so the node needs nothing else. */
typedef struct dropout_params {
    uint64_t seed;
    uint64_t threshold; /* keep when a 32-bit draw is >= threshold; 2^32 keeps nothing */
    double scale;       /* 1 / (1 - p); 0 when p = 1 (nothing survives to be scaled) */
} dropout_params;


/* y = beta * y + mask * scale * x over numel elements. */
static clg_status dropout_launch(clg_context *ctx, const dropout_params *prm, clg_tensor *y,
                                 const clg_tensor *x, double beta, const char *what) {
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/dropout", "dropout_apply", y->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), xm = clg__mem(x);
    cl_ulong seed = prm->seed, thr = prm->threshold;
    int n = (int)y->numel;
    clg_real rs, rb;
    /* The kernel's elements are the groups of 4 that share one Philox call. */
    return CLG_LAUNCH_ELEMS(ctx, k, (y->numel + 3) / 4, what, CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(seed),
                            CLG_ARG(thr), clg__real(y->dtype, &rs, prm->scale),
                            clg__real(y->dtype, &rb, beta), CLG_ARG(n));
}

static clg_status dropout_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                   clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    dropout_params prm;
    memcpy(&prm, node->params, sizeof prm);
    clg_status st = clg__check_same(ctx, dy, dx[0], "dropout backward", "dy and dx");
    if (st != CLG_OK) return st;
    if (dy->dtype != dx[0]->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "dropout backward: dy is %s but dx is %s",
                         clg_dtype_name(dy->dtype), clg_dtype_name(dx[0]->dtype));
    return dropout_launch(ctx, &prm, dx[0], dy, beta[0], "dropout backward");
}

static const clg_op_def dropout_op = {"dropout", dropout_backward};

clg_status clg_dropout(clg_context *ctx, const clg_tensor *x, double p, bool training, uint64_t seed,
                       clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "dropout: out is NULL");
    *out = NULL;
    clg_status st = clg__check(ctx, x, "dropout", "x");
    if (st != CLG_OK) return st;
    if (!(p >= 0.0 && p <= 1.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "dropout: p must be in [0, 1]: got %g", p);
    if (!training) {
        *out = clg_tensor_ref((clg_tensor *)x); /* identity: the caller's new reference */
        return CLG_OK;
    }
    char s[64];
    if (x->numel > INT_MAX - 3)
        return clg__fail(ctx, CLG_UNSUPPORTED, "dropout: x %s has more than INT_MAX elements",
                         clg__shape_str(x, s, sizeof s));

    /* p * 2^32 is exact in double, so the threshold (and the mask) do not depend on the
     * dtype; the keep rate is 1 - p to within 2^-32. */
    dropout_params prm = {seed, (uint64_t)ceil(p * 4294967296.0), p < 1.0 ? 1.0 / (1.0 - p) : 0.0};
    clg_tensor *y = NULL;
    st = clg__tensor_like(x, &y);
    if (st == CLG_OK) st = dropout_launch(ctx, &prm, y, x, 0.0, "dropout");
    const clg_tensor *inputs[1] = {x};
    if (st == CLG_OK && clg__needs_grad(ctx, 1, inputs))
        st = clg__record(ctx, &dropout_op, y, 1, inputs, &prm, sizeof prm, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}
