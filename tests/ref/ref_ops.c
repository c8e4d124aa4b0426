/* tests/ref/ref_ops.c - naive references for eltwise/activation/loss/linear/conv2d (declared in
 * tests/ref/ref_ops.h), the fixture reader and the direct beta-contract check. Readable
 * loops in double, nothing clever: they are what the device results are judged by.
 */
#include "ref_ops.h"
#include "ops/op.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- activations */

double ref_relu(double x) { return x > 0 || isnan(x) ? x : 0; }
double ref_relu_grad(double x) { return x > 0 || isnan(x) ? 1 : 0; }
double ref_leaky_relu(double x, double slope) { return x > 0 ? x : slope * x; }
double ref_leaky_relu_grad(double x, double slope) { return x > 0 ? 1 : slope; }
double ref_sigmoid(double x) { return 1 / (1 + exp(-x)); }
double ref_sigmoid_grad(double x) {
    const double s = ref_sigmoid(x);
    return s * (1 - s);
}
double ref_tanh(double x) { return tanh(x); }
double ref_tanh_grad(double x) {
    const double t = tanh(x);
    return 1 - t * t;
}
double ref_gelu(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
double ref_gelu_grad(double x) {
    const double pi = 3.14159265358979323846;
    return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2 * pi);
}

/* ---------------------------------------------------------------- linear */

void ref_linear_forward(const double *x, const double *w, const double *b, double *y, int n, int in,
                        int out) {
    for (int i = 0; i < n; i++) {
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int k = 0; k < in; k++)
                s += x[i * in + k] * w[o * in + k];
            y[i * out + o] = s;
        }
    }
}

void ref_linear_backward(const double *x, const double *w, const double *dy, double *dx, double *dw,
                         double *db, int n, int in, int out) {
    if (dx) {
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < in; k++) {
                double s = 0;
                for (int o = 0; o < out; o++)
                    s += dy[i * out + o] * w[o * in + k];
                dx[i * in + k] = s;
            }
        }
    }
    if (dw) {
        for (int o = 0; o < out; o++) {
            for (int k = 0; k < in; k++) {
                double s = 0;
                for (int i = 0; i < n; i++)
                    s += dy[i * out + o] * x[i * in + k];
                dw[o * in + k] = s;
            }
        }
    }
    if (db) {
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < n; i++)
                s += dy[i * out + o];
            db[o] = s;
        }
    }
}

/* ---------------------------------------------------------------- losses */

double ref_softmax_ce(const double *logits, const int32_t *targets, int n, int c, double *dlogits) {
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const double *row = logits + (size_t)i * c;
        double m = row[0];
        for (int j = 1; j < c; j++)
            m = row[j] > m ? row[j] : m;
        double s = 0;
        for (int j = 0; j < c; j++)
            s += exp(row[j] - m);
        const double lse = m + log(s);
        loss += lse - row[targets[i]];
        if (dlogits)
            for (int j = 0; j < c; j++)
                dlogits[(size_t)i * c + j] = (exp(row[j] - lse) - (j == targets[i])) / n;
    }
    return loss / n;
}

double ref_mse(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (a[i] - b[i]) * (a[i] - b[i]);
    return s / (double)n;
}

double ref_sum_of_squares(const double *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i] * x[i];
    return s;
}

/* ---------------------------------------------------------------- conv2d */

int ref_conv_out_h(const ref_conv_case *c) {
    return clg_conv2d_out_size(c->H, c->KH, c->p.stride_h, c->p.pad_h, c->p.dilation_h);
}
int ref_conv_out_w(const ref_conv_case *c) {
    return clg_conv2d_out_size(c->W, c->KW, c->p.stride_w, c->p.pad_w, c->p.dilation_w);
}

/* Calls BODY for every (output, tap) pair that reads a real pixel: x[xi] * w[wi] is one term
 * of y[yi]. Forward and backward are both this loop. */
#define FOR_EACH_TAP(c, BODY)                                                                                \
    do {                                                                                                     \
        const int G_ = (c)->p.groups, Cg_ = (c)->C / G_, Kg_ = (c)->K / G_;                                  \
        const int OH_ = ref_conv_out_h(c), OW_ = ref_conv_out_w(c);                                          \
        for (int n = 0; n < (c)->N; n++)                                                                     \
            for (int k = 0; k < (c)->K; k++)                                                                 \
                for (int oh = 0; oh < OH_; oh++)                                                             \
                    for (int ow = 0; ow < OW_; ow++) {                                                       \
                        const size_t yi = (((size_t)n * (c)->K + k) * OH_ + oh) * OW_ + ow;                  \
                        for (int cg = 0; cg < Cg_; cg++)                                                     \
                            for (int i = 0; i < (c)->KH; i++)                                                \
                                for (int j = 0; j < (c)->KW; j++) {                                          \
                                    const int h = oh * (c)->p.stride_h - (c)->p.pad_h + i * (c)->p.dilation_h; \
                                    const int w_ = ow * (c)->p.stride_w - (c)->p.pad_w + j * (c)->p.dilation_w; \
                                    if (h < 0 || h >= (c)->H || w_ < 0 || w_ >= (c)->W) continue;            \
                                    const int ch = (k / Kg_) * Cg_ + cg;                                     \
                                    const size_t xi = (((size_t)n * (c)->C + ch) * (c)->H + h) * (c)->W + w_; \
                                    const size_t wi = (((size_t)k * Cg_ + cg) * (c)->KH + i) * (c)->KW + j;  \
                                    BODY;                                                                    \
                                }                                                                            \
                    }                                                                                        \
    } while (0)

void ref_conv2d_forward(const ref_conv_case *c, const double *x, const double *w, const double *b, double *y) {
    const size_t per_k = (size_t)ref_conv_out_h(c) * ref_conv_out_w(c);
    const size_t ny = (size_t)c->N * c->K * per_k;
    for (size_t i = 0; i < ny; i++)
        y[i] = b ? b[(i / per_k) % c->K] : 0.0;
    FOR_EACH_TAP(c, y[yi] += x[xi] * w[wi]);
}

/* Each term x*w of y contributes dy*w to dx and dy*x to dw. */
void ref_conv2d_backward(const ref_conv_case *c, const double *x, const double *w, const double *dy, double *dx,
                         double *dw, double *db) {
    const size_t nx = (size_t)c->N * c->C * c->H * c->W;
    const size_t nw = (size_t)c->K * (c->C / c->p.groups) * c->KH * c->KW;
    const size_t per_k = (size_t)ref_conv_out_h(c) * ref_conv_out_w(c);
    const size_t ny = (size_t)c->N * c->K * per_k;
    memset(dx, 0, nx * sizeof *dx);
    memset(dw, 0, nw * sizeof *dw);
    if (db) {
        memset(db, 0, (size_t)c->K * sizeof *db);
        for (size_t i = 0; i < ny; i++)
            db[(i / per_k) % c->K] += dy[i];
    }
    FOR_EACH_TAP(c, {
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += dy[yi] * x[xi];
    });
}

/* ---------------------------------------------------------------- NaN propagation */

void ref_assert_close_nan(const double *got, const double *want, size_t n, double rtol, double atol,
                          const char *what) {
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]) != isnan(got[i]))
            fail_msg("%s: [%zu] got %.17g want %.17g (NaN must propagate, and only where PyTorch gives it)",
                     what, i, got[i], want[i]);
        if (!isnan(want[i]) && !(fabs(got[i] - want[i]) <= atol + rtol * fabs(want[i])))
            fail_msg("%s: [%zu] got %.17g want %.17g", what, i, got[i], want[i]);
    }
}

/* ---------------------------------------------------------------- fixtures */

void ref_fixture_open(clg_st_file *f, const char *file) {
    const char *dir = getenv("CLGRAD_FIXTURES");
    char path[1024], err[256] = "";
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", file);
    memset(f, 0, sizeof *f);
    clg_status st = clg_st_read(path, f, err, sizeof err);
    if (st != CLG_OK) fail_msg("cannot read fixture %s: %s: %s", path, clg_status_name(st), err);
}

static const clg_st_entry *fixture_entry(const clg_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0) {
            if (f->entries[i].dtype != CLG_F64) fail_msg("fixture %s is not F64", name);
            return &f->entries[i];
        }
    fail_msg("fixture has no tensor named %s", name);
    return NULL;
}

double *ref_fixture_f64(const clg_st_file *f, const char *name, size_t *n) {
    const clg_st_entry *e = fixture_entry(f, name);
    const size_t count = e->bytes / sizeof(double);
    double *v = malloc((count ? count : 1) * sizeof *v);
    assert_non_null(v);
    memcpy(v, e->data, count * sizeof *v); /* the data may sit unaligned in the file */
    if (n) *n = count;
    return v;
}

clg_tensor *ref_fixture_tensor(clg_context *ctx, const clg_st_file *f, const char *name) {
    const clg_st_entry *e = fixture_entry(f, name);
    double *v = ref_fixture_f64(f, name, NULL);
    clg_tensor *t = NULL;
    clg_status st = clg_tensor_from_host(ctx, CLG_F64, e->ndim, e->shape, v, &t);
    free(v);
    if (st != CLG_OK) ref_skip_without_fp64(ctx, st);
    if (st != CLG_OK) fail_msg("fixture %s: %s: %s", name, clg_status_name(st), clg_context_errmsg(ctx));
    return t;
}

void ref_assert_fixture(const clg_st_file *f, const char *name, const clg_tensor *got, double rtol, double atol) {
    if (!got) fail_msg("%s: no tensor to compare (a gradient was not computed?)", name);
    size_t n = 0;
    double *want = ref_fixture_f64(f, name, &n);
    assert_int_equal(n, clg_tensor_numel(got));
    double *g = ref_to_host_f64(got);
    char what[160];
    snprintf(what, sizeof what, "%s vs PyTorch", name);
    ref_assert_close(g, want, n, rtol, atol, what);
    free(g);
    free(want);
}

clg_tensor *ref_fixture_tensor_as(clg_context *ctx, const clg_st_file *f, const char *name, clg_dtype dt) {
    if (dt == CLG_F64) return ref_fixture_tensor(ctx, f, name);
    const clg_st_entry *e = fixture_entry(f, name);
    size_t n = 0;
    double *v = ref_fixture_f64(f, name, &n);
    float *w = malloc((n ? n : 1) * sizeof *w);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++)
        w[i] = (float)v[i];
    clg_tensor *t = NULL;
    clg_status st = clg_tensor_from_host(ctx, dt, e->ndim, e->shape, w, &t);
    free(w), free(v);
    if (st != CLG_OK) fail_msg("fixture %s: %s: %s", name, clg_status_name(st), clg_context_errmsg(ctx));
    return t;
}

void ref_assert_fixture_exact(const clg_st_file *f, const char *name, const clg_tensor *got) {
    if (!got) fail_msg("%s: no tensor to compare (a gradient was not computed?)", name);
    const clg_st_entry *e = fixture_entry(f, name);
    bool same = e->ndim == clg_tensor_ndim(got);
    for (int d = 0; same && d < e->ndim; d++)
        same = e->shape[d] == clg_tensor_shape(got)[d];
    if (!same)
        fail_msg("%s vs PyTorch: the shapes differ (%d-D vs %d-D, or a size)", name, clg_tensor_ndim(got),
                 e->ndim);
    size_t n = 0;
    double *want = ref_fixture_f64(f, name, &n);
    if (clg_tensor_dtype(got) == CLG_F32)
        for (size_t i = 0; i < n; i++)
            want[i] = (float)want[i];
    double *g = ref_to_host_f64(got);
    char what[160];
    snprintf(what, sizeof what, "%s vs PyTorch (%s, exact)", name, clg_dtype_name(clg_tensor_dtype(got)));
    ref_assert_close(g, want, n, 0, 0, what);
    free(g);
    free(want);
}

/* ---------------------------------------------------------------- the beta contract */

clg_status ref_call_backward(clg_context *ctx, const clg_tensor *y, const clg_tensor *dy,
                             clg_tensor *const *dx, const double *beta) {
    const clg_node *node = y->grad_fn;
    if (!node) return clg__fail(ctx, CLG_INVALID_STATE, "ref_call_backward: y has no node");
    return node->op->backward(ctx, (clg_node *)node, dy, dx, beta);
}

static void fill_nan(clg_context *ctx, clg_tensor *t) { REF_OK(ctx, clg_tensor_fill(t, NAN)); }

void ref_check_accumulate(clg_context *ctx, const clg_tensor *y, clg_tensor *const *inputs, int n,
                          const char *what) {
    assert_true(n >= 1 && n <= CLG_NODE_MAX_INPUTS);
    assert_non_null(y->grad_fn);
    assert_int_equal(y->grad_fn->n_inputs, n);
    clg_tensor *dy =
        ref_rand(ctx, clg_tensor_dtype(y), clg_tensor_ndim(y), clg_tensor_shape(y), 0xacc, -1.0, 1.0);
    clg_tensor *dx[CLG_NODE_MAX_INPUTS] = {0};
    const double zero[CLG_NODE_MAX_INPUTS] = {0}, one[CLG_NODE_MAX_INPUTS] = {1, 1, 1, 1, 1};
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) continue;
        REF_OK(ctx, clg_tensor_zeros(ctx, clg_tensor_dtype(inputs[i]), clg_tensor_ndim(inputs[i]),
                                     clg_tensor_shape(inputs[i]), &dx[i]));
        fill_nan(ctx, dx[i]);
    }
    REF_OK(ctx, ref_call_backward(ctx, y, dy, dx, zero));
    double *once[CLG_NODE_MAX_INPUTS] = {0};
    char msg[256];
    for (int i = 0; i < n; i++) {
        if (!dx[i]) continue;
        once[i] = ref_to_host_f64(dx[i]);
        const size_t m = clg_tensor_numel(dx[i]);
        for (size_t j = 0; j < m; j++)
            if (!isfinite(once[i][j]))
                fail_msg("%s: input %d: beta = 0 left %g at [%zu] (must overwrite NaN)", what, i, once[i][j],
                         j);
    }
    /* Each input alone, the others NULL: the same values, and the others untouched. */
    for (int i = 0; i < n; i++) {
        if (!dx[i]) continue;
        clg_tensor *only[CLG_NODE_MAX_INPUTS] = {0};
        only[i] = dx[i];
        fill_nan(ctx, dx[i]);
        REF_OK(ctx, ref_call_backward(ctx, y, dy, only, zero));
        double *alone = ref_to_host_f64(dx[i]);
        snprintf(msg, sizeof msg, "%s: input %d alone vs all", what, i);
        ref_assert_close(alone, once[i], clg_tensor_numel(dx[i]), 0, 0, msg);
        free(alone);
    }
    REF_OK(ctx, ref_call_backward(ctx, y, dy, dx, one));
    for (int i = 0; i < n; i++) {
        if (!dx[i]) continue;
        double *twice = ref_to_host_f64(dx[i]);
        const size_t m = clg_tensor_numel(dx[i]);
        for (size_t j = 0; j < m; j++)
            once[i][j] *= 2;
        snprintf(msg, sizeof msg, "%s: input %d: beta 0 then 1 is exactly 2x", what, i);
        ref_assert_close(twice, once[i], m, 0, 0, msg);
        free(twice);
        free(once[i]);
        clg_tensor_free(dx[i]);
    }
    clg_tensor_free(dy);
}
