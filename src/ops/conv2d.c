/* src/ops/conv2d.c - 2-D convolution (cross-correlation, as PyTorch) through im2col and the
 * library's GEMM: forward, the three gradients, and the graph op. Kernels: cl/ops/conv2d.cl;
 * tests: tests/ops/test_conv2d.c; the worked example as a program: tools/clgrad-backprop.c.
 *
 * Layout. A chunk of nb images is unrolled into col (C*KH*KW, nb*P), P = OH*OW, column
 * n*P + p. Group g owns rows [g*Cg*KH*KW, (g+1)*Cg*KH*KW) of col and rows [g*Kg, (g+1)*Kg)
 * of the output, so each group is one GEMM per chunk: Y_g (Kg, nb*P) = W_g (Kg, Cg*KH*KW) ·
 * col_g. With nb > 1 that result is (K, nb, P) and a small kernel moves it into NCHW; with
 * nb = 1 the GEMM writes straight into y. Batching images makes the GEMMs wide enough to be
 * efficient on small images (28x28 -> 784 columns alone, 50176 for 64 images).
 * The col buffer is bounded by ctx->conv_workspace_bytes: the batch runs in chunks.
 * Implicit route (CLGRAD_CONV, conv_route below): where the packed kernel is the GEMM, the
 * forward packs its B panels straight from the images (src/blas/packed.c) and writes no col;
 * same chunks, same bits. For stride 1 the input gradient comes straight from dy in one launch
 * (dx_route), without dcol and col2im, and (CLGRAD_CONV=direct) the forward from zero-padded
 * copies of the images (fwd_route); same bits. Tests: tests/ops/test_conv2d_implicit.c.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ops/conv2d.h"

#define CONV_DEFAULT_WORKSPACE ((size_t)64 << 20)
#define CONV_CPU_CHUNK_BYTES ((size_t)2 << 20) /* see chunk_images */
#define RED_WG_DEFAULT 64                      /* keep equal to RED_WG's default in cl/ops/conv2d.cl */

static const clg_op_def conv2d_op;

/* A 3-D launch of one of conv2d's kernels (their shapes are documented in cl/ops/conv2d.cl)
 * from a conv_run r. The work-group size is fixed, (red_wg, 1, 1), rather than left to the
 * driver: CPU drivers (PoCL) compile a kernel once per work-group size, and a driver's own
 * choice follows the global size, so every new shape would cost a compile. */
#define LAUNCH3(r, k, g0, g1, g2, what, ...)                                                                 \
    CLG_LAUNCH_ND((r)->ctx, (k), 3, ((size_t[]){(g0), (g1), (g2)}), ((size_t[]){(size_t)(r)->red_wg, 1, 1}),  \
                  (what), __VA_ARGS__)

clg_conv2d_params clg_conv2d_default_params(void) {
    clg_conv2d_params p = {1, 1, 0, 0, 1, 1, 1};
    return p;
}

int clg_conv2d_out_size(int in, int kernel, int stride, int pad, int dilation) {
    if (in < 1 || kernel < 1 || stride < 1 || pad < 0 || dilation < 1) return -1;
    const long long extent = (long long)dilation * (kernel - 1) + 1;
    const long long span = (long long)in + 2LL * pad;
    if (span < extent) return -1;
    const long long out = (span - extent) / stride + 1;
    return out > INT_MAX ? -1 : (int)out;
}

/* ---------------------------------------------------------------- validation */

/* The sizes of one call (src/ops/conv2d.h, shared with conv_transpose2d). */
typedef clg_conv_dims conv_dims;

static clg_status check_dtype(clg_context *ctx, const char *fn, const clg_tensor *t, const char *what,
                              clg_dtype dt) {
    if (clg_tensor_dtype(t) == dt) return CLG_OK;
    return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %s is %s but x is %s", fn, what,
                     clg_dtype_name(clg_tensor_dtype(t)), clg_dtype_name(dt));
}

/* Checks everything forward and backward share: x, w, b and the parameters. */
static clg_status conv_check(clg_context *ctx, const char *fn, const clg_tensor *x, const clg_tensor *w,
                             const clg_tensor *b, const clg_conv2d_params *p, conv_dims *d) {
    clg_status st;
    char s1[64], s2[64];
    if ((st = clg__check(ctx, x, fn, "x")) != CLG_OK) return st;
    if ((st = clg__check(ctx, w, fn, "w")) != CLG_OK) return st;
    if (b && (st = clg__check(ctx, b, fn, "b")) != CLG_OK) return st;
    if (p->stride_h < 1 || p->stride_w < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: stride must be positive, got %d x %d", fn,
                         p->stride_h, p->stride_w);
    if (p->dilation_h < 1 || p->dilation_w < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dilation must be positive, got %d x %d", fn,
                         p->dilation_h, p->dilation_w);
    if (p->pad_h < 0 || p->pad_w < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: padding must be >= 0, got %d x %d", fn, p->pad_h,
                         p->pad_w);
    if (p->groups < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: groups must be positive, got %d", fn, p->groups);
    if (clg_tensor_ndim(x) != 4)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: x %s must be 4-D (N, C, H, W)", fn,
                         clg__shape_str(x, s1, sizeof s1));
    if (clg_tensor_ndim(w) != 4)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: w %s must be 4-D (K, C/groups, KH, KW)", fn,
                         clg__shape_str(w, s1, sizeof s1));
    d->dt = clg_tensor_dtype(x);
    if ((st = check_dtype(ctx, fn, w, "w", d->dt)) != CLG_OK) return st;
    const int *xs = clg_tensor_shape(x), *ws = clg_tensor_shape(w);
    d->N = xs[0], d->C = xs[1], d->H = xs[2], d->W = xs[3];
    d->K = ws[0], d->KH = ws[2], d->KW = ws[3];
    d->G = p->groups;
    if (d->C % d->G)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: groups %d does not divide the %d input channels of x %s", fn, d->G, d->C,
                         clg__shape_str(x, s1, sizeof s1));
    if (d->K % d->G)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: groups %d does not divide the %d output channels of w %s", fn, d->G, d->K,
                         clg__shape_str(w, s1, sizeof s1));
    d->Cg = d->C / d->G, d->Kg = d->K / d->G;
    if (ws[1] != d->Cg)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "%s: w %s has %d input channels per group, but x %s with groups %d "
                         "needs %d",
                         fn, clg__shape_str(w, s1, sizeof s1), ws[1], clg__shape_str(x, s2, sizeof s2), d->G,
                         d->Cg);
    if (b) {
        if ((st = check_dtype(ctx, fn, b, "b", d->dt)) != CLG_OK) return st;
        if (clg_tensor_ndim(b) != 1 || clg_tensor_shape(b)[0] != d->K)
            return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                             "%s: b %s must be (%d), one per output "
                             "channel of w %s",
                             fn, clg__shape_str(b, s1, sizeof s1), d->K, clg__shape_str(w, s2, sizeof s2));
    }
    /* The padded input in long long: H + 2 * pad overflows int for pads past INT_MAX / 2. */
    const long long span_h = (long long)d->H + 2LL * p->pad_h, span_w = (long long)d->W + 2LL * p->pad_w;
    /* The kernels compute input positions oh * stride - pad + i * dilation in int: every such
     * term lies in [-pad, H + pad), so a padded input that fits an int keeps them exact (and
     * the output size fits too: clg_conv2d_out_size's -1 below then means the kernel does not
     * fit, not an output past INT_MAX). */
    if (span_h > INT_MAX || span_w > INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED,
                         "%s: the padded input %lld x %lld (x %s, padding %d x %d) is too large for 32-bit "
                         "kernel indexing",
                         fn, span_h, span_w, clg__shape_str(x, s1, sizeof s1), p->pad_h, p->pad_w);
    d->OH = clg_conv2d_out_size(d->H, d->KH, p->stride_h, p->pad_h, p->dilation_h);
    d->OW = clg_conv2d_out_size(d->W, d->KW, p->stride_w, p->pad_w, p->dilation_w);
    if (d->OH < 1 || d->OW < 1)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "%s: kernel %d x %d (dilation %d x %d) is larger than the padded input "
                         "%lld x %lld (x %s, padding %d x %d)",
                         fn, d->KH, d->KW, p->dilation_h, p->dilation_w, span_h, span_w,
                         clg__shape_str(x, s1, sizeof s1), p->pad_h, p->pad_w);
    /* Kernels index one image's rows and one chunk with int: refuse what does not fit. */
    d->ckk = (size_t)d->C * d->KH * d->KW;
    d->cgkk = (size_t)d->Cg * d->KH * d->KW;
    const size_t P = (size_t)d->OH * d->OW; /* both below 2^31: no wrap */
    size_t col_len;
    if (P > INT_MAX || !clg__mul_size(d->ckk, P, &col_len) || col_len > INT_MAX || (size_t)d->K * P > INT_MAX ||
        (size_t)d->C * d->H * d->W > INT_MAX || (size_t)d->N * P > INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED, "%s: x %s with w %s is too large for 32-bit kernel indexing",
                         fn, clg__shape_str(x, s1, sizeof s1), clg__shape_str(w, s2, sizeof s2));
    d->P = (int)P;
    return CLG_OK;
}

/* t must be (a, b, c, d) (ndim 4) or (a) (ndim 1); the message names both shapes. */
static clg_status check_shape(clg_context *ctx, const char *fn, const clg_tensor *t, const char *what,
                              int ndim, const int *want, const char *why) {
    clg_status st = clg__check(ctx, t, fn, what);
    if (st != CLG_OK) return st;
    bool ok = clg_tensor_ndim(t) == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = clg_tensor_shape(t)[i] == want[i];
    if (ok) return CLG_OK;
    char s1[64];
    if (ndim == 1)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: %s is %s but must be (%d) %s", fn, what,
                         clg__shape_str(t, s1, sizeof s1), want[0], why);
    return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: %s is %s but must be (%d, %d, %d, %d) %s", fn, what,
                     clg__shape_str(t, s1, sizeof s1), want[0], want[1], want[2], want[3], why);
}

/* ---------------------------------------------------------------- helpers */


/* Build options shared by every conv2d kernel (one program per dtype): only a device whose
 * work-groups are smaller than the reduction's default needs its own variant. */
static const char *conv_options(const clg_context *ctx, int *red_wg) {
    static const char *const opts[] = {"-DRED_WG=1", "-DRED_WG=2",  "-DRED_WG=4",
                                       "-DRED_WG=8", "-DRED_WG=16", "-DRED_WG=32"};
    size_t max = ctx->info.max_work_group_size;
    if (max >= RED_WG_DEFAULT || max == 0) {
        *red_wg = RED_WG_DEFAULT;
        return NULL;
    }
    int lg = 0;
    while (((size_t)2 << lg) <= max)
        lg++;
    *red_wg = 1 << lg;
    return opts[lg];
}

/* Images per chunk: as many as the workspace limit allows (col plus the (K, nb*P) result),
 * at least one. One image alone skips the layout moves, so it needs only col. On CPU
 * devices the chunk also stays near cache size: there a chunk's col streamed through
 * DRAM between im2col and the GEMM costs more than the wider GEMM gains (measured with
 * tools/clgrad-bench conv on PoCL: 64x32x32x32 k3 runs 1.5x faster at one 1.4 MB chunk
 * per image than at 46 images per chunk; 64x1x28x28 is fastest at 8-16 images). GPUs
 * batch up to the workspace limit. */
static int chunk_images(const clg_context *ctx, const conv_dims *d) {
    const size_t es = clg_dtype_size(d->dt);
    size_t limit = ctx->conv_workspace_bytes ? ctx->conv_workspace_bytes : CONV_DEFAULT_WORKSPACE;
    if ((ctx->info.type & CL_DEVICE_TYPE_CPU) && limit > CONV_CPU_CHUNK_BYTES) limit = CONV_CPU_CHUNK_BYTES;
    const size_t per_image = (d->ckk + (size_t)d->K) * (size_t)d->P * es;
    size_t nb = limit / per_image;
    if (nb > (size_t)d->N) nb = (size_t)d->N;
    /* the kernels index a whole chunk's col, result and image slice with int */
    const size_t rows = d->ckk > (size_t)d->K ? d->ckk : (size_t)d->K;
    const size_t cap_col = (size_t)INT_MAX / (rows * (size_t)d->P);
    const size_t cap_img = (size_t)INT_MAX / ((size_t)d->C * d->H * d->W);
    if (nb > cap_col) nb = cap_col;
    if (nb > cap_img) nb = cap_img;
    return nb < 2 ? 1 : (int)nb;
}

typedef struct conv_ws {
    clg_pool_block col; /* (C*KH*KW, nb*P) */
    clg_pool_block yt;  /* (K, nb*P), only when nb > 1 */
    bool has_col, has_yt;
} conv_ws;

/* The col buffer, unless the caller does without it (implicit route): then only yt. */
static clg_status ws_alloc_col(clg_context *ctx, const conv_dims *d, int nb, conv_ws *ws) {
    if (ws->has_col) return CLG_OK;
    clg_status st = clg__pool_alloc(ctx, d->ckk * (size_t)nb * d->P * clg_dtype_size(d->dt), &ws->col);
    ws->has_col = st == CLG_OK;
    return st;
}

static clg_status ws_alloc(clg_context *ctx, const conv_dims *d, int nb, bool col, conv_ws *ws) {
    const size_t es = clg_dtype_size(d->dt);
    memset(ws, 0, sizeof *ws);
    clg_status st = col ? ws_alloc_col(ctx, d, nb, ws) : CLG_OK;
    if (st != CLG_OK) return st;
    if (nb > 1) {
        st = clg__pool_alloc(ctx, (size_t)d->K * nb * d->P * es, &ws->yt);
        if (st != CLG_OK) return st;
        ws->has_yt = true;
    }
    return CLG_OK;
}

static void ws_release(clg_context *ctx, conv_ws *ws) {
    if (ws->has_col) clg__pool_release(ctx, ws->col);
    if (ws->has_yt) clg__pool_release(ctx, ws->yt);
    ws->has_col = ws->has_yt = false;
}

/* One call's shared state: dims, parameters, build options and the kernel shape. */
typedef struct conv_run {
    clg_context *ctx;
    const conv_dims *d;
    const clg_conv2d_params *p;
    const char *opts;
    int red_wg;
    /* CPU style: the _cpu kernels, a row or plane per work-item. CPU devices run a
     * work-group's items as a loop, where per-element index math costs more than the copy
     * (see cl/ops/conv2d.cl); the launch shapes below follow the chosen form. */
    bool cpu;
} conv_run;

static conv_run run_init(clg_context *ctx, const conv_dims *d, const clg_conv2d_params *p) {
    conv_run r = {ctx, d, p, NULL, RED_WG_DEFAULT, clg__cpu_style(ctx)};
    r.opts = conv_options(ctx, &r.red_wg);
    return r;
}

/* Kernel `name` of ops/conv2d in the context's style, with the run's build options. */
static clg_status get_kernel(const conv_run *r, const char *name, cl_kernel *k) {
    return clg__op_kernel(r->ctx, "ops/conv2d", name, r->d->dt, r->opts, k);
}

/* col (C*KH*KW, m*P) = im2col of images [n0, n0+m) of x. */
static clg_status run_im2col(const conv_run *r, cl_mem x, int n0, int m, cl_mem col) {
    const conv_dims *d = r->d;
    const clg_conv2d_params *p = r->p;
    cl_kernel k;
    const cl_ulong off = (cl_ulong)n0 * d->C * d->H * d->W;
    clg_status st = get_kernel(r, "im2col", &k);
    if (st != CLG_OK) return st;
    if (r->cpu) /* a whole plane per work-item, work-groups of one */
        return CLG_LAUNCH_ND(r->ctx, k, 2, ((size_t[]){d->ckk, (size_t)m}), ((size_t[]){1, 1}), "conv2d im2col",
                             CLG_ARG(x), CLG_ARG(off), CLG_ARG(col), CLG_ARG(d->C), CLG_ARG(d->H), CLG_ARG(d->W),
                             CLG_ARG(d->KH), CLG_ARG(d->KW), CLG_ARG(p->stride_h), CLG_ARG(p->stride_w),
                             CLG_ARG(p->pad_h), CLG_ARG(p->pad_w), CLG_ARG(p->dilation_h), CLG_ARG(p->dilation_w),
                             CLG_ARG(d->OH), CLG_ARG(d->OW), CLG_ARG(m));
    return LAUNCH3(r, k, (size_t)d->P, d->ckk, (size_t)m, "conv2d im2col",
                   CLG_ARG(x), CLG_ARG(off), CLG_ARG(col), CLG_ARG(d->C), CLG_ARG(d->H), CLG_ARG(d->W),
                   CLG_ARG(d->KH), CLG_ARG(d->KW), CLG_ARG(p->stride_h), CLG_ARG(p->stride_w),
                   CLG_ARG(p->pad_h), CLG_ARG(p->pad_w), CLG_ARG(p->dilation_h), CLG_ARG(p->dilation_w),
                   CLG_ARG(d->OH), CLG_ARG(d->OW), CLG_ARG(m));
}

/* dx images [n0, n0+m) = beta*dx + col2im(dcol (C*KH*KW, m*P)). */
static clg_status run_col2im(const conv_run *r, cl_mem dcol, cl_mem dx, int n0, int m, double beta) {
    const conv_dims *d = r->d;
    const clg_conv2d_params *p = r->p;
    cl_kernel k;
    clg_status st = get_kernel(r, "col2im", &k);
    if (st != CLG_OK) return st;
    const cl_ulong off = (cl_ulong)n0 * d->C * d->H * d->W;
    clg_real rb;
    return LAUNCH3(r, k, r->cpu ? (size_t)d->H : (size_t)d->H * d->W, (size_t)d->C, (size_t)m,
                   "conv2d col2im", CLG_ARG(dcol), CLG_ARG(dx), CLG_ARG(off), clg__real(d->dt, &rb, beta),
                   CLG_ARG(d->C), CLG_ARG(d->H), CLG_ARG(d->W), CLG_ARG(d->KH), CLG_ARG(d->KW),
                   CLG_ARG(p->stride_h), CLG_ARG(p->stride_w), CLG_ARG(p->pad_h), CLG_ARG(p->pad_w),
                   CLG_ARG(p->dilation_h), CLG_ARG(p->dilation_w), CLG_ARG(d->OH), CLG_ARG(d->OW),
                   CLG_ARG(m));
}

/* y images [n0, n0+m) = yt (K, m*P) moved into NCHW, plus the bias when b is not NULL. */
static clg_status run_unpack(const conv_run *r, cl_mem yt, cl_mem y, int n0, int m, cl_mem b) {
    const conv_dims *d = r->d;
    cl_kernel k;
    clg_status st = get_kernel(r, "unpack_y", &k);
    if (st != CLG_OK) return st;
    const cl_ulong off = (cl_ulong)n0 * d->K * d->P;
    const cl_int has_bias = b != NULL;
    if (!b) b = yt; /* any valid buffer */
    const size_t g0 = r->cpu ? (size_t)d->K : (size_t)d->P, g1 = r->cpu ? (size_t)m : (size_t)d->K;
    return LAUNCH3(r, k, g0, g1, r->cpu ? 1 : (size_t)m, "conv2d unpack", CLG_ARG(yt), CLG_ARG(y),
                   CLG_ARG(off), CLG_ARG(b), CLG_ARG(has_bias), CLG_ARG(d->K), CLG_ARG(d->P), CLG_ARG(m));
}

/* y image n0 (K, P) += b per output channel. */
static clg_status run_bias(const conv_run *r, cl_mem y, int n0, cl_mem b) {
    const conv_dims *d = r->d;
    cl_kernel k;
    clg_status st = get_kernel(r, "bias_add", &k);
    if (st != CLG_OK) return st;
    const cl_ulong off = (cl_ulong)n0 * d->K * d->P;
    return LAUNCH3(r, k, r->cpu ? (size_t)d->K : (size_t)d->P, r->cpu ? 1 : (size_t)d->K, 1, "conv2d bias",
                   CLG_ARG(y), CLG_ARG(off), CLG_ARG(b), CLG_ARG(d->K), CLG_ARG(d->P));
}

/* dyt (K, m*P) = images [n0, n0+m) of dy. */
static clg_status run_pack(const conv_run *r, cl_mem dy, int n0, int m, cl_mem dyt) {
    const conv_dims *d = r->d;
    cl_kernel k;
    clg_status st = get_kernel(r, "pack_dy", &k);
    if (st != CLG_OK) return st;
    const cl_ulong off = (cl_ulong)n0 * d->K * d->P;
    const size_t g0 = r->cpu ? (size_t)d->K : (size_t)d->P, g1 = r->cpu ? (size_t)m : (size_t)d->K;
    return LAUNCH3(r, k, g0, g1, r->cpu ? 1 : (size_t)m, "conv2d pack", CLG_ARG(dy), CLG_ARG(off),
                   CLG_ARG(dyt), CLG_ARG(d->K), CLG_ARG(d->P), CLG_ARG(m));
}

/* ---------------------------------------------------------------- forward */

/* Which route the forward's GEMMs take (CLGRAD_CONV, read per call). im2col: col in memory,
 * then the GEMM (any path). implicit: where the packed kernel runs the GEMM, its B panels are
 * packed straight from the images (no col; the same bits, src/blas/packed.c); elsewhere
 * (CLBlast, GPUs) im2col. auto (the default): implicit only where the packed kernel would
 * also pack col into panels (k = Cg*KH*KW >= 512 or Kg >= 256), i.e. where it saves a whole
 * pass over col. Elsewhere the GEMM reads col in place, and packing from the images measured
 * no clear win (within noise at OW >= the panel width; packing 7-25% slower than im2col on
 * 14x14 and 28x28 images; the resnet step 12% slower all implicit: README "Conv2d"). direct:
 * as implicit, but a stride-1 forward from padded images (fwd_route). The backward's input
 * gradient has its own rule under the same setting: dx_route. */
typedef enum { ROUTE_AUTO, ROUTE_IM2COL, ROUTE_IMPLICIT, ROUTE_DIRECT } conv_route_kind;

static clg_status conv_route_env(clg_context *ctx, conv_route_kind *out) {
    const char *env = getenv("CLGRAD_CONV");
    *out = ROUTE_AUTO;
    if (!env || !*env || !strcmp(env, "auto")) return CLG_OK;
    if (!strcmp(env, "im2col"))
        *out = ROUTE_IM2COL;
    else if (!strcmp(env, "implicit"))
        *out = ROUTE_IMPLICIT;
    else if (!strcmp(env, "direct"))
        *out = ROUTE_DIRECT;
    else
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "CLGRAD_CONV=\"%s\": expected im2col, implicit, direct or auto", env);
    return CLG_OK;
}

/* Whether the chunk of m images at n0 runs its GEMMs from the images: every group's product
 * on the packed path. */
static clg_status conv_route(const conv_run *r, conv_route_kind kind, int n0, int m, bool *implicit) {
    const conv_dims *d = r->d;
    const size_t cols = (size_t)m * d->P;
    clg_status st = CLG_OK;
    *implicit = kind != ROUTE_IM2COL;
    for (int g = 0; g < d->G && *implicit && st == CLG_OK; g++) {
        bool saves = false;
        const size_t dst_off =
            m == 1 ? ((size_t)n0 * d->K + (size_t)g * d->Kg) * d->P : (size_t)g * d->Kg * cols;
        st = clg__gemm_conv_check(r->ctx, d->dt, (size_t)d->Kg, cols, d->cgkk, (size_t)g * d->Kg * d->cgkk,
                                  d->cgkk, dst_off, cols, implicit, &saves);
        if (kind == ROUTE_AUTO) *implicit = *implicit && saves;
    }
    return st;
}

/* *ok stays true only where the im2col route's product of every chunk size, (m, chunk*P) = op(A)
 * (m, k) · B, A transposed when ta, runs on the packed path in one pass over k: where the direct
 * kernels give its bits. */
static clg_status chunks_in_one_pass(const conv_run *r, int nb, bool ta, size_t m, size_t k, bool *ok) {
    const int sizes[2] = {nb, r->d->N % nb};
    clg_status st = CLG_OK;
    for (int i = 0; i < 2 && *ok && st == CLG_OK; i++)
        if (sizes[i])
            st = clg__gemm_conv_direct_check(r->ctx, r->d->dt, ta, m, (size_t)sizes[i] * r->d->P, k, ok);
    return st;
}

/* Whether the forward runs from padded copies of the images, with no col (clg__gemm_conv_fwd):
 * stride 1, and every chunk's GEMM on the packed path in one pass over k, so that the bits are
 * the same. direct: wherever that holds. auto: for "same" convolutions (OW == W) with k =
 * Cg*KH*KW >= 256, where it measured 1.19-1.44x the im2col route (README "Conv2d"); with fewer
 * taps per output (a first layer's 9, 144) the padded copy and the stores outweigh the saving;
 * and only while the padded batch fits the workspace limit (direct ignores it). */
static clg_status fwd_route(const conv_run *r, conv_route_kind kind, int nb, bool *direct) {
    const conv_dims *d = r->d;
    *direct = (kind == ROUTE_DIRECT || kind == ROUTE_AUTO) && r->p->stride_h == 1 && r->p->stride_w == 1;
    if (kind == ROUTE_AUTO) {
        /* the padded copy of the whole batch stays within the workspace limit, as col does */
        const size_t limit = r->ctx->conv_workspace_bytes ? r->ctx->conv_workspace_bytes : CONV_DEFAULT_WORKSPACE;
        const size_t padded = (size_t)d->N * d->C * ((size_t)d->H + 2 * (size_t)r->p->pad_h) *
                              ((size_t)d->W + 2 * (size_t)r->p->pad_w) * clg_dtype_size(d->dt);
        *direct = *direct && d->OW == d->W && d->cgkk >= 256 && padded <= limit;
    }
    return chunks_in_one_pass(r, nb, false, (size_t)d->Kg, d->cgkk, direct);
}

static clg_status forward_impl(clg_context *ctx, const conv_dims *d, const clg_conv2d_params *p,
                               const clg_tensor *x, const clg_tensor *w, const clg_tensor *b, clg_tensor *y) {
    const conv_run r = run_init(ctx, d, p);
    const int nb = chunk_images(ctx, d);
    cl_mem xm = clg__mem(x), wm = clg__mem(w), ym = clg__mem(y);
    cl_mem bm = b ? clg__mem(b) : NULL;
    conv_route_kind kind;
    clg_status st = conv_route_env(ctx, &kind);
    if (st != CLG_OK) return st;
    bool direct = false;
    if ((st = fwd_route(&r, kind, nb, &direct)) != CLG_OK) return st;
    if (direct) {
        const clg_gemm_conv_fwd a = {xm,          wm,       bm,       ym,       d->N,          d->C,
                                     d->H,        d->W,     d->K,     d->KH,    d->KW,         p->pad_h,
                                     p->pad_w,    p->dilation_h, p->dilation_w, d->OH, d->OW, d->G};
        return clg__gemm_conv_fwd(ctx, d->dt, &a);
    }
    conv_ws ws;
    st = ws_alloc(ctx, d, nb, false, &ws);
    for (int n0 = 0; n0 < d->N && st == CLG_OK; n0 += nb) {
        const int m = d->N - n0 < nb ? d->N - n0 : nb;
        const size_t cols = (size_t)m * d->P;
        bool implicit = false;
        st = conv_route(&r, kind, n0, m, &implicit);
        if (st == CLG_OK && !implicit) st = ws_alloc_col(ctx, d, nb, &ws);
        if (st == CLG_OK && !implicit) st = run_im2col(&r, xm, n0, m, ws.col.mem);
        for (int g = 0; g < d->G && st == CLG_OK; g++) {
            /* Y_g (Kg, m*P) = W_g (Kg, Cg*KH*KW) · col_g (Cg*KH*KW, m*P): one image goes
             * straight into y, a batch into yt (K, m*P) first */
            cl_mem dst = m == 1 ? ym : ws.yt.mem;
            const size_t dst_off =
                m == 1 ? ((size_t)n0 * d->K + (size_t)g * d->Kg) * d->P : (size_t)g * d->Kg * cols;
            const size_t w_off = (size_t)g * d->Kg * d->cgkk;
            if (implicit) {
                /* col_g read from images n0.. at channel g*Cg */
                const clg_gemm_conv_src src = {xm,
                                               ((size_t)n0 * d->C + (size_t)g * d->Cg) * d->H * d->W,
                                               clg_tensor_numel(x),
                                               d->C,
                                               d->H,
                                               d->W,
                                               d->KH,
                                               d->KW,
                                               p->stride_h,
                                               p->stride_w,
                                               p->pad_h,
                                               p->pad_w,
                                               p->dilation_h,
                                               p->dilation_w,
                                               d->OH,
                                               d->OW};
                st = clg__gemm_conv_mem(ctx, d->dt, (size_t)d->Kg, cols, d->cgkk, 1.0, wm, w_off, d->cgkk,
                                        &src, 0.0, dst, dst_off, cols);
            } else
                st = clg__gemm_mem(ctx, d->dt, false, false, (size_t)d->Kg, cols, d->cgkk, 1.0, wm, w_off,
                                   d->cgkk, ws.col.mem, (size_t)g * d->cgkk * cols, cols, 0.0, dst, dst_off,
                                   cols);
        }
        if (st == CLG_OK && m > 1)
            st = run_unpack(&r, ws.yt.mem, ym, n0, m, bm);
        else if (st == CLG_OK && bm)
            st = run_bias(&r, ym, n0, bm);
    }
    ws_release(ctx, &ws);
    return st;
}

clg_status clg_conv2d_forward(clg_context *ctx, const clg_tensor *x, const clg_tensor *w, const clg_tensor *b,
                              clg_conv2d_params p, clg_tensor *y) {
    static const char fn[] = "clg_conv2d_forward";
    if (!ctx) return CLG_INVALID_ARGUMENT;
    conv_dims d;
    clg_status st = conv_check(ctx, fn, x, w, b, &p, &d);
    if (st != CLG_OK) return st;
    const int ys[4] = {d.N, d.K, d.OH, d.OW};
    if ((st = check_shape(ctx, fn, y, "y", 4, ys, "(N, K, OH, OW)")) != CLG_OK ||
        (st = check_dtype(ctx, fn, y, "y", d.dt)) != CLG_OK)
        return st;
    return forward_impl(ctx, &d, &p, x, w, b, y);
}

/* ---------------------------------------------------------------- backward */

/* db = beta*db + sum of dy over N, OH, OW: one work-group per output channel. */
static clg_status run_bias_grad(const conv_run *r, const clg_tensor *dy, clg_tensor *db, double beta) {
    const conv_dims *d = r->d;
    cl_kernel k;
    clg_status st = get_kernel(r, "bias_grad", &k);
    if (st != CLG_OK) return st;
    cl_mem dym = clg__mem(dy), dbm = clg__mem(db);
    clg_real rb;
    if (r->cpu)
        return CLG_LAUNCH_ND(r->ctx, k, 1, ((size_t[]){(size_t)d->K}), ((size_t[]){1}), "conv2d bias gradient",
                             CLG_ARG(dym), CLG_ARG(dbm), clg__real(d->dt, &rb, beta), CLG_ARG(d->N), CLG_ARG(d->K),
                             CLG_ARG(d->P));
    return CLG_LAUNCH_ND(r->ctx, k, 1, ((size_t[]){(size_t)d->K * r->red_wg}), ((size_t[]){(size_t)r->red_wg}),
                         "conv2d bias gradient", CLG_ARG(dym), CLG_ARG(dbm), clg__real(d->dt, &rb, beta),
                         CLG_ARG(d->N), CLG_ARG(d->K), CLG_ARG(d->P));
}

/* Whether dx comes straight from dy (clg__gemm_conv_dx: one launch, no dcol, no col2im) rather
 * than through the chunks' dcol GEMMs and col2im: stride 1, not im2col asked for, and every
 * chunk's dcol product on the packed path in one pass over k, so that the bits are the same.
 * auto takes it only where OW == W ("same" convolutions, whose tiles read dy as vectors). */
static clg_status dx_route(const conv_run *r, conv_route_kind kind, int nb, bool *direct) {
    const conv_dims *d = r->d;
    *direct = kind != ROUTE_IM2COL && r->p->stride_h == 1 && r->p->stride_w == 1;
    if (kind == ROUTE_AUTO) *direct = *direct && d->OW == d->W;
    return chunks_in_one_pass(r, nb, true, d->cgkk, (size_t)d->Kg, direct);
}

/* dx and dw through the chunks; either may be NULL, each has its own beta. dW sums over the
 * batch: the first chunk's GEMM uses beta, later chunks add (beta 1). With several chunks
 * and beta != 0 the sum goes to a scratch dW first and then dw = beta*dw + scratch, so a
 * call with beta 1 adds exactly the value a call with beta 0 writes. */
static clg_status backward_impl(const conv_run *r, const clg_tensor *x, const clg_tensor *w,
                                const clg_tensor *dy, clg_tensor *dx, double beta_x, clg_tensor *dw,
                                double beta_w) {
    clg_context *ctx = r->ctx;
    const conv_dims *d = r->d;
    const clg_conv2d_params *p = r->p;
    const int nb = chunk_images(ctx, d);
    cl_mem xm = clg__mem(x), wm = clg__mem(w), dym = clg__mem(dy);
    cl_mem dxm = dx ? clg__mem(dx) : NULL, dwm = dw ? clg__mem(dw) : NULL;
    clg_tensor *dw_acc = NULL; /* scratch dW, same shape as w */
    conv_route_kind kind;
    clg_status st = conv_route_env(ctx, &kind);
    bool dx_direct = false;
    if (st == CLG_OK && dx) st = dx_route(r, kind, nb, &dx_direct);
    if (st == CLG_OK && dx_direct) {
        const clg_gemm_conv_dx a = {dym,         wm,      dxm,     d->N,         d->C,         d->H,
                                    d->W,        d->K,    d->KH,   d->KW,        p->pad_h,     p->pad_w,
                                    p->dilation_h, p->dilation_w, d->OH, d->OW, d->G};
        st = clg__gemm_conv_dx(ctx, d->dt, &a, beta_x);
        dx = NULL;
    }
    if (st != CLG_OK || (!dx && !dw)) return st;
    if (dw && nb < d->N && beta_w != 0.0) {
        if ((st = clg__tensor_like(dw, &dw_acc)) != CLG_OK) return st;
        dwm = clg__mem(dw_acc);
    }
    const double beta_w0 = dw_acc ? 0.0 : beta_w;
    conv_ws ws;
    st = ws_alloc(ctx, d, nb, true, &ws);
    for (int n0 = 0; n0 < d->N && st == CLG_OK; n0 += nb) {
        const int m = d->N - n0 < nb ? d->N - n0 : nb;
        const size_t cols = (size_t)m * d->P;
        /* dY of the chunk as (K, m*P): dy itself for one image, else packed into yt */
        cl_mem dyc = dym;
        size_t dyc_off = (size_t)n0 * d->K * d->P;
        if (m > 1) {
            st = run_pack(r, dym, n0, m, ws.yt.mem);
            dyc = ws.yt.mem;
            dyc_off = 0;
        }
        if (dw && st == CLG_OK) {
            st = run_im2col(r, xm, n0, m, ws.col.mem);
            const double beta = n0 == 0 ? beta_w0 : 1.0;
            for (int g = 0; g < d->G && st == CLG_OK; g++)
                /* dW_g (Kg, Cg*KH*KW) = beta*dW_g + dY_g (Kg, m*P) · col_g (Cg*KH*KW, m*P)^T */
                st = clg__gemm_mem(ctx, d->dt, false, true, (size_t)d->Kg, d->cgkk, cols, 1.0, dyc,
                                   dyc_off + (size_t)g * d->Kg * cols, cols, ws.col.mem,
                                   (size_t)g * d->cgkk * cols, cols, beta, dwm, (size_t)g * d->Kg * d->cgkk,
                                   d->cgkk);
        }
        if (dx && st == CLG_OK) {
            /* dcol_g (Cg*KH*KW, m*P) = W_g^T · dY_g, into col: the in-order queue has finished
             * with col as dW's input before this overwrites it. */
            for (int g = 0; g < d->G && st == CLG_OK; g++)
                st = clg__gemm_mem(ctx, d->dt, true, false, d->cgkk, cols, (size_t)d->Kg, 1.0, wm,
                                   (size_t)g * d->Kg * d->cgkk, d->cgkk, dyc,
                                   dyc_off + (size_t)g * d->Kg * cols, cols, 0.0, ws.col.mem,
                                   (size_t)g * d->cgkk * cols, cols);
            if (st == CLG_OK) st = run_col2im(r, ws.col.mem, dxm, n0, m, beta_x);
        }
    }
    if (dw_acc && st == CLG_OK) st = clg__axpby(ctx, 1.0, dw_acc, beta_w, dw);
    clg_tensor_free(dw_acc);
    ws_release(ctx, &ws);
    return st;
}

/* Validates dy and the gradients, then runs what is asked for. */
static clg_status backward_all(clg_context *ctx, const char *fn, const clg_tensor *x, const clg_tensor *w,
                               const clg_tensor *dy, const clg_conv2d_params *p, clg_tensor *dx,
                               double beta_x, clg_tensor *dw, double beta_w, clg_tensor *db, double beta_b) {
    conv_dims d;
    clg_status st = conv_check(ctx, fn, x, w, NULL, p, &d);
    if (st != CLG_OK) return st;
    const int ys[4] = {d.N, d.K, d.OH, d.OW};
    if ((st = check_shape(ctx, fn, dy, "dy", 4, ys, "(N, K, OH, OW)")) != CLG_OK ||
        (st = check_dtype(ctx, fn, dy, "dy", d.dt)) != CLG_OK)
        return st;
    if (dx && ((st = check_shape(ctx, fn, dx, "dx", 4, clg_tensor_shape(x), "(the shape of x)")) != CLG_OK ||
               (st = check_dtype(ctx, fn, dx, "dx", d.dt)) != CLG_OK))
        return st;
    if (dw && ((st = check_shape(ctx, fn, dw, "dw", 4, clg_tensor_shape(w), "(the shape of w)")) != CLG_OK ||
               (st = check_dtype(ctx, fn, dw, "dw", d.dt)) != CLG_OK))
        return st;
    if (db && ((st = check_shape(ctx, fn, db, "db", 1, &d.K, "(one per output channel)")) != CLG_OK ||
               (st = check_dtype(ctx, fn, db, "db", d.dt)) != CLG_OK))
        return st;
    const conv_run r = run_init(ctx, &d, p);
    if (db && (st = run_bias_grad(&r, dy, db, beta_b)) != CLG_OK) return st;
    if (!dx && !dw) return CLG_OK;
    return backward_impl(&r, x, w, dy, dx, beta_x, dw, beta_w);
}

clg_status clg_conv2d_backward(clg_context *ctx, const clg_tensor *x, const clg_tensor *w,
                               const clg_tensor *dy, clg_conv2d_params p, clg_tensor *dx, clg_tensor *dw,
                               clg_tensor *db, double beta) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    return backward_all(ctx, "clg_conv2d_backward", x, w, dy, &p, dx, beta, dw, beta, db, beta);
}

/* ---------------------------------------------------------------- for conv_transpose2d */

clg_status clg__conv2d_forward_dims(clg_context *ctx, const clg_conv_dims *d, const clg_conv2d_params *p,
                                    const clg_tensor *x, const clg_tensor *w, const clg_tensor *b,
                                    clg_tensor *y) {
    return forward_impl(ctx, d, p, x, w, b, y);
}

clg_status clg__conv2d_backward_dims(clg_context *ctx, const clg_conv_dims *d, const clg_conv2d_params *p,
                                     const clg_tensor *x, const clg_tensor *w, const clg_tensor *dy,
                                     clg_tensor *dx, double beta_x, clg_tensor *dw, double beta_w) {
    if (!dx && !dw) return CLG_OK;
    const conv_run r = run_init(ctx, d, p);
    return backward_impl(&r, x, w, dy, dx, beta_x, dw, beta_w);
}

/* The bias kernels read only K, P (and N) of the dims: a (n, k, plane) tensor is such a y. */
static conv_dims bias_dims(clg_dtype dt, int n, int k, int plane) {
    conv_dims d;
    memset(&d, 0, sizeof d);
    d.N = n, d.K = k, d.P = plane, d.dt = dt;
    return d;
}

clg_status clg__conv2d_bias_add(clg_context *ctx, clg_dtype dt, int n, int k, int plane, const clg_tensor *b,
                                clg_tensor *y) {
    const conv_dims d = bias_dims(dt, n, k, plane);
    const clg_conv2d_params p = clg_conv2d_default_params();
    const conv_run r = run_init(ctx, &d, &p);
    clg_status st = CLG_OK;
    for (int i = 0; i < n && st == CLG_OK; i++)
        st = run_bias(&r, clg__mem(y), i, clg__mem(b));
    return st;
}

clg_status clg__conv2d_bias_grad(clg_context *ctx, clg_dtype dt, int n, int k, int plane, const clg_tensor *dy,
                                 clg_tensor *db, double beta) {
    const conv_dims d = bias_dims(dt, n, k, plane);
    const clg_conv2d_params p = clg_conv2d_default_params();
    const conv_run r = run_init(ctx, &d, &p);
    return run_bias_grad(&r, dy, db, beta);
}

/* ---------------------------------------------------------------- graph op */

clg_status clg_conv2d(clg_context *ctx, const clg_tensor *x, const clg_tensor *w, const clg_tensor *b,
                      clg_conv2d_params p, clg_tensor **out) {
    static const char fn[] = "clg_conv2d";
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = NULL;
    conv_dims d;
    clg_status st = conv_check(ctx, fn, x, w, b, &p, &d);
    if (st != CLG_OK) return st;
    const int ys[4] = {d.N, d.K, d.OH, d.OW};
    clg_tensor *y;
    if ((st = clg__tensor_new(ctx, d.dt, 4, ys, &y)) != CLG_OK) return st;
    if ((st = forward_impl(ctx, &d, &p, x, w, b, y)) != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    const clg_tensor *inputs[3] = {x, w, b};
    const int n_inputs = b ? 3 : 2;
    if (clg__needs_grad(ctx, n_inputs, inputs)) {
        st = clg__record(ctx, &conv2d_op, y, n_inputs, inputs, &p, sizeof p, NULL);
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

/* The engine's dx[i] / beta[i] for x, w and (when present) b. The three are different
 * tensors with their own beta; when two gradients share a buffer (the same tensor used as
 * both x and w), they are written one after the other so each beta applies once. */
static clg_status conv2d_backward_node(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                       clg_tensor *const *dx, const double *beta) {
    static const char fn[] = "clg_conv2d backward";
    clg_conv2d_params p;
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

static const clg_op_def conv2d_op = {"conv2d", conv2d_backward_node};
