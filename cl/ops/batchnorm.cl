/* cl/ops/batchnorm.cl - batch_norm2d over (N, C, H, W): per-channel statistics, the
 * normalisation, and backward. Host side: src/ops/batchnorm.c. Tests: tests/ops/test_batchnorm.c.
 * Two forms, `name` (GPU style) and `name_cpu` (CPU style), chosen by the host through
 * clg__op_kernel (src/ops/op.h), same arithmetic per element:
 *  - GPU: per-channel sums are one work-group per channel with a tree in local memory (the
 *    work-group size, a power of two, comes from the kernel's limits); element kernels take
 *    one element per work-item (FOR_ELEMS, chunk 1).
 *  - CPU: one work-item per channel sums its planes in order in 8 lanes (wide vector adds,
 *    no barriers); element kernels take whole (n, c) planes, so the channel is known per
 *    plane instead of divided out per element.
 * Either way the summation order is fixed (no atomics): results repeat bit for bit on a device.
 * The _relu kernels (batch_norm2d_relu) are the same inline bodies with ReLU folded in:
 * max(0, y) written by the forward, and in backward dy masked by the saved output z (z > 0 or
 * NaN, relu_backward's test) where it is read, so their bits are batch_norm2d then relu's.
 */
#include "common/defs.h"

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define REAL8 CAT(REAL, 8)

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

/* The 8 lanes of a sequential sum, added in a fixed order. */
inline REAL lanes_sum(const REAL8 a) {
    return ((a.s0 + a.s1) + (a.s2 + a.s3)) + ((a.s4 + a.s5) + (a.s6 + a.s7));
}

/* PyTorch's momentum rule: running stats move towards the batch's mean and unbiased variance. */
inline void bn_update_running(const int c, const REAL mu, const REAL var_unbiased, __global REAL *run_mean,
                              __global REAL *run_var, const REAL momentum) {
    run_mean[c] = ((REAL)1 - momentum) * run_mean[c] + momentum * mu;
    run_var[c] = ((REAL)1 - momentum) * run_var[c] + momentum * var_unbiased;
}

/* Writes channel c's statistics from its sum and sum of squared deviations over M values;
 * when update_running, running stats move too, the variance unbiased (sum / (M - 1)). */
inline void bn_store_stats(const int c, const REAL mu, const REAL sq, const int M, __global REAL *mean,
                           __global REAL *invstd, __global REAL *run_mean, __global REAL *run_var,
                           const int update_running, const REAL momentum, const REAL eps) {
    mean[c] = mu;
    invstd[c] = (REAL)1 / sqrt(sq / (REAL)M + eps);
    if (update_running) bn_update_running(c, mu, sq / (REAL)(M - 1), run_mean, run_var, momentum);
}

/* Every work-item of group c: the mean *mu of channel c over its M = N * HW values and the
 * sum *sq of squared deviations from it, in two passes (mean first) for accuracy. */
inline void bn_channel_moments(__global const REAL *x, const int c, const int N, const int C, const int HW,
                               __local REAL *scratch, REAL *mu, REAL *sq) {
    const int lid = (int)get_local_id(0);
    const int lsz = (int)get_local_size(0);
    const int M = N * HW;
    REAL acc = 0;
    for (int m = lid; m < M; m += lsz)
        acc += x[((size_t)(m / HW) * C + c) * HW + m % HW];
    const REAL mean = group_sum(scratch, acc) / (REAL)M;
    acc = 0;
    for (int m = lid; m < M; m += lsz) {
        const REAL d = x[((size_t)(m / HW) * C + c) * HW + m % HW] - mean;
        acc += d * d;
    }
    *sq = group_sum(scratch, acc);
    *mu = mean;
}

/* Work-group c: mean and 1/sqrt(biased var + eps) of channel c. */
__kernel void bn_stats(__global const REAL *x, __global REAL *mean, __global REAL *invstd,
                       __global REAL *run_mean, __global REAL *run_var, const int update_running,
                       const REAL momentum, const REAL eps, const int N, const int C, const int HW,
                       __local REAL *scratch) {
    const int c = (int)get_group_id(0);
    REAL mu, sq;
    bn_channel_moments(x, c, N, C, HW, scratch, &mu, &sq);
    if (get_local_id(0) == 0)
        bn_store_stats(c, mu, sq, N * HW, mean, invstd, run_mean, run_var, update_running, momentum, eps);
}

/* Synchronized batch norm's local part: moments (2, C) gets this replica's mean of channel c
 * and its sum of squared deviations; the host combines the replicas' in double. */
__kernel void bn_moments(__global const REAL *x, __global REAL *moments, const int N, const int C, const int HW,
                         __local REAL *scratch) {
    const int c = (int)get_group_id(0);
    REAL mu, sq;
    bn_channel_moments(x, c, N, C, HW, scratch, &mu, &sq);
    if (get_local_id(0) == 0) {
        moments[c] = mu;
        moments[C + c] = sq;
    }
}

/* CPU form of bn_channel_moments: one work-item walks channel c's N planes in order. */
inline void bn_channel_moments_cpu(__global const REAL *x, const int c, const int N, const int C, const int HW,
                                   REAL *mu_out, REAL *sq_out) {
    const int M = N * HW, H8 = HW & ~7;
    REAL8 acc8 = (REAL8)(0);
    REAL acc = 0;
    for (int n = 0; n < N; ++n) {
        __global const REAL *p = x + ((size_t)n * C + c) * HW; /* (HW) */
        for (int j = 0; j < H8; j += 8)
            acc8 += vload8(0, p + j);
        for (int j = H8; j < HW; ++j)
            acc += p[j];
    }
    const REAL mu = (lanes_sum(acc8) + acc) / (REAL)M;
    acc8 = (REAL8)(0);
    acc = 0;
    for (int n = 0; n < N; ++n) {
        __global const REAL *p = x + ((size_t)n * C + c) * HW;
        for (int j = 0; j < H8; j += 8) {
            const REAL8 d = vload8(0, p + j) - mu;
            acc8 += d * d;
        }
        for (int j = H8; j < HW; ++j) {
            const REAL d = p[j] - mu;
            acc += d * d;
        }
    }
    *mu_out = mu;
    *sq_out = lanes_sum(acc8) + acc;
}

/* CPU form of bn_stats: work-item c. */
__kernel void bn_stats_cpu(__global const REAL *x, __global REAL *mean, __global REAL *invstd,
                           __global REAL *run_mean, __global REAL *run_var, const int update_running,
                           const REAL momentum, const REAL eps, const int N, const int C, const int HW) {
    const int c = GID0;
    if (c >= C) return;
    REAL mu, sq;
    bn_channel_moments_cpu(x, c, N, C, HW, &mu, &sq);
    bn_store_stats(c, mu, sq, N * HW, mean, invstd, run_mean, run_var, update_running, momentum, eps);
}

/* CPU form of bn_moments: work-item c. */
__kernel void bn_moments_cpu(__global const REAL *x, __global REAL *moments, const int N, const int C,
                             const int HW) {
    const int c = GID0;
    if (c >= C) return;
    REAL mu, sq;
    bn_channel_moments_cpu(x, c, N, C, HW, &mu, &sq);
    moments[c] = mu;
    moments[C + c] = sq;
}

/* Synchronized batch norm: the global batch's statistics, stats (3, C) = mean, biased and
 * unbiased variance that the host combined from every replica's moments; every replica
 * computes the same invstd and running stats from them. */
__kernel void bn_global_stats(__global const REAL *stats, __global REAL *mean, __global REAL *invstd,
                              __global REAL *run_mean, __global REAL *run_var, const int update_running,
                              const REAL momentum, const REAL eps, const int C, const int chunk) {
    FOR_ELEMS(c, C, chunk) {
        const REAL mu = stats[c];
        mean[c] = mu;
        invstd[c] = (REAL)1 / sqrt(stats[C + c] + eps);
        if (update_running) bn_update_running(c, mu, stats[2 * C + c], run_mean, run_var, momentum);
    }
}

/* Evaluation: the statistics are the running ones. */
__kernel void bn_eval_stats(__global REAL *mean, __global REAL *invstd, __global const REAL *run_mean,
                            __global const REAL *run_var, const REAL eps, const int C, const int chunk) {
    FOR_ELEMS(c, C, chunk) {
        mean[c] = run_mean[c];
        invstd[c] = (REAL)1 / sqrt(run_var[c] + eps);
    }
}

/* One element of y = (x - mean) * invstd * weight + bias; weight/bias skipped when absent. */
inline REAL bn_norm_value(const REAL xv, const REAL mu, const REAL is, const REAL w, const REAL b,
                          const int has_weight, const int has_bias) {
    REAL v = (xv - mu) * is;
    if (has_weight) v *= w;
    if (has_bias) v += b;
    return v;
}

/* ReLU as relu_forward (cl/ops/activation.cl): NaN stays NaN, as in PyTorch. */
inline REAL bn_relu(const REAL v) {
    return v > (REAL)0 || isnan(v) ? v : (REAL)0;
}

/* relu_backward's gradient from the saved output z: z > 0 exactly where relu's input was,
 * and z is NaN where it was. */
inline REAL bn_relu_mask(const REAL dyv, const REAL zv) {
    return zv > (REAL)0 || isnan(zv) ? dyv : (REAL)0;
}

/* Per element; relu a constant of the caller. Absent weight/bias buffers are placeholders
 * (C values), never used. */
inline void bn_normalize_body(__global REAL *y, __global const REAL *x, __global const REAL *mean,
                              __global const REAL *invstd, __global const REAL *weight,
                              __global const REAL *bias, const int has_weight, const int has_bias, const int C,
                              const int HW, const int n, const int chunk, const int relu) {
    FOR_ELEMS(i, n, chunk) {
        const int c = (i / HW) % C;
        const REAL v = bn_norm_value(x[i], mean[c], invstd[c], weight[c], bias[c], has_weight, has_bias);
        y[i] = relu ? bn_relu(v) : v;
    }
}

__kernel void bn_normalize(__global REAL *y, __global const REAL *x, __global const REAL *mean,
                           __global const REAL *invstd, __global const REAL *weight,
                           __global const REAL *bias, const int has_weight, const int has_bias, const int C,
                           const int HW, const int n, const int chunk) {
    bn_normalize_body(y, x, mean, invstd, weight, bias, has_weight, has_bias, C, HW, n, chunk, 0);
}

__kernel void bn_normalize_relu(__global REAL *y, __global const REAL *x, __global const REAL *mean,
                                __global const REAL *invstd, __global const REAL *weight,
                                __global const REAL *bias, const int has_weight, const int has_bias,
                                const int C, const int HW, const int n, const int chunk) {
    bn_normalize_body(y, x, mean, invstd, weight, bias, has_weight, has_bias, C, HW, n, chunk, 1);
}

/* CPU form: per (n, c) plane of HW elements. */
inline void bn_normalize_cpu_body(__global REAL *y, __global const REAL *x, __global const REAL *mean,
                                  __global const REAL *invstd, __global const REAL *weight,
                                  __global const REAL *bias, const int has_weight, const int has_bias,
                                  const int C, const int HW, const int planes, const int chunk, const int relu) {
    FOR_ELEMS(pl, planes, chunk) {
        const int c = pl % C;
        const REAL mu = mean[c], is = invstd[c], w = weight[c], b = bias[c];
        __global const REAL *xp = x + (size_t)pl * HW; /* (HW) */
        __global REAL *yp = y + (size_t)pl * HW;
        for (int j = 0; j < HW; ++j) {
            const REAL v = bn_norm_value(xp[j], mu, is, w, b, has_weight, has_bias);
            yp[j] = relu ? bn_relu(v) : v;
        }
    }
}

__kernel void bn_normalize_cpu(__global REAL *y, __global const REAL *x, __global const REAL *mean,
                               __global const REAL *invstd, __global const REAL *weight,
                               __global const REAL *bias, const int has_weight, const int has_bias, const int C,
                               const int HW, const int planes, const int chunk) {
    bn_normalize_cpu_body(y, x, mean, invstd, weight, bias, has_weight, has_bias, C, HW, planes, chunk, 0);
}

__kernel void bn_normalize_relu_cpu(__global REAL *y, __global const REAL *x, __global const REAL *mean,
                                    __global const REAL *invstd, __global const REAL *weight,
                                    __global const REAL *bias, const int has_weight, const int has_bias,
                                    const int C, const int HW, const int planes, const int chunk) {
    bn_normalize_cpu_body(y, x, mean, invstd, weight, bias, has_weight, has_bias, C, HW, planes, chunk, 1);
}

/* Work-group c: sum_dy[c] = sum of dy, sum_dyx[c] = sum of dy * xhat over channel c, where
 * xhat = (x - mean) * invstd. They are dbias and dweight, and feed dx in training. With relu,
 * dy is masked by the saved output z first (z is a placeholder otherwise, never read). */
inline void bn_bwd_reduce_body(__global REAL *sum_dy, __global REAL *sum_dyx, __global const REAL *dy,
                               __global const REAL *x, __global const REAL *z, __global const REAL *mean,
                               __global const REAL *invstd, const int N, const int C, const int HW,
                               __local REAL *scratch, const int relu) {
    const int c = (int)get_group_id(0);
    const int lid = (int)get_local_id(0);
    const int lsz = (int)get_local_size(0);
    const int M = N * HW;
    const REAL mu = mean[c], is = invstd[c];
    REAL a = 0, b = 0;
    for (int m = lid; m < M; m += lsz) {
        const size_t i = ((size_t)(m / HW) * C + c) * HW + m % HW;
        const REAL g = relu ? bn_relu_mask(dy[i], z[i]) : dy[i];
        a += g;
        b += g * (x[i] - mu) * is;
    }
    const REAL sa = group_sum(scratch, a);
    const REAL sb = group_sum(scratch, b);
    if (lid == 0) {
        sum_dy[c] = sa;
        sum_dyx[c] = sb;
    }
}

__kernel void bn_bwd_reduce(__global REAL *sum_dy, __global REAL *sum_dyx, __global const REAL *dy,
                            __global const REAL *x, __global const REAL *mean, __global const REAL *invstd,
                            const int N, const int C, const int HW, __local REAL *scratch) {
    bn_bwd_reduce_body(sum_dy, sum_dyx, dy, x, x, mean, invstd, N, C, HW, scratch, 0);
}

__kernel void bn_bwd_reduce_relu(__global REAL *sum_dy, __global REAL *sum_dyx, __global const REAL *dy,
                                 __global const REAL *x, __global const REAL *z, __global const REAL *mean,
                                 __global const REAL *invstd, const int N, const int C, const int HW,
                                 __local REAL *scratch) {
    bn_bwd_reduce_body(sum_dy, sum_dyx, dy, x, z, mean, invstd, N, C, HW, scratch, 1);
}

/* CPU form of bn_bwd_reduce: work-item c walks channel c's N planes in order. The masked
 * lanes are +0, as relu_backward writes. */
inline void bn_bwd_reduce_cpu_body(__global REAL *sum_dy, __global REAL *sum_dyx, __global const REAL *dy,
                                   __global const REAL *x, __global const REAL *z, __global const REAL *mean,
                                   __global const REAL *invstd, const int N, const int C, const int HW,
                                   const int relu) {
    const int c = GID0;
    if (c >= C) return;
    const int H8 = HW & ~7;
    const REAL mu = mean[c], is = invstd[c];
    REAL8 a8 = (REAL8)(0), b8 = (REAL8)(0);
    REAL a = 0, b = 0;
    for (int n = 0; n < N; ++n) {
        const size_t off = ((size_t)n * C + c) * HW;
        __global const REAL *g = dy + off, *p = x + off, *zp = z + off; /* (HW) each */
        for (int j = 0; j < H8; j += 8) {
            REAL8 gv = vload8(0, g + j);
            if (relu) {
                const REAL8 zv = vload8(0, zp + j);
                gv = select((REAL8)(0), gv, (zv > (REAL8)(0)) | isnan(zv));
            }
            a8 += gv;
            b8 += gv * (vload8(0, p + j) - mu) * is;
        }
        for (int j = H8; j < HW; ++j) {
            const REAL gs = relu ? bn_relu_mask(g[j], zp[j]) : g[j];
            a += gs;
            b += gs * (p[j] - mu) * is;
        }
    }
    sum_dy[c] = lanes_sum(a8) + a;
    sum_dyx[c] = lanes_sum(b8) + b;
}

__kernel void bn_bwd_reduce_cpu(__global REAL *sum_dy, __global REAL *sum_dyx, __global const REAL *dy,
                                __global const REAL *x, __global const REAL *mean,
                                __global const REAL *invstd, const int N, const int C, const int HW) {
    bn_bwd_reduce_cpu_body(sum_dy, sum_dyx, dy, x, x, mean, invstd, N, C, HW, 0);
}

__kernel void bn_bwd_reduce_relu_cpu(__global REAL *sum_dy, __global REAL *sum_dyx, __global const REAL *dy,
                                     __global const REAL *x, __global const REAL *z, __global const REAL *mean,
                                     __global const REAL *invstd, const int N, const int C, const int HW) {
    bn_bwd_reduce_cpu_body(sum_dy, sum_dyx, dy, x, z, mean, invstd, N, C, HW, 1);
}

/* The gradient g of one element (dx = beta * dx + g through ACCUM), with s = weight * invstd:
 *   training:   g = s * (dy - sum_dy / M - xhat * sum_dyx / M)  (the batch statistics
 *               depend on x too; M values per channel, over every replica when synchronized)
 *   evaluation: g = s * dy                                      (running stats are constants) */
inline REAL bn_dx_value(const REAL dyv, const REAL xv, const REAL mu, const REAL is, const REAL w,
                        const REAL sdy, const REAL sdyx, const int has_weight, const int training,
                        const REAL M) {
    const REAL s = has_weight ? w * is : is;
    REAL g;
    if (training) {
        const REAL inv_m = (REAL)1 / M;
        const REAL xhat = (xv - mu) * is;
        g = s * (dyv - sdy * inv_m - xhat * sdyx * inv_m);
    } else {
        g = s * dyv;
    }
    return g;
}

/* Per element. Placeholder buffers (absent weight, evaluation's sums, z without relu) hold C
 * values, unused. */
inline void bn_bwd_dx_body(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                           __global const REAL *z, __global const REAL *mean, __global const REAL *invstd,
                           __global const REAL *weight, __global const REAL *sum_dy, __global const REAL *sum_dyx,
                           const int has_weight, const int training, const REAL M, const int C, const int HW,
                           const REAL beta, const int n, const int chunk, const int relu) {
    FOR_ELEMS(i, n, chunk) {
        const int c = (i / HW) % C;
        const REAL g = relu ? bn_relu_mask(dy[i], z[i]) : dy[i];
        ACCUM(dx[i], bn_dx_value(g, x[i], mean[c], invstd[c], weight[c], sum_dy[c], sum_dyx[c], has_weight,
                                 training, M));
    }
}

__kernel void bn_bwd_dx(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                        __global const REAL *mean, __global const REAL *invstd, __global const REAL *weight,
                        __global const REAL *sum_dy, __global const REAL *sum_dyx, const int has_weight,
                        const int training, const REAL M, const int C, const int HW, const REAL beta,
                        const int n, const int chunk) {
    bn_bwd_dx_body(dx, dy, x, x, mean, invstd, weight, sum_dy, sum_dyx, has_weight, training, M, C, HW, beta, n,
                   chunk, 0);
}

__kernel void bn_bwd_dx_relu(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                             __global const REAL *z, __global const REAL *mean, __global const REAL *invstd,
                             __global const REAL *weight, __global const REAL *sum_dy,
                             __global const REAL *sum_dyx, const int has_weight, const int training,
                             const REAL M, const int C, const int HW, const REAL beta, const int n,
                             const int chunk) {
    bn_bwd_dx_body(dx, dy, x, z, mean, invstd, weight, sum_dy, sum_dyx, has_weight, training, M, C, HW, beta, n,
                   chunk, 1);
}

/* CPU form: per (n, c) plane of HW elements. */
inline void bn_bwd_dx_cpu_body(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                               __global const REAL *z, __global const REAL *mean, __global const REAL *invstd,
                               __global const REAL *weight, __global const REAL *sum_dy,
                               __global const REAL *sum_dyx, const int has_weight, const int training,
                               const REAL M, const int C, const int HW, const REAL beta, const int planes,
                               const int chunk, const int relu) {
    FOR_ELEMS(pl, planes, chunk) {
        const int c = pl % C;
        const REAL mu = mean[c], is = invstd[c], w = weight[c], sdy = sum_dy[c], sdyx = sum_dyx[c];
        const size_t off = (size_t)pl * HW;
        __global REAL *dxp = dx + off; /* (HW) */
        __global const REAL *dyp = dy + off, *xp = x + off, *zp = z + off;
        for (int j = 0; j < HW; ++j) {
            const REAL g = relu ? bn_relu_mask(dyp[j], zp[j]) : dyp[j];
            ACCUM(dxp[j], bn_dx_value(g, xp[j], mu, is, w, sdy, sdyx, has_weight, training, M));
        }
    }
}

__kernel void bn_bwd_dx_cpu(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                            __global const REAL *mean, __global const REAL *invstd, __global const REAL *weight,
                            __global const REAL *sum_dy, __global const REAL *sum_dyx, const int has_weight,
                            const int training, const REAL M, const int C, const int HW, const REAL beta,
                            const int planes, const int chunk) {
    bn_bwd_dx_cpu_body(dx, dy, x, x, mean, invstd, weight, sum_dy, sum_dyx, has_weight, training, M, C, HW, beta,
                       planes, chunk, 0);
}

__kernel void bn_bwd_dx_relu_cpu(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                                 __global const REAL *z, __global const REAL *mean, __global const REAL *invstd,
                                 __global const REAL *weight, __global const REAL *sum_dy,
                                 __global const REAL *sum_dyx, const int has_weight, const int training,
                                 const REAL M, const int C, const int HW, const REAL beta, const int planes,
                                 const int chunk) {
    bn_bwd_dx_cpu_body(dx, dy, x, z, mean, invstd, weight, sum_dy, sum_dyx, has_weight, training, M, C, HW, beta,
                       planes, chunk, 1);
}
