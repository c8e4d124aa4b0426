/* tests/ops/test_unary.c - neg, exp, log, sqrt, abs, clamp, pow_scalar (src/ops/unary.c,
 * cl/ops/unary.cl), in both kernel styles: forward and gradient against host references in f32
 * and f64 (tolerances from OpenCL's ulp bounds of each function), f64 finite differences, the
 * beta contract, NaN, infinities and signed zeros as PyTorch (host reference in both dtypes and
 * PyTorch's own values), PyTorch fixtures (tests/fixtures/eltwise.safetensors, written by
 * tests/fixtures/make_eltwise_fixtures.py) and bad input.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nan_test.h"
#include "ops/op.h"
#include "ref.h"
#include "ref_ops.h"
#include "ref_style.h"

typedef enum { NEG, EXP, LOG, SQRT, ABS, CLAMP, POW } unary_op;

typedef struct unary_case {
    const char *name; /* the fixture's name too */
    unary_op op;
    double p0, p1; /* clamp's min and max; pow's exponent in p0 */
    double lo, hi; /* the domain x is drawn from */
    /* The OpenCL ulp bound of the forward's math (its worst special case for pow: 16 for pow
     * itself; 1/sqrt is sqrt's 3 plus the division's 2.5), 0 for exact ones. */
    double ulps;
} unary_case;

static const unary_case cases[] = {
    {"neg", NEG, 0, 0, -2, 2, 0},
    {"exp", EXP, 0, 0, -3, 3, 3},
    {"log", LOG, 0, 0, 0.1, 3, 3},
    {"sqrt", SQRT, 0, 0, 0.1, 3, 3},
    {"abs", ABS, 0, 0, -2, 2, 0},
    {"clamp", CLAMP, -0.5, 0.7, -2, 2, 0},
    {"clamp_min", CLAMP, -0.5, INFINITY, -2, 2, 0},
    {"clamp_max", CLAMP, -INFINITY, 0.3, -2, 2, 0},
    {"clamp_bounds", CLAMP, -2.0, 1.5, -3, 3, 0}, /* the special values -2 and 1.5 lie on the bounds */
    {"pow_0", POW, 0.0, 0, -2, 2, 0},
    {"pow_1", POW, 1.0, 0, -2, 2, 0},
    {"pow_2", POW, 2.0, 0, -2, 2, 1},
    {"pow_3", POW, 3.0, 0, -2, 2, 2},
    {"pow_4", POW, 4.0, 0, -2, 2, 16},
    {"pow_0p5", POW, 0.5, 0, 0.1, 3, 16},
    {"pow_m0p5", POW, -0.5, 0, 0.1, 3, 16},
    {"pow_m1", POW, -1.0, 0, 0.5, 2, 16},
    {"pow_m2", POW, -2.0, 0, 0.5, 2, 16},
    {"pow_1p5", POW, 1.5, 0, 0.1, 3, 16},
    {"pow_2p5", POW, 2.5, 0, 0.1, 3, 16},
    {"pow_m1p5", POW, -1.5, 0, 0.1, 3, 16},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static const int SHAPE[3] = {3, 4, 5};

static clg_status call_op(clg_context *ctx, const unary_case *c, const clg_tensor *x, clg_tensor **y) {
    switch (c->op) {
    case NEG: return clg_neg(ctx, x, y);
    case EXP: return clg_exp(ctx, x, y);
    case LOG: return clg_log(ctx, x, y);
    case SQRT: return clg_sqrt(ctx, x, y);
    case ABS: return clg_abs(ctx, x, y);
    case CLAMP: return clg_clamp(ctx, x, c->p0, c->p1, y);
    case POW: return clg_pow_scalar(ctx, x, c->p0, y);
    }
    return CLG_INVALID_ARGUMENT;
}

/* ---------------------------------------------------------------- host reference */

/* torch.pow(x, e) as aten computes it: its special exponents first (0 gives 1 even at NaN;
 * 0.5 is sqrt, so -inf gives NaN), C's pow otherwise. */
static double ref_pow(double x, double e) {
    if (e == 0) return 1;
    if (e == 1) return x;
    if (e == 2) return x * x;
    if (e == 3) return x * x * x;
    if (e == 0.5) return sqrt(x);
    if (e == -0.5) return 1 / sqrt(x);
    if (e == -1) return 1 / x;
    if (e == -2) return 1 / (x * x);
    return pow(x, e);
}

static double ref_value(const unary_case *c, double x) {
    switch (c->op) {
    case NEG: return -x;
    case EXP: return exp(x);
    case LOG: return log(x);
    case SQRT: return sqrt(x);
    case ABS: return fabs(x);
    case CLAMP: return isnan(x) ? x : fmin(fmax(x, c->p0), c->p1);
    case POW: return ref_pow(x, c->p0);
    }
    return NAN;
}

/* The gradient PyTorch's derivatives.yaml gives for upstream d at x. */
static double ref_grad(const unary_case *c, double x, double d) {
    switch (c->op) {
    case NEG: return -d;
    case EXP: return d * exp(x);
    case LOG: return d / x;
    case SQRT: return d / (2 * sqrt(x));
    case ABS: return d * (x > 0 ? 1 : x < 0 ? -1 : 0); /* sgn: 0 at 0 and at NaN */
    case CLAMP: return x >= c->p0 && x <= c->p1 ? d : 0;
    case POW: return c->p0 == 0 ? 0 : d * (c->p0 * ref_pow(x, c->p0 - 1));
    }
    return NAN;
}

/* The relative spacing of the dtype's numbers: ulps of it bound a result's error. */
static double ulp_of(clg_dtype dt) { return dt == CLG_F64 ? DBL_EPSILON : FLT_EPSILON; }

/* ---------------------------------------------------------------- forward and gradient */

/* y and d sum(y * r) / dx for every case against the host reference computed from the very
 * values the device read. Forward: the function's ulp bound (+1 for the reference's own
 * rounding); gradient: that plus the three roundings of its products and quotients. */
static void check_values(clg_context *ctx, clg_dtype dt) {
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const unary_case *c = &cases[ci];
        clg_tensor *x = ref_rand(ctx, dt, 3, SHAPE, 100 + ci, c->lo, c->hi);
        clg_tensor *r = ref_rand(ctx, dt, 3, SHAPE, 200 + ci, -1, 1), *y = NULL;
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, call_op(ctx, c, x, &y));
        assert_int_equal(clg_tensor_dtype(y), dt);
        assert_int_equal(clg_tensor_ndim(y), 3);
        assert_memory_equal(clg_tensor_shape(y), SHAPE, sizeof SHAPE);
        REF_OK(ctx, clg_backward_grad(ctx, y, r));
        const size_t n = clg_tensor_numel(x);
        double *xh = ref_to_host_f64(x), *rh = ref_to_host_f64(r);
        double *wy = malloc(n * sizeof *wy), *wdx = malloc(n * sizeof *wdx);
        assert_non_null(wy), assert_non_null(wdx);
        for (size_t i = 0; i < n; i++) {
            /* In f32 the kernels see clamp's bounds rounded to f32, as PyTorch does. */
            unary_case cf = *c;
            if (dt == CLG_F32 && c->op == CLAMP) cf.p0 = (float)c->p0, cf.p1 = (float)c->p1;
            wy[i] = ref_value(&cf, xh[i]);
            wdx[i] = ref_grad(&cf, xh[i], rh[i]);
        }
        char what[96];
        double *got = ref_to_host_f64(y);
        snprintf(what, sizeof what, "%s forward (%s)", c->name, clg_dtype_name(dt));
        ref_assert_close(got, wy, n, (c->ulps + 1) * ulp_of(dt), 0, what);
        free(got);
        got = ref_to_host_f64(clg_tensor_grad(x));
        snprintf(what, sizeof what, "%s gradient (%s)", c->name, clg_dtype_name(dt));
        ref_assert_close(got, wdx, n, (c->ulps + 4) * ulp_of(dt), 0, what);
        free(got), free(xh), free(rh), free(wy), free(wdx);
        clg_tensor_free(y), clg_tensor_free(r), clg_tensor_free(x);
    }
}

static void test_values_f32(void **state) { check_values(*state, CLG_F32); }
static void test_values_f64(void **state) { check_values(*state, CLG_F64); }

static clg_status f_case(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n;
    return call_op(ctx, u, in[0], y);
}

/* Central differences in f64. Random x stays off clamp's bounds and abs's kink. */
static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const unary_case *c = &cases[ci];
        clg_tensor *x = ref_rand_f64(ctx, 3, SHAPE, 300 + ci, c->lo, c->hi);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        ref_gradcheck(ctx, f_case, &x, 1, (void *)c, 1e-6, 1e-6, c->name);
        clg_tensor_free(x);
    }
}

/* ---------------------------------------------------------------- beta contract */

static void check_accumulate(clg_context *ctx, clg_dtype dt) {
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const unary_case *c = &cases[ci];
        clg_tensor *x = ref_rand(ctx, dt, 3, SHAPE, 400 + ci, c->lo, c->hi), *y = NULL;
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, call_op(ctx, c, x, &y));
        ref_check_accumulate(ctx, y, &x, 1, c->name);
        clg_tensor_free(y), clg_tensor_free(x);
    }
}

static void test_accumulate_f32(void **state) { check_accumulate(*state, CLG_F32); }
static void test_accumulate_f64(void **state) { check_accumulate(*state, CLG_F64); }

/* No input needs a gradient, or grad mode is off: nothing is recorded. */
static void test_no_record(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 3, SHAPE, 41, 0.5, 1), *y = NULL;
    REF_OK(ctx, clg_exp(ctx, x, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    const bool was = clg_set_grad_enabled(ctx, false);
    REF_OK(ctx, clg_sqrt(ctx, x, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    clg_set_grad_enabled(ctx, was);
    clg_tensor_free(x);
}

/* exp and sqrt keep their output for backward: a backward after the caller freed y still
 * works, and a graph that is never run frees everything. */
static void test_saved_output(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 3, SHAPE, 42, 0.5, 2), *y = NULL, *s = NULL, *loss = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_sqrt(ctx, x, &y));
    clg_tensor_free(y);
    REF_OK(ctx, clg_exp(ctx, x, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &s));
    clg_tensor_free(y); /* the graph still holds what backward needs */
    REF_OK(ctx, clg_scale(ctx, s, 0.5, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    /* d/dx sum(exp(x)^2) / 2 = exp(2x) */
    double *xh = ref_to_host_f64(x), *g = ref_to_host_f64(clg_tensor_grad(x));
    const size_t n = clg_tensor_numel(x);
    for (size_t i = 0; i < n; i++)
        xh[i] = exp(2 * xh[i]);
    ref_assert_close(g, xh, n, 16 * DBL_EPSILON, 0, "d sum(exp(x)^2)/2 / dx");
    free(xh), free(g);
    clg_tensor_free(loss), clg_tensor_free(s), clg_tensor_free(x);
}

/* ---------------------------------------------------------------- NaN and special values */

static const double SPECIAL_X[7] = {NAN, -INFINITY, -2.0, -0.0, 0.0, 1.5, INFINITY};
static const double SPECIAL_DY[7] = {1, 1, 1, 1, 1, 1, NAN};

/* NaN, infinities and zeros in x, a NaN in dy: NaN exactly where the reference (PyTorch's
 * rules, checked against PyTorch's own values in test_pytorch_fixtures) has it, in both dtypes. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {7};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        clg_tensor *x = nan_tensor(ctx, dt, 1, shape, SPECIAL_X), *dy = nan_tensor(ctx, dt, 1, shape, SPECIAL_DY);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        for (size_t ci = 0; ci < N_CASES; ci++) {
            const unary_case *c = &cases[ci];
            unary_case cf = *c;
            if (dt == CLG_F32 && c->op == CLAMP) cf.p0 = (float)c->p0, cf.p1 = (float)c->p1;
            double wy[7], wdx[7];
            for (int i = 0; i < 7; i++) {
                wy[i] = ref_value(&cf, SPECIAL_X[i]);
                wdx[i] = ref_grad(&cf, SPECIAL_X[i], SPECIAL_DY[i]);
            }
            clg_tensor *y = NULL;
            REF_OK(ctx, call_op(ctx, c, x, &y));
            clg_tensor_zero_grad(x);
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            char what[96];
            snprintf(what, sizeof what, "%s forward with NaN and infinities", c->name);
            nan_expect(y, wy, 7, (c->ulps + 1) * ulp_of(dt), 0, what, dt);
            snprintf(what, sizeof what, "%s gradient with NaN and infinities", c->name);
            nan_expect(clg_tensor_grad(x), wdx, 7, (c->ulps + 4) * ulp_of(dt), 0, what, dt);
            clg_tensor_free(y);
        }
        clg_tensor_free(x), clg_tensor_free(dy);
    }
}

/* ---------------------------------------------------------------- PyTorch */

/* Each case's y and d sum(y * r) / dx from torch in f64, and the special values' (NaN where
 * torch has NaN, the same infinities). f64 bounds: the function's ulps, torch's own rounding
 * and the gradient's products. */
static void test_pytorch_fixtures(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "eltwise.safetensors");
    size_t ns = 0;
    double *sx = ref_fixture_f64(&f, "special.x", &ns), *sdy = ref_fixture_f64(&f, "special.dy", &ns);
    const int sshape[1] = {(int)ns};
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const unary_case *c = &cases[ci];
        const double rtol = (c->ulps + 5) * DBL_EPSILON;
        char name[96];
        snprintf(name, sizeof name, "%s.x", c->name);
        clg_tensor *x = ref_fixture_tensor(ctx, &f, name), *y = NULL;
        snprintf(name, sizeof name, "%s.r", c->name);
        clg_tensor *r = ref_fixture_tensor(ctx, &f, name);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, call_op(ctx, c, x, &y));
        snprintf(name, sizeof name, "%s.y", c->name);
        ref_assert_fixture(&f, name, y, rtol, 0);
        REF_OK(ctx, clg_backward_grad(ctx, y, r));
        snprintf(name, sizeof name, "%s.dx", c->name);
        ref_assert_fixture(&f, name, clg_tensor_grad(x), rtol, 0);
        clg_tensor_free(y), clg_tensor_free(r), clg_tensor_free(x);

        x = ref_tensor_f64(ctx, 1, sshape, sx);
        clg_tensor *dy = ref_tensor_f64(ctx, 1, sshape, sdy);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, call_op(ctx, c, x, &y));
        REF_OK(ctx, clg_backward_grad(ctx, y, dy));
        size_t n = 0;
        snprintf(name, sizeof name, "%s.special.y", c->name);
        double *want = ref_fixture_f64(&f, name, &n);
        nan_expect(y, want, n, rtol, 0, name, CLG_F64);
        free(want);
        snprintf(name, sizeof name, "%s.special.dx", c->name);
        want = ref_fixture_f64(&f, name, &n);
        nan_expect(clg_tensor_grad(x), want, n, rtol, 0, name, CLG_F64);
        free(want);
        clg_tensor_free(y), clg_tensor_free(dy), clg_tensor_free(x);
    }
    free(sx), free(sdy);
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- bad input */

static void expect_fail(clg_context *ctx, clg_status got, clg_status want, const char *needle) {
    if (got != want)
        fail_msg("expected %s, got %s (%s)", clg_status_name(want), clg_status_name(got), clg_context_errmsg(ctx));
    if (!strstr(clg_context_errmsg(ctx), needle))
        fail_msg("error message \"%s\" does not mention \"%s\"", clg_context_errmsg(ctx), needle);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand(ctx, CLG_F32, 3, SHAPE, 51, 0.5, 1), *y = (clg_tensor *)&y;
    for (size_t ci = 0; ci < N_CASES; ci++) {
        y = (clg_tensor *)&y; /* must come back NULL */
        expect_fail(ctx, call_op(ctx, &cases[ci], NULL, &y), CLG_INVALID_ARGUMENT, "x is NULL");
        assert_null(y);
        expect_fail(ctx, call_op(ctx, &cases[ci], x, NULL), CLG_INVALID_ARGUMENT, "out is NULL");
    }
    y = (clg_tensor *)&y;
    expect_fail(ctx, clg_clamp(ctx, x, NAN, 1.0, &y), CLG_INVALID_ARGUMENT, "min bound is NaN");
    assert_null(y);
    expect_fail(ctx, clg_clamp(ctx, x, 0.0, NAN, &y), CLG_INVALID_ARGUMENT, "max bound is NaN");
    assert_int_equal(clg_exp(NULL, x, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_clamp(NULL, x, NAN, 0, &y), CLG_INVALID_ARGUMENT);

    /* Bounds past f32's range are that infinity in f32, and the context is still usable. */
    REF_OK(ctx, clg_clamp(ctx, x, -1e300, 1e300, &y));
    double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y);
    ref_assert_close(yh, xh, clg_tensor_numel(x), 0, 0, "clamp(x, -1e300, 1e300) in f32");
    free(xh), free(yh);
    clg_tensor_free(y), clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_f32),       cmocka_unit_test(test_values_f64),
        cmocka_unit_test(test_gradcheck),        cmocka_unit_test(test_accumulate_f32),
        cmocka_unit_test(test_accumulate_f64),   cmocka_unit_test(test_no_record),
        cmocka_unit_test(test_saved_output),     cmocka_unit_test(test_nan),
        cmocka_unit_test(test_pytorch_fixtures), cmocka_unit_test(test_bad_input),
    };
    return REF_RUN_BOTH_STYLES("unary", tests);
}
