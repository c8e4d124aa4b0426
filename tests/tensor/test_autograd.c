/* tests/tensor/test_autograd.c - the graph engine (src/tensor/autograd.c) seen through whole
 * graphs: the worked conv2d example end to end (forward, backward, one SGD step, new loss),
 * f64 finite-difference checks of composite graphs (a tensor used twice, a diamond, a weight
 * shared by two layers), the accumulation contract, no-grad mode and misuse errors.
 * Both kernel styles. Layers and whole models: tests/nn/test_nn.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"
#include "ref_style.h"

/* ---------------------------------------------------------------- the worked example */

/* The worked Conv2d example's numbers, written out by hand (not computed by the code under test). */
static const double WX[16] = {10, 20, 30, 40, 30, 40, 50, 60, 20, 30, 40, 50, 10, 20, 30, 40};
static const double WW[4] = {0.5, 0.3, 0.2, 0.1};
static const double WY[9] = {21, 32, 43, 34, 45, 56, 23, 34, 45};
static const double WDW[4] = {22080, 28740, 21180, 27840};
static const double WW_NEW[4] = {0.2792, 0.0126, -0.0118, -0.1784};
static const double WLOSS = 13341, WLOSS_NEW = 6483831.0 / 50000.0; /* 129.67662 */

static clg_tensor *from_doubles(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, const double *v,
                                size_t n) {
    clg_tensor *t = NULL;
    if (dt == CLG_F64) {
        REF_OK(ctx, clg_tensor_from_host(ctx, dt, ndim, shape, v, &t));
    } else {
        float *f = malloc(n * sizeof *f);
        assert_non_null(f);
        for (size_t i = 0; i < n; i++)
            f[i] = (float)v[i];
        clg_status st = clg_tensor_from_host(ctx, dt, ndim, shape, f, &t);
        free(f);
        REF_OK(ctx, st);
    }
    return t;
}

static void check_values(const clg_tensor *t, const double *want, size_t n, double rtol, const char *what) {
    assert_int_equal(clg_tensor_numel(t), n);
    double *got = ref_to_host_f64(t);
    ref_assert_close(got, want, n, rtol, 0, what);
    free(got);
}

static void worked_example(clg_context *ctx, clg_dtype dt, double rtol) {
    const int xs[4] = {1, 1, 4, 4}, ws[4] = {1, 1, 2, 2};
    clg_tensor *x = from_doubles(ctx, dt, 4, xs, WX, 16), *w = from_doubles(ctx, dt, 4, ws, WW, 4);
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));

    clg_tensor *y = NULL, *loss = NULL;
    REF_OK(ctx, clg_conv2d(ctx, x, w, NULL, clg_conv2d_default_params(), &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    check_values(y, WY, 9, rtol, "worked example: y");
    double l = 0;
    REF_OK(ctx, clg_tensor_item(loss, &l));
    ref_assert_close(&l, &WLOSS, 1, rtol, 0, "worked example: loss");

    REF_OK(ctx, clg_backward(ctx, loss));
    assert_non_null(clg_tensor_grad(w));
    check_values(clg_tensor_grad(w), WDW, 4, rtol, "worked example: dL/dw");
    assert_null(clg_tensor_grad(x)); /* x needs no gradient: none is made */

    clg_optimizer *opt = NULL;
    clg_sgd_params sp = clg_sgd_default_params();
    sp.lr = 1e-5;
    REF_OK(ctx, clg_sgd_create(ctx, &w, 1, sp, &opt));
    REF_OK(ctx, clg_optimizer_step(opt));
    check_values(w, WW_NEW, 4, rtol, "worked example: w after one SGD step");

    clg_tensor *y2 = NULL, *loss2 = NULL;
    REF_OK(ctx, clg_conv2d(ctx, x, w, NULL, clg_conv2d_default_params(), &y2));
    REF_OK(ctx, clg_sum_of_squares(ctx, y2, &loss2));
    REF_OK(ctx, clg_tensor_item(loss2, &l));
    ref_assert_close(&l, &WLOSS_NEW, 1, rtol, 0, "worked example: loss after the step");

    clg_optimizer_free(opt);
    clg_tensor_free(loss2);
    clg_tensor_free(y2);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(w);
    clg_tensor_free(x);
}

static void test_worked_example_f32(void **state) { worked_example(*state, CLG_F32, 1e-4); }
static void test_worked_example_f64(void **state) { worked_example(*state, CLG_F64, 1e-9); }

/* ---------------------------------------------------------------- composite gradient checks */

/* x*x + x: x feeds mul twice and add once, so three contributions meet in x.grad. */
static clg_status used_twice(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n, (void)user;
    clg_tensor *sq = NULL;
    clg_status st = clg_mul(ctx, in[0], in[0], &sq);
    if (st == CLG_OK) st = clg_add(ctx, sq, in[0], y);
    clg_tensor_free(sq);
    return st;
}

/* a = relu(x), b = sigmoid(x), y = a*b + a: two paths from x that meet again. */
static clg_status diamond(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n, (void)user;
    clg_tensor *a = NULL, *b = NULL, *ab = NULL;
    clg_status st = clg_relu(ctx, in[0], &a);
    if (st == CLG_OK) st = clg_sigmoid(ctx, in[0], &b);
    if (st == CLG_OK) st = clg_mul(ctx, a, b, &ab);
    if (st == CLG_OK) st = clg_add(ctx, ab, a, y);
    clg_tensor_free(ab);
    clg_tensor_free(b);
    clg_tensor_free(a);
    return st;
}

/* One weight used by two layers (weight tying), with tanh between: y = tanh(x W^T + b) W^T. */
static clg_status tied(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n, (void)user;
    clg_tensor *h = NULL, *t = NULL;
    clg_status st = clg_linear(ctx, in[0], in[1], in[2], &h);
    if (st == CLG_OK) st = clg_tanh(ctx, h, &t);
    if (st == CLG_OK) st = clg_linear(ctx, t, in[1], NULL, y);
    clg_tensor_free(t);
    clg_tensor_free(h);
    return st;
}

/* Values kept away from relu's kink at 0, where the central difference is meaningless. */
static clg_tensor *rand_off_zero(clg_context *ctx, int ndim, const int *shape, uint64_t seed) {
    clg_tensor *t = ref_rand_f64(ctx, ndim, shape, seed, 0.1, 2.0);
    double *v = ref_to_host_f64(t);
    for (size_t i = 0; i < clg_tensor_numel(t); i++)
        if (i % 2) v[i] = -v[i];
    REF_OK(ctx, clg_tensor_write(t, v, clg_tensor_bytes(t)));
    free(v);
    REF_OK(ctx, clg_tensor_set_requires_grad(t, true));
    return t;
}

static void test_gradcheck_used_twice(void **state) {
    clg_context *ctx = *state;
    const int s[2] = {3, 4};
    clg_tensor *x = rand_off_zero(ctx, 2, s, 11);
    ref_gradcheck(ctx, used_twice, &x, 1, NULL, 1e-6, 1e-7, "x*x + x");
    /* And the value itself, seeded with ones: d(x*x + x)/dx = 2x + 1. */
    clg_tensor_zero_grad(x);
    clg_tensor *y = NULL, *ones = NULL;
    REF_OK(ctx, used_twice(ctx, &x, 1, &y, NULL));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 2, s, &ones));
    REF_OK(ctx, clg_tensor_fill(ones, 1.0));
    REF_OK(ctx, clg_backward_grad(ctx, y, ones));
    double *xv = ref_to_host_f64(x), *g = ref_to_host_f64(clg_tensor_grad(x));
    for (int i = 0; i < 12; i++)
        xv[i] = 2 * xv[i] + 1;
    ref_assert_close(g, xv, 12, 1e-14, 0, "d(x*x + x)/dx = 2x + 1");
    free(g);
    free(xv);
    clg_tensor_free(ones);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void test_gradcheck_diamond(void **state) {
    clg_context *ctx = *state;
    const int s[3] = {2, 3, 4};
    clg_tensor *x = rand_off_zero(ctx, 3, s, 12);
    ref_gradcheck(ctx, diamond, &x, 1, NULL, 1e-6, 1e-7, "relu/sigmoid diamond");
    clg_tensor_free(x);
}

static void test_gradcheck_tied_weight(void **state) {
    clg_context *ctx = *state;
    const int xs[2] = {3, 4}, ws[2] = {4, 4}, bs[1] = {4};
    clg_tensor *in[3] = {ref_rand_f64(ctx, 2, xs, 21, -1, 1), ref_rand_f64(ctx, 2, ws, 22, -1, 1),
                         ref_rand_f64(ctx, 1, bs, 23, -1, 1)};
    for (int i = 0; i < 3; i++)
        REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
    ref_gradcheck(ctx, tied, in, 3, NULL, 1e-6, 1e-7, "tied weight");
    for (int i = 0; i < 3; i++)
        clg_tensor_free(in[i]);
}

/* ---------------------------------------------------------------- accumulation contract */

/* loss = sum((conv(x, w) + b-ish)^2) through a few ops; returns w's and x's gradients. */
static clg_status small_loss(clg_context *ctx, clg_tensor *x, clg_tensor *w, clg_tensor *b,
                             clg_tensor **loss) {
    clg_tensor *y = NULL, *r = NULL;
    clg_status st = clg_conv2d(ctx, x, w, b, clg_conv2d_default_params(), &y);
    if (st == CLG_OK) st = clg_tanh(ctx, y, &r);
    if (st == CLG_OK) st = clg_sum_of_squares(ctx, r, loss);
    clg_tensor_free(r);
    clg_tensor_free(y);
    return st;
}

static void accumulation(clg_context *ctx, clg_dtype dt) {
    const int xs[4] = {2, 2, 5, 5}, ws[4] = {3, 2, 3, 3}, bs[1] = {3};
    clg_tensor *p[3] = {ref_rand(ctx, dt, 4, xs, 31, -1, 1), ref_rand(ctx, dt, 4, ws, 32, -0.5, 0.5),
                        ref_rand(ctx, dt, 1, bs, 33, -0.5, 0.5)};
    for (int i = 0; i < 3; i++)
        REF_OK(ctx, clg_tensor_set_requires_grad(p[i], true));
    double *once[3], *twice[3], *again[3];
    clg_tensor *loss = NULL;

    REF_OK(ctx, small_loss(ctx, p[0], p[1], p[2], &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    clg_tensor_free(loss);
    for (int i = 0; i < 3; i++)
        once[i] = ref_to_host_f64(clg_tensor_grad(p[i]));

    /* A second graph, no zeroing: every leaf's gradient doubles, exactly. */
    REF_OK(ctx, small_loss(ctx, p[0], p[1], p[2], &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    clg_tensor_free(loss);
    for (int i = 0; i < 3; i++) {
        twice[i] = ref_to_host_f64(clg_tensor_grad(p[i]));
        const size_t n = clg_tensor_numel(p[i]);
        for (size_t j = 0; j < n; j++)
            once[i][j] *= 2; /* exact in binary */
        ref_assert_close(twice[i], once[i], n, 0, 0, "two backwards = 2x the gradient");
    }

    /* zero_grad: the next backward overwrites (beta 0) instead of adding. */
    for (int i = 0; i < 3; i++) {
        clg_tensor_zero_grad(p[i]);
        assert_null(clg_tensor_grad(p[i]));
    }
    REF_OK(ctx, small_loss(ctx, p[0], p[1], p[2], &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    clg_tensor_free(loss);
    for (int i = 0; i < 3; i++) {
        again[i] = ref_to_host_f64(clg_tensor_grad(p[i]));
        const size_t n = clg_tensor_numel(p[i]);
        for (size_t j = 0; j < n; j++)
            once[i][j] /= 2;
        ref_assert_close(again[i], once[i], n, 0, 0, "zero_grad then backward = the single gradient");
        free(once[i]);
        free(twice[i]);
        free(again[i]);
        clg_tensor_free(p[i]);
    }
}

static void test_accumulation_f32(void **state) { accumulation(*state, CLG_F32); }
static void test_accumulation_f64(void **state) { accumulation(*state, CLG_F64); }

/* ---------------------------------------------------------------- modes and misuse */

static void test_no_grad_records_nothing(void **state) {
    clg_context *ctx = *state;
    const int s[2] = {2, 3};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 2, s, 41, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    const bool was = clg_set_grad_enabled(ctx, false);
    assert_true(was);
    assert_false(clg_grad_enabled(ctx));
    clg_tensor *y = NULL, *loss = NULL;
    REF_OK(ctx, clg_relu(ctx, x, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    assert_false(clg_tensor_requires_grad(y));
    assert_false(clg_tensor_requires_grad(loss));
    assert_int_equal(clg_backward(ctx, loss), CLG_INVALID_STATE);
    assert_non_null(strstr(clg_context_errmsg(ctx), "backward"));
    assert_null(clg_tensor_grad(x));
    clg_tensor_free(loss);
    clg_tensor_free(y);

    /* Back on: the same ops record again. */
    clg_set_grad_enabled(ctx, true);
    REF_OK(ctx, clg_relu(ctx, x, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    assert_true(clg_tensor_requires_grad(loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    assert_non_null(clg_tensor_grad(x));
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void test_backward_without_grad_fails(void **state) {
    clg_context *ctx = *state;
    const int s[2] = {2, 3};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 2, s, 42, -1, 1), *y = NULL, *loss = NULL;
    REF_OK(ctx, clg_tanh(ctx, x, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    assert_int_equal(clg_backward(ctx, loss), CLG_INVALID_STATE);
    assert_non_null(strstr(clg_context_errmsg(ctx), "does not require gradients"));
    /* A loss with more than one element needs clg_backward_grad. */
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    clg_tensor_free(y);
    REF_OK(ctx, clg_tanh(ctx, x, &y));
    assert_int_equal(clg_backward(ctx, y), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(2, 3)"));
    /* A seed of the wrong shape. */
    const int s2[2] = {3, 2};
    clg_tensor *dy = ref_rand(ctx, CLG_F32, 2, s2, 43, -1, 1);
    assert_int_equal(clg_backward_grad(ctx, y, dy), CLG_SHAPE_MISMATCH);
    clg_tensor_free(dy);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void test_backward_twice_fails(void **state) {
    clg_context *ctx = *state;
    const int s[2] = {2, 3};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 2, s, 44, -1, 1), *y = NULL, *loss = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_sigmoid(ctx, x, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    double *g1 = ref_to_host_f64(clg_tensor_grad(x));
    assert_int_equal(clg_backward(ctx, loss), CLG_INVALID_STATE);
    assert_non_null(strstr(clg_context_errmsg(ctx), "already"));
    /* The failed call left the gradient alone. */
    double *g2 = ref_to_host_f64(clg_tensor_grad(x));
    ref_assert_close(g2, g1, 6, 0, 0, "gradient after a refused second backward");
    free(g1);
    free(g2);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void test_bad_input_errors(void **state) {
    clg_context *ctx = *state;
    const int s[2] = {4, 3}, s2[2] = {3, 4};
    clg_tensor *logits = ref_rand(ctx, CLG_F32, 2, s, 45, -1, 1),
               *other = ref_rand(ctx, CLG_F32, 2, s2, 46, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(logits, true));
    clg_tensor *out = (clg_tensor *)&out; /* must come back NULL */
    const int32_t bad[4] = {0, 1, 3, 2};
    assert_int_equal(clg_softmax_cross_entropy(ctx, logits, bad, 4, &out), CLG_INVALID_ARGUMENT);
    assert_null(out);
    assert_non_null(strstr(clg_context_errmsg(ctx), "target"));
    const int32_t neg[4] = {0, -1, 1, 2};
    assert_int_equal(clg_softmax_cross_entropy(ctx, logits, neg, 4, &out), CLG_INVALID_ARGUMENT);
    const int32_t ok[3] = {0, 1, 2};
    assert_int_equal(clg_softmax_cross_entropy(ctx, logits, ok, 3, &out), CLG_SHAPE_MISMATCH);
    assert_int_equal(clg_add(ctx, logits, other, &out), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(4, 3)"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "(3, 4)"));
    assert_null(out);
    clg_tensor_free(other);
    clg_tensor_free(logits);
}

/* After backward the graph's saved tensors go back to the pool at once, even while the
 * caller still holds the loss. */
static void test_backward_releases_saved(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {2, 3, 8, 8}, ws[4] = {4, 3, 3, 3}, one = 1;
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 47, -1, 1), *w = ref_rand(ctx, CLG_F32, 4, ws, 48, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
    clg_tensor *loss = NULL;
    /* A first round allocates w's gradient; the second is measured. */
    REF_OK(ctx, small_loss(ctx, x, w, NULL, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    clg_tensor_free(loss);

    const size_t before = clg_context_pool_stats(ctx).bytes_in_use;
    clg_tensor *probe = NULL; /* how much a (1) tensor takes from the pool */
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &one, &probe));
    const size_t scalar = clg_context_pool_stats(ctx).bytes_in_use - before;
    clg_tensor_free(probe);

    REF_OK(ctx, small_loss(ctx, x, w, NULL, &loss));
    assert_true(clg_context_pool_stats(ctx).bytes_in_use > before + scalar); /* the graph holds y, tanh(y) */
    REF_OK(ctx, clg_backward(ctx, loss));
    assert_int_equal(clg_context_pool_stats(ctx).bytes_in_use, before + scalar);
    clg_tensor_free(loss);
    assert_int_equal(clg_context_pool_stats(ctx).bytes_in_use, before);
    clg_tensor_free(w);
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worked_example_f32),
        cmocka_unit_test(test_worked_example_f64),
        cmocka_unit_test(test_gradcheck_used_twice),
        cmocka_unit_test(test_gradcheck_diamond),
        cmocka_unit_test(test_gradcheck_tied_weight),
        cmocka_unit_test(test_accumulation_f32),
        cmocka_unit_test(test_accumulation_f64),
        cmocka_unit_test(test_no_grad_records_nothing),
        cmocka_unit_test(test_backward_without_grad_fails),
        cmocka_unit_test(test_backward_twice_fails),
        cmocka_unit_test(test_bad_input_errors),
        cmocka_unit_test(test_backward_releases_saved),
    };
    return REF_RUN_BOTH_STYLES("autograd", tests);
}
