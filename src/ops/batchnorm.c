/* src/ops/batchnorm.c - batch_norm2d over (N, C, H, W): batch statistics and in-place
 * running-stat updates in training, running stats in evaluation, optional affine weight and
 * bias; graph recording and backward for x, weight and bias; synchronized over replicas
 * through a caller's sum (clg_sync_batch_norm2d); fused with a following ReLU
 * (clg_batch_norm2d_relu, clg_sync_batch_norm2d_relu). Kernels: cl/ops/batchnorm.cl.
 * Tests: tests/ops/test_batchnorm.c.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

/* What backward needs beyond the inputs and the saved mean/invstd. */
typedef struct bn_params {
    int training; /* the batch statistics depend on x: dx has the two extra terms */
    double count; /* values per channel behind the statistics (over every replica when synced) */
    clg_replica_sum sync; /* training's dx sums over the replicas when sync.sum is set */
    int relu;             /* fused ReLU: dy is masked by the saved output (saved[2]) */
} bn_params;


/* A per-channel tensor argument (weight, bias, running stats): NULL or (C) of x's dtype. */
static clg_status check_channel(clg_context *ctx, const clg_tensor *t, const clg_tensor *x,
                                const char *what) {
    if (!t) return CLG_OK;
    clg_status st = clg__check(ctx, t, "batch_norm2d", what);
    if (st != CLG_OK) return st;
    char sx[64], st_[64];
    if (t->numel != (size_t)x->shape[1] || t->ndim != 1)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "batch_norm2d: %s must be (%d) for x %s: got %s", what,
                         x->shape[1], clg__shape_str(x, sx, sizeof sx), clg__shape_str(t, st_, sizeof st_));
    if (t->dtype != x->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "batch_norm2d: %s is %s but x is %s", what,
                         clg_dtype_name(t->dtype), clg_dtype_name(x->dtype));
    return CLG_OK;
}

/* ---------------------------------------------------------------- synchronized statistics */

/* A small per-channel tensor's values as doubles on the host (waits), and back. */
static clg_status bn_to_doubles(clg_context *ctx, const clg_tensor *t, double *out) {
    if (t->dtype == CLG_F64) return clg_tensor_to_host(t, out, t->numel * sizeof *out);
    float *f = malloc(t->numel * sizeof *f);
    if (!f) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "batch_norm2d: out of host memory");
    clg_status st = clg_tensor_to_host(t, f, t->numel * sizeof *f);
    for (size_t i = 0; st == CLG_OK && i < t->numel; i++)
        out[i] = f[i];
    free(f);
    return st;
}

static clg_status bn_from_doubles(clg_context *ctx, clg_tensor *t, const double *in) {
    if (t->dtype == CLG_F64) return clg_tensor_write(t, in, t->numel * sizeof *in);
    float *f = malloc(t->numel * sizeof *f);
    if (!f) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "batch_norm2d: out of host memory");
    for (size_t i = 0; i < t->numel; i++)
        f[i] = (float)in[i];
    clg_status st = clg_tensor_write(t, f, t->numel * sizeof *f);
    free(f);
    return st;
}

/* Training synchronized over replicas: this replica's moments (count M, mean mu, squared
 * deviations q per channel) become (M, M mu, q + M mu^2), which sync sums in double; then
 * q = sum(q + M mu^2) - (sum M mu)^2 / M over the global batch. Doubles make that
 * subtraction safe for f32 data: it loses about 1e-16 (1 + mean^2 / var) of the variance.
 * bn_global_stats then writes mean, invstd and the running stats, identically on every
 * replica. The running stats move only in that last launch, after everything that can fail
 * on the host. *count gets the global count. */
static clg_status bn_sync_stats(clg_context *ctx, const clg_tensor *x, clg_tensor *mean, clg_tensor *invstd,
                                clg_tensor *running_mean, clg_tensor *running_var, clg_batch_norm2d_params p,
                                const clg_replica_sum *sync, double *count) {
    const clg_dtype dt = x->dtype;
    int N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    const int mshape[1] = {2 * C}, sshape[1] = {3 * C};
    clg_tensor *moments = NULL, *stats = NULL; // (2, C): mean, squared deviations; (3, C): see the .cl
    double *host = malloc((5 * (size_t)C + 1) * sizeof *host);
    double *sums = host, *local = host ? host + 2 * (size_t)C + 1 : NULL; /* (2C + 1), then (3, C) */
    clg_status st = host ? CLG_OK : clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "batch_norm2d: out of host memory");
    cl_kernel k_moments, k_global;
    if (st == CLG_OK) st = clg__tensor_new(ctx, dt, 1, mshape, &moments);
    if (st == CLG_OK) st = clg__tensor_new(ctx, dt, 1, sshape, &stats);
    if (st == CLG_OK) st = clg__op_kernel(ctx, "ops/batchnorm", "bn_moments", dt, NULL, &k_moments);
    if (st == CLG_OK) st = clg__kernel_dt(ctx, "ops/batchnorm", "bn_global_stats", dt, NULL, &k_global);
    const bool cpu = clg__cpu_style(ctx);
    size_t lsz = 1;
    if (st == CLG_OK && !cpu) st = clg__reduce_local_size(ctx, k_moments, "batch_norm2d", &lsz);
    cl_mem xm = clg__mem(x), mom = moments ? clg__mem(moments) : NULL;
    if (st == CLG_OK && cpu)
        st = CLG_LAUNCH_ND(ctx, k_moments, 1, ((size_t[]){(size_t)C}), ((size_t[]){1}), "batch_norm2d", CLG_ARG(xm),
                           CLG_ARG(mom), CLG_ARG(N), CLG_ARG(C), CLG_ARG(HW));
    else if (st == CLG_OK)
        st = CLG_LAUNCH_ND(ctx, k_moments, 1, ((size_t[]){(size_t)C * lsz}), ((size_t[]){lsz}), "batch_norm2d",
                           CLG_ARG(xm), CLG_ARG(mom), CLG_ARG(N), CLG_ARG(C), CLG_ARG(HW),
                           CLG_LOCAL(lsz * clg_dtype_size(dt)));
    if (st == CLG_OK) st = bn_to_doubles(ctx, moments, local);
    if (st == CLG_OK) {
        const double m = (double)N * HW;
        sums[0] = m;
        for (int c = 0; c < C; c++) {
            const double mu = local[c];
            sums[1 + c] = m * mu;
            sums[1 + C + c] = local[C + c] + m * mu * mu;
        }
        st = sync->sum(sync->user, ctx, sums, 2 * C + 1);
    }
    const double m = sums ? sums[0] : 0;
    if (st == CLG_OK && !(m >= 2 && m <= 0x1p53))
        st = clg__fail(ctx, CLG_SHAPE_MISMATCH,
                       "batch_norm2d: synchronized training needs more than 1 value per channel over the "
                       "replicas: they hold %g",
                       m);
    if (st == CLG_OK) {
        for (int c = 0; c < C; c++) {
            const double mu = sums[1 + c] / m;
            double q = sums[1 + C + c] - sums[1 + c] * mu;
            if (q < 0) q = 0; /* rounding below an exact 0; a NaN stays NaN */
            local[c] = mu;
            local[C + c] = q / m;
            local[2 * C + c] = q / (m - 1);
        }
        st = bn_from_doubles(ctx, stats, local);
    }
    if (st == CLG_OK) {
        int update = running_mean != NULL;
        cl_mem sm = clg__mem(stats), mm = clg__mem(mean), im = clg__mem(invstd);
        cl_mem rm = update ? clg__mem(running_mean) : mm; /* placeholders are never used */
        cl_mem rv = update ? clg__mem(running_var) : mm;
        clg_real r_mom, r_eps;
        st = CLG_LAUNCH_ELEMS(ctx, k_global, (size_t)C, "batch_norm2d", CLG_ARG(sm), CLG_ARG(mm), CLG_ARG(im),
                              CLG_ARG(rm), CLG_ARG(rv), CLG_ARG(update), clg__real(dt, &r_mom, p.momentum),
                              clg__real(dt, &r_eps, p.eps), CLG_ARG(C));
    }
    if (st == CLG_OK) *count = m;
    clg_tensor_free(moments);
    clg_tensor_free(stats);
    free(host);
    return st;
}

/* Backward synchronized over replicas: *g_dy and *g_dyx (new, C each) get sum_dy and sum_dyx
 * summed over every replica (in double, by sync), for dx; dweight and dbias keep the local ones. */
static clg_status bn_sync_sums(clg_context *ctx, clg_replica_sum sync, const clg_tensor *sum_dy,
                               const clg_tensor *sum_dyx, clg_tensor **g_dy, clg_tensor **g_dyx) {
    const int C = (int)sum_dy->numel;
    double *v = malloc(2 * (size_t)C * sizeof *v); // (2, C)
    clg_status st = v ? CLG_OK : clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "batch_norm2d: out of host memory");
    if (st == CLG_OK) st = bn_to_doubles(ctx, sum_dy, v);
    if (st == CLG_OK) st = bn_to_doubles(ctx, sum_dyx, v + C);
    if (st == CLG_OK) st = sync.sum(sync.user, ctx, v, 2 * C);
    if (st == CLG_OK) st = clg__tensor_new(ctx, sum_dy->dtype, 1, sum_dy->shape, g_dy);
    if (st == CLG_OK) st = clg__tensor_new(ctx, sum_dy->dtype, 1, sum_dy->shape, g_dyx);
    if (st == CLG_OK) st = bn_from_doubles(ctx, *g_dy, v);
    if (st == CLG_OK) st = bn_from_doubles(ctx, *g_dyx, v + C);
    free(v);
    return st;
}

/* ---------------------------------------------------------------- backward */

static clg_status batch_norm2d_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                        clg_tensor *const *dx, const double *beta) {
    const clg_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    const clg_tensor *mean = node->saved[0], *invstd = node->saved[1]; // (C) each
    bn_params prm;
    memcpy(&prm, node->params, sizeof prm);
    const clg_tensor *z = prm.relu ? node->saved[2] : x; /* x: a placeholder, never read */
    clg_tensor *dxx = dx[0], *dw = w ? dx[1] : NULL, *db = b ? dx[2] : NULL;
    if (!dxx && !dw && !db) return CLG_OK;
    if (!x || !mean || !invstd || !z)
        return clg__fail(ctx, CLG_INVALID_STATE, "batch_norm2d backward: the saved statistics are gone");
    clg_status st = clg__check_same(ctx, dy, x, "batch_norm2d backward", "dy and x");
    if (st == CLG_OK && dxx) st = clg__check_same(ctx, dxx, x, "batch_norm2d backward", "dx and x");
    if (st == CLG_OK && dw) st = clg__check_same(ctx, dw, w, "batch_norm2d backward", "dweight and weight");
    if (st == CLG_OK && db) st = clg__check_same(ctx, db, b, "batch_norm2d backward", "dbias and bias");
    if (st != CLG_OK) return st;

    const clg_dtype dt = x->dtype;
    const bool cpu = clg__cpu_style(ctx);
    int N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    cl_mem xm = clg__mem(x), dym = clg__mem(dy), zm = clg__mem(z);
    cl_mem mm = clg__mem(mean), im = clg__mem(invstd);
    const char *what = prm.relu ? "batch_norm2d_relu backward" : "batch_norm2d backward";

    /* The sums are dbias and dweight; training's dx needs them too. */
    clg_tensor *sum_dy = NULL, *sum_dyx = NULL; // (C) each
    const bool need_sums = dw || db || (dxx && prm.training);
    if (need_sums) {
        const int cshape[1] = {C};
        cl_kernel k;
        st = clg__tensor_new(ctx, dt, 1, cshape, &sum_dy);
        if (st == CLG_OK) st = clg__tensor_new(ctx, dt, 1, cshape, &sum_dyx);
        if (st == CLG_OK)
            st = clg__op_kernel(ctx, "ops/batchnorm", prm.relu ? "bn_bwd_reduce_relu" : "bn_bwd_reduce", dt,
                                NULL, &k);
        cl_mem sa = clg__mem(sum_dy), sb = clg__mem(sum_dyx);
        if (st == CLG_OK && cpu && prm.relu) { /* one work-item per channel, no local scratch */
            st = CLG_LAUNCH_ND(ctx, k, 1, ((size_t[]){(size_t)C}), ((size_t[]){1}), what, CLG_ARG(sa),
                               CLG_ARG(sb), CLG_ARG(dym), CLG_ARG(xm), CLG_ARG(zm), CLG_ARG(mm), CLG_ARG(im),
                               CLG_ARG(N), CLG_ARG(C), CLG_ARG(HW));
        } else if (st == CLG_OK && cpu) {
            st = CLG_LAUNCH_ND(ctx, k, 1, ((size_t[]){(size_t)C}), ((size_t[]){1}), what, CLG_ARG(sa),
                               CLG_ARG(sb), CLG_ARG(dym), CLG_ARG(xm), CLG_ARG(mm), CLG_ARG(im), CLG_ARG(N),
                               CLG_ARG(C), CLG_ARG(HW));
        } else if (st == CLG_OK) { /* a work-group per channel, a tree in local scratch */
            size_t lsz = 1;
            st = clg__reduce_local_size(ctx, k, what, &lsz);
            if (st == CLG_OK && prm.relu)
                st = CLG_LAUNCH_ND(ctx, k, 1, ((size_t[]){(size_t)C * lsz}), ((size_t[]){lsz}), what,
                                   CLG_ARG(sa), CLG_ARG(sb), CLG_ARG(dym), CLG_ARG(xm), CLG_ARG(zm),
                                   CLG_ARG(mm), CLG_ARG(im), CLG_ARG(N), CLG_ARG(C), CLG_ARG(HW),
                                   CLG_LOCAL(lsz * clg_dtype_size(dt)));
            else if (st == CLG_OK)
                st = CLG_LAUNCH_ND(ctx, k, 1, ((size_t[]){(size_t)C * lsz}), ((size_t[]){lsz}), what,
                                   CLG_ARG(sa), CLG_ARG(sb), CLG_ARG(dym), CLG_ARG(xm), CLG_ARG(mm),
                                   CLG_ARG(im), CLG_ARG(N), CLG_ARG(C), CLG_ARG(HW),
                                   CLG_LOCAL(lsz * clg_dtype_size(dt)));
        }
    }
    /* dx sees the sums over every replica when synchronized (freed below when they are new). */
    clg_tensor *dx_sum_dy = sum_dy, *dx_sum_dyx = sum_dyx; // (C) each
    if (st == CLG_OK && dxx && prm.training && prm.sync.sum) {
        dx_sum_dy = dx_sum_dyx = NULL;
        st = bn_sync_sums(ctx, prm.sync, sum_dy, sum_dyx, &dx_sum_dy, &dx_sum_dyx);
    }
    /* Inputs in order, one write at a time (weight and bias may be one tensor). */
    if (st == CLG_OK && dxx) {
        cl_kernel k;
        st = clg__op_kernel(ctx, "ops/batchnorm", prm.relu ? "bn_bwd_dx_relu" : "bn_bwd_dx", dt, NULL, &k);
        cl_mem dxm = clg__mem(dxx);
        cl_mem wm = w ? clg__mem(w) : mm; /* placeholders are never used */
        cl_mem sa = dx_sum_dy ? clg__mem(dx_sum_dy) : mm;
        cl_mem sb = dx_sum_dyx ? clg__mem(dx_sum_dyx) : mm;
        int has_w = w != NULL, n = (int)x->numel, planes = N * C;
        clg_real rb, rm;
        if (st == CLG_OK && cpu && prm.relu) /* per (n, c) plane */
            st = CLG_LAUNCH_ROWS(ctx, k, (size_t)planes, (size_t)HW, what, CLG_ARG(dxm), CLG_ARG(dym),
                                 CLG_ARG(xm), CLG_ARG(zm), CLG_ARG(mm), CLG_ARG(im), CLG_ARG(wm), CLG_ARG(sa),
                                 CLG_ARG(sb), CLG_ARG(has_w), CLG_ARG(prm.training),
                                 clg__real(dt, &rm, prm.count), CLG_ARG(C), CLG_ARG(HW),
                                 clg__real(dt, &rb, beta[0]), CLG_ARG(planes));
        else if (st == CLG_OK && cpu)
            st = CLG_LAUNCH_ROWS(ctx, k, (size_t)planes, (size_t)HW, what, CLG_ARG(dxm), CLG_ARG(dym),
                                 CLG_ARG(xm), CLG_ARG(mm), CLG_ARG(im), CLG_ARG(wm), CLG_ARG(sa), CLG_ARG(sb),
                                 CLG_ARG(has_w), CLG_ARG(prm.training), clg__real(dt, &rm, prm.count),
                                 CLG_ARG(C), CLG_ARG(HW), clg__real(dt, &rb, beta[0]), CLG_ARG(planes));
        else if (st == CLG_OK && prm.relu) /* per element */
            st =
                CLG_LAUNCH_ELEMS(ctx, k, x->numel, what, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(xm), CLG_ARG(zm),
                                 CLG_ARG(mm), CLG_ARG(im), CLG_ARG(wm), CLG_ARG(sa), CLG_ARG(sb),
                                 CLG_ARG(has_w), CLG_ARG(prm.training), clg__real(dt, &rm, prm.count),
                                 CLG_ARG(C), CLG_ARG(HW), clg__real(dt, &rb, beta[0]), CLG_ARG(n));
        else if (st == CLG_OK)
            st = CLG_LAUNCH_ELEMS(ctx, k, x->numel, what, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(xm),
                                  CLG_ARG(mm), CLG_ARG(im), CLG_ARG(wm), CLG_ARG(sa), CLG_ARG(sb),
                                  CLG_ARG(has_w), CLG_ARG(prm.training), clg__real(dt, &rm, prm.count),
                                  CLG_ARG(C), CLG_ARG(HW), clg__real(dt, &rb, beta[0]), CLG_ARG(n));
    }
    if (st == CLG_OK && dw) st = clg__axpby(ctx, 1.0, sum_dyx, beta[1], dw);
    if (st == CLG_OK && db) st = clg__axpby(ctx, 1.0, sum_dy, beta[2], db);
    if (dx_sum_dy != sum_dy) clg_tensor_free(dx_sum_dy);
    if (dx_sum_dyx != sum_dyx) clg_tensor_free(dx_sum_dyx);
    clg_tensor_free(sum_dy);
    clg_tensor_free(sum_dyx);
    return st;
}

static const clg_op_def batch_norm2d_op = {"batch_norm2d", batch_norm2d_backward};
static const clg_op_def batch_norm2d_relu_op = {"batch_norm2d_relu", batch_norm2d_backward};

/* ---------------------------------------------------------------- forward */

/* Validates every argument before anything runs, so bad input leaves the running stats alone. */
static clg_status bn_validate(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                              const clg_tensor *bias, const clg_tensor *running_mean,
                              const clg_tensor *running_var, bool training, bool synced, double momentum,
                              double eps) {
    clg_status st = clg__check(ctx, x, "batch_norm2d", "x");
    if (st != CLG_OK) return st;
    char s[64];
    if (x->ndim != 4)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "batch_norm2d: x must be 4-D (N, C, H, W): got %s",
                         clg__shape_str(x, s, sizeof s));
    if (x->numel > INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED, "batch_norm2d: x %s has more than INT_MAX elements",
                         clg__shape_str(x, s, sizeof s));
    if ((st = check_channel(ctx, weight, x, "weight")) != CLG_OK) return st;
    if ((st = check_channel(ctx, bias, x, "bias")) != CLG_OK) return st;
    if ((st = check_channel(ctx, running_mean, x, "running_mean")) != CLG_OK) return st;
    if ((st = check_channel(ctx, running_var, x, "running_var")) != CLG_OK) return st;
    if (!running_mean != !running_var)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "batch_norm2d: running_mean and running_var go together (both or neither)");
    if (!training && !running_mean)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "batch_norm2d: evaluation needs running_mean and running_var");
    if (running_mean == running_var && running_mean)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "batch_norm2d: running_mean and running_var are the same tensor");
    if (!(eps >= 0) || !isfinite(eps))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "batch_norm2d: eps must be >= 0: got %g", eps);
    if (!(momentum >= 0 && momentum <= 1))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "batch_norm2d: momentum must be in [0, 1]: got %g",
                         momentum);
    /* The sum over replicas takes 2C + 1 values in an int. */
    if (synced && x->shape[1] > (INT_MAX - 1) / 2)
        return clg__fail(ctx, CLG_UNSUPPORTED, "batch_norm2d: %d channels are too many to synchronize",
                         x->shape[1]);
    /* One value per channel has no variance (and the unbiased one divides by M - 1); when
     * synchronized, the count over every replica is checked once it is known. */
    if (training && !synced && (size_t)x->shape[0] * x->shape[2] * x->shape[3] < 2)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "batch_norm2d: training needs more than 1 value per channel: x is %s",
                         clg__shape_str(x, s, sizeof s));
    return CLG_OK;
}

clg_batch_norm2d_params clg_batch_norm2d_default_params(void) {
    return (clg_batch_norm2d_params){.training = true, .momentum = 0.1, .eps = 1e-5};
}

clg_status clg_batch_norm2d(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                            const clg_tensor *bias, clg_tensor *running_mean, clg_tensor *running_var,
                            clg_batch_norm2d_params p, clg_tensor **out) {
    return clg_sync_batch_norm2d(ctx, x, weight, bias, running_mean, running_var, p, NULL, out);
}

/* Both ops: batch_norm2d, and with relu max(0, y) written in the same pass. */
static clg_status bn_forward(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                             const clg_tensor *bias, clg_tensor *running_mean, clg_tensor *running_var,
                             clg_batch_norm2d_params p, const clg_replica_sum *sync, bool relu,
                             clg_tensor **out) {
    const bool training = p.training;
    const char *what = relu ? "batch_norm2d_relu" : "batch_norm2d"; /* names the launches in profiles */
    const double momentum = p.momentum, eps = p.eps;
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "batch_norm2d: out is NULL");
    *out = NULL;
    /* Evaluation never communicates: the running stats are the same on every replica. */
    const bool synced = training && sync && sync->sum;
    clg_status st = bn_validate(ctx, x, weight, bias, running_mean, running_var, training, synced, momentum, eps);
    if (st != CLG_OK) return st;

    const clg_dtype dt = x->dtype;
    int N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    const int cshape[1] = {C};
    clg_tensor *y = NULL, *mean = NULL, *invstd = NULL; // (N, C, H, W), (C), (C)
    st = clg__tensor_new(ctx, dt, 4, x->shape, &y);
    if (st == CLG_OK) st = clg__tensor_new(ctx, dt, 1, cshape, &mean);
    if (st == CLG_OK) st = clg__tensor_new(ctx, dt, 1, cshape, &invstd);
    /* Both kernels first: once the statistics kernel ran, the running stats have moved. CPU
     * style takes sequential per-channel sums and per-plane normalisation (see the .cl). */
    const bool cpu = clg__cpu_style(ctx);
    cl_kernel k_stats, k_norm;
    if (st == CLG_OK && training && !synced)
        st = clg__op_kernel(ctx, "ops/batchnorm", "bn_stats", dt, NULL, &k_stats);
    if (st == CLG_OK && !training) st = clg__kernel_dt(ctx, "ops/batchnorm", "bn_eval_stats", dt, NULL, &k_stats);
    if (st == CLG_OK)
        st = clg__op_kernel(ctx, "ops/batchnorm", relu ? "bn_normalize_relu" : "bn_normalize", dt, NULL,
                            &k_norm);
    size_t lsz = 1;
    if (st == CLG_OK && training && !synced && !cpu)
        st = clg__reduce_local_size(ctx, k_stats, "batch_norm2d", &lsz);

    cl_mem xm = clg__mem(x);
    cl_mem mm = mean ? clg__mem(mean) : NULL, im = invstd ? clg__mem(invstd) : NULL;
    clg_real r_mom, r_eps;
    double count = (double)N * HW;
    if (st == CLG_OK && synced) {
        st = bn_sync_stats(ctx, x, mean, invstd, running_mean, running_var, p, sync, &count);
    } else if (st == CLG_OK && training) {
        /* Without running stats nothing is updated; mean stands in as their argument. */
        int update = running_mean != NULL;
        cl_mem rm = update ? clg__mem(running_mean) : mm;
        cl_mem rv = update ? clg__mem(running_var) : mm;
        if (cpu) /* one work-item per channel, no local scratch */
            st = CLG_LAUNCH_ND(ctx, k_stats, 1, ((size_t[]){(size_t)C}), ((size_t[]){1}), what, CLG_ARG(xm),
                               CLG_ARG(mm), CLG_ARG(im), CLG_ARG(rm), CLG_ARG(rv), CLG_ARG(update),
                               clg__real(dt, &r_mom, momentum), clg__real(dt, &r_eps, eps), CLG_ARG(N),
                               CLG_ARG(C), CLG_ARG(HW));
        else /* a work-group per channel, a tree in local scratch */
            st = CLG_LAUNCH_ND(ctx, k_stats, 1, ((size_t[]){(size_t)C * lsz}), ((size_t[]){lsz}), what,
                               CLG_ARG(xm), CLG_ARG(mm), CLG_ARG(im), CLG_ARG(rm), CLG_ARG(rv),
                               CLG_ARG(update), clg__real(dt, &r_mom, momentum), clg__real(dt, &r_eps, eps),
                               CLG_ARG(N), CLG_ARG(C), CLG_ARG(HW), CLG_LOCAL(lsz * clg_dtype_size(dt)));
    } else if (st == CLG_OK) {
        cl_mem rm = clg__mem(running_mean), rv = clg__mem(running_var);
        st = CLG_LAUNCH_ELEMS(ctx, k_stats, (size_t)C, what, CLG_ARG(mm), CLG_ARG(im), CLG_ARG(rm),
                              CLG_ARG(rv), clg__real(dt, &r_eps, eps), CLG_ARG(C));
    }
    if (st == CLG_OK) {
        cl_mem ym = clg__mem(y);
        cl_mem wm = weight ? clg__mem(weight) : mm; /* placeholders are never used */
        cl_mem bm = bias ? clg__mem(bias) : mm;
        int has_w = weight != NULL, has_b = bias != NULL, n = (int)x->numel, planes = N * C;
        if (cpu) /* per (n, c) plane */
            st = CLG_LAUNCH_ROWS(ctx, k_norm, (size_t)planes, (size_t)HW, what, CLG_ARG(ym), CLG_ARG(xm),
                                 CLG_ARG(mm), CLG_ARG(im), CLG_ARG(wm), CLG_ARG(bm), CLG_ARG(has_w),
                                 CLG_ARG(has_b), CLG_ARG(C), CLG_ARG(HW), CLG_ARG(planes));
        else /* per element */
            st = CLG_LAUNCH_ELEMS(ctx, k_norm, x->numel, what, CLG_ARG(ym), CLG_ARG(xm), CLG_ARG(mm),
                                  CLG_ARG(im), CLG_ARG(wm), CLG_ARG(bm), CLG_ARG(has_w), CLG_ARG(has_b),
                                  CLG_ARG(C), CLG_ARG(HW), CLG_ARG(n));
    }

    /* Running stats are state, not inputs: gradients flow to x, weight and bias only. */
    const clg_tensor *inputs[3] = {x, weight, bias};
    const clg_tensor *present[3];
    int n_present = 0;
    for (int i = 0; i < 3; ++i)
        if (inputs[i]) present[n_present++] = inputs[i];
    if (st == CLG_OK && clg__needs_grad(ctx, n_present, present)) {
        bn_params prm = {training ? 1 : 0, count, synced ? *sync : (clg_replica_sum){0}, relu ? 1 : 0};
        clg_node *node = NULL;
        st = clg__record(ctx, relu ? &batch_norm2d_relu_op : &batch_norm2d_op, y, 3, inputs, &prm, sizeof prm,
                         &node);
        if (st == CLG_OK && node) {
            clg__save(node, 0, mean);
            clg__save(node, 1, invstd);
        }
        /* The output is the ReLU mask's source (a view: the node does not keep itself alive). */
        if (st == CLG_OK && node && relu) st = clg__save_output(node, 2, y);
    }
    clg_tensor_free(mean); /* the node holds its own references */
    clg_tensor_free(invstd);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_sync_batch_norm2d(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                                 const clg_tensor *bias, clg_tensor *running_mean, clg_tensor *running_var,
                                 clg_batch_norm2d_params p, const clg_replica_sum *sync, clg_tensor **out) {
    return bn_forward(ctx, x, weight, bias, running_mean, running_var, p, sync, false, out);
}

clg_status clg_batch_norm2d_relu(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                                 const clg_tensor *bias, clg_tensor *running_mean, clg_tensor *running_var,
                                 clg_batch_norm2d_params p, clg_tensor **out) {
    return bn_forward(ctx, x, weight, bias, running_mean, running_var, p, NULL, true, out);
}

clg_status clg_sync_batch_norm2d_relu(clg_context *ctx, const clg_tensor *x, const clg_tensor *weight,
                                      const clg_tensor *bias, clg_tensor *running_mean,
                                      clg_tensor *running_var, clg_batch_norm2d_params p,
                                      const clg_replica_sum *sync, clg_tensor **out) {
    return bn_forward(ctx, x, weight, bias, running_mean, running_var, p, sync, true, out);
}
