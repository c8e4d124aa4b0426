/* cl/ops/batchnorm.cl - batch_norm2d over (N, C, H, W): per-channel statistics, the
 * normalisation, and backward. Host side: src/ops/batchnorm.c. Tests: tests/ops/test_batchnorm.c.
 * Per-channel sums are one work-group per channel with a tree reduction in local memory:
 * a fixed summation order, no atomics, so results repeat bit for bit on a device.
 * The work-group size (a power of two) is chosen by the host from the kernel's limits.
 */
#include "common/defs.h"

/* Sums scratch[0..lsz) into scratch[0]; every work-item must call it. */
inline REAL group_sum(__local REAL *scratch, const REAL v) {
    const int lid = (int)get_local_id(0);
    const int lsz = (int)get_local_size(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = lsz / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const REAL total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next call */
    return total;
}

/* Work-group c: mean and 1/sqrt(biased var + eps) of channel c over its M = N * HW values,
 * in two passes (mean first, then squared deviations) for accuracy. When update_running,
 * running stats move towards the batch ones with PyTorch's momentum rule, the variance
 * unbiased (sum / (M - 1)). */
__kernel void bn_stats(__global const REAL *x, __global REAL *mean, __global REAL *invstd,
                       __global REAL *run_mean, __global REAL *run_var, const int update_running,
                       const REAL momentum, const REAL eps, const int N, const int C, const int HW,
                       __local REAL *scratch) {
    const int c = (int)get_group_id(0);
    const int lid = (int)get_local_id(0);
    const int lsz = (int)get_local_size(0);
    const int M = N * HW;
    REAL acc = 0;
    for (int m = lid; m < M; m += lsz)
        acc += x[((size_t)(m / HW) * C + c) * HW + m % HW];
    const REAL mu = group_sum(scratch, acc) / (REAL)M;
    acc = 0;
    for (int m = lid; m < M; m += lsz) {
        const REAL d = x[((size_t)(m / HW) * C + c) * HW + m % HW] - mu;
        acc += d * d;
    }
    const REAL sq = group_sum(scratch, acc);
    if (lid == 0) {
        mean[c] = mu;
        invstd[c] = (REAL)1 / sqrt(sq / (REAL)M + eps);
        if (update_running) {
            run_mean[c] = ((REAL)1 - momentum) * run_mean[c] + momentum * mu;
            run_var[c] = ((REAL)1 - momentum) * run_var[c] + momentum * (sq / (REAL)(M - 1));
        }
    }
}

/* Evaluation: the statistics are the running ones. One work-item per channel. */
__kernel void bn_eval_stats(__global REAL *mean, __global REAL *invstd, __global const REAL *run_mean,
                            __global const REAL *run_var, const REAL eps, const int C) {
    const int c = GID0;
    if (c >= C) return;
    mean[c] = run_mean[c];
    invstd[c] = (REAL)1 / sqrt(run_var[c] + eps);
}

/* y = (x - mean) * invstd * weight + bias, per element; weight/bias skipped when absent
 * (their buffer arguments are then placeholders, never read). */
__kernel void bn_normalize(__global REAL *y, __global const REAL *x, __global const REAL *mean,
                           __global const REAL *invstd, __global const REAL *weight,
                           __global const REAL *bias, const int has_weight, const int has_bias, const int C,
                           const int HW, const int n) {
    const int i = GID0;
    if (i >= n) return;
    const int c = (i / HW) % C;
    REAL v = (x[i] - mean[c]) * invstd[c];
    if (has_weight) v *= weight[c];
    if (has_bias) v += bias[c];
    y[i] = v;
}

/* Work-group c: sum_dy[c] = sum of dy, sum_dyx[c] = sum of dy * xhat over channel c, where
 * xhat = (x - mean) * invstd. They are dbias and dweight, and feed dx in training. */
__kernel void bn_bwd_reduce(__global REAL *sum_dy, __global REAL *sum_dyx, __global const REAL *dy,
                            __global const REAL *x, __global const REAL *mean, __global const REAL *invstd,
                            const int N, const int C, const int HW, __local REAL *scratch) {
    const int c = (int)get_group_id(0);
    const int lid = (int)get_local_id(0);
    const int lsz = (int)get_local_size(0);
    const int M = N * HW;
    const REAL mu = mean[c], is = invstd[c];
    REAL a = 0, b = 0;
    for (int m = lid; m < M; m += lsz) {
        const size_t i = ((size_t)(m / HW) * C + c) * HW + m % HW;
        a += dy[i];
        b += dy[i] * (x[i] - mu) * is;
    }
    const REAL sa = group_sum(scratch, a);
    const REAL sb = group_sum(scratch, b);
    if (lid == 0) {
        sum_dy[c] = sa;
        sum_dyx[c] = sb;
    }
}

/* dx = beta * dx + g, with s = weight * invstd and
 *   training:   g = s * (dy - sum_dy / M - xhat * sum_dyx / M)  (the batch statistics
 *               depend on x too)
 *   evaluation: g = s * dy                                      (running stats are constants) */
__kernel void bn_bwd_dx(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                        __global const REAL *mean, __global const REAL *invstd, __global const REAL *weight,
                        __global const REAL *sum_dy, __global const REAL *sum_dyx, const int has_weight,
                        const int training, const int N, const int C, const int HW, const REAL beta,
                        const int n) {
    const int i = GID0;
    if (i >= n) return;
    const int c = (i / HW) % C;
    const REAL s = has_weight ? weight[c] * invstd[c] : invstd[c];
    REAL g;
    if (training) {
        const REAL inv_m = (REAL)1 / (REAL)(N * HW);
        const REAL xhat = (x[i] - mean[c]) * invstd[c];
        g = s * (dy[i] - sum_dy[c] * inv_m - xhat * sum_dyx[c] * inv_m);
    } else {
        g = s * dy[i];
    }
    dx[i] = beta == (REAL)0 ? g : beta * dx[i] + g;
}
