/* tests/hostile/test_hostile.c - hostile sizes, offsets and shapes at every public entry point
 * that takes them (include/clgrad/ headers), through the public API only: offsets near SIZE_MAX,
 * products that wrap a size_t or an int, pads, strides, kernels and dilations near INT_MAX,
 * byte counts that do not match. Each call must return a failure status with a message in
 * clg_context_errmsg naming the call, or (where the arguments are legal however odd) the
 * right result; and the context must stay usable: a small valid op runs after every case.
 * Runs under ASan/UBSan in tests/sanitize.sh (suite 'hostile'), in both kernel styles.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_style.h"

/* ---------------------------------------------------------------- helpers */

/* A small valid op after a refused call: the context still computes. */
static void check_usable(clg_context *ctx) {
    const int shape[1] = {3};
    const float a[3] = {1, 2, 3}, b[3] = {10, 20, 30};
    clg_tensor *ta = NULL, *tb = NULL, *ts = NULL;
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F32, 1, shape, a, &ta));
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F32, 1, shape, b, &tb));
    REF_OK(ctx, clg_add(ctx, ta, tb, &ts));
    float got[3];
    REF_OK(ctx, clg_tensor_to_host(ts, got, sizeof got));
    for (int i = 0; i < 3; i++)
        assert_true(got[i] == a[i] + b[i]);
    clg_tensor_free(ta), clg_tensor_free(tb), clg_tensor_free(ts);
}

/* The call failed (any failure status, or exactly want when want != CLG_OK) and said why,
 * naming `name`; then the context still works. */
#define REFUSED(ctx, call, want, name)                                                                     \
    do {                                                                                                   \
        clg_status st_ = (call);                                                                           \
        if (st_ >= 0 || ((want) != CLG_OK && st_ != (want)))                                               \
            fail_msg("line %d: %s -> %s, want %s: %s", __LINE__, #call, clg_status_name(st_),              \
                     (want) != CLG_OK ? clg_status_name(want) : "a failure", clg_context_errmsg(ctx));    \
        const char *m_ = clg_context_errmsg(ctx);                                                          \
        if (!m_ || !m_[0] || !strstr(m_, (name)))                                                          \
            fail_msg("line %d: %s: message \"%s\" does not name %s", __LINE__, #call, m_ ? m_ : "(null)",    \
                     (name));                                                                              \
        check_usable(ctx);                                                                                 \
    } while (0)

static clg_tensor *filled(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, double v) {
    clg_tensor *t = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, ndim, shape, &t));
    REF_OK(ctx, clg_tensor_fill(t, v));
    return t;
}

/* ---------------------------------------------------------------- GEMM */

static void test_gemm_offsets(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {16};
    clg_tensor *a = filled(ctx, CLG_F32, 1, shape, 1), *b = filled(ctx, CLG_F32, 1, shape, 1),
               *c = filled(ctx, CLG_F32, 1, shape, 0);
    const size_t M = SIZE_MAX;
    /* off + (rows - 1) * ld + cols wraps to a small number: 2x2 at offset SIZE_MAX - 2 "needs"
     * (SIZE_MAX - 2) + 4 = 1 element once wrapped. */
    REFUSED(ctx, clg_gemm(ctx, false, false, 2, 2, 2, 1, a, M - 2, 2, b, 0, 2, 0, c, 0, 2), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 2, 2, 2, 1, a, 0, 2, b, M - 2, 2, 0, c, 0, 2), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 2, 2, 2, 1, a, 0, 2, b, 0, 2, 0, c, M - 2, 2), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, true, true, 2, 2, 2, 1, a, M, 2, b, M, 2, 0, c, M, 2), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 1, 1, 1, 1, a, M, 1, b, 0, 1, 0, c, 0, 1), CLG_SHAPE_MISMATCH, "gemm");
    /* offsets just past the tensor, and one element short */
    REFUSED(ctx, clg_gemm(ctx, false, false, 1, 1, 1, 1, a, 16, 1, b, 0, 1, 0, c, 0, 1), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 4, 4, 4, 1, a, 1, 4, b, 0, 4, 0, c, 0, 4), CLG_SHAPE_MISMATCH, "gemm");
    /* offsets that fit a size_t but not the packed path's int (CLBlast or a clear refusal) */
    REFUSED(ctx, clg_gemm(ctx, false, false, 1, 1, 1, 1, a, (size_t)INT_MAX + 1, 1, b, 0, 1, 0, c, 0, 1),
            CLG_SHAPE_MISMATCH, "gemm");
    clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c);
}

static void test_gemm_sizes(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {16};
    clg_tensor *a = filled(ctx, CLG_F32, 1, shape, 1), *b = filled(ctx, CLG_F32, 1, shape, 1),
               *c = filled(ctx, CLG_F32, 1, shape, 0);
    const size_t M = SIZE_MAX, H = SIZE_MAX / 2 + 2;
    /* (rows - 1) * ld wraps: rows = SIZE_MAX/2 + 2 with ld 2 is 2^64 + 2 */
    REFUSED(ctx, clg_gemm(ctx, false, false, H, 1, 1, 1, a, 0, 2, b, 0, 1, 0, c, 0, 2), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 1, H, 1, 1, a, 0, 1, b, 0, H, 0, c, 0, H), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 1, 1, H, 1, a, 0, H, b, 0, 1, 0, c, 0, 1), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, M, M, M, 1, a, 0, M, b, 0, M, 0, c, 0, M), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, true, false, M, 1, 2, 1, a, 0, M, b, 0, 1, 0, c, 0, 1), CLG_SHAPE_MISMATCH, "gemm");
    /* a leading dimension that wraps the span: (2 - 1) * SIZE_MAX + 1 */
    REFUSED(ctx, clg_gemm(ctx, false, false, 2, 1, 1, 1, a, 0, M, b, 0, 1, 0, c, 0, 1), CLG_SHAPE_MISMATCH, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 2, 2, 2, 1, a, 0, 1, b, 0, 2, 0, c, 0, 2), CLG_INVALID_ARGUMENT, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 2, 2, 0, 1, a, 0, 2, b, 0, 2, 0, c, 0, 2), CLG_INVALID_ARGUMENT, "gemm");
    REFUSED(ctx, clg_gemm(ctx, false, false, 2, 2, 2, 1, NULL, 0, 2, b, 0, 2, 0, c, 0, 2), CLG_INVALID_ARGUMENT, "gemm");
    clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c);
}

/* Legal however odd: B transposed with a leading dimension of 2^30 but one row, so it holds
 * k elements; the packed path's step between column blocks (NR * ldb) passes INT_MAX, but a
 * lone block never steps. The product is computed, right. */
static void test_gemm_huge_ld_legal(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {4};
    const float av[4] = {1, 2, 3, 4}, bv[4] = {5, 6, 7, 8};
    clg_tensor *a = NULL, *b = NULL, *c = filled(ctx, CLG_F32, 1, (const int[]){1}, 0);
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F32, 1, shape, av, &a));
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F32, 1, shape, bv, &b));
    const size_t ld = (size_t)1 << 30;
    /* C (1x1) = A^T (A stored 4x1) * B^T (B stored 1x4, ldb 2^30) */
    REF_OK(ctx, clg_gemm(ctx, true, true, 1, 1, 4, 1, a, 0, 1, b, 0, ld, 0, c, 0, 1));
    double got;
    REF_OK(ctx, clg_tensor_item(c, &got));
    assert_true(got == 1 * 5 + 2 * 6 + 3 * 7 + 4 * 8);
    /* the same with A's leading dimension past the packed path's int (the product falls to a
     * path that takes size_t, or is refused clearly) */
    clg_status st = clg_gemm(ctx, true, true, 1, 1, 4, 1, b, 0, ld, a, 0, 1, 0, c, 0, ld);
    if (st == CLG_OK) {
        REF_OK(ctx, clg_tensor_item(c, &got));
        assert_true(got == 1 * 5 + 2 * 6 + 3 * 7 + 4 * 8);
    } else {
        assert_non_null(strstr(clg_context_errmsg(ctx), "gemm"));
    }
    check_usable(ctx);
    clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c);
}

/* ---------------------------------------------------------------- tensors */

static void test_tensor_shapes(void **state) {
    clg_context *ctx = *state;
    clg_tensor *t = (clg_tensor *)&t;
    const float data[4] = {0};
    const int big[4] = {INT_MAX, INT_MAX, INT_MAX, INT_MAX};
    const int wrap64[4] = {65536, 65536, 65536, 65536}; /* 2^64: a size_t product wraps to 0 */
    const int wrap32[2] = {65536, 65536};               /* 2^32: an int product wraps to 0 */
    const int past[2] = {46341, 46341};                 /* just past INT_MAX elements */
    const int neg[2] = {-1, 4}, zero[2] = {4, 0}, min[1] = {INT_MIN};
    const int *bad[] = {big, wrap64, wrap32, past, neg, zero, min};
    const int nd[] = {4, 4, 2, 2, 2, 2, 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int d = 0; d < 2; d++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            t = (clg_tensor *)&t;
            REFUSED(ctx, clg_tensor_zeros(ctx, dt, nd[i], bad[i], &t), CLG_INVALID_ARGUMENT, "tensor");
            assert_null(t);
            REFUSED(ctx, clg_tensor_from_host(ctx, dt, nd[i], bad[i], data, &t), CLG_INVALID_ARGUMENT, "tensor");
            assert_null(t);
            REFUSED(ctx, clg_tensor_rand_uniform(ctx, dt, nd[i], bad[i], 0, 1, 1, &t), CLG_INVALID_ARGUMENT,
                    "tensor");
            REFUSED(ctx, clg_tensor_rand_normal(ctx, dt, nd[i], bad[i], 0, 1, 1, &t), CLG_INVALID_ARGUMENT,
                    "tensor");
        }
    }
    const int ok[1] = {4};
    REFUSED(ctx, clg_tensor_zeros(ctx, CLG_F32, 0, ok, &t), CLG_INVALID_ARGUMENT, "ndim");
    REFUSED(ctx, clg_tensor_zeros(ctx, CLG_F32, 5, ok, &t), CLG_INVALID_ARGUMENT, "ndim");
    REFUSED(ctx, clg_tensor_zeros(ctx, CLG_F32, INT_MAX, ok, &t), CLG_INVALID_ARGUMENT, "ndim");
    REFUSED(ctx, clg_tensor_zeros(ctx, CLG_F32, INT_MIN, ok, &t), CLG_INVALID_ARGUMENT, "ndim");
    REFUSED(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, NULL, &t), CLG_INVALID_ARGUMENT, "shape");
    REFUSED(ctx, clg_tensor_zeros(ctx, (clg_dtype)7, 1, ok, &t), CLG_INVALID_ARGUMENT, "dtype");
}

static void test_tensor_bytes(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {3, 5};
    clg_tensor *t = filled(ctx, CLG_F32, 2, shape, 1), *u = filled(ctx, CLG_F32, 1, (const int[]){16}, 1);
    float buf[16] = {0};
    const size_t wrong[] = {0, 1, 59, 61, SIZE_MAX, SIZE_MAX - 59, (size_t)60 << 32, 15};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        REFUSED(ctx, clg_tensor_to_host(t, buf, wrong[i]), CLG_INVALID_ARGUMENT, "clg_tensor_to_host");
        REFUSED(ctx, clg_tensor_write(t, buf, wrong[i]), CLG_INVALID_ARGUMENT, "clg_tensor_write");
    }
    REFUSED(ctx, clg_tensor_copy(t, u), CLG_SHAPE_MISMATCH, "clg_tensor_copy");
    double v;
    REFUSED(ctx, clg_tensor_item(t, &v), CLG_SHAPE_MISMATCH, "clg_tensor_item");
    /* the tensor kept its values through all of that */
    REF_OK(ctx, clg_tensor_to_host(t, buf, 60));
    for (int i = 0; i < 15; i++)
        assert_true(buf[i] == 1.0f);
    clg_tensor_free(t), clg_tensor_free(u);
}

/* ---------------------------------------------------------------- reshape */

static void test_reshape(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = filled(ctx, CLG_F32, 1, (const int[]){8}, 1), *y = (clg_tensor *)&y;
    /* known dims whose product wraps a size_t: 2^21 * 2^21 * 2^22 = 2^64 -> 0, once a
     * division by zero inferring the -1 */
    const int wrap0[4] = {-1, 1 << 21, 1 << 21, 1 << 22};
    const int wrap0b[4] = {1 << 21, 1 << 21, 1 << 22, -1};
    const int wrap64[4] = {65536, 65536, 65536, 65536};
    /* 8 * 2^20 * 2^20 * 2^21 = 2^64: the product wraps to 0 */
    const int wrap8[4] = {8, 1 << 20, 1 << 20, 1 << 21};
    const int big[4] = {INT_MAX, INT_MAX, INT_MAX, -1};
    const int two_infer[2] = {-1, -1}, zero[2] = {0, 8}, neg[2] = {-2, -4}, min[2] = {INT_MIN, -8};
    const int *bad[] = {wrap0, wrap0b, wrap64, wrap8, big, two_infer, zero, neg, min};
    const int nd[] = {4, 4, 4, 4, 4, 2, 2, 2, 2};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        y = (clg_tensor *)&y;
        REFUSED(ctx, clg_reshape(ctx, x, nd[i], bad[i], &y), CLG_OK, "reshape");
        assert_null(y);
    }
    REFUSED(ctx, clg_reshape(ctx, x, 0, wrap0, &y), CLG_INVALID_ARGUMENT, "reshape");
    REFUSED(ctx, clg_reshape(ctx, x, 5, wrap0, &y), CLG_INVALID_ARGUMENT, "reshape");
    REFUSED(ctx, clg_reshape(ctx, x, INT_MIN, wrap0, &y), CLG_INVALID_ARGUMENT, "reshape");
    REFUSED(ctx, clg_reshape(ctx, x, 2, NULL, &y), CLG_INVALID_ARGUMENT, "reshape");
    REFUSED(ctx, clg_flatten(ctx, x, &y), CLG_SHAPE_MISMATCH, "flatten");
    /* a legal one afterwards */
    REF_OK(ctx, clg_reshape(ctx, x, 3, (const int[]){2, -1, 2}, &y));
    assert_int_equal(clg_tensor_shape(y)[1], 2);
    clg_tensor_free(y), clg_tensor_free(x);
}

/* ---------------------------------------------------------------- conv2d */

static clg_conv2d_params conv_p(int sh, int sw, int ph, int pw, int dh, int dw, int g) {
    clg_conv2d_params p = {sh, sw, ph, pw, dh, dw, g};
    return p;
}

static void test_conv2d_params(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {1, 2, 5, 5}, ws[4] = {2, 2, 3, 3}, ys[4] = {1, 2, 3, 3};
    clg_tensor *x = filled(ctx, CLG_F32, 4, xs, 1), *w = filled(ctx, CLG_F32, 4, ws, 1),
               *yv = filled(ctx, CLG_F32, 4, ys, 0), *y = (clg_tensor *)&y;
    const int I = INT_MAX;
    const clg_conv2d_params bad[] = {
        /* H + 2 * pad overflows int: the message once read "padded input -2147483643 x 5" */
        conv_p(1, 1, I, 0, 1, 1, 1),
        conv_p(1, 1, 0, I, 1, 1, 1),
        conv_p(1, 1, I / 2, I / 2, 1, 1, 1),
        conv_p(I, I, I, I, 1, 1, 1),
        /* dilation * (kernel - 1) + 1 past the padded input (and past int) */
        conv_p(1, 1, 0, 0, I, 1, 1),
        conv_p(1, 1, 0, 0, I / 2, I / 2, 1),
        /* out of range */
        conv_p(0, 1, 0, 0, 1, 1, 1),
        conv_p(1, INT_MIN, 0, 0, 1, 1, 1),
        conv_p(1, 1, -1, 0, 1, 1, 1),
        conv_p(1, 1, 0, INT_MIN, 1, 1, 1),
        conv_p(1, 1, 0, 0, 0, 1, 1),
        conv_p(1, 1, 0, 0, 1, INT_MIN, 1),
        conv_p(1, 1, 0, 0, 1, 1, 0),
        conv_p(1, 1, 0, 0, 1, 1, I),
        conv_p(1, 1, 0, 0, 1, 1, INT_MIN),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        y = (clg_tensor *)&y;
        REFUSED(ctx, clg_conv2d(ctx, x, w, NULL, bad[i], &y), CLG_OK, "clg_conv2d");
        assert_null(y);
        const char *m = clg_context_errmsg(ctx);
        if (strstr(m, "padded input")) /* the size is printed right, never negative */
            assert_null(strstr(m, "padded input -"));
        REFUSED(ctx, clg_conv2d_forward(ctx, x, w, NULL, bad[i], yv), CLG_OK, "clg_conv2d_forward");
        REFUSED(ctx, clg_conv2d_backward(ctx, x, w, yv, bad[i], x, w, NULL, 0), CLG_OK, "clg_conv2d_backward");
    }
    /* the padded size printed right, and said to be too large (not a kernel that does not fit) */
    REFUSED(ctx, clg_conv2d(ctx, x, w, NULL, conv_p(1, 1, I, 0, 1, 1, 1), &y), CLG_UNSUPPORTED,
            "padded input 4294967299 x 5");
    REFUSED(ctx, clg_conv2d(ctx, x, w, NULL, conv_p(1, 1, 0, 0, I, 1, 1), &y), CLG_SHAPE_MISMATCH,
            "larger than the padded input 5 x 5");
    /* the output size helper: -1 for what does not fit, never a wrapped value */
    assert_int_equal(clg_conv2d_out_size(5, 3, 1, I, 1), -1);
    assert_int_equal(clg_conv2d_out_size(I, 1, 1, I, 1), -1);
    assert_int_equal(clg_conv2d_out_size(5, 3, 1, 0, I), -1);
    assert_int_equal(clg_conv2d_out_size(5, I, 1, 0, 1), -1);
    assert_int_equal(clg_conv2d_out_size(5, 3, 0, 0, 1), -1);
    assert_int_equal(clg_conv2d_out_size(5, 3, I, I / 2, 1), 2); /* (5 + 2^31 - 2 - 3) / I + 1 */
    /* y of the wrong shape */
    clg_tensor *yw = filled(ctx, CLG_F32, 4, (const int[]){1, 2, 3, 4}, 0);
    REFUSED(ctx, clg_conv2d_forward(ctx, x, w, NULL, clg_conv2d_default_params(), yw), CLG_SHAPE_MISMATCH,
            "clg_conv2d_forward");
    clg_tensor_free(yw), clg_tensor_free(yv), clg_tensor_free(x), clg_tensor_free(w);
}

/* Legal however odd: padding 2^29 columns on each side with a stride of INT_MAX, so the one
 * output column sees only padding. The CPU-style im2col once computed its first in-image
 * column as (-w0 + SW - 1) / SW, which overflowed to 0 and read 2^29 elements before the
 * image; col2im's (lo + SW - 1) / SW wrote as far outside its private sums. The output is the
 * bias, the input gradient 0, the weight gradient 0. */
static void test_conv2d_huge_stride_legal(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {1, 1, 5, 5}, ws[4] = {1, 1, 1, 1};
    clg_tensor *x = filled(ctx, CLG_F32, 4, xs, 1), *w = filled(ctx, CLG_F32, 4, ws, 2),
               *b = filled(ctx, CLG_F32, 1, (const int[]){1}, 0.5), *y = NULL;
    const clg_conv2d_params p = conv_p(1, INT_MAX, 0, 1 << 29, 1, 1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
    REF_OK(ctx, clg_conv2d(ctx, x, w, b, p, &y));
    assert_int_equal(clg_tensor_shape(y)[2], 5);
    assert_int_equal(clg_tensor_shape(y)[3], 1);
    float got[5], gx[25], gw;
    REF_OK(ctx, clg_tensor_to_host(y, got, sizeof got));
    for (int i = 0; i < 5; i++)
        assert_true(got[i] == 0.5f);
    clg_tensor *dy = filled(ctx, CLG_F32, 4, clg_tensor_shape(y), 1);
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    REF_OK(ctx, clg_tensor_to_host(clg_tensor_grad(x), gx, sizeof gx));
    for (int i = 0; i < 25; i++)
        assert_true(gx[i] == 0.0f);
    REF_OK(ctx, clg_tensor_to_host(clg_tensor_grad(w), &gw, sizeof gw));
    assert_true(gw == 0.0f);
    /* the same down the rows: padding 2^29 rows, stride INT_MAX */
    clg_tensor_free(y);
    REF_OK(ctx, clg_conv2d(ctx, x, w, b, conv_p(INT_MAX, 1, 1 << 29, 0, 1, 1, 1), &y));
    REF_OK(ctx, clg_tensor_to_host(y, got, sizeof got));
    for (int i = 0; i < 5; i++)
        assert_true(got[i] == 0.5f);
    check_usable(ctx);
    clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(b), clg_tensor_free(w), clg_tensor_free(x);
}

/* ---------------------------------------------------------------- pooling */

static clg_pool2d_params pool_p(int kh, int kw, int sh, int sw, int ph, int pw) {
    clg_pool2d_params p = clg_pool2d_default_params();
    p.kernel_h = kh, p.kernel_w = kw, p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw;
    return p;
}

static void test_pool2d_params(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {1, 1, 4, 4};
    clg_tensor *x = filled(ctx, CLG_F32, 4, xs, 1), *y = (clg_tensor *)&y;
    const int I = INT_MAX;
    const clg_pool2d_params bad[] = {
        /* h + 2 * pad overflows int (pad up to kernel / 2) */
        pool_p(I, 2, 1, 1, I / 2, 0),
        pool_p(2, I, 1, 1, 0, I / 2),
        pool_p(I, I, I, I, I / 2, I / 2),
        /* the kernel past the padded input */
        pool_p(I, 1, 1, 1, 0, 0),
        pool_p(5, 5, 1, 1, 0, 0),
        /* out of range */
        pool_p(0, 2, 1, 1, 0, 0),
        pool_p(2, INT_MIN, 1, 1, 0, 0),
        pool_p(2, 2, -1, 1, 0, 0),
        pool_p(2, 2, 1, INT_MIN, 0, 0),
        pool_p(2, 2, 1, 1, -1, 0),
        pool_p(2, 2, 1, 1, 0, INT_MIN),
        pool_p(2, 2, 1, 1, 2, 0),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        y = (clg_tensor *)&y;
        REFUSED(ctx, clg_max_pool2d(ctx, x, bad[i], &y), CLG_OK, "max_pool2d");
        assert_null(y);
        REFUSED(ctx, clg_avg_pool2d(ctx, x, bad[i], &y), CLG_OK, "avg_pool2d");
        assert_null(y);
    }
    clg_tensor_free(x);
}

/* Output sizes near INT_MAX: oh + 1 overflowed int in the host's index check, and
 * N * C * OH * OW can wrap a size_t (65536 * 2^24 * 2^24 = 2^64). */
static void test_adaptive_pool2d_sizes(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = filled(ctx, CLG_F32, 4, (const int[]){1, 1, 2, 2}, 1), *y = (clg_tensor *)&y;
    clg_tensor *xc = filled(ctx, CLG_F32, 4, (const int[]){1, 65536, 1, 1}, 1);
    const int I = INT_MAX;
    const int sizes[][2] = {{I, 1}, {1, I}, {I, I}, {1 << 30, 2}, {0, 1}, {1, -1}, {INT_MIN, INT_MIN}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        y = (clg_tensor *)&y;
        REFUSED(ctx, clg_adaptive_avg_pool2d(ctx, x, sizes[i][0], sizes[i][1], &y), CLG_OK, "adaptive_avg_pool2d");
        assert_null(y);
    }
    REFUSED(ctx, clg_adaptive_avg_pool2d(ctx, xc, 1 << 24, 1 << 24, &y), CLG_OK, "");
    assert_null(y);
    clg_tensor_free(xc), clg_tensor_free(x);
}

/* Legal however odd. A 65537 x 65537 window (padding 32768) over one pixel: the average's
 * divisor 65537^2 passes INT_MAX (it was an int product); and a stride of INT_MAX, where the
 * backward's ceil(t / s) was (t + s - 1) / s, which overflowed and sent gradient to inputs
 * no window covers. */
static void test_pool2d_huge_legal(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = filled(ctx, CLG_F64, 4, (const int[]){1, 1, 1, 1}, 3.0), *y = NULL;
    const int K = 65537, P = 32768;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_avg_pool2d(ctx, x, pool_p(K, K, 1, 1, P, P), &y));
    assert_int_equal(clg_tensor_numel(y), 1);
    double v, g;
    const double div = (double)K * (double)K;
    REF_OK(ctx, clg_tensor_item(y, &v));
    assert_true(fabs(v - 3.0 / div) <= 1e-15 * (3.0 / div));
    REF_OK(ctx, clg_backward(ctx, y));
    REF_OK(ctx, clg_tensor_item(clg_tensor_grad(x), &g));
    assert_true(fabs(g - 1.0 / div) <= 1e-15 * (1.0 / div));
    clg_tensor_free(y);
    REF_OK(ctx, clg_max_pool2d(ctx, x, pool_p(K, K, 1, 1, P, P), &y));
    REF_OK(ctx, clg_tensor_item(y, &v));
    assert_true(v == 3.0);
    clg_tensor_free(y), clg_tensor_free(x);

    /* stride INT_MAX over 10 x 10: one 2 x 2 window at the corner */
    const int xs[4] = {1, 1, 10, 10};
    x = filled(ctx, CLG_F32, 4, xs, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    for (int kind = 0; kind < 2; kind++) {
        const clg_pool2d_params p = pool_p(2, 2, INT_MAX, INT_MAX, 0, 0);
        REF_OK(ctx, kind ? clg_max_pool2d(ctx, x, p, &y) : clg_avg_pool2d(ctx, x, p, &y));
        assert_int_equal(clg_tensor_numel(y), 1);
        clg_tensor_zero_grad(x);
        REF_OK(ctx, clg_backward(ctx, y));
        float gx[100];
        REF_OK(ctx, clg_tensor_to_host(clg_tensor_grad(x), gx, sizeof gx));
        for (int i = 0; i < 100; i++) {
            const bool in_window = i / 10 < 2 && i % 10 < 2;
            const float want = kind ? (i == 0 ? 1.0f : 0.0f) : (in_window ? 0.25f : 0.0f);
            if (gx[i] != want)
                fail_msg("%s_pool2d stride INT_MAX: dx[%d] = %g, want %g", kind ? "max" : "avg", i, gx[i], want);
        }
        clg_tensor_free(y);
    }
    check_usable(ctx);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- the other ops */

static void test_other_ops(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = filled(ctx, CLG_F32, 2, (const int[]){2, 3}, 1), *w = filled(ctx, CLG_F32, 2, (const int[]){4, 3}, 1);
    clg_tensor *wb = filled(ctx, CLG_F32, 2, (const int[]){4, 2}, 1), *v = filled(ctx, CLG_F32, 1, (const int[]){6}, 1);
    clg_tensor *y = NULL;
    REFUSED(ctx, clg_linear(ctx, x, wb, NULL, &y), CLG_SHAPE_MISMATCH, "linear");
    REFUSED(ctx, clg_linear(ctx, x, w, v, &y), CLG_SHAPE_MISMATCH, "linear");
    REFUSED(ctx, clg_linear(ctx, v, w, NULL, &y), CLG_SHAPE_MISMATCH, "linear");
    REFUSED(ctx, clg_add(ctx, x, v, &y), CLG_SHAPE_MISMATCH, "add");
    REFUSED(ctx, clg_mul(ctx, x, w, &y), CLG_SHAPE_MISMATCH, "mul");
    /* targets: a count that does not match (up to SIZE_MAX), classes out of range */
    const int32_t t2[2] = {0, 1}, tbad[2] = {0, INT32_MAX}, tneg[2] = {INT32_MIN, 0};
    REFUSED(ctx, clg_softmax_cross_entropy(ctx, x, t2, SIZE_MAX, &y), CLG_SHAPE_MISMATCH, "softmax_cross_entropy");
    REFUSED(ctx, clg_softmax_cross_entropy(ctx, x, t2, 0, &y), CLG_SHAPE_MISMATCH, "softmax_cross_entropy");
    REFUSED(ctx, clg_softmax_cross_entropy(ctx, x, t2, (size_t)1 << 32 | 2, &y), CLG_SHAPE_MISMATCH,
            "softmax_cross_entropy");
    REFUSED(ctx, clg_softmax_cross_entropy(ctx, x, tbad, 2, &y), CLG_INVALID_ARGUMENT, "softmax_cross_entropy");
    REFUSED(ctx, clg_softmax_cross_entropy(ctx, x, tneg, 2, &y), CLG_INVALID_ARGUMENT, "softmax_cross_entropy");
    REFUSED(ctx, clg_softmax_cross_entropy(ctx, v, t2, 2, &y), CLG_SHAPE_MISMATCH, "softmax_cross_entropy");
    REFUSED(ctx, clg_mse_loss(ctx, x, v, &y), CLG_SHAPE_MISMATCH, "mse_loss");
    const double ps[] = {-1e-300, 1.0000001, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        REFUSED(ctx, clg_dropout(ctx, x, ps[i], true, 1, &y), CLG_INVALID_ARGUMENT, "dropout");
    /* batch norm: x must be 4-D, parameters must be (C) */
    clg_tensor *x4 = filled(ctx, CLG_F32, 4, (const int[]){2, 3, 2, 2}, 1);
    clg_tensor *rm = filled(ctx, CLG_F32, 1, (const int[]){3}, 0), *rv = filled(ctx, CLG_F32, 1, (const int[]){3}, 1);
    clg_batch_norm2d_params bp = clg_batch_norm2d_default_params();
    REFUSED(ctx, clg_batch_norm2d(ctx, x, NULL, NULL, rm, rv, bp, &y), CLG_OK, "batch_norm2d");
    REFUSED(ctx, clg_batch_norm2d(ctx, x4, v, NULL, rm, rv, bp, &y), CLG_OK, "batch_norm2d");
    REFUSED(ctx, clg_batch_norm2d(ctx, x4, NULL, NULL, v, rv, bp, &y), CLG_OK, "batch_norm2d");
    const double eps[] = {-1, NAN, INFINITY}, mom[] = {-0.5, 1.5, NAN};
    for (int i = 0; i < 3; i++) {
        bp = clg_batch_norm2d_default_params(), bp.eps = eps[i];
        REFUSED(ctx, clg_batch_norm2d(ctx, x4, NULL, NULL, rm, rv, bp, &y), CLG_INVALID_ARGUMENT, "batch_norm2d");
        bp = clg_batch_norm2d_default_params(), bp.momentum = mom[i];
        REFUSED(ctx, clg_batch_norm2d(ctx, x4, NULL, NULL, rm, rv, bp, &y), CLG_INVALID_ARGUMENT, "batch_norm2d");
    }
    /* cat: counts and dims out of range (n is read before xs: never past the array) */
    const clg_tensor *two[2] = {x, x};
    const int ns[] = {0, -1, INT_MIN, INT_MAX, CLG_CAT_MAX + 1};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        REFUSED(ctx, clg_cat(ctx, ns[i], two, 0, &y), CLG_INVALID_ARGUMENT, "cat");
    const int dims[] = {2, -3, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        REFUSED(ctx, clg_cat(ctx, 2, two, dims[i], &y), CLG_INVALID_ARGUMENT, "cat");
    REFUSED(ctx, clg_cat(ctx, 2, NULL, 0, &y), CLG_INVALID_ARGUMENT, "cat");
    clg_tensor *all[] = {x, w, wb, v, x4, rm, rv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        clg_tensor_free(all[i]);
}

/* Modules build tensors from sizes they are given: huge ones are refused there too. */
static void test_module_sizes(void **state) {
    clg_context *ctx = *state;
    clg_module *m = NULL;
    const int I = INT_MAX;
    REFUSED(ctx, clg_linear_module_create(ctx, "fc", I, I, true, 1, &m), CLG_OK, "tensor");
    assert_null(m);
    REFUSED(ctx, clg_linear_module_create(ctx, "fc", 65536, 65536, true, 1, &m), CLG_OK, "tensor");
    REFUSED(ctx, clg_linear_module_create(ctx, "fc", -1, 4, true, 1, &m), CLG_OK, "");
    REFUSED(ctx, clg_conv2d_module_create(ctx, "conv", I, I, I, I, clg_conv2d_default_params(), true, 1, &m),
            CLG_OK, "");
    REFUSED(ctx, clg_conv2d_module_create(ctx, "conv", 256, 256, 256, 256, clg_conv2d_default_params(), true, 1, &m),
            CLG_OK, "");
    REFUSED(ctx, clg_batch_norm2d_module_create(ctx, "bn", I, 1e-5, 0.1, &m), CLG_OK, "");
    REFUSED(ctx, clg_batch_norm2d_module_create(ctx, "bn", -4, 1e-5, 0.1, &m), CLG_OK, "");
    assert_null(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_offsets),
        cmocka_unit_test(test_gemm_sizes),
        cmocka_unit_test(test_gemm_huge_ld_legal),
        cmocka_unit_test(test_tensor_shapes),
        cmocka_unit_test(test_tensor_bytes),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_conv2d_params),
        cmocka_unit_test(test_conv2d_huge_stride_legal),
        cmocka_unit_test(test_pool2d_params),
        cmocka_unit_test(test_pool2d_huge_legal),
        cmocka_unit_test(test_adaptive_pool2d_sizes),
        cmocka_unit_test(test_other_ops),
        cmocka_unit_test(test_module_sizes),
    };
    return REF_RUN_BOTH_STYLES("hostile", tests);
}
