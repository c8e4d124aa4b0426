/* tests/ops/test_pool2d.c - max_pool2d and avg_pool2d (src/ops/pool2d.c, cl/ops/pool2d.cl):
 * forward and backward against naive host references below, f64 finite differences, the
 * beta contract, NaN propagation (in x and in dy), PyTorch fixtures (tests/fixtures/ops.safetensors) and bad
 * input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"
#include "ref_ops.h"
#include "nan_test.h"
#include "ref_style.h"
#include "ops/op.h"

/* ---------------------------------------------------------------- host references */

typedef struct geom {
    int n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
} geom;

static geom geom_of(const int shape[4], clg_pool2d_params p) {
    geom g = {shape[0],
              shape[1],
              shape[2],
              shape[3],
              0,
              0,
              p.kernel_h,
              p.kernel_w,
              p.stride_h ? p.stride_h : p.kernel_h,
              p.stride_w ? p.stride_w : p.kernel_w,
              p.pad_h,
              p.pad_w};
    g.oh = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
    g.ow = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
    return g;
}

/* y (n, c, oh, ow) and, when arg is not NULL, the flat input index of each maximum. Ties keep
 * the first in scan order; NaN wins (the last NaN in scan order), as in PyTorch. */
static void ref_max_pool(const geom *g, const double *x, double *y, size_t *arg) {
    for (int nc = 0; nc < g->n * g->c; nc++)
        for (int oh = 0; oh < g->oh; oh++)
            for (int ow = 0; ow < g->ow; ow++) {
                double best = -INFINITY;
                size_t best_i = 0;
                bool any = false;
                for (int i = 0; i < g->kh; i++)
                    for (int j = 0; j < g->kw; j++) {
                        const int h = oh * g->sh - g->ph + i, w = ow * g->sw - g->pw + j;
                        if (h < 0 || h >= g->h || w < 0 || w >= g->w) continue;
                        const size_t xi = ((size_t)nc * g->h + h) * g->w + w;
                        if (!any || x[xi] > best || isnan(x[xi])) {
                            best = x[xi];
                            best_i = xi;
                            any = true;
                        }
                    }
                const size_t o = ((size_t)nc * g->oh + oh) * g->ow + ow;
                y[o] = best;
                if (arg) arg[o] = best_i;
            }
}

/* dx = each dy routed to its window's maximum. */
static void ref_max_pool_backward(const geom *g, const size_t *arg, const double *dy, double *dx) {
    memset(dx, 0, sizeof *dx * (size_t)g->n * g->c * g->h * g->w);
    for (size_t o = 0; o < (size_t)g->n * g->c * g->oh * g->ow; o++)
        dx[arg[o]] += dy[o];
}

/* count_include_pad: every window divides by kh * kw (floor mode never overhangs the padding). */
static void ref_avg_pool(const geom *g, const double *x, double *y) {
    for (int nc = 0; nc < g->n * g->c; nc++)
        for (int oh = 0; oh < g->oh; oh++)
            for (int ow = 0; ow < g->ow; ow++) {
                double s = 0;
                for (int i = 0; i < g->kh; i++)
                    for (int j = 0; j < g->kw; j++) {
                        const int h = oh * g->sh - g->ph + i, w = ow * g->sw - g->pw + j;
                        if (h >= 0 && h < g->h && w >= 0 && w < g->w)
                            s += x[((size_t)nc * g->h + h) * g->w + w];
                    }
                y[((size_t)nc * g->oh + oh) * g->ow + ow] = s / (g->kh * g->kw);
            }
}

static void ref_avg_pool_backward(const geom *g, const double *dy, double *dx) {
    memset(dx, 0, sizeof *dx * (size_t)g->n * g->c * g->h * g->w);
    for (int nc = 0; nc < g->n * g->c; nc++)
        for (int oh = 0; oh < g->oh; oh++)
            for (int ow = 0; ow < g->ow; ow++)
                for (int i = 0; i < g->kh; i++)
                    for (int j = 0; j < g->kw; j++) {
                        const int h = oh * g->sh - g->ph + i, w = ow * g->sw - g->pw + j;
                        if (h >= 0 && h < g->h && w >= 0 && w < g->w)
                            dx[((size_t)nc * g->h + h) * g->w + w] +=
                                dy[((size_t)nc * g->oh + oh) * g->ow + ow] / (g->kh * g->kw);
                    }
}

/* ---------------------------------------------------------------- cases */

typedef struct pool_case {
    int shape[4];
    clg_pool2d_params p;
    const char *name;
} pool_case;

/* Non-overlapping, overlapping (kernel > stride: several windows share an input), padded,
 * non-square, stride 0 (= kernel) and windows that leave the last rows out. */
static const pool_case cases[] = {
    {{2, 3, 6, 6}, {2, 2, 2, 2, 0, 0}, "k2s2"},
    {{2, 3, 7, 7}, {3, 3, 2, 2, 1, 1}, "k3s2p1"},
    {{1, 2, 5, 5}, {3, 3, 1, 1, 1, 1}, "k3s1p1"},
    {{2, 2, 5, 7}, {2, 3, 1, 2, 1, 1}, "k2x3 s1x2 p1x1"},
    {{1, 3, 6, 4}, {2, 2, 0, 0, 0, 0}, "k2 stride 0"},
    {{1, 1, 7, 8}, {3, 2, 3, 3, 0, 1}, "k3x2 s3 p0x1, ragged"},
    /* Rows of 8 + 4 + 1 and of 8 outputs: the CPU form's vector path for 2-column windows. */
    {{1, 2, 4, 26}, {2, 2, 2, 2, 0, 0}, "k2s2, wide rows"},
    {{2, 1, 7, 17}, {2, 2, 2, 2, 1, 0}, "k2s2 p1x0, wide rows"},
};
#define N_CASES (sizeof cases / sizeof cases[0])

typedef clg_status (*pool_fn)(clg_context *, const clg_tensor *, clg_pool2d_params, clg_tensor **);

/* x with distinct values (a shuffled ramp, gaps 2/numel), so finite differences never move a
 * maximum to another element. */
static clg_tensor *distinct_tensor(clg_context *ctx, const int shape[4], uint64_t seed) {
    const size_t n = (size_t)shape[0] * shape[1] * shape[2] * shape[3];
    double *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = -1.0 + 2.0 * ((double)i + 0.5) / (double)n;
    uint64_t s = seed;
    for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates with a fixed LCG */
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        const size_t j = (size_t)((s >> 33) % (i + 1));
        const double t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    clg_tensor *x = ref_tensor_f64(ctx, 4, shape, v);
    free(v);
    return x;
}

/* Forward and backward of one op against the host reference, both dtypes, every case. */
static void check_against_ref(clg_context *ctx, bool is_max) {
    const pool_fn op = is_max ? clg_max_pool2d : clg_avg_pool2d;
    for (size_t c = 0; c < N_CASES; c++)
        for (int d = 0; d < 2; d++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            const pool_case *pc = &cases[c];
            const geom g = geom_of(pc->shape, pc->p);
            char what[160];
            clg_tensor *x = ref_rand(ctx, dt, 4, pc->shape, 100 + c, -2.0, 2.0);
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            clg_tensor *y = NULL;
            REF_OK(ctx, op(ctx, x, pc->p, &y));
            const int *ys = clg_tensor_shape(y);
            assert_int_equal(clg_tensor_ndim(y), 4);
            assert_int_equal(ys[0], g.n);
            assert_int_equal(ys[1], g.c);
            assert_int_equal(ys[2], g.oh);
            assert_int_equal(ys[3], g.ow);
            assert_true(clg_tensor_dtype(y) == dt);

            const size_t nx = clg_tensor_numel(x), ny = clg_tensor_numel(y);
            double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y);
            double *want = malloc(ny * sizeof *want), *dxw = malloc(nx * sizeof *dxw);
            size_t *arg = malloc(ny * sizeof *arg);
            assert_true(want && dxw && arg);
            if (is_max)
                ref_max_pool(&g, xh, want, arg);
            else
                ref_avg_pool(&g, xh, want);
            snprintf(what, sizeof what, "%s %s %s forward", is_max ? "max" : "avg", pc->name,
                     clg_dtype_name(dt));
            /* max copies values: exact; avg rounds a sum in another order. */
            ref_assert_close(yh, want, ny, is_max ? 0 : (d ? 1e-14 : 1e-6), is_max ? 0 : (d ? 1e-15 : 1e-6),
                             what);

            clg_tensor *dy = ref_rand(ctx, dt, 4, ys, 200 + c, -1.0, 1.0);
            double *dyh = ref_to_host_f64(dy);
            clg_tensor *dx = NULL;
            REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, pc->shape, &dx));
            const double beta0 = 0;
            REF_OK(ctx, ref_call_backward(ctx, y, dy, &dx, &beta0));
            double *dxh = ref_to_host_f64(dx);
            if (is_max)
                ref_max_pool_backward(&g, arg, dyh, dxw);
            else
                ref_avg_pool_backward(&g, dyh, dxw);
            snprintf(what, sizeof what, "%s %s %s backward", is_max ? "max" : "avg", pc->name,
                     clg_dtype_name(dt));
            ref_assert_close(dxh, dxw, nx, d ? 1e-14 : 1e-6, d ? 1e-15 : 1e-6, what);

            free(xh);
            free(yh);
            free(want);
            free(dxw);
            free(arg);
            free(dyh);
            free(dxh);
            clg_tensor_free(dx);
            clg_tensor_free(dy);
            clg_tensor_free(y);
            clg_tensor_free(x);
        }
}

static void test_max_pool_vs_ref(void **state) { check_against_ref(*state, true); }
static void test_avg_pool_vs_ref(void **state) { check_against_ref(*state, false); }

/* Evaluation (no argmax kept) runs other kernels than training: the same values, bit for bit. */
static void test_max_pool_eval_matches(void **state) {
    clg_context *ctx = *state;
    for (size_t c = 0; c < N_CASES; c++)
        for (int d = 0; d < 2; d++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            const pool_case *pc = &cases[c];
            clg_tensor *x = ref_rand(ctx, dt, 4, pc->shape, 400 + c, -2.0, 2.0), *y = NULL, *ye = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_max_pool2d(ctx, x, pc->p, &y));
            assert_non_null(y->grad_fn);
            const bool was = clg_set_grad_enabled(ctx, false);
            REF_OK(ctx, clg_max_pool2d(ctx, x, pc->p, &ye));
            clg_set_grad_enabled(ctx, was);
            assert_null(ye->grad_fn);
            double *a = ref_to_host_f64(y), *b = ref_to_host_f64(ye);
            char what[96];
            snprintf(what, sizeof what, "max_pool2d %s %s evaluation", pc->name, clg_dtype_name(dt));
            ref_assert_close(b, a, clg_tensor_numel(y), 0, 0, what);
            free(a);
            free(b);
            clg_tensor_free(ye);
            clg_tensor_free(y);
            clg_tensor_free(x);
        }
}

/* Ties (a constant input) route each window's gradient to its first element in scan order,
 * as PyTorch does; with padding that is the first element inside the image. */
static void test_max_pool_ties(void **state) {
    clg_context *ctx = *state;
    for (size_t c = 0; c < N_CASES; c++) {
        const pool_case *pc = &cases[c];
        const geom g = geom_of(pc->shape, pc->p);
        clg_tensor *x = NULL, *y = NULL;
        REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 4, pc->shape, &x));
        REF_OK(ctx, clg_tensor_fill(x, 0.5));
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, clg_max_pool2d(ctx, x, pc->p, &y));
        const size_t nx = clg_tensor_numel(x), ny = clg_tensor_numel(y);
        clg_tensor *dy = ref_rand(ctx, CLG_F64, 4, clg_tensor_shape(y), 300 + c, -1.0, 1.0);
        REF_OK(ctx, clg_backward_grad(ctx, y, dy));
        double *xh = ref_to_host_f64(x), *dyh = ref_to_host_f64(dy);
        double *got = ref_to_host_f64(clg_tensor_grad(x));
        double *yw = malloc(ny * sizeof *yw), *want = malloc(nx * sizeof *want);
        size_t *arg = malloc(ny * sizeof *arg);
        assert_true(yw && want && arg);
        ref_max_pool(&g, xh, yw, arg);
        ref_max_pool_backward(&g, arg, dyh, want);
        char what[96];
        snprintf(what, sizeof what, "max_pool2d %s ties", pc->name);
        ref_assert_close(got, want, nx, 0, 0, what);
        free(xh);
        free(dyh);
        free(got);
        free(yw);
        free(want);
        free(arg);
        clg_tensor_free(dy);
        clg_tensor_free(y);
        clg_tensor_free(x);
    }
}

/* NaN in a window makes its maximum NaN, and the gradient goes to that NaN's position, as
 * in PyTorch; in f32 and f64, over every case (tiled, overlapping and padded windows). */
static void test_max_pool_nan(void **state) {
    clg_context *ctx = *state;
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        for (size_t c = 0; c < N_CASES; c++) {
            const pool_case *pc = &cases[c];
            const geom g = geom_of(pc->shape, pc->p);
            clg_tensor *x0 = ref_rand(ctx, CLG_F64, 4, pc->shape, 400 + c, -1.0, 1.0), *x = NULL, *y = NULL;
            const size_t nx = clg_tensor_numel(x0);
            double *xh = ref_to_host_f64(x0);
            for (size_t i = 0; i < nx; i += 7)
                xh[i] = NAN;
            if (dt == CLG_F64) {
                x = ref_tensor_f64(ctx, 4, pc->shape, xh);
            } else {
                float *xf = malloc(nx * sizeof *xf);
                assert_non_null(xf);
                for (size_t i = 0; i < nx; i++)
                    xh[i] = xf[i] = (float)xh[i]; /* the reference sees the f32 values */
                REF_OK(ctx, clg_tensor_from_host(ctx, dt, 4, pc->shape, xf, &x));
                free(xf);
            }
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_max_pool2d(ctx, x, pc->p, &y));
            const size_t ny = clg_tensor_numel(y);
            clg_tensor *dy = ref_rand(ctx, dt, 4, clg_tensor_shape(y), 500 + c, -1.0, 1.0);
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            double *dyh = ref_to_host_f64(dy), *got_y = ref_to_host_f64(y);
            double *got_dx = ref_to_host_f64(clg_tensor_grad(x));
            double *yw = malloc(ny * sizeof *yw), *want = malloc(nx * sizeof *want);
            size_t *arg = malloc(ny * sizeof *arg);
            assert_true(yw && want && arg);
            ref_max_pool(&g, xh, yw, arg);
            ref_max_pool_backward(&g, arg, dyh, want);
            char what[96];
            snprintf(what, sizeof what, "max_pool2d %s %s forward with NaN", pc->name, clg_dtype_name(dt));
            ref_assert_close_nan(got_y, yw, ny, 0, 0, what);
            snprintf(what, sizeof what, "max_pool2d %s %s backward with NaN", pc->name, clg_dtype_name(dt));
            ref_assert_close_nan(got_dx, want, nx, 1e-6, 1e-6, what);
            free(xh), free(dyh), free(got_y), free(got_dx), free(yw), free(want), free(arg);
            clg_tensor *all[] = {dy, y, x, x0};
            for (size_t i = 0; i < 4; i++)
                clg_tensor_free(all[i]);
        }
    }
}

/* NaN in dy as well (and NaN in x for the average): PyTorch's max pool sends a NaN dy to its
 * window's argmax only, the average spreads dy / divisor over the window, so a NaN in x
 * makes every window holding it NaN and a NaN dy every input its window covers. */
static void check_nan_dy(clg_context *ctx, bool is_max) {
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        for (size_t c = 0; c < N_CASES; c++) {
            const pool_case *pc = &cases[c];
            const geom g = geom_of(pc->shape, pc->p);
            clg_tensor *x0 = distinct_tensor(ctx, pc->shape, 600 + c), *x = NULL, *y = NULL;
            const size_t nx = clg_tensor_numel(x0);
            double *xh = ref_to_host_f64(x0);
            if (!is_max) /* max pool's NaN in x is test_max_pool_nan's */
                for (size_t i = 3; i < nx; i += 11)
                    xh[i] = NAN;
            x = nan_tensor(ctx, dt, 4, pc->shape, xh);
            double *xr = ref_to_host_f64(x); /* the values the op sees (f32 rounded) */
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, is_max ? clg_max_pool2d(ctx, x, pc->p, &y) : clg_avg_pool2d(ctx, x, pc->p, &y));
            const size_t ny = clg_tensor_numel(y);
            double *dyh = malloc(ny * sizeof *dyh), *yw = malloc(ny * sizeof *yw), *want = malloc(nx * sizeof *want);
            size_t *arg = malloc(ny * sizeof *arg);
            assert_true(dyh && yw && want && arg);
            for (size_t i = 0; i < ny; i++)
                dyh[i] = i % 5 == 1 ? NAN : 0.5 + (double)(i % 4);
            clg_tensor *dy = nan_tensor(ctx, dt, 4, clg_tensor_shape(y), dyh);
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            if (is_max) {
                ref_max_pool(&g, xr, yw, arg);
                ref_max_pool_backward(&g, arg, dyh, want);
            } else {
                ref_avg_pool(&g, xr, yw);
                ref_avg_pool_backward(&g, dyh, want);
            }
            char what[96];
            snprintf(what, sizeof what, "%s_pool2d %s forward with NaN", is_max ? "max" : "avg", pc->name);
            nan_expect(y, yw, ny, nan_rtol(dt), nan_rtol(dt), what, dt);
            snprintf(what, sizeof what, "%s_pool2d %s backward with NaN dy", is_max ? "max" : "avg", pc->name);
            nan_expect(clg_tensor_grad(x), want, nx, nan_rtol(dt), nan_rtol(dt), what, dt);
            free(xh), free(xr), free(dyh), free(yw), free(want), free(arg);
            clg_tensor *all[] = {dy, y, x, x0};
            for (size_t i = 0; i < 4; i++)
                clg_tensor_free(all[i]);
        }
    }
}

static void test_max_pool_nan_dy(void **state) { check_nan_dy(*state, true); }
static void test_avg_pool_nan(void **state) { check_nan_dy(*state, false); }

/* ---------------------------------------------------------------- gradients */

typedef struct gc_user {
    pool_fn op;
    clg_pool2d_params p;
} gc_user;

static clg_status gc_pool(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    const gc_user *u = user;
    return u->op(ctx, in[0], u->p, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    for (size_t c = 0; c < N_CASES; c++)
        for (int m = 0; m < 2; m++) {
            gc_user u = {m ? clg_max_pool2d : clg_avg_pool2d, cases[c].p};
            clg_tensor *x = distinct_tensor(ctx, cases[c].shape, 7 + c);
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            char what[128];
            snprintf(what, sizeof what, "%s_pool2d %s gradcheck", m ? "max" : "avg", cases[c].name);
            ref_gradcheck(ctx, gc_pool, &x, 1, &u, 1e-6, 1e-7, what);
            clg_tensor_free(x);
        }
}

/* beta = 0 overwrites (even NaN), beta = 1 after it gives exactly twice. */
static void test_accumulate(void **state) {
    clg_context *ctx = *state;
    /* Overlapping windows (the gather sums), and exactly tiled wide rows (max pool's tiled
     * backward, vector path included). */
    static const size_t which[2] = {1, 6};
    for (int d = 0; d < 2; d++)
        for (int m = 0; m < 2; m++)
            for (int w = 0; w < 2; w++) {
                const clg_dtype dt = d ? CLG_F64 : CLG_F32;
                const pool_case *pc = &cases[which[w]];
                clg_tensor *x = ref_rand(ctx, dt, 4, pc->shape, 31, -1.0, 1.0), *y = NULL;
                REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
                REF_OK(ctx, (m ? clg_max_pool2d : clg_avg_pool2d)(ctx, x, pc->p, &y));
                char what[96];
                snprintf(what, sizeof what, "%s_pool2d %s %s", m ? "max" : "avg", pc->name,
                         clg_dtype_name(dt));
                ref_check_accumulate(ctx, y, &x, 1, what);
                clg_tensor_free(y);
                clg_tensor_free(x);
            }
}

/* ---------------------------------------------------------------- PyTorch */

static void test_pytorch_fixtures(void **state) {
    clg_context *ctx = *state;
    static const struct {
        const char *name;
        bool is_max;
        clg_pool2d_params p;
    } fx[] = {
        {"max_pool2d_k2s2", true, {2, 2, 2, 2, 0, 0}},
        {"max_pool2d_k3s2p1", true, {3, 3, 2, 2, 1, 1}},
        {"avg_pool2d_k2s2", false, {2, 2, 2, 2, 0, 0}},
        {"avg_pool2d_k3s1p1", false, {3, 3, 1, 1, 1, 1}},
    };
    clg_st_file f;
    ref_fixture_open(&f, "ops.safetensors");
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s.x", fx[i].name);
        clg_tensor *x = ref_fixture_tensor(ctx, &f, name), *y = NULL;
        snprintf(name, sizeof name, "%s.r", fx[i].name);
        clg_tensor *r = ref_fixture_tensor(ctx, &f, name);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, (fx[i].is_max ? clg_max_pool2d : clg_avg_pool2d)(ctx, x, fx[i].p, &y));
        snprintf(name, sizeof name, "%s.y", fx[i].name);
        ref_assert_fixture(&f, name, y, 0, 1e-10);

        /* Through the graph, as training runs it: x.grad = d sum(y * r) / dx. */
        REF_OK(ctx, clg_backward_grad(ctx, y, r));
        snprintf(name, sizeof name, "%s.dx", fx[i].name);
        ref_assert_fixture(&f, name, clg_tensor_grad(x), 0, 1e-10);
        clg_tensor_free(y);
        clg_tensor_free(r);
        clg_tensor_free(x);
    }
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- modes and errors */

/* No grad mode (or an input needing no gradient) records nothing. */
static void test_no_grad_records_nothing(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {1, 2, 4, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, shape, 5, -1, 1), *y = NULL;
    const clg_pool2d_params p = {2, 2, 2, 2, 0, 0};
    REF_OK(ctx, clg_max_pool2d(ctx, x, p, &y)); /* x needs no gradient */
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    const bool was = clg_set_grad_enabled(ctx, false);
    REF_OK(ctx, clg_max_pool2d(ctx, x, p, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    REF_OK(ctx, clg_avg_pool2d(ctx, x, p, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    clg_set_grad_enabled(ctx, was);
    REF_OK(ctx, clg_max_pool2d(ctx, x, p, &y));
    assert_non_null(y->grad_fn);
    assert_non_null(y->grad_fn->saved[0]); /* the argmax */
    clg_tensor_free(y);
    clg_tensor_free(x);
}

static void expect_fail(clg_context *ctx, clg_status got, clg_status want, const char *needle) {
    if (got != want)
        fail_msg("expected %s, got %s (%s)", clg_status_name(want), clg_status_name(got),
                 clg_context_errmsg(ctx));
    if (!strstr(clg_context_errmsg(ctx), needle))
        fail_msg("error message \"%s\" does not mention \"%s\"", clg_context_errmsg(ctx), needle);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int s4[4] = {1, 1, 4, 4}, s3[3] = {1, 4, 4};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, s4, 9, -1, 1), *x3 = ref_rand(ctx, CLG_F32, 3, s3, 9, -1, 1);
    clg_tensor *y = (clg_tensor *)1;
    const clg_pool2d_params ok = {2, 2, 2, 2, 0, 0};
    for (int m = 0; m < 2; m++) {
        const pool_fn op = m ? clg_max_pool2d : clg_avg_pool2d;
        expect_fail(ctx, op(ctx, NULL, ok, &y), CLG_INVALID_ARGUMENT, "x");
        assert_null(y);
        expect_fail(ctx, op(ctx, x, ok, NULL), CLG_INVALID_ARGUMENT, "out");
        expect_fail(ctx, op(ctx, x3, ok, &y), CLG_SHAPE_MISMATCH, "4-D");
        expect_fail(ctx, op(ctx, x, (clg_pool2d_params){0, 2, 2, 2, 0, 0}, &y), CLG_INVALID_ARGUMENT,
                    "kernel");
        expect_fail(ctx, op(ctx, x, (clg_pool2d_params){2, 2, -1, 2, 0, 0}, &y), CLG_INVALID_ARGUMENT,
                    "stride");
        expect_fail(ctx, op(ctx, x, (clg_pool2d_params){2, 2, 2, 2, -1, 0}, &y), CLG_INVALID_ARGUMENT,
                    "padding");
        expect_fail(ctx, op(ctx, x, (clg_pool2d_params){3, 3, 1, 1, 2, 0}, &y), CLG_INVALID_ARGUMENT,
                    "half the kernel");
        expect_fail(ctx, op(ctx, x, (clg_pool2d_params){5, 2, 1, 1, 0, 0}, &y), CLG_SHAPE_MISMATCH,
                    "does not fit");
        assert_null(y);
        /* The context still works after every failure. */
        REF_OK(ctx, op(ctx, x, ok, &y));
        assert_non_null(y);
        clg_tensor_free(y);
    }
    clg_tensor_free(x3);
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_pool_vs_ref),
        cmocka_unit_test(test_avg_pool_vs_ref),
        cmocka_unit_test(test_max_pool_eval_matches),
        cmocka_unit_test(test_max_pool_ties),
        cmocka_unit_test(test_max_pool_nan),
        cmocka_unit_test(test_max_pool_nan_dy),
        cmocka_unit_test(test_avg_pool_nan),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_pytorch_fixtures),
        cmocka_unit_test(test_no_grad_records_nothing),
        cmocka_unit_test(test_bad_input),
    };
    return REF_RUN_BOTH_STYLES("pool2d", tests);
}
