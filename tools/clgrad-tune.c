/* tools/clgrad-tune.c - tunes GEMM for the current device within a time budget and saves the
 * result in the cache folder (src/blas/tune.c: a JSON file keyed by device name and driver
 * version) that every later context applies: the packed kernel's tile shape, CLBlast's
 * XgemmDirect, Xgemm and copy/pad/transpose parameters and its direct/indirect switch-over
 * (GemmRoutine), then which path wins per size class. The public API plus src/blas/tuning.h
 * only. Usage: clgrad-tune --help.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blas/tuning.h"
#include "clgrad.h"
#include "tool_clock.h"

#if defined(__GNUC__)
#define TUNE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TUNE_PRINTF(f, a)
#endif

/* The paths this tool times by name (src/blas/tuning.h lists the table). */
#define PACKED "packed"
#define CLBLAST "clblast"


typedef struct tuner {
    clg_context *ctx;
    clg_device_info info;
    clg_dtype dt;
    double deadline, phase_end, budget;
    bool quiet;
    uint64_t rng;
    clg_tensor *a, *b, *c; /* (2048*2048) each: room for every timed product */
    clg_tune_data *out;
} tuner;

static unsigned rnd(tuner *t, unsigned n) {
    t->rng = t->rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((t->rng >> 33) % n);
}

static void progress(tuner *t, const char *fmt, ...) TUNE_PRINTF(2, 3);
static void progress(tuner *t, const char *fmt, ...) {
    if (t->quiet) return;
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    const double left = t->deadline - tool_now_seconds();
    if (isfinite(left))
        fprintf(stderr, "\r%-100.100s %4.0f s left", line, left > 0 ? left : 0);
    else
        fprintf(stderr, "\r%-100.100s          ", line);
    fflush(stderr);
}

/* ---------------------------------------------------------------- timing */
/* Seconds of one product on a path: warm-up (builds), then the best of a few runs. A
 * failure (a candidate CLBlast cannot build or run) is +inf. */
static double run_once(tuner *t, const char *path, bool ta, bool tb, size_t m, size_t n, size_t k) {
    const size_t lda = ta ? m : k, ldb = tb ? k : n;
    cl_mem a = clg_tensor_cl_mem(t->a), b = clg_tensor_cl_mem(t->b), c = clg_tensor_cl_mem(t->c);
    const double t0 = tool_now_seconds();
    clg_status st = clg_blas_run_path(t->ctx, path, t->dt, ta, tb, m, n, k, 1, a, 0, lda, b, 0, ldb, 0, c, 0, n);
    if (st != CLG_OK || clg_context_finish(t->ctx) != CLG_OK) return INFINITY;
    return tool_now_seconds() - t0;
}

static double time_gemm(tuner *t, const char *path, bool ta, bool tb, size_t m, size_t n, size_t k) {
    /* a tiny product of the same kind builds the kernels (many seconds for CLBlast on a CPU
     * device) without running a possibly slow candidate at full size */
    if (!isfinite(run_once(t, path, ta, tb, 16, 16, 16))) return INFINITY;
    double best = INFINITY, spent = 0;
    for (int r = 0; r < 4 && (r < 2 || spent < 0.05); r++) {
        const double dt = run_once(t, path, ta, tb, m, n, k);
        if (r == 0 && dt > 2) return INFINITY; /* hopeless candidate: do not spend more */
        spent += dt;
        best = fmin(best, dt);
    }
    return best;
}

/* Sum of times over the sizes that matter most for training-sized products. */
static double score(tuner *t, const char *path, const size_t *sizes, int n) {
    double s = 0;
    for (int i = 0; i < n && isfinite(s); i++)
        s += time_gemm(t, path, false, false, sizes[i], sizes[i], sizes[i]);
    return s;
}

/* Compares one product on the path against a host loop: a candidate that computes wrong
 * answers (CLBlast accepts some parameter sets it then mishandles) is never saved. */
static bool check_gemm(tuner *t, const char *path, bool ta, bool tb, size_t m, size_t n, size_t k) {
    const size_t lda = ta ? m : k, ldb = tb ? k : n;
    const int sa[1] = {(int)(m * k)}, sb[1] = {(int)(k * n)}, sc[1] = {(int)(m * n)};
    clg_tensor *a = NULL, *b = NULL, *c = NULL;
    double *ha = malloc(sizeof(double) * m * k), *hb = malloc(sizeof(double) * k * n),
           *hc = malloc(sizeof(double) * m * n);
    bool ok = ha && hb && hc && !clg_tensor_rand_uniform(t->ctx, CLG_F64, 1, sa, -1, 1, 5, &a) &&
              !clg_tensor_rand_uniform(t->ctx, CLG_F64, 1, sb, -1, 1, 6, &b) &&
              !clg_tensor_zeros(t->ctx, CLG_F64, 1, sc, &c);
    clg_tensor *a2 = NULL, *b2 = NULL, *c2 = NULL;
    if (ok && t->dt == CLG_F32)
        ok = !clg_tensor_cast(a, CLG_F32, &a2) && !clg_tensor_cast(b, CLG_F32, &b2) &&
             !clg_tensor_cast(c, CLG_F32, &c2);
    clg_tensor *A = a2 ? a2 : a, *B = b2 ? b2 : b, *C = c2 ? c2 : c;
    ok = ok && !clg_tensor_to_host(a, ha, sizeof(double) * m * k) &&
         !clg_tensor_to_host(b, hb, sizeof(double) * k * n);
    if (ok) {
        clg_status st = clg_blas_run_path(t->ctx, path, t->dt, ta, tb, m, n, k, 1, clg_tensor_cl_mem(A), 0, lda,
                                          clg_tensor_cl_mem(B), 0, ldb, 0, clg_tensor_cl_mem(C), 0, n);
        clg_tensor *back = NULL;
        ok = st == CLG_OK && !clg_tensor_cast(C, CLG_F64, &back) &&
             !clg_tensor_to_host(back, hc, sizeof(double) * m * n);
        clg_tensor_free(back);
    }
    for (size_t i = 0; ok && i < m; i++)
        for (size_t j = 0; ok && j < n; j++) {
            double want = 0;
            for (size_t p = 0; p < k; p++)
                want += (ta ? ha[p * lda + i] : ha[i * lda + p]) * (tb ? hb[j * ldb + p] : hb[p * ldb + j]);
            ok = fabs(hc[i * n + j] - want) <= 1e-3 * (double)k;
        }
    clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(c);
    clg_tensor_free(a2), clg_tensor_free(b2), clg_tensor_free(c2);
    free(ha), free(hb), free(hc);
    return ok;
}

static bool check_all(tuner *t, const char *path) {
    const size_t odd[][3] = {{33, 65, 17}, {130, 7, 70}, {64, 64, 64}, {200, 300, 100}};
    for (int tr = 0; tr < 4; tr++)
        for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
            if (!check_gemm(t, path, tr & 1, tr >> 1, odd[i][0], odd[i][1], odd[i][2])) return false;
    return true;
}

/* ---------------------------------------------------------------- candidates */
typedef struct param_space {
    const char *name;
    unsigned n;
    size_t v[6];
} param_space;

static void set_kernel(clg_tune_kernel *tk, const char *kernel, clg_dtype dt) {
    memset(tk, 0, sizeof *tk);
    snprintf(tk->kernel, sizeof tk->kernel, "%s", kernel);
    tk->dt = dt;
}

static void add_param(clg_tune_kernel *tk, const char *name, size_t v) {
    snprintf(tk->names[tk->n], sizeof tk->names[0], "%s", name);
    tk->values[tk->n++] = v;
}

static size_t get(const clg_tune_kernel *tk, const char *name) {
    for (size_t i = 0; i < tk->n; i++)
        if (!strcmp(tk->names[i], name)) return tk->values[i];
    return 0;
}

static bool multiple(size_t x, size_t of) { return of && x % of == 0; }

/* CLBlast's own tuner constraints (its src/tuning/kernels/ headers), plus our device's limits. */
static bool valid(const clg_tune_kernel *tk, size_t max_wg, size_t local_mem, size_t elt) {
#define P(x) get(tk, #x)
    if (!strcmp(tk->kernel, "Xgemm")) {
        const size_t kdima = P(MDIMC) * P(NDIMC) / P(MDIMA), kdimb = P(MDIMC) * P(NDIMC) / P(NDIMB);
        return multiple(P(KWG), P(KWI)) && multiple(P(MWG), P(MDIMC) * P(VWM)) &&
               multiple(P(NWG), P(NDIMC) * P(VWN)) && multiple(P(MWG), P(MDIMA) * P(VWM)) &&
               multiple(P(NWG), P(NDIMB) * P(VWN)) && multiple(P(KWG), kdima) && multiple(P(KWG), kdimb) &&
               P(MDIMC) * P(NDIMC) <= max_wg &&
               elt * (P(SA) * P(KWG) * P(MWG) + P(SB) * P(KWG) * P(NWG)) <= local_mem;
    }
    if (!strcmp(tk->kernel, "XgemmDirect")) {
        const size_t kdima = P(MDIMCD) * P(NDIMCD) / P(MDIMAD), kdimb = P(MDIMCD) * P(NDIMCD) / P(NDIMBD);
        return multiple(P(WGD), P(KWID)) && multiple(P(WGD), P(MDIMCD) * P(VWMD)) &&
               multiple(P(WGD), P(NDIMCD) * P(VWND)) && multiple(P(WGD), P(MDIMAD) * P(VWMD)) &&
               multiple(P(WGD), P(NDIMBD) * P(VWND)) && multiple(P(WGD), kdima) && multiple(P(WGD), kdimb) &&
               P(MDIMCD) * P(NDIMCD) <= max_wg &&
               elt * (P(WGD) * (P(WGD) + P(PADA)) + P(WGD) * (P(WGD) + P(PADB))) <= local_mem;
    }
    if (!strcmp(tk->kernel, "Copy")) return P(COPY_DIMX) * P(COPY_DIMY) <= max_wg;
    if (!strcmp(tk->kernel, "Pad")) return P(PAD_DIMX) * P(PAD_DIMY) <= max_wg;
    if (!strcmp(tk->kernel, "Transpose")) return P(TRA_DIM) * P(TRA_DIM) <= max_wg;
    if (!strcmp(tk->kernel, "Padtranspose")) return P(PADTRA_TILE) * P(PADTRA_TILE) <= max_wg;
    return true;
#undef P
}

/* CLBlast's limited tuner spaces (its "V == 1" sets, plus the 128-wide tiles and 8-wide
 * vectors CPUs like): the larger ones contain kernels whose unrolled loops take PoCL
 * minutes to compile, more than a candidate may cost here. */
static const param_space xgemm_space[] = {
    {"GEMMK", 1, {0}},
    {"KREG", 1, {1}},
    {"KWG", 2, {16, 32}},
    {"KWI", 1, {2}},
    {"MDIMA", 3, {4, 8, 16}},
    {"MDIMC", 3, {4, 8, 16}},
    {"MWG", 4, {16, 32, 64, 128}},
    {"NDIMB", 3, {4, 8, 16}},
    {"NDIMC", 3, {4, 8, 16}},
    {"NWG", 4, {16, 32, 64, 128}},
    {"SA", 2, {0, 1}},
    {"SB", 2, {0, 1}},
    {"STRM", 1, {0}},
    {"STRN", 1, {0}},
    {"VWM", 4, {1, 2, 4, 8}},
    {"VWN", 4, {1, 2, 4, 8}},
};
static const param_space direct_space[] = {
    {"KWID", 1, {2}},          {"MDIMAD", 3, {4, 8, 16}}, {"MDIMCD", 3, {4, 8, 16}},
    {"NDIMBD", 3, {4, 8, 16}}, {"NDIMCD", 3, {4, 8, 16}}, {"PADA", 1, {1}},
    {"PADB", 1, {1}},          {"VWMD", 4, {1, 2, 4, 8}}, {"VWND", 4, {1, 2, 4, 8}},
    {"WGD", 3, {8, 16, 32}},
};
static const param_space copy_space[] = {
    {"COPY_DIMX", 3, {8, 16, 32}},
    {"COPY_DIMY", 3, {8, 16, 32}},
    {"COPY_VW", 4, {1, 2, 4, 8}},
    {"COPY_WPT", 4, {1, 2, 4, 8}},
};
static const param_space pad_space[] = {
    {"PAD_DIMX", 3, {8, 16, 32}},
    {"PAD_DIMY", 3, {8, 16, 32}},
    {"PAD_WPTX", 3, {1, 2, 4}},
    {"PAD_WPTY", 3, {1, 2, 4}},
};
static const param_space tra_space[] = {
    {"TRA_DIM", 4, {4, 8, 16, 32}},
    {"TRA_PAD", 2, {0, 1}},
    {"TRA_SHUFFLE", 2, {0, 1}},
    {"TRA_WPT", 4, {1, 2, 4, 8}},
};
static const param_space padtra_space[] = {
    {"PADTRA_PAD", 2, {0, 1}},
    {"PADTRA_TILE", 3, {8, 16, 32}},
    {"PADTRA_WPT", 4, {1, 2, 4, 8}},
};

static void sample(tuner *t, clg_tune_kernel *tk, const char *kernel, const param_space *sp, size_t n) {
    const size_t max_wg = t->info.max_work_group_size, lmem = (size_t)t->info.local_mem_bytes;
    for (int tries = 0; tries < 10000; tries++) {
        set_kernel(tk, kernel, t->dt);
        for (size_t i = 0; i < n; i++)
            add_param(tk, sp[i].name, sp[i].v[rnd(t, sp[i].n)]);
        if (valid(tk, max_wg, lmem, clg_dtype_size(t->dt))) return;
    }
}

static void routine_switch(tuner *t, clg_tune_kernel *tk, size_t size) {
    set_kernel(tk, "GemmRoutine", t->dt);
    add_param(tk, "XGEMM_MIN_INDIRECT_SIZE", size);
    clg_blas_clblast_override(t->ctx, tk);
}

/* Random search over one kernel's space until the phase ends; returns the best score and
 * leaves the best parameters applied in *best (n == 0: nothing valid ran). */
static double search(tuner *t, const char *kernel, const param_space *sp, size_t nsp, const size_t *sizes,
                     int nsizes, clg_tune_kernel *best) {
    double best_s = INFINITY, last = 0;
    best->n = 0;
    int tried = 0;
    /* a candidate costs a CLBlast build (seconds on a CPU device): start one only if it
     * should end within the phase */
    while (tried == 0 || tool_now_seconds() + last < t->phase_end) {
        const double t0 = tool_now_seconds();
        clg_tune_kernel cand;
        sample(t, &cand, kernel, sp, nsp);
        if (clg_blas_clblast_override(t->ctx, &cand) != CLG_OK) continue;
        const double s = score(t, CLBLAST, sizes, nsizes);
        tried++;
        last = tool_now_seconds() - t0;
        if (s < best_s) {
            best_s = s;
            *best = cand;
        }
        progress(t, "CLBlast %s: %d candidates, best %.2f ms", kernel, tried, best_s * 1e3);
    }
    if (best->n) clg_blas_clblast_override(t->ctx, best);
    return best_s;
}

/* ---------------------------------------------------------------- phases */
static void tune_packed(tuner *t) {
    clg_packed_config def = clg_blas_packed_default_config(4);
    if (clg_blas_packed_config(t->ctx, t->dt, &def) != CLG_OK) return;
    const int vw = def.vw;
    /* around the default: taller, wider, one vector fewer or more per row */
    const clg_packed_config cands[] = {def,
                                       {vw, 4, 3 * vw},
                                       {vw, 6, 2 * vw},
                                       {vw, 4, 2 * vw},
                                       {vw, 8, 2 * vw},
                                       {vw, 3, 4 * vw},
                                       {vw, 5, 2 * vw},
                                       {vw, 12, 2 * vw},
                                       {vw, 6, 4 * vw},
                                       {vw, 8, vw}};
    const size_t sizes[] = {256, 512, 1024};
    double best_s = INFINITY, last = 0;
    clg_packed_config best = def;
    for (size_t i = 0; i < sizeof cands / sizeof *cands && (i == 0 || tool_now_seconds() + last < t->phase_end); i++) {
        const double t0 = tool_now_seconds();
        if (clg_blas_packed_set_config(t->ctx, t->dt, cands[i]) != CLG_OK) continue;
        const double s = score(t, PACKED, sizes, 3);
        if (s < best_s && check_all(t, PACKED)) {
            best_s = s;
            best = cands[i];
        }
        progress(t, "packed kernel: tile %dx%d (vector %d): %.2f ms; best %dx%d", cands[i].mr, cands[i].nr,
                 vw, s * 1e3, best.mr, best.nr);
        last = tool_now_seconds() - t0;
    }
    clg_blas_packed_set_config(t->ctx, t->dt, best);
    t->out->packed[t->dt == CLG_F64] = best;
}

static void keep(tuner *t, const clg_tune_kernel *tk) {
    if (tk->n && t->out->n_clblast < CLG_TUNE_MAX_KERNELS) t->out->clblast[t->out->n_clblast++] = *tk;
}

static void tune_clblast(tuner *t, double share_direct, double share_xgemm, double share_pre) {
    clg_tune_kernel routine, direct, xgemm;
    const size_t small[] = {128, 256}, large[] = {256, 512};
    const double budget = t->budget;
    /* the direct kernel alone: switch-over above every size timed */
    routine_switch(t, &routine, 4096);
    t->phase_end = tool_now_seconds() + budget * share_direct;
    const double direct_s =
        search(t, "XgemmDirect", direct_space, sizeof direct_space / sizeof *direct_space, small, 2, &direct);
    /* the indirect kernel alone */
    routine_switch(t, &routine, 1);
    t->phase_end = tool_now_seconds() + budget * share_xgemm;
    const double xgemm_s =
        search(t, "Xgemm", xgemm_space, sizeof xgemm_space / sizeof *xgemm_space, large, 2, &xgemm);
    /* pre-processing kernels of the indirect path, on transposed and odd sizes */
    clg_tune_kernel pre[4];
    const char *names[4] = {"Copy", "Pad", "Transpose", "Padtranspose"};
    const param_space *spaces[4] = {copy_space, pad_space, tra_space, padtra_space};
    const size_t nspace[4] = {4, 4, 4, 3};
    for (int i = 0; i < 4; i++) {
        t->phase_end = tool_now_seconds() + budget * share_pre / 4;
        const size_t sizes[] = {500};
        search(t, names[i], spaces[i], nspace[i], sizes, 1, &pre[i]);
    }
    /* switch-over: the smallest size from which the indirect kernel is faster */
    size_t cross = 4096;
    const size_t sizes[] = {64, 128, 256, 384, 512, 768, 1024};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        routine_switch(t, &routine, 4096);
        const double td = time_gemm(t, CLBLAST, false, false, sizes[i], sizes[i], sizes[i]);
        routine_switch(t, &routine, 1);
        const double ti = time_gemm(t, CLBLAST, false, false, sizes[i], sizes[i], sizes[i]);
        progress(t, "CLBlast switch-over: %zu: direct %.2f ms, indirect %.2f ms", sizes[i], td * 1e3,
                 ti * 1e3);
        if (ti < td) {
            cross = sizes[i];
            break;
        }
    }
    routine_switch(t, &routine, cross);
    if (!t->quiet)
        fprintf(stderr,
                "\nCLBlast: XgemmDirect %.2f ms, Xgemm %.2f ms on the probe sizes; direct below %zu^3\n",
                direct_s * 1e3, xgemm_s * 1e3, cross);
    /* only parameter sets that compute right answers are saved */
    if (!check_all(t, CLBLAST)) {
        fprintf(stderr,
                "clgrad-tune: CLBlast gave wrong results with the tuned parameters; not saving them\n");
        return;
    }
    keep(t, &direct);
    keep(t, &xgemm);
    for (int i = 0; i < 4; i++)
        keep(t, &pre[i]);
    keep(t, &routine);
}

/* Which path wins per size class: the square sizes and the training models' products. */
static void tune_choices(tuner *t) {
    static const int shapes[][5] = {
        {64, 64, 64, 0, 0},       {128, 128, 128, 0, 0},    {256, 256, 256, 0, 0},  {512, 512, 512, 0, 0},
        {1024, 1024, 1024, 0, 0}, {2048, 2048, 2048, 0, 0}, {32, 50176, 9, 0, 0},   {32, 9, 50176, 0, 1},
        {64, 12544, 288, 0, 0},   {64, 288, 12544, 0, 1},   {288, 12544, 64, 1, 0}, {64, 196, 288, 0, 0},
        {64, 128, 3136, 0, 1},    {128, 3136, 64, 1, 0},    {64, 3136, 128, 0, 0},  {64, 10, 128, 0, 1},
        {10, 128, 64, 1, 0},      {64, 128, 10, 0, 0},      {16, 6400, 150, 0, 0},  {150, 6400, 16, 1, 0},
        {64, 120, 400, 0, 1},     {120, 400, 64, 1, 0},     {64, 400, 120, 0, 0},   {6, 50176, 25, 0, 0},
    };
    cl_mem a = clg_tensor_cl_mem(t->a), b = clg_tensor_cl_mem(t->b);
    const size_t cap = (size_t)2048 * 2048;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const size_t m = (size_t)shapes[i][0], n = (size_t)shapes[i][1], k = (size_t)shapes[i][2];
        const bool ta = shapes[i][3], tb = shapes[i][4];
        if (m * k > cap || k * n > cap || t->out->n_choices == CLG_TUNE_MAX_CHOICES) continue;
        clg_tune_choice ch = {.cls = clg_blas_class(t->dt, ta, tb, m, n, k)};
        clg_blas_times times;
        if (clg_blas_time_paths(t->ctx, t->dt, ta, tb, m, n, k, a, 0, ta ? m : k, b, 0, tb ? k : n, &times) !=
            CLG_OK)
            continue;
        snprintf(ch.path, sizeof ch.path, "%s", clg_blas_path_name(times.winner));
        char line[160];
        int used = snprintf(line, sizeof line, "paths: %zux%zux%zu%s%s:", m, n, k, ta ? " Aᵀ" : "", tb ? " Bᵀ" : "");
        for (size_t p = 0; p < clg_blas_path_count(); p++) {
            if (!isfinite(times.seconds[p])) continue; /* cannot run here: no time to keep */
            snprintf(ch.times[ch.n_times].path, sizeof ch.times[0].path, "%s", clg_blas_path_name(p));
            ch.times[ch.n_times++].seconds = times.seconds[p];
            if (used > 0 && (size_t)used < sizeof line)
                used += snprintf(line + used, sizeof line - (size_t)used, " %s %.3f ms", clg_blas_path_name(p),
                                 times.seconds[p] * 1e3);
        }
        t->out->choices[t->out->n_choices++] = ch;
        progress(t, "%s -> %s", line, ch.path);
    }
}

static void usage(FILE *f) {
    fprintf(f, "usage: clgrad-tune [--device D] [--seconds S] [--dtype f32|f64] [--no-clblast] [--quiet]\n"
               "Tunes GEMM on the device within about S seconds (default 300): the packed kernel's tile,\n"
               "CLBlast's kernels and direct/indirect switch-over (through CLBlastOverrideParameters), and\n"
               "which path is faster per size class. Saves them in the cache folder for this device and\n"
               "driver; every clgrad context on it applies them (CLGRAD_GEMM_TUNING=off skips that).\n");
}

int main(int argc, char **argv) {
    const char *device = NULL;
    double seconds = 300;
    bool do_clblast = true, quiet = false;
    clg_dtype dt = CLG_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc)
            dt = !strcmp(argv[++i], "f64") ? CLG_F64 : CLG_F32;
        else if (!strcmp(argv[i], "--no-clblast"))
            do_clblast = false;
        else if (!strcmp(argv[i], "--quiet"))
            quiet = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!(seconds > 0)) {
        fprintf(stderr, "clgrad-tune: --seconds must be positive\n");
        return 2;
    }
    /* start from CLBlast's defaults, not from an earlier tuning */
    setenv("CLGRAD_GEMM_TUNING", "off", 1);
    clg_context_params p = clg_context_default_params();
    p.device = device;
    clg_context *ctx = NULL;
    char err[1024];
    if (clg_context_create(&p, &ctx, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", err);
        return 1;
    }
    if (!clg_context_cache_dir(ctx)[0]) {
        fprintf(stderr, "clgrad-tune: the cache folder is off (CLGRAD_CACHE_DIR=off): nowhere to save\n");
        clg_context_free(ctx);
        return 1;
    }
    tuner t = {.ctx = ctx,
               .dt = dt,
               .deadline = tool_now_seconds() + seconds,
               .budget = seconds,
               .quiet = quiet,
               .rng = 12345,
               .out = calloc(1, sizeof(clg_tune_data))};
    const int big[1] = {2048 * 2048};
    if (clg_context_device_info(ctx, &t.info) != CLG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", clg_context_errmsg(ctx));
        return 1;
    }
    if (!t.out || clg_tensor_rand_uniform(ctx, dt, 1, big, -1, 1, 1, &t.a) ||
        clg_tensor_rand_uniform(ctx, dt, 1, big, -1, 1, 2, &t.b) || clg_tensor_zeros(ctx, dt, 1, big, &t.c)) {
        fprintf(stderr, "clgrad-tune: %s\n", clg_context_errmsg(ctx));
        return 1;
    }
    /* an earlier file's entries for the other dtype survive this run */
    clg_tune_data old;
    if (clg_blas_tune_read(ctx, &old) == CLG_OK) {
        for (size_t i = 0; i < old.n_clblast; i++)
            if (old.clblast[i].dt != dt) keep(&t, &old.clblast[i]);
        t.out->packed[dt != CLG_F64] = old.packed[dt != CLG_F64];
        for (size_t i = 0; i < old.n_choices; i++)
            if (old.choices[i].cls.dt != dt) t.out->choices[t.out->n_choices++] = old.choices[i];
    }
    if (!quiet)
        fprintf(stderr, "clgrad-tune: %s (%s), %s, %.0f s\n", t.info.name, t.info.driver_version,
                clg_dtype_name(dt), seconds);

    if (clg_blas_force_path(ctx, "auto") != CLG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", clg_context_errmsg(ctx));
        return 1;
    }
    const double start = tool_now_seconds();
    /* shares of the budget: packed tile 10%, CLBlast direct 15%, indirect 25%, its copy and
     * transpose kernels 10%, then the switch-over and the path decisions in the rest. A
     * candidate is never cut short (CLBlast builds take many seconds on a CPU device) and
     * every size class gets its path decision, so a run may end somewhat past the budget. */
    t.phase_end = start + seconds * 0.1;
    tune_packed(&t);
    if (!quiet) fprintf(stderr, "\n");
    if (do_clblast) tune_clblast(&t, 0.15, 0.25, 0.1);
    t.deadline = INFINITY;
    tune_choices(&t);
    if (!quiet) fprintf(stderr, "\n");

    char path[4200];
    int rc = 0;
    if (clg_blas_tune_write(ctx, t.out, path, sizeof path) != CLG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", clg_context_errmsg(ctx));
        rc = 1;
    } else {
        size_t packed = 0, n = 0;
        for (size_t i = 0; i < t.out->n_choices; i++)
            if (t.out->choices[i].cls.dt == dt) n++, packed += !strcmp(t.out->choices[i].path, PACKED);
        printf("saved %s: packed tile %dx%d (vector %d), %zu CLBlast kernels, packed path in %zu of %zu size "
               "classes (%.0f s)\n",
               path, t.out->packed[dt == CLG_F64].mr, t.out->packed[dt == CLG_F64].nr,
               t.out->packed[dt == CLG_F64].vw, t.out->n_clblast, packed, n, tool_now_seconds() - start);
    }
    clg_tensor_free(t.a), clg_tensor_free(t.b), clg_tensor_free(t.c);
    free(t.out);
    clg_context_free(ctx);
    return rc;
}
