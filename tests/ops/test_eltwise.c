/* tests/ops/test_eltwise.c - add, mul, scale (src/ops/eltwise.c, cl/ops/eltwise.cl):
 * forward against host loops in f32 and f64, f64 finite-difference gradients (including
 * x*x + x, where one tensor feeds an op twice), the beta contract, and bad input.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_style.h"
#include "ref_ops.h"
#include "nan_test.h"
#include "ops/op.h"

static const int SHAPE[3] = {2, 3, 5};

static double tol_for(clg_dtype dt) { return dt == CLG_F64 ? 1e-14 : 1e-6; }

/* ---------------------------------------------------------------- forward */

static void check_forward(clg_context *ctx, clg_dtype dt) {
    clg_tensor *a = ref_rand(ctx, dt, 3, SHAPE, 1, -2, 2), *b = ref_rand(ctx, dt, 3, SHAPE, 2, -2, 2);
    clg_tensor *sum = NULL, *prod = NULL, *sc = NULL;
    REF_OK(ctx, clg_add(ctx, a, b, &sum));
    REF_OK(ctx, clg_mul(ctx, a, b, &prod));
    REF_OK(ctx, clg_scale(ctx, a, -1.75, &sc));
    const size_t n = clg_tensor_numel(a);
    assert_int_equal(clg_tensor_numel(sum), n);
    assert_int_equal(clg_tensor_ndim(prod), 3);
    assert_memory_equal(clg_tensor_shape(sc), SHAPE, sizeof SHAPE);
    assert_int_equal(clg_tensor_dtype(sc), dt);
    double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b);
    double *want_sum = malloc(n * sizeof(double)), *want_prod = malloc(n * sizeof(double)),
           *want_sc = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        want_sum[i] = ah[i] + bh[i];
        want_prod[i] = ah[i] * bh[i];
        want_sc[i] = -1.75 * ah[i];
    }
    double *got = ref_to_host_f64(sum);
    ref_assert_close(got, want_sum, n, tol_for(dt), 0, "add");
    free(got);
    got = ref_to_host_f64(prod);
    ref_assert_close(got, want_prod, n, tol_for(dt), 0, "mul");
    free(got);
    got = ref_to_host_f64(sc);
    ref_assert_close(got, want_sc, n, tol_for(dt), 0, "scale");
    free(got);
    free(ah);
    free(bh);
    free(want_sum);
    free(want_prod);
    free(want_sc);
    clg_tensor_free(a);
    clg_tensor_free(b);
    clg_tensor_free(sum);
    clg_tensor_free(prod);
    clg_tensor_free(sc);
}

static void test_forward_f32(void **state) { check_forward(*state, CLG_F32); }
static void test_forward_f64(void **state) { check_forward(*state, CLG_F64); }

/* ---------------------------------------------------------------- gradients */

static clg_status f_add(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    return clg_add(ctx, in[0], in[1], y);
}
static clg_status f_mul(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    return clg_mul(ctx, in[0], in[1], y);
}
static clg_status f_scale(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    return clg_scale(ctx, in[0], -1.75, y);
}
/* x*x + x: x reaches mul through both inputs and add once more. */
static clg_status f_square_plus(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    clg_tensor *sq = NULL;
    clg_status st = clg_mul(ctx, in[0], in[0], &sq);
    if (st == CLG_OK) st = clg_add(ctx, sq, in[0], y);
    clg_tensor_free(sq);
    return st;
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    clg_tensor *in[2] = {ref_rand_f64(ctx, 3, SHAPE, 11, -1, 1), ref_rand_f64(ctx, 3, SHAPE, 12, -1, 1)};
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
    REF_OK(ctx, clg_tensor_set_requires_grad(in[1], true));
    ref_gradcheck(ctx, f_add, in, 2, NULL, 1e-6, 1e-7, "add");
    ref_gradcheck(ctx, f_mul, in, 2, NULL, 1e-6, 1e-7, "mul");
    ref_gradcheck(ctx, f_scale, in, 1, NULL, 1e-6, 1e-7, "scale");
    ref_gradcheck(ctx, f_square_plus, in, 1, NULL, 1e-6, 1e-7, "x*x + x");
    /* Only b needs a gradient: a's stays absent. */
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], false));
    clg_tensor_zero_grad(in[0]);
    ref_gradcheck(ctx, f_mul, in, 2, NULL, 1e-6, 1e-7, "mul, b only");
    assert_null(clg_tensor_grad(in[0]));
    clg_tensor_free(in[0]);
    clg_tensor_free(in[1]);
}

/* x*x through the engine: d/dx = 2 x r, both contributions summed into one gradient. */
static void test_square_grad_values(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 3, SHAPE, 21, -1, 1);
    clg_tensor *r = ref_rand_f64(ctx, 3, SHAPE, 22, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_mul(ctx, x, x, &y));
    REF_OK(ctx, clg_backward_grad(ctx, y, r));
    double *xh = ref_to_host_f64(x), *rh = ref_to_host_f64(r);
    const size_t n = clg_tensor_numel(x);
    assert_non_null(clg_tensor_grad(x));
    double *g = ref_to_host_f64(clg_tensor_grad(x));
    for (size_t i = 0; i < n; i++)
        xh[i] = 2 * xh[i] * rh[i];
    ref_assert_close(g, xh, n, 1e-15, 0, "d(x*x)/dx");
    free(g);
    free(xh);
    free(rh);
    clg_tensor_free(y);
    clg_tensor_free(r);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- beta contract */

static void check_accumulate(clg_context *ctx, clg_dtype dt) {
    clg_tensor *a = ref_rand(ctx, dt, 3, SHAPE, 31, -1, 1), *b = ref_rand(ctx, dt, 3, SHAPE, 32, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
    clg_tensor *y = NULL;
    clg_tensor *in[2] = {a, b};
    REF_OK(ctx, clg_add(ctx, a, b, &y));
    ref_check_accumulate(ctx, y, in, 2, "add");
    clg_tensor_free(y);
    REF_OK(ctx, clg_mul(ctx, a, b, &y));
    ref_check_accumulate(ctx, y, in, 2, "mul");
    clg_tensor_free(y);
    REF_OK(ctx, clg_scale(ctx, a, 0.3, &y));
    ref_check_accumulate(ctx, y, in, 1, "scale");
    clg_tensor_free(y);
    clg_tensor_free(a);
    clg_tensor_free(b);
}

static void test_accumulate_f32(void **state) { check_accumulate(*state, CLG_F32); }
static void test_accumulate_f64(void **state) { check_accumulate(*state, CLG_F64); }

/* No input needs a gradient, or grad mode is off: nothing is recorded. */
static void test_no_record(void **state) {
    clg_context *ctx = *state;
    clg_tensor *a = ref_rand_f64(ctx, 3, SHAPE, 41, -1, 1), *b = ref_rand_f64(ctx, 3, SHAPE, 42, -1, 1);
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_mul(ctx, a, b, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
    const bool was = clg_set_grad_enabled(ctx, false);
    REF_OK(ctx, clg_add(ctx, a, b, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    clg_set_grad_enabled(ctx, true);
    REF_OK(ctx, clg_scale(ctx, a, 2.0, &y));
    assert_non_null(y->grad_fn);
    clg_tensor_free(y);
    clg_set_grad_enabled(ctx, was);
    clg_tensor_free(a);
    clg_tensor_free(b);
}

/* ---------------------------------------------------------------- bad input */

static void test_errors(void **state) {
    clg_context *ctx = *state;
    const int other[3] = {2, 5, 3};
    clg_tensor *a = ref_rand(ctx, CLG_F32, 3, SHAPE, 51, -1, 1);
    clg_tensor *b64 = ref_rand(ctx, CLG_F64, 3, SHAPE, 52, -1, 1);
    clg_tensor *c = ref_rand(ctx, CLG_F32, 3, other, 53, -1, 1);
    clg_tensor *y = (clg_tensor *)&y; /* must come back NULL */

    assert_int_equal(clg_add(ctx, a, b64, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "f64"));
    assert_int_equal(clg_mul(ctx, a, c, &y), CLG_SHAPE_MISMATCH);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(2, 3, 5)"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "(2, 5, 3)"));
    assert_int_equal(clg_add(ctx, NULL, a, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_scale(ctx, NULL, 1.0, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_scale(ctx, a, 1.0, NULL), CLG_INVALID_ARGUMENT);

    /* The context is still usable. */
    REF_OK(ctx, clg_add(ctx, a, a, &y));
    double *ah = ref_to_host_f64(a), *yh = ref_to_host_f64(y);
    for (size_t i = 0; i < clg_tensor_numel(a); i++)
        ah[i] *= 2;
    ref_assert_close(yh, ah, clg_tensor_numel(a), 0, 0, "a + a after errors");
    free(ah);
    free(yh);
    clg_tensor_free(y);
    clg_tensor_free(a);
    clg_tensor_free(b64);
    clg_tensor_free(c);
}

/* NaN (and infinity) in, NaN out as PyTorch: a + NaN, a * NaN, inf * 0 and NaN * 0 (scale by
 * 0) are NaN forward; backward passes a NaN dy through (add, scale by 0) and multiplies it
 * (mul: dy * b, dy * a), so NaN in dy or in the other factor gives NaN. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {6};
    const double av[6] = {NAN, 1, 2, 3, INFINITY, -1}, bv[6] = {1, NAN, 0, 2, 0, NAN};
    const double dyv[6] = {1, 1, 1, NAN, 1, 1};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        const double rt = nan_rtol(dt);
        clg_tensor *a = nan_tensor(ctx, dt, 1, shape, av), *b = nan_tensor(ctx, dt, 1, shape, bv);
        clg_tensor *dy = nan_tensor(ctx, dt, 1, shape, dyv);
        REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
        REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
        double want[6], wa[6], wb[6];
        for (int op = 0; op < 4; op++) {
            clg_tensor *y = NULL;
            const double s = op == 3 ? 0.0 : 2.5;
            if (op == 0) REF_OK(ctx, clg_add(ctx, a, b, &y));
            if (op == 1) REF_OK(ctx, clg_mul(ctx, a, b, &y));
            if (op >= 2) REF_OK(ctx, clg_scale(ctx, a, s, &y));
            for (int i = 0; i < 6; i++) {
                want[i] = op == 0 ? av[i] + bv[i] : op == 1 ? av[i] * bv[i] : s * av[i];
                wa[i] = op == 0 ? dyv[i] : op == 1 ? dyv[i] * bv[i] : s * dyv[i];
                wb[i] = op == 0 ? dyv[i] : dyv[i] * av[i];
            }
            static const char *const names[4] = {"add", "mul", "scale", "scale by 0"};
            char what[64];
            snprintf(what, sizeof what, "%s forward with NaN", names[op]);
            nan_expect(y, want, 6, rt, 0, what, dt);
            clg_tensor_zero_grad(a), clg_tensor_zero_grad(b);
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            snprintf(what, sizeof what, "%s backward (a) with NaN", names[op]);
            nan_expect(clg_tensor_grad(a), wa, 6, rt, 0, what, dt);
            if (op < 2) {
                snprintf(what, sizeof what, "%s backward (b) with NaN", names[op]);
                nan_expect(clg_tensor_grad(b), wb, 6, rt, 0, what, dt);
            }
            clg_tensor_free(y);
        }
        clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(dy);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_f32),    cmocka_unit_test(test_forward_f64),
        cmocka_unit_test(test_gradcheck),      cmocka_unit_test(test_square_grad_values),
        cmocka_unit_test(test_accumulate_f32), cmocka_unit_test(test_accumulate_f64),
        cmocka_unit_test(test_no_record),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nan),
    };
    return REF_RUN_BOTH_STYLES("eltwise", tests);
}
