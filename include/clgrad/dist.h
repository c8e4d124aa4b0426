/* clgrad/dist.h - data-parallel training over MPI (src/dist/, part of libclgrad when it is
 * built with MPI: the meson feature `mpi`, auto, on when Open MPI is found; then this header
 * is installed and clgrad.pc requires MPI privately). One process per replica, each with its own
 * context on its own device; replicas start from rank 0's state and average their gradients
 * after each backward, so N ranks with batch b each train as one process with batch N b (for
 * models without batch statistics; batch norm keeps per-replica statistics, as PyTorch DDP,
 * unless clg_dist_sync_batch_norm synchronizes it: then batch-norm models too).
 * The application calls MPI_Init / MPI_Finalize; clgrad never does.
 *
 * Determinism: gradients are summed in double by a ring (reduce-scatter, then all-gather) that
 * clgrad drives itself with MPI_Sendrecv, in a fixed chunk order and fixed buckets, so the sum
 * is bit-identical on every rank and in every run for a given number of ranks, whatever
 * algorithm MPI would pick for MPI_Allreduce. Buckets are staged through host memory (OpenCL
 * has no peer transport); communication starts after backward (no overlap yet).
 *
 * Failures: the communicator returns errors (MPI_ERRORS_RETURN) as CLG_COMM_ERROR with the
 * MPI message; clg_dist_abort ends every rank with a message naming this one. A rank that dies
 * (a signal, an exit) makes mpirun end the job. Tests: tests/dist/ (mpirun -np 2).
 */
#ifndef CLGRAD_DIST_H
#define CLGRAD_DIST_H

#include <mpi.h>

#include "context.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* This process's place in a data-parallel group over MPI (opaque). */
typedef struct clg_dist clg_dist;

/* Joins comm (duplicated: the application keeps its own, e.g. MPI_COMM_WORLD). MPI must be
 * initialised. err gets the reason on failure. Ownership: free *out with clg_dist_free before
 * MPI_Finalize. */
CLG_API clg_status clg_dist_create(MPI_Comm comm, clg_dist **out, char *err, size_t err_len);
CLG_API void clg_dist_free(clg_dist *d);
CLG_API int clg_dist_rank(const clg_dist *d);
CLG_API int clg_dist_world_size(const clg_dist *d);
/* The rank among the processes on this host (MPI_Comm_split_type, shared memory). */
CLG_API int clg_dist_local_rank(const clg_dist *d);

/* This rank's device: when neither p->device nor CLGRAD_DEVICE chooses one and the host has
 * plain GPUs, the (local_rank mod count)-th of them as "P:D" (written into buf, which p->device
 * then points to); otherwise p is left alone (the ranks share the default device). */
CLG_API void clg_dist_context_params(const clg_dist *d, clg_context_params *p, char *buf, size_t len);

/* Every rank gets rank 0's parameters and persistent buffers (names and shapes must agree). */
CLG_API clg_status clg_dist_broadcast_module(clg_dist *d, clg_context *ctx, clg_module *m);
/* Replaces every gradient of params by its mean over the ranks. Each rank must pass the same
 * parameters in the same order with gradients on the same ones (a parameter without a gradient
 * on every rank is skipped; on some ranks only: CLG_INVALID_STATE on all). */
CLG_API clg_status clg_dist_average_grads(clg_dist *d, clg_context *ctx, clg_tensor *const *params, size_t n);
/* Synchronized batch norm (SyncBatchNorm) for every batch_norm2d layer in m's tree: training
 * statistics over the global batch, each layer summing 2C + 1 doubles in its forward and 2C in
 * its backward by the same ring as the gradients (clg_module_sync_batch_norm with
 * clg_dist_replica_sum(d)). Every rank must call it on the same model; d must outlive the
 * model's training forwards and backwards. Returns how many layers it set. */
CLG_API size_t clg_dist_sync_batch_norm(clg_dist *d, clg_module *m);
/* The ring's deterministic sum as a clg_replica_sum (for clg_sync_batch_norm2d in a module of
 * one's own); its user is d, which must outlive its use. */
CLG_API clg_replica_sum clg_dist_replica_sum(clg_dist *d);
/* values[0..n) summed over the ranks in place (metrics: loss sums, correct counts). */
CLG_API clg_status clg_dist_sum(clg_dist *d, double *values, int n);
/* Bytes this rank sent for gradients and synchronized batch-norm statistics, and seconds it
 * spent communicating them (staging and waiting for the other ranks included) since creation. */
CLG_API void clg_dist_stats(const clg_dist *d, uint64_t *bytes_sent, double *seconds);
/* Prints "clgrad: rank R of N: message" to stderr and ends every rank (MPI_Abort). */
CLG_API void clg_dist_abort(clg_dist *d, int code, const char *message);

#ifdef __cplusplus
}
#endif
#endif
