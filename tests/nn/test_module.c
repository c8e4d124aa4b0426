/* tests/nn/test_module.c - the generic module core of src/nn/module.c through the public
 * definition (clg_module_def): a custom module with a learnable scalar and a custom container
 * with a named child, their state names inside a sequential, forward/backward against the
 * closed form, an f64 gradient check, to_dtype, the train hook and kind-state freeing, a
 * two-branch block joined by clg_cat (gradient-checked), and the registration rules. Built-in
 * layers: test_nn.c; containers: test_containers.c.
 */
#include "nn_test.h"

/* ---------------------------------------------------------------- a custom module: y = alpha * x */

/* Kind state: counts what the core tells the module, so the test can see the hooks run. */
typedef struct scale_state {
    int *freed; /* incremented by the free hook */
    int trains, evals;
} scale_state;

/* alpha is a (1, 1) parameter, so y = alpha * x is clg_linear of x viewed as a column of
 * one-feature rows: public ops only, and both of its gradients come from linear's backward. */
static clg_status scale_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    const int col[2] = {(int)clg_tensor_numel(x), 1};
    clg_tensor *xc = NULL, *yc = NULL;
    clg_status st = clg_reshape(ctx, x, 2, col, &xc);
    if (st == CLG_OK) st = clg_linear(ctx, xc, clg_module_get_tensor(m, "alpha"), NULL, &yc);
    if (st == CLG_OK) st = clg_reshape(ctx, yc, clg_tensor_ndim(x), clg_tensor_shape(x), out);
    clg_tensor_free(yc);
    clg_tensor_free(xc);
    return st;
}

static void scale_free(void *state) { (*((scale_state *)state)->freed)++; }

static void scale_train(clg_module *m, bool training) {
    scale_state *s = clg_module_kind_state(m);
    /* The core sets the flag before it calls the hook. */
    assert_int_equal(clg_module_is_training(m), training);
    if (training)
        s->trains++;
    else
        s->evals++;
}

static const clg_module_def scale_def = {.kind = "scale",
                                         .state_size = sizeof(scale_state),
                                         .forward = scale_forward,
                                         .free = scale_free,
                                         .train = scale_train};

/* A scale module named name with alpha = value and a persistent buffer "initial" (a copy). */
static clg_module *scale_create(clg_context *ctx, const char *name, double value, int *freed) {
    clg_module *m = NULL;
    REF_OK(ctx, clg_module_create(ctx, &scale_def, name, &m));
    ((scale_state *)clg_module_kind_state(m))->freed = freed;
    const int shape[2] = {1, 1};
    clg_tensor *alpha = NULL, *initial = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, shape, &alpha));
    REF_OK(ctx, clg_tensor_fill(alpha, value));
    REF_OK(ctx, clg_tensor_cast(alpha, CLG_F32, &initial));
    /* Registered buffer first: the state still lists parameters before buffers. */
    REF_OK(ctx, clg_module_add_buffer(m, "initial", initial, true));
    REF_OK(ctx, clg_module_add_parameter(m, "alpha", alpha));
    assert_true(clg_tensor_requires_grad(alpha)); /* registration made it a parameter */
    return m;
}

/* ---------------------------------------------------------------- a custom container: y = x + body(x) */

static clg_status residual_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    clg_tensor *b = NULL;
    clg_status st = clg_module_forward(ctx, clg_module_child(m, 0), x, &b);
    if (st == CLG_OK) st = clg_add(ctx, x, b, out);
    clg_tensor_free(b);
    return st;
}

static const clg_module_def residual_def = {.kind = "residual", .forward = residual_forward};

/* fc(3 -> 3) -> block(residual over "body": linear 3 -> 3) -> scale: names at three depths. */
static clg_module *model(clg_context *ctx, int *freed) {
    clg_module *seq = NULL, *m = NULL, *block = NULL, *body = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_linear_module_create(ctx, "fc", 3, 3, true, 3, &m), &m);
    REF_OK(ctx, clg_module_create(ctx, &residual_def, "block", &block));
    /* Created as "lin", added as "body": the name given to add_child wins. */
    REF_OK(ctx, clg_linear_module_create(ctx, "lin", 3, 3, false, 4, &body));
    REF_OK(ctx, clg_module_add_child(block, "body", body));
    assert_ptr_equal(clg_module_parent(body), block);
    assert_string_equal(clg_module_name(body), "body");
    REF_OK(ctx, clg_sequential_add(seq, block));
    REF_OK(ctx, clg_sequential_add(seq, scale_create(ctx, "scale", 2.0, freed)));
    return seq;
}

static const char *const STATE[] = {"fc.weight", "fc.bias", "block.body.weight", "scale.alpha",
                                    "scale.initial"};

static void test_custom_state_names(void **state) {
    clg_context *ctx = *state;
    int freed = 0;
    clg_module *m = model(ctx, &freed);
    clg_named_tensor e[8];
    assert_int_equal(clg_module_state(m, e, 8), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(e[i].name, STATE[i]);
        assert_int_equal(e[i].trainable, i < 4);
    }
    assert_int_equal(clg_module_parameters(m, NULL, 0), 4);
    clg_module *scale = clg_module_child(m, 2);
    assert_ptr_equal(clg_module_def_of(scale), &scale_def);
    assert_ptr_equal(clg_module_get_tensor(scale, "alpha"), e[3].tensor);
    assert_null(clg_module_get_tensor(m, "alpha")); /* own entries only */
    assert_null(clg_module_child(m, 3));

    /* train/eval reach the custom module and call its hook once per call. */
    scale_state *s = clg_module_kind_state(scale);
    clg_module_train(m, false);
    clg_module_train(m, true);
    assert_int_equal(s->evals, 1);
    assert_int_equal(s->trains, 1);
    clg_module_free(m);
    assert_int_equal(freed, 1);
}

/* scale alone: y = 2 x and, for loss = sum(y^2), dloss/dalpha = 2 alpha sum(x^2), dx = 2 alpha^2 x. */
static void test_custom_forward_backward(void **state) {
    clg_context *ctx = *state;
    int freed = 0;
    clg_module *m = scale_create(ctx, NULL, 2.0, &freed);
    const int xs[3] = {2, 3, 2};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 3, xs, 5, -1, 1), *y = NULL, *loss = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_module_forward(ctx, m, x, &y));
    assert_int_equal(clg_tensor_ndim(y), 3);
    double *xv = ref_to_host_f64(x), want[12], sumsq = 0;
    for (int i = 0; i < 12; i++) {
        want[i] = 2 * xv[i];
        sumsq += xv[i] * xv[i];
    }
    assert_tensor_close(y, want, 12, 1e-6, 0, "scale forward");
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    const double dalpha = 2 * 2.0 * sumsq;
    assert_tensor_close(clg_tensor_grad(clg_module_get_tensor(m, "alpha")), &dalpha, 1, 1e-5, 0, "dalpha");
    for (int i = 0; i < 12; i++)
        want[i] = 2 * 4.0 * xv[i];
    assert_tensor_close(clg_tensor_grad(x), want, 12, 1e-5, 1e-6, "dx");
    free(xv);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(x);
    clg_module_free(m);
    assert_int_equal(freed, 1);
}

static clg_status module_fn(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    return clg_module_forward(ctx, (clg_module *)user, in[0], y);
}

/* to_dtype converts every parameter and buffer of the custom modules (values kept), and the
 * whole model then passes an f64 gradient check, the input and all four parameters. */
static void test_custom_to_dtype_gradcheck(void **state) {
    clg_context *ctx = *state;
    int freed = 0;
    clg_module *m = model(ctx, &freed);
    clg_named_tensor e[8];
    double *before[5];
    assert_int_equal(clg_module_state(m, e, 8), 5);
    for (size_t i = 0; i < 5; i++)
        before[i] = ref_to_host_f64(e[i].tensor);
    REF_OK(ctx, clg_module_to_dtype(m, CLG_F64));
    assert_int_equal(clg_module_dtype(clg_module_child(clg_module_child(m, 1), 0)), CLG_F64);
    assert_int_equal(clg_module_state(m, e, 8), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(e[i].name, STATE[i]);
        assert_int_equal(clg_tensor_dtype(e[i].tensor), CLG_F64);
        assert_int_equal(clg_tensor_requires_grad(e[i].tensor), e[i].trainable);
        assert_tensor_close(e[i].tensor, before[i], clg_tensor_numel(e[i].tensor), 0, 0, e[i].name);
        free(before[i]);
    }
    const int xs[2] = {4, 3};
    clg_tensor *in[5] = {ref_rand_f64(ctx, 2, xs, 7, -1, 1)};
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
    assert_int_equal(clg_module_parameters(m, in + 1, 4), 4);
    ref_gradcheck(ctx, module_fn, in, 5, m, 1e-6, 1e-6, "linear-residual-scale");
    clg_tensor_free(in[0]);
    clg_module_free(m);
    assert_int_equal(freed, 1);
}

/* ---------------------------------------------------------------- a two-branch block with concat */

/* y = cat(branch3x3(x), branch1x1(x)) along channels, GoogLeNet-style: a module that is not a
 * chain, written with the public API only. Its children are found by name, so the forward
 * does not depend on the order they were added in. */
static clg_status mixed_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    clg_tensor *a = NULL, *b = NULL;
    clg_status st = clg_module_forward(ctx, clg_module_get_child(m, "branch3x3"), x, &a);
    if (st == CLG_OK) st = clg_module_forward(ctx, clg_module_get_child(m, "branch1x1"), x, &b);
    const clg_tensor *parts[2] = {a, b};
    if (st == CLG_OK) st = clg_cat(ctx, 2, parts, 1, out);
    clg_tensor_free(a);
    clg_tensor_free(b);
    return st;
}

static const clg_module_def mixed_def = {.kind = "mixed", .forward = mixed_forward};

/* (N, 2, 4, 4) -> mixed: branch3x3 = sequential(conv 2->3 3x3 pad 1, relu), branch1x1 = conv
 * 2->2 1x1 -> (N, 5, 4, 4) -> flatten -> fc (80 -> 3). */
static clg_module *mixed_model(clg_context *ctx) {
    clg_module *root = NULL, *mixed = NULL, *b3 = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &root));
    REF_OK(ctx, clg_module_create(ctx, &mixed_def, "mixed", &mixed));
    REF_OK(ctx, clg_sequential_create(ctx, &b3));
    add(ctx, b3, clg_conv2d_module_create(ctx, NULL, 2, 3, 3, 3, pad(1), true, 21, &m), &m);
    add(ctx, b3, clg_relu_module_create(ctx, &m), &m);
    REF_OK(ctx, clg_module_add_child(mixed, "branch3x3", b3));
    REF_OK(ctx, clg_conv2d_module_create(ctx, NULL, 2, 2, 1, 1, pad(0), true, 22, &m));
    REF_OK(ctx, clg_module_add_child(mixed, "branch1x1", m));
    REF_OK(ctx, clg_sequential_add(root, mixed));
    add(ctx, root, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, root, clg_linear_module_create(ctx, "fc", 80, 3, true, 23, &m), &m);
    return root;
}

static void test_two_branch_concat(void **state) {
    clg_context *ctx = *state;
    clg_module *net = mixed_model(ctx);
    static const char *const names[] = {"mixed.branch3x3.0.weight", "mixed.branch3x3.0.bias",
                                        "mixed.branch1x1.weight", "mixed.branch1x1.bias", "fc.weight", "fc.bias"};
    clg_named_tensor e[8];
    assert_int_equal(clg_module_state(net, e, 8), 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(e[i].name, names[i]);
    assert_int_equal(clg_module_parameter_count(net), 3 * 2 * 9 + 3 + 2 * 2 + 2 + 80 * 3 + 3);
    REF_OK(ctx, clg_module_to_dtype(net, CLG_F64));
    const int xs[4] = {2, 2, 4, 4};
    clg_tensor *in[7] = {ref_rand_f64(ctx, 4, xs, 71, -1, 1)}, *y = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
    /* The block alone: 3 + 2 channels. */
    REF_OK(ctx, clg_module_forward(ctx, clg_module_child(net, 0), in[0], &y));
    assert_int_equal(clg_tensor_shape(y)[1], 5);
    clg_tensor_free(y);
    assert_int_equal(clg_module_parameters(net, in + 1, 6), 6);
    ref_gradcheck(ctx, module_fn, in, 7, net, 1e-6, 1e-6, "two-branch concat block");
    /* zero_grad over the module, as PyTorch's set_to_none. */
    assert_non_null(clg_tensor_grad(in[1]));
    clg_module_zero_grad(net);
    for (int i = 1; i < 7; i++)
        assert_null(clg_tensor_grad(in[i]));
    clg_tensor_free(in[0]);
    clg_module_free(net);
}

/* ---------------------------------------------------------------- registration rules */

static void test_registration_errors(void **state) {
    clg_context *ctx = *state;
    clg_module *m = (clg_module *)&m;
    assert_int_equal(clg_module_create(ctx, NULL, "x", &m), CLG_INVALID_ARGUMENT);
    assert_null(m);
    const clg_module_def no_forward = {.kind = "broken"};
    assert_int_equal(clg_module_create(ctx, &no_forward, "x", &m), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_create(NULL, &scale_def, "x", &m), CLG_INVALID_ARGUMENT);

    int freed = 0;
    clg_module *s = scale_create(ctx, "s", 1.0, &freed);
    const int one = 1;
    clg_tensor *t = NULL;
    /* A taken leaf, a dotted or empty leaf, a NULL tensor: refused, the tensor freed. */
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &one, &t));
    assert_int_equal(clg_module_add_parameter(s, "alpha", t), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "already"));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &one, &t));
    assert_int_equal(clg_module_add_buffer(s, "a.b", t, true), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &one, &t));
    assert_int_equal(clg_module_add_buffer(s, "", t, false), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_add_parameter(s, "beta", NULL), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &one, &t));
    assert_int_equal(clg_module_add_parameter(NULL, "beta", t), CLG_INVALID_ARGUMENT);

    /* A non-persistent buffer: converted by to_dtype, found by name, absent from the state. */
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &one, &t));
    REF_OK(ctx, clg_module_add_buffer(s, "scratch", t, false));
    assert_int_equal(clg_module_state(s, NULL, 0), 2);
    REF_OK(ctx, clg_module_to_dtype(s, CLG_F64));
    assert_int_equal(clg_tensor_dtype(clg_module_get_tensor(s, "scratch")), CLG_F64);

    /* Children: one owner; not itself nor an ancestor (both left with the caller); a dotted
     * name refused with the child freed. */
    clg_module *outer = NULL, *inner = NULL, *c = NULL;
    REF_OK(ctx, clg_module_create(ctx, &residual_def, "outer", &outer));
    REF_OK(ctx, clg_module_create(ctx, &residual_def, "inner", &inner));
    REF_OK(ctx, clg_module_add_child(outer, NULL, inner));
    assert_int_equal(clg_module_add_child(inner, NULL, outer), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_add_child(inner, NULL, inner), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_add_child(outer, NULL, inner), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "already"));
    assert_int_equal(clg_module_add_child(outer, NULL, NULL), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg_relu_module_create(ctx, &c));
    assert_int_equal(clg_module_add_child(outer, "a.b", c), CLG_INVALID_ARGUMENT); /* c freed */
    /* Re-parenting renames the whole subtree: s's state gets outer.inner.s's prefix. */
    REF_OK(ctx, clg_module_add_child(inner, NULL, s));
    clg_named_tensor e[4];
    assert_int_equal(clg_module_state(outer, e, 4), 2);
    assert_string_equal(e[0].name, "outer.inner.s.alpha");
    assert_string_equal(e[1].name, "outer.inner.s.initial");
    clg_module_free(outer);
    assert_int_equal(freed, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_custom_state_names),
        cmocka_unit_test(test_custom_forward_backward),
        cmocka_unit_test(test_custom_to_dtype_gradcheck),
        cmocka_unit_test(test_two_branch_concat),
        cmocka_unit_test(test_registration_errors),
    };
    return REF_RUN_BOTH_STYLES("module", tests);
}
