/* src/ops/conv2d.h - conv2d's internals for the op that runs them with the roles swapped:
 * conv_transpose2d (src/ops/conv_transpose2d.c), whose forward is conv2d's input gradient
 * and whose backward is conv2d's forward and weight gradient. Implemented in
 * src/ops/conv2d.c (kernels cl/ops/conv2d.cl); tests: tests/ops/test_conv_transpose2d.c.
 */
#ifndef CLGRAD_OPS_CONV2D_H
#define CLGRAD_OPS_CONV2D_H

#include "ops/op.h"

/* One convolution's sizes, validated by the caller so that every index the kernels form fits
 * an int (see conv_check in conv2d.c for the limits). OH and OW may be smaller than the
 * natural output size: the output rows and columns past them are then left out (their dx
 * terms skipped), which is what conv_transpose2d's output_padding >= stride needs. */
typedef struct clg_conv_dims {
    int N, C, H, W; /* x (N, C, H, W) */
    int K, KH, KW;  /* w (K, C/groups, KH, KW) */
    int G, Cg, Kg;  /* groups and channels per group */
    int OH, OW, P;  /* output size, P = OH*OW */
    size_t ckk;     /* C*KH*KW: rows of col */
    size_t cgkk;    /* Cg*KH*KW: rows of one group's slice of col, columns of W_g */
    clg_dtype dt;
} clg_conv_dims;

/* y (N, K, OH, OW) = conv2d(x, w) + b (b may be NULL), overwriting y. */
clg_status clg__conv2d_forward_dims(clg_context *ctx, const clg_conv_dims *d, const clg_conv2d_params *p,
                                    const clg_tensor *x, const clg_tensor *w, const clg_tensor *b,
                                    clg_tensor *y);

/* From dy (N, K, OH, OW): dx = beta_x*dx + conv2d's input gradient, dw = beta_w*dw + its
 * weight gradient; either may be NULL to skip it. x is read only for dw and w only for dx,
 * so each may be NULL when that gradient is. */
clg_status clg__conv2d_backward_dims(clg_context *ctx, const clg_conv_dims *d, const clg_conv2d_params *p,
                                     const clg_tensor *x, const clg_tensor *w, const clg_tensor *dy,
                                     clg_tensor *dx, double beta_x, clg_tensor *dw, double beta_w);

/* y (n, k, plane) += b (k) per channel. */
clg_status clg__conv2d_bias_add(clg_context *ctx, clg_dtype dt, int n, int k, int plane, const clg_tensor *b,
                                clg_tensor *y);

/* db (k) = beta*db + the sum of dy (n, k, plane) over n and plane (deterministic tree). */
clg_status clg__conv2d_bias_grad(clg_context *ctx, clg_dtype dt, int n, int k, int plane,
                                 const clg_tensor *dy, clg_tensor *db, double beta);

#endif
