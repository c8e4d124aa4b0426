/* tests/ops/test_batchnorm.c - batch_norm2d (src/ops/batchnorm.c, cl/ops/batchnorm.cl):
 * forward, running-stat updates and backward against a naive host reference below, f64
 * finite differences, the beta contract, PyTorch fixtures, determinism, bad input and NaN.
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

/* ---------------------------------------------------------------- host reference */

typedef struct bn_dims {
    int n, c, hw;
} bn_dims;

#define AT(d, n_, c_, j) (((size_t)(n_) * (d).c + (c_)) * (d).hw + (j))

/* y (N, C, H, W); mean/invstd (C) used; rm/rv (C) updated in training when not NULL.
 * w, b may be NULL. */
static void ref_bn_forward(bn_dims d, const double *x, const double *w, const double *b, double *rm,
                           double *rv, bool training, double momentum, double eps, double *y, double *mean,
                           double *invstd) {
    const double m = (double)d.n * d.hw;
    for (int c = 0; c < d.c; c++) {
        if (training) {
            double s = 0, sq = 0;
            for (int n = 0; n < d.n; n++)
                for (int j = 0; j < d.hw; j++)
                    s += x[AT(d, n, c, j)];
            mean[c] = s / m;
            for (int n = 0; n < d.n; n++)
                for (int j = 0; j < d.hw; j++)
                    sq += pow(x[AT(d, n, c, j)] - mean[c], 2);
            invstd[c] = 1 / sqrt(sq / m + eps);
            if (rm) {
                rm[c] = (1 - momentum) * rm[c] + momentum * mean[c];
                rv[c] = (1 - momentum) * rv[c] + momentum * sq / (m - 1);
            }
        } else {
            mean[c] = rm[c];
            invstd[c] = 1 / sqrt(rv[c] + eps);
        }
        for (int n = 0; n < d.n; n++)
            for (int j = 0; j < d.hw; j++) {
                const size_t i = AT(d, n, c, j);
                y[i] = (x[i] - mean[c]) * invstd[c] * (w ? w[c] : 1) + (b ? b[c] : 0);
            }
    }
}

/* The textbook gradients; dx, dw, db overwritten (any may be NULL). */
static void ref_bn_backward(bn_dims d, const double *x, const double *w, const double *dy, const double *mean,
                            const double *invstd, bool training, double *dx, double *dw, double *db) {
    const double m = (double)d.n * d.hw;
    for (int c = 0; c < d.c; c++) {
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < d.n; n++)
            for (int j = 0; j < d.hw; j++) {
                const size_t i = AT(d, n, c, j);
                sdy += dy[i];
                sdyx += dy[i] * (x[i] - mean[c]) * invstd[c];
            }
        if (dw) dw[c] = sdyx;
        if (db) db[c] = sdy;
        if (!dx) continue;
        const double s = (w ? w[c] : 1) * invstd[c];
        for (int n = 0; n < d.n; n++)
            for (int j = 0; j < d.hw; j++) {
                const size_t i = AT(d, n, c, j);
                const double xhat = (x[i] - mean[c]) * invstd[c];
                dx[i] = training ? s * (dy[i] - sdy / m - xhat * sdyx / m) : s * dy[i];
            }
    }
}

/* ---------------------------------------------------------------- forward + backward vs ref */

typedef struct bn_setup {
    clg_tensor *x, *w, *b, *rm, *rv; /* w, b NULL without affine */
} bn_setup;

static bn_setup make_setup(clg_context *ctx, clg_dtype dt, const int shape[4], bool affine, uint64_t seed) {
    const int cs[1] = {shape[1]};
    bn_setup s = {0};
    /* An offset mean, so a one-pass variance would lose digits where two passes do not. */
    s.x = ref_rand(ctx, dt, 4, shape, seed, 1.0, 3.0);
    if (affine) {
        s.w = ref_rand(ctx, dt, 1, cs, seed + 1, 0.5, 1.5);
        s.b = ref_rand(ctx, dt, 1, cs, seed + 2, -0.5, 0.5);
    }
    s.rm = ref_rand(ctx, dt, 1, cs, seed + 3, -0.5, 0.5);
    s.rv = ref_rand(ctx, dt, 1, cs, seed + 4, 0.5, 2.0);
    return s;
}

static void free_setup(bn_setup *s) {
    clg_tensor_free(s->x);
    clg_tensor_free(s->w);
    clg_tensor_free(s->b);
    clg_tensor_free(s->rm);
    clg_tensor_free(s->rv);
}

static double *host_or_null(const clg_tensor *t) { return t ? ref_to_host_f64(t) : NULL; }

static void test_vs_ref(void **state) {
    clg_context *ctx = *state;
    /* (4, 3, 10, 10): 400 values per channel, more than one work-group's worth. */
    static const int shapes[2][4] = {{3, 4, 5, 3}, {4, 3, 10, 10}};
    const double momentum = 0.1, eps = 1e-5;
    for (int si = 0; si < 2; si++)
        for (int dd = 0; dd < 2; dd++)
            for (int affine = 0; affine < 2; affine++)
                for (int training = 0; training < 2; training++) {
                    const clg_dtype dt = dd ? CLG_F64 : CLG_F32;
                    const int *shape = shapes[si];
                    const bn_dims d = {shape[0], shape[1], shape[2] * shape[3]};
                    const double rtol = dd ? 1e-12 : 2e-5, atol = dd ? 1e-12 : 2e-5;
                    bn_setup s = make_setup(ctx, dt, shape, affine, 40 + si);
                    char what[128];
                    snprintf(what, sizeof what, "%s (%d,%d,%d,%d) affine %d training %d", clg_dtype_name(dt),
                             shape[0], shape[1], shape[2], shape[3], affine, training);
                    double *xh = ref_to_host_f64(s.x), *wh = host_or_null(s.w), *bh = host_or_null(s.b),
                           *rmh = ref_to_host_f64(s.rm), *rvh = ref_to_host_f64(s.rv);
                    const size_t nx = clg_tensor_numel(s.x);
                    double *yw = malloc(nx * sizeof *yw), mean[16], invstd[16];
                    assert_non_null(yw);
                    ref_bn_forward(d, xh, wh, bh, rmh, rvh, training, momentum, eps, yw, mean, invstd);

                    REF_OK(ctx, clg_tensor_set_requires_grad(s.x, true));
                    if (affine) {
                        REF_OK(ctx, clg_tensor_set_requires_grad(s.w, true));
                        REF_OK(ctx, clg_tensor_set_requires_grad(s.b, true));
                    }
                    clg_tensor *y = NULL;
                    REF_OK(ctx,
                           clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){training, momentum, eps}, &y));
                    double *yh = ref_to_host_f64(y);
                    char msg[192];
                    snprintf(msg, sizeof msg, "%s: y", what);
                    ref_assert_close(yh, yw, nx, rtol, atol, msg);
                    double *rm2 = ref_to_host_f64(s.rm), *rv2 = ref_to_host_f64(s.rv);
                    snprintf(msg, sizeof msg, "%s: running_mean", what);
                    ref_assert_close(rm2, rmh, (size_t)d.c, rtol, atol, msg);
                    snprintf(msg, sizeof msg, "%s: running_var", what);
                    ref_assert_close(rv2, rvh, (size_t)d.c, rtol, atol, msg);

                    /* Backward straight through the node, beta = 0. */
                    clg_tensor *dy = ref_rand(ctx, dt, 4, shape, 50 + si, -1, 1);
                    double *dyh = ref_to_host_f64(dy);
                    clg_tensor *dx[3] = {0};
                    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, shape, &dx[0]));
                    if (affine) {
                        REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, &shape[1], &dx[1]));
                        REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, &shape[1], &dx[2]));
                    }
                    const double beta[3] = {0, 0, 0};
                    REF_OK(ctx, ref_call_backward(ctx, y, dy, dx, beta));
                    double *dxw = malloc(nx * sizeof *dxw), dww[16], dbw[16];
                    assert_non_null(dxw);
                    ref_bn_backward(d, xh, wh, dyh, mean, invstd, training, dxw, dww, dbw);
                    double *dxh = ref_to_host_f64(dx[0]);
                    snprintf(msg, sizeof msg, "%s: dx", what);
                    ref_assert_close(dxh, dxw, nx, rtol, dd ? 1e-11 : 1e-4, msg);
                    free(dxh);
                    if (affine) {
                        double *dwh = ref_to_host_f64(dx[1]), *dbh = ref_to_host_f64(dx[2]);
                        snprintf(msg, sizeof msg, "%s: dweight", what);
                        ref_assert_close(dwh, dww, (size_t)d.c, rtol, dd ? 1e-11 : 1e-3, msg);
                        snprintf(msg, sizeof msg, "%s: dbias", what);
                        ref_assert_close(dbh, dbw, (size_t)d.c, rtol, dd ? 1e-11 : 1e-3, msg);
                        free(dwh);
                        free(dbh);
                    }
                    for (int i = 0; i < 3; i++)
                        clg_tensor_free(dx[i]);
                    free(xh);
                    free(wh);
                    free(bh);
                    free(rmh);
                    free(rvh);
                    free(yw);
                    free(yh);
                    free(rm2);
                    free(rv2);
                    free(dyh);
                    free(dxw);
                    clg_tensor_free(dy);
                    clg_tensor_free(y);
                    free_setup(&s);
                }
}

/* ---------------------------------------------------------------- gradients */

typedef struct gc_user {
    bool training;
    clg_tensor *rm, *rv; /* NULL in training: the numeric forwards then leave no trace */
} gc_user;

static clg_status gc_bn(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    const gc_user *u = user;
    return clg_batch_norm2d(ctx, in[0], in[1], in[2], u->rm, u->rv, (clg_batch_norm2d_params){u->training, 0.1, 1e-5}, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {3, 2, 3, 3};
    for (int training = 0; training < 2; training++)
        for (int affine = 0; affine < 2; affine++) {
            bn_setup s = make_setup(ctx, CLG_F64, shape, affine, 60);
            gc_user u = {training, training ? NULL : s.rm, training ? NULL : s.rv};
            clg_tensor *in[3] = {s.x, s.w, s.b};
            for (int i = 0; i < 3; i++)
                if (in[i]) REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
            char what[96];
            snprintf(what, sizeof what, "batch_norm2d training %d affine %d gradcheck", training, affine);
            ref_gradcheck(ctx, gc_bn, in, 3, &u, 1e-6, 1e-6, what);
            free_setup(&s);
        }
}

/* Only weight needs a gradient (x is data): backward still reaches it. */
static void test_gradcheck_weight_only(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {2, 3, 2, 3};
    bn_setup s = make_setup(ctx, CLG_F64, shape, true, 70);
    REF_OK(ctx, clg_tensor_set_requires_grad(s.w, true));
    gc_user u = {true, NULL, NULL};
    clg_tensor *in[3] = {s.x, s.w, s.b};
    ref_gradcheck(ctx, gc_bn, in, 3, &u, 1e-6, 1e-6, "batch_norm2d weight only");
    free_setup(&s);
}

static void test_accumulate(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {2, 3, 4, 3};
    for (int dd = 0; dd < 2; dd++)
        for (int training = 0; training < 2; training++)
            for (int affine = 0; affine < 2; affine++) {
                const clg_dtype dt = dd ? CLG_F64 : CLG_F32;
                bn_setup s = make_setup(ctx, dt, shape, affine, 80);
                clg_tensor *in[3] = {s.x, s.w, s.b}, *y = NULL;
                for (int i = 0; i < 3; i++)
                    if (in[i]) REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
                REF_OK(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){training, 0.1, 1e-5}, &y));
                char what[96];
                snprintf(what, sizeof what, "batch_norm2d %s training %d affine %d", clg_dtype_name(dt),
                         training, affine);
                ref_check_accumulate(ctx, y, in, 3, what);
                clg_tensor_free(y);
                free_setup(&s);
            }
}

/* ---------------------------------------------------------------- PyTorch */

static void test_pytorch_fixture(void **state) {
    clg_context *ctx = *state;
    clg_st_file f;
    ref_fixture_open(&f, "ops.safetensors");
    clg_tensor *x = ref_fixture_tensor(ctx, &f, "batch_norm2d.x");
    clg_tensor *w = ref_fixture_tensor(ctx, &f, "batch_norm2d.weight");
    clg_tensor *b = ref_fixture_tensor(ctx, &f, "batch_norm2d.bias");
    clg_tensor *r = ref_fixture_tensor(ctx, &f, "batch_norm2d.r");
    const int *xs = clg_tensor_shape(x);
    clg_tensor *rm = NULL, *rv = NULL, *y = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, &xs[1], &rm));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, &xs[1], &rv));
    REF_OK(ctx, clg_tensor_fill(rv, 1.0)); /* PyTorch's initial running stats */
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
    REF_OK(ctx, clg_batch_norm2d(ctx, x, w, b, rm, rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y));
    REF_OK(ctx, clg_backward_grad(ctx, y, r));

    const struct {
        const char *name;
        const clg_tensor *t;
    } cmp[] = {
        {"batch_norm2d.y", y},
        {"batch_norm2d.running_mean", rm},
        {"batch_norm2d.running_var", rv},
        {"batch_norm2d.dx", clg_tensor_grad(x)},
        {"batch_norm2d.dweight", clg_tensor_grad(w)},
        {"batch_norm2d.dbias", clg_tensor_grad(b)},
    };
    for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++)
        ref_assert_fixture(&f, cmp[i].name, cmp[i].t, 0, 1e-10);
    clg_tensor_free(y);
    clg_tensor_free(rm);
    clg_tensor_free(rv);
    clg_tensor_free(r);
    clg_tensor_free(b);
    clg_tensor_free(w);
    clg_tensor_free(x);
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- modes */

/* Two identical runs give identical bits: fixed-order reductions, no atomics. */
static void test_deterministic(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {4, 3, 10, 10};
    double *first[4] = {0};
    for (int run = 0; run < 2; run++) {
        bn_setup s = make_setup(ctx, CLG_F32, shape, true, 90);
        clg_tensor *in[3] = {s.x, s.w, s.b}, *y = NULL;
        for (int i = 0; i < 3; i++)
            REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
        REF_OK(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y));
        clg_tensor *dy = ref_rand(ctx, CLG_F32, 4, shape, 91, -1, 1);
        REF_OK(ctx, clg_backward_grad(ctx, y, dy));
        const clg_tensor *outs[4] = {y, clg_tensor_grad(s.x), clg_tensor_grad(s.w), clg_tensor_grad(s.b)};
        for (int i = 0; i < 4; i++) {
            double *h = ref_to_host_f64(outs[i]);
            if (run == 0) {
                first[i] = h;
            } else {
                ref_assert_close(h, first[i], clg_tensor_numel(outs[i]), 0, 0, "second run");
                free(h);
                free(first[i]);
            }
        }
        clg_tensor_free(dy);
        clg_tensor_free(y);
        free_setup(&s);
    }
}

/* No grad: nothing recorded, yet training still moves the running stats (as PyTorch). */
static void test_no_grad(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {2, 2, 3, 3};
    bn_setup s = make_setup(ctx, CLG_F64, shape, true, 100);
    REF_OK(ctx, clg_tensor_set_requires_grad(s.x, true));
    double *rm0 = ref_to_host_f64(s.rm);
    const bool was = clg_set_grad_enabled(ctx, false);
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y));
    clg_set_grad_enabled(ctx, was);
    assert_null(y->grad_fn);
    double *rm1 = ref_to_host_f64(s.rm);
    assert_true(rm1[0] != rm0[0] && rm1[1] != rm0[1]);
    clg_tensor_free(y);
    /* momentum 0 leaves them alone; eval never touches them. */
    REF_OK(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.0, 1e-5}, &y));
    clg_tensor_free(y);
    REF_OK(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){false, 0.1, 1e-5}, &y));
    clg_tensor_free(y);
    double *rm2 = ref_to_host_f64(s.rm);
    ref_assert_close(rm2, rm1, 2, 0, 0, "running_mean after momentum 0 and eval");
    free(rm0);
    free(rm1);
    free(rm2);
    free_setup(&s);
}

/* ---------------------------------------------------------------- errors */

static void expect_fail(clg_context *ctx, clg_status got, clg_status want, const char *needle) {
    if (got != want)
        fail_msg("expected %s, got %s (%s)", clg_status_name(want), clg_status_name(got),
                 clg_context_errmsg(ctx));
    if (!strstr(clg_context_errmsg(ctx), needle))
        fail_msg("error message \"%s\" does not mention \"%s\"", clg_context_errmsg(ctx), needle);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {2, 3, 2, 2}, s3[3] = {2, 3, 4}, c2[1] = {2}, one[4] = {1, 3, 1, 1};
    bn_setup s = make_setup(ctx, CLG_F64, shape, true, 110);
    clg_tensor *x3 = ref_rand(ctx, CLG_F64, 3, s3, 1, 0, 1), *w2 = ref_rand(ctx, CLG_F64, 1, c2, 1, 0, 1);
    clg_tensor *x1 = ref_rand(ctx, CLG_F64, 4, one, 1, 0, 1);
    clg_tensor *w32 = NULL;
    REF_OK(ctx, clg_tensor_cast(s.w, CLG_F32, &w32));
    double *rm0 = ref_to_host_f64(s.rm), *rv0 = ref_to_host_f64(s.rv);
    clg_tensor *y = (clg_tensor *)1;

    expect_fail(ctx, clg_batch_norm2d(ctx, NULL, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y),
                CLG_INVALID_ARGUMENT, "x is NULL");
    assert_null(y);
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, NULL),
                CLG_INVALID_ARGUMENT, "out");
    expect_fail(ctx, clg_batch_norm2d(ctx, x3, NULL, NULL, NULL, NULL, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y),
                CLG_SHAPE_MISMATCH, "4-D");
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, w2, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y), CLG_SHAPE_MISMATCH,
                "weight");
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, s.w, w2, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y), CLG_SHAPE_MISMATCH,
                "bias");
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, w32, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y),
                CLG_INVALID_ARGUMENT, "f32");
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, NULL, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y),
                CLG_INVALID_ARGUMENT, "both or neither");
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, NULL, NULL, (clg_batch_norm2d_params){false, 0.1, 1e-5}, &y),
                CLG_INVALID_ARGUMENT, "evaluation needs");
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 1.5, 1e-5}, &y),
                CLG_INVALID_ARGUMENT, "momentum");
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, NAN, 1e-5}, &y),
                CLG_INVALID_ARGUMENT, "momentum");
    expect_fail(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, -1}, &y),
                CLG_INVALID_ARGUMENT, "eps");
    expect_fail(ctx, clg_batch_norm2d(ctx, x1, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y), CLG_SHAPE_MISMATCH,
                "more than 1 value per channel");
    assert_null(y);
    /* Nothing above moved the running stats, and the context still works. */
    double *rm1 = ref_to_host_f64(s.rm), *rv1 = ref_to_host_f64(s.rv);
    ref_assert_close(rm1, rm0, 3, 0, 0, "running_mean after failures");
    ref_assert_close(rv1, rv0, 3, 0, 0, "running_var after failures");
    REF_OK(ctx, clg_batch_norm2d(ctx, x1, s.w, s.b, s.rm, s.rv, (clg_batch_norm2d_params){false, 0.1, 1e-5}, &y)); /* eval: fine */
    clg_tensor_free(y);
    REF_OK(ctx, clg_batch_norm2d(ctx, s.x, NULL, NULL, NULL, NULL, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y));
    clg_tensor_free(y);
    free(rm0);
    free(rv0);
    free(rm1);
    free(rv1);
    clg_tensor_free(x3);
    clg_tensor_free(w2);
    clg_tensor_free(x1);
    clg_tensor_free(w32);
    free_setup(&s);
}

/* ---------------------------------------------------------------- NaN */

/* As PyTorch: a NaN in x makes its channel's statistics, output, running stats, dx and dw
 * NaN (db = sum dy stays finite); a NaN in dy makes its channel's dx, dw and db NaN; in
 * evaluation a NaN running mean makes its channel's y and dw NaN while dx = dy w invstd stays
 * finite; a NaN weight makes its channel's y and dx NaN. The naive reference above is plain
 * IEEE arithmetic, so it gives NaN exactly there. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {2, 3, 2, 2}, cs[1] = {3};
    const bn_dims d = {2, 3, 4};
    enum { NX = 24 };
    for (int dd = 0; dd < 2; dd++) {
        const clg_dtype dt = dd ? CLG_F64 : CLG_F32;
        for (int k = 0; k < 4; k++) {
            const bool training = k < 2;
            double xv[NX], dyv[NX], wv[3] = {1.5, 0.5, -1}, bv[3] = {0.1, 0.2, 0.3}, rm[3] = {0.5, -0.5, 1},
                                            rv[3] = {1, 2, 0.5};
            for (int i = 0; i < NX; i++)
                xv[i] = (double)((i * 7) % 10) / 4 - 1, dyv[i] = (double)((i * 3) % 5) / 2 - 1;
            if (k == 0) xv[AT(d, 1, 0, 2)] = NAN;  /* x, channel 0 */
            if (k == 1) dyv[AT(d, 0, 1, 3)] = NAN; /* dy, channel 1 */
            if (k == 2) rm[2] = NAN;               /* running mean, channel 2 (evaluation) */
            if (k == 3) wv[1] = NAN;               /* weight, channel 1 (evaluation) */
            clg_tensor *x = nan_tensor(ctx, dt, 4, shape, xv), *w = nan_tensor(ctx, dt, 1, cs, wv);
            clg_tensor *b = nan_tensor(ctx, dt, 1, cs, bv), *trm = nan_tensor(ctx, dt, 1, cs, rm);
            clg_tensor *trv = nan_tensor(ctx, dt, 1, cs, rv), *dy = nan_tensor(ctx, dt, 4, shape, dyv), *y = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
            REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
            clg_batch_norm2d_params p = clg_batch_norm2d_default_params();
            p.training = training;
            REF_OK(ctx, clg_batch_norm2d(ctx, x, w, b, trm, trv, p, &y));
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            double wy[NX], mean[3], invstd[3], wdx[NX], wdw[3], wdb[3];
            ref_bn_forward(d, xv, wv, bv, rm, rv, training, p.momentum, p.eps, wy, mean, invstd);
            ref_bn_backward(d, xv, wv, dyv, mean, invstd, training, wdx, wdw, wdb);
            char what[64];
            /* sums of 8 values of size ~1, then a normalisation: a few units of rounding, the
             * relative tolerance scaled by the sums' length */
            const double rt = 8 * nan_rtol(dt);
            snprintf(what, sizeof what, "batch_norm2d case %d forward with NaN", k);
            nan_expect(y, wy, NX, rt, rt, what, dt);
            snprintf(what, sizeof what, "batch_norm2d case %d running mean", k);
            nan_expect(trm, rm, 3, rt, rt, what, dt);
            snprintf(what, sizeof what, "batch_norm2d case %d running var", k);
            nan_expect(trv, rv, 3, rt, rt, what, dt);
            snprintf(what, sizeof what, "batch_norm2d case %d dx with NaN", k);
            nan_expect(clg_tensor_grad(x), wdx, NX, rt, rt, what, dt);
            snprintf(what, sizeof what, "batch_norm2d case %d dw with NaN", k);
            nan_expect(clg_tensor_grad(w), wdw, 3, rt, rt, what, dt);
            snprintf(what, sizeof what, "batch_norm2d case %d db with NaN", k);
            nan_expect(clg_tensor_grad(b), wdb, 3, rt, rt, what, dt);
            clg_tensor *all[] = {x, w, b, trm, trv, dy, y};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                clg_tensor_free(all[i]);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_ref),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_gradcheck_weight_only),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_pytorch_fixture),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_no_grad),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_nan),
    };
    return REF_RUN_BOTH_STYLES("batchnorm", tests);
}
