/* src/blas/clblast.c - the CLBlast path (S/D GEMM, row-major) and CLBlast's per-device
 * parameter overrides that the tuning file carries: the only file that includes
 * <clblast_c.h>. CLBlast's status codes become clgrad errors with the code's name. The
 * catch-all entry of the path table (src/blas/gemm.c). Tests: tests/blas/test_gemm.c.
 */
#include <clblast_c.h>

#include "blas/paths.h"

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

static clg_status clblast_run(clg_context *ctx, const clg_gemm_args *g) {
    CLBlastStatusCode s;
    const CLBlastTranspose ta = g->ta ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = g->tb ? CLBlastTransposeYes : CLBlastTransposeNo;
    double t0;
    cl_event *ev = ctx->profiling ? clg__profile_begin(ctx, "gemm (clblast)", &t0) : NULL;
    if (g->dt == CLG_F64)
        s = CLBlastDgemm(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, g->alpha, g->a, g->a_off, g->lda, g->b,
                         g->b_off, g->ldb, g->beta, g->c, g->c_off, g->ldc, &ctx->queue, ev);
    else
        s = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, g->m, g->n, g->k, (float)g->alpha, g->a, g->a_off, g->lda,
                         g->b, g->b_off, g->ldb, (float)g->beta, g->c, g->c_off, g->ldc, &ctx->queue, ev);
    if (ev) clg__profile_end(ctx, ev, s == CLBlastSuccess);
    if (s == CLBlastSuccess) return CLG_OK;
    clg_status st = CLG_BLAS_ERROR;
    if (s == CLBlastTempBufferAllocFailure || s == CLBlastOpenCLOutOfResources) st = CLG_OUT_OF_DEVICE_MEMORY;
    if (s == CLBlastOpenCLOutOfHostMemory) st = CLG_OUT_OF_HOST_MEMORY;
    return clg__fail(ctx, st, "CLBlast%cgemm: %s (%d): m=%zu n=%zu k=%zu", g->dt == CLG_F64 ? 'D' : 'S',
                     clblast_name(s), (int)s, g->m, g->n, g->k);
}

/* CLBlast takes size_t sizes and offsets: every product the front door accepts. */
static bool clblast_fits(clg_context *ctx, const clg_gemm_args *g) {
    (void)ctx, (void)g;
    return true;
}

/* suits NULL: the default on every device where no path before it in the table suits. Its
 * programs are CLBlast's own (a process-wide cache), built on its first call. */
const clg_gemm_path clg__gemm_path_clblast = {"clblast", NULL, clblast_fits, NULL, clblast_run};

clg_status clg_blas_clblast_override(clg_context *ctx, const clg_tune_kernel *tk) {
    if (!ctx || !tk) return CLG_INVALID_ARGUMENT;
    if (tk->n > CLG_TUNE_MAX_PARAMS)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "CLBlast override %s: %zu parameters", tk->kernel, tk->n);
    const char *names[CLG_TUNE_MAX_PARAMS];
    for (size_t i = 0; i < tk->n; i++)
        names[i] = tk->names[i];
    const CLBlastPrecision prec = tk->dt == CLG_F64 ? CLBlastPrecisionDouble : CLBlastPrecisionSingle;
    CLBlastStatusCode s = CLBlastOverrideParameters(ctx->device, tk->kernel, prec, tk->n, names, tk->values);
    if (s == CLBlastSuccess) return CLG_OK;
    return clg__fail(ctx, CLG_BLAS_ERROR, "CLBlastOverrideParameters(%s, %s): %s (%d)", tk->kernel,
                     clg_dtype_name(tk->dt), clblast_name(s), (int)s);
}
