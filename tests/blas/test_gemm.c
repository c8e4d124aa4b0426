/* tests/blas/test_gemm.c - clg_gemm (include/clgrad/ops.h, src/blas/gemm.c) against a naive
 * host loop accumulating in double: all four transpose combinations, square and
 * non-square sizes, alpha/beta, offsets and padded leading dimensions, f32 and f64; and
 * every bad input returning its status with a message naming the sizes; NaN and infinities
 * propagating as in PyTorch's matmul.
 */
#include "ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gemm_case {
    bool ta, tb;
    size_t m, n, k;
    double alpha, beta;
} gemm_case;

/* Where operands sit inside their tensors: offsets and padded leading dimensions, so a
 * kernel that ignores either reads the wrong numbers. */
enum { A_OFF = 5, A_PAD = 3, B_OFF = 3, B_PAD = 2, C_OFF = 7, C_PAD = 4, TAIL = 2 };

static const size_t sizes[][3] = {
    {1, 1, 1},    {7, 7, 7},    {33, 33, 33}, {130, 130, 130},              /* square */
    {7, 33, 130}, {130, 7, 33}, {33, 130, 7}, {1, 130, 33},    {130, 1, 7}, /* m x n x k */
};

static clg_tensor *rand1d(clg_context *ctx, clg_dtype dt, size_t len, uint64_t seed) {
    const int shape[1] = {(int)len};
    return ref_rand(ctx, dt, 1, shape, seed, -1.0, 1.0);
}

static void run_case(clg_context *ctx, clg_dtype dt, const gemm_case *g, uint64_t seed) {
    const size_t ar = g->ta ? g->k : g->m, ac = g->ta ? g->m : g->k;
    const size_t br = g->tb ? g->n : g->k, bc = g->tb ? g->k : g->n;
    const size_t lda = ac + A_PAD, ldb = bc + B_PAD, ldc = g->n + C_PAD;
    const size_t a_len = A_OFF + ar * lda + TAIL, b_len = B_OFF + br * ldb + TAIL;
    const size_t c_len = C_OFF + g->m * ldc + TAIL;
    clg_tensor *a = rand1d(ctx, dt, a_len, seed);
    clg_tensor *b = rand1d(ctx, dt, b_len, seed + 1);
    clg_tensor *c = rand1d(ctx, dt, c_len, seed + 2);
    double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b), *c0 = ref_to_host_f64(c);
    double *want = malloc(c_len * sizeof *want);
    assert_non_null(want);
    memcpy(want, c0, c_len * sizeof *want);
    ref_gemm(g->ta, g->tb, g->m, g->n, g->k, g->alpha, ah + A_OFF, lda, bh + B_OFF, ldb, g->beta, want + C_OFF,
             ldc);

    REF_OK(ctx, clg_gemm(ctx, g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, A_OFF, lda, b, B_OFF, ldb, g->beta,
                         c, C_OFF, ldc));
    double *got = ref_to_host_f64(c);

    char what[160];
    snprintf(what, sizeof what, "%s gemm ta=%d tb=%d m=%zu n=%zu k=%zu alpha=%g beta=%g", clg_dtype_name(dt),
             g->ta, g->tb, g->m, g->n, g->k, g->alpha, g->beta);
    /* f32 accumulates k products in float: the absolute error grows with k. */
    const double rtol = dt == CLG_F64 ? 1e-12 : 1e-4;
    const double atol = dt == CLG_F64 ? 1e-13 * (double)g->k : 2e-6 * (double)g->k;
    ref_assert_close(got, want, c_len, rtol, atol, what);
    /* Outside the C window (before the offset, row padding, the tail) nothing moved. */
    for (size_t x = 0; x < c_len; x++) {
        const bool inside = x >= C_OFF && (x - C_OFF) / ldc < g->m && (x - C_OFF) % ldc < g->n;
        if (!inside && got[x] != c0[x])
            fail_msg("%s: element %zu outside C changed from %g to %g", what, x, c0[x], got[x]);
    }
    free(got);
    free(want);
    free(ah);
    free(bh);
    free(c0);
    clg_tensor_free(a);
    clg_tensor_free(b);
    clg_tensor_free(c);
}

static void run_all(clg_context *ctx, clg_dtype dt) {
    const double alphas[] = {1.0, -1.25, 0.5};
    uint64_t seed = dt == CLG_F64 ? 1000 : 2000;
    int count = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int t = 0; t < 4; t++) {
            for (int beta = 0; beta <= 1; beta++) {
                gemm_case g = {t & 1,       (t >> 1) & 1,      sizes[s][0], sizes[s][1],
                               sizes[s][2], alphas[count % 3], (double)beta};
                run_case(ctx, dt, &g, seed);
                seed += 3;
                count++;
            }
        }
    }
}

static void test_gemm_f32(void **state) { run_all(*state, CLG_F32); }
static void test_gemm_f64(void **state) { run_all(*state, CLG_F64); }

/* beta = 0 overwrites: NaN (or any garbage from a recycled pool buffer) in C must not leak
 * into the result, since 0 * NaN is NaN. */
static void test_gemm_beta0_ignores_c(void **state) {
    clg_context *ctx = *state;
    for (int dt = CLG_F32; dt <= CLG_F64; dt++) {
        for (int t = 0; t < 4; t++) {
            const size_t m = 33, n = 7, k = 130;
            const gemm_case g = {t & 1, (t >> 1) & 1, m, n, k, 0.75, 0.0};
            clg_tensor *a = rand1d(ctx, (clg_dtype)dt, m * k, 5), *b = rand1d(ctx, (clg_dtype)dt, k * n, 6);
            const int cs[2] = {(int)m, (int)n};
            clg_tensor *c = NULL;
            REF_OK(ctx, clg_tensor_zeros(ctx, (clg_dtype)dt, 2, cs, &c));
            REF_OK(ctx, clg_tensor_fill(c, NAN));
            const size_t lda = g.ta ? m : k, ldb = g.tb ? k : n;
            REF_OK(ctx, clg_gemm(ctx, g.ta, g.tb, m, n, k, g.alpha, a, 0, lda, b, 0, ldb, 0.0, c, 0, n));
            double *got = ref_to_host_f64(c), *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b);
            for (size_t i = 0; i < m * n; i++) {
                if (!isfinite(got[i]))
                    fail_msg("%s ta=%d tb=%d: C[%zu] = %g after beta = 0 over NaN",
                             clg_dtype_name((clg_dtype)dt), g.ta, g.tb, i, got[i]);
            }
            /* and the values are right (host loop without offsets) */
            double want[33 * 7];
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < n; j++) {
                    long double acc = 0;
                    for (size_t p = 0; p < k; p++)
                        acc += (long double)(g.ta ? ah[p * m + i] : ah[i * k + p]) *
                               (g.tb ? bh[j * k + p] : bh[p * n + j]);
                    want[i * n + j] = (double)(g.alpha * acc);
                }
            ref_assert_close(got, want, m * n, dt == CLG_F64 ? 1e-12 : 1e-4,
                             dt == CLG_F64 ? 1e-13 * k : 2e-6 * k, "gemm beta=0 over NaN");
            free(got);
            free(ah);
            free(bh);
            clg_tensor_free(a);
            clg_tensor_free(b);
            clg_tensor_free(c);
        }
    }
}

/* ---------------------------------------------------------------- NaN */

/* NaN propagates as in PyTorch's matmul (BLAS multiplies every term): a NaN in A makes its
 * row of C NaN, a NaN in B its column, also where the other factor is 0 (0 * NaN), an
 * infinity times 0 is NaN, and beta = 1 keeps a NaN already in C. Tiny products and large
 * ones, so every plan of the packed path (dot products, B gathered, panels packed) sees it. */
static void test_gemm_nan(void **state) {
    clg_context *ctx = *state;
    static const size_t nsz[][3] = {{3, 4, 5}, {70, 66, 130}, {1, 130, 600}, {130, 9, 700}};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        for (size_t si = 0; si < sizeof nsz / sizeof nsz[0]; si++)
            for (int t = 0; t < 4; t++) {
                const bool ta = t & 1, tb = (t >> 1) & 1;
                const size_t m = nsz[si][0], n = nsz[si][1], k = nsz[si][2];
                double *av = malloc(m * k * sizeof *av), *bv = malloc(k * n * sizeof *bv);
                double *cv = malloc(m * n * sizeof *cv), *want = malloc(m * n * sizeof *want);
                assert_true(av && bv && cv && want);
                /* op(A)(i, p) = av[ta ? p*m + i : i*k + p]; op(B)(p, j) = bv[tb ? j*k + p : p*n + j] */
                for (size_t i = 0; i < m * k; i++)
                    av[i] = (double)((i * 7) % 17) / 17 - 0.5;
                for (size_t i = 0; i < k * n; i++)
                    bv[i] = (double)((i * 5) % 13) / 13 - 0.5;
                for (size_t i = 0; i < m * n; i++)
                    cv[i] = (double)(i % 3);
#define A_AT(i, p) av[ta ? (p) * m + (i) : (i) * k + (p)]
#define B_AT(p, j) bv[tb ? (j) * k + (p) : (p) * n + (j)]
                A_AT(m - 1, k / 2) = NAN;            /* row m-1 of C */
                B_AT(k / 2, 0) = 0;                  /* ... meets a 0 */
                B_AT(k - 1, n - 1) = NAN;            /* column n-1 of C */
                if (m > 1) A_AT(0, k - 1) = 0;       /* ... meets a 0 in row 0 */
                if (n > 2) B_AT(0, 1) = INFINITY;    /* column 1: inf * a, and inf * 0 below */
                if (m > 1 && n > 2) A_AT(1, 0) = 0;  /* row 1, column 1: inf * 0 */
                cv[m * n / 2] = NAN;                 /* kept by beta = 1 */
                for (size_t i = 0; i < m; i++)
                    for (size_t j = 0; j < n; j++) {
                        double acc = 0;
                        for (size_t p = 0; p < k; p++)
                            acc += A_AT(i, p) * B_AT(p, j);
                        want[i * n + j] = 0.5 * acc + cv[i * n + j];
                    }
#undef A_AT
#undef B_AT
                const int as[1] = {(int)(m * k)}, bs[1] = {(int)(k * n)}, cs[1] = {(int)(m * n)};
                clg_tensor *a = NULL, *b = NULL, *c = NULL;
                if (dt == CLG_F64) {
                    REF_OK(ctx, clg_tensor_from_host(ctx, dt, 1, as, av, &a));
                    REF_OK(ctx, clg_tensor_from_host(ctx, dt, 1, bs, bv, &b));
                    REF_OK(ctx, clg_tensor_from_host(ctx, dt, 1, cs, cv, &c));
                } else {
                    a = ref_tensor_f64(ctx, 1, as, av), b = ref_tensor_f64(ctx, 1, bs, bv), c = ref_tensor_f64(ctx, 1, cs, cv);
                    clg_tensor *t32[3];
                    REF_OK(ctx, clg_tensor_cast(a, CLG_F32, &t32[0]));
                    REF_OK(ctx, clg_tensor_cast(b, CLG_F32, &t32[1]));
                    REF_OK(ctx, clg_tensor_cast(c, CLG_F32, &t32[2]));
                    clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c);
                    a = t32[0], b = t32[1], c = t32[2];
                }
                REF_OK(ctx, clg_gemm(ctx, ta, tb, m, n, k, 0.5, a, 0, ta ? m : k, b, 0, tb ? k : n, 1.0, c, 0, n));
                double *got = ref_to_host_f64(c);
                /* finite entries: k products of values <= 1/2 (the f32 inputs are the rounded
                 * values, |rounding| <= 2^-25 each), summed in any order */
                const double tol = dt == CLG_F64 ? 1e-13 * (double)k : 1e-6 * (double)k;
                for (size_t i = 0; i < m * n; i++) {
                    const bool ok = isnan(want[i]) ? isnan(got[i])
                                    : isinf(want[i]) ? got[i] == want[i]
                                                     : !isnan(got[i]) && fabs(got[i] - want[i]) <= tol;
                    if (!ok)
                        fail_msg("%s ta=%d tb=%d %zux%zux%zu: C[%zu] = %g, want %g (NaN where PyTorch's is)",
                                 clg_dtype_name(dt), ta, tb, m, n, k, i, got[i], want[i]);
                }
                free(got), free(av), free(bv), free(cv), free(want);
                clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c);
            }
    }
}

/* ---------------------------------------------------------------- bad input */

static void assert_msg_has(clg_context *ctx, const char *p1, const char *p2, const char *p3) {
    const char *msg = clg_context_errmsg(ctx);
    if (!strstr(msg, p1) || (p2 && !strstr(msg, p2)) || (p3 && !strstr(msg, p3)))
        fail_msg("error message \"%s\" lacks \"%s\"%s%s%s%s", msg, p1, p2 ? ", " : "", p2 ? p2 : "",
                 p3 ? ", " : "", p3 ? p3 : "");
}

static void test_gemm_bad_input(void **state) {
    clg_context *ctx = *state;
    /* A 3x4, B 4x2, C 3x2, all f32 and exactly the size they need */
    const int s8[1] = {8};
    clg_tensor *a = rand1d(ctx, CLG_F32, 12, 1), *b = rand1d(ctx, CLG_F32, 8, 2);
    clg_tensor *c = rand1d(ctx, CLG_F32, 6, 3), *b64 = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, s8, &b64));

    /* the good call fits exactly */
    REF_OK(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 4, b, 0, 2, 0.0, c, 0, 2));
    double *c0 = ref_to_host_f64(c);

    /* A too small for (m, k, lda, offset): 3x5 needs 15 elements, the tensor has 12 */
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 5, 1.0, a, 0, 5, b, 0, 2, 0.0, c, 0, 2),
               CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "gemm: A is 3x5", "12", NULL);
    /* ...by the offset alone */
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 1, 4, b, 0, 2, 0.0, c, 0, 2),
               CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "gemm: A is 3x4", "offset 1", "12");
    /* ...by the leading dimension (5 per row: 2*5 + 4 = 14 > 12) */
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 5, b, 0, 2, 0.0, c, 0, 2),
               CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "A is 3x4", "lda 5", NULL);
    /* transposed A is stored k x m */
    REF_EXPECT(ctx, clg_gemm(ctx, true, false, 3, 2, 5, 1.0, a, 0, 3, b, 0, 2, 0.0, c, 0, 2),
               CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "A is 5x3", "12", NULL);
    /* B and C too small */
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 3, 4, 1.0, a, 0, 4, b, 0, 3, 0.0, c, 0, 3),
               CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "B is 4x3", "8", NULL);
    REF_EXPECT(ctx, clg_gemm(ctx, false, true, 3, 2, 4, 1.0, a, 0, 4, b, 1, 4, 0.0, c, 0, 2),
               CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "B is 2x4", "offset 1", NULL);
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 4, b, 0, 2, 0.0, c, 2, 2),
               CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "C is 3x2", "6", NULL);
    /* leading dimension shorter than a row */
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 3, b, 0, 2, 0.0, c, 0, 2),
               CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "gemm", "lda", NULL);
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 4, b, 0, 2, 0.0, c, 0, 1),
               CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "gemm", "ldc", NULL);
    /* dtypes differ */
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 4, b64, 0, 2, 0.0, c, 0, 2),
               CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "gemm", "f32", "f64");
    /* NULLs */
    REF_EXPECT(ctx, clg_gemm(NULL, false, false, 3, 2, 4, 1.0, a, 0, 4, b, 0, 2, 0.0, c, 0, 2),
               CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, NULL, 0, 4, b, 0, 2, 0.0, c, 0, 2),
               CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "gemm", "A", NULL);
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 4, NULL, 0, 2, 0.0, c, 0, 2),
               CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "gemm", "B", NULL);
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 4, b, 0, 2, 0.0, NULL, 0, 2),
               CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "gemm", "C", NULL);

    /* A tensor of another context */
    clg_context_params p = clg_context_default_params();
    p.cache_dir = "off";
    clg_context *other = NULL;
    assert_int_equal(clg_context_create(&p, &other, NULL, 0), CLG_OK);
    clg_tensor *foreign = NULL;
    REF_OK(other, clg_tensor_zeros(other, CLG_F32, 1, s8, &foreign));
    REF_EXPECT(ctx, clg_gemm(ctx, false, false, 3, 2, 4, 1.0, a, 0, 4, foreign, 0, 2, 0.0, c, 0, 2),
               CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "gemm", "context", NULL);
    clg_tensor_free(foreign);
    clg_context_free(other);

    /* None of that touched C, and the context still computes. */
    double *now = ref_to_host_f64(c);
    assert_memory_equal(now, c0, 6 * sizeof(double));
    free(now);
    const gemm_case g = {false, true, 7, 33, 130, 2.0, 1.0};
    run_case(ctx, CLG_F32, &g, 77);

    free(c0);
    clg_tensor_free(a);
    clg_tensor_free(b);
    clg_tensor_free(c);
    clg_tensor_free(b64);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_f32),
        cmocka_unit_test(test_gemm_f64),
        cmocka_unit_test(test_gemm_beta0_ignores_c),
        cmocka_unit_test(test_gemm_nan),
        cmocka_unit_test(test_gemm_bad_input),
    };
    return cmocka_run_group_tests(tests, ref_group_setup, ref_group_teardown);
}
