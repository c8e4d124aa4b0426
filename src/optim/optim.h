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
/* Updates params[idx[0..count)] (gradients g[]) in one multi-tensor launch of opt->mt_k slots
 * (multi.c batches them: one dtype, mutually compatible, no shared buffers, count <= mt_k). */
typedef clg_status (*clg_optim_step_many_fn)(clg_optimizer *opt, const size_t *idx,
                                             const clg_tensor *const *g, size_t count);

typedef struct clg_optim_kind {
    const char *name; /* "sgd", "adam": names the optimizer in errors */
    clg_optim_step_fn step;
    /* The state slots' names (PyTorch's state keys), for the given hyper-parameters: SGD
     * without momentum has none. */
    size_t (*state_names)(const clg_optimizer *opt, const char *const **names);
    /* The multi-tensor path (NULL: none): whether params a and b may share a launch (the
     * same hyper-parameters reach the kernel for both), the launch, and its worst-case
     * argument count per slot and shared (for CL_DEVICE_MAX_PARAMETER_SIZE). */
    bool (*compatible)(const clg_optimizer *opt, size_t a, size_t b);
    clg_optim_step_many_fn step_many;
    size_t slot_args, shared_args;
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
    int mt_k; /* slots per multi-tensor launch (4, 8, 16); 0: one launch per parameter */
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

/* ---------------------------------------------------------------- multi.c */
/* Most slots a multi-tensor launch has (cl/optim/multi.h's MT_K: 4, 8 or 16). */
#define CLG_OPTIM_MT_MAX 16
/* The slots per launch for a kernel of slot_args arguments per tensor plus shared_args: the
 * largest of 16, 8, 4 whose arguments (each counted as 8 bytes: pointers, and padding for
 * the rest) fit the device's CL_DEVICE_MAX_PARAMETER_SIZE; 0 when none does. */
int clg__optim_mt_k(clg_context *ctx, size_t slot_args, size_t shared_args);
/* The compile option selecting k slots: "-DMT_K=k" into buf. */
const char *clg__optim_mt_option(int k, char *buf, size_t len);
/* An element launch of a multi-tensor kernel over `total` elements laid end to end (the
 * kernel gets `chunk` appended, as with clg__launch_elems, and no limit on the argument
 * count). */
clg_status clg__optim_launch_multi(clg_context *ctx, cl_kernel k, size_t total, clg_karg *args, cl_uint nargs,
                                   const char *what);
/* clg_optimizer_step's loop through the kind's step_many: runs of consecutive parameters with
 * a gradient, batched while compatible (see step_many), each batch one launch. */
clg_status clg__optimizer_step_multi(clg_optimizer *opt);
/* For tests: k slots per launch (4, 8, 16, at most what the device allows), or 0 for the
 * per-tensor path. */
clg_status clg__optimizer_set_mt_k(clg_optimizer *opt, int k);
/* clg_clip_grad_norm and clg_clip_grad_value (clip.c) with k slots per launch: 0 for a launch
 * per gradient, -1 for what the device fits (the public calls), else 4, 8 or 16 (for tests). */
clg_status clg__clip_grad_norm_k(clg_tensor *const *params, size_t n, double max_norm, double norm_type,
                                 double *total_norm, int k);
clg_status clg__clip_grad_value_k(clg_tensor *const *params, size_t n, double clip_value, int k);


#endif
