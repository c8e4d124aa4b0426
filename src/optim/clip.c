/* src/optim/clip.c - gradient clipping (torch.nn.utils.clip_grad_norm_ / clip_grad_value_,
 * 1.13): the total norm of every gradient as one device reduction (a run per work-item into a
 * partials buffer, then one fixed-order sum), the scale applied on the device from the device's
 * coefficient, one read of the norm at the end. Up to 16 gradients share each launch (the
 * multi-tensor kernels write the same partial sums in the same places, so the same bits).
 * Kernels: cl/optim/clip.cl. Tests: tests/optim/test_clip.c, tests/optim/test_multi.c.
 */
#include <limits.h>
#include <math.h>

#include "optim/optim.h"

/* A multi-tensor partial-sum launch has (g, n, chunk, items) per slot and partial, off, kind,
 * p shared; grad_scale_multi (g, n) per slot and coef, total, chunk shared. */
enum { PARTIALS_PER_TENSOR = 256, SLOT_ARGS = 4, SHARED_ARGS = 6 };

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

/* k of the *_k calls: -1 (what the device fits), 0 (per gradient), or 4, 8, 16. */
static bool valid_k(int k) { return k == -1 || k == 0 || k == 4 || k == 8 || k == 16; }

static size_t run_length(size_t numel) { return (numel + PARTIALS_PER_TENSOR - 1) / PARTIALS_PER_TENSOR; }

/* The runs (partial sums) of a gradient of numel elements, each *chunk long. */
static int run_count(size_t numel, int *chunk) {
    *chunk = (int)run_length(numel);
    return *chunk > 0 ? (int)((numel + (size_t)*chunk - 1) / (size_t)*chunk) : 0;
}

/* The next multi-tensor batch: up to k gradients of params[*i..n) in order, stopping before a
 * gradient whose buffer is already in the batch (those must be scaled one after the other)
 * and before the elements pass what an int index allows with room for a run. */
static size_t next_batch(clg_tensor *const *params, size_t n, size_t *i, int k, clg_tensor **gs,
                         size_t *total) {
    size_t count = 0;
    *total = 0;
    for (; *i < n && count < (size_t)k; (*i)++) {
        clg_tensor *g = clg_tensor_grad(params[*i]);
        if (!g) continue;
        bool shared = false;
        for (size_t j = 0; j < count; j++)
            shared = shared || gs[j]->buf == g->buf;
        if (count > 0 && (shared || *total + g->numel > (size_t)INT_MAX / 2)) break;
        gs[count++] = g;
        *total += g->numel;
    }
    return count;
}

clg_status clg_clip_grad_norm(clg_tensor *const *params, size_t n, double max_norm, double norm_type,
                              double *total_norm) {
    return clg__clip_grad_norm_k(params, n, max_norm, norm_type, total_norm, -1);
}

/* The (buffer, element count) arguments of k slots for a batch of c gradients: unused slots
 * repeat the first buffer with count 0. Returns how many arguments it wrote (2 k). */
static cl_uint grad_slot_args(clg_tensor *const *gs, size_t c, int k, cl_mem *gm, int *numel, clg_karg *args) {
    cl_uint na = 0;
    for (int j = 0; j < k; j++) {
        gm[j] = clg__mem(gs[(size_t)j < c ? j : 0]);
        numel[j] = (size_t)j < c ? (int)gs[j]->numel : 0;
        args[na++] = CLG_ARG(gm[j]);
        args[na++] = CLG_ARG(numel[j]);
    }
    return na;
}

clg_status clg__clip_grad_norm_k(clg_tensor *const *params, size_t n, double max_norm, double norm_type,
                                 double *total_norm, int k) {
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

    if (!valid_k(k)) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %d slots per launch", what, k);
    if (k < 0) k = clg__optim_mt_k(ctx, SLOT_ARGS, SHARED_ARGS);
    char opts[32];
    const char *mt = k > 0 ? clg__optim_mt_option(k, opts, sizeof opts) : NULL;
    cl_kernel kp, kf, ks;
    if ((st = clg__kernel_dt(ctx, "optim/clip", k > 0 ? "grad_norm_partial_multi" : "grad_norm_partial", dt,
                             mt, &kp)) ||
        (st = clg__kernel_dt(ctx, "optim/clip", "grad_norm_finish", dt, mt, &kf)) ||
        (st = clg__kernel_dt(ctx, "optim/clip", k > 0 ? "grad_scale_multi" : "grad_scale", dt, mt, &ks)))
        return st;
    const int phase = ctx->phase; /* the profiler counts clipping with the optimizer */
    ctx->phase = CLG_PHASE_OPTIMIZER;
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        const clg_tensor *g = clg_tensor_grad(params[i]);
        int chunk;
        if (g) count += run_count(g->numel, &chunk);
    }
    clg_tensor *partial = NULL, *out = NULL;
    const int two = 2;
    if ((st = clg__tensor_new(ctx, dt, 1, &count, &partial)) || (st = clg__tensor_new(ctx, dt, 1, &two, &out)))
        goto done;
    clg_real rp, rmax;
    const clg_karg p_arg = clg__real(dt, &rp, kind == 0 ? norm_type : 1.0);
    cl_mem pm = clg__mem(partial), om = clg__mem(out);
    int off = 0;
    for (size_t i = 0; k == 0 && i < n && st == CLG_OK; i++) { /* a launch per gradient */
        const clg_tensor *g = clg_tensor_grad(params[i]);
        if (!g) continue;
        int chunk;
        const int numel = (int)g->numel, items = run_count(g->numel, &chunk);
        cl_mem gm = clg__mem(g);
        st = CLG_LAUNCH1D(ctx, kp, (size_t)items, what, CLG_ARG(pm), CLG_ARG(off), CLG_ARG(gm), CLG_ARG(numel),
                          CLG_ARG(chunk), CLG_ARG(kind), p_arg);
        off += items;
    }
    clg_tensor *gs[CLG_OPTIM_MT_MAX];
    size_t total;
    for (size_t i = 0, c; k > 0 && st == CLG_OK && (c = next_batch(params, n, &i, k, gs, &total)) > 0;) {
        /* the same runs as a launch per gradient, written to the same places */
        cl_mem gm[CLG_OPTIM_MT_MAX];
        int numel[CLG_OPTIM_MT_MAX], chunk[CLG_OPTIM_MT_MAX], items[CLG_OPTIM_MT_MAX], all = 0;
        clg_karg args[CLG_OPTIM_MT_MAX * SLOT_ARGS + SHARED_ARGS];
        cl_uint na = 0;
        args[na++] = CLG_ARG(pm);
        args[na++] = CLG_ARG(off);
        for (int j = 0; j < k; j++) {
            gm[j] = clg__mem(gs[(size_t)j < c ? j : 0]);
            numel[j] = (size_t)j < c ? (int)gs[j]->numel : 0;
            items[j] = (size_t)j < c ? run_count(gs[j]->numel, &chunk[j]) : (chunk[j] = 0);
            all += items[j];
            args[na++] = CLG_ARG(gm[j]);
            args[na++] = CLG_ARG(numel[j]);
            args[na++] = CLG_ARG(chunk[j]);
            args[na++] = CLG_ARG(items[j]);
        }
        args[na++] = CLG_ARG(kind);
        args[na++] = p_arg;
        st = clg__launch(ctx, kp, 1, (size_t[]){(size_t)all}, NULL, args, na, what);
        off += all;
    }
    if (st == CLG_OK)
        st = CLG_LAUNCH1D(ctx, kf, 1, what, CLG_ARG(om), CLG_ARG(pm), CLG_ARG(count), CLG_ARG(kind), p_arg,
                          clg__real(dt, &rmax, max_norm));
    for (size_t i = 0; k == 0 && i < n && st == CLG_OK; i++) {
        clg_tensor *g = clg_tensor_grad(params[i]);
        if (!g) continue;
        const int numel = (int)g->numel;
        cl_mem gm = clg__mem(g);
        st = CLG_LAUNCH_ELEMS(ctx, ks, g->numel, what, CLG_ARG(gm), CLG_ARG(om), CLG_ARG(numel));
    }
    for (size_t i = 0, c; k > 0 && st == CLG_OK && (c = next_batch(params, n, &i, k, gs, &total)) > 0;) {
        cl_mem gm[CLG_OPTIM_MT_MAX];
        int numel[CLG_OPTIM_MT_MAX];
        clg_karg args[CLG_OPTIM_MT_MAX * 2 + 3];
        cl_uint na = grad_slot_args(gs, c, k, gm, numel, args);
        const int tot = (int)total;
        args[na++] = CLG_ARG(om);
        args[na++] = CLG_ARG(tot);
        st = clg__optim_launch_multi(ctx, ks, total, args, na, what);
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
    return clg__clip_grad_value_k(params, n, clip_value, -1);
}

clg_status clg__clip_grad_value_k(clg_tensor *const *params, size_t n, double clip_value, int k) {
    const char *what = "clip_grad_value";
    clg_context *ctx;
    clg_dtype dt = CLG_F32;
    size_t ng;
    clg_status st = collect(params, n, what, &ctx, &dt, &ng);
    if (st != CLG_OK || ng == 0) return st;
    if (!(clip_value >= 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: clip_value %g is not >= 0", what, clip_value);
    if (!valid_k(k)) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %d slots per launch", what, k);
    if (k < 0) k = clg__optim_mt_k(ctx, SLOT_ARGS, SHARED_ARGS);
    char opts[32];
    cl_kernel kc;
    if ((st = clg__kernel_dt(ctx, "optim/clip", k > 0 ? "grad_clamp_multi" : "grad_clamp", dt,
                             k > 0 ? clg__optim_mt_option(k, opts, sizeof opts) : NULL, &kc)))
        return st;
    clg_real lo, hi;
    for (size_t i = 0; k == 0 && i < n && st == CLG_OK; i++) {
        clg_tensor *g = clg_tensor_grad(params[i]);
        if (!g) continue;
        const int numel = (int)g->numel;
        cl_mem gm = clg__mem(g);
        st = CLG_LAUNCH_ELEMS(ctx, kc, g->numel, what, CLG_ARG(gm), clg__real(dt, &lo, -clip_value),
                              clg__real(dt, &hi, clip_value), CLG_ARG(numel));
    }
    clg_tensor *gs[CLG_OPTIM_MT_MAX];
    size_t total;
    for (size_t i = 0, c; k > 0 && st == CLG_OK && (c = next_batch(params, n, &i, k, gs, &total)) > 0;) {
        cl_mem gm[CLG_OPTIM_MT_MAX];
        int numel[CLG_OPTIM_MT_MAX];
        clg_karg args[CLG_OPTIM_MT_MAX * 2 + 4];
        cl_uint na = grad_slot_args(gs, c, k, gm, numel, args);
        const int tot = (int)total;
        args[na++] = clg__real(dt, &lo, -clip_value);
        args[na++] = clg__real(dt, &hi, clip_value);
        args[na++] = CLG_ARG(tot);
        st = clg__optim_launch_multi(ctx, kc, total, args, na, what);
    }
    return st;
}
