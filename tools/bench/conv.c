/* tools/bench/conv.c - `clgrad-bench conv`: conv2d (src/ops/conv2d.c) side by side with the
 * bare GEMMs of the same sizes, CLBlast's own routes (CLBlastSim2col/Scol2im + GEMM per image,
 * CLBlastSconvgemm, forward only) and PyTorch's conv2d on the same CPU in the same run
 * (tools/torch_baseline.py --conv-only, when /usr/bin/python3 has torch: oneDNN, 2 threads),
 * PyTorch run twice, as installed and at its best (BENCH_TORCH_BEST_ENV in bench.h), clgrad's
 * ratio taken against the faster of the two, as `clgrad-bench train` does.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <clblast_c.h>

#include <clgrad.h>

#include "bench.h"

/* clgrad's variants, each run on a context of its own made once per run with the params it
 * needs (a context's kernel style and conv workspace are fixed for its life): the default
 * (images batched into chunks, the device's kernel style), one image per GEMM (workspace
 * limit 1 byte) and the other kernel style (per element vs per row). */
enum { V_DEFAULT, V_ONE_IMAGE, V_OTHER_STYLE, V_COUNT };

/* clg_context_params.conv_workspace_bytes when left 0 (include/clgrad/context.h) */
#define DEFAULT_WORKSPACE ((size_t)64 << 20)

typedef struct conv_shape {
    int N, C, H, W, K, k, pad;
    const char *what;
} conv_shape;

/* tools/torch_baseline.py's CONV_SHAPES lists the same shapes in this order (its --conv-shape
 * takes these indices); its rows are matched to these by their numbers, never by position. */
static const conv_shape conv_shapes[] = {
    {64, 1, 28, 28, 32, 3, 1, "MNIST conv1"},
    {64, 32, 32, 32, 64, 3, 1, "CIFAR conv2"},
    {32, 64, 56, 56, 64, 3, 1, "ResNet stage 1"},
};

#define SHAPE_COUNT ((int)(sizeof conv_shapes / sizeof *conv_shapes))

/* PyTorch's median seconds on one shape in one environment; 0 where it did not run. */
typedef struct torch_conv {
    double fwd, fb;
    char backend[32]; /* the route torch picked (Mkldnn = oneDNN), "" when unknown */
} torch_conv;

enum { T_AS_INSTALLED, T_BEST, T_COUNT };
static const char *const torch_env_name[T_COUNT] = {"as installed", "at its best"};

/* Runs tools/torch_baseline.py --conv-only with env_prefix and files its rows under the
 * conv_shapes they match (every dimension, kernel and padding equal). */
static void torch_conv_times(const char *script, const char *env_prefix, int only, torch_conv *out) {
    static const char *const keys[] = {"N", "C", "H", "W", "K", "kernel", "pad"};
    for (int i = 0; i < SHAPE_COUNT; i++)
        out[i] = (torch_conv){0};
    char args[64];
    if (only >= 0)
        snprintf(args, sizeof args, "--conv-only --conv-shape %d", only);
    else
        snprintf(args, sizeof args, "--conv-only");
    cJSON *root = bench_torch_json(script, env_prefix, args), *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(root, "conv2d")) {
        int v[7];
        bool ok = true;
        for (int k = 0; k < 7; k++) {
            const cJSON *j = cJSON_GetObjectItem(row, keys[k]);
            ok = ok && cJSON_IsNumber(j);
            v[k] = ok ? j->valueint : 0;
        }
        const cJSON *f = cJSON_GetObjectItem(row, "fwd_ms"), *fb = cJSON_GetObjectItem(row, "fwd_bwd_ms");
        const cJSON *be = cJSON_GetObjectItem(row, "backend");
        if (!ok || !cJSON_IsNumber(f) || !cJSON_IsNumber(fb) || !(f->valuedouble > 0) ||
            !(fb->valuedouble > 0))
            continue;
        for (int i = 0; i < SHAPE_COUNT; i++) {
            const conv_shape *s = &conv_shapes[i];
            if (s->N != v[0] || s->C != v[1] || s->H != v[2] || s->W != v[3] || s->K != v[4] ||
                s->k != v[5] || s->pad != v[6])
                continue;
            out[i].fwd = f->valuedouble * 1e-3;
            out[i].fb = fb->valuedouble * 1e-3;
            snprintf(out[i].backend, sizeof out[i].backend, "%s", cJSON_IsString(be) ? be->valuestring : "");
        }
    }
    cJSON_Delete(root);
}

/* One variant's context and its own copies of the layer's tensors (same seeds, same data). */
typedef struct conv_env {
    clg_context *ctx;
    const conv_shape *s;
    clg_conv2d_params p;
    int OH, OW;
    size_t P, ckk;
    clg_tensor *x, *w, *y, *dy, *dx, *dw;
    clg_tensor *col; /* (C*k*k, N*P): the bare GEMMs' and CLBlast's col; V_DEFAULT only */
} conv_env;

typedef int (*conv_fn)(conv_env *e);

/* No bias, no db: every route here (CLBlast's, PyTorch's in torch_baseline.py) computes y, and
 * for the backward dx and dw, nothing more. */
static int conv_ours(conv_env *e, bool backward) {
    clg_status st = clg_conv2d_forward(e->ctx, e->x, e->w, NULL, e->p, e->y);
    if (st == CLG_OK && backward)
        st = clg_conv2d_backward(e->ctx, e->x, e->w, e->dy, e->p, e->dx, e->dw, NULL, 0.0);
    if (st != CLG_OK) fprintf(stderr, "clgrad-bench conv: %s\n", clg_context_errmsg(e->ctx));
    return st != CLG_OK;
}
static int conv_fwd(conv_env *e) { return conv_ours(e, false); }
static int conv_fb(conv_env *e) { return conv_ours(e, true); }

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
    int variant;   /* the conv_env (and context) it runs on */
} conv_row;

/* Medians over rounds, the variants interleaved round by round so other load on the machine
 * falls on all of them alike. One call per round after a warm-up call (which also compiles). */
static int conv_measure(conv_env *envs, const conv_row *rows, int nr, int rounds, double *secs) {
    double t[16][64];
    for (int i = 0; i < nr; i++) {
        conv_env *e = &envs[rows[i].variant];
        if (rows[i].fn(e) || clg_context_finish(e->ctx)) return -1;
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < nr; i++) {
            conv_env *e = &envs[rows[i].variant];
            bench_pause_ms(20);
            const double t0 = bench_now();
            if (rows[i].fn(e) || clg_context_finish(e->ctx)) return -1;
            t[i][r] = bench_now() - t0;
        }
    for (int i = 0; i < nr; i++)
        secs[i] = bench_median(t[i], rounds);
    return 0;
}

static void conv_env_close(conv_env *e) {
    clg_tensor *all[] = {e->x, e->w, e->y, e->dy, e->dx, e->dw, e->col};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clg_tensor_free(all[i]);
}

static int conv_env_open(clg_context *ctx, const conv_shape *s, bool with_col, conv_env *e) {
    *e = (conv_env){.ctx = ctx, .s = s, .p = clg_conv2d_default_params()};
    e->p.pad_h = e->p.pad_w = s->pad;
    e->OH = clg_conv2d_out_size(s->H, s->k, 1, s->pad, 1);
    e->OW = clg_conv2d_out_size(s->W, s->k, 1, s->pad, 1);
    e->P = (size_t)e->OH * e->OW;
    e->ckk = (size_t)s->C * s->k * s->k;
    const int xs[4] = {s->N, s->C, s->H, s->W}, ws[4] = {s->K, s->C, s->k, s->k};
    const int ys[4] = {s->N, s->K, e->OH, e->OW}, cs[2] = {(int)e->ckk, (int)((size_t)s->N * e->P)};
    clg_status st;
    if ((st = clg_tensor_rand_uniform(ctx, CLG_F32, 4, xs, -1, 1, 1, &e->x)) ||
        (st = clg_tensor_rand_uniform(ctx, CLG_F32, 4, ws, -1, 1, 2, &e->w)) ||
        (st = clg_tensor_rand_uniform(ctx, CLG_F32, 4, ys, -1, 1, 4, &e->dy)) ||
        (st = clg_tensor_zeros(ctx, CLG_F32, 4, ys, &e->y)) ||
        (st = clg_tensor_zeros(ctx, CLG_F32, 4, xs, &e->dx)) ||
        (st = clg_tensor_zeros(ctx, CLG_F32, 4, ws, &e->dw)) ||
        (with_col && (st = clg_tensor_zeros(ctx, CLG_F32, 2, cs, &e->col)))) {
        fprintf(stderr, "clgrad-bench conv: setup: %s: %s\n", clg_status_name(st), clg_context_errmsg(ctx));
        return 1;
    }
    return 0;
}

/* Runs and prints one shape's rows, PyTorch's (torch[T_COUNT], measured before) beside them;
 * ours[0], ours[1]: clgrad's default forward and forward+backward seconds (0 on error). */
static int conv_shape_run(clg_context *const *ctxs, const conv_shape *s, int rounds, const torch_conv *torch,
                          double *ours) {
    ours[0] = ours[1] = 0;
    conv_env envs[V_COUNT] = {{0}};
    int rc = 0;
    for (int v = 0; v < V_COUNT && !rc; v++)
        rc = conv_env_open(ctxs[v], s, v == V_DEFAULT, &envs[v]);
    if (rc) {
        for (int v = 0; v < V_COUNT; v++)
            conv_env_close(&envs[v]);
        return 1;
    }
    const conv_env e = envs[V_DEFAULT];
    /* no bias anywhere, so every route computes the same y */
    const bool cpu_style = clg_context_kernel_style(ctxs[V_DEFAULT]) == CLG_KERNEL_STYLE_CPU;
    const char *other = cpu_style ? "per-element kernels" : "per-row kernels";
    char other_f[64], other_b[64];
    snprintf(other_f, sizeof other_f, "clgrad conv2d, %s", other);
    snprintf(other_b, sizeof other_b, "clgrad conv2d, %s", other);
    const conv_row rows[] = {
        {"clgrad conv2d", conv_fwd, false, V_DEFAULT},
        {"clgrad conv2d, one image per GEMM", conv_fwd, false, V_ONE_IMAGE},
        {other_f, conv_fwd, false, V_OTHER_STYLE},
        {"bare GEMM (one call, whole batch)", conv_gemm_fwd, false, V_DEFAULT},
        {"CLBlastSim2col + GEMM per image", conv_clblast_fwd, false, V_DEFAULT},
        {"CLBlastSconvgemm", conv_convgemm, false, V_DEFAULT},
        {"clgrad conv2d", conv_fb, true, V_DEFAULT},
        {"clgrad conv2d, one image per GEMM", conv_fb, true, V_ONE_IMAGE},
        {other_b, conv_fb, true, V_OTHER_STYLE},
        {"bare GEMMs (3 calls, whole batch)", conv_gemm_fb, true, V_DEFAULT},
        {"CLBlast im2col/col2im + GEMMs per image", conv_clblast_fb, true, V_DEFAULT},
    };
    const int nr = (int)(sizeof rows / sizeof *rows);
    const double fwd = 2.0 * s->N * s->K * (double)e.P * (double)e.ckk;
    printf("\n%s: x (%d, %d, %d, %d), w (%d, %d, %d, %d), pad %d -> y (%d, %d, %d, %d); "
           "forward %.3f GFLOP = GEMM %d x %zu x %zu\n",
           s->what, s->N, s->C, s->H, s->W, s->K, s->C, s->k, s->k, s->pad, s->N, s->K, e.OH, e.OW,
           fwd * 1e-9, s->K, (size_t)s->N * e.P, e.ckk);
    double secs[16];
    rc = conv_measure(envs, rows, nr, rounds, secs);
    for (int pass = 0; rc == 0 && pass < 2; pass++) {
        const bool backward = pass == 1;
        const double base = secs[backward ? 6 : 0], flops = (backward ? 3 : 1) * fwd;
        printf("  %s\n", backward ? "forward + backward (dx, dw):" : "forward:");
        for (int i = 0; i < nr; i++)
            if (rows[i].backward == backward)
                printf("    %-42s %9.2f ms %8.2f GFLOP/s  %5.2fx\n", rows[i].what, 1e3 * secs[i],
                       flops / secs[i] * 1e-9, base / secs[i]);
        for (int t = 0; t < T_COUNT; t++) {
            const double ts = backward ? torch[t].fb : torch[t].fwd;
            if (!(ts > 0)) continue;
            char what[96];
            snprintf(what, sizeof what, "PyTorch conv2d%s%s%s, %s", torch[t].backend[0] ? " (" : "",
                     torch[t].backend, torch[t].backend[0] ? ")" : "", torch_env_name[t]);
            printf("    %-42s %9.2f ms %8.2f GFLOP/s  %5.2fx\n", what, 1e3 * ts, flops / ts * 1e-9,
                   base / ts);
        }
        ours[pass] = base;
    }
    if (rc == 0) {
        /* the routes agree: CLBlastSconvgemm's y against clgrad's */
        clg_tensor *y_cg = NULL;
        conv_env *d = &envs[V_DEFAULT];
        if (conv_convgemm(d) == 0 && clg_tensor_cast(d->y, CLG_F32, &y_cg) == CLG_OK && conv_fwd(d) == 0)
            printf("  CLBlastSconvgemm vs clgrad conv2d: max |y difference| %.3g\n",
                   conv_max_diff(y_cg, d->y));
        clg_tensor_free(y_cg);
    }
    for (int v = 0; v < V_COUNT; v++)
        conv_env_close(&envs[v]);
    return rc != 0;
}

/* The summary: clgrad's default rows against the faster PyTorch, per shape and pass. */
static void conv_summary(int only, const double (*ours)[2], const torch_conv (*torch)[T_COUNT]) {
    bool have = false;
    for (int i = 0; i < SHAPE_COUNT; i++)
        for (int t = 0; t < T_COUNT; t++)
            have |= torch[i][t].fwd > 0;
    if (!have) {
        printf(
            "\nPyTorch: not available (no torch for /usr/bin/python3, --no-torch, or the script failed)\n");
        return;
    }
    printf("\nclgrad conv2d beside PyTorch's (same CPU, same run; ran before clgrad, 2 threads), GFLOP/s;\n"
           "ratio = clgrad / the faster PyTorch; at its best = %s\n"
           "%-16s %-8s %9s %12s %12s %7s\n",
           BENCH_TORCH_BEST_ENV, "shape", "pass", "clgrad", "torch as is", "torch best", "ratio");
    for (int i = 0; i < SHAPE_COUNT; i++) {
        if (only >= 0 && only != i) continue;
        const conv_shape *s = &conv_shapes[i];
        const double fwd = 2.0 * s->N * s->K * s->C * s->k * s->k *
                           (double)clg_conv2d_out_size(s->H, s->k, 1, s->pad, 1) *
                           clg_conv2d_out_size(s->W, s->k, 1, s->pad, 1);
        for (int pass = 0; pass < 2; pass++) {
            const double flops = (pass ? 3 : 1) * fwd;
            double rate[1 + T_COUNT];
            for (int t = 0; t <= T_COUNT; t++) {
                const double sec = t == 0 ? ours[i][pass] : pass ? torch[i][t - 1].fb : torch[i][t - 1].fwd;
                rate[t] = sec > 0 ? flops / sec * 1e-9 : 0;
            }
            const double faster = fmax(rate[1], rate[2]);
            printf("%-16s %-8s %9.1f %12.1f %12.1f %6.2fx\n", s->what, pass ? "fwd+bwd" : "forward", rate[0],
                   rate[1], rate[2], faster > 0 ? rate[0] / faster : 0);
        }
    }
}

int bench_conv(int argc, char **argv) {
    const char *device = NULL, *script = "tools/torch_baseline.py";
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
        else if (!strcmp(argv[i], "--torch") && i + 1 < argc)
            script = argv[++i];
        else if (!strcmp(argv[i], "--no-torch"))
            script = NULL;
        else {
            FILE *f = strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? stderr : stdout;
            fprintf(f,
                    "usage: clgrad-bench conv [--device D] [--rounds R] [--shape 0|1|2] [--workspace BYTES]\n"
                    "                         [--torch SCRIPT | --no-torch]\n"
                    "Median time and GFLOP/s (f32) of conv2d forward and forward+backward (dx, dw; no\n"
                    "bias) for three real layer shapes, beside the bare GEMMs of the same sizes, CLBlast's\n"
                    "im2col/col2im route, CLBlastSconvgemm and PyTorch's conv2d (SCRIPT, default\n"
                    "tools/torch_baseline.py, as installed and at its best); the last column is the\n"
                    "speed relative to clgrad. A summary against the faster PyTorch ends the run.\n");
            return f == stdout ? 0 : 2;
        }
    }
    if (rounds < 1 || rounds > 64) {
        fprintf(stderr, "clgrad-bench conv: --rounds 1..64\n");
        return 2;
    }
    if (only >= SHAPE_COUNT || only < -1) {
        fprintf(stderr, "clgrad-bench conv: --shape 0..%d\n", SHAPE_COUNT - 1);
        return 2;
    }
    /* PyTorch first, before clgrad's contexts (and PoCL's threads) exist */
    torch_conv torch[SHAPE_COUNT][T_COUNT] = {{{0}}};
    if (script) {
        torch_conv got[SHAPE_COUNT];
        for (int t = 0; t < T_COUNT; t++) {
            torch_conv_times(script, t == T_BEST ? BENCH_TORCH_BEST_ENV : "", only, got);
            for (int i = 0; i < SHAPE_COUNT; i++)
                torch[i][t] = got[i];
        }
    }
    clg_context *ctxs[V_COUNT] = {NULL, NULL, NULL};
    clg_context_params cp = clg_context_default_params();
    cp.device = device;
    cp.conv_workspace_bytes = workspace;
    char err[1024];
    int rc = clg_context_create(&cp, &ctxs[V_DEFAULT], err, sizeof err) != CLG_OK;
    if (!rc) {
        const clg_kernel_style style = clg_context_kernel_style(ctxs[V_DEFAULT]);
        cp.kernel_style = style;
        cp.conv_workspace_bytes = 1;
        rc = clg_context_create(&cp, &ctxs[V_ONE_IMAGE], err, sizeof err) != CLG_OK;
        cp.kernel_style = style == CLG_KERNEL_STYLE_CPU ? CLG_KERNEL_STYLE_GPU : CLG_KERNEL_STYLE_CPU;
        cp.conv_workspace_bytes = workspace;
        if (!rc) rc = clg_context_create(&cp, &ctxs[V_OTHER_STYLE], err, sizeof err) != CLG_OK;
    }
    if (rc) {
        fprintf(stderr, "clgrad-bench conv: %s\n", err);
        for (int v = 0; v < V_COUNT; v++)
            clg_context_free(ctxs[v]);
        return 1;
    }
    clg_device_info info;
    clg_context_device_info(ctxs[V_DEFAULT], &info);
    printf("conv2d on %s (%s), f32, median of %d rounds, conv workspace %zu bytes\n", info.name,
           info.platform_name, rounds, workspace ? workspace : DEFAULT_WORKSPACE);
    double ours[SHAPE_COUNT][2] = {{0}};
    for (int i = 0; i < SHAPE_COUNT; i++)
        if (only < 0 || only == i) rc |= conv_shape_run(ctxs, &conv_shapes[i], rounds, torch[i], ours[i]);
    for (int v = 0; v < V_COUNT; v++)
        clg_context_free(ctxs[v]);
    conv_summary(only, (const double(*)[2])ours, (const torch_conv(*)[T_COUNT])torch);
    return rc;
}
