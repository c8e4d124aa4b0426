/* cl/ops/softmax.cl - softmax and log_softmax over one dimension, forward and backward.
 * Host side: src/ops/softmax.c. Tests: tests/ops/test_softmax.c.
 * The tensor is viewed as (outer, D, inner): row r = (o, k) holds the D elements
 * base + j * inner, base = o * D * inner + k. Two forms per kernel:
 *  - GPU: one work-group per row; a tree in local memory takes the max and the sums (the
 *    local size is a power of two);
 *  - CPU (_cpu): an item per run of whole rows, each row walked in order.
 * The row max is subtracted before exp (no overflow); a NaN or +inf in a row makes the whole
 * row NaN, as in PyTorch, and a row of -inf is NaN too (exp(-inf - -inf)).
 */
#include "common/defs.h"

#define NEG_INF (-(REAL)INFINITY)

inline size_t row_base(const int r, const int D, const int inner) {
    return (size_t)(r / inner) * D * inner + (size_t)(r % inner);
}

/* The max over the work-group of each item's v; every item gets it. */
REAL group_max(REAL v, __local REAL *scratch) {
    const int lid = (int)get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = (int)get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const REAL m = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is reused by the next tree */
    return m;
}

/* The sum over the work-group of each item's v; every item gets it. */
REAL group_sum(REAL v, __local REAL *scratch) {
    const int lid = (int)get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = (int)get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const REAL t = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return t;
}

/* y = softmax(x) = exp(x - m) / sum, or log_softmax(x) = (x - m) - log(sum), per row;
 * sum = sum of exp(x - m) over the row, m its max. One group per row. */
__kernel void softmax_fwd(__global REAL *y, __global const REAL *x, const int D, const int inner,
                          const int log_out, __local REAL *scratch) {
    const int lid = (int)get_local_id(0), lsz = (int)get_local_size(0);
    const size_t base = row_base((int)get_group_id(0), D, inner);
    REAL m = NEG_INF;
    for (int j = lid; j < D; j += lsz)
        m = fmax(m, x[base + (size_t)j * inner]);
    m = group_max(m, scratch);
    REAL s = (REAL)0;
    for (int j = lid; j < D; j += lsz)
        s += exp(x[base + (size_t)j * inner] - m);
    s = group_sum(s, scratch);
    const REAL log_s = log(s);
    for (int j = lid; j < D; j += lsz) {
        const size_t i = base + (size_t)j * inner;
        y[i] = log_out ? (x[i] - m) - log_s : exp(x[i] - m) / s;
    }
}

/* CPU form: rows r in [0, rows), each in order; softmax keeps exp(x - m) in y between the
 * sum and the division, so exp runs once per element. */
__kernel void softmax_fwd_cpu(__global REAL *y, __global const REAL *x, const int D, const int inner,
                              const int log_out, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const size_t base = row_base(r, D, inner);
        __global const REAL *xr = x + base; /* (D) with stride inner */
        __global REAL *yr = y + base;
        REAL m = NEG_INF;
        for (int j = 0; j < D; ++j)
            m = fmax(m, xr[(size_t)j * inner]);
        REAL s = (REAL)0;
        if (log_out) {
            for (int j = 0; j < D; ++j)
                s += exp(xr[(size_t)j * inner] - m);
            const REAL log_s = log(s);
            for (int j = 0; j < D; ++j)
                yr[(size_t)j * inner] = (xr[(size_t)j * inner] - m) - log_s;
        } else {
            for (int j = 0; j < D; ++j) {
                const REAL e = exp(xr[(size_t)j * inner] - m);
                yr[(size_t)j * inner] = e;
                s += e;
            }
            for (int j = 0; j < D; ++j)
                yr[(size_t)j * inner] /= s;
        }
    }
}

/* From the output y and dy (PyTorch's formulas, so NaN lands where it does there):
 * softmax:     dx = y * (dy - sum(dy * y))
 * log_softmax: dx = dy - exp(y) * sum(dy)
 * written under the beta rule. One group per row. */
__kernel void softmax_bwd(__global REAL *dx, __global const REAL *y, __global const REAL *dy, const int D,
                          const int inner, const int log_out, const REAL beta, __local REAL *scratch) {
    const int lid = (int)get_local_id(0), lsz = (int)get_local_size(0);
    const size_t base = row_base((int)get_group_id(0), D, inner);
    REAL acc = (REAL)0;
    for (int j = lid; j < D; j += lsz) {
        const size_t i = base + (size_t)j * inner;
        acc += log_out ? dy[i] : dy[i] * y[i];
    }
    const REAL dot = group_sum(acc, scratch);
    for (int j = lid; j < D; j += lsz) {
        const size_t i = base + (size_t)j * inner;
        ACCUM(dx[i], log_out ? dy[i] - exp(y[i]) * dot : y[i] * (dy[i] - dot));
    }
}

/* CPU form: whole rows in order. */
__kernel void softmax_bwd_cpu(__global REAL *dx, __global const REAL *y, __global const REAL *dy, const int D,
                              const int inner, const int log_out, const REAL beta, const int rows,
                              const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const size_t base = row_base(r, D, inner);
        __global const REAL *yr = y + base, *dyr = dy + base; /* (D) with stride inner */
        __global REAL *dxr = dx + base;
        REAL dot = (REAL)0;
        if (log_out) {
            for (int j = 0; j < D; ++j)
                dot += dyr[(size_t)j * inner];
            for (int j = 0; j < D; ++j) {
                const size_t i = (size_t)j * inner;
                ACCUM(dxr[i], dyr[i] - exp(yr[i]) * dot);
            }
        } else {
            for (int j = 0; j < D; ++j)
                dot += dyr[(size_t)j * inner] * yr[(size_t)j * inner];
            for (int j = 0; j < D; ++j) {
                const size_t i = (size_t)j * inner;
                ACCUM(dxr[i], yr[i] * (dyr[i] - dot));
            }
        }
    }
}
