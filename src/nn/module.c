/* src/nn/module.c - what every module shares: named parameters and buffers, children (the
 * sequential container), forward dispatch, train/eval, state listing, dtype conversion and
 * free. Each layer's constructor and forward live in src/nn/layers.c (layout: module.h).
 * Tests: tests/graph/test_nn.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

clg_status clg__module_new(clg_context *ctx, const clg__module_def *def, const char *name, clg_module **out) {
    *out = NULL;
    clg_module *m = calloc(1, sizeof *m);
    char *nm = clg__strdup(name ? name : "");
    if (!m || !nm) {
        free(m);
        free(nm);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s module: out of host memory", def->kind);
    }
    m->ctx = ctx;
    m->def = def;
    m->name = nm;
    m->training = true; /* PyTorch's modules start in training mode */
    m->dtype = CLG_F32;
    m->weight = m->bias = CLG__NO_ENTRY;
    m->running_mean = m->running_var = m->num_batches_tracked = CLG__NO_ENTRY;
    *out = m;
    return CLG_OK;
}

clg_status clg__module_add(clg_module *m, const char *leaf, clg_tensor *t, bool trainable, int *index) {
    if (m->n_state == m->cap_state) {
        size_t cap = m->cap_state ? 2 * m->cap_state : 4;
        void *grown = realloc(m->state, cap * sizeof *m->state);
        if (!grown) {
            clg_tensor_free(t);
            return clg__fail(m->ctx, CLG_OUT_OF_HOST_MEMORY, "%s module: out of host memory", m->def->kind);
        }
        m->state = grown;
        m->cap_state = cap;
    }
    /* "conv1" + "weight" -> "conv1.weight"; without a prefix the leaf alone, as PyTorch
     * names the state of a bare layer. */
    const size_t len = strlen(m->name) + 1 + strlen(leaf) + 1;
    char *full = malloc(len);
    if (!full) {
        clg_tensor_free(t);
        return clg__fail(m->ctx, CLG_OUT_OF_HOST_MEMORY, "%s module: out of host memory", m->def->kind);
    }
    if (m->name[0])
        snprintf(full, len, "%s.%s", m->name, leaf);
    else
        snprintf(full, len, "%s", leaf);
    m->state[m->n_state] = (clg__module_entry){full, t, trainable};
    *index = (int)m->n_state++;
    return CLG_OK;
}

clg_tensor *clg__module_entry_tensor(const clg_module *m, int i) {
    return i == CLG__NO_ENTRY ? NULL : m->state[i].tensor;
}

void clg_module_free(clg_module *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_children; i++)
        clg_module_free(m->children[i]);
    free(m->children);
    for (size_t i = 0; i < m->n_state; i++) {
        free(m->state[i].name);
        clg_tensor_free(m->state[i].tensor);
    }
    free(m->state);
    clg_tensor_free(m->one);
    free(m->name);
    free(m);
}

clg_status clg_module_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_forward: out is NULL");
    *out = NULL;
    if (!m) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_forward: module is NULL");
    if (m->ctx != ctx)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_module_forward: the module belongs to another context");
    clg_status st = clg__check(ctx, x, "clg_module_forward", "x");
    if (st != CLG_OK) return st;
    return m->def->forward(ctx, m, x, out);
}

void clg_module_train(clg_module *m, bool training) {
    if (!m) return;
    m->training = training;
    for (size_t i = 0; i < m->n_children; i++)
        clg_module_train(m->children[i], training);
}

/* Own entries, then the children's, depth first: PyTorch's state_dict order. */
static void state_walk(const clg_module *m, clg_named_tensor *entries, size_t cap, size_t *n,
                       bool trainable_only, clg_tensor **params) {
    for (size_t i = 0; i < m->n_state; i++) {
        const clg__module_entry *e = &m->state[i];
        if (trainable_only && !e->trainable) continue;
        if (*n < cap) {
            if (entries) entries[*n] = (clg_named_tensor){e->name, e->tensor, e->trainable};
            if (params) params[*n] = e->tensor;
        }
        (*n)++;
    }
    for (size_t i = 0; i < m->n_children; i++)
        state_walk(m->children[i], entries, cap, n, trainable_only, params);
}

size_t clg_module_state(const clg_module *m, clg_named_tensor *entries, size_t cap) {
    size_t n = 0;
    if (m) state_walk(m, entries, entries ? cap : 0, &n, false, NULL);
    return n;
}

size_t clg_module_parameters(const clg_module *m, clg_tensor **params, size_t cap) {
    size_t n = 0;
    if (m) state_walk(m, NULL, params ? cap : 0, &n, true, params);
    return n;
}

/* ---------------------------------------------------------------- dtype conversion */

/* Every tensor slot the module tree owns (state entries and the batch-norm constant). */
static size_t slots_walk(clg_module *m, clg_tensor ***slots, size_t n) {
    for (size_t i = 0; i < m->n_state; i++) {
        if (slots) slots[n] = &m->state[i].tensor;
        n++;
    }
    if (m->one) {
        if (slots) slots[n] = &m->one;
        n++;
    }
    for (size_t i = 0; i < m->n_children; i++)
        n = slots_walk(m->children[i], slots, n);
    return n;
}

static void set_dtype(clg_module *m, clg_dtype dtype) {
    m->dtype = dtype;
    for (size_t i = 0; i < m->n_children; i++)
        set_dtype(m->children[i], dtype);
}

clg_status clg_module_to_dtype(clg_module *m, clg_dtype dtype) {
    if (!m) return CLG_INVALID_ARGUMENT;
    clg_context *ctx = m->ctx;
    if (dtype != CLG_F32 && dtype != CLG_F64)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_to_dtype: unknown dtype %d", (int)dtype);
    if (dtype == CLG_F64 && !ctx->info.fp64)
        return clg__fail(ctx, CLG_UNSUPPORTED,
                         "clg_module_to_dtype: f64 needs a device with fp64; %s has none", ctx->info.name);
    const size_t n = slots_walk(m, NULL, 0);
    clg_tensor ***slots = malloc((n ? n : 1) * sizeof *slots);
    clg_tensor **fresh = calloc(n ? n : 1, sizeof *fresh);
    clg_status st = slots && fresh
                        ? CLG_OK
                        : clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_module_to_dtype: out of host memory");
    if (st == CLG_OK) slots_walk(m, slots, 0);
    /* All conversions first, then the swap: a failure leaves the module as it was. */
    for (size_t i = 0; st == CLG_OK && i < n; i++) {
        clg_tensor *old = *slots[i];
        if (old->dtype == dtype) {
            fresh[i] = clg_tensor_ref(old);
            continue;
        }
        st = clg_tensor_cast(old, dtype, &fresh[i]);
        if (st == CLG_OK && old->requires_grad) st = clg_tensor_set_requires_grad(fresh[i], true);
    }
    for (size_t i = 0; i < n; i++) {
        if (st == CLG_OK) {
            clg_tensor_free(*slots[i]);
            *slots[i] = fresh[i];
        } else {
            clg_tensor_free(fresh[i]);
        }
    }
    if (st == CLG_OK) set_dtype(m, dtype);
    free(slots);
    free(fresh);
    return st;
}

/* ---------------------------------------------------------------- sequential */

static clg_status sequential_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    /* An empty container is the identity, as torch.nn.Sequential(). */
    clg_tensor *cur = clg_tensor_ref((clg_tensor *)x);
    for (size_t i = 0; i < m->n_children; i++) {
        clg_tensor *next = NULL;
        clg_status st = clg_module_forward(ctx, m->children[i], cur, &next);
        /* The graph keeps its own references, so intermediates can go at once. */
        clg_tensor_free(cur);
        if (st != CLG_OK) return st;
        cur = next;
    }
    *out = cur;
    return CLG_OK;
}

static const clg__module_def sequential_def = {"sequential", sequential_forward};

clg_status clg_sequential_create(clg_context *ctx, clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_sequential_create: out is NULL");
    return clg__module_new(ctx, &sequential_def, NULL, out);
}

clg_status clg_sequential_add(clg_module *seq, clg_module *child) {
    if (!seq) {
        clg_module_free(child);
        return CLG_INVALID_ARGUMENT;
    }
    clg_context *ctx = seq->ctx;
    if (seq->def != &sequential_def) {
        clg_module_free(child);
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_sequential_add: the container is a %s, not a sequential", seq->def->kind);
    }
    if (!child) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_sequential_add: child is NULL");
    /* Freeing these would free the container itself or another owner's module, so they are
     * the one case where ownership is not taken. */
    for (const clg_module *a = seq; a; a = a->parent)
        if (a == child)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_sequential_add: a module cannot contain itself");
    if (child->parent)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_sequential_add: the child already belongs to a container");
    if (child->ctx != ctx) {
        clg_module_free(child);
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "clg_sequential_add: the child belongs to another context");
    }
    if (seq->n_children == seq->cap_children) {
        size_t cap = seq->cap_children ? 2 * seq->cap_children : 8;
        void *grown = realloc(seq->children, cap * sizeof *seq->children);
        if (!grown) {
            clg_module_free(child);
            return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_sequential_add: out of host memory");
        }
        seq->children = grown;
        seq->cap_children = cap;
    }
    child->parent = seq;
    seq->children[seq->n_children++] = child;
    return CLG_OK;
}
