/* src/blas/gemm.c - GEMM for the whole library: the only file that includes <clblast_c.h>.
 * Checks shapes against the buffers, calls CLBlast (S/D GEMM, row-major), and turns its
 * status codes into clgrad errors with the code's name. Nothing above src/blas knows which
 * GEMM path ran. Tests: tests/unit/test_gemm.c.
 */
#include <stdlib.h>
#include <string.h>

#include <clblast_c.h>

#include "blas/blas.h"
#include "blas/packed.h"
#include "blas/tune.h"

static const char *clblast_name(CLBlastStatusCode s) {
    switch (s) {
#define N(x) \
    case x:  \
        return #x;
        N(CLBlastSuccess) N(CLBlastOpenCLCompilerNotAvailable) N(CLBlastTempBufferAllocFailure)
        N(CLBlastOpenCLOutOfResources) N(CLBlastOpenCLOutOfHostMemory) N(CLBlastOpenCLBuildProgramFailure)
        N(CLBlastInvalidValue) N(CLBlastInvalidCommandQueue) N(CLBlastInvalidMemObject)
        N(CLBlastInvalidBinary) N(CLBlastInvalidBuildOptions) N(CLBlastInvalidProgram)
        N(CLBlastInvalidProgramExecutable) N(CLBlastInvalidKernelName) N(CLBlastInvalidKernelDefinition)
        N(CLBlastInvalidKernel) N(CLBlastInvalidArgIndex) N(CLBlastInvalidArgValue) N(CLBlastInvalidArgSize)
        N(CLBlastInvalidKernelArgs) N(CLBlastInvalidLocalNumDimensions) N(CLBlastInvalidLocalThreadsTotal)
        N(CLBlastInvalidLocalThreadsDim) N(CLBlastInvalidGlobalOffset) N(CLBlastInvalidEventWaitList)
        N(CLBlastInvalidEvent) N(CLBlastInvalidOperation) N(CLBlastInvalidBufferSize)
        N(CLBlastInvalidGlobalWorkSize) N(CLBlastNotImplemented) N(CLBlastInvalidMatrixA)
        N(CLBlastInvalidMatrixB) N(CLBlastInvalidMatrixC) N(CLBlastInvalidVectorX) N(CLBlastInvalidVectorY)
        N(CLBlastInvalidDimension) N(CLBlastInvalidLeadDimA) N(CLBlastInvalidLeadDimB)
        N(CLBlastInvalidLeadDimC) N(CLBlastInvalidIncrementX) N(CLBlastInvalidIncrementY)
        N(CLBlastInsufficientMemoryA) N(CLBlastInsufficientMemoryB) N(CLBlastInsufficientMemoryC)
        N(CLBlastInsufficientMemoryX) N(CLBlastInsufficientMemoryY) N(CLBlastInsufficientMemoryTemp)
        N(CLBlastInvalidBatchCount) N(CLBlastInvalidOverrideKernel) N(CLBlastMissingOverrideParameter)
        N(CLBlastInvalidLocalMemUsage) N(CLBlastNoHalfPrecision) N(CLBlastNoDoublePrecision)
        N(CLBlastInvalidVectorScalar) N(CLBlastInsufficientMemoryScalar) N(CLBlastDatabaseError)
        N(CLBlastUnknownError) N(CLBlastUnexpectedError)
#undef N
    }
    return "CLBlastUnknownStatus";
}

/* The context keeps src/blas's state in a slot under this key (core never names blas). */
static const char blas_slot_key;

static void blas_teardown(clg_context *ctx, void *state) {
    (void)ctx;
    /* CLBlast's program cache is process-wide and shared with other contexts: never
     * CLBlastClearCache() here. */
    clg__gemm_state_free(state);
}

clg_gemm_state *clg__gemm_state(clg_context *ctx) {
    clg_gemm_state *s = clg__context_slot(ctx, &blas_slot_key);
    if (s) return s;
    if (clg__gemm_state_create(ctx, &s) != CLG_OK) return NULL;
    if (clg__context_slot_set(ctx, &blas_slot_key, s, blas_teardown) != CLG_OK) {
        clg__gemm_state_free(s);
        return NULL;
    }
    /* A bad tuning file is logged and ignored inside; only host memory can fail here. */
    if (clg__tune_load(ctx) != CLG_OK) return NULL;
    return s;
}

/* Elements a row-major operand needs: rows x cols stored with leading dimension ld. */
static size_t needed(size_t off, size_t rows, size_t cols, size_t ld) {
    return off + (rows - 1) * ld + cols;
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
    if (!clg__gemm_state(ctx)) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm: out of host memory for its state");
    /* ---- issue 6: the packed kernel where it measured faster (src/blas/choose.c) ---- */
    clg_gemm_path path;
    clg_status st = clg__gemm_choose(ctx, dtype, trans_a, trans_b, m, n, k, a, a_off, lda, b, b_off, ldb,
                                     c_off, ldc, &path);
    if (st != CLG_OK) return st;
    if (path == CLG_GEMM_PACKED)
        return clg__packed_gemm(ctx, dtype, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb,
                                beta, c, c_off, ldc);
    return clg__clblast_gemm(ctx, dtype, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta,
                             c, c_off, ldc);
}

/* CLBlast itself, arguments already checked (also timed by the probe in choose.c). */
clg_status clg__clblast_gemm(clg_context *ctx, clg_dtype dtype, bool trans_a, bool trans_b, size_t m,
                             size_t n, size_t k, double alpha, cl_mem a, size_t a_off, size_t lda,
                             cl_mem b, size_t b_off, size_t ldb, double beta, cl_mem c, size_t c_off,
                             size_t ldc) {
    /* ---- end issue 6 ---- */
    CLBlastStatusCode s;
    CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    if (dtype == CLG_F64)
        s = CLBlastDgemm(CLBlastLayoutRowMajor, ta, tb, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                         c_off, ldc, &ctx->queue, NULL);
    else
        s = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, m, n, k, (float)alpha, a, a_off, lda, b, b_off, ldb,
                         (float)beta, c, c_off, ldc, &ctx->queue, NULL);
    if (s == CLBlastSuccess) return CLG_OK;
    clg_status st = CLG_BLAS_ERROR;
    if (s == CLBlastTempBufferAllocFailure || s == CLBlastOpenCLOutOfResources) st = CLG_OUT_OF_DEVICE_MEMORY;
    if (s == CLBlastOpenCLOutOfHostMemory) st = CLG_OUT_OF_HOST_MEMORY;
    return clg__fail(ctx, st, "CLBlast%cgemm: %s (%d): m=%zu n=%zu k=%zu", dtype == CLG_F64 ? 'D' : 'S',
                     clblast_name(s), (int)s, m, n, k);
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
    if (lda >= ac && needed(a_offset, ar, ac, lda) > a->numel)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "gemm: A is %zux%zu (lda %zu, offset %zu) but its tensor holds %zu elements",
                         ar, ac, lda, a_offset, a->numel);
    if (ldb >= bc && needed(b_offset, br, bc, ldb) > b->numel)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "gemm: B is %zux%zu (ldb %zu, offset %zu) but its tensor holds %zu elements",
                         br, bc, ldb, b_offset, b->numel);
    if (ldc >= n && needed(c_offset, m, n, ldc) > c->numel)
        return clg__fail(ctx, CLG_SHAPE_MISMATCH,
                         "gemm: C is %zux%zu (ldc %zu, offset %zu) but its tensor holds %zu elements",
                         m, n, ldc, c_offset, c->numel);
    return clg__gemm_mem(ctx, a->dtype, trans_a, trans_b, m, n, k, alpha, a->buf->block.mem, a_offset, lda,
                         b->buf->block.mem, b_offset, ldb, beta, c->buf->block.mem, c_offset, ldc);
}
