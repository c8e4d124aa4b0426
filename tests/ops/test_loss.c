/* tests/ops/test_loss.c - softmax_cross_entropy, nll_loss, cross_entropy, mse_loss,
 * sum_of_squares (src/ops/loss.c, cl/ops/loss.cl): forward against host loops in f32 and f64
 * (sizes past one work-group, logits large enough to overflow a naive exp; for the class
 * losses every reduction, with and without class weights, label smoothing 0, 0.1 and 1,
 * ignore_index outside and inside the classes), f64 finite-difference gradients, the beta
 * contract, PyTorch's values (1e-10 in f64; tests/fixtures/ops.safetensors and
 * softmax.safetensors), determinism, bad input, NaN and infinities as PyTorch propagates them.
 */
#include <float.h>
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

/* ---------------------------------------------------------------- nll_loss and cross_entropy */

/* A class loss as PyTorch composes it (torch 1.13): logp = log_softmax(x) for cross-entropy (x
 * itself for nll_loss); over the samples not ignored l_i = (1 - ls) (-w[t] logp[i, t]) +
 * ls / C sum_j -w[j] logp[i, j], then the reduction (the mean divides by sum(w[t]) over them);
 * backward g = d l / d logp, through log_softmax's backward dx = g - exp(logp) sum(g) for
 * cross-entropy. y gets 1 value (n for none), dy holds as many; dx (n, c). IEEE arithmetic
 * throughout, so NaN lands where PyTorch puts it. */
typedef struct class_case {
    bool logits;     /* cross_entropy (else nll_loss) */
    const double *w; /* (c) or NULL */
    double ls;       /* label smoothing (cross-entropy only) */
    clg_loss_reduction red;
    int32_t ignore;
} class_case;

static void ref_class_loss(const class_case *k, const double *x, const int32_t *t, int n, int c,
                           const double *dy, double *y, double *dx) {
    double *logp = malloc((size_t)n * c * sizeof *logp), *l = malloc((size_t)n * sizeof *l);
    assert_non_null(logp), assert_non_null(l);
    for (int r = 0; r < n; r++) {
        const double *row = x + (size_t)r * c;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < c; j++)
            m = row[j] > m ? row[j] : m;
        for (int j = 0; j < c; j++)
            s += exp(row[j] - m);
        for (int j = 0; j < c; j++)
            logp[(size_t)r * c + j] = k->logits ? row[j] - m - log(s) : row[j];
    }
    double W = 0, total = 0;
    for (int r = 0; r < n; r++) {
        l[r] = 0;
        if (t[r] == k->ignore) continue;
        const double wt = k->w ? k->w[t[r]] : 1, *lp = logp + (size_t)r * c;
        l[r] = -(wt * lp[t[r]]);
        if (k->ls != 0) {
            double smooth = 0;
            for (int j = 0; j < c; j++)
                smooth += -(k->w ? k->w[j] : 1) * lp[j];
            l[r] = (1 - k->ls) * l[r] + k->ls / c * smooth;
        }
        W += wt;
        total += l[r];
    }
    if (k->red == CLG_LOSS_NONE)
        memcpy(y, l, (size_t)n * sizeof *l);
    else
        y[0] = k->red == CLG_LOSS_MEAN ? total / W : total;
    for (int r = 0; r < n; r++) {
        double *g = dx + (size_t)r * c, sum = 0;
        const double d = (k->red == CLG_LOSS_NONE ? dy[r] : dy[0]) / (k->red == CLG_LOSS_MEAN ? W : 1);
        const bool kept = t[r] != k->ignore;
        for (int j = 0; j < c; j++) {
            g[j] = 0;
            if (kept && j == t[r]) g[j] = -d * (1 - k->ls) * (k->w ? k->w[j] : 1);
            if (kept && k->ls != 0) g[j] += -d * k->ls / c * (k->w ? k->w[j] : 1);
            sum += g[j];
        }
        if (k->logits)
            for (int j = 0; j < c; j++)
                g[j] -= exp(logp[(size_t)r * c + j]) * sum;
    }
    free(logp), free(l);
}

static clg_status run_class_loss(clg_context *ctx, const class_case *k, const clg_tensor *x, const int32_t *t,
                                 size_t n, const clg_tensor *w, clg_tensor **y) {
    if (k->logits) {
        clg_cross_entropy_params p = clg_cross_entropy_default_params();
        p.weight = w, p.label_smoothing = k->ls, p.reduction = k->red, p.ignore_index = k->ignore;
        return clg_cross_entropy(ctx, x, t, n, &p, y);
    }
    clg_nll_loss_params p = clg_nll_loss_default_params();
    p.weight = w, p.reduction = k->red, p.ignore_index = k->ignore;
    return clg_nll_loss(ctx, x, t, n, &p, y);
}

static const char *red_name(clg_loss_reduction r) {
    return r == CLG_LOSS_MEAN ? "mean" : r == CLG_LOSS_SUM ? "sum" : "none";
}

/* Loss and gradient against the reference for one case: x in [-3, 3], weights in [0.5, 1.5],
 * dy 1.5 (mean, sum) or random per sample (none). The f32 bound: each sample's terms are logs
 * and differences of values up to xmax + log(c) in size (times the weights), their rounding
 * grows with the softmax's c and the reduction's n; the gradient's with c. */
static void check_class_case(clg_context *ctx, clg_dtype dt, const class_case *k0, int n, int c, int32_t *t) {
    const int shape[2] = {n, c}, wshape[1] = {c}, nshape[1] = {n}, one[1] = {1};
    const bool none = k0->red == CLG_LOSS_NONE;
    clg_tensor *x = ref_rand(ctx, dt, 2, shape, (uint64_t)(n * 31 + c), -3, 3), *y = NULL, *wt = NULL;
    clg_tensor *dy =
        none ? ref_rand(ctx, dt, 1, nshape, (uint64_t)n + 9, -1, 1) : nan_filled(ctx, dt, 1, one, 1.5);
    double *wh = NULL;
    class_case k = *k0;
    if (k0->w) {
        wt = ref_rand(ctx, dt, 1, wshape, (uint64_t)c + 77, 0.5, 1.5);
        k.w = wh = ref_to_host_f64(wt);
    }
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, run_class_loss(ctx, &k, x, t, (size_t)n, wt, &y));
    clg_tensor_free(wt); /* the graph holds its own reference */
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    double *xh = ref_to_host_f64(x), *dyh = ref_to_host_f64(dy),
           *want_dx = malloc((size_t)n * c * sizeof(double));
    double *want_y = malloc((size_t)n * sizeof(double));
    ref_class_loss(&k, xh, t, n, c, dyh, want_y, want_dx);
    double kept = 0, wmin = 1, wmax = 1;
    for (int j = 0; k.w && j < c; j++)
        wmin = fmin(wmin, k.w[j]), wmax = fmax(wmax, k.w[j]);
    for (int r = 0; r < n; r++)
        kept += t[r] != k.ignore;
    const double eps = dt == CLG_F64 ? DBL_EPSILON : FLT_EPSILON, tol = eps * (2.0 * (n + c) + 32);
    const double term = wmax * (3 + log(c) + 1); /* one sample's inputs */
    const double y_scale = none ? term : k.red == CLG_LOSS_SUM ? term * kept : term * wmax / wmin;
    const double d_scale = (none ? 1 : 1.5) / (k.red == CLG_LOSS_MEAN ? kept * wmin : 1);
    char what[160];
    snprintf(what, sizeof what, "%s %s %s%s ls %g ignore %d (%d, %d)",
             k.logits ? "cross_entropy" : "nll_loss", clg_dtype_name(dt), red_name(k.red),
             k.w ? " weighted" : "", k.ls, (int)k.ignore, n, c);
    assert_int_equal(clg_tensor_numel(y), none ? (size_t)n : 1);
    double *yh = ref_to_host_f64(y), *gh = ref_to_host_f64(clg_tensor_grad(x));
    ref_assert_close(yh, want_y, none ? (size_t)n : 1, tol, tol * y_scale, what);
    strncat(what, " dlogits", sizeof what - strlen(what) - 1);
    ref_assert_close(gh, want_dx, (size_t)n * c, tol, tol * d_scale * 2 * wmax, what);
    free(xh), free(dyh), free(want_dx), free(want_y), free(yh), free(gh), free(wh);
    clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(x);
}

static void check_class_losses(clg_context *ctx, clg_dtype dt) {
    static const double any_w[1] = {0}; /* marks "weighted": the values come from the device */
    const int sizes[2][2] = {{7, 5}, {300, 10}};
    for (int s = 0; s < 2; s++) {
        const int n = sizes[s][0], c = sizes[s][1];
        int32_t *t = make_targets(n, c, (uint64_t)n + 1);
        /* the small batch ignores with -100, the large one with class 3 (both kinds occur) */
        const int32_t ignore = s ? 3 : -100;
        if (!s) t[2] = t[5] = -100;
        for (int red = 0; red < 3; red++)
            for (int w = 0; w < 2; w++) {
                class_case k = {false, w ? any_w : NULL, 0, (clg_loss_reduction)red, ignore};
                check_class_case(ctx, dt, &k, n, c, t);
                const double smoothing[3] = {0, 0.1, 1};
                for (int l = 0; l < 3; l++) {
                    k.logits = true, k.ls = smoothing[l];
                    check_class_case(ctx, dt, &k, n, c, t);
                }
            }
        free(t);
    }
}

static void test_class_losses_f32(void **state) { check_class_losses(*state, CLG_F32); }
static void test_class_losses_f64(void **state) { check_class_losses(*state, CLG_F64); }

/* The defaults are torch's: no weight, no smoothing, mean, ignore_index -100; p NULL means
 * them; and cross_entropy's defaults on targets that are all classes give
 * softmax_cross_entropy's bits. */
static void test_class_defaults(void **state) {
    clg_context *ctx = *state;
    const clg_cross_entropy_params ce = clg_cross_entropy_default_params();
    const clg_nll_loss_params nl = clg_nll_loss_default_params();
    assert_null(ce.weight), assert_null(nl.weight);
    assert_true(ce.label_smoothing == 0);
    assert_int_equal(ce.reduction, CLG_LOSS_MEAN), assert_int_equal(nl.reduction, CLG_LOSS_MEAN);
    assert_int_equal(ce.ignore_index, -100), assert_int_equal(nl.ignore_index, -100);
    const int shape[2] = {9, 4};
    const int32_t t[9] = {0, 1, 2, 3, 3, 2, 1, 0, 1};
    for (int d = 0; d < 2; d++) {
        clg_tensor *x = ref_rand(ctx, d ? CLG_F64 : CLG_F32, 2, shape, 5, -2, 2), *a = NULL, *b = NULL,
                   *c = NULL;
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, clg_softmax_cross_entropy(ctx, x, t, 9, &a));
        REF_OK(ctx, clg_backward(ctx, a));
        double *ga = ref_to_host_f64(clg_tensor_grad(x));
        clg_tensor_zero_grad(x);
        REF_OK(ctx, clg_cross_entropy(ctx, x, t, 9, NULL, &b));
        REF_OK(ctx, clg_backward(ctx, b));
        double *gb = ref_to_host_f64(clg_tensor_grad(x));
        const double va = item(ctx, a), vb = item(ctx, b);
        ref_assert_close(&vb, &va, 1, 0, 0, "cross_entropy(NULL params) vs softmax_cross_entropy");
        ref_assert_close(gb, ga, 36, 0, 0, "their gradients");
        int32_t t2[9];
        memcpy(t2, t, sizeof t2);
        t2[4] = -100; /* ignored by default */
        REF_OK(ctx, clg_nll_loss(ctx, x, t2, 9, NULL, &c));
        double *xh = ref_to_host_f64(x), want;
        const class_case k = {false, NULL, 0, CLG_LOSS_MEAN, -100};
        double dx[36], one = 1;
        ref_class_loss(&k, xh, t2, 9, 4, &one, &want, dx);
        const double got = item(ctx, c);
        ref_assert_close(&got, &want, 1, nan_rtol(clg_tensor_dtype(x)), 0, "nll_loss(NULL params)");
        free(ga), free(gb), free(xh);
        clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c), clg_tensor_free(x);
    }
}

typedef struct class_gc {
    class_case k;
    const int32_t *t;
    size_t n;
    const clg_tensor *w;
} class_gc;

static clg_status f_class(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n;
    const class_gc *g = u;
    return run_class_loss(ctx, &g->k, in[0], g->t, g->n, g->w, y);
}

/* The gradient to the logits / log-probabilities; the class weights are constants. */
static void test_class_gradcheck(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {5, 4}, wshape[1] = {4};
    const int32_t t[5] = {0, 3, -100, 2, 2};
    clg_tensor *x = ref_rand_f64(ctx, 2, shape, 81, -2, 2), *w = ref_rand_f64(ctx, 1, wshape, 82, 0.5, 1.5);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    for (int red = 0; red < 3; red++)
        for (int lg = 0; lg < 2; lg++)
            for (int wi = 0; wi < 2; wi++) {
                const class_gc g = {
                    {lg, NULL, lg ? 0.1 : 0, (clg_loss_reduction)red, -100}, t, 5, wi ? w : NULL};
                char what[96];
                snprintf(what, sizeof what, "%s %s%s", lg ? "cross_entropy ls 0.1" : "nll_loss",
                         red_name(g.k.red), wi ? " weighted" : "");
                ref_gradcheck(ctx, f_class, &x, 1, (void *)&g, 1e-6, 1e-7, what);
            }
    clg_tensor_free(w);
    clg_tensor_free(x);
}

static void test_class_accumulate(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {6, 4}, wshape[1] = {4};
    const int32_t t[6] = {3, 0, -100, 2, 3, 1};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        clg_tensor *x = ref_rand(ctx, dt, 2, shape, 91, -2, 2),
                   *w = ref_rand(ctx, dt, 1, wshape, 92, 0.5, 1.5);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        for (int red = 0; red < 3; red++)
            for (int lg = 0; lg < 2; lg++) {
                const class_case k = {lg, NULL, lg ? 0.1 : 0, (clg_loss_reduction)red, -100};
                clg_tensor *y = NULL;
                REF_OK(ctx, run_class_loss(ctx, &k, x, t, 6, w, &y));
                char what[96];
                snprintf(what, sizeof what, "%s %s %s", lg ? "cross_entropy" : "nll_loss", red_name(k.red),
                         clg_dtype_name(dt));
                ref_check_accumulate(ctx, y, &x, 1, what);
                clg_tensor_free(y);
            }
        clg_tensor_free(w), clg_tensor_free(x);
    }
}

/* tests/fixtures/softmax.safetensors (make_softmax_fixtures.py): torch's nll_loss and
 * cross_entropy with and without weights, label smoothing 0.1, each reduction, -100 ignored,
 * and an ignore_index inside the classes. */
static void check_fixture_case(clg_context *ctx, const clg_st_file *f, const char *name, const class_case *k,
                               const char *input, const char *targets) {
    clg_tensor *x = ref_fixture_tensor(ctx, f, input), *w = NULL, *y = NULL, *r = NULL;
    size_t nt = 0;
    double *td = ref_fixture_f64(f, targets, &nt);
    int32_t t[16];
    assert_true(nt <= 16);
    for (size_t i = 0; i < nt; i++)
        t[i] = (int32_t)td[i];
    if (k->w) w = ref_fixture_tensor(ctx, f, "loss.weight");
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, run_class_loss(ctx, k, x, t, nt, w, &y));
    if (k->red == CLG_LOSS_NONE) {
        r = ref_fixture_tensor(ctx, f, "loss.r");
        REF_OK(ctx, clg_backward_grad(ctx, y, r));
    } else {
        REF_OK(ctx, clg_backward(ctx, y));
    }
    char key[64];
    snprintf(key, sizeof key, "%s.y", name);
    ref_assert_fixture(f, key, y, 1e-10, 1e-12);
    snprintf(key, sizeof key, "%s.dx", name);
    ref_assert_fixture(f, key, clg_tensor_grad(x), 1e-10, 1e-12);
    free(td);
    clg_tensor_free(r), clg_tensor_free(y), clg_tensor_free(w), clg_tensor_free(x);
}

static void test_class_pytorch(void **state) {
    clg_context *ctx = *state;
    static const double any_w[1] = {0};
    clg_st_file f;
    ref_fixture_open(&f, "softmax.safetensors");
    for (int red = 0; red < 3; red++)
        for (int w = 0; w < 2; w++) {
            char name[64];
            const char *rn = red_name((clg_loss_reduction)red), *sw = w ? "_w" : "";
            class_case k = {false, w ? any_w : NULL, 0, (clg_loss_reduction)red, -100};
            snprintf(name, sizeof name, "nll.%s%s", rn, sw);
            check_fixture_case(ctx, &f, name, &k, "loss.nll_x", "loss.targets");
            k.logits = true;
            snprintf(name, sizeof name, "ce.%s%s", rn, sw);
            check_fixture_case(ctx, &f, name, &k, "loss.logits", "loss.targets");
            k.ls = 0.1;
            snprintf(name, sizeof name, "ce.%s%s_ls", rn, sw);
            check_fixture_case(ctx, &f, name, &k, "loss.logits", "loss.targets");
        }
    const class_case k = {true, any_w, 0.1, CLG_LOSS_MEAN, 2};
    check_fixture_case(ctx, &f, "ce.mean_w_ls_ignore2", &k, "loss.logits", "loss.targets_ignore2");
    clg_st_file_free(&f);
}

static void test_class_errors(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {3, 4}, w4[1] = {4}, w3[1] = {3}, s3[3] = {3, 4, 1};
    clg_tensor *x = ref_rand_f64(ctx, 2, shape, 41, -1, 1), *x3 = ref_rand_f64(ctx, 3, s3, 44, -1, 1);
    clg_tensor *wbad = ref_rand_f64(ctx, 1, w3, 45, 0.5, 1), *w32 = ref_rand(ctx, CLG_F32, 1, w4, 46, 0.5, 1);
    clg_tensor *y = (clg_tensor *)&y;
    clg_cross_entropy_params p = clg_cross_entropy_default_params();
    clg_nll_loss_params q = clg_nll_loss_default_params();
    const int32_t ok[3] = {0, 3, -100}, bad[3] = {0, 4, 1}, neg[3] = {0, 1, -2};

    REF_EXPECT(ctx, clg_cross_entropy(ctx, x, bad, 3, &p, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "target 1 is 4"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "ignore_index -100"));
    REF_EXPECT(ctx, clg_nll_loss(ctx, x, neg, 3, &q, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "target 2 is -2"));
    q.ignore_index = -2; /* now it is ignored, and -100 is a bad target */
    REF_OK(ctx, clg_nll_loss(ctx, x, neg, 3, &q, &y));
    clg_tensor_free(y);
    REF_EXPECT(ctx, clg_nll_loss(ctx, x, ok, 3, &q, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "target 2 is -100"));
    q = clg_nll_loss_default_params();

    const double smoothing[3] = {-0.1, 1.5, NAN};
    for (int i = 0; i < 3; i++) {
        p.label_smoothing = smoothing[i];
        REF_EXPECT(ctx, clg_cross_entropy(ctx, x, ok, 3, &p, &y), CLG_INVALID_ARGUMENT);
        assert_null(y);
        assert_non_null(strstr(clg_context_errmsg(ctx), "label_smoothing"));
    }
    p = clg_cross_entropy_default_params();
    p.reduction = (clg_loss_reduction)7;
    REF_EXPECT(ctx, clg_cross_entropy(ctx, x, ok, 3, &p, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "reduction 7"));
    p = clg_cross_entropy_default_params();
    p.weight = wbad;
    REF_EXPECT(ctx, clg_cross_entropy(ctx, x, ok, 3, &p, &y), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "weight (3)"));
    q.weight = w32;
    REF_EXPECT(ctx, clg_nll_loss(ctx, x, ok, 3, &q, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "f32"));
    q = clg_nll_loss_default_params();
    p = clg_cross_entropy_default_params();
    REF_EXPECT(ctx, clg_cross_entropy(ctx, x, ok, 2, &p, &y), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(3, 4)"));
    REF_EXPECT(ctx, clg_cross_entropy(ctx, x, NULL, 3, &p, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_cross_entropy(ctx, x3, ok, 3, &p, &y), CLG_SHAPE_MISMATCH);
    REF_EXPECT(ctx, clg_nll_loss(ctx, NULL, ok, 3, &q, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_nll_loss(ctx, x, ok, 3, &q, NULL), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_cross_entropy(NULL, x, ok, 3, &p, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);

    /* Still usable: a valid call gives the host value. */
    REF_OK(ctx, clg_cross_entropy(ctx, x, ok, 3, NULL, &y));
    double *xh = ref_to_host_f64(x), want, dx[12], one = 1;
    const class_case k = {true, NULL, 0, CLG_LOSS_MEAN, -100};
    ref_class_loss(&k, xh, ok, 3, 4, &one, &want, dx);
    const double got = item(ctx, y);
    ref_assert_close(&got, &want, 1, 1e-13, 0, "cross_entropy after errors");
    free(xh);
    clg_tensor_free(y), clg_tensor_free(x), clg_tensor_free(x3), clg_tensor_free(wbad), clg_tensor_free(w32);
}

/* NaN and infinities as PyTorch propagates them (the reference composes as torch does; the
 * positions were checked against torch 1.13): rows of 3 classes with NaN (kept), NaN
 * (ignored: its loss is 0 but the gradient NaN, exp(NaN) * 0), +inf (kept), -inf off the
 * target (a finite gradient; the loss finite without smoothing, inf with), -inf at the target
 * (inf loss, finite gradient), plain. Then plain logits with a NaN upstream gradient: with
 * mean every kept row is NaN and an ignored one 0; with none only that row. nll_loss: a NaN
 * off the target leaves loss and gradient alone. */
static void test_class_nan(void **state) {
    /* rows: 0 NaN, 1 NaN ignored, 2 +inf, 3 -inf off the target, 4 -inf at it, 5 plain */
    clg_context *ctx = *state;
    enum { N = 6, C = 3 };
    const int ls2[2] = {N, C}, ns[1] = {N}, one[1] = {1}, ws[1] = {C};
    const int32_t t[N] = {0, -1, 1, 2, 0, 2}; /* ignore_index -1 */
    const double x[N * C] = {1,         NAN, 3, NAN,       1,   2, 1,   INFINITY, 3,
                             -INFINITY, 0.5, 2, -INFINITY, 0.5, 2, 0.1, 0.2,      0.3};
    double x_plain[N * C], dy_none[N];
    for (int i = 0; i < N * C; i++)
        x_plain[i] = 0.25 * i - 2;
    for (int r = 0; r < N; r++)
        dy_none[r] = 0.5 - 0.2 * r;
    const double w[C] = {0.5, 1.25, 1};
    for (int d = 0; d < 2; d++)
        for (int lg = 0; lg < 2; lg++)
            for (int wi = 0; wi < 2; wi++)
                for (int ls = 0; ls < 1 + lg; ls++)
                    for (int red = 0; red < 3; red++)
                        for (int nan_dy = 0; nan_dy < 2; nan_dy++) {
                            if (red == CLG_LOSS_SUM && nan_dy) continue; /* as mean */
                            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
                            const class_case k = {lg, wi ? w : NULL, ls ? 0.1 : 0, (clg_loss_reduction)red,
                                                  -1};
                            const bool none = red == CLG_LOSS_NONE;
                            const double *xv = nan_dy ? x_plain : x;
                            double dyv[N];
                            for (int r = 0; r < N; r++)
                                dyv[r] = none ? (nan_dy && r == 4 ? NAN : dy_none[r]) : nan_dy ? NAN : 1.5;
                            clg_tensor *xt = nan_tensor(ctx, dt, 2, ls2, xv),
                                       *wt = wi ? nan_tensor(ctx, dt, 1, ws, w) : NULL;
                            clg_tensor *dy = nan_tensor(ctx, dt, 1, none ? ns : one, dyv), *y = NULL;
                            REF_OK(ctx, clg_tensor_set_requires_grad(xt, true));
                            REF_OK(ctx, run_class_loss(ctx, &k, xt, t, N, wt, &y));
                            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
                            double want_y[N], want_dx[N * C];
                            ref_class_loss(&k, xv, t, N, C, dyv, want_y, want_dx);
                            const double tol = 8 * nan_rtol(dt);
                            char what[128];
                            snprintf(what, sizeof what, "%s %s%s ls %g%s", lg ? "cross_entropy" : "nll_loss",
                                     red_name(k.red), wi ? " weighted" : "", k.ls,
                                     nan_dy ? " NaN dy" : " NaN/inf x");
                            nan_expect(y, want_y, none ? N : 1, tol, tol, what, dt);
                            strncat(what, " dx", sizeof what - strlen(what) - 1);
                            nan_expect(clg_tensor_grad(xt), want_dx, N * C, tol, tol, what, dt);
                            clg_tensor_free(xt), clg_tensor_free(wt), clg_tensor_free(dy), clg_tensor_free(y);
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
        cmocka_unit_test(test_class_losses_f32),
        cmocka_unit_test(test_class_losses_f64),
        cmocka_unit_test(test_class_defaults),
        cmocka_unit_test(test_class_gradcheck),
        cmocka_unit_test(test_class_accumulate),
        cmocka_unit_test(test_class_pytorch),
        cmocka_unit_test(test_class_errors),
        cmocka_unit_test(test_class_nan),
    };
    return REF_RUN_BOTH_STYLES("loss", tests);
}
