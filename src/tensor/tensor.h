/* src/tensor/tensor.h - the tensor floor: refcounted device tensors over pool buffers, and
 * the autograd tape (a tensor owns the node that produced it, so they are one floor): nodes,
 * recording, the backward walk's accumulation. Sources: src/tensor/{tensor,random,autograd}.c.
 * Tests: tests/tensor/.
 */
#ifndef CLGRAD_TENSOR_TENSOR_H
#define CLGRAD_TENSOR_TENSOR_H

#include <stdalign.h>

#include "core/core.h"

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

/* The device buffer of t (NULL for NULL): the one way library code reaches it. */
static inline cl_mem clg__mem(const clg_tensor *t) { return t ? t->buf->block.mem : NULL; }

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

/* ---------------------------------------------------------------- autograd (autograd.c) */
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
/* Saves an op's own output y in node->saved[slot] through a view (the same buffer without
 * y's grad_fn), so that the node does not keep its output, and so itself, alive when no
 * backward runs. */
clg_status clg__save_output(clg_node *node, int slot, const clg_tensor *y);
void clg__node_release(clg_node *node);

#endif
