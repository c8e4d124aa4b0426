/* cl/ops/activation.cl - element-wise activations behind src/ops/activation.c: relu,
 * leaky_relu, sigmoid, tanh and the exact (erf) gelu, forward and backward.
 * Every forward is (y, x, param, n) and every backward (dx, dy, s, param, beta, n), where s
 * is the input x or the saved output y, whichever the derivative is cheaper from; param
 * is leaky_relu's slope and unused elsewhere, so the host drives all five alike.
 * Tests: tests/ops/test_activation.c.
 */
#include "common/defs.h"

/* Literal constants in the kernel's own precision: a bare double literal would need fp64
 * in the f32 build. */
#ifdef REAL_IS_DOUBLE
#define LIT(x) x
#else
#define LIT(x) x##f
#endif

/* NaN stays NaN, as in PyTorch: a diverged model must not evaluate to a plausible loss. */
__kernel void relu_forward(__global REAL *y, __global const REAL *x, const REAL param,
                           const int n, const int chunk) {
    (void)param;
    FOR_ELEMS(i, n, chunk) {
        const REAL v = x[i];
        y[i] = v > (REAL)0 || isnan(v) ? v : (REAL)0;
    }
}

/* PyTorch passes no gradient at exactly 0 and, deciding from its NaN output, passes dy
 * through where x is NaN. */
__kernel void relu_backward(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                            const REAL param, const REAL beta, const int n, const int chunk) {
    (void)param;
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], x[i] > (REAL)0 || isnan(x[i]) ? dy[i] : (REAL)0);
    }
}

/* NaN stays NaN by the arithmetic (slope * NaN), as in PyTorch; backward takes the slope
 * branch there, as PyTorch's `x > 0 ? dy : slope * dy` does. */
__kernel void leaky_relu_forward(__global REAL *y, __global const REAL *x, const REAL slope,
                                 const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        y[i] = x[i] > (REAL)0 ? x[i] : slope * x[i];
    }
}

__kernel void leaky_relu_backward(__global REAL *dx, __global const REAL *dy,
                                  __global const REAL *x, const REAL slope, const REAL beta,
                                  const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], x[i] > (REAL)0 ? dy[i] : slope * dy[i]);
    }
}

/* PyTorch's form. For very negative x, exp(-x) overflows to inf and y comes out as 0, the
 * right limit; it never forms inf/inf. */
__kernel void sigmoid_forward(__global REAL *y, __global const REAL *x, const REAL param,
                              const int n, const int chunk) {
    (void)param;
    FOR_ELEMS(i, n, chunk) {
        y[i] = (REAL)1 / ((REAL)1 + exp(-x[i]));
    }
}

/* From the saved output: s' = y (1 - y). */
__kernel void sigmoid_backward(__global REAL *dx, __global const REAL *dy, __global const REAL *y,
                               const REAL param, const REAL beta, const int n, const int chunk) {
    (void)param;
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], dy[i] * ((REAL)1 - y[i]) * y[i]);
    }
}

__kernel void tanh_forward(__global REAL *y, __global const REAL *x, const REAL param,
                           const int n, const int chunk) {
    (void)param;
    FOR_ELEMS(i, n, chunk) {
        y[i] = tanh(x[i]);
    }
}

/* From the saved output: tanh' = 1 - y^2. */
__kernel void tanh_backward(__global REAL *dx, __global const REAL *dy, __global const REAL *y,
                            const REAL param, const REAL beta, const int n, const int chunk) {
    (void)param;
    FOR_ELEMS(i, n, chunk) {
        ACCUM(dx[i], dy[i] * ((REAL)1 - y[i] * y[i]));
    }
}

/* gelu(x) = x * Phi(x), Phi the standard normal CDF = (1 + erf(x / sqrt 2)) / 2. */
__kernel void gelu_forward(__global REAL *y, __global const REAL *x, const REAL param,
                           const int n, const int chunk) {
    (void)param;
    FOR_ELEMS(i, n, chunk) {
        const REAL v = x[i];
        y[i] = v * LIT(0.5) * (LIT(1.0) + erf(v * LIT(0.70710678118654752440)));
    }
}

/* gelu'(x) = Phi(x) + x * phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
__kernel void gelu_backward(__global REAL *dx, __global const REAL *dy, __global const REAL *x,
                            const REAL param, const REAL beta, const int n, const int chunk) {
    (void)param;
    FOR_ELEMS(i, n, chunk) {
        const REAL v = x[i];
        const REAL cdf = LIT(0.5) * (LIT(1.0) + erf(v * LIT(0.70710678118654752440)));
        const REAL pdf = LIT(0.39894228040143267794) * exp(LIT(-0.5) * v * v);
        ACCUM(dx[i], dy[i] * (cdf + v * pdf));
    }
}
