/* tests/ops/test_conv2d.h - what the two conv2d test files share (tests/ops/test_conv2d.c:
 * references, fixtures, gradients, bad input; tests/ops/test_conv2d_chunks.c: the beta
 * contract and chunking): a case's tensors, its name in messages, and contexts with a given
 * workspace limit. The naive reference is ref_conv2d_* in tests/ref/ref_ops.c. Header only.
 */
#ifndef CLGRAD_TESTS_OPS_TEST_CONV2D_H
#define CLGRAD_TESTS_OPS_TEST_CONV2D_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_ops.h"
#include "ref_style.h"

typedef ref_conv_case conv_case;

#define P_(sh, sw, ph, pw, dh, dw, g)                                                                        \
    { sh, sw, ph, pw, dh, dw, g }

typedef struct case_tensors {
    clg_tensor *x, *w, *b, *y, *dy, *dx, *dw, *db;
    double *hx, *hw, *hb, *hdy; /* host copies of the inputs */
    int xs[4], ws[4], ys[4];
} case_tensors;

/* The tensors of case c in ctx, random from seed (the same seed gives the same values in any
 * context), and host copies of the inputs. */
static inline void case_make(clg_context *ctx, clg_dtype dt, const conv_case *c, uint64_t seed,
                             case_tensors *t) {
    memset(t, 0, sizeof *t);
    const int xs[4] = {c->N, c->C, c->H, c->W};
    const int ws[4] = {c->K, c->C / c->p.groups, c->KH, c->KW};
    const int ys[4] = {c->N, c->K, ref_conv_out_h(c), ref_conv_out_w(c)};
    memcpy(t->xs, xs, sizeof xs), memcpy(t->ws, ws, sizeof ws), memcpy(t->ys, ys, sizeof ys);
    assert_true(ys[2] > 0 && ys[3] > 0);
    t->x = ref_rand(ctx, dt, 4, xs, seed, -1, 1);
    t->w = ref_rand(ctx, dt, 4, ws, seed + 1, -1, 1);
    if (c->bias) t->b = ref_rand(ctx, dt, 1, &c->K, seed + 2, -1, 1);
    t->dy = ref_rand(ctx, dt, 4, ys, seed + 3, -1, 1);
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ys, &t->y));
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, xs, &t->dx));
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ws, &t->dw));
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, &c->K, &t->db));
    t->hx = ref_to_host_f64(t->x);
    t->hw = ref_to_host_f64(t->w);
    t->hb = t->b ? ref_to_host_f64(t->b) : NULL;
    t->hdy = ref_to_host_f64(t->dy);
}

static inline void case_free(case_tensors *t) {
    clg_tensor *all[] = {t->x, t->w, t->b, t->y, t->dy, t->dx, t->dw, t->db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clg_tensor_free(all[i]);
    free(t->hx), free(t->hw), free(t->hb), free(t->hdy);
}

static inline void case_name(const conv_case *c, const char *what, char *buf, size_t len) {
    snprintf(buf, len,
             "%s: x (%d,%d,%d,%d) w (%d,%d,%d,%d) stride %dx%d pad %dx%d dil %dx%d groups %d "
             "bias %d",
             what, c->N, c->C, c->H, c->W, c->K, c->C / c->p.groups, c->KH, c->KW, c->p.stride_h,
             c->p.stride_w, c->p.pad_h, c->p.pad_w, c->p.dilation_h, c->p.dilation_w, c->p.groups, c->bias);
}

/* A context of this kernel style whose conv2d workspace is limited to workspace bytes (0: the
 * default), through the public params, so a test can force a number of images per chunk.
 * The caller frees it with clg_context_free. */
static inline clg_context *conv_context(clg_kernel_style style, size_t workspace) {
    clg_context_params p = clg_context_default_params();
    p.kernel_style = style;
    p.conv_workspace_bytes = workspace;
    void *state = NULL;
    if (ref_group_setup_params(&state, p) != 0) fail_msg("cannot create a context with workspace %zu", workspace);
    return state;
}

#endif
