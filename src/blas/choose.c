/* src/blas/choose.c - which GEMM path runs a product: per context and size class, from the
 * tuning file (src/blas/tune.c, written by tools/clgrad-tune) or else from a first-use probe
 * that times both paths once and saves its decision there; never from the vendor's name. Paths:
 * src/blas/gemm.c (CLBlast), src/blas/packed.c. Tests: tests/unit/test_gemm_packed.c.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "blas/packed.h"
#include "blas/tune.h"

clg_status clg__gemm_state_create(clg_context *ctx, clg_gemm_state **out) {
    clg_gemm_state *s = calloc(1, sizeof *s);
    if (!s) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "blas: out of host memory");
    /* Lets every test and tool run against one path without rebuilding. */
    const char *env = getenv("CLGRAD_GEMM");
    if (env && !strcasecmp(env, "clblast")) s->forced = CLG_GEMM_CLBLAST;
    if (env && !strcasecmp(env, "packed")) s->forced = CLG_GEMM_PACKED;
    *out = s;
    return CLG_OK;
}

void clg__gemm_state_free(clg_gemm_state *s) {
    if (!s) return;
    free(s->known);
    free(s);
}

void clg__blas_force_path(clg_context *ctx, clg_gemm_path path) { clg__gemm_state(ctx)->forced = path; }

clg_gemm_path clg__blas_forced_path(clg_context *ctx) { return clg__gemm_state(ctx)->forced; }

static unsigned char ilog2(size_t x) {
    unsigned char l = 0;
    while (x > 1)
        x >>= 1, l++;
    return l;
}

clg_gemm_class clg__gemm_class(clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k) {
    return (clg_gemm_class){dt, ta, tb, ilog2(m), ilog2(n), ilog2(k)};
}

static bool same_class(clg_gemm_class a, clg_gemm_class b) {
    return a.dt == b.dt && a.ta == b.ta && a.tb == b.tb && a.lm == b.lm && a.ln == b.ln && a.lk == b.lk;
}

clg_gemm_path clg__gemm_lookup(clg_context *ctx, clg_gemm_class cls) {
    const clg_gemm_state *s = clg__gemm_state(ctx);
    for (size_t i = 0; i < s->n_known; i++)
        if (same_class(s->known[i].cls, cls)) return s->known[i].path;
    return CLG_GEMM_AUTO;
}

clg_status clg__gemm_record(clg_context *ctx, clg_gemm_class cls, clg_gemm_path path) {
    clg_gemm_state *s = clg__gemm_state(ctx);
    for (size_t i = 0; i < s->n_known; i++) {
        if (same_class(s->known[i].cls, cls)) {
            s->known[i].path = path;
            return CLG_OK;
        }
    }
    if (s->n_known == s->cap_known) {
        size_t cap = s->cap_known ? 2 * s->cap_known : 32;
        struct clg_gemm_known *grown = realloc(s->known, cap * sizeof *grown);
        if (!grown) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm: out of host memory");
        s->known = grown;
        s->cap_known = cap;
    }
    s->known[s->n_known++] = (struct clg_gemm_known){cls, path};
    return CLG_OK;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One product on one path into the scratch C, waited for. */
static clg_status run_path(clg_context *ctx, clg_gemm_path path, clg_dtype dt, bool ta, bool tb, size_t m,
                           size_t n, size_t k, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                           size_t ldb, cl_mem c) {
    clg_status st =
        path == CLG_GEMM_PACKED
            ? clg__packed_gemm(ctx, dt, ta, tb, m, n, k, 1.0, a, a_off, lda, b, b_off, ldb, 0.0, c, 0, n)
            : clg__clblast_gemm(ctx, dt, ta, tb, m, n, k, 1.0, a, a_off, lda, b, b_off, ldb, 0.0, c, 0, n);
    if (st != CLG_OK) return st;
    cl_int e = clFinish(ctx->queue);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(ctx, e, "clFinish(gemm probe)");
}

/* Fastest of a few runs after a warm-up run (which compiles the kernels): the minimum is the
 * estimate least disturbed by other processes on the same cores. */
static clg_status time_path(clg_context *ctx, clg_gemm_path path, clg_dtype dt, bool ta, bool tb, size_t m,
                            size_t n, size_t k, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                            size_t ldb, cl_mem c, double *best) {
    clg_status st = run_path(ctx, path, dt, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, c);
    *best = 1e30;
    double spent = 0;
    for (int r = 0; st == CLG_OK && r < 7 && (r < 3 || spent < 0.02); r++) {
        const double t0 = now_seconds();
        st = run_path(ctx, path, dt, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, c);
        const double t = now_seconds() - t0;
        spent += t;
        if (t < *best) *best = t;
    }
    return st;
}

clg_status clg__gemm_probe(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                           cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                           clg_gemm_path *winner, double *t_clblast, double *t_packed) {
    /* A leading part of the product keeps the probe bounded (the slow path may be 20x
     * slower); halving the largest dimension keeps its shape. The leading dimensions stay,
     * so the part is read in place. */
    while (2.0 * (double)m * (double)n * (double)k > 3e8) {
        if (m >= n && m >= k)
            m = (m + 1) / 2;
        else if (n >= k)
            n = (n + 1) / 2;
        else
            k = (k + 1) / 2;
    }
    clg_pool_block scratch; // (m, n)
    clg_status st = clg__pool_alloc(ctx, m * n * clg_dtype_size(dt), &scratch);
    if (st != CLG_OK) return st;
    double tc = 1e30, tp = 1e30;
    clg_status sc =
        time_path(ctx, CLG_GEMM_CLBLAST, dt, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, scratch.mem, &tc);
    clg_status sp =
        time_path(ctx, CLG_GEMM_PACKED, dt, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, scratch.mem, &tp);
    clg__pool_release(ctx, scratch);
    /* A path that cannot run here (a compiler that rejects our kernel, a CLBlast error) loses
     * and the other runs; anything else (memory, a failed enqueue) is the caller's error. */
    if (sp != CLG_OK && sp != CLG_BUILD_FAILED && sp != CLG_UNSUPPORTED) return sp;
    if (sc != CLG_OK && sc != CLG_BLAS_ERROR) return sc;
    if (sc != CLG_OK && sp != CLG_OK) return sc;
    if (sp != CLG_OK) clg__log(ctx, CLG_LOG_WARN, "clgrad: gemm: packed path unavailable: %s", ctx->errmsg);
    if (sc != CLG_OK) clg__log(ctx, CLG_LOG_WARN, "clgrad: gemm: CLBlast path failed: %s", ctx->errmsg);
    /* The faster path wins. Near ties (launch-bound tiny products) cannot flip from run to
     * run with the machine's load: the choice is saved and later processes reuse it. */
    *winner = sp != CLG_OK   ? CLG_GEMM_CLBLAST
              : sc != CLG_OK ? CLG_GEMM_PACKED
              : tp < tc      ? CLG_GEMM_PACKED
                             : CLG_GEMM_CLBLAST;
    if (t_clblast) *t_clblast = tc;
    if (t_packed) *t_packed = tp;
    clg__log(ctx, CLG_LOG_INFO,
             "clgrad: gemm probe %s ta=%d tb=%d %zux%zux%zu: CLBlast %.3g ms, packed %.3g ms",
             clg_dtype_name(dt), ta, tb, m, n, k, tc * 1e3, tp * 1e3);
    return CLG_OK;
}

clg_status clg__gemm_choose(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                            cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                            size_t c_off, size_t ldc, clg_gemm_path *out) {
    const clg_gemm_state *s = clg__gemm_state(ctx);
    if (s->forced != CLG_GEMM_AUTO) {
        *out = s->forced;
        return CLG_OK;
    }
    if (!clg__packed_fits(ctx, dt, ta, tb, m, n, k, a_off, lda, b_off, ldb, c_off, ldc)) {
        *out = CLG_GEMM_CLBLAST;
        return CLG_OK;
    }
    const clg_gemm_class cls = clg__gemm_class(dt, ta, tb, m, n, k);
    clg_gemm_path path = clg__gemm_lookup(ctx, cls);
    if (path == CLG_GEMM_AUTO) {
        clg_tune_choice ch = {cls, CLG_GEMM_AUTO, 0, 0};
        clg_status st = clg__gemm_probe(ctx, dt, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, &ch.path,
                                        &ch.t_clblast, &ch.t_packed);
        if (st == CLG_OK) st = clg__gemm_record(ctx, cls, ch.path);
        if (st != CLG_OK) return st;
        path = ch.path;
        /* later processes take the same path without probing; failing to save costs only that */
        if (clg__tune_save_choice(ctx, &ch) != CLG_OK) {
            clg__log(ctx, CLG_LOG_WARN, "clgrad: gemm: cannot save the path choice: %s", ctx->errmsg);
            ctx->errmsg[0] = '\0';
        }
    }
    *out = path;
    return CLG_OK;
}
