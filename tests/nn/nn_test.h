/* tests/nn/nn_test.h - what the nn tests share: building sequentials, the state entry by
 * name, comparisons and writes of host doubles, and the models (the fixture's small_cnn,
 * the training models lenet and cnn). Header only (static inline, so a test that uses part of it
 * compiles clean). Used by tests/nn/test_nn.c, test_nn_training.c, test_module.c.
 */
#ifndef CLGRAD_TESTS_NN_TEST_H
#define CLGRAD_TESTS_NN_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_ops.h"
#include "ref_style.h"

/* ---------------------------------------------------------------- helpers */

/* Adds a freshly made *child to seq, failing the test on error. (A pointer to it: the
 * constructor, the argument before, writes it, and arguments have no evaluation order.) */
static inline void add(clg_context *ctx, clg_module *seq, clg_status made, clg_module **child) {
    REF_OK(ctx, made);
    REF_OK(ctx, clg_sequential_add(seq, *child));
    *child = NULL;
}

static inline clg_conv2d_params pad(int p) {
    clg_conv2d_params c = clg_conv2d_default_params();
    c.pad_h = c.pad_w = p;
    return c;
}

static inline clg_pool2d_params pool(int k) { return (clg_pool2d_params){k, k, 0, 0, 0, 0}; }

/* The named state entry of m (fails the test when absent). */
static inline clg_tensor *entry(const clg_module *m, const char *name) {
    clg_named_tensor e[64];
    size_t n = clg_module_state(m, e, 64);
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0) return e[i].tensor;
    fail_msg("module has no state entry %s", name);
    return NULL;
}

static inline void assert_tensor_close(const clg_tensor *got, const double *want, size_t n, double rtol, double atol,
                                const char *what) {
    assert_int_equal(clg_tensor_numel(got), n);
    double *g = ref_to_host_f64(got);
    ref_assert_close(g, want, n, rtol, atol, what);
    free(g);
}

/* Writes host doubles into t, converting to f32 when t is f32. */
static inline void write_doubles(clg_context *ctx, clg_tensor *t, const double *v) {
    const size_t n = clg_tensor_numel(t);
    if (clg_tensor_dtype(t) == CLG_F64) {
        REF_OK(ctx, clg_tensor_write(t, v, n * sizeof *v));
        return;
    }
    float *f = malloc(n * sizeof *f);
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)v[i];
    clg_status st = clg_tensor_write(t, f, n * sizeof *f);
    free(f);
    REF_OK(ctx, st);
}

/* ---------------------------------------------------------------- models */

/* The fixture's model: conv1 Conv2d(1,4,3,pad 1) -> bn1 -> relu -> max_pool 2 -> flatten ->
 * fc Linear(64,3), for (N, 1, 8, 8) inputs. */
static inline clg_module *small_cnn(clg_context *ctx, uint64_t seed) {
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv1", 1, 4, 3, 3, pad(1), true, seed, &m), &m);
    add(ctx, seq, clg_batch_norm2d_module_create(ctx, "bn1", 4, 1e-5, 0.1, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc", 64, 3, true, seed + 1, &m), &m);
    return seq;
}

/* Issue 5's lenet: conv 1->6 k5 pad 2, relu, pool 2, conv 6->16 k5, relu, pool 2, flatten,
 * linear 400->120, relu, 120->84, relu, 84->10. Names as tools/clgrad_torch.py's LeNet. */
static inline clg_module *lenet(clg_context *ctx, uint64_t seed) {
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv1", 1, 6, 5, 5, pad(2), true, seed, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv2", 6, 16, 5, 5, pad(0), true, seed + 1, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc1", 400, 120, true, seed + 2, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc2", 120, 84, true, seed + 3, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc3", 84, 10, true, seed + 4, &m), &m);
    return seq;
}

/* Issue 5's cnn: conv 1->32 k3 pad 1, bn, relu, pool 2, conv 32->64 k3 pad 1, bn, relu,
 * pool 2, flatten, linear 3136->128, relu, dropout 0.25, linear 128->10. */
static inline clg_module *cnn(clg_context *ctx, uint64_t seed) {
    clg_module *seq = NULL, *m = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv1", 1, 32, 3, 3, pad(1), true, seed, &m), &m);
    add(ctx, seq, clg_batch_norm2d_module_create(ctx, "bn1", 32, 1e-5, 0.1, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_conv2d_module_create(ctx, "conv2", 32, 64, 3, 3, pad(1), true, seed + 1, &m), &m);
    add(ctx, seq, clg_batch_norm2d_module_create(ctx, "bn2", 64, 1e-5, 0.1, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_max_pool2d_module_create(ctx, pool(2), &m), &m);
    add(ctx, seq, clg_flatten_module_create(ctx, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc1", 3136, 128, true, seed + 2, &m), &m);
    add(ctx, seq, clg_relu_module_create(ctx, &m), &m);
    add(ctx, seq, clg_dropout_module_create(ctx, 0.25, seed + 3, &m), &m);
    add(ctx, seq, clg_linear_module_create(ctx, "fc2", 128, 10, true, seed + 4, &m), &m);
    return seq;
}

/* ---------------------------------------------------------------- initialisation */

#endif
