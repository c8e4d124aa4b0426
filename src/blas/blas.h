/* src/blas/blas.h - the GEMM entry the floors above see, and nothing else: which path runs
 * a product (CLBlast, our packed kernel, ...) is src/blas's business. Sources: src/blas/.
 * Tests: tests/blas/. Tools that force paths or tune: src/blas/tuning.h.
 */
#ifndef CLGRAD_BLAS_BLAS_H
#define CLGRAD_BLAS_BLAS_H

#include "tensor/tensor.h"

/* C = alpha * op(A) op(B) + beta * C on device buffers, row-major, element offsets and
 * leading dimensions as CLBlast takes them; beta 0 overwrites C (NaN in C included). */
clg_status clg__gemm_mem(clg_context *ctx, clg_dtype dtype, bool trans_a, bool trans_b, size_t m,
                         size_t n, size_t k, double alpha, cl_mem a, size_t a_off, size_t lda,
                         cl_mem b, size_t b_off, size_t ldb, double beta, cl_mem c, size_t c_off,
                         size_t ldc);

#endif
