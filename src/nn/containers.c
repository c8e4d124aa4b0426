/* src/nn/containers.c - the containers that are not a chain: module_list (children named by
 * index, nn.ModuleList) and module_dict (children by key, nn.ModuleDict). Neither has a
 * forward of its own: the module holding them runs the children. The chain, sequential, is
 * in sequential.c. Tests: tests/nn/test_containers.c.
 */
#include "nn/nn.h"

static clg_status no_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    (void)x;
    (void)out;
    return clg__fail(ctx, CLG_UNSUPPORTED, "%s: a %s has no forward; its parent runs its children",
                     m->def->kind, m->def->kind);
}

static const clg_module_def module_list_def = {
    .kind = "module_list", .forward = no_forward, .index_names = true};
static const clg_module_def module_dict_def = {.kind = "module_dict", .forward = no_forward};

clg_status clg_module_list_create(clg_context *ctx, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_module_list_create");
    return clg_module_create(ctx, &module_list_def, NULL, out);
}

clg_status clg_module_dict_create(clg_context *ctx, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_module_dict_create");
    return clg_module_create(ctx, &module_dict_def, NULL, out);
}

/* The container must be of kind def; otherwise child is freed, as clg_module_add_child does
 * with a child it refuses. */
static clg_status check_kind(clg_module *m, const clg_module_def *def, clg_module *child, const char *fn) {
    if (!m || m->def == def) return CLG_OK;
    clg_module_free(child);
    return clg__fail(m->ctx, CLG_INVALID_ARGUMENT, "%s: the container is a %s, not a %s", fn, m->def->kind,
                     def->kind);
}

clg_status clg_module_list_append(clg_module *list, clg_module *child) {
    clg_status st = check_kind(list, &module_list_def, child, "clg_module_list_append");
    return st != CLG_OK ? st : clg__module_attach(list, NULL, child, "clg_module_list_append");
}

clg_status clg_module_dict_set(clg_module *dict, const char *key, clg_module *child) {
    clg_status st = check_kind(dict, &module_dict_def, child, "clg_module_dict_set");
    if (st != CLG_OK) return st;
    if (dict && (!key || !key[0])) {
        /* The one refusal before attach, by its ownership rule: the child is freed unless it
         * has an owner already or contains the dict. */
        bool owned = child && child->parent;
        for (const clg_module *a = dict; child && a && !owned; a = a->parent)
            owned = a == child;
        if (child && !owned) clg_module_free(child);
        return clg__fail(dict->ctx, CLG_INVALID_ARGUMENT, "clg_module_dict_set: the key must be non-empty");
    }
    return clg__module_attach(dict, key, child, "clg_module_dict_set");
}
