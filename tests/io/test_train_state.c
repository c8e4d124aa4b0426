/* tests/io/test_train_state.c - the training-state file (src/io/train_state.c): N + M steps
 * equal N steps, save, everything rebuilt from scratch, load, M steps, bit for bit (a model
 * with batch norm and dropout; SGD nesterov with two groups and a warm-up + cosine schedule;
 * Adam; AdamW); the file's layout (model names as clg_module_save writes them, optim.* entries,
 * counters in __metadata__); loads that must fail leave everything as it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

enum { N = 3, M = 4, BATCH = 8 };
typedef enum { SGD, ADAM, ADAMW } kind;

typedef struct run {
    clg_module *model;
    clg_optimizer *opt;
    clg_lr_scheduler *sched;
} run;

/* Creates one layer (expr writes m) and appends it, unless an earlier step failed. */
#define ADD(expr)                                    \
    do {                                             \
        if (st == CLG_OK && (st = (expr)) == CLG_OK) \
            st = clg_sequential_add(seq, m);         \
    } while (0)

static void build(clg_context *ctx, kind k, run *r) {
    clg_module *seq, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    clg_conv2d_params cp = clg_conv2d_default_params();
    cp.pad_h = cp.pad_w = 1;
    clg_status st = CLG_OK;
    ADD(clg_conv2d_module_create(ctx, "conv", 1, 4, 3, 3, cp, true, 5, &m));
    ADD(clg_batch_norm2d_module_create(ctx, "bn", 4, 1e-5, 0.1, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_flatten_module_create(ctx, &m));
    ADD(clg_dropout_module_create(ctx, 0.3, 77, &m));
    ADD(clg_linear_module_create(ctx, "fc", 4 * 6 * 6, 3, true, 6, &m));
    REF_OK(ctx, st);
    r->model = seq;
    clg_tensor *params[16], *order[16];
    const size_t np = clg_module_parameters(seq, params, 16);
    clg_param_group g[2];
    const size_t ng = clg_param_groups_decay_split(params, np, 1e-3, order, g);
    if (k == SGD) {
        clg_sgd_params sp = clg_sgd_default_params();
        sp.lr = 0.05, sp.momentum = 0.9, sp.nesterov = true;
        REF_OK(ctx, clg_sgd_create_groups(ctx, g, ng, sp, &r->opt));
        clg_lr_scheduler_params lp = clg_lr_scheduler_default_params(CLG_LR_COSINE);
        lp.t_max = 5, lp.warmup_steps = 2, lp.warmup_start_factor = 0.1;
        REF_OK(ctx, clg_lr_scheduler_create(r->opt, &lp, &r->sched));
    } else {
        clg_adam_params ap = clg_adam_default_params();
        ap.lr = 0.01, ap.decoupled_weight_decay = k == ADAMW;
        REF_OK(ctx, clg_adam_create_groups(ctx, g, ng, ap, &r->opt));
        r->sched = NULL;
    }
}

static void free_run(run *r) {
    clg_lr_scheduler_free(r->sched);
    clg_optimizer_free(r->opt);
    clg_module_free(r->model);
}

static void step(clg_context *ctx, run *r, int s) {
    const int xs[4] = {BATCH, 1, 6, 6};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 100 + (uint64_t)s, -1, 1), *y, *loss;
    int32_t labels[BATCH];
    for (int i = 0; i < BATCH; i++)
        labels[i] = (i + s) % 3;
    REF_OK(ctx, clg_module_forward(ctx, r->model, x, &y));
    REF_OK(ctx, clg_softmax_cross_entropy(ctx, y, labels, BATCH, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    REF_OK(ctx, clg_optimizer_step(r->opt));
    clg_optimizer_zero_grad(r->opt);
    if (r->sched) REF_OK(ctx, clg_lr_scheduler_step(r->sched));
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

/* Every state value of the model, as bytes, for a bit-for-bit comparison. */
static void assert_same_state(const run *a, const run *b) {
    clg_named_tensor ea[32], eb[32];
    const size_t n = clg_module_state(a->model, ea, 32);
    assert_int_equal(clg_module_state(b->model, eb, 32), n);
    for (size_t i = 0; i < n; i++) {
        double *x = ref_to_host_f64(ea[i].tensor), *y = ref_to_host_f64(eb[i].tensor);
        if (memcmp(x, y, clg_tensor_numel(ea[i].tensor) * sizeof *x)) fail_msg("%s differs after the resume", ea[i].name);
        free(x);
        free(y);
    }
}

static void resume_case(clg_context *ctx, kind k, const char *path) {
    run whole, first, resumed;
    build(ctx, k, &whole);
    for (int s = 0; s < N + M; s++)
        step(ctx, &whole, s);
    build(ctx, k, &first);
    for (int s = 0; s < N; s++)
        step(ctx, &first, s);
    const clg_train_counters c = {.epoch = 2, .batch = 5, .step = N};
    REF_OK(ctx, clg_train_state_save(ctx, path, first.model, first.opt, first.sched, &c));
    free_run(&first);
    build(ctx, k, &resumed); /* fresh weights, fresh optimizer, schedule at step 0, dropout at draw 0 */
    clg_train_counters got = {0};
    REF_OK(ctx, clg_train_state_load(ctx, path, resumed.model, resumed.opt, resumed.sched, &got));
    assert_true(got.epoch == 2 && got.batch == 5 && got.step == N);
    for (int s = N; s < N + M; s++)
        step(ctx, &resumed, s);
    assert_same_state(&whole, &resumed);
    free_run(&whole);
    free_run(&resumed);
}

static void test_resume_exact(void **state) {
    clg_context *ctx = *state;
    char dir[] = "/tmp/clgrad-train-state-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    for (kind k = SGD; k <= ADAMW; k++)
        resume_case(ctx, k, path);
    ref_rm_rf(dir);
}

static const char *meta(const clg_st_file *f, const char *key) {
    for (size_t i = 0; i < f->n_metadata; i++)
        if (!strcmp(f->metadata[2 * i], key)) return f->metadata[2 * i + 1];
    return NULL;
}

static bool has(const clg_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_entries; i++)
        if (!strcmp(f->entries[i].name, name)) return true;
    return false;
}

static void test_layout_and_refusals(void **state) {
    clg_context *ctx = *state;
    char dir[] = "/tmp/clgrad-train-state-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], plain[256];
    snprintf(path, sizeof path, "%s/state.safetensors", dir);
    snprintf(plain, sizeof plain, "%s/model.safetensors", dir);
    run r;
    build(ctx, SGD, &r);
    step(ctx, &r, 0);
    const clg_train_counters c = {.epoch = 1, .batch = 0, .step = 1};
    REF_OK(ctx, clg_train_state_save(ctx, path, r.model, r.opt, r.sched, &c));
    clg_st_file f;
    char err[256];
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    assert_true(has(&f, "conv.weight") && has(&f, "bn.running_mean") && has(&f, "fc.bias"));
    assert_true(has(&f, "optim.conv.weight.momentum_buffer") && has(&f, "optim.fc.bias.momentum_buffer"));
    assert_string_equal(meta(&f, "format"), "clgrad-train-state-1");
    assert_string_equal(meta(&f, "optimizer"), "sgd");
    assert_string_equal(meta(&f, "sgd.nesterov"), "true");
    assert_string_equal(meta(&f, "optim.fc.weight.step"), "1");
    assert_string_equal(meta(&f, "rng.4"), "1"); /* the dropout, child 4, drew once */
    assert_string_equal(meta(&f, "train.step"), "1");
    assert_string_equal(meta(&f, "sched.last_step"), "1");
    clg_st_file_free(&f);

    /* refusals leave the model as it was */
    run adam;
    build(ctx, ADAM, &adam);
    double *before = ref_to_host_f64(clg_module_find_tensor(adam.model, "conv.weight"));
    clg_train_counters got;
    assert_int_equal(clg_train_state_load(ctx, path, adam.model, adam.opt, NULL, &got), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "saved with sgd"));
    REF_OK(ctx, clg_module_save(ctx, adam.model, plain));
    assert_int_equal(clg_train_state_load(ctx, plain, adam.model, adam.opt, NULL, &got), CLG_BAD_FORMAT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "not a training state"));
    double *after = ref_to_host_f64(clg_module_find_tensor(adam.model, "conv.weight"));
    assert_memory_equal(before, after, 36 * sizeof *before);
    free(before);
    free(after);
    assert_int_equal(clg_train_state_load(ctx, "/nonexistent/x", r.model, r.opt, r.sched, &got), CLG_IO_ERROR);
    free_run(&adam);
    free_run(&r);
    ref_rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_layout_and_refusals),
    };
    return cmocka_run_group_tests_name("train state", tests, ref_group_setup, ref_group_teardown);
}
