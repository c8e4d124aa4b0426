/* tests/ops/test_permute.c - clg_permute and clg_transpose (src/ops/permute.c,
 * cl/ops/permute.cl): forward and backward against the host reference below (copies: exact),
 * f64 finite differences, the beta contract (0 and 1, and 0.5), NaN passing through both ways,
 * and bad input, in both kernel styles. The cases cover each path permute_launch takes after
 * merging dimensions: the 2-D and batched transposes (tiled in CPU style; sizes off the tile
 * edge and many tiles per work-item) and the general 4-D gather. torch's own permute and
 * transpose (tests/fixtures/copy.safetensors from make_copy_fixtures.py) pin down which dim goes
 * where, negative dims included: exact in both dtypes.
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

typedef struct permute_case {
    int ndim, shape[4], dims[4];
    const char *name;
} permute_case;

static const permute_case cases[] = {
    {2, {37, 70}, {1, 0}, "(N, C) -> (C, N), tiles cut at the edges"},
    {2, {64, 32}, {1, 0}, "(N, C), whole tiles"},
    {2, {300, 200}, {1, 0}, "(N, C), many tiles per work-item"},
    {2, {1, 9}, {1, 0}, "a row: a plain copy"},
    {3, {3, 5, 7}, {0, 2, 1}, "batched transpose"},
    {3, {2, 33, 65}, {0, -1, -2}, "batched, tiles cut, negative dims"},
    {3, {4, 1, 6}, {2, 1, 0}, "a size-1 dim between"},
    {4, {2, 3, 4, 5}, {0, 2, 3, 1}, "NCHW -> NHWC"},
    {4, {2, 4, 5, 3}, {0, 3, 1, 2}, "NHWC -> NCHW"},
    {4, {2, 3, 4, 5}, {3, 1, 0, 2}, "general gather"},
    {4, {3, 2, 2, 3}, {1, 0, 3, 2}, "two swaps: a gather over 4 dims"},
    {4, {2, 3, 4, 5}, {-2, 0, -1, 1}, "negative dims, gather"},
    {4, {2, 3, 4, 5}, {0, 1, 2, 3}, "identity"},
    {1, {11}, {0}, "1-D"},
};
#define N_CASES (sizeof cases / sizeof cases[0])
#define GRADCHECK_MAX 400 /* elements: finite differences cost two forwards each */

static size_t numel(const int *s, int nd) {
    size_t n = 1;
    for (int d = 0; d < nd; d++)
        n *= (size_t)s[d];
    return n;
}

static void wrap_dims(const permute_case *c, int *dims) {
    for (int i = 0; i < c->ndim; i++)
        dims[i] = c->dims[i] < 0 ? c->dims[i] + c->ndim : c->dims[i];
}

/* y (shape[dims[0]], ...) with y[i_0, ..., i_{n-1}] = x[the index with i_k at dims[k]]; the
 * inverse when back: dx from dy. */
static void ref_permute(int ndim, const int *xshape, const int *dims, const double *x, double *y, bool back) {
    size_t xstride[4], n = numel(xshape, ndim);
    xstride[ndim - 1] = 1;
    for (int d = ndim - 1; d > 0; d--)
        xstride[d - 1] = xstride[d] * (size_t)xshape[d];
    for (size_t i = 0; i < n; i++) {
        size_t rest = i, src = 0;
        for (int k = ndim - 1; k >= 0; k--) {
            const size_t s = (size_t)xshape[dims[k]];
            src += (rest % s) * xstride[dims[k]];
            rest /= s;
        }
        if (back) y[src] = x[i];
        else y[i] = x[src];
    }
}

/* Forward and x's gradient against the reference, exact, with NaN in x and dy when nan. */
static void run_case(clg_context *ctx, const permute_case *c, clg_dtype dt, bool nan) {
    int dims[4];
    wrap_dims(c, dims);
    const size_t n = numel(c->shape, c->ndim);
    clg_tensor *x0 = ref_rand(ctx, dt, c->ndim, c->shape, 10, -1, 1);
    double *xh = ref_to_host_f64(x0), *want = malloc(n * sizeof *want);
    assert_non_null(want);
    clg_tensor_free(x0);
    if (nan) xh[0] = xh[n / 2] = NAN;
    clg_tensor *x = nan_tensor(ctx, dt, c->ndim, c->shape, xh), *y = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_permute(ctx, x, c->dims, &y));
    int yshape[4];
    for (int i = 0; i < c->ndim; i++)
        yshape[i] = c->shape[dims[i]];
    assert_int_equal(clg_tensor_ndim(y), c->ndim);
    assert_memory_equal(clg_tensor_shape(y), yshape, (size_t)c->ndim * sizeof(int));
    char what[160];
    snprintf(what, sizeof what, "permute %s %s forward%s", c->name, clg_dtype_name(dt), nan ? " with NaN" : "");
    ref_permute(c->ndim, c->shape, dims, xh, want, false);
    double *yh = ref_to_host_f64(y);
    ref_assert_close_nan(yh, want, n, 0, 0, what);
    clg_tensor *dy0 = ref_rand(ctx, dt, c->ndim, yshape, 11, -1, 1);
    double *dyh = ref_to_host_f64(dy0);
    clg_tensor_free(dy0);
    if (nan) dyh[n - 1] = NAN;
    clg_tensor *dy = nan_tensor(ctx, dt, c->ndim, yshape, dyh);
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    ref_permute(c->ndim, c->shape, dims, dyh, want, true);
    double *g = ref_to_host_f64(clg_tensor_grad(x));
    snprintf(what, sizeof what, "permute %s %s dx%s", c->name, clg_dtype_name(dt), nan ? " with NaN" : "");
    ref_assert_close_nan(g, want, n, 0, 0, what);
    free(xh), free(want), free(yh), free(dyh), free(g);
    clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(x);
}

static void test_vs_ref(void **state) {
    for (size_t c = 0; c < N_CASES; c++)
        for (int d = 0; d < 2; d++)
            for (int nan = 0; nan < 2; nan++)
                run_case(*state, &cases[c], d ? CLG_F64 : CLG_F32, nan);
}

/* clg_transpose is the permutation that swaps two dims (negatives from the end; a dim with
 * itself is a copy). */
static void test_transpose(void **state) {
    clg_context *ctx = *state;
    const int s[4] = {2, 3, 4, 5};
    const int pairs[][2] = {{1, -1}, {0, 3}, {2, 2}, {-4, -3}, {3, 2}};
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        const int a = (pairs[p][0] + 4) % 4, b = (pairs[p][1] + 4) % 4;
        int dims[4] = {0, 1, 2, 3};
        dims[a] = b, dims[b] = a;
        clg_tensor *x = ref_rand(ctx, CLG_F32, 4, s, 5, -1, 1), *y = NULL;
        REF_OK(ctx, clg_transpose(ctx, x, pairs[p][0], pairs[p][1], &y));
        double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y), want[120];
        ref_permute(4, s, dims, xh, want, false);
        char what[64];
        snprintf(what, sizeof what, "transpose(%d, %d)", pairs[p][0], pairs[p][1]);
        assert_int_equal(clg_tensor_shape(y)[a], s[b]);
        ref_assert_close(yh, want, 120, 0, 0, what);
        free(xh), free(yh);
        clg_tensor_free(y), clg_tensor_free(x);
    }
}

static clg_status gc_permute(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    return clg_permute(ctx, in[0], ((const permute_case *)user)->dims, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    for (size_t c = 0; c < N_CASES; c++) {
        if (numel(cases[c].shape, cases[c].ndim) > GRADCHECK_MAX) continue;
        clg_tensor *x = ref_rand_f64(ctx, cases[c].ndim, cases[c].shape, 20, -1, 1);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        char what[128];
        snprintf(what, sizeof what, "permute %s gradcheck", cases[c].name);
        ref_gradcheck(ctx, gc_permute, &x, 1, (void *)&cases[c], 1e-6, 1e-8, what);
        clg_tensor_free(x);
    }
}

static void test_accumulate(void **state) {
    clg_context *ctx = *state;
    for (int d = 0; d < 2; d++)
        for (size_t c = 0; c < N_CASES; c++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            clg_tensor *x = ref_rand(ctx, dt, cases[c].ndim, cases[c].shape, 30, -1, 1), *y = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_permute(ctx, x, cases[c].dims, &y));
            char what[128];
            snprintf(what, sizeof what, "permute %s %s", cases[c].name, clg_dtype_name(dt));
            ref_check_accumulate(ctx, y, &x, 1, what);
            clg_tensor_free(y), clg_tensor_free(x);
        }
}

/* beta = 0.5 through each path: dx = 0.5 dx + the permuted dy. 0.5 dx is exact, so the result
 * is one rounding of the exact sum: within the dtype's epsilon. */
static void test_beta_half(void **state) {
    clg_context *ctx = *state;
    const size_t picks[3] = {0, 4, 9}; /* 2-D transpose, batched transpose, gather */
    for (int d = 0; d < 2; d++)
        for (int p = 0; p < 3; p++) {
            const permute_case *c = &cases[picks[p]];
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            const size_t n = numel(c->shape, c->ndim);
            int dims[4];
            wrap_dims(c, dims);
            clg_tensor *x = ref_rand(ctx, dt, c->ndim, c->shape, 40, -1, 1), *y = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_permute(ctx, x, c->dims, &y));
            clg_tensor *dy = ref_rand(ctx, dt, c->ndim, clg_tensor_shape(y), 41, -1, 1);
            clg_tensor *dx = ref_rand(ctx, dt, c->ndim, c->shape, 42, -1, 1);
            double *dyh = ref_to_host_f64(dy), *old = ref_to_host_f64(dx), *want = malloc(n * sizeof *want);
            assert_non_null(want);
            ref_permute(c->ndim, c->shape, dims, dyh, want, true);
            for (size_t i = 0; i < n; i++)
                want[i] += 0.5 * old[i];
            const double half = 0.5;
            REF_OK(ctx, ref_call_backward(ctx, y, dy, &dx, &half));
            double *g = ref_to_host_f64(dx);
            char what[128];
            snprintf(what, sizeof what, "permute %s %s backward at beta 0.5", c->name, clg_dtype_name(dt));
            ref_assert_close(g, want, n, dt == CLG_F64 ? DBL_EPSILON : FLT_EPSILON, 0, what);
            free(g), free(dyh), free(old), free(want);
            clg_tensor_free(dx), clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(x);
        }
}

/* torch's x.permute(dims) / torch.transpose(x, a, b) (make_copy_fixtures.py): y and the
 * gradient of sum(y * r), exact in both dtypes. */
static void test_pytorch_fixtures(void **state) {
    clg_context *ctx = *state;
    static const struct {
        const char *name;
        int dims[4], transpose; /* transpose: swap dims[0] and dims[1] */
    } fx[] = {
        {"permute_0231", {0, 2, 3, 1}, 0},        {"permute_3102", {3, 1, 0, 2}, 0},
        {"permute_n2_0_n1_1", {-2, 0, -1, 1}, 0}, {"permute_021", {0, 2, 1}, 0},
        {"transpose_1_n1", {1, -1}, 1},           {"transpose_10", {1, 0}, 1},
    };
    clg_st_file f;
    ref_fixture_open(&f, "copy.safetensors");
    char name[96];
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof fx / sizeof fx[0]; k++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            snprintf(name, sizeof name, "%s.x", fx[k].name);
            clg_tensor *x = ref_fixture_tensor_as(ctx, &f, name, dt), *y = NULL;
            snprintf(name, sizeof name, "%s.r", fx[k].name);
            clg_tensor *r = ref_fixture_tensor_as(ctx, &f, name, dt);
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            if (fx[k].transpose)
                REF_OK(ctx, clg_transpose(ctx, x, fx[k].dims[0], fx[k].dims[1], &y));
            else
                REF_OK(ctx, clg_permute(ctx, x, fx[k].dims, &y));
            REF_OK(ctx, clg_backward_grad(ctx, y, r));
            snprintf(name, sizeof name, "%s.y", fx[k].name);
            ref_assert_fixture_exact(&f, name, y);
            snprintf(name, sizeof name, "%s.dx", fx[k].name);
            ref_assert_fixture_exact(&f, name, clg_tensor_grad(x));
            clg_tensor_free(r), clg_tensor_free(y), clg_tensor_free(x);
        }
    clg_st_file_free(&f);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int s[3] = {2, 3, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 3, s, 1, -1, 1), *y = (clg_tensor *)1;
    const int repeated[3] = {0, 2, -1}, out_of_range[3] = {0, 3, 1}, too_negative[3] = {-4, 1, 2};
    REF_EXPECT(ctx, clg_permute(ctx, x, repeated, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "repeated"));
    REF_EXPECT(ctx, clg_permute(ctx, x, out_of_range, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "out of range"));
    REF_EXPECT(ctx, clg_permute(ctx, x, too_negative, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_permute(ctx, x, NULL, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_permute(ctx, NULL, repeated, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_permute(ctx, x, repeated, NULL), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_transpose(ctx, x, 0, 3, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_transpose(ctx, x, -4, 0, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_transpose(ctx, NULL, 0, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_transpose(ctx, x, 0, 1, NULL), CLG_INVALID_ARGUMENT);
    /* the context still works */
    REF_OK(ctx, clg_transpose(ctx, x, -1, 0, &y));
    assert_int_equal(clg_tensor_shape(y)[0], 4);
    clg_tensor_free(y), clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_ref),    cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_gradcheck), cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_beta_half), cmocka_unit_test(test_pytorch_fixtures),
        cmocka_unit_test(test_bad_input),
    };
    return REF_RUN_BOTH_STYLES("permute", tests);
}
