/* cl/ops/split.cl - a slice along one dimension (narrow; split and chunk are several): x viewed
 * as (outer, D, inner) gives y (outer, d, inner) from offset off along D; backward puts dy back
 * into that slice of dx under the beta rule, zeros (times beta) elsewhere. Host side:
 * src/ops/split.c. Tests: tests/ops/test_split.c.
 * Two forms of each, the same per-element copy: an item per element (GPU style) and an item
 * per row of inner elements (name_cpu, the row's offsets computed once).
 */
#include "common/defs.h"

/* y[i] = x[(o * D + off + j) * inner + k] for i = (o * d + j) * inner + k, n = outer * d * inner. */
__kernel void narrow_fwd(__global REAL *y, __global const REAL *x, const int D, const int d, const int off,
                         const int inner, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int k = i % inner, r = i / inner; /* r = o * d + j */
        const int o = r / d, j = r % d;
        y[i] = x[((size_t)o * D + off + j) * inner + k];
    }
}

/* Rows r = (o, j) of inner elements, rows = outer * d. */
__kernel void narrow_fwd_cpu(__global REAL *y, __global const REAL *x, const int D, const int d, const int off,
                             const int inner, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int o = r / d, j = r % d;
        __global const REAL *xr = x + ((size_t)o * D + off + j) * inner;
        __global REAL *yr = y + (size_t)r * inner;
        for (int k = 0; k < inner; ++k)
            yr[k] = xr[k];
    }
}

/* Every element of dx (outer, D, inner), n of them: dy's value inside the slice, 0 outside,
 * both under the beta rule (beta = 0 must also clear what lies outside the slice). */
__kernel void narrow_bwd(__global REAL *dx, __global const REAL *dy, const int D, const int d, const int off,
                         const int inner, const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int k = i % inner, r = i / inner; /* r = o * D + J */
        const int o = r / D, j = r % D - off;
        const REAL v = (j >= 0 && j < d) ? dy[((size_t)o * d + j) * inner + k] : (REAL)0;
        ACCUM(dx[i], v);
    }
}

/* Rows r = (o, J) of dx, rows = outer * D. */
__kernel void narrow_bwd_cpu(__global REAL *dx, __global const REAL *dy, const int D, const int d,
                             const int off, const int inner, const REAL beta, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int o = r / D, j = r % D - off;
        __global REAL *dxr = dx + (size_t)r * inner;
        if (j >= 0 && j < d) {
            __global const REAL *dyr = dy + ((size_t)o * d + j) * inner;
            for (int k = 0; k < inner; ++k)
                ACCUM(dxr[k], dyr[k]);
        } else {
            for (int k = 0; k < inner; ++k)
                ACCUM(dxr[k], (REAL)0);
        }
    }
}

/* dx's slice += dy, nothing else touched: backward at beta = 1, where the rest of dx keeps its
 * value, so the outputs of a split cost one pass over x together, not one each. n = outer * d * inner. */
__kernel void narrow_add(__global REAL *dx, __global const REAL *dy, const int D, const int d, const int off,
                         const int inner, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int k = i % inner, r = i / inner;
        const int o = r / d, j = r % d;
        dx[((size_t)o * D + off + j) * inner + k] += dy[i];
    }
}

__kernel void narrow_add_cpu(__global REAL *dx, __global const REAL *dy, const int D, const int d,
                             const int off, const int inner, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int o = r / d, j = r % d;
        __global REAL *dxr = dx + ((size_t)o * D + off + j) * inner;
        __global const REAL *dyr = dy + (size_t)r * inner;
        for (int k = 0; k < inner; ++k)
            dxr[k] += dyr[k];
    }
}
