/* cl/optim/adam.cl - the Adam / AdamW update behind src/optim/adam.c, in PyTorch 1.13's
 * order of operations (single-tensor path); the bias corrections come from the host.
 * Tests: tests/graph/test_optim.c.
 */
#include "common/defs.h"

/* AdamW: p *= decay (1 - lr * wd; 1 for Adam). Adam: g += wd * p (wd 0 for AdamW).
 * m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g;
 * denom = sqrt(v) / sqrt(1 - beta2^t) + eps;  p += -(lr / (1 - beta1^t)) * m / denom. */
__kernel void adam_step(__global REAL *p, __global const REAL *g, __global REAL *m, __global REAL *v,
                        const REAL beta1, const REAL one_minus_beta1, const REAL beta2,
                        const REAL one_minus_beta2, const REAL step_size, const REAL bc2_sqrt, const REAL eps,
                        const REAL wd, const REAL decay, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        REAL pi = p[i] * decay;
        REAL gi = g[i];
        if (wd != (REAL)0) gi = gi + wd * pi;
        const REAL mi = beta1 * m[i] + one_minus_beta1 * gi;
        const REAL vi = beta2 * v[i] + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const REAL denom = sqrt(vi) / bc2_sqrt + eps;
        /* addcdiv_ computes self + value * t1 / t2, left to right. */
        p[i] = pi + (-step_size) * mi / denom;
    }
}
