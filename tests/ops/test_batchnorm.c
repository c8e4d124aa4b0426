/* tests/ops/test_batchnorm.c - batch_norm2d (src/ops/batchnorm.c, cl/ops/batchnorm.cl):
 * forward, running-stat updates and backward against a naive host reference below, f64
 * finite differences, the beta contract, PyTorch fixtures, determinism, bad input and NaN;
 * synchronized batch norm (clg_sync_batch_norm2d) over two replicas in two threads against
 * one batch_norm2d over their joint batch, and its NULL sync and failure cases; the fused
 * batch_norm2d_relu bit for bit against batch_norm2d then relu.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
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
                /* The fused op's gradients keep the contract too (the ReLU mask inside). */
                REF_OK(ctx, clg_batch_norm2d_relu(ctx, s.x, s.w, s.b, s.rm, s.rv,
                                                  (clg_batch_norm2d_params){training, 0.1, 1e-5}, &y));
                snprintf(what, sizeof what, "batch_norm2d_relu %s training %d affine %d", clg_dtype_name(dt),
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
    /* The fused op validates as batch_norm2d, before anything runs. */
    expect_fail(ctx,
                clg_batch_norm2d_relu(ctx, s.x, s.w, s.b, s.rm, s.rv,
                                      (clg_batch_norm2d_params){true, 0.1, 1e-5}, NULL),
                CLG_INVALID_ARGUMENT, "out");
    expect_fail(ctx,
                clg_batch_norm2d_relu(ctx, x3, NULL, NULL, NULL, NULL,
                                      (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y),
                CLG_SHAPE_MISMATCH, "4-D");
    expect_fail(
        ctx,
        clg_batch_norm2d_relu(ctx, s.x, w32, s.b, s.rm, s.rv, (clg_batch_norm2d_params){true, 0.1, 1e-5}, &y),
        CLG_INVALID_ARGUMENT, "f32");
    expect_fail(ctx,
                clg_batch_norm2d_relu(ctx, s.x, s.w, s.b, NULL, NULL,
                                      (clg_batch_norm2d_params){false, 0.1, 1e-5}, &y),
                CLG_INVALID_ARGUMENT, "evaluation needs");
    expect_fail(ctx,
                clg_sync_batch_norm2d_relu(ctx, x1, s.w, s.b, s.rm, s.rv,
                                           (clg_batch_norm2d_params){true, 0.1, 1e-5}, NULL, &y),
                CLG_SHAPE_MISMATCH, "more than 1 value per channel");
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

/* ---------------------------------------------------------------- synchronized (SyncBatchNorm) */

/* Two replicas in one process: two threads, each with its own context (a context is used by
 * one thread at a time; different contexts are independent, include/clgrad/context.h), meet
 * in a sync_room whose sum adds replica 0's values and replica 1's in that order, the same
 * bits on both. A replica that fails outside a sum breaks the room, so the other stops
 * waiting instead of hanging the test. */
typedef struct sync_room {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int parties; /* replicas: 1 or 2 */
    int arrived;
    unsigned generation;
    bool broken;
    const double *slot[2];
    int n[2];
} sync_room;

typedef struct sync_seat {
    sync_room *room;
    int rank;
    int calls, sizes[4]; /* the sums this replica asked for, and their lengths */
} sync_seat;

/* Every replica arrived (true), or the room broke first (false). */
static bool room_meet(sync_room *r) {
    pthread_mutex_lock(&r->mu);
    const unsigned gen = r->generation;
    if (++r->arrived == r->parties) {
        r->arrived = 0;
        r->generation++;
        pthread_cond_broadcast(&r->cv);
    } else {
        while (gen == r->generation && !r->broken)
            pthread_cond_wait(&r->cv, &r->mu);
    }
    const bool met = gen != r->generation;
    pthread_mutex_unlock(&r->mu);
    return met;
}

static void room_break(sync_room *r) {
    pthread_mutex_lock(&r->mu);
    r->broken = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* clg_replica_sum over the room: both publish, both add slot 0 + slot 1 into a buffer, meet
 * again (nobody overwrites a slot the other still reads), then copy the sum back. */
static clg_status room_sum(void *user, clg_context *ctx, double *values, int n) {
    sync_seat *s = user;
    sync_room *r = s->room;
    if (s->calls < 4) s->sizes[s->calls] = n;
    s->calls++;
    double *sum = malloc((n > 0 ? (size_t)n : 1) * sizeof *sum);
    if (!sum) {
        room_break(r);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "test: replica sum out of memory");
    }
    r->slot[s->rank] = values;
    r->n[s->rank] = n;
    bool met = room_meet(r);
    const bool same = met && (r->parties == 1 || r->n[0] == r->n[1]);
    for (int i = 0; same && i < n; i++)
        sum[i] = r->parties == 1 ? r->slot[0][i] : r->slot[0][i] + r->slot[1][i];
    met = same && room_meet(r);
    if (met) memcpy(values, sum, (size_t)n * sizeof *sum);
    free(sum);
    return met ? CLG_OK
               : clg__fail(ctx, CLG_COMM_ERROR,
                           "test: replica sum of %d values failed (another replica did not "
                           "come, or asked for another count)",
                           n);
}

/* Host doubles in and out of tensors of any dtype, without cmocka (the replicas' threads
 * must not fail a test themselves: cmocka's asserts jump). */
static clg_status bn_tensor_in(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, const double *v,
                               clg_tensor **out) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    if (dt == CLG_F64) return clg_tensor_from_host(ctx, dt, ndim, shape, v, out);
    float *f = malloc(n * sizeof *f);
    if (!f) return CLG_OUT_OF_HOST_MEMORY;
    for (size_t i = 0; i < n; i++)
        f[i] = (float)v[i];
    clg_status st = clg_tensor_from_host(ctx, dt, ndim, shape, f, out);
    free(f);
    return st;
}

static clg_status bn_tensor_out(const clg_tensor *t, double *out) {
    if (!t) return CLG_INVALID_ARGUMENT;
    const size_t n = clg_tensor_numel(t);
    if (clg_tensor_dtype(t) == CLG_F64) return clg_tensor_to_host(t, out, n * sizeof *out);
    float *f = malloc(n * sizeof *f);
    if (!f) return CLG_OUT_OF_HOST_MEMORY;
    clg_status st = clg_tensor_to_host(t, f, n * sizeof *f);
    for (size_t i = 0; st == CLG_OK && i < n; i++)
        out[i] = f[i];
    free(f);
    return st;
}

enum { SYNC_MAXC = 8 };

/* One training forward and backward of batch_norm2d on x (shape) with upstream gradient dy:
 * y, dx, dweight, dbias (affine) and the running stats afterwards, as host doubles. */
typedef struct bn_run {
    clg_context *ctx;
    const clg_replica_sum *sync; /* NULL: clg_batch_norm2d */
    clg_dtype dt;
    int shape[4];
    bool affine;
    const double *x, *dy, *w, *b, *rm0, *rv0;
    double *y, *dx, dw[SYNC_MAXC], db[SYNC_MAXC], rm[SYNC_MAXC], rv[SYNC_MAXC];
    sync_room *room; /* broken when this run fails (replicas only) */
    clg_status st;
    char err[512];
} bn_run;

static const double SYNC_MOMENTUM = 0.1, SYNC_EPS = 1e-5;

static void *bn_run_once(void *arg) {
    bn_run *r = arg;
    clg_context *ctx = r->ctx;
    const int cs[1] = {r->shape[1]};
    clg_tensor *x = NULL, *w = NULL, *b = NULL, *rm = NULL, *rv = NULL, *dy = NULL, *y = NULL;
    clg_status st = bn_tensor_in(ctx, r->dt, 4, r->shape, r->x, &x);
    if (st == CLG_OK) st = bn_tensor_in(ctx, r->dt, 4, r->shape, r->dy, &dy);
    if (st == CLG_OK && r->affine) st = bn_tensor_in(ctx, r->dt, 1, cs, r->w, &w);
    if (st == CLG_OK && r->affine) st = bn_tensor_in(ctx, r->dt, 1, cs, r->b, &b);
    if (st == CLG_OK) st = bn_tensor_in(ctx, r->dt, 1, cs, r->rm0, &rm);
    if (st == CLG_OK) st = bn_tensor_in(ctx, r->dt, 1, cs, r->rv0, &rv);
    if (st == CLG_OK) st = clg_tensor_set_requires_grad(x, true);
    if (st == CLG_OK && r->affine) st = clg_tensor_set_requires_grad(w, true);
    if (st == CLG_OK && r->affine) st = clg_tensor_set_requires_grad(b, true);
    const clg_batch_norm2d_params p = {true, SYNC_MOMENTUM, SYNC_EPS};
    if (st == CLG_OK)
        st = r->sync ? clg_sync_batch_norm2d(ctx, x, w, b, rm, rv, p, r->sync, &y)
                     : clg_batch_norm2d(ctx, x, w, b, rm, rv, p, &y);
    if (st == CLG_OK) st = clg_backward_grad(ctx, y, dy);
    if (st == CLG_OK) st = bn_tensor_out(y, r->y);
    if (st == CLG_OK) st = bn_tensor_out(clg_tensor_grad(x), r->dx);
    if (st == CLG_OK && r->affine) st = bn_tensor_out(clg_tensor_grad(w), r->dw);
    if (st == CLG_OK && r->affine) st = bn_tensor_out(clg_tensor_grad(b), r->db);
    if (st == CLG_OK) st = bn_tensor_out(rm, r->rm);
    if (st == CLG_OK) st = bn_tensor_out(rv, r->rv);
    if (st != CLG_OK) {
        snprintf(r->err, sizeof r->err, "%s", clg_context_errmsg(ctx));
        if (r->room) room_break(r->room);
    }
    r->st = st;
    clg_tensor *all[] = {x, w, b, rm, rv, dy, y};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        clg_tensor_free(all[i]);
    return NULL;
}

/* A uniform draw in [lo, hi) from a 64-bit LCG, rounded to dt so both runs see the same data. */
static double sync_draw(uint64_t *z, double lo, double hi, clg_dtype dt) {
    *z = *z * 6364136223846793005ull + 1442695040888963407ull;
    const double v = lo + (hi - lo) * (double)(*z >> 11) / 0x1p53;
    return dt == CLG_F32 ? (double)(float)v : v;
}

/* |got - want| <= tol[c] for channel c of (N, C, HW) values (hw 1 for per-channel ones),
 * printing the first failure; returns the largest |got - want| / tol and raises *worst_rel to
 * the largest |got - want| / max |want|. */
static double sync_check(const double *got, const double *want, int n, int c_count, int hw, const double *tol,
                         const char *what, double *worst_rel, bool *ok) {
    const int count = n * c_count * hw;
    double worst = 0, scale = 0, diff = 0;
    for (int i = 0; i < count; i++)
        scale = fmax(scale, fabs(want[i]));
    for (int i = 0; i < count; i++) {
        const int c = (i / hw) % c_count;
        const double d = fabs(got[i] - want[i]);
        if (!(d <= tol[c]) && *ok) {
            print_error("%s[%d]: %.17g, want %.17g (|diff| %.3g > bound %.3g)\n", what, i, got[i], want[i], d,
                        tol[c]);
            *ok = false;
        }
        worst = fmax(worst, d / tol[c]);
        diff = fmax(diff, d);
    }
    if (scale > 0) *worst_rel = fmax(*worst_rel, diff / scale);
    return worst;
}

/* R replicas (1 or 2) of batch n each, synchronized, against one clg_batch_norm2d over the
 * R n batch: each replica's y and dx are its rows of the single run's, its running stats the
 * single run's (and the same bits as the other replica's), dweight and dbias summed over the
 * replicas the single run's; every sum asked for is 2C + 1 values forward, 2C backward.
 * Replica 0 runs on ctx, replica 1 on ctx1, each on a thread of its own. */
static void sync_case(clg_context *ctx, clg_context *ctx1, int replicas, const int ls[4], bool affine,
                      clg_dtype dt, uint64_t seed) {
    const int C = ls[1], HW = ls[2] * ls[3];
    const int gs[4] = {replicas * ls[0], C, ls[2], ls[3]};
    const size_t nl = (size_t)ls[0] * C * HW, ng = (size_t)replicas * nl;
    const double M = (double)gs[0] * HW; /* values per channel in the global batch */
    uint64_t z = seed;
    double *xg = malloc(ng * sizeof *xg), *dyg = malloc(ng * sizeof *dyg);
    double *outs = malloc(6 * ng * sizeof *outs);
    assert_true(xg && dyg && outs);
    double w[SYNC_MAXC], b[SYNC_MAXC], rm0[SYNC_MAXC], rv0[SYNC_MAXC];
    /* x offset from 0 (mean 2, sd 0.58) so the statistics' cancellation is exercised */
    for (size_t i = 0; i < ng; i++) {
        xg[i] = sync_draw(&z, 1, 3, dt);
        dyg[i] = sync_draw(&z, -1, 1, dt);
    }
    for (int c = 0; c < C; c++) {
        w[c] = sync_draw(&z, 0.5, 1.5, dt);
        b[c] = sync_draw(&z, -0.5, 0.5, dt);
        rm0[c] = sync_draw(&z, -0.5, 0.5, dt);
        rv0[c] = sync_draw(&z, 0.5, 2, dt);
    }
    sync_room room = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .parties = replicas};
    sync_seat seat[2] = {{&room, 0, 0, {0}}, {&room, 1, 0, {0}}};
    const clg_replica_sum sums[2] = {{room_sum, &seat[0]}, {room_sum, &seat[1]}};
    bn_run rep[2], one = {.ctx = ctx,
                          .dt = dt,
                          .affine = affine,
                          .x = xg,
                          .dy = dyg,
                          .w = w,
                          .b = b,
                          .rm0 = rm0,
                          .rv0 = rv0,
                          .y = outs,
                          .dx = outs + ng};
    memcpy(one.shape, gs, sizeof gs);
    for (int r = 0; r < replicas; r++) {
        rep[r] = one;
        rep[r].ctx = r ? ctx1 : ctx;
        rep[r].sync = &sums[r];
        rep[r].room = &room;
        memcpy(rep[r].shape, ls, sizeof gs);
        rep[r].x = xg + r * nl;
        rep[r].dy = dyg + r * nl;
        rep[r].y = outs + (2 + r) * ng;
        rep[r].dx = outs + (4 + r) * ng;
    }
    pthread_t th[2];
    for (int r = 0; r < replicas; r++)
        assert_int_equal(pthread_create(&th[r], NULL, bn_run_once, &rep[r]), 0);
    for (int r = 0; r < replicas; r++)
        pthread_join(th[r], NULL);
    /* the single big batch, on the first context after the threads are done */
    bn_run_once(&one);
    char what[160];
    snprintf(what, sizeof what, "sync %s (%d x %d,%d,%d,%d) affine %d", clg_dtype_name(dt), replicas, ls[0],
             C, ls[2], ls[3], affine);
    for (int r = 0; r < replicas; r++)
        if (rep[r].st != CLG_OK)
            fail_msg("%s: replica %d: %s: %s", what, r, clg_status_name(rep[r].st), rep[r].err);
    if (one.st != CLG_OK) fail_msg("%s: single run: %s: %s", what, clg_status_name(one.st), one.err);
    for (int r = 0; r < replicas; r++) {
        assert_int_equal(seat[r].calls, 2);
        assert_int_equal(seat[r].sizes[0], 2 * C + 1);
        assert_int_equal(seat[r].sizes[1], 2 * C);
    }
    /* Bounds. Each run sums at most M values per channel, with error below gamma = M u
     * (u: dt's unit roundoff) whatever the order (tree or sequential); the replicas' mean and
     * variance come from (M, M mu, q + M mu^2) summed in double, whose cancellation and the
     * single run's two passes both lose at most about gamma kappa relative to the variance,
     * kappa = 1 + mean|x|^2 / var. To first order that moves xhat by (2 + 4 |xhat|) gamma kappa,
     * invstd by 4 gamma kappa and dx's two sums per M by a few gamma kappa D (1 + X),
     * D = max |dy|, X = max |xhat|: the bounds below take 16 gamma kappa times each quantity's
     * scale, twice the first-order sum. */
    double tol_y[SYNC_MAXC], tol_dx[SYNC_MAXC], tol_dw[SYNC_MAXC], tol_db[SYNC_MAXC], tol_rm[SYNC_MAXC],
        tol_rv[SYNC_MAXC];
    const double gamma = M * (dt == CLG_F64 ? 0x1p-53 : 0x1p-24);
    for (int c = 0; c < C; c++) {
        double s = 0, sa = 0, q = 0, dmax = 0, xmax = 0;
        for (int n = 0; n < gs[0]; n++)
            for (int j = 0; j < HW; j++) {
                const size_t i = ((size_t)n * C + c) * HW + j;
                s += xg[i];
                sa += fabs(xg[i]);
                dmax = fmax(dmax, fabs(dyg[i]));
            }
        const double mean = s / M, mabs = sa / M;
        for (int n = 0; n < gs[0]; n++)
            for (int j = 0; j < HW; j++)
                q += pow(xg[((size_t)n * C + c) * HW + j] - mean, 2);
        const double var = q / M, invstd = 1 / sqrt(var + SYNC_EPS);
        for (int n = 0; n < gs[0]; n++)
            for (int j = 0; j < HW; j++)
                xmax = fmax(xmax, fabs(xg[((size_t)n * C + c) * HW + j] - mean) * invstd);
        const double kappa = 1 + mabs * mabs / var, k = 16 * gamma * kappa;
        const double wc = affine ? fabs(w[c]) : 1, bc = affine ? fabs(b[c]) : 0;
        tol_y[c] = k * (wc * (1 + xmax) + bc);
        tol_dx[c] = k * wc * invstd * dmax * (1 + xmax) * (1 + xmax);
        tol_dw[c] = k * M * dmax * xmax;
        tol_db[c] = 16 * gamma * M * dmax;
        tol_rm[c] = k * (fabs(rm0[c]) + mabs);
        tol_rv[c] = k * (rv0[c] + var * M / (M - 1));
    }
    bool ok = true;
    double rel = 0, worst = 0;
    char w2[200];
    for (int r = 0; r < replicas; r++) {
        snprintf(w2, sizeof w2, "%s replica %d y", what, r);
        worst = fmax(worst, sync_check(rep[r].y, one.y + r * nl, ls[0], C, HW, tol_y, w2, &rel, &ok));
        snprintf(w2, sizeof w2, "%s replica %d dx", what, r);
        worst = fmax(worst, sync_check(rep[r].dx, one.dx + r * nl, ls[0], C, HW, tol_dx, w2, &rel, &ok));
        snprintf(w2, sizeof w2, "%s replica %d running_mean", what, r);
        worst = fmax(worst, sync_check(rep[r].rm, one.rm, 1, C, 1, tol_rm, w2, &rel, &ok));
        snprintf(w2, sizeof w2, "%s replica %d running_var", what, r);
        worst = fmax(worst, sync_check(rep[r].rv, one.rv, 1, C, 1, tol_rv, w2, &rel, &ok));
    }
    /* every replica moves its running stats by the same global statistics */
    if (replicas == 2) {
        assert_memory_equal(rep[0].rm, rep[1].rm, (size_t)C * sizeof(double));
        assert_memory_equal(rep[0].rv, rep[1].rv, (size_t)C * sizeof(double));
    }
    if (affine) {
        double dw[SYNC_MAXC], db[SYNC_MAXC];
        for (int c = 0; c < C; c++) {
            dw[c] = db[c] = 0;
            for (int r = 0; r < replicas; r++) {
                dw[c] += rep[r].dw[c];
                db[c] += rep[r].db[c];
            }
        }
        snprintf(w2, sizeof w2, "%s dweight summed over the replicas", what);
        worst = fmax(worst, sync_check(dw, one.dw, 1, C, 1, tol_dw, w2, &rel, &ok));
        snprintf(w2, sizeof w2, "%s dbias summed over the replicas", what);
        worst = fmax(worst, sync_check(db, one.db, 1, C, 1, tol_db, w2, &rel, &ok));
    }
    print_message("%s: max |diff| / bound %.3g, max |diff| / max |value| %.3g\n", what, worst, rel);
    free(xg);
    free(dyg);
    free(outs);
    pthread_mutex_destroy(&room.mu);
    pthread_cond_destroy(&room.cv);
    if (!ok) fail_msg("%s: synchronized replicas differ from the single batch", what);
}

/* per replica: (n, C, H, W); H = W = 1 and a replica holding 1 value per channel included */
static const int sync_shapes[][4] = {{3, 4, 5, 3}, {3, 3, 10, 10}, {3, 5, 1, 1}, {3, 2, 1, 7}, {1, 3, 1, 1}};
enum { SYNC_SHAPES = sizeof sync_shapes / sizeof sync_shapes[0] };

/* f64 only on a device with it */
static bool sync_dtype_ok(clg_context *ctx, clg_dtype dt) {
    clg_device_info info;
    REF_OK(ctx, clg_context_device_info(ctx, &info));
    if (dt == CLG_F64 && !info.fp64)
        print_message("[  SKIP    ] synchronized batch_norm2d in f64: %s has no fp64\n", info.name);
    return dt != CLG_F64 || info.fp64;
}

/* One replica whose sum is its own values: the synchronized path (moments combined in double
 * on the host) against clg_batch_norm2d's own statistics on the same batch. */
static void test_sync_one_replica(void **state) {
    clg_context *ctx = *state;
    for (int dd = 0; dd < 2; dd++) {
        const clg_dtype dt = dd ? CLG_F64 : CLG_F32;
        if (!sync_dtype_ok(ctx, dt)) continue;
        for (int si = 0; si < SYNC_SHAPES - 1; si++) /* the last holds 1 value per channel */
            for (int affine = 0; affine < 2; affine++)
                sync_case(ctx, NULL, 1, sync_shapes[si], affine, dt,
                          2000 + 10 * (uint64_t)si + (uint64_t)affine);
    }
}

/* Two replicas, two threads, two contexts (a context is used by one thread at a time). */
static void test_sync_two_replicas(void **state) {
    clg_context *ctx = *state;
    clg_context_params cp = clg_context_default_params();
    cp.kernel_style = clg_context_kernel_style(ctx); /* the second replica's kernels as the first's */
    clg_context *ctx1 = NULL;
    char err[1024] = "";
    if (clg_context_create(&cp, &ctx1, err, sizeof err) != CLG_OK) fail_msg("second context: %s", err);
    for (int dd = 0; dd < 2; dd++) {
        const clg_dtype dt = dd ? CLG_F64 : CLG_F32;
        if (!sync_dtype_ok(ctx, dt)) continue;
        for (int si = 0; si < SYNC_SHAPES; si++)
            for (int affine = 0; affine < 2; affine++)
                sync_case(ctx, ctx1, 2, sync_shapes[si], affine, dt,
                          1000 + 10 * (uint64_t)si + (uint64_t)affine);
    }
    clg_context_free(ctx1); /* not on a failure above: cmocka's fail jumps out */
}

/* A sum over one replica: its own values (the sum of one). */
static clg_status sum_of_one(void *user, clg_context *ctx, double *values, int n) {
    (void)ctx;
    (void)values;
    (void)n;
    int *calls = user;
    ++*calls;
    return CLG_OK;
}

/* Fails at call number *user (0: the first), as a lost peer would. */
static clg_status sum_failing(void *user, clg_context *ctx, double *values, int n) {
    (void)values;
    int *left = user;
    if ((*left)-- > 0) return CLG_OK;
    return clg__fail(ctx, CLG_COMM_ERROR, "test: injected failure of a replica sum of %d values", n);
}

/* A NULL sync, or one without a sum, is clg_batch_norm2d bit for bit (training and
 * evaluation); evaluation never calls a sum (a failing one is not called). */
static void test_sync_null_is_plain(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {3, 4, 5, 3};
    int left = 0;
    const clg_replica_sum none = {NULL, NULL}, failing = {sum_failing, &left};
    for (int dd = 0; dd < 2; dd++)
        for (int training = 0; training < 2; training++)
            for (int mode = 0; mode < 3; mode++) {
                const clg_dtype dt = dd ? CLG_F64 : CLG_F32;
                if (training && mode == 2) continue; /* a failing sum in training: test_sync_errors */
                double *got[6] = {0}, *want[6] = {0};
                for (int run = 0; run < 2; run++) {
                    bn_setup s = make_setup(ctx, dt, shape, true, 120);
                    clg_tensor *in[3] = {s.x, s.w, s.b}, *y = NULL;
                    for (int i = 0; i < 3; i++)
                        REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
                    const clg_batch_norm2d_params p = {training, 0.1, 1e-5};
                    const clg_replica_sum *sync = mode == 0 ? NULL : mode == 1 ? &none : &failing;
                    if (run == 0)
                        REF_OK(ctx, clg_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, p, &y));
                    else
                        REF_OK(ctx, clg_sync_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, p, sync, &y));
                    clg_tensor *dy = ref_rand(ctx, dt, 4, shape, 121, -1, 1);
                    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
                    const clg_tensor *outs[6] = {
                        y, clg_tensor_grad(s.x), clg_tensor_grad(s.w), clg_tensor_grad(s.b), s.rm, s.rv};
                    for (int i = 0; i < 6; i++)
                        (run ? got : want)[i] = ref_to_host_f64(outs[i]);
                    for (int i = 0; run && i < 6; i++) {
                        char what[96];
                        snprintf(what, sizeof what, "%s training %d sync mode %d: output %d",
                                 clg_dtype_name(dt), training, mode, i);
                        ref_assert_close(got[i], want[i], clg_tensor_numel(outs[i]), 0, 0, what);
                        free(got[i]);
                        free(want[i]);
                    }
                    clg_tensor_free(dy);
                    clg_tensor_free(y);
                    free_setup(&s);
                }
            }
}

/* A failing sum returns its error and leaves the running stats alone (forward), or fails
 * backward; a global batch of 1 value per channel is refused after the sum, with the running
 * stats untouched; a replica holding 1 value is fine when the global batch has more. */
static void test_sync_errors(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {2, 3, 2, 2}, one[4] = {1, 3, 1, 1};
    for (int dd = 0; dd < 2; dd++) {
        const clg_dtype dt = dd ? CLG_F64 : CLG_F32;
        bn_setup s = make_setup(ctx, dt, shape, true, 130);
        clg_tensor *x1 = ref_rand(ctx, dt, 4, one, 131, 0, 1);
        REF_OK(ctx, clg_tensor_set_requires_grad(s.x, true));
        double *rm0 = ref_to_host_f64(s.rm), *rv0 = ref_to_host_f64(s.rv);
        const clg_batch_norm2d_params p = {true, 0.1, 1e-5};
        clg_tensor *y = (clg_tensor *)1;

        /* forward: the sum fails */
        int left = 0;
        clg_replica_sum failing = {sum_failing, &left};
        expect_fail(ctx, clg_sync_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, p, &failing, &y),
                    CLG_COMM_ERROR, "injected failure of a replica sum of 7 values");
        assert_null(y);
        /* the global count is 1 */
        int calls = 0;
        const clg_replica_sum alone = {sum_of_one, &calls};
        expect_fail(ctx, clg_sync_batch_norm2d(ctx, x1, s.w, s.b, s.rm, s.rv, p, &alone, &y),
                    CLG_SHAPE_MISMATCH, "more than 1 value per channel over the replicas");
        assert_int_equal(calls, 1);
        assert_null(y);
        double *rm1 = ref_to_host_f64(s.rm), *rv1 = ref_to_host_f64(s.rv);
        ref_assert_close(rm1, rm0, 3, 0, 0, "running_mean after failed synchronized forwards");
        ref_assert_close(rv1, rv0, 3, 0, 0, "running_var after failed synchronized forwards");
        free(rm1);
        free(rv1);

        /* backward: the forward's sum succeeds, backward's fails */
        left = 1;
        REF_OK(ctx, clg_sync_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, p, &failing, &y));
        clg_tensor *dy = ref_rand(ctx, dt, 4, shape, 132, -1, 1);
        expect_fail(ctx, clg_backward_grad(ctx, y, dy), CLG_COMM_ERROR,
                    "injected failure of a replica sum of 6 values");
        clg_tensor_free(dy);
        clg_tensor_free(y);
        y = NULL;

        /* the context still works, and evaluation of x1 needs no sum */
        calls = 0;
        REF_OK(ctx, clg_sync_batch_norm2d(ctx, x1, s.w, s.b, s.rm, s.rv,
                                          (clg_batch_norm2d_params){false, 0.1, 1e-5}, &alone, &y));
        assert_int_equal(calls, 0);
        clg_tensor_free(y);
        REF_OK(ctx, clg_sync_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, p, &alone, &y));
        assert_int_equal(calls, 1);
        clg_tensor_free(y);
        free(rm0);
        free(rv0);
        clg_tensor_free(x1);
        free_setup(&s);
    }
}

/* ---------------------------------------------------------------- fused with ReLU */

/* t's bytes on the host (numel * dtype size), for bit comparisons. */
static void *fused_bytes(const clg_tensor *t, size_t *size) {
    *size = clg_tensor_numel(t) * clg_dtype_size(clg_tensor_dtype(t));
    void *h = malloc(*size);
    assert_non_null(h);
    assert_int_equal(clg_tensor_to_host(t, h, *size), CLG_OK);
    return h;
}

static void assert_same_bits(const clg_tensor *got, const clg_tensor *want, const char *what) {
    if (!got && !want) return;
    assert_non_null(got);
    assert_non_null(want);
    size_t ng, nw;
    void *g = fused_bytes(got, &ng), *w = fused_bytes(want, &nw);
    if (ng != nw || memcmp(g, w, ng) != 0) fail_msg("%s: fused and separate results differ", what);
    free(g);
    free(w);
}

/* One run of either path on fresh copies of the same inputs; out[] = y, rm, rv, dx, dw, db
 * (references the caller frees). nan_at >= 0 puts a NaN into x there; zero_at >= 0 makes x
 * there equal its channel's running mean (an exact 0 before the bias in evaluation). */
static void fused_run(clg_context *ctx, clg_dtype dt, const int shape[4], bool affine, bool training,
                      const clg_replica_sum *sync, bool fused, int nan_at, int dy_nan_at,
                      clg_tensor *out[6]) {
    const int C = shape[1], HW = shape[2] * shape[3];
    bn_setup s = make_setup(ctx, dt, shape, affine, 130);
    const size_t n = clg_tensor_numel(s.x);
    double *xv = ref_to_host_f64(s.x), *rm = ref_to_host_f64(s.rm);
    /* Centre x on the running mean (training: the batch mean moves, so about half is
     * negative either way) so the ReLU mask cuts both ways; a few values exactly on it. */
    for (size_t i = 0; i < n; i++)
        xv[i] = (i % 7 == 3) ? rm[(i / HW) % C] : xv[i] - 2.0 + rm[(i / HW) % C];
    if (nan_at >= 0) xv[nan_at] = NAN;
    clg_tensor_free(s.x);
    s.x = nan_tensor(ctx, dt, 4, shape, xv);
    free(xv);
    free(rm);
    clg_tensor *in[3] = {s.x, s.w, s.b}, *y = NULL;
    for (int i = 0; i < 3; i++)
        if (in[i]) REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
    const clg_batch_norm2d_params p = {training, 0.1, 1e-5};
    if (fused) {
        REF_OK(ctx, clg_sync_batch_norm2d_relu(ctx, s.x, s.w, s.b, s.rm, s.rv, p, sync, &y));
    } else {
        clg_tensor *t = NULL;
        REF_OK(ctx, clg_sync_batch_norm2d(ctx, s.x, s.w, s.b, s.rm, s.rv, p, sync, &t));
        REF_OK(ctx, clg_relu(ctx, t, &y));
        clg_tensor_free(t);
    }
    double *dyv = ref_to_host_f64(y); /* the shape; values drawn below */
    for (size_t i = 0; i < n; i++)
        dyv[i] = (double)((i * 37) % 17) / 8 - 1;
    if (dy_nan_at >= 0) dyv[dy_nan_at] = NAN;
    clg_tensor *dy = nan_tensor(ctx, dt, 4, shape, dyv);
    free(dyv);
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    clg_tensor_free(dy);
    out[0] = y;
    out[1] = clg_tensor_ref(s.rm);
    out[2] = clg_tensor_ref(s.rv);
    for (int i = 0; i < 3; i++)
        out[3 + i] =
            in[i] && clg_tensor_grad(in[i]) ? clg_tensor_ref((clg_tensor *)clg_tensor_grad(in[i])) : NULL;
    free_setup(&s);
}

/* batch_norm2d_relu is batch_norm2d then relu bit for bit: output, running stats and every
 * gradient, f32 and f64, training and evaluation, with and without affine, over shapes with
 * and without the CPU kernels' 8-lane tails, NaN in x or dy, and synchronized (one replica
 * through a real sum callback, which takes the host-combined statistics path). */
static void test_relu_fused_bit_identical(void **state) {
    clg_context *ctx = *state;
    static const int shapes[2][4] = {{3, 4, 5, 3}, {4, 3, 10, 10}};
    static const char *const names[6] = {"y", "running_mean", "running_var", "dx", "dweight", "dbias"};
    int calls = 0;
    const clg_replica_sum one = {sum_of_one, &calls};
    for (int si = 0; si < 2; si++)
        for (int dd = 0; dd < 2; dd++)
            for (int affine = 0; affine < 2; affine++)
                for (int training = 0; training < 2; training++)
                    for (int k = 0; k < 4; k++) { /* plain, NaN in x, NaN in dy, synchronized */
                        const clg_dtype dt = dd ? CLG_F64 : CLG_F32;
                        if (k == 3 && !training) continue; /* evaluation never synchronizes */
                        const int nan_at = k == 1 ? 5 : -1, dy_nan_at = k == 2 ? 17 : -1;
                        const clg_replica_sum *sync = k == 3 ? &one : NULL;
                        clg_tensor *a[6], *b[6];
                        const int c0 = calls;
                        fused_run(ctx, dt, shapes[si], affine, training, sync, false, nan_at, dy_nan_at, a);
                        const int c1 = calls;
                        fused_run(ctx, dt, shapes[si], affine, training, sync, true, nan_at, dy_nan_at, b);
                        /* The same collective calls: one sum forward, one backward. */
                        assert_int_equal(c1 - c0, k == 3 ? 2 : 0);
                        assert_int_equal(calls - c1, c1 - c0);
                        if (k == 1) { /* ReLU of NaN is NaN, as PyTorch */
                            double *y = ref_to_host_f64(b[0]);
                            assert_true(isnan(y[nan_at]));
                            free(y);
                        }
                        for (int i = 0; i < 6; i++) {
                            char what[160];
                            snprintf(what, sizeof what,
                                     "batch_norm2d_relu %s shape %d affine %d training %d case %d: %s",
                                     clg_dtype_name(dt), si, affine, training, k, names[i]);
                            assert_same_bits(b[i], a[i], what);
                            clg_tensor_free(a[i]);
                            clg_tensor_free(b[i]);
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
        cmocka_unit_test(test_sync_one_replica),
        cmocka_unit_test(test_sync_two_replicas),
        cmocka_unit_test(test_sync_null_is_plain),
        cmocka_unit_test(test_sync_errors),
        cmocka_unit_test(test_relu_fused_bit_identical),
    };
    return REF_RUN_BOTH_STYLES("batchnorm", tests);
}
