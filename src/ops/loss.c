/* src/ops/loss.c - losses, each a one-element tensor of shape (1): softmax cross-entropy
 * over integer class targets (mean over the batch), mse (mean) and sum of squares.
 * Kernels: cl/ops/loss.cl (fixed-order reductions, a work-group tree on GPUs and one
 * sequential work-item on CPUs: deterministic, no atomics).
 * Tests: tests/ops/test_loss.c.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ops/op.h"

static const clg_op_def ce_op, mse_op, sumsq_op;


/* The reduction kernels' work-group size: a power of two (the tree halves it), at most
 * 256 and what the device allows for this kernel. */
static clg_status reduce_local_size(clg_context *ctx, cl_kernel k, size_t *local) {
    size_t max = 0;
    cl_int err = clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof max, &max, NULL);
    if (err != CL_SUCCESS) return clg__cl_fail(ctx, err, "clGetKernelWorkGroupInfo");
    size_t l = 1;
    while (l * 2 <= max && l * 2 <= 256)
        l *= 2;
    *local = l;
    return CLG_OK;
}

/* Runs reduction kernel `name` of ops/loss with args: on GPUs as one work-group with local
 * scratch appended (args has room for it), on CPUs its _seq form as one work-item. */
static clg_status launch_reduce(clg_context *ctx, const char *name, clg_dtype dt, clg_karg *args,
                                cl_uint nargs, const char *what) {
    const bool cpu = clg__cpu_style(ctx);
    char kname[64];
    snprintf(kname, sizeof kname, "%s%s", name, cpu ? "_seq" : "");
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/loss", kname, dt, NULL, &k);
    if (st != CLG_OK) return st;
    size_t local = 1;
    if (cpu) return clg__launch(ctx, k, 1, &local, &local, args, nargs, what);
    st = reduce_local_size(ctx, k, &local);
    if (st != CLG_OK) return st;
    args[nargs] = CLG_LOCAL(local * clg_dtype_size(dt));
    return clg__launch(ctx, k, 1, &local, &local, args, nargs + 1, what);
}

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
        cl_mem ym = y->buf->block.mem, pm = probs->buf->block.mem, xm = logits->buf->block.mem,
               tm = tgt->buf->block.mem;
        clg_real inv;
        clg_karg args[9] = {CLG_ARG(ym),
                            CLG_ARG(pm),
                            CLG_ARG(xm),
                            CLG_ARG(tm),
                            CLG_ARG(n),
                            CLG_ARG(c),
                            clg__real(logits->dtype, &inv, 1.0 / n)};
        st = launch_reduce(ctx, "ce_forward", logits->dtype, args, 7, op);
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
    cl_mem dxm = dx[0]->buf->block.mem, pm = probs->buf->block.mem, tm = tgt->buf->block.mem,
           dym = dy->buf->block.mem;
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
    cl_mem ym = y->buf->block.mem, am = pred->buf->block.mem, bm = target->buf->block.mem;
    const int n = (int)pred->numel;
    clg_real sc;
    clg_karg args[6] = {CLG_ARG(ym), CLG_ARG(am), CLG_ARG(bm), clg__real(pred->dtype, &sc, 1.0 / n),
                        CLG_ARG(n)};
    st = launch_reduce(ctx, "mse_forward", pred->dtype, args, 5, op);
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
    cl_mem dym = dy->buf->block.mem, am = a->buf->block.mem, bm = b->buf->block.mem;
    for (int i = 0; i < 2; i++) {
        if (!dx[i]) continue;
        cl_mem dxm = dx[i]->buf->block.mem;
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
    cl_mem ym = y->buf->block.mem, xm = x->buf->block.mem;
    const int n = (int)x->numel;
    clg_karg args[4] = {CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(n)};
    st = launch_reduce(ctx, "sum_squares_forward", x->dtype, args, 3, op);
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
    cl_mem dxm = dx[0]->buf->block.mem, dym = dy->buf->block.mem, xm = x->buf->block.mem;
    clg_real br;
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "sum_of_squares backward", CLG_ARG(dxm), CLG_ARG(dym),
                            CLG_ARG(xm), clg__real(dy->dtype, &br, beta[0]), CLG_ARG(n));
}

static const clg_op_def ce_op = {"softmax_cross_entropy", ce_backward};
static const clg_op_def mse_op = {"mse_loss", mse_backward};
static const clg_op_def sumsq_op = {"sum_of_squares", sumsq_backward};
