/* tests/nn/test_conv_transpose2d_module.c - the conv_transpose2d layer
 * (src/nn/conv_transpose2d_module.c): torch.nn.ConvTranspose2d's state names and shapes, its
 * default init (fan_in from the weight's second dimension, as torch), a forward and backward
 * equal to the bare op's, reset_parameters from the module generator, refused arguments; in
 * both kernel styles. The op itself: tests/ops/test_conv_transpose2d.c.
 */
#include "nn_test.h"

/* weight (in, out/groups, kh, kw) and bias (out) drawn exactly as the documented derivation:
 * U(-b, b) with b = 1/sqrt(out/groups * kh * kw), sub-seeds 2 seed and 2 seed + 1. */
static void test_state_and_init(void **state) {
    clg_context *ctx = *state;
    clg_conv_transpose2d_params p = clg_conv_transpose2d_default_params();
    p.groups = 2, p.stride_h = p.stride_w = 2, p.output_pad_h = 1;
    clg_module *up = NULL;
    REF_OK(ctx, clg_conv_transpose2d_module_create(ctx, "up", 4, 6, 3, 2, p, true, 7, &up));
    clg_named_tensor e[4];
    assert_int_equal(clg_module_state(up, e, 4), 2);
    assert_string_equal(e[0].name, "up.weight");
    assert_string_equal(e[1].name, "up.bias");
    assert_true(e[0].trainable && e[1].trainable);
    const int *ws = clg_tensor_shape(e[0].tensor);
    assert_int_equal(clg_tensor_ndim(e[0].tensor), 4);
    assert_true(ws[0] == 4 && ws[1] == 3 && ws[2] == 3 && ws[3] == 2);
    assert_int_equal(clg_tensor_shape(e[1].tensor)[0], 6);
    const double bound = 1 / sqrt(3.0 * 3 * 2);
    for (int i = 0; i < 2; i++) {
        const clg_tensor *t = e[i].tensor;
        clg_tensor *want =
            ref_rand(ctx, CLG_F32, clg_tensor_ndim(t), clg_tensor_shape(t), 14 + i, -bound, bound);
        double *g = ref_to_host_f64(t), *w = ref_to_host_f64(want);
        ref_assert_close(g, w, clg_tensor_numel(t), 0, 0, i ? "up.bias init" : "up.weight init");
        free(g), free(w);
        clg_tensor_free(want);
    }

    /* forward and backward: the bare op's, bit for bit */
    const int xs[4] = {2, 4, 3, 5};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 3, -1, 1), *y = NULL, *want = NULL;
    REF_OK(ctx, clg_module_forward(ctx, up, x, &y));
    REF_OK(ctx, clg_conv_transpose2d(ctx, x, e[0].tensor, e[1].tensor, p, &want));
    assert_int_equal(clg_tensor_ndim(y), 4);
    const int ys[4] = {2, 6, 8, 10}; /* (3-1)*2 + 2 + 1 + 1, (5-1)*2 + 1 + 1 */
    for (int d = 0; d < 4; d++)
        assert_int_equal(clg_tensor_shape(y)[d], ys[d]);
    double *gy = ref_to_host_f64(y), *wy = ref_to_host_f64(want);
    ref_assert_close(gy, wy, clg_tensor_numel(y), 0, 0, "module forward vs clg_conv_transpose2d");
    free(gy), free(wy);
    clg_tensor *loss = NULL;
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    assert_non_null(clg_tensor_grad(e[0].tensor));
    assert_non_null(clg_tensor_grad(e[1].tensor));
    clg_tensor_free(loss), clg_tensor_free(y), clg_tensor_free(want), clg_tensor_free(x);
    clg_module_free(up);
}

/* Without a bias, unnamed in a sequential: "0.weight" only. reset_parameters redraws within
 * the same bound from the model's generator, reproducibly. */
static void test_sequential_and_reset(void **state) {
    clg_context *ctx = *state;
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq,
        clg_conv_transpose2d_module_create(ctx, NULL, 3, 2, 4, 4, clg_conv_transpose2d_default_params(),
                                           false, 1, &m),
        &m);
    clg_named_tensor e[2];
    assert_int_equal(clg_module_state(seq, e, 2), 1);
    assert_string_equal(e[0].name, "0.weight");
    const double bound = 1 / sqrt(2.0 * 4 * 4);
    double *first = NULL;
    for (int round = 0; round < 2; round++) {
        clg_module_manual_seed(seq, 42);
        REF_OK(ctx, clg_module_reset_parameters(seq));
        double *w = ref_to_host_f64(e[0].tensor);
        for (size_t i = 0; i < clg_tensor_numel(e[0].tensor); i++)
            assert_true(fabs(w[i]) <= bound);
        if (round == 0) {
            first = w;
            continue;
        }
        ref_assert_close(w, first, clg_tensor_numel(e[0].tensor), 0, 0, "reset with the same seed");
        free(w);
    }
    free(first);
    clg_module_free(seq);
}

static void test_refused(void **state) {
    clg_context *ctx = *state;
    clg_conv_transpose2d_params p = clg_conv_transpose2d_default_params();
    clg_module *m = (clg_module *)&m; /* must become NULL */
    assert_int_equal(clg_conv_transpose2d_module_create(ctx, "u", 0, 4, 3, 3, p, true, 1, &m),
                     CLG_INVALID_ARGUMENT);
    assert_null(m);
    p.groups = 3;
    assert_int_equal(clg_conv_transpose2d_module_create(ctx, "u", 6, 4, 3, 3, p, true, 1, &m),
                     CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "groups 3"));
    p = clg_conv_transpose2d_default_params(), p.output_pad_w = 1; /* = stride = dilation */
    assert_int_equal(clg_conv_transpose2d_module_create(ctx, "u", 4, 4, 3, 3, p, true, 1, &m),
                     CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "output padding"));
    p = clg_conv_transpose2d_default_params(), p.stride_h = 0;
    assert_int_equal(clg_conv_transpose2d_module_create(ctx, "u", 4, 4, 3, 3, p, true, 1, &m),
                     CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_conv_transpose2d_module_create(ctx, "u", 4, 4, 3, 3, p, true, 1, NULL),
                     CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_conv_transpose2d_module_create(NULL, "u", 4, 4, 3, 3, p, true, 1, &m),
                     CLG_INVALID_ARGUMENT);
    p = clg_conv_transpose2d_default_params();
    REF_OK(ctx, clg_conv_transpose2d_module_create(ctx, "u", 4, 4, 3, 3, p, true, 1, &m));
    clg_module_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_and_init),
        cmocka_unit_test(test_sequential_and_reset),
        cmocka_unit_test(test_refused),
    };
    return REF_RUN_BOTH_STYLES("conv_transpose2d module", tests);
}
