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

/* Implicit-GEMM convolution on the packed path: op(B) (k, n) is the im2col matrix of a chunk
 * of images (cl/ops/conv2d.cl's im2col: k = Cg*KH*KW rows, n = nb*OH*OW columns), packed
 * into the GEMM's panels straight from the images instead of read from a col buffer.
 * x_off is the element offset of the first image's first channel of the group; image nn of
 * the chunk starts C*H*W elements further on per image. */
typedef struct clg_gemm_conv_src {
    cl_mem x;
    size_t x_off, x_len; /* x_len: the elements x holds (the kernel reads none past it) */
    int C, H, W;         /* the images' channels (all groups), height and width */
    int KH, KW;          /* kernel */
    int SH, SW, PH, PW, DH, DW;
    int OH, OW;
} clg_gemm_conv_src;

/* *ok: whether clg__gemm_conv_mem can run C (m, n) = alpha * A (m, k) · op(B) + beta * C
 * with A and C as given: the path that would run the same product with B in memory (forced,
 * recorded for its size class or by the rule) is the packed kernel, and the product fits its
 * indexing. Otherwise the caller materialises col and calls clg__gemm_mem. *saves_pass (may
 * be NULL): ok, and the packed kernel would pack that B in memory into panels too, so that
 * clg__gemm_conv_mem saves the whole pass over col. Enqueues nothing. */
clg_status clg__gemm_conv_check(clg_context *ctx, clg_dtype dtype, size_t m, size_t n, size_t k, size_t a_off,
                                size_t lda, size_t c_off, size_t ldc, bool *ok, bool *saves_pass);

/* C = alpha * A · op(B) + beta * C with op(B) from b, on the packed path; the same bits as
 * clg__gemm_mem on that path with B = col (same tiles, same order of additions). Only after
 * clg__gemm_conv_check said ok; CLG_UNSUPPORTED otherwise. */
clg_status clg__gemm_conv_mem(clg_context *ctx, clg_dtype dtype, size_t m, size_t n, size_t k, double alpha,
                              cl_mem a, size_t a_off, size_t lda, const clg_gemm_conv_src *b, double beta,
                              cl_mem c, size_t c_off, size_t ldc);

/* conv2d's input gradient for stride 1, on the packed path, without dcol (conv_dx in
 * cl/blas/gemm_packed.cl): dx (N, C, H, W) = beta*dx + col2im(Wᵀ dY) from dy (N, K, OH, OW)
 * and w (K, C/G, KH, KW), the same bits as the im2col route's GEMM on the packed path followed
 * by its col2im. The buffers hold exactly those tensors, from offset 0. */
typedef struct clg_gemm_conv_dx {
    cl_mem dy, w, dx;
    int N, C, H, W, K, KH, KW, PH, PW, DH, DW, OH, OW, G;
} clg_gemm_conv_dx;

/* *ok: whether the im2col route's product C (m, n) = op(A) (m, k) · B (k, n) (A transposed when
 * ta: the dcol product Wᵀ dY; not: the forward's W col) runs on the packed path in one pass
 * over k, so that clg__gemm_conv_dx and clg__gemm_conv_fwd give its bits. Enqueues nothing. */
clg_status clg__gemm_conv_direct_check(clg_context *ctx, clg_dtype dtype, bool ta, size_t m, size_t n, size_t k,
                                       bool *ok);

/* Enqueues the input gradient a describes; only after clg__gemm_conv_dx_check said ok for
 * every chunk's product. */
clg_status clg__gemm_conv_dx(clg_context *ctx, clg_dtype dtype, const clg_gemm_conv_dx *a, double beta);

/* conv2d's forward for stride 1 on the packed path, without col (pad_planes and conv_fwd in
 * cl/blas/gemm_packed.cl: x copied once into zero-padded planes, read from there without
 * masks): y (N, K, OH, OW) = conv2d(x, w) + b (b may be NULL), the same bits as the im2col
 * route's GEMM on the packed path and its bias add. The buffers hold exactly those tensors,
 * from offset 0. */
typedef struct clg_gemm_conv_fwd {
    cl_mem x, w, b, y;
    int N, C, H, W, K, KH, KW, PH, PW, DH, DW, OH, OW, G;
} clg_gemm_conv_fwd;

/* Enqueues the forward a describes; only after clg__gemm_conv_direct_check (ta false) said ok
 * for every chunk's product. */
clg_status clg__gemm_conv_fwd(clg_context *ctx, clg_dtype dtype, const clg_gemm_conv_fwd *a);

#endif
