/* src/optim/sgd.c - SGD with momentum, dampening, nesterov and weight decay, PyTorch's
 * rule (torch.optim.SGD, 1.13): a launch of cl/optim/sgd.cl per up to 16 parameters per step
 * (multi.c batches them), or per parameter. Shared plumbing: optimizer.c.
 * Tests: tests/optim/test_optim.c, tests/optim/test_multi.c.
 */
#include <math.h>

#include "optim/optim.h"

static clg_status sgd_step(clg_optimizer *opt, size_t i, const clg_tensor *g);
static bool sgd_compatible(const clg_optimizer *opt, size_t a, size_t b);
static clg_status sgd_step_many(clg_optimizer *opt, const size_t *idx, const clg_tensor *const *g,
                                size_t count);

static size_t sgd_state_names(const clg_optimizer *opt, const char *const **names) {
    static const char *const momentum[] = {"momentum_buffer"};
    *names = momentum;
    return opt->hp.sgd.momentum != 0.0 ? 1 : 0;
}

/* Multi-tensor slots: (p, g, buf, n, first); shared: lr, wd, momentum, 1 - dampening,
 * nesterov, total, chunk. */
static const clg_optim_kind sgd_kind = {.name = "sgd",
                                        .step = sgd_step,
                                        .state_names = sgd_state_names,
                                        .compatible = sgd_compatible,
                                        .step_many = sgd_step_many,
                                        .slot_args = 5,
                                        .shared_args = 7};

clg_sgd_params clg_sgd_default_params(void) {
    return (clg_sgd_params){
        .lr = 0.01, .momentum = 0.0, .dampening = 0.0, .weight_decay = 0.0, .nesterov = false};
}

clg_status clg_sgd_create(clg_context *ctx, clg_tensor *const *params, size_t n, clg_sgd_params p,
                          clg_optimizer **out) {
    const clg_param_group one = clg_param_group_of(params, n);
    return clg_sgd_create_groups(ctx, &one, 1, p, out);
}

clg_status clg_sgd_create_groups(clg_context *ctx, const clg_param_group *groups, size_t ngroups,
                                 clg_sgd_params p, clg_optimizer **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "sgd: out is NULL");
    *out = NULL;
    /* PyTorch's checks, written so NaN fails them too. */
    if (!(p.lr >= 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "sgd: learning rate %g is not >= 0", p.lr);
    if (!(p.momentum >= 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "sgd: momentum %g is not >= 0", p.momentum);
    if (!(p.weight_decay >= 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "sgd: weight_decay %g is not >= 0", p.weight_decay);
    if (!isfinite(p.dampening))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "sgd: dampening %g is not finite", p.dampening);
    if (p.nesterov && (p.momentum <= 0.0 || p.dampening != 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "sgd: nesterov needs momentum > 0 and dampening == 0 (momentum %g, dampening %g)",
                         p.momentum, p.dampening);
    clg_status st = clg__optimizer_new(ctx, &sgd_kind, groups, ngroups, p.lr, p.weight_decay, out);
    if (st == CLG_OK) (*out)->hp.sgd = p;
    return st;
}

static clg_status sgd_step(clg_optimizer *opt, size_t i, const clg_tensor *g) {
    clg_context *ctx = opt->ctx;
    const clg_sgd_params *hp = &opt->hp.sgd;
    clg_optim_param *e = &opt->params[i];
    clg_tensor *p = e->param;
    const clg_dtype dt = p->dtype;
    const int n = (int)p->numel;
    cl_mem pm = clg__mem(p), gm = clg__mem(g); // (numel) each
    clg_real a_lr, a_wd, a_mom, a_damp;
    const clg_optim_group *grp = &opt->groups[e->group];
    const clg_karg lr = clg__real(dt, &a_lr, grp->lr);
    const clg_karg wd = clg__real(dt, &a_wd, grp->weight_decay);
    cl_kernel k;
    clg_status st;
    if (hp->momentum == 0.0) {
        if ((st = clg__kernel_dt(ctx, "optim/sgd", "sgd_step", dt, NULL, &k))) return st;
        return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "sgd", CLG_ARG(pm), CLG_ARG(gm), lr, wd, CLG_ARG(n));
    }
    if ((st = clg__kernel_dt(ctx, "optim/sgd", "sgd_momentum_step", dt, NULL, &k))) return st;
    /* PyTorch's buffer starts as a copy of the first d_p, not as zeros + (1 - dampening) d_p:
     * "first" is "no buffer yet" (a loaded buffer counts). */
    const int first = e->state[0] == NULL;
    if ((st = clg__optimizer_state(opt, i, 0))) return st;
    cl_mem bm = clg__mem(e->state[0]); // (numel) momentum buffer
    const int nesterov = hp->nesterov;
    const clg_karg mom = clg__real(dt, &a_mom, hp->momentum);
    const clg_karg damp = clg__real(dt, &a_damp, 1.0 - hp->dampening);
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "sgd", CLG_ARG(pm), CLG_ARG(gm), CLG_ARG(bm), lr, wd, mom,
                            damp, CLG_ARG(first), CLG_ARG(nesterov), CLG_ARG(n));
}

/* The kernel sees only the group's rate and decay: parameters whose groups agree on both can
 * share a launch. */
static bool sgd_compatible(const clg_optimizer *opt, size_t a, size_t b) {
    const clg_optim_group *ga = &opt->groups[opt->params[a].group], *gb = &opt->groups[opt->params[b].group];
    return ga->lr == gb->lr && ga->weight_decay == gb->weight_decay;
}

static clg_status sgd_step_many(clg_optimizer *opt, const size_t *idx, const clg_tensor *const *g,
                                size_t count) {
    clg_context *ctx = opt->ctx;
    const clg_sgd_params *hp = &opt->hp.sgd;
    const clg_optim_param *e0 = &opt->params[idx[0]];
    const clg_dtype dt = e0->param->dtype;
    const int slots = opt->mt_k;
    const bool momentum = hp->momentum != 0.0;
    char opts[32];
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "optim/sgd", momentum ? "sgd_momentum_step_multi" : "sgd_step_multi",
                                   dt, clg__optim_mt_option(slots, opts, sizeof opts), &k);
    if (st != CLG_OK) return st;
    cl_mem pm[CLG_OPTIM_MT_MAX], gm[CLG_OPTIM_MT_MAX], bm[CLG_OPTIM_MT_MAX];
    int n[CLG_OPTIM_MT_MAX], first[CLG_OPTIM_MT_MAX];
    size_t total = 0;
    for (int j = 0; j < slots; j++) {
        if ((size_t)j >= count) { /* an unused slot: no elements, any valid buffers */
            pm[j] = pm[0], gm[j] = gm[0], bm[j] = bm[0], n[j] = 0, first[j] = 0;
            continue;
        }
        clg_optim_param *e = &opt->params[idx[j]];
        pm[j] = clg__mem(e->param);
        gm[j] = clg__mem(g[j]);
        n[j] = (int)e->param->numel;
        total += e->param->numel;
        /* PyTorch's buffer starts as a copy of the first d_p (see sgd_step). */
        first[j] = e->state[0] == NULL;
        bm[j] = NULL;
        if (momentum) {
            if ((st = clg__optimizer_state(opt, idx[j], 0))) return st;
            bm[j] = clg__mem(e->state[0]);
        }
    }
    clg_karg args[CLG_OPTIM_MT_MAX * 5 + 8];
    cl_uint na = 0;
    for (int j = 0; j < slots; j++) {
        args[na++] = CLG_ARG(pm[j]);
        args[na++] = CLG_ARG(gm[j]);
        if (momentum) args[na++] = CLG_ARG(bm[j]);
        args[na++] = CLG_ARG(n[j]);
        if (momentum) args[na++] = CLG_ARG(first[j]);
    }
    const clg_optim_group *grp = &opt->groups[e0->group];
    clg_real a_lr, a_wd, a_mom, a_damp;
    args[na++] = clg__real(dt, &a_lr, grp->lr);
    args[na++] = clg__real(dt, &a_wd, grp->weight_decay);
    const int nesterov = hp->nesterov, tot = (int)total;
    if (momentum) {
        args[na++] = clg__real(dt, &a_mom, hp->momentum);
        args[na++] = clg__real(dt, &a_damp, 1.0 - hp->dampening);
        args[na++] = CLG_ARG(nesterov);
    }
    args[na++] = CLG_ARG(tot);
    return clg__optim_launch_multi(ctx, k, total, args, na, "sgd");
}
