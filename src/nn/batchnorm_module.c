/* src/nn/batchnorm_module.c - the batch_norm2d layer: weight and bias (parameters),
 * running_mean, running_var and num_batches_tracked (buffers), in PyTorch's names and order,
 * forward through clg_sync_batch_norm2d (synchronized over replicas once
 * clg_module_sync_batch_norm gave it a sum); fused with a following ReLU layer
 * (clg__bn_relu_module_forward, for the containers). Tests: tests/nn/test_nn.c.
 */
#include "nn/nn.h"

typedef struct clg_batch_norm2d_module {
    double eps, momentum;
    clg_replica_sum sync; /* sync.sum NULL: this replica's batch only */
} clg_batch_norm2d_module;

/* The layer's forward, and with relu the fused batch_norm2d_relu op in its place followed
 * by a ReLU layer's (the same bits, one pass less each way). */
static clg_status bn_module_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, bool relu,
                                    clg_tensor **out) {
    const clg_batch_norm2d_module *s = m->state;
    clg_status (*const op)(clg_context *, const clg_tensor *, const clg_tensor *, const clg_tensor *,
                           clg_tensor *, clg_tensor *, clg_batch_norm2d_params, const clg_replica_sum *,
                           clg_tensor **) = relu ? clg_sync_batch_norm2d_relu : clg_sync_batch_norm2d;
    clg_status st =
        op(ctx, x, clg_module_get_tensor(m, "weight"), clg_module_get_tensor(m, "bias"),
           clg_module_get_tensor(m, "running_mean"), clg_module_get_tensor(m, "running_var"),
           (clg_batch_norm2d_params){m->training, s->momentum, s->eps}, s->sync.sum ? &s->sync : NULL, out);
    if (st != CLG_OK || !m->training) return st;
    /* num_batches_tracked += 1 on the device: no host sync, and it stays right after a
     * checkpoint load writes the buffer behind our back. */
    st = clg__axpby(ctx, 1.0, clg_module_get_tensor(m, "one"), 1.0, clg_module_get_tensor(m, "num_batches_tracked"));
    if (st != CLG_OK) {
        clg_tensor_free(*out);
        *out = NULL;
    }
    return st;
}

static clg_status batch_norm2d_forward(clg_context *ctx, clg_module *m, const clg_tensor *x,
                                       clg_tensor **out) {
    return bn_module_forward(ctx, m, x, false, out);
}

/* PyTorch's reset_parameters (with reset_running_stats): weight 1, bias 0, running_mean 0,
 * running_var 1, num_batches_tracked 0. Draws nothing. */
static clg_status batch_norm2d_reset(clg_module *m, clg_module *gen) {
    (void)gen;
    static const char *const leaves[5] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
    static const double values[5] = {1, 0, 0, 1, 0};
    clg_status st = CLG_OK;
    for (int i = 0; i < 5 && st == CLG_OK; i++)
        st = clg_init_constant_(clg_module_get_tensor(m, leaves[i]), values[i]);
    return st;
}

static const clg_module_def batch_norm2d_def = {.kind = "batch_norm2d",
                                               .state_size = sizeof(clg_batch_norm2d_module),
                                               .forward = batch_norm2d_forward,
                                               .reset_parameters = batch_norm2d_reset};

clg_status clg_batch_norm2d_module_create(clg_context *ctx, const char *name, int channels, double eps,
                                          double momentum, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_batch_norm2d_module_create");
    if (channels <= 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_batch_norm2d_module_create: channels is %d, must be positive", channels);
    if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_batch_norm2d_module_create: eps %g must be positive and momentum %g in [0, 1]", eps,
                         momentum);
    clg_module *m;
    clg_status st = clg_module_create(ctx, &batch_norm2d_def, name, &m);
    if (st != CLG_OK) return st;
    *(clg_batch_norm2d_module *)m->state = (clg_batch_norm2d_module){.eps = eps, .momentum = momentum};
    /* "one" holds the 1 added to num_batches_tracked: a buffer so that to_dtype converts it
     * with the rest, not persistent because it is no state of PyTorch's BatchNorm2d. */
    if ((st = clg__init_filled(m, "weight", channels, 1.0, true, true)) ||
        (st = clg__init_filled(m, "bias", channels, 0.0, true, true)) ||
        (st = clg__init_filled(m, "running_mean", channels, 0.0, false, true)) ||
        (st = clg__init_filled(m, "running_var", channels, 1.0, false, true)) ||
        (st = clg__init_filled(m, "num_batches_tracked", 1, 0.0, false, true)) ||
        (st = clg__init_filled(m, "one", 1, 1.0, false, false)))
        return clg__module_drop(m, st);
    *out = m;
    return CLG_OK;
}

bool clg__bn_relu_fusable(const clg_module *bn, const clg_module *next) {
    return bn && bn->def == &batch_norm2d_def && clg__is_relu_module(next);
}

clg_status clg__bn_relu_module_forward(clg_context *ctx, clg_module *bn, const clg_tensor *x,
                                       clg_tensor **out) {
    *out = NULL;
    clg_status st = bn_module_forward(ctx, bn, x, true, out);
    if (st != CLG_OK) clg__module_name_failure(bn, st);
    return st;
}

size_t clg_module_sync_batch_norm(clg_module *m, const clg_replica_sum *sync) {
    if (!m) return 0;
    size_t count = 0;
    if (m->def == &batch_norm2d_def) {
        clg_batch_norm2d_module *s = m->state;
        s->sync = sync && sync->sum ? *sync : (clg_replica_sum){0};
        count++;
    }
    for (size_t i = 0; i < m->n_children; i++)
        count += clg_module_sync_batch_norm(m->children[i], sync);
    return count;
}
