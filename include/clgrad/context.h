/* clgrad/context.h - the context: one OpenCL device, its in-order queue, the program
 * cache, the buffer pool and the last error message. Implemented in src/core/context.c
 * (device choice in src/core/device.c, programs in src/core/program_cache.c).
 * Tests: tests/core/test_context.c.
 *
 * Threads: a context and everything made from it is used by one thread at a time; different
 * contexts are independent, also while being created from several threads at once. clgrad's
 * one process-wide state is a once-guard (pthread_once) around the first device enumeration
 * of the process: OpenCL's ICD loader and drivers initialise lazily and are not safe to
 * initialise from several threads at once, so the first clg_context_create, clg_devices_list
 * or clg_device_choose runs it once while other threads wait (tests/core/test_threads.c).
 */
#ifndef CLGRAD_CONTEXT_H
#define CLGRAD_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120 /* the OpenCL 1.2 API, unless the application chose another */
#endif
#include <CL/cl.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One device with its queue, programs, buffer pool and last error (opaque): clg_context_create,
 * clg_context_free. */
typedef struct clg_context clg_context;

/* Log levels for the optional log callback; the library itself never prints. */
typedef enum clg_log_level { CLG_LOG_DEBUG = 0, CLG_LOG_INFO = 1, CLG_LOG_WARN = 2 } clg_log_level;
typedef void (*clg_log_fn)(void *user, clg_log_level level, const char *message);

/* Which form of the kernels a context runs. CPU style: a run of elements or whole rows per
 * work-item, sequential per-channel reductions, no local memory. GPU style: an item per
 * element, work-group tree reductions in local memory. Both give results within rounding of
 * each other; the choice is fixed for the context's life (results are bit-identical per style). */
typedef enum clg_kernel_style {
    CLG_KERNEL_STYLE_AUTO = 0, /* CLGRAD_KERNEL_STYLE (cpu|gpu|auto), else by device: CPU style on
                                  devices that are CPUs and nothing else */
    CLG_KERNEL_STYLE_GPU = 1,
    CLG_KERNEL_STYLE_CPU = 2,
} clg_kernel_style;

/* Options of clg_context_create; start from clg_context_default_params(). */
typedef struct clg_context_params {
    /* Device choice: NULL reads CLGRAD_DEVICE, and without it picks the first GPU, else
     * accelerator, else CPU across all platforms, counting only devices of exactly that type:
     * a device reporting several types (the Oclgrind simulator says ACCELERATOR | GPU | CPU)
     * comes after all of them. Forms: "gpu" / "cpu" (a device of exactly that type first, else
     * any with that type bit), "P:D" (platform and device index), or a case-insensitive
     * substring of the device name, else of the platform's name or vendor ("oclgrind", "pocl").
     * "PLATFORM:FORM" limits a choice to platforms whose name or vendor contains PLATFORM:
     * "pocl:cpu", "oclgrind:", "nvidia:gpu". */
    const char *device;
    /* Binary program cache folder: NULL reads CLGRAD_CACHE_DIR, else $XDG_CACHE_HOME/clgrad,
     * else ~/.cache/clgrad. "off" disables the on-disk tier. */
    const char *cache_dir;
    /* Read kernels from this folder (same layout as cl/) instead of the embedded copies:
     * NULL reads CLGRAD_KERNEL_DIR; unset uses the embedded sources. */
    const char *kernel_dir;
    /* Adopt an application's OpenCL objects: all three set, or all NULL. They are retained
     * on adopt and released on clg_context_free; the application keeps its own references. */
    cl_context cl_ctx;
    cl_device_id cl_device;
    cl_command_queue cl_queue;
    /* Optional log sink (cache hits, builds, tuning). Called on the context's thread. */
    clg_log_fn log;
    void *log_user;
    /* Upper bound of conv2d's im2col buffer in bytes; big batches run in chunks. 0 = 64 MiB. */
    size_t conv_workspace_bytes;
    /* Kernel form; AUTO reads CLGRAD_KERNEL_STYLE, then decides by device type. */
    clg_kernel_style kernel_style;
    /* true (or CLGRAD_PROFILE=1): the queue records timestamps, so that clg_profiler_start can
     * time kernels. Off, the queue has no profiling property and launches make no events. */
    bool profiling;
} clg_context_params;

CLG_API clg_context_params clg_context_default_params(void); /* every field zero: NULL, 0, AUTO, false */

/* Creates a context. On failure *out is NULL and, when err is not NULL, err (err_len bytes)
 * holds why, e.g. the list of devices when the choice matched none.
 * Ownership: the caller owns *out and frees it with clg_context_free. */
CLG_API clg_status clg_context_create(const clg_context_params *params, clg_context **out,
                                      char *err, size_t err_len);
/* Frees the context: its queue, programs and cached pool buffers. Free every tensor, module
 * and optimizer made from it first: their buffers belong to its pool, and an object still
 * alive afterwards can neither be used nor freed. NULL is a no-op. */
CLG_API void clg_context_free(clg_context *ctx);

/* The kernel style the context runs (CPU or GPU, never AUTO); CPU for NULL. */
CLG_API clg_kernel_style clg_context_kernel_style(const clg_context *ctx);

/* The last error on this context: "<call>: <cause>: <detail>". The context owns the text;
 * it stays valid until the next call on the context. Empty when nothing failed yet. */
CLG_API const char *clg_context_errmsg(const clg_context *ctx);

/* Waits until every queued command on the context's queue has finished. */
CLG_API clg_status clg_context_finish(clg_context *ctx);

/* The context's OpenCL objects (borrowed; valid until clg_context_free). */
CLG_API cl_context clg_context_cl_context(const clg_context *ctx);
CLG_API cl_device_id clg_context_cl_device(const clg_context *ctx);
CLG_API cl_command_queue clg_context_cl_queue(const clg_context *ctx);

/* ---- devices ---- */
/* One OpenCL device as clgrad sees it (clg_context_device_info, clg_devices_list). */
typedef struct clg_device_info {
    char name[256]; /* CL_DEVICE_NAME */
    char vendor[128]; /* CL_DEVICE_VENDOR */
    char platform_name[128]; /* CL_PLATFORM_NAME */
    char platform_version[128]; /* CL_PLATFORM_VERSION */
    char driver_version[128]; /* CL_DRIVER_VERSION */
    int platform_index, device_index; /* its place in clg_devices_list's order (the "P:D" choice) */
    cl_device_type type; /* CL_DEVICE_TYPE bits */
    unsigned compute_units; /* CL_DEVICE_MAX_COMPUTE_UNITS */
    uint64_t global_mem_bytes, local_mem_bytes; /* CL_DEVICE_GLOBAL_MEM_SIZE, CL_DEVICE_LOCAL_MEM_SIZE */
    size_t max_work_group_size; /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    bool fp64, fp16; /* double and half precision supported */
} clg_device_info;

/* The context's device. */
CLG_API clg_status clg_context_device_info(const clg_context *ctx, clg_device_info *info);
/* Every device of every platform, in platform then device order. Writes up to cap entries
 * and the total number to *count. */
CLG_API clg_status clg_devices_list(clg_device_info *infos, size_t cap, size_t *count);
/* Which entry of clg_devices_list a choice picks (NULL or "" = the default choice; the
 * environment is not read here). err gets the reason when nothing matches. */
CLG_API clg_status clg_device_choose(const char *choice, size_t *index, char *err, size_t err_len);

/* ---- programs ---- */
/* How clg_program_prepare came by the program. */
typedef struct clg_build_report {
    double seconds;       /* wall time of this call */
    bool from_memory;     /* already compiled in this context */
    bool from_disk;       /* loaded from the binary cache */
} clg_build_report;

/* Compiles (or finds) the embedded program `name` ("ops/conv2d") with extra build options,
 * and writes its binary to the cache folder on every device. Programs compile lazily on first
 * use anyway; this is for warm-up, tools and tests.
 * A build failure returns CLG_BUILD_FAILED with the build log in the error message. */
CLG_API clg_status clg_program_prepare(clg_context *ctx, const char *name, const char *options,
                                       clg_build_report *report);
/* Writes the binary of every program the context compiled and the cache folder lacks, so that
 * later contexts on this device load them instead of compiling: the ahead-of-time warm-up
 * (clgrad-info --warm runs a model's training step, then this). A program compiled on first
 * use is written at once, except on devices that are CPUs and nothing else: their drivers
 * (PoCL) make code per kernel at its first launch and keep their own cache, and a binary asked
 * for compiles every kernel of the program first, which would cost a cold start more than the
 * file saves later (README, "Cold start"). *written (may be NULL): files written. With the
 * disk tier off it writes nothing and returns CLG_OK; CLG_IO_ERROR when a file cannot be
 * written. */
CLG_API clg_status clg_program_save_all(clg_context *ctx, size_t *written);
/* The cache folder in use, or "" when the disk tier is off. Owned by the context. */
CLG_API const char *clg_context_cache_dir(const clg_context *ctx);

/* ---- memory pool ---- */
/* The buffer pool's counters (clg_context_pool_stats). */
typedef struct clg_pool_stats {
    size_t bytes_in_use;     /* handed out to live tensors */
    size_t bytes_cached;     /* freed back to the pool, kept for reuse */
    uint64_t driver_allocs;  /* clCreateBuffer calls so far */
    uint64_t hits;           /* requests served from the pool */
    uint64_t misses;         /* requests that needed a driver allocation */
} clg_pool_stats;

/* The pool's counters now. */
CLG_API clg_pool_stats clg_context_pool_stats(const clg_context *ctx);
/* Releases every cached (unused) buffer to the driver, like torch.cuda.empty_cache(). */
CLG_API void clg_context_pool_trim(clg_context *ctx);

/* ---- profiler (src/core/profile.c) ----
 * Between start and stop, every kernel launch on the context (CLBlast's GEMMs included) is
 * recorded: its op name, its phase (forward, backward inside clg_backward, optimizer inside
 * clg_optimizer_step), the device time from OpenCL's event profiling, and the host time spent
 * enqueueing it and since the previous launch. Needs a context made with params.profiling (or
 * CLGRAD_PROFILE=1): CLG_INVALID_STATE otherwise. Stopped (the default) a launch pays one
 * flag test. */
CLG_API clg_status clg_profiler_start(clg_context *ctx);
CLG_API void clg_profiler_stop(clg_context *ctx);
/* Forgets what was recorded (and releases its events). */
CLG_API void clg_profiler_reset(clg_context *ctx);
/* One (op, phase) line of the profiler's summary (clg_profiler_summary). */
typedef struct clg_profile_row {
    const char *name;     /* the op, e.g. "conv2d", "gemm (clblast)"; owned by the context */
    const char *phase;    /* "forward", "backward" or "optimizer" */
    uint64_t launches; /* kernel launches */
    double device_ms;     /* kernel execution, summed */
    double enqueue_ms;    /* host time inside the enqueue calls */
    double host_gap_ms;   /* host time between the previous launch and this op's launches */
} clg_profile_row;
/* Waits for the queue and fills up to cap rows, one per (op, phase), by device time, most first;
 * *n_rows gets how many there are. Names stay valid until clg_context_free. */
CLG_API clg_status clg_profiler_summary(clg_context *ctx, clg_profile_row *rows, size_t cap, size_t *n_rows);
/* The recorded launches as a Chrome trace JSON file (Perfetto, chrome://tracing; the format
 * torch.profiler exports): a host track with the enqueues and a device track with the kernels,
 * written atomically. */
CLG_API clg_status clg_profiler_write_trace(clg_context *ctx, const char *path);

/* ---- autograd switch (per context, no global state) ---- */
/* false: ops record no graph (evaluation). Returns the previous value. */
CLG_API bool clg_set_grad_enabled(clg_context *ctx, bool enabled);
CLG_API bool clg_grad_enabled(const clg_context *ctx);

/* ---- fault injection (tests only) ---- */
/* What clg_context_inject_fault makes fail: a buffer allocation, a program build, a kernel enqueue. */
typedef enum clg_fault_kind { CLG_FAULT_ALLOC = 0, CLG_FAULT_BUILD = 1, CLG_FAULT_ENQUEUE = 2 } clg_fault_kind;
/* Makes the n-th future event of that kind (1 = the next) fail as the driver would;
 * 0 disarms. Returns the number of such events seen so far (to size a sweep). */
CLG_API uint64_t clg_context_inject_fault(clg_context *ctx, clg_fault_kind kind, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
