/* tests/nn/test_init.c - torch.nn.init's functions of src/nn/nn_init.c: calculate_gain, the
 * bounds and spreads of kaiming_*, xavier_*, uniform_ and normal_ (by PyTorch's formulas), the
 * constant fills, the module generator (one seed for a whole model, reproducible, the same
 * numbers in f32 and f64) and clg_module_reset_parameters. The draws are seeded, so each check is
 * deterministic; its margin (6 standard errors of the sample statistic) only says the formula is right, not
 * luck.
 */
#include "nn_test.h"

/* Sample mean and variance of t. */
static void moments(const clg_tensor *t, double *mean, double *var, double *lo, double *hi) {
    const size_t n = clg_tensor_numel(t);
    double *v = ref_to_host_f64(t), s = 0, ss = 0;
    *lo = INFINITY, *hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        s += v[i];
        *lo = fmin(*lo, v[i]);
        *hi = fmax(*hi, v[i]);
    }
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (v[i] - *mean) * (v[i] - *mean);
    *var = ss / (double)(n - 1);
    free(v);
}

/* U(-b, b): every value inside, variance b^2/3 within 6 standard errors (the sample variance of
 * a uniform has standard error b^2 sqrt(4 / (45 n))), mean 0 within 6 b / sqrt(3 n). */
static void check_uniform(const clg_tensor *t, double b, const char *what) {
    const double n = (double)clg_tensor_numel(t);
    double mean, var, lo, hi;
    moments(t, &mean, &var, &lo, &hi);
    if (lo < -b || hi > b) fail_msg("%s: values in [%g, %g], bound %g", what, lo, hi, b);
    if (fabs(var - b * b / 3) > 6 * b * b * sqrt(4 / (45 * n)) || fabs(mean) > 6 * b / sqrt(3 * n))
        fail_msg("%s: mean %g, variance %g, want 0 and %g", what, mean, var, b * b / 3);
}

/* N(mu, s): variance s^2 within 6 standard errors (s^2 sqrt(2 / (n - 1))), mean within 6 s / sqrt(n). */
static void check_normal(const clg_tensor *t, double mu, double s, const char *what) {
    const double n = (double)clg_tensor_numel(t);
    double mean, var, lo, hi;
    moments(t, &mean, &var, &lo, &hi);
    if (fabs(var - s * s) > 6 * s * s * sqrt(2 / (n - 1)) || fabs(mean - mu) > 6 * s / sqrt(n))
        fail_msg("%s: mean %g, variance %g, want %g and %g", what, mean, var, mu, s * s);
}

static void test_calculate_gain(void **state) {
    (void)state;
    assert_true(clg_init_calculate_gain(CLG_NONLINEARITY_LINEAR, 0) == 1.0);
    assert_true(clg_init_calculate_gain(CLG_NONLINEARITY_SIGMOID, 0) == 1.0);
    assert_true(clg_init_calculate_gain(CLG_NONLINEARITY_TANH, 0) == 5.0 / 3.0);
    assert_true(clg_init_calculate_gain(CLG_NONLINEARITY_RELU, 0) == sqrt(2.0));
    assert_true(clg_init_calculate_gain(CLG_NONLINEARITY_LEAKY_RELU, 0.01) == sqrt(2.0 / (1 + 0.01 * 0.01)));
    assert_true(clg_init_calculate_gain(CLG_NONLINEARITY_LEAKY_RELU, sqrt(5.0)) == sqrt(1.0 / 3.0));
    assert_true(clg_init_calculate_gain(CLG_NONLINEARITY_SELU, 0) == 0.75);
    assert_true(isnan(clg_init_calculate_gain((clg_nonlinearity)99, 0)));
}

/* A conv weight (64, 32, 3, 3): fan_in 288, fan_out 576, 18,432 draws. */
static void test_fan_based(void **state) {
    clg_context *ctx = *state;
    clg_module *gen = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &gen));
    clg_module_manual_seed(gen, 11);
    const int ws[4] = {64, 32, 3, 3};
    clg_tensor *w = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 4, ws, &w));
    const double fi = 288, fo = 576;
    REF_OK(ctx, clg_init_kaiming_uniform_(gen, w, 0, CLG_FAN_IN, CLG_NONLINEARITY_LEAKY_RELU));
    check_uniform(w, sqrt(3.0) * sqrt(2.0) / sqrt(fi), "kaiming_uniform_ defaults");
    /* PyTorch's default conv init is kaiming_uniform_(a = sqrt(5)): bound 1 / sqrt(fan_in). */
    REF_OK(ctx, clg_init_kaiming_uniform_(gen, w, sqrt(5.0), CLG_FAN_IN, CLG_NONLINEARITY_LEAKY_RELU));
    check_uniform(w, 1 / sqrt(fi), "kaiming_uniform_ a = sqrt(5)");
    REF_OK(ctx, clg_init_kaiming_normal_(gen, w, 0, CLG_FAN_OUT, CLG_NONLINEARITY_RELU));
    check_normal(w, 0, sqrt(2.0 / fo), "kaiming_normal_ fan_out relu");
    REF_OK(ctx, clg_init_kaiming_normal_(gen, w, 0, CLG_FAN_IN, CLG_NONLINEARITY_TANH));
    check_normal(w, 0, 5.0 / 3.0 / sqrt(fi), "kaiming_normal_ fan_in tanh");
    REF_OK(ctx, clg_init_xavier_uniform_(gen, w, 2.0));
    check_uniform(w, 2.0 * sqrt(6.0 / (fi + fo)), "xavier_uniform_ gain 2");
    REF_OK(ctx, clg_init_xavier_normal_(gen, w, 1.0));
    check_normal(w, 0, sqrt(2.0 / (fi + fo)), "xavier_normal_");
    REF_OK(ctx, clg_init_uniform_(gen, w, -0.5, 1.5));
    double mean, var, lo, hi;
    moments(w, &mean, &var, &lo, &hi);
    assert_true(lo >= -0.5 && hi <= 1.5 && fabs(mean - 0.5) < 6 * 1 / sqrt(3 * 18432.0));
    REF_OK(ctx, clg_init_normal_(gen, w, 3.0, 0.25));
    check_normal(w, 3.0, 0.25, "normal_");
    /* Constants. */
    REF_OK(ctx, clg_init_constant_(w, 0.125));
    moments(w, &mean, &var, &lo, &hi);
    assert_true(lo == 0.125 && hi == 0.125);
    REF_OK(ctx, clg_init_ones_(w));
    moments(w, &mean, &var, &lo, &hi);
    assert_true(lo == 1 && hi == 1);
    REF_OK(ctx, clg_init_zeros_(w));
    moments(w, &mean, &var, &lo, &hi);
    assert_true(lo == 0 && hi == 0);
    /* A linear weight (out, in): fans are in and out. */
    const int ls[2] = {100, 300};
    clg_tensor *l = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 2, ls, &l));
    REF_OK(ctx, clg_init_xavier_uniform_(gen, l, 1.0));
    check_uniform(l, sqrt(6.0 / 400), "xavier_uniform_ linear");
    clg_tensor_free(l);
    clg_tensor_free(w);
    clg_module_free(gen);
}

/* The generator: one seed, the same numbers again after manual_seed, new numbers per call,
 * the same numbers in f32 and f64 (to f32 rounding). */
static void test_generator(void **state) {
    clg_context *ctx = *state;
    clg_module *gen = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &gen));
    const int s[2] = {8, 16};
    clg_tensor *a = NULL, *b = NULL, *c = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, s, &a));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, s, &b));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 2, s, &c));
    clg_module_manual_seed(gen, 5);
    REF_OK(ctx, clg_init_normal_(gen, a, 0, 1));
    REF_OK(ctx, clg_init_normal_(gen, b, 0, 1));
    double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b);
    assert_true(memcmp(ah, bh, 128 * sizeof *ah) != 0); /* the stream advanced */
    clg_module_manual_seed(gen, 5);
    REF_OK(ctx, clg_init_normal_(gen, c, 0, 1));
    assert_tensor_close(c, ah, 128, 6e-8, 1e-7, "same seed, f64 vs f32");
    REF_OK(ctx, clg_init_normal_(gen, b, 0, 1));
    free(ah);
    ah = ref_to_host_f64(b);
    ref_assert_close(ah, bh, 128, 0, 0, "second draw after manual_seed");
    free(ah), free(bh);

    /* Errors: fans need 2-D or more; gen is required; bad bounds. */
    const int one = 4;
    clg_tensor *v = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &one, &v));
    REF_EXPECT(ctx, clg_init_kaiming_normal_(gen, v, 0, CLG_FAN_IN, CLG_NONLINEARITY_RELU),
               CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "2 or more dimensions"));
    REF_EXPECT(ctx, clg_init_xavier_uniform_(gen, v, 1), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_init_uniform_(NULL, v, 0, 1), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_init_uniform_(gen, v, 1, 0), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_init_normal_(gen, v, 0, -1), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_init_kaiming_uniform_(gen, a, 0, (clg_fan_mode)7, CLG_NONLINEARITY_RELU),
               CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_init_zeros_(NULL), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg_init_uniform_(gen, v, 0, 1)); /* 1-D is fine without fans */
    clg_tensor_free(v), clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c);
    clg_module_free(gen);
}

/* reset_parameters from one seed: two models built with different per-layer seeds become
 * the same model; conv and linear get PyTorch's default init (bound 1 / sqrt(fan_in) for
 * weight and bias), batch norm 1 / 0 and fresh running statistics. */
static clg_module *tiny(clg_context *ctx, uint64_t seed) {
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv", 3, 8, 3, 3, pad(1), true, seed, &m), &m);
    add(ctx, seq, clg_batch_norm2d_module_create(ctx, "bn", 8, 1e-5, 0.1, &m), &m);
    add(ctx, seq, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc", 8 * 4 * 4, 5, true, seed + 1, &m), &m);
    return seq;
}

static void test_reset_parameters(void **state) {
    clg_context *ctx = *state;
    clg_module *a = tiny(ctx, 1), *b = tiny(ctx, 2);
    /* Buffers moved by a training forward, to see them reset. */
    const int xs[4] = {2, 3, 4, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 3, -1, 1), *y = NULL;
    REF_OK(ctx, clg_module_forward(ctx, a, x, &y));
    clg_tensor_free(y);
    clg_tensor_free(x);
    clg_module_manual_seed(a, 9);
    clg_module_manual_seed(b, 9);
    REF_OK(ctx, clg_module_reset_parameters(a));
    REF_OK(ctx, clg_module_reset_parameters(b));
    clg_named_tensor ea[16], eb[16];
    const size_t n = clg_module_state(a, ea, 16);
    assert_int_equal(n, 9);
    assert_int_equal(clg_module_state(b, eb, 16), n);
    for (size_t i = 0; i < n; i++) {
        double *va = ref_to_host_f64(ea[i].tensor);
        assert_tensor_close(eb[i].tensor, va, clg_tensor_numel(ea[i].tensor), 0, 0, ea[i].name);
        free(va);
    }
    double mean, var, lo, hi;
    moments(clg_module_find_tensor(a, "conv.weight"), &mean, &var, &lo, &hi);
    assert_true(lo >= -1 / sqrt(27.0) && hi <= 1 / sqrt(27.0));
    check_uniform(clg_module_find_tensor(a, "fc.weight"), 1 / sqrt(128.0), "fc.weight after reset");
    moments(clg_module_find_tensor(a, "fc.bias"), &mean, &var, &lo, &hi);
    assert_true(lo >= -1 / sqrt(128.0) && hi <= 1 / sqrt(128.0) && lo < hi);
    static const char *const bn[5] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                                      "bn.num_batches_tracked"};
    static const double want[5] = {1, 0, 0, 1, 0};
    for (int i = 0; i < 5; i++) {
        moments(clg_module_find_tensor(a, bn[i]), &mean, &var, &lo, &hi);
        if (lo != want[i] || hi != want[i]) fail_msg("%s after reset: [%g, %g]", bn[i], lo, hi);
    }
    /* Another seed, another model. */
    clg_module_manual_seed(b, 10);
    REF_OK(ctx, clg_module_reset_parameters(b));
    double *va = ref_to_host_f64(ea[0].tensor), *vb = ref_to_host_f64(eb[0].tensor);
    assert_true(memcmp(va, vb, clg_tensor_numel(ea[0].tensor) * sizeof *va) != 0);
    free(va), free(vb);
    assert_int_equal(clg_module_reset_parameters(NULL), CLG_INVALID_ARGUMENT);
    clg_module_free(a);
    clg_module_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calculate_gain),
        cmocka_unit_test(test_fan_based),
        cmocka_unit_test(test_generator),
        cmocka_unit_test(test_reset_parameters),
    };
    return cmocka_run_group_tests_name("init", tests, ref_group_setup, ref_group_teardown);
}
