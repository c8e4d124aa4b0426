/* tests/nn/test_resnet.c - the built-in blocks against PyTorch: clg_resnet_small_create (stem,
 * three stages of torchvision BasicBlocks, global average pooling, linear) has the state names
 * of tests/fixtures/make_fixtures.py's ResNetSmall in order, loads torch's own state_dict file
 * by name, and matches torch's logits, loss, every gradient and the BN buffers after one
 * training step in f64 (tests/fixtures/resnet_small*.safetensors); then freezing, zero_grad,
 * save/load and the torchvision init, in both kernel styles; and (default style) every
 * allocation and enqueue of building it and its first step failing in turn.
 */
#include <float.h>
#include <unistd.h>

#include "nn_test.h"

static const int BLOCKS[3] = {2, 1, 1}; /* the fixture's model */
#define N_STATE 68                      /* tensors in its state_dict */
#define N_PARAMS 82714                  /* sum(p.numel() for p in model.parameters()) */

static void fixture_path(char *buf, size_t len, const char *file) {
    const char *dir = getenv("CLGRAD_FIXTURES");
    snprintf(buf, len, "%s/%s", dir ? dir : "tests/fixtures", file);
}

/* The fixture's model in f64 with torch's weights, loaded by name from its state_dict file. */
static clg_module *fixture_model(clg_context *ctx) {
    clg_module *m = NULL;
    REF_OK(ctx, clg_resnet_small_create(ctx, 3, BLOCKS, 10, 1, &m));
    REF_OK(ctx, clg_module_to_dtype(m, CLG_F64));
    char path[1024];
    fixture_path(path, sizeof path, "resnet_small_init.safetensors");
    REF_OK(ctx, clg_module_load(ctx, m, path));
    return m;
}

/* The batch and its targets. */
static clg_tensor *fixture_batch(clg_context *ctx, const clg_st_file *f, int32_t t[4]) {
    size_t nt = 0;
    double *td = ref_fixture_f64(f, "targets", &nt);
    assert_int_equal(nt, 4);
    for (int i = 0; i < 4; i++)
        t[i] = (int32_t)td[i];
    free(td);
    return ref_fixture_tensor(ctx, f, "x");
}

/* |got - want| <= 1e-9 |want| + 1e-9 max|want| per tensor: in f64 both sides round every
 * product and sum at 1.1e-16, and the deepest gradient here passes through 9 convolutions
 * and batch norms, each summing up to 4 * 8 * 8 * 64 terms in its own order, so an element
 * can lose relative accuracy to cancellation but not below ~1e-12 of its tensor's scale. */
static void check_close(const clg_tensor *got, const clg_st_file *f, const char *name) {
    size_t n = 0;
    double *want = ref_fixture_f64(f, name, &n), scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    assert_tensor_close(got, want, n, 1e-9, 1e-9 * scale, name);
    free(want);
}

/* ---------------------------------------------------------------- names */

/* The state names and shapes are torch's, in torch's order; a few spelled out. */
static void test_state_names_match_torch(void **state) {
    clg_context *ctx = *state;
    clg_module *m = NULL;
    REF_OK(ctx, clg_resnet_small_create(ctx, 3, BLOCKS, 10, 1, &m));
    clg_st_file f;
    ref_fixture_open(&f, "resnet_small_init.safetensors");
    clg_named_tensor e[N_STATE + 1];
    assert_int_equal(clg_module_state(m, e, N_STATE + 1), N_STATE);
    assert_int_equal(f.n_entries, N_STATE);
    for (size_t i = 0; i < N_STATE; i++) {
        if (strcmp(e[i].name, f.entries[i].name) != 0)
            fail_msg("state entry %zu: clgrad %s, torch %s", i, e[i].name, f.entries[i].name);
        const int nd = clg_tensor_ndim(e[i].tensor), fnd = f.entries[i].ndim ? f.entries[i].ndim : 1;
        assert_int_equal(nd, fnd);
        for (int d = 0; d < f.entries[i].ndim; d++)
            assert_int_equal(clg_tensor_shape(e[i].tensor)[d], f.entries[i].shape[d]);
    }
    clg_st_file_free(&f);
    static const char *const some[] = {"conv1.weight",
                                       "layer1.1.bn2.running_var",
                                       "layer2.0.downsample.0.weight",
                                       "layer2.0.downsample.1.num_batches_tracked",
                                       "layer3.0.conv2.weight",
                                       "fc.bias"};
    for (size_t i = 0; i < sizeof some / sizeof *some; i++)
        assert_non_null(clg_module_find_tensor(m, some[i]));
    assert_null(clg_module_find_tensor(m, "layer1.0.downsample.0.weight")); /* identity shortcut */
    const int *ds = clg_tensor_shape(clg_module_find_tensor(m, "layer2.0.downsample.0.weight"));
    assert_true(ds[0] == 32 && ds[1] == 16 && ds[2] == 1 && ds[3] == 1);
    assert_int_equal(clg_module_parameter_count(m), N_PARAMS);
    assert_int_equal(clg_module_named_parameters(m, NULL, 0), 35);
    clg_module *l2 = clg_module_get_child(m, "layer2");
    assert_string_equal(clg_module_path(clg_module_child(clg_module_child(l2, 0), 5)), "layer2.0.downsample");
    clg_module_free(m);
}

/* ---------------------------------------------------------------- one step against torch */

static void test_pytorch_resnet_step(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "resnet_small.safetensors");
    clg_module *m = fixture_model(ctx);
    int32_t t[4];
    clg_tensor *x = fixture_batch(ctx, &f, t), *logits = NULL, *loss = NULL;
    REF_OK(ctx, clg_module_forward(ctx, m, x, &logits));
    check_close(logits, &f, "logits");
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, logits, t, 4, &loss));
    check_close(loss, &f, "loss");
    REF_OK(ctx, clg_backward(ctx, loss));

    clg_named_tensor e[N_STATE];
    assert_int_equal(clg_module_state(m, e, N_STATE), N_STATE);
    int grads = 0, buffers = 0;
    for (size_t i = 0; i < N_STATE; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s.%s", e[i].trainable ? "grad" : "after", e[i].name);
        const clg_tensor *got = e[i].trainable ? clg_tensor_grad(e[i].tensor) : e[i].tensor;
        if (!got) fail_msg("%s: no gradient", e[i].name);
        if (strstr(e[i].name, "num_batches_tracked")) {
            double *want = ref_fixture_f64(&f, name, NULL);
            assert_tensor_close(got, want, 1, 0, 0, name); /* 1, exactly */
            free(want);
        } else {
            check_close(got, &f, name);
        }
        e[i].trainable ? grads++ : buffers++;
    }
    assert_int_equal(grads, 35);
    assert_int_equal(buffers, 33); /* 11 batch norms */
    clg_tensor_free(loss);
    clg_tensor_free(logits);
    clg_tensor_free(x);
    clg_module_free(m);
    clg_st_file_free(&f);
}

/* Frozen stages get no gradient and the others the same as unfrozen (torch's gradients);
 * zero_grad drops every gradient; unfreezing brings them back. Evaluation mode leaves the
 * buffers alone. */
static void test_freeze_and_zero_grad(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "resnet_small.safetensors");
    clg_module *m = fixture_model(ctx);
    int32_t t[4];
    clg_tensor *x = fixture_batch(ctx, &f, t), *logits = NULL, *loss = NULL;
    clg_module_requires_grad(clg_module_get_child(m, "layer1"), false);
    clg_module_requires_grad(clg_module_get_child(m, "conv1"), false);
    assert_false(clg_tensor_requires_grad(clg_module_find_tensor(m, "layer1.1.conv2.weight")));
    REF_OK(ctx, clg_module_forward(ctx, m, x, &logits));
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, logits, t, 4, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    clg_named_tensor e[64];
    const size_t np = clg_module_named_parameters(m, e, 64);
    assert_int_equal(np, 35);
    int frozen = 0;
    for (size_t i = 0; i < np; i++) {
        const bool off = !strncmp(e[i].name, "layer1.", 7) || !strcmp(e[i].name, "conv1.weight");
        if (off) {
            assert_null(clg_tensor_grad(e[i].tensor));
            frozen++;
            continue;
        }
        char name[160];
        snprintf(name, sizeof name, "grad.%s", e[i].name);
        check_close(clg_tensor_grad(e[i].tensor), &f, name);
    }
    assert_int_equal(frozen, 1 + 12); /* conv1, and layer1's two blocks of conv, bn, conv, bn */
    clg_module_zero_grad(m);
    for (size_t i = 0; i < np; i++)
        assert_null(clg_tensor_grad(e[i].tensor));
    clg_module_requires_grad(m, true);
    for (size_t i = 0; i < np; i++)
        assert_true(clg_tensor_requires_grad(e[i].tensor));

    /* Evaluation: running statistics, buffers untouched. */
    clg_tensor_free(loss);
    clg_tensor_free(logits);
    double *before = ref_to_host_f64(clg_module_find_tensor(m, "layer3.0.bn1.running_mean"));
    clg_module_train(m, false);
    REF_OK(ctx, clg_module_forward(ctx, m, x, &logits));
    assert_tensor_close(clg_module_find_tensor(m, "layer3.0.bn1.running_mean"), before, 64, 0, 0,
                        "running_mean after an evaluation forward");
    free(before);
    clg_tensor_free(logits);
    clg_tensor_free(x);
    clg_module_free(m);
    clg_st_file_free(&f);
}

/* save then load into a model built from another seed: every state tensor equal, bit for bit. */
static void test_save_load_round_trip(void **state) {
    clg_context *ctx = *state;
    clg_module *a = fixture_model(ctx), *b = NULL;
    REF_OK(ctx, clg_resnet_small_create(ctx, 3, BLOCKS, 10, 77, &b));
    REF_OK(ctx, clg_module_to_dtype(b, CLG_F64));
    char path[64];
    snprintf(path, sizeof path, "/tmp/clgrad-resnet-%d.safetensors", (int)getpid());
    REF_OK(ctx, clg_module_save(ctx, a, path));
    REF_OK(ctx, clg_module_load(ctx, b, path));
    remove(path);
    clg_named_tensor ea[N_STATE], eb[N_STATE];
    assert_int_equal(clg_module_state(a, ea, N_STATE), N_STATE);
    assert_int_equal(clg_module_state(b, eb, N_STATE), N_STATE);
    for (size_t i = 0; i < N_STATE; i++) {
        double *va = ref_to_host_f64(ea[i].tensor);
        assert_tensor_close(eb[i].tensor, va, clg_tensor_numel(ea[i].tensor), 0, 0, eb[i].name);
        free(va);
    }
    clg_module_free(a);
    clg_module_free(b);
}

/* torchvision's init: conv weights N(0, sqrt(2 / fan_out)), BN 1 / 0; the same seed gives
 * the same model, another seed another. The sample std of n draws is within 5 standard errors
 * (std * sqrt(2 / n) for a normal sample's std, up to 1 / sqrt(n) corrections) of the target. */
static void test_torchvision_init(void **state) {
    clg_context *ctx = *state;
    clg_module *a = NULL, *b = NULL, *c = NULL;
    REF_OK(ctx, clg_resnet_small_create(ctx, 3, BLOCKS, 10, 5, &a));
    REF_OK(ctx, clg_resnet_small_create(ctx, 3, BLOCKS, 10, 5, &b));
    REF_OK(ctx, clg_resnet_small_create(ctx, 3, BLOCKS, 10, 6, &c));
    static const struct {
        const char *name;
        int fan_out;
    } convs[] = {
        {"conv1.weight", 16 * 9}, {"layer3.0.conv2.weight", 64 * 9}, {"layer2.0.downsample.0.weight", 32}};
    for (size_t i = 0; i < 3; i++) {
        const clg_tensor *t = clg_module_find_tensor(a, convs[i].name);
        const size_t n = clg_tensor_numel(t);
        double *v = ref_to_host_f64(t), *w = ref_to_host_f64(clg_module_find_tensor(b, convs[i].name));
        double *u = ref_to_host_f64(clg_module_find_tensor(c, convs[i].name));
        double ss = 0;
        for (size_t j = 0; j < n; j++)
            ss += v[j] * v[j];
        const double std = sqrt(2.0 / convs[i].fan_out), got = sqrt(ss / (double)n);
        if (fabs(got - std) > 5 * std * sqrt(2.0 / (double)n) + std / (double)n)
            fail_msg("%s: sample std %g, want %g (n = %zu)", convs[i].name, got, std, n);
        ref_assert_close(w, v, n, 0, 0, "same seed, same weights");
        assert_true(memcmp(u, v, n * sizeof *v) != 0);
        free(v), free(w), free(u);
    }
    const double one = 1, zero = 0;
    double ones[16], zeros[16];
    for (int i = 0; i < 16; i++)
        ones[i] = one, zeros[i] = zero;
    assert_tensor_close(clg_module_find_tensor(a, "layer1.0.bn1.weight"), ones, 16, 0, 0, "bn weight");
    assert_tensor_close(clg_module_find_tensor(a, "layer1.0.bn1.bias"), zeros, 16, 0, 0, "bn bias");
    clg_module_free(a);
    clg_module_free(b);
    clg_module_free(c);
}

/* A block alone: an f64 gradient check through both shortcut kinds (identity, and the
 * strided 1x1 conv + BN), every parameter and the input. */
static clg_status block_fn(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    return clg_module_forward(ctx, (clg_module *)user, in[0], y);
}

static void test_basic_block_gradcheck(void **state) {
    clg_context *ctx = *state;
    for (int down = 0; down < 2; down++) {
        clg_module *b = NULL;
        REF_OK(ctx, clg_basic_block_create(ctx, "block", 3, down ? 4 : 3, down ? 2 : 1, 9, &b));
        REF_OK(ctx, clg_module_to_dtype(b, CLG_F64));
        assert_int_equal(clg_module_child_count(b), down ? 6 : 5);
        const int xs[4] = {2, 3, 5, 5};
        clg_tensor *in[16] = {ref_rand_f64(ctx, 4, xs, 41, -1, 1)};
        REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
        const size_t np = clg_module_parameters(b, in + 1, 15);
        assert_int_equal(np, down ? 9 : 6);
        /* Affine parameters away from 1 / 0. */
        for (size_t i = 1; i <= np; i++)
            if (clg_tensor_ndim(in[i]) == 1) REF_OK(ctx, clg_init_uniform_(b, in[i], 0.5, 1.5));
        ref_gradcheck(ctx, block_fn, in, (int)np + 1, b, 1e-6, 1e-6,
                      down ? "basic block, downsample" : "basic block");
        clg_tensor_free(in[0]);
        clg_module_free(b);
    }
}

/* The builder's argument checks. */
static void test_resnet_errors(void **state) {
    clg_context *ctx = *state;
    clg_module *m = (clg_module *)&m;
    const int bad[3] = {1, 0, 1};
    REF_EXPECT(ctx, clg_resnet_small_create(ctx, 3, bad, 10, 1, &m), CLG_INVALID_ARGUMENT);
    assert_null(m);
    REF_EXPECT(ctx, clg_resnet_small_create(ctx, 3, NULL, 10, 1, &m), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_resnet_small_create(ctx, 3, BLOCKS, 0, 1, &m), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_basic_block_create(ctx, "b", 3, 4, 0, 1, &m), CLG_INVALID_ARGUMENT);
    /* A batch of the wrong channel count: the message names the layer. */
    REF_OK(ctx, clg_resnet_small_create(ctx, 3, BLOCKS, 10, 1, &m));
    const int xs[4] = {1, 2, 8, 8};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 3, -1, 1), *y = NULL;
    REF_EXPECT(ctx, clg_module_forward(ctx, m, x, &y), CLG_SHAPE_MISMATCH);
    assert_null(y);
    if (strncmp(clg_context_errmsg(ctx), "conv1: ", 7) != 0)
        fail_msg("message \"%s\" does not start with the layer name", clg_context_errmsg(ctx));
    clg_tensor_free(x);
    clg_module_free(m);
}

/* ---------------------------------------------------------------- fault injection */

/* Builds the model and runs one training forward and backward; frees what it made on failure
 * (the caller frees the model on success). */
static clg_status build_and_step(clg_context *ctx, const clg_tensor *x, const int32_t *t, clg_module **m) {
    clg_tensor *logits = NULL, *loss = NULL;
    clg_status st = clg_resnet_small_create(ctx, 3, BLOCKS, 10, 1, m);
    if (st == CLG_OK) st = clg_module_forward(ctx, *m, x, &logits);
    if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, logits, t, 2, &loss);
    if (st == CLG_OK) st = clg_backward(ctx, loss);
    clg_tensor_free(loss);
    clg_tensor_free(logits);
    if (st != CLG_OK) {
        clg_module_free(*m);
        *m = NULL;
    }
    return st;
}

/* Every device allocation and every enqueue of building the ResNet and its first training
 * step fails in turn (the pool emptied first, so every buffer comes from the driver): each
 * comes back as the right status with the injected message, leaves no device memory in use,
 * and the same context then builds and steps again. */
static void test_faults(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {2, 3, 8, 8};
    const int32_t t[2] = {1, 7};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 8, -1, 1);
    clg_module *m = NULL;
    REF_OK(ctx, build_and_step(ctx, x, t, &m)); /* programs built */
    clg_module_free(m);
    const size_t base = clg_context_pool_stats(ctx).bytes_in_use;
    const clg_fault_kind kinds[2] = {CLG_FAULT_ALLOC, CLG_FAULT_ENQUEUE};
    for (int k = 0; k < 2; k++) {
        clg_context_pool_trim(ctx);
        uint64_t before = clg_context_inject_fault(ctx, kinds[k], 0);
        REF_OK(ctx, build_and_step(ctx, x, t, &m));
        clg_module_free(m);
        const uint64_t total = clg_context_inject_fault(ctx, kinds[k], 0) - before;
        assert_true(total > 20);
        for (uint64_t n = 1; n <= total; n++) {
            clg_context_pool_trim(ctx);
            before = clg_context_inject_fault(ctx, kinds[k], n);
            const clg_status st = build_and_step(ctx, x, t, &m);
            const clg_status want = kinds[k] == CLG_FAULT_ALLOC ? CLG_OUT_OF_DEVICE_MEMORY : CLG_OPENCL_ERROR;
            if (st == CLG_OK)
                fail_msg("fault %d/%llu of %llu was swallowed", k, (unsigned long long)n,
                         (unsigned long long)total);
            if ((st != want && st != CLG_BLAS_ERROR) || !strstr(clg_context_errmsg(ctx), "injected fault"))
                fail_msg("fault %d/%llu came back as %s: %s", k, (unsigned long long)n, clg_status_name(st),
                         clg_context_errmsg(ctx));
            assert_null(m);
            clg_context_inject_fault(ctx, kinds[k], 0);
            if (clg_context_pool_stats(ctx).bytes_in_use != base)
                fail_msg("fault %d/%llu: %zu bytes in use after, %zu before", k, (unsigned long long)n,
                         clg_context_pool_stats(ctx).bytes_in_use, base);
        }
        REF_OK(ctx, build_and_step(ctx, x, t, &m));
        clg_module_free(m);
        print_message("%s faults: %llu in building the ResNet and its first step\n",
                      kinds[k] == CLG_FAULT_ALLOC ? "alloc" : "enqueue", (unsigned long long)total);
    }
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names_match_torch), cmocka_unit_test(test_pytorch_resnet_step),
        cmocka_unit_test(test_freeze_and_zero_grad),    cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_torchvision_init),        cmocka_unit_test(test_basic_block_gradcheck),
        cmocka_unit_test(test_resnet_errors),
    };
    const struct CMUnitTest faults[] = {cmocka_unit_test(test_faults)};
    return REF_RUN_BOTH_STYLES("resnet", tests) |
           cmocka_run_group_tests_name("resnet faults", faults, ref_group_setup, ref_group_teardown);
}
