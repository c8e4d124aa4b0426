/* tests/nn/test_nn_training.c - training through the layers of src/nn: an f64 gradient check
 * through a small CNN, micro-batch accumulation, the PyTorch small_cnn fixture (loss,
 * gradients, buffers, SGD / Adam / AdamW steps) and steady-state allocations, each under
 * both kernel styles. Layers one by one: test_nn.c; the module core: test_module.c.
 */
#include <float.h>

#include "nn_test.h"

/* ---------------------------------------------------------------- gradients */

static clg_status module_fn(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    return clg_module_forward(ctx, (clg_module *)user, in[0], y);
}

/* conv -> batchnorm (training) -> relu -> maxpool -> flatten -> linear, every parameter and
 * the input checked by central differences in f64. */
static void test_gradcheck_small_cnn(void **state) {
    clg_context *ctx = *state;
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv", 2, 3, 3, 3, pad(1), true, 5, &m), &m);
    add(ctx, seq, clg_batch_norm2d_module_create(ctx, "bn", 3, 1e-5, 0.1, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc", 27, 4, true, 6, &m), &m);
    REF_OK(ctx, clg_module_to_dtype(seq, CLG_F64));
    /* Non-trivial affine parameters, so their gradients are not the special case 1/0. */
    const double g[3] = {1.5, 0.7, -1.2}, b[3] = {0.3, -0.2, 0.1};
    write_doubles(ctx, entry(seq, "bn.weight"), g);
    write_doubles(ctx, entry(seq, "bn.bias"), b);

    const int xs[4] = {3, 2, 6, 6};
    clg_tensor *in[8] = {ref_rand_f64(ctx, 4, xs, 53, -1, 1)};
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
    const size_t np = clg_module_parameters(seq, in + 1, 7);
    assert_int_equal(np, 6);
    for (size_t i = 1; i <= np; i++)
        assert_int_equal(clg_tensor_dtype(in[i]), CLG_F64);
    ref_gradcheck(ctx, module_fn, in, 7, seq, 1e-6, 1e-6, "conv-bn-relu-pool-flatten-linear");
    clg_tensor_free(in[0]);
    clg_module_free(seq);
}

/* ---------------------------------------------------------------- micro-batches */

static clg_module *small_mlp_cnn(clg_context *ctx) {
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv1", 1, 4, 3, 3, pad(1), true, 61, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc1", 64, 16, true, 62, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc2", 16, 3, true, 63, &m), &m);
    return seq;
}

/* loss = scale * cross_entropy(model(x), t), then backward. */
static void forward_backward(clg_context *ctx, clg_module *model, const clg_tensor *x, const int32_t *t,
                             size_t n, double scale, double *loss_out) {
    clg_tensor *logits = NULL, *loss = NULL, *scaled = NULL;
    REF_OK(ctx, clg_module_forward(ctx, model, x, &logits));
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, logits, t, n, &loss));
    REF_OK(ctx, clg_scale(ctx, loss, scale, &scaled));
    if (loss_out) REF_OK(ctx, clg_tensor_item(scaled, loss_out));
    REF_OK(ctx, clg_backward(ctx, scaled));
    clg_tensor_free(scaled);
    clg_tensor_free(loss);
    clg_tensor_free(logits);
}

static void test_microbatch_accumulation(void **state) {
    clg_context *ctx = *state;
    clg_module *model = small_mlp_cnn(ctx);
    const int full[4] = {8, 1, 8, 8}, half[4] = {4, 1, 8, 8};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, full, 64, 0, 1);
    const int32_t t[8] = {0, 2, 1, 1, 0, 2, 2, 1};
    float xv[512];
    REF_OK(ctx, clg_tensor_to_host(x, xv, sizeof xv));
    clg_tensor *x0 = NULL, *x1 = NULL;
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F32, 4, half, xv, &x0));
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F32, 4, half, xv + 256, &x1));

    clg_tensor *p[8];
    const size_t np = clg_module_parameters(model, p, 8);
    assert_int_equal(np, 6);
    double lfull = 0, l0 = 0, l1 = 0;
    forward_backward(ctx, model, x, t, 8, 1.0, &lfull);
    double *g_full[6];
    for (size_t i = 0; i < np; i++) {
        g_full[i] = ref_to_host_f64(clg_tensor_grad(p[i]));
        clg_tensor_zero_grad(p[i]);
    }
    /* Two micro-batches of 4, each loss scaled by 1/2, no zero_grad in between. */
    forward_backward(ctx, model, x0, t, 4, 0.5, &l0);
    forward_backward(ctx, model, x1, t + 4, 4, 0.5, &l1);
    ref_assert_close(&(double){l0 + l1}, &lfull, 1, 1e-6, 0, "the two half losses add up to the full loss");
    for (size_t i = 0; i < np; i++) {
        const size_t n = clg_tensor_numel(p[i]);
        double gmax = 0;
        for (size_t j = 0; j < n; j++)
            gmax = fmax(gmax, fabs(g_full[i][j]));
        assert_true(gmax > 0);
        char what[64];
        snprintf(what, sizeof what, "micro-batch gradient of parameter %zu", i);
        assert_tensor_close(clg_tensor_grad(p[i]), g_full[i], n, 1e-5, 1e-5 * gmax, what);
        free(g_full[i]);
    }
    clg_tensor_free(x0);
    clg_tensor_free(x1);
    clg_tensor_free(x);
    clg_module_free(model);
}

/* ---------------------------------------------------------------- the PyTorch fixture */

/* Writes every "init.<name>" of the fixture into the module's state. */
static void load_init(clg_context *ctx, clg_module *m, const clg_st_file *f) {
    clg_named_tensor e[16];
    const size_t n = clg_module_state(m, e, 16);
    assert_int_equal(n, 9);
    for (size_t i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "init.%s", e[i].name);
        size_t len = 0;
        double *v = ref_fixture_f64(f, name, &len);
        assert_int_equal(len, clg_tensor_numel(e[i].tensor));
        write_doubles(ctx, e[i].tensor, v);
        free(v);
    }
}

/* The fixture's one parameter whose true gradient is 0: conv1's bias is followed by batch
 * norm in training mode, which subtracts each channel's batch mean, so the loss does not
 * depend on it. Its computed gradient, on either side, is the rounding noise of a sum that
 * cancels exactly, and its value after an optimizer step is that noise times the step rule:
 * comparing it to PyTorch's with the other parameters' rtol compares two noises. It is
 * checked against the bound the computation can promise instead (zero_grad_noise_floor). */
static const char ZERO_GRAD_PARAM[] = "conv1.bias";

/* Compares every trainable parameter (or its gradient) with "<prefix>.<name>" to rtol/atol,
 * except ZERO_GRAD_PARAM: its gradient must be at most noise on both sides, its value within
 * noise of PyTorch's. */
static void check_params(const clg_module *m, const clg_st_file *f, const char *prefix, bool grads,
                         double rtol, double atol, double noise) {
    clg_named_tensor e[16];
    const size_t n = clg_module_state(m, e, 16);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        if (!e[i].trainable) continue;
        char name[128];
        snprintf(name, sizeof name, "%s.%s", prefix, e[i].name);
        size_t len = 0;
        double *want = ref_fixture_f64(f, name, &len);
        const clg_tensor *t = grads ? clg_tensor_grad(e[i].tensor) : e[i].tensor;
        if (!t) fail_msg("%s: no gradient", name);
        if (strcmp(e[i].name, ZERO_GRAD_PARAM) != 0) {
            assert_tensor_close(t, want, len, rtol, atol, name);
        } else if (grads) {
            double *got = ref_to_host_f64(t);
            for (size_t j = 0; j < len; j++)
                if (!(fabs(got[j]) <= noise && fabs(want[j]) <= noise))
                    fail_msg("%s[%zu]: a zero gradient computed as %.3g (PyTorch %.3g), above the noise floor %.3g",
                             name, j, got[j], want[j], noise);
            free(got);
        } else {
            assert_tensor_close(t, want, len, rtol, noise, name);
        }
        free(want);
        checked++;
    }
    assert_int_equal(checked, 6);
}

/* The most rounding noise ZERO_GRAD_PARAM's gradient can carry at m's current weights. Its
 * gradient is sum_i dz_i over the n = N*H*W positions of a channel of z = conv1(x), a sum that
 * is exactly 0; summing n terms in any order errs by at most n * u * sum_i |dz_i| (Higham,
 * recursive summation; pairwise and blocked orders do better), and the few roundings that form
 * each dz_i in batch norm's backward are covered by the same n * u factor, since n (256) far
 * exceeds them. dz is measured here by running conv1 alone, then the rest of the model from a
 * leaf copy of z. The extra forward and backward leave no trace: batch norm's buffers are put
 * back and every parameter's gradient is cleared. */
static double zero_grad_noise_floor(clg_context *ctx, clg_module *m, const clg_tensor *x, const int32_t *t) {
    static const char *const buffers[3] = {"bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"};
    double *saved[3];
    for (int i = 0; i < 3; i++)
        saved[i] = ref_to_host_f64(entry(m, buffers[i]));
    clg_tensor *z = NULL, *cur = NULL, *loss = NULL;
    REF_OK(ctx, clg_module_forward(ctx, clg_module_child(m, 0), x, &z));
    clg_tensor_detach(z);
    REF_OK(ctx, clg_tensor_set_requires_grad(z, true));
    cur = clg_tensor_ref(z);
    for (size_t i = 1; i < clg_module_child_count(m); i++) {
        clg_tensor *next = NULL;
        REF_OK(ctx, clg_module_forward(ctx, clg_module_child(m, i), cur, &next));
        clg_tensor_free(cur);
        cur = next;
    }
    const int n_batch = clg_tensor_shape(z)[0];
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, cur, t, (size_t)n_batch, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    const int *zs = clg_tensor_shape(z);
    const size_t plane = (size_t)zs[2] * zs[3], n = (size_t)zs[0] * plane;
    double *dz = ref_to_host_f64(clg_tensor_grad(z)), worst = 0;
    for (int c = 0; c < zs[1]; c++) {
        double l1 = 0;
        for (int b = 0; b < zs[0]; b++)
            for (size_t j = 0; j < plane; j++)
                l1 += fabs(dz[((size_t)b * zs[1] + c) * plane + j]);
        worst = fmax(worst, l1);
    }
    free(dz);
    clg_tensor_free(loss);
    clg_tensor_free(cur);
    clg_tensor_free(z);
    for (int i = 0; i < 3; i++) {
        write_doubles(ctx, entry(m, buffers[i]), saved[i]);
        free(saved[i]);
    }
    clg_tensor *p[8];
    const size_t np = clg_module_parameters(m, p, 8);
    for (size_t i = 0; i < np; i++)
        clg_tensor_zero_grad(p[i]);
    return (double)n * DBL_EPSILON * worst;
}

static void check_named(const clg_module *m, const clg_st_file *f, const char *fixture, const char *state,
                        double rtol, double atol) {
    size_t len = 0;
    double *want = ref_fixture_f64(f, fixture, &len);
    assert_tensor_close(entry(m, state), want, len, rtol, atol, fixture);
    free(want);
}

/* One training round: forward, loss (checked against want_loss when given), backward, step. */
static void round_trip(clg_context *ctx, clg_module *m, clg_optimizer *opt, const clg_tensor *x,
                       const int32_t *t, const clg_st_file *f, const char *want_loss) {
    clg_optimizer_zero_grad(opt);
    clg_tensor *logits = NULL, *loss = NULL;
    REF_OK(ctx, clg_module_forward(ctx, m, x, &logits));
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, logits, t, 4, &loss));
    if (want_loss) {
        double *wl = ref_fixture_f64(f, want_loss, NULL);
        assert_tensor_close(loss, wl, 1, 1e-10, 0, want_loss);
        free(wl);
    }
    REF_OK(ctx, clg_backward(ctx, loss));
    REF_OK(ctx, clg_optimizer_step(opt));
    clg_tensor_free(loss);
    clg_tensor_free(logits);
}

static void test_pytorch_small_cnn(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "small_cnn.safetensors");
    clg_module *m = small_cnn(ctx, 99);
    REF_OK(ctx, clg_module_to_dtype(m, CLG_F64));
    load_init(ctx, m, &f);

    clg_tensor *x = ref_fixture_tensor(ctx, &f, "x");
    size_t nt = 0;
    double *td = ref_fixture_f64(&f, "targets", &nt);
    assert_int_equal(nt, 4);
    int32_t t[4];
    for (int i = 0; i < 4; i++)
        t[i] = (int32_t)td[i];
    free(td);

    /* Forward, loss, every gradient, the buffers after one training forward. */
    const double floor0 = zero_grad_noise_floor(ctx, m, x, t);
    assert_true(floor0 > 0 && floor0 < 1e-12); /* noise, far below every real gradient here */
    clg_tensor *logits = NULL, *loss = NULL;
    REF_OK(ctx, clg_module_forward(ctx, m, x, &logits));
    double *want = ref_fixture_f64(&f, "logits", NULL);
    assert_tensor_close(logits, want, 12, 1e-10, 1e-12, "logits");
    free(want);
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, logits, t, 4, &loss));
    want = ref_fixture_f64(&f, "loss", NULL);
    assert_tensor_close(loss, want, 1, 1e-10, 0, "loss");
    free(want);
    REF_OK(ctx, clg_backward(ctx, loss));
    check_params(m, &f, "grad", true, 1e-9, 1e-12, floor0);
    check_named(m, &f, "after_fwd.bn1.running_mean", "bn1.running_mean", 1e-10, 1e-14);
    check_named(m, &f, "after_fwd.bn1.running_var", "bn1.running_var", 1e-10, 1e-14);
    check_named(m, &f, "after_fwd.bn1.num_batches_tracked", "bn1.num_batches_tracked", 0, 0);
    clg_tensor_free(loss);
    clg_tensor_free(logits);

    clg_tensor *params[8];
    const size_t np = clg_module_parameters(m, params, 8);
    assert_int_equal(np, 6);

    /* SGD: the gradients above are the first round's; step, then a second round. */
    clg_sgd_params sp = clg_sgd_default_params();
    sp.lr = 0.1;
    sp.momentum = 0.9;
    sp.weight_decay = 1e-4;
    clg_optimizer *opt = NULL;
    REF_OK(ctx, clg_sgd_create(ctx, params, np, sp, &opt));
    REF_OK(ctx, clg_optimizer_step(opt));
    /* SGD moves the zero-gradient bias by lr * (its noise), momentum summing at most
     * 1 / (1 - momentum) of those, and both sides' noise adds: 2 * lr * floor / (1 - mu) per
     * step on top of the 1e-12 every parameter gets (weight decay is the same on both sides). */
    const double sgd_noise = 1e-12 + 2 * sp.lr * floor0 / (1 - sp.momentum);
    check_params(m, &f, "sgd1", false, 1e-9, 1e-12, sgd_noise);
    round_trip(ctx, m, opt, x, t, &f, "sgd2.loss");
    check_params(m, &f, "sgd2", false, 1e-9, 1e-12, 2 * sgd_noise);
    check_named(m, &f, "sgd2.bn1.running_mean", "bn1.running_mean", 1e-10, 1e-14);
    check_named(m, &f, "sgd2.bn1.running_var", "bn1.running_var", 1e-10, 1e-14);
    clg_optimizer_free(opt);

    /* Adam and AdamW, each from init again. On the zero-gradient bias Adam divides noise by
     * noise: its step lr * mhat / (sqrt(vhat) + eps) has |mhat| <= the largest |g| so far, so
     * with |g| <= the noise floor each step moves it by at most lr * floor / eps, on either
     * side independently, and their difference by the sum of both sides' steps. That bound
     * (~4e-7 after two steps here) holds for every summation order a device may choose;
     * AVX-512 PoCL and PyTorch differed by 1.4e-10. A real fault still shows: a wrong step
     * moves the bias by ~lr = 1e-2, and a gradient that is not noise fails the check above. Neither variant adds weight decay
     * to the gradient (AdamW decays the weight itself, which both sides do alike), so the
     * gradient stays pure noise. */
    for (int wd = 0; wd < 2; wd++) {
        load_init(ctx, m, &f);
        clg_adam_params ap = clg_adam_default_params();
        ap.lr = 0.01;
        ap.weight_decay = wd ? 0.1 : 0.0;
        ap.decoupled_weight_decay = wd;
        REF_OK(ctx, clg_adam_create(ctx, params, np, ap, &opt));
        double largest = 0, noise = 0;
        for (int round = 1; round <= 2; round++) {
            largest = fmax(largest, zero_grad_noise_floor(ctx, m, x, t));
            noise += 2 * ap.lr * largest / ap.eps;
            round_trip(ctx, m, opt, x, t, &f, round == 1 ? "loss" : wd ? "adamw2.loss" : "adam2.loss");
            if (round == 1 && !wd) check_params(m, &f, "adam1", false, 1e-8, 1e-10, noise);
            if (round == 2) check_params(m, &f, wd ? "adamw2" : "adam2", false, 1e-8, 1e-10, noise);
        }
        clg_optimizer_free(opt);
    }

    clg_tensor_free(x);
    clg_module_free(m);
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- steady state */

static void test_steady_state_allocations(void **state) {
    clg_context *ctx = *state;
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv1", 1, 4, 3, 3, pad(1), true, 71, &m), &m);
    add(ctx, seq, clg_batch_norm2d_module_create(ctx, "bn1", 4, 1e-5, 0.1, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc1", 64, 16, true, 72, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_dropout_module_create(ctx, 0.25, 73, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc2", 16, 3, true, 74, &m), &m);
    clg_tensor *params[16];
    const size_t np = clg_module_parameters(seq, params, 16);
    clg_optimizer *opt = NULL;
    clg_adam_params ap = clg_adam_default_params();
    ap.lr = 0.01;
    REF_OK(ctx, clg_adam_create(ctx, params, np, ap, &opt));

    const int xs[4] = {6, 1, 8, 8};
    const int32_t t[6] = {0, 1, 2, 2, 1, 0};
    double first = 0, last = 0;
    uint64_t allocs = 0;
    for (int step = 0; step < 8; step++) {
        if (step == 3) allocs = clg_context_pool_stats(ctx).driver_allocs;
        clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 75, 0, 1); /* the same batch every step */
        clg_optimizer_zero_grad(opt);
        double l = 0;
        forward_backward(ctx, seq, x, t, 6, 1.0, &l);
        REF_OK(ctx, clg_optimizer_step(opt));
        clg_tensor_free(x);
        if (step == 0) first = l;
        last = l;
    }
    assert_int_equal(clg_context_pool_stats(ctx).driver_allocs, allocs);
    assert_true(last < first); /* and it did train */
    clg_optimizer_free(opt);
    clg_module_free(seq);
}

/* ---------------------------------------------------------------- the training models (lenet, cnn) */

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_small_cnn),
        cmocka_unit_test(test_microbatch_accumulation),
        cmocka_unit_test(test_pytorch_small_cnn),
        cmocka_unit_test(test_steady_state_allocations),
    };
    return REF_RUN_BOTH_STYLES("nn training", tests);
}
