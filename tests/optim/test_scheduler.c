/* tests/optim/test_scheduler.c - learning-rate schedules (src/optim/scheduler.c): every kind's
 * rates step by step against PyTorch's (tests/fixtures/optim.safetensors, two groups for
 * one-cycle and warm-up + cosine), resuming from a step, lr_at, and bad parameters.
 */
#include <math.h>

#include "optim_test.h"

/* PyTorch steps most schedules by chainable updates (one rounding per step), clgrad by closed
 * forms: they agree to a few ulps per step, at most ~25 steps here. */
static const double RTOL = 1e-12, ATOL = 1e-15;

typedef struct sched_case {
    const char *name;
    clg_lr_scheduler_params p;
    double lr[2];
    size_t groups;
} sched_case;

static clg_optimizer *make_opt(clg_context *ctx, clg_tensor **w, const double *lr, size_t groups) {
    const int shape[1] = {1};
    clg_param_group g[2];
    for (size_t i = 0; i < groups; i++) {
        REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, shape, &w[i]));
        g[i] = clg_param_group_of(&w[i], 1);
        g[i].lr = lr[i];
    }
    clg_optimizer *opt = NULL;
    REF_OK(ctx, clg_sgd_create_groups(ctx, g, groups, clg_sgd_default_params(), &opt));
    return opt;
}

static void run_case(clg_context *ctx, const clg_st_file *f, const sched_case *c) {
    char name[64];
    snprintf(name, sizeof name, "sched.%s", c->name);
    const clg_st_entry *e = NULL;
    double *want = optim_fixture_f64(f, name, &e);
    assert_int_equal(e->ndim, 2);
    assert_int_equal((size_t)e->shape[0], c->groups);
    const int steps = e->shape[1];
    clg_tensor *w[2] = {NULL, NULL};
    clg_optimizer *opt = make_opt(ctx, w, c->lr, c->groups);
    clg_lr_scheduler *s = NULL;
    REF_OK(ctx, clg_lr_scheduler_create(opt, &c->p, &s));
    double *got = calloc((size_t)steps * c->groups, sizeof *got);
    assert_non_null(got);
    for (int t = 0; t < steps; t++) {
        if (t > 0) REF_OK(ctx, clg_lr_scheduler_step(s));
        assert_int_equal(clg_lr_scheduler_last_step(s), t);
        for (size_t g = 0; g < c->groups; g++) {
            got[g * (size_t)steps + (size_t)t] = clg_optimizer_group_lr(opt, g);
            assert_true(clg_lr_scheduler_lr_at(s, g, t) == clg_optimizer_group_lr(opt, g));
        }
    }
    ref_assert_close(got, want, (size_t)steps * c->groups, RTOL, ATOL, name);

    /* Resuming at any step gives the same rates as stepping there. */
    clg_lr_scheduler *r = NULL;
    for (size_t g = 0; g < c->groups; g++)
        REF_OK(ctx, clg_optimizer_set_group_lr(opt, g, c->lr[g]));
    REF_OK(ctx, clg_lr_scheduler_create(opt, &c->p, &r));
    for (int t = steps - 1; t >= 0; t -= 3) {
        REF_OK(ctx, clg_lr_scheduler_set_last_step(r, t));
        for (size_t g = 0; g < c->groups; g++)
            assert_true(clg_optimizer_group_lr(opt, g) == got[g * (size_t)steps + (size_t)t]);
    }
    clg_lr_scheduler_free(r);
    clg_lr_scheduler_free(s);
    clg_optimizer_free(opt);
    for (size_t g = 0; g < c->groups; g++)
        clg_tensor_free(w[g]);
    free(got);
    free(want);
}

static void test_pytorch_rates(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    optim_fixture_read(&f);
    static const int64_t milestones[] = {2, 5, 9};
    sched_case cases[6];
    size_t n = 0;
    clg_lr_scheduler_params p = clg_lr_scheduler_default_params(CLG_LR_STEP);
    p.step_size = 3, p.gamma = 0.5;
    cases[n++] = (sched_case){"step", p, {0.1, 0}, 1};
    p = clg_lr_scheduler_default_params(CLG_LR_MULTISTEP);
    p.milestones = milestones, p.n_milestones = 3, p.gamma = 0.1;
    cases[n++] = (sched_case){"multistep", p, {0.1, 0}, 1};
    p = clg_lr_scheduler_default_params(CLG_LR_EXPONENTIAL);
    p.gamma = 0.9;
    cases[n++] = (sched_case){"exponential", p, {0.1, 0}, 1};
    p = clg_lr_scheduler_default_params(CLG_LR_COSINE);
    p.t_max = 10, p.eta_min = 0.001;
    cases[n++] = (sched_case){"cosine", p, {0.1, 0}, 1};
    p = clg_lr_scheduler_default_params(CLG_LR_ONE_CYCLE);
    p.total_steps = 20;
    cases[n++] = (sched_case){"one_cycle", p, {0.1, 0.02}, 2};
    p = clg_lr_scheduler_default_params(CLG_LR_COSINE);
    p.t_max = 10, p.warmup_steps = 4, p.warmup_start_factor = 0.25;
    cases[n++] = (sched_case){"warmup_cosine", p, {0.1, 0.02}, 2};
    for (size_t i = 0; i < n; i++)
        run_case(ctx, &f, &cases[i]);
    clg_st_file_free(&f);
}

static void expect_bad(clg_context *ctx, clg_optimizer *opt, clg_lr_scheduler_params p, const char *needle) {
    clg_lr_scheduler *s = (clg_lr_scheduler *)&p; /* must come back NULL */
    assert_int_equal(clg_lr_scheduler_create(opt, &p, &s), CLG_INVALID_ARGUMENT);
    assert_null(s);
    if (!strstr(clg_context_errmsg(ctx), needle))
        fail_msg("message \"%s\" does not mention \"%s\"", clg_context_errmsg(ctx), needle);
}

static void test_bad_parameters(void **state) {
    clg_context *ctx = *state;
    clg_tensor *w[1];
    const double lr[1] = {0.1};
    clg_optimizer *opt = make_opt(ctx, w, lr, 1);
    clg_lr_scheduler_params p = clg_lr_scheduler_default_params(CLG_LR_STEP);
    p.step_size = 0;
    expect_bad(ctx, opt, p, "step_size");
    p = clg_lr_scheduler_default_params(CLG_LR_EXPONENTIAL);
    p.gamma = NAN;
    expect_bad(ctx, opt, p, "gamma");
    static const int64_t down[] = {5, 2};
    p = clg_lr_scheduler_default_params(CLG_LR_MULTISTEP);
    p.milestones = down, p.n_milestones = 2;
    expect_bad(ctx, opt, p, "milestones");
    p = clg_lr_scheduler_default_params(CLG_LR_COSINE);
    p.t_max = 0;
    expect_bad(ctx, opt, p, "t_max");
    p = clg_lr_scheduler_default_params(CLG_LR_ONE_CYCLE);
    p.total_steps = 1;
    expect_bad(ctx, opt, p, "total_steps");
    p.total_steps = 10, p.pct_start = 1.5;
    expect_bad(ctx, opt, p, "pct_start");
    p = clg_lr_scheduler_default_params(CLG_LR_CONSTANT);
    p.warmup_steps = 3, p.warmup_start_factor = 0;
    expect_bad(ctx, opt, p, "warmup_start_factor");
    p.kind = (clg_lr_schedule)99;
    expect_bad(ctx, opt, p, "kind");

    /* One-cycle past total_steps fails (PyTorch raises) and leaves the rate alone. */
    p = clg_lr_scheduler_default_params(CLG_LR_ONE_CYCLE);
    p.total_steps = 4;
    clg_lr_scheduler *s = NULL;
    REF_OK(ctx, clg_lr_scheduler_create(opt, &p, &s));
    for (int t = 1; t <= 4; t++)
        REF_OK(ctx, clg_lr_scheduler_step(s));
    const double last = clg_optimizer_lr(opt);
    assert_int_equal(clg_lr_scheduler_step(s), CLG_INVALID_ARGUMENT);
    assert_true(clg_optimizer_lr(opt) == last);
    assert_int_equal(clg_lr_scheduler_last_step(s), 4);
    assert_int_equal(clg_lr_scheduler_set_last_step(s, -1), CLG_INVALID_ARGUMENT);
    assert_true(isnan(clg_lr_scheduler_lr_at(s, 1, 0)));
    clg_lr_scheduler_free(s);
    assert_int_equal(clg_lr_scheduler_create(NULL, &p, &s), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_lr_scheduler_step(NULL), CLG_INVALID_ARGUMENT);
    clg_lr_scheduler_free(NULL);
    clg_optimizer_free(opt);
    clg_tensor_free(w[0]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_rates),
        cmocka_unit_test(test_bad_parameters),
    };
    return cmocka_run_group_tests_name("scheduler", tests, ref_group_setup, ref_group_teardown);
}
