/* tests/ops/test_reshape.c - reshape and flatten (src/ops/reshape.c): views that share
 * the input's buffer, -1 inference, f64 finite-difference gradients through a chain, the
 * beta contract, bad shapes (and shapes whose product wraps a size_t), NaN; in both kernel
 * styles (the gradients run element kernels).
 */
#include <stdlib.h>
#include <string.h>

#include "ref_ops.h"
#include "ref_style.h"
#include "nan_test.h"

static const int SHAPE[4] = {2, 3, 4, 5};

static void check_view(clg_context *ctx, clg_dtype dt) {
    clg_tensor *x = ref_rand(ctx, dt, 4, SHAPE, 1, -1, 1);
    clg_tensor *y = NULL, *f = NULL;
    const int want[3] = {6, 4, 5};
    const int asked[3] = {6, -1, 5};
    REF_OK(ctx, clg_reshape(ctx, x, 3, asked, &y));
    assert_int_equal(clg_tensor_ndim(y), 3);
    assert_memory_equal(clg_tensor_shape(y), want, sizeof want);
    assert_int_equal(clg_tensor_dtype(y), dt);
    /* A view: the same device buffer, no copy. */
    assert_ptr_equal(clg_tensor_cl_mem(y), clg_tensor_cl_mem(x));
    REF_OK(ctx, clg_flatten(ctx, x, &f));
    const int flat[2] = {2, 60};
    assert_int_equal(clg_tensor_ndim(f), 2);
    assert_memory_equal(clg_tensor_shape(f), flat, sizeof flat);
    assert_ptr_equal(clg_tensor_cl_mem(f), clg_tensor_cl_mem(x));
    double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y), *fh = ref_to_host_f64(f);
    ref_assert_close(yh, xh, clg_tensor_numel(x), 0, 0, "reshape keeps the values in order");
    ref_assert_close(fh, xh, clg_tensor_numel(x), 0, 0, "flatten keeps the values in order");
    free(yh);
    free(fh);
    /* Writes through x show in the views, and the views outlive x's handle. */
    REF_OK(ctx, clg_tensor_fill(x, 0.5));
    clg_tensor_free(x);
    yh = ref_to_host_f64(y);
    for (size_t i = 0; i < clg_tensor_numel(y); i++)
        xh[i] = 0.5;
    ref_assert_close(yh, xh, clg_tensor_numel(y), 0, 0, "view sees the write");
    free(yh);
    free(xh);
    clg_tensor_free(y);
    clg_tensor_free(f);
}

static void test_view_f32(void **state) { check_view(*state, CLG_F32); }
static void test_view_f64(void **state) { check_view(*state, CLG_F64); }

static void test_identity_shapes(void **state) {
    clg_context *ctx = *state;
    const int s2[2] = {4, 7};
    clg_tensor *x = ref_rand_f64(ctx, 2, s2, 2, -1, 1), *y = NULL;
    REF_OK(ctx, clg_flatten(ctx, x, &y)); /* already (N, rest) */
    assert_memory_equal(clg_tensor_shape(y), s2, sizeof s2);
    clg_tensor_free(y);
    const int all[1] = {-1};
    REF_OK(ctx, clg_reshape(ctx, x, 1, all, &y));
    assert_int_equal(clg_tensor_ndim(y), 1);
    assert_int_equal(clg_tensor_shape(y)[0], 28);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- gradients */

/* mul(reshape(x) , w) then flatten: the gradient has to come back in x's shape. */
static clg_status f_chain(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    const int s[3] = {6, 4, 5};
    clg_tensor *v = NULL, *p = NULL;
    clg_status st = clg_reshape(ctx, in[0], 3, s, &v);
    if (st == CLG_OK) st = clg_mul(ctx, v, in[1], &p);
    if (st == CLG_OK) st = clg_flatten(ctx, p, y);
    clg_tensor_free(v);
    clg_tensor_free(p);
    return st;
}

static clg_status f_reshape(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    const int s[2] = {12, 10};
    return clg_reshape(ctx, in[0], 2, s, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    const int ws[3] = {6, 4, 5};
    clg_tensor *in[2] = {ref_rand_f64(ctx, 4, SHAPE, 3, -1, 1), ref_rand_f64(ctx, 3, ws, 4, -1, 1)};
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
    REF_OK(ctx, clg_tensor_set_requires_grad(in[1], true));
    ref_gradcheck(ctx, f_reshape, in, 1, NULL, 1e-6, 1e-7, "reshape");
    ref_gradcheck(ctx, f_chain, in, 2, NULL, 1e-6, 1e-7, "reshape -> mul -> flatten");
    assert_memory_equal(clg_tensor_shape(clg_tensor_grad(in[0])), SHAPE, sizeof SHAPE);
    clg_tensor_free(in[0]);
    clg_tensor_free(in[1]);
}

static void check_accumulate(clg_context *ctx, clg_dtype dt) {
    clg_tensor *x = ref_rand(ctx, dt, 4, SHAPE, 5, -1, 1), *y = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    const int s[2] = {20, 6};
    REF_OK(ctx, clg_reshape(ctx, x, 2, s, &y));
    ref_check_accumulate(ctx, y, &x, 1, "reshape");
    clg_tensor_free(y);
    REF_OK(ctx, clg_flatten(ctx, x, &y));
    ref_check_accumulate(ctx, y, &x, 1, "flatten");
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void test_accumulate_f32(void **state) { check_accumulate(*state, CLG_F32); }
static void test_accumulate_f64(void **state) { check_accumulate(*state, CLG_F64); }

/* ---------------------------------------------------------------- bad input */

static void test_errors(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 4, SHAPE, 6, -1, 1);
    clg_tensor *y = (clg_tensor *)&y;
    const int wrong[2] = {7, 17};
    assert_int_equal(clg_reshape(ctx, x, 2, wrong, &y), CLG_SHAPE_MISMATCH);
    assert_null(y);
    const char *msg = clg_context_errmsg(ctx);
    assert_non_null(strstr(msg, "(2, 3, 4, 5)"));
    assert_non_null(strstr(msg, "(7, 17)"));
    const int no_fit[2] = {7, -1};
    assert_int_equal(clg_reshape(ctx, x, 2, no_fit, &y), CLG_SHAPE_MISMATCH);
    const int two_free[2] = {-1, -1};
    assert_int_equal(clg_reshape(ctx, x, 2, two_free, &y), CLG_INVALID_ARGUMENT);
    const int zero[2] = {0, 120};
    assert_int_equal(clg_reshape(ctx, x, 2, zero, &y), CLG_INVALID_ARGUMENT);
    const int five[5] = {1, 2, 3, 4, 5};
    assert_int_equal(clg_reshape(ctx, x, 5, five, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_reshape(ctx, x, 0, five, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_reshape(ctx, x, 2, NULL, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_reshape(ctx, NULL, 2, wrong, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_flatten(ctx, NULL, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_flatten(ctx, x, NULL), CLG_INVALID_ARGUMENT);
    const int s1[1] = {5};
    clg_tensor *v = ref_rand_f64(ctx, 1, s1, 7, -1, 1);
    assert_int_equal(clg_flatten(ctx, v, &y), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(5)"));
    clg_tensor_free(v);
    /* Still usable. */
    const int ok[2] = {-1, 40};
    REF_OK(ctx, clg_reshape(ctx, x, 2, ok, &y));
    assert_int_equal(clg_tensor_shape(y)[0], 3);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

/* A view moves values, NaN included; backward hands a NaN dy back in the input's shape. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    const int xs[2] = {2, 3}, ys[3] = {3, 1, 2};
    const double xv[6] = {NAN, 1, -INFINITY, 3, NAN, 5}, dyv[6] = {1, NAN, 2, 3, 4, NAN};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        for (int k = 0; k < 2; k++) {
            clg_tensor *x = nan_tensor(ctx, dt, 2, xs, xv), *y = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, k ? clg_flatten(ctx, x, &y) : clg_reshape(ctx, x, 3, ys, &y));
            clg_tensor *dy = nan_tensor(ctx, dt, clg_tensor_ndim(y), clg_tensor_shape(y), dyv);
            nan_expect(y, xv, 6, 0, 0, k ? "flatten of NaN" : "reshape of NaN", dt);
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            nan_expect(clg_tensor_grad(x), dyv, 6, 0, 0, k ? "flatten backward of NaN" : "reshape backward of NaN", dt);
            clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(x);
        }
    }
}

/* Known dims whose product wraps a size_t: 2^21 * 2^21 * 2^22 = 2^64 was 0, and inferring the
 * -1 divided by it (SIGFPE); 65536^4 wrapped to 0 too. Refused, naming the shape. */
static void test_wrapping_shapes(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 1, (const int[]){8}, 8, -1, 1), *y = (clg_tensor *)&y;
    const int a[4] = {-1, 1 << 21, 1 << 21, 1 << 22}, b[4] = {65536, 65536, 65536, 65536};
    const int c[4] = {2, 2, 2, 1 << 30}; /* 2^33: past INT_MAX, no wrap */
    const int *shapes[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(clg_reshape(ctx, x, 4, shapes[i], &y), CLG_SHAPE_MISMATCH);
        assert_null(y);
        assert_non_null(strstr(clg_context_errmsg(ctx), "reshape"));
    }
    assert_non_null(strstr(clg_context_errmsg(ctx), "(2, 2, 2, 1073741824)"));
    REF_OK(ctx, clg_reshape(ctx, x, 2, (const int[]){-1, 4}, &y));
    assert_int_equal(clg_tensor_shape(y)[0], 2);
    clg_tensor_free(y), clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view_f32),        cmocka_unit_test(test_view_f64),
        cmocka_unit_test(test_identity_shapes), cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_accumulate_f32),  cmocka_unit_test(test_accumulate_f64),
        cmocka_unit_test(test_errors),          cmocka_unit_test(test_nan),
        cmocka_unit_test(test_wrapping_shapes),
    };
    return REF_RUN_BOTH_STYLES("reshape", tests);
}
