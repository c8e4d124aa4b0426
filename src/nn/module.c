/* src/nn/module.c - the generic module core every kind shares: creation from a definition,
 * named parameters, buffers and children with dotted state names, forward dispatch,
 * train/eval, state listing, dtype conversion and free. The layers are definitions in their
 * own files (conv2d_module.c, ...). Tests: tests/nn/test_module.c and the other tests/nn/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

clg_status clg__module_drop(clg_module *m, clg_status st) {
    clg_module_free(m);
    return st;
}

/* "a" + "b" -> "a.b"; an empty side drops the dot. NULL when out of memory. */
static char *join(const char *prefix, const char *leaf) {
    if (!prefix[0]) return clg__strdup(leaf);
    if (!leaf[0]) return clg__strdup(prefix);
    const size_t len = strlen(prefix) + 1 + strlen(leaf) + 1;
    char *s = malloc(len);
    if (s) snprintf(s, len, "%s.%s", prefix, leaf);
    return s;
}

clg_status clg_module_create(clg_context *ctx, const clg_module_def *def, const char *name, clg_module **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_create: out is NULL");
    *out = NULL;
    if (!def || !def->kind || !def->forward)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_create: the definition needs a kind and a forward");
    clg_module *m = calloc(1, sizeof *m);
    char *nm = clg__strdup(name ? name : "");
    char *path = clg__strdup(name ? name : "");
    void *state = def->state_size ? calloc(1, def->state_size) : NULL;
    if (!m || !nm || !path || (def->state_size && !state)) {
        free(m);
        free(nm);
        free(path);
        free(state);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s module: out of host memory", def->kind);
    }
    m->ctx = ctx;
    m->def = def;
    m->name = nm;
    m->path = path;
    m->state = state;
    m->training = true; /* PyTorch's modules start in training mode */
    m->dtype = CLG_F32;
    *out = m;
    return CLG_OK;
}

/* Registration rules shared by parameters and buffers; takes t in every case. */
static clg_status add_entry(clg_module *m, const char *leaf, clg_tensor *t, bool trainable, bool persistent,
                            const char *fn) {
    if (!m) {
        clg_tensor_free(t);
        return CLG_INVALID_ARGUMENT;
    }
    clg_context *ctx = m->ctx;
    clg_status st = CLG_OK;
    if (!leaf || !leaf[0] || strchr(leaf, '.'))
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: the name \"%s\" must be non-empty and have no '.'", fn,
                       leaf ? leaf : "(null)");
    else if (clg_module_get_tensor(m, leaf))
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: the %s module already has \"%s\"", fn, m->def->kind, leaf);
    else if (!t)
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: the tensor \"%s\" is NULL", fn, leaf);
    else if (clg_tensor_context(t) != ctx)
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: \"%s\" belongs to another context", fn, leaf);
    else if (trainable)
        st = clg_tensor_set_requires_grad(t, true);
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    if (m->n_entries == m->cap_entries) {
        const size_t cap = m->cap_entries ? 2 * m->cap_entries : 4;
        void *grown = realloc(m->entries, cap * sizeof *m->entries);
        if (!grown) {
            clg_tensor_free(t);
            return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: out of host memory", fn);
        }
        m->entries = grown;
        m->cap_entries = cap;
    }
    char *lf = clg__strdup(leaf), *full = join(m->path, leaf);
    if (!lf || !full) {
        free(lf);
        free(full);
        clg_tensor_free(t);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: out of host memory", fn);
    }
    m->entries[m->n_entries++] = (clg_module_entry){lf, full, t, trainable, trainable || persistent};
    return CLG_OK;
}

clg_status clg_module_add_parameter(clg_module *m, const char *leaf, clg_tensor *t) {
    return add_entry(m, leaf, t, true, true, "clg_module_add_parameter");
}

clg_status clg_module_add_buffer(clg_module *m, const char *leaf, clg_tensor *t, bool persistent) {
    return add_entry(m, leaf, t, false, persistent, "clg_module_add_buffer");
}

/* ---------------------------------------------------------------- children */

/* Every name string of m's tree that depends on its path (module paths, entry names), in one
 * fixed order; slots NULL counts them. */
static size_t name_slots(clg_module *m, char ***slots, size_t n) {
    if (slots) slots[n] = &m->path;
    n++;
    for (size_t i = 0; i < m->n_entries; i++) {
        if (slots) slots[n] = &m->entries[i].name;
        n++;
    }
    for (size_t i = 0; i < m->n_children; i++)
        n = name_slots(m->children[i], slots, n);
    return n;
}

/* The names of m's tree under prefix, in name_slots' order. False when out of memory. */
static bool fresh_names(const clg_module *m, const char *prefix, const char *name, char **fresh, size_t *n) {
    char *path = join(prefix, name);
    fresh[(*n)++] = path;
    if (!path) return false;
    for (size_t i = 0; i < m->n_entries; i++)
        if (!(fresh[(*n)++] = join(path, m->entries[i].leaf))) return false;
    for (size_t i = 0; i < m->n_children; i++)
        if (!fresh_names(m->children[i], path, m->children[i]->name, fresh, n)) return false;
    return true;
}

clg_status clg_module_add_child(clg_module *parent, const char *name, clg_module *child) {
    return clg__module_attach(parent, name, child, "clg_module_add_child");
}

clg_status clg__module_attach(clg_module *parent, const char *name, clg_module *child, const char *fn) {
    if (!parent) {
        clg_module_free(child);
        return CLG_INVALID_ARGUMENT;
    }
    clg_context *ctx = parent->ctx;
    if (!child) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: child is NULL", fn);
    /* Freeing these would free the parent itself or another owner's module, so they are the
     * cases where ownership is not taken. */
    for (const clg_module *a = parent; a; a = a->parent)
        if (a == child) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: a module cannot contain itself", fn);
    if (child->parent)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: the child already belongs to a %s module", fn,
                         child->parent->def->kind);
    clg_status st = CLG_OK;
    /* The name it will have: the one given, else its own, else (in a container with index
     * names, as nn.Sequential and nn.ModuleList) its position. */
    char index[24];
    const char *final = name ? name : child->name;
    if (!final[0] && parent->def->index_names) {
        snprintf(index, sizeof index, "%zu", parent->n_children);
        final = index;
    }
    if (child->ctx != ctx)
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: the child belongs to another context", fn);
    else if (strchr(final, '.'))
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: the name \"%s\" has a '.'", fn, final);
    else if (final[0] && clg_module_get_child(parent, final))
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: the %s module already has a child named \"%s\"", fn,
                       parent->def->kind, final);
    if (st != CLG_OK) return clg__module_drop(child, st);

    /* Everything that can fail comes first (the new names, the grown array), so a failure
     * leaves parent as it was. */
    char *nm = clg__strdup(final);
    const size_t n = name_slots(child, NULL, 0);
    char **fresh = calloc(n, sizeof *fresh);
    char ***slots = malloc(n * sizeof *slots);
    size_t made = 0;
    bool ok = nm && fresh && slots && fresh_names(child, parent->path, nm, fresh, &made);
    if (ok && parent->n_children == parent->cap_children) {
        const size_t cap = parent->cap_children ? 2 * parent->cap_children : 8;
        void *grown = realloc(parent->children, cap * sizeof *parent->children);
        if (grown) {
            parent->children = grown;
            parent->cap_children = cap;
        }
        ok = grown != NULL;
    }
    if (!ok) {
        for (size_t i = 0; fresh && i < made; i++)
            free(fresh[i]);
        free(fresh);
        free(slots);
        free(nm);
        return clg__module_drop(child, clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: out of host memory", fn));
    }
    name_slots(child, slots, 0);
    for (size_t i = 0; i < n; i++) {
        free(*slots[i]);
        *slots[i] = fresh[i];
    }
    free(fresh);
    free(slots);
    free(child->name);
    child->name = nm;
    child->parent = parent;
    parent->children[parent->n_children++] = child;
    return CLG_OK;
}

/* ---------------------------------------------------------------- accessors */

clg_tensor *clg_module_get_tensor(const clg_module *m, const char *leaf) {
    if (!m || !leaf) return NULL;
    for (size_t i = 0; i < m->n_entries; i++)
        if (strcmp(m->entries[i].leaf, leaf) == 0) return m->entries[i].tensor;
    return NULL;
}

size_t clg_module_child_count(const clg_module *m) { return m ? m->n_children : 0; }
clg_module *clg_module_child(const clg_module *m, size_t i) {
    return m && i < m->n_children ? m->children[i] : NULL;
}
void *clg_module_kind_state(const clg_module *m) { return m ? m->state : NULL; }
const clg_module_def *clg_module_def_of(const clg_module *m) { return m ? m->def : NULL; }
clg_context *clg_module_context(const clg_module *m) { return m ? m->ctx : NULL; }
const char *clg_module_name(const clg_module *m) { return m ? m->name : NULL; }
clg_module *clg_module_parent(const clg_module *m) { return m ? m->parent : NULL; }
bool clg_module_is_training(const clg_module *m) { return m && m->training; }
const char *clg_module_path(const clg_module *m) { return m ? m->path : NULL; }

clg_module *clg_module_get_child(const clg_module *m, const char *name) {
    if (!m || !name || !name[0]) return NULL;
    for (size_t i = 0; i < m->n_children; i++)
        if (strcmp(m->children[i]->name, name) == 0) return m->children[i];
    return NULL;
}

/* The tensor at dotted path rel under m: "leaf", or "child.rest". Unnamed children add no
 * component to state names, so the search looks through them as the names do. */
static clg_tensor *find_tensor(const clg_module *m, const char *rel) {
    const char *dot = strchr(rel, '.');
    if (!dot) {
        clg_tensor *t = clg_module_get_tensor(m, rel);
        if (t) return t;
    }
    const size_t len = dot ? (size_t)(dot - rel) : 0;
    for (size_t i = 0; i < m->n_children; i++) {
        const clg_module *c = m->children[i];
        clg_tensor *t = NULL;
        if (!c->name[0])
            t = find_tensor(c, rel);
        else if (dot && strlen(c->name) == len && strncmp(c->name, rel, len) == 0)
            t = find_tensor(c, dot + 1);
        if (t) return t;
    }
    return NULL;
}

clg_tensor *clg_module_find_tensor(const clg_module *m, const char *name) {
    return m && name && name[0] ? find_tensor(m, name) : NULL;
}

void clg_module_manual_seed(clg_module *m, uint64_t seed) {
    if (!m) return;
    m->gen_seed = seed;
    m->gen_draws = 0;
}

uint64_t clg__module_next_seed(clg_module *m) { return clg__rand_u64(m->gen_seed, m->gen_draws++); }

static clg_status reset_walk(clg_module *m, clg_module *gen) {
    clg_status st = m->def->reset_parameters ? m->def->reset_parameters(m, gen) : CLG_OK;
    for (size_t i = 0; st == CLG_OK && i < m->n_children; i++)
        st = reset_walk(m->children[i], gen);
    return st;
}

clg_status clg_module_reset_parameters(clg_module *m) { return m ? reset_walk(m, m) : CLG_INVALID_ARGUMENT; }
clg_dtype clg_module_dtype(const clg_module *m) { return m ? m->dtype : CLG_F32; }

/* ---------------------------------------------------------------- the recursive operations */

void clg_module_free(clg_module *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_children; i++)
        clg_module_free(m->children[i]);
    free(m->children);
    if (m->state && m->def->free) m->def->free(m->state);
    free(m->state);
    for (size_t i = 0; i < m->n_entries; i++) {
        free(m->entries[i].leaf);
        free(m->entries[i].name);
        clg_tensor_free(m->entries[i].tensor);
    }
    free(m->entries);
    free(m->path);
    free(m->name);
    free(m);
}

/* Puts the failing module's dotted path before the op's message ("encoder.fc2: linear: ..."),
 * once: the innermost named module that failed adds it, and the containers it sits in see
 * their own path already leading the message (a descendant's path starts with theirs). */
void clg__module_name_failure(clg_module *m, clg_status st) {
    const char *msg = clg_context_errmsg(m->ctx);
    const size_t n = strlen(m->path);
    if (!n || (strncmp(msg, m->path, n) == 0 && (msg[n] == ':' || msg[n] == '.'))) return;
    char *copy = clg__strdup(msg);
    if (copy) clg__fail(m->ctx, st, "%s: %s", m->path, copy);
    free(copy);
}

clg_status clg_module_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_forward: out is NULL");
    *out = NULL;
    if (!m) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_forward: module is NULL");
    if (m->ctx != ctx)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_module_forward: the module belongs to another context");
    clg_status st = clg__check(ctx, x, "clg_module_forward", "x");
    if (st != CLG_OK) return st;
    st = m->def->forward(ctx, m, x, out);
    if (st != CLG_OK && *out) { /* a user forward that failed after making its result */
        clg_tensor_free(*out);
        *out = NULL;
    }
    if (st != CLG_OK) clg__module_name_failure(m, st);
    return st;
}

static void set_training(clg_module *m, bool training) {
    m->training = training;
    for (size_t i = 0; i < m->n_children; i++)
        set_training(m->children[i], training);
}

static void tell_training(clg_module *m, bool training) {
    if (m->def->train) m->def->train(m, training);
    for (size_t i = 0; i < m->n_children; i++)
        tell_training(m->children[i], training);
}

void clg_module_train(clg_module *m, bool training) {
    if (!m) return;
    /* Flags first, so a hook that looks at its children sees the whole tree switched. */
    set_training(m, training);
    tell_training(m, training);
}

/* Own parameters, own persistent buffers, then the children's, depth first: PyTorch's
 * state_dict order. */
static void state_walk(const clg_module *m, clg_named_tensor *entries, size_t cap, size_t *n,
                       bool trainable_only, clg_tensor **params) {
    for (int pass = 0; pass < 2; pass++) {
        const bool want_trainable = pass == 0;
        if (trainable_only && !want_trainable) break;
        for (size_t i = 0; i < m->n_entries; i++) {
            const clg_module_entry *e = &m->entries[i];
            if (e->trainable != want_trainable || !e->persistent) continue;
            if (*n < cap) {
                if (entries) entries[*n] = (clg_named_tensor){e->name, e->tensor, e->trainable};
                if (params) params[*n] = e->tensor;
            }
            (*n)++;
        }
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

size_t clg_module_named_parameters(const clg_module *m, clg_named_tensor *entries, size_t cap) {
    size_t n = 0;
    if (m) state_walk(m, entries, entries ? cap : 0, &n, true, NULL);
    return n;
}

/* Every parameter of the tree, in state order, to fn. */
static void each_parameter(clg_module *m, void (*fn)(clg_tensor *t, void *arg), void *arg) {
    for (size_t i = 0; i < m->n_entries; i++)
        if (m->entries[i].trainable) fn(m->entries[i].tensor, arg);
    for (size_t i = 0; i < m->n_children; i++)
        each_parameter(m->children[i], fn, arg);
}

static void count_elems(clg_tensor *t, void *arg) { *(size_t *)arg += t->numel; }
static void zero_one(clg_tensor *t, void *arg) {
    (void)arg;
    clg_tensor_zero_grad(t);
}
/* A parameter that is not a leaf (registered from an op's result) keeps its flag. */
static void set_one(clg_tensor *t, void *arg) { (void)clg_tensor_set_requires_grad(t, *(bool *)arg); }

size_t clg_module_parameter_count(const clg_module *m) {
    size_t n = 0;
    if (m) each_parameter((clg_module *)m, count_elems, &n);
    return n;
}

void clg_module_zero_grad(clg_module *m) {
    if (m) each_parameter(m, zero_one, NULL);
}

void clg_module_requires_grad(clg_module *m, bool requires_grad) {
    if (m) each_parameter(m, set_one, &requires_grad);
}

/* ---------------------------------------------------------------- dtype conversion */

/* Every tensor slot the tree owns, non-persistent buffers included. */
static size_t tensor_slots(clg_module *m, clg_tensor ***slots, size_t n) {
    for (size_t i = 0; i < m->n_entries; i++) {
        if (slots) slots[n] = &m->entries[i].tensor;
        n++;
    }
    for (size_t i = 0; i < m->n_children; i++)
        n = tensor_slots(m->children[i], slots, n);
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
        return clg__fail(ctx, CLG_UNSUPPORTED, "clg_module_to_dtype: f64 needs a device with fp64; %s has none",
                         ctx->info.name);
    const size_t n = tensor_slots(m, NULL, 0);
    clg_tensor ***slots = malloc((n ? n : 1) * sizeof *slots);
    clg_tensor **fresh = calloc(n ? n : 1, sizeof *fresh);
    clg_status st =
        slots && fresh ? CLG_OK : clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_module_to_dtype: out of host memory");
    if (st == CLG_OK) tensor_slots(m, slots, 0);
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
