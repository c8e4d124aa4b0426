/* src/tensor/autograd.c - the define-by-run tape. Each op that sees an input requiring
 * gradients records a node (clg__record) owned by its output tensor; clg_backward walks the
 * nodes reachable from the loss in reverse topological order and hands each op's backward
 * the gradient targets with beta 0 (first write) or 1 (accumulate). Saved state returns to
 * the pool as soon as a node is done. Tests: tests/tensor/test_autograd.c.
 */
#include <stdlib.h>
#include <string.h>

#include "tensor/tensor.h"

bool clg__needs_grad(const clg_context *ctx, int n, const clg_tensor *const *inputs) {
    if (!ctx->grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

clg_status clg__record(clg_context *ctx, const clg_op_def *op, clg_tensor *out, int n_inputs,
                       const clg_tensor *const *inputs, const void *params, size_t params_size,
                       clg_node **node_out) {
    if (node_out) *node_out = NULL;
    if (n_inputs > CLG_NODE_MAX_INPUTS || params_size > sizeof(((clg_node *)0)->params))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: node too large to record", op->name);
    clg_node *node = calloc(1, sizeof *node);
    if (!node) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: out of host memory recording the graph", op->name);
    node->refcount = 1;
    node->op = op;
    node->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) node->inputs[i] = clg_tensor_ref((clg_tensor *)inputs[i]);
    if (params_size) memcpy(node->params, params, params_size);
    node->out_ndim = out->ndim;
    memcpy(node->out_shape, out->shape, sizeof node->out_shape);
    node->out_dtype = out->dtype;
    clg__node_release(out->grad_fn); /* an output is recorded once; be safe anyway */
    out->grad_fn = node;
    out->requires_grad = true;
    if (node_out) *node_out = node;
    return CLG_OK;
}

void clg__save(clg_node *node, int slot, const clg_tensor *t) {
    clg_tensor_free(node->saved[slot]);
    node->saved[slot] = clg_tensor_ref((clg_tensor *)t);
}

clg_status clg__save_output(clg_node *node, int slot, const clg_tensor *y) {
    clg_tensor *saved;
    clg_status st = clg__tensor_view(y, y->ndim, y->shape, &saved);
    if (st != CLG_OK) return st;
    clg__save(node, slot, saved);
    clg_tensor_free(saved);
    return CLG_OK;
}

/* Drops everything the node holds; the node itself lives while referenced. */
static void node_clear(clg_node *node) {
    for (int i = 0; i < CLG_NODE_MAX_INPUTS; i++) {
        clg_tensor_free(node->inputs[i]);
        node->inputs[i] = NULL;
    }
    for (int i = 0; i < CLG_NODE_MAX_SAVED; i++) {
        clg_tensor_free(node->saved[i]);
        node->saved[i] = NULL;
    }
    clg_tensor_free(node->grad);
    node->grad = NULL;
    node->grad_valid = false;
    free(node->extra);
    node->extra = NULL;
}

void clg__node_release(clg_node *node) {
    if (!node || --node->refcount > 0) return;
    node_clear(node);
    free(node);
}

/* Appends nodes reachable from root in post-order (inputs before consumers). Each listed
 * node gets a reference, released by the caller. */
static clg_status collect(clg_context *ctx, clg_node *root, clg_node ***order, size_t *n_order) {
    uint64_t epoch = ++ctx->backward_epoch;
    size_t cap = 64, n = 0, depth = 0, stack_cap = 64;
    clg_node **list = malloc(cap * sizeof *list);
    struct frame {
        clg_node *node;
        int next;
    } *stack = malloc(stack_cap * sizeof *stack);
    if (!list || !stack) goto oom;
    root->mark = epoch;
    stack[depth++] = (struct frame){root, 0};
    while (depth > 0) {
        struct frame *f = &stack[depth - 1];
        if (f->next < f->node->n_inputs) {
            clg_tensor *in = f->node->inputs[f->next++];
            clg_node *child = in ? in->grad_fn : NULL;
            if (!child || child->released || child->mark == epoch || !in->requires_grad) continue;
            child->mark = epoch;
            if (depth == stack_cap) {
                void *grown = realloc(stack, (stack_cap *= 2) * sizeof *stack);
                if (!grown) goto oom;
                stack = grown;
            }
            stack[depth++] = (struct frame){child, 0};
            continue;
        }
        if (n == cap) {
            void *grown = realloc(list, (cap *= 2) * sizeof *list);
            if (!grown) goto oom;
            list = grown;
        }
        f->node->refcount++;
        list[n++] = f->node;
        depth--;
    }
    free(stack);
    *order = list;
    *n_order = n;
    return CLG_OK;
oom:
    for (size_t i = 0; list && i < n; i++) clg__node_release(list[i]);
    free(list);
    free(stack);
    return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "backward: out of host memory");
}

/* The gradient target for input t and the beta to write it with; NULL when t needs none. */
static clg_status target_for(clg_tensor *t, clg_tensor **target, double *beta) {
    *target = NULL;
    *beta = 0.0;
    if (!t || !t->requires_grad) return CLG_OK;
    clg_tensor **slot;
    bool *valid;
    if (t->grad_fn) {
        if (t->grad_fn->released) return CLG_OK;
        slot = &t->grad_fn->grad;
        valid = &t->grad_fn->grad_valid;
    } else {
        slot = &t->grad;
        valid = &t->grad_valid;
    }
    if (!*slot) {
        clg_status st = clg__tensor_like(t, slot);
        if (st != CLG_OK) return st;
        *valid = false;
    }
    *beta = *valid ? 1.0 : 0.0;
    *valid = true;
    *target = *slot;
    return CLG_OK;
}

clg_status clg_backward_grad(clg_context *ctx, clg_tensor *y, const clg_tensor *dy) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    clg_status st;
    if ((st = clg__check(ctx, y, "backward", "y")) || (st = clg__check(ctx, dy, "backward", "dy"))) return st;
    if ((st = clg__check_same(ctx, y, dy, "backward", "y and its gradient"))) return st;
    if (!y->requires_grad)
        return clg__fail(ctx, CLG_INVALID_STATE,
                         "backward: the tensor does not require gradients (no input of the ops that made "
                         "it requires them, or grad mode was off)");
    if (!y->grad_fn) { /* a leaf: its gradient is dy itself */
        clg_tensor *target;
        double beta;
        if ((st = target_for(y, &target, &beta))) return st;
        return clg__axpby(ctx, 1.0, dy, beta, target);
    }
    clg_node *root = y->grad_fn;
    if (root->released)
        return clg__fail(ctx, CLG_INVALID_STATE,
                         "backward: this graph was already walked and its saved tensors freed");
    clg_node **order = NULL;
    size_t n = 0;
    if ((st = collect(ctx, root, &order, &n))) return st;
    clg_tensor_free(root->grad);
    root->grad = clg_tensor_ref((clg_tensor *)dy);
    root->grad_valid = true;

    /* order is post-order: consumers come after their inputs, so walk it backwards. */
    const int phase = ctx->phase;
    ctx->phase = CLG_PHASE_BACKWARD;
    for (size_t i = n; i-- > 0;) {
        clg_node *node = order[i];
        if (st == CLG_OK && node->grad_valid) {
            clg_tensor *dx[CLG_NODE_MAX_INPUTS] = {0};
            double beta[CLG_NODE_MAX_INPUTS] = {0};
            for (int k = 0; k < node->n_inputs && st == CLG_OK; k++) st = target_for(node->inputs[k], &dx[k], &beta[k]);
            if (st == CLG_OK) st = node->op->backward(ctx, node, node->grad, dx, beta);
        }
        node_clear(node);
        node->released = true;
        clg__node_release(node);
    }
    ctx->phase = phase;
    free(order);
    return st;
}

clg_status clg_backward(clg_context *ctx, clg_tensor *loss) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    clg_status st = clg__check(ctx, loss, "backward", "loss");
    if (st != CLG_OK) return st;
    if (loss->numel != 1) {
        char a[64];
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "backward: the loss must have one element, it is %s; use clg_backward_grad",
                         clg__shape_str(loss, a, sizeof a));
    }
    clg_tensor *one;
    if ((st = clg__tensor_like(loss, &one))) return st;
    if ((st = clg_tensor_fill(one, 1.0)) == CLG_OK) st = clg_backward_grad(ctx, loss, one);
    clg_tensor_free(one);
    return st;
}
