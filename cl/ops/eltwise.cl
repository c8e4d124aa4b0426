/* cl/ops/eltwise.cl - element-wise kernels behind src/ops/eltwise.c: add, sub, mul, div with
 * PyTorch broadcasting, and scale. Tests: tests/ops/test_eltwise.c.
 *  - One shape (every operand has the output's element count): `op_forward`, plain loops.
 *  - Broadcast: the host merges neighbouring dimensions that broadcast alike and pads to four,
 *    so every operand is an int4 shape with int4 strides (0 along a broadcast dimension).
 *    `op_bcast` (an item per output element, the offsets divided out) and `op_bcast_cpu` (a
 *    row of the last dimension per item, offsets computed once per row).
 *  - Backward: each input's gradient is the sum of its terms over the dimensions it was
 *    broadcast along. `t_grad` sums one gradient element's terms in order in one work-item;
 *    `t_grad_tree` (GPU style, many terms) sums them in one work-group, a tree in local
 *    memory. No atomics: the order is fixed, so results repeat bit for bit on a device.
 * Every gradient write follows the beta rule (ACCUM). add's and scale's same-shape backward
 * is plain axpby (cl/tensor/tensor.cl).
 */
#include "common/defs.h"

__kernel void add_forward(__global REAL *y, __global const REAL *a, __global const REAL *b,
                          const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = a[i] + b[i];
    }
}

__kernel void sub_forward(__global REAL *y, __global const REAL *a, __global const REAL *b,
                          const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = a[i] - b[i];
    }
}

__kernel void mul_forward(__global REAL *y, __global const REAL *a, __global const REAL *b,
                          const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = a[i] * b[i];
    }
}

__kernel void div_forward(__global REAL *y, __global const REAL *a, __global const REAL *b,
                          const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = a[i] / b[i];
    }
}

__kernel void scale_forward(__global REAL *y, __global const REAL *x, const REAL s, const int n,
                            const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = s * x[i];
    }
}

/* d(a*b)/da = b: dx = beta * dx + dy * other. For x*x the host calls this twice on one dx,
 * the second time with beta = 1, so the two contributions add. */
__kernel void mul_backward(__global REAL *dx, __global const REAL *dy, __global const REAL *other,
                           const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], dy[i] * other[i]);
    }
}

/* PyTorch's forms (derivatives.yaml): d(a/b)/da = 1/b, d(a/b)/db = -(a/b)/b. */
__kernel void div_backward_a(__global REAL *dx, __global const REAL *dy, __global const REAL *b,
                             const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], dy[i] / b[i]);
    }
}

__kernel void div_backward_b(__global REAL *dx, __global const REAL *dy, __global const REAL *a,
                             __global const REAL *b, const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], -dy[i] * ((a[i] / b[i]) / b[i]));
    }
}

/* ---------------------------------------------------------------- broadcasting */

/* The coordinates of row-major element i of shape. */
inline int4 coords_of(int i, const int4 shape) {
    int4 c;
    c.w = i % shape.w;
    i /= shape.w;
    c.z = i % shape.z;
    i /= shape.z;
    c.y = i % shape.y;
    c.x = i / shape.y;
    return c;
}

/* Offset of coordinates c under strides s (each product and the sum stay below the operand's
 * element count, an int). */
inline int offset_of(const int4 c, const int4 s) { return c.x * s.x + c.y * s.y + c.z * s.z + c.w * s.w; }

#define OP_ADD(u, v) ((u) + (v))
#define OP_SUB(u, v) ((u) - (v))
#define OP_MUL(u, v) ((u) * (v))
#define OP_DIV(u, v) ((u) / (v))

/* y = OP(a, b) over the output shape; astr/bstr are a's and b's strides per dimension. The
 * CPU form walks rows of shape.w elements; the last dimension is contiguous in an input that
 * keeps it (stride 1) and one repeated value in one that broadcasts it (stride 0), so each
 * case is a plain loop. */
#define BCAST_FORWARD(name, OP)                                                                           \
    __kernel void name##_bcast(__global REAL *y, __global const REAL *a, __global const REAL *b,           \
                               const int4 shape, const int4 astr, const int4 bstr, const int n,             \
                               const int chunk) {                                                           \
        FOR_ELEMS(i, n, chunk) {                                                                            \
            const int4 c = coords_of(i, shape);                                                             \
            y[i] = OP(a[offset_of(c, astr)], b[offset_of(c, bstr)]);                                        \
        }                                                                                                   \
    }                                                                                                       \
    __kernel void name##_bcast_cpu(__global REAL *y, __global const REAL *a, __global const REAL *b,       \
                                   const int4 shape, const int4 astr, const int4 bstr, const int rows,      \
                                   const int chunk) {                                                       \
        const int len = shape.w;                                                                            \
        FOR_ELEMS(r, rows, chunk) {                                                                         \
            const int4 c = coords_of(r * len, shape);                                                       \
            __global const REAL *ar = a + offset_of(c, astr), *br = b + offset_of(c, bstr);                 \
            __global REAL *yr = y + (size_t)r * len;                                                        \
            if (astr.w && bstr.w) {                                                                         \
                for (int k = 0; k < len; ++k)                                                               \
                    yr[k] = OP(ar[k], br[k]);                                                               \
            } else if (astr.w) {                                                                            \
                const REAL v = br[0];                                                                       \
                for (int k = 0; k < len; ++k)                                                               \
                    yr[k] = OP(ar[k], v);                                                                   \
            } else if (bstr.w) {                                                                            \
                const REAL u = ar[0];                                                                       \
                for (int k = 0; k < len; ++k)                                                               \
                    yr[k] = OP(u, br[k]);                                                                   \
            } else {                                                                                        \
                const REAL v = OP(ar[0], br[0]);                                                            \
                for (int k = 0; k < len; ++k)                                                               \
                    yr[k] = v;                                                                              \
            }                                                                                               \
        }                                                                                                   \
    }

BCAST_FORWARD(add, OP_ADD)
BCAST_FORWARD(sub, OP_SUB)
BCAST_FORWARD(mul, OP_MUL)
BCAST_FORWARD(div, OP_DIV)

/* One term of an input's gradient from dy and the two factors p, q at one output element,
 * as PyTorch forms it: add (and sub's a) dy; sub's b -dy; mul dy * other (q = the other
 * input); div's a dy / b; div's b -dy * ((a / b) / b) (p = a, q = b). */
#define T_DY(d, u, v) (d)
#define T_NEG_DY(d, u, v) (-(d))
#define T_MUL(d, u, v) ((d) * (v))
#define T_DIV_A(d, u, v) ((d) / (v))
#define T_DIV_B(d, u, v) (-(d) * (((u) / (v)) / (v)))

/* The gradient of an input of shape xshape (the output's, 1 where it was broadcast): element j
 * sums its terms over rshape (the output's extent where the input was broadcast, else 1),
 * y's, p's and q's strides ystr, pstr, qstr. n = the input's element count.
 *  - t_grad: an item per gradient element, its terms in row-major order of rshape.
 *  - t_grad_tree: a work-group per gradient element; item l takes terms l, l + size, ...
 *    (row-major in rshape), then a tree over the group's partial sums. */
#define GRAD_KERNELS(name, TERM)                                                                          \
    __kernel void name##_grad(__global REAL *dx, __global const REAL *dy, __global const REAL *p,         \
                              __global const REAL *q, const int4 xshape, const int4 rshape,               \
                              const int4 ystr, const int4 pstr, const int4 qstr, const REAL beta,         \
                              const int n, const int chunk) {                                             \
        FOR_ELEMS(j, n, chunk) {                                                                          \
            const int4 c = coords_of(j, xshape);                                                          \
            const int y0 = offset_of(c, ystr), p0 = offset_of(c, pstr), q0 = offset_of(c, qstr);         \
            REAL acc = 0;                                                                                 \
            for (int r0 = 0; r0 < rshape.x; ++r0)                                                         \
                for (int r1 = 0; r1 < rshape.y; ++r1)                                                     \
                    for (int r2 = 0; r2 < rshape.z; ++r2) {                                               \
                        const int4 rc = (int4)(r0, r1, r2, 0);                                            \
                        const int yo = y0 + offset_of(rc, ystr), po = p0 + offset_of(rc, pstr),           \
                                  qo = q0 + offset_of(rc, qstr);                                          \
                        for (int r3 = 0; r3 < rshape.w; ++r3)                                             \
                            acc += TERM(dy[yo + r3 * ystr.w], p[po + r3 * pstr.w], q[qo + r3 * qstr.w]);  \
                    }                                                                                     \
            ACCUM(dx[j], acc);                                                                            \
        }                                                                                                 \
    }                                                                                                     \
    __kernel void name##_grad_tree(__global REAL *dx, __global const REAL *dy, __global const REAL *p,    \
                                   __global const REAL *q, const int4 xshape, const int4 rshape,          \
                                   const int4 ystr, const int4 pstr, const int4 qstr, const REAL beta,    \
                                   const int terms, __local REAL *scratch) {                              \
        const int j = (int)get_group_id(0), lid = (int)get_local_id(0), lsz = (int)get_local_size(0);     \
        const int4 c = coords_of(j, xshape);                                                              \
        const int y0 = offset_of(c, ystr), p0 = offset_of(c, pstr), q0 = offset_of(c, qstr);             \
        REAL acc = 0;                                                                                     \
        for (int t = lid; t < terms; t += lsz) {                                                          \
            const int4 rc = coords_of(t, rshape);                                                         \
            acc += TERM(dy[y0 + offset_of(rc, ystr)], p[p0 + offset_of(rc, pstr)],                        \
                        q[q0 + offset_of(rc, qstr)]);                                                     \
        }                                                                                                 \
        scratch[lid] = acc;                                                                               \
        barrier(CLK_LOCAL_MEM_FENCE);                                                                     \
        for (int s = lsz / 2; s > 0; s >>= 1) {                                                           \
            if (lid < s) scratch[lid] += scratch[lid + s];                                                \
            barrier(CLK_LOCAL_MEM_FENCE);                                                                 \
        }                                                                                                 \
        if (lid == 0) ACCUM(dx[j], scratch[0]);                                                           \
    }

GRAD_KERNELS(dy, T_DY)
GRAD_KERNELS(neg_dy, T_NEG_DY)
GRAD_KERNELS(mul, T_MUL)
GRAD_KERNELS(div_a, T_DIV_A)
GRAD_KERNELS(div_b, T_DIV_B)
