/* src/core/internal.h - what the library's own files share and users never see: the
 * context's layout, the one error helper, kernel lookup and launch helpers, the pool,
 * the tensor layout and the autograd node. Public API: include/clgrad.h.
 */
#ifndef CLGRAD_INTERNAL_H
#define CLGRAD_INTERNAL_H

#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>

#include "clgrad.h"

#if defined(__GNUC__)
#define CLG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLG_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------- memory pool (src/mem) */
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

/* ---------------------------------------------------------------- program cache (src/core) */
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
} clg_program_entry;

struct clg_blas_state; /* src/blas, opaque to the rest */

/* ---------------------------------------------------------------- context */
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
    struct clg_blas_state *blas;

    bool grad_enabled;
    clg_log_fn log;
    void *log_user;
    size_t conv_workspace_bytes;
    int kernel_style; /* 0: by device type; 1: GPU style (an item per element); 2: CPU style (runs, rows) */

    uint64_t backward_epoch; /* marks nodes visited by the current backward */
    uint64_t fault_seen[3];
    uint64_t fault_at[3]; /* absolute event number that fails; 0 = disarmed */
};

/* Sets the context's message to "fmt..." and returns status: the one way errors are made. */
clg_status clg__fail(clg_context *ctx, clg_status status, const char *fmt, ...) CLG_PRINTF(3, 4);
/* Maps an OpenCL error to a status with "<call>: <CL_ERROR_NAME>" (+ detail). */
clg_status clg__cl_fail(clg_context *ctx, cl_int err, const char *call);
const char *clg__cl_error_name(cl_int err);
void clg__log(clg_context *ctx, clg_log_level level, const char *fmt, ...) CLG_PRINTF(3, 4);
/* Counts an event of that kind; true when fault injection says this one must fail. */
bool clg__fault(clg_context *ctx, clg_fault_kind kind);
/* Formats into a caller buffer (context creation has no context yet). */
void clg__fmt(char *buf, size_t len, const char *fmt, ...) CLG_PRINTF(3, 4);
/* strdup that reports failure by NULL. */
char *clg__strdup(const char *s);

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
/* True where kernels should take the CPU form (runs of elements or whole rows per work-item,
 * sequential per-channel sums): ctx->kernel_style when set, else a CPU device. */
bool clg__cpu_style(const clg_context *ctx);
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

/* ---------------------------------------------------------------- tensors (src/tensor) */
typedef struct clg_buffer {
    clg_pool_block block;
    int refcount; /* views share one buffer */
} clg_buffer;

struct clg_node;

struct clg_tensor {
    int refcount;
    clg_context *ctx;
    clg_dtype dtype;
    int ndim;
    int shape[CLG_MAX_DIMS];
    size_t numel;
    clg_buffer *buf;

    bool requires_grad;
    bool grad_valid;        /* grad holds a value (else the next backward writes beta = 0) */
    clg_tensor *grad;       /* leaves only; owned */
    struct clg_node *grad_fn; /* the node that produced this tensor; owned reference */
};

/* A tensor with an uninitialised buffer from the pool. */
clg_status clg__tensor_new(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape,
                           clg_tensor **out);
/* Same dtype and shape as like. */
clg_status clg__tensor_like(const clg_tensor *like, clg_tensor **out);
/* A tensor sharing src's buffer with another shape of the same numel. */
clg_status clg__tensor_view(const clg_tensor *src, int ndim, const int *shape, clg_tensor **out);
bool clg__same_shape(const clg_tensor *a, const clg_tensor *b);
/* "(2, 3, 4)" into buf. */
const char *clg__shape_str(const clg_tensor *t, char *buf, size_t len);
/* NULL check plus context check: every op calls it on each input. */
clg_status clg__check(clg_context *ctx, const clg_tensor *t, const char *op, const char *what);
/* Requires equal shapes; message names both. */
clg_status clg__check_same(clg_context *ctx, const clg_tensor *a, const clg_tensor *b,
                           const char *op, const char *what);
/* CLG_UNSUPPORTED unless t's elements fit the kernels' int index. */
clg_status clg__check_int_index(clg_context *ctx, const clg_tensor *t, const char *op);
/* *out = a new tensor like x holding kernel(x, param) element by element: kernel in program
 * takes (y, x, REAL param, int n) through CLG_LAUNCH_ELEMS. Checks x's size; x itself is
 * already checked. Records no graph node (the op does, with its own saved state). */
clg_status clg__map_real(clg_context *ctx, const char *program, const char *kernel, const char *op,
                         const clg_tensor *x, double param, clg_tensor **out);
/* y = beta * y + alpha * x over numel elements (the gradient-accumulation kernel). */
clg_status clg__axpby(clg_context *ctx, double alpha, const clg_tensor *x, double beta, clg_tensor *y);
/* Host counter-based generator (splitmix64 of seed + index): value i of stream seed. */
uint64_t clg__rand_u64(uint64_t seed, uint64_t index);
double clg__rand_uniform01(uint64_t seed, uint64_t index); /* [0, 1) with 53 bits */

/* ---------------------------------------------------------------- GEMM (src/blas) */
clg_status clg__gemm_mem(clg_context *ctx, clg_dtype dtype, bool trans_a, bool trans_b, size_t m,
                         size_t n, size_t k, double alpha, cl_mem a, size_t a_off, size_t lda,
                         cl_mem b, size_t b_off, size_t ldb, double beta, cl_mem c, size_t c_off,
                         size_t ldc);
clg_status clg__blas_init(clg_context *ctx);
void clg__blas_free(clg_context *ctx);

/* ---------------------------------------------------------------- autograd (src/graph) */
#define CLG_NODE_MAX_INPUTS 5
#define CLG_NODE_MAX_SAVED 4

struct clg_node;
/* Writes the gradient of each input i into dx[i] (NULL: not needed) as
 * dx[i] = beta[i] * dx[i] + contribution. dx entries may alias (x * x): handle inputs in
 * order, one write at a time. */
typedef clg_status (*clg_backward_fn)(clg_context *ctx, struct clg_node *node,
                                      const clg_tensor *dy, clg_tensor *const *dx,
                                      const double *beta);

typedef struct clg_op_def {
    const char *name;
    clg_backward_fn backward;
} clg_op_def;

typedef struct clg_node {
    int refcount;
    const clg_op_def *op;
    int n_inputs;
    clg_tensor *inputs[CLG_NODE_MAX_INPUTS]; /* references; NULL for absent optional inputs */
    clg_tensor *saved[CLG_NODE_MAX_SAVED];   /* references to what backward needs beyond inputs */
    alignas(max_align_t) unsigned char params[192]; /* the op's parameter struct, copied */
    void *extra;                             /* op-owned heap data, free()d with the node */
    int out_shape[CLG_MAX_DIMS];
    int out_ndim;
    clg_dtype out_dtype;
    bool released; /* backward ran; saved state is gone */
    /* backward bookkeeping */
    clg_tensor *grad; /* gradient w.r.t. the output, accumulated */
    bool grad_valid;
    int pending;
    uint64_t mark;
} clg_node;

/* True when grad mode is on and some input requires gradients. */
bool clg__needs_grad(const clg_context *ctx, int n, const clg_tensor *const *inputs);
/* Records out = op(inputs): a node holding references to the inputs, copied params (size
 * bytes, <= sizeof node->params). Call only when clg__needs_grad; *node_out may be NULL. */
clg_status clg__record(clg_context *ctx, const clg_op_def *op, clg_tensor *out, int n_inputs,
                       const clg_tensor *const *inputs, const void *params, size_t params_size,
                       clg_node **node_out);
/* Adds a reference to t in node->saved[slot]. */
void clg__save(clg_node *node, int slot, const clg_tensor *t);
void clg__node_release(clg_node *node);

#endif
