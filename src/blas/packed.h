/* src/blas/packed.h - the GEMM paths behind clg__gemm_mem (src/blas/gemm.c) and how one is
 * chosen: CLBlast, or our packed register-blocked kernel (cl/blas/gemm_packed.cl, host side
 * in src/blas/packed.c), picked per device and size class by measurement (src/blas/choose.c:
 * a tuning file written by tools/clgrad-tune, else a first-use probe), never by vendor.
 * CLBlast's own per-device parameters: src/blas/tune.c. Tests: tests/unit/test_gemm_packed.c.
 */
#ifndef CLGRAD_BLAS_PACKED_H
#define CLGRAD_BLAS_PACKED_H

#include "tensor/tensor.h"

typedef enum clg_gemm_path {
    CLG_GEMM_AUTO = 0,    /* measured choice per size class */
    CLG_GEMM_CLBLAST = 1, /* always CLBlast */
    CLG_GEMM_PACKED = 2,  /* always the packed kernel */
} clg_gemm_path;

/* Which operands the packed path packs into panels (tests force each way). */
typedef enum clg_pack_mode {
    CLG_PACK_BY_SIZE = 0, /* by cache footprint (packed.c) */
    CLG_PACK_NONE = 1,    /* read A and B in place (B transposed: element by element) */
    CLG_PACK_ALL = 2,     /* always pack both */
} clg_pack_mode;

/* Tile shape of the packed kernel: MR x NR of C per work-item in vectors of VW. */
typedef struct clg_packed_config {
    int vw, mr, nr;
} clg_packed_config;

/* ---- the packed path (src/blas/packed.c) ---- */
/* C = alpha * op(A) op(B) + beta * C, row-major, like clg__gemm_mem (arguments already
 * checked there). Packs the operands that need it into pool buffers, then one launch. */
clg_status clg__packed_gemm(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                            double alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                            size_t ldb, double beta, cl_mem c, size_t c_off, size_t ldc);
/* Whether the packed kernels can index this product (their indices are ints). */
bool clg__packed_fits(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                      size_t a_off, size_t lda, size_t b_off, size_t ldb, size_t c_off, size_t ldc);
/* The tile shape this context's packed kernel uses for dt (from the tuning file, else the
 * device's preferred vector width). */
clg_packed_config clg__packed_config(clg_context *ctx, clg_dtype dt);
/* Sets the tile shape (tools/clgrad-tune tries several). vw/mr/nr 0 restores the default. */
clg_status clg__packed_set_config(clg_context *ctx, clg_dtype dt, clg_packed_config cfg);
void clg__packed_force_packing(clg_context *ctx, clg_pack_mode mode);
/* The default shape for a device whose preferred vector width for dt is vw. */
clg_packed_config clg__packed_default_config(int vw);

/* ---- the CLBlast path (src/blas/gemm.c) ---- */
clg_status clg__clblast_gemm(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                             double alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                             size_t ldb, double beta, cl_mem c, size_t c_off, size_t ldc);

/* ---- the choice (src/blas/choose.c) ---- */
/* Size class of a product: dtype, transposes and the binary magnitude of m, n and k. */
typedef struct clg_gemm_class {
    clg_dtype dt;
    bool ta, tb;
    unsigned char lm, ln, lk; /* floor(log2(x)) */
} clg_gemm_class;

/* Per-context state of src/blas beyond CLBlast: forced path, decisions per size class,
 * packed tile shapes. Created by clg__blas_init, freed by clg__blas_free. */
typedef struct clg_gemm_state {
    clg_gemm_path forced;
    clg_pack_mode pack_mode;
    clg_packed_config cfg[2]; /* by dtype (f32, f64); zero until first use */
    struct clg_gemm_known {
        clg_gemm_class cls;
        clg_gemm_path path;
    } * known;
    size_t n_known, cap_known;
    bool tuned; /* a tuning file was applied */
} clg_gemm_state;
clg_status clg__gemm_state_create(clg_context *ctx, clg_gemm_state **out);
void clg__gemm_state_free(clg_gemm_state *s);
clg_gemm_state *clg__gemm_state(clg_context *ctx); /* the context's (gemm.c owns the pointer) */

/* Which path runs this product (probing both once per size class when nothing is known). */
clg_status clg__gemm_choose(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                            cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                            size_t c_off, size_t ldc, clg_gemm_path *out);
/* Forces a path for every later GEMM on ctx (tests, benchmarks); CLG_GEMM_AUTO measures.
 * CLGRAD_GEMM=clblast|packed|auto in the environment sets the same at context creation. */
void clg__blas_force_path(clg_context *ctx, clg_gemm_path path);
clg_gemm_path clg__blas_forced_path(clg_context *ctx);

clg_gemm_class clg__gemm_class(clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k);
/* Records (or replaces) the decision for a class, e.g. from the tuning file or a probe. */
clg_status clg__gemm_record(clg_context *ctx, clg_gemm_class cls, clg_gemm_path path);
/* The recorded decision for a class, CLG_GEMM_AUTO when none. */
clg_gemm_path clg__gemm_lookup(clg_context *ctx, clg_gemm_class cls);
/* Measures both paths on (a bounded part of) this product and returns the faster one;
 * seconds of each (may be NULL). Writes only a scratch C. */
clg_status clg__gemm_probe(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                           cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                           clg_gemm_path *winner, double *t_clblast, double *t_packed);

/* Tuning file and CLBlast parameters: src/blas/tune.h. */

#endif
