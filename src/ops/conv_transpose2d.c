/* src/ops/conv_transpose2d.c - transposed 2-D convolution (torch's conv_transpose2d) as conv2d
 * with the roles swapped: its forward is conv2d's input gradient (GEMM, then the col2im
 * gather), its input gradient conv2d's forward (im2col, then GEMM) and its weight gradient
 * conv2d's weight gradient with x and dy exchanged. No kernels of its own: conv2d's internals
 * (src/ops/conv2d.h, cl/ops/conv2d.cl) run it. Tests: tests/ops/test_conv_transpose2d.c.
 *
 * The conv2d it mirrors: input (N, C_out, OH, OW) (this op's output), weight w (C_in,
 * C_out/groups, kh, kw) (this op's weight, already in conv2d's (K, C/groups, kh, kw) order),
 * output (N, C_in, H, W) (this op's input). With output_pad >= stride (allowed when below the
 * dilation) that conv2d's natural output has more rows than H: its dims say H, so the extra
 * rows are left out, exactly as PyTorch's col2im leaves them.
 */
#include <limits.h>
#include <string.h>

#include "ops/conv2d.h"

static const clg_op_def conv_transpose2d_op;

clg_conv_transpose2d_params clg_conv_transpose2d_default_params(void) {
    clg_conv_transpose2d_params p = {1, 1, 0, 0, 0, 0, 1, 1, 1};
    return p;
}

/* The output size in long long (no int wrap), or -1 for arguments out of range. */
static long long out_size_ll(int in, int kernel, int stride, int pad, int output_pad, int dilation) {
    if (in < 1 || kernel < 1 || stride < 1 || dilation < 1 || pad < 0 || output_pad < 0) return -1;
    if (output_pad >= stride && output_pad >= dilation) return -1;
    return ((long long)in - 1) * stride - 2LL * pad + (long long)dilation * (kernel - 1) + output_pad + 1;
}

int clg_conv_transpose2d_out_size(int in, int kernel, int stride, int pad, int output_pad, int dilation) {
    const long long out = out_size_ll(in, kernel, stride, pad, output_pad, dilation);
    return out < 1 || out > INT_MAX ? -1 : (int)out;
}

/* ---------------------------------------------------------------- validation */

/* What one call needs: the conv2d it runs (d, cp) and this op's output shape. */
typedef struct ct_plan {
    /* the mirrored conv2d: C = C_out, (H, W) = this op's (OH, OW), K = C_in, (OH, OW) = x's (H, W) */
    clg_conv_dims d;
    clg_conv2d_params cp; /* stride, pad, dilation and groups of that conv2d */
    int ys[4];            /* y (N, C_out, OH, OW) */
} ct_plan;

static clg_status check_dtype(clg_context *ctx, const char *fn, const clg_tensor *t, const char *what,
                              clg_dtype dt) {
    if (clg_tensor_dtype(t) == dt) return CLG_OK;
    return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %s is %s but x is %s", fn, what,
                     clg_dtype_name(clg_tensor_dtype(t)), clg_dtype_name(dt));
}

/* t must be 4-D of shape want (or 1-D (want[0]) when ndim is 1) and of dtype dt. */
static clg_status check_tensor(clg_context *ctx, const char *fn, const clg_tensor *t, const char *what,
                               int ndim, const int *want, const char *why, clg_dtype dt) {
    clg_status st = clg__check(ctx, t, fn, what);
    if (st != CLG_OK) return st;
    bool ok = clg_tensor_ndim(t) == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = clg_tensor_shape(t)[i] == want[i];
    char s1[64];
    if (!ok && ndim == 1)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: %s is %s but must be (%d) %s", fn, what,
                         clg__shape_str(t, s1, sizeof s1), want[0], why);
    if (!ok)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: %s is %s but must be (%d, %d, %d, %d) %s", fn, what,
                         clg__shape_str(t, s1, sizeof s1), want[0], want[1], want[2], want[3], why);
    return check_dtype(ctx, fn, t, what, dt);
}

static clg_status check_params(clg_context *ctx, const char *fn, const clg_conv_transpose2d_params *p) {
    if (p->stride_h < 1 || p->stride_w < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: stride must be positive, got %d x %d", fn,
                         p->stride_h, p->stride_w);
    if (p->dilation_h < 1 || p->dilation_w < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dilation must be positive, got %d x %d", fn,
                         p->dilation_h, p->dilation_w);
    if (p->pad_h < 0 || p->pad_w < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: padding must be >= 0, got %d x %d", fn, p->pad_h,
                         p->pad_w);
    if (p->output_pad_h < 0 || p->output_pad_w < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: output padding must be >= 0, got %d x %d", fn,
                         p->output_pad_h, p->output_pad_w);
    /* PyTorch's rule: past both, the extra rows would not be reachable by any tap pattern of
     * the conv2d this is the gradient of */
    if ((p->output_pad_h >= p->stride_h && p->output_pad_h >= p->dilation_h) ||
        (p->output_pad_w >= p->stride_w && p->output_pad_w >= p->dilation_w))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: output padding %d x %d must be smaller than either stride %d x %d or dilation "
                         "%d x %d",
                         fn, p->output_pad_h, p->output_pad_w, p->stride_h, p->stride_w, p->dilation_h,
                         p->dilation_w);
    if (p->groups < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: groups must be positive, got %d", fn, p->groups);
    return CLG_OK;
}

/* Checks x, w, b and the parameters, and plans the mirrored conv2d. */
static clg_status ct_check(clg_context *ctx, const char *fn, const clg_tensor *x, const clg_tensor *w,
                           const clg_tensor *b, const clg_conv_transpose2d_params *p, ct_plan *plan) {
    clg_status st;
    char s1[64], s2[64];
    if ((st = clg__check(ctx, x, fn, "x")) != CLG_OK) return st;
    if ((st = clg__check(ctx, w, fn, "w")) != CLG_OK) return st;
    if (b && (st = clg__check(ctx, b, fn, "b")) != CLG_OK) return st;
    if ((st = check_params(ctx, fn, p)) != CLG_OK) return st;
    if (clg_tensor_ndim(x) != 4)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: x %s must be 4-D (N, C_in, H, W)", fn,
                         clg__shape_str(x, s1, sizeof s1));
    if (clg_tensor_ndim(w) != 4)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: w %s must be 4-D (C_in, C_out/groups, kh, kw)", fn,
                         clg__shape_str(w, s1, sizeof s1));
    const clg_dtype dt = clg_tensor_dtype(x);
    if ((st = check_dtype(ctx, fn, w, "w", dt)) != CLG_OK) return st;
    const int *xs = clg_tensor_shape(x), *ws = clg_tensor_shape(w);
    const int N = xs[0], C_in = xs[1], H = xs[2], W = xs[3], KH = ws[2], KW = ws[3], G = p->groups;
    if (C_in % G)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: groups %d does not divide the %d input channels of x %s", fn, G, C_in,
                         clg__shape_str(x, s1, sizeof s1));
    if (ws[0] != C_in)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: w %s has %d input channels but x %s has %d", fn,
                         clg__shape_str(w, s1, sizeof s1), ws[0], clg__shape_str(x, s2, sizeof s2), C_in);
    const long long C_out = (long long)ws[1] * G;
    if (C_out > INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED, "%s: w %s with groups %d gives %lld output channels", fn,
                         clg__shape_str(w, s1, sizeof s1), G, C_out);
    if (b && (st = check_tensor(ctx, fn, b, "b", 1, (const int[]){(int)C_out}, "(one per output channel)",
                                dt)) != CLG_OK)
        return st;
    const long long OH = out_size_ll(H, KH, p->stride_h, p->pad_h, p->output_pad_h, p->dilation_h);
    const long long OW = out_size_ll(W, KW, p->stride_w, p->pad_w, p->output_pad_w, p->dilation_w);
    if (OH < 1 || OW < 1)
        return clg__fail(
            ctx, CLG_SHAPE_MISMATCH,
            "%s: the output of x %s with kernel %d x %d, stride %d x %d, padding %d x %d, output "
            "padding %d x %d, dilation %d x %d would be %lld x %lld",
            fn, clg__shape_str(x, s1, sizeof s1), KH, KW, p->stride_h, p->stride_w, p->pad_h, p->pad_w,
            p->output_pad_h, p->output_pad_w, p->dilation_h, p->dilation_w, OH, OW);
    /* The mirrored conv2d's limits (conv_check in conv2d.c): its padded input and every row,
     * image and chunk the kernels index must fit an int. */
    size_t ckk, col, img, cin_p, n_p;
    const size_t P = (size_t)H * W; /* both positive ints: no wrap */
    const bool fits =
        OH + 2LL * p->pad_h <= INT_MAX && OW + 2LL * p->pad_w <= INT_MAX && P <= INT_MAX &&
        clg__mul_size((size_t)C_out, (size_t)KH, &ckk) && clg__mul_size(ckk, (size_t)KW, &ckk) &&
        clg__mul_size(ckk, P, &col) && col <= INT_MAX && clg__mul_size((size_t)C_out, (size_t)OH, &img) &&
        clg__mul_size(img, (size_t)OW, &img) && img <= INT_MAX && clg__mul_size((size_t)C_in, P, &cin_p) &&
        cin_p <= INT_MAX && clg__mul_size((size_t)N, P, &n_p) && n_p <= INT_MAX;
    if (!fits)
        return clg__fail(ctx, CLG_UNSUPPORTED,
                         "%s: x %s with w %s (output %lld x %lld) is too large for 32-bit kernel indexing",
                         fn, clg__shape_str(x, s1, sizeof s1), clg__shape_str(w, s2, sizeof s2), OH, OW);
    clg_conv_dims *d = &plan->d;
    memset(d, 0, sizeof *d);
    d->N = N, d->C = (int)C_out, d->H = (int)OH, d->W = (int)OW;
    d->K = C_in, d->KH = KH, d->KW = KW;
    d->G = G, d->Cg = ws[1], d->Kg = C_in / G;
    d->OH = H, d->OW = W, d->P = (int)P;
    d->ckk = ckk, d->cgkk = (size_t)ws[1] * KH * KW; /* <= ckk */
    d->dt = dt;
    plan->cp = (clg_conv2d_params){.stride_h = p->stride_h,
                                   .stride_w = p->stride_w,
                                   .pad_h = p->pad_h,
                                   .pad_w = p->pad_w,
                                   .dilation_h = p->dilation_h,
                                   .dilation_w = p->dilation_w,
                                   .groups = p->groups};
    const int ys[4] = {N, (int)C_out, (int)OH, (int)OW};
    memcpy(plan->ys, ys, sizeof ys);
    return CLG_OK;
}

/* ---------------------------------------------------------------- forward */

/* y = conv2d's input gradient with x as its dy (overwriting y), plus b. */
static clg_status forward_impl(clg_context *ctx, const ct_plan *pl, const clg_tensor *x, const clg_tensor *w,
                               const clg_tensor *b, clg_tensor *y) {
    const clg_conv_dims *d = &pl->d;
    clg_status st = clg__conv2d_backward_dims(ctx, d, &pl->cp, NULL, w, x, y, 0.0, NULL, 0.0);
    if (st == CLG_OK && b) st = clg__conv2d_bias_add(ctx, d->dt, d->N, d->C, d->H * d->W, b, y);
    return st;
}

clg_status clg_conv_transpose2d_forward(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                                        const clg_tensor *b, clg_conv_transpose2d_params p, clg_tensor *y) {
    static const char fn[] = "clg_conv_transpose2d_forward";
    if (!ctx) return CLG_INVALID_ARGUMENT;
    ct_plan pl;
    clg_status st = ct_check(ctx, fn, x, w, b, &p, &pl);
    if (st != CLG_OK) return st;
    if ((st = check_tensor(ctx, fn, y, "y", 4, pl.ys, "(N, C_out, OH, OW)", pl.d.dt)) != CLG_OK) return st;
    return forward_impl(ctx, &pl, x, w, b, y);
}

/* ---------------------------------------------------------------- backward */

/* dx = beta*dx + conv2d(dy, w). conv2d's forward overwrites, so beta != 0 goes through a
 * scratch tensor: a call with beta 1 then adds exactly the value beta 0 writes. */
static clg_status input_grad(clg_context *ctx, const ct_plan *pl, const clg_tensor *w, const clg_tensor *dy,
                             clg_tensor *dx, double beta) {
    if (beta == 0.0) return clg__conv2d_forward_dims(ctx, &pl->d, &pl->cp, dy, w, NULL, dx);
    clg_tensor *fresh = NULL; /* (N, C_in, H, W) */
    clg_status st = clg__tensor_like(dx, &fresh);
    if (st == CLG_OK) st = clg__conv2d_forward_dims(ctx, &pl->d, &pl->cp, dy, w, NULL, fresh);
    if (st == CLG_OK) st = clg__axpby(ctx, 1.0, fresh, beta, dx);
    clg_tensor_free(fresh);
    return st;
}

/* Validates dy and the gradients, then runs what is asked for. */
static clg_status backward_all(clg_context *ctx, const char *fn, const clg_tensor *x, const clg_tensor *w,
                               const clg_tensor *dy, const clg_conv_transpose2d_params *p, clg_tensor *dx,
                               double beta_x, clg_tensor *dw, double beta_w, clg_tensor *db, double beta_b) {
    ct_plan pl;
    clg_status st = ct_check(ctx, fn, x, w, NULL, p, &pl);
    if (st != CLG_OK) return st;
    const clg_conv_dims *d = &pl.d;
    if ((st = check_tensor(ctx, fn, dy, "dy", 4, pl.ys, "(N, C_out, OH, OW)", d->dt)) != CLG_OK) return st;
    if (dx &&
        (st = check_tensor(ctx, fn, dx, "dx", 4, clg_tensor_shape(x), "(the shape of x)", d->dt)) != CLG_OK)
        return st;
    if (dw &&
        (st = check_tensor(ctx, fn, dw, "dw", 4, clg_tensor_shape(w), "(the shape of w)", d->dt)) != CLG_OK)
        return st;
    if (db && (st = check_tensor(ctx, fn, db, "db", 1, &d->C, "(one per output channel)", d->dt)) != CLG_OK)
        return st;
    if (db && (st = clg__conv2d_bias_grad(ctx, d->dt, d->N, d->C, d->H * d->W, dy, db, beta_b)) != CLG_OK)
        return st;
    if (dx && (st = input_grad(ctx, &pl, w, dy, dx, beta_x)) != CLG_OK) return st;
    /* dW (C_in, C_out/groups, kh, kw) = conv2d's weight gradient, its input being dy and its
     * output gradient x */
    if (dw) st = clg__conv2d_backward_dims(ctx, d, &pl.cp, dy, NULL, x, NULL, 0.0, dw, beta_w);
    return st;
}

clg_status clg_conv_transpose2d_backward(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                                         const clg_tensor *dy, clg_conv_transpose2d_params p, clg_tensor *dx,
                                         clg_tensor *dw, clg_tensor *db, double beta) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    return backward_all(ctx, "clg_conv_transpose2d_backward", x, w, dy, &p, dx, beta, dw, beta, db, beta);
}

/* ---------------------------------------------------------------- graph op */

clg_status clg_conv_transpose2d(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                                const clg_tensor *b, clg_conv_transpose2d_params p, clg_tensor **out) {
    static const char fn[] = "clg_conv_transpose2d";
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = NULL;
    ct_plan pl;
    clg_status st = ct_check(ctx, fn, x, w, b, &p, &pl);
    if (st != CLG_OK) return st;
    clg_tensor *y;
    if ((st = clg__tensor_new(ctx, pl.d.dt, 4, pl.ys, &y)) != CLG_OK) return st;
    if ((st = forward_impl(ctx, &pl, x, w, b, y)) != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    const clg_tensor *inputs[3] = {x, w, b};
    const int n_inputs = b ? 3 : 2;
    if (clg__needs_grad(ctx, n_inputs, inputs)) {
        st = clg__record(ctx, &conv_transpose2d_op, y, n_inputs, inputs, &p, sizeof p, NULL);
        if (st != CLG_OK) {
            clg_tensor_free(y);
            return st;
        }
    }
    *out = y;
    return CLG_OK;
}

static bool same_buffer(const clg_tensor *a, const clg_tensor *b) {
    return a && b && clg__mem(a) == clg__mem(b);
}

/* The engine's dx[i] / beta[i] for x, w and (when present) b; gradients that share a buffer
 * (one tensor as both x and w) are written one after the other so each beta applies once. */
static clg_status conv_transpose2d_backward_node(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                                 clg_tensor *const *dx, const double *beta) {
    static const char fn[] = "clg_conv_transpose2d backward";
    clg_conv_transpose2d_params p;
    memcpy(&p, node->params, sizeof p);
    const clg_tensor *x = node->inputs[0], *w = node->inputs[1];
    clg_tensor *gx = dx[0], *gw = dx[1], *gb = node->n_inputs > 2 ? dx[2] : NULL;
    const double bx = beta[0], bw = beta[1], bb = node->n_inputs > 2 ? beta[2] : 0.0;
    if (!same_buffer(gx, gw) && !same_buffer(gx, gb) && !same_buffer(gw, gb))
        return backward_all(ctx, fn, x, w, dy, &p, gx, bx, gw, bw, gb, bb);
    clg_status st = CLG_OK;
    if (gx) st = backward_all(ctx, fn, x, w, dy, &p, gx, bx, NULL, 0.0, NULL, 0.0);
    if (st == CLG_OK && gw) st = backward_all(ctx, fn, x, w, dy, &p, NULL, 0.0, gw, bw, NULL, 0.0);
    if (st == CLG_OK && gb) st = backward_all(ctx, fn, x, w, dy, &p, NULL, 0.0, NULL, 0.0, gb, bb);
    return st;
}

static const clg_op_def conv_transpose2d_op = {"conv_transpose2d", conv_transpose2d_backward_node};
