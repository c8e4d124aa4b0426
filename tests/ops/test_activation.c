/* tests/ops/test_activation.c - relu, leaky_relu, sigmoid, tanh, gelu
 * (src/ops/activation.c, cl/ops/activation.cl): forward against host formulas in f32 and
 * f64, f64 finite-difference gradients, the beta contract, PyTorch's values
 * (tests/fixtures/ops.safetensors, 1e-10 in f64), saturation, NaN propagation, and bad input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_style.h"
#include "ref_ops.h"
#include "ops/op.h"

typedef struct act_case {
    const char *name;
    double slope; /* leaky_relu only */
    double (*f)(double x);
    double (*df)(double x);
} act_case;

static double leaky(double x) { return ref_leaky_relu(x, 0.1); }
static double leaky_grad(double x) { return ref_leaky_relu_grad(x, 0.1); }

static const act_case CASES[] = {
    {"relu", 0, ref_relu, ref_relu_grad},          {"leaky_relu", 0.1, leaky, leaky_grad},
    {"sigmoid", 0, ref_sigmoid, ref_sigmoid_grad}, {"tanh", 0, ref_tanh, ref_tanh_grad},
    {"gelu", 0, ref_gelu, ref_gelu_grad},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

static clg_status apply(clg_context *ctx, const act_case *c, const clg_tensor *x, clg_tensor **y) {
    if (strcmp(c->name, "relu") == 0) return clg_relu(ctx, x, y);
    if (strcmp(c->name, "leaky_relu") == 0) return clg_leaky_relu(ctx, x, c->slope, y);
    if (strcmp(c->name, "sigmoid") == 0) return clg_sigmoid(ctx, x, y);
    if (strcmp(c->name, "tanh") == 0) return clg_tanh(ctx, x, y);
    return clg_gelu(ctx, x, y);
}

static const int SHAPE[4] = {2, 3, 4, 5};

/* ---------------------------------------------------------------- forward */

static void check_forward(clg_context *ctx, clg_dtype dt) {
    clg_tensor *x = ref_rand(ctx, dt, 4, SHAPE, 1, -4, 4);
    double *xh = ref_to_host_f64(x);
    const size_t n = clg_tensor_numel(x);
    double *want = malloc(n * sizeof *want);
    for (size_t k = 0; k < N_CASES; k++) {
        clg_tensor *y = NULL;
        REF_OK(ctx, apply(ctx, &CASES[k], x, &y));
        assert_memory_equal(clg_tensor_shape(y), SHAPE, sizeof SHAPE);
        assert_int_equal(clg_tensor_dtype(y), dt);
        for (size_t i = 0; i < n; i++)
            want[i] = CASES[k].f(xh[i]);
        double *got = ref_to_host_f64(y);
        char what[64];
        snprintf(what, sizeof what, "%s %s forward", CASES[k].name, clg_dtype_name(dt));
        if (dt == CLG_F64)
            ref_assert_close(got, want, n, 1e-14, 1e-15, what);
        else
            ref_assert_close(got, want, n, 1e-6, 1e-6, what);
        free(got);
        clg_tensor_free(y);
    }
    free(want);
    free(xh);
    clg_tensor_free(x);
}

static void test_forward_f32(void **state) { check_forward(*state, CLG_F32); }
static void test_forward_f64(void **state) { check_forward(*state, CLG_F64); }

/* Large |x| saturates instead of overflowing into NaN; relu passes no gradient at 0. */
static void test_extremes(void **state) {
    clg_context *ctx = *state;
    const double xs[6] = {-1000, -100, -0.0, 0.0, 100, 1000};
    const int shape[1] = {6};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        clg_tensor *x = NULL;
        if (dt == CLG_F64) {
            x = ref_tensor_f64(ctx, 1, shape, xs);
        } else {
            float xf[6];
            for (int i = 0; i < 6; i++)
                xf[i] = (float)xs[i];
            REF_OK(ctx, clg_tensor_from_host(ctx, dt, 1, shape, xf, &x));
        }
        for (size_t k = 0; k < N_CASES; k++) {
            clg_tensor *y = NULL;
            REF_OK(ctx, apply(ctx, &CASES[k], x, &y));
            double *got = ref_to_host_f64(y);
            double want[6];
            for (int i = 0; i < 6; i++)
                want[i] = CASES[k].f(xs[i]);
            char what[64];
            snprintf(what, sizeof what, "%s %s at extremes", CASES[k].name, clg_dtype_name(dt));
            ref_assert_close(got, want, 6, 1e-6, 1e-30, what);
            free(got);
            clg_tensor_free(y);
        }
        /* relu'(0) = 0, as PyTorch. */
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        clg_tensor *y = NULL, *dy = NULL, *dx = NULL;
        REF_OK(ctx, clg_relu(ctx, x, &y));
        REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, shape, &dy));
        REF_OK(ctx, clg_tensor_fill(dy, 1.0));
        REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, shape, &dx));
        const double beta = 0;
        REF_OK(ctx, ref_call_backward(ctx, y, dy, &dx, &beta));
        double *g = ref_to_host_f64(dx);
        const double want[6] = {0, 0, 0, 0, 1, 1};
        ref_assert_close(g, want, 6, 0, 0, "relu gradient at 0");
        free(g);
        clg_tensor_free(y);
        clg_tensor_free(dy);
        clg_tensor_free(dx);
        clg_tensor_free(x);
    }
}

/* NaN in, NaN out where PyTorch gives NaN, forward and backward: relu keeps NaN and passes dy
 * there, leaky_relu gives slope * NaN and slope * dy, the others NaN both ways. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    const double xs[4] = {NAN, -1, 0.5, NAN};
    const int shape[1] = {4};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        const double tol = d ? 1e-12 : 1e-6;
        for (size_t k = 0; k < N_CASES; k++) {
            clg_tensor *x = NULL, *y = NULL, *dy = NULL, *dx = NULL;
            if (dt == CLG_F64) {
                x = ref_tensor_f64(ctx, 1, shape, xs);
            } else {
                const float xf[4] = {NAN, -1, 0.5f, NAN};
                REF_OK(ctx, clg_tensor_from_host(ctx, dt, 1, shape, xf, &x));
            }
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, apply(ctx, &CASES[k], x, &y));
            REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, shape, &dy));
            REF_OK(ctx, clg_tensor_fill(dy, 1.0));
            REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, shape, &dx));
            const double beta = 0;
            REF_OK(ctx, ref_call_backward(ctx, y, dy, &dx, &beta));
            double want_y[4], want_dx[4];
            for (int i = 0; i < 4; i++) {
                want_y[i] = CASES[k].f(xs[i]);
                want_dx[i] = CASES[k].df(xs[i]);
            }
            char what[64];
            double *got = ref_to_host_f64(y);
            snprintf(what, sizeof what, "%s %s forward of NaN", CASES[k].name, clg_dtype_name(dt));
            ref_assert_close_nan(got, want_y, 4, tol, tol, what);
            free(got);
            got = ref_to_host_f64(dx);
            snprintf(what, sizeof what, "%s %s backward at NaN", CASES[k].name, clg_dtype_name(dt));
            ref_assert_close_nan(got, want_dx, 4, tol, tol, what);
            free(got);
            clg_tensor_free(y), clg_tensor_free(dy), clg_tensor_free(dx), clg_tensor_free(x);
        }
    }
}

/* ---------------------------------------------------------------- gradients */

static clg_status f_act(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n;
    return apply(ctx, u, in[0], y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 4, SHAPE, 7, -3, 3);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    for (size_t k = 0; k < N_CASES; k++)
        ref_gradcheck(ctx, f_act, &x, 1, (void *)&CASES[k], 1e-6, 1e-7, CASES[k].name);
    clg_tensor_free(x);
}

/* The analytic gradient against the host derivative, through the engine. */
static void test_backward_values(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 4, SHAPE, 8, -3, 3), *r = ref_rand_f64(ctx, 4, SHAPE, 9, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    double *xh = ref_to_host_f64(x), *rh = ref_to_host_f64(r);
    const size_t n = clg_tensor_numel(x);
    double *want = malloc(n * sizeof *want);
    for (size_t k = 0; k < N_CASES; k++) {
        clg_tensor_zero_grad(x);
        clg_tensor *y = NULL;
        REF_OK(ctx, apply(ctx, &CASES[k], x, &y));
        REF_OK(ctx, clg_backward_grad(ctx, y, r));
        for (size_t i = 0; i < n; i++)
            want[i] = rh[i] * CASES[k].df(xh[i]);
        double *g = ref_to_host_f64(clg_tensor_grad(x));
        ref_assert_close(g, want, n, 1e-13, 1e-15, CASES[k].name);
        free(g);
        clg_tensor_free(y);
    }
    free(want);
    free(xh);
    free(rh);
    clg_tensor_free(r);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- beta contract */

static void check_accumulate(clg_context *ctx, clg_dtype dt) {
    clg_tensor *x = ref_rand(ctx, dt, 4, SHAPE, 10, -3, 3);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    for (size_t k = 0; k < N_CASES; k++) {
        clg_tensor *y = NULL;
        REF_OK(ctx, apply(ctx, &CASES[k], x, &y));
        ref_check_accumulate(ctx, y, &x, 1, CASES[k].name);
        clg_tensor_free(y);
    }
    clg_tensor_free(x);
}

static void test_accumulate_f32(void **state) { check_accumulate(*state, CLG_F32); }
static void test_accumulate_f64(void **state) { check_accumulate(*state, CLG_F64); }

/* ---------------------------------------------------------------- PyTorch */

static void test_pytorch(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "ops.safetensors");
    for (size_t k = 0; k < N_CASES; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s.x", CASES[k].name);
        clg_tensor *x = ref_fixture_tensor(ctx, &f, name);
        snprintf(name, sizeof name, "%s.r", CASES[k].name);
        clg_tensor *r = ref_fixture_tensor(ctx, &f, name);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        clg_tensor *y = NULL;
        REF_OK(ctx, apply(ctx, &CASES[k], x, &y));
        REF_OK(ctx, clg_backward_grad(ctx, y, r));
        snprintf(name, sizeof name, "%s.y", CASES[k].name);
        ref_assert_fixture(&f, name, y, 1e-10, 1e-10);
        snprintf(name, sizeof name, "%s.dx", CASES[k].name);
        ref_assert_fixture(&f, name, clg_tensor_grad(x), 1e-10, 1e-10);
        clg_tensor_free(y);
        clg_tensor_free(r);
        clg_tensor_free(x);
    }
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- memory, bad input */

/* sigmoid/tanh save their output: a forward whose result is dropped without backward must
 * still give every buffer back (no node <-> output cycle). */
static void test_no_leak_without_backward(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 4, SHAPE, 12, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    const size_t before = clg_context_pool_stats(ctx).bytes_in_use;
    for (size_t k = 0; k < N_CASES; k++) {
        clg_tensor *y = NULL;
        REF_OK(ctx, apply(ctx, &CASES[k], x, &y));
        assert_non_null(y->grad_fn);
        clg_tensor_free(y);
    }
    assert_int_equal(clg_context_pool_stats(ctx).bytes_in_use, before);
    clg_tensor_free(x);
}

static void test_errors(void **state) {
    clg_context *ctx = *state;
    clg_tensor *y = (clg_tensor *)&y;
    for (size_t k = 0; k < N_CASES; k++) {
        y = (clg_tensor *)&y;
        assert_int_equal(apply(ctx, &CASES[k], NULL, &y), CLG_INVALID_ARGUMENT);
        assert_null(y);
        assert_non_null(strstr(clg_context_errmsg(ctx), CASES[k].name));
    }
    clg_tensor *x = ref_rand_f64(ctx, 4, SHAPE, 13, -1, 1);
    assert_int_equal(clg_gelu(ctx, x, NULL), CLG_INVALID_ARGUMENT);
    /* Still usable afterwards. */
    REF_OK(ctx, clg_tanh(ctx, x, &y));
    double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y);
    for (size_t i = 0; i < clg_tensor_numel(x); i++)
        xh[i] = tanh(xh[i]);
    ref_assert_close(yh, xh, clg_tensor_numel(x), 1e-14, 1e-15, "tanh after errors");
    free(xh);
    free(yh);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_f32),
        cmocka_unit_test(test_forward_f64),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_nan),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_backward_values),
        cmocka_unit_test(test_accumulate_f32),
        cmocka_unit_test(test_accumulate_f64),
        cmocka_unit_test(test_pytorch),
        cmocka_unit_test(test_no_leak_without_backward),
        cmocka_unit_test(test_errors),
    };
    return REF_RUN_BOTH_STYLES("activation", tests);
}
