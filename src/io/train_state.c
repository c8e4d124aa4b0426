/* src/io/train_state.c - the training-state file for an exact resume (include/clgrad/io.h):
 * the model's state, the optimizer's per-parameter state tensors under "optim.<param>.<slot>",
 * and every counter (steps per parameter, group rates, dropout draws, epoch, batch, global step,
 * schedule step) as exact decimal strings in __metadata__, so that a device without fp64 loses
 * nothing. Tests: tests/io/test_train_state.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/io.h"
#include "optim/optim.h"

#define FORMAT "clgrad-train-state-1"

/* A growing list of owned strings (names, metadata) and entries. */
typedef struct builder {
    clg_named_tensor *entries;
    size_t n, cap;
    char **meta; /* pairs */
    size_t n_meta, cap_meta;
    char **owned; /* every string to free */
    size_t n_owned, cap_owned;
    bool oom;
} builder;

static char *own(builder *b, char *s) {
    if (!s) return b->oom = true, NULL;
    if (b->n_owned == b->cap_owned) {
        size_t cap = b->cap_owned ? 2 * b->cap_owned : 64;
        char **g = realloc(b->owned, cap * sizeof *g);
        if (!g) return free(s), b->oom = true, NULL;
        b->owned = g, b->cap_owned = cap;
    }
    return b->owned[b->n_owned++] = s;
}

/* "prefix" + a + "." + c (c may be NULL: no dot). */
static char *join(builder *b, const char *prefix, const char *a, const char *c) {
    const size_t n = strlen(prefix) + strlen(a) + (c ? strlen(c) + 1 : 0) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s%s", prefix, a, c ? "." : "", c ? c : "");
    return own(b, s);
}

static void add_entry(builder *b, const char *name, clg_tensor *t) {
    if (b->oom || !name) return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        clg_named_tensor *g = realloc(b->entries, cap * sizeof *g);
        if (!g) {
            b->oom = true;
            return;
        }
        b->entries = g, b->cap = cap;
    }
    b->entries[b->n++] = (clg_named_tensor){name, t, false};
}

static void add_meta(builder *b, const char *key, const char *value) {
    if (b->oom || !key || !value) {
        b->oom = true;
        return;
    }
    if (b->n_meta == b->cap_meta) {
        size_t cap = b->cap_meta ? 2 * b->cap_meta : 32;
        char **g = realloc(b->meta, 2 * cap * sizeof *g);
        if (!g) {
            b->oom = true;
            return;
        }
        b->meta = g, b->cap_meta = cap;
    }
    b->meta[2 * b->n_meta] = (char *)key;
    b->meta[2 * b->n_meta + 1] = (char *)value;
    b->n_meta++;
}

static void add_number(builder *b, const char *key, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    add_meta(b, key, own(b, clg__strdup(buf)));
}

static void add_u64(builder *b, const char *key, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    add_meta(b, key, own(b, clg__strdup(buf)));
}

static void builder_free(builder *b) {
    for (size_t i = 0; i < b->n_owned; i++)
        free(b->owned[i]);
    free(b->owned);
    free(b->entries);
    free(b->meta);
}

/* The state name of each optimizer parameter (NULL where the module has no such parameter). */
static clg_status param_names(clg_context *ctx, const clg_module *m, const clg_optimizer *opt, const char ***out) {
    const size_t np = clg_module_named_parameters(m, NULL, 0);
    clg_named_tensor *named = calloc(np ? np : 1, sizeof *named);
    const char **names = calloc(opt->n ? opt->n : 1, sizeof *names);
    if (!named || !names) {
        free(named);
        free(names);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "train state: out of host memory");
    }
    clg_module_named_parameters(m, named, np);
    for (size_t i = 0; i < opt->n; i++) {
        for (size_t j = 0; j < np && !names[i]; j++)
            if (named[j].tensor == opt->params[i].param) names[i] = named[j].name;
        if (!names[i]) {
            free(named);
            free(names);
            return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                             "train state: optimizer parameter %zu is not a parameter of the module", i);
        }
    }
    free(named);
    *out = names;
    return CLG_OK;
}

/* Calls fn on every module of the tree with a random-draw counter, depth first. */
static void each_counter(clg_module *m, void (*fn)(clg_module *, uint64_t *, void *), void *user) {
    const clg_module_def *def = clg_module_def_of(m);
    if (def && def->rng_counter) fn(m, def->rng_counter(m), user);
    for (size_t i = 0; i < clg_module_child_count(m); i++)
        each_counter(clg_module_child(m, i), fn, user);
}

static void save_counter(clg_module *m, uint64_t *c, void *user) {
    builder *b = user;
    add_u64(b, join(b, "rng.", clg_module_path(m), NULL), *c);
}

clg_status clg_train_state_save(clg_context *ctx, const char *path, const clg_module *m, const clg_optimizer *opt,
                                const clg_lr_scheduler *sched, const clg_train_counters *c) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!path || !m || !opt || !c)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_train_state_save: path, module, optimizer or counters is NULL");
    const char **names = NULL;
    clg_status st = param_names(ctx, m, opt, &names);
    if (st != CLG_OK) return st;
    builder b = {0};
    const size_t ns = clg_module_state(m, NULL, 0);
    clg_named_tensor *state = calloc(ns ? ns : 1, sizeof *state);
    if (!state) b.oom = true;
    else clg_module_state(m, state, ns);
    for (size_t i = 0; state && i < ns; i++)
        add_entry(&b, state[i].name, state[i].tensor);
    add_meta(&b, "format", FORMAT);
    add_meta(&b, "optimizer", opt->kind->name);
    if (!strcmp(opt->kind->name, "sgd")) {
        add_number(&b, "sgd.momentum", opt->hp.sgd.momentum);
        add_number(&b, "sgd.dampening", opt->hp.sgd.dampening);
        add_meta(&b, "sgd.nesterov", opt->hp.sgd.nesterov ? "true" : "false");
    } else {
        add_number(&b, "adam.beta1", opt->hp.adam.beta1);
        add_number(&b, "adam.beta2", opt->hp.adam.beta2);
        add_number(&b, "adam.eps", opt->hp.adam.eps);
        add_meta(&b, "adam.decoupled_weight_decay", opt->hp.adam.decoupled_weight_decay ? "true" : "false");
    }
    for (size_t g = 0; g < opt->ngroups; g++) {
        char key[48];
        snprintf(key, sizeof key, "optim.group.%zu.lr", g);
        add_number(&b, own(&b, clg__strdup(key)), opt->groups[g].lr);
        snprintf(key, sizeof key, "optim.group.%zu.weight_decay", g);
        add_number(&b, own(&b, clg__strdup(key)), opt->groups[g].weight_decay);
    }
    const size_t slots = clg_optimizer_state_count(opt);
    for (size_t i = 0; i < opt->n; i++) {
        add_u64(&b, join(&b, "optim.", names[i], "step"), opt->params[i].steps);
        for (size_t s = 0; s < slots; s++)
            if (opt->params[i].state[s])
                add_entry(&b, join(&b, "optim.", names[i], clg_optimizer_state_name(opt, s)),
                          opt->params[i].state[s]);
    }
    each_counter((clg_module *)m, save_counter, &b);
    add_u64(&b, "train.epoch", c->epoch);
    add_number(&b, "train.batch", (double)c->batch);
    add_number(&b, "train.step", (double)c->step);
    add_number(&b, "sched.last_step", sched ? (double)clg_lr_scheduler_last_step(sched) : -1.0);
    if (b.oom) st = clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_train_state_save: out of host memory");
    if (st == CLG_OK) {
        clg_save_params sp = clg_save_default_params();
        sp.metadata = (const char *const *)b.meta;
        sp.n_metadata = b.n_meta;
        st = clg_safetensors_save_with(ctx, path, b.entries, b.n, sp);
    }
    builder_free(&b);
    free(state);
    free(names);
    return st;
}

/* ---------------------------------------------------------------- load */
static const char *meta_get(const clg_st_file *f, const char *key) {
    for (size_t i = 0; i < f->n_metadata; i++)
        if (!strcmp(f->metadata[2 * i], key)) return f->metadata[2 * i + 1];
    return NULL;
}

static const clg_st_entry *entry_get(const clg_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_entries; i++)
        if (!strcmp(f->entries[i].name, name)) return &f->entries[i];
    return NULL;
}

static bool parse_u64(const char *s, uint64_t *v) {
    char *end;
    if (!s || !*s || *s == '-') return false;
    *v = strtoull(s, &end, 10);
    return *end == '\0';
}

static bool parse_double(const char *s, double *v) {
    char *end;
    if (!s || !*s) return false;
    *v = strtod(s, &end);
    return *end == '\0';
}

/* The entry's values into t (same element count), converting F32/F64 as needed. */
static clg_status write_entry(clg_context *ctx, const clg_st_entry *e, clg_tensor *t) {
    const size_t n = clg_tensor_numel(t), es = e->dtype == CLG_F64 ? 8 : 4;
    if (e->bytes != n * es)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "train state: %s holds %zu bytes, the tensor %zu values",
                         e->name, e->bytes, n);
    void *host = malloc(clg_tensor_bytes(t) ? clg_tensor_bytes(t) : 1);
    if (!host) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "train state: out of host memory");
    io__st_values(e, clg_tensor_dtype(t), host, n);
    clg_status st = clg_tensor_write(t, host, clg_tensor_bytes(t));
    free(host);
    return st;
}

typedef struct counter_load {
    const clg_st_file *f;
    clg_context *ctx;
    clg_status st;
    bool apply;
} counter_load;

static void load_counter(clg_module *m, uint64_t *c, void *user) {
    counter_load *l = user;
    if (l->st != CLG_OK) return;
    char key[512];
    snprintf(key, sizeof key, "rng.%s", clg_module_path(m));
    uint64_t v;
    if (!parse_u64(meta_get(l->f, key), &v))
        l->st = clg__fail(l->ctx, CLG_BAD_FORMAT, "train state: no counter %s", key);
    else if (l->apply)
        *c = v;
}

static bool same_shape(const clg_st_entry *e, const clg_tensor *t) {
    if (e->ndim == 0) return clg_tensor_numel(t) == 1;
    if (e->ndim != clg_tensor_ndim(t)) return false;
    return memcmp(e->shape, clg_tensor_shape(t), sizeof(int) * (size_t)e->ndim) == 0;
}

clg_status clg_train_state_load(clg_context *ctx, const char *path, clg_module *m, clg_optimizer *opt,
                                clg_lr_scheduler *sched, clg_train_counters *c) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!path || !m || !opt || !c)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_train_state_load: path, module, optimizer or counters is NULL");
    clg_st_file f;
    char err[512] = "";
    clg_status st = clg_st_read(path, &f, err, sizeof err);
    if (st != CLG_OK) return clg__fail(ctx, st, "clg_train_state_load: %s: %s", path, err);
    const char **names = NULL;
    clg_named_tensor *state = NULL;
    uint64_t *steps = NULL;
    const char *fmt_v = meta_get(&f, "format"), *kind = meta_get(&f, "optimizer");
    if (!fmt_v || strcmp(fmt_v, FORMAT)) {
        st = clg__fail(ctx, CLG_BAD_FORMAT, "clg_train_state_load: %s is not a training state (format \"%s\")", path,
                       fmt_v ? fmt_v : "none");
        goto done;
    }
    if (!kind || strcmp(kind, opt->kind->name)) {
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "clg_train_state_load: %s was saved with %s, the optimizer is %s",
                       path, kind ? kind : "?", opt->kind->name);
        goto done;
    }
    if ((st = param_names(ctx, m, opt, &names))) goto done;
    /* Check everything first: names, shapes, counters. */
    const size_t ns = clg_module_state(m, NULL, 0);
    state = calloc(ns ? ns : 1, sizeof *state);
    steps = calloc(opt->n ? opt->n : 1, sizeof *steps);
    if (!state || !steps) {
        st = clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "clg_train_state_load: out of host memory");
        goto done;
    }
    clg_module_state(m, state, ns);
    for (size_t i = 0; i < ns && st == CLG_OK; i++) {
        const clg_st_entry *e = entry_get(&f, state[i].name);
        if (!e || !same_shape(e, state[i].tensor))
            st = clg__fail(ctx, e ? CLG_SHAPE_MISMATCH : CLG_BAD_FORMAT, "clg_train_state_load: %s: %s %s", path,
                           state[i].name, e ? "has another shape" : "is missing");
    }
    const size_t slots = clg_optimizer_state_count(opt);
    char key[512];
    for (size_t i = 0; i < opt->n && st == CLG_OK; i++) {
        snprintf(key, sizeof key, "optim.%s.step", names[i]);
        if (!parse_u64(meta_get(&f, key), &steps[i])) {
            st = clg__fail(ctx, CLG_BAD_FORMAT, "clg_train_state_load: %s: no %s", path, key);
            break;
        }
        for (size_t s = 0; s < slots && st == CLG_OK; s++) {
            snprintf(key, sizeof key, "optim.%s.%s", names[i], clg_optimizer_state_name(opt, s));
            const clg_st_entry *e = entry_get(&f, key);
            if (e && !same_shape(e, opt->params[i].param))
                st = clg__fail(ctx, CLG_SHAPE_MISMATCH, "clg_train_state_load: %s: %s has another shape", path, key);
        }
    }
    double lr[64];
    for (size_t g = 0; g < opt->ngroups && st == CLG_OK; g++) {
        snprintf(key, sizeof key, "optim.group.%zu.lr", g);
        if (g >= 64 || !parse_double(meta_get(&f, key), &lr[g]))
            st = clg__fail(ctx, CLG_BAD_FORMAT, "clg_train_state_load: %s: no %s (groups differ?)", path, key);
    }
    uint64_t epoch = 0;
    double batch = 0, step = 0, last = -1;
    if (st == CLG_OK && !(parse_u64(meta_get(&f, "train.epoch"), &epoch) &&
                          parse_double(meta_get(&f, "train.batch"), &batch) &&
                          parse_double(meta_get(&f, "train.step"), &step) &&
                          parse_double(meta_get(&f, "sched.last_step"), &last)))
        st = clg__fail(ctx, CLG_BAD_FORMAT, "clg_train_state_load: %s: the train.* counters are missing", path);
    counter_load cl = {&f, ctx, st, false};
    if (st == CLG_OK) each_counter(m, load_counter, &cl), st = cl.st;
    /* Then write. */
    for (size_t i = 0; i < ns && st == CLG_OK; i++)
        st = write_entry(ctx, entry_get(&f, state[i].name), state[i].tensor);
    for (size_t i = 0; i < opt->n && st == CLG_OK; i++) {
        for (size_t s = 0; s < slots && st == CLG_OK; s++) {
            snprintf(key, sizeof key, "optim.%s.%s", names[i], clg_optimizer_state_name(opt, s));
            const clg_st_entry *e = entry_get(&f, key);
            if (!e) { /* not allocated when saved: drop ours too */
                clg_tensor_free(opt->params[i].state[s]);
                opt->params[i].state[s] = NULL;
                continue;
            }
            if ((st = clg__optimizer_state(opt, i, (int)s)) == CLG_OK) st = write_entry(ctx, e, opt->params[i].state[s]);
        }
        opt->params[i].steps = steps[i];
    }
    for (size_t g = 0; g < opt->ngroups && st == CLG_OK; g++)
        opt->groups[g].lr = lr[g];
    if (st == CLG_OK && sched && last >= 0) st = clg_lr_scheduler_set_last_step(sched, (int64_t)last);
    if (st == CLG_OK) {
        cl.apply = true;
        each_counter(m, load_counter, &cl);
        st = cl.st;
    }
    if (st == CLG_OK) *c = (clg_train_counters){epoch, (int64_t)batch, (int64_t)step};
done:
    free(names);
    free(state);
    free(steps);
    clg_st_file_free(&f);
    return st;
}
