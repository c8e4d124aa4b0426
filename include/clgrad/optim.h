/* clgrad/optim.h - optimizers with PyTorch's update rules: a step is one kernel launch per up
 * to 16 parameter tensors (fewer where the device's kernel-argument space is small; parameters
 * of groups with other rates or, for Adam, other step counts go in separate launches).
 * Implemented in src/optim/ (kernels cl/optim/). Tests: tests/optim/test_optim.c,
 * tests/optim/test_multi.c.
 */
#ifndef CLGRAD_OPTIM_H
#define CLGRAD_OPTIM_H

#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An optimizer over a list of parameters (opaque): SGD, Adam or AdamW; free with clg_optimizer_free. */
typedef struct clg_optimizer clg_optimizer;

/* torch.optim.SGD's arguments. */
typedef struct clg_sgd_params {
    double lr, momentum, dampening, weight_decay; /* as torch.optim.SGD's */
    bool nesterov; /* Nesterov momentum */
} clg_sgd_params;
CLG_API clg_sgd_params clg_sgd_default_params(void); /* lr 0.01, everything else 0 */

/* torch.optim.Adam's (and AdamW's) arguments. */
typedef struct clg_adam_params {
    double lr, beta1, beta2, eps, weight_decay; /* as torch.optim.Adam's lr, betas, eps, weight_decay */
    bool decoupled_weight_decay; /* true: AdamW */
} clg_adam_params;
CLG_API clg_adam_params clg_adam_default_params(void); /* lr 1e-3, (0.9, 0.999), 1e-8, 0 */

/* The optimizer keeps references to params (n tensors) and owns its state buffers. */
CLG_API clg_status clg_sgd_create(clg_context *ctx, clg_tensor *const *params, size_t n,
                                  clg_sgd_params p, clg_optimizer **out);
CLG_API clg_status clg_adam_create(clg_context *ctx, clg_tensor *const *params, size_t n,
                                   clg_adam_params p, clg_optimizer **out);

/* ---- parameter groups (PyTorch's param_groups) ----
 * A group's own learning rate and weight decay; NaN takes the optimizer's (p.lr,
 * p.weight_decay). The other hyper-parameters are the optimizer's. A parameter may be in one
 * group only. The optimizer copies the list; params stays the caller's. */
typedef struct clg_param_group {
    clg_tensor *const *params; /* the group's n parameters */
    size_t n; /* how many */
    double lr, weight_decay; /* NaN: the optimizer's */
} clg_param_group;
/* {params, n, NaN, NaN}: a group with the optimizer's settings. */
CLG_API clg_param_group clg_param_group_of(clg_tensor *const *params, size_t n);
/* The usual split in one call: tensors of two or more dimensions (weights) with weight_decay,
 * the rest (biases, norm weights and shifts) with 0. Writes the parameters into order (n
 * entries, the caller's) weights first, each in its original order, and the groups into
 * groups[0..1], which point into order; returns how many groups are non-empty and written
 * (a group with no parameters is left out: 0, 1 or 2). */
CLG_API size_t clg_param_groups_decay_split(clg_tensor *const *params, size_t n, double weight_decay,
                                            clg_tensor **order, clg_param_group groups[2]);
CLG_API clg_status clg_sgd_create_groups(clg_context *ctx, const clg_param_group *groups,
                                         size_t ngroups, clg_sgd_params p, clg_optimizer **out);
CLG_API clg_status clg_adam_create_groups(clg_context *ctx, const clg_param_group *groups,
                                          size_t ngroups, clg_adam_params p, clg_optimizer **out);

/* Frees the optimizer and its state; NULL is a no-op. */
CLG_API void clg_optimizer_free(clg_optimizer *opt);
/* Updates every parameter that has a gradient; those without one are skipped (PyTorch). */
CLG_API clg_status clg_optimizer_step(clg_optimizer *opt);
CLG_API void clg_optimizer_zero_grad(clg_optimizer *opt);
/* Every group's rate. Takes effect on the next step; a negative or NaN rate makes that step
 * fail (CLG_INVALID_ARGUMENT) before any parameter moves. */
CLG_API void clg_optimizer_set_lr(clg_optimizer *opt, double lr);
/* Group 0's rate. */
CLG_API double clg_optimizer_lr(const clg_optimizer *opt);
CLG_API size_t clg_optimizer_group_count(const clg_optimizer *opt);
/* One group's rate (checked as set_lr's at the next step); NaN for a group past the end. */
CLG_API clg_status clg_optimizer_set_group_lr(clg_optimizer *opt, size_t group, double lr);
CLG_API double clg_optimizer_group_lr(const clg_optimizer *opt, size_t group);
CLG_API double clg_optimizer_group_weight_decay(const clg_optimizer *opt, size_t group);

/* ---- state (what a resumed run needs; src/io saves it beside the model) ----
 * "sgd" or "adam" (AdamW is adam with decoupled_weight_decay). */
CLG_API const char *clg_optimizer_kind(const clg_optimizer *opt);
/* The parameters in the order given at creation (groups in order); borrowed. */
CLG_API size_t clg_optimizer_param_count(const clg_optimizer *opt);
CLG_API clg_tensor *clg_optimizer_param(const clg_optimizer *opt, size_t i);
CLG_API size_t clg_optimizer_param_group(const clg_optimizer *opt, size_t i);
/* The per-parameter state slots, by PyTorch's names: SGD with momentum "momentum_buffer",
 * Adam "exp_avg" and "exp_avg_sq", SGD without momentum none. */
CLG_API size_t clg_optimizer_state_count(const clg_optimizer *opt);
CLG_API const char *clg_optimizer_state_name(const clg_optimizer *opt, size_t slot);
/* A parameter's state tensor (borrowed), NULL until its first step allocates it. */
CLG_API clg_tensor *clg_optimizer_state(const clg_optimizer *opt, size_t i, size_t slot);
/* Copies value (same dtype and shape as parameter i) into the slot, allocating it. */
CLG_API clg_status clg_optimizer_set_state(clg_optimizer *opt, size_t i, size_t slot,
                                           const clg_tensor *value);
/* Steps parameter i took (PyTorch's state['step']); 0 for i past the end. */
CLG_API uint64_t clg_optimizer_param_steps(const clg_optimizer *opt, size_t i);
CLG_API clg_status clg_optimizer_set_param_steps(clg_optimizer *opt, size_t i, uint64_t steps);

/* ---- learning-rate schedules (src/optim/scheduler.c), PyTorch's formulas ----
 * A schedule sets every group's rate from the group's base rate b (its rate when the schedule
 * was created) and the schedule's step t (0 at creation; clg_lr_scheduler_step adds one, call
 * it after each optimizer step, or each epoch, as in PyTorch):
 *   STEP         b * gamma^floor(t / step_size)                        (StepLR)
 *   MULTISTEP    b * gamma^(number of milestones <= t)                 (MultiStepLR)
 *   EXPONENTIAL  b * gamma^t                                           (ExponentialLR)
 *   COSINE       eta_min + (b - eta_min) (1 + cos(pi t / t_max)) / 2   (CosineAnnealingLR)
 *   ONE_CYCLE    OneCycleLR with anneal_strategy 'cos', two phases: from b / div_factor up to
 *                b (the group's rate is max_lr) over pct_start * total_steps steps, then down
 *                to b / (div_factor * final_div_factor) at total_steps - 1; momentum is not
 *                cycled (cycle_momentum=False); stepping past total_steps fails, as in PyTorch.
 *   CONSTANT     b
 * warmup_steps > 0 puts a linear warm-up in front (PyTorch's SequentialLR of LinearLR and the
 * schedule, milestone warmup_steps): b * (f + (1 - f) t / w) for t < w, then the schedule at
 * t - w. Rates are closed forms of t, so a schedule resumes exactly from its step alone. */
typedef enum clg_lr_schedule {
    CLG_LR_CONSTANT = 0,
    CLG_LR_STEP,
    CLG_LR_MULTISTEP,
    CLG_LR_EXPONENTIAL,
    CLG_LR_COSINE,
    CLG_LR_ONE_CYCLE,
} clg_lr_schedule;

/* A schedule and its settings; clg_lr_scheduler_default_params(kind) fills the defaults. */
typedef struct clg_lr_scheduler_params {
    clg_lr_schedule kind; /* which schedule */
    double gamma;                 /* STEP, MULTISTEP, EXPONENTIAL; default 0.1 */
    int64_t step_size;            /* STEP */
    const int64_t *milestones;    /* MULTISTEP: increasing; copied at creation */
    size_t n_milestones; /* MULTISTEP: entries in milestones */
    int64_t t_max;                /* COSINE (> 0) */
    double eta_min;               /* COSINE; default 0 */
    int64_t total_steps;          /* ONE_CYCLE (> 1) */
    double pct_start;             /* ONE_CYCLE; default 0.3 */
    double div_factor;            /* ONE_CYCLE; default 25 */
    double final_div_factor;      /* ONE_CYCLE; default 1e4 */
    int64_t warmup_steps;         /* 0: no warm-up */
    double warmup_start_factor;   /* f in (0, 1]; default 1/3 (LinearLR's) */
} clg_lr_scheduler_params;
/* Kind with the defaults noted at each field. */
CLG_API clg_lr_scheduler_params clg_lr_scheduler_default_params(clg_lr_schedule kind);

/* A learning-rate schedule setting an optimizer's rates step by step (opaque). */
typedef struct clg_lr_scheduler clg_lr_scheduler;
/* Reads the groups' rates as base rates and sets the rates of step 0. The scheduler borrows
 * opt, which must outlive it. Ownership: the caller frees *out with clg_lr_scheduler_free. */
CLG_API clg_status clg_lr_scheduler_create(clg_optimizer *opt, const clg_lr_scheduler_params *p,
                                           clg_lr_scheduler **out);
CLG_API void clg_lr_scheduler_free(clg_lr_scheduler *s);
/* t += 1 and sets the rates of the new step. */
CLG_API clg_status clg_lr_scheduler_step(clg_lr_scheduler *s);
/* The current step t (PyTorch's last_epoch), and setting it (a resumed run). */
CLG_API int64_t clg_lr_scheduler_last_step(const clg_lr_scheduler *s);
CLG_API clg_status clg_lr_scheduler_set_last_step(clg_lr_scheduler *s, int64_t t);
/* The rate the schedule gives a group at step t, without changing anything (NaN when t or
 * group is out of range). */
CLG_API double clg_lr_scheduler_lr_at(const clg_lr_scheduler *s, size_t group, int64_t t);

/* ---- gradient clipping (src/optim/clip.c) ----
 * torch.nn.utils.clip_grad_norm_: the norm_type-norm (> 0, or INFINITY for the max) of all
 * gradients of params together, then every gradient scaled by min(1, max_norm / (norm +
 * 1e-6)). Parameters without a gradient are skipped; gradients must share one dtype. One
 * device reduction in a fixed order and one read of the norm into *total_norm (may be NULL;
 * 0 when no parameter has a gradient). A NaN or infinite gradient gives a NaN or infinite
 * norm and NaN gradients, as in PyTorch: check the norm. */
CLG_API clg_status clg_clip_grad_norm(clg_tensor *const *params, size_t n, double max_norm,
                                      double norm_type, double *total_norm);
/* torch.nn.utils.clip_grad_value_: every gradient clamped to [-clip_value, clip_value]. */
CLG_API clg_status clg_clip_grad_value(clg_tensor *const *params, size_t n, double clip_value);

#ifdef __cplusplus
}
#endif
#endif
