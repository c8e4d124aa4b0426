/* cl/ops/loss.cl - losses behind src/ops/loss.c: the class losses (nll_loss, cross-entropy),
 * mse and sum of squares. Each forward is a reduction to one value in a fixed order (no atomics), in one of
 * two forms chosen by the host per kernel style (clg__op_kernel, src/ops/op.h):
 *  - GPU: one work-group; every work-item accumulates a strided share, then a tree in local
 *    memory adds the shares (the local size must be a power of two);
 *  - CPU (_cpu): one work-item walks everything in order, in 8 lanes where the data are
 *    contiguous (a work-group runs on one core there anyway, barriers only cost).
 * Backward kernels are element-wise (FOR_ELEMS). Tests: tests/ops/test_loss.c.
 */
#include "common/defs.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define REAL8 CAT(REAL, 8)

/* The 8 lanes of a sequential sum, added in a fixed order. */
inline REAL lanes_sum(const REAL8 a) {
    return ((a.s0 + a.s1) + (a.s2 + a.s3)) + ((a.s4 + a.s5) + (a.s6 + a.s7));
}

/* The sum over the work-group of each item's v; every item gets the total. */
REAL group_sum(REAL v, __local REAL *scratch) {
    const int lid = (int)get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = (int)get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return scratch[0];
}

/* ---------------------------------------------------------------- class losses
 * nll_loss and cross-entropy over (n, c) with targets held as REAL class indices (exact below
 * 2^24), -1 for an ignored sample. A sample's loss, with w = weight (1 without):
 *   nll:           l = -w[t] x[t]                  (x: log-probabilities)
 *   cross-entropy: l = keep * w[t] (lse - x[t]) + share * sum_j w[j] (lse - x[j])
 * (x: logits, lse = logsumexp(x), keep = 1 - label_smoothing, share = label_smoothing / c).
 * The forward is one launch: the samples' losses (out[r] for reduction none, else summed in
 * a fixed order), and aux = (scale, sum of the weights) for backward: scale = 1 / sum(w[t])
 * over the samples kept for the mean (inv_count, rounded on the host, without weights), else
 * 1. The backward is one element-wise launch. */
#define LOSS_MEAN 0
#define LOSS_NONE 2

/* Row r of a class loss: writes prow = softmax(row) and returns logsumexp(row). The row max is
 * subtracted before exp, so large logits do not overflow. */
inline REAL softmax_row(__global const REAL *row, __global REAL *prow, const int c) {
    REAL m = row[0];
    for (int j = 1; j < c; j++) m = fmax(m, row[j]);
    REAL s = (REAL)0;
    for (int j = 0; j < c; j++) s += exp(row[j] - m);
    const REAL lse = m + log(s);
    for (int j = 0; j < c; j++) prow[j] = exp(row[j] - lse);
    return lse;
}

/* Cross-entropy of row r (t >= 0): the formula above. Without weights and smoothing it is
 * exactly lse - row[t], the plain softmax cross-entropy's value. */
inline REAL xent_row(__global const REAL *row, const REAL lse, const int c, const int t,
                     __global const REAL *weight, const int has_weight, const REAL keep, const REAL share) {
    REAL l = lse - row[t];
    if (has_weight) l *= weight[t];
    if (share != (REAL)0) { /* skipped at 0: a -inf logit elsewhere must not give 0 * inf */
        REAL smooth = (REAL)0;
        for (int j = 0; j < c; j++) smooth += (has_weight ? weight[j] : (REAL)1) * (lse - row[j]);
        l = keep * l + share * smooth;
    }
    return l;
}

/* aux[1]: the sum of the class weights (c without), which the smoothed gradient needs. */
inline REAL weight_total(__global const REAL *weight, const int has_weight, const int c) {
    if (!has_weight) return (REAL)c;
    REAL s = (REAL)0;
    for (int j = 0; j < c; j++) s += weight[j];
    return s;
}

/* The end of a class-loss forward (one item): the mean's scale, the reduced loss, aux. */
inline void class_loss_finish(__global REAL *out, __global REAL *aux, const REAL total, const REAL wsum,
                              __global const REAL *weight, const int has_weight, const int reduction,
                              const int c, const REAL inv_count) {
    const REAL scale =
        reduction == LOSS_MEAN ? (has_weight ? (REAL)1 / wsum : inv_count) : (REAL)1;
    if (reduction != LOSS_NONE) out[0] = scale * total;
    aux[0] = scale;
    aux[1] = weight_total(weight, has_weight, c);
}

/* Cross-entropy forward, one work-group: each item takes every lsz-th row, a tree adds the
 * shares. probs (n, c) gets softmax(x) for every row, ignored ones too (their gradient is
 * NaN where PyTorch's is: exp(NaN) * 0). */
__kernel void xent_forward(__global REAL *out, __global REAL *probs, __global REAL *aux,
                           __global const REAL *x, __global const REAL *targets,
                           __global const REAL *weight, const int has_weight, const REAL keep,
                           const REAL share, const int reduction, const int n, const int c,
                           const REAL inv_count, __local REAL *scratch) {
    REAL acc = (REAL)0, wacc = (REAL)0;
    for (int r = (int)get_local_id(0); r < n; r += (int)get_local_size(0)) {
        __global const REAL *row = x + (size_t)r * c;
        const REAL lse = softmax_row(row, probs + (size_t)r * c, c);
        const int t = (int)targets[r];
        const REAL l = t < 0 ? (REAL)0 : xent_row(row, lse, c, t, weight, has_weight, keep, share);
        if (reduction == LOSS_NONE) out[r] = l;
        acc += l;
        if (has_weight && t >= 0) wacc += weight[t];
    }
    const REAL total = group_sum(acc, scratch);
    barrier(CLK_LOCAL_MEM_FENCE); /* every item has read the first tree's result */
    const REAL wsum = group_sum(wacc, scratch);
    if (get_local_id(0) == 0)
        class_loss_finish(out, aux, total, wsum, weight, has_weight, reduction, c, inv_count);
}

/* CPU form: the rows in order. */
__kernel void xent_forward_cpu(__global REAL *out, __global REAL *probs, __global REAL *aux,
                               __global const REAL *x, __global const REAL *targets,
                               __global const REAL *weight, const int has_weight, const REAL keep,
                               const REAL share, const int reduction, const int n, const int c,
                               const REAL inv_count) {
    if (get_global_id(0) != 0) return;
    REAL acc = (REAL)0, wsum = (REAL)0;
    for (int r = 0; r < n; r++) {
        __global const REAL *row = x + (size_t)r * c;
        const REAL lse = softmax_row(row, probs + (size_t)r * c, c);
        const int t = (int)targets[r];
        const REAL l = t < 0 ? (REAL)0 : xent_row(row, lse, c, t, weight, has_weight, keep, share);
        if (reduction == LOSS_NONE) out[r] = l;
        acc += l;
        if (has_weight && t >= 0) wsum += weight[t];
    }
    class_loss_finish(out, aux, acc, wsum, weight, has_weight, reduction, c, inv_count);
}

/* d l / d x[j] = p[j] (keep w[t] + share W) - keep w[t] [j == t] - share w[j], W = aux[1]
 * (p = softmax(x)), times dy (per row for reduction none) and aux[0]. Without weights and
 * smoothing: dy aux[0] (p[j] - [j == t]), the plain cross-entropy's gradient bit for bit.
 * An ignored row gets p * 0: 0, or NaN where its softmax is, as in PyTorch. */
__kernel void xent_backward(__global REAL *dx, __global const REAL *probs, __global const REAL *targets,
                            __global const REAL *weight, __global const REAL *aux, __global const REAL *dy,
                            const int has_weight, const REAL keep, const REAL share, const int per_row,
                            const REAL beta, const int c, const int n, const int chunk) {
    FOR_ELEMS(i, n * c, chunk) {
        const int r = i / c, j = i % c, t = (int)targets[r];
        REAL v;
        if (t < 0) {
            v = probs[i] * (REAL)0;
        } else {
            const REAL wt = has_weight ? weight[t] : (REAL)1;
            REAL a = wt, b = j == t ? wt : (REAL)0;
            if (share != (REAL)0) {
                a = keep * wt + share * aux[1];
                b = keep * b + share * (has_weight ? weight[j] : (REAL)1);
            }
            v = dy[per_row ? r : 0] * aux[0] * (probs[i] * a - b);
        }
        ACCUM(dx[i], v);
    }
}

/* nll_loss forward, one work-group (see xent_forward). */
__kernel void nll_forward(__global REAL *out, __global REAL *aux, __global const REAL *x,
                          __global const REAL *targets, __global const REAL *weight, const int has_weight,
                          const int reduction, const int n, const int c, const REAL inv_count,
                          __local REAL *scratch) {
    REAL acc = (REAL)0, wacc = (REAL)0;
    for (int r = (int)get_local_id(0); r < n; r += (int)get_local_size(0)) {
        const int t = (int)targets[r];
        const REAL wt = t < 0 ? (REAL)0 : has_weight ? weight[t] : (REAL)1;
        const REAL l = t < 0 ? (REAL)0 : -(wt * x[(size_t)r * c + t]);
        if (reduction == LOSS_NONE) out[r] = l;
        acc += l;
        wacc += wt;
    }
    const REAL total = group_sum(acc, scratch);
    barrier(CLK_LOCAL_MEM_FENCE);
    const REAL wsum = group_sum(wacc, scratch);
    if (get_local_id(0) == 0)
        class_loss_finish(out, aux, total, wsum, weight, has_weight, reduction, c, inv_count);
}

/* CPU form: the rows in order. */
__kernel void nll_forward_cpu(__global REAL *out, __global REAL *aux, __global const REAL *x,
                              __global const REAL *targets, __global const REAL *weight,
                              const int has_weight, const int reduction, const int n, const int c,
                              const REAL inv_count) {
    if (get_global_id(0) != 0) return;
    REAL acc = (REAL)0, wsum = (REAL)0;
    for (int r = 0; r < n; r++) {
        const int t = (int)targets[r];
        const REAL wt = t < 0 ? (REAL)0 : has_weight ? weight[t] : (REAL)1;
        const REAL l = t < 0 ? (REAL)0 : -(wt * x[(size_t)r * c + t]);
        if (reduction == LOSS_NONE) out[r] = l;
        acc += l;
        wsum += wt;
    }
    class_loss_finish(out, aux, acc, wsum, weight, has_weight, reduction, c, inv_count);
}

/* d l / d x[j] = -w[t] [j == t], times dy and aux[0]: only the target's entry, so a NaN
 * elsewhere in the row (or in an ignored row) leaves the gradient 0, as in PyTorch. */
__kernel void nll_backward(__global REAL *dx, __global const REAL *targets, __global const REAL *weight,
                           __global const REAL *aux, __global const REAL *dy, const int has_weight,
                           const int per_row, const REAL beta, const int c, const int n, const int chunk) {
    FOR_ELEMS(i, n * c, chunk) {
        const int r = i / c, j = i % c, t = (int)targets[r];
        const REAL wt = has_weight && t >= 0 ? weight[t] : (REAL)1;
        ACCUM(dx[i], j == t ? -(dy[per_row ? r : 0] * aux[0] * wt) : (REAL)0);
    }
}

/* out[0] = scale * sum((a - b)^2): mse with scale = 1/n. */
__kernel void mse_forward(__global REAL *out, __global const REAL *a, __global const REAL *b,
                          const REAL scale, const int n, __local REAL *scratch) {
    REAL acc = (REAL)0;
    for (int i = (int)get_local_id(0); i < n; i += (int)get_local_size(0)) {
        const REAL d = a[i] - b[i];
        acc += d * d;
    }
    const REAL total = group_sum(acc, scratch);
    if (get_local_id(0) == 0) out[0] = scale * total;
}

/* CPU form. */
__kernel void mse_forward_cpu(__global REAL *out, __global const REAL *a, __global const REAL *b,
                              const REAL scale, const int n) {
    if (get_global_id(0) != 0) return;
    const int n8 = n & ~7;
    REAL8 acc8 = (REAL8)(0);
    REAL acc = (REAL)0;
    for (int i = 0; i < n8; i += 8) {
        const REAL8 d = vload8(0, a + i) - vload8(0, b + i);
        acc8 += d * d;
    }
    for (int i = n8; i < n; i++) {
        const REAL d = a[i] - b[i];
        acc += d * d;
    }
    out[0] = scale * (lanes_sum(acc8) + acc);
}

/* dx = beta * dx + coef * dy * (a - b): coef = 2/n for pred, -2/n for target. */
__kernel void mse_backward(__global REAL *dx, __global const REAL *dy, __global const REAL *a,
                           __global const REAL *b, const REAL coef, const REAL beta,
                           const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], coef * dy[0] * (a[i] - b[i]));
    }
}

/* out[0] = sum(x^2). */
__kernel void sum_squares_forward(__global REAL *out, __global const REAL *x, const int n,
                                  __local REAL *scratch) {
    REAL acc = (REAL)0;
    for (int i = (int)get_local_id(0); i < n; i += (int)get_local_size(0)) acc += x[i] * x[i];
    const REAL total = group_sum(acc, scratch);
    if (get_local_id(0) == 0) out[0] = total;
}

/* CPU form. */
__kernel void sum_squares_forward_cpu(__global REAL *out, __global const REAL *x, const int n) {
    if (get_global_id(0) != 0) return;
    const int n8 = n & ~7;
    REAL8 acc8 = (REAL8)(0);
    REAL acc = (REAL)0;
    for (int i = 0; i < n8; i += 8) {
        const REAL8 v = vload8(0, x + i);
        acc8 += v * v;
    }
    for (int i = n8; i < n; i++) acc += x[i] * x[i];
    out[0] = lanes_sum(acc8) + acc;
}

/* dx = beta * dx + 2 * dy * x. */
__kernel void sum_squares_backward(__global REAL *dx, __global const REAL *dy,
                                   __global const REAL *x, const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], (REAL)2 * dy[0] * x[i]);
    }
}
