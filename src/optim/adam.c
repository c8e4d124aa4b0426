/* src/optim/adam.c - Adam and AdamW with bias correction, PyTorch's rule and order of
 * operations (torch.optim.Adam / AdamW 1.13, single-tensor path): a launch of cl/optim/adam.cl
 * per up to 16 parameters per step (multi.c batches them), or per parameter; the bias
 * corrections computed here in double. Shared plumbing: optimizer.c.
 * Tests: tests/optim/test_optim.c, tests/optim/test_multi.c.
 */
#include <math.h>

#include "optim/optim.h"

static clg_status adam_step(clg_optimizer *opt, size_t i, const clg_tensor *g);
static bool adam_compatible(const clg_optimizer *opt, size_t a, size_t b);
static clg_status adam_step_many(clg_optimizer *opt, const size_t *idx, const clg_tensor *const *g,
                                 size_t count);

static size_t adam_state_names(const clg_optimizer *opt, const char *const **names) {
    static const char *const moments[] = {"exp_avg", "exp_avg_sq"};
    (void)opt;
    *names = moments;
    return 2;
}

/* Multi-tensor slots: (p, g, m, v, n); shared: nine hyper-parameters, total, chunk. */
static const clg_optim_kind adam_kind = {.name = "adam",
                                         .step = adam_step,
                                         .state_names = adam_state_names,
                                         .compatible = adam_compatible,
                                         .step_many = adam_step_many,
                                         .slot_args = 5,
                                         .shared_args = 11};

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

/* The kernel's nine REAL hyper-parameters for parameter e, in its argument order (slots in
 * r hold the values). */
static void adam_hyper(const clg_optimizer *opt, const clg_optim_param *e, clg_dtype dt, clg_real r[9],
                       clg_karg k[9]) {
    const clg_adam_params *hp = &opt->hp.adam;
    /* PyTorch counts steps per parameter (state['step']), so a parameter that missed a
     * step gets its own bias correction. */
    const double t = (double)(e->steps + 1);
    const double bc1 = 1.0 - pow(hp->beta1, t), bc2 = 1.0 - pow(hp->beta2, t);
    const clg_optim_group *grp = &opt->groups[e->group];
    const double step_size = grp->lr / bc1, bc2_sqrt = sqrt(bc2);
    /* Adam folds the decay into the gradient; AdamW shrinks the parameter first. */
    const double wd = hp->decoupled_weight_decay ? 0.0 : grp->weight_decay;
    const double decay = hp->decoupled_weight_decay ? 1.0 - grp->lr * grp->weight_decay : 1.0;
    const double v[9] = {
        hp->beta1, 1.0 - hp->beta1, hp->beta2, 1.0 - hp->beta2, step_size, bc2_sqrt, hp->eps, wd, decay};
    for (int j = 0; j < 9; j++)
        k[j] = clg__real(dt, &r[j], v[j]);
}

static clg_status adam_step(clg_optimizer *opt, size_t i, const clg_tensor *g) {
    clg_context *ctx = opt->ctx;
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
    clg_real r[9];
    clg_karg hk[9];
    adam_hyper(opt, e, dt, r, hk);
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, "adam", CLG_ARG(pm), CLG_ARG(gm), CLG_ARG(mm), CLG_ARG(vm),
                            hk[0], hk[1], hk[2], hk[3], hk[4], hk[5], hk[6], hk[7], hk[8], CLG_ARG(n));
}

/* The kernel sees the group's rate and decay and the step count's bias corrections:
 * parameters that agree on all three can share a launch. */
static bool adam_compatible(const clg_optimizer *opt, size_t a, size_t b) {
    const clg_optim_param *pa = &opt->params[a], *pb = &opt->params[b];
    const clg_optim_group *ga = &opt->groups[pa->group], *gb = &opt->groups[pb->group];
    return pa->steps == pb->steps && ga->lr == gb->lr && ga->weight_decay == gb->weight_decay;
}

static clg_status adam_step_many(clg_optimizer *opt, const size_t *idx, const clg_tensor *const *g,
                                 size_t count) {
    clg_context *ctx = opt->ctx;
    const clg_optim_param *e0 = &opt->params[idx[0]];
    const clg_dtype dt = e0->param->dtype;
    const int slots = opt->mt_k;
    char opts[32];
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "optim/adam", "adam_step_multi", dt,
                                   clg__optim_mt_option(slots, opts, sizeof opts), &k);
    if (st != CLG_OK) return st;
    cl_mem mem[CLG_OPTIM_MT_MAX][4]; /* p, g, exp_avg, exp_avg_sq */
    int n[CLG_OPTIM_MT_MAX];
    size_t total = 0;
    for (int j = 0; j < slots; j++) {
        if ((size_t)j >= count) { /* an unused slot: no elements, any valid buffers */
            for (int b = 0; b < 4; b++)
                mem[j][b] = mem[0][b];
            n[j] = 0;
            continue;
        }
        if ((st = clg__optimizer_state(opt, idx[j], 0)) || (st = clg__optimizer_state(opt, idx[j], 1)))
            return st;
        const clg_optim_param *e = &opt->params[idx[j]];
        mem[j][0] = clg__mem(e->param);
        mem[j][1] = clg__mem(g[j]);
        mem[j][2] = clg__mem(e->state[0]);
        mem[j][3] = clg__mem(e->state[1]);
        n[j] = (int)e->param->numel;
        total += e->param->numel;
    }
    clg_karg args[CLG_OPTIM_MT_MAX * 5 + 12];
    cl_uint na = 0;
    for (int j = 0; j < slots; j++) {
        for (int b = 0; b < 4; b++)
            args[na++] = CLG_ARG(mem[j][b]);
        args[na++] = CLG_ARG(n[j]);
    }
    clg_real r[9];
    adam_hyper(opt, e0, dt, r, args + na);
    na += 9;
    const int tot = (int)total;
    args[na++] = CLG_ARG(tot);
    return clg__optim_launch_multi(ctx, k, total, args, na, "adam");
}
