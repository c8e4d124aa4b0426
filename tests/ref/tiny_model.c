/* tests/ref/tiny_model.c - the tiny cnn shared by the robustness tests; declarations and
 * the layer list in tiny_model.h. Public API only, as an application would write it.
 */
#include "tiny_model.h"

#include "blas/tuning.h" /* forcing a GEMM path */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Creates one layer (expr writes m) and appends it, unless an earlier one failed. */
#define ADD(expr)                                    \
    do {                                             \
        if (st == CLG_OK && (st = (expr)) == CLG_OK) \
            st = clg_sequential_add(seq, m);         \
    } while (0)

clg_status tiny_create(clg_context *ctx, uint64_t seed, tiny_model *t) {
    memset(t, 0, sizeof *t);
    clg_module *seq = NULL, *m = NULL;
    clg_status st = clg_sequential_create(ctx, &seq);
    if (st != CLG_OK) return st;
    clg_conv2d_params cp = clg_conv2d_default_params();
    cp.pad_h = cp.pad_w = 1;
    const clg_pool2d_params pool = {2, 2, 2, 2, 0, 0};
    ADD(clg_conv2d_module_create(ctx, "conv1", 1, 4, 3, 3, cp, true, seed + 1, &m));
    ADD(clg_batch_norm2d_module_create(ctx, "bn1", 4, 1e-5, 0.1, &m));
    ADD(clg_relu_module_create(ctx, &m));
    ADD(clg_max_pool2d_module_create(ctx, pool, &m));
    ADD(clg_flatten_module_create(ctx, &m));
    ADD(clg_linear_module_create(ctx, "fc1", 4 * (TINY_HW / 2) * (TINY_HW / 2), 16, true, seed + 2, &m));
    ADD(clg_dropout_module_create(ctx, 0.25, seed + 3, &m));
    ADD(clg_linear_module_create(ctx, "fc2", 16, 10, true, seed + 4, &m));
    clg_tensor *params[16];
    size_t np = st == CLG_OK ? clg_module_parameters(seq, params, 16) : 0;
    if (st == CLG_OK) st = clg_adam_create(ctx, params, np, clg_adam_default_params(), &t->opt);
    if (st != CLG_OK) {
        clg_module_free(seq);
        return st;
    }
    t->model = seq;
    return CLG_OK;
}

void tiny_free(tiny_model *t) {
    clg_optimizer_free(t->opt);
    clg_module_free(t->model);
    memset(t, 0, sizeof *t);
}

void tiny_batch(int step, float *x, int32_t *labels) {
    uint32_t s = 2166136261u ^ (uint32_t)step;
    for (int i = 0; i < TINY_N * TINY_HW * TINY_HW; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) * (1.0f / 16777216.0f);
    }
    for (int i = 0; i < TINY_N; i++) labels[i] = (step * 3 + i) % 10;
}

clg_status tiny_step(clg_context *ctx, tiny_model *t, int step, double *loss) {
    float x[TINY_N * TINY_HW * TINY_HW]; // (N, 1, H, W)
    int32_t labels[TINY_N];
    tiny_batch(step, x, labels);
    const int shape[4] = {TINY_N, 1, TINY_HW, TINY_HW};
    clg_tensor *xt = NULL, *logits = NULL, *l = NULL;
    double value = 0;
    clg_status st = clg_tensor_from_host(ctx, CLG_F32, 4, shape, x, &xt);
    if (st == CLG_OK) st = clg_module_forward(ctx, t->model, xt, &logits);
    if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, logits, labels, TINY_N, &l);
    if (st == CLG_OK) st = clg_backward(ctx, l);
    if (st == CLG_OK) st = clg_optimizer_step(t->opt);
    if (st == CLG_OK) st = clg_tensor_item(l, &value);
    /* The clean-up a caller owes after any step, failed or not. */
    clg_tensor_free(l);
    clg_tensor_free(logits);
    clg_tensor_free(xt);
    clg_optimizer_zero_grad(t->opt);
    if (loss) *loss = value;
    return st;
}

clg_status tiny_context(const char *gemm_path, clg_context **out, char *err, size_t err_len) {
    clg_context_params p = clg_context_default_params();
    clg_status st = clg_context_create(&p, out, err, err_len);
    if (st != CLG_OK) return st;
    st = clg_blas_force_path(*out, gemm_path);
    if (st != CLG_OK) {
        if (err && err_len) snprintf(err, err_len, "%s", clg_context_errmsg(*out));
        clg_context_free(*out);
        *out = NULL;
    }
    return st;
}
