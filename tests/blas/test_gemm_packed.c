/* tests/blas/test_gemm_packed.c - the packed GEMM path (cl/blas/gemm_packed.cl,
 * src/blas/packed.c) forced on, against a naive host loop: four transpose combinations,
 * sizes 1/7/33/130 and non-square, beta 0 over NaN and beta 1, offsets and padded leading
 * dimensions, f32 and f64, each packing mode and several tile shapes (on a few-core CPU the
 * small-k cases also run several tiles per work-item, with a short last one); CLBlast forced on
 * the same cases. The path choice and the tuning file: tests/blas/test_gemm_choice.c.
 */
#include "ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas/tuning.h"

enum { A_OFF = 5, A_PAD = 3, B_OFF = 3, B_PAD = 2, C_OFF = 7, C_PAD = 4, TAIL = 2 };

typedef struct gcase {
    bool ta, tb;
    size_t m, n, k;
    double alpha, beta;
} gcase;

static clg_tensor *rand1d(clg_context *ctx, clg_dtype dt, size_t len, uint64_t seed) {
    const int shape[1] = {(int)len};
    return ref_rand(ctx, dt, 1, shape, seed, -1.0, 1.0);
}

/* One product through clg_gemm (whatever path ctx is forced to), checked inside and
 * outside the C window. With beta = 0, C starts as NaN everywhere inside the window. */
static void run_case(clg_context *ctx, clg_dtype dt, const gcase *g, uint64_t seed, const char *tag) {
    const size_t ar = g->ta ? g->k : g->m, ac = g->ta ? g->m : g->k;
    const size_t br = g->tb ? g->n : g->k, bc = g->tb ? g->k : g->n;
    const size_t lda = ac + A_PAD, ldb = bc + B_PAD, ldc = g->n + C_PAD;
    const size_t a_len = A_OFF + ar * lda + TAIL, b_len = B_OFF + br * ldb + TAIL;
    const size_t c_len = C_OFF + g->m * ldc + TAIL;
    clg_tensor *a = rand1d(ctx, dt, a_len, seed), *b = rand1d(ctx, dt, b_len, seed + 1);
    double *c0 = malloc(c_len * sizeof *c0), *want = malloc(c_len * sizeof *want);
    assert_non_null(c0);
    assert_non_null(want);
    for (size_t x = 0; x < c_len; x++) {
        const bool inside = x >= C_OFF && (x - C_OFF) / ldc < g->m && (x - C_OFF) % ldc < g->n;
        c0[x] = inside && g->beta == 0 ? NAN : sin((double)(x + seed));
    }
    const int cs[1] = {(int)c_len};
    clg_tensor *c = ref_tensor_f64(ctx, 1, cs, c0), *c32 = NULL;
    if (dt == CLG_F32) {
        REF_OK(ctx, clg_tensor_cast(c, CLG_F32, &c32));
        clg_tensor_free(c);
        c = c32;
    }
    double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b), *ch = ref_to_host_f64(c);
    memcpy(want, ch, c_len * sizeof *want);
    ref_gemm(g->ta, g->tb, g->m, g->n, g->k, g->alpha, ah + A_OFF, lda, bh + B_OFF, ldb, g->beta, want + C_OFF,
             ldc);

    REF_OK(ctx, clg_gemm(ctx, g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, A_OFF, lda, b, B_OFF, ldb, g->beta,
                         c, C_OFF, ldc));
    double *got = ref_to_host_f64(c);
    char what[200];
    snprintf(what, sizeof what, "%s %s ta=%d tb=%d m=%zu n=%zu k=%zu alpha=%g beta=%g", tag,
             clg_dtype_name(dt), g->ta, g->tb, g->m, g->n, g->k, g->alpha, g->beta);
    const double rtol = dt == CLG_F64 ? 1e-12 : 1e-4;
    const double atol = dt == CLG_F64 ? 1e-13 * (double)g->k : 2e-6 * (double)g->k;
    ref_assert_close(got, want, c_len, rtol, atol, what); /* NaN anywhere fails here */
    for (size_t x = 0; x < c_len; x++) {
        const bool inside = x >= C_OFF && (x - C_OFF) / ldc < g->m && (x - C_OFF) % ldc < g->n;
        if (!inside && got[x] != ch[x]) fail_msg("%s: element %zu outside C changed", what, x);
    }
    free(got);
    free(ch);
    free(ah);
    free(bh);
    free(c0);
    free(want);
    clg_tensor_free(a);
    clg_tensor_free(b);
    clg_tensor_free(c);
}

static const size_t sizes[][3] = {
    {1, 1, 1},    {7, 7, 7},    {33, 33, 33}, {130, 130, 130}, {7, 33, 130},
    {130, 7, 33}, {33, 130, 7}, {1, 130, 33}, {130, 1, 7},
};

/* Every size x transpose x beta on the forced path, under one packing mode. */
static void run_matrix(clg_context *ctx, clg_dtype dt, const char *path, clg_pack_mode mode,
                       const char *tag) {
    REF_OK(ctx, clg_blas_force_path(ctx, path));
    assert_string_equal(clg_blas_forced_path(ctx), path);
    REF_OK(ctx, clg_blas_set_pack_mode(ctx, mode));
    const double alphas[] = {1.0, -1.25, 0.5};
    uint64_t seed = 77 + (uint64_t)mode * 1000 + (uint64_t)dt * 100000;
    int count = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int beta = 0; beta <= 1; beta++, count++, seed += 3) {
                const gcase g = {t & 1,       (t >> 1) & 1,      sizes[s][0], sizes[s][1],
                                 sizes[s][2], alphas[count % 3], (double)beta};
                run_case(ctx, dt, &g, seed, tag);
            }
    REF_OK(ctx, clg_blas_set_pack_mode(ctx, CLG_PACK_BY_SIZE));
    REF_OK(ctx, clg_blas_force_path(ctx, "auto"));
}

static void test_packed_f32(void **state) {
    run_matrix(*state, CLG_F32, "packed", CLG_PACK_ALL, "packed(all)");
    run_matrix(*state, CLG_F32, "packed", CLG_PACK_NONE, "packed(in place)");
}

static void test_packed_f64(void **state) {
    run_matrix(*state, CLG_F64, "packed", CLG_PACK_ALL, "packed(all)");
    run_matrix(*state, CLG_F64, "packed", CLG_PACK_NONE, "packed(in place)");
}

/* Both paths answer the same questions the same way. */
static void test_clblast_path_same_cases(void **state) {
    run_matrix(*state, CLG_F32, "clblast", CLG_PACK_BY_SIZE, "clblast");
}

/* Tile shapes other than the device default: odd MR, NR of one vector, wide tiles; the
 * edges fall elsewhere in each. */
static void test_packed_tile_shapes(void **state) {
    clg_context *ctx = *state;
    const clg_packed_config shapes[] = {{4, 3, 8}, {8, 5, 16}, {2, 6, 6}, {16, 8, 32}};
    const gcase cases[] = {{false, false, 37, 29, 41, 1.0, 0.0},
                           {true, true, 37, 29, 41, -0.5, 1.0},
                           {true, false, 9, 70, 5, 2.0, 1.0},
                           {false, true, 70, 9, 66, 1.0, 0.0}};
    REF_OK(ctx, clg_blas_force_path(ctx, "packed"));
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int dt = CLG_F32; dt <= CLG_F64; dt++) {
            REF_OK(ctx, clg_blas_packed_set_config(ctx, (clg_dtype)dt, shapes[s]));
            clg_packed_config got = {0, 0, 0};
            REF_OK(ctx, clg_blas_packed_config(ctx, (clg_dtype)dt, &got));
            assert_int_equal(got.mr, shapes[s].mr);
            assert_int_equal(got.nr, shapes[s].nr);
            for (int mode = CLG_PACK_NONE; mode <= CLG_PACK_ALL; mode++) {
                REF_OK(ctx, clg_blas_set_pack_mode(ctx, (clg_pack_mode)mode));
                char tag[64];
                snprintf(tag, sizeof tag, "tile %dx%d vw %d mode %d", shapes[s].mr, shapes[s].nr,
                         shapes[s].vw, mode);
                for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
                    run_case(ctx, (clg_dtype)dt, &cases[c], 500 + c, tag);
            }
            REF_OK(ctx, clg_blas_packed_set_config(ctx, (clg_dtype)dt, (clg_packed_config){0, 0, 0}));
        }
    }
    REF_OK(ctx, clg_blas_set_pack_mode(ctx, CLG_PACK_BY_SIZE));
    REF_OK(ctx, clg_blas_force_path(ctx, "auto"));
    /* a shape the kernel cannot take is refused with the reason */
    assert_int_equal(clg_blas_packed_set_config(ctx, CLG_F32, (clg_packed_config){8, 4, 12}),
                     CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "multiple of VW"));
}

/* Sizes where the default packing rule packs A and B (and where it reads them in place),
 * on the device's default tile: the rule's branches all run. */
static void test_packed_by_size(void **state) {
    clg_context *ctx = *state;
    REF_OK(ctx, clg_blas_force_path(ctx, "packed"));
    const gcase cases[] = {{false, false, 300, 70, 600, 1.0, 0.0}, /* A 720 kB, B 168 kB */
                           {true, false, 70, 300, 600, 1.0, 1.0},  /* B 720 kB: packed */
                           {false, false, 20, 1000, 40, 0.5, 1.0}, /* both in place */
                           {false, true, 20, 300, 600, 1.0, 1.0}, /* Cᵀ = B op(A)ᵀ: A packed, C strided */
                           {true, true, 30, 200, 100, -1.0, 0.0}, /* Cᵀ = B A: nothing packed */
                           /* A packed, k small: several tiles per work-item (4 on a 2-core
                            * CPU), 499 x 3 tiles, so the last work-item runs short */
                           {false, false, 1996, 50, 40, 1.0, 1.0},
                           /* k >= 2048, A packed, 9 column blocks (4x24 tile): k in two passes
                            * (the second adds to what the first wrote over NaN), tiles in blocks
                            * of A panels, 18 panels in blocks of 15 and 3 */
                           {false, false, 70, 200, 2100, 0.5, 0.0},
                           {true, false, 70, 200, 2100, -1.0, 1.0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        run_case(ctx, CLG_F32, &cases[c], 900 + c, "by size");
    REF_OK(ctx, clg_blas_force_path(ctx, "auto"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packed_f32),
        cmocka_unit_test(test_packed_f64),
        cmocka_unit_test(test_clblast_path_same_cases),
        cmocka_unit_test(test_packed_tile_shapes),
        cmocka_unit_test(test_packed_by_size),
    };
    return cmocka_run_group_tests(tests, ref_group_setup, ref_group_teardown);
}
