/* src/blas/tuning.h - the one private header tools may include (tools/clgrad-tune.c and the
 * GEMM part of tools/bench): force a GEMM path by name, list the paths, the packed kernel's
 * packing mode and tile, run or time a path explicitly, and the per-device tuning file (read,
 * apply, write; CLBlast parameter overrides). Needs only the public API. Sources: src/blas/
 * (choose.c, tune.c, packed.c, clblast.c). Tests: tests/blas/test_gemm_choice.c.
 */
#ifndef CLGRAD_BLAS_TUNING_H
#define CLGRAD_BLAS_TUNING_H

#include "clgrad.h"

enum {
    CLG_BLAS_MAX_PATHS = 4,   /* entries the path table may hold */
    CLG_BLAS_NAME_LEN = 16,   /* a path name with its NUL */
    CLG_TUNE_MAX_PARAMS = 24, /* per CLBlast kernel */
    CLG_TUNE_MAX_KERNELS = 16,
    CLG_TUNE_MAX_CHOICES = 256,
};

/* ---------------------------------------------------------------- paths */
/* The paths of the table, in the order the default rule tries them ("packed", "clblast").
 * clg_blas_path_name returns NULL past the last one. */
size_t clg_blas_path_count(void);
const char *clg_blas_path_name(size_t i);
/* Every later GEMM on ctx takes the named path ("auto": the choice per size class). The
 * environment's CLGRAD_GEMM=clblast|packed|auto sets the same when the GEMM state is created
 * (on the first GEMM). A forced path never falls back: its failures are the caller's. */
clg_status clg_blas_force_path(clg_context *ctx, const char *name);
/* The forced path's name, or "auto" (also when ctx has no GEMM state and none can be made). */
const char *clg_blas_forced_path(clg_context *ctx);

/* Size class of a product: dtype, transposes and floor(log2) of m, n and k. */
typedef struct clg_gemm_class {
    clg_dtype dt;
    bool ta, tb;
    unsigned char lm, ln, lk;
} clg_gemm_class;
clg_gemm_class clg_blas_class(clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k);
/* The path the automatic choice takes for a product stored tightly (offsets 0, leading
 * dimensions the row lengths), whatever path is forced: the recorded choice of its size class
 * when one exists and can run, else the default rule (src/blas/choose.c). *name is static. */
clg_status clg_blas_chosen_path(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                                const char **name);
/* The recorded choice of a class (*name NULL when none), and recording one by name (NULL
 * forgets it). A recorded choice is a setting, not a measurement: nothing is saved for it. */
clg_status clg_blas_lookup_choice(clg_context *ctx, clg_gemm_class cls, const char **name);
clg_status clg_blas_record_choice(clg_context *ctx, clg_gemm_class cls, const char *name);

/* ---------------------------------------------------------------- running and timing */
/* C = alpha op(A) op(B) + beta C on the named path alone, arguments as clg__gemm_mem takes
 * them (the caller checks them against the buffers). CLG_UNSUPPORTED when the path cannot
 * index the product; a build failure is returned, never hidden. */
clg_status clg_blas_run_path(clg_context *ctx, const char *name, clg_dtype dt, bool ta, bool tb, size_t m,
                             size_t n, size_t k, double alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                             size_t b_off, size_t ldb, double beta, cl_mem c, size_t c_off, size_t ldc);

/* Seconds per path on (a leading part of, bounded to ~3e8 flops) one product: the best of a
 * few runs after a warm-up. A path that cannot run here (it does not fit the product, or its
 * kernels do not build on this device) gets INFINITY; winner is the fastest path's index. */
typedef struct clg_blas_times {
    double seconds[CLG_BLAS_MAX_PATHS]; /* by path index (clg_blas_path_name) */
    size_t winner;
} clg_blas_times;
/* Times every path; records nothing. Writes only a scratch C. */
clg_status clg_blas_time_paths(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                               cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                               clg_blas_times *out);
/* Times every path and records the winner for the product's size class in memory; the
 * measured choices are written to the tuning file at clg_context_free (or by
 * clg_blas_save_choices), never from inside a GEMM. */
clg_status clg_blas_measure(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                            cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                            clg_blas_times *out);
/* Writes the measured choices now (merged into the device's tuning file). CLG_OK with nothing
 * to write; CLG_IO_ERROR when the cache folder is off or unwritable. */
clg_status clg_blas_save_choices(clg_context *ctx);

/* ---------------------------------------------------------------- the packed kernel */
/* Which operands the packed path packs into panels (tests force each way). */
typedef enum clg_pack_mode {
    CLG_PACK_BY_SIZE = 0, /* by cache footprint (packed.c) */
    CLG_PACK_NONE = 1,    /* read A and B in place (B transposed: element by element) */
    CLG_PACK_ALL = 2,     /* always pack both */
} clg_pack_mode;
clg_status clg_blas_set_pack_mode(clg_context *ctx, clg_pack_mode mode);

/* Tile shape of the packed kernel: MR x NR of C per work-item in vectors of VW. */
typedef struct clg_packed_config {
    int vw, mr, nr;
} clg_packed_config;
/* The tile ctx uses for dt (the tuning file's, else the device default). */
clg_status clg_blas_packed_config(clg_context *ctx, clg_dtype dt, clg_packed_config *out);
/* Sets it (clgrad-tune tries several); {0, 0, 0} restores the default. */
clg_status clg_blas_packed_set_config(clg_context *ctx, clg_dtype dt, clg_packed_config cfg);
/* The default tile for a device whose preferred vector width for the dtype is vw. */
clg_packed_config clg_blas_packed_default_config(int vw);

/* ---------------------------------------------------------------- the tuning file */
/* One CLBlast kernel's full parameter set ("Xgemm", "XgemmDirect", "GemmRoutine", ...). */
typedef struct clg_tune_kernel {
    char kernel[32];
    clg_dtype dt;
    size_t n;
    char names[CLG_TUNE_MAX_PARAMS][32];
    size_t values[CLG_TUNE_MAX_PARAMS];
} clg_tune_kernel;

/* A path decision for a size class, with the times (by path name) that made it. */
typedef struct clg_tune_choice {
    clg_gemm_class cls;
    char path[CLG_BLAS_NAME_LEN];
    size_t n_times;
    struct clg_tune_time {
        char path[CLG_BLAS_NAME_LEN];
        double seconds;
    } times[CLG_BLAS_MAX_PATHS];
} clg_tune_choice;

typedef struct clg_tune_data {
    clg_tune_kernel clblast[CLG_TUNE_MAX_KERNELS];
    size_t n_clblast;
    clg_packed_config packed[2]; /* f32, f64; vw 0 = not tuned */
    clg_tune_choice choices[CLG_TUNE_MAX_CHOICES];
    size_t n_choices;
} clg_tune_data;

/* "<cache_dir>/gemm-tune-<hash of device name and driver version>.json"; false when the
 * cache folder is off. */
bool clg_blas_tune_file(clg_context *ctx, char *buf, size_t len);
/* The file's contents (CLG_IO_ERROR: none; CLG_BAD_FORMAT: malformed, for another device, or
 * of another format version). */
clg_status clg_blas_tune_read(clg_context *ctx, clg_tune_data *d);
/* Applies CLBlast parameters (process-wide for this device, as CLBlast keeps them), tile
 * shapes and path decisions to ctx. */
clg_status clg_blas_tune_apply(clg_context *ctx, const clg_tune_data *d);
/* Writes d atomically (temp file + rename); written gets the path when not NULL. */
clg_status clg_blas_tune_write(clg_context *ctx, const clg_tune_data *d, char *written, size_t written_len);
/* Whether ctx applied a tuning file when its GEMM state was made (false before any GEMM). */
bool clg_blas_tuning_applied(clg_context *ctx);
/* CLBlastOverrideParameters for one kernel on ctx's device (src/blas/clblast.c). */
clg_status clg_blas_clblast_override(clg_context *ctx, const clg_tune_kernel *tk);

#endif
