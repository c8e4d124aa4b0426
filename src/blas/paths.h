/* src/blas/paths.h - inside src/blas only (tools use src/blas/tuning.h): the GEMM path table
 * entry, the per-context GEMM state, and what the blas files share. The front door and the
 * table: gemm.c; the paths: clblast.c, packed.c; the choice and the state: choose.c; the
 * tuning file: tune.c. Tests: tests/blas/.
 */
#ifndef CLGRAD_BLAS_PATHS_H
#define CLGRAD_BLAS_PATHS_H

#include "blas/blas.h"
#include "blas/tuning.h"

/* One product, arguments already checked against the buffers by the front door. */
typedef struct clg_gemm_args {
    clg_dtype dt;
    bool ta, tb;
    size_t m, n, k;
    double alpha, beta;
    cl_mem a, b, c;
    size_t a_off, lda, b_off, ldb, c_off, ldc;
} clg_gemm_args;

/* A GEMM path: one entry of the table in gemm.c. Adding a path is its file with one of these
 * plus a line in the table. */
typedef struct clg_gemm_path {
    const char *name; /* in CLGRAD_GEMM, the tuning file and the tools */
    /* Whether the path is the default for this device when nothing was measured (the
     * deterministic rule, choose.c); NULL: every device. */
    bool (*suits)(const clg_context *ctx);
    /* Whether the path can index this product at all. */
    bool (*fits)(clg_context *ctx, const clg_gemm_args *g);
    /* Builds the path's programs and creates its kernels for dt before the automatic choice
     * relies on it; CLG_BUILD_FAILED or CLG_OPENCL_ERROR there means "not on this device".
     * NULL: nothing to prepare. */
    clg_status (*prepare)(clg_context *ctx, clg_dtype dt);
    clg_status (*run)(clg_context *ctx, const clg_gemm_args *g);
} clg_gemm_path;

extern const clg_gemm_path clg__gemm_path_clblast; /* clblast.c */
extern const clg_gemm_path clg__gemm_path_packed;  /* packed.c */

/* The table (gemm.c), in the order the default rule tries the paths. */
size_t clg__gemm_path_count(void);
const clg_gemm_path *clg__gemm_path_at(size_t i);
/* Index of a path by name, -1 when there is none. */
int clg__gemm_path_index(const char *name);

/* A size class's path and, when measured in this context, the times that chose it. */
typedef struct clg_gemm_choice {
    clg_gemm_class cls;
    int path;      /* table index */
    bool measured; /* written to the tuning file at context free */
    double seconds[CLG_BLAS_MAX_PATHS];
} clg_gemm_choice;

/* Per-context state of src/blas, kept in a context slot: made on the first GEMM (or the
 * first tuning call), torn down at clg_context_free (writing measured choices then). */
typedef struct clg_gemm_state {
    int forced; /* table index, -1 = automatic */
    clg_pack_mode pack_mode;
    clg_packed_config cfg[2]; /* by dtype (f32, f64); zero until first use */
    bool ready[CLG_BLAS_MAX_PATHS][2];       /* prepared for dtype */
    bool unavailable[CLG_BLAS_MAX_PATHS][2]; /* failed to build here: never chosen again */
    clg_gemm_choice *choices;
    size_t n_choices, cap_choices;
    bool tuned;    /* a tuning file was applied */
    bool measured; /* some choice was measured and is not saved yet */
} clg_gemm_state;

/* The context's state, made on first use (reading CLGRAD_GEMM and the tuning file). */
clg_status clg__gemm_state(clg_context *ctx, clg_gemm_state **out);
/* The state if it exists, else NULL (never makes one). */
clg_gemm_state *clg__gemm_state_peek(const clg_context *ctx);
/* The path that runs g: the forced one, else the recorded choice, else the default rule. */
clg_status clg__gemm_pick(clg_context *ctx, clg_gemm_state *s, const clg_gemm_args *g, const clg_gemm_path **out);
/* Records (or replaces; path -1 forgets) the path of a class. */
clg_status clg__gemm_record(clg_context *ctx, clg_gemm_state *s, clg_gemm_class cls, int path, bool measured,
                            const double *seconds);
/* A path must be prepared again for dt (its build options changed). */
void clg__gemm_path_reset(clg_context *ctx, const clg_gemm_path *p, clg_dtype dt);
bool clg__same_class(clg_gemm_class a, clg_gemm_class b);

/* The packed kernel's tile for dt (resolved from the device's vector width on first use). */
clg_packed_config clg__packed_config(clg_context *ctx, clg_dtype dt);

/* The tuning file on first use (tune.c): a missing file changes nothing; a malformed one, one
 * for another device or of an older format is ignored with a line in the log. Only host
 * memory can fail it. Not when CLGRAD_GEMM_TUNING=off. */
clg_status clg__tune_load(clg_context *ctx);
/* Merges the measured choices into the tuning file (tune.c). */
clg_status clg__tune_save_measured(clg_context *ctx, clg_gemm_state *s);

#endif
