/* cl/ops/cat.cl - concatenation along one dimension: y viewed as (outer, D, inner) takes each
 * input x_i (outer, d_i, inner) at offset off_i along D; backward hands each input its slice
 * of dy under the beta rule. Host side: src/ops/cat.c. Tests: tests/ops/test_cat.c.
 * Two forms with the same per-element copy: an item per element of x_i (GPU style) and an
 * item per row of inner elements (name_cpu, the row's offsets computed once).
 */
#include "common/defs.h"

/* y[(o * D + off + j) * inner + k] = x[(o * d + j) * inner + k], n = outer * d * inner. */
__kernel void cat_fwd(__global REAL *y, __global const REAL *x, const int D, const int d, const int off,
                      const int inner, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int k = i % inner, r = i / inner; /* r = o * d + j */
        const int o = r / d, j = r % d;
        y[((size_t)o * D + off + j) * inner + k] = x[i];
    }
}

/* Rows r = (o, j) of inner elements, rows = outer * d. */
__kernel void cat_fwd_cpu(__global REAL *y, __global const REAL *x, const int D, const int d, const int off,
                          const int inner, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int o = r / d, j = r % d;
        __global REAL *yr = y + ((size_t)o * D + off + j) * inner;
        __global const REAL *xr = x + (size_t)r * inner;
        for (int k = 0; k < inner; ++k)
            yr[k] = xr[k];
    }
}

/* dx = beta * dx + dy's slice, the same indexing. */
__kernel void cat_bwd(__global REAL *dx, __global const REAL *dy, const int D, const int d, const int off,
                      const int inner, const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int k = i % inner, r = i / inner;
        const int o = r / d, j = r % d;
        ACCUM(dx[i], dy[((size_t)o * D + off + j) * inner + k]);
    }
}

__kernel void cat_bwd_cpu(__global REAL *dx, __global const REAL *dy, const int D, const int d, const int off,
                          const int inner, const REAL beta, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int o = r / d, j = r % d;
        __global const REAL *dyr = dy + ((size_t)o * D + off + j) * inner;
        __global REAL *dxr = dx + (size_t)r * inner;
        for (int k = 0; k < inner; ++k)
            ACCUM(dxr[k], dyr[k]);
    }
}
