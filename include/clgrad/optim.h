/* clgrad/optim.h - optimizers: one kernel launch per parameter tensor per step, with
 * PyTorch's update rules. Implemented in src/optim/ (kernels cl/optim/).
 * Tests: tests/optim/test_optim.c.
 */
#ifndef CLGRAD_OPTIM_H
#define CLGRAD_OPTIM_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clg_optimizer clg_optimizer;

typedef struct clg_sgd_params {
    double lr, momentum, dampening, weight_decay;
    bool nesterov;
} clg_sgd_params;
CLG_API clg_sgd_params clg_sgd_default_params(void); /* lr 0.01, everything else 0 */

typedef struct clg_adam_params {
    double lr, beta1, beta2, eps, weight_decay;
    bool decoupled_weight_decay; /* true: AdamW */
} clg_adam_params;
CLG_API clg_adam_params clg_adam_default_params(void); /* lr 1e-3, (0.9, 0.999), 1e-8, 0 */

/* The optimizer keeps references to params (n tensors) and owns its state buffers. */
CLG_API clg_status clg_sgd_create(clg_context *ctx, clg_tensor *const *params, size_t n,
                                  clg_sgd_params p, clg_optimizer **out);
CLG_API clg_status clg_adam_create(clg_context *ctx, clg_tensor *const *params, size_t n,
                                   clg_adam_params p, clg_optimizer **out);
CLG_API void clg_optimizer_free(clg_optimizer *opt);
/* Updates every parameter that has a gradient; those without one are skipped (PyTorch). */
CLG_API clg_status clg_optimizer_step(clg_optimizer *opt);
CLG_API void clg_optimizer_zero_grad(clg_optimizer *opt);
/* Takes effect on the next step; a negative or NaN rate makes that step fail
 * (CLG_INVALID_ARGUMENT) before any parameter moves. */
CLG_API void clg_optimizer_set_lr(clg_optimizer *opt, double lr);
CLG_API double clg_optimizer_lr(const clg_optimizer *opt);

#ifdef __cplusplus
}
#endif
#endif
