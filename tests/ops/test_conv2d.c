/* tests/ops/test_conv2d.c - conv2d (src/ops/conv2d.c, cl/ops/conv2d.cl): the worked example
 * to the digit, forward and all three gradients against the naive direct convolution
 * (ref_conv2d_* in tests/ref/ref_ops.c) over a grid of shapes, PyTorch's numbers, finite
 * differences in f64, bad input, and NaN as PyTorch propagates it; in both kernel styles. The beta contract and chunking:
 * tests/ops/test_conv2d_chunks.c.
 */
#include <math.h>

#include "test_conv2d.h"
#include "nan_test.h"

/* Forward and the three gradients of one case against the naive reference. Gradients start
 * as NaN, so beta = 0 must overwrite without reading. tol scales with how many terms each
 * value sums (f32 rounding grows with it). */
static void check_case(clg_context *ctx, clg_dtype dt, const conv_case *c, uint64_t seed, double rtol) {
    case_tensors t;
    char what[256];
    case_make(ctx, dt, c, seed, &t);
    const size_t ny = clg_tensor_numel(t.y), nx = clg_tensor_numel(t.x), nw = clg_tensor_numel(t.w);
    double *want_y = malloc(ny * sizeof(double)), *want_dx = malloc(nx * sizeof(double)),
           *want_dw = malloc(nw * sizeof(double)), *want_db = malloc(c->K * sizeof(double));
    ref_conv2d_forward(c, t.hx, t.hw, t.hb, want_y);
    ref_conv2d_backward(c, t.hx, t.hw, t.hdy, want_dx, want_dw, want_db);

    REF_OK(ctx, clg_tensor_fill(t.dx, NAN));
    REF_OK(ctx, clg_tensor_fill(t.dw, NAN));
    REF_OK(ctx, clg_tensor_fill(t.db, NAN));
    REF_OK(ctx, clg_conv2d_forward(ctx, t.x, t.w, t.b, c->p, t.y));
    REF_OK(ctx, clg_conv2d_backward(ctx, t.x, t.w, t.dy, c->p, t.dx, t.dw, t.db, 0.0));

    /* terms per value: y and dx sum up to Cg*KH*KW (or K*KH*KW) products, dw N*OH*OW */
    const double terms_y = (double)(c->C / c->p.groups) * c->KH * c->KW;
    const double terms_dx = (double)(c->K / c->p.groups) * c->KH * c->KW;
    const double terms_dw = (double)c->N * ref_conv_out_h(c) * ref_conv_out_w(c);
    double *got = ref_to_host_f64(t.y);
    case_name(c, "y", what, sizeof what);
    ref_assert_close(got, want_y, ny, rtol, rtol * sqrt(terms_y), what);
    free(got);
    got = ref_to_host_f64(t.dx);
    case_name(c, "dx", what, sizeof what);
    ref_assert_close(got, want_dx, nx, rtol, rtol * sqrt(terms_dx), what);
    free(got);
    got = ref_to_host_f64(t.dw);
    case_name(c, "dw", what, sizeof what);
    ref_assert_close(got, want_dw, nw, rtol, rtol * sqrt(terms_dw), what);
    free(got);
    got = ref_to_host_f64(t.db);
    case_name(c, "db", what, sizeof what);
    ref_assert_close(got, want_db, (size_t)c->K, rtol, rtol * sqrt(terms_dw), what);
    free(got);

    free(want_y), free(want_dx), free(want_dw), free(want_db);
    case_free(&t);
}

/* ---------------------------------------------------------------- the grid */

/* Every value the issue lists appears at least once: stride 1/2/3, padding 0/1/2, dilation
 * 1/2, groups 1/2/depthwise, kernels 1x1 3x3 5x5 and non-square, non-square inputs, batch
 * 1/5/17, bias on/off; plus edge shapes (1x1 output, H or W of 1, output larger than input). */
static const conv_case grid[] = {
    {1, 1, 5, 5, 1, 3, 3, P_(1, 1, 0, 0, 1, 1, 1), false},
    {5, 3, 7, 6, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true},
    {2, 4, 9, 9, 6, 3, 3, P_(2, 2, 1, 1, 1, 1, 2), true},
    {3, 4, 8, 8, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 4), true}, /* depthwise */
    {1, 6, 11, 7, 6, 5, 5, P_(3, 3, 2, 2, 1, 1, 3), false},
    {17, 2, 6, 6, 3, 1, 1, P_(1, 1, 0, 0, 1, 1, 1), true},
    {5, 3, 10, 8, 2, 3, 2, P_(2, 2, 1, 0, 2, 1, 1), true},
    {2, 2, 9, 9, 4, 3, 3, P_(1, 1, 2, 2, 2, 2, 1), false},
    {1, 3, 12, 5, 5, 2, 4, P_(1, 2, 0, 2, 1, 1, 1), true},
    {17, 1, 8, 8, 3, 5, 5, P_(1, 1, 2, 2, 1, 1, 1), true},
    {5, 8, 6, 6, 8, 3, 3, P_(2, 2, 0, 0, 1, 1, 8), false}, /* depthwise, stride 2 */
    {5, 4, 7, 7, 8, 3, 3, P_(1, 1, 1, 1, 1, 1, 4), true},  /* depthwise, multiplier 2 */
    {1, 2, 5, 9, 3, 1, 3, P_(3, 3, 1, 1, 1, 1, 1), false},
    {17, 4, 5, 5, 4, 3, 3, P_(1, 1, 1, 1, 2, 2, 2), true},
    {5, 3, 13, 11, 4, 5, 3, P_(2, 2, 2, 2, 1, 1, 1), true},
    {2, 6, 8, 10, 6, 3, 3, P_(3, 3, 2, 2, 2, 2, 3), true},
    {1, 1, 3, 3, 2, 3, 3, P_(1, 1, 0, 0, 1, 1, 1), true}, /* 1x1 output */
    {5, 2, 6, 4, 3, 1, 1, P_(2, 2, 1, 1, 1, 1, 1), true}, /* 1x1 kernel over padding */
    {17, 3, 4, 4, 2, 2, 2, P_(2, 2, 0, 0, 1, 1, 1), false},
    {1, 4, 10, 10, 2, 5, 5, P_(1, 1, 0, 0, 2, 2, 2), true},
    {5, 1, 7, 5, 1, 4, 2, P_(2, 1, 2, 1, 1, 1, 1), true},
    {3, 2, 6, 6, 4, 3, 3, P_(1, 1, 2, 2, 1, 1, 1), false}, /* output larger than input */
    {1, 3, 9, 9, 3, 3, 3, P_(3, 3, 0, 0, 1, 1, 3), false}, /* depthwise, stride 3 */
    {5, 4, 6, 7, 6, 2, 3, P_(1, 3, 1, 2, 2, 1, 2), true},
    {17, 2, 5, 5, 2, 3, 3, P_(2, 2, 1, 1, 1, 1, 2), true},
    {2, 16, 6, 6, 8, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true},
    {1, 1, 1, 8, 1, 1, 3, P_(1, 1, 0, 0, 1, 1, 1), true},  /* H = 1 */
    {5, 3, 8, 1, 2, 3, 1, P_(2, 1, 1, 0, 1, 1, 1), false}, /* W = 1 */
    {1, 2, 7, 7, 2, 7, 7, P_(1, 1, 0, 0, 1, 1, 1), true},  /* kernel = image */
    {5, 6, 9, 9, 6, 3, 3, P_(1, 1, 1, 1, 2, 2, 6), true},  /* depthwise, dilated */
};
#define N_GRID (sizeof grid / sizeof *grid)

/* The grid in f32 in the group's kernel style (the group runs once per style). */
static void test_grid_f32(void **state) {
    clg_context *ctx = *state;
    for (size_t i = 0; i < N_GRID; i++)
        check_case(ctx, CLG_F32, &grid[i], 100 + 10 * i, 2e-5);
}

/* The same grid in f64, through the per-image path (one image per chunk: a context with a
 * 1-byte workspace) for half of it. */
static void test_grid_f64(void **state) {
    clg_context *ctx = *state;
    clg_context *per_image = conv_context(clg_context_kernel_style(ctx), 1);
    for (size_t i = 0; i < N_GRID; i++)
        check_case(i % 2 ? per_image : ctx, CLG_F64, &grid[i], 700 + 10 * i, 1e-12);
    clg_context_free(per_image);
}

/* ---------------------------------------------------------------- the worked example */


static clg_tensor *tensor_from(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, const double *v) {
    clg_tensor *t = NULL;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    if (dt == CLG_F64) {
        REF_OK(ctx, clg_tensor_from_host(ctx, dt, ndim, shape, v, &t));
    } else {
        float *f = malloc(n * sizeof *f);
        for (size_t i = 0; i < n; i++)
            f[i] = (float)v[i];
        REF_OK(ctx, clg_tensor_from_host(ctx, dt, ndim, shape, f, &t));
        free(f);
    }
    return t;
}

static double host_sum_sq(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i] * v[i];
    return s;
}

/* Every number of the example, through the raw calls and through the graph. */
static void worked_example(clg_context *ctx, clg_dtype dt, double rtol) {
    static const double x0[16] = {10, 20, 30, 40, 30, 40, 50, 60, 20, 30, 40, 50, 10, 20, 30, 40};
    static const double w0[4] = {0.5, 0.3, 0.2, 0.1};
    static const double y_want[9] = {21, 32, 43, 34, 45, 56, 23, 34, 45};
    static const double dy_want[9] = {42, 64, 86, 68, 90, 112, 46, 68, 90};
    static const double dw_want[4] = {22080, 28740, 21180, 27840};
    static const double w_new_want[4] = {0.2792, 0.0126, -0.0118, -0.1784};
    const double lr = 1e-5;
    const int xs[4] = {1, 1, 4, 4}, ws[4] = {1, 1, 2, 2}, ys[4] = {1, 1, 3, 3};
    const clg_conv2d_params p = clg_conv2d_default_params();

    /* the numbers and the PyTorch fixture must agree (loss_new's exact value) */
    clg_st_file fx;
    ref_fixture_open(&fx, "worked_example.safetensors");
    double *fy = ref_fixture_f64(&fx, "y", NULL), *fdw = ref_fixture_f64(&fx, "dw", NULL);
    double *floss = ref_fixture_f64(&fx, "loss", NULL), *flossn = ref_fixture_f64(&fx, "loss_new", NULL);
    ref_assert_close(fy, y_want, 9, 0, 0, "fixture y");
    ref_assert_close(fdw, dw_want, 4, 0, 0, "fixture dw");
    assert_true(floss[0] == 13341.0);
    const double loss_new_want = flossn[0]; /* 129.67662 */
    assert_true(fabs(loss_new_want - 129.68) < 0.01);
    free(fy), free(fdw), free(floss), free(flossn);
    clg_st_file_free(&fx);

    clg_tensor *x = tensor_from(ctx, dt, 4, xs, x0), *w = tensor_from(ctx, dt, 4, ws, w0);
    clg_tensor *y = NULL, *loss = NULL, *dy = NULL, *dw = NULL;

    /* raw: forward, loss on the host, dy = 2y, backward */
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ys, &y));
    REF_OK(ctx, clg_conv2d_forward(ctx, x, w, NULL, p, y));
    double *hy = ref_to_host_f64(y);
    ref_assert_close(hy, y_want, 9, rtol, 0, "worked example y");
    assert_true(fabs(host_sum_sq(hy, 9) - 13341.0) <= rtol * 13341.0);
    double hdy[9];
    for (int i = 0; i < 9; i++)
        hdy[i] = 2 * hy[i];
    ref_assert_close(hdy, dy_want, 9, rtol, 0, "worked example dy = 2y");
    dy = tensor_from(ctx, dt, 4, ys, hdy);
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ws, &dw));
    REF_OK(ctx, clg_conv2d_backward(ctx, x, w, dy, p, NULL, dw, NULL, 0.0));
    double *hdw = ref_to_host_f64(dw);
    ref_assert_close(hdw, dw_want, 4, rtol, 0, "worked example dW (raw backward)");
    free(hdw);
    free(hy);

    /* graph: loss = sum_of_squares(conv2d(x, w)), clg_backward fills w.grad */
    clg_tensor_free(y);
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
    REF_OK(ctx, clg_conv2d(ctx, x, w, NULL, p, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    double lv = 0;
    REF_OK(ctx, clg_tensor_item(loss, &lv));
    assert_true(fabs(lv - 13341.0) <= rtol * 13341.0);
    REF_OK(ctx, clg_backward(ctx, loss));
    assert_non_null(clg_tensor_grad(w));
    hdw = ref_to_host_f64(clg_tensor_grad(w));
    ref_assert_close(hdw, dw_want, 4, rtol, 0, "worked example dW (graph)");

    /* the update and the loss after it */
    double w_new[4];
    for (int i = 0; i < 4; i++)
        w_new[i] = w0[i] - lr * hdw[i];
    ref_assert_close(w_new, w_new_want, 4, rtol, 0, "worked example w - lr*dW");
    assert_true(w_new[3] < 0 && w0[3] > 0); /* the bottom-right weight flips sign */
    clg_tensor_free(w);
    w = tensor_from(ctx, dt, 4, ws, w_new);
    clg_tensor_free(y), clg_tensor_free(loss);
    REF_OK(ctx, clg_conv2d(ctx, x, w, NULL, p, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    REF_OK(ctx, clg_tensor_item(loss, &lv));
    if (!(fabs(lv - loss_new_want) <= rtol * loss_new_want))
        fail_msg("loss after the update: got %.10g want %.10g", lv, loss_new_want);
    free(hdw);
    clg_tensor *all[] = {x, w, y, loss, dy, dw};
    for (size_t i = 0; i < 6; i++)
        clg_tensor_free(all[i]);
}

static void test_worked_example_f32(void **state) { worked_example(*state, CLG_F32, 1e-4); }
static void test_worked_example_f64(void **state) { worked_example(*state, CLG_F64, 1e-12); }

/* ---------------------------------------------------------------- PyTorch's numbers */

/* ops.safetensors conv2d: x (2,4,7,6), w (6,2,3,2), b (6), stride 2, pad 1, dilation 2,
 * groups 2; loss = sum(y * r). */
static void test_pytorch_fixture(void **state) {
    clg_context *ctx = *state;
    clg_st_file fx;
    ref_fixture_open(&fx, "ops.safetensors");
    double *hx = ref_fixture_f64(&fx, "conv2d.x", NULL), *hw = ref_fixture_f64(&fx, "conv2d.w", NULL);
    double *hb = ref_fixture_f64(&fx, "conv2d.b", NULL), *hy = ref_fixture_f64(&fx, "conv2d.y", NULL);
    double *hr = ref_fixture_f64(&fx, "conv2d.r", NULL), *hdx = ref_fixture_f64(&fx, "conv2d.dx", NULL);
    double *hdw = ref_fixture_f64(&fx, "conv2d.dw", NULL), *hdb = ref_fixture_f64(&fx, "conv2d.db", NULL);
    const int xs[4] = {2, 4, 7, 6}, ws[4] = {6, 2, 3, 2}, ys[4] = {2, 6, 3, 3}, bs = 6;
    const clg_conv2d_params p = P_(2, 2, 1, 1, 2, 2, 2);
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        const double tol = d ? 1e-12 : 1e-5;
        clg_tensor *x = tensor_from(ctx, dt, 4, xs, hx), *w = tensor_from(ctx, dt, 4, ws, hw);
        clg_tensor *b = tensor_from(ctx, dt, 1, &bs, hb), *r = tensor_from(ctx, dt, 4, ys, hr);
        clg_tensor *y = NULL, *dx = NULL, *dw = NULL, *db = NULL;
        REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ys, &y));
        REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, xs, &dx));
        REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ws, &dw));
        REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, &bs, &db));
        REF_OK(ctx, clg_conv2d_forward(ctx, x, w, b, p, y));
        REF_OK(ctx, clg_conv2d_backward(ctx, x, w, r, p, dx, dw, db, 0.0));
        double *g;
        g = ref_to_host_f64(y), ref_assert_close(g, hy, 36, tol, tol, "torch y"), free(g);
        g = ref_to_host_f64(dx), ref_assert_close(g, hdx, 336, tol, tol, "torch dx"), free(g);
        g = ref_to_host_f64(dw), ref_assert_close(g, hdw, 72, tol, tol, "torch dw"), free(g);
        g = ref_to_host_f64(db), ref_assert_close(g, hdb, 6, tol, tol, "torch db"), free(g);
        clg_tensor *all[] = {x, w, b, r, y, dx, dw, db};
        for (size_t i = 0; i < 8; i++)
            clg_tensor_free(all[i]);
    }
    free(hx), free(hw), free(hb), free(hy), free(hr), free(hdx), free(hdw), free(hdb);
    clg_st_file_free(&fx);
}

/* ---------------------------------------------------------------- finite differences */

static clg_status conv_fn(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    const clg_conv2d_params *p = user;
    return clg_conv2d(ctx, in[0], in[1], n > 2 ? in[2] : NULL, *p, y);
}

static void gradcheck_case(clg_context *ctx, const conv_case *c, uint64_t seed) {
    case_tensors t;
    char what[256];
    case_make(ctx, CLG_F64, c, seed, &t);
    clg_tensor *in[3] = {t.x, t.w, t.b};
    for (int i = 0; i < 3; i++)
        if (in[i]) REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
    case_name(c, "gradcheck", what, sizeof what);
    clg_conv2d_params p = c->p;
    ref_gradcheck(ctx, conv_fn, in, c->bias ? 3 : 2, &p, 1e-6, 1e-6, what);
    case_free(&t);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    const conv_case cases[] = {
        {2, 4, 5, 6, 4, 3, 2, P_(2, 1, 1, 2, 2, 1, 2), true},
        {1, 3, 5, 5, 3, 3, 3, P_(1, 1, 1, 1, 1, 1, 3), true}, /* depthwise */
        {3, 2, 4, 5, 3, 2, 2, P_(1, 2, 0, 1, 1, 1, 1), false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        gradcheck_case(ctx, &cases[i], 900 + 10 * i);
}

/* ---------------------------------------------------------------- bad input */

static void expect_fail(clg_context *ctx, clg_status got, clg_status want, const char *needle) {
    const char *msg = clg_context_errmsg(ctx);
    if (got != want) fail_msg("expected %s, got %s (%s)", clg_status_name(want), clg_status_name(got), msg);
    if (!strstr(msg, needle)) fail_msg("message \"%s\" does not mention \"%s\"", msg, needle);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {2, 4, 5, 5}, ws[4] = {6, 2, 3, 3}, ys[4] = {2, 6, 3, 3}, bs = 6;
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 1, -1, 1), *w = ref_rand(ctx, CLG_F32, 4, ws, 2, -1, 1);
    clg_tensor *b = ref_rand(ctx, CLG_F32, 1, &bs, 3, -1, 1);
    clg_tensor *y, *dy = ref_rand(ctx, CLG_F32, 4, ys, 4, -1, 1), *dx, *dw, *db;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 4, ys, &y));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 4, xs, &dx));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 4, ws, &dw));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &bs, &db));
    clg_conv2d_params ok = clg_conv2d_default_params(), p;
    ok.groups = 2;
    clg_tensor *out = (clg_tensor *)&out; /* must become NULL on failure */

    /* kernel larger than the padded input */
    const int big_s[4] = {6, 2, 7, 7};
    clg_tensor *big = ref_rand(ctx, CLG_F32, 4, big_s, 5, -1, 1);
    expect_fail(ctx, clg_conv2d(ctx, x, big, NULL, ok, &out), CLG_SHAPE_MISMATCH,
                "larger than the padded input");
    assert_null(out);
    p = ok, p.pad_h = p.pad_w = 1; /* 5 + 2 = 7: fits exactly */
    REF_OK(ctx, clg_conv2d(ctx, x, big, NULL, p, &out));
    assert_int_equal(clg_tensor_shape(out)[2], 1);
    clg_tensor_free(out);
    p = ok, p.dilation_h = 2; /* extent 5 = the input: fits */
    REF_OK(ctx, clg_conv2d(ctx, x, w, NULL, p, &out));
    clg_tensor_free(out);
    p = ok, p.dilation_h = 3; /* extent 7 > 5 */
    expect_fail(ctx, clg_conv2d(ctx, x, w, NULL, p, &out), CLG_SHAPE_MISMATCH, "dilation 3");
    assert_int_equal(clg_conv2d_out_size(5, 3, 1, 0, 3), -1);
    assert_int_equal(clg_conv2d_out_size(5, 3, 2, 1, 1), 3);
    assert_int_equal(clg_conv2d_out_size(5, 3, 0, 1, 1), -1);

    /* channels not divisible by groups; output channels too */
    p = ok, p.groups = 3;
    expect_fail(ctx, clg_conv2d(ctx, x, w, NULL, p, &out), CLG_INVALID_ARGUMENT,
                "groups 3 does not divide the 4 input channels");
    const int w5_s[4] = {5, 2, 3, 3};
    clg_tensor *w5 = ref_rand(ctx, CLG_F32, 4, w5_s, 6, -1, 1);
    expect_fail(ctx, clg_conv2d(ctx, x, w5, NULL, ok, &out), CLG_INVALID_ARGUMENT, "5 output channels");
    /* in-channels per group wrong (groups 1 needs 4) */
    expect_fail(ctx, clg_conv2d(ctx, x, w, NULL, clg_conv2d_default_params(), &out), CLG_SHAPE_MISMATCH,
                "needs 4");

    /* zero or negative stride, dilation, padding, groups */
    p = ok, p.stride_w = 0;
    expect_fail(ctx, clg_conv2d(ctx, x, w, NULL, p, &out), CLG_INVALID_ARGUMENT, "stride");
    p = ok, p.stride_h = -1;
    expect_fail(ctx, clg_conv2d_forward(ctx, x, w, NULL, p, y), CLG_INVALID_ARGUMENT, "stride");
    p = ok, p.dilation_w = 0;
    expect_fail(ctx, clg_conv2d(ctx, x, w, NULL, p, &out), CLG_INVALID_ARGUMENT, "dilation");
    p = ok, p.pad_h = -1;
    expect_fail(ctx, clg_conv2d_backward(ctx, x, w, dy, p, dx, dw, db, 0), CLG_INVALID_ARGUMENT, "padding");
    p = ok, p.groups = 0;
    expect_fail(ctx, clg_conv2d(ctx, x, w, NULL, p, &out), CLG_INVALID_ARGUMENT, "groups");

    /* tensors of the wrong shape */
    const int x3_s[3] = {4, 5, 5};
    clg_tensor *x3 = ref_rand(ctx, CLG_F32, 3, x3_s, 7, -1, 1);
    expect_fail(ctx, clg_conv2d(ctx, x3, w, NULL, ok, &out), CLG_SHAPE_MISMATCH, "4-D");
    expect_fail(ctx, clg_conv2d(ctx, x, x3, NULL, ok, &out), CLG_SHAPE_MISMATCH, "4-D");
    expect_fail(ctx, clg_conv2d(ctx, x, w, w, ok, &out), CLG_SHAPE_MISMATCH, "b (6, 2, 3, 3)");
    const int b4 = 4;
    clg_tensor *bad_b = ref_rand(ctx, CLG_F32, 1, &b4, 8, -1, 1);
    expect_fail(ctx, clg_conv2d(ctx, x, w, bad_b, ok, &out), CLG_SHAPE_MISMATCH, "b (4)");
    expect_fail(ctx, clg_conv2d_forward(ctx, x, w, b, ok, dx), CLG_SHAPE_MISMATCH, "y is (2, 4, 5, 5)");
    expect_fail(ctx, clg_conv2d_backward(ctx, x, w, dx, ok, dx, dw, db, 0), CLG_SHAPE_MISMATCH,
                "dy is (2, 4, 5, 5)");
    expect_fail(ctx, clg_conv2d_backward(ctx, x, w, dy, ok, y, dw, db, 0), CLG_SHAPE_MISMATCH,
                "dx is (2, 6, 3, 3)");
    expect_fail(ctx, clg_conv2d_backward(ctx, x, w, dy, ok, dx, big, db, 0), CLG_SHAPE_MISMATCH,
                "dw is (6, 2, 7, 7)");
    expect_fail(ctx, clg_conv2d_backward(ctx, x, w, dy, ok, dx, dw, bad_b, 0), CLG_SHAPE_MISMATCH,
                "db is (4)");
    clg_tensor *w64 = ref_rand(ctx, CLG_F64, 4, ws, 9, -1, 1);
    expect_fail(ctx, clg_conv2d(ctx, x, w64, NULL, ok, &out), CLG_INVALID_ARGUMENT, "f64");

    /* null pointers */
    expect_fail(ctx, clg_conv2d(ctx, NULL, w, b, ok, &out), CLG_INVALID_ARGUMENT, "x is NULL");
    expect_fail(ctx, clg_conv2d(ctx, x, NULL, b, ok, &out), CLG_INVALID_ARGUMENT, "w is NULL");
    expect_fail(ctx, clg_conv2d(ctx, x, w, b, ok, NULL), CLG_INVALID_ARGUMENT, "out is NULL");
    expect_fail(ctx, clg_conv2d_forward(ctx, x, w, b, ok, NULL), CLG_INVALID_ARGUMENT, "y is NULL");
    expect_fail(ctx, clg_conv2d_backward(ctx, x, w, NULL, ok, dx, dw, db, 0), CLG_INVALID_ARGUMENT,
                "dy is NULL");
    assert_int_equal(clg_conv2d(NULL, x, w, b, ok, &out), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_conv2d_forward(NULL, x, w, b, ok, y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_conv2d_backward(NULL, x, w, dy, ok, dx, dw, db, 0), CLG_INVALID_ARGUMENT);

    /* and the next call works */
    REF_OK(ctx, clg_conv2d_forward(ctx, x, w, b, ok, y));
    REF_OK(ctx, clg_conv2d_backward(ctx, x, w, dy, ok, dx, dw, db, 0));
    REF_OK(ctx, clg_conv2d(ctx, x, w, b, ok, &out));
    clg_tensor_free(out);

    clg_tensor *all[] = {x, w, b, y, dy, dx, dw, db, big, w5, x3, bad_b, w64};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clg_tensor_free(all[i]);
}

/* ---------------------------------------------------------------- NaN */

/* conv2d as PyTorch computes it (im2col and GEMM): every tap multiplies, a padded one with 0,
 * so 0 * NaN is NaN. y = b + sum x_or_0 * w; dw = sum dy * x_or_0; dx gathers w * dy over
 * the taps that land inside the image; db = sum dy. PyTorch 2.x (CPU) gives NaN exactly where
 * this does: a NaN weight makes its output channel NaN everywhere, padded or not; a NaN dy
 * makes its whole dw row NaN. */
static void nan_ref(const conv_case *c, const double *x, const double *w, const double *b, const double *dy,
                    double *y, double *dx, double *dw, double *db) {
    const int OH = ref_conv_out_h(c), OW = ref_conv_out_w(c), G = c->p.groups, Cg = c->C / G, Kg = c->K / G;
    const size_t nx = (size_t)c->N * c->C * c->H * c->W, nw = (size_t)c->K * Cg * c->KH * c->KW;
    for (size_t i = 0; i < nx; i++)
        dx[i] = 0;
    for (size_t i = 0; i < nw; i++)
        dw[i] = 0;
    for (int k = 0; k < c->K; k++)
        db[k] = 0;
    for (int n = 0; n < c->N; n++)
        for (int k = 0; k < c->K; k++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const size_t o = (((size_t)n * c->K + k) * OH + oh) * OW + ow;
                    double acc = b ? b[k] : 0;
                    db[k] += dy[o];
                    for (int cg = 0; cg < Cg; cg++)
                        for (int i = 0; i < c->KH; i++)
                            for (int j = 0; j < c->KW; j++) {
                                const int ch = k / Kg * Cg + cg;
                                const int h = oh * c->p.stride_h - c->p.pad_h + i * c->p.dilation_h;
                                const int ww = ow * c->p.stride_w - c->p.pad_w + j * c->p.dilation_w;
                                const bool in = h >= 0 && h < c->H && ww >= 0 && ww < c->W;
                                const size_t xi = (((size_t)n * c->C + ch) * c->H + (in ? h : 0)) * c->W + (in ? ww : 0);
                                const size_t wi = (((size_t)k * Cg + cg) * c->KH + i) * c->KW + j;
                                const double xv = in ? x[xi] : 0.0;
                                acc += xv * w[wi];
                                dw[wi] += dy[o] * xv;
                                if (in) dx[xi] += w[wi] * dy[o];
                            }
                    y[o] = acc;
                }
}

static void test_nan(void **state) {
    clg_context *ctx = *state;
    const conv_case cases[2] = {
        {2, 2, 4, 4, 3, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true},
        {1, 4, 6, 5, 4, 2, 2, P_(2, 1, 1, 2, 2, 1, 2), true},
    };
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        for (int ci = 0; ci < 2; ci++) {
            const conv_case *c = &cases[ci];
            for (int where = 0; where < 3; where++) { /* NaN in x, in w, in dy */
                case_tensors t;
                case_make(ctx, dt, c, 700 + (uint64_t)ci, &t);
                const size_t nx = clg_tensor_numel(t.x), nw = clg_tensor_numel(t.w), ny = clg_tensor_numel(t.dy);
                if (where == 0) t.hx[nx / 2 + 1] = NAN;
                if (where == 1) t.hw[0] = NAN; /* the first tap: it lands on padding at the edges */
                if (where == 2) t.hdy[ny / 3] = NAN;
                clg_tensor *x = nan_tensor(ctx, dt, 4, t.xs, t.hx), *w = nan_tensor(ctx, dt, 4, t.ws, t.hw);
                clg_tensor *dy = nan_tensor(ctx, dt, 4, t.ys, t.hdy), *y = NULL;
                double *rx = ref_to_host_f64(x), *rw = ref_to_host_f64(w), *rdy = ref_to_host_f64(dy);
                double *rb = ref_to_host_f64(t.b);
                REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
                REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
                REF_OK(ctx, clg_tensor_set_requires_grad(t.b, true));
                REF_OK(ctx, clg_conv2d(ctx, x, w, t.b, c->p, &y));
                REF_OK(ctx, clg_backward_grad(ctx, y, dy));
                double *wy = malloc(ny * sizeof *wy), *wdx = malloc(nx * sizeof *wdx), *wdw = malloc(nw * sizeof *wdw);
                double *wdb = malloc((size_t)c->K * sizeof *wdb);
                assert_true(wy && wdx && wdw && wdb);
                nan_ref(c, rx, rw, rb, rdy, wy, wdx, wdw, wdb);
                char what[320], name[32];
                static const char *const where_s[3] = {"x", "w", "dy"};
                /* sums of up to C*KH*KW (or N*OH*OW) products of values in [-1, 1] */
                const double rt = nan_rtol(dt), at = nan_rtol(dt) * 64;
                snprintf(name, sizeof name, "NaN in %s", where_s[where]);
                case_name(c, name, what, sizeof what);
                nan_expect(y, wy, ny, rt, at, what, dt);
                nan_expect(clg_tensor_grad(x), wdx, nx, rt, at, what, dt);
                nan_expect(clg_tensor_grad(w), wdw, nw, rt, at, what, dt);
                nan_expect(clg_tensor_grad(t.b), wdb, (size_t)c->K, rt, at, what, dt);
                free(wy), free(wdx), free(wdw), free(wdb), free(rx), free(rw), free(rdy), free(rb);
                clg_tensor_free(x), clg_tensor_free(w), clg_tensor_free(dy), clg_tensor_free(y);
                case_free(&t);
            }
        }
    }
}

/* The CPU form of the bias gradient (bias_grad_cpu: one work-item per channel holding the
 * partial sums) makes bias_grad's additions in bias_grad's order: db is the same bits in both
 * kernel styles. Planes shorter than, equal to and longer than the work-group, with a tail. */
static void test_bias_grad_styles(void **state) {
    (void)state;
    clg_context *ctx[2] = {conv_context(CLG_KERNEL_STYLE_CPU, 0), conv_context(CLG_KERNEL_STYLE_GPU, 0)};
    const int shapes[][3] = {{1, 3, 5}, {2, 4, 64}, {3, 5, 130}, {4, 2, 784}}; /* N, K, plane */
    for (int di = 0; di < 2; di++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
            for (int bi = 0; bi < 2; bi++) {
                const clg_dtype dt = di ? CLG_F64 : CLG_F32;
                const int n = shapes[si][0], k = shapes[si][1], plane = shapes[si][2];
                /* a 1x1 convolution of (n, 1, 1, plane) images: dy is (n, k, 1, plane) */
                const int xs[4] = {n, 1, 1, plane}, ws[4] = {k, 1, 1, 1}, ys[4] = {n, k, 1, plane};
                double *got[2];
                for (int c = 0; c < 2; c++) {
                    clg_tensor *x = ref_rand(ctx[c], dt, 4, xs, 1, -1, 1), *w = ref_rand(ctx[c], dt, 4, ws, 2, -1, 1);
                    clg_tensor *dy = ref_rand(ctx[c], dt, 4, ys, 3 + si, -1, 1);
                    clg_tensor *db = ref_rand(ctx[c], dt, 1, &k, 9, -1, 1);
                    REF_OK(ctx[c], clg_conv2d_backward(ctx[c], x, w, dy, clg_conv2d_default_params(), NULL, NULL, db,
                                                       (double)bi));
                    got[c] = ref_to_host_f64(db);
                    clg_tensor *all[] = {x, w, dy, db};
                    for (size_t i = 0; i < 4; i++) clg_tensor_free(all[i]);
                }
                for (int i = 0; i < k; i++)
                    if (memcmp(&got[0][i], &got[1][i], sizeof(double)))
                        fail_msg("db[%d] of (%d, %d, %d), %s, beta %d: %.17g in the CPU style, %.17g in the GPU style",
                                 i, n, k, plane, clg_dtype_name(dt), bi, got[0][i], got[1][i]);
                free(got[0]), free(got[1]);
            }
    clg_context_free(ctx[0]), clg_context_free(ctx[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example_f32), cmocka_unit_test(test_worked_example_f64),
        cmocka_unit_test(test_pytorch_fixture),    cmocka_unit_test(test_grid_f32),
        cmocka_unit_test(test_grid_f64),           cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_bad_input),          cmocka_unit_test(test_nan),
        cmocka_unit_test(test_bias_grad_styles),
    };
    return REF_RUN_BOTH_STYLES("conv2d", tests);
}
