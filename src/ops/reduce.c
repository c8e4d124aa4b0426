/* src/ops/reduce.c - reductions over given dims (or all) with keepdim, as PyTorch's sum, mean,
 * var, std and max(x, dim) (values), and argmax: forward, graph recording and backward.
 * Kernels: cl/ops/reduce.cl (one summation order per output in both styles). Tests:
 * tests/ops/test_reduce.c.
 */
#include <limits.h>
#include <string.h>

#include "ops/op.h"

/* Four dims fold into at most two groups of each kind (kinds alternate). */
_Static_assert(CLG_MAX_DIMS <= 4, "reduce_plan folds at most 4 dims into two kept and two reduced groups");

typedef enum reduce_kind { RED_SUM, RED_MEAN, RED_VAR, RED_STD, RED_MAX } reduce_kind;

/* x folded into at most two kept and two reduced groups (see cl/ops/reduce.cl): output
 * o = k0 * k1s + k1 reads x at k0 * sk0 + k1 * sk1 plus, for reduced element r = r0 * r1s + r1,
 * r0 * sr0 + r1 * sr1. Unused groups are size 1, stride 1. */
typedef struct reduce_geom {
    int k0, k1, sk0, sk1; /* kept groups: sizes (outer, inner), x strides */
    int r0, r1, sr0, sr1; /* reduced groups: sizes (outer, inner), x strides */
    int outs, m;          /* k0 * k1 outputs, each over m = r0 * r1 elements */
} reduce_geom;

/* The geometry arguments every reduce kernel takes after its buffers, in this order. */
#define GEOM_ARGS(g)                                                                                         \
    CLG_ARG((g)->k0), CLG_ARG((g)->k1), CLG_ARG((g)->sk0), CLG_ARG((g)->sk1), CLG_ARG((g)->r0),              \
        CLG_ARG((g)->r1), CLG_ARG((g)->sr0), CLG_ARG((g)->sr1)

/* The kernels' block of in-order summation (cl/ops/reduce.cl RBLOCK). */
#define REDUCE_BLOCK 64

/* What backward needs, copied into the node. */
typedef struct reduce_params {
    reduce_geom g;
    reduce_kind kind;
    double dof; /* var/std: max(0, m - correction) */
} reduce_params;

/* Checks x, out and the dims (negative ones count from the end, as PyTorch; none means all),
 * and works out g and the output shape (the reduced dims dropped, or kept as 1 with keepdim;
 * all dropped gives (1): clgrad has no 0-d tensors). */
static clg_status reduce_plan(clg_context *ctx, const char *op, const clg_tensor *x, int ndims,
                              const int *dims, bool keepdim, clg_tensor **out, reduce_geom *g, int *yndim,
                              int *yshape) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", op);
    *out = NULL;
    clg_status st = clg__check(ctx, x, op, "x");
    if (st == CLG_OK) st = clg__check_int_index(ctx, x, op);
    if (st != CLG_OK) return st;
    char s[64];
    if (ndims < 0 || ndims > x->ndim || (ndims > 0 && !dims))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: %d dims%s for x %s (0 to %d; 0 = all)", op, ndims,
                         ndims > 0 && !dims ? " but dims is NULL" : "", clg__shape_str(x, s, sizeof s),
                         x->ndim);
    bool reduced[CLG_MAX_DIMS] = {false};
    for (int i = 0; i < ndims; i++) {
        const int d = dims[i] < 0 ? dims[i] + x->ndim : dims[i];
        if (dims[i] < -x->ndim || dims[i] >= x->ndim)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dim %d is out of range for x %s (-%d to %d)", op,
                             dims[i], clg__shape_str(x, s, sizeof s), x->ndim, x->ndim - 1);
        if (reduced[d])
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dim %d appears more than once in the dims", op,
                             dims[i]);
        reduced[d] = true;
    }
    for (int d = 0; ndims == 0 && d < x->ndim; d++)
        reduced[d] = true;

    /* Groups from the innermost dim out: size-1 dims drop, a dim of the same kind as the group
     * before it merges into it (x is contiguous), so kinds alternate and there are at most
     * two of each in 4 dims. */
    int size[2][2] = {{1, 1}, {1, 1}}, stride[2][2] = {{1, 1}, {1, 1}}, count[2] = {0, 0};
    int last = -1, step = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        const int n = x->shape[d], kind = reduced[d];
        if (n > 1) {
            if (kind != last) {
                stride[kind][count[kind]] = step;
                count[kind]++;
                last = kind;
            }
            size[kind][count[kind] - 1] *= n;
        }
        step *= n; /* numel <= INT_MAX */
    }
    /* group 0 is the innermost: it becomes the (outer, inner) pair's inner one */
    g->k0 = size[0][1], g->k1 = size[0][0], g->sk0 = stride[0][1], g->sk1 = stride[0][0];
    g->r0 = size[1][1], g->r1 = size[1][0], g->sr0 = stride[1][1], g->sr1 = stride[1][0];
    g->outs = g->k0 * g->k1;
    g->m = g->r0 * g->r1;
    *yndim = 0;
    for (int d = 0; d < x->ndim; d++)
        if (!reduced[d] || keepdim) yshape[(*yndim)++] = reduced[d] ? 1 : x->shape[d];
    if (*yndim == 0) yshape[(*yndim)++] = 1;
    return CLG_OK;
}

/* The smallest power of two >= n (n <= 2^30 here). */
static size_t pow2_at_least(size_t n) {
    size_t p = 1;
    while (p < n)
        p *= 2;
    return p;
}

/* The work-group of GPU-style kernel k over `units` pieces of one output's work: the device's
 * reduction size, but no larger than units rounded up to a power of two (small sets get small
 * groups; one element per output is one item). */
static clg_status group_size(clg_context *ctx, cl_kernel k, size_t units, const char *what, size_t *lsz) {
    clg_status st = clg__reduce_local_size(ctx, k, what, lsz);
    const size_t p = pow2_at_least(units);
    if (st == CLG_OK && p < *lsz) *lsz = p;
    return st;
}

/* ---------------------------------------------------------------- forward launches */

/* y (outs) = the sums of x's sets, divided by m when mean. */
static clg_status launch_sum(clg_context *ctx, const reduce_geom *g, clg_tensor *y, const clg_tensor *x,
                             int mean, const char *what) {
    cl_kernel k;
    clg_status st = clg__op_kernel(ctx, "ops/reduce", "reduce_sum", x->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), xm = clg__mem(x);
    if (clg__cpu_style(ctx))
        return CLG_LAUNCH_ROWS(ctx, k, (size_t)g->outs, (size_t)g->m, what, CLG_ARG(ym), CLG_ARG(xm),
                               GEOM_ARGS(g), CLG_ARG(mean), CLG_ARG(g->outs));
    const size_t blocks = ((size_t)g->m + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
    size_t lsz;
    if ((st = group_size(ctx, k, blocks, what, &lsz)) != CLG_OK) return st;
    const int span = (int)(pow2_at_least(blocks) / lsz); /* blocks per item */
    return CLG_LAUNCH_ND(ctx, k, 1, ((size_t[]){(size_t)g->outs * lsz}), ((size_t[]){lsz}), what, CLG_ARG(ym),
                         CLG_ARG(xm), GEOM_ARGS(g), CLG_ARG(mean), CLG_ARG(span),
                         CLG_LOCAL(lsz * clg_dtype_size(x->dtype)));
}

/* y (outs) = var (std when take_sqrt) of x's sets over dof; mean (outs) their means. */
static clg_status launch_var(clg_context *ctx, const reduce_geom *g, clg_tensor *y, clg_tensor *mean,
                             const clg_tensor *x, double dof, int take_sqrt, const char *what) {
    cl_kernel k;
    clg_status st = clg__op_kernel(ctx, "ops/reduce", "reduce_var", x->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), mm = clg__mem(mean), xm = clg__mem(x);
    clg_real d;
    const clg_karg dk = clg__real(x->dtype, &d, dof);
    if (clg__cpu_style(ctx))
        return CLG_LAUNCH_ROWS(ctx, k, (size_t)g->outs, 2 * (size_t)g->m, what, CLG_ARG(ym), CLG_ARG(mm),
                               CLG_ARG(xm), GEOM_ARGS(g), dk, CLG_ARG(take_sqrt), CLG_ARG(g->outs));
    const size_t blocks = ((size_t)g->m + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
    size_t lsz;
    if ((st = group_size(ctx, k, blocks, what, &lsz)) != CLG_OK) return st;
    const int span = (int)(pow2_at_least(blocks) / lsz);
    return CLG_LAUNCH_ND(ctx, k, 1, ((size_t[]){(size_t)g->outs * lsz}), ((size_t[]){lsz}), what, CLG_ARG(ym),
                         CLG_ARG(mm), CLG_ARG(xm), GEOM_ARGS(g), dk, CLG_ARG(take_sqrt), CLG_ARG(span),
                         CLG_LOCAL(lsz * clg_dtype_size(x->dtype)));
}

/* The kernels' modes (cl/ops/reduce.cl MAX_*). */
enum { MAX_VALUE = 0, MAX_VALUE_IDX = 1, MAX_INDEX = 2 };

/* y (outs) = the max of each set, or its first argmax as a REAL (MAX_INDEX); idx (outs int32,
 * MAX_VALUE_IDX only, else NULL) the argmax for backward. */
static clg_status launch_max(clg_context *ctx, const reduce_geom *g, clg_tensor *y, clg_tensor *idx,
                             const clg_tensor *x, int mode, const char *what) {
    cl_kernel k;
    clg_status st = clg__op_kernel(ctx, "ops/reduce", "reduce_max", x->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), im = idx ? clg__mem(idx) : ym, xm = clg__mem(x); /* im: placeholder unless idx */
    if (clg__cpu_style(ctx))
        return CLG_LAUNCH_ROWS(ctx, k, (size_t)g->outs, (size_t)g->m, what, CLG_ARG(ym), CLG_ARG(im),
                               CLG_ARG(xm), GEOM_ARGS(g), CLG_ARG(mode), CLG_ARG(g->outs));
    size_t lsz;
    if ((st = group_size(ctx, k, (size_t)g->m, what, &lsz)) != CLG_OK) return st;
    return CLG_LAUNCH_ND(ctx, k, 1, ((size_t[]){(size_t)g->outs * lsz}), ((size_t[]){lsz}), what, CLG_ARG(ym),
                         CLG_ARG(im), CLG_ARG(xm), GEOM_ARGS(g), CLG_ARG(mode),
                         CLG_LOCAL(lsz * clg_dtype_size(x->dtype)), CLG_LOCAL(lsz * sizeof(cl_int)));
}

/* ---------------------------------------------------------------- backward */

static clg_status reduce_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                  clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    reduce_params p;
    memcpy(&p, node->params, sizeof p);
    const reduce_geom *g = &p.g;
    const clg_tensor *x = node->inputs[0];
    const char *what = node->op->name;
    clg_status st = clg__check(ctx, dy, what, "dy");
    if (st == CLG_OK) st = clg__check_same(ctx, dx[0], x, what, "dx and x");
    if (st != CLG_OK) return st;
    if (dy->numel != (size_t)g->outs || dy->dtype != x->dtype)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s backward: dy must be %d %s elements: got %zu %s", what,
                         g->outs, clg_dtype_name(x->dtype), dy->numel, clg_dtype_name(dy->dtype));
    if (dx[0]->dtype != x->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s backward: dx is %s but x is %s", what,
                         clg_dtype_name(dx[0]->dtype), clg_dtype_name(x->dtype));
    const clg_dtype dt = x->dtype;
    const int n = (int)x->numel;
    cl_mem dxm = clg__mem(dx[0]), dym = clg__mem(dy), xm = clg__mem(x);
    clg_real b, d;
    const clg_karg bk = clg__real(dt, &b, beta[0]);
    cl_kernel k;
    if (p.kind == RED_SUM || p.kind == RED_MEAN) {
        const int mean = p.kind == RED_MEAN;
        if ((st = clg__kernel_dt(ctx, "ops/reduce", "reduce_sum_bwd", dt, NULL, &k)) != CLG_OK) return st;
        return CLG_LAUNCH_ELEMS(ctx, k, x->numel, what, CLG_ARG(dxm), CLG_ARG(dym), GEOM_ARGS(g),
                                CLG_ARG(mean), bk, CLG_ARG(n));
    }
    if (p.kind == RED_MAX) {
        const clg_tensor *idx = node->saved[0]; /* (outs) int32 argmax */
        if (!idx) return clg__fail(ctx, CLG_INVALID_STATE, "%s backward: the saved argmax is gone", what);
        cl_mem im = clg__mem(idx);
        if ((st = clg__kernel_dt(ctx, "ops/reduce", "reduce_max_bwd", dt, NULL, &k)) != CLG_OK) return st;
        return CLG_LAUNCH_ELEMS(ctx, k, x->numel, what, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(im), GEOM_ARGS(g),
                                bk, CLG_ARG(n));
    }
    const clg_tensor *mean = node->saved[0], *sd = node->saved[1]; /* (outs) each; sd for std only */
    const int is_std = p.kind == RED_STD;
    if (!mean || (is_std && !sd))
        return clg__fail(ctx, CLG_INVALID_STATE, "%s backward: the saved statistics are gone", what);
    cl_mem mm = clg__mem(mean), sm = is_std ? clg__mem(sd) : mm; /* placeholder for var */
    if ((st = clg__kernel_dt(ctx, "ops/reduce", "reduce_var_bwd", dt, NULL, &k)) != CLG_OK) return st;
    return CLG_LAUNCH_ELEMS(ctx, k, x->numel, what, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(xm), CLG_ARG(mm),
                            CLG_ARG(sm), GEOM_ARGS(g), clg__real(dt, &d, p.dof), CLG_ARG(is_std), bk,
                            CLG_ARG(n));
}

static const clg_op_def sum_op = {"sum", reduce_backward};
static const clg_op_def mean_op = {"mean", reduce_backward};
static const clg_op_def var_op = {"var", reduce_backward};
static const clg_op_def std_op = {"std", reduce_backward};
static const clg_op_def max_op = {"max", reduce_backward};

/* ---------------------------------------------------------------- the public ops */

/* sum, mean, var, std and max: plan, run, record. correction only for var/std. */
static clg_status reduce_op(clg_context *ctx, reduce_kind kind, const clg_tensor *x, int ndims,
                            const int *dims, bool keepdim, int correction, clg_tensor **out) {
    static const clg_op_def *const defs[] = {&sum_op, &mean_op, &var_op, &std_op, &max_op};
    const clg_op_def *def = defs[kind];
    reduce_params p = {.kind = kind};
    int yndim = 0, yshape[CLG_MAX_DIMS];
    clg_status st = reduce_plan(ctx, def->name, x, ndims, dims, keepdim, out, &p.g, &yndim, yshape);
    if (st != CLG_OK) return st;
    const long long dof = (long long)p.g.m - correction;
    p.dof = dof > 0 ? (double)dof : 0.0;

    const bool record = clg__needs_grad(ctx, 1, &x);
    clg_tensor *y = NULL, *saved0 = NULL, *saved1 = NULL; /* (yshape) each */
    st = clg__tensor_new(ctx, x->dtype, yndim, yshape, &y);
    if (kind == RED_SUM || kind == RED_MEAN) {
        if (st == CLG_OK) st = launch_sum(ctx, &p.g, y, x, kind == RED_MEAN, def->name);
    } else if (kind == RED_MAX) {
        /* Tensors carry only real dtypes: an F32 tensor is a 4-byte-element buffer, here the
         * int32 argmax that only the backward kernel reads (as max_pool2d's). */
        if (st == CLG_OK && record) st = clg__tensor_new(ctx, CLG_F32, yndim, yshape, &saved0);
        if (st == CLG_OK)
            st = launch_max(ctx, &p.g, y, saved0, x, record ? MAX_VALUE_IDX : MAX_VALUE, def->name);
    } else {
        /* The kernel always writes the means: saved for backward, or scratch. */
        if (st == CLG_OK) st = clg__tensor_new(ctx, x->dtype, yndim, yshape, &saved0);
        if (st == CLG_OK) st = launch_var(ctx, &p.g, y, saved0, x, p.dof, kind == RED_STD, def->name);
        /* std's backward divides by the result; a copy, since a node holding y would keep
         * its own output alive */
        if (st == CLG_OK && record && kind == RED_STD)
            st = clg__tensor_new(ctx, x->dtype, yndim, yshape, &saved1);
        if (st == CLG_OK && saved1) st = clg_tensor_copy(saved1, y);
    }
    if (st == CLG_OK && record) {
        clg_node *node = NULL;
        st = clg__record(ctx, def, y, 1, &x, &p, sizeof p, &node);
        if (st == CLG_OK && node && saved0) clg__save(node, 0, saved0);
        if (st == CLG_OK && node && saved1) clg__save(node, 1, saved1);
    }
    clg_tensor_free(saved0); /* the node holds its own references */
    clg_tensor_free(saved1);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_sum(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                   clg_tensor **out) {
    return reduce_op(ctx, RED_SUM, x, ndims, dims, keepdim, 0, out);
}

clg_status clg_mean(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                    clg_tensor **out) {
    return reduce_op(ctx, RED_MEAN, x, ndims, dims, keepdim, 0, out);
}

clg_status clg_var(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                   int correction, clg_tensor **out) {
    return reduce_op(ctx, RED_VAR, x, ndims, dims, keepdim, correction, out);
}

clg_status clg_std(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                   int correction, clg_tensor **out) {
    return reduce_op(ctx, RED_STD, x, ndims, dims, keepdim, correction, out);
}

clg_status clg_max(clg_context *ctx, const clg_tensor *x, int ndims, const int *dims, bool keepdim,
                   clg_tensor **out) {
    return reduce_op(ctx, RED_MAX, x, ndims, dims, keepdim, 0, out);
}

/* Records nothing: an index has no gradient. */
clg_status clg_argmax(clg_context *ctx, const clg_tensor *x, int dim, bool keepdim, clg_tensor **out) {
    reduce_geom g;
    int yndim = 0, yshape[CLG_MAX_DIMS];
    clg_status st = reduce_plan(ctx, "argmax", x, 1, &dim, keepdim, out, &g, &yndim, yshape);
    if (st != CLG_OK) return st;
    /* Indices are stored as values of x's dtype: f32 holds integers exactly only to 2^24. */
    if (x->dtype == CLG_F32 && g.m > (1 << 24) + 1) {
        char s[64];
        return clg__fail(ctx, CLG_UNSUPPORTED,
                         "argmax: dim %d of x %s is longer than f32 indexes exactly (2^24)", dim,
                         clg__shape_str(x, s, sizeof s));
    }
    clg_tensor *y = NULL;
    st = clg__tensor_new(ctx, x->dtype, yndim, yshape, &y);
    if (st == CLG_OK) st = launch_max(ctx, &g, y, NULL, x, MAX_INDEX, "argmax");
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}
