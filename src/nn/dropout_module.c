/* src/nn/dropout_module.c - the dropout layer: p and a seed that advances per training
 * forward, so each draws a fresh mask. Tests: tests/nn/test_nn.c (test_dropout_fresh_masks).
 */
#include "nn/nn.h"

typedef struct clg_dropout_module {
    double p;
    uint64_t seed, calls; /* each training forward uses seed + calls++ */
} clg_dropout_module;

static clg_status dropout_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    clg_dropout_module *s = m->state;
    /* Evaluation passes x through and draws nothing, so it does not advance the seed. */
    const uint64_t seed = s->seed + s->calls;
    if (m->training) s->calls++;
    return clg_dropout(ctx, x, s->p, m->training, seed, out);
}

static uint64_t *dropout_counter(clg_module *m) { return &((clg_dropout_module *)m->state)->calls; }

static const clg_module_def dropout_def = {.kind = "dropout",
                                           .state_size = sizeof(clg_dropout_module),
                                           .forward = dropout_forward,
                                           .rng_counter = dropout_counter};

clg_status clg_dropout_module_create(clg_context *ctx, double p, uint64_t seed, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_dropout_module_create");
    if (!(p >= 0 && p <= 1))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_dropout_module_create: p is %g, must be in [0, 1]", p);
    clg_status st = clg_module_create(ctx, &dropout_def, NULL, out);
    if (st == CLG_OK) *(clg_dropout_module *)(*out)->state = (clg_dropout_module){p, seed, 0};
    return st;
}
