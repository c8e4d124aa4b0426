/* tools/clgrad-soak.c - the soak run: trains a model of the catalogue in tools/models.c (cnn by
 * default) for many steps (2,000 by default) on a small subset of Fashion-MNIST repeated, and
 * prints at intervals the pool's bytes in use and driver allocations and the process's RSS
 * (/proc/self/statm), then both curves' start and end. Exits 1 when the driver was asked
 * for memory after the warm-up steps, the pool's bytes in use changed between steps, or RSS
 * grew past a small bound after warm-up. Public API only. Test: tests/tools (suite soak).
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <clgrad.h>

#include "models.h"
#include "tool_args.h"
#include "tool_clock.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

typedef struct options {
    const char *model, *data, *device;
    const model_entry *entry;
    int steps, batch, subset, every, warmup;
    double rss_slack_mib;
    int synthetic, data_set;
} options;

#define MAX_STEPS 100000000
#define MAX_BATCH 65536
#define MAX_SUBSET 1000000


/* Resident set size in bytes (second field of /proc/self/statm, in pages), or 0. */
static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    int got = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return got == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

static void usage(FILE *f) {
    char names[256];
    model_names(names, sizeof names, "|");
    fprintf(f,
            "usage: clgrad-soak [options]\n"
            "  --model %-13s model of clgrad-train (default cnn)\n"
            "  --steps N             training steps, 2..100000000 (default 2000)\n"
            "  --batch N             batch size, 1..65536 (default 64)\n"
            "  --subset N            the first N training images, repeated, 1..1000000 (default 640)\n"
            "  --every N             print a line every N steps (default 100)\n"
            "  --warmup N            steps after which nothing may grow, below --steps (default 10)\n"
            "  --rss-slack MIB       RSS growth allowed after warm-up, finite >= 0 (default 8)\n"
            "  --data DIR            Fashion-MNIST IDX files (default " DEFAULT_DATA ")\n"
            "  --synthetic           generated images instead of the data set\n"
            "  --device CHOICE       gpu, cpu, P:D or a device-name substring\n"
            "models (trained with their default optimizer and rate):\n",
            names);
    model_print_list(f, "  ");
}

static int parse_args(int argc, char **argv, options *o) {
    *o = (options){"cnn", DEFAULT_DATA, NULL, NULL, 2000, 64, 640, 100, 10, 8.0, 0, 0};
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},  {"steps", required_argument, 0, 's'},
        {"batch", required_argument, 0, 'b'},  {"subset", required_argument, 0, 'n'},
        {"every", required_argument, 0, 'e'},  {"warmup", required_argument, 0, 'w'},
        {"rss-slack", required_argument, 0, 'r'}, {"data", required_argument, 0, 'd'},
        {"synthetic", no_argument, 0, 'S'},    {"device", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    static const char *T = "clgrad-soak";
    int c;
    long long v;
    bool ok = true;
    while (ok && (c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 's': ok = tool_parse_int(T, "--steps", optarg, 2, MAX_STEPS, &v), o->steps = (int)v; break;
        case 'b': ok = tool_parse_int(T, "--batch", optarg, 1, MAX_BATCH, &v), o->batch = (int)v; break;
        case 'n': ok = tool_parse_int(T, "--subset", optarg, 1, MAX_SUBSET, &v), o->subset = (int)v; break;
        case 'e': ok = tool_parse_int(T, "--every", optarg, 1, MAX_STEPS, &v), o->every = (int)v; break;
        case 'w': ok = tool_parse_int(T, "--warmup", optarg, 1, MAX_STEPS - 1, &v), o->warmup = (int)v; break;
        case 'r': ok = tool_parse_real(T, "--rss-slack", optarg, 0, INFINITY, &o->rss_slack_mib); break;
        case 'd': o->data = optarg, o->data_set = 1; break;
        case 'S': o->synthetic = 1; break;
        case 'D': o->device = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (!ok) return -1;
    if (optind < argc) {
        fprintf(stderr, "clgrad-soak: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!(o->entry = model_find(o->model))) {
        char names[256];
        model_names(names, sizeof names, ", ");
        fprintf(stderr, "clgrad-soak: --model must be one of %s\n", names);
        return -1;
    }
    /* the images here, from the data set or generated, are Fashion-MNIST's: 28x28 grey, 10 classes */
    if (o->entry->channels != 1 || o->entry->height != 28 || o->entry->width != 28 || o->entry->classes < 10) {
        fprintf(stderr, "clgrad-soak: model %s does not take 28x28 grey images in 10 classes\n", o->model);
        return -1;
    }
    if (o->warmup >= o->steps) {
        fprintf(stderr, "clgrad-soak: --warmup (%d) must be below --steps (%d)\n", o->warmup, o->steps);
        return -1;
    }
    if (o->synthetic && o->data_set) {
        fprintf(stderr, "clgrad-soak: --data and --synthetic exclude each other\n");
        return -1;
    }
    return 0;
}

/* The first n images (28x28, scaled to [0, 1]) and labels: from the data set, or generated
 * (a class-dependent bar on noise) with --synthetic. */
static int load_subset(const options *o, int n, float **images, int32_t **labels) {
    *images = malloc((size_t)n * 784 * sizeof **images);
    *labels = malloc((size_t)n * sizeof **labels);
    if (!*images || !*labels) return -1;
    if (o->synthetic) {
        uint32_t s = 12345;
        for (int i = 0; i < n; i++) {
            (*labels)[i] = i % 10;
            for (int p = 0; p < 784; p++) {
                s = s * 1664525u + 1013904223u;
                float noise = (float)(s >> 8) * (1.0f / 16777216.0f) * 0.3f;
                (*images)[(size_t)i * 784 + p] = noise + ((p / 28) / 3 == i % 10 ? 0.7f : 0.0f);
            }
        }
        return 0;
    }
    char path[4096], err[512] = "";
    clg_idx img = {0}, lab = {0};
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", o->data);
    if (access(path, R_OK) != 0) snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", o->data);
    if (clg_idx_read(path, &img, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "clgrad-soak: %s: %s (or use --synthetic)\n", path, err);
        return -1;
    }
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", o->data);
    if (access(path, R_OK) != 0) snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", o->data);
    if (clg_idx_read(path, &lab, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "clgrad-soak: %s: %s\n", path, err);
        clg_idx_free(&img);
        return -1;
    }
    int rc = 0;
    if (img.ndim != 3 || img.dims[1] != 28 || img.dims[2] != 28 || lab.ndim != 1 || img.dims[0] < n ||
        lab.dims[0] < n) {
        fprintf(stderr, "clgrad-soak: expected at least %d 28x28 images with labels\n", n);
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        if (lab.data[i] > 9) {
            fprintf(stderr, "clgrad-soak: label %d of image %d is not a class\n", lab.data[i], i);
            rc = -1;
        }
        (*labels)[i] = lab.data[i];
        for (int p = 0; p < 784; p++)
            (*images)[(size_t)i * 784 + p] = (float)img.data[(size_t)i * 784 + p] * (1.0f / 255.0f);
    }
    clg_idx_free(&img);
    clg_idx_free(&lab);
    return rc;
}

typedef struct sample {
    int step;
    double loss, seconds;
    clg_pool_stats pool;
    size_t rss;
} sample;

static void print_sample(const sample *s) {
    printf("step %5d  loss %.4f  pool in_use %9zu B  cached %9zu B  driver_allocs %4llu  rss %7.1f MiB  %.1f s\n",
           s->step, s->loss, s->pool.bytes_in_use, s->pool.bytes_cached,
           (unsigned long long)s->pool.driver_allocs, (double)s->rss / (1 << 20), s->seconds);
    fflush(stdout);
}

int main(int argc, char **argv) {
    options o;
    if (parse_args(argc, argv, &o)) return 2;
    float *images = NULL;
    int32_t *labels = NULL;
    const int n_img = o.subset;
    if (load_subset(&o, n_img, &images, &labels)) return 2;

    clg_context_params cp = clg_context_default_params();
    cp.device = o.device;
    clg_context *ctx = NULL;
    char err[2048] = "";
    clg_status st = clg_context_create(&cp, &ctx, err, sizeof err);
    if (st != CLG_OK) {
        fprintf(stderr, "clgrad-soak: %s: %s\n", clg_status_name(st), err);
        return 2;
    }
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    clg_module *model = NULL;
    clg_optimizer *opt = NULL;
    st = o.entry->build(ctx, 1, &model);
    /* clgrad-train's defaults */
    if (st == CLG_OK)
        st = model_optimizer_create(ctx, model, o.entry->optimizer, o.entry->lr, MODEL_SGD_MOMENTUM, 0.0, &opt);
    float *x = malloc((size_t)o.batch * 784 * sizeof *x);
    int32_t *y = malloc((size_t)o.batch * sizeof *y);
    if (st != CLG_OK || !x || !y) {
        fprintf(stderr, "clgrad-soak: setup: %s\n", st != CLG_OK ? clg_context_errmsg(ctx) : "out of memory");
        return 2;
    }
    printf("clgrad-soak: %s on %s (%s), %d steps of batch %d over %d %s images\n", o.model, info.name,
           info.platform_name, o.steps, o.batch, n_img, o.synthetic ? "synthetic" : "Fashion-MNIST");

    sample first = {0}, warm = {0}, last = {0};
    size_t rss_max_after_warm = 0;
    int pool_changed_at = 0;
    const double t0 = tool_now_seconds();
    int cursor = 0;
    for (int step = 1; step <= o.steps && st == CLG_OK; step++) {
        for (int i = 0; i < o.batch; i++, cursor = (cursor + 1) % n_img) {
            memcpy(x + (size_t)i * 784, images + (size_t)cursor * 784, 784 * sizeof *x);
            y[i] = labels[cursor];
        }
        const int shape[4] = {o.batch, 1, 28, 28};
        clg_tensor *xt = NULL, *logits = NULL, *loss = NULL;
        double l = 0;
        st = clg_tensor_from_host(ctx, CLG_F32, 4, shape, x, &xt);
        if (st == CLG_OK) st = clg_module_forward(ctx, model, xt, &logits);
        if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, logits, y, (size_t)o.batch, &loss);
        if (st == CLG_OK) st = clg_backward(ctx, loss);
        if (st == CLG_OK) st = clg_optimizer_step(opt);
        if (st == CLG_OK) st = clg_tensor_item(loss, &l);
        clg_optimizer_zero_grad(opt);
        clg_tensor_free(loss);
        clg_tensor_free(logits);
        clg_tensor_free(xt);
        if (st != CLG_OK) break;

        /* Between steps: everything the step made is back in the pool. */
        sample s = {step, l, tool_now_seconds() - t0, clg_context_pool_stats(ctx), rss_bytes()};
        if (step == 1) first = s;
        if (step == o.warmup) warm = s;
        if (step > o.warmup) {
            if (s.rss > rss_max_after_warm) rss_max_after_warm = s.rss;
            if (!pool_changed_at && s.pool.bytes_in_use != warm.pool.bytes_in_use) pool_changed_at = step;
        }
        last = s;
        if (step == 1 || step == o.warmup || step % o.every == 0 || step == o.steps) print_sample(&s);
    }
    if (st != CLG_OK) {
        fprintf(stderr, "clgrad-soak: step %d: %s: %s\n", last.step + 1, clg_status_name(st), clg_context_errmsg(ctx));
        return 2;
    }

    const double rss_growth = ((double)rss_max_after_warm - (double)warm.rss) / (1 << 20);
    printf("pool bytes in use: %zu at step 1, %zu at step %d, %zu at step %d\n", first.pool.bytes_in_use,
           warm.pool.bytes_in_use, o.warmup, last.pool.bytes_in_use, last.step);
    printf("driver allocations: %llu at step 1, %llu at step %d, %llu at step %d\n",
           (unsigned long long)first.pool.driver_allocs, (unsigned long long)warm.pool.driver_allocs, o.warmup,
           (unsigned long long)last.pool.driver_allocs, last.step);
    printf("rss: %.1f MiB at step 1, %.1f MiB at step %d, %.1f MiB at step %d (max after warm-up %+.2f MiB)\n",
           (double)first.rss / (1 << 20), (double)warm.rss / (1 << 20), o.warmup, (double)last.rss / (1 << 20),
           last.step, rss_growth);
    printf("loss: %.4f at step 1, %.4f at step %d; %.1f ms per step\n", first.loss, last.loss, last.step,
           1e3 * last.seconds / last.step);

    int rc = 0;
    if (last.pool.driver_allocs != warm.pool.driver_allocs) {
        printf("FAIL: %llu driver allocations after step %d\n",
               (unsigned long long)(last.pool.driver_allocs - warm.pool.driver_allocs), o.warmup);
        rc = 1;
    }
    if (pool_changed_at) {
        printf("FAIL: pool bytes in use changed between steps (first at step %d)\n", pool_changed_at);
        rc = 1;
    }
    if (rss_growth > o.rss_slack_mib) {
        printf("FAIL: RSS grew %.2f MiB after step %d (allowed %.2f)\n", rss_growth, o.warmup, o.rss_slack_mib);
        rc = 1;
    }
    if (rc == 0) printf("soak: OK\n");
    clg_optimizer_free(opt);
    clg_module_free(model);
    clg_context_free(ctx);
    free(x);
    free(y);
    free(images);
    free(labels);
    return rc;
}
