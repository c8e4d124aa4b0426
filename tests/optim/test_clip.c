/* tests/optim/test_clip.c - gradient clipping (src/optim/clip.c, cl/optim/clip.cl): norms 2, 1,
 * inf and 3 and clip_grad_value_ against PyTorch (tests/fixtures/optim.safetensors) in f64, an
 * f32 host reference, parameters without a gradient, NaN and inf as PyTorch, bit-identical
 * reruns, bad arguments; both kernel styles.
 */
#include <math.h>

#include "optim_test.h"
#include "ref_style.h"

enum { NG = 3 };

/* Parameters whose gradients are the fixture's clip.in.g0..2, in dtype dt. */
static void make_params(clg_context *ctx, const clg_st_file *f, clg_dtype dt, clg_tensor **p) {
    for (int i = 0; i < NG; i++) {
        char name[32];
        snprintf(name, sizeof name, "clip.in.g%d", i);
        const clg_st_entry *e = NULL;
        double *g = optim_fixture_f64(f, name, &e);
        REF_OK(ctx, clg_tensor_zeros(ctx, dt, e->ndim, e->shape, &p[i]));
        REF_OK(ctx, clg_tensor_set_requires_grad(p[i], true));
        clg_tensor *g64 = ref_tensor_f64(ctx, e->ndim, e->shape, g), *gt = g64;
        if (dt != CLG_F64) REF_OK(ctx, clg_tensor_cast(g64, dt, &gt));
        REF_OK(ctx, clg_backward_grad(ctx, p[i], gt));
        if (gt != g64) clg_tensor_free(gt);
        clg_tensor_free(g64);
        free(g);
    }
}

static void free_params(clg_tensor **p, int n) {
    for (int i = 0; i < n; i++)
        clg_tensor_free(p[i]);
}

/* In f64 the sums differ from PyTorch's only in order: n eps relative for n <= 29 terms. */
static void test_pytorch_norms(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    optim_fixture_read(&f);
    static const struct {
        const char *name;
        double norm_type, max_norm;
    } cases[] = {{"p2", 2, 0.5}, {"p1", 1, 2}, {"inf", INFINITY, 1.5}, {"p3", 3, 0.7}, {"p2_loose", 2, 1e3}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        clg_tensor *p[NG];
        make_params(ctx, &f, CLG_F64, p);
        double total = -1;
        REF_OK(ctx, clg_clip_grad_norm(p, NG, cases[c].max_norm, cases[c].norm_type, &total));
        char name[48];
        snprintf(name, sizeof name, "clip.%s.norm", cases[c].name);
        double *want = optim_fixture_f64(&f, name, NULL);
        ref_assert_close(&total, want, 1, 1e-13, 0, name);
        free(want);
        for (int i = 0; i < NG; i++) {
            snprintf(name, sizeof name, "clip.%s.g%d", cases[c].name, i);
            want = optim_fixture_f64(&f, name, NULL);
            double *got = ref_to_host_f64(clg_tensor_grad(p[i]));
            ref_assert_close(got, want, clg_tensor_numel(p[i]), 1e-13, 1e-15, name);
            free(got);
            free(want);
        }
        free_params(p, NG);
    }
    clg_tensor *p[NG];
    make_params(ctx, &f, CLG_F64, p);
    REF_OK(ctx, clg_clip_grad_value(p, NG, 0.8));
    for (int i = 0; i < NG; i++) {
        char name[32];
        snprintf(name, sizeof name, "clip.value.g%d", i);
        double *want = optim_fixture_f64(&f, name, NULL);
        double *got = ref_to_host_f64(clg_tensor_grad(p[i]));
        ref_assert_close(got, want, clg_tensor_numel(p[i]), 0, 0, name); /* a clamp is exact */
        free(got);
        free(want);
    }
    free_params(p, NG);
    clg_st_file_free(&f);
}

/* f32: the norm from f32 values summed in f32 over at most 12 terms per run, then 3 runs:
 * relative error below 16 * 2^-24 of the f64 norm of the same f32 values. */
static void test_f32_reference(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    optim_fixture_read(&f);
    clg_tensor *p[NG];
    make_params(ctx, &f, CLG_F32, p);
    double sq = 0;
    double *g[NG];
    for (int i = 0; i < NG; i++) {
        g[i] = ref_to_host_f64(clg_tensor_grad(p[i]));
        for (size_t j = 0; j < clg_tensor_numel(p[i]); j++)
            sq += g[i][j] * g[i][j];
    }
    const double want = sqrt(sq), max_norm = 0.5, coef = max_norm / (want + 1e-6);
    double total = 0;
    REF_OK(ctx, clg_clip_grad_norm(p, NG, max_norm, 2.0, &total));
    const double tol = 16 * ldexp(1.0, -24);
    ref_assert_close(&total, &want, 1, tol, 0, "f32 norm");
    for (int i = 0; i < NG; i++) {
        double *got = ref_to_host_f64(clg_tensor_grad(p[i]));
        for (size_t j = 0; j < clg_tensor_numel(p[i]); j++)
            g[i][j] *= coef;
        ref_assert_close(got, g[i], clg_tensor_numel(p[i]), 2 * tol, 1e-30, "f32 clipped");
        free(got);
        free(g[i]);
    }
    free_params(p, NG);
    clg_st_file_free(&f);
}

/* Parameters without a gradient are skipped; none at all gives norm 0. Reruns are identical. */
static void test_skips_and_determinism(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    optim_fixture_read(&f);
    clg_tensor *p[NG + 1];
    make_params(ctx, &f, CLG_F64, p);
    const int shape[1] = {4};
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, shape, &p[NG])); /* no gradient */
    double a = 0, b = 0;
    REF_OK(ctx, clg_clip_grad_norm(p, NG + 1, 1e9, 2.0, &a));
    REF_OK(ctx, clg_clip_grad_norm(p, NG + 1, 1e9, 2.0, &b));
    assert_memory_equal(&a, &b, sizeof a);
    assert_null(clg_tensor_grad(p[NG]));
    double none = -1;
    REF_OK(ctx, clg_clip_grad_norm(&p[NG], 1, 1.0, 2.0, &none));
    assert_true(none == 0.0);
    free_params(p, NG + 1);
    clg_st_file_free(&f);
}

/* PyTorch: a NaN gradient gives a NaN norm and NaN gradients everywhere; an inf one an inf
 * norm, coefficient 0 and NaN where the gradient was inf (inf * 0). */
static void test_nan_and_inf(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {3};
    const double nan_g[3] = {1, NAN, 2}, inf_g[3] = {1, INFINITY, 2}, ok_g[3] = {0.5, -0.5, 1};
    const double *cases[2] = {nan_g, inf_g};
    for (int c = 0; c < 2; c++)
        for (int kind = 0; kind < 2; kind++) {
            const double norm_type = kind ? INFINITY : 2.0;
            clg_tensor *p[2];
            const double *gs[2] = {ok_g, cases[c]};
            for (int i = 0; i < 2; i++) {
                REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, shape, &p[i]));
                REF_OK(ctx, clg_tensor_set_requires_grad(p[i], true));
                clg_tensor *g = ref_tensor_f64(ctx, 1, shape, gs[i]);
                REF_OK(ctx, clg_backward_grad(ctx, p[i], g));
                clg_tensor_free(g);
            }
            double total = 0;
            REF_OK(ctx, clg_clip_grad_norm(p, 2, 1.0, norm_type, &total));
            double *g0 = ref_to_host_f64(clg_tensor_grad(p[0]));
            double *g1 = ref_to_host_f64(clg_tensor_grad(p[1]));
            if (c == 0) {
                assert_true(isnan(total));
                for (int j = 0; j < 3; j++)
                    assert_true(isnan(g0[j]) && isnan(g1[j]));
            } else {
                assert_true(isinf(total) && total > 0);
                for (int j = 0; j < 3; j++)
                    assert_true(g0[j] == 0.0);
                assert_true(g1[0] == 0.0 && isnan(g1[1]) && g1[2] == 0.0);
            }
            free(g0);
            free(g1);
            free_params(p, 2);
        }
    /* clip_grad_value_ keeps NaN (torch.clamp_). */
    clg_tensor *p;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, shape, &p));
    REF_OK(ctx, clg_tensor_set_requires_grad(p, true));
    clg_tensor *g = ref_tensor_f64(ctx, 1, shape, nan_g);
    REF_OK(ctx, clg_backward_grad(ctx, p, g));
    REF_OK(ctx, clg_clip_grad_value(&p, 1, 0.5));
    double *h = ref_to_host_f64(clg_tensor_grad(p));
    assert_true(h[0] == 0.5 && isnan(h[1]) && h[2] == 0.5);
    free(h);
    clg_tensor_free(g);
    clg_tensor_free(p);
}

static void test_bad_arguments(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {2};
    const double v[2] = {1, 2};
    clg_tensor *p[2];
    for (int i = 0; i < 2; i++) {
        REF_OK(ctx, clg_tensor_zeros(ctx, i ? CLG_F32 : CLG_F64, 1, shape, &p[i]));
        REF_OK(ctx, clg_tensor_set_requires_grad(p[i], true));
        clg_tensor *g = ref_tensor_f64(ctx, 1, shape, v), *gt = g;
        if (i) REF_OK(ctx, clg_tensor_cast(g, CLG_F32, &gt));
        REF_OK(ctx, clg_backward_grad(ctx, p[i], gt));
        if (gt != g) clg_tensor_free(gt);
        clg_tensor_free(g);
    }
    double total;
    assert_int_equal(clg_clip_grad_norm(p, 2, 1.0, 2.0, &total), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "mixed dtypes"));
    assert_int_equal(clg_clip_grad_norm(p, 1, -1.0, 2.0, &total), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_clip_grad_norm(p, 1, NAN, 2.0, &total), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_clip_grad_norm(p, 1, 1.0, 0.0, &total), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "norm_type"));
    assert_int_equal(clg_clip_grad_value(p, 1, -1.0), CLG_INVALID_ARGUMENT);
    clg_tensor *with_null[2] = {p[0], NULL};
    assert_int_equal(clg_clip_grad_norm(with_null, 2, 1.0, 2.0, &total), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_clip_grad_norm(NULL, 1, 1.0, 2.0, &total), CLG_INVALID_ARGUMENT);
    REF_OK(ctx, clg_clip_grad_norm(NULL, 0, 1.0, 2.0, &total));
    /* still usable */
    REF_OK(ctx, clg_clip_grad_norm(p, 1, 1.0, 2.0, &total));
    assert_true(fabs(total - sqrt(5.0)) < 1e-15);
    free_params(p, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_norms),
        cmocka_unit_test(test_f32_reference),
        cmocka_unit_test(test_skips_and_determinism),
        cmocka_unit_test(test_nan_and_inf),
        cmocka_unit_test(test_bad_arguments),
    };
    return REF_RUN_BOTH_STYLES("clip", tests);
}
