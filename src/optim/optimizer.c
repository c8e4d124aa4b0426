/* src/optim/optimizer.c - what every optimizer shares: parameter groups (each parameter held
 * by reference, with its group's rate and weight decay), lazily allocated state, the step loop
 * that skips parameters without a gradient (as PyTorch does), zero_grad, rates, and the state
 * accessors a resumed run needs. The update rules live in sgd.c and adam.c (kernels
 * cl/optim/), launched for many parameters at once by multi.c. Tests: tests/optim/test_optim.c,
 * tests/optim/test_optim_groups.c.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"

clg_param_group clg_param_group_of(clg_tensor *const *params, size_t n) {
    return (clg_param_group){.params = params, .n = n, .lr = NAN, .weight_decay = NAN};
}

size_t clg_param_groups_decay_split(clg_tensor *const *params, size_t n, double weight_decay,
                                    clg_tensor **order, clg_param_group groups[2]) {
    if (!params || !order || !groups) return 0;
    size_t nw = 0;
    for (size_t i = 0; i < n; i++)
        if (params[i] && params[i]->ndim >= 2) order[nw++] = params[i];
    size_t k = nw;
    for (size_t i = 0; i < n; i++)
        if (!params[i] || params[i]->ndim < 2) order[k++] = params[i];
    size_t ng = 0;
    if (nw > 0) groups[ng++] = (clg_param_group){order, nw, NAN, weight_decay};
    if (n > nw) groups[ng++] = (clg_param_group){order + nw, n - nw, NAN, 0.0};
    return ng;
}

/* One parameter of group g, entry i of it. */
static clg_status check_param(clg_context *ctx, const char *name, const clg_tensor *p, size_t g, size_t i) {
    if (!p) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: group %zu: params[%zu] is NULL", name, g, i);
    if (p->ctx != ctx)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: group %zu: params[%zu] belongs to another context",
                         name, g, i);
    /* Only leaves get a .grad; a computed tensor would never be updated (PyTorch:
     * "can't optimize a non-leaf Tensor"). */
    if (p->grad_fn)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: group %zu: params[%zu] is not a leaf tensor", name, g,
                         i);
    if (p->numel > (size_t)INT_MAX)
        return clg__fail(ctx, CLG_UNSUPPORTED,
                         "%s: group %zu: params[%zu] has %zu elements, past the kernels' int index", name, g, i,
                         p->numel);
    return CLG_OK;
}

clg_status clg__optimizer_new(clg_context *ctx, const clg_optim_kind *kind, const clg_param_group *groups,
                              size_t ngroups, double lr, double weight_decay, clg_optimizer **out) {
    const char *name = kind->name;
    if (!groups) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: params is NULL", name);
    if (ngroups == 0) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: no parameter groups", name);
    size_t n = 0;
    for (size_t g = 0; g < ngroups; g++) {
        const clg_param_group *pg = &groups[g];
        if (!pg->params) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: group %zu: params is NULL", name, g);
        if (pg->n == 0)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: group %zu: no parameters to optimize (n = 0)",
                             name, g);
        if (!isnan(pg->lr) && !(pg->lr >= 0.0))
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: group %zu: learning rate %g is not >= 0", name, g,
                             pg->lr);
        if (!isnan(pg->weight_decay) && !(pg->weight_decay >= 0.0 && isfinite(pg->weight_decay)))
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: group %zu: weight_decay %g is not >= 0", name, g,
                             pg->weight_decay);
        if (pg->n > SIZE_MAX / sizeof(clg_optim_param) - n)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: too many parameters", name);
        for (size_t i = 0; i < pg->n; i++) {
            clg_status st = check_param(ctx, name, pg->params[i], g, i);
            if (st != CLG_OK) return st;
        }
        n += pg->n;
    }
    clg_optimizer *opt = calloc(1, sizeof *opt);
    clg_optim_param *list = calloc(n, sizeof *list);
    clg_optim_group *gl = calloc(ngroups, sizeof *gl);
    if (!opt || !list || !gl) {
        free(opt);
        free(list);
        free(gl);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: out of host memory", name);
    }
    size_t k = 0;
    for (size_t g = 0; g < ngroups; g++) {
        gl[g].lr = isnan(groups[g].lr) ? lr : groups[g].lr;
        gl[g].weight_decay = isnan(groups[g].weight_decay) ? weight_decay : groups[g].weight_decay;
        for (size_t i = 0; i < groups[g].n; i++, k++) {
            list[k].param = groups[g].params[i];
            list[k].group = g;
        }
    }
    /* A parameter listed twice would be updated twice per step. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (list[j].param == list[i].param) {
                free(opt);
                free(list);
                free(gl);
                return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                                 "%s: params[%zu] repeats params[%zu] (counted through the groups in order)",
                                 name, i, j);
            }
    for (size_t i = 0; i < n; i++)
        clg_tensor_ref(list[i].param);
    opt->ctx = ctx;
    opt->kind = kind;
    opt->params = list;
    opt->n = n;
    opt->groups = gl;
    opt->ngroups = ngroups;
    opt->mt_k = kind->step_many ? clg__optim_mt_k(ctx, kind->slot_args, kind->shared_args) : 0;
    *out = opt;
    return CLG_OK;
}

clg_status clg__optimizer_state(clg_optimizer *opt, size_t i, int slot) {
    clg_optim_param *e = &opt->params[i];
    if (e->state[slot]) return CLG_OK;
    clg_tensor *t;
    clg_status st = clg__tensor_like(e->param, &t);
    if (st != CLG_OK) return st;
    st = clg_tensor_fill(t, 0.0);
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    e->state[slot] = t;
    return CLG_OK;
}

void clg_optimizer_free(clg_optimizer *opt) {
    if (!opt) return;
    for (size_t i = 0; i < opt->n; i++) {
        clg_tensor_free(opt->params[i].param);
        for (int s = 0; s < CLG_OPTIM_MAX_STATE; s++)
            clg_tensor_free(opt->params[i].state[s]);
    }
    free(opt->params);
    free(opt->groups);
    free(opt);
}

clg_status clg_optimizer_step(clg_optimizer *opt) {
    if (!opt) return CLG_INVALID_ARGUMENT;
    /* set_lr has no status to return: a bad rate is caught here, before anything moves. */
    for (size_t g = 0; g < opt->ngroups; g++)
        if (!(opt->groups[g].lr >= 0.0))
            return clg__fail(opt->ctx, CLG_INVALID_ARGUMENT, "%s: step: group %zu: learning rate %g is not >= 0",
                             opt->kind->name, g, opt->groups[g].lr);
    const int phase = opt->ctx->phase;
    opt->ctx->phase = CLG_PHASE_OPTIMIZER;
    clg_status st = CLG_OK;
    if (opt->mt_k > 0)
        st = clg__optimizer_step_multi(opt); /* a launch per up to mt_k parameters (multi.c) */
    else
        for (size_t i = 0; i < opt->n && st == CLG_OK; i++) {
            const clg_tensor *g = clg_tensor_grad(opt->params[i].param);
            if (!g) continue; /* no gradient: PyTorch leaves the parameter and its state alone */
            st = opt->kind->step(opt, i, g);
            if (st == CLG_OK) opt->params[i].steps++;
        }
    opt->ctx->phase = phase;
    return st;
}

void clg_optimizer_zero_grad(clg_optimizer *opt) {
    if (!opt) return;
    for (size_t i = 0; i < opt->n; i++)
        clg_tensor_zero_grad(opt->params[i].param);
}

void clg_optimizer_set_lr(clg_optimizer *opt, double lr) {
    if (!opt) return;
    for (size_t g = 0; g < opt->ngroups; g++)
        opt->groups[g].lr = lr;
}

double clg_optimizer_lr(const clg_optimizer *opt) { return opt ? opt->groups[0].lr : 0.0; }

size_t clg_optimizer_group_count(const clg_optimizer *opt) { return opt ? opt->ngroups : 0; }

clg_status clg_optimizer_set_group_lr(clg_optimizer *opt, size_t group, double lr) {
    if (!opt) return CLG_INVALID_ARGUMENT;
    if (group >= opt->ngroups)
        return clg__fail(opt->ctx, CLG_INVALID_ARGUMENT, "%s: set_group_lr: group %zu of %zu",
                         opt->kind->name, group, opt->ngroups);
    opt->groups[group].lr = lr;
    return CLG_OK;
}

double clg_optimizer_group_lr(const clg_optimizer *opt, size_t group) {
    return opt && group < opt->ngroups ? opt->groups[group].lr : NAN;
}

double clg_optimizer_group_weight_decay(const clg_optimizer *opt, size_t group) {
    return opt && group < opt->ngroups ? opt->groups[group].weight_decay : NAN;
}

/* ---------------------------------------------------------------- state accessors */
const char *clg_optimizer_kind(const clg_optimizer *opt) { return opt ? opt->kind->name : ""; }

size_t clg_optimizer_param_count(const clg_optimizer *opt) { return opt ? opt->n : 0; }

clg_tensor *clg_optimizer_param(const clg_optimizer *opt, size_t i) {
    return opt && i < opt->n ? opt->params[i].param : NULL;
}

size_t clg_optimizer_param_group(const clg_optimizer *opt, size_t i) {
    return opt && i < opt->n ? opt->params[i].group : 0;
}

size_t clg_optimizer_state_count(const clg_optimizer *opt) {
    const char *const *names;
    return opt ? opt->kind->state_names(opt, &names) : 0;
}

const char *clg_optimizer_state_name(const clg_optimizer *opt, size_t slot) {
    const char *const *names;
    return opt && slot < opt->kind->state_names(opt, &names) ? names[slot] : NULL;
}

clg_tensor *clg_optimizer_state(const clg_optimizer *opt, size_t i, size_t slot) {
    return opt && i < opt->n && slot < clg_optimizer_state_count(opt) ? opt->params[i].state[slot] : NULL;
}

clg_status clg_optimizer_set_state(clg_optimizer *opt, size_t i, size_t slot, const clg_tensor *value) {
    if (!opt) return CLG_INVALID_ARGUMENT;
    const char *name = opt->kind->name;
    if (i >= opt->n || slot >= clg_optimizer_state_count(opt))
        return clg__fail(opt->ctx, CLG_INVALID_ARGUMENT, "%s: set_state: parameter %zu of %zu, slot %zu of %zu",
                         name, i, opt->n, slot, clg_optimizer_state_count(opt));
    const clg_tensor *p = opt->params[i].param;
    if (!value || value->ctx != opt->ctx || value->dtype != p->dtype || value->ndim != p->ndim ||
        memcmp(value->shape, p->shape, sizeof(int) * (size_t)p->ndim) != 0)
        return clg__fail(opt->ctx, CLG_INVALID_ARGUMENT,
                         "%s: set_state: %s of parameter %zu must be a tensor of its context, dtype and shape",
                         name, clg_optimizer_state_name(opt, slot), i);
    clg_status st = clg__optimizer_state(opt, i, (int)slot);
    return st != CLG_OK ? st : clg_tensor_copy(opt->params[i].state[slot], value);
}

uint64_t clg_optimizer_param_steps(const clg_optimizer *opt, size_t i) {
    return opt && i < opt->n ? opt->params[i].steps : 0;
}

clg_status clg_optimizer_set_param_steps(clg_optimizer *opt, size_t i, uint64_t steps) {
    if (!opt) return CLG_INVALID_ARGUMENT;
    if (i >= opt->n)
        return clg__fail(opt->ctx, CLG_INVALID_ARGUMENT, "%s: set_param_steps: parameter %zu of %zu",
                         opt->kind->name, i, opt->n);
    opt->params[i].steps = steps;
    return CLG_OK;
}
