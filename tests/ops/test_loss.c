/* tests/ops/test_loss.c - softmax_cross_entropy, mse_loss, sum_of_squares
 * (src/ops/loss.c, cl/ops/loss.cl): forward against host loops in f32 and f64 (sizes past
 * one work-group, logits large enough to overflow a naive exp), f64 finite-difference
 * gradients, the beta contract, PyTorch's values (1e-10 in f64), determinism, bad input, NaN
 * and infinities as PyTorch propagates them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_style.h"
#include "ref_ops.h"
#include "nan_test.h"

static double item(clg_context *ctx, const clg_tensor *t) {
    double v = 0;
    assert_int_equal(clg_tensor_numel(t), 1);
    assert_int_equal(clg_tensor_ndim(t), 1);
    REF_OK(ctx, clg_tensor_item(t, &v));
    return v;
}

static int32_t *make_targets(int n, int c, uint64_t seed) {
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)((seed * 2654435761u + (uint64_t)i * 40503u) % (uint64_t)c);
    return t;
}

/* ---------------------------------------------------------------- forward */

static void check_ce(clg_context *ctx, clg_dtype dt, int n, int c, double lo, double hi) {
    const int shape[2] = {n, c};
    clg_tensor *x = ref_rand(ctx, dt, 2, shape, (uint64_t)n * 7 + (uint64_t)c, lo, hi);
    int32_t *t = make_targets(n, c, (uint64_t)n);
    double *xh = ref_to_host_f64(x);
    const double want = ref_softmax_ce(xh, t, n, c, NULL);
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, x, t, (size_t)n, &y));
    const double got = item(ctx, y);
    char what[96];
    snprintf(what, sizeof what, "cross-entropy %s (%d, %d) logits in [%g, %g]", clg_dtype_name(dt), n, c, lo,
             hi);
    ref_assert_close(&got, &want, 1, dt == CLG_F64 ? 1e-13 : 1e-5, dt == CLG_F64 ? 1e-13 : 1e-5, what);
    free(xh);
    free(t);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void check_sums(clg_context *ctx, clg_dtype dt, int n) {
    const int shape[2] = {n / 10, 10};
    clg_tensor *a = ref_rand(ctx, dt, 2, shape, (uint64_t)n + 1, -2, 2);
    clg_tensor *b = ref_rand(ctx, dt, 2, shape, (uint64_t)n + 2, -2, 2);
    double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b);
    const size_t m = clg_tensor_numel(a);
    clg_tensor *y = NULL;
    const double rtol = dt == CLG_F64 ? 1e-13 : 1e-5;
    char what[64];
    REF_OK(ctx, clg_mse_loss(ctx, a, b, &y));
    double got = item(ctx, y), want = ref_mse(ah, bh, m);
    snprintf(what, sizeof what, "mse %s n=%d", clg_dtype_name(dt), n);
    ref_assert_close(&got, &want, 1, rtol, 0, what);
    clg_tensor_free(y);
    REF_OK(ctx, clg_sum_of_squares(ctx, a, &y));
    got = item(ctx, y);
    want = ref_sum_of_squares(ah, m);
    snprintf(what, sizeof what, "sum_of_squares %s n=%d", clg_dtype_name(dt), n);
    ref_assert_close(&got, &want, 1, rtol, 0, what);
    clg_tensor_free(y);
    free(ah);
    free(bh);
    clg_tensor_free(a);
    clg_tensor_free(b);
}

static void check_forward(clg_context *ctx, clg_dtype dt) {
    check_ce(ctx, dt, 7, 5, -3, 3);
    check_ce(ctx, dt, 300, 10, -3, 3);  /* more rows than one work-group has items */
    check_ce(ctx, dt, 4, 3, 800, 1000); /* exp(800) overflows even in f64 without the max */
    check_ce(ctx, dt, 3, 1, -1, 1);     /* one class: loss 0 */
    check_sums(ctx, dt, 30);
    check_sums(ctx, dt, 4000);
}

static void test_forward_f32(void **state) { check_forward(*state, CLG_F32); }
static void test_forward_f64(void **state) { check_forward(*state, CLG_F64); }

/* The worked example's loss: 21^2 + ... = 13341 exactly. */
static void test_sum_of_squares_exact(void **state) {
    clg_context *ctx = *state;
    const double v[9] = {21, 32, 43, 34, 45, 56, 23, 34, 45};
    const int shape[4] = {1, 1, 3, 3};
    clg_tensor *x = ref_tensor_f64(ctx, 4, shape, v), *y = NULL;
    REF_OK(ctx, clg_sum_of_squares(ctx, x, &y));
    assert_true(item(ctx, y) == 13341.0);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

/* Same input, same bits: the reductions have a fixed order. */
static void test_deterministic(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {500, 10};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 2, shape, 99, -1, 1);
    int32_t *t = make_targets(500, 10, 3);
    double first[2] = {0, 0};
    for (int rep = 0; rep < 3; rep++) {
        clg_tensor *a = NULL, *b = NULL;
        REF_OK(ctx, clg_sum_of_squares(ctx, x, &a));
        REF_OK(ctx, clg_softmax_cross_entropy(ctx, x, t, 500, &b));
        const double now[2] = {item(ctx, a), item(ctx, b)};
        if (rep == 0) memcpy(first, now, sizeof now);
        ref_assert_close(now, first, 2, 0, 0, "repeat gives identical bits");
        clg_tensor_free(a);
        clg_tensor_free(b);
    }
    free(t);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- gradients */

typedef struct ce_user {
    const int32_t *targets;
    size_t n;
} ce_user;

static clg_status f_ce(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n;
    const ce_user *cu = u;
    return clg_softmax_cross_entropy(ctx, in[0], cu->targets, cu->n, y);
}
static clg_status f_mse(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    return clg_mse_loss(ctx, in[0], in[1], y);
}
static clg_status f_sumsq(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    return clg_sum_of_squares(ctx, in[0], y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {4, 5};
    int32_t t[4] = {0, 4, 2, 2};
    ce_user cu = {t, 4};
    clg_tensor *in[2] = {ref_rand_f64(ctx, 2, shape, 21, -2, 2), ref_rand_f64(ctx, 2, shape, 22, -2, 2)};
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
    REF_OK(ctx, clg_tensor_set_requires_grad(in[1], true));
    ref_gradcheck(ctx, f_ce, in, 1, &cu, 1e-6, 1e-7, "softmax_cross_entropy");
    ref_gradcheck(ctx, f_mse, in, 2, NULL, 1e-6, 1e-7, "mse_loss (pred and target)");
    ref_gradcheck(ctx, f_sumsq, in, 1, NULL, 1e-6, 1e-7, "sum_of_squares");
    /* The usual case: the target needs no gradient and gets none. */
    REF_OK(ctx, clg_tensor_set_requires_grad(in[1], false));
    clg_tensor_zero_grad(in[1]);
    ref_gradcheck(ctx, f_mse, in, 2, NULL, 1e-6, 1e-7, "mse_loss (pred only)");
    assert_null(clg_tensor_grad(in[1]));
    clg_tensor_free(in[0]);
    clg_tensor_free(in[1]);
}

/* Cross-entropy's gradient against the host formula for a wide batch. */
static void test_ce_backward_values(void **state) {
    clg_context *ctx = *state;
    const int n = 300, c = 10, shape[2] = {n, c};
    clg_tensor *x = ref_rand_f64(ctx, 2, shape, 23, -3, 3), *y = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    int32_t *t = make_targets(n, c, 5);
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, x, t, (size_t)n, &y));
    REF_OK(ctx, clg_backward(ctx, y));
    double *xh = ref_to_host_f64(x), *want = malloc((size_t)n * c * sizeof *want);
    ref_softmax_ce(xh, t, n, c, want);
    double *g = ref_to_host_f64(clg_tensor_grad(x));
    ref_assert_close(g, want, (size_t)n * c, 1e-12, 1e-16, "cross-entropy dlogits");
    free(g);
    free(want);
    free(xh);
    free(t);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- beta contract */

static void check_accumulate(clg_context *ctx, clg_dtype dt) {
    const int shape[2] = {6, 4};
    clg_tensor *in[2] = {ref_rand(ctx, dt, 2, shape, 31, -2, 2), ref_rand(ctx, dt, 2, shape, 32, -2, 2)};
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
    REF_OK(ctx, clg_tensor_set_requires_grad(in[1], true));
    const int32_t t[6] = {3, 0, 1, 2, 3, 3};
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, in[0], t, 6, &y));
    ref_check_accumulate(ctx, y, in, 1, "softmax_cross_entropy");
    clg_tensor_free(y);
    REF_OK(ctx, clg_mse_loss(ctx, in[0], in[1], &y));
    ref_check_accumulate(ctx, y, in, 2, "mse_loss");
    clg_tensor_free(y);
    REF_OK(ctx, clg_sum_of_squares(ctx, in[1], &y));
    ref_check_accumulate(ctx, y, &in[1], 1, "sum_of_squares");
    clg_tensor_free(y);
    clg_tensor_free(in[0]);
    clg_tensor_free(in[1]);
}

static void test_accumulate_f32(void **state) { check_accumulate(*state, CLG_F32); }
static void test_accumulate_f64(void **state) { check_accumulate(*state, CLG_F64); }

/* ---------------------------------------------------------------- PyTorch */

static void test_pytorch(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "ops.safetensors");

    clg_tensor *x = ref_fixture_tensor(ctx, &f, "softmax_cross_entropy.x"), *y = NULL;
    size_t nt = 0, n = 0;
    double *td = ref_fixture_f64(&f, "softmax_cross_entropy.targets", &nt);
    int32_t *t = malloc(nt * sizeof *t);
    for (size_t i = 0; i < nt; i++)
        t[i] = (int32_t)td[i];
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, x, t, nt, &y));
    REF_OK(ctx, clg_backward(ctx, y));
    double got = item(ctx, y);
    double *want = ref_fixture_f64(&f, "softmax_cross_entropy.y", &n);
    ref_assert_close(&got, want, 1, 1e-10, 1e-10, "cross-entropy loss vs PyTorch");
    free(want);
    ref_assert_fixture(&f, "softmax_cross_entropy.dx", clg_tensor_grad(x), 1e-10, 1e-10);
    free(td);
    free(t);
    clg_tensor_free(y);
    clg_tensor_free(x);

    x = ref_fixture_tensor(ctx, &f, "mse_loss.x");
    clg_tensor *target = ref_fixture_tensor(ctx, &f, "mse_loss.target");
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_mse_loss(ctx, x, target, &y));
    REF_OK(ctx, clg_backward(ctx, y));
    got = item(ctx, y);
    want = ref_fixture_f64(&f, "mse_loss.y", &n);
    ref_assert_close(&got, want, 1, 1e-10, 1e-10, "mse loss vs PyTorch");
    free(want);
    ref_assert_fixture(&f, "mse_loss.dx", clg_tensor_grad(x), 1e-10, 1e-10);
    clg_tensor_free(y);
    clg_tensor_free(target);
    clg_tensor_free(x);
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- bad input */

static void test_errors(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {3, 4}, other[2] = {4, 3}, s3[3] = {3, 4, 1};
    clg_tensor *x = ref_rand_f64(ctx, 2, shape, 41, -1, 1);
    clg_tensor *x32 = ref_rand(ctx, CLG_F32, 2, shape, 42, -1, 1);
    clg_tensor *xt = ref_rand_f64(ctx, 2, other, 43, -1, 1);
    clg_tensor *x3 = ref_rand_f64(ctx, 3, s3, 44, -1, 1);
    clg_tensor *y = (clg_tensor *)&y;

    int32_t bad[3] = {0, 4, 1};
    assert_int_equal(clg_softmax_cross_entropy(ctx, x, bad, 3, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "target 1 is 4"));
    int32_t neg[3] = {0, 1, -2};
    assert_int_equal(clg_softmax_cross_entropy(ctx, x, neg, 3, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "target 2 is -2"));
    int32_t ok[3] = {0, 3, 1};
    assert_int_equal(clg_softmax_cross_entropy(ctx, x, ok, 2, &y), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(3, 4)"));
    assert_int_equal(clg_softmax_cross_entropy(ctx, x, NULL, 3, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_softmax_cross_entropy(ctx, x3, ok, 3, &y), CLG_SHAPE_MISMATCH);
    assert_int_equal(clg_softmax_cross_entropy(ctx, NULL, ok, 3, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_softmax_cross_entropy(ctx, x, ok, 3, NULL), CLG_INVALID_ARGUMENT);

    assert_int_equal(clg_mse_loss(ctx, x, x32, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "f32"));
    assert_int_equal(clg_mse_loss(ctx, x, xt, &y), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(3, 4)"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "(4, 3)"));
    assert_int_equal(clg_mse_loss(ctx, x, NULL, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_sum_of_squares(ctx, NULL, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);

    /* Still usable: a valid call gives the host value. */
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, x, ok, 3, &y));
    double *xh = ref_to_host_f64(x);
    const double want = ref_softmax_ce(xh, ok, 3, 4, NULL), got = item(ctx, y);
    ref_assert_close(&got, &want, 1, 1e-13, 0, "cross-entropy after errors");
    free(xh);
    clg_tensor_free(y);
    clg_tensor_free(x);
    clg_tensor_free(x32);
    clg_tensor_free(xt);
    clg_tensor_free(x3);
}

/* ---------------------------------------------------------------- NaN */

/* PyTorch's cross-entropy, written as it computes it: logsumexp with the row max (NaN when
 * the row holds NaN) subtracted, so a NaN logit or a +inf one (inf - inf) makes the loss and
 * that row's gradient NaN; a -inf logit elsewhere is an ordinary 0 probability. */
static void ce_ref(const double *x, const int32_t *t, int n, int c, double dy, double *loss, double *dx) {
    double total = 0;
    for (int r = 0; r < n; r++) {
        const double *row = x + (size_t)r * c;
        double m = row[0];
        for (int j = 1; j < c; j++)
            m = isnan(m) || isnan(row[j]) ? NAN : row[j] > m ? row[j] : m;
        double sum = 0;
        for (int j = 0; j < c; j++)
            sum += exp(row[j] - m);
        const double lse = m + log(sum);
        total += lse - row[t[r]];
        for (int j = 0; j < c; j++)
            dx[(size_t)r * c + j] = dy / n * (exp(row[j] - lse) - (j == t[r] ? 1.0 : 0.0));
    }
    *loss = total / n;
}

static void test_nan(void **state) {
    clg_context *ctx = *state;
    enum { N = 4, C = 3 };
    const int ls[2] = {N, C}, one[1] = {1};
    const int32_t t[N] = {0, 2, 1, 1};
    /* row 0 NaN, row 1 +inf, row 2 -inf off the target, row 3 plain */
    const double x[N * C] = {1, NAN, 3, 1, INFINITY, 3, -INFINITY, 0.5, 2, 0.1, 0.2, 0.3};
    const double x_plain[N * C] = {1, 2, 3, 1, 2, 3, -1, 0.5, 2, 0.1, 0.2, 0.3};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        const double rt = nan_rtol(dt);
        double want_loss, want_dx[N * C];
        /* softmax_cross_entropy: NaN logits, and then a NaN upstream gradient on plain logits */
        for (int k = 0; k < 2; k++) {
            const double *xv = k ? x_plain : x, dyv = k ? NAN : 1.5;
            clg_tensor *lg = nan_tensor(ctx, dt, 2, ls, xv), *y = NULL, *dy = nan_filled(ctx, dt, 1, one, dyv);
            REF_OK(ctx, clg_tensor_set_requires_grad(lg, true));
            REF_OK(ctx, clg_softmax_cross_entropy(ctx, lg, t, N, &y));
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            ce_ref(xv, t, N, C, dyv, &want_loss, want_dx);
            nan_expect(y, &want_loss, 1, rt, 0, k ? "cross-entropy forward" : "cross-entropy forward with NaN", dt);
            nan_expect(clg_tensor_grad(lg), want_dx, N * C, rt, rt, k ? "cross-entropy backward with NaN dy"
                                                                    : "cross-entropy backward with NaN", dt);
            clg_tensor_free(lg), clg_tensor_free(y), clg_tensor_free(dy);
        }
        /* mse and sum of squares: NaN in pred, in target; the gradient NaN only there */
        const int vs[1] = {5};
        const double pv[5] = {1, NAN, 3, 4, 5}, tv[5] = {0, 0, 0, NAN, 1};
        clg_tensor *pr = nan_tensor(ctx, dt, 1, vs, pv), *tg = nan_tensor(ctx, dt, 1, vs, tv), *y = NULL;
        REF_OK(ctx, clg_tensor_set_requires_grad(pr, true));
        REF_OK(ctx, clg_tensor_set_requires_grad(tg, true));
        REF_OK(ctx, clg_mse_loss(ctx, pr, tg, &y));
        REF_OK(ctx, clg_backward(ctx, y));
        double wl = 0, wp[5], wt[5];
        for (int i = 0; i < 5; i++) {
            wl += (pv[i] - tv[i]) * (pv[i] - tv[i]) / 5;
            wp[i] = 2.0 / 5 * (pv[i] - tv[i]);
            wt[i] = -wp[i];
        }
        nan_expect(y, &wl, 1, rt, 0, "mse forward with NaN", dt);
        nan_expect(clg_tensor_grad(pr), wp, 5, rt, 0, "mse backward (pred) with NaN", dt);
        nan_expect(clg_tensor_grad(tg), wt, 5, rt, 0, "mse backward (target) with NaN", dt);
        clg_tensor_free(y);
        clg_tensor_zero_grad(pr);
        REF_OK(ctx, clg_sum_of_squares(ctx, pr, &y));
        REF_OK(ctx, clg_backward(ctx, y));
        wl = 0;
        for (int i = 0; i < 5; i++)
            wl += pv[i] * pv[i], wp[i] = 2 * pv[i];
        nan_expect(y, &wl, 1, rt, 0, "sum_of_squares forward with NaN", dt);
        nan_expect(clg_tensor_grad(pr), wp, 5, rt, 0, "sum_of_squares backward with NaN", dt);
        clg_tensor_free(y), clg_tensor_free(pr), clg_tensor_free(tg);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_f32),
        cmocka_unit_test(test_forward_f64),
        cmocka_unit_test(test_sum_of_squares_exact),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_ce_backward_values),
        cmocka_unit_test(test_accumulate_f32),
        cmocka_unit_test(test_accumulate_f64),
        cmocka_unit_test(test_pytorch),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nan),
    };
    return REF_RUN_BOTH_STYLES("loss", tests);
}
