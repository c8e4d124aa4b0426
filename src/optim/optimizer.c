/* src/optim/optimizer.c - what every optimizer shares: the parameter list (held by
 * reference), lazily allocated state, the step loop that skips parameters without a
 * gradient (as PyTorch does), zero_grad and the learning rate. The update rules live in
 * sgd.c and adam.c (kernels cl/optim/). Tests: tests/optim/test_optim.c.
 */
#include <limits.h>
#include <stdlib.h>

#include "optim/optim.h"

clg_status clg__optimizer_new(clg_context *ctx, const clg_optim_kind *kind, clg_tensor *const *params,
                              size_t n, double lr, clg_optimizer **out) {
    const char *name = kind->name;
    if (!params) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: params is NULL", name);
    if (n == 0) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: no parameters to optimize (n = 0)", name);
    for (size_t i = 0; i < n; i++) {
        const clg_tensor *p = params[i];
        if (!p) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: params[%zu] is NULL", name, i);
        if (p->ctx != ctx)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: params[%zu] belongs to another context", name,
                             i);
        /* Only leaves get a .grad; a computed tensor would never be updated (PyTorch:
         * "can't optimize a non-leaf Tensor"). */
        if (p->grad_fn)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: params[%zu] is not a leaf tensor", name, i);
        if (p->numel > (size_t)INT_MAX)
            return clg__fail(ctx, CLG_UNSUPPORTED,
                             "%s: params[%zu] has %zu elements, past the kernels' int index", name, i,
                             p->numel);
        /* A parameter listed twice would be updated twice per step. */
        for (size_t j = 0; j < i; j++)
            if (params[j] == p)
                return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: params[%zu] repeats params[%zu]", name, i,
                                 j);
    }
    clg_optimizer *opt = calloc(1, sizeof *opt);
    clg_optim_param *list = calloc(n, sizeof *list);
    if (!opt || !list) {
        free(opt);
        free(list);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: out of host memory", name);
    }
    for (size_t i = 0; i < n; i++)
        list[i].param = clg_tensor_ref(params[i]);
    opt->ctx = ctx;
    opt->kind = kind;
    opt->params = list;
    opt->n = n;
    opt->lr = lr;
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
    free(opt);
}

clg_status clg_optimizer_step(clg_optimizer *opt) {
    if (!opt) return CLG_INVALID_ARGUMENT;
    /* set_lr has no status to return: a bad rate is caught here, before anything moves. */
    if (!(opt->lr >= 0.0))
        return clg__fail(opt->ctx, CLG_INVALID_ARGUMENT, "%s: step: learning rate %g is not >= 0",
                         opt->kind->name, opt->lr);
    for (size_t i = 0; i < opt->n; i++) {
        const clg_tensor *g = clg_tensor_grad(opt->params[i].param);
        if (!g) continue; /* no gradient: PyTorch leaves the parameter and its state alone */
        clg_status st = opt->kind->step(opt, i, g);
        if (st != CLG_OK) return st;
        opt->params[i].steps++;
    }
    return CLG_OK;
}

void clg_optimizer_zero_grad(clg_optimizer *opt) {
    if (!opt) return;
    for (size_t i = 0; i < opt->n; i++)
        clg_tensor_zero_grad(opt->params[i].param);
}

void clg_optimizer_set_lr(clg_optimizer *opt, double lr) {
    if (opt) opt->lr = lr;
}

double clg_optimizer_lr(const clg_optimizer *opt) { return opt ? opt->lr : 0.0; }
