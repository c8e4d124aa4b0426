/* cl/ops/eltwise.cl - element-wise kernels behind src/ops/eltwise.c (add, mul, scale).
 * add's and scale's backward are plain axpby (cl/tensor/tensor.cl); mul's needs the other
 * factor. Tests: tests/ops/test_eltwise.c.
 */
#include "common/defs.h"

__kernel void add_forward(__global REAL *y, __global const REAL *a, __global const REAL *b,
                          const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = a[i] + b[i];
    }
}

__kernel void mul_forward(__global REAL *y, __global const REAL *a, __global const REAL *b,
                          const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = a[i] * b[i];
    }
}

__kernel void scale_forward(__global REAL *y, __global const REAL *x, const REAL s, const int n,
                            const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = s * x[i];
    }
}

/* d(a*b)/da = b: dx = beta * dx + dy * other. For x*x the host calls this twice on one dx,
 * the second time with beta = 1, so the two contributions add. */
__kernel void mul_backward(__global REAL *dx, __global const REAL *dy, __global const REAL *other,
                           const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], dy[i] * other[i]);
    }
}
