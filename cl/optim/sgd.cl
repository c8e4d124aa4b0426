/* cl/optim/sgd.cl - SGD updates behind src/optim/sgd.c, PyTorch's rule and order of
 * operations (torch.optim.SGD, single-tensor path). Element loops: FOR_ELEMS (cl/common/defs.h).
 * Tests: tests/graph/test_optim.c.
 */
#include "common/defs.h"

/* d_p = g + wd * p; p -= lr * d_p. PyTorch skips the decay term when wd == 0, which also
 * keeps an inf/NaN parameter from leaking into d_p through 0 * p. */
__kernel void sgd_step(__global REAL *p, __global const REAL *g, const REAL lr, const REAL wd, const int n,
                       const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        REAL d = g[i];
        if (wd != (REAL)0) d = d + wd * p[i];
        p[i] = p[i] + (-lr) * d;
    }
}

/* buf = first ? d_p : momentum * buf + (1 - dampening) * d_p;
 * d_p = nesterov ? d_p + momentum * buf : buf; p -= lr * d_p. */
__kernel void sgd_momentum_step(__global REAL *p, __global const REAL *g, __global REAL *buf, const REAL lr,
                                const REAL wd, const REAL momentum, const REAL one_minus_dampening,
                                const int first, const int nesterov, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const REAL pi = p[i];
        REAL d = g[i];
        if (wd != (REAL)0) d = d + wd * pi;
        const REAL b = first ? d : momentum * buf[i] + one_minus_dampening * d;
        buf[i] = b;
        d = nesterov ? d + momentum * b : b;
        p[i] = pi + (-lr) * d;
    }
}
