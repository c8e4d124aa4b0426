/* src/optim/scheduler.c - learning-rate schedules with PyTorch's formulas (torch.optim.
 * lr_scheduler, 1.13), each a closed form of the step t so that a resumed run needs only t.
 * The schedules and their formulas are listed in include/clgrad/optim.h.
 * Tests: tests/optim/test_scheduler.c (PyTorch's rates step by step).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"

static const double pi = 3.14159265358979323846; /* math.pi */

struct clg_lr_scheduler {
    clg_optimizer *opt; /* borrowed */
    clg_lr_scheduler_params p;
    int64_t *milestones; /* owned copy of p.milestones */
    double *base;        /* per group */
    int64_t t;
};

clg_lr_scheduler_params clg_lr_scheduler_default_params(clg_lr_schedule kind) {
    return (clg_lr_scheduler_params){.kind = kind,
                                     .gamma = 0.1,
                                     .step_size = 1,
                                     .t_max = 1,
                                     .eta_min = 0.0,
                                     .total_steps = 0,
                                     .pct_start = 0.3,
                                     .div_factor = 25.0,
                                     .final_div_factor = 1e4,
                                     .warmup_steps = 0,
                                     .warmup_start_factor = 1.0 / 3.0};
}

static double cos_anneal(double start, double end, double pct) {
    return end + (start - end) / 2.0 * (cos(pi * pct) + 1.0);
}

/* OneCycleLR.get_lr, two phases, 'cos'; NaN past total_steps (PyTorch raises). */
static double one_cycle(const clg_lr_scheduler_params *p, double max_lr, int64_t t) {
    if (t > p->total_steps) return NAN;
    const double initial = max_lr / p->div_factor, min_lr = initial / p->final_div_factor;
    const double end1 = p->pct_start * (double)p->total_steps - 1.0, end2 = (double)p->total_steps - 1.0;
    const double step = (double)t;
    if (step <= end1) return cos_anneal(initial, max_lr, step / end1);
    return cos_anneal(max_lr, min_lr, (step - end1) / (end2 - end1));
}

static double schedule_lr(const clg_lr_scheduler *s, double b, int64_t t) {
    const clg_lr_scheduler_params *p = &s->p;
    if (p->warmup_steps > 0) {
        if (t < p->warmup_steps) {
            const double f = p->warmup_start_factor;
            return b * (f + (1.0 - f) * (double)t / (double)p->warmup_steps);
        }
        t -= p->warmup_steps;
    }
    switch (p->kind) {
    case CLG_LR_STEP:
        return b * pow(p->gamma, (double)(t / p->step_size));
    case CLG_LR_MULTISTEP: {
        size_t k = 0;
        while (k < p->n_milestones && s->milestones[k] <= t) k++;
        return b * pow(p->gamma, (double)k);
    }
    case CLG_LR_EXPONENTIAL:
        return b * pow(p->gamma, (double)t);
    case CLG_LR_COSINE:
        return p->eta_min + (b - p->eta_min) * (1.0 + cos(pi * (double)t / (double)p->t_max)) / 2.0;
    case CLG_LR_ONE_CYCLE:
        return one_cycle(p, b, t);
    case CLG_LR_CONSTANT:
    default:
        return b;
    }
}

double clg_lr_scheduler_lr_at(const clg_lr_scheduler *s, size_t group, int64_t t) {
    if (!s || t < 0 || group >= s->opt->ngroups) return NAN;
    return schedule_lr(s, s->base[group], t);
}

static clg_status apply(clg_lr_scheduler *s, int64_t t) {
    const size_t ng = s->opt->ngroups;
    for (size_t g = 0; g < ng; g++) {
        const double lr = schedule_lr(s, s->base[g], t);
        if (!(lr >= 0.0))
            return clg__fail(s->opt->ctx, CLG_INVALID_ARGUMENT,
                             "lr_scheduler: step %lld gives group %zu the rate %g (one_cycle ends at total_steps %lld)",
                             (long long)t, g, lr, (long long)s->p.total_steps);
    }
    for (size_t g = 0; g < ng; g++)
        s->opt->groups[g].lr = schedule_lr(s, s->base[g], t);
    s->t = t;
    return CLG_OK;
}

static clg_status check_params(clg_context *ctx, const clg_lr_scheduler_params *p) {
    const char *what = NULL;
    switch (p->kind) {
    case CLG_LR_CONSTANT:
        break;
    case CLG_LR_STEP:
    case CLG_LR_MULTISTEP:
    case CLG_LR_EXPONENTIAL:
        if (!(p->gamma >= 0.0 && isfinite(p->gamma))) what = "gamma must be finite and >= 0";
        if (p->kind == CLG_LR_STEP && p->step_size < 1) what = "step_size must be >= 1";
        if (p->kind == CLG_LR_MULTISTEP) {
            if (p->n_milestones > 0 && !p->milestones) what = "milestones is NULL";
            for (size_t i = 1; !what && i < p->n_milestones; i++)
                if (p->milestones[i] <= p->milestones[i - 1]) what = "milestones must increase";
        }
        break;
    case CLG_LR_COSINE:
        if (p->t_max < 1) what = "t_max must be >= 1";
        else if (!(p->eta_min >= 0.0 && isfinite(p->eta_min))) what = "eta_min must be finite and >= 0";
        break;
    case CLG_LR_ONE_CYCLE:
        if (p->total_steps < 2) what = "total_steps must be >= 2";
        else if (!(p->pct_start > 0.0 && p->pct_start < 1.0)) what = "pct_start must be in (0, 1)";
        else if (!(p->pct_start * (double)p->total_steps - 1.0 > 0.0 &&
                   p->pct_start * (double)p->total_steps < (double)p->total_steps - 1.0))
            what = "pct_start * total_steps must leave both phases at least one step";
        else if (!(p->div_factor > 0.0 && isfinite(p->div_factor))) what = "div_factor must be finite and > 0";
        else if (!(p->final_div_factor > 0.0 && isfinite(p->final_div_factor)))
            what = "final_div_factor must be finite and > 0";
        break;
    default:
        what = "unknown schedule kind";
    }
    if (!what && p->warmup_steps < 0) what = "warmup_steps must be >= 0";
    if (!what && p->warmup_steps > 0 && !(p->warmup_start_factor > 0.0 && p->warmup_start_factor <= 1.0))
        what = "warmup_start_factor must be in (0, 1]";
    return what ? clg__fail(ctx, CLG_INVALID_ARGUMENT, "lr_scheduler: %s", what) : CLG_OK;
}

clg_status clg_lr_scheduler_create(clg_optimizer *opt, const clg_lr_scheduler_params *p,
                                   clg_lr_scheduler **out) {
    if (!opt) return CLG_INVALID_ARGUMENT;
    if (!p || !out) return clg__fail(opt->ctx, CLG_INVALID_ARGUMENT, "lr_scheduler: params or out is NULL");
    *out = NULL;
    clg_status st = check_params(opt->ctx, p);
    if (st != CLG_OK) return st;
    clg_lr_scheduler *s = calloc(1, sizeof *s);
    double *base = calloc(opt->ngroups, sizeof *base);
    int64_t *ms = p->n_milestones ? calloc(p->n_milestones, sizeof *ms) : NULL;
    if (!s || !base || (p->n_milestones && !ms)) {
        free(s);
        free(base);
        free(ms);
        return clg__fail(opt->ctx, CLG_OUT_OF_HOST_MEMORY, "lr_scheduler: out of host memory");
    }
    if (ms) memcpy(ms, p->milestones, sizeof *ms * p->n_milestones);
    for (size_t g = 0; g < opt->ngroups; g++)
        base[g] = opt->groups[g].lr;
    *s = (clg_lr_scheduler){.opt = opt, .p = *p, .milestones = ms, .base = base, .t = 0};
    s->p.milestones = NULL; /* the copy is s->milestones */
    if ((st = apply(s, 0)) != CLG_OK) {
        clg_lr_scheduler_free(s);
        return st;
    }
    *out = s;
    return CLG_OK;
}

void clg_lr_scheduler_free(clg_lr_scheduler *s) {
    if (!s) return;
    free(s->milestones);
    free(s->base);
    free(s);
}

clg_status clg_lr_scheduler_step(clg_lr_scheduler *s) {
    if (!s) return CLG_INVALID_ARGUMENT;
    if (s->t == INT64_MAX) return clg__fail(s->opt->ctx, CLG_INVALID_ARGUMENT, "lr_scheduler: step count overflow");
    return apply(s, s->t + 1);
}

int64_t clg_lr_scheduler_last_step(const clg_lr_scheduler *s) { return s ? s->t : 0; }

clg_status clg_lr_scheduler_set_last_step(clg_lr_scheduler *s, int64_t t) {
    if (!s) return CLG_INVALID_ARGUMENT;
    if (t < 0) return clg__fail(s->opt->ctx, CLG_INVALID_ARGUMENT, "lr_scheduler: step %lld < 0", (long long)t);
    return apply(s, t);
}
