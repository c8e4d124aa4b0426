/* src/nn/sequential.c - the sequential container: a module without parameters whose forward
 * runs its children in the order they were added; unnamed children are named by their index
 * ("0", "1", ...) as in nn.Sequential. Tests: tests/nn/test_nn.c (test_module_errors),
 * tests/nn/test_module.c and tests/nn/test_containers.c.
 */
#include "nn/nn.h"

static clg_status sequential_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    /* An empty container is the identity, as torch.nn.Sequential(). */
    clg_tensor *cur = clg_tensor_ref((clg_tensor *)x);
    for (size_t i = 0; i < m->n_children; i++) {
        clg_tensor *next = NULL;
        clg_status st;
        /* batch_norm2d then ReLU: one fused op, the same bits (the ReLU child is skipped). */
        if (i + 1 < m->n_children && clg__bn_relu_fusable(m->children[i], m->children[i + 1]))
            st = clg__bn_relu_module_forward(ctx, m->children[i++], cur, &next);
        else
            st = clg_module_forward(ctx, m->children[i], cur, &next);
        /* The graph keeps its own references, so intermediates can go at once. */
        clg_tensor_free(cur);
        if (st != CLG_OK) return st;
        cur = next;
    }
    *out = cur;
    return CLG_OK;
}

static const clg_module_def sequential_def = {.kind = "sequential", .forward = sequential_forward, .index_names = true};

clg_status clg_sequential_create(clg_context *ctx, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_sequential_create");
    return clg_module_create(ctx, &sequential_def, NULL, out);
}

clg_status clg_sequential_add(clg_module *seq, clg_module *child) {
    if (seq && seq->def != &sequential_def) {
        clg_module_free(child);
        return clg__fail(seq->ctx, CLG_INVALID_ARGUMENT,
                         "clg_sequential_add: the container is a %s, not a sequential", seq->def->kind);
    }
    return clg__module_attach(seq, NULL, child, "clg_sequential_add");
}
