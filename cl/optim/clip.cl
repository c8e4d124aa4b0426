/* cl/optim/clip.cl - gradient clipping behind src/optim/clip.c (torch.nn.utils.clip_grad_norm_
 * and clip_grad_value_, 1.13). The norm of all gradients is one fixed-order reduction: each
 * item sums a run of one gradient into partial[], then one item sums the partials, so the result
 * does not depend on the device's scheduling. NaN propagates as in PyTorch.
 * Tests: tests/optim/test_clip.c.
 */
#include "common/defs.h"

/* kind: 0 |x|^p, 1 |x|, 2 x * x, 3 max |x| (p = inf). */
inline REAL norm_fold(const REAL acc, const REAL x, const int kind, const REAL p) {
    const REAL a = fabs(x);
    if (kind == 3) return (a > acc || isnan(a)) ? a : acc; /* once NaN, stays NaN */
    return acc + (kind == 2 ? x * x : kind == 1 ? a : pow(a, p));
}

/* partial[off + j] = the fold over g[j * chunk, (j + 1) * chunk). */
__kernel void grad_norm_partial(__global REAL *partial, const int off, __global const REAL *g, const int n,
                                const int chunk, const int kind, const REAL p) {
    const int start = GID0 * chunk;
    if (start >= n) return;
    const int end = min(start + chunk, n);
    REAL acc = 0;
    for (int i = start; i < end; ++i)
        acc = norm_fold(acc, g[i], kind, p);
    partial[off + GID0] = acc;
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
