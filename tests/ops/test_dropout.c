/* tests/ops/test_dropout.c - dropout (src/ops/dropout.c, cl/ops/dropout.cl): a host
 * Philox-4x32-10 checked against Random123's known-answer vectors, the device mask equal to
 * it bit for bit in f32 and f64, its keep rate, modes, backward, bad input and NaN (kept as
 * PyTorch keeps it: input * noise).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"
#include "ref_ops.h"
#include "nan_test.h"
#include "ref_style.h"
#include "ops/op.h"

/* ---------------------------------------------------------------- host reference */

static void philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
    uint32_t c[4] = {ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3]}, k[2] = {key_in[0], key_in[1]};
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += 0x9E3779B9u;
            k[1] += 0xBB67AE85u;
        }
        const uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k[0], n1 = (uint32_t)p1;
        const uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k[1], n3 = (uint32_t)p0;
        c[0] = n0, c[1] = n1, c[2] = n2, c[3] = n3;
    }
    memcpy(out, c, sizeof c);
}

/* The mask rule of cl/ops/dropout.cl, written out independently. */
static bool ref_keep(uint64_t seed, size_t i, double p) {
    const uint64_t g = i / 4;
    const uint32_t ctr[4] = {(uint32_t)g, (uint32_t)(g >> 32), 0, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t r[4];
    philox4x32_10(ctr, key, r);
    return (uint64_t)r[i % 4] >= (uint64_t)ceil(p * 4294967296.0);
}

static void test_philox_known_answers(void **state) {
    (void)state;
    /* Random123 kat_vectors: philox4x32 10, counter, key, expected. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
         0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        philox4x32_10(kat[i], kat[i] + 4, out);
        for (int j = 0; j < 4; j++)
            assert_int_equal(out[j], kat[i][6 + j]);
    }
}

/* ---------------------------------------------------------------- the mask */

/* y = dropout(ones): the mask times the scale, read back as doubles. */
static double *dropout_ones(clg_context *ctx, clg_dtype dt, int n, double p, uint64_t seed) {
    clg_tensor *x = NULL, *y = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, &n, &x));
    REF_OK(ctx, clg_tensor_fill(x, 1.0));
    REF_OK(ctx, clg_dropout(ctx, x, p, true, seed, &y));
    double *h = ref_to_host_f64(y);
    clg_tensor_free(y);
    clg_tensor_free(x);
    return h;
}

/* Bit-exact against the host Philox, both dtypes; 1001 elements end mid-way through a
 * Philox block; a seed above 2^32 exercises the key's high word. */
static void test_mask_matches_host(void **state) {
    clg_context *ctx = *state;
    const int n = 1001;
    const double p = 0.3;
    const uint64_t seeds[2] = {42, 0x123456789abcdefULL};
    for (int s = 0; s < 2; s++)
        for (int d = 0; d < 2; d++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            double *y = dropout_ones(ctx, dt, n, p, seeds[s]);
            const double scale = d ? 1 / (1 - p) : (double)(float)(1 / (1 - p));
            for (int i = 0; i < n; i++) {
                const double want = ref_keep(seeds[s], (size_t)i, p) ? scale : 0.0;
                if (y[i] != want)
                    fail_msg("%s seed %llx: y[%d] = %.17g, host Philox says %.17g", clg_dtype_name(dt),
                             (unsigned long long)seeds[s], i, y[i], want);
            }
            free(y);
        }
}

static void test_seeds_and_dtypes(void **state) {
    clg_context *ctx = *state;
    const int n = 4096;
    double *a32 = dropout_ones(ctx, CLG_F32, n, 0.5, 7), *a64 = dropout_ones(ctx, CLG_F64, n, 0.5, 7);
    double *b64 = dropout_ones(ctx, CLG_F64, n, 0.5, 8), *c64 = dropout_ones(ctx, CLG_F64, n, 0.5, 7);
    int same_dtype = 0, other_seed = 0, again = 0;
    for (int i = 0; i < n; i++) {
        same_dtype += (a32[i] != 0) == (a64[i] != 0);
        other_seed += (b64[i] != 0) != (a64[i] != 0);
        again += c64[i] == a64[i];
    }
    assert_int_equal(same_dtype, n); /* same seed: same mask in f32 and f64 */
    assert_int_equal(again, n);      /* and on every call */
    /* Independent masks at p = 0.5 disagree on about half the elements. */
    if (other_seed < n * 4 / 10 || other_seed > n * 6 / 10)
        fail_msg("seeds 7 and 8 disagree on %d of %d elements", other_seed, n);
    free(a32);
    free(a64);
    free(b64);
    free(c64);
}

/* Over 1e5 elements the kept fraction is 1 - p within 1%. */
static void test_keep_rate(void **state) {
    clg_context *ctx = *state;
    const int n = 100000;
    const double ps[3] = {0.1, 0.5, 0.9};
    for (int k = 0; k < 3; k++) {
        double *y = dropout_ones(ctx, CLG_F32, n, ps[k], 1234 + k);
        int kept = 0;
        for (int i = 0; i < n; i++)
            kept += y[i] != 0;
        const double rate = (double)kept / n, want = 1 - ps[k];
        if (fabs(rate - want) > 0.01 * want)
            fail_msg("p = %g: kept %.5f, want %.5f within 1%%", ps[k], rate, want);
        free(y);
    }
}

/* ---------------------------------------------------------------- modes */

static void test_modes(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {7, 9};
    clg_tensor *x = ref_rand(ctx, CLG_F64, 2, shape, 3, -2, 2), *y = NULL;
    double *xh = ref_to_host_f64(x);
    /* Evaluation: x itself, a new reference. */
    REF_OK(ctx, clg_dropout(ctx, x, 0.5, false, 1, &y));
    assert_ptr_equal(y, x);
    clg_tensor_free(y);
    /* p = 0 in training: identity. */
    REF_OK(ctx, clg_dropout(ctx, x, 0.0, true, 1, &y));
    double *yh = ref_to_host_f64(y);
    ref_assert_close(yh, xh, 63, 0, 0, "p = 0 is the identity");
    free(yh);
    clg_tensor_free(y);
    /* p = 1: all zeros, no inf or NaN from 1 / (1 - p). */
    REF_OK(ctx, clg_dropout(ctx, x, 1.0, true, 1, &y));
    yh = ref_to_host_f64(y);
    for (int i = 0; i < 63; i++)
        if (yh[i] != 0.0) fail_msg("p = 1: y[%d] = %g", i, yh[i]);
    free(yh);
    clg_tensor_free(y);
    /* Kept elements are x / (1 - p), dropped ones 0. */
    REF_OK(ctx, clg_dropout(ctx, x, 0.25, true, 99, &y));
    yh = ref_to_host_f64(y);
    for (int i = 0; i < 63; i++) {
        const double want = ref_keep(99, (size_t)i, 0.25) ? xh[i] / 0.75 : 0.0;
        if (fabs(yh[i] - want) > 1e-15 * fabs(want)) fail_msg("y[%d] = %.17g, want %.17g", i, yh[i], want);
    }
    free(yh);
    clg_tensor_free(y);
    /* No grad: nothing recorded. */
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    const bool was = clg_set_grad_enabled(ctx, false);
    REF_OK(ctx, clg_dropout(ctx, x, 0.25, true, 99, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    clg_set_grad_enabled(ctx, was);
    free(xh);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- backward */

static void test_backward(void **state) {
    clg_context *ctx = *state;
    const int shape[4] = {2, 3, 5, 7}; /* 210: not a multiple of 4 */
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        clg_tensor *x = ref_rand(ctx, dt, 4, shape, 11, -1, 1), *y = NULL;
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, clg_dropout(ctx, x, 0.4, true, 5, &y));
        clg_tensor *dy = ref_rand(ctx, dt, 4, shape, 12, -1, 1);
        REF_OK(ctx, clg_backward_grad(ctx, y, dy));
        double *dyh = ref_to_host_f64(dy), *dxh = ref_to_host_f64(clg_tensor_grad(x));
        const double scale = d ? 1 / 0.6 : (double)(float)(1 / 0.6);
        for (size_t i = 0; i < 210; i++) {
            /* The same mask as forward, regenerated from the seed. */
            const double want = ref_keep(5, i, 0.4) ? dyh[i] * scale : 0.0;
            if (fabs(dxh[i] - want) > (d ? 1e-15 : 1e-6) * fabs(want))
                fail_msg("%s dx[%zu] = %.17g, want %.17g", clg_dtype_name(dt), i, dxh[i], want);
        }
        char what[64];
        snprintf(what, sizeof what, "dropout %s", clg_dtype_name(dt));
        ref_check_accumulate(ctx, y, &x, 1, what);
        free(dyh);
        free(dxh);
        clg_tensor_free(dy);
        clg_tensor_free(y);
        clg_tensor_free(x);
    }
}

static clg_status gc_dropout(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    return clg_dropout(ctx, in[0], *(const double *)user, true, 77, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {5, 6};
    clg_tensor *x = ref_rand_f64(ctx, 2, shape, 21, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    double p = 0.4;
    ref_gradcheck(ctx, gc_dropout, &x, 1, &p, 1e-6, 1e-7, "dropout p 0.4");
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- errors */

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {8};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 1, shape, 1, 0, 1), *y = (clg_tensor *)1;
    const double bad[4] = {-0.1, 1.5, NAN, INFINITY};
    for (int i = 0; i < 4; i++)
        for (int training = 0; training < 2; training++) {
            const clg_status st = clg_dropout(ctx, x, bad[i], training, 1, &y);
            if (st != CLG_INVALID_ARGUMENT) fail_msg("p = %g: got %s", bad[i], clg_status_name(st));
            assert_null(y);
            assert_non_null(strstr(clg_context_errmsg(ctx), "p must be in [0, 1]"));
        }
    assert_int_equal(clg_dropout(ctx, NULL, 0.5, true, 1, &y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "x is NULL"));
    assert_int_equal(clg_dropout(ctx, x, 0.5, true, 1, NULL), CLG_INVALID_ARGUMENT);
    /* The context still works. */
    REF_OK(ctx, clg_dropout(ctx, x, 0.5, true, 1, &y));
    clg_tensor_free(y);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- NaN */

/* PyTorch's dropout is input * noise (noise = mask / (1 - p)): a NaN stays NaN where it is
 * dropped too (NaN * 0), an infinity dropped is NaN (inf * 0); p = 1 is input * 0, NaN for
 * NaN and infinities. Backward is dy * noise, so a NaN in dy stays NaN everywhere. Eval mode
 * is the identity. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    enum { N = 64 };
    const int shape[1] = {N};
    double xv[N], dyv[N], want[N];
    for (int i = 0; i < N; i++) {
        xv[i] = i % 3 == 0 ? NAN : i % 7 == 1 ? (i % 2 ? INFINITY : -INFINITY) : 0.25 * (i - 20);
        dyv[i] = i % 5 == 2 ? NAN : 1.0 + i;
    }
    const double ps[3] = {0.5, 1.0, 0.0};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        for (int k = 0; k < 3; k++) {
            const double p = ps[k];
            /* the scale as the kernel holds it: f32 rounds 1/(1-p) */
            const double scale = p < 1 ? (d ? 1 / (1 - p) : (double)(float)(1 / (1 - p))) : 0.0;
            clg_tensor *x = nan_tensor(ctx, dt, 1, shape, xv), *dy = nan_tensor(ctx, dt, 1, shape, dyv), *y = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_dropout(ctx, x, p, true, 9, &y));
            for (int i = 0; i < N; i++)
                want[i] = xv[i] * (ref_keep(9, (size_t)i, p) ? scale : 0.0);
            char what[64];
            snprintf(what, sizeof what, "dropout p %g forward with NaN", p);
            nan_expect(y, want, N, nan_rtol(dt), 0, what, dt);
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            for (int i = 0; i < N; i++)
                want[i] = dyv[i] * (ref_keep(9, (size_t)i, p) ? scale : 0.0);
            snprintf(what, sizeof what, "dropout p %g backward with NaN", p);
            nan_expect(clg_tensor_grad(x), want, N, nan_rtol(dt), 0, what, dt);
            clg_tensor_free(y);
            /* evaluation: the identity */
            REF_OK(ctx, clg_dropout(ctx, x, p, false, 9, &y));
            nan_expect(y, xv, N, 0, 0, "dropout eval with NaN", dt);
            clg_tensor_free(y), clg_tensor_free(dy), clg_tensor_free(x);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_mask_matches_host),
        cmocka_unit_test(test_seeds_and_dtypes),
        cmocka_unit_test(test_keep_rate),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_backward),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_nan),
    };
    return REF_RUN_BOTH_STYLES("dropout", tests);
}
