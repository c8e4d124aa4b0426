/* tests/ops/test_softmax.c - clg_softmax and clg_log_softmax (src/ops/softmax.c,
 * cl/ops/softmax.cl): forward and backward against the host reference below over every dim of
 * 1- to 4-D tensors (negative dims, rows longer than a work-group, values that overflow a
 * naive exp) in f32 and f64, f64 finite differences, the beta contract, PyTorch's values over
 * each dim of a 4-D tensor (tests/fixtures/softmax.safetensors, 1e-10 in f64), NaN and
 * infinities as PyTorch propagates them, and bad input; in both kernel styles.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nan_test.h"
#include "ref_ops.h"
#include "ref_style.h"

/* ---------------------------------------------------------------- host reference */

/* x viewed as (outer, D, inner) around dim. */
typedef struct geom {
    size_t outer, D, inner;
} geom;

static geom geom_of(int ndim, const int *shape, int dim) {
    if (dim < 0) dim += ndim;
    geom g = {1, (size_t)shape[dim], 1};
    for (int d = 0; d < dim; d++)
        g.outer *= (size_t)shape[d];
    for (int d = dim + 1; d < ndim; d++)
        g.inner *= (size_t)shape[d];
    return g;
}

/* y = softmax or log_softmax of x along the middle dimension, as PyTorch computes it: the
 * max (NaN skipped, as the NaN reaches every element through the sum anyway) subtracted. */
static void ref_softmax(const geom *g, const double *x, double *y, bool log_out) {
    for (size_t o = 0; o < g->outer; o++)
        for (size_t k = 0; k < g->inner; k++) {
            const double *xr = x + o * g->D * g->inner + k;
            double *yr = y + o * g->D * g->inner + k;
            double m = -INFINITY, s = 0;
            for (size_t j = 0; j < g->D; j++)
                m = xr[j * g->inner] > m ? xr[j * g->inner] : m;
            for (size_t j = 0; j < g->D; j++)
                s += exp(xr[j * g->inner] - m);
            for (size_t j = 0; j < g->D; j++)
                yr[j * g->inner] = log_out ? xr[j * g->inner] - m - log(s) : exp(xr[j * g->inner] - m) / s;
        }
}

/* PyTorch's backward from the output: softmax dx = y (dy - sum(dy y)), log_softmax
 * dx = dy - exp(y) sum(dy). */
static void ref_softmax_backward(const geom *g, const double *y, const double *dy, double *dx, bool log_out) {
    for (size_t o = 0; o < g->outer; o++)
        for (size_t k = 0; k < g->inner; k++) {
            const size_t b = o * g->D * g->inner + k;
            double dot = 0;
            for (size_t j = 0; j < g->D; j++)
                dot += log_out ? dy[b + j * g->inner] : dy[b + j * g->inner] * y[b + j * g->inner];
            for (size_t j = 0; j < g->D; j++) {
                const size_t i = b + j * g->inner;
                dx[i] = log_out ? dy[i] - exp(y[i]) * dot : y[i] * (dy[i] - dot);
            }
        }
}

/* The largest sum of |dy| over one slice: what the backward's sums are bounded by. */
static double max_slice_abs_sum(const geom *g, const double *dy) {
    double worst = 0;
    for (size_t o = 0; o < g->outer; o++)
        for (size_t k = 0; k < g->inner; k++) {
            double s = 0;
            for (size_t j = 0; j < g->D; j++)
                s += fabs(dy[o * g->D * g->inner + k + j * g->inner]);
            worst = s > worst ? s : worst;
        }
    return worst;
}

/* The rounding a slice of D values spread over `span` promises, in units of the dtype's
 * epsilon: the sum of D exps in [0, 1] (relative error up to D - 1 roundings, the tree's
 * order included), exp's argument x - max (an absolute error up to span / 2 ulp, which exp
 * turns into a relative one), and a few ulp each for exp, log and the division; doubled
 * for margin. */
static double softmax_tol(clg_dtype dt, size_t D, double span) {
    const double eps = dt == CLG_F64 ? DBL_EPSILON : FLT_EPSILON;
    return eps * (2.0 * (double)D + span + 16);
}

/* ---------------------------------------------------------------- forward and backward */

typedef struct sm_case {
    int ndim, shape[4], dim;
    double lo, hi;
} sm_case;

static const sm_case cases[] = {
    {1, {7}, 0, -3, 3},
    {1, {1}, -1, -3, 3},     /* one element: softmax 1, log_softmax 0 */
    {2, {5, 300}, 1, -3, 3}, /* rows longer than a work-group */
    {2, {5, 300}, -2, -3, 3},
    {2, {4, 6}, -1, 900, 1000}, /* exp(900) overflows even in f64 without the max */
    {3, {2, 3, 4}, 0, -3, 3},
    {3, {2, 3, 4}, 1, -3, 3},
    {3, {2, 3, 4}, -1, -3, 3},
    {4, {2, 3, 4, 5}, 0, -4, 4},
    {4, {2, 3, 4, 5}, 1, -4, 4}, /* (N, C, H, W) over the channels */
    {4, {2, 3, 4, 5}, 2, -4, 4},
    {4, {2, 3, 4, 5}, -1, -4, 4},
    {4, {3, 1, 2, 2}, 1, -4, 4}, /* a dim of size 1 */
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void run_case(clg_context *ctx, const sm_case *c, clg_dtype dt, bool log_out) {
    const geom g = geom_of(c->ndim, c->shape, c->dim);
    const size_t n = g.outer * g.D * g.inner;
    clg_tensor *x = ref_rand(ctx, dt, c->ndim, c->shape, 100 + n + (uint64_t)c->dim, c->lo, c->hi), *y = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, (log_out ? clg_log_softmax : clg_softmax)(ctx, x, c->dim, &y));
    assert_int_equal(clg_tensor_ndim(y), c->ndim);
    assert_memory_equal(clg_tensor_shape(y), c->shape, (size_t)c->ndim * sizeof(int));
    double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y), *want = malloc(n * sizeof *want);
    assert_non_null(want);
    ref_softmax(&g, xh, want, log_out);
    const double tol = softmax_tol(dt, g.D, c->hi - c->lo);
    char what[160];
    snprintf(what, sizeof what, "%s %s %d-D dim %d (D %zu, inner %zu) in [%g, %g]",
             log_out ? "log_softmax" : "softmax", clg_dtype_name(dt), c->ndim, c->dim, g.D, g.inner, c->lo,
             c->hi);
    ref_assert_close(yh, want, n, tol, tol, what);

    clg_tensor *dy = ref_rand(ctx, dt, c->ndim, c->shape, 7 + n, -1, 1);
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    double *dyh = ref_to_host_f64(dy), *gh = ref_to_host_f64(clg_tensor_grad(x));
    /* from the exact softmax: the error of y itself is part of what the bound covers */
    ref_softmax(&g, xh, yh, log_out);
    ref_softmax_backward(&g, yh, dyh, want, log_out);
    strncat(what, " backward", sizeof what - strlen(what) - 1);
    ref_assert_close(gh, want, n, tol, tol * (2 + max_slice_abs_sum(&g, dyh)), what);
    free(xh), free(yh), free(want), free(dyh), free(gh);
    clg_tensor_free(dy);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void check_all(clg_context *ctx, clg_dtype dt) {
    for (size_t c = 0; c < N_CASES; c++)
        for (int lg = 0; lg < 2; lg++)
            run_case(ctx, &cases[c], dt, lg);
}

static void test_vs_ref_f32(void **state) { check_all(*state, CLG_F32); }
static void test_vs_ref_f64(void **state) { check_all(*state, CLG_F64); }

/* Softmax sums to 1 along dim (exactly the host's sum of its outputs, within rounding). */
static void test_sums_to_one(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {2, 3, 4, 5};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, shape, 3, -5, 5), *y = NULL;
    for (int dim = 0; dim < 4; dim++) {
        REF_OK(ctx, clg_softmax(ctx, x, dim, &y));
        double *yh = ref_to_host_f64(y);
        const geom g = geom_of(4, shape, dim);
        for (size_t o = 0; o < g.outer; o++)
            for (size_t k = 0; k < g.inner; k++) {
                double s = 0;
                for (size_t j = 0; j < g.D; j++)
                    s += yh[o * g.D * g.inner + k + j * g.inner];
                const double one = 1;
                ref_assert_close(&s, &one, 1, softmax_tol(CLG_F32, g.D, 10), 0, "softmax slice sum");
            }
        free(yh);
        clg_tensor_free(y);
    }
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- gradients */

static clg_status f_softmax(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n;
    return clg_softmax(ctx, in[0], *(const int *)u, y);
}
static clg_status f_log_softmax(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n;
    return clg_log_softmax(ctx, in[0], *(const int *)u, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    const int s3[3] = {2, 3, 4}, s4[4] = {2, 3, 2, 3};
    for (int dim = -3; dim < 3; dim++) {
        clg_tensor *x = ref_rand_f64(ctx, 3, s3, 40 + (uint64_t)(dim + 3), -2, 2);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        char what[64];
        snprintf(what, sizeof what, "softmax 3-D dim %d", dim);
        ref_gradcheck(ctx, f_softmax, &x, 1, &dim, 1e-6, 1e-7, what);
        snprintf(what, sizeof what, "log_softmax 3-D dim %d", dim);
        ref_gradcheck(ctx, f_log_softmax, &x, 1, &dim, 1e-6, 1e-7, what);
        clg_tensor_free(x);
    }
    for (int dim = 0; dim < 4; dim++) {
        clg_tensor *x = ref_rand_f64(ctx, 4, s4, 50 + (uint64_t)dim, -2, 2);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        char what[64];
        snprintf(what, sizeof what, "softmax 4-D dim %d", dim);
        ref_gradcheck(ctx, f_softmax, &x, 1, &dim, 1e-6, 1e-7, what);
        snprintf(what, sizeof what, "log_softmax 4-D dim %d", dim);
        ref_gradcheck(ctx, f_log_softmax, &x, 1, &dim, 1e-6, 1e-7, what);
        clg_tensor_free(x);
    }
}

/* ---------------------------------------------------------------- beta contract */

static void test_accumulate(void **state) {
    clg_context *ctx = *state;
    const int shape[3] = {3, 5, 4};
    for (int d = 0; d < 2; d++)
        for (int dim = 0; dim < 3; dim++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            clg_tensor *x = ref_rand(ctx, dt, 3, shape, 60 + (uint64_t)dim, -2, 2), *y = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            char what[64];
            for (int lg = 0; lg < 2; lg++) {
                REF_OK(ctx, (lg ? clg_log_softmax : clg_softmax)(ctx, x, dim, &y));
                snprintf(what, sizeof what, "%s %s dim %d", lg ? "log_softmax" : "softmax",
                         clg_dtype_name(dt), dim);
                ref_check_accumulate(ctx, y, &x, 1, what);
                clg_tensor_free(y);
            }
            clg_tensor_free(x);
        }
}

/* ---------------------------------------------------------------- PyTorch */

static void test_pytorch(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "softmax.safetensors");
    clg_tensor *x = ref_fixture_tensor(ctx, &f, "softmax.x"), *r = ref_fixture_tensor(ctx, &f, "softmax.r");
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    for (int lg = 0; lg < 2; lg++)
        for (int dim = 0; dim < 4; dim++) {
            /* dim 3 asked as -1: the same dim */
            clg_tensor *y = NULL;
            REF_OK(ctx, (lg ? clg_log_softmax : clg_softmax)(ctx, x, dim == 3 ? -1 : dim, &y));
            clg_tensor_zero_grad(x);
            REF_OK(ctx, clg_backward_grad(ctx, y, r));
            char name[64];
            snprintf(name, sizeof name, "%s.dim%d.y", lg ? "log_softmax" : "softmax", dim);
            ref_assert_fixture(&f, name, y, 1e-10, 1e-12);
            snprintf(name, sizeof name, "%s.dim%d.dx", lg ? "log_softmax" : "softmax", dim);
            ref_assert_fixture(&f, name, clg_tensor_grad(x), 1e-10, 1e-12);
            clg_tensor_free(y);
        }
    clg_tensor_free(r);
    clg_tensor_free(x);
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- NaN */

/* Rows of 4 (dim -1): NaN; +inf; -inf among finite values (probability 0, log -inf); all -inf
 * (NaN, as PyTorch: -inf - -inf); plain. Then plain rows with NaN in one upstream gradient,
 * which reaches its whole row through the sum. The host reference computes as PyTorch does. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    enum { R = 5, D = 4 };
    const int shape[2] = {R, D};
    const double x[R * D] = {1, NAN, 3,         0,         1,         INFINITY,  3,   0,   -INFINITY, 0.5,
                             2, 1,   -INFINITY, -INFINITY, -INFINITY, -INFINITY, 0.1, 0.2, 0.3,       0.4};
    double x_plain[R * D], dy_plain[R * D], dy_nan[R * D];
    for (int i = 0; i < R * D; i++) {
        x_plain[i] = 0.3 * i - 2;
        dy_plain[i] = dy_nan[i] = 0.1 * (i % 7) - 0.25;
    }
    dy_nan[5] = NAN;
    const geom g = {R, D, 1};
    for (int d = 0; d < 2; d++)
        for (int lg = 0; lg < 2; lg++)
            for (int k = 0; k < 2; k++) {
                const clg_dtype dt = d ? CLG_F64 : CLG_F32;
                const double *xv = k ? x_plain : x, *dyv = k ? dy_nan : dy_plain;
                clg_tensor *xt = nan_tensor(ctx, dt, 2, shape, xv), *dy = nan_tensor(ctx, dt, 2, shape, dyv),
                           *y = NULL;
                REF_OK(ctx, clg_tensor_set_requires_grad(xt, true));
                REF_OK(ctx, (lg ? clg_log_softmax : clg_softmax)(ctx, xt, -1, &y));
                REF_OK(ctx, clg_backward_grad(ctx, y, dy));
                double want_y[R * D], want_dx[R * D];
                ref_softmax(&g, xv, want_y, lg);
                ref_softmax_backward(&g, want_y, dyv, want_dx, lg);
                const double tol = softmax_tol(dt, D, 10);
                char what[96];
                snprintf(what, sizeof what, "%s forward%s", lg ? "log_softmax" : "softmax",
                         k ? "" : " with NaN/inf");
                nan_expect(y, want_y, R * D, tol, tol, what, dt);
                snprintf(what, sizeof what, "%s backward%s", lg ? "log_softmax" : "softmax",
                         k ? " with NaN dy" : " with NaN/inf");
                nan_expect(clg_tensor_grad(xt), want_dx, R * D, tol, 4 * tol, what, dt);
                clg_tensor_free(xt), clg_tensor_free(dy), clg_tensor_free(y);
            }
}

/* ---------------------------------------------------------------- bad input */

static void test_errors(void **state) {
    clg_context *ctx = *state;
    const int shape[3] = {2, 3, 4};
    clg_tensor *x = ref_rand_f64(ctx, 3, shape, 70, -1, 1), *y = (clg_tensor *)&y;
    REF_EXPECT(ctx, clg_softmax(ctx, x, 3, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "dim 3 is out of range"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "(2, 3, 4)"));
    REF_EXPECT(ctx, clg_log_softmax(ctx, x, -4, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "log_softmax: dim -4"));
    REF_EXPECT(ctx, clg_softmax(ctx, NULL, 0, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_softmax(ctx, x, 0, NULL), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_log_softmax(NULL, x, 0, &y), CLG_INVALID_ARGUMENT);

    /* Still usable: a valid call gives the host value. */
    REF_OK(ctx, clg_softmax(ctx, x, -3, &y));
    const geom g = geom_of(3, shape, 0);
    double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y), want[24];
    ref_softmax(&g, xh, want, false);
    ref_assert_close(yh, want, 24, 1e-13, 1e-15, "softmax after errors");
    free(xh), free(yh);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_ref_f32),  cmocka_unit_test(test_vs_ref_f64),
        cmocka_unit_test(test_sums_to_one), cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_accumulate),  cmocka_unit_test(test_pytorch),
        cmocka_unit_test(test_nan),         cmocka_unit_test(test_errors),
    };
    return REF_RUN_BOTH_STYLES("softmax", tests);
}
