/* src/blas/choose.c - which GEMM path runs a product, and the per-context GEMM state that
 * choice keeps (a context slot, made on the first GEMM). The rule, deterministic whatever the
 * cache holds: a forced path (CLGRAD_GEMM, clg_blas_force_path); else the size class's choice
 * from the tuning file or an explicit measurement (clgrad-tune, clg_blas_measure); else the
 * first path of the table (src/blas/gemm.c) that suits the device, fits the product and builds
 * here. Timing happens only when asked for. Tests: tests/blas/test_gemm_choice.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "blas/paths.h"

/* ---------------------------------------------------------------- state */
/* The context keeps the state in a slot under this key (core never names blas). */
static const char blas_slot_key;

static void state_free(clg_gemm_state *s) {
    if (!s) return;
    free(s->choices);
    free(s);
}

/* At clg_context_free: measured choices go to the tuning file now, never from inside a GEMM.
 * A failure there has nobody to return to: the log says it. CLBlast's program cache is
 * process-wide and shared with other contexts: never CLBlastClearCache() here. */
static void blas_teardown(clg_context *ctx, void *state) {
    clg_gemm_state *s = state;
    if (s->measured && clg__tune_save_measured(ctx, s) != CLG_OK)
        clg__log(ctx, CLG_LOG_WARN, "clgrad: gemm: cannot save the measured path choices: %s", ctx->errmsg);
    state_free(s);
}

clg_gemm_state *clg__gemm_state_peek(const clg_context *ctx) { return clg__context_slot(ctx, &blas_slot_key); }

clg_status clg__gemm_state(clg_context *ctx, clg_gemm_state **out) {
    clg_gemm_state *s = clg__gemm_state_peek(ctx);
    if (s) {
        *out = s;
        return CLG_OK;
    }
    s = calloc(1, sizeof *s);
    if (!s) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm: out of host memory for its state");
    s->forced = -1;
    /* Lets every test and tool run against one path without rebuilding. */
    const char *env = getenv("CLGRAD_GEMM");
    if (env && *env && strcasecmp(env, "auto") != 0) {
        s->forced = clg__gemm_path_index(env);
        if (s->forced < 0) {
            state_free(s);
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "CLGRAD_GEMM=\"%s\": expected clblast, packed or auto",
                             env);
        }
    }
    clg_status st = clg__context_slot_set(ctx, &blas_slot_key, s, blas_teardown);
    if (st != CLG_OK) {
        state_free(s);
        return st;
    }
    /* Read with the state in its slot: applying the file records into it. Only host memory
     * can fail here; the state stays, untuned. */
    st = clg__tune_load(ctx);
    if (st != CLG_OK) return st;
    *out = s;
    return CLG_OK;
}

void clg__gemm_path_reset(clg_context *ctx, const clg_gemm_path *p, clg_dtype dt) {
    clg_gemm_state *s = clg__gemm_state_peek(ctx);
    for (size_t i = 0; s && i < clg__gemm_path_count(); i++) {
        if (clg__gemm_path_at(i) != p) continue;
        s->ready[i][dt == CLG_F64] = false;
        s->unavailable[i][dt == CLG_F64] = false;
    }
}

/* ---------------------------------------------------------------- forcing */
clg_status clg_blas_force_path(clg_context *ctx, const char *name) {
    if (!ctx || !name) return CLG_INVALID_ARGUMENT;
    const int idx = strcasecmp(name, "auto") ? clg__gemm_path_index(name) : -1;
    if (idx < 0 && strcasecmp(name, "auto") != 0)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "gemm: no path \"%s\" (clblast, packed or auto)", name);
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    if (st == CLG_OK) s->forced = idx;
    return st;
}

const char *clg_blas_forced_path(clg_context *ctx) {
    clg_gemm_state *s = NULL;
    if (!ctx || clg__gemm_state(ctx, &s) != CLG_OK || s->forced < 0) return "auto";
    return clg__gemm_path_at((size_t)s->forced)->name;
}

/* ---------------------------------------------------------------- size classes */
static unsigned char ilog2(size_t x) {
    unsigned char l = 0;
    while (x > 1)
        x >>= 1, l++;
    return l;
}

clg_gemm_class clg_blas_class(clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k) {
    return (clg_gemm_class){dt, ta, tb, ilog2(m), ilog2(n), ilog2(k)};
}

bool clg__same_class(clg_gemm_class a, clg_gemm_class b) {
    return a.dt == b.dt && a.ta == b.ta && a.tb == b.tb && a.lm == b.lm && a.ln == b.ln && a.lk == b.lk;
}

static clg_gemm_choice *find_choice(clg_gemm_state *s, clg_gemm_class cls) {
    for (size_t i = 0; i < s->n_choices; i++)
        if (clg__same_class(s->choices[i].cls, cls)) return &s->choices[i];
    return NULL;
}

clg_status clg__gemm_record(clg_context *ctx, clg_gemm_state *s, clg_gemm_class cls, int path, bool measured,
                            const double *seconds) {
    clg_gemm_choice *c = find_choice(s, cls);
    if (path < 0) {
        if (c) *c = s->choices[--s->n_choices];
        return CLG_OK;
    }
    if (!c) {
        if (s->n_choices == s->cap_choices) {
            const size_t cap = s->cap_choices ? 2 * s->cap_choices : 32;
            clg_gemm_choice *grown = realloc(s->choices, cap * sizeof *grown);
            if (!grown) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "gemm: out of host memory");
            s->choices = grown;
            s->cap_choices = cap;
        }
        c = &s->choices[s->n_choices++];
    }
    *c = (clg_gemm_choice){.cls = cls, .path = path, .measured = measured};
    for (size_t i = 0; i < CLG_BLAS_MAX_PATHS; i++)
        c->seconds[i] = seconds ? seconds[i] : 0;
    if (measured) s->measured = true;
    return CLG_OK;
}

clg_status clg_blas_record_choice(clg_context *ctx, clg_gemm_class cls, const char *name) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    const int idx = clg__gemm_path_index(name);
    if (name && idx < 0) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "gemm: no path \"%s\"", name);
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    return st == CLG_OK ? clg__gemm_record(ctx, s, cls, idx, false, NULL) : st;
}

clg_status clg_blas_lookup_choice(clg_context *ctx, clg_gemm_class cls, const char **name) {
    if (!ctx || !name) return CLG_INVALID_ARGUMENT;
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    if (st != CLG_OK) return st;
    const clg_gemm_choice *c = find_choice(s, cls);
    *name = c ? clg__gemm_path_at((size_t)c->path)->name : NULL;
    return CLG_OK;
}

/* ---------------------------------------------------------------- the choice */
/* True when the fault that just failed was injected (clg_context_inject_fault): it was armed
 * before and fired, which disarms it. */
static bool fault_fired(const clg_context *ctx, bool armed) { return armed && ctx->fault_at[CLG_FAULT_BUILD] == 0; }

/* Whether path i can run dt here: prepared once per context and dtype. A path whose kernels
 * do not build or cannot be created on this device is unavailable for the context (a line in
 * the log says why); an injected fault, memory or anything else is the caller's error and is
 * not remembered, so the next GEMM tries again. */
static clg_status usable(clg_context *ctx, clg_gemm_state *s, size_t i, clg_dtype dt, bool *ok) {
    const clg_gemm_path *p = clg__gemm_path_at(i);
    const int d = dt == CLG_F64;
    *ok = false;
    if (s->unavailable[i][d]) return CLG_OK;
    if (s->ready[i][d] || !p->prepare) {
        *ok = true;
        return CLG_OK;
    }
    const bool armed = ctx->fault_at[CLG_FAULT_BUILD] != 0;
    const clg_status st = p->prepare(ctx, dt);
    if (st == CLG_OK) {
        s->ready[i][d] = *ok = true;
        return CLG_OK;
    }
    if ((st != CLG_BUILD_FAILED && st != CLG_OPENCL_ERROR) || fault_fired(ctx, armed)) return st;
    s->unavailable[i][d] = true;
    clg__log(ctx, CLG_LOG_WARN, "clgrad: gemm: the %s path is unavailable on %s (%s); another path runs instead",
             p->name, ctx->info.name, ctx->errmsg);
    ctx->errmsg[0] = '\0';
    return CLG_OK;
}

/* The automatic choice for g (forcing aside): index into the table. */
static clg_status auto_pick(clg_context *ctx, clg_gemm_state *s, const clg_gemm_args *g, size_t *out) {
    bool ok = false;
    clg_status st;
    const clg_gemm_choice *c = find_choice(s, clg_blas_class(g->dt, g->ta, g->tb, g->m, g->n, g->k));
    if (c && clg__gemm_path_at((size_t)c->path)->fits(ctx, g)) {
        if ((st = usable(ctx, s, (size_t)c->path, g->dt, &ok)) != CLG_OK) return st;
        if (ok) {
            *out = (size_t)c->path;
            return CLG_OK;
        }
    }
    for (size_t i = 0; i < clg__gemm_path_count(); i++) {
        const clg_gemm_path *p = clg__gemm_path_at(i);
        if ((p->suits && !p->suits(ctx)) || !p->fits(ctx, g)) continue;
        if ((st = usable(ctx, s, i, g->dt, &ok)) != CLG_OK) return st;
        if (ok) {
            *out = i;
            return CLG_OK;
        }
    }
    return clg__fail(ctx, CLG_UNSUPPORTED, "gemm: no path runs m=%zu n=%zu k=%zu %s on this device", g->m, g->n,
                     g->k, clg_dtype_name(g->dt));
}

clg_status clg__gemm_pick(clg_context *ctx, clg_gemm_state *s, const clg_gemm_args *g, const clg_gemm_path **out) {
    if (s->forced >= 0) {
        *out = clg__gemm_path_at((size_t)s->forced);
        return CLG_OK;
    }
    size_t i = 0;
    clg_status st = auto_pick(ctx, s, g, &i);
    if (st == CLG_OK) *out = clg__gemm_path_at(i);
    return st;
}

static clg_gemm_args tight(clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k) {
    return (clg_gemm_args){.dt = dt, .ta = ta, .tb = tb, .m = m, .n = n, .k = k, .alpha = 1,
                           .lda = ta ? m : k, .ldb = tb ? k : n, .ldc = n};
}

clg_status clg_blas_chosen_path(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                                const char **name) {
    if (!ctx || !name || !m || !n || !k) return CLG_INVALID_ARGUMENT;
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    const clg_gemm_args g = tight(dt, ta, tb, m, n, k);
    size_t i = 0;
    if (st == CLG_OK) st = auto_pick(ctx, s, &g, &i);
    if (st == CLG_OK) *name = clg__gemm_path_at(i)->name;
    return st;
}

/* ---------------------------------------------------------------- explicit runs and timing */
clg_status clg_blas_run_path(clg_context *ctx, const char *name, clg_dtype dt, bool ta, bool tb, size_t m,
                             size_t n, size_t k, double alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                             size_t b_off, size_t ldb, double beta, cl_mem c, size_t c_off, size_t ldc) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    const int idx = clg__gemm_path_index(name);
    if (idx < 0) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "gemm: no path \"%s\"", name ? name : "(null)");
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    if (st != CLG_OK) return st;
    if (m == 0 || n == 0) return CLG_OK;
    const clg_gemm_path *p = clg__gemm_path_at((size_t)idx);
    const clg_gemm_args g = {.dt = dt, .ta = ta, .tb = tb, .m = m, .n = n, .k = k, .alpha = alpha,
                             .beta = beta, .a = a, .b = b, .c = c, .a_off = a_off, .lda = lda,
                             .b_off = b_off, .ldb = ldb, .c_off = c_off, .ldc = ldc};
    if (!p->fits(ctx, &g))
        return clg__fail(ctx, CLG_UNSUPPORTED, "gemm %s: cannot index m=%zu n=%zu k=%zu", p->name, m, n, k);
    return p->run(ctx, &g);
}

/* One product on one path into the scratch C, waited for. */
static clg_status run_waited(clg_context *ctx, const clg_gemm_path *p, const clg_gemm_args *g) {
    clg_status st = p->run(ctx, g);
    if (st != CLG_OK) return st;
    cl_int e = clFinish(ctx->queue);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(ctx, e, "clFinish(gemm timing)");
}

/* Fastest of a few runs after a warm-up run (which compiles the kernels): the minimum is the
 * estimate least disturbed by other processes on the same cores. */
static clg_status time_one(clg_context *ctx, const clg_gemm_path *p, const clg_gemm_args *g, double *best) {
    clg_status st = run_waited(ctx, p, g);
    *best = INFINITY;
    double spent = 0;
    for (int r = 0; st == CLG_OK && r < 7 && (r < 3 || spent < 0.02); r++) {
        const double t0 = clg__now_seconds();
        st = run_waited(ctx, p, g);
        const double t = clg__now_seconds() - t0;
        spent += t;
        if (t < *best) *best = t;
    }
    return st;
}

clg_status clg_blas_time_paths(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                               cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                               clg_blas_times *out) {
    if (!ctx || !out || !m || !n || !k) return CLG_INVALID_ARGUMENT;
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    if (st != CLG_OK) return st;
    /* A leading part of the product keeps the timing bounded (the slow path may be 20x
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
    st = clg__pool_alloc(ctx, m * n * clg_dtype_size(dt), &scratch);
    if (st != CLG_OK) return st;
    const clg_gemm_args g = {.dt = dt, .ta = ta, .tb = tb, .m = m, .n = n, .k = k, .alpha = 1, .beta = 0,
                             .a = a, .b = b, .c = scratch.mem, .a_off = a_off, .lda = lda, .b_off = b_off,
                             .ldb = ldb, .ldc = n};
    bool any = false;
    for (size_t i = 0; i < CLG_BLAS_MAX_PATHS; i++)
        out->seconds[i] = INFINITY;
    out->winner = 0;
    for (size_t i = 0; st == CLG_OK && i < clg__gemm_path_count(); i++) {
        const clg_gemm_path *p = clg__gemm_path_at(i);
        bool ok = false;
        if (!p->fits(ctx, &g) || (st = usable(ctx, s, i, dt, &ok)) != CLG_OK || !ok) continue;
        st = time_one(ctx, p, &g, &out->seconds[i]);
        if (st == CLG_OK && (!any || out->seconds[i] < out->seconds[out->winner])) out->winner = i;
        any = true;
    }
    clg__pool_release(ctx, scratch);
    if (st == CLG_OK && !any)
        st = clg__fail(ctx, CLG_UNSUPPORTED, "gemm timing: no path runs m=%zu n=%zu k=%zu here", m, n, k);
    if (st == CLG_OK)
        clg__log(ctx, CLG_LOG_INFO, "clgrad: gemm timing %s ta=%d tb=%d %zux%zux%zu: %s fastest (%.3g ms)",
                 clg_dtype_name(dt), ta, tb, m, n, k, clg__gemm_path_at(out->winner)->name,
                 out->seconds[out->winner] * 1e3);
    return st;
}

clg_status clg_blas_measure(clg_context *ctx, clg_dtype dt, bool ta, bool tb, size_t m, size_t n, size_t k,
                            cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off, size_t ldb,
                            clg_blas_times *out) {
    clg_blas_times local;
    if (!out) out = &local;
    clg_status st = clg_blas_time_paths(ctx, dt, ta, tb, m, n, k, a, a_off, lda, b, b_off, ldb, out);
    if (st != CLG_OK) return st;
    clg_gemm_state *s = clg__gemm_state_peek(ctx);
    return clg__gemm_record(ctx, s, clg_blas_class(dt, ta, tb, m, n, k), (int)out->winner, true, out->seconds);
}

clg_status clg_blas_save_choices(clg_context *ctx) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    clg_gemm_state *s = clg__gemm_state_peek(ctx);
    return s && s->measured ? clg__tune_save_measured(ctx, s) : CLG_OK;
}

bool clg_blas_tuning_applied(clg_context *ctx) {
    const clg_gemm_state *s = ctx ? clg__gemm_state_peek(ctx) : NULL;
    return s && s->tuned;
}
