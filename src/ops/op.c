/* src/ops/op.c - the helpers every op family shares (declared in src/ops/op.h): the kernel
 * variant picker and the reduction work-group size. Exercised by every test under tests/ops,
 * each of which runs in both kernel styles.
 */
#include <stdio.h>

#include "ops/op.h"

clg_status clg__op_kernel(clg_context *ctx, const char *program, const char *name, clg_dtype dtype,
                          const char *extra, cl_kernel *out) {
    if (!clg__cpu_style(ctx)) return clg__kernel_dt(ctx, program, name, dtype, extra, out);
    char full[96];
    const int w = snprintf(full, sizeof full, "%s" CLG_CPU_SUFFIX, name);
    if (w < 0 || (size_t)w >= sizeof full)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: kernel name %s is too long", program, name);
    return clg__kernel_dt(ctx, program, full, dtype, extra, out);
}

clg_status clg__reduce_local_size(clg_context *ctx, cl_kernel k, const char *what, size_t *local) {
    size_t kwg = 0;
    cl_int err = clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL);
    if (err != CL_SUCCESS) {
        char call[96];
        snprintf(call, sizeof call, "%s: clGetKernelWorkGroupInfo", what);
        return clg__cl_fail(ctx, err, call);
    }
    size_t cap = kwg < 256 ? kwg : 256;
    if (ctx->info.max_work_group_size && ctx->info.max_work_group_size < cap) cap = ctx->info.max_work_group_size;
    size_t l = 1;
    while (l * 2 <= cap)
        l *= 2;
    *local = l;
    return CLG_OK;
}
