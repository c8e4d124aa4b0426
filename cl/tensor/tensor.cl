/* cl/tensor/tensor.cl - element-wise helpers behind src/tensor/tensor.c: the
 * gradient-accumulation kernel y = beta*y + alpha*x that implements the beta contract.
 * Tests: tests/tensor/test_tensor.c.
 */
#include "common/defs.h"

/* ACCUM (cl/common/defs.h): beta == 0 overwrites even when y holds NaN (fresh pool memory). */
__kernel void axpby(__global REAL *y, __global const REAL *x, const REAL alpha, const REAL beta,
                    const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) ACCUM(y[i], alpha * x[i]);
}
