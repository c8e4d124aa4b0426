/* src/ops/eltwise.c - element-wise graph ops: add, sub, mul, div with PyTorch broadcasting,
 * and scale. Kernels: cl/ops/eltwise.cl (same-shape backward of add, sub and scale is
 * clg__axpby). Tests: tests/ops/test_eltwise.c.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "ops/op.h"

static const clg_op_def add_op, sub_op, mul_op, div_op, scale_op;

typedef enum binary_kind { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } binary_kind;

typedef struct binary_def {
    binary_kind kind;
    const char *name;  /* op name, for errors */
    const char *same;  /* forward kernel when every operand has the output's element count */
    const char *bcast; /* broadcasting forward kernel (GPU style; `_cpu` beside it) */
    const clg_op_def *op;
} binary_def;

static const binary_def ADD = {BIN_ADD, "add", "add_forward", "add_bcast", &add_op};
static const binary_def SUB = {BIN_SUB, "sub", "sub_forward", "sub_bcast", &sub_op};
static const binary_def MUL = {BIN_MUL, "mul", "mul_forward", "mul_bcast", &mul_op};
static const binary_def DIV = {BIN_DIV, "div", "div_forward", "div_bcast", &div_op};

/* How a and b lie under the broadcast output, in four dimensions: neighbouring dimensions
 * that both inputs keep or broadcast alike are merged ((N, C, H, W) with (C, 1, 1) runs as
 * (N, C, H*W)), size-1 ones dropped, and the rest padded in front with size 1 (stride 0), so
 * kernels take int4s. Copied into the node: backward reduces over the same dimensions. */
typedef struct bcast_geom {
    int shape[4];      /* the output, merged */
    int astr[4];       /* a's element stride per dimension; 0 where a is broadcast (or size 1) */
    int bstr[4];       /* b's, likewise */
    int ystr[4];       /* the output's own (contiguous) strides */
    int numel;         /* the output's element count */
    bool elementwise;  /* a, b and the output have one element count: no index arithmetic */
} bcast_geom;

/* What a node keeps. */
typedef struct binary_params {
    binary_kind kind;
    bcast_geom g;
} binary_params;

static cl_int4 int4_of(const int *v) {
    cl_int4 r;
    for (int d = 0; d < 4; d++)
        r.s[d] = v[d];
    return r;
}

/* PyTorch's rule, dimensions aligned from the right: equal sizes stay, a size 1 takes the
 * other's. Fills yshape (*yndim dims) and g; fails naming both shapes. */
static clg_status broadcast(clg_context *ctx, const char *op, const clg_tensor *a, const clg_tensor *b,
                            int *yndim, int *yshape, bcast_geom *g) {
    const int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int as[CLG_MAX_DIMS], bs[CLG_MAX_DIMS]; /* a and b padded in front with 1s to nd dims */
    size_t numel = 1;
    for (int d = 0; d < nd; d++) {
        const int ia = d - (nd - a->ndim), ib = d - (nd - b->ndim);
        as[d] = ia >= 0 ? a->shape[ia] : 1;
        bs[d] = ib >= 0 ? b->shape[ib] : 1;
        if (as[d] != bs[d] && as[d] != 1 && bs[d] != 1) {
            char sa[64], sb[64];
            return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                             "%s: shapes %s and %s do not broadcast (dimension %d from the right: %d vs %d)",
                             op, clg__shape_str(a, sa, sizeof sa), clg__shape_str(b, sb, sizeof sb), nd - d,
                             as[d], bs[d]);
        }
        yshape[d] = as[d] > bs[d] ? as[d] : bs[d];
        if (numel > (size_t)INT_MAX / (size_t)yshape[d]) {
            char sa[64], sb[64];
            return clg__fail(ctx, CLG_UNSUPPORTED, "%s: broadcasting %s with %s gives more than %d elements", op,
                             clg__shape_str(a, sa, sizeof sa), clg__shape_str(b, sb, sizeof sb), INT_MAX);
        }
        numel *= (size_t)yshape[d];
    }
    *yndim = nd;

    /* Merge: size-1 output dimensions vanish; a neighbour with the same (a keeps, b keeps)
     * pattern joins the previous dimension. */
    int size[CLG_MAX_DIMS];
    bool akeep[CLG_MAX_DIMS], bkeep[CLG_MAX_DIMS];
    int m = 0;
    for (int d = 0; d < nd; d++) {
        if (yshape[d] == 1) continue;
        const bool ka = as[d] != 1, kb = bs[d] != 1;
        if (m > 0 && akeep[m - 1] == ka && bkeep[m - 1] == kb) {
            size[m - 1] *= yshape[d];
            continue;
        }
        size[m] = yshape[d], akeep[m] = ka, bkeep[m] = kb;
        m++;
    }
    /* Right-align the m merged dimensions in four; strides from the innermost outwards. */
    memset(g, 0, sizeof *g);
    int sa = 1, sb = 1, sy = 1;
    for (int d = 3; d >= 0; d--) {
        const int k = d - (4 - m);
        g->shape[d] = k >= 0 ? size[k] : 1;
        if (k < 0) continue;
        g->ystr[d] = sy, sy *= size[k];
        if (akeep[k]) g->astr[d] = sa, sa *= size[k];
        if (bkeep[k]) g->bstr[d] = sb, sb *= size[k];
    }
    g->numel = (int)numel;
    g->elementwise = a->numel == numel && b->numel == numel;
    return CLG_OK;
}

/* y = a (op) b with broadcasting, recording def when a gradient is needed. */
static clg_status binary(clg_context *ctx, const binary_def *def, const clg_tensor *a, const clg_tensor *b,
                         clg_tensor **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", def->name);
    *out = NULL;
    clg_status st = clg__check(ctx, a, def->name, "a");
    if (st == CLG_OK) st = clg__check(ctx, b, def->name, "b");
    if (st != CLG_OK) return st;
    if (a->dtype != b->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: dtypes differ: a is %s, b is %s", def->name,
                         clg_dtype_name(a->dtype), clg_dtype_name(b->dtype));
    binary_params p = {.kind = def->kind};
    int yndim = 0, yshape[CLG_MAX_DIMS] = {0};
    st = broadcast(ctx, def->name, a, b, &yndim, yshape, &p.g);
    cl_kernel k;
    if (st == CLG_OK)
        st = p.g.elementwise ? clg__kernel_dt(ctx, "ops/eltwise", def->same, a->dtype, NULL, &k)
                             : clg__op_kernel(ctx, "ops/eltwise", def->bcast, a->dtype, NULL, &k);
    clg_tensor *y = NULL;
    if (st == CLG_OK) st = clg__tensor_new(ctx, a->dtype, yndim, yshape, &y);
    if (st != CLG_OK) return st;
    cl_mem ym = clg__mem(y), am = clg__mem(a), bm = clg__mem(b);
    const int n = p.g.numel;
    if (p.g.elementwise) { /* the same-shape case as fast as before broadcasting existed */
        st = CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, def->name, CLG_ARG(ym), CLG_ARG(am), CLG_ARG(bm), CLG_ARG(n));
    } else {
        const cl_int4 shape = int4_of(p.g.shape), astr = int4_of(p.g.astr), bstr = int4_of(p.g.bstr);
        if (clg__cpu_style(ctx)) {
            const int rows = n / p.g.shape[3];
            st = CLG_LAUNCH_ROWS(ctx, k, (size_t)rows, (size_t)p.g.shape[3], def->name, CLG_ARG(ym), CLG_ARG(am),
                                 CLG_ARG(bm), CLG_ARG(shape), CLG_ARG(astr), CLG_ARG(bstr), CLG_ARG(rows));
        } else {
            st = CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, def->name, CLG_ARG(ym), CLG_ARG(am), CLG_ARG(bm),
                                  CLG_ARG(shape), CLG_ARG(astr), CLG_ARG(bstr), CLG_ARG(n));
        }
    }
    const clg_tensor *in[2] = {a, b};
    if (st == CLG_OK && clg__needs_grad(ctx, 2, in)) st = clg__record(ctx, def->op, y, 2, in, &p, sizeof p, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

clg_status clg_add(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out) {
    return binary(ctx, &ADD, a, b, out);
}

clg_status clg_sub(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out) {
    return binary(ctx, &SUB, a, b, out);
}

clg_status clg_mul(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out) {
    return binary(ctx, &MUL, a, b, out);
}

clg_status clg_div(clg_context *ctx, const clg_tensor *a, const clg_tensor *b, clg_tensor **out) {
    return binary(ctx, &DIV, a, b, out);
}

clg_status clg_scale(clg_context *ctx, const clg_tensor *x, double s, clg_tensor **out) {
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "scale: out is NULL");
    *out = NULL;
    clg_status st = clg__check(ctx, x, "scale", "x");
    clg_tensor *y = NULL;
    if (st == CLG_OK) st = clg__map_real(ctx, "ops/eltwise", "scale_forward", "scale", x, s, &y);
    if (st != CLG_OK) return st;
    if (clg__needs_grad(ctx, 1, &x))
        st = clg__record(ctx, &scale_op, y, 1, &x, &s, sizeof s, NULL);
    if (st != CLG_OK) {
        clg_tensor_free(y);
        return st;
    }
    *out = y;
    return CLG_OK;
}

/* ---------------------------------------------------------------- backward */

/* Below this many terms per gradient element a GPU-style launch still takes one work-item per
 * element (a work-group tree would leave most of each group idle). */
#define TREE_MIN_TERMS 32

/* dx = beta * dx + the sum of term(dy, p, q) over the dimensions input i was broadcast along
 * (the terms of kernel family `term` in ops/eltwise; p, q and their strides as it reads them). */
static clg_status reduce_grad(clg_context *ctx, const bcast_geom *g, int i, const char *term, clg_tensor *dx,
                              const clg_tensor *dy, const clg_tensor *p, const int *pstr, const clg_tensor *q,
                              const int *qstr, double beta, const char *what) {
    const int *xstr = i == 0 ? g->astr : g->bstr;
    int xs[4], rs[4], terms = 1;
    for (int d = 0; d < 4; d++) {
        xs[d] = xstr[d] ? g->shape[d] : 1;
        rs[d] = xstr[d] ? 1 : g->shape[d];
        terms *= rs[d];
    }
    const bool tree = !clg__cpu_style(ctx) && terms >= TREE_MIN_TERMS;
    char name[32];
    snprintf(name, sizeof name, "%s_grad%s", term, tree ? "_tree" : "");
    cl_kernel k;
    clg_status st = clg__kernel_dt(ctx, "ops/eltwise", name, dy->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    const cl_int4 xshape = int4_of(xs), rshape = int4_of(rs), ystr = int4_of(g->ystr), ps = int4_of(pstr),
                  qs = int4_of(qstr);
    cl_mem dxm = clg__mem(dx), dym = clg__mem(dy), pm = clg__mem(p), qm = clg__mem(q);
    const int n = (int)dx->numel;
    clg_real br;
    const clg_karg bk = clg__real(dy->dtype, &br, beta);
    if (!tree)
        return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(pm), CLG_ARG(qm),
                                CLG_ARG(xshape), CLG_ARG(rshape), CLG_ARG(ystr), CLG_ARG(ps), CLG_ARG(qs), bk,
                                CLG_ARG(n));
    size_t lsz = 1, cap = 1;
    st = clg__reduce_local_size(ctx, k, what, &cap);
    if (st != CLG_OK) return st;
    while (lsz < cap && lsz < (size_t)terms) /* a power of two, no wider than the terms */
        lsz *= 2;
    return CLG_LAUNCH_ND(ctx, k, 1, ((size_t[]){(size_t)n * lsz}), ((size_t[]){lsz}), what, CLG_ARG(dxm),
                         CLG_ARG(dym), CLG_ARG(pm), CLG_ARG(qm), CLG_ARG(xshape), CLG_ARG(rshape), CLG_ARG(ystr),
                         CLG_ARG(ps), CLG_ARG(qs), bk, CLG_ARG(terms), CLG_LOCAL(lsz * clg_dtype_size(dy->dtype)));
}

/* The gradient of input i of a binary node: PyTorch's derivative of each op (derivatives.yaml)
 * summed over the broadcast dimensions. Reads only the inputs and dy, so a tensor given as both
 * inputs (dx[0] == dx[1]) gets both contributions: the engine passes beta 1 for the second. */
static clg_status binary_grad(clg_context *ctx, const binary_params *p, const clg_node *node, int i,
                              const clg_tensor *dy, clg_tensor *dx, double beta) {
    const clg_tensor *a = node->inputs[0], *b = node->inputs[1], *other = node->inputs[1 - i];
    const bcast_geom *g = &p->g;
    static const int none[4] = {0, 0, 0, 0};
    const int *ostr = i == 0 ? g->bstr : g->astr;
    const bool full = dx->numel == (size_t)g->numel; /* this input was not broadcast */
    char what[32];
    snprintf(what, sizeof what, "%s backward", node->op->name);
    switch (p->kind) {
    case BIN_ADD:
    case BIN_SUB: {
        const bool neg = p->kind == BIN_SUB && i == 1;
        if (full) return clg__axpby(ctx, neg ? -1.0 : 1.0, dy, beta, dx);
        return reduce_grad(ctx, g, i, neg ? "neg_dy" : "dy", dx, dy, dy, none, dy, none, beta, what);
    }
    case BIN_MUL:
        if (!g->elementwise) return reduce_grad(ctx, g, i, "mul", dx, dy, dy, none, other, ostr, beta, what);
        break;
    case BIN_DIV:
        if (!g->elementwise)
            return i == 0 ? reduce_grad(ctx, g, 0, "div_a", dx, dy, dy, none, b, g->bstr, beta, what)
                          : reduce_grad(ctx, g, 1, "div_b", dx, dy, a, g->astr, b, g->bstr, beta, what);
        break;
    }
    /* mul and div with every operand of one shape: plain element kernels. */
    cl_kernel k;
    const char *kname = p->kind == BIN_MUL ? "mul_backward" : i == 0 ? "div_backward_a" : "div_backward_b";
    clg_status st = clg__kernel_dt(ctx, "ops/eltwise", kname, dy->dtype, NULL, &k);
    if (st != CLG_OK) return st;
    const int n = (int)dy->numel;
    cl_mem dxm = clg__mem(dx), dym = clg__mem(dy), am = clg__mem(a), bm = clg__mem(b), om = clg__mem(other);
    clg_real br;
    const clg_karg bk = clg__real(dy->dtype, &br, beta);
    if (p->kind == BIN_DIV && i == 1)
        return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(am), CLG_ARG(bm), bk,
                                CLG_ARG(n));
    if (p->kind == BIN_DIV) om = bm;
    return CLG_LAUNCH_ELEMS(ctx, k, (size_t)n, what, CLG_ARG(dxm), CLG_ARG(dym), CLG_ARG(om), bk, CLG_ARG(n));
}

static clg_status binary_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy, clg_tensor *const *dx,
                                  const double *beta) {
    binary_params p;
    memcpy(&p, node->params, sizeof p);
    if (dy->numel != (size_t)p.g.numel)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s backward: dy has %zu elements, want %d", node->op->name,
                         dy->numel, p.g.numel);
    for (int i = 0; i < 2; i++) {
        if (!dx[i]) continue;
        if (dx[i]->numel != node->inputs[i]->numel || dx[i]->dtype != dy->dtype)
            return clg__fail(ctx, CLG_SHAPE_MISMATCH, "%s backward: dx[%d] does not fit input %d", node->op->name,
                             i, i);
        clg_status st = binary_grad(ctx, &p, node, i, dy, dx[i], beta[i]);
        if (st != CLG_OK) return st;
    }
    return CLG_OK;
}

/* d(s * x) = s * dy. */
static clg_status scale_backward(clg_context *ctx, clg_node *node, const clg_tensor *dy,
                                 clg_tensor *const *dx, const double *beta) {
    if (!dx[0]) return CLG_OK;
    double s;
    memcpy(&s, node->params, sizeof s);
    return clg__axpby(ctx, s, dy, beta[0], dx[0]);
}

static const clg_op_def add_op = {"add", binary_backward};
static const clg_op_def sub_op = {"sub", binary_backward};
static const clg_op_def mul_op = {"mul", binary_backward};
static const clg_op_def div_op = {"div", binary_backward};
static const clg_op_def scale_op = {"scale", scale_backward};
