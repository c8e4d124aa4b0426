/* src/ops/adaptive_pool2d.c - adaptive_avg_pool2d over (N, C, H, W) to a given output size
 * (PyTorch's windows; (1, 1) is global average pooling): forward, graph recording and
 * backward. Kernels: cl/ops/adaptive_pool2d.cl. Tests: tests/ops/test_adaptive_pool2d.c.
 */
#include <limits.h>
#include <string.h>

#include "ops/op.h"

/* What backward needs, copied into the node. */
typedef struct adaptive_geom {
    int n, c, h, w; /* input (N, C, H, W) */
    int oh, ow;     /* output spatial size */
} adaptive_geom;

static clg_status adaptive_check_grads(clg_context *ctx, const adaptive_geom *g, const clg_tensor *dy,
                                       const clg_tensor *dx) {
    char s[64];
    const clg_tensor *ts[2] = {dy, dx};
    const int want[2][4] = {{g->n, g->c, g->oh, g->ow}, {g->n, g->c, g->h, g->w}};
    const char *names[2] = {"dy", "dx"};
    for (int t = 0; t < 2; ++t) {
        clg_status st = clg__check(ctx, ts[t], "adaptive_avg_pool2d", names[t]);
        if (st != CLG_OK) return st;
        bool ok = ts[t]->ndim == 4;
        for (int d = 0; ok && d < 4; ++d)
            ok = ts[t]->shape[d] == want[t][d];
        if (!ok)
            return clg__fail(
                ctx, CLG_SHAPE_MISMATCH, "adaptive_avg_pool2d backward: %s must be (%d, %d, %d, %d): got %s",
                names[t], want[t][0], want[t][1], want[t][2], want[t][3], clg__shape_str(ts[t], s, sizeof s));
    }
    if (dy->dtype != dx->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "adaptive_avg_pool2d backward: dy is %s but dx is %s",
                         clg_dtype_name(dy->dtype), clg_dtype_name(dx->dtype));
    return CLG_OK;
}

static clg_status adaptive_avg_pool2d_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                               clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    adaptive_geom g;
    memcpy(&g, node->params, sizeof g);
    clg_status st = adaptive_check_grads(ctx, &g, dy, dx[0]);
    if (st != CLG_OK) return st;
    cl_kernel k;
    st = clg__op_kernel(ctx, "ops/adaptive_pool2d", "adaptive_avg_pool2d_bwd", dx[0]->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem dxm = clg__mem(dx[0]), dym = clg__mem(dy);
    clg_real b;
    const clg_karg bk = clg__real(dx[0]->dtype, &b, beta[0]);
    /* Each input element gathers about ceil(OH / H) * ceil(OW / W) outputs. */
    const size_t per = (size_t)((g.oh + g.h - 1) / g.h) * (size_t)((g.ow + g.w - 1) / g.w);
    if (clg__cpu_style(ctx)) {
        const int rows = g.n * g.c * g.h;
        return CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, (size_t)g.w * per, "adaptive_avg_pool2d backward",
                               CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(g.h), CLG_ARG(g.w), CLG_ARG(g.oh),
                               CLG_ARG(g.ow), bk, CLG_ARG(rows));
    }
    const int n = (int)dx[0]->numel;
    return CLG_LAUNCH_ELEMS(ctx, k, dx[0]->numel, "adaptive_avg_pool2d backward", CLG_ARG(dxm), CLG_ARG(dym),
                            CLG_ARG(g.h), CLG_ARG(g.w), CLG_ARG(g.oh), CLG_ARG(g.ow), bk, CLG_ARG(n));
}

static const clg_op_def adaptive_avg_pool2d_op = {"adaptive_avg_pool2d", adaptive_avg_pool2d_backward};

clg_status clg_adaptive_avg_pool2d(clg_context *ctx, const clg_tensor *x, int out_h, int out_w,
                                   clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "adaptive_avg_pool2d: out is NULL");
    *out = NULL;
    clg_status st = clg__check(ctx, x, "adaptive_avg_pool2d", "x");
    if (st != CLG_OK) return st;
    char s[64];
    if (x->ndim != 4)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "adaptive_avg_pool2d: x must be 4-D (N, C, H, W): got %s",
                         clg__shape_str(x, s, sizeof s));
    if (out_h < 1 || out_w < 1)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "adaptive_avg_pool2d: output size must be positive: got %dx%d", out_h, out_w);
    const adaptive_geom g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], out_h, out_w};
    /* The kernels index with int, and form (o + 1) * in and (i + 1) * out. */
    /* (checked: n * c * oh * ow can wrap a size_t, and oh + 1 overflows int at INT_MAX) */
    size_t outs;
    if (x->numel > INT_MAX || !clg__mul_size((size_t)g.n * (size_t)g.c, (size_t)g.oh, &outs) ||
        !clg__mul_size(outs, (size_t)g.ow, &outs) || outs > INT_MAX ||
        ((long long)g.oh + 1) * g.h > INT_MAX || ((long long)g.ow + 1) * g.w > INT_MAX ||
        ((long long)g.h + 1) * g.oh > INT_MAX || ((long long)g.w + 1) * g.ow > INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED, "adaptive_avg_pool2d: input %s to %dx%d exceeds the int index",
                         clg__shape_str(x, s, sizeof s), out_h, out_w);

    const int yshape[4] = {g.n, g.c, g.oh, g.ow};
    clg_tensor *y = NULL;
    st = clg__tensor_new(ctx, x->dtype, 4, yshape, &y); // (N, C, OH, OW)
    cl_kernel k;
    if (st == CLG_OK)
        st = clg__op_kernel(ctx, "ops/adaptive_pool2d", "adaptive_avg_pool2d_fwd", x->dtype, NULL, &k);
    if (st == CLG_OK) {
        cl_mem ym = clg__mem(y), xm = clg__mem(x);
        /* Each output element reads about ceil(H / OH) * ceil(W / OW) inputs. */
        const size_t per = (size_t)((g.h + g.oh - 1) / g.oh + 1) * (size_t)((g.w + g.ow - 1) / g.ow + 1);
        if (clg__cpu_style(ctx)) {
            const int rows = g.n * g.c * g.oh;
            st = CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, (size_t)g.ow * per, "adaptive_avg_pool2d", CLG_ARG(ym),
                                 CLG_ARG(xm), CLG_ARG(g.h), CLG_ARG(g.w), CLG_ARG(g.oh), CLG_ARG(g.ow),
                                 CLG_ARG(rows));
        } else {
            const int n = (int)y->numel;
            st = CLG_LAUNCH_ELEMS(ctx, k, y->numel, "adaptive_avg_pool2d", CLG_ARG(ym), CLG_ARG(xm),
                                  CLG_ARG(g.h), CLG_ARG(g.w), CLG_ARG(g.oh), CLG_ARG(g.ow), CLG_ARG(n));
        }
    }
    const clg_tensor *inputs[1] = {x};
    if (st == CLG_OK && clg__needs_grad(ctx, 1, inputs))
        st = clg__record(ctx, &adaptive_avg_pool2d_op, y, 1, inputs, &g, sizeof g, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}
