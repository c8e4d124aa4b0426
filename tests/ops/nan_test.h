/* tests/ops/nan_test.h - what the NaN-propagation tests share (tests/ops/test_*.c test_nan,
 * tests/blas/test_gemm.c, tests/tensor/test_tensor.c): tensors from double arrays that hold
 * NaN in either dtype, and the check "NaN exactly where the host reference (IEEE arithmetic,
 * as PyTorch's) gives NaN, close elsewhere". The expected NaN positions of each op were
 * checked against PyTorch (torch 2.x, CPU) when the tests were written. Header only.
 */
#ifndef CLGRAD_TESTS_OPS_NAN_TEST_H
#define CLGRAD_TESTS_OPS_NAN_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ref.h"
#include "ref_ops.h"

/* A tensor of dtype dt holding v (converted to f32 when dt is; NaN stays NaN). */
static inline clg_tensor *nan_tensor(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, const double *v) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    clg_tensor *t = NULL;
    if (dt == CLG_F64) {
        REF_OK(ctx, clg_tensor_from_host(ctx, dt, ndim, shape, v, &t));
        return t;
    }
    float *f = malloc(n * sizeof *f);
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)v[i];
    REF_OK(ctx, clg_tensor_from_host(ctx, dt, ndim, shape, f, &t));
    free(f);
    return t;
}

/* Relative tolerance of the small, well-conditioned sums these tests compute (a few terms of
 * size ~1): a few units of the dtype's rounding. */
static inline double nan_rtol(clg_dtype dt) { return dt == CLG_F64 ? 1e-13 : 1e-5; }

/* t must hold want: NaN exactly where want is NaN, within rtol/atol elsewhere. */
static inline void nan_expect(const clg_tensor *t, const double *want, size_t n, double rtol, double atol,
                              const char *what, clg_dtype dt) {
    assert_non_null(t);
    assert_int_equal(clg_tensor_numel(t), n);
    double *got = ref_to_host_f64(t), *w = malloc(n * sizeof *w);
    assert_non_null(w);
    char msg[400];
    snprintf(msg, sizeof msg, "%s (%s)", what, clg_dtype_name(dt));
    /* an infinity must come out as that infinity (inf - inf would fail the closeness test) */
    for (size_t i = 0; i < n; i++) {
        w[i] = want[i];
        if (isinf(want[i]) && got[i] == want[i]) w[i] = got[i] = 0;
    }
    ref_assert_close_nan(got, w, n, rtol, atol, msg);
    free(got);
    free(w);
}

/* A tensor filled with value v (NaN included). */
static inline clg_tensor *nan_filled(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, double v) {
    clg_tensor *t = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, ndim, shape, &t));
    REF_OK(ctx, clg_tensor_fill(t, v));
    return t;
}

#endif
