/* src/blas/gemm.c - the GEMM front door: clg_gemm (include/clgrad/ops.h) and clg__gemm_mem
 * (src/blas/blas.h) check the arguments, pick a path (src/blas/choose.c) and run it through
 * the path table below. Nothing above src/blas knows which path ran. The paths: clblast.c,
 * packed.c. Tests: tests/blas/test_gemm.c (bad input), tests/blas/test_gemm_choice.c (table).
 */
#include <string.h>

#include "blas/paths.h"

/* In the order the default rule tries them (src/blas/choose.c): a path of ours that suits
 * the device first, CLBlast, which suits every device, last. A new path is one line here. */
static const clg_gemm_path *const paths[] = {
    &clg__gemm_path_packed,
    &clg__gemm_path_clblast,
};
enum { N_PATHS = sizeof paths / sizeof paths[0] };
_Static_assert((int)N_PATHS <= (int)CLG_BLAS_MAX_PATHS, "raise CLG_BLAS_MAX_PATHS in src/blas/tuning.h");

size_t clg__gemm_path_count(void) { return N_PATHS; }

const clg_gemm_path *clg__gemm_path_at(size_t i) { return i < N_PATHS ? paths[i] : NULL; }

int clg__gemm_path_index(const char *name) {
    for (size_t i = 0; name && i < N_PATHS; i++)
        if (!strcmp(paths[i]->name, name)) return (int)i;
    return -1;
}

size_t clg_blas_path_count(void) { return N_PATHS; }

const char *clg_blas_path_name(size_t i) { return i < N_PATHS ? paths[i]->name : NULL; }

/* Elements a row-major operand needs: rows x cols stored with leading dimension ld, after
 * off; false when that does not fit a size_t (no tensor holds it). */
static bool needed(size_t off, size_t rows, size_t cols, size_t ld, size_t *out) {
    size_t span;
    return clg__mul_size(rows - 1, ld, &span) && clg__add_size(span, cols, &span) &&
           clg__add_size(off, span, out);
}

clg_status clg__gemm_mem(clg_context *ctx, clg_dtype dtype, bool trans_a, bool trans_b, size_t m,
                         size_t n, size_t k, double alpha, cl_mem a, size_t a_off, size_t lda,
                         cl_mem b, size_t b_off, size_t ldb, double beta, cl_mem c, size_t c_off,
                         size_t ldc) {
    if (m == 0 || n == 0) return CLG_OK;
    if (k == 0) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "gemm: k is 0");
    /* Stored shapes: A is (M x K) or, transposed, (K x M); likewise B. */
    size_t ac = trans_a ? m : k, bc = trans_b ? k : n;
    if (lda < ac || ldb < bc || ldc < n)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "gemm: leading dimensions lda=%zu ldb=%zu ldc=%zu below the row lengths %zu, %zu, %zu",
                         lda, ldb, ldc, ac, bc, n);
    if (clg__fault(ctx, CLG_FAULT_ENQUEUE))
        return clg__fail(ctx, CLG_BLAS_ERROR, "gemm: injected fault");
    clg_gemm_state *s;
    clg_status st = clg__gemm_state(ctx, &s);
    if (st != CLG_OK) return st;
    const clg_gemm_args g = {.dt = dtype, .ta = trans_a, .tb = trans_b, .m = m, .n = n, .k = k,
                             .alpha = alpha, .beta = beta, .a = a, .b = b, .c = c, .a_off = a_off,
                             .lda = lda, .b_off = b_off, .ldb = ldb, .c_off = c_off, .ldc = ldc};
    const clg_gemm_path *path;
    st = clg__gemm_pick(ctx, s, &g, &path);
    return st == CLG_OK ? path->run(ctx, &g) : st;
}

clg_status clg_gemm(clg_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                    double alpha, const clg_tensor *a, size_t a_offset, size_t lda,
                    const clg_tensor *b, size_t b_offset, size_t ldb, double beta, clg_tensor *c,
                    size_t c_offset, size_t ldc) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    clg_status st;
    if ((st = clg__check(ctx, a, "gemm", "A")) || (st = clg__check(ctx, b, "gemm", "B")) ||
        (st = clg__check(ctx, c, "gemm", "C")))
        return st;
    if (a->dtype != b->dtype || a->dtype != c->dtype)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "gemm: dtypes differ: A %s, B %s, C %s",
                         clg_dtype_name(a->dtype), clg_dtype_name(b->dtype), clg_dtype_name(c->dtype));
    if (m == 0 || n == 0) return CLG_OK;
    if (k == 0) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "gemm: k is 0");
    size_t ar = trans_a ? k : m, ac = trans_a ? m : k;
    size_t br = trans_b ? n : k, bc = trans_b ? k : n;
    size_t need;
    if (lda >= ac && (!needed(a_offset, ar, ac, lda, &need) || need > a->numel))
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "gemm: A is %zux%zu (lda %zu, offset %zu) but its tensor holds %zu elements",
                         ar, ac, lda, a_offset, a->numel);
    if (ldb >= bc && (!needed(b_offset, br, bc, ldb, &need) || need > b->numel))
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "gemm: B is %zux%zu (ldb %zu, offset %zu) but its tensor holds %zu elements",
                         br, bc, ldb, b_offset, b->numel);
    if (ldc >= n && (!needed(c_offset, m, n, ldc, &need) || need > c->numel))
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "gemm: C is %zux%zu (ldc %zu, offset %zu) but its tensor holds %zu elements",
                         m, n, ldc, c_offset, c->numel);
    return clg__gemm_mem(ctx, a->dtype, trans_a, trans_b, m, n, k, alpha, a->buf->block.mem, a_offset, lda,
                         b->buf->block.mem, b_offset, ldb, beta, c->buf->block.mem, c_offset, ldc);
}
