/* cl/optim/adam.cl - the Adam / AdamW update behind src/optim/adam.c, in PyTorch 1.13's
 * order of operations (single-tensor path); the bias corrections come from the host. The
 * multi-tensor form (one launch for up to MT_K tensors, cl/optim/multi.h) runs the same
 * per-element function, so it gives the same bits.
 * Tests: tests/optim/test_optim.c, tests/optim/test_multi.c.
 */
#include "common/defs.h"
#include "optim/multi.h"

/* AdamW: p *= decay (1 - lr * wd; 1 for Adam). Adam: g += wd * p (wd 0 for AdamW).
 * m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g;
 * denom = sqrt(v) / sqrt(1 - beta2^t) + eps;  p += -(lr / (1 - beta1^t)) * m / denom. */
inline void adam_elem(__global REAL *p, __global const REAL *g, __global REAL *m, __global REAL *v, const int i,
                      const REAL beta1, const REAL one_minus_beta1, const REAL beta2, const REAL one_minus_beta2,
                      const REAL step_size, const REAL bc2_sqrt, const REAL eps, const REAL wd,
                      const REAL decay) {
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

__kernel void adam_step(__global REAL *p, __global const REAL *g, __global REAL *m, __global REAL *v,
                        const REAL beta1, const REAL one_minus_beta1, const REAL beta2,
                        const REAL one_minus_beta2, const REAL step_size, const REAL bc2_sqrt, const REAL eps,
                        const REAL wd, const REAL decay, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        adam_elem(p, g, m, v, i, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, eps, wd,
                  decay);
    }
}

/* Slot j: (p, g, m, v, n). The slots share the hyper-parameters: the host batches tensors of
 * one group that took the same number of steps (the same bias corrections). */
#define ADAM_ARGS(j) \
    __global REAL *p##j, __global const REAL *g##j, __global REAL *m##j, __global REAL *v##j, const int n##j,
#define ADAM_BODY(j, i)                                                                                    \
    adam_elem(p##j, g##j, m##j, v##j, i, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, \
              eps, wd, decay)
#define ADAM_SLOT(j) MT_SLOT(j, ADAM_BODY)
__kernel void adam_step_multi(MT_EACH(ADAM_ARGS) const REAL beta1, const REAL one_minus_beta1, const REAL beta2,
                              const REAL one_minus_beta2, const REAL step_size, const REAL bc2_sqrt,
                              const REAL eps, const REAL wd, const REAL decay, const int total,
                              const int chunk) {
    MT_RANGE(total, chunk);
    MT_EACH(ADAM_SLOT)
}
