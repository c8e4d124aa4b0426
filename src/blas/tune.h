/* src/blas/tune.h - the per-device GEMM tuning file (src/blas/tune.c): what it holds, and
 * how tools/clgrad-tune reads, applies and writes it. Loaded by clg__blas_init (gemm.c).
 * Tests: tests/unit/test_gemm_packed.c.
 */
#ifndef CLGRAD_BLAS_TUNE_H
#define CLGRAD_BLAS_TUNE_H

#include "blas/packed.h"

enum { CLG_TUNE_MAX_PARAMS = 24, CLG_TUNE_MAX_KERNELS = 16, CLG_TUNE_MAX_CHOICES = 256 };

/* One CLBlast kernel's full parameter set ("Xgemm", "XgemmDirect", "GemmRoutine", ...). */
typedef struct clg_tune_kernel {
    char kernel[32];
    clg_dtype dt;
    size_t n;
    char names[CLG_TUNE_MAX_PARAMS][32];
    size_t values[CLG_TUNE_MAX_PARAMS];
} clg_tune_kernel;

/* A path decision for a size class, with the times that made it. */
typedef struct clg_tune_choice {
    clg_gemm_class cls;
    clg_gemm_path path;
    double t_clblast, t_packed; /* seconds on the probe's product */
} clg_tune_choice;

typedef struct clg_tune_data {
    clg_tune_kernel clblast[CLG_TUNE_MAX_KERNELS];
    size_t n_clblast;
    clg_packed_config packed[2]; /* f32, f64; vw 0 = not tuned */
    clg_tune_choice choices[CLG_TUNE_MAX_CHOICES];
    size_t n_choices;
} clg_tune_data;

/* "<cache_dir>/gemm-tune-<hash of device name and driver version>.json"; false when the
 * disk tier is off. */
bool clg__tune_path(clg_context *ctx, char *buf, size_t len);
/* At context creation: reads and applies the file when there is one, unless
 * CLGRAD_GEMM_TUNING=off. A missing file changes nothing; a malformed one or one for
 * another device is ignored with a warning in the log. */
clg_status clg__tune_load(clg_context *ctx);
/* The file's contents (CLG_IO_ERROR: none; CLG_BAD_FORMAT: not trusted). */
clg_status clg__tune_read(clg_context *ctx, clg_tune_data *d);
/* Applies CLBlast parameters (process-wide for this device, as CLBlast keeps them), tile
 * shapes and decisions to ctx. */
clg_status clg__tune_apply(clg_context *ctx, const clg_tune_data *d);
/* Writes d atomically (temp file + rename); written gets the path when not NULL. */
clg_status clg__tune_write(clg_context *ctx, const clg_tune_data *d, char *written, size_t written_len);
/* Adds (or replaces) one path decision in the file, creating it if need be, so that later
 * processes on this device make the same choice without probing (the same path every run
 * keeps results bit-identical from run to run). Not when CLGRAD_GEMM_TUNING=off. */
clg_status clg__tune_save_choice(clg_context *ctx, const clg_tune_choice *choice);
/* CLBlastOverrideParameters for one kernel of ctx's device. */
clg_status clg__clblast_override(clg_context *ctx, const clg_tune_kernel *tk);

#endif
