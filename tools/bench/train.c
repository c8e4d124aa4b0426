/* tools/bench/train.c - `clgrad-bench train`: the training-step throughput of the catalogue's
 * models (tools/models.c) at batch 64, beside PyTorch's on the same CPU in the same run
 * (tools/torch_baseline.py, when /usr/bin/python3 has torch), PyTorch run twice: as installed
 * (this environment as it is) and at its best (BENCH_TORCH_BEST_ENV in bench.h), the ratio
 * taken against the faster of the two. Synthetic images and labels, each model's default optimizer and rate as
 * clgrad-train uses them; medians of timed steps; clgrad's pool footprint (device memory it
 * holds after the steps) beside PyTorch's peak RSS growth.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <clgrad.h>

#include "bench.h"
#include "models.h"
#include "tool_profile.h"

/* Median seconds per training step of one model; -1 on error. *pool_bytes: the pool's
 * footprint afterwards (in use + cached: every buffer the steps needed at once). */
static double clgrad_step(clg_context *ctx, const model_entry *me, int batch, int steps, double *pool_bytes,
                          bool profile) {
    clg_module *model = NULL;
    clg_optimizer *opt = NULL;
    double median = -1;
    const int pixels = me->channels * me->height * me->width;
    float *x = malloc((size_t)batch * (size_t)pixels * sizeof *x);
    int32_t *y = malloc((size_t)batch * sizeof *y);
    double *t = malloc((size_t)steps * sizeof *t);
    if (!x || !y || !t || me->build(ctx, 1, &model) != CLG_OK) goto done;
    for (int i = 0; i < batch * pixels; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (int i = 0; i < batch; i++) y[i] = i % me->classes;
    clg_status st = model_optimizer_create(ctx, model, me->optimizer, me->lr, MODEL_SGD_MOMENTUM, 0.0, &opt);
    if (st != CLG_OK) goto done;
    int shape[4] = {batch, me->channels, me->height, me->width};
    for (int s = -3; s < steps; s++) { /* three warm-up steps build kernels and fill the pool */
        if (s == 0 && profile && clg_profiler_start(ctx) != CLG_OK) {
            fprintf(stderr, "clgrad-bench train: %s\n", clg_context_errmsg(ctx));
            goto done;
        }
        double t0 = bench_now();
        clg_tensor *xt = NULL, *out = NULL, *loss = NULL;
        double l = 0;
        st = clg_tensor_from_host(ctx, CLG_F32, 4, shape, x, &xt);
        if (st == CLG_OK) st = clg_module_forward(ctx, model, xt, &out);
        if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, out, y, (size_t)batch, &loss);
        if (st == CLG_OK) st = clg_backward(ctx, loss);
        if (st == CLG_OK) st = clg_optimizer_step(opt);
        clg_optimizer_zero_grad(opt);
        if (st == CLG_OK) st = clg_tensor_item(loss, &l); /* waits, like a training loop reading its loss */
        clg_tensor_free(loss);
        clg_tensor_free(out);
        clg_tensor_free(xt);
        if (st != CLG_OK) {
            fprintf(stderr, "clgrad-bench train: %s: %s\n", me->name, clg_context_errmsg(ctx));
            goto done;
        }
        if (s >= 0) t[s] = bench_now() - t0;
    }
    if (profile) {
        clg_profiler_stop(ctx);
        char path[256];
        snprintf(path, sizeof path, "clgrad-bench-%s-trace.json", me->name);
        printf("%s:\n", me->name);
        tool_print_profile(ctx, "clgrad-bench train", path, steps);
        clg_profiler_reset(ctx);
    }
    qsort(t, (size_t)steps, sizeof *t, bench_cmp_double);
    median = t[steps / 2];
    const clg_pool_stats ps = clg_context_pool_stats(ctx);
    *pool_bytes = (double)(ps.bytes_in_use + ps.bytes_cached);
done:
    clg_optimizer_free(opt);
    clg_module_free(model);
    free(x);
    free(y);
    free(t);
    return median;
}

/* PyTorch's images/s and peak RSS growth per catalogue model from tools/torch_baseline.py
 * --json, run with env_prefix; 0 where unavailable. */
static void torch_rates(const char *script, const char *env_prefix, int batch, double *rates, double *rss) {
    for (int m = 0; m < model_count; m++) rates[m] = rss[m] = 0;
    char args[64];
    snprintf(args, sizeof args, "--train-only --batch %d", batch);
    cJSON *root = bench_torch_json(script, env_prefix, args), *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(root, "train")) {
        const cJSON *m = cJSON_GetObjectItem(row, "model"), *r = cJSON_GetObjectItem(row, "images_per_s");
        const cJSON *g = cJSON_GetObjectItem(row, "peak_rss_growth_mib");
        if (!cJSON_IsString(m) || !cJSON_IsNumber(r)) continue;
        const model_entry *me = model_find(m->valuestring);
        if (!me) continue;
        rates[me - model_catalogue] = r->valuedouble;
        if (cJSON_IsNumber(g)) rss[me - model_catalogue] = g->valuedouble;
    }
    cJSON_Delete(root);
}

int bench_train(int argc, char **argv) {
    int steps = 20, batch = 64, json = 0, profile = 0;
    const char *script = "tools/torch_baseline.py", *device = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--torch") && i + 1 < argc) script = argv[++i];
        else if (!strcmp(argv[i], "--no-torch")) script = NULL;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) only = argv[++i];
        else {
            char names[256];
            model_names(names, sizeof names, "|");
            fprintf(stderr, "usage: clgrad-bench train [--steps N] [--batch N] [--model %s] [--device D]\n"
                            "                          [--torch SCRIPT | --no-torch] [--json] [--profile]\n"
                            "models (default: all):\n", names);
            model_print_list(stderr, "  ");
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (only && !model_find(only)) {
        fprintf(stderr, "clgrad-bench train: no model '%s' (clgrad-bench train --help lists them)\n", only);
        return 2;
    }
    if (steps < 1 || batch < 1 || model_count > 64) return 2;
    clg_context_params cp = clg_context_default_params();
    cp.device = device;
    cp.profiling = profile; /* timestamps on the queue only when asked for */
    clg_context *ctx = NULL;
    char err[1024];
    if (clg_context_create(&cp, &ctx, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "clgrad-bench train: %s\n", err);
        return 1;
    }
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    double ours[64], pool[64], asis[64], best[64], rss_asis[64], rss_best[64];
    for (int m = 0; m < model_count; m++) {
        ours[m] = pool[m] = 0;
        if (only && strcmp(only, model_catalogue[m].name)) continue;
        clg_context_pool_trim(ctx); /* each model's footprint alone */
        ours[m] = clgrad_step(ctx, &model_catalogue[m], batch, steps, &pool[m], profile && !json);
    }
    clg_context_free(ctx);
    for (int m = 0; m < model_count; m++) asis[m] = best[m] = rss_asis[m] = rss_best[m] = 0;
    if (script) {
        torch_rates(script, "", batch, asis, rss_asis);
        torch_rates(script, BENCH_TORCH_BEST_ENV, batch, best, rss_best);
    }
    bool have_torch = false;
    for (int m = 0; m < model_count; m++) have_torch |= asis[m] > 0 || best[m] > 0;
    if (json) printf("{\"device\": \"%s\", \"batch\": %d, \"torch_best_env\": \"%s\", \"train\": [", info.name,
                     batch, BENCH_TORCH_BEST_ENV);
    else
        printf("training step, batch %d, on %s (PyTorch: %s)\n%-6s %8s %9s %8s | %11s %11s %8s | %8s\n", batch,
               info.name, have_torch ? "same CPU, same run, as installed and at its best" : "not available",
               "model", "step ms", "images/s", "pool MiB", "torch as is", "torch best", "RSS MiB", "ratio");
    int rc = 0;
    for (int m = 0, shown = 0; m < model_count; m++) {
        if (only && strcmp(only, model_catalogue[m].name)) continue;
        const char *name = model_catalogue[m].name;
        const double faster = fmax(asis[m], best[m]);
        const double ips = ours[m] > 0 ? batch / ours[m] : 0, ratio = faster > 0 ? ips / faster : 0;
        const double rss = best[m] >= asis[m] ? rss_best[m] : rss_asis[m];
        if (ours[m] < 0) rc = 1;
        if (json)
            printf("%s{\"model\": \"%s\", \"step_ms\": %.3f, \"images_per_s\": %.1f, \"pool_mib\": %.1f, "
                   "\"torch_as_installed_images_per_s\": %.1f, \"torch_best_images_per_s\": %.1f, "
                   "\"torch_peak_rss_growth_mib\": %.1f, \"ratio_to_faster_torch\": %.3f}",
                   shown++ ? ", " : "", name, ours[m] * 1e3, ips, pool[m] / 1048576.0, asis[m], best[m], rss, ratio);
        else if (faster > 0)
            printf("%-6s %8.2f %9.1f %8.1f | %11.1f %11.1f %8.1f | %7.2fx\n", name, ours[m] * 1e3, ips,
                   pool[m] / 1048576.0, asis[m], best[m], rss, ratio);
        else /* no PyTorch figure for this model: no ratio either */
            printf("%-6s %8.2f %9.1f %8.1f | %11s %11s %8s | %8s\n", name, ours[m] * 1e3, ips, pool[m] / 1048576.0,
                   "-", "-", "-", "-");
    }
    if (json) printf("]}\n");
    return rc;
}
