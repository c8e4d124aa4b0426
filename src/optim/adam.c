/* src/optim/adam.c - Adam and AdamW with bias correction, PyTorch's rule and order of
 * operations (torch.optim.Adam / AdamW 1.13, single-tensor path): one launch of
 * cl/optim/adam.cl per parameter per step, the bias corrections computed here in double.
 * Shared plumbing: optimizer.c. Tests: tests/optim/test_optim.c.
 */
#include <math.h>

#include "optim/optim.h"

static clg_status adam_step(clg_optimizer *opt, size_t i, const clg_tensor *g);

static size_t adam_state_names(const clg_optimizer *opt, const char *const **names) {
    static const char *const moments[] = {"exp_avg", "exp_avg_sq"};
    (void)opt;
    *names = moments;
    return 2;
}

static const clg_optim_kind adam_kind = {"adam", adam_step, adam_state_names};

clg_adam_params clg_adam_default_params(void) {
    return (clg_adam_params){.lr = 1e-3,
                             .beta1 = 0.9,
                             .beta2 = 0.999,
                             .eps = 1e-8,
                             .weight_decay = 0.0,
                             .decoupled_weight_decay = false};
}

clg_status clg_adam_create(clg_context *ctx, clg_tensor *const *params, size_t n, clg_adam_params p,
                           clg_optimizer **out) {
    const clg_param_group one = clg_param_group_of(params, n);
    return clg_adam_create_groups(ctx, &one, 1, p, out);
}

clg_status clg_adam_create_groups(clg_context *ctx, const clg_param_group *groups, size_t ngroups,
                                  clg_adam_params p, clg_optimizer **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "adam: out is NULL");
    *out = NULL;
    /* PyTorch's checks, written so NaN fails them too. */
    if (!(p.lr >= 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "adam: learning rate %g is not >= 0", p.lr);
    if (!(p.eps >= 0.0)) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "adam: eps %g is not >= 0", p.eps);
    if (!(p.beta1 >= 0.0 && p.beta1 < 1.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "adam: beta1 %g is not in [0, 1)", p.beta1);
    if (!(p.beta2 >= 0.0 && p.beta2 < 1.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "adam: beta2 %g is not in [0, 1)", p.beta2);
    if (!(p.weight_decay >= 0.0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "adam: weight_decay %g is not >= 0", p.weight_decay);
    clg_status st = clg__optimizer_new(ctx, &adam_kind, groups, ngroups, p.lr, p.weight_decay, out);
    if (st == CLG_OK) (*out)->hp.adam = p;
    return st;
}

static clg_status adam_step(clg_optimizer *opt, size_t i, const clg_tensor *g) {
    clg_context *ctx = opt->ctx;
    const clg_adam_params *hp = &opt->hp.adam;
    clg_optim_param *e = &opt->params[i];
    clg_tensor *p = e->param;
    const clg_dtype dt = p->dtype;
    const int n = (int)p->numel;
    cl_kernel k;
    clg_status st;
    if ((st = clg__kernel_dt(ctx, "optim/adam", "adam_step", dt, NULL, &k))) return st;
    if ((st = clg__optimizer_state(opt, i, 0)) || (st = clg__optimizer_state(opt, i, 1))) return st;
    cl_mem pm = clg__mem(p), gm = clg__mem(g);                     // (numel) each
    cl_mem mm = clg__mem(e->state[0]), vm = clg__mem(e->state[1]); // exp_avg, exp_avg_sq

    /* PyTorch counts steps per parameter (state['step']), so a parameter that missed a
     * step gets its own bias correction. */
    const double t = (double)(e->steps + 1);
    const double bc1 = 1.0 - pow(hp->beta1, t), bc2 = 1.0 - pow(hp->beta2, t);
    const clg_optim_group *grp = &opt->groups[e->group];
    const double step_size = grp->lr / bc1, bc2_sqrt = sqrt(bc2);
    /* Adam folds the decay into the gradient; AdamW shrinks the parameter first. */
    const double wd = hp->decoupled_weight_decay ? 0.0 : grp->weight_decay;
    const double decay = hp->decoupled_weight_decay ? 1.0 - grp->lr * grp->weight_decay : 1.0;

    clg_real r[9];
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "adam", CLG_ARG(pm), CLG_ARG(gm), CLG_ARG(mm), CLG_ARG(vm),
                            clg__real(dt, &r[0], hp->beta1), clg__real(dt, &r[1], 1.0 - hp->beta1),
                            clg__real(dt, &r[2], hp->beta2), clg__real(dt, &r[3], 1.0 - hp->beta2),
                            clg__real(dt, &r[4], step_size), clg__real(dt, &r[5], bc2_sqrt),
                            clg__real(dt, &r[6], hp->eps), clg__real(dt, &r[7], wd),
                            clg__real(dt, &r[8], decay), CLG_ARG(n));
}
