/* src/optim/optim.h - what sgd.c and adam.c share with optimizer.c: the optimizer's
 * layout (params with references, per-parameter state and step counts) and the per-kind
 * step function. Public API: include/clgrad/optim.h. Tests: tests/optim/test_optim.c.
 */
#ifndef CLGRAD_OPTIM_OPTIM_H
#define CLGRAD_OPTIM_OPTIM_H

#include "tensor/tensor.h"

#define CLG_OPTIM_MAX_STATE 2 /* SGD: momentum buffer; Adam: exp_avg, exp_avg_sq */

/* Updates params[i], whose gradient g is present; allocates its state on first use. */
typedef clg_status (*clg_optim_step_fn)(clg_optimizer *opt, size_t i, const clg_tensor *g);

typedef struct clg_optim_kind {
    const char *name; /* "sgd", "adam": names the optimizer in errors */
    clg_optim_step_fn step;
    /* The state slots' names (PyTorch's state keys), for the given hyper-parameters: SGD
     * without momentum has none. */
    size_t (*state_names)(const clg_optimizer *opt, const char *const **names);
} clg_optim_kind;

/* A parameter group (PyTorch's param_groups): its own rate and weight decay. */
typedef struct clg_optim_group {
    double lr, weight_decay;
} clg_optim_group;

typedef struct clg_optim_param {
    clg_tensor *param;                      /* a reference */
    clg_tensor *state[CLG_OPTIM_MAX_STATE]; /* owned; NULL until the first gradient */
    uint64_t steps; /* steps this parameter took: PyTorch keeps the count per parameter */
    size_t group;   /* index into the optimizer's groups */
} clg_optim_param;

struct clg_optimizer {
    clg_context *ctx;
    const clg_optim_kind *kind;
    clg_optim_param *params; /* n entries */
    size_t n;
    clg_optim_group *groups; /* ngroups entries; their rates change between steps */
    size_t ngroups;
    union {
        clg_sgd_params sgd;
        clg_adam_params adam;
    } hp;
};

/* Validates the groups (each parameter non-NULL, a leaf of ctx, int-sized, in one group only;
 * rates and decays >= 0, NaN taking lr / weight_decay) and builds an optimizer holding a
 * reference to each parameter; hp is filled by the caller. */
clg_status clg__optimizer_new(clg_context *ctx, const clg_optim_kind *kind, const clg_param_group *groups,
                              size_t ngroups, double lr, double weight_decay, clg_optimizer **out);
/* Allocates the state slot of params[i] (same dtype and shape) filled with zeros. */
clg_status clg__optimizer_state(clg_optimizer *opt, size_t i, int slot);


#endif
