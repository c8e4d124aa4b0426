/* cl/ops/linear.cl - the bias parts of src/ops/linear.c (the products go to GEMM):
 * broadcasting b over the rows of y before y += x wT, and db as the column sums of dy.
 * Tests: tests/ops/test_linear.c.
 */
#include "common/defs.h"

/* y (rows, cols) = b (cols) broadcast over the rows. */
__kernel void bias_rows(__global REAL *y, __global const REAL *b, const int rows, const int cols,
                        const int chunk) {
    FOR_ELEMS(i, rows * cols, chunk) y[i] = b[i % cols];
}

/* db (cols) = beta * db + sum over rows of dy (rows, cols): one work-item per column adds
 * its rows in order, so the sum is deterministic without atomics. */
__kernel void col_sum(__global REAL *db, __global const REAL *dy, const REAL beta, const int rows,
                      const int cols) {
    const int j = GID0;
    if (j >= cols) return;
    REAL s = (REAL)0;
    for (int r = 0; r < rows; r++) s += dy[(size_t)r * cols + j];
    ACCUM(db[j], s);
}
