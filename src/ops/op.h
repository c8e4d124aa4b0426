/* src/ops/op.h - what the ops share: the floors below (tensors, autograd, the GEMM entry), the
 * one picker of kernel variants and the work-group size of reductions. One op family per
 * file: src/ops/x.c, its kernels in cl/ops/x.cl (program "ops/x"), its tests in
 * tests/ops/test_x.c. Shared helpers: src/ops/op.c.
 */
#ifndef CLGRAD_OPS_OP_H
#define CLGRAD_OPS_OP_H

#include "blas/blas.h"
#include "tensor/tensor.h"

/* Kernel variants. A kernel written once for both styles has a plain name and is fetched
 * with clg__kernel_dt. A kernel with a CPU-style form comes as a pair in one program:
 * `name` (GPU style: an item per element, work-group trees in local memory) and `name_cpu`
 * (CPU style: runs of elements or whole rows per item, sequential sums, no local memory).
 * This is the one place that chooses between them, by clg__cpu_style(ctx); the caller
 * launches the chosen form with its own argument list and shape. */
#define CLG_CPU_SUFFIX "_cpu"
clg_status clg__op_kernel(clg_context *ctx, const char *program, const char *name, clg_dtype dtype,
                          const char *extra, cl_kernel *out);

/* The work-group size of a one-group-per-result reduction (a tree in local memory): the
 * largest power of two that kernel k and the device allow, at most 256. what names the op
 * for errors. */
clg_status clg__reduce_local_size(clg_context *ctx, cl_kernel k, const char *what, size_t *local);

/* A launch with an explicit work-group shape; global and local are size_t arrays of dims
 * entries, written in parentheses: CLG_LAUNCH_ND(ctx, k, 2, ((size_t[]){rows, n}),
 * ((size_t[]){1, 1}), "what", CLG_ARG(a), ...). The argument count comes from CLG_NARGS_, as
 * in core's CLG_LAUNCH1D / CLG_LAUNCH_ELEMS / CLG_LAUNCH_ROWS. */
#define CLG_LAUNCH_ND(ctx, k, dims, global, local, what, ...)                                                 \
    clg__launch((ctx), (k), (dims), (global), (local), (clg_karg[]){__VA_ARGS__},                              \
                (cl_uint)CLG_NARGS_(__VA_ARGS__), (what))

#endif
