/* tests/ops/test_linear.c - linear, y = x wT + b (src/ops/linear.c, cl/ops/linear.cl, GEMM
 * underneath): forward against host loops in f32 and f64 with and without bias, f64
 * finite-difference gradients of x, w and b, backward values against host loops, the beta
 * contract, PyTorch's values (1e-10 in f64), bad input, and NaN propagation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_style.h"
#include "ref_ops.h"
#include "nan_test.h"

/* ---------------------------------------------------------------- forward */

static void check_forward(clg_context *ctx, clg_dtype dt, int n, int in, int out, bool bias) {
    const int xs[2] = {n, in}, ws[2] = {out, in}, bs[1] = {out};
    clg_tensor *x = ref_rand(ctx, dt, 2, xs, 1, -1, 1), *w = ref_rand(ctx, dt, 2, ws, 2, -1, 1);
    clg_tensor *b = bias ? ref_rand(ctx, dt, 1, bs, 3, -1, 1) : NULL, *y = NULL;
    REF_OK(ctx, clg_linear(ctx, x, w, b, &y));
    assert_int_equal(clg_tensor_ndim(y), 2);
    assert_int_equal(clg_tensor_shape(y)[0], n);
    assert_int_equal(clg_tensor_shape(y)[1], out);
    assert_int_equal(clg_tensor_dtype(y), dt);
    double *xh = ref_to_host_f64(x), *wh = ref_to_host_f64(w), *bh = b ? ref_to_host_f64(b) : NULL;
    double *want = malloc((size_t)n * out * sizeof *want);
    ref_linear_forward(xh, wh, bh, want, n, in, out);
    double *got = ref_to_host_f64(y);
    char what[96];
    snprintf(what, sizeof what, "linear %s (%d, %d) x (%d, %d)T%s", clg_dtype_name(dt), n, in, out, in,
             bias ? " + b" : "");
    /* f32: in products of |x| <= 1 summed in any order, the error grows with in. */
    ref_assert_close(got, want, (size_t)n * out, dt == CLG_F64 ? 1e-13 : 1e-5,
                     dt == CLG_F64 ? 1e-13 : 1e-5 * in, what);
    free(got);
    free(want);
    free(xh);
    free(wh);
    free(bh);
    clg_tensor_free(x);
    clg_tensor_free(w);
    clg_tensor_free(b);
    clg_tensor_free(y);
}

static void test_forward_f32(void **state) {
    check_forward(*state, CLG_F32, 7, 13, 9, true);
    check_forward(*state, CLG_F32, 7, 13, 9, false);
    check_forward(*state, CLG_F32, 33, 100, 30, true);
    check_forward(*state, CLG_F32, 1, 1, 1, true);
}
static void test_forward_f64(void **state) {
    check_forward(*state, CLG_F64, 7, 13, 9, true);
    check_forward(*state, CLG_F64, 7, 13, 9, false);
    check_forward(*state, CLG_F64, 33, 100, 30, true);
    check_forward(*state, CLG_F64, 1, 1, 1, false);
}

/* ---------------------------------------------------------------- gradients */

static clg_status f_linear(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)u;
    return clg_linear(ctx, in[0], in[1], n > 2 ? in[2] : NULL, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    const int xs[2] = {4, 6}, ws[2] = {5, 6}, bs[1] = {5};
    clg_tensor *in[3] = {ref_rand_f64(ctx, 2, xs, 11, -1, 1), ref_rand_f64(ctx, 2, ws, 12, -1, 1),
                         ref_rand_f64(ctx, 1, bs, 13, -1, 1)};
    for (int i = 0; i < 3; i++)
        REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
    ref_gradcheck(ctx, f_linear, in, 3, NULL, 1e-6, 1e-7, "linear x, w, b");
    ref_gradcheck(ctx, f_linear, in, 2, NULL, 1e-6, 1e-7, "linear without bias");
    /* Inference input: only the parameters need gradients. */
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], false));
    clg_tensor_zero_grad(in[0]);
    ref_gradcheck(ctx, f_linear, in, 3, NULL, 1e-6, 1e-7, "linear w, b only");
    assert_null(clg_tensor_grad(in[0]));
    for (int i = 0; i < 3; i++)
        clg_tensor_free(in[i]);
}

/* dx, dw, db against the host loops for GEMM-sized shapes. */
static void test_backward_values(void **state) {
    clg_context *ctx = *state;
    const int n = 33, in = 70, out = 20;
    const int xs[2] = {n, in}, ws[2] = {out, in}, bs[1] = {out}, ys[2] = {n, out};
    clg_tensor *x = ref_rand_f64(ctx, 2, xs, 21, -1, 1), *w = ref_rand_f64(ctx, 2, ws, 22, -1, 1);
    clg_tensor *b = ref_rand_f64(ctx, 1, bs, 23, -1, 1), *r = ref_rand_f64(ctx, 2, ys, 24, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_linear(ctx, x, w, b, &y));
    REF_OK(ctx, clg_backward_grad(ctx, y, r));
    double *xh = ref_to_host_f64(x), *wh = ref_to_host_f64(w), *rh = ref_to_host_f64(r);
    double *dx = malloc((size_t)n * in * sizeof *dx), *dw = malloc((size_t)out * in * sizeof *dw),
           *db = malloc((size_t)out * sizeof *db);
    ref_linear_backward(xh, wh, rh, dx, dw, db, n, in, out);
    double *g = ref_to_host_f64(clg_tensor_grad(x));
    ref_assert_close(g, dx, (size_t)n * in, 1e-12, 1e-13, "linear dx");
    free(g);
    g = ref_to_host_f64(clg_tensor_grad(w));
    ref_assert_close(g, dw, (size_t)out * in, 1e-12, 1e-13, "linear dw");
    free(g);
    g = ref_to_host_f64(clg_tensor_grad(b));
    ref_assert_close(g, db, (size_t)out, 1e-12, 1e-13, "linear db");
    free(g);
    free(dx);
    free(dw);
    free(db);
    free(xh);
    free(wh);
    free(rh);
    clg_tensor_free(y);
    clg_tensor_free(x);
    clg_tensor_free(w);
    clg_tensor_free(b);
    clg_tensor_free(r);
}

/* ---------------------------------------------------------------- beta contract */

static void check_accumulate(clg_context *ctx, clg_dtype dt) {
    const int xs[2] = {9, 11}, ws[2] = {7, 11}, bs[1] = {7};
    clg_tensor *in[3] = {ref_rand(ctx, dt, 2, xs, 31, -1, 1), ref_rand(ctx, dt, 2, ws, 32, -1, 1),
                         ref_rand(ctx, dt, 1, bs, 33, -1, 1)};
    for (int i = 0; i < 3; i++)
        REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_linear(ctx, in[0], in[1], in[2], &y));
    ref_check_accumulate(ctx, y, in, 3, "linear");
    clg_tensor_free(y);
    REF_OK(ctx, clg_linear(ctx, in[0], in[1], NULL, &y));
    ref_check_accumulate(ctx, y, in, 2, "linear without bias");
    clg_tensor_free(y);
    for (int i = 0; i < 3; i++)
        clg_tensor_free(in[i]);
}

static void test_accumulate_f32(void **state) { check_accumulate(*state, CLG_F32); }
static void test_accumulate_f64(void **state) { check_accumulate(*state, CLG_F64); }

/* ---------------------------------------------------------------- PyTorch */

static void test_pytorch(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "ops.safetensors");
    clg_tensor *x = ref_fixture_tensor(ctx, &f, "linear.x"), *w = ref_fixture_tensor(ctx, &f, "linear.w");
    clg_tensor *b = ref_fixture_tensor(ctx, &f, "linear.b"), *r = ref_fixture_tensor(ctx, &f, "linear.r");
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_linear(ctx, x, w, b, &y));
    REF_OK(ctx, clg_backward_grad(ctx, y, r));
    const struct {
        const char *name;
        const clg_tensor *got;
    } cmp[4] = {{"linear.y", y},
                {"linear.dx", clg_tensor_grad(x)},
                {"linear.dw", clg_tensor_grad(w)},
                {"linear.db", clg_tensor_grad(b)}};
    for (int i = 0; i < 4; i++)
        ref_assert_fixture(&f, cmp[i].name, cmp[i].got, 1e-10, 1e-10);
    clg_tensor_free(y);
    clg_tensor_free(x);
    clg_tensor_free(w);
    clg_tensor_free(b);
    clg_tensor_free(r);
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- bad input */

static void test_errors(void **state) {
    clg_context *ctx = *state;
    const int xs[2] = {3, 5}, ws[2] = {4, 5}, wbad[2] = {4, 6}, bs[1] = {4}, bbad[1] = {5};
    clg_tensor *x = ref_rand_f64(ctx, 2, xs, 41, -1, 1), *w = ref_rand_f64(ctx, 2, ws, 42, -1, 1);
    clg_tensor *b = ref_rand_f64(ctx, 1, bs, 43, -1, 1);
    clg_tensor *w6 = ref_rand_f64(ctx, 2, wbad, 44, -1, 1), *b5 = ref_rand_f64(ctx, 1, bbad, 45, -1, 1);
    clg_tensor *w32 = ref_rand(ctx, CLG_F32, 2, ws, 46, -1, 1);
    clg_tensor *x1 = ref_rand_f64(ctx, 1, bbad, 47, -1, 1);
    clg_tensor *y = (clg_tensor *)&y;

    assert_int_equal(clg_linear(ctx, x, w6, b, &y), CLG_SHAPE_MISMATCH);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(3, 5)"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "(4, 6)"));
    assert_int_equal(clg_linear(ctx, x, w, b5, &y), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(5)"));
    assert_int_equal(clg_linear(ctx, x1, w, b, &y), CLG_SHAPE_MISMATCH);
    assert_int_equal(clg_linear(ctx, x, w32, b, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "f32"));
    assert_int_equal(clg_linear(ctx, NULL, w, b, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_linear(ctx, x, NULL, b, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_linear(ctx, x, w, b, NULL), CLG_INVALID_ARGUMENT);
    assert_null(y);

    /* Still usable. */
    REF_OK(ctx, clg_linear(ctx, x, w, b, &y));
    double *xh = ref_to_host_f64(x), *wh = ref_to_host_f64(w), *bh = ref_to_host_f64(b);
    double want[12];
    ref_linear_forward(xh, wh, bh, want, 3, 5, 4);
    double *got = ref_to_host_f64(y);
    ref_assert_close(got, want, 12, 1e-13, 1e-14, "linear after errors");
    free(got);
    free(xh);
    free(wh);
    free(bh);
    clg_tensor_free(y);
    clg_tensor_free(x);
    clg_tensor_free(w);
    clg_tensor_free(b);
    clg_tensor_free(w6);
    clg_tensor_free(b5);
    clg_tensor_free(w32);
    clg_tensor_free(x1);
}

/* NaN in, NaN out as PyTorch (F.linear is addmm, which multiplies every term): a NaN in x
 * makes its row of y NaN; a NaN in w makes its column NaN even where x is 0 (0 * NaN);
 * backward: dx = dy w, dw = dyT x and db = column sums of dy carry NaN from any factor. Two
 * sizes, so that both a tiny product and packed panels see it. */
static void check_nan(clg_context *ctx, clg_dtype dt, int n, int in, int out) {
    const int xs[2] = {n, in}, ws[2] = {out, in}, bs[1] = {out}, ys[2] = {n, out};
    const size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    double *xv = malloc(nx * sizeof *xv), *wv = malloc(nw * sizeof *wv), *bv = malloc((size_t)out * sizeof *bv);
    double *dyv = malloc(ny * sizeof *dyv), *want = malloc((nx + nw + ny + (size_t)out) * sizeof *want);
    assert_true(xv && wv && bv && dyv && want);
    for (size_t i = 0; i < nx; i++)
        xv[i] = (double)((i * 7) % 11) / 11.0 - 0.5;
    for (size_t i = 0; i < nw; i++)
        wv[i] = (double)((i * 5) % 13) / 13.0 - 0.5;
    for (int o = 0; o < out; o++)
        bv[o] = 0.25 * o;
    for (size_t i = 0; i < ny; i++)
        dyv[i] = 1.0 - (double)(i % 3);
    xv[(size_t)(n - 1) * in + 1] = NAN;  /* row n-1 of y */
    xv[0] = 0;                           /* ... and x = 0 meets */
    wv[(size_t)(out - 1) * in] = NAN;    /* w's NaN: column out-1 of y, even in row 0 */
    dyv[ny / 2] = NAN;                   /* one NaN in dy */
    clg_tensor *x = nan_tensor(ctx, dt, 2, xs, xv), *w = nan_tensor(ctx, dt, 2, ws, wv);
    clg_tensor *b = nan_tensor(ctx, dt, 1, bs, bv), *dy = nan_tensor(ctx, dt, 2, ys, dyv), *y = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
    REF_OK(ctx, clg_linear(ctx, x, w, b, &y));
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    double *wy = want, *wdx = wy + ny, *wdw = wdx + nx, *wdb = wdw + nw;
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double acc = bv[o];
            for (int i = 0; i < in; i++)
                acc += xv[(size_t)r * in + i] * wv[(size_t)o * in + i];
            wy[(size_t)r * out + o] = acc;
        }
    for (int r = 0; r < n; r++)
        for (int i = 0; i < in; i++) {
            double acc = 0;
            for (int o = 0; o < out; o++)
                acc += dyv[(size_t)r * out + o] * wv[(size_t)o * in + i];
            wdx[(size_t)r * in + i] = acc;
        }
    for (int o = 0; o < out; o++) {
        for (int i = 0; i < in; i++) {
            double acc = 0;
            for (int r = 0; r < n; r++)
                acc += dyv[(size_t)r * out + o] * xv[(size_t)r * in + i];
            wdw[(size_t)o * in + i] = acc;
        }
        double acc = 0;
        for (int r = 0; r < n; r++)
            acc += dyv[(size_t)r * out + o];
        wdb[o] = acc;
    }
    /* sums of `in` (or n, out) terms of size <= 1: the error grows with the length */
    const double rt = nan_rtol(dt), at = nan_rtol(dt) * (in + n + out);
    nan_expect(y, wy, ny, rt, at, "linear forward with NaN", dt);
    nan_expect(clg_tensor_grad(x), wdx, nx, rt, at, "linear dx with NaN", dt);
    nan_expect(clg_tensor_grad(w), wdw, nw, rt, at, "linear dw with NaN", dt);
    nan_expect(clg_tensor_grad(b), wdb, (size_t)out, rt, at, "linear db with NaN", dt);
    clg_tensor_free(x), clg_tensor_free(w), clg_tensor_free(b), clg_tensor_free(dy), clg_tensor_free(y);
    free(xv), free(wv), free(bv), free(dyv), free(want);
}

static void test_nan(void **state) {
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        check_nan(*state, dt, 3, 4, 5);
        check_nan(*state, dt, 70, 130, 66);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_f32),    cmocka_unit_test(test_forward_f64),
        cmocka_unit_test(test_gradcheck),      cmocka_unit_test(test_backward_values),
        cmocka_unit_test(test_accumulate_f32), cmocka_unit_test(test_accumulate_f64),
        cmocka_unit_test(test_pytorch),        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nan),
    };
    return REF_RUN_BOTH_STYLES("linear", tests);
}
