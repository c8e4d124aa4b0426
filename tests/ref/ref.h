/* tests/ref/ref.h - what every test executable shares: one context per group (device
 * from CLGRAD_DEVICE), array comparison with a clear message, the f64 finite-difference
 * gradient check, and naive readable C references of the ops (llm.c style) in ref_*.c.
 */
#ifndef CLGRAD_TESTS_REF_H
#define CLGRAD_TESTS_REF_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "clgrad.h"

/* cmocka group setup/teardown: *state becomes a clg_context * (device from CLGRAD_DEVICE). */
int ref_group_setup(void **state);
/* The same with these params (a kernel style, a small conv workspace, ...). */
int ref_group_setup_params(void **state, clg_context_params p);
int ref_group_teardown(void **state);
/* Whether CLGRAD_TEST_SKIP (space-separated patterns, * and ?) names the test case. */
bool ref_test_skipped(const char *name);
/* cmocka_run_group_tests_name over tests[0..n) less those ref_test_skipped names. */
int ref_run_group(const char *group, const struct CMUnitTest *tests, size_t n, CMFixtureFunction setup,
                  CMFixtureFunction teardown);

/* Fails the test (with index, values and the context's error) unless
 * |got - want| <= atol + rtol * |want| for every element. */
void ref_assert_close(const double *got, const double *want, size_t n, double rtol, double atol,
                      const char *what);
void ref_assert_close_f(const float *got, const float *want, size_t n, double rtol, double atol,
                        const char *what);
/* Skips the test (with a message) when st is the library's answer to f64 work on a device
 * without fp64 (CLG_UNSUPPORTED naming fp64); returns otherwise. */
void ref_skip_without_fp64(const clg_context *ctx, clg_status st);

/* Fails with the context's error message when st != CLG_OK; f64 work on a device without
 * fp64 skips the test instead. */
#define REF_OK(ctx, call)                                                                     \
    do {                                                                                      \
        clg_status st_ = (call);                                                              \
        if (st_ != CLG_OK) {                                                                  \
            ref_skip_without_fp64((ctx), st_);                                                \
            fail_msg("%s -> %s: %s", #call, clg_status_name(st_), clg_context_errmsg(ctx));   \
        }                                                                                     \
    } while (0)

/* Fails unless call returns the status want; names both and the context's error (f64 work
 * on a device without fp64 skips, as in REF_OK). */
#define REF_EXPECT(ctx, call, want)                                                           \
    do {                                                                                      \
        clg_status st_ = (call);                                                              \
        if (st_ != (want)) ref_skip_without_fp64((ctx), st_);                                 \
        if (st_ != (want))                                                                    \
            fail_msg("%s -> %s, want %s: %s", #call, clg_status_name(st_),                    \
                     clg_status_name(want), clg_context_errmsg(ctx));                         \
    } while (0)

/* Host copies of tensors. */
double *ref_to_host_f64(const clg_tensor *t); /* converts from f32 when needed; free() it */
clg_tensor *ref_tensor_f64(clg_context *ctx, int ndim, const int *shape, const double *data);
clg_tensor *ref_rand_f64(clg_context *ctx, int ndim, const int *shape, uint64_t seed, double lo, double hi);
clg_tensor *ref_rand(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, uint64_t seed, double lo, double hi);

/* C = alpha op(A) op(B) + beta C on the host in long double, row-major; a, b, c point at
 * the first element (offsets already applied). beta = 0 never reads C (it may hold NaN), as
 * in BLAS. The reference of every GEMM path's tests. */
void ref_gemm(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha, const double *a, size_t lda,
              const double *b, size_t ldb, double beta, double *c, size_t ldc);

/* Finite-difference gradient check in f64. f builds y from inputs through graph ops
 * (inputs are f64 leaves with requires_grad set). The check takes loss = sum(r * y) for a
 * fixed random r, runs clg_backward_grad(y, r), and compares every input's .grad with
 * central differences (step h) of that loss. Asserts |analytic - numeric| <= tol * (1 + |numeric|). */
typedef clg_status (*ref_fn)(clg_context *ctx, clg_tensor *const *inputs, int n, clg_tensor **y,
                             void *user);
void ref_gradcheck(clg_context *ctx, ref_fn f, clg_tensor *const *inputs, int n, void *user,
                   double h, double tol, const char *what);

/* rm -rf: removes path and, for a folder, everything under it (symlinks are not followed). */
void ref_rm_rf(const char *path);

#endif
