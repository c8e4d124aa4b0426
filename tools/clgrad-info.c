/* tools/clgrad-info.c - what clgrad sees on this machine: every OpenCL platform and device,
 * which one the default choice and CLGRAD_DEVICE pick, the program cache folder, and how
 * long a program takes to build cold, from the driver's own cache, and from clgrad's disk
 * cache. Public API only (include/clgrad.h) and the tools' model catalogue (models.c).
 * `--json` prints one JSON object instead; `--warm` fills the device's caches ahead of time.
 * Usage: clgrad-info [--json] [--no-build] [--program NAME] | --warm [--model NAME]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <clgrad.h>

#include "models.h"

#define MAX_DEVICES 64

typedef struct build_times {
    bool done;        /* timings were taken */
    char device[400]; /* the context's device and platform names */
    double cold_s;    /* nothing cached anywhere: options no run has used before */
    double driver_s;  /* same options, new context, clgrad's disk tier off: the driver's cache */
    bool have_warm;   /* clgrad's disk tier is on */
    double warm_s;    /* new context loading from clgrad's disk cache */
    bool warm_from_disk;
    char error[2048]; /* why timings are missing */
} build_times;

static const char *type_name(cl_device_type t) {
    /* Several type bits (the Oclgrind simulator reports all three): say so, as clgrad's
     * device choice ranks such a device after plain ones. */
    if ((t & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_ACCELERATOR)) ==
        (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_ACCELERATOR))
        return "GPU|CPU|accelerator";
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    if (t & CL_DEVICE_TYPE_CUSTOM) return "custom";
    return "other";
}

static void human_bytes(uint64_t b, char *buf, size_t len) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static clg_status make_ctx(const char *cache_dir, clg_context **ctx, char *err, size_t len) {
    clg_context_params p = clg_context_default_params(); /* device: CLGRAD_DEVICE or default */
    p.cache_dir = cache_dir;
    return clg_context_create(&p, ctx, err, len);
}

/* Builds `program` three ways, each in a fresh context so nothing comes from memory. */
static void measure_builds(const char *program, build_times *bt) {
    memset(bt, 0, sizeof *bt);
    char opts[128];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* A define no earlier run used: the driver's cache (PoCL's kcache, NVIDIA's
     * ComputeCache) cannot hold it, so the first build is really cold. */
    snprintf(opts, sizeof opts, "-DCLGRAD_INFO_NONCE=%lld%09ld%ld", (long long)ts.tv_sec, (long)ts.tv_nsec,
             (long)getpid());

    clg_context *ctx = NULL;
    clg_build_report r;
    clg_status st = make_ctx("off", &ctx, bt->error, sizeof bt->error);
    if (st != CLG_OK) return;
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    snprintf(bt->device, sizeof bt->device, "%s (%s)", info.name, info.platform_name);
    st = clg_program_prepare(ctx, program, opts, &r);
    if (st != CLG_OK) {
        snprintf(bt->error, sizeof bt->error, "%s", clg_context_errmsg(ctx));
        clg_context_free(ctx);
        return;
    }
    bt->cold_s = r.seconds;
    clg_context_free(ctx);

    if ((st = make_ctx("off", &ctx, bt->error, sizeof bt->error)) != CLG_OK) return;
    st = clg_program_prepare(ctx, program, opts, &r);
    bt->driver_s = r.seconds;
    if (st != CLG_OK) snprintf(bt->error, sizeof bt->error, "%s", clg_context_errmsg(ctx));
    clg_context_free(ctx);
    if (st != CLG_OK) return;

    /* Warm: the real cache folder with the program's plain options (a fixed key, so runs
     * reuse one file). The first context makes sure the file exists; the second is timed. */
    if ((st = make_ctx(NULL, &ctx, bt->error, sizeof bt->error)) != CLG_OK) return;
    bt->have_warm = clg_context_cache_dir(ctx)[0] != '\0';
    st = clg_program_prepare(ctx, program, NULL, &r);
    if (st != CLG_OK) snprintf(bt->error, sizeof bt->error, "%s", clg_context_errmsg(ctx));
    clg_context_free(ctx);
    if (st != CLG_OK) return;
    if (bt->have_warm && make_ctx(NULL, &ctx, bt->error, sizeof bt->error) == CLG_OK) {
        if (clg_program_prepare(ctx, program, NULL, &r) == CLG_OK) {
            bt->warm_s = r.seconds;
            bt->warm_from_disk = r.from_disk;
        }
        clg_context_free(ctx);
    }
    bt->done = true;
}

static void print_text(const clg_device_info *d, size_t n, size_t def, bool def_ok, const char *env,
                       size_t env_idx, bool env_ok, const char *env_err, const char *cache_dir,
                       const char *cache_err, const char *program, const build_times *bt, bool builds) {
    printf("clgrad %s\n", CLGRAD_VERSION_STRING);
    if (n == 0) printf("no OpenCL devices (is an ICD such as pocl-opencl-icd installed?)\n");
    int last_platform = -1;
    for (size_t i = 0; i < n; i++) {
        if (d[i].platform_index != last_platform) {
            last_platform = d[i].platform_index;
            printf("\nplatform %d: %s (%s)\n", d[i].platform_index, d[i].platform_name,
                   d[i].platform_version);
        }
        char gm[32], lm[32];
        human_bytes(d[i].global_mem_bytes, gm, sizeof gm);
        human_bytes(d[i].local_mem_bytes, lm, sizeof lm);
        printf("  device %d:%d  %s%s%s\n", d[i].platform_index, d[i].device_index, d[i].name,
               def_ok && i == def ? "  [default]" : "", env_ok && i == env_idx ? "  [CLGRAD_DEVICE]" : "");
        printf("    vendor          %s\n", d[i].vendor);
        printf("    type            %s\n", type_name(d[i].type));
        printf("    compute units   %u\n", d[i].compute_units);
        printf("    global memory   %s\n", gm);
        printf("    local memory    %s\n", lm);
        printf("    max work-group  %zu\n", d[i].max_work_group_size);
        printf("    fp64 / fp16     %s / %s\n", d[i].fp64 ? "yes" : "no", d[i].fp16 ? "yes" : "no");
        printf("    platform        %s\n", d[i].platform_version);
        printf("    driver          %s\n", d[i].driver_version);
    }
    printf("\n");
    if (def_ok)
        printf("default choice:   %d:%d %s\n", d[def].platform_index, d[def].device_index, d[def].name);
    if (!env)
        printf("CLGRAD_DEVICE:    not set\n");
    else if (env_ok)
        printf("CLGRAD_DEVICE:    \"%s\" -> %d:%d %s\n", env, d[env_idx].platform_index,
               d[env_idx].device_index, d[env_idx].name);
    else
        printf("CLGRAD_DEVICE:    \"%s\" -> %s\n", env, env_err);
    if (cache_err[0])
        printf("cache folder:     (no context: %s)\n", cache_err);
    else
        printf("cache folder:     %s\n", cache_dir[0] ? cache_dir : "off");
    if (!builds) return;
    printf("\nbuild of program \"%s\" on %s:\n", program, bt->device[0] ? bt->device : "(none)");
    if (!bt->done) {
        printf("  failed: %s\n", bt->error);
        return;
    }
    printf("  cold (nothing cached anywhere)          %9.1f ms\n", bt->cold_s * 1e3);
    printf("  driver's own cache, clgrad's disk off   %9.1f ms\n", bt->driver_s * 1e3);
    if (!bt->have_warm)
        printf("  clgrad's disk cache                     off\n");
    else if (!bt->warm_from_disk)
        printf("  clgrad's disk cache                     %9.1f ms (NOT loaded from disk: is the folder "
               "writable?)\n",
               bt->warm_s * 1e3);
    else
        printf("  warm (clgrad's disk cache)              %9.1f ms  (%.0fx faster than cold)\n",
               bt->warm_s * 1e3, bt->warm_s > 0 ? bt->cold_s / bt->warm_s : 0.0);
}

static void print_json(const clg_device_info *d, size_t n, size_t def, bool def_ok, const char *env,
                       size_t env_idx, bool env_ok, const char *env_err, const char *cache_dir,
                       const char *cache_err, const char *program, const build_times *bt, bool builds) {
    FILE *f = stdout;
    fprintf(f, "{\"version\":");
    json_str(f, CLGRAD_VERSION_STRING);
    fprintf(f, ",\"devices\":[");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s{\"platform_index\":%d,\"device_index\":%d,\"name\":", i ? "," : "",
                d[i].platform_index, d[i].device_index);
        json_str(f, d[i].name);
        fprintf(f, ",\"vendor\":");
        json_str(f, d[i].vendor);
        fprintf(f, ",\"type\":");
        json_str(f, type_name(d[i].type));
        fprintf(f, ",\"platform_name\":");
        json_str(f, d[i].platform_name);
        fprintf(f, ",\"platform_version\":");
        json_str(f, d[i].platform_version);
        fprintf(f, ",\"driver_version\":");
        json_str(f, d[i].driver_version);
        fprintf(f,
                ",\"compute_units\":%u,\"global_mem_bytes\":%llu,\"local_mem_bytes\":%llu,"
                "\"max_work_group_size\":%zu,\"fp64\":%s,\"fp16\":%s,\"default\":%s,"
                "\"clgrad_device\":%s}",
                d[i].compute_units, (unsigned long long)d[i].global_mem_bytes,
                (unsigned long long)d[i].local_mem_bytes, d[i].max_work_group_size,
                d[i].fp64 ? "true" : "false", d[i].fp16 ? "true" : "false",
                def_ok && i == def ? "true" : "false", env_ok && i == env_idx ? "true" : "false");
    }
    fprintf(f, "],\"default_index\":");
    if (def_ok)
        fprintf(f, "%zu", def);
    else
        fprintf(f, "null");
    fprintf(f, ",\"clgrad_device\":");
    if (!env)
        fprintf(f, "null");
    else {
        fprintf(f, "{\"value\":");
        json_str(f, env);
        fprintf(f, ",\"index\":");
        if (env_ok)
            fprintf(f, "%zu,\"error\":null}", env_idx);
        else {
            fprintf(f, "null,\"error\":");
            json_str(f, env_err);
            fprintf(f, "}");
        }
    }
    fprintf(f, ",\"cache_dir\":");
    if (cache_err[0] || !cache_dir[0])
        fprintf(f, "null");
    else
        json_str(f, cache_dir);
    fprintf(f, ",\"build\":");
    if (!builds)
        fprintf(f, "null");
    else {
        fprintf(f, "{\"program\":");
        json_str(f, program);
        fprintf(f, ",\"device\":");
        json_str(f, bt->device);
        if (!bt->done) {
            fprintf(f, ",\"error\":");
            json_str(f, bt->error);
        } else {
            fprintf(f, ",\"cold_s\":%.6f,\"driver_cache_s\":%.6f,\"warm_s\":", bt->cold_s, bt->driver_s);
            if (bt->have_warm)
                fprintf(f, "%.6f", bt->warm_s);
            else
                fprintf(f, "null");
            fprintf(f, ",\"warm_from_disk\":%s", bt->warm_from_disk ? "true" : "false");
        }
        fprintf(f, "}");
    }
    fprintf(f, "}\n");
}

static void usage(FILE *f) {
    char names[256];
    model_names(names, sizeof names, "|");
    fprintf(f, "usage: clgrad-info [--json] [--no-build] [--program NAME]\n"
               "       clgrad-info --warm [--model %s]\n"
               "  Lists OpenCL platforms and devices, the device clgrad picks (default and\n"
               "  CLGRAD_DEVICE), the program cache folder, and the time to build a program\n"
               "  (default \"tensor/tensor\") cold, from the driver's cache and from clgrad's disk cache.\n"
               "  The cold build uses a fresh define, which leaves one small entry in the driver's\n"
               "  own cache; --no-build skips the timings.\n"
               "  --warm prepares the device's caches ahead of time, so that a later clgrad-train\n"
               "  starts without compiling: on the device clgrad picks (CLGRAD_DEVICE) it runs one\n"
               "  training step and one evaluation of the model (every model without --model) at\n"
               "  its recipe's batch size and optimizer, on random inputs, then writes every program\n"
               "  it compiled to the cache folder (CLGRAD_CACHE_DIR) and says how many.\n",
            names);
}

/* One training step (forward, loss, backward, optimizer) and one evaluation of model e on
 * random inputs: every program the model's first step needs gets compiled, and its kernels
 * launched at the batch size clgrad-train uses (drivers such as PoCL compile per launch size). */
static clg_status warm_model(clg_context *ctx, const model_entry *e) {
    const int batch = e->recipe.batch > 0 ? e->recipe.batch : 64;
    const size_t per_image = (size_t)e->channels * (size_t)e->height * (size_t)e->width;
    float *pixels = malloc((size_t)batch * per_image * sizeof *pixels); // (batch, C, H, W)
    int32_t *labels = malloc((size_t)batch * sizeof *labels);
    if (!pixels || !labels) {
        free(pixels);
        free(labels);
        return CLG_OUT_OF_HOST_MEMORY;
    }
    uint32_t r = 12345; /* a small LCG: values in [0, 1), like scaled pixels */
    for (size_t i = 0; i < (size_t)batch * per_image; i++)
        r = r * 1664525u + 1013904223u, pixels[i] = (float)(r >> 8) / 16777216.0f;
    for (int i = 0; i < batch; i++)
        labels[i] = i % e->classes;

    clg_module *model = NULL;
    clg_optimizer *opt = NULL;
    clg_tensor *x = NULL, *y = NULL, *loss = NULL;
    const int shape[4] = {batch, e->channels, e->height, e->width};
    clg_status st = e->build(ctx, 1, &model);
    if (st == CLG_OK)
        st = model_optimizer_create_ex(ctx, model, e->optimizer, e->lr, MODEL_SGD_MOMENTUM, e->recipe.nesterov,
                                       e->recipe.weight_decay, e->recipe.decay_split, &opt);
    if (st == CLG_OK) st = clg_tensor_from_host(ctx, CLG_F32, 4, shape, pixels, &x);
    if (st == CLG_OK) {
        clg_module_train(model, true);
        st = clg_module_forward(ctx, model, x, &y);
    }
    if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, y, labels, (size_t)batch, &loss);
    if (st == CLG_OK) st = clg_backward(ctx, loss);
    if (st == CLG_OK) st = clg_optimizer_step(opt);
    if (opt) clg_optimizer_zero_grad(opt);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    loss = y = NULL;
    if (st == CLG_OK) { /* evaluation: no graph, normalisation from running statistics */
        const bool was = clg_set_grad_enabled(ctx, false);
        clg_module_train(model, false);
        st = clg_module_forward(ctx, model, x, &y);
        if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, y, labels, (size_t)batch, &loss);
        clg_set_grad_enabled(ctx, was);
    }
    if (st == CLG_OK) st = clg_context_finish(ctx);
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(x);
    clg_optimizer_free(opt);
    clg_module_free(model);
    free(pixels);
    free(labels);
    return st;
}

/* --warm: every model (or the one named) in one context, then its programs to the cache. */
static int warm(const char *model_name) {
    const model_entry *only = model_name ? model_find(model_name) : NULL;
    if (model_name && !only) {
        char names[256];
        model_names(names, sizeof names, ", ");
        fprintf(stderr, "clgrad-info: --model %s: no such model (%s)\n", model_name, names);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[2048];
    clg_context *ctx = NULL;
    if (make_ctx(NULL, &ctx, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "clgrad-info: --warm: %s\n", err);
        return 1;
    }
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    char dir[4096]; /* the context owns its copy */
    snprintf(dir, sizeof dir, "%s", clg_context_cache_dir(ctx));
    if (!dir[0])
        fprintf(stderr, "clgrad-info: --warm: the cache folder is off (CLGRAD_CACHE_DIR=off): only the driver's "
                        "own cache gets warm\n");
    int rc = 0;
    for (int i = 0; i < model_count && !rc; i++) {
        const model_entry *e = only ? only : &model_catalogue[i];
        clg_status st = warm_model(ctx, e);
        if (st != CLG_OK) {
            fprintf(stderr, "clgrad-info: --warm: model %s: %s: %s\n", e->name, clg_status_name(st),
                    clg_context_errmsg(ctx));
            rc = 1;
        } else {
            printf("warm: model %s: a training step and an evaluation at batch %d\n", e->name,
                   e->recipe.batch > 0 ? e->recipe.batch : 64);
        }
        if (only) break;
    }
    size_t written = 0;
    if (!rc) {
        clg_status st = clg_program_save_all(ctx, &written);
        if (st != CLG_OK) {
            fprintf(stderr, "clgrad-info: --warm: %s: %s\n", clg_status_name(st), clg_context_errmsg(ctx));
            rc = 1;
        }
    }
    clg_context_free(ctx);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!rc)
        printf("warm: %s (%s): %zu programs written to %s in %.1f s\n", info.name, info.platform_name, written,
               dir[0] ? dir : "(cache off)", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return rc;
}

int main(int argc, char **argv) {
    bool json = false, builds = true, warming = false;
    const char *program = "tensor/tensor", *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = true;
        else if (!strcmp(argv[i], "--warm"))
            warming = true;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--no-build"))
            builds = false;
        else if (!strcmp(argv[i], "--program") && i + 1 < argc)
            program = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (model && !warming) {
        fprintf(stderr, "clgrad-info: --model goes with --warm\n");
        return 2;
    }
    if (warming) return warm(model);

    static clg_device_info devs[MAX_DEVICES];
    size_t count = 0;
    if (clg_devices_list(devs, MAX_DEVICES, &count) != CLG_OK) count = 0;
    const size_t n = count < MAX_DEVICES ? count : MAX_DEVICES;

    size_t def = 0, env_idx = 0;
    char err[2048] = "", env_err[2048] = "";
    const bool def_ok = n > 0 && clg_device_choose(NULL, &def, err, sizeof err) == CLG_OK;
    const char *env = getenv("CLGRAD_DEVICE");
    if (env && !env[0]) env = NULL;
    const bool env_ok = env && clg_device_choose(env, &env_idx, env_err, sizeof env_err) == CLG_OK;

    /* The cache folder a default context uses (CLGRAD_CACHE_DIR, XDG_CACHE_HOME, HOME). */
    char cache_dir[4096] = "", cache_err[2048] = "";
    clg_context *ctx = NULL;
    if (make_ctx(NULL, &ctx, cache_err, sizeof cache_err) == CLG_OK) {
        snprintf(cache_dir, sizeof cache_dir, "%s", clg_context_cache_dir(ctx));
        clg_context_free(ctx);
    } else if (!cache_err[0]) {
        snprintf(cache_err, sizeof cache_err, "no OpenCL device");
    }

    build_times bt;
    memset(&bt, 0, sizeof bt);
    if (builds && !cache_err[0])
        measure_builds(program, &bt);
    else if (builds)
        snprintf(bt.error, sizeof bt.error, "%s", cache_err);

    if (json)
        print_json(devs, n, def, def_ok, env, env_idx, env_ok, env_err, cache_dir, cache_err, program, &bt,
                   builds);
    else
        print_text(devs, n, def, def_ok, env, env_idx, env_ok, env_err, cache_dir, cache_err, program, &bt,
                   builds);
    /* Fails when there is nothing to run on or a requested build failed. */
    return n == 0 || cache_err[0] || (builds && !bt.done) ? 1 : 0;
}
