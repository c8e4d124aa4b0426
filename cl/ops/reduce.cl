/* cl/ops/reduce.cl - reductions over a set of dimensions (sum, mean, var, std, max, argmax)
 * and their backward. Host side: src/ops/reduce.c. Tests: tests/ops/test_reduce.c.
 * The host folds x's dims into at most two kept and two reduced groups (adjacent dims of one
 * kind merge, size-1 dims drop). GEOM below: output o = k0 * K1 + k1 starts at x offset
 * k0 * sK0 + k1 * sK1, and its reduced element r = r0 * R1 + r1 (row-major over the reduced
 * dims) lies r0 * sR0 + r1 * sR1 past that.
 *
 * Sums have one order per output, whatever the style or the work-group size: r is cut into
 * blocks of RBLOCK elements, each summed in order, and the block sums are added as a pairwise
 * tree over aligned pairs ((b0 + b1) + (b2 + b3), ...; blocks past the end count as 0). So
 * the rounding error is at most (RBLOCK - 1 + log2(blocks)) ulps of sum |x|, not M ulps
 * as in one running sum, and both forms give the same bits:
 *  - CPU (name_cpu): an item per output walks its blocks in order, a binary-counter stack
 *    building the tree as it goes (no local memory);
 *  - GPU: a work-group per output; item i takes the aligned span of G blocks [i G, (i + 1) G)
 *    (G times the local size is the block count rounded up to a power of two) and the items'
 *    span sums meet in the same adjacent-pair tree in local memory.
 * max/argmax keep the first maximum in r order, NaN counting as larger than any number (as
 * PyTorch): a total order, so any split of the scan gives the same answer. Backward kernels
 * are element-wise (FOR_ELEMS) and serve both styles.
 */
#include "common/defs.h"

#ifndef RBLOCK
#define RBLOCK 64
#endif

/* The geometry every kernel takes after its buffers, in this order (see above). */
#define GEOM                                                                                                 \
    const int K0, const int K1, const int sK0, const int sK1, const int R0, const int R1, const int sR0,     \
        const int sR1

/* Deepest binary-counter stack: the block count is below 2^26 (M < 2^31, RBLOCK 64). */
#define SPAN_STACK 32

/* x offset of output o's first element. */
inline int kept_base(const int o, const int K1, const int sK0, const int sK1) {
    return (o / K1) * sK0 + (o % K1) * sK1;
}

/* Offset of reduced element r past its output's base. */
inline int red_off(const int r, const int R1, const int sR0, const int sR1) {
    return (r / R1) * sR0 + (r % R1) * sR1;
}

/* Element i of x (or dx): its output o and its reduced index r. */
inline int out_of(const int i, const int K0, const int K1, const int sK0, const int sK1) {
    return ((i / sK0) % K0) * K1 + (i / sK1) % K1;
}
inline int red_of(const int i, const int R0, const int R1, const int sR0, const int sR1) {
    return ((i / sR0) % R0) * R1 + (i / sR1) % R1;
}

/* The in-order sum of reduced elements [s, e) at xo; of (x - mu)^2 when dev. */
inline REAL block_sum(__global const REAL *xo, const int s, const int e, const int R1, const int sR0,
                      const int sR1, const REAL mu, const int dev) {
    int r1 = s % R1;
    __global const REAL *p = xo + (s / R1) * sR0; /* the row of r0 */
    REAL acc = 0;
    for (int r = s; r < e; ++r) {
        const REAL v = p[r1 * sR1];
        acc += dev ? (v - mu) * (v - mu) : v;
        if (++r1 == R1) {
            r1 = 0;
            p += sR0;
        }
    }
    return acc;
}

/* The tree sum of blocks [b0, b0 + G) of the M reduced elements at xo (G a power of two, or any
 * count >= the blocks left for a whole set). Block k's sum is pushed, then merged with the
 * stack top once per trailing zero of k + 1: this builds the aligned pairs; what is left is
 * folded from the top, which is the tree with the missing blocks as zeros. */
inline REAL span_sum(__global const REAL *xo, const int b0, const int G, const int M, const int R1, const int sR0,
                     const int sR1, const REAL mu, const int dev) {
    const int nb = (M - 1) / RBLOCK + 1;
    REAL stack[SPAN_STACK];
    int depth = 0;
    for (int k = 0; k < G && b0 + k < nb; ++k) {
        const int s = (b0 + k) * RBLOCK;
        REAL v = block_sum(xo, s, s + min(RBLOCK, M - s), R1, sR0, sR1, mu, dev);
        for (int c = k + 1; (c & 1) == 0; c >>= 1)
            v = stack[--depth] + v;
        stack[depth++] = v;
    }
    if (depth == 0) return 0;
    REAL t = stack[--depth];
    while (depth > 0)
        t = stack[--depth] + t;
    return t;
}

/* The work-group's span sums added as the adjacent-pair tree (items 0+1, 2+3, then (0+1) +
 * (2+3), ...); the local size is a power of two. Every item must call it; all get the total. */
inline REAL group_tree_sum(__local REAL *scratch, const REAL v) {
    const int lid = (int)get_local_id(0);
    const int lsz = (int)get_local_size(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = 1; s < lsz; s <<= 1) {
        if ((lid & (2 * s - 1)) == 0) scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const REAL total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next call */
    return total;
}

/* ---------------------------------------------------------------- sum and mean */

/* Work-group o: y[o] = the sum of its reduced set, divided by M when mean. */
__kernel void reduce_sum(__global REAL *y, __global const REAL *x, GEOM, const int mean, const int G,
                         __local REAL *scratch) {
    const int o = (int)get_group_id(0);
    const int M = R0 * R1;
    __global const REAL *xo = x + kept_base(o, K1, sK0, sK1);
    const REAL part = span_sum(xo, (int)get_local_id(0) * G, G, M, R1, sR0, sR1, 0, 0);
    const REAL s = group_tree_sum(scratch, part);
    if (get_local_id(0) == 0) y[o] = mean ? s / (REAL)M : s;
}

/* CPU form: an item per output (rows = outputs). */
__kernel void reduce_sum_cpu(__global REAL *y, __global const REAL *x, GEOM, const int mean, const int rows,
                             const int chunk) {
    const int M = R0 * R1;
    FOR_ELEMS(o, rows, chunk) {
        const REAL s = span_sum(x + kept_base(o, K1, sK0, sK1), 0, M, M, R1, sR0, sR1, 0, 0);
        y[o] = mean ? s / (REAL)M : s;
    }
}

/* dx = beta * dx + dy[o] (sum) or dy[o] / M (mean), for every element of o's set. */
__kernel void reduce_sum_bwd(__global REAL *dx, __global const REAL *dy, GEOM, const int mean, const REAL beta,
                             const int n, const int chunk) {
    const int M = R0 * R1;
    FOR_ELEMS(i, n, chunk) {
        const REAL g = dy[out_of(i, K0, K1, sK0, sK1)];
        ACCUM(dx[i], mean ? g / (REAL)M : g);
    }
}

/* ---------------------------------------------------------------- var and std */

/* Output o's statistics from its mean mu and sum of squared deviations sq (two passes, so no
 * cancellation): var = sq / dof (dof = max(0, M - correction): 0 gives NaN or inf, as PyTorch). */
inline void var_store(const int o, const REAL mu, const REAL sq, const REAL dof, const int take_sqrt,
                      __global REAL *y, __global REAL *mean) {
    const REAL v = sq / dof;
    y[o] = take_sqrt ? sqrt(v) : v;
    mean[o] = mu;
}

/* Work-group o: y[o] = var (or std when take_sqrt) of its set, mean[o] its mean. */
__kernel void reduce_var(__global REAL *y, __global REAL *mean, __global const REAL *x, GEOM, const REAL dof,
                         const int take_sqrt, const int G, __local REAL *scratch) {
    const int o = (int)get_group_id(0);
    const int b0 = (int)get_local_id(0) * G;
    const int M = R0 * R1;
    __global const REAL *xo = x + kept_base(o, K1, sK0, sK1);
    const REAL mu = group_tree_sum(scratch, span_sum(xo, b0, G, M, R1, sR0, sR1, 0, 0)) / (REAL)M;
    const REAL sq = group_tree_sum(scratch, span_sum(xo, b0, G, M, R1, sR0, sR1, mu, 1));
    if (get_local_id(0) == 0) var_store(o, mu, sq, dof, take_sqrt, y, mean);
}

/* CPU form: an item per output. */
__kernel void reduce_var_cpu(__global REAL *y, __global REAL *mean, __global const REAL *x, GEOM, const REAL dof,
                             const int take_sqrt, const int rows, const int chunk) {
    const int M = R0 * R1;
    FOR_ELEMS(o, rows, chunk) {
        __global const REAL *xo = x + kept_base(o, K1, sK0, sK1);
        const REAL mu = span_sum(xo, 0, M, M, R1, sR0, sR1, 0, 0) / (REAL)M;
        const REAL sq = span_sum(xo, 0, M, M, R1, sR0, sR1, mu, 1);
        var_store(o, mu, sq, dof, take_sqrt, y, mean);
    }
}

/* dx = beta * dx + (2 / dof) * g * (x - mean[o]), PyTorch's var_backward, where g = dy[o]
 * for var and dy[o] / (2 std[o]) for std (0 where std is 0, as PyTorch's std_backward). sd is
 * only read when is_std. */
__kernel void reduce_var_bwd(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                             __global const REAL *mean, __global const REAL *sd, GEOM, const REAL dof,
                             const int is_std, const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int o = out_of(i, K0, K1, sK0, sK1);
        REAL g = dy[o];
        if (is_std) g = sd[o] == (REAL)0 ? (REAL)0 : g / ((REAL)2 * sd[o]);
        ACCUM(dx[i], (REAL)2 / dof * g * (x[i] - mean[o]));
    }
}

/* ---------------------------------------------------------------- max and argmax */

/* What reduce_max writes: the value; the value and the argmax (int, for backward); or the
 * argmax alone as a REAL (argmax's result). */
#define MAX_VALUE 0
#define MAX_VALUE_IDX 1
#define MAX_INDEX 2

/* True when (v, r) comes before the best so far (bv, br): NaN before numbers, then the larger
 * value, then (equal values, or two NaNs) the smaller r. br < 0 is "nothing yet". */
inline bool max_before(const REAL v, const int r, const REAL bv, const int br) {
    if (br < 0) return true;
    const bool vn = isnan(v), bn = isnan(bv);
    if (vn != bn) return vn;
    if (vn || v == bv) return r < br;
    return v > bv;
}

inline void max_store(const int o, const REAL v, const int r, const int mode, __global REAL *y,
                      __global int *idx) {
    y[o] = mode == MAX_INDEX ? (REAL)r : v;
    if (mode == MAX_VALUE_IDX) idx[o] = r;
}

/* Work-group o: a strided scan per item, then the pairs meet in local memory. idx is only
 * written in mode MAX_VALUE_IDX (a placeholder otherwise). */
__kernel void reduce_max(__global REAL *y, __global int *idx, __global const REAL *x, GEOM, const int mode,
                         __local REAL *sv, __local int *sr) {
    const int o = (int)get_group_id(0);
    const int lid = (int)get_local_id(0);
    const int lsz = (int)get_local_size(0);
    const int M = R0 * R1;
    __global const REAL *xo = x + kept_base(o, K1, sK0, sK1);
    REAL bv = 0;
    int br = -1;
    for (int r = lid; r < M; r += lsz) {
        const REAL v = xo[red_off(r, R1, sR0, sR1)];
        if (max_before(v, r, bv, br)) {
            bv = v;
            br = r;
        }
    }
    sv[lid] = bv;
    sr[lid] = br;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = lsz / 2; s > 0; s >>= 1) {
        if (lid < s && sr[lid + s] >= 0 && max_before(sv[lid + s], sr[lid + s], sv[lid], sr[lid])) {
            sv[lid] = sv[lid + s];
            sr[lid] = sr[lid + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) max_store(o, sv[0], sr[0], mode, y, idx);
}

/* CPU form: an item per output scans its set in order. */
__kernel void reduce_max_cpu(__global REAL *y, __global int *idx, __global const REAL *x, GEOM, const int mode,
                             const int rows, const int chunk) {
    const int M = R0 * R1;
    FOR_ELEMS(o, rows, chunk) {
        __global const REAL *xo = x + kept_base(o, K1, sK0, sK1);
        REAL bv = xo[0];
        int br = 0, r1 = 0;
        __global const REAL *p = xo;
        for (int r = 0; r < M; ++r) {
            const REAL v = p[r1 * sR1];
            if (max_before(v, r, bv, br)) {
                bv = v;
                br = r;
            }
            if (++r1 == R1) {
                r1 = 0;
                p += sR0;
            }
        }
        max_store(o, bv, br, mode, y, idx);
    }
}

/* dx = beta * dx + dy[o] at o's saved argmax, + 0 elsewhere (a NaN in dy reaches only it). */
__kernel void reduce_max_bwd(__global REAL *dx, __global const REAL *dy, __global const int *idx, GEOM,
                             const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int o = out_of(i, K0, K1, sK0, sK1);
        ACCUM(dx[i], red_of(i, R0, R1, sR0, sR1) == idx[o] ? dy[o] : (REAL)0);
    }
}
