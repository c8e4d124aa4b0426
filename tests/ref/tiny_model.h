/* tests/ref/tiny_model.h - a tiny version of clgrad-train's cnn (tools/models.c) for the
 * robustness tests (test_faults.c, test_determinism.c, test_checkpoint_crash.c):
 * conv(1->4, 3x3, pad 1) -> bn -> relu -> max_pool 2 -> flatten -> linear(64->16) ->
 * dropout(0.25) -> linear(16->10) on (8, 1, 8, 8) inputs, cross-entropy, Adam.
 */
#ifndef CLGRAD_TESTS_TINY_MODEL_H
#define CLGRAD_TESTS_TINY_MODEL_H

#include "clgrad.h"

#define TINY_N 8  /* batch */
#define TINY_HW 8 /* image side */

typedef struct tiny_model {
    clg_module *model;
    clg_optimizer *opt;
} tiny_model;

/* A context on the default device with the GEMM path forced by name ("clblast", "packed",
 * or "auto" for the automatic rule) through src/blas/tuning.h. */
clg_status tiny_context(const char *gemm_path, clg_context **out, char *err, size_t err_len);

/* Model (weights from seed) and its Adam optimizer. On failure nothing is left allocated. */
clg_status tiny_create(clg_context *ctx, uint64_t seed, tiny_model *t);
void tiny_free(tiny_model *t);

/* The batch of a step: (TINY_N, 1, TINY_HW, TINY_HW) images and TINY_N labels, a fixed
 * function of step (the same data order in every run). */
void tiny_batch(int step, float *x, int32_t *labels);

/* One full training step on tiny_batch(step): forward, loss, backward, Adam, loss to host.
 * Whatever happens it leaves the context clean for the next step: the batch, the logits
 * and the loss are freed (dropping the graph they hold) and the gradients are zeroed, which
 * is all a caller has to do after a failed step. loss may be NULL. */
clg_status tiny_step(clg_context *ctx, tiny_model *t, int step, double *loss);

#endif
