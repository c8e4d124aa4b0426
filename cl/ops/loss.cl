/* cl/ops/loss.cl - losses behind src/ops/loss.c: softmax cross-entropy, mse and sum of
 * squares. Each forward is a reduction to one value in a fixed order (no atomics), in one of
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

/* Row r of softmax cross-entropy: writes prow = softmax(row) and returns
 * logsumexp(row) - row[t]. The row max is subtracted before exp, so large logits do not
 * overflow. */
inline REAL ce_row(__global const REAL *row, __global REAL *prow, const int c, const int t) {
    REAL m = row[0];
    for (int j = 1; j < c; j++) m = fmax(m, row[j]);
    REAL s = (REAL)0;
    for (int j = 0; j < c; j++) s += exp(row[j] - m);
    const REAL lse = m + log(s);
    for (int j = 0; j < c; j++) prow[j] = exp(row[j] - lse);
    return lse - row[t];
}

/* out[0] = inv_n * sum over rows of (logsumexp(x_row) - x_row[t_row]); probs = softmax(x).
 * x, probs (n, c); targets (n) class indices held as REAL (exact below 2^24). */
__kernel void ce_forward(__global REAL *out, __global REAL *probs, __global const REAL *x,
                         __global const REAL *targets, const int n, const int c,
                         const REAL inv_n, __local REAL *scratch) {
    REAL acc = (REAL)0;
    for (int r = (int)get_local_id(0); r < n; r += (int)get_local_size(0))
        acc += ce_row(x + (size_t)r * c, probs + (size_t)r * c, c, (int)targets[r]);
    const REAL total = group_sum(acc, scratch);
    if (get_local_id(0) == 0) out[0] = inv_n * total;
}

/* CPU form: the rows in order. */
__kernel void ce_forward_cpu(__global REAL *out, __global REAL *probs, __global const REAL *x,
                             __global const REAL *targets, const int n, const int c, const REAL inv_n) {
    if (get_global_id(0) != 0) return;
    REAL acc = (REAL)0;
    for (int r = 0; r < n; r++) acc += ce_row(x + (size_t)r * c, probs + (size_t)r * c, c, (int)targets[r]);
    out[0] = inv_n * acc;
}

/* dL/dx = dy * inv_n * (softmax(x) - onehot(t)); dy is the one-element upstream gradient. */
__kernel void ce_backward(__global REAL *dx, __global const REAL *probs,
                          __global const REAL *targets, __global const REAL *dy,
                          const REAL inv_n, const REAL beta, const int n, const int c, const int chunk) {
    FOR_ELEMS(i, n * c, chunk) {
        const int r = i / c, j = i % c;
        const REAL onehot = j == (int)targets[r] ? (REAL)1 : (REAL)0;
        ACCUM(dx[i], dy[0] * inv_n * (probs[i] - onehot));
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
