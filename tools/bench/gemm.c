/* tools/bench/gemm.c - `clgrad-bench gemm`: the GEMM paths of src/blas (CLBlast with default
 * and tuned parameters, the packed kernel of cl/blas/gemm_packed.cl) side by side with
 * OpenBLAS on the same cores. The one bench file that uses blas path forcing and tuning, through
 * src/blas/tuning.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#ifdef CLG_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "blas/tuning.h"
#include "clgrad.h"

#include "bench.h"


typedef struct gemm_shape {
    int m, n, k;
    bool ta, tb;
    const char *what;
} gemm_shape;

/* The GEMMs behind the training models' layers at batch 64 (tools/clgrad-train: cnn and
 * lenet), conv2d as im2col + GEMM over the whole batch (Y = W col, dW = dY colᵀ,
 * dcol = Wᵀ dY) and linear as y = x Wᵀ, dW = dyᵀ x, dx = dy W. */
static const gemm_shape square_shapes[] = {
    {64, 64, 64, 0, 0, "square"},       {256, 256, 256, 0, 0, "square"},    {512, 512, 512, 0, 0, "square"},
    {1024, 1024, 1024, 0, 0, "square"}, {2048, 2048, 2048, 0, 0, "square"},
};
static const gemm_shape model_shapes[] = {
    {32, 50176, 9, 0, 0, "cnn conv1 fwd"},    {32, 9, 50176, 0, 1, "cnn conv1 dW"},
    {64, 12544, 288, 0, 0, "cnn conv2 fwd"},  {64, 288, 12544, 0, 1, "cnn conv2 dW"},
    {288, 12544, 64, 1, 0, "cnn conv2 dcol"}, {64, 196, 288, 0, 0, "cnn conv2 fwd/image"},
    {64, 128, 3136, 0, 1, "cnn fc1 fwd"},     {128, 3136, 64, 1, 0, "cnn fc1 dW"},
    {64, 3136, 128, 0, 0, "cnn fc1 dx"},      {64, 10, 128, 0, 1, "cnn fc2 fwd"},
    {16, 6400, 150, 0, 0, "lenet conv2 fwd"}, {150, 6400, 16, 1, 0, "lenet conv2 dcol"},
    {64, 120, 400, 0, 1, "lenet fc1 fwd"},
};

enum { P_DEFAULT, P_TUNED, P_PACKED, P_OPENBLAS, P_COUNT };
static const char *const path_names[P_COUNT] = {"clblast_default", "clblast_tuned", "packed", "openblas"};

typedef struct gemm_env {
    clg_context *ctx;
    const gemm_shape *s;
    clg_tensor *a, *b, *c;
    float *ha, *hb, *hc;
} gemm_env;

typedef struct gemm_opts {
    const char *device;
    bool json, square, models, skip_default, progress;
    int rounds;
    double round_s;       /* seconds per timed round */
    int tile_mr, tile_nr; /* --tile: packed kernel tile instead of the device's (0: default) */
} gemm_opts;

typedef struct gemm_result {
    double gflops[P_COUNT]; /* median; 0 = not measured */
    double ratio[P_COUNT];  /* median over rounds of OpenBLAS's time / this path's; 0 = none */
    const char *chosen; /* the path clgrad picks (a path table name), NULL: unknown */
} gemm_result;

static int run_path(gemm_env *e, int path) {
    const gemm_shape *s = e->s;
    const size_t lda = s->ta ? (size_t)s->m : (size_t)s->k, ldb = s->tb ? (size_t)s->k : (size_t)s->n;
    if (path == P_OPENBLAS) {
#ifdef CLG_HAVE_OPENBLAS
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->m,
                    s->n, s->k, 1.0f, e->ha, (int)lda, e->hb, (int)ldb, 0.0f, e->hc, s->n);
        return 0;
#else
        return -1;
#endif
    }
    clg_status st = clg_blas_force_path(e->ctx, path == P_PACKED ? "packed" : "clblast");
    if (st == CLG_OK)
        st = clg_gemm(e->ctx, s->ta, s->tb, (size_t)s->m, (size_t)s->n, (size_t)s->k, 1.0, e->a, 0, lda, e->b,
                      0, ldb, 0.0, e->c, 0, (size_t)s->n);
    if (st != CLG_OK) {
        fprintf(stderr, "clgrad-bench gemm: %s: %s\n", path_names[path], clg_context_errmsg(e->ctx));
        return -1;
    }
    return 0;
}

static int finish(gemm_env *e) { return clg_context_finish(e->ctx) == CLG_OK ? 0 : -1; }

/* One round: reps calls back to back, the device drained; seconds per call. */
static double time_round(gemm_env *e, int path, int reps) {
    const double t0 = bench_now();
    for (int r = 0; r < reps; r++)
        if (run_path(e, path)) return -1;
    if (finish(e)) return -1;
    return (bench_now() - t0) / reps;
}

/* Paths timed round by round, side by side: in each round every OpenCL path, then OpenBLAS,
 * so that the VM's drifting speed (other tenants, clock) falls on all of them alike; each
 * path's GFLOP/s is its median over rounds, and its ratio to OpenBLAS the median over rounds
 * of the per-round ratio. After OpenBLAS the round pauses: its idle worker threads spin for a
 * while after each call (OPENBLAS_THREAD_TIMEOUT, about 0.1 s by default) and would take
 * cores from the next path timed. Each timed round follows an untimed one of the same path:
 * after a pause the VM's cores and PoCL's worker threads run up to 40% slower for ~0.1 s,
 * which fell on whichever path came first in the round. */
static int measure(gemm_env *e, const int *paths, int np, const gemm_opts *o, gemm_result *res) {
    int reps[P_COUNT];
    double t[P_COUNT][64];
    const long blas_pause = 250; /* ms */
    for (int i = 0; i < np; i++) {
        /* warm-up: builds kernels, allocates pool buffers, sizes the rounds */
        if (time_round(e, paths[i], 1) < 0) return -1;
        const double t1 = time_round(e, paths[i], 1);
        if (t1 < 0) return -1;
        reps[i] = (int)fmin(1000, fmax(1, o->round_s / fmax(t1, 1e-7)));
    }
    bench_pause_ms(blas_pause);
    int rounds = 0;
    const double t_start = bench_now();
    for (; rounds < o->rounds && rounds < 64; rounds++) {
        for (int i = 0; i < np; i++) {
            bench_pause_ms(20);
            if (time_round(e, paths[i], reps[i]) < 0) return -1; /* untimed: wakes the threads */
            if ((t[i][rounds] = time_round(e, paths[i], reps[i])) < 0) return -1;
            if (paths[i] == P_OPENBLAS) bench_pause_ms(blas_pause);
        }
        /* a very slow path (CLBlast untuned on a CPU) stops after three rounds */
        if (rounds >= 2 && bench_now() - t_start > 30) {
            rounds++;
            break;
        }
    }
    const double flop = 2.0 * e->s->m * e->s->n * e->s->k;
    int ib = -1;
    for (int i = 0; i < np; i++) {
        double tc[64];
        memcpy(tc, t[i], sizeof(double) * (size_t)rounds);
        res->gflops[paths[i]] = flop / bench_median(tc, rounds) * 1e-9;
        if (paths[i] == P_OPENBLAS) ib = i;
    }
    for (int i = 0; i < np && ib >= 0; i++) {
        double q[64];
        for (int r = 0; r < rounds; r++) q[r] = t[ib][r] / t[i][r];
        res->ratio[paths[i]] = bench_median(q, rounds);
    }
    return 0;
}

static int env_open(clg_context *ctx, const gemm_shape *s, gemm_env *e) {
    *e = (gemm_env){ctx, s, NULL, NULL, NULL, NULL, NULL, NULL};
    const int sa[1] = {s->m * s->k}, sb[1] = {s->k * s->n}, sc[1] = {s->m * s->n};
    if (clg_tensor_rand_uniform(ctx, CLG_F32, 1, sa, -1, 1, 1, &e->a) ||
        clg_tensor_rand_uniform(ctx, CLG_F32, 1, sb, -1, 1, 2, &e->b) ||
        clg_tensor_zeros(ctx, CLG_F32, 1, sc, &e->c))
        return -1;
    e->ha = malloc(sizeof(float) * (size_t)sa[0]);
    e->hb = malloc(sizeof(float) * (size_t)sb[0]);
    e->hc = calloc((size_t)sc[0], sizeof(float));
    if (!e->ha || !e->hb || !e->hc) return -1;
    if (clg_tensor_to_host(e->a, e->ha, sizeof(float) * (size_t)sa[0]) ||
        clg_tensor_to_host(e->b, e->hb, sizeof(float) * (size_t)sb[0]))
        return -1;
    return 0;
}

static void env_close(gemm_env *e) {
    clg_tensor_free(e->a);
    clg_tensor_free(e->b);
    clg_tensor_free(e->c);
    free(e->ha);
    free(e->hb);
    free(e->hc);
}

static void gemm_usage(FILE *f) {
    fprintf(f, "usage: clgrad-bench gemm [--device D] [--json] [--square | --models] [--rounds R]\n"
               "                         [--round-seconds S] [--skip-default] [--tile MRxNR]\n"
               "Median GFLOP/s (f32) of CLBlast with its default parameters, CLBlast with the parameters\n"
               "clgrad-tune saved for this device (when a tuning file exists), the packed kernel, and\n"
               "OpenBLAS cblas_sgemm on the same cores, each with its ratio to OpenBLAS, and the path\n"
               "clgrad chooses. Shapes: M=N=K 64..2048 and the training models' layer GEMMs (batch 64).\n"
               "Each round times every path once, side by side (--round-seconds of calls each); a ratio\n"
               "is the median over rounds of that round's ratio, so the machine's drifting speed falls on\n"
               "both sides alike. For OpenBLAS's own best, run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE\n"
               "unset.\n");
}

static int parse_gemm_opts(int argc, char **argv, gemm_opts *o) {
    *o = (gemm_opts){NULL, false, true, true, false, isatty(2) != 0, 9, 0.1, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json"))
            o->json = true;
        else if (!strcmp(a, "--square"))
            o->models = false;
        else if (!strcmp(a, "--models"))
            o->square = false;
        else if (!strcmp(a, "--skip-default"))
            o->skip_default = true;
        else if (!strcmp(a, "--device") && i + 1 < argc)
            o->device = argv[++i];
        else if (!strcmp(a, "--rounds") && i + 1 < argc)
            o->rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--round-seconds") && i + 1 < argc)
            o->round_s = atof(argv[++i]);
        else if (!strcmp(a, "--tile") && i + 1 < argc) {
            if (sscanf(argv[++i], "%dx%d", &o->tile_mr, &o->tile_nr) != 2) {
                fprintf(stderr, "clgrad-bench gemm: --tile wants MRxNR, e.g. 4x24\n");
                return -1;
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            gemm_usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "clgrad-bench gemm: unknown option %s\n", a);
            gemm_usage(stderr);
            return -1;
        }
    }
    if (o->rounds < 1 || o->rounds > 64 || !(o->round_s > 0)) {
        fprintf(stderr, "clgrad-bench gemm: --rounds 1..64 and --round-seconds > 0\n");
        return -1;
    }
    return 0;
}

static const char *chosen_name(const char *p) { return p ? p : "-"; }

/* Ratio of path p to OpenBLAS, NAN when either is missing. */
static double ratio(const gemm_result *r, int p) {
    if (!(r->gflops[p] > 0 && r->gflops[P_OPENBLAS] > 0)) return NAN;
    /* CLBlast's defaults are timed apart (before the tuning is applied): ratio of medians */
    return r->ratio[p] > 0 ? r->ratio[p] : r->gflops[p] / r->gflops[P_OPENBLAS];
}

/* The chosen path's measured speed: packed, or CLBlast as this context runs it. */
static int chosen_col(const gemm_result *r, bool tuned) {
    return r->chosen && !strcmp(r->chosen, "packed") ? P_PACKED : tuned ? P_TUNED : P_DEFAULT;
}

int bench_gemm(int argc, char **argv) {
    gemm_opts o;
    if (parse_gemm_opts(argc, argv, &o)) return 2;
    gemm_shape shapes[32];
    int ns = 0;
    if (o.square)
        for (size_t i = 0; i < sizeof square_shapes / sizeof *square_shapes; i++)
            shapes[ns++] = square_shapes[i];
    if (o.models)
        for (size_t i = 0; i < sizeof model_shapes / sizeof *model_shapes; i++)
            shapes[ns++] = model_shapes[i];

    /* CLBlast's defaults can only be measured before the tuned parameters are applied:
     * CLBlast keeps overrides process-wide. So the context starts untuned. */
    setenv("CLGRAD_GEMM_TUNING", "off", 1);
    clg_context_params cp = clg_context_default_params();
    cp.device = o.device;
    clg_context *ctx = NULL;
    char err[1024];
    if (clg_context_create(&cp, &ctx, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "clgrad-bench gemm: %s\n", err);
        return 1;
    }
    /* the GEMM state (which reads the tuning file) is made on first use: make it now, untuned */
    if (clg_blas_force_path(ctx, "auto") != CLG_OK) {
        fprintf(stderr, "clgrad-bench gemm: %s\n", clg_context_errmsg(ctx));
        clg_context_free(ctx);
        return 1;
    }
    unsetenv("CLGRAD_GEMM_TUNING");
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    gemm_result res[32];
    memset(res, 0, sizeof res);

    int rc = 0;
    gemm_env e;
    if (!o.skip_default) {
        for (int i = 0; i < ns && !rc; i++) {
            if (o.progress)
                fprintf(stderr, "\r[%d/%d] CLBlast default %s %dx%dx%d      ", i + 1, ns, shapes[i].what,
                        shapes[i].m, shapes[i].n, shapes[i].k);
            const int paths[1] = {P_DEFAULT};
            rc = env_open(ctx, &shapes[i], &e) || measure(&e, paths, 1, &o, &res[i]);
            env_close(&e);
        }
    }

    /* Now the saved tuning, whole: CLBlast parameters, tile shapes, path decisions. */
    bool tuned = false;
    clg_tune_data *td = calloc(1, sizeof *td);
    if (!rc && td && clg_blas_tune_read(ctx, td) == CLG_OK) tuned = clg_blas_tune_apply(ctx, td) == CLG_OK;
    free(td);
    if (!rc && o.tile_mr) {
        clg_packed_config def = {0, 0, 0};
        if (clg_blas_packed_config(ctx, CLG_F32, &def) != CLG_OK ||
            clg_blas_packed_set_config(ctx, CLG_F32, (clg_packed_config){def.vw, o.tile_mr, o.tile_nr}) !=
                CLG_OK) {
            fprintf(stderr, "clgrad-bench gemm: %s\n", clg_context_errmsg(ctx));
            clg_context_free(ctx);
            return 2;
        }
    }

    for (int i = 0; i < ns && !rc; i++) {
        if (o.progress)
            fprintf(stderr, "\r[%d/%d] %s %dx%dx%d                 ", i + 1, ns, shapes[i].what, shapes[i].m,
                    shapes[i].n, shapes[i].k);
        int paths[3], np = 0;
        if (tuned) paths[np++] = P_TUNED;
        paths[np++] = P_PACKED;
#ifdef CLG_HAVE_OPENBLAS
        paths[np++] = P_OPENBLAS;
#endif
        rc = env_open(ctx, &shapes[i], &e) || measure(&e, paths, np, &o, &res[i]);
        if (!rc) {
            /* what clgrad runs for this product: the saved decision, else the default rule */
            const gemm_shape *s = &shapes[i];
            rc = clg_blas_force_path(ctx, "auto") != CLG_OK ||
                 clg_blas_chosen_path(ctx, CLG_F32, s->ta, s->tb, (size_t)s->m, (size_t)s->n, (size_t)s->k,
                                      &res[i].chosen) != CLG_OK;
        }
        env_close(&e);
    }
    if (o.progress) fprintf(stderr, "\r%70s\r", "");
    if (rc) {
        fprintf(stderr, "clgrad-bench gemm: %s\n", clg_context_errmsg(ctx));
        clg_context_free(ctx);
        return 1;
    }

    if (o.json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "device", info.name);
        cJSON_AddStringToObject(root, "driver", info.driver_version);
        cJSON_AddBoolToObject(root, "tuning_file", tuned);
        cJSON *arr = cJSON_AddArrayToObject(root, "results");
        for (int i = 0; i < ns; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "shape", shapes[i].what);
            cJSON_AddNumberToObject(r, "m", shapes[i].m);
            cJSON_AddNumberToObject(r, "n", shapes[i].n);
            cJSON_AddNumberToObject(r, "k", shapes[i].k);
            cJSON_AddBoolToObject(r, "ta", shapes[i].ta);
            cJSON_AddBoolToObject(r, "tb", shapes[i].tb);
            for (int p = 0; p < P_COUNT; p++) {
                if (!(res[i].gflops[p] > 0)) continue;
                char key[64];
                snprintf(key, sizeof key, "%s_gflops", path_names[p]);
                cJSON_AddNumberToObject(r, key, res[i].gflops[p]);
                if (p != P_OPENBLAS && !isnan(ratio(&res[i], p))) {
                    snprintf(key, sizeof key, "%s_ratio", path_names[p]);
                    cJSON_AddNumberToObject(r, key, ratio(&res[i], p));
                }
            }
            cJSON_AddStringToObject(r, "chosen", chosen_name(res[i].chosen));
            const double cr = ratio(&res[i], chosen_col(&res[i], tuned));
            if (!isnan(cr)) cJSON_AddNumberToObject(r, "chosen_ratio", cr);
            cJSON_AddItemToArray(arr, r);
        }
        char *text = cJSON_Print(root);
        if (text) puts(text);
        free(text);
        cJSON_Delete(root);
    } else {
        clg_packed_config pc = {0, 0, 0};
        clg_blas_packed_config(ctx, CLG_F32, &pc);
        printf(
            "device: %s (driver %s); GFLOP/s f32, median of %d rounds; (x) = ratio to OpenBLAS; packed tile "
            "%dx%d, vector %d\n",
            info.name, info.driver_version, o.rounds, pc.mr, pc.nr, pc.vw);
        printf("%-20s %17s %14s %14s %14s %9s %15s\n", "shape", "M x N x K", "CLBlast dflt", "CLBlast tuned",
               "packed", "OpenBLAS", "chosen");
        for (int i = 0; i < ns; i++) {
            const gemm_result *r = &res[i];
            char mnk[40], cols[3][32], ch[32];
            snprintf(mnk, sizeof mnk, "%dx%dx%d%s%s", shapes[i].m, shapes[i].n, shapes[i].k,
                     shapes[i].ta ? " T" : "", shapes[i].tb ? (shapes[i].ta ? "T" : " .T") : "");
            const int ps[3] = {P_DEFAULT, P_TUNED, P_PACKED};
            for (int c = 0; c < 3; c++) {
                if (r->gflops[ps[c]] > 0)
                    snprintf(cols[c], sizeof cols[c], "%6.1f (%.2fx)", r->gflops[ps[c]], ratio(r, ps[c]));
                else
                    snprintf(cols[c], sizeof cols[c], "-");
            }
            snprintf(ch, sizeof ch, "%s (%.2fx)", chosen_name(r->chosen), ratio(r, chosen_col(r, tuned)));
            printf("%-20s %17s %14s %14s %14s %9.1f %15s\n", shapes[i].what, mnk, cols[0], cols[1], cols[2],
                   r->gflops[P_OPENBLAS], ch);
        }
    }
    clg_context_free(ctx);
    return 0;
}
