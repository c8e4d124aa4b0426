/* tests/ref/ref_ops.h - naive host references (llm.c style, in double) for the ops of
 * src/ops/{eltwise,activation,loss,linear,conv2d}.c, plus what their tests share: reading the
 * PyTorch fixtures (tests/fixtures/ops.safetensors) and calling an op's backward directly
 * to check the beta contract. Implemented in tests/ref/ref_ops.c.
 */
#ifndef CLGRAD_TESTS_REF_OPS_H
#define CLGRAD_TESTS_REF_OPS_H

#include "ref.h"

/* ---- activations: value and derivative at x (NaN handled as PyTorch does) ---- */
double ref_relu(double x);
double ref_relu_grad(double x);
double ref_leaky_relu(double x, double slope);
double ref_leaky_relu_grad(double x, double slope);
double ref_sigmoid(double x);
double ref_sigmoid_grad(double x);
double ref_tanh(double x);
double ref_tanh_grad(double x);
double ref_gelu(double x); /* exact: x * Phi(x) */
double ref_gelu_grad(double x);

/* ---- linear: y (n, out) = x (n, in) . w (out, in)^T + b (out); b may be NULL ---- */
void ref_linear_forward(const double *x, const double *w, const double *b, double *y, int n, int in, int out);
/* From dy (n, out): dx (n, in), dw (out, in), db (out); any may be NULL. Overwrites. */
void ref_linear_backward(const double *x, const double *w, const double *dy, double *dx, double *dw,
                         double *db, int n, int in, int out);

/* ---- losses ---- */
/* mean over rows of -log softmax(logits)[t]; dlogits (n, c) = d loss / d logits, or NULL. */
double ref_softmax_ce(const double *logits, const int32_t *targets, int n, int c, double *dlogits);
double ref_mse(const double *a, const double *b, size_t n);
double ref_sum_of_squares(const double *x, size_t n);

/* ---- conv2d: a direct convolution (cross-correlation, as PyTorch), loop by loop ---- */
typedef struct ref_conv_case {
    int N, C, H, W, K, KH, KW; /* x (N, C, H, W), w (K, C/groups, KH, KW) */
    clg_conv2d_params p;
    bool bias;
} ref_conv_case;
int ref_conv_out_h(const ref_conv_case *c);
int ref_conv_out_w(const ref_conv_case *c);
/* y (N, K, OH, OW) from x, w and b (b may be NULL). */
void ref_conv2d_forward(const ref_conv_case *c, const double *x, const double *w, const double *b, double *y);
/* dx, dw and db (db may be NULL) from dy; overwrites. */
void ref_conv2d_backward(const ref_conv_case *c, const double *x, const double *w, const double *dy, double *dx,
                         double *dw, double *db);

/* ---- NaN propagation ---- */
/* ref_assert_close, except that where want is NaN got must be NaN too (and only there). */
void ref_assert_close_nan(const double *got, const double *want, size_t n, double rtol, double atol,
                          const char *what);

/* ---- PyTorch fixtures: $CLGRAD_FIXTURES/<file> ---- */
/* Reads the file or fails the test saying where it looked. */
void ref_fixture_open(clg_st_file *f, const char *file);
/* A malloc'd copy of the named F64 entry (fails the test if absent); *n gets its length. */
double *ref_fixture_f64(const clg_st_file *f, const char *name, size_t *n);
/* The named entry as a new f64 tensor of its shape. */
clg_tensor *ref_fixture_tensor(clg_context *ctx, const clg_st_file *f, const char *name);
/* Fails unless got exists, has the fixture's element count and matches it to rtol/atol
 * ("<name> vs PyTorch"). */
void ref_assert_fixture(const clg_st_file *f, const char *name, const clg_tensor *got, double rtol, double atol);
/* For ops that only move values (split, permute, cat): the entry as a tensor of dtype dt (F32:
 * each value rounded once), and the check that got has the entry's shape and holds its values
 * exactly as got's dtype holds them (F32: the fixture's values rounded once). */
clg_tensor *ref_fixture_tensor_as(clg_context *ctx, const clg_st_file *f, const char *name, clg_dtype dt);
void ref_assert_fixture_exact(const clg_st_file *f, const char *name, const clg_tensor *got);

/* ---- the beta contract, straight through an op's backward ---- */
/* Calls y's recorded node backward with dx[i] (NULL: skip) and beta[i]. */
clg_status ref_call_backward(clg_context *ctx, const clg_tensor *y, const clg_tensor *dy,
                             clg_tensor *const *dx, const double *beta);
/* For every input of y's node (inputs[i], NULL for none wanted): with dx filled with NaN,
 * backward at beta = 0 must overwrite (finite result), the same alone (the other dx NULL),
 * and again at beta = 1 must give exactly twice. dy is random, fixed by seed. */
void ref_check_accumulate(clg_context *ctx, const clg_tensor *y, clg_tensor *const *inputs, int n,
                          const char *what);

#endif
