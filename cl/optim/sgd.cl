/* cl/optim/sgd.cl - SGD updates behind src/optim/sgd.c, PyTorch's rule and order of
 * operations (torch.optim.SGD, single-tensor path). Element loops: FOR_ELEMS (cl/common/defs.h);
 * the multi-tensor forms (one launch for up to MT_K tensors): cl/optim/multi.h. Both forms run
 * the same per-element function, so they give the same bits.
 * Tests: tests/optim/test_optim.c, tests/optim/test_multi.c.
 */
#include "common/defs.h"
#include "optim/multi.h"

/* d_p = g + wd * p; p -= lr * d_p. PyTorch skips the decay term when wd == 0, which also
 * keeps an inf/NaN parameter from leaking into d_p through 0 * p. */
inline void sgd_elem(__global REAL *p, __global const REAL *g, const int i, const REAL lr, const REAL wd) {
    REAL d = g[i];
    if (wd != (REAL)0) d = d + wd * p[i];
    p[i] = p[i] + (-lr) * d;
}

/* buf = first ? d_p : momentum * buf + (1 - dampening) * d_p;
 * d_p = nesterov ? d_p + momentum * buf : buf; p -= lr * d_p. */
inline void sgd_momentum_elem(__global REAL *p, __global const REAL *g, __global REAL *buf, const int i,
                              const REAL lr, const REAL wd, const REAL momentum,
                              const REAL one_minus_dampening, const int first, const int nesterov) {
    const REAL pi = p[i];
    REAL d = g[i];
    if (wd != (REAL)0) d = d + wd * pi;
    const REAL b = first ? d : momentum * buf[i] + one_minus_dampening * d;
    buf[i] = b;
    d = nesterov ? d + momentum * b : b;
    p[i] = pi + (-lr) * d;
}

__kernel void sgd_step(__global REAL *p, __global const REAL *g, const REAL lr, const REAL wd, const int n,
                       const int chunk) {
    FOR_ELEMS(i, n, chunk) { sgd_elem(p, g, i, lr, wd); }
}

__kernel void sgd_momentum_step(__global REAL *p, __global const REAL *g, __global REAL *buf, const REAL lr,
                                const REAL wd, const REAL momentum, const REAL one_minus_dampening,
                                const int first, const int nesterov, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        sgd_momentum_elem(p, g, buf, i, lr, wd, momentum, one_minus_dampening, first, nesterov);
    }
}

/* Slot j: (p, g, n). Every slot shares the group's lr and wd. */
#define SGD_ARGS(j) __global REAL *p##j, __global const REAL *g##j, const int n##j,
#define SGD_BODY(j, i) sgd_elem(p##j, g##j, i, lr, wd)
#define SGD_SLOT(j) MT_SLOT(j, SGD_BODY)
__kernel void sgd_step_multi(MT_EACH(SGD_ARGS) const REAL lr, const REAL wd, const int total, const int chunk) {
    MT_RANGE(total, chunk);
    MT_EACH(SGD_SLOT)
}

/* Slot j: (p, g, buf, n, first): "first" (no buffer yet) is the slot's own. */
#define SGDM_ARGS(j) __global REAL *p##j, __global const REAL *g##j, __global REAL *b##j, const int n##j, \
                     const int first##j,
#define SGDM_BODY(j, i) \
    sgd_momentum_elem(p##j, g##j, b##j, i, lr, wd, momentum, one_minus_dampening, first##j, nesterov)
#define SGDM_SLOT(j) MT_SLOT(j, SGDM_BODY)
__kernel void sgd_momentum_step_multi(MT_EACH(SGDM_ARGS) const REAL lr, const REAL wd, const REAL momentum,
                                      const REAL one_minus_dampening, const int nesterov, const int total,
                                      const int chunk) {
    MT_RANGE(total, chunk);
    MT_EACH(SGDM_SLOT)
}
