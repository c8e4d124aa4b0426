/* tests/ops/test_cat.c - clg_cat (src/ops/cat.c, cl/ops/cat.cl): forward and backward against
 * the host reference below (a copy: exact), f64 finite differences, the beta contract, NaN
 * passing through both ways, one tensor twice, and bad input, in both kernel styles; torch.cat
 * itself (tests/fixtures/copy.safetensors from make_copy_fixtures.py, a negative dim among
 * them), exact in both dtypes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"
#include "ref.h"
#include "ref_ops.h"
#include "ref_style.h"

typedef struct cat_case {
    int ndim, dim, n;
    int shape[3][4]; /* each input's shape */
    const char *name;
} cat_case;

static const cat_case cases[] = {
    {4, 1, 2, {{2, 3, 4, 5}, {2, 2, 4, 5}}, "channels of two"},
    {4, 1, 3, {{1, 1, 3, 3}, {1, 4, 3, 3}, {1, 2, 3, 3}}, "channels of three"},
    {4, 0, 2, {{1, 2, 3, 2}, {3, 2, 3, 2}}, "batch"},
    {4, 3, 2, {{2, 2, 3, 1}, {2, 2, 3, 4}}, "last dim"},
    {2, 1, 3, {{4, 3}, {4, 1}, {4, 5}}, "features"},
    {1, 0, 2, {{7}, {2}}, "1-D"},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static size_t numel(const int *s, int nd) {
    size_t n = 1;
    for (int d = 0; d < nd; d++)
        n *= (size_t)s[d];
    return n;
}

/* y (outer, D, inner) from the inputs (outer, d_i, inner). */
static void ref_cat(const cat_case *c, double *const *x, double *y) {
    size_t outer = 1, inner = 1, D = 0;
    for (int d = 0; d < c->dim; d++)
        outer *= (size_t)c->shape[0][d];
    for (int d = c->dim + 1; d < c->ndim; d++)
        inner *= (size_t)c->shape[0][d];
    for (int i = 0; i < c->n; i++)
        D += (size_t)c->shape[i][c->dim];
    size_t off = 0;
    for (int i = 0; i < c->n; i++) {
        const size_t di = (size_t)c->shape[i][c->dim];
        for (size_t o = 0; o < outer; o++)
            for (size_t j = 0; j < di; j++)
                for (size_t k = 0; k < inner; k++)
                    y[(o * D + off + j) * inner + k] = x[i][(o * di + j) * inner + k];
        off += di;
    }
}

/* The inverse: each input's slice of dy. */
static void ref_cat_backward(const cat_case *c, const double *dy, double **dx) {
    size_t outer = 1, inner = 1, D = 0;
    for (int d = 0; d < c->dim; d++)
        outer *= (size_t)c->shape[0][d];
    for (int d = c->dim + 1; d < c->ndim; d++)
        inner *= (size_t)c->shape[0][d];
    for (int i = 0; i < c->n; i++)
        D += (size_t)c->shape[i][c->dim];
    size_t off = 0;
    for (int i = 0; i < c->n; i++) {
        const size_t di = (size_t)c->shape[i][c->dim];
        for (size_t o = 0; o < outer; o++)
            for (size_t j = 0; j < di; j++)
                for (size_t k = 0; k < inner; k++)
                    dx[i][(o * di + j) * inner + k] = dy[(o * D + off + j) * inner + k];
        off += di;
    }
}

/* Forward and each input's gradient against the reference, both dtypes, exact; with NaN in
 * some inputs and in dy (a copy carries it through unchanged). */
static void run_case(clg_context *ctx, const cat_case *c, clg_dtype dt, bool nan) {
    clg_tensor *x[3] = {NULL};
    double *xh[3], *dxw[3];
    for (int i = 0; i < c->n; i++) {
        x[i] = ref_rand(ctx, dt, c->ndim, c->shape[i], 10 + (uint64_t)i, -1, 1);
        xh[i] = ref_to_host_f64(x[i]);
        if (nan) {
            xh[i][0] = NAN;
            clg_tensor *t = ref_tensor_f64(ctx, c->ndim, c->shape[i], xh[i]), *tc = NULL;
            REF_OK(ctx, clg_tensor_cast(t, dt, &tc));
            REF_OK(ctx, clg_tensor_copy(x[i], tc));
            clg_tensor_free(tc);
            clg_tensor_free(t);
        }
        REF_OK(ctx, clg_tensor_set_requires_grad(x[i], true));
    }
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_cat(ctx, c->n, (const clg_tensor *const *)x, c->dim, &y));
    assert_int_equal(clg_tensor_ndim(y), c->ndim);
    const size_t ny = clg_tensor_numel(y);
    double *yh = ref_to_host_f64(y), *yw = malloc(ny * sizeof *yw);
    assert_non_null(yw);
    ref_cat(c, xh, yw);
    char what[128];
    snprintf(what, sizeof what, "cat %s %s forward%s", c->name, clg_dtype_name(dt), nan ? " with NaN" : "");
    ref_assert_close_nan(yh, yw, ny, 0, 0, what);
    clg_tensor *dy = ref_rand(ctx, dt, c->ndim, clg_tensor_shape(y), 99, -1, 1);
    double *dyh = ref_to_host_f64(dy);
    if (nan) {
        dyh[ny - 1] = NAN;
        clg_tensor *t = ref_tensor_f64(ctx, c->ndim, clg_tensor_shape(y), dyh), *tc = NULL;
        REF_OK(ctx, clg_tensor_cast(t, dt, &tc));
        REF_OK(ctx, clg_tensor_copy(dy, tc));
        clg_tensor_free(tc);
        clg_tensor_free(t);
    }
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    for (int i = 0; i < c->n; i++)
        assert_non_null(dxw[i] = malloc(numel(c->shape[i], c->ndim) * sizeof(double)));
    ref_cat_backward(c, dyh, dxw);
    for (int i = 0; i < c->n; i++) {
        double *g = ref_to_host_f64(clg_tensor_grad(x[i]));
        snprintf(what, sizeof what, "cat %s %s dx[%d]%s", c->name, clg_dtype_name(dt), i,
                 nan ? " with NaN" : "");
        ref_assert_close_nan(g, dxw[i], numel(c->shape[i], c->ndim), 0, 0, what);
        free(g);
        free(dxw[i]);
        free(xh[i]);
        clg_tensor_free(x[i]);
    }
    free(yh), free(yw), free(dyh);
    clg_tensor_free(dy);
    clg_tensor_free(y);
}

static void test_vs_ref(void **state) {
    for (size_t c = 0; c < N_CASES; c++)
        for (int d = 0; d < 2; d++)
            for (int nan = 0; nan < 2; nan++)
                run_case(*state, &cases[c], d ? CLG_F64 : CLG_F32, nan);
}

static clg_status gc_cat(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    return clg_cat(ctx, n, (const clg_tensor *const *)in, *(const int *)user, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    for (size_t c = 0; c < N_CASES; c++) {
        clg_tensor *x[3];
        for (int i = 0; i < cases[c].n; i++) {
            x[i] = ref_rand_f64(ctx, cases[c].ndim, cases[c].shape[i], 20 + (uint64_t)i, -1, 1);
            REF_OK(ctx, clg_tensor_set_requires_grad(x[i], true));
        }
        char what[96];
        snprintf(what, sizeof what, "cat %s gradcheck", cases[c].name);
        ref_gradcheck(ctx, gc_cat, x, cases[c].n, (void *)&cases[c].dim, 1e-6, 1e-8, what);
        for (int i = 0; i < cases[c].n; i++)
            clg_tensor_free(x[i]);
    }
}

static void test_accumulate(void **state) {
    clg_context *ctx = *state;
    for (int d = 0; d < 2; d++)
        for (size_t c = 0; c < N_CASES; c++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            clg_tensor *x[3], *y = NULL;
            for (int i = 0; i < cases[c].n; i++) {
                x[i] = ref_rand(ctx, dt, cases[c].ndim, cases[c].shape[i], 30 + (uint64_t)i, -1, 1);
                REF_OK(ctx, clg_tensor_set_requires_grad(x[i], true));
            }
            REF_OK(ctx, clg_cat(ctx, cases[c].n, (const clg_tensor *const *)x, cases[c].dim, &y));
            char what[96];
            snprintf(what, sizeof what, "cat %s %s", cases[c].name, clg_dtype_name(dt));
            ref_check_accumulate(ctx, y, x, cases[c].n, what);
            clg_tensor_free(y);
            for (int i = 0; i < cases[c].n; i++)
                clg_tensor_free(x[i]);
        }
}

/* cat(x, x): x's gradient is the sum of its two slices. */
static void test_same_tensor_twice(void **state) {
    clg_context *ctx = *state;
    const int s[2] = {3, 4};
    clg_tensor *x = ref_rand_f64(ctx, 2, s, 5, -1, 1), *y = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    const clg_tensor *xs[2] = {x, x};
    REF_OK(ctx, clg_cat(ctx, 2, xs, 1, &y));
    clg_tensor *dy = ref_rand_f64(ctx, 2, clg_tensor_shape(y), 6, -1, 1);
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    double *dyh = ref_to_host_f64(dy), want[12];
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++)
            want[r * 4 + k] = dyh[r * 8 + k] + dyh[r * 8 + 4 + k];
    double *g = ref_to_host_f64(clg_tensor_grad(x));
    ref_assert_close(g, want, 12, 0, 0, "cat(x, x) gradient");
    free(g), free(dyh);
    clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(x);
}

/* torch.cat(xs, dim) (make_copy_fixtures.py): y and each input's gradient of sum(y * r),
 * exact in both dtypes. */
static void test_pytorch_fixtures(void **state) {
    clg_context *ctx = *state;
    static const struct {
        const char *name;
        int n, dim;
    } fx[] = {{"cat_channels", 2, 1}, {"cat_three_n1", 3, -1}, {"cat_batch", 2, 0}};
    clg_st_file f;
    ref_fixture_open(&f, "copy.safetensors");
    char name[96];
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof fx / sizeof fx[0]; k++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            clg_tensor *xs[3] = {NULL}, *y = NULL;
            for (int i = 0; i < fx[k].n; i++) {
                snprintf(name, sizeof name, "%s.x%d", fx[k].name, i);
                xs[i] = ref_fixture_tensor_as(ctx, &f, name, dt);
                REF_OK(ctx, clg_tensor_set_requires_grad(xs[i], true));
            }
            snprintf(name, sizeof name, "%s.r", fx[k].name);
            clg_tensor *r = ref_fixture_tensor_as(ctx, &f, name, dt);
            const clg_tensor *in[3] = {xs[0], xs[1], xs[2]};
            REF_OK(ctx, clg_cat(ctx, fx[k].n, in, fx[k].dim, &y));
            REF_OK(ctx, clg_backward_grad(ctx, y, r));
            snprintf(name, sizeof name, "%s.y", fx[k].name);
            ref_assert_fixture_exact(&f, name, y);
            for (int i = 0; i < fx[k].n; i++) {
                snprintf(name, sizeof name, "%s.dx%d", fx[k].name, i);
                ref_assert_fixture_exact(&f, name, clg_tensor_grad(xs[i]));
                clg_tensor_free(xs[i]);
            }
            clg_tensor_free(r), clg_tensor_free(y);
        }
    clg_st_file_free(&f);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int a[4] = {2, 3, 4, 4}, b[4] = {2, 3, 5, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, a, 1, -1, 1), *z = ref_rand(ctx, CLG_F32, 4, b, 2, -1, 1);
    clg_tensor *w = ref_rand(ctx, CLG_F64, 4, a, 3, -1, 1), *y = (clg_tensor *)1;
    const clg_tensor *xz[2] = {x, z}, *xw[2] = {x, w}, *xn[2] = {x, NULL}, *many[6] = {x, x, x, x, x, x};
    REF_EXPECT(ctx, clg_cat(ctx, 2, xz, 1, &y), CLG_SHAPE_MISMATCH); /* differ outside dim 1 */
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "does not fit"));
    REF_EXPECT(ctx, clg_cat(ctx, 2, xw, 1, &y), CLG_SHAPE_MISMATCH); /* dtypes */
    REF_EXPECT(ctx, clg_cat(ctx, 2, xn, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_cat(ctx, 6, many, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_cat(ctx, 0, many, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_cat(ctx, 2, xz, 4, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_cat(ctx, 2, xz, -5, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "dim -5 out of range"));
    REF_EXPECT(ctx, clg_cat(ctx, 2, xz, 1, NULL), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg_cat(ctx, 2, xz, 2, &y)); /* along H they fit */
    assert_int_equal(clg_tensor_shape(y)[2], 9);
    clg_tensor_free(y);
    REF_OK(ctx, clg_cat(ctx, 2, xz, -2, &y)); /* H again, from the end */
    assert_int_equal(clg_tensor_shape(y)[2], 9);
    clg_tensor_free(y), clg_tensor_free(x), clg_tensor_free(z), clg_tensor_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_ref),           cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_accumulate),       cmocka_unit_test(test_same_tensor_twice),
        cmocka_unit_test(test_pytorch_fixtures), cmocka_unit_test(test_bad_input),
    };
    return REF_RUN_BOTH_STYLES("cat", tests);
}
