/* src/ops/loss.c - losses, each a one-element tensor of shape (1): softmax cross-entropy
 * over integer class targets (mean over the batch), mse (mean) and sum of squares.
 * Kernels: cl/ops/loss.cl (fixed-order reductions, a work-group tree on GPUs and one
 * sequential work-item on CPUs: deterministic, no atomics).
 * Tests: tests/ops/test_loss.c.
 */
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

static const clg_op_def ce_op, mse_op, sumsq_op;

#define REDUCE_MAX_ARGS 8

/* Runs reduction kernel `name` of ops/loss with the listed arguments: CPU style as name_cpu,
 * one work-item; GPU style as one work-group whose local scratch (the tree's, one REAL per
 * item) is its last argument, appended here. LAUNCH_REDUCE counts the arguments. */
static clg_status launch_reduce(clg_context *ctx, const char *name, clg_dtype dt, const char *what,
                                const clg_karg *args, cl_uint nargs) {
    cl_kernel k;
    clg_status st = clg__op_kernel(ctx, "ops/loss", name, dt, NULL, &k);
    if (st != CLG_OK) return st;
    size_t local = 1;
    if (clg__cpu_style(ctx)) return clg__launch(ctx, k, 1, &local, &local, args, nargs, what);
    if (nargs > REDUCE_MAX_ARGS) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %u kernel arguments", what, nargs);
    if ((st = clg__reduce_local_size(ctx, k, what, &local)) != CLG_OK) return st;
    clg_karg with_scratch[REDUCE_MAX_ARGS + 1];
    memcpy(with_scratch, args, nargs * sizeof *args);
    with_scratch[nargs] = CLG_LOCAL(local * clg_dtype_size(dt));
    return clg__launch(ctx, k, 1, &local, &local, with_scratch, nargs + 1, what);
}
#define LAUNCH_REDUCE(ctx, name, dt, what, ...)                                                               \
    launch_reduce((ctx), (name), (dt), (what), (clg_karg[]){__VA_ARGS__}, (cl_uint)CLG_NARGS_(__VA_ARGS__))

/* ---------------------------------------------------------------- softmax cross-entropy */

clg_status clg_softmax_cross_entropy(clg_context *ctx, const clg_tensor *logits, const int32_t *targets,
                                     size_t n_targets, clg_tensor **out) {
    const char *op = "softmax_cross_entropy";
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", op);
    *out = NULL;
    clg_status st = clg__check(ctx, logits, op, "logits");
    if (st == CLG_OK) st = clg__check_int_index(ctx, logits, op);
    if (st != CLG_OK) return st;
    char ls[64];
    if (logits->ndim != 2)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: logits %s must be (N, C)", op,
                         clg__shape_str(logits, ls, sizeof ls));
    const int n = logits->shape[0], c = logits->shape[1];
    if (!targets) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: targets is NULL", op);
    if (n_targets != (size_t)n)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: logits %s has %d rows but there are %zu targets", op,
                         clg__shape_str(logits, ls, sizeof ls), n, n_targets);
    for (size_t i = 0; i < n_targets; i++)
        if (targets[i] < 0 || targets[i] >= c)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: target %zu is %d, outside the classes [0, %d)",
                             op, i, (int)targets[i], c);
    /* The kernels read targets as REAL: f32 holds integers exactly only below 2^24. */
    if (logits->dtype == CLG_F32 && c > (1 << 24))
        return clg__fail(ctx, CLG_UNSUPPORTED, "%s: %d classes are more than f32 indexes exactly", op, c);

    const size_t es = clg_dtype_size(logits->dtype);
    void *host = malloc((size_t)n * es);
    if (!host) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: %d targets", op, n);
    for (int i = 0; i < n; i++) {
        if (logits->dtype == CLG_F64)
            ((double *)host)[i] = (double)targets[i];
        else
            ((float *)host)[i] = (float)targets[i];
    }
    clg_tensor *tgt = NULL, *probs = NULL, *y = NULL; /* (N), (N, C), (1) */
    st = clg_tensor_from_host(ctx, logits->dtype, 1, &n, host, &tgt);
    free(host);
    if (st == CLG_OK) st = clg__tensor_like(logits, &probs);
    const int one = 1;
    if (st == CLG_OK) st = clg__tensor_new(ctx, logits->dtype, 1, &one, &y);
    if (st == CLG_OK) {
        cl_mem ym = clg__mem(y), pm = clg__mem(probs), xm = clg__mem(logits),
               tm = clg__mem(tgt);
        clg_real inv;
        st = LAUNCH_REDUCE(ctx, "ce_forward", logits->dtype, op, CLG_ARG(ym), CLG_ARG(pm), CLG_ARG(xm), CLG_ARG(tm),
                           CLG_ARG(n), CLG_ARG(c), clg__real(logits->dtype, &inv, 1.0 / n));
    }
    if (st == CLG_OK && clg__needs_grad(ctx, 1, &logits)) {
        clg_node *node = NULL;
        st = clg__record(ctx, &ce_op, y, 1, &logits, NULL, 0, &node);
        if (st == CLG_OK) {
            clg__save(node, 0, probs);
            clg__save(node, 1, tgt);
        }
    }
    clg_tensor_free(probs);
    clg_tensor_free(tgt);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

/* dlogits = dy / N * (softmax(logits) - onehot(targets)), from the saved probabilities. */
static clg_status ce_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                              const double *beta) {
    if (!dx[0]) return CLG_OK;
    const clg_tensor *probs = node->saved[0], *tgt = node->saved[1];
    if (!probs || !tgt)
        return clg__fail(ctx, CLG_INVALID_STATE,
                         "softmax_cross_entropy backward: the saved probabilities are gone");
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/loss", "ce_backward", dy->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    const int n = probs->shape[0], c = probs->shape[1];
    cl_mem dxm = clg__mem(dx[0]), pm = clg__mem(probs), tm = clg__mem(tgt),
           dym = clg__mem(dy);
    clg_real inv, br;
    return CLG_LAUNCH_ELEMS(ctx, k, probs->numel, "softmax_cross_entropy backward", CLG_ARG(dxm), CLG_ARG(pm),
                            CLG_ARG(tm), CLG_ARG(dym), clg__real(dy->dtype, &inv, 1.0 / n),
                            clg__real(dy->dtype, &br, beta[0]), CLG_ARG(n), CLG_ARG(c));
}

/* ---------------------------------------------------------------- mse */

clg_status clg_mse_loss(clg_context *ctx, const clg_tensor *pred, const clg_tensor *target,
                        clg_tensor **out) {
    const char *op = "mse_loss";
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", op);
    *out = NULL;
    clg_status st = clg__check(ctx, pred, op, "pred");
    if (st == CLG_OK) st = clg__check(ctx, target, op, "target");
    if (st != CLG_OK) return st;
    if (pred->dtype != target->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dtypes differ: pred is %s, target is %s", op,
                         clg_dtype_name(pred->dtype), clg_dtype_name(target->dtype));
    st = clg__check_same(ctx, pred, target, op, "pred and target");
    if (st == CLG_OK) st = clg__check_int_index(ctx, pred, op);
    if (st != CLG_OK) return st;
    clg_tensor *y;
    const int one = 1;
    st = clg__tensor_new(ctx, pred->dtype, 1, &one, &y);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), am = clg__mem(pred), bm = clg__mem(target);
    const int n = (int)pred->numel;
    clg_real sc;
    st = LAUNCH_REDUCE(ctx, "mse_forward", pred->dtype, op, CLG_ARG(ym), CLG_ARG(am), CLG_ARG(bm),
                       clg__real(pred->dtype, &sc, 1.0 / n), CLG_ARG(n));
    const clg_tensor *in[2] = {pred, target};
    if (st == CLG_OK && clg__needs_grad(ctx, 2, in)) st = clg__record(ctx, &mse_op, y, 2, in, NULL, 0, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

/* d/dpred = 2/n dy (pred - target); d/dtarget is its negative (PyTorch gives the target
 * a gradient too when it asks for one). */
static clg_status mse_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                               const double *beta) {
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/loss", "mse_backward", dy->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    const clg_tensor *a = node->inputs[0], *b = node->inputs[1];
    const int n = (int)a->numel;
    cl_mem dym = clg__mem(dy), am = clg__mem(a), bm = clg__mem(b);
    for (int i = 0; i < 2; i++) {
        if (!dx[i]) continue;
        cl_mem dxm = clg__mem(dx[i]);
        clg_real coef, br;
        st = CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "mse_loss backward", CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(am),
                              CLG_ARG(bm), clg__real(dy->dtype, &coef, (i == 0 ? 2.0 : -2.0) / n),
                              clg__real(dy->dtype, &br, beta[i]), CLG_ARG(n));
        if (st != CLG_OK) return st;
    }
    return CLG_OK;
}

/* ---------------------------------------------------------------- sum of squares */

clg_status clg_sum_of_squares(clg_context *ctx, const clg_tensor *x, clg_tensor **out) {
    const char *op = "sum_of_squares";
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", op);
    *out = NULL;
    clg_status st = clg__check(ctx, x, op, "x");
    if (st == CLG_OK) st = clg__check_int_index(ctx, x, op);
    if (st != CLG_OK) return st;
    clg_tensor *y;
    const int one = 1;
    st = clg__tensor_new(ctx, x->dtype, 1, &one, &y);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), xm = clg__mem(x);
    const int n = (int)x->numel;
    st = LAUNCH_REDUCE(ctx, "sum_squares_forward", x->dtype, op, CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(n));
    if (st == CLG_OK && clg__needs_grad(ctx, 1, &x))
        st = clg__record(ctx, &sumsq_op, y, 1, &x, NULL, 0, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

/* d sum(x^2) = 2 dy x. */
static clg_status sumsq_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                 clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/loss", "sum_squares_backward", dy->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    const clg_tensor *x = node->inputs[0];
    const int n = (int)x->numel;
    cl_mem dxm = clg__mem(dx[0]), dym = clg__mem(dy), xm = clg__mem(x);
    clg_real br;
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "sum_of_squares backward", CLG_ARG(dxm), CLG_ARG(dym),
                            CLG_ARG(xm), clg__real(dy->dtype, &br, beta[0]), CLG_ARG(n));
}

static const clg_op_def ce_op = {"softmax_cross_entropy", ce_backward};
static const clg_op_def mse_op = {"mse_loss", mse_backward};
static const clg_op_def sumsq_op = {"sum_of_squares", sumsq_backward};
