/* src/ops/pool2d.c - max_pool2d and avg_pool2d (count_include_pad = true) over (N, C, H, W):
 * forward, graph recording and backward. Kernels: cl/ops/pool2d.cl.
 * Tests: tests/ops/test_pool2d.c.
 * Max pool saves its argmax per output element; backward gathers with it (no atomics).
 */
#include <limits.h>
#include <string.h>

#include "ops/op.h"

/* Everything backward needs about the geometry, copied into the node. */
typedef struct pool_geom {
    int n, c, h, w; /* input (N, C, H, W) */
    int oh, ow;     /* output spatial size */
    int kh, kw, sh, sw, ph, pw;
} pool_geom;

/* The geometry arguments every pool kernel takes after its buffers, in this order. */
#define POOL_GEOM(g)                                                                                         \
    CLG_ARG((g)->h), CLG_ARG((g)->w), CLG_ARG((g)->oh), CLG_ARG((g)->ow), CLG_ARG((g)->kh), CLG_ARG((g)->kw), \
        CLG_ARG((g)->sh), CLG_ARG((g)->sw), CLG_ARG((g)->ph), CLG_ARG((g)->pw)

/* Forward kernel kname over y (N, C, OH, OW) in the context's style: per output element
 * (kname) or per output row (kname_cpu). idx (argmax out) is NULL for the kernels that have
 * none. The kernels take (y, x, [idx,] geometry..., count), count elements or rows. */
static clg_status pool_forward(clg_context *ctx, const char *kname, const pool_geom *g, clg_tensor *y,
                               const clg_tensor *x, clg_tensor *idx, const char *what) {
    cl_kernel k;
    clg_status st = clg__op_kernel(ctx, "ops/pool2d", kname, x->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), xm = clg__mem(x), im = clg__mem(idx);
    const int rows = g->n * g->c * g->oh, n = (int)y->numel;
    /* A row streams OW windows of kh * kw. Only the launch's rows per work-item follow from it,
     * so it saturates at INT_MAX (one row per item long before) instead of wrapping a size_t for
     * huge kernels, which are mostly padding. */
    size_t row_len;
    if (!clg__mul_size((size_t)g->ow, (size_t)g->kh, &row_len) || !clg__mul_size(row_len, (size_t)g->kw, &row_len) ||
        row_len > INT_MAX)
        row_len = INT_MAX;
    if (clg__cpu_style(ctx))
        return idx ? CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, row_len, what, CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(im),
                                     POOL_GEOM(g), CLG_ARG(rows))
                   : CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, row_len, what, CLG_ARG(ym), CLG_ARG(xm), POOL_GEOM(g),
                                     CLG_ARG(rows));
    return idx ? CLG_LAUNCH_ELEMS(ctx, k, y->numel, what, CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(im), POOL_GEOM(g),
                                  CLG_ARG(n))
               : CLG_LAUNCH_ELEMS(ctx, k, y->numel, what, CLG_ARG(ym), CLG_ARG(xm), POOL_GEOM(g), CLG_ARG(n));
}

/* Validates x and p and works out the output size, as PyTorch does (floor mode). */
static clg_status pool_geom_make(clg_context *ctx, const clg_tensor *x, clg_pool2d_params p, const char *op,
                                 pool_geom *g) {
    clg_status st = clg__check(ctx, x, op, "x");
    if (st != CLG_OK) return st;
    char s[64];
    if (x->ndim != 4)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: x must be 4-D (N, C, H, W): got %s", op,
                         clg__shape_str(x, s, sizeof s));
    if (p.kernel_h < 1 || p.kernel_w < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: kernel must be positive: got %dx%d", op, p.kernel_h,
                         p.kernel_w);
    if (p.stride_h < 0 || p.stride_w < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "%s: stride must be positive (0 = kernel size): got %dx%d", op, p.stride_h,
                         p.stride_w);
    if (p.pad_h < 0 || p.pad_w < 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: padding must not be negative: got %dx%d", op,
                         p.pad_h, p.pad_w);
    /* Wider padding would make windows that see only padding (PyTorch refuses it too). */
    if (p.pad_h > p.kernel_h / 2 || p.pad_w > p.kernel_w / 2)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: padding %dx%d must be at most half the kernel %dx%d",
                         op, p.pad_h, p.pad_w, p.kernel_h, p.kernel_w);
    g->n = x->shape[0];
    g->c = x->shape[1];
    g->h = x->shape[2];
    g->w = x->shape[3];
    g->kh = p.kernel_h;
    g->kw = p.kernel_w;
    g->sh = p.stride_h ? p.stride_h : p.kernel_h;
    g->sw = p.stride_w ? p.stride_w : p.kernel_w;
    g->ph = p.pad_h;
    g->pw = p.pad_w;
    /* The padded input in long long: h + 2 * pad overflows int once the kernel (and so the
     * padding) passes INT_MAX / 2. */
    const long long span_h = (long long)g->h + 2LL * g->ph, span_w = (long long)g->w + 2LL * g->pw;
    if (span_h < g->kh || span_w < g->kw)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s: kernel %dx%d does not fit input %s with padding %dx%d",
                         op, g->kh, g->kw, clg__shape_str(x, s, sizeof s), g->ph, g->pw);
    /* The kernels compute window bounds oh * stride - pad + kernel in int: each lies within
     * [-pad, h + pad], exact while the padded input fits an int. */
    if (span_h > INT_MAX || span_w > INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED,
                         "%s: the padded input %lld x %lld (x %s, padding %dx%d) is too large for 32-bit "
                         "kernel indexing",
                         op, span_h, span_w, clg__shape_str(x, s, sizeof s), g->ph, g->pw);
    g->oh = (int)((span_h - g->kh) / g->sh + 1);
    g->ow = (int)((span_w - g->kw) / g->sw + 1);
    /* Kernels index with int. */
    size_t outs;
    if (x->numel > INT_MAX || !clg__mul_size((size_t)g->n * (size_t)g->c, (size_t)g->oh, &outs) ||
        !clg__mul_size(outs, (size_t)g->ow, &outs) || outs > INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED, "%s: input %s with kernel %dx%d is too large for 32-bit kernel indexing",
                         op, clg__shape_str(x, s, sizeof s), g->kh, g->kw);
    return CLG_OK;
}

/* Shapes backward receives must be the ones forward saw (the graph guarantees it; direct
 * callers get a clear error instead of an out-of-bounds read). */
static clg_status pool_check_grads(clg_context *ctx, const pool_geom *g, const clg_tensor *dy,
                                   const clg_tensor *dx, const char *op) {
    char s[64];
    const clg_tensor *ts[2] = {dy, dx};
    const int want[2][4] = {{g->n, g->c, g->oh, g->ow}, {g->n, g->c, g->h, g->w}};
    const char *names[2] = {"dy", "dx"};
    for (int t = 0; t < 2; ++t) {
        clg_status st = clg__check(ctx, ts[t], op, names[t]);
        if (st != CLG_OK) return st;
        bool ok = ts[t]->ndim == 4;
        for (int d = 0; ok && d < 4; ++d)
            ok = ts[t]->shape[d] == want[t][d];
        if (!ok)
            return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s backward: %s must be (%d, %d, %d, %d): got %s", op,
                             names[t], want[t][0], want[t][1], want[t][2], want[t][3],
                             clg__shape_str(ts[t], s, sizeof s));
    }
    if (dy->dtype != dx->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s backward: dy is %s but dx is %s", op,
                         clg_dtype_name(dy->dtype), clg_dtype_name(dx->dtype));
    return CLG_OK;
}

/* ---------------------------------------------------------------- max_pool2d */

static clg_status max_pool2d_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                      clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    pool_geom g;
    memcpy(&g, node->params, sizeof g);
    clg_status st = pool_check_grads(ctx, &g, dy, dx[0], "max_pool2d");
    if (st != CLG_OK) return st;
    const clg_tensor *idx = node->saved[0]; /* (N, C, OH, OW) int32 argmax */
    if (!idx) return clg__fail(ctx, CLG_INVALID_STATE, "max_pool2d backward: the saved argmax is gone");
    cl_kernel k;
    cl_mem dxm = clg__mem(dx[0]), dym = clg__mem(dy), im = clg__mem(idx);
    clg_real b;
    if (g.kh == g.sh && g.kw == g.sw && g.ph == 0 && g.pw == 0 && g.h == g.oh * g.kh && g.w == g.ow * g.kw) {
        st = clg__kernel_dt(ctx, "ops/pool2d", "max_pool2d_bwd_tiled", dx[0]->dtype, NULL, &k);
        if (st != CLG_OK) return st;
        int rows = g.n * g.c * g.oh;
        /* A row writes kh input rows of W. */
        return CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, (size_t)g.kh * g.w, "max_pool2d backward", CLG_ARG(dxm),
                               CLG_ARG(dym), CLG_ARG(im), CLG_ARG(g.w), CLG_ARG(g.oh), CLG_ARG(g.ow),
                               CLG_ARG(g.kh), CLG_ARG(g.kw), clg__real(dx[0]->dtype, &b, beta[0]),
                               CLG_ARG(rows));
    }
    st = clg__kernel_dt(ctx, "ops/pool2d", "max_pool2d_bwd", dx[0]->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    int n = (int)dx[0]->numel;
    return CLG_LAUNCH_ELEMS(ctx, k, dx[0]->numel, "max_pool2d backward", CLG_ARG(dxm), CLG_ARG(dym),
                            CLG_ARG(im), CLG_ARG(g.h), CLG_ARG(g.w), CLG_ARG(g.oh), CLG_ARG(g.ow),
                            CLG_ARG(g.kh), CLG_ARG(g.kw), CLG_ARG(g.sh), CLG_ARG(g.sw), CLG_ARG(g.ph),
                            CLG_ARG(g.pw), clg__real(dx[0]->dtype, &b, beta[0]), CLG_ARG(n));
}

static const clg_op_def max_pool2d_op = {"max_pool2d", max_pool2d_backward};

clg_pool2d_params clg_pool2d_default_params(void) {
    clg_pool2d_params p;
    memset(&p, 0, sizeof p);
    return p;
}

clg_status clg_max_pool2d(clg_context *ctx, const clg_tensor *x, clg_pool2d_params p, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "max_pool2d: out is NULL");
    *out = NULL;
    pool_geom g;
    clg_status st = pool_geom_make(ctx, x, p, "max_pool2d", &g);
    if (st != CLG_OK) return st;

    const clg_tensor *inputs[1] = {x};
    const bool record = clg__needs_grad(ctx, 1, inputs);
    const int yshape[4] = {g.n, g.c, g.oh, g.ow};
    clg_tensor *y = NULL, *idx = NULL;
    st = clg__tensor_new(ctx, x->dtype, 4, yshape, &y); // (N, C, OH, OW)
    /* Tensors carry only real dtypes: an F32 tensor is the pool's 4-byte-element buffer, and
     * holds int32 argmax values that only these kernels read. */
    if (st == CLG_OK && record) st = clg__tensor_new(ctx, CLG_F32, 4, yshape, &idx);
    if (st == CLG_OK)
        st = pool_forward(ctx, record ? "max_pool2d_fwd_idx" : "max_pool2d_fwd", &g, y, x, idx, "max_pool2d");
    if (st == CLG_OK && record) {
        clg_node *node = NULL;
        st = clg__record(ctx, &max_pool2d_op, y, 1, inputs, &g, sizeof g, &node);
        if (st == CLG_OK && node) clg__save(node, 0, idx);
    }
    clg_tensor_free(idx); /* the node holds its own reference */
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

/* ---------------------------------------------------------------- avg_pool2d */

static clg_status avg_pool2d_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                      clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    pool_geom g;
    memcpy(&g, node->params, sizeof g);
    clg_status st = pool_check_grads(ctx, &g, dy, dx[0], "avg_pool2d");
    if (st != CLG_OK) return st;
    cl_kernel k;
    st = clg__kernel_dt(ctx, "ops/pool2d", "avg_pool2d_bwd", dx[0]->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem dxm = clg__mem(dx[0]), dym = clg__mem(dy);
    int n = (int)dx[0]->numel;
    clg_real b;
    return CLG_LAUNCH_ELEMS(ctx, k, dx[0]->numel, "avg_pool2d backward", CLG_ARG(dxm), CLG_ARG(dym),
                            CLG_ARG(g.h), CLG_ARG(g.w), CLG_ARG(g.oh), CLG_ARG(g.ow), CLG_ARG(g.kh),
                            CLG_ARG(g.kw), CLG_ARG(g.sh), CLG_ARG(g.sw), CLG_ARG(g.ph), CLG_ARG(g.pw),
                            clg__real(dx[0]->dtype, &b, beta[0]), CLG_ARG(n));
}

static const clg_op_def avg_pool2d_op = {"avg_pool2d", avg_pool2d_backward};

clg_status clg_avg_pool2d(clg_context *ctx, const clg_tensor *x, clg_pool2d_params p, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "avg_pool2d: out is NULL");
    *out = NULL;
    pool_geom g;
    clg_status st = pool_geom_make(ctx, x, p, "avg_pool2d", &g);
    if (st != CLG_OK) return st;

    const clg_tensor *inputs[1] = {x};
    const int yshape[4] = {g.n, g.c, g.oh, g.ow};
    clg_tensor *y = NULL;
    st = clg__tensor_new(ctx, x->dtype, 4, yshape, &y); // (N, C, OH, OW)
    if (st == CLG_OK) st = pool_forward(ctx, "avg_pool2d_fwd", &g, y, x, NULL, "avg_pool2d");
    if (st == CLG_OK && clg__needs_grad(ctx, 1, inputs))
        st = clg__record(ctx, &avg_pool2d_op, y, 1, inputs, &g, sizeof g, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}
