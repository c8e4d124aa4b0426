/* tests/nn/test_nn.c - the built-in layers of src/nn one by one: initialisation and state
 * names, forwards against the bare ops, batch-norm buffers and dropout masks, the state lists
 * of the training models lenet and cnn, dtype conversion and misuse, under both kernel styles.
 * Training through them: test_nn_training.c; the module core and custom modules: test_module.c.
 */
#include "nn_test.h"
#include "tensor/tensor.h" /* the graph node, to see which op a container recorded */

/* ---------------------------------------------------------------- initialisation */

static void check_uniform_init(clg_context *ctx, const clg_tensor *t, double bound, uint64_t seed,
                               const char *what) {
    /* The documented derivation: U(-bound, bound) from the f32 host generator with sub-seed
     * seed, compared exactly. */
    clg_tensor *want = ref_rand(ctx, CLG_F32, clg_tensor_ndim(t), clg_tensor_shape(t), seed, -bound, bound);
    double *w = ref_to_host_f64(want), *g = ref_to_host_f64(t);
    const size_t n = clg_tensor_numel(t);
    ref_assert_close(g, w, n, 0, 0, what);
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, g[i]);
        hi = fmax(hi, g[i]);
    }
    assert_true(lo >= -bound && hi <= bound);
    assert_true(clg_tensor_requires_grad(t));
    assert_int_equal(clg_tensor_dtype(t), CLG_F32);
    free(w);
    free(g);
    clg_tensor_free(want);
}

static void test_init_conv_linear(void **state) {
    clg_context *ctx = *state;
    clg_conv2d_params p = clg_conv2d_default_params();
    p.groups = 2;
    clg_module *conv = NULL, *lin = NULL, *nob = NULL;
    REF_OK(ctx, clg_conv2d_module_create(ctx, "conv1", 4, 6, 3, 2, p, true, 7, &conv));
    clg_named_tensor e[4];
    assert_int_equal(clg_module_state(conv, e, 4), 2);
    assert_string_equal(e[0].name, "conv1.weight");
    assert_string_equal(e[1].name, "conv1.bias");
    assert_true(e[0].trainable && e[1].trainable);
    const int *ws = clg_tensor_shape(e[0].tensor); // (K, C/groups, kh, kw)
    assert_int_equal(clg_tensor_ndim(e[0].tensor), 4);
    assert_true(ws[0] == 6 && ws[1] == 2 && ws[2] == 3 && ws[3] == 2);
    const double cb = 1 / sqrt(2.0 * 3 * 2); /* fan_in = in/groups * kh * kw */
    check_uniform_init(ctx, e[0].tensor, cb, 14, "conv1.weight init");
    check_uniform_init(ctx, e[1].tensor, cb, 15, "conv1.bias init");

    REF_OK(ctx, clg_linear_module_create(ctx, "fc", 50, 7, true, 3, &lin));
    assert_int_equal(clg_module_state(lin, e, 4), 2);
    assert_string_equal(e[0].name, "fc.weight");
    assert_string_equal(e[1].name, "fc.bias");
    assert_int_equal(clg_tensor_shape(e[0].tensor)[0], 7);
    assert_int_equal(clg_tensor_shape(e[0].tensor)[1], 50);
    check_uniform_init(ctx, e[0].tensor, 1 / sqrt(50.0), 6, "fc.weight init");
    check_uniform_init(ctx, e[1].tensor, 1 / sqrt(50.0), 7, "fc.bias init");

    /* The bound is reached in practice (not a narrower range) and the mean is near 0. */
    double *w = ref_to_host_f64(e[0].tensor), mx = 0, mean = 0;
    for (int i = 0; i < 350; i++) {
        mx = fmax(mx, fabs(w[i]));
        mean += w[i] / 350;
    }
    assert_true(mx > 0.95 / sqrt(50.0));
    assert_true(fabs(mean) < 0.02);
    free(w);

    /* Without a bias, and without a name: bare leaf names, as a bare torch layer. */
    REF_OK(ctx, clg_linear_module_create(ctx, NULL, 5, 2, false, 3, &nob));
    assert_int_equal(clg_module_state(nob, e, 4), 1);
    assert_string_equal(e[0].name, "weight");
    assert_int_equal(clg_module_state(nob, NULL, 0), 1);
    clg_tensor *params[4];
    assert_int_equal(clg_module_parameters(nob, params, 4), 1);
    assert_ptr_equal(params[0], e[0].tensor);

    clg_module_free(nob);
    clg_module_free(lin);
    clg_module_free(conv);
}

static void test_init_batch_norm(void **state) {
    clg_context *ctx = *state;
    clg_module *bn = NULL;
    REF_OK(ctx, clg_batch_norm2d_module_create(ctx, "bn1", 3, 1e-5, 0.1, &bn));
    static const char *names[5] = {"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                                   "bn1.num_batches_tracked"};
    static const double vals[5] = {1, 0, 0, 1, 0};
    clg_named_tensor e[8];
    assert_int_equal(clg_module_state(bn, e, 8), 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(e[i].name, names[i]);
        assert_int_equal(e[i].trainable, i < 2);
        assert_int_equal(clg_tensor_requires_grad(e[i].tensor), i < 2);
        const size_t n = i == 4 ? 1 : 3;
        double want[3] = {vals[i], vals[i], vals[i]};
        assert_tensor_close(e[i].tensor, want, n, 0, 0, names[i]);
    }
    clg_tensor *params[8];
    assert_int_equal(clg_module_parameters(bn, params, 8), 2);
    assert_ptr_equal(params[0], e[0].tensor);
    assert_ptr_equal(params[1], e[1].tensor);
    /* cap smaller than the count: the count is still the total, only cap are written. */
    params[1] = NULL;
    assert_int_equal(clg_module_parameters(bn, params, 1), 2);
    assert_null(params[1]);
    clg_module_free(bn);
}

/* ---------------------------------------------------------------- forwards */

static void test_forward_matches_ops(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {2, 3, 6, 6};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 51, -1, 1);
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_conv2d_module_create(ctx, "c", 3, 4, 3, 3, pad(1), true, 9, &m), &m);
    add(ctx, seq, clg_batch_norm2d_module_create(ctx, "bn", 4, 1e-5, 0.1, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, seq, clg_dropout_module_create(ctx, 0.5, 77, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc", 36, 5, true, 10, &m), &m);

    /* The same chain by hand, through the bare ops, with copies of the module's buffers. */
    clg_tensor *rm = NULL, *rv = NULL;
    REF_OK(ctx, clg_tensor_cast(entry(seq, "bn.running_mean"), CLG_F32, &rm));
    REF_OK(ctx, clg_tensor_cast(entry(seq, "bn.running_var"), CLG_F32, &rv));
    clg_tensor *t[7] = {0};
    REF_OK(ctx, clg_conv2d(ctx, x, entry(seq, "c.weight"), entry(seq, "c.bias"), pad(1), &t[0]));
    REF_OK(ctx, clg_batch_norm2d(ctx, t[0], entry(seq, "bn.weight"), entry(seq, "bn.bias"), rm, rv,
                                 clg_batch_norm2d_default_params(), &t[1]));
    REF_OK(ctx, clg_relu(ctx, t[1], &t[2]));
    REF_OK(ctx, clg_max_pool2d(ctx, t[2], pool(2), &t[3]));
    REF_OK(ctx, clg_flatten(ctx, t[3], &t[4]));
    REF_OK(ctx, clg_dropout(ctx, t[4], 0.5, true, 77, &t[5])); /* the first call uses seed + 0 */
    REF_OK(ctx, clg_linear(ctx, t[5], entry(seq, "fc.weight"), entry(seq, "fc.bias"), &t[6]));

    clg_tensor *y = NULL;
    REF_OK(ctx, clg_module_forward(ctx, seq, x, &y));
    assert_int_equal(clg_tensor_ndim(y), 2);
    assert_int_equal(clg_tensor_shape(y)[0], 2);
    assert_int_equal(clg_tensor_shape(y)[1], 5);
    double *want = ref_to_host_f64(t[6]);
    assert_tensor_close(y, want, 10, 1e-6, 1e-6, "sequential forward vs the ops by hand");
    double *wm = ref_to_host_f64(rm);
    assert_tensor_close(entry(seq, "bn.running_mean"), wm, 4, 1e-6, 1e-7, "module running_mean");
    free(wm);
    free(want);
    clg_tensor_free(y);

    /* Evaluation: running statistics, no dropout; the same as the ops in eval mode. */
    clg_module_train(seq, false);
    clg_tensor *e[7] = {0};
    REF_OK(ctx, clg_conv2d(ctx, x, entry(seq, "c.weight"), entry(seq, "c.bias"), pad(1), &e[0]));
    REF_OK(ctx, clg_batch_norm2d(ctx, e[0], entry(seq, "bn.weight"), entry(seq, "bn.bias"),
                                 entry(seq, "bn.running_mean"), entry(seq, "bn.running_var"),
                                 (clg_batch_norm2d_params){false, 0.1, 1e-5}, &e[1]));
    REF_OK(ctx, clg_relu(ctx, e[1], &e[2]));
    REF_OK(ctx, clg_max_pool2d(ctx, e[2], pool(2), &e[3]));
    REF_OK(ctx, clg_flatten(ctx, e[3], &e[4]));
    REF_OK(ctx, clg_linear(ctx, e[4], entry(seq, "fc.weight"), entry(seq, "fc.bias"), &e[5]));
    REF_OK(ctx, clg_module_forward(ctx, seq, x, &y));
    want = ref_to_host_f64(e[5]);
    assert_tensor_close(y, want, 10, 1e-6, 1e-6, "sequential forward in evaluation mode");
    free(want);
    clg_tensor_free(y);

    for (int i = 0; i < 7; i++) {
        clg_tensor_free(t[i]);
        clg_tensor_free(e[i]);
    }
    clg_tensor_free(rm);
    clg_tensor_free(rv);
    clg_module_free(seq);
    clg_tensor_free(x);
}

/* The containers run a batch_norm2d layer followed by a ReLU layer as the fused op
 * (clg_batch_norm2d_relu): the same bits as the two ops by hand (output, running stats,
 * gradients of x, weight and bias), in training and evaluation, and the fused node in the
 * graph; a ReLU that does not follow the batch norm directly is left alone. */
static void test_bn_relu_fused(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {3, 4, 5, 3};
    for (int training = 1; training >= 0; training--)
        for (int fused_case = 0; fused_case < 2; fused_case++) {
            clg_module *seq = NULL, *m = NULL;
            REF_OK(ctx, clg_sequential_create(ctx, &seq));
            add(ctx, seq, clg_batch_norm2d_module_create(ctx, "bn", 4, 1e-5, 0.1, &m), &m);
            if (!fused_case) add(ctx, seq, clg_identity_module_create(ctx, &m), &m);
            add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
            clg_module_train(seq, training);
            clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 61, -1, 1),
                       *dy = ref_rand(ctx, CLG_F32, 4, xs, 62, -1, 1);
            /* By hand, on copies of every parameter and buffer. */
            clg_tensor *c[5], *xc = NULL, *t = NULL, *want = NULL, *y = NULL;
            static const char *const names[4] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
            for (int i = 0; i < 4; i++)
                REF_OK(ctx, clg_tensor_cast(entry(seq, names[i]), CLG_F32, &c[i]));
            REF_OK(ctx, clg_tensor_cast(x, CLG_F32, &xc));
            c[4] = xc;
            for (int i = 0; i < 2; i++) {
                REF_OK(ctx, clg_tensor_set_requires_grad(c[i], true));
                REF_OK(ctx, clg_tensor_set_requires_grad(entry(seq, names[i]), true));
            }
            REF_OK(ctx, clg_tensor_set_requires_grad(xc, true));
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_batch_norm2d(ctx, xc, c[0], c[1], c[2], c[3],
                                         (clg_batch_norm2d_params){training, 0.1, 1e-5}, &t));
            REF_OK(ctx, clg_relu(ctx, t, &want));
            REF_OK(ctx, clg_backward_grad(ctx, want, dy));
            REF_OK(ctx, clg_module_forward(ctx, seq, x, &y));
            assert_non_null(y->grad_fn);
            assert_string_equal(y->grad_fn->op->name, fused_case ? "batch_norm2d_relu" : "relu");
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            const clg_tensor *got[5] = {clg_tensor_grad(entry(seq, names[0])),
                                        clg_tensor_grad(entry(seq, names[1])), entry(seq, names[2]),
                                        entry(seq, names[3]), clg_tensor_grad(x)};
            const clg_tensor *hand[5] = {clg_tensor_grad(c[0]), clg_tensor_grad(c[1]), c[2], c[3],
                                         clg_tensor_grad(xc)};
            for (int i = -1; i < 5; i++) {
                const clg_tensor *g = i < 0 ? y : got[i], *w = i < 0 ? want : hand[i];
                const size_t n = clg_tensor_numel(w) * sizeof(float);
                float *a = malloc(n), *b = malloc(n);
                assert_true(a && b);
                REF_OK(ctx, clg_tensor_to_host(g, a, n));
                REF_OK(ctx, clg_tensor_to_host(w, b, n));
                if (memcmp(a, b, n) != 0)
                    fail_msg("training %d case %d: result %d differs from the ops by hand", training,
                             fused_case, i);
                free(a);
                free(b);
            }
            for (int i = 0; i < 5; i++)
                clg_tensor_free(c[i]);
            clg_tensor_free(t);
            clg_tensor_free(want);
            clg_tensor_free(y);
            clg_tensor_free(x);
            clg_tensor_free(dy);
            clg_module_free(seq);
        }
}

static void test_batch_norm_buffers(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {3, 2, 4, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 52, 1, 3); /* mean 2, var 1/3: the stats move */
    clg_module *bn = NULL;
    REF_OK(ctx, clg_batch_norm2d_module_create(ctx, "bn", 2, 1e-5, 0.1, &bn));
    clg_tensor *y = NULL;
    const double one = 1, two = 2;
    for (int step = 1; step <= 2; step++) {
        REF_OK(ctx, clg_module_forward(ctx, bn, x, &y));
        clg_tensor_free(y);
        assert_tensor_close(entry(bn, "bn.num_batches_tracked"), step == 1 ? &one : &two, 1, 0, 0,
                            "num_batches_tracked counts training forwards");
    }
    /* Two updates with the same batch mean m: 0 -> 0.1 m -> 0.19 m. */
    double *xv = ref_to_host_f64(x), *rm = ref_to_host_f64(entry(bn, "bn.running_mean"));
    for (int c = 0; c < 2; c++) {
        double mean = 0;
        for (int i = 0; i < 96; i++)
            if ((i / 16) % 2 == c) mean += xv[i] / 48;
        ref_assert_close(&rm[c], &(double){0.19 * mean}, 1, 1e-5, 0, "running_mean after two forwards");
    }

    clg_module_train(bn, false);
    REF_OK(ctx, clg_module_forward(ctx, bn, x, &y));
    assert_tensor_close(entry(bn, "bn.num_batches_tracked"), &two, 1, 0, 0, "evaluation counts nothing");
    assert_tensor_close(entry(bn, "bn.running_mean"), rm, 2, 0, 0, "evaluation leaves running_mean");
    /* y = (x - running_mean) / sqrt(running_var + eps) with weight 1, bias 0. */
    double *rv = ref_to_host_f64(entry(bn, "bn.running_var"));
    double want[96];
    for (int i = 0; i < 96; i++) {
        const int c = (i / 16) % 2;
        want[i] = (xv[i] - rm[c]) / sqrt(rv[c] + 1e-5);
    }
    assert_tensor_close(y, want, 96, 1e-5, 1e-6, "batch norm in evaluation mode");
    clg_tensor_free(y);
    free(xv);
    free(rv);
    free(rm);
    clg_module_free(bn);
    clg_tensor_free(x);
}

static void test_dropout_fresh_masks(void **state) {
    clg_context *ctx = *state;
    const int xs[2] = {4, 64};
    clg_tensor *x = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, xs, &x));
    REF_OK(ctx, clg_tensor_fill(x, 1.0));
    clg_module *a = NULL, *b = NULL;
    REF_OK(ctx, clg_dropout_module_create(ctx, 0.5, 1000, &a));
    REF_OK(ctx, clg_dropout_module_create(ctx, 0.5, 1000, &b));
    clg_tensor *y1 = NULL, *y2 = NULL, *z1 = NULL;
    REF_OK(ctx, clg_module_forward(ctx, a, x, &y1));
    REF_OK(ctx, clg_module_forward(ctx, a, x, &y2));
    REF_OK(ctx, clg_module_forward(ctx, b, x, &z1));
    double *m1 = ref_to_host_f64(y1), *m2 = ref_to_host_f64(y2), *n1 = ref_to_host_f64(z1);
    int differ = 0, kept = 0;
    for (int i = 0; i < 256; i++) {
        assert_true(m1[i] == 0 || m1[i] == 2);
        differ += m1[i] != m2[i];
        kept += m1[i] != 0;
    }
    assert_true(differ > 64);             /* a fresh mask per call, not the same one */
    assert_true(kept > 80 && kept < 176); /* about half kept */
    ref_assert_close(n1, m1, 256, 0, 0, "same seed, same first mask");
    free(m1);
    free(m2);
    free(n1);
    clg_tensor_free(y1);
    clg_tensor_free(y2);
    clg_tensor_free(z1);

    /* Evaluation: identity. */
    clg_module_train(a, false);
    REF_OK(ctx, clg_module_forward(ctx, a, x, &y1));
    double ones[256];
    for (int i = 0; i < 256; i++)
        ones[i] = 1;
    assert_tensor_close(y1, ones, 256, 0, 0, "dropout in evaluation mode");
    clg_tensor_free(y1);
    clg_module_free(a);
    clg_module_free(b);
    clg_tensor_free(x);
}
/* The state_dict of tools/clgrad_torch.py's LeNet and CNN, in torch's order: the names a
 * checkpoint of clgrad-train carries. */
static const char *const LENET_STATE[] = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                          "fc1.weight",   "fc1.bias",   "fc2.weight",   "fc2.bias",
                                          "fc3.weight",   "fc3.bias"};
static const int LENET_SHAPES[][4] = {{6, 1, 5, 5}, {6},       {16, 6, 5, 5}, {16},     {120, 400},
                                      {120},        {84, 120}, {84},          {10, 84}, {10}};
static const char *const CNN_STATE[] = {"conv1.weight",
                                        "conv1.bias",
                                        "bn1.weight",
                                        "bn1.bias",
                                        "bn1.running_mean",
                                        "bn1.running_var",
                                        "bn1.num_batches_tracked",
                                        "conv2.weight",
                                        "conv2.bias",
                                        "bn2.weight",
                                        "bn2.bias",
                                        "bn2.running_mean",
                                        "bn2.running_var",
                                        "bn2.num_batches_tracked",
                                        "fc1.weight",
                                        "fc1.bias",
                                        "fc2.weight",
                                        "fc2.bias"};
static const int CNN_SHAPES[][4] = {{32, 1, 3, 3},  {32},  {32},      {32}, {32}, {32}, {1},
                                    {64, 32, 3, 3}, {64},  {64},      {64}, {64}, {64}, {1},
                                    {128, 3136},    {128}, {10, 128}, {10}};

static void check_model(clg_context *ctx, clg_module *model, const char *const *names, const int (*shapes)[4],
                        size_t n, size_t n_trainable) {
    clg_named_tensor e[32];
    assert_int_equal(clg_module_state(model, e, 32), n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(e[i].name, names[i]);
        assert_int_equal(e[i].trainable,
                         strstr(names[i], "running") == NULL && strstr(names[i], "num_batches") == NULL);
        const int *s = clg_tensor_shape(e[i].tensor);
        for (int d = 0; d < clg_tensor_ndim(e[i].tensor); d++)
            assert_int_equal(s[d], shapes[i][d]);
    }
    assert_int_equal(clg_module_parameters(model, NULL, 0), n_trainable);
    /* One forward of two 28x28 images gives (2, 10) logits, in training and evaluation. */
    const int xs[4] = {2, 1, 28, 28};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 81, 0, 1), *y = NULL;
    for (int train = 1; train >= 0; train--) {
        clg_module_train(model, train);
        REF_OK(ctx, clg_module_forward(ctx, model, x, &y));
        assert_int_equal(clg_tensor_ndim(y), 2);
        assert_int_equal(clg_tensor_shape(y)[0], 2);
        assert_int_equal(clg_tensor_shape(y)[1], 10);
        clg_tensor_free(y);
    }
    clg_tensor_free(x);
}

static void test_lenet_state(void **state) {
    clg_context *ctx = *state;
    clg_module *model = lenet(ctx, 1);
    check_model(ctx, model, LENET_STATE, LENET_SHAPES, 10, 10);
    clg_module_free(model);
}

static void test_cnn_state(void **state) {
    clg_context *ctx = *state;
    clg_module *model = cnn(ctx, 1);
    check_model(ctx, model, CNN_STATE, CNN_SHAPES, 18, 12);
    clg_module_free(model);
}

/* ---------------------------------------------------------------- dtype and misuse */

static void test_to_dtype(void **state) {
    clg_context *ctx = *state;
    clg_module *m = small_cnn(ctx, 5);
    clg_named_tensor e[16];
    const size_t n = clg_module_state(m, e, 16);
    double *before[16];
    for (size_t i = 0; i < n; i++)
        before[i] = ref_to_host_f64(e[i].tensor);
    REF_OK(ctx, clg_module_to_dtype(m, CLG_F64));
    assert_int_equal(clg_module_state(m, e, 16), n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(clg_tensor_dtype(e[i].tensor), CLG_F64);
        assert_int_equal(clg_tensor_requires_grad(e[i].tensor), e[i].trainable);
        assert_tensor_close(e[i].tensor, before[i], clg_tensor_numel(e[i].tensor), 0, 0, e[i].name);
        free(before[i]);
    }
    /* f64 in, f64 out, batch norm counting included; an f32 input is refused by the ops. */
    const int xs[4] = {2, 1, 8, 8};
    clg_tensor *x = ref_rand_f64(ctx, 4, xs, 91, 0, 1), *xf = ref_rand(ctx, CLG_F32, 4, xs, 91, 0, 1),
               *y = NULL;
    REF_OK(ctx, clg_module_forward(ctx, m, x, &y));
    assert_int_equal(clg_tensor_dtype(y), CLG_F64);
    const double one = 1;
    assert_tensor_close(entry(m, "bn1.num_batches_tracked"), &one, 1, 0, 0, "num_batches_tracked in f64");
    clg_tensor_free(y);
    assert_int_not_equal(clg_module_forward(ctx, m, xf, &y), CLG_OK);
    assert_null(y);
    REF_OK(ctx, clg_module_to_dtype(m, CLG_F32));
    REF_OK(ctx, clg_module_forward(ctx, m, xf, &y));
    assert_int_equal(clg_tensor_dtype(y), CLG_F32);
    clg_tensor_free(y);
    assert_int_equal(clg_module_to_dtype(m, (clg_dtype)7), CLG_INVALID_ARGUMENT);
    clg_tensor_free(xf);
    clg_tensor_free(x);
    clg_module_free(m);
}

static void test_module_errors(void **state) {
    clg_context *ctx = *state;
    clg_module *m = (clg_module *)&m;
    clg_conv2d_params p = clg_conv2d_default_params();
    assert_int_equal(clg_conv2d_module_create(ctx, "c", 0, 4, 3, 3, p, true, 1, &m), CLG_INVALID_ARGUMENT);
    assert_null(m);
    assert_non_null(strstr(clg_context_errmsg(ctx), "channels"));
    p.groups = 3;
    assert_int_equal(clg_conv2d_module_create(ctx, "c", 4, 6, 3, 3, p, true, 1, &m), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "groups"));
    p = clg_conv2d_default_params();
    p.stride_h = 0;
    assert_int_equal(clg_conv2d_module_create(ctx, "c", 4, 6, 3, 3, p, true, 1, &m), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_linear_module_create(ctx, "fc", 3, -1, true, 1, &m), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_batch_norm2d_module_create(ctx, "bn", 3, 0, 0.1, &m), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_batch_norm2d_module_create(ctx, "bn", 3, 1e-5, 1.5, &m), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_dropout_module_create(ctx, -0.1, 1, &m), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_max_pool2d_module_create(ctx, pool(0), &m), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_relu_module_create(ctx, NULL), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_relu_module_create(NULL, &m), CLG_INVALID_ARGUMENT);

    /* A shape the layer does not take: the op's error, naming both shapes. */
    clg_module *fc = NULL, *seq = NULL;
    REF_OK(ctx, clg_linear_module_create(ctx, "fc", 5, 2, true, 1, &fc));
    const int xs[2] = {3, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 2, xs, 92, 0, 1), *y = (clg_tensor *)&y;
    assert_int_equal(clg_module_forward(ctx, fc, x, &y), CLG_SHAPE_MISMATCH);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(3, 4)"));
    assert_int_equal(clg_module_forward(ctx, fc, NULL, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_forward(ctx, NULL, x, &y), CLG_INVALID_ARGUMENT);

    /* Containers: not into a non-container, not into itself, not twice. */
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    assert_int_equal(clg_sequential_add(seq, seq), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg_sequential_add(seq, fc));
    assert_int_equal(clg_sequential_add(seq, fc), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "already"));
    clg_module *relu = NULL;
    REF_OK(ctx, clg_relu_module_create(ctx, &relu));
    assert_int_equal(clg_sequential_add(relu, NULL), CLG_INVALID_ARGUMENT); /* relu kept: not taken */
    clg_module *lone = NULL;
    REF_OK(ctx, clg_relu_module_create(ctx, &lone));
    assert_int_equal(clg_sequential_add(relu, lone), CLG_INVALID_ARGUMENT); /* lone freed by the call */
    assert_int_equal(clg_sequential_add(NULL, NULL), CLG_INVALID_ARGUMENT);
    /* An empty container and a parameterless layer list nothing. */
    assert_int_equal(clg_module_state(relu, NULL, 0), 0);
    clg_module *empty = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &empty));
    REF_OK(ctx, clg_module_forward(ctx, empty, x, &y)); /* identity */
    double *xv = ref_to_host_f64(x);
    assert_tensor_close(y, xv, 12, 0, 0, "empty sequential");
    free(xv);
    clg_tensor_free(y);
    clg_module_free(empty);
    clg_module_free(relu);
    clg_module_free(seq);
    clg_module_free(NULL);
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_conv_linear),
        cmocka_unit_test(test_init_batch_norm),
        cmocka_unit_test(test_forward_matches_ops),
        cmocka_unit_test(test_bn_relu_fused),
        cmocka_unit_test(test_batch_norm_buffers),
        cmocka_unit_test(test_dropout_fresh_masks),
        cmocka_unit_test(test_lenet_state),
        cmocka_unit_test(test_cnn_state),
        cmocka_unit_test(test_to_dtype),
        cmocka_unit_test(test_module_errors),
    };
    return REF_RUN_BOTH_STYLES("nn", tests);
}
