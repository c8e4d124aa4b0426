/* cl/ops/unary.cl - element-wise unary math behind src/ops/unary.c: neg, exp, log, sqrt, abs,
 * clamp and pow by a scalar, forward and backward, with PyTorch's values and derivatives
 * (derivatives.yaml). Every forward is (y, x, p0, p1, mode, n) and every backward
 * (dx, dy, s, p0, p1, mode, beta, n), where s is the input x or the saved output y, whichever
 * the derivative is taken from; p0, p1 are clamp's bounds or pow's exponent e and e - 1, mode
 * pow's special case (below); unused elsewhere, so the host drives all seven alike. One form
 * serves both kernel styles (element runs: FOR_ELEMS). Tests: tests/ops/test_unary.c.
 */
#include "common/defs.h"

/* How torch.pow(x, e) computes, decided on the host from e in double as PyTorch decides. */
#define POW_ONE 0          /* e == 0: 1, even for NaN */
#define POW_COPY 1         /* e == 1: x */
#define POW_SQUARE 2       /* e == 2: x * x */
#define POW_CUBE 3         /* e == 3: x * x * x */
#define POW_SQRT 4         /* e == 0.5: sqrt(x), so pow(-inf, 0.5) is NaN and pow(-0, 0.5) -0 */
#define POW_RSQRT 5        /* e == -0.5: 1 / sqrt(x) */
#define POW_RECIP 6        /* e == -1: 1 / x */
#define POW_RECIP_SQUARE 7 /* e == -2: 1 / (x * x) */
#define POW_GENERAL 8      /* pow(x, e) */
#define POW_ZERO_GRAD 9    /* backward only: e == 0, the gradient is 0 whatever dy holds */

inline REAL pow_by(const REAL x, const REAL e, const int mode) {
    switch (mode) {
    case POW_ONE: return (REAL)1;
    case POW_COPY: return x;
    case POW_SQUARE: return x * x;
    case POW_CUBE: return x * x * x;
    case POW_SQRT: return sqrt(x);
    case POW_RSQRT: return (REAL)1 / sqrt(x);
    case POW_RECIP: return (REAL)1 / x;
    case POW_RECIP_SQUARE: return (REAL)1 / (x * x);
    default: return pow(x, e);
    }
}

#define UNARY_FORWARD(name, EXPR)                                                                         \
    __kernel void name##_forward(__global REAL *y, __global const REAL *x, const REAL p0, const REAL p1,  \
                                 const int mode, const int n, const int chunk) {                          \
        (void)p0, (void)p1, (void)mode;                                                                   \
        FOR_ELEMS(i, n, chunk) {                                                                          \
            const REAL v = x[i];                                                                          \
            y[i] = (EXPR);                                                                                \
        }                                                                                                 \
    }

/* dx = beta * dx + EXPR, with d = dy[i] and s = s[i]. */
#define UNARY_BACKWARD(name, EXPR)                                                                        \
    __kernel void name##_backward(__global REAL *dx, __global const REAL *dy, __global const REAL *s,     \
                                  const REAL p0, const REAL p1, const int mode, const REAL beta,          \
                                  const int n, const int chunk) {                                         \
        (void)p0, (void)p1, (void)mode;                                                                   \
        FOR_ELEMS(i, n, chunk) {                                                                          \
            const REAL d = dy[i], v = s[i];                                                               \
            ACCUM(dx[i], (EXPR));                                                                         \
        }                                                                                                 \
    }

UNARY_FORWARD(neg, -v)
UNARY_BACKWARD(neg, -d)

/* From the saved output: exp' = exp. */
UNARY_FORWARD(exp, exp(v))
UNARY_BACKWARD(exp, d * v)

UNARY_FORWARD(log, log(v))
UNARY_BACKWARD(log, d / v)

/* From the saved output: sqrt' = 1 / (2 sqrt), inf at 0 as PyTorch. */
UNARY_FORWARD(sqrt, sqrt(v))
UNARY_BACKWARD(sqrt, d / ((REAL)2 * v))

/* sign(x) as torch.sgn: 0 at 0 and at NaN, where dy * 0 still keeps a NaN dy. */
UNARY_FORWARD(abs, fabs(v))
UNARY_BACKWARD(abs, d * (v > (REAL)0 ? (REAL)1 : v < (REAL)0 ? (REAL)-1 : (REAL)0))

/* min(max(x, lo), hi) with NaN kept (fmin/fmax would drop it); p0 = lo, p1 = hi. The gradient
 * passes where lo <= x <= hi, and is 0 at NaN x, whose comparisons are false. */
UNARY_FORWARD(clamp, isnan(v) ? v : fmin(fmax(v, p0), p1))
UNARY_BACKWARD(clamp, v >= p0 && v <= p1 ? d : (REAL)0)

/* Forward: x^e (p0 = e, mode for e). Backward: dy * (e * x^(e - 1)) (p1 = e - 1, mode for
 * e - 1, or POW_ZERO_GRAD), PyTorch's pow_backward, grouped as it is. */
UNARY_FORWARD(pow, pow_by(v, p0, mode))
UNARY_BACKWARD(pow, mode == POW_ZERO_GRAD ? (REAL)0 : d * (p0 * pow_by(v, p1, mode)))
