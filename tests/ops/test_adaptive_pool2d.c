/* tests/ops/test_adaptive_pool2d.c - adaptive_avg_pool2d (src/ops/adaptive_pool2d.c,
 * cl/ops/adaptive_pool2d.cl): forward and backward against the naive host reference below,
 * f64 finite differences, the beta contract, NaN propagation, PyTorch fixtures
 * (tests/fixtures/adaptive_pool2d.safetensors) and bad input, in both kernel styles.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"
#include "ref.h"
#include "ref_ops.h"
#include "ref_style.h"

/* ---------------------------------------------------------------- host reference */

typedef struct geom {
    int n, c, h, w, oh, ow;
} geom;

/* PyTorch's window of output o: [floor(o * in / out), ceil((o + 1) * in / out)). */
static int win_start(int o, int in, int out) { return (int)floor((double)o * in / out); }
static int win_end(int o, int in, int out) { return (int)ceil((double)(o + 1) * in / out); }

static void ref_forward(const geom *g, const double *x, double *y) {
    for (int nc = 0; nc < g->n * g->c; nc++)
        for (int oh = 0; oh < g->oh; oh++)
            for (int ow = 0; ow < g->ow; ow++) {
                const int hs = win_start(oh, g->h, g->oh), he = win_end(oh, g->h, g->oh);
                const int ws = win_start(ow, g->w, g->ow), we = win_end(ow, g->w, g->ow);
                double s = 0;
                for (int h = hs; h < he; h++)
                    for (int w = ws; w < we; w++)
                        s += x[((size_t)nc * g->h + h) * g->w + w];
                y[((size_t)nc * g->oh + oh) * g->ow + ow] = s / ((he - hs) * (we - ws));
            }
}

/* Scatters each dy / area over its window (the kernels gather; the sums agree). */
static void ref_backward(const geom *g, const double *dy, double *dx) {
    memset(dx, 0, sizeof *dx * (size_t)g->n * g->c * g->h * g->w);
    for (int nc = 0; nc < g->n * g->c; nc++)
        for (int oh = 0; oh < g->oh; oh++)
            for (int ow = 0; ow < g->ow; ow++) {
                const int hs = win_start(oh, g->h, g->oh), he = win_end(oh, g->h, g->oh);
                const int ws = win_start(ow, g->w, g->ow), we = win_end(ow, g->w, g->ow);
                const double v = dy[((size_t)nc * g->oh + oh) * g->ow + ow] / ((he - hs) * (we - ws));
                for (int h = hs; h < he; h++)
                    for (int w = ws; w < we; w++)
                        dx[((size_t)nc * g->h + h) * g->w + w] += v;
            }
}

/* ---------------------------------------------------------------- cases */

/* Global pooling, exact tiling, overlapping windows (7 -> 3, 9 -> 4), an output larger than
 * the input (windows of one element, repeated), the identity, and one row or column. */
static const geom cases[] = {
    {2, 3, 5, 7, 1, 1}, {2, 3, 8, 8, 2, 4}, {2, 3, 7, 9, 3, 4},  {1, 2, 3, 4, 5, 6},
    {1, 2, 4, 4, 4, 4}, {2, 2, 1, 9, 1, 4}, {1, 3, 10, 3, 3, 1},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static const char *case_name(const geom *g, char *buf, size_t len) {
    snprintf(buf, len, "(%d, %d, %d, %d) -> %dx%d", g->n, g->c, g->h, g->w, g->oh, g->ow);
    return buf;
}

static void test_vs_ref(void **state) {
    clg_context *ctx = *state;
    for (size_t c = 0; c < N_CASES; c++)
        for (int d = 0; d < 2; d++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            const geom *g = &cases[c];
            const int xs[4] = {g->n, g->c, g->h, g->w};
            char nm[64], what[160];
            clg_tensor *x = ref_rand(ctx, dt, 4, xs, 100 + c, -2.0, 2.0), *y = NULL, *dx = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_adaptive_avg_pool2d(ctx, x, g->oh, g->ow, &y));
            const int *ys = clg_tensor_shape(y);
            assert_int_equal(clg_tensor_ndim(y), 4);
            assert_true(ys[0] == g->n && ys[1] == g->c && ys[2] == g->oh && ys[3] == g->ow);
            assert_true(clg_tensor_dtype(y) == dt);
            const size_t nx = clg_tensor_numel(x), ny = clg_tensor_numel(y);
            double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y);
            double *want = malloc(ny * sizeof *want), *dxw = malloc(nx * sizeof *dxw);
            assert_true(want && dxw);
            ref_forward(g, xh, want);
            /* A mean of at most 10 terms in the same order: a few roundings of the dtype. */
            snprintf(what, sizeof what, "%s %s forward", case_name(g, nm, sizeof nm), clg_dtype_name(dt));
            ref_assert_close(yh, want, ny, d ? 1e-14 : 1e-6, d ? 1e-15 : 1e-6, what);

            clg_tensor *dy = ref_rand(ctx, dt, 4, ys, 200 + c, -1.0, 1.0);
            double *dyh = ref_to_host_f64(dy);
            REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, xs, &dx));
            const double beta0 = 0;
            REF_OK(ctx, ref_call_backward(ctx, y, dy, &dx, &beta0));
            double *dxh = ref_to_host_f64(dx);
            ref_backward(g, dyh, dxw);
            snprintf(what, sizeof what, "%s %s backward", case_name(g, nm, sizeof nm), clg_dtype_name(dt));
            ref_assert_close(dxh, dxw, nx, d ? 1e-14 : 1e-6, d ? 1e-15 : 1e-6, what);
            free(xh), free(yh), free(want), free(dxw), free(dyh), free(dxh);
            clg_tensor_free(dx);
            clg_tensor_free(dy);
            clg_tensor_free(y);
            clg_tensor_free(x);
        }
}

/* Global pooling equals avg_pool2d with the whole plane as its kernel, bit for bit in f64 is
 * not promised (other kernels), so to the rounding of a mean of H * W terms. */
static void test_global_is_mean(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {3, 4, 6, 5};
    clg_tensor *x = ref_rand(ctx, CLG_F64, 4, xs, 17, -1.0, 1.0), *a = NULL, *b = NULL;
    REF_OK(ctx, clg_adaptive_avg_pool2d(ctx, x, 1, 1, &a));
    clg_pool2d_params p = clg_pool2d_default_params();
    p.kernel_h = 6;
    p.kernel_w = 5;
    REF_OK(ctx, clg_avg_pool2d(ctx, x, p, &b));
    double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b);
    ref_assert_close(ah, bh, 12, 30 * 2.3e-16, 1e-16, "global adaptive pool vs avg_pool2d");
    free(ah), free(bh);
    clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(x);
}

static clg_status gc_pool(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    const geom *g = user;
    return clg_adaptive_avg_pool2d(ctx, in[0], g->oh, g->ow, y);
}

/* f64 central differences; the op is linear, so they are exact up to rounding. */
static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    for (size_t c = 0; c < N_CASES; c++) {
        const geom *g = &cases[c];
        const int xs[4] = {g->n, g->c, g->h, g->w};
        clg_tensor *x = ref_rand_f64(ctx, 4, xs, 7 + c, -1.0, 1.0);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        char nm[64], what[128];
        snprintf(what, sizeof what, "adaptive_avg_pool2d %s gradcheck", case_name(g, nm, sizeof nm));
        ref_gradcheck(ctx, gc_pool, &x, 1, (void *)g, 1e-6, 1e-7, what);
        clg_tensor_free(x);
    }
}

/* beta = 0 overwrites (even NaN), beta = 1 after it gives exactly twice. */
static void test_accumulate(void **state) {
    clg_context *ctx = *state;
    for (int d = 0; d < 2; d++)
        for (size_t c = 0; c < N_CASES; c++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            const geom *g = &cases[c];
            const int xs[4] = {g->n, g->c, g->h, g->w};
            clg_tensor *x = ref_rand(ctx, dt, 4, xs, 31, -1.0, 1.0), *y = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_adaptive_avg_pool2d(ctx, x, g->oh, g->ow, &y));
            char nm[64], what[128];
            snprintf(what, sizeof what, "adaptive_avg_pool2d %s %s", case_name(g, nm, sizeof nm),
                     clg_dtype_name(dt));
            ref_check_accumulate(ctx, y, &x, 1, what);
            clg_tensor_free(y);
            clg_tensor_free(x);
        }
}

/* NaN in x makes every window that holds it NaN and no other; the gradient, which does not
 * read x, stays finite. NaN in dy reaches exactly the inputs its window covers. As PyTorch. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    for (int d = 0; d < 2; d++)
        for (size_t c = 0; c < N_CASES; c++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            const geom *g = &cases[c];
            const int xs[4] = {g->n, g->c, g->h, g->w}, ys[4] = {g->n, g->c, g->oh, g->ow};
            const size_t nx = (size_t)g->n * g->c * g->h * g->w, ny = (size_t)g->n * g->c * g->oh * g->ow;
            clg_tensor *x0 = ref_rand(ctx, dt, 4, xs, 400 + c, -1.0, 1.0),
                       *dy0 = ref_rand(ctx, dt, 4, ys, 500 + c, -1, 1);
            double *xh = ref_to_host_f64(x0), *dyh = ref_to_host_f64(dy0);
            for (size_t i = 0; i < nx; i += 5)
                xh[i] = NAN;
            for (size_t i = 1; i < ny; i += 4)
                dyh[i] = NAN;
            clg_tensor *x = NULL, *dy = NULL, *y = NULL;
            clg_tensor *xt = ref_tensor_f64(ctx, 4, xs, xh), *dyt = ref_tensor_f64(ctx, 4, ys, dyh);
            REF_OK(ctx, clg_tensor_cast(xt, dt, &x)); /* exact: the values came from dt */
            REF_OK(ctx, clg_tensor_cast(dyt, dt, &dy));
            clg_tensor_free(xt);
            clg_tensor_free(dyt);
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_adaptive_avg_pool2d(ctx, x, g->oh, g->ow, &y));
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            double *got_y = ref_to_host_f64(y), *got_dx = ref_to_host_f64(clg_tensor_grad(x));
            double *yw = malloc(ny * sizeof *yw), *dxw = malloc(nx * sizeof *dxw);
            assert_true(yw && dxw);
            ref_forward(g, xh, yw);
            ref_backward(g, dyh, dxw);
            char nm[64], what[128];
            snprintf(what, sizeof what, "%s %s forward with NaN", case_name(g, nm, sizeof nm),
                     clg_dtype_name(dt));
            ref_assert_close_nan(got_y, yw, ny, d ? 1e-14 : 1e-6, d ? 1e-15 : 1e-6, what);
            snprintf(what, sizeof what, "%s %s backward with NaN", case_name(g, nm, sizeof nm),
                     clg_dtype_name(dt));
            ref_assert_close_nan(got_dx, dxw, nx, d ? 1e-14 : 1e-6, d ? 1e-15 : 1e-6, what);
            free(xh), free(dyh), free(got_y), free(got_dx), free(yw), free(dxw);
            clg_tensor *all[] = {y, dy, x, dy0, x0};
            for (size_t i = 0; i < 5; i++)
                clg_tensor_free(all[i]);
        }
}

/* PyTorch's F.adaptive_avg_pool2d: y and d sum(y * r) / dx, f64. */
static void test_pytorch_fixtures(void **state) {
    clg_context *ctx = *state;
    static const struct {
        const char *name;
        int oh, ow;
    } fx[] = {{"global", 1, 1}, {"7x9_to_3x4", 3, 4}, {"3x4_to_5x6", 5, 6}, {"8x8_to_2x4", 2, 4}};
    clg_st_file f;
    ref_fixture_open(&f, "adaptive_pool2d.safetensors");
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s.x", fx[i].name);
        clg_tensor *x = ref_fixture_tensor(ctx, &f, name), *y = NULL;
        snprintf(name, sizeof name, "%s.r", fx[i].name);
        clg_tensor *r = ref_fixture_tensor(ctx, &f, name);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, clg_adaptive_avg_pool2d(ctx, x, fx[i].oh, fx[i].ow, &y));
        snprintf(name, sizeof name, "%s.y", fx[i].name);
        ref_assert_fixture(&f, name, y, 1e-14, 1e-15);
        REF_OK(ctx, clg_backward_grad(ctx, y, r));
        snprintf(name, sizeof name, "%s.dx", fx[i].name);
        ref_assert_fixture(&f, name, clg_tensor_grad(x), 1e-14, 1e-15);
        clg_tensor_free(y);
        clg_tensor_free(r);
        clg_tensor_free(x);
    }
    clg_st_file_free(&f);
}

static void expect_fail(clg_context *ctx, clg_status got, clg_status want, const char *needle) {
    if (got != want)
        fail_msg("expected %s, got %s (%s)", clg_status_name(want), clg_status_name(got),
                 clg_context_errmsg(ctx));
    if (!strstr(clg_context_errmsg(ctx), needle))
        fail_msg("error message \"%s\" does not mention \"%s\"", clg_context_errmsg(ctx), needle);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int s4[4] = {1, 1, 4, 4}, s3[3] = {1, 4, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, s4, 9, -1, 1), *x3 = ref_rand(ctx, CLG_F32, 3, s3, 9, -1, 1);
    clg_tensor *y = (clg_tensor *)1;
    expect_fail(ctx, clg_adaptive_avg_pool2d(ctx, NULL, 1, 1, &y), CLG_INVALID_ARGUMENT, "x");
    assert_null(y);
    expect_fail(ctx, clg_adaptive_avg_pool2d(ctx, x, 1, 1, NULL), CLG_INVALID_ARGUMENT, "out");
    expect_fail(ctx, clg_adaptive_avg_pool2d(ctx, x3, 1, 1, &y), CLG_SHAPE_MISMATCH, "4-D");
    expect_fail(ctx, clg_adaptive_avg_pool2d(ctx, x, 0, 1, &y), CLG_INVALID_ARGUMENT, "positive");
    expect_fail(ctx, clg_adaptive_avg_pool2d(ctx, x, 2, -1, &y), CLG_INVALID_ARGUMENT, "positive");
    expect_fail(ctx, clg_adaptive_avg_pool2d(ctx, x, 1 << 30, 1, &y), CLG_UNSUPPORTED, "int index");
    assert_null(y);
    assert_int_equal(clg_adaptive_avg_pool2d(NULL, x, 1, 1, &y), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg_adaptive_avg_pool2d(ctx, x, 1, 1, &y)); /* the context still works */
    clg_tensor_free(y);
    clg_tensor_free(x3);
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_ref),    cmocka_unit_test(test_global_is_mean),
        cmocka_unit_test(test_gradcheck), cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_nan),       cmocka_unit_test(test_pytorch_fixtures),
        cmocka_unit_test(test_bad_input),
    };
    return REF_RUN_BOTH_STYLES("adaptive_pool2d", tests);
}
