/* src/optim/multi.c - the multi-tensor optimizer step (PyTorch's foreach / multi_tensor_apply):
 * one launch updates up to 16 parameters, each passed as its own kernel arguments (no flat
 * copy), so a step costs a launch or two instead of one per parameter; on PoCL each launch
 * costs tens of microseconds of host and work-distribution time. The per-element arithmetic is
 * the single-tensor kernel's own function (cl/optim/multi.h), so results are the same bits.
 * Tests: tests/optim/test_multi.c.
 */
#include <limits.h>
#include <stdio.h>

#include "optim/optim.h"

int clg__optim_mt_k(clg_context *ctx, size_t slot_args, size_t shared_args) {
    size_t max_bytes = 0;
    /* 1024 bytes is the least a device may report; assume it when the query fails. */
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_PARAMETER_SIZE, sizeof max_bytes, &max_bytes, NULL) !=
        CL_SUCCESS)
        max_bytes = 1024;
    for (int k = CLG_OPTIM_MT_MAX; k >= 4; k /= 2)
        if (((size_t)k * slot_args + shared_args) * 8 <= max_bytes) return k;
    return 0;
}

const char *clg__optim_mt_option(int k, char *buf, size_t len) {
    snprintf(buf, len, "-DMT_K=%d", k);
    return buf;
}

clg_status clg__optim_launch_multi(clg_context *ctx, cl_kernel k, size_t total, clg_karg *args, cl_uint nargs,
                                   const char *what) {
    if (total == 0) return CLG_OK;
    int chunk = (int)clg__elems_chunk(ctx, total);
    args[nargs] = CLG_ARG(chunk); /* the caller leaves room for it */
    size_t global = (total + (size_t)chunk - 1) / (size_t)chunk, one = 1;
    return clg__launch(ctx, k, 1, &global, chunk > 1 ? &one : NULL, args, nargs + 1, what);
}

/* A batch's total stays far from INT_MAX: the kernel adds a chunk to an int index. */
#define BATCH_MAX_ELEMS ((size_t)INT_MAX / 2)

/* Whether a parameter or gradient buffer of t (param p, gradient g) is one of the batch's:
 * parameters that share storage must be updated one after the other, as the per-tensor
 * path does, not by one launch at once. */
static bool shares_buffer(const clg_optimizer *opt, const size_t *idx, const clg_tensor *const *gs,
                          size_t count, const clg_tensor *p, const clg_tensor *g) {
    for (size_t j = 0; j < count; j++) {
        const clg_buffer *bp = opt->params[idx[j]].param->buf, *bg = gs[j]->buf;
        if (p->buf == bp || p->buf == bg || g->buf == bp || g->buf == bg) return true;
    }
    return false;
}

static clg_status flush(clg_optimizer *opt, const size_t *idx, const clg_tensor *const *gs, size_t count) {
    if (count == 0) return CLG_OK;
    clg_status st = opt->kind->step_many(opt, idx, gs, count);
    if (st == CLG_OK)
        for (size_t j = 0; j < count; j++)
            opt->params[idx[j]].steps++;
    return st;
}

clg_status clg__optimizer_step_multi(clg_optimizer *opt) {
    size_t idx[CLG_OPTIM_MT_MAX];
    const clg_tensor *gs[CLG_OPTIM_MT_MAX];
    size_t count = 0, total = 0;
    const size_t k = (size_t)opt->mt_k;
    clg_status st = CLG_OK;
    for (size_t i = 0; i < opt->n && st == CLG_OK; i++) {
        const clg_tensor *g = clg_tensor_grad(opt->params[i].param);
        if (!g) continue; /* no gradient: PyTorch leaves the parameter and its state alone */
        const clg_tensor *p = opt->params[i].param;
        if (p->numel > BATCH_MAX_ELEMS) { /* alone, through the per-tensor kernel */
            if ((st = flush(opt, idx, gs, count)) != CLG_OK) break;
            count = total = 0;
            st = opt->kind->step(opt, i, g);
            if (st == CLG_OK) opt->params[i].steps++;
            continue;
        }
        if (count > 0 && (count == k || p->dtype != opt->params[idx[0]].param->dtype ||
                          !opt->kind->compatible(opt, idx[0], i) || total + p->numel > BATCH_MAX_ELEMS ||
                          shares_buffer(opt, idx, gs, count, p, g))) {
            if ((st = flush(opt, idx, gs, count)) != CLG_OK) break;
            count = total = 0;
        }
        idx[count] = i;
        gs[count++] = g;
        total += p->numel;
    }
    if (st == CLG_OK) st = flush(opt, idx, gs, count);
    return st;
}

clg_status clg__optimizer_set_mt_k(clg_optimizer *opt, int k) {
    if (!opt) return CLG_INVALID_ARGUMENT;
    if (k == 0 || !opt->kind->step_many) {
        opt->mt_k = 0;
        return k == 0 ? CLG_OK
                      : clg__fail(opt->ctx, CLG_UNSUPPORTED, "%s: no multi-tensor step", opt->kind->name);
    }
    if ((k != 4 && k != 8 && k != 16) ||
        k > clg__optim_mt_k(opt->ctx, opt->kind->slot_args, opt->kind->shared_args))
        return clg__fail(opt->ctx, CLG_INVALID_ARGUMENT,
                         "%s: %d slots per launch: 4, 8 or 16 that the device fits", opt->kind->name, k);
    opt->mt_k = k;
    return CLG_OK;
}
