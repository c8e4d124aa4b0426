/* src/ops/loss.c - losses: the class losses over integer targets (nll_loss, cross_entropy with
 * class weights, label smoothing, ignore_index and PyTorch's reductions; softmax_cross_entropy,
 * its plain mean), mse (mean) and sum of squares, each a one-element tensor of shape (1) unless
 * a class loss's reduction is none.
 * Kernels: cl/ops/loss.cl (fixed-order reductions, a work-group tree on GPUs and one
 * sequential work-item on CPUs: deterministic, no atomics).
 * Tests: tests/ops/test_loss.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

static const clg_op_def sce_op, ce_op, nll_op, mse_op, sumsq_op;

#define REDUCE_MAX_ARGS 16

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

/* ---------------------------------------------------------------- class losses */

/* What a class loss's backward needs, copied into the node. */
typedef struct class_loss_geom {
    int n, c;
    int reduction;      /* clg_loss_reduction */
    int has_weight;     /* saved[SAVED_WEIGHT] holds the (C) class weights */
    double keep, share; /* 1 - label_smoothing and label_smoothing / C (cross-entropy only) */
} class_loss_geom;

/* The node's saved tensors. */
enum { SAVED_TARGETS, SAVED_AUX, SAVED_WEIGHT, SAVED_PROBS };

/* Checks a class loss's input x (N, C), host targets, weight and reduction, and uploads the
 * targets as REAL class indices (exact below 2^24), -1 where a target is *ignore (ignore may
 * be NULL: every target must be a class). *count gets the number not ignored. */
static clg_status class_targets(clg_context *ctx, const char *op, const clg_tensor *x, const int32_t *targets,
                                size_t n_targets, const int32_t *ignore, const clg_tensor *weight,
                                int reduction, clg_tensor **tgt, int *count) {
    *tgt = NULL;
    clg_status st = clg__check(ctx, x, op, "input");
    if (st == CLG_OK) st = clg__check_int_index(ctx, x, op);
    if (st != CLG_OK) return st;
    char ls[64], ws[64];
    if (x->ndim != 2)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: input %s must be (N, C)", op,
                         clg__shape_str(x, ls, sizeof ls));
    const int n = x->shape[0], c = x->shape[1];
    if (!targets) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: targets is NULL", op);
    if (n_targets != (size_t)n)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: input %s has %d rows but there are %zu targets", op,
                         clg__shape_str(x, ls, sizeof ls), n, n_targets);
    if (reduction != CLG_LOSS_MEAN && reduction != CLG_LOSS_SUM && reduction != CLG_LOSS_NONE)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: reduction %d is not one of mean (0), sum (1), none (2)", op, reduction);
    if (weight) {
        if ((st = clg__check(ctx, weight, op, "weight")) != CLG_OK) return st;
        if (weight->ndim != 1 || weight->shape[0] != c)
            return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: weight %s must be (%d), one per class of input %s",
                             op, clg__shape_str(weight, ws, sizeof ws), c, clg__shape_str(x, ls, sizeof ls));
        if (weight->dtype != x->dtype)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: weight is %s but the input is %s", op,
                             clg_dtype_name(weight->dtype), clg_dtype_name(x->dtype));
    }
    int kept = 0;
    for (size_t i = 0; i < n_targets; i++) {
        if (ignore && targets[i] == *ignore) continue;
        if (targets[i] < 0 || targets[i] >= c) {
            if (ignore)
                return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                                 "%s: target %zu is %d, outside the classes [0, %d) and not ignore_index %d",
                                 op, i, (int)targets[i], c, (int)*ignore);
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: target %zu is %d, outside the classes [0, %d)",
                             op, i, (int)targets[i], c);
        }
        kept++;
    }
    /* The kernels read targets as REAL: f32 holds integers exactly only below 2^24. */
    if (x->dtype == CLG_F32 && c > (1 << 24))
        return clg__fail(ctx, CLG_UNSUPPORTED, "%s: %d classes are more than f32 indexes exactly", op, c);

    const size_t es = clg_dtype_size(x->dtype);
    void *host = malloc((size_t)n * es);
    if (!host) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: %d targets", op, n);
    for (int i = 0; i < n; i++) {
        const int32_t t = ignore && targets[i] == *ignore ? -1 : targets[i];
        if (x->dtype == CLG_F64)
            ((double *)host)[i] = (double)t;
        else
            ((float *)host)[i] = (float)t;
    }
    st = clg_tensor_from_host(ctx, x->dtype, 1, &n, host, tgt);
    free(host);
    *count = kept;
    return st;
}

/* The shared forward of nll_loss (probs NULL: x holds log-probabilities) and cross-entropy
 * (x holds logits; probs gets softmax(x) for backward): one reduction launch that writes the
 * loss and aux = (the reduction's scale, the sum of the class weights); see cl/ops/loss.cl. */
static clg_status class_loss(clg_context *ctx, const char *op, const clg_op_def *def, const clg_tensor *x,
                             const int32_t *targets, size_t n_targets, const int32_t *ignore,
                             const clg_tensor *weight, int reduction, double label_smoothing, bool logits,
                             clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", op);
    *out = NULL;
    clg_tensor *tgt = NULL, *probs = NULL, *aux = NULL, *y = NULL; /* (N), (N, C), (2), (1) or (N) */
    int count = 0;
    clg_status st = class_targets(ctx, op, x, targets, n_targets, ignore, weight, reduction, &tgt, &count);
    if (st != CLG_OK) return st;
    const int n = x->shape[0], c = x->shape[1], two = 2, one = 1;
    class_loss_geom g = {.n = n,
                         .c = c,
                         .reduction = reduction,
                         .has_weight = weight != NULL,
                         .keep = 1.0 - label_smoothing,
                         .share = label_smoothing / c};
    if (logits) st = clg__tensor_like(x, &probs);
    if (st == CLG_OK) st = clg__tensor_new(ctx, x->dtype, 1, &two, &aux);
    if (st == CLG_OK) st = clg__tensor_new(ctx, x->dtype, 1, reduction == CLG_LOSS_NONE ? &n : &one, &y);
    if (st == CLG_OK) {
        const clg_dtype dt = x->dtype;
        /* absent weights: any buffer, never read (has_weight 0) */
        cl_mem ym = clg__mem(y), am = clg__mem(aux), xm = clg__mem(x), tm = clg__mem(tgt),
               wm = clg__mem(weight ? weight : x), pm = clg__mem(probs);
        /* Without weights the mean's denominator is the host's count; the kernel sums the
         * weights otherwise. 1 / count rounded once on the host, as before weights existed. */
        clg_real inv;
        const clg_karg inv_k = clg__real(dt, &inv, 1.0 / count);
        if (logits) {
            clg_real keep, share;
            st = LAUNCH_REDUCE(ctx, "xent_forward", dt, op, CLG_ARG(ym), CLG_ARG(pm), CLG_ARG(am),
                               CLG_ARG(xm), CLG_ARG(tm), CLG_ARG(wm), CLG_ARG(g.has_weight),
                               clg__real(dt, &keep, g.keep), clg__real(dt, &share, g.share),
                               CLG_ARG(reduction), CLG_ARG(n), CLG_ARG(c), inv_k);
        } else {
            st = LAUNCH_REDUCE(ctx, "nll_forward", dt, op, CLG_ARG(ym), CLG_ARG(am), CLG_ARG(xm), CLG_ARG(tm),
                               CLG_ARG(wm), CLG_ARG(g.has_weight), CLG_ARG(reduction), CLG_ARG(n), CLG_ARG(c),
                               inv_k);
        }
    }
    if (st == CLG_OK && clg__needs_grad(ctx, 1, &x)) {
        clg_node *node = NULL;
        st = clg__record(ctx, def, y, 1, &x, &g, sizeof g, &node);
        if (st == CLG_OK) {
            clg__save(node, SAVED_TARGETS, tgt);
            clg__save(node, SAVED_AUX, aux);
            if (weight) clg__save(node, SAVED_WEIGHT, weight);
            if (probs) clg__save(node, SAVED_PROBS, probs);
        }
    }
    clg_tensor_free(probs);
    clg_tensor_free(aux);
    clg_tensor_free(tgt);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_nll_loss_params clg_nll_loss_default_params(void) {
    return (clg_nll_loss_params){.weight = NULL, .reduction = CLG_LOSS_MEAN, .ignore_index = -100};
}

clg_cross_entropy_params clg_cross_entropy_default_params(void) {
    return (clg_cross_entropy_params){
        .weight = NULL, .label_smoothing = 0.0, .reduction = CLG_LOSS_MEAN, .ignore_index = -100};
}

clg_status clg_nll_loss(clg_context *ctx, const clg_tensor *log_probs, const int32_t *targets,
                        size_t n_targets, const clg_nll_loss_params *p, clg_tensor **out) {
    const clg_nll_loss_params q = p ? *p : clg_nll_loss_default_params();
    return class_loss(ctx, "nll_loss", &nll_op, log_probs, targets, n_targets, &q.ignore_index, q.weight,
                      (int)q.reduction, 0.0, false, out);
}

clg_status clg_cross_entropy(clg_context *ctx, const clg_tensor *logits, const int32_t *targets,
                             size_t n_targets, const clg_cross_entropy_params *p, clg_tensor **out) {
    const clg_cross_entropy_params q = p ? *p : clg_cross_entropy_default_params();
    if (ctx && !(q.label_smoothing >= 0.0 && q.label_smoothing <= 1.0)) {
        if (out) *out = NULL;
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "cross_entropy: label_smoothing %g is outside [0, 1]",
                         q.label_smoothing);
    }
    return class_loss(ctx, "cross_entropy", &ce_op, logits, targets, n_targets, &q.ignore_index, q.weight,
                      (int)q.reduction, q.label_smoothing, true, out);
}

/* Every target a class, mean: the same kernels with a scale of exactly 1/N, so its loss and
 * gradient keep their bits (the README's accuracies and the determinism tests rest on them). */
clg_status clg_softmax_cross_entropy(clg_context *ctx, const clg_tensor *logits, const int32_t *targets,
                                     size_t n_targets, clg_tensor **out) {
    return class_loss(ctx, "softmax_cross_entropy", &sce_op, logits, targets, n_targets, NULL, NULL,
                      CLG_LOSS_MEAN, 0.0, true, out);
}

/* One element-wise launch from what the forward saved; see xent_backward / nll_backward in
 * cl/ops/loss.cl for the formulas. */
static clg_status class_loss_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                      clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    class_loss_geom g;
    memcpy(&g, node->params, sizeof g);
    const bool logits = node->op != &nll_op;
    char what[48];
    snprintf(what, sizeof what, "%s backward", node->op->name);
    const clg_tensor *tgt = node->saved[SAVED_TARGETS], *aux = node->saved[SAVED_AUX],
                     *weight = node->saved[SAVED_WEIGHT], *probs = node->saved[SAVED_PROBS];
    if (!tgt || !aux || (logits && !probs) || (g.has_weight && !weight))
        return clg__fail(ctx, CLG_INVALID_STATE, "%s: the saved state is gone", what);
    const size_t dy_want = g.reduction == CLG_LOSS_NONE ? (size_t)g.n : 1;
    if (dy->numel != dy_want || dx[0]->numel != (size_t)g.n * g.c || dy->dtype != dx[0]->dtype ||
        dy->dtype != aux->dtype)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: dy (%zu elements) or dx (%zu) do not fit (%d, %d)",
                         what, dy->numel, dx[0]->numel, g.n, g.c);
    const clg_dtype dt = dy->dtype;
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/loss", logits ? "xent_backward" : "nll_backward", dt, NULL, &k);
    if (st != CLG_OK) return st;
    const int per_row = g.reduction == CLG_LOSS_NONE;
    cl_mem dxm = clg__mem(dx[0]), tm = clg__mem(tgt), am = clg__mem(aux), dym = clg__mem(dy),
           wm = clg__mem(weight ? weight : tgt), pm = clg__mem(probs);
    clg_real br;
    const clg_karg beta_k = clg__real(dt, &br, beta[0]);
    if (logits) {
        clg_real keep, share;
        return CLG_LAUNCH_ELEMS(ctx, k, (size_t)g.n * g.c, what, CLG_ARG(dxm), CLG_ARG(pm), CLG_ARG(tm),
                                CLG_ARG(wm), CLG_ARG(am), CLG_ARG(dym), CLG_ARG(g.has_weight),
                                clg__real(dt, &keep, g.keep), clg__real(dt, &share, g.share),
                                CLG_ARG(per_row), beta_k, CLG_ARG(g.c), CLG_ARG(g.n));
    }
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)g.n * g.c, what, CLG_ARG(dxm), CLG_ARG(tm), CLG_ARG(wm),
                            CLG_ARG(am), CLG_ARG(dym), CLG_ARG(g.has_weight), CLG_ARG(per_row), beta_k,
                            CLG_ARG(g.c), CLG_ARG(g.n));
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

static const clg_op_def sce_op = {"softmax_cross_entropy", class_loss_backward};
static const clg_op_def ce_op = {"cross_entropy", class_loss_backward};
static const clg_op_def nll_op = {"nll_loss", class_loss_backward};
static const clg_op_def mse_op = {"mse_loss", mse_backward};
static const clg_op_def sumsq_op = {"sum_of_squares", sumsq_backward};
