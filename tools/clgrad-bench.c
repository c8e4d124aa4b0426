/* tools/clgrad-bench.c - clgrad's speed, side by side in one run with a reference. One
 * subcommand per area in the table at the bottom; `gemm` is here (GEMM paths of src/blas:
 * CLBlast default and tuned, the packed kernel of cl/blas/gemm_packed.cl, OpenBLAS on the
 * same cores). Links the static library for the internal path switches (src/blas/packed.h).
 * Usage: clgrad-bench <subcommand> [options]; clgrad-bench help.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#ifdef CLG_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "blas/packed.h"
#include "blas/tune.h"
#include "clgrad.h"
#include "blas/blas.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void pause_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ================================================================ gemm */

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
    clg_gemm_path chosen;
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
    clg__blas_force_path(e->ctx, path == P_PACKED ? CLG_GEMM_PACKED : CLG_GEMM_CLBLAST);
    clg_status st = clg_gemm(e->ctx, s->ta, s->tb, (size_t)s->m, (size_t)s->n, (size_t)s->k, 1.0, e->a, 0,
                             lda, e->b, 0, ldb, 0.0, e->c, 0, (size_t)s->n);
    if (st != CLG_OK) {
        fprintf(stderr, "clgrad-bench gemm: %s: %s\n", path_names[path], clg_context_errmsg(e->ctx));
        return -1;
    }
    return 0;
}

static int finish(gemm_env *e) { return clg_context_finish(e->ctx) == CLG_OK ? 0 : -1; }

/* One round: reps calls back to back, the device drained; seconds per call. */
static double time_round(gemm_env *e, int path, int reps) {
    const double t0 = now();
    for (int r = 0; r < reps; r++)
        if (run_path(e, path)) return -1;
    if (finish(e)) return -1;
    return (now() - t0) / reps;
}

/* Paths timed round by round, side by side: in each round every OpenCL path, then OpenBLAS,
 * so that the VM's drifting speed (other tenants, clock) falls on all of them alike; each
 * path's GFLOP/s is its median over rounds, and its ratio to OpenBLAS the median over rounds
 * of the per-round ratio. After OpenBLAS the round pauses: its idle worker threads spin for a
 * while after each call (OPENBLAS_THREAD_TIMEOUT, about 0.1 s by default) and would take
 * cores from the next path timed. */
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
    pause_ms(blas_pause);
    int rounds = 0;
    const double t_start = now();
    for (; rounds < o->rounds && rounds < 64; rounds++) {
        for (int i = 0; i < np; i++) {
            pause_ms(20);
            if ((t[i][rounds] = time_round(e, paths[i], reps[i])) < 0) return -1;
            if (paths[i] == P_OPENBLAS) pause_ms(blas_pause);
        }
        /* a very slow path (CLBlast untuned on a CPU) stops after three rounds */
        if (rounds >= 2 && now() - t_start > 30) {
            rounds++;
            break;
        }
    }
    const double flop = 2.0 * e->s->m * e->s->n * e->s->k;
    int ib = -1;
    for (int i = 0; i < np; i++) {
        double tc[64];
        memcpy(tc, t[i], sizeof(double) * (size_t)rounds);
        res->gflops[paths[i]] = flop / median(tc, rounds) * 1e-9;
        if (paths[i] == P_OPENBLAS) ib = i;
    }
    for (int i = 0; i < np && ib >= 0; i++) {
        double q[64];
        for (int r = 0; r < rounds; r++) q[r] = t[ib][r] / t[i][r];
        res->ratio[paths[i]] = median(q, rounds);
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

static const char *chosen_name(clg_gemm_path p) {
    return p == CLG_GEMM_PACKED ? "packed" : p == CLG_GEMM_CLBLAST ? "clblast" : "-";
}

/* Ratio of path p to OpenBLAS, NAN when either is missing. */
static double ratio(const gemm_result *r, int p) {
    if (!(r->gflops[p] > 0 && r->gflops[P_OPENBLAS] > 0)) return NAN;
    /* CLBlast's defaults are timed apart (before the tuning is applied): ratio of medians */
    return r->ratio[p] > 0 ? r->ratio[p] : r->gflops[p] / r->gflops[P_OPENBLAS];
}

/* The chosen path's measured speed: packed, or CLBlast as this context runs it. */
static int chosen_col(const gemm_result *r, bool tuned) {
    return r->chosen == CLG_GEMM_PACKED ? P_PACKED : tuned ? P_TUNED : P_DEFAULT;
}

static int bench_gemm(int argc, char **argv) {
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
    if (!rc && td && clg__tune_read(ctx, td) == CLG_OK) tuned = clg__tune_apply(ctx, td) == CLG_OK;
    free(td);
    if (!rc && o.tile_mr) {
        const clg_packed_config def = clg__packed_config(ctx, CLG_F32);
        if (clg__packed_set_config(ctx, CLG_F32, (clg_packed_config){def.vw, o.tile_mr, o.tile_nr}) !=
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
            /* what clgrad runs for this product: the saved decision, else its probe */
            const gemm_shape *s = &shapes[i];
            clg__blas_force_path(ctx, CLG_GEMM_AUTO);
            rc = clg__gemm_choose(ctx, CLG_F32, s->ta, s->tb, (size_t)s->m, (size_t)s->n, (size_t)s->k,
                                  e.a->buf->block.mem, 0, s->ta ? (size_t)s->m : (size_t)s->k,
                                  e.b->buf->block.mem, 0, s->tb ? (size_t)s->k : (size_t)s->n, 0,
                                  (size_t)s->n, &res[i].chosen) != CLG_OK;
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
        const clg_packed_config pc = clg__packed_config(ctx, CLG_F32);
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

/* ================================================================ conv (issue 3) */
/* conv2d (src/ops/conv2d.c) side by side with the bare GEMMs of the same sizes and CLBlast's
 * own routes: CLBlastSim2col/Scol2im + GEMM per image, and CLBlastSconvgemm (forward only).
 * clgrad's variants are switched through the context's internals: the default (images
 * batched into chunks, the device type's kernel shape), one image per GEMM (workspace
 * limit 1 byte) and the other kernel shape (per element vs per row). */
#include <clblast_c.h>

typedef struct conv_shape {
    int N, C, H, W, K, k, pad;
    const char *what;
} conv_shape;

static const conv_shape conv_shapes[] = {
    {64, 1, 28, 28, 32, 3, 1, "MNIST conv1"},
    {64, 32, 32, 32, 64, 3, 1, "CIFAR conv2"},
    {32, 64, 56, 56, 64, 3, 1, "ResNet stage 1"},
};

typedef struct conv_env {
    clg_context *ctx;
    const conv_shape *s;
    clg_conv2d_params p;
    int OH, OW;
    size_t P, ckk;
    size_t workspace; /* the context's own limit, restored by every clgrad variant */
    int layout;       /* the kernel shape the device type picks: 1 per element, 2 per row */
    clg_tensor *x, *w, *b, *y, *dy, *dx, *dw, *db;
    clg_tensor *col; /* (C*k*k, N*P): the bare GEMMs' and CLBlast's col */
} conv_env;

typedef int (*conv_fn)(conv_env *e);

static int conv_ours(conv_env *e, size_t workspace, int layout, bool backward) {
    e->ctx->conv_workspace_bytes = workspace;
    e->ctx->kernel_style = layout;
    clg_status st = clg_conv2d_forward(e->ctx, e->x, e->w, e->b, e->p, e->y);
    if (st == CLG_OK && backward)
        st = clg_conv2d_backward(e->ctx, e->x, e->w, e->dy, e->p, e->dx, e->dw, e->db, 0.0);
    e->ctx->conv_workspace_bytes = e->workspace;
    e->ctx->kernel_style = 0;
    if (st != CLG_OK) fprintf(stderr, "clgrad-bench conv: %s\n", clg_context_errmsg(e->ctx));
    return st != CLG_OK;
}
static int conv_fwd(conv_env *e) { return conv_ours(e, e->workspace, 0, false); }
static int conv_fwd_1img(conv_env *e) { return conv_ours(e, 1, 0, false); }
static int conv_fwd_other(conv_env *e) { return conv_ours(e, e->workspace, 3 - e->layout, false); }
static int conv_fb(conv_env *e) { return conv_ours(e, e->workspace, 0, true); }
static int conv_fb_1img(conv_env *e) { return conv_ours(e, 1, 0, true); }
static int conv_fb_other(conv_env *e) { return conv_ours(e, e->workspace, 3 - e->layout, true); }

/* The GEMMs conv2d runs, each as one call over the whole batch. */
static int conv_gemm_fwd(conv_env *e) { /* Y (K, N*P) = W (K, CKK) · col (CKK, N*P) */
    const size_t K = (size_t)e->s->K, NP = (size_t)e->s->N * e->P;
    return clg_gemm(e->ctx, false, false, K, NP, e->ckk, 1.0, e->w, 0, e->ckk, e->col, 0, NP, 0.0, e->y, 0,
                    NP) != CLG_OK;
}
static int conv_gemm_fb(conv_env *e) {
    const size_t K = (size_t)e->s->K, NP = (size_t)e->s->N * e->P;
    return conv_gemm_fwd(e) ||
           /* dW (K, CKK) = dY (K, N*P) · colᵀ */
           clg_gemm(e->ctx, false, true, K, e->ckk, NP, 1.0, e->dy, 0, NP, e->col, 0, NP, 0.0, e->dw, 0,
                    e->ckk) != CLG_OK ||
           /* dcol (CKK, N*P) = Wᵀ · dY */
           clg_gemm(e->ctx, true, false, e->ckk, NP, K, 1.0, e->w, 0, e->ckk, e->dy, 0, NP, 0.0, e->col, 0,
                    NP) != CLG_OK;
}

/* CLBlast's route: per image CLBlastSim2col + GEMM (+ two GEMMs and CLBlastScol2im, which
 * adds into dx, so dx is zeroed first). No bias. */
static int conv_clblast_im2col(conv_env *e, int n) {
    const conv_shape *s = e->s;
    cl_command_queue q = clg_context_cl_queue(e->ctx);
    return CLBlastSim2col(CLBlastKernelModeCrossCorrelation, (size_t)s->C, (size_t)s->H, (size_t)s->W,
                          (size_t)s->k, (size_t)s->k, (size_t)s->pad, (size_t)s->pad, 1, 1, 1, 1,
                          clg_tensor_cl_mem(e->x), (size_t)n * s->C * s->H * s->W, clg_tensor_cl_mem(e->col),
                          0, &q, NULL) != CLBlastSuccess;
}
static int conv_clblast_fwd(conv_env *e) {
    const size_t K = (size_t)e->s->K;
    for (int n = 0; n < e->s->N; n++)
        if (conv_clblast_im2col(e, n) ||
            clg_gemm(e->ctx, false, false, K, e->P, e->ckk, 1.0, e->w, 0, e->ckk, e->col, 0, e->P, 0.0, e->y,
                     (size_t)n * K * e->P, e->P) != CLG_OK)
            return 1;
    return 0;
}
static int conv_clblast_fb(conv_env *e) {
    const conv_shape *s = e->s;
    const size_t K = (size_t)s->K;
    cl_command_queue q = clg_context_cl_queue(e->ctx);
    if (conv_clblast_fwd(e) || clg_tensor_fill(e->dx, 0.0) != CLG_OK) return 1;
    for (int n = 0; n < s->N; n++) {
        const size_t yo = (size_t)n * K * e->P;
        if (conv_clblast_im2col(e, n) ||
            clg_gemm(e->ctx, false, true, K, e->ckk, e->P, 1.0, e->dy, yo, e->P, e->col, 0, e->P,
                     n ? 1.0 : 0.0, e->dw, 0, e->ckk) != CLG_OK ||
            clg_gemm(e->ctx, true, false, e->ckk, e->P, K, 1.0, e->w, 0, e->ckk, e->dy, yo, e->P, 0.0, e->col,
                     0, e->P) != CLG_OK ||
            CLBlastScol2im(CLBlastKernelModeCrossCorrelation, (size_t)s->C, (size_t)s->H, (size_t)s->W,
                           (size_t)s->k, (size_t)s->k, (size_t)s->pad, (size_t)s->pad, 1, 1, 1, 1,
                           clg_tensor_cl_mem(e->col), 0, clg_tensor_cl_mem(e->dx),
                           (size_t)n * s->C * s->H * s->W, &q, NULL) != CLBlastSuccess)
            return 1;
    }
    return 0;
}

/* CLBlastSconvgemm: the whole batch in one call; forward only, no groups, no bias. */
static int conv_convgemm(conv_env *e) {
    const conv_shape *s = e->s;
    cl_command_queue q = clg_context_cl_queue(e->ctx);
    return CLBlastSconvgemm(CLBlastKernelModeCrossCorrelation, (size_t)s->C, (size_t)s->H, (size_t)s->W,
                            (size_t)s->k, (size_t)s->k, (size_t)s->pad, (size_t)s->pad, 1, 1, 1, 1,
                            (size_t)s->K, (size_t)s->N, clg_tensor_cl_mem(e->x), 0, clg_tensor_cl_mem(e->w),
                            0, clg_tensor_cl_mem(e->y), 0, &q, NULL) != CLBlastSuccess;
}

/* max |a - b| over two f32 tensors of one shape (-1 when they cannot be read) */
static double conv_max_diff(const clg_tensor *a, const clg_tensor *b) {
    const size_t n = clg_tensor_numel(a);
    float *ha = malloc(n * sizeof *ha), *hb = malloc(n * sizeof *hb);
    double m = -1;
    if (ha && hb && clg_tensor_to_host(a, ha, n * sizeof *ha) == CLG_OK &&
        clg_tensor_to_host(b, hb, n * sizeof *hb) == CLG_OK) {
        m = 0;
        for (size_t i = 0; i < n; i++)
            m = fmax(m, fabs((double)ha[i] - hb[i]));
    }
    free(ha);
    free(hb);
    return m;
}

typedef struct conv_row {
    const char *what;
    conv_fn fn;
    bool backward; /* forward+backward: 3x the forward's FLOPs */
} conv_row;

/* Medians over rounds, the variants interleaved round by round so other load on the machine
 * falls on all of them alike. One call per round after a warm-up call (which also compiles). */
static int conv_measure(conv_env *e, const conv_row *rows, int nr, int rounds, double *secs) {
    double t[16][64];
    for (int i = 0; i < nr; i++)
        if (rows[i].fn(e) || clg_context_finish(e->ctx)) return -1;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < nr; i++) {
            pause_ms(20);
            const double t0 = now();
            if (rows[i].fn(e) || clg_context_finish(e->ctx)) return -1;
            t[i][r] = now() - t0;
        }
    for (int i = 0; i < nr; i++)
        secs[i] = median(t[i], rounds);
    return 0;
}

static int conv_shape_run(clg_context *ctx, const conv_shape *s, int rounds) {
    conv_env e = {ctx,
                  s,
                  clg_conv2d_default_params(),
                  0,
                  0,
                  0,
                  0,
                  ctx->conv_workspace_bytes,
                  0,
                  NULL,
                  NULL,
                  NULL,
                  NULL,
                  NULL,
                  NULL,
                  NULL,
                  NULL,
                  NULL};
    e.p.pad_h = e.p.pad_w = s->pad;
    e.layout = ctx->info.type & CL_DEVICE_TYPE_CPU ? 2 : 1;
    e.OH = clg_conv2d_out_size(s->H, s->k, 1, s->pad, 1);
    e.OW = clg_conv2d_out_size(s->W, s->k, 1, s->pad, 1);
    e.P = (size_t)e.OH * e.OW;
    e.ckk = (size_t)s->C * s->k * s->k;
    const int xs[4] = {s->N, s->C, s->H, s->W}, ws[4] = {s->K, s->C, s->k, s->k};
    const int ys[4] = {s->N, s->K, e.OH, e.OW}, cs[2] = {(int)e.ckk, (int)((size_t)s->N * e.P)};
    clg_status st;
    if ((st = clg_tensor_rand_uniform(ctx, CLG_F32, 4, xs, -1, 1, 1, &e.x)) ||
        (st = clg_tensor_rand_uniform(ctx, CLG_F32, 4, ws, -1, 1, 2, &e.w)) ||
        (st = clg_tensor_rand_uniform(ctx, CLG_F32, 4, ys, -1, 1, 4, &e.dy)) ||
        (st = clg_tensor_zeros(ctx, CLG_F32, 4, ys, &e.y)) ||
        (st = clg_tensor_zeros(ctx, CLG_F32, 4, xs, &e.dx)) ||
        (st = clg_tensor_zeros(ctx, CLG_F32, 4, ws, &e.dw)) ||
        (st = clg_tensor_zeros(ctx, CLG_F32, 1, &s->K, &e.db)) ||
        (st = clg_tensor_zeros(ctx, CLG_F32, 2, cs, &e.col))) {
        fprintf(stderr, "clgrad-bench conv: setup: %s: %s\n", clg_status_name(st), clg_context_errmsg(ctx));
        return 1;
    }
    /* no bias anywhere, so every route computes the same y */
    const char *other = e.layout == 2 ? "per-element kernels" : "per-row kernels";
    char other_f[64], other_b[64];
    snprintf(other_f, sizeof other_f, "clgrad conv2d, %s", other);
    snprintf(other_b, sizeof other_b, "clgrad conv2d, %s", other);
    const conv_row rows[] = {
        {"clgrad conv2d", conv_fwd, false},
        {"clgrad conv2d, one image per GEMM", conv_fwd_1img, false},
        {other_f, conv_fwd_other, false},
        {"bare GEMM (one call, whole batch)", conv_gemm_fwd, false},
        {"CLBlastSim2col + GEMM per image", conv_clblast_fwd, false},
        {"CLBlastSconvgemm", conv_convgemm, false},
        {"clgrad conv2d", conv_fb, true},
        {"clgrad conv2d, one image per GEMM", conv_fb_1img, true},
        {other_b, conv_fb_other, true},
        {"bare GEMMs (3 calls, whole batch)", conv_gemm_fb, true},
        {"CLBlast im2col/col2im + GEMMs per image", conv_clblast_fb, true},
    };
    const int nr = (int)(sizeof rows / sizeof *rows);
    const double fwd = 2.0 * s->N * s->K * (double)e.P * (double)e.ckk;
    printf("\n%s: x (%d, %d, %d, %d), w (%d, %d, %d, %d), pad %d -> y (%d, %d, %d, %d); "
           "forward %.3f GFLOP = GEMM %d x %zu x %zu\n",
           s->what, s->N, s->C, s->H, s->W, s->K, s->C, s->k, s->k, s->pad, s->N, s->K, e.OH, e.OW,
           fwd * 1e-9, s->K, (size_t)s->N * e.P, e.ckk);
    double secs[16];
    int rc = conv_measure(&e, rows, nr, rounds, secs);
    for (int i = 0; rc == 0 && i < nr; i++) {
        if (i == 0 || rows[i].backward != rows[i - 1].backward)
            printf("  %s\n", rows[i].backward ? "forward + backward (dx, dw):" : "forward:");
        const double base = secs[rows[i].backward ? 6 : 0];
        printf("    %-42s %9.2f ms %8.2f GFLOP/s  %5.2fx\n", rows[i].what, 1e3 * secs[i],
               (rows[i].backward ? 3 : 1) * fwd / secs[i] * 1e-9, base / secs[i]);
    }
    if (rc == 0) {
        /* the routes agree: CLBlastSconvgemm's y against clgrad's */
        clg_tensor *y_cg = NULL;
        if (conv_convgemm(&e) == 0 && clg_tensor_cast(e.y, CLG_F32, &y_cg) == CLG_OK && conv_fwd(&e) == 0)
            printf("  CLBlastSconvgemm vs clgrad conv2d: max |y difference| %.3g\n",
                   conv_max_diff(y_cg, e.y));
        clg_tensor_free(y_cg);
    }
    clg_tensor *all[] = {e.x, e.w, e.b, e.y, e.dy, e.dx, e.dw, e.db, e.col};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clg_tensor_free(all[i]);
    return rc != 0;
}

static int bench_conv(int argc, char **argv) {
    const char *device = NULL;
    int rounds = 5, only = -1;
    size_t workspace = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc)
            only = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workspace") && i + 1 < argc)
            workspace = strtoull(argv[++i], NULL, 10);
        else {
            FILE *f = strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? stderr : stdout;
            fprintf(f,
                    "usage: clgrad-bench conv [--device D] [--rounds R] [--shape 0|1|2] [--workspace BYTES]\n"
                    "Median time and GFLOP/s (f32) of conv2d forward and forward+backward for three\n"
                    "real layer shapes, beside the bare GEMMs of the same sizes, CLBlast's im2col/col2im\n"
                    "route and CLBlastSconvgemm; the last column is the speed relative to clgrad.\n");
            return f == stdout ? 0 : 2;
        }
    }
    if (rounds < 1 || rounds > 64) {
        fprintf(stderr, "clgrad-bench conv: --rounds 1..64\n");
        return 2;
    }
    clg_context_params cp = clg_context_default_params();
    cp.device = device;
    cp.conv_workspace_bytes = workspace;
    clg_context *ctx = NULL;
    char err[1024];
    if (clg_context_create(&cp, &ctx, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "clgrad-bench conv: %s\n", err);
        return 1;
    }
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    printf("conv2d on %s (%s), f32, median of %d rounds, conv workspace %zu bytes\n", info.name,
           info.platform_name, rounds, ctx->conv_workspace_bytes);
    int rc = 0;
    for (int i = 0; i < (int)(sizeof conv_shapes / sizeof *conv_shapes); i++)
        if (only < 0 || only == i) rc |= conv_shape_run(ctx, &conv_shapes[i], rounds);
    clg_context_free(ctx);
    return rc;
}

/* ================================================================ subcommands */

int bench_train(int argc, char **argv); /* tools/bench_train.c */

typedef struct bench_cmd {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand's name */
    const char *what;
} bench_cmd;

/* Add a subcommand here (its code in this file or a tools/bench_*.c listed in meson.build). */
static const bench_cmd commands[] = {
    {"gemm", bench_gemm, "GEMM paths (CLBlast default/tuned, packed kernel) against OpenBLAS"},
    {"conv", bench_conv, "conv2d forward/backward beside its GEMMs and CLBlast's im2col/convgemm"},
    {"train", bench_train, "training-step images/s of lenet and cnn beside PyTorch on the same CPU"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: clgrad-bench <subcommand> [options]   (clgrad-bench <subcommand> --help)\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].what);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "clgrad-bench: unknown subcommand \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
