/* src/core/core.h - the bottom floor: the context (device, queue, error message, log, fault
 * injection, kernel style, slots where higher floors keep per-context state), the buffer pool,
 * the program cache and the kernel launch helpers. Every other floor builds on this header;
 * it names nothing above it. Sources: src/core/. Tests: tests/core/.
 */
#ifndef CLGRAD_CORE_CORE_H
#define CLGRAD_CORE_CORE_H

#include <stdarg.h>
#include <stddef.h>

#include "clgrad.h"
#include "core/host.h"

/* ---------------------------------------------------------------- memory pool (pool.c) */
typedef struct clg_pool_block {
    cl_mem mem;
    size_t capacity; /* bytes, a size class */
} clg_pool_block;

typedef struct clg_pool {
    clg_pool_block *free_blocks; /* cached, unused; searched by exact size class */
    size_t n_free, cap_free;
    clg_pool_stats stats;
} clg_pool;

/* Rounds bytes up to its size class: powers of two and the midpoints between them. */
size_t clg__pool_size_class(size_t bytes);
clg_status clg__pool_alloc(clg_context *ctx, size_t bytes, clg_pool_block *out);
void clg__pool_release(clg_context *ctx, clg_pool_block block);
void clg__pool_destroy(clg_pool *pool);

/* ---------------------------------------------------------------- program cache (program_cache.c) */
typedef struct clg_kernel_entry {
    char *name;
    cl_kernel kernel;
} clg_kernel_entry;

typedef struct clg_program_entry {
    char *name;    /* "ops/conv2d" */
    char *options; /* full build options */
    cl_program program;
    clg_kernel_entry *kernels;
    size_t n_kernels;
    bool from_disk; /* loaded from the disk tier (rebuilt from source when a kernel is missing) */
    bool retired;   /* replaced by a rebuild; kept, never found, until the context is freed */
    uint64_t disk_key; /* its file name in the disk tier */
    bool on_disk;      /* its binary is in the cache folder (loaded from there or written) */
} clg_program_entry;

/* ---------------------------------------------------------------- context (context.c) */
/* A higher floor's per-context state (GEMM path choices, say): core keeps it and calls its
 * teardown at clg_context_free without knowing what it is. The key is the address of a static
 * object of the floor that owns the slot. */
typedef void (*clg_teardown_fn)(clg_context *ctx, void *state);
typedef struct clg_context_slot {
    const void *key;
    void *state;
    clg_teardown_fn teardown;
} clg_context_slot;
#define CLG_CONTEXT_SLOTS 4

struct clg_context {
    cl_platform_id platform;
    cl_device_id device;
    cl_context cl_ctx;
    cl_command_queue queue;
    clg_device_info info;

    char *errmsg; /* owned, never NULL after create */
    size_t errmsg_cap;

    char *cache_dir;  /* NULL when the disk tier is off */
    char *kernel_dir; /* NULL: embedded sources */
    clg_program_entry *programs;
    size_t n_programs;

    clg_pool pool;
    clg_context_slot slots[CLG_CONTEXT_SLOTS]; /* higher floors' state, torn down in reverse */

    bool grad_enabled;
    clg_log_fn log;
    void *log_user;
    size_t conv_workspace_bytes;
    clg_kernel_style kernel_style; /* CPU or GPU, decided once at creation (context.c) */

    uint64_t backward_epoch; /* marks nodes visited by the current backward */
    /* profiler (src/core/profile.c): NULL until first started */
    struct clg_profiler *profiler;
    bool profiling;  /* launches record events now */
    int phase;       /* clg_phase of the launches being made */
    uint64_t fault_seen[3];
    uint64_t fault_at[3]; /* absolute event number that fails; 0 = disarmed */
};

/* What the launches being made are part of, for the profiler: autograd's backward walk and
 * the optimizers set it around their work. */
typedef enum clg_phase { CLG_PHASE_FORWARD = 0, CLG_PHASE_BACKWARD = 1, CLG_PHASE_OPTIMIZER = 2 } clg_phase;
typedef struct clg_profiler clg_profiler;
/* Around one enqueue: begin returns the event slot to pass to the enqueue (NULL when not
 * profiling: pass NULL), end records it (enqueued: the enqueue succeeded). */
cl_event *clg__profile_begin(clg_context *ctx, const char *what, double *t0);
void clg__profile_end(clg_context *ctx, cl_event *ev, bool enqueued);
void clg__profiler_free(clg_context *ctx);

/* Sets the context's message to "fmt..." and returns status: the one way errors are made. */
clg_status clg__fail(clg_context *ctx, clg_status status, const char *fmt, ...) CLG_PRINTF(3, 4);
/* Maps an OpenCL error to a status with "<call>: <CL_ERROR_NAME>" (+ detail). */
clg_status clg__cl_fail(clg_context *ctx, cl_int err, const char *call);
const char *clg__cl_error_name(cl_int err);
void clg__log(clg_context *ctx, clg_log_level level, const char *fmt, ...) CLG_PRINTF(3, 4);
/* Counts an event of that kind; true when fault injection says this one must fail. */
bool clg__fault(clg_context *ctx, clg_fault_kind kind);
/* The state a higher floor keeps under key, or NULL before it set one. */
void *clg__context_slot(const clg_context *ctx, const void *key);
/* Stores state under key; teardown(ctx, state) runs at clg_context_free, before the pool and
 * the programs go, in reverse order of registration. Fails when every slot is taken. */
clg_status clg__context_slot_set(clg_context *ctx, const void *key, void *state, clg_teardown_fn teardown);

/* ---------------------------------------------------------------- kernels */
/* "-DREAL=float" or "-DREAL=double -DREAL_IS_DOUBLE=1". */
const char *clg__dtype_options(clg_dtype dtype);
/* The compiled program (lazy, cached per (name, options); disk tier underneath). */
clg_status clg__program(clg_context *ctx, const char *name, const char *options,
                        clg_program_entry **out, clg_build_report *report);
/* A kernel of a program, created once and reused. options may be NULL. */
clg_status clg__kernel(clg_context *ctx, const char *program, const char *kernel,
                       const char *options, cl_kernel *out);
/* Same, with the dtype's options (plus extra, which may be NULL). */
clg_status clg__kernel_dt(clg_context *ctx, const char *program, const char *kernel,
                          clg_dtype dtype, const char *extra, cl_kernel *out);
/* The embedded (or CLGRAD_KERNEL_DIR) source of a program, and the registry itself. */
clg_status clg__kernel_source(clg_context *ctx, const char *name, char **source, size_t *len);
size_t clg__registry_count(void);
const char *clg__registry_name(size_t i);

typedef struct clg_karg {
    size_t size;
    const void *value; /* NULL with size > 0: local memory of that size */
} clg_karg;
#define CLG_ARG(v) ((clg_karg){sizeof(v), &(v)})
#define CLG_LOCAL(bytes) ((clg_karg){(bytes), NULL})

/* A REAL kernel argument: v as float or double to match the program's dtype. The slot holds
 * the value until the launch that reads it: CLG_ARG stores addresses, not values. */
typedef union clg_real {
    float f;
    double d;
} clg_real;
static inline clg_karg clg__real(clg_dtype dt, clg_real *slot, double v) {
    if (dt == CLG_F64) {
        slot->d = v;
        return (clg_karg){sizeof slot->d, &slot->d};
    }
    slot->f = (float)v;
    return (clg_karg){sizeof slot->f, &slot->f};
}

/* Sets args and enqueues. global is rounded up to a multiple of local (or of 64 when
 * local is NULL), so kernels must guard their index. what names the op for errors. */
clg_status clg__launch(clg_context *ctx, cl_kernel k, cl_uint dims, const size_t *global,
                       const size_t *local, const clg_karg *args, cl_uint nargs, const char *what);
/* Element-wise launches: the kernel gets one more argument, `chunk`, and loops with
 * FOR_ELEMS (cl/common/defs.h). GPUs run one element per work-item (chunk 1); CPU devices a
 * contiguous run per work-item, which PoCL vectorises ~10x better than one item per element. */
size_t clg__elems_chunk(const clg_context *ctx, size_t n);
clg_status clg__launch_elems(clg_context *ctx, cl_kernel k, size_t n, const clg_karg *args, cl_uint nargs,
                             const char *what);
/* A device that is a CPU and nothing else (the DEFAULT bit aside): simulators such as Oclgrind
 * report CPU | GPU | ACCELERATOR and are not. The one such test, for the kernel style and the
 * GEMM path rule alike. */
static inline bool clg__device_is_plain_cpu(const clg_context *ctx) {
    return (ctx->info.type & (CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) ==
           CL_DEVICE_TYPE_CPU;
}
/* True where kernels take the CPU form (runs of elements or whole rows per work-item,
 * sequential per-channel sums): ctx->kernel_style, decided once in context.c. */
static inline bool clg__cpu_style(const clg_context *ctx) { return ctx->kernel_style == CLG_KERNEL_STYLE_CPU; }
/* Row launches (CPU style): `rows` rows of row_len elements; the kernel gets `chunk` (rows per
 * work-item, so each item streams about as many elements as an element launch) appended and
 * loops FOR_ELEMS(r, rows, chunk) over whole rows. Meant for CPU style (local size 1 there). */
clg_status clg__launch_rows(clg_context *ctx, cl_kernel k, size_t rows, size_t row_len, const clg_karg *args,
                            cl_uint nargs, const char *what);
#define CLG_LAUNCH_ROWS(ctx, k, rows, row_len, what, ...)                                      \
    clg__launch_rows((ctx), (k), (rows), (row_len), (clg_karg[]){__VA_ARGS__},                   \
                     (cl_uint)CLG_NARGS_(__VA_ARGS__), (what))
/* CLG_LAUNCH_ELEMS(ctx, kernel, n, "relu", CLG_ARG(y), CLG_ARG(x), CLG_ARG(n)) */
#define CLG_LAUNCH_ELEMS(ctx, k, n, what, ...)                                                \
    clg__launch_elems((ctx), (k), (n), (clg_karg[]){__VA_ARGS__}, (cl_uint)CLG_NARGS_(__VA_ARGS__), (what))
#define CLG_NARGS_(...) (sizeof((clg_karg[]){__VA_ARGS__}) / sizeof(clg_karg))
/* CLG_LAUNCH1D(ctx, kernel, n, "relu", CLG_ARG(a), CLG_ARG(b)) */
#define CLG_LAUNCH1D(ctx, k, n, what, ...)                                                    \
    clg__launch((ctx), (k), 1, (size_t[]){(n)}, NULL, (clg_karg[]){__VA_ARGS__},             \
                (cl_uint)CLG_NARGS_(__VA_ARGS__), (what))

#endif
