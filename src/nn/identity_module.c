/* src/nn/identity_module.c - the identity layer (torch.nn.Identity): y is x, a new
 * reference, recording nothing. Tests: tests/nn/test_containers.c.
 */
#include "nn/nn.h"

static clg_status identity_forward(clg_context *ctx, clg_module *m, const clg_tensor *x, clg_tensor **out) {
    (void)ctx;
    (void)m;
    *out = clg_tensor_ref((clg_tensor *)x);
    return CLG_OK;
}

static const clg_module_def identity_def = {.kind = "identity", .forward = identity_forward};

clg_status clg_identity_module_create(clg_context *ctx, clg_module **out) {
    CLG__CHECK_CREATE(ctx, out, "clg_identity_module_create");
    return clg_module_create(ctx, &identity_def, NULL, out);
}
