/* tests/nn/test_containers.c - the containers of src/nn (sequential's index names, module_list,
 * module_dict), the naming and ownership rules of clg_module_add_child (unique siblings, one
 * parent), layer-named error messages, and the parameterless blocks (identity, avg_pool2d,
 * adaptive_avg_pool2d modules). Both kernel styles.
 */
#include "nn_test.h"

static void expect_names(const clg_module *m, const char *const *want, size_t n) {
    clg_named_tensor e[32];
    const size_t got = clg_module_state(m, e, 32);
    if (got != n) fail_msg("state has %zu entries, want %zu", got, n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].name, want[i]) != 0) fail_msg("state entry %zu: %s, want %s", i, e[i].name, want[i]);
}

/* nn.Sequential's names: unnamed children by position, named ones keep their name (the old
 * checkpoints' names), nested containers add their own component. */
static void test_sequential_index_names(void **state) {
    clg_context *ctx = *state;
    clg_module *seq = NULL, *inner = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_linear_module_create(ctx, NULL, 3, 4, true, 1, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "head", 4, 2, false, 2, &m), &m);
    REF_OK(ctx, clg_sequential_create(ctx, &inner));
    add(ctx, inner, clg_batch_norm2d_module_create(ctx, NULL, 2, 1e-5, 0.1, &m), &m);
    REF_OK(ctx, clg_module_add_child(seq, "features", inner));
    static const char *const want[] = {"0.weight",
                                       "0.bias",
                                       "head.weight",
                                       "features.0.weight",
                                       "features.0.bias",
                                       "features.0.running_mean",
                                       "features.0.running_var",
                                       "features.0.num_batches_tracked"};
    expect_names(seq, want, 8);
    assert_string_equal(clg_module_name(clg_module_child(seq, 1)), "1"); /* the relu */
    assert_ptr_equal(clg_module_get_child(seq, "head"), clg_module_child(seq, 2));
    assert_string_equal(clg_module_path(clg_module_child(inner, 0)), "features.0");
    assert_non_null(clg_module_find_tensor(seq, "features.0.running_var"));
    assert_null(clg_module_find_tensor(seq, "features.1.running_var"));
    clg_module_free(seq);
}

/* One owner, unique sibling names: the refusals and who owns the child afterwards. */
static void test_add_child_rules(void **state) {
    clg_context *ctx = *state;
    clg_module *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &a));
    REF_OK(ctx, clg_sequential_create(ctx, &b));
    REF_OK(ctx, clg_linear_module_create(ctx, "fc", 2, 2, true, 1, &c));
    REF_OK(ctx, clg_sequential_add(a, c));
    /* c has a parent: refused, and it stays in a (not moved, not freed). */
    REF_EXPECT(ctx, clg_sequential_add(b, c), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "already belongs"));
    assert_ptr_equal(clg_module_parent(c), a);
    assert_string_equal(clg_module_path(c), "fc");
    /* A second "fc" in a: refused, and the new child freed (the sanitizer run sees a leak). */
    REF_OK(ctx, clg_linear_module_create(ctx, "fc", 2, 2, true, 1, &d));
    REF_EXPECT(ctx, clg_sequential_add(a, d), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "already has a child named \"fc\""));
    /* An index name taken explicitly earlier: the unnamed child at that position collides. */
    REF_OK(ctx, clg_relu_module_create(ctx, &d));
    REF_OK(ctx, clg_module_add_child(b, "1", d));
    REF_OK(ctx, clg_relu_module_create(ctx, &d));
    REF_EXPECT(ctx, clg_sequential_add(b, d), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_child_count(b), 1);
    clg_module_free(a);
    clg_module_free(b);
}

/* ModuleList: index names, no forward of its own; a parent runs its children. */
static void test_module_list(void **state) {
    clg_context *ctx = *state;
    clg_module *list = NULL, *m = NULL, *seq = NULL;
    REF_OK(ctx, clg_module_list_create(ctx, &list));
    for (int i = 0; i < 3; i++) {
        REF_OK(ctx, clg_linear_module_create(ctx, NULL, 2, 2, false, (uint64_t)i, &m));
        REF_OK(ctx, clg_module_list_append(list, m));
    }
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    REF_OK(ctx, clg_module_add_child(seq, "blocks", list));
    static const char *const want[] = {"blocks.0.weight", "blocks.1.weight", "blocks.2.weight"};
    expect_names(seq, want, 3);
    const int xs[2] = {1, 2};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 2, xs, 1, -1, 1), *y = NULL;
    REF_EXPECT(ctx, clg_module_forward(ctx, list, x, &y), CLG_UNSUPPORTED);
    assert_null(y);
    /* The message names the list by its path. */
    assert_int_equal(strncmp(clg_context_errmsg(ctx), "blocks: module_list", 19), 0);
    /* Only a list takes list_append; the child is freed. */
    REF_OK(ctx, clg_relu_module_create(ctx, &m));
    REF_EXPECT(ctx, clg_module_list_append(seq, m), CLG_INVALID_ARGUMENT);
    clg_tensor_free(x);
    clg_module_free(seq);
}

/* ModuleDict: children by key, insertion order, keys non-empty and unique. */
static void test_module_dict(void **state) {
    clg_context *ctx = *state;
    clg_module *dict = NULL, *m = NULL;
    REF_OK(ctx, clg_module_dict_create(ctx, &dict));
    REF_OK(ctx, clg_linear_module_create(ctx, NULL, 2, 3, true, 1, &m));
    REF_OK(ctx, clg_module_dict_set(dict, "value", m));
    REF_OK(ctx, clg_linear_module_create(ctx, "ignored", 2, 3, false, 2, &m));
    REF_OK(ctx, clg_module_dict_set(dict, "key", m));
    static const char *const want[] = {"value.weight", "value.bias", "key.weight"};
    expect_names(dict, want, 3);
    assert_ptr_equal(clg_module_get_child(dict, "key"), m);
    assert_null(clg_module_get_child(dict, "ignored"));
    REF_OK(ctx, clg_relu_module_create(ctx, &m));
    REF_EXPECT(ctx, clg_module_dict_set(dict, "key", m), CLG_INVALID_ARGUMENT); /* freed */
    REF_OK(ctx, clg_relu_module_create(ctx, &m));
    REF_EXPECT(ctx, clg_module_dict_set(dict, "", m), CLG_INVALID_ARGUMENT); /* freed */
    REF_OK(ctx, clg_relu_module_create(ctx, &m));
    REF_EXPECT(ctx, clg_module_dict_set(dict, "a.b", m), CLG_INVALID_ARGUMENT); /* freed */
    /* The dict itself as its own child: refused and left alone. */
    REF_EXPECT(ctx, clg_module_dict_set(dict, "self", dict), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_child_count(dict), 2);
    clg_module_free(dict);
}

/* Issue 12's class 9: the message of an op inside containers names the layer by its path. */
static void test_error_names_the_layer(void **state) {
    clg_context *ctx = *state;
    clg_module *root = NULL, *enc = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &root));
    REF_OK(ctx, clg_sequential_create(ctx, &enc));
    add(ctx, enc, clg_linear_module_create(ctx, "fc1", 4, 30, true, 1, &m), &m);
    add(ctx, enc, clg_relu_module_create(ctx, &m), &m);
    add(ctx, enc, clg_linear_module_create(ctx, "fc2", 20, 10, true, 2, &m), &m); /* 30 in, 20 wanted */
    REF_OK(ctx, clg_module_add_child(root, "encoder", enc));
    const int xs[2] = {2, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 2, xs, 1, -1, 1), *y = NULL;
    REF_EXPECT(ctx, clg_module_forward(ctx, root, x, &y), CLG_SHAPE_MISMATCH);
    const char *msg = clg_context_errmsg(ctx);
    if (strncmp(msg, "encoder.fc2: linear: ", 21) != 0)
        fail_msg("message \"%s\" does not name encoder.fc2", msg);
    /* Once: no second prefix from the containers around it. */
    assert_null(strstr(msg + 1, "encoder"));
    /* A parameterless layer by its index. */
    clg_module *seq = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    REF_EXPECT(ctx, clg_module_forward(ctx, seq, x, &y), CLG_SHAPE_MISMATCH); /* 2-D into a pool */
    if (strncmp(clg_context_errmsg(ctx), "1: max_pool2d: ", 15) != 0)
        fail_msg("message \"%s\" does not name layer 1", clg_context_errmsg(ctx));
    clg_tensor_free(x);
    clg_module_free(seq);
    clg_module_free(root);
}

/* identity passes values and gradients through; the pooling modules are their ops. */
static void test_parameterless_blocks(void **state) {
    clg_context *ctx = *state;
    const int xs[4] = {2, 3, 6, 6};
    clg_tensor *x = ref_rand(ctx, CLG_F64, 4, xs, 4, -1, 1), *y = NULL, *want = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    clg_module *id = NULL, *avg = NULL, *ada = NULL;
    REF_OK(ctx, clg_identity_module_create(ctx, &id));
    REF_OK(ctx, clg_module_forward(ctx, id, x, &y));
    double *xh = ref_to_host_f64(x);
    assert_tensor_close(y, xh, clg_tensor_numel(x), 0, 0, "identity");
    clg_tensor *loss = NULL;
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    for (size_t i = 0; i < clg_tensor_numel(x); i++)
        xh[i] *= 2;
    assert_tensor_close(clg_tensor_grad(x), xh, clg_tensor_numel(x), 1e-15, 0, "identity gradient");
    clg_tensor_free(loss);
    clg_tensor_free(y);

    clg_pool2d_params p = pool(3);
    p.stride_h = p.stride_w = 2;
    p.pad_h = p.pad_w = 1;
    REF_OK(ctx, clg_avg_pool2d_module_create(ctx, p, &avg));
    REF_OK(ctx, clg_module_forward(ctx, avg, x, &y));
    REF_OK(ctx, clg_avg_pool2d(ctx, x, p, &want));
    double *wh = ref_to_host_f64(want);
    assert_tensor_close(y, wh, clg_tensor_numel(want), 0, 0, "avg_pool2d module");
    free(wh);
    clg_tensor_free(y), clg_tensor_free(want);
    REF_OK(ctx, clg_adaptive_avg_pool2d_module_create(ctx, 4, 3, &ada));
    REF_OK(ctx, clg_module_forward(ctx, ada, x, &y));
    REF_OK(ctx, clg_adaptive_avg_pool2d(ctx, x, 4, 3, &want));
    wh = ref_to_host_f64(want);
    assert_tensor_close(y, wh, clg_tensor_numel(want), 0, 0, "adaptive_avg_pool2d module");
    free(wh);
    clg_tensor_free(y), clg_tensor_free(want);
    clg_module *bad = (clg_module *)1;
    REF_EXPECT(ctx, clg_adaptive_avg_pool2d_module_create(ctx, 0, 1, &bad), CLG_INVALID_ARGUMENT);
    assert_null(bad);
    REF_EXPECT(ctx, clg_avg_pool2d_module_create(ctx, pool(0), &bad), CLG_INVALID_ARGUMENT);
    free(xh);
    clg_tensor_free(x);
    clg_module_free(id), clg_module_free(avg), clg_module_free(ada);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential_index_names),
        cmocka_unit_test(test_add_child_rules),
        cmocka_unit_test(test_module_list),
        cmocka_unit_test(test_module_dict),
        cmocka_unit_test(test_error_names_the_layer),
        cmocka_unit_test(test_parameterless_blocks),
    };
    return REF_RUN_BOTH_STYLES("containers", tests);
}
