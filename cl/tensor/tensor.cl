/* cl/tensor/tensor.cl - element-wise helpers behind src/tensor/tensor.c:
 * gradient-accumulation kernel y = beta*y + alpha*x that implements the beta contract.
 * Tests: tests/unit/test_tensor.c.
 */
#include "common/defs.h"


/* beta == 0 must overwrite even when y holds NaN or garbage (fresh pool memory). */
__kernel void axpby(__global REAL *y, __global const REAL *x, const REAL alpha, const REAL beta,
                    const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) y[i] = beta == (REAL)0 ? alpha * x[i] : beta * y[i] + alpha * x[i];
}
