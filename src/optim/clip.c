/* src/optim/clip.c - gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_,
 * 1.13): the total norm of every gradient as one device reduction (a run per work-item into a
 * partials buffer, then one fixed-order sum), the scale applied on the device from the device's
 * coefficient, one read of the norm at the end. Kernels: cl/optim/clip.cl.
 * Tests: tests/optim/test_clip.c.
 */
#include <limits.h>
#include <math.h>

#include "optim/optim.h"

enum { PARTIALS_PER_TENSOR = 256 };

/* The gradients of params that have one: all of one context and dtype. */
static clg_status collect(clg_tensor *const *params, size_t n, const char *what, clg_context **ctx,
                          clg_dtype *dt, size_t *with_grad) {
    *ctx = NULL;
    *with_grad = 0;
    if (!params && n > 0) return CLG_INVALID_ARGUMENT;
    for (size_t i = 0; i < n; i++) {
        if (!params[i]) {
            if (*ctx) return clg__fail(*ctx, CLG_INVALID_ARGUMENT, "%s: params[%zu] is NULL", what, i);
            return CLG_INVALID_ARGUMENT;
        }
        if (!*ctx) *ctx = params[i]->ctx;
        if (params[i]->ctx != *ctx)
            return clg__fail(*ctx, CLG_INVALID_ARGUMENT, "%s: params[%zu] belongs to another context", what, i);
        const clg_tensor *g = clg_tensor_grad(params[i]);
        if (!g) continue;
        if (*with_grad > 0 && g->dtype != *dt)
            return clg__fail(*ctx, CLG_INVALID_ARGUMENT, "%s: gradients of mixed dtypes (params[%zu] is %s)", what,
                             i, clg_dtype_name(g->dtype));
        if (g->numel > (size_t)INT_MAX)
            return clg__fail(*ctx, CLG_UNSUPPORTED, "%s: params[%zu]'s gradient has %zu elements, past int", what,
                             i, g->numel);
        *dt = g->dtype;
        (*with_grad)++;
    }
    return CLG_OK;
}

static size_t run_length(size_t numel) { return (numel + PARTIALS_PER_TENSOR - 1) / PARTIALS_PER_TENSOR; }

clg_status clg_clip_grad_norm(clg_tensor *const *params, size_t n, double max_norm, double norm_type,
                              double *total_norm) {
    const char *what = "clip_grad_norm";
    clg_context *ctx;
    clg_dtype dt = CLG_F32;
    size_t ng;
    clg_status st = collect(params, n, what, &ctx, &dt, &ng);
    if (st != CLG_OK) return st;
    if (total_norm) *total_norm = 0.0;
    if (ctx && !(max_norm >= 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: max_norm %g is not >= 0", what, max_norm);
    if (ctx && !(norm_type > 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: norm_type %g is not > 0 (or INFINITY)", what, norm_type);
    if (ng == 0) return CLG_OK; /* PyTorch: tensor(0.) */
    const int kind = isinf(norm_type) ? 3 : norm_type == 2.0 ? 2 : norm_type == 1.0 ? 1 : 0;

    cl_kernel kp, kf, ks;
    if ((st = clg__kernel_dt(ctx, "optim/clip", "grad_norm_partial", dt, NULL, &kp)) ||
        (st = clg__kernel_dt(ctx, "optim/clip", "grad_norm_finish", dt, NULL, &kf)) ||
        (st = clg__kernel_dt(ctx, "optim/clip", "grad_scale", dt, NULL, &ks)))
        return st;
    const int phase = ctx->phase; /* the profiler counts clipping with the optimizer */
    ctx->phase = CLG_PHASE_OPTIMIZER;
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        const clg_tensor *g = clg_tensor_grad(params[i]);
        if (g) count += (int)((g->numel + run_length(g->numel) - 1) / run_length(g->numel));
    }
    clg_tensor *partial = NULL, *out = NULL;
    const int two = 2;
    if ((st = clg__tensor_new(ctx, dt, 1, &count, &partial)) || (st = clg__tensor_new(ctx, dt, 1, &two, &out)))
        goto done;
    clg_real rp, rmax;
    const clg_karg p_arg = clg__real(dt, &rp, kind == 0 ? norm_type : 1.0);
    cl_mem pm = clg__mem(partial), om = clg__mem(out);
    int off = 0;
    for (size_t i = 0; i < n && st == CLG_OK; i++) {
        const clg_tensor *g = clg_tensor_grad(params[i]);
        if (!g) continue;
        const int numel = (int)g->numel, chunk = (int)run_length(g->numel);
        const int items = (numel + chunk - 1) / chunk;
        cl_mem gm = clg__mem(g);
        st = CLG_LAUNCH1D(ctx, kp, (size_t)items, what, CLG_ARG(pm), CLG_ARG(off), CLG_ARG(gm), CLG_ARG(numel),
                          CLG_ARG(chunk), CLG_ARG(kind), p_arg);
        off += items;
    }
    if (st == CLG_OK)
        st = CLG_LAUNCH1D(ctx, kf, 1, what, CLG_ARG(om), CLG_ARG(pm), CLG_ARG(count), CLG_ARG(kind), p_arg,
                          clg__real(dt, &rmax, max_norm));
    for (size_t i = 0; i < n && st == CLG_OK; i++) {
        clg_tensor *g = clg_tensor_grad(params[i]);
        if (!g) continue;
        const int numel = (int)g->numel;
        cl_mem gm = clg__mem(g);
        st = CLG_LAUNCH_ELEMS(ctx, ks, g->numel, what, CLG_ARG(gm), CLG_ARG(om), CLG_ARG(numel));
    }
    if (st == CLG_OK && total_norm) {
        double host[2];
        float hostf[2];
        st = dt == CLG_F64 ? clg_tensor_to_host(out, host, sizeof host) : clg_tensor_to_host(out, hostf, sizeof hostf);
        if (st == CLG_OK) *total_norm = dt == CLG_F64 ? host[0] : (double)hostf[0];
    }
done:
    ctx->phase = phase;
    clg_tensor_free(partial);
    clg_tensor_free(out);
    return st;
}

clg_status clg_clip_grad_value(clg_tensor *const *params, size_t n, double clip_value) {
    const char *what = "clip_grad_value";
    clg_context *ctx;
    clg_dtype dt = CLG_F32;
    size_t ng;
    clg_status st = collect(params, n, what, &ctx, &dt, &ng);
    if (st != CLG_OK || ng == 0) return st;
    if (!(clip_value >= 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: clip_value %g is not >= 0", what, clip_value);
    cl_kernel k;
    if ((st = clg__kernel_dt(ctx, "optim/clip", "grad_clamp", dt, NULL, &k))) return st;
    clg_real lo, hi;
    for (size_t i = 0; i < n && st == CLG_OK; i++) {
        clg_tensor *g = clg_tensor_grad(params[i]);
        if (!g) continue;
        const int numel = (int)g->numel;
        cl_mem gm = clg__mem(g);
        st = CLG_LAUNCH_ELEMS(ctx, k, g->numel, what, CLG_ARG(gm), clg__real(dt, &lo, -clip_value),
                              clg__real(dt, &hi, clip_value), CLG_ARG(numel));
    }
    return st;
}
