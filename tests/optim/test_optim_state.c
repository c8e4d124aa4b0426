/* tests/optim/test_optim_state.c - parameter groups and optimizer state (src/optim/
 * optimizer.c): two groups with their own rate and weight decay against a host reference, the
 * weights / no-decay split, the state accessors by PyTorch's names, and an exact resume (N
 * steps, state copied into a fresh optimizer, M more steps equals N + M steps bit for bit) for
 * SGD with momentum and nesterov, Adam and AdamW; both kernel styles.
 */
#include <math.h>
#include <string.h>

#include "ref.h"
#include "ref_style.h"

enum { NP = 3 };
static const int SHAPES[NP][2] = {{3, 4}, {4, 1}, {5, 1}};
static const int NDIMS[NP] = {2, 1, 1};

static void make_params(clg_context *ctx, clg_tensor **p, uint64_t seed) {
    for (int i = 0; i < NP; i++) {
        p[i] = ref_rand_f64(ctx, NDIMS[i], SHAPES[i], seed + (uint64_t)i, -1, 1);
        REF_OK(ctx, clg_tensor_set_requires_grad(p[i], true));
    }
}

/* Step s's gradients: the same for every copy of the model. */
static void set_grads(clg_context *ctx, clg_tensor **p, int s) {
    for (int i = 0; i < NP; i++) {
        clg_tensor_zero_grad(p[i]);
        clg_tensor *g = ref_rand_f64(ctx, NDIMS[i], SHAPES[i], 1000 + 10 * (uint64_t)s + (uint64_t)i, -1, 1);
        REF_OK(ctx, clg_backward_grad(ctx, p[i], g));
        clg_tensor_free(g);
    }
}

static void free_all(clg_tensor **p) {
    for (int i = 0; i < NP; i++)
        clg_tensor_free(p[i]);
}

typedef enum { SGD_MOMENTUM, SGD_NESTEROV, ADAM, ADAMW } kind;

static clg_optimizer *make_opt(clg_context *ctx, kind k, clg_tensor **p) {
    /* group 0: the weight matrix with decay; group 1: the vectors at their own rate, no decay */
    clg_param_group g[2] = {clg_param_group_of(p, 1), clg_param_group_of(p + 1, NP - 1)};
    g[1].lr = 0.003, g[1].weight_decay = 0;
    clg_optimizer *opt = NULL;
    if (k == SGD_MOMENTUM || k == SGD_NESTEROV) {
        clg_sgd_params h = clg_sgd_default_params();
        h.lr = 0.05, h.momentum = 0.9, h.weight_decay = 1e-2, h.nesterov = k == SGD_NESTEROV;
        REF_OK(ctx, clg_sgd_create_groups(ctx, g, 2, h, &opt));
    } else {
        clg_adam_params h = clg_adam_default_params();
        h.lr = 0.01, h.weight_decay = 1e-2, h.decoupled_weight_decay = k == ADAMW;
        REF_OK(ctx, clg_adam_create_groups(ctx, g, 2, h, &opt));
    }
    return opt;
}

/* Groups against PyTorch's SGD rule in double, per group. */
static void test_groups_reference(void **state) {
    clg_context *ctx = *state;
    clg_tensor *p[NP];
    make_params(ctx, p, 1);
    clg_optimizer *opt = make_opt(ctx, SGD_MOMENTUM, p);
    assert_int_equal(clg_optimizer_group_count(opt), 2);
    assert_true(clg_optimizer_group_lr(opt, 0) == 0.05 && clg_optimizer_group_lr(opt, 1) == 0.003);
    assert_true(clg_optimizer_group_weight_decay(opt, 0) == 1e-2 && clg_optimizer_group_weight_decay(opt, 1) == 0);
    assert_true(isnan(clg_optimizer_group_lr(opt, 2)));
    double *w[NP], *buf[NP];
    for (int i = 0; i < NP; i++) {
        w[i] = ref_to_host_f64(p[i]);
        buf[i] = calloc(clg_tensor_numel(p[i]), sizeof(double));
    }
    for (int s = 0; s < 3; s++) {
        set_grads(ctx, p, s);
        REF_OK(ctx, clg_optimizer_step(opt));
        for (int i = 0; i < NP; i++) {
            const double lr = i == 0 ? 0.05 : 0.003, wd = i == 0 ? 1e-2 : 0;
            double *g = ref_to_host_f64(clg_tensor_grad(p[i]));
            for (size_t j = 0; j < clg_tensor_numel(p[i]); j++) {
                double d = g[j];
                if (wd != 0) d += wd * w[i][j];
                buf[i][j] = s == 0 ? d : 0.9 * buf[i][j] + d;
                w[i][j] -= lr * buf[i][j];
            }
            free(g);
        }
    }
    for (int i = 0; i < NP; i++) {
        double *got = ref_to_host_f64(p[i]);
        ref_assert_close(got, w[i], clg_tensor_numel(p[i]), 1e-14, 1e-15, "group step");
        free(got);
        free(w[i]);
        free(buf[i]);
    }
    /* set_group_lr changes one group; set_lr all */
    REF_OK(ctx, clg_optimizer_set_group_lr(opt, 1, 0.5));
    assert_true(clg_optimizer_group_lr(opt, 0) == 0.05 && clg_optimizer_group_lr(opt, 1) == 0.5);
    assert_int_equal(clg_optimizer_set_group_lr(opt, 2, 0.1), CLG_INVALID_ARGUMENT);
    clg_optimizer_set_lr(opt, 0.25);
    assert_true(clg_optimizer_group_lr(opt, 0) == 0.25 && clg_optimizer_group_lr(opt, 1) == 0.25);
    REF_OK(ctx, clg_optimizer_set_group_lr(opt, 1, -1));
    set_grads(ctx, p, 9);
    assert_int_equal(clg_optimizer_step(opt), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "group 1"));
    clg_optimizer_free(opt);
    free_all(p);
}

static void test_decay_split(void **state) {
    clg_context *ctx = *state;
    clg_tensor *p[NP];
    make_params(ctx, p, 1);
    clg_tensor *mixed[NP] = {p[1], p[0], p[2]}, *order[NP];
    clg_param_group g[2];
    assert_int_equal(clg_param_groups_decay_split(mixed, NP, 5e-4, order, g), 2);
    assert_ptr_equal(order[0], p[0]);
    assert_ptr_equal(order[1], p[1]);
    assert_ptr_equal(order[2], p[2]);
    assert_int_equal(g[0].n, 1);
    assert_true(g[0].weight_decay == 5e-4 && isnan(g[0].lr));
    assert_int_equal(g[1].n, 2);
    assert_true(g[1].weight_decay == 0.0);
    assert_int_equal(clg_param_groups_decay_split(p + 1, 2, 5e-4, order, g), 1);
    assert_true(g[0].weight_decay == 0.0 && g[0].n == 2);
    clg_optimizer *opt = NULL;
    REF_OK(ctx, clg_adam_create_groups(ctx, g, 1, clg_adam_default_params(), &opt));
    clg_optimizer_free(opt);
    /* a parameter in two groups */
    clg_param_group twice[2] = {clg_param_group_of(p, 2), clg_param_group_of(p + 1, 2)};
    assert_int_equal(clg_sgd_create_groups(ctx, twice, 2, clg_sgd_default_params(), &opt), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "repeats"));
    clg_param_group bad = clg_param_group_of(p, 1);
    bad.lr = -1;
    assert_int_equal(clg_sgd_create_groups(ctx, &bad, 1, clg_sgd_default_params(), &opt), CLG_INVALID_ARGUMENT);
    assert_null(opt);
    free_all(p);
}

static void test_state_names(void **state) {
    clg_context *ctx = *state;
    clg_tensor *p[NP];
    make_params(ctx, p, 1);
    clg_optimizer *opt = NULL;
    REF_OK(ctx, clg_sgd_create(ctx, p, NP, clg_sgd_default_params(), &opt));
    assert_string_equal(clg_optimizer_kind(opt), "sgd");
    assert_int_equal(clg_optimizer_state_count(opt), 0);
    assert_null(clg_optimizer_state_name(opt, 0));
    clg_optimizer_free(opt);
    opt = make_opt(ctx, SGD_MOMENTUM, p);
    assert_int_equal(clg_optimizer_state_count(opt), 1);
    assert_string_equal(clg_optimizer_state_name(opt, 0), "momentum_buffer");
    assert_null(clg_optimizer_state(opt, 0, 0));
    clg_optimizer_free(opt);
    opt = make_opt(ctx, ADAM, p);
    assert_string_equal(clg_optimizer_kind(opt), "adam");
    assert_int_equal(clg_optimizer_state_count(opt), 2);
    assert_string_equal(clg_optimizer_state_name(opt, 0), "exp_avg");
    assert_string_equal(clg_optimizer_state_name(opt, 1), "exp_avg_sq");
    assert_int_equal(clg_optimizer_param_count(opt), NP);
    assert_ptr_equal(clg_optimizer_param(opt, 2), p[2]);
    assert_int_equal(clg_optimizer_param_group(opt, 2), 1);
    set_grads(ctx, p, 0);
    REF_OK(ctx, clg_optimizer_step(opt));
    assert_non_null(clg_optimizer_state(opt, 1, 1));
    assert_int_equal(clg_optimizer_param_steps(opt, 1), 1);
    /* wrong shape, slot or index */
    assert_int_equal(clg_optimizer_set_state(opt, 0, 0, p[1]), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_optimizer_set_state(opt, 0, 2, p[0]), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_optimizer_set_param_steps(opt, NP, 1), CLG_INVALID_ARGUMENT);
    clg_optimizer_free(opt);
    free_all(p);
}

/* N + M steps equal N steps, the state moved into a fresh optimizer over fresh parameters
 * with the same values, and M more steps: bit for bit. */
static void resume_case(clg_context *ctx, kind k) {
    enum { N = 3, M = 4 };
    clg_tensor *a[NP], *b[NP];
    make_params(ctx, a, 7);
    make_params(ctx, b, 7);
    clg_optimizer *oa = make_opt(ctx, k, a), *ob = make_opt(ctx, k, b);
    for (int s = 0; s < N + M; s++) {
        set_grads(ctx, a, s);
        REF_OK(ctx, clg_optimizer_step(oa));
        if (s < N) {
            set_grads(ctx, b, s);
            REF_OK(ctx, clg_optimizer_step(ob));
        }
    }
    clg_tensor *c[NP];
    for (int i = 0; i < NP; i++) {
        REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, NDIMS[i], SHAPES[i], &c[i]));
        REF_OK(ctx, clg_tensor_copy(c[i], b[i]));
        REF_OK(ctx, clg_tensor_set_requires_grad(c[i], true));
    }
    clg_optimizer *oc = make_opt(ctx, k, c);
    for (size_t i = 0; i < NP; i++) {
        for (size_t s = 0; s < clg_optimizer_state_count(ob); s++)
            REF_OK(ctx, clg_optimizer_set_state(oc, i, s, clg_optimizer_state(ob, i, s)));
        REF_OK(ctx, clg_optimizer_set_param_steps(oc, i, clg_optimizer_param_steps(ob, i)));
    }
    for (int s = N; s < N + M; s++) {
        set_grads(ctx, c, s);
        REF_OK(ctx, clg_optimizer_step(oc));
    }
    for (int i = 0; i < NP; i++) {
        double *x = ref_to_host_f64(a[i]), *y = ref_to_host_f64(c[i]);
        assert_memory_equal(x, y, clg_tensor_numel(a[i]) * sizeof(double));
        free(x);
        free(y);
    }
    clg_optimizer_free(oa);
    clg_optimizer_free(ob);
    clg_optimizer_free(oc);
    free_all(a);
    free_all(b);
    free_all(c);
}

static void test_resume_exact(void **state) {
    clg_context *ctx = *state;
    for (kind k = SGD_MOMENTUM; k <= ADAMW; k++)
        resume_case(ctx, k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groups_reference),
        cmocka_unit_test(test_decay_split),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_resume_exact),
    };
    return REF_RUN_BOTH_STYLES("optim state", tests);
}
