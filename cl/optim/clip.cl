/* cl/optim/clip.cl - gradient clipping behind src/optim/clip.c (torch.nn.utils.clip_grad_norm_
 * and clip_grad_value_, 1.13). The norm of all gradients is one fixed-order reduction: each
 * item sums a run of one gradient into partial[], then one item sums the partials, so the result
 * does not depend on the device's scheduling. NaN propagates as in PyTorch.
 * Tests: tests/optim/test_clip.c.
 */
#include "common/defs.h"
#include "optim/multi.h"

/* kind: 0 |x|^p, 1 |x|, 2 x * x, 3 max |x| (p = inf). */
inline REAL norm_fold(const REAL acc, const REAL x, const int kind, const REAL p) {
    const REAL a = fabs(x);
    if (kind == 3) return (a > acc || isnan(a)) ? a : acc; /* once NaN, stays NaN */
    return acc + (kind == 2 ? x * x : kind == 1 ? a : pow(a, p));
}

/* The fold over run j of g: g[j * chunk, (j + 1) * chunk), in order. */
inline REAL norm_run(__global const REAL *g, const int n, const int chunk, const int j, const int kind,
                     const REAL p) {
    const int start = j * chunk, end = min(start + chunk, n);
    REAL acc = 0;
    for (int i = start; i < end; ++i)
        acc = norm_fold(acc, g[i], kind, p);
    return acc;
}

/* partial[off + j] = the fold over g[j * chunk, (j + 1) * chunk). */
__kernel void grad_norm_partial(__global REAL *partial, const int off, __global const REAL *g, const int n,
                                const int chunk, const int kind, const REAL p) {
    if (GID0 * chunk >= n) return;
    partial[off + GID0] = norm_run(g, n, chunk, GID0, kind, p);
}

/* The multi-tensor form: slot j's runs (items##j of them, each chunk##j long) follow slot
 * j - 1's in partial[], as consecutive single-tensor launches would write them. */
#define NORM_ARGS(j) __global const REAL *g##j, const int n##j, const int chunk##j, const int items##j,
#define NORM_SLOT(j)                                                                  \
    if (item >= base && item < base + items##j) {                                     \
        partial[off + item] = norm_run(g##j, n##j, chunk##j, item - base, kind, p);   \
        return;                                                                       \
    }                                                                                 \
    base += items##j;
__kernel void grad_norm_partial_multi(__global REAL *partial, const int off, MT_EACH(NORM_ARGS) const int kind,
                                      const REAL p) {
    const int item = GID0;
    int base = 0;
    MT_EACH(NORM_SLOT)
}

/* out[0] = the total norm, out[1] = min(1, max_norm / (norm + 1e-6)) (NaN stays NaN). */
__kernel void grad_norm_finish(__global REAL *out, __global const REAL *partial, const int count, const int kind,
                               const REAL p, const REAL max_norm) {
    if (GID0 != 0) return;
    REAL acc = 0;
    for (int j = 0; j < count; ++j) {
        const REAL v = partial[j];
        acc = kind == 3 ? ((v > acc || isnan(v)) ? v : acc) : acc + v;
    }
    const REAL total = kind == 3 || kind == 1 ? acc : kind == 2 ? sqrt(acc) : pow(acc, (REAL)1 / p);
    const REAL coef = max_norm / (total + (REAL)1e-6);
    out[0] = total;
    out[1] = coef > (REAL)1 ? (REAL)1 : coef;
}

__kernel void grad_scale(__global REAL *g, __global const REAL *coef, const int n, const int chunk) {
    const REAL c = coef[1];
    FOR_ELEMS(i, n, chunk) { g[i] = g[i] * c; }
}

/* torch.clamp_(-v, v): NaN stays NaN. */
__kernel void grad_clamp(__global REAL *g, const REAL lo, const REAL hi, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const REAL x = g[i];
        g[i] = isnan(x) ? x : fmin(fmax(x, lo), hi);
    }
}

/* Multi-tensor forms of grad_scale and grad_clamp: slot j is (g, n). */
#define GRAD_ARGS(j) __global REAL *g##j, const int n##j,
#define SCALE_BODY(j, i) g##j[i] = g##j[i] * c
#define SCALE_SLOT(j) MT_SLOT(j, SCALE_BODY)
__kernel void grad_scale_multi(MT_EACH(GRAD_ARGS) __global const REAL *coef, const int total, const int chunk) {
    const REAL c = coef[1];
    MT_RANGE(total, chunk);
    MT_EACH(SCALE_SLOT)
}

#define CLAMP_BODY(j, i)                                   \
    {                                                      \
        const REAL x = g##j[i];                            \
        g##j[i] = isnan(x) ? x : fmin(fmax(x, lo), hi);    \
    }
#define CLAMP_SLOT(j) MT_SLOT(j, CLAMP_BODY)
__kernel void grad_clamp_multi(MT_EACH(GRAD_ARGS) const REAL lo, const REAL hi, const int total, const int chunk) {
    MT_RANGE(total, chunk);
    MT_EACH(CLAMP_SLOT)
}
