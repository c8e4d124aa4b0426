/* tests/optim/test_multi.c - the multi-tensor optimizer step (src/optim/multi.c, the *_multi
 * kernels of cl/optim/) gives the same bits as the per-tensor path: SGD (plain, weight decay,
 * momentum, dampening, nesterov) and Adam / AdamW, f64 and f32, 4 and 16 slots per launch,
 * three parameter groups (two with equal rates, so they share launches), parameters that
 * miss steps (their own Adam step counts and SGD "first" buffers), one f32 parameter among
 * f64 ones, two parameters sharing one buffer, and sizes that put CPU-style runs across
 * tensor boundaries. Parameters and optimizer state are compared bit for bit after every
 * step, and the launches per step are counted with the profiler. Also clip_grad_norm and
 * clip_grad_value, batched against per-tensor launches.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"
#include "ref_style.h"

enum { NT = 21, STEPS = 4, MIXED = 7, VIEW = 20 };
/* Around CPU style's 1024-element runs, and small ones that share a run. */
static const int SIZES[NT] = {12,   5,  12,   1500, 2800, 7,   1,    1089, 5000, 3, 64,
                              2049, 17, 1024, 1025, 9,    300, 4096, 2,    31,   31};
/* Missing a gradient at step 1 (5) or steps 1-2 (12). */
static bool has_grad(int j, int step) { return !((j == 5 && step == 1) || (j == 12 && step <= 2)); }

typedef struct mt_case {
    const char *name;
    bool adam;
    clg_sgd_params sgd;
    clg_adam_params ad;
} mt_case;

/* grad of sum((p * c)^2) is 2 c^2 p: it changes with p, so every step sees a new gradient. */
static void set_grad(clg_context *ctx, clg_tensor *p, const clg_tensor *c) {
    clg_tensor *y = NULL, *loss = NULL;
    REF_OK(ctx, clg_mul(ctx, p, c, &y));
    REF_OK(ctx, clg_sum_of_squares(ctx, y, &loss));
    REF_OK(ctx, clg_backward(ctx, loss));
    clg_tensor_free(loss);
    clg_tensor_free(y);
}

/* The recorded launches of the optimizer phase, or of ops named `name` when not NULL. */
static uint64_t count_launches(clg_context *ctx, const char *name) {
    clg_profile_row rows[64];
    size_t n = 0;
    REF_OK(ctx, clg_profiler_summary(ctx, rows, 64, &n));
    uint64_t launches = 0;
    for (size_t r = 0; r < n && r < 64; r++)
        if (name ? !strcmp(rows[r].name, name) : !strcmp(rows[r].phase, "optimizer"))
            launches += rows[r].launches;
    return launches;
}

/* Appends every parameter and state tensor (as f64: f32 converts exactly) to snap. */
static void snapshot(const clg_optimizer *opt, double *snap, size_t *at) {
    for (size_t i = 0; i < clg_optimizer_param_count(opt); i++) {
        for (size_t s = 0; s <= clg_optimizer_state_count(opt); s++) {
            const clg_tensor *t = s == 0 ? clg_optimizer_param(opt, i) : clg_optimizer_state(opt, i, s - 1);
            if (!t) continue; /* state not made yet */
            double *h = ref_to_host_f64(t);
            memcpy(snap + *at, h, clg_tensor_numel(t) * sizeof(double));
            *at += clg_tensor_numel(t);
            free(h);
        }
    }
}

/* STEPS steps with k slots per launch (0: per tensor) into snap (sized by the caller). */
static size_t run(clg_context *ctx, const mt_case *mc, clg_dtype dt, int k, double *snap) {
    clg_tensor *p[NT], *c[NT];
    for (int j = 0; j < NT; j++) {
        const clg_dtype tdt = j == MIXED ? CLG_F32 : dt;
        if (j == VIEW) /* a second leaf over parameter VIEW - 1's buffer */
            REF_OK(ctx, clg__tensor_view(p[j - 1], 1, &SIZES[j], &p[j]));
        else
            p[j] = ref_rand(ctx, tdt, 1, &SIZES[j], 300 + (uint64_t)j, -1.5, 1.5);
        c[j] = ref_rand(ctx, tdt, 1, &SIZES[j], 400 + (uint64_t)j, 0.2, 1.2);
        REF_OK(ctx, clg_tensor_set_requires_grad(p[j], true));
    }
    /* Groups 1 and 2 agree on rate and decay, group 0 does not. */
    const double lr0 = mc->adam ? mc->ad.lr : mc->sgd.lr;
    const clg_param_group groups[3] = {
        {p, 10, NAN, NAN}, {p + 10, 8, lr0 * 0.5, 0.01}, {p + 18, 3, lr0 * 0.5, 0.01}};
    clg_optimizer *opt = NULL;
    if (mc->adam)
        REF_OK(ctx, clg_adam_create_groups(ctx, groups, 3, mc->ad, &opt));
    else
        REF_OK(ctx, clg_sgd_create_groups(ctx, groups, 3, mc->sgd, &opt));
    REF_OK(ctx, clg__optimizer_set_mt_k(opt, k));
    size_t at = 0;
    for (int step = 1; step <= STEPS; step++) {
        if (step == 3) REF_OK(ctx, clg_optimizer_set_group_lr(opt, 0, lr0 * 0.25));
        clg_optimizer_zero_grad(opt);
        int with_grad = 0;
        for (int j = 0; j < NT; j++)
            if (has_grad(j, step)) {
                set_grad(ctx, p[j], c[j]);
                with_grad++;
            }
        REF_OK(ctx, clg_profiler_start(ctx));
        REF_OK(ctx, clg_optimizer_step(opt));
        clg_profiler_stop(ctx);
        const uint64_t launches = count_launches(ctx, NULL);
        clg_profiler_reset(ctx);
        if (k == 0)
            assert_int_equal(launches, with_grad);
        else { /* batched: fewer launches, but at least one per k */
            assert_true(launches < (uint64_t)with_grad);
            assert_true(launches >= (uint64_t)((with_grad + k - 1) / k));
        }
        snapshot(opt, snap, &at);
    }
    clg_optimizer_free(opt);
    for (int j = 0; j < NT; j++) {
        clg_tensor_free(p[j]);
        clg_tensor_free(c[j]);
    }
    return at;
}

static void check_case(clg_context *ctx, mt_case mc) {
    size_t total = 0;
    for (int j = 0; j < NT; j++)
        total += (size_t)SIZES[j];
    const size_t cap = total * 3 * STEPS; /* parameter and two state slots */
    const clg_dtype dts[2] = {CLG_F64, CLG_F32};
    for (int d = 0; d < 2; d++) {
        double *want = malloc(cap * sizeof(double)), *got = malloc(cap * sizeof(double));
        assert_non_null(want);
        assert_non_null(got);
        const size_t n = run(ctx, &mc, dts[d], 0, want);
        const int ks[2] = {4, 16};
        for (int kk = 0; kk < 2; kk++) {
            if (ks[kk] > clg__optim_mt_k(ctx, 5, 11)) continue; /* the device's argument space */
            assert_int_equal(run(ctx, &mc, dts[d], ks[kk], got), n);
            for (size_t i = 0; i < n; i++)
                if (memcmp(&got[i], &want[i], sizeof(double)) != 0)
                    fail_msg("%s %s, %d slots: value %zu is %.17g, per-tensor %.17g", mc.name,
                             clg_dtype_name(dts[d]), ks[kk], i, got[i], want[i]);
        }
        free(want);
        free(got);
    }
}

static mt_case sgd_case(const char *name, double momentum, double dampening, double wd, bool nesterov) {
    clg_sgd_params h = clg_sgd_default_params();
    h.lr = 0.05, h.momentum = momentum, h.dampening = dampening, h.weight_decay = wd, h.nesterov = nesterov;
    return (mt_case){.name = name, .adam = false, .sgd = h};
}

static mt_case adam_case(const char *name, double wd, bool decoupled) {
    clg_adam_params h = clg_adam_default_params();
    h.lr = 0.02, h.beta1 = 0.8, h.beta2 = 0.95, h.eps = 1e-6, h.weight_decay = wd;
    h.decoupled_weight_decay = decoupled;
    return (mt_case){.name = name, .adam = true, .ad = h};
}

static void test_sgd(void **state) {
    check_case(*state, sgd_case("sgd", 0, 0, 0, false));
    check_case(*state, sgd_case("sgd weight decay", 0, 0, 0.03, false));
}
static void test_sgd_momentum(void **state) {
    check_case(*state, sgd_case("sgd momentum", 0.9, 0, 0, false));
    check_case(*state, sgd_case("sgd momentum dampening decay", 0.9, 0.3, 0.02, false));
    check_case(*state, sgd_case("sgd nesterov", 0.8, 0, 0.01, true));
}
static void test_adam(void **state) {
    check_case(*state, adam_case("adam", 0, false));
    check_case(*state, adam_case("adam weight decay", 0.05, false));
    check_case(*state, adam_case("adamw", 0.1, true));
}

static void test_slots(void **state) {
    clg_context *ctx = *state;
    const int k = clg__optim_mt_k(ctx, 5, 11);
    assert_true(k == 4 || k == 8 || k == 16); /* every device allows 1024 bytes: 16 fit */
    assert_int_equal(clg__optim_mt_k(ctx, 1000, 0), 0);
    int shape = 4;
    clg_tensor *p = ref_rand(ctx, CLG_F32, 1, &shape, 1, -1, 1);
    clg_optimizer *opt = NULL;
    REF_OK(ctx, clg_sgd_create(ctx, &p, 1, clg_sgd_default_params(), &opt));
    REF_EXPECT(ctx, clg__optimizer_set_mt_k(opt, 3), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg__optimizer_set_mt_k(opt, 32), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg__optimizer_set_mt_k(opt, 0));
    REF_OK(ctx, clg__optimizer_set_mt_k(opt, 4));
    clg_optimizer_free(opt);
    clg_tensor_free(p);
}

/* ---------------------------------------------------------------- clipping */

/* Clips fresh gradients of the NT parameters (listed with parameter 3 twice in a row, so its
 * gradient is scaled twice, one launch after the other; parameter 5 has none) with k slots per
 * launch; every gradient value, then the total norm, into out. */
static size_t clip_run(clg_context *ctx, clg_dtype dt, int k, double norm_type, bool by_value, double *out) {
    clg_tensor *p[NT], *c[NT], *q[NT + 1];
    for (int j = 0; j < NT; j++) {
        p[j] = ref_rand(ctx, dt, 1, &SIZES[j], 500 + (uint64_t)j, -1.5, 1.5);
        c[j] = ref_rand(ctx, dt, 1, &SIZES[j], 600 + (uint64_t)j, 0.2, 1.2);
        REF_OK(ctx, clg_tensor_set_requires_grad(p[j], true));
        if (j != 5) set_grad(ctx, p[j], c[j]);
        q[j < 4 ? j : j + 1] = p[j];
    }
    q[4] = p[3];
    double norm = 0;
    REF_OK(ctx, clg_profiler_start(ctx));
    if (by_value)
        REF_OK(ctx, clg__clip_grad_value_k(q, NT + 1, 0.7, k));
    else
        REF_OK(ctx, clg__clip_grad_norm_k(q, NT + 1, 2.5, norm_type, &norm, k));
    clg_profiler_stop(ctx);
    const uint64_t launches = count_launches(ctx, by_value ? "clip_grad_value" : "clip_grad_norm");
    clg_profiler_reset(ctx);
    /* 21 gradients: 4 before the repeat, 16 from it, 1 */
    const uint64_t per_pass = k == 0 ? NT : 3;
    assert_int_equal(launches, by_value ? per_pass : 2 * per_pass + 1);
    size_t at = 0;
    for (int j = 0; j < NT; j++) {
        if (j == 5) continue;
        double *h = ref_to_host_f64(clg_tensor_grad(p[j]));
        memcpy(out + at, h, (size_t)SIZES[j] * sizeof(double));
        at += (size_t)SIZES[j];
        free(h);
    }
    out[at++] = norm;
    for (int j = 0; j < NT; j++) {
        clg_tensor_free(p[j]);
        clg_tensor_free(c[j]);
    }
    return at;
}

static void test_clip(void **state) {
    clg_context *ctx = *state;
    if (clg__optim_mt_k(ctx, 4, 6) < 16) skip(); /* the launch counts assume 16 slots */
    size_t total = 1;
    for (int j = 0; j < NT; j++)
        total += (size_t)SIZES[j];
    double *want = malloc(total * sizeof(double)), *got = malloc(total * sizeof(double));
    assert_non_null(want);
    assert_non_null(got);
    const clg_dtype dts[2] = {CLG_F64, CLG_F32};
    const double norms[5] = {2.0, 1.0, INFINITY, 3.0, -1.0}; /* -1: clip_grad_value */
    for (int d = 0; d < 2; d++)
        for (int t = 0; t < 5; t++) {
            const bool by_value = norms[t] < 0;
            const size_t n = clip_run(ctx, dts[d], 0, norms[t], by_value, want);
            assert_int_equal(clip_run(ctx, dts[d], 16, norms[t], by_value, got), n);
            assert_true(by_value || want[n - 1] > 2.5); /* the norm was clipped */
            for (size_t i = 0; i < n; i++)
                if (memcmp(&got[i], &want[i], sizeof(double)) != 0)
                    fail_msg("clip %s norm %g: value %zu of %zu is %.17g, per-tensor %.17g",
                             clg_dtype_name(dts[d]), norms[t], i, n, got[i], want[i]);
        }
    free(want);
    free(got);
    REF_EXPECT(ctx, clg__clip_grad_value_k(NULL, 0, 1.0, 0), CLG_OK);
}

static int setup_gpu(void **state) {
    clg_context_params p = clg_context_default_params();
    p.kernel_style = CLG_KERNEL_STYLE_GPU;
    p.profiling = true;
    return ref_group_setup_params(state, p);
}
static int setup_cpu(void **state) {
    clg_context_params p = clg_context_default_params();
    p.kernel_style = CLG_KERNEL_STYLE_CPU;
    p.profiling = true;
    return ref_group_setup_params(state, p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots), cmocka_unit_test(test_sgd),  cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_adam),  cmocka_unit_test(test_clip),
    };
    return cmocka_run_group_tests_name("multi-tensor step (GPU-style kernels)", tests, setup_gpu,
                                       ref_group_teardown) |
           cmocka_run_group_tests_name("multi-tensor step (CPU-style kernels)", tests, setup_cpu,
                                       ref_group_teardown);
}
