/* tests/ops/test_conv2d_chunks.c - conv2d (src/ops/conv2d.c, cl/ops/conv2d.cl) beyond one
 * call's numbers: the beta contract (raw backward and through the graph) with the batch in
 * one chunk and in several, and chunked results equal to unchunked ones, with the GPU-style
 * and CPU-style kernels giving the same bits. Workspace limits come through the public
 * context params (conv_context in tests/ops/test_conv2d.h). References: tests/ops/test_conv2d.c.
 */
#include <stdlib.h>

#include "test_conv2d.h"

/* ---------------------------------------------------------------- the beta contract */

/* backward with beta 0 then beta 1 gives exactly 2x; beta 0.5 gives 0.5*old + new. Once
 * with the batch in one chunk, once in several (dW then sums chunks: still exact). */
static void accumulate_case(clg_kernel_style style, clg_dtype dt, size_t workspace) {
    const conv_case c = {5, 4, 7, 6, 6, 3, 3, P_(1, 2, 1, 1, 1, 1, 2), true};
    case_tensors t;
    clg_context *ctx = conv_context(style, workspace);
    case_make(ctx, dt, &c, 4242, &t);
    clg_tensor *g[3] = {t.dx, t.dw, t.db};
    const char *names[3] = {"dx", "dw", "db"};
    double *once[3];
    REF_OK(ctx, clg_conv2d_backward(ctx, t.x, t.w, t.dy, c.p, t.dx, t.dw, t.db, 0.0));
    for (int i = 0; i < 3; i++)
        once[i] = ref_to_host_f64(g[i]);
    REF_OK(ctx, clg_conv2d_backward(ctx, t.x, t.w, t.dy, c.p, t.dx, t.dw, t.db, 1.0));
    for (int i = 0; i < 3; i++) {
        const size_t n = clg_tensor_numel(g[i]);
        double *twice = ref_to_host_f64(g[i]);
        for (size_t j = 0; j < n; j++)
            if (twice[j] != 2 * once[i][j])
                fail_msg("%s[%zu]: beta 1 after beta 0 gave %.17g, not exactly 2 x %.17g "
                         "(workspace %zu)",
                         names[i], j, twice[j], once[i][j], workspace);
        free(twice);
    }
    /* beta 0.5 on top of 2x: 0.5 * 2x + x = 2x */
    REF_OK(ctx, clg_conv2d_backward(ctx, t.x, t.w, t.dy, c.p, t.dx, t.dw, t.db, 0.5));
    for (int i = 0; i < 3; i++) {
        const size_t n = clg_tensor_numel(g[i]);
        double *got = ref_to_host_f64(g[i]);
        for (size_t j = 0; j < n; j++)
            once[i][j] *= 2;
        ref_assert_close(got, once[i], n, 1e-6, 1e-6, names[i]);
        free(got);
        free(once[i]);
    }
    /* skipped gradients are left alone */
    REF_OK(ctx, clg_tensor_fill(t.dx, 7.0));
    REF_OK(ctx, clg_conv2d_backward(ctx, t.x, t.w, t.dy, c.p, NULL, t.dw, NULL, 0.0));
    double *dx = ref_to_host_f64(t.dx);
    for (size_t j = 0; j < clg_tensor_numel(t.dx); j++)
        assert_true(dx[j] == 7.0);
    free(dx);
    case_free(&t);
    clg_context_free(ctx);
}

static void test_accumulate(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    accumulate_case(style, CLG_F32, 0);     /* default: one chunk */
    accumulate_case(style, CLG_F32, 1);     /* one image per chunk */
    accumulate_case(style, CLG_F32, 20000); /* two images per chunk, a remainder of one */
    accumulate_case(style, CLG_F64, 1);
}


/* Through the graph: two backward passes add up, and each input gets its own gradient. */
static void test_graph_accumulate(void **state) {
    clg_context *ctx = *state;
    const conv_case c = {3, 2, 6, 5, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 2), true};
    case_tensors t;
    case_make(ctx, CLG_F32, &c, 77, &t);
    clg_tensor *in[3] = {t.x, t.w, t.b};
    for (int i = 0; i < 3; i++)
        REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
    double *first[3];
    for (int round = 0; round < 2; round++) {
        clg_tensor *y = NULL;
        REF_OK(ctx, clg_conv2d(ctx, t.x, t.w, t.b, c.p, &y));
        REF_OK(ctx, clg_backward_grad(ctx, y, t.dy));
        clg_tensor_free(y);
        for (int i = 0; i < 3; i++) {
            assert_non_null(clg_tensor_grad(in[i]));
            double *g = ref_to_host_f64(clg_tensor_grad(in[i]));
            if (round == 0) {
                first[i] = g;
                continue;
            }
            for (size_t j = 0; j < clg_tensor_numel(in[i]); j++)
                if (g[j] != 2 * first[i][j])
                    fail_msg("input %d [%zu]: second backward gave %.9g, first %.9g", i, j, g[j],
                             first[i][j]);
            free(g);
        }
    }
    double *want_dx = malloc(clg_tensor_numel(t.x) * sizeof(double));
    double *want_dw = malloc(clg_tensor_numel(t.w) * sizeof(double)), want_db[4];
    ref_conv2d_backward(&c, t.hx, t.hw, t.hdy, want_dx, want_dw, want_db);
    ref_assert_close(first[0], want_dx, clg_tensor_numel(t.x), 2e-5, 1e-4, "graph dx");
    ref_assert_close(first[1], want_dw, clg_tensor_numel(t.w), 2e-5, 1e-4, "graph dw");
    ref_assert_close(first[2], want_db, 4, 2e-5, 1e-4, "graph db");
    for (int i = 0; i < 3; i++)
        free(first[i]);
    free(want_dx), free(want_dw);
    /* no grad mode records nothing */
    const bool was = clg_set_grad_enabled(ctx, false);
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_conv2d(ctx, t.x, t.w, t.b, c.p, &y));
    assert_int_equal(clg_backward_grad(ctx, y, t.dy), CLG_INVALID_STATE);
    clg_tensor_free(y);
    clg_set_grad_enabled(ctx, was);
    case_free(&t);
}


/* ---------------------------------------------------------------- chunked == unchunked */

/* y, dx, dw and db of case c (inputs from seed) in a context of this style and workspace,
 * one after the other in a malloc'd array of *n_out values. Every workspace goes back to the
 * pool: nothing stays in use after the tensors are freed. */
static double *run_all(clg_kernel_style style, size_t workspace, clg_dtype dt, const conv_case *c,
                       uint64_t seed, size_t *n_out) {
    clg_context *ctx = conv_context(style, workspace);
    const size_t in_use = clg_context_pool_stats(ctx).bytes_in_use;
    case_tensors t;
    case_make(ctx, dt, c, seed, &t);
    REF_OK(ctx, clg_conv2d_forward(ctx, t.x, t.w, t.b, c->p, t.y));
    REF_OK(ctx, clg_conv2d_backward(ctx, t.x, t.w, t.dy, c->p, t.dx, t.dw, t.db, 0.0));
    clg_tensor *all[4] = {t.y, t.dx, t.dw, t.db};
    size_t n = 0;
    for (int i = 0; i < 4; i++)
        n += clg_tensor_numel(all[i]);
    double *out = malloc(n * sizeof *out);
    n = 0;
    for (int i = 0; i < 4; i++) {
        double *v = ref_to_host_f64(all[i]);
        memcpy(out + n, v, clg_tensor_numel(all[i]) * sizeof *v);
        n += clg_tensor_numel(all[i]);
        free(v);
    }
    case_free(&t);
    assert_int_equal(clg_context_pool_stats(ctx).bytes_in_use, in_use);
    clg_context_free(ctx);
    *n_out = n;
    return out;
}

/* In the group's style, the batch in one chunk, one image per chunk, and three per chunk
 * (with a remainder) give the same numbers; and the other style's kernels (per element vs
 * per row) give the same bits as this one's. */
static void test_chunked(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    const clg_kernel_style other = style == CLG_KERNEL_STYLE_CPU ? CLG_KERNEL_STYLE_GPU : CLG_KERNEL_STYLE_CPU;
    const conv_case cases[] = {
        {17, 3, 9, 8, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true},
        {7, 4, 8, 8, 6, 3, 2, P_(2, 1, 2, 1, 1, 2, 2), true},
        {9, 4, 6, 6, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 4), false},
        {5, 2, 70, 9, 2, 3, 5, P_(1, 2, 2, 1, 1, 1, 1), true}, /* rows longer than one segment */
        {3, 2, 9, 70, 2, 5, 3, P_(2, 1, 1, 2, 2, 1, 2), false},
    };
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const conv_case *c = &cases[i];
            const uint64_t seed = 500 + i;
            char what[256];
            /* workspace per image: (C*KH*KW + K) * OH*OW values */
            const size_t per_image = ((size_t)c->C * c->KH * c->KW + c->K) * ref_conv_out_h(c) *
                                     ref_conv_out_w(c) * clg_dtype_size(dt);
            size_t n1, n2, n3, n4;
            double *whole = run_all(style, (size_t)1 << 30, dt, c, seed, &n1);
            double *single = run_all(style, 1, dt, c, seed, &n2);
            double *some = run_all(style, per_image * 3 + 1, dt, c, seed, &n3);
            /* Both contexts take the same GEMM path (a fixed rule, not a timing), so the
             * styles can be compared bit for bit. */
            double *other_whole = run_all(other, (size_t)1 << 30, dt, c, seed, &n4);
            assert_int_equal(n1, n2);
            assert_int_equal(n1, n3);
            assert_int_equal(n1, n4);
            const double tol = d ? 1e-13 : 1e-5;
            case_name(c, "one image per chunk vs whole batch", what, sizeof what);
            ref_assert_close(single, whole, n1, tol, tol, what);
            case_name(c, "three images per chunk vs whole batch", what, sizeof what);
            ref_assert_close(some, whole, n1, tol, tol, what);
            case_name(c, "the other kernel style vs this one", what, sizeof what);
            ref_assert_close(other_whole, whole, n1, 0, 0, what);
            free(whole), free(single), free(some), free(other_whole);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_graph_accumulate),
        cmocka_unit_test(test_chunked),
    };
    return REF_RUN_BOTH_STYLES("conv2d chunks", tests);
}
