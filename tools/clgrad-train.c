/* tools/clgrad-train.c - the main job: trains a model of the catalogue (tools/models.c) on an
 * IDX image set (Fashion-MNIST by default) on the chosen device, with a progress bar, one
 * line per epoch, optional CSV metrics and safetensors checkpoints. Public API only.
 * The last line is always `test_accuracy=0.xxxx`. Tests: tests/tools/test_train.sh.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
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
    const char *model, *optimizer, *data, *device, *save, *load, *metrics;
    int epochs, batch, limit, test_limit;
    double lr, momentum, weight_decay;
    unsigned long long seed;
    int no_shuffle, eval_only, list_models, json, allow_nonfinite;
    bool lr_set, momentum_set;
    const model_entry *entry;
} options;

typedef struct dataset {
    clg_idx images, labels;
    int n, h, w;
} dataset;

/* The exit status when the training loss became NaN or infinite (1: other failures, 2: bad
 * usage). */
#define EXIT_NONFINITE 3
/* Ranges of the numeric options: a batch that big would not fit a host buffer anyway. */
#define MAX_EPOCHS 1000000
#define MAX_BATCH (1 << 20)

static void usage(FILE *f) {
    char names[256];
    model_names(names, sizeof names, "|");
    fprintf(f,
            "usage: clgrad-train [options]\n"
            "  --model %-15s model (default cnn)\n"
            "  --list-models [--json]  the models, with --json also their state names and shapes\n"
            "  --epochs N              epochs, 0..%d (default 5; 0 only evaluates)\n"
            "  --batch N               batch size, 1..%d (default 64)\n"
            "  --optimizer sgd|adam    default: the model's (below)\n"
            "  --lr X                  >= 0; default: the model's with its optimizer, else the optimizer's\n"
            "  --momentum X            SGD momentum in [0, 1] (default 0.9)\n"
            "  --weight-decay X        >= 0 (default 0)\n"
            "  --seed N                initialisation, shuffling and dropout seed (default 1)\n"
            "  --limit N               use the first N training images (0: all)\n"
            "  --test-limit N          use the first N test images (0: all)\n"
            "  --no-shuffle            fixed order: the same batches every run\n"
            "  --data DIR              IDX files (default " DEFAULT_DATA ")\n"
            "  --device CHOICE         gpu, cpu, P:D or a device-name substring\n"
            "  --save FILE             write a safetensors checkpoint after each epoch (never one\n"
            "                          holding NaN or infinity: the last finite one stays)\n"
            "  --load FILE             start from a safetensors checkpoint\n"
            "  --eval-only             only evaluate (use with --load)\n"
            "  --metrics FILE.csv      per-epoch metrics as CSV\n"
            "  --allow-nonfinite       go on when the training loss becomes NaN or infinite\n"
            "                          (else training stops there, exit status %d)\n"
            "models:\n",
            names, MAX_EPOCHS, MAX_BATCH, EXIT_NONFINITE);
    model_print_list(f, "  ");
}

static int parse_args(int argc, char **argv, options *o) {
    *o = (options){"cnn", NULL, DEFAULT_DATA, NULL, NULL, NULL, NULL, 5, 64, 0, 0, 0, MODEL_SGD_MOMENTUM,
                   0, 1, 0, 0, 0, 0, 0, false, false, NULL};
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},     {"epochs", required_argument, 0, 'e'},
        {"batch", required_argument, 0, 'b'},     {"lr", required_argument, 0, 'l'},
        {"momentum", required_argument, 0, 'M'},  {"optimizer", required_argument, 0, 'o'},
        {"weight-decay", required_argument, 0, 'w'}, {"seed", required_argument, 0, 's'},
        {"limit", required_argument, 0, 'n'},     {"test-limit", required_argument, 0, 't'},
        {"no-shuffle", no_argument, 0, 'N'},      {"data", required_argument, 0, 'd'},
        {"device", required_argument, 0, 'D'},    {"save", required_argument, 0, 'S'},
        {"load", required_argument, 0, 'L'},      {"eval-only", no_argument, 0, 'E'},
        {"metrics", required_argument, 0, 'C'},   {"help", no_argument, 0, 'h'},
        {"list-models", no_argument, 0, 'Z'},     {"json", no_argument, 0, 'J'},
        {"allow-nonfinite", no_argument, 0, 'F'}, {0, 0, 0, 0}};
    static const char *T = "clgrad-train";
    int c;
    long long v;
    bool ok = true;
    while (ok && (c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'e': ok = tool_parse_int(T, "--epochs", optarg, 0, MAX_EPOCHS, &v), o->epochs = (int)v; break;
        case 'b': ok = tool_parse_int(T, "--batch", optarg, 1, MAX_BATCH, &v), o->batch = (int)v; break;
        case 'l': ok = tool_parse_real(T, "--lr", optarg, 0, INFINITY, &o->lr), o->lr_set = true; break;
        case 'M': ok = tool_parse_real(T, "--momentum", optarg, 0, 1, &o->momentum), o->momentum_set = true; break;
        case 'o': o->optimizer = optarg; break;
        case 'w': ok = tool_parse_real(T, "--weight-decay", optarg, 0, INFINITY, &o->weight_decay); break;
        case 's': ok = tool_parse_u64(T, "--seed", optarg, &o->seed); break;
        case 'n': ok = tool_parse_int(T, "--limit", optarg, 0, INT_MAX, &v), o->limit = (int)v; break;
        case 't': ok = tool_parse_int(T, "--test-limit", optarg, 0, INT_MAX, &v), o->test_limit = (int)v; break;
        case 'N': o->no_shuffle = 1; break;
        case 'd': o->data = optarg; break;
        case 'D': o->device = optarg; break;
        case 'S': o->save = optarg; break;
        case 'L': o->load = optarg; break;
        case 'E': o->eval_only = 1; break;
        case 'C': o->metrics = optarg; break;
        case 'Z': o->list_models = 1; break;
        case 'J': o->json = 1; break;
        case 'F': o->allow_nonfinite = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (!ok) return -1;
    if (optind < argc) {
        fprintf(stderr, "clgrad-train: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->json && !o->list_models) {
        fprintf(stderr, "clgrad-train: --json goes with --list-models only\n");
        return -1;
    }
    if (!(o->entry = model_find(o->model))) {
        char names[256];
        model_names(names, sizeof names, ", ");
        fprintf(stderr, "clgrad-train: --model must be one of %s, not '%s'\n", names, o->model);
        return -1;
    }
    if (!o->optimizer) o->optimizer = o->entry->optimizer;
    if (strcmp(o->optimizer, "sgd") && strcmp(o->optimizer, "adam")) {
        fprintf(stderr, "clgrad-train: --optimizer must be sgd or adam, not '%s'\n", o->optimizer);
        return -1;
    }
    if (o->momentum_set && strcmp(o->optimizer, "sgd")) {
        fprintf(stderr, "clgrad-train: --momentum is SGD's; the optimizer is %s\n", o->optimizer);
        return -1;
    }
    /* the model's rate belongs to its own optimizer; another optimizer keeps its own default */
    if (!o->lr_set)
        o->lr = !strcmp(o->optimizer, o->entry->optimizer) ? o->entry->lr
                : !strcmp(o->optimizer, "sgd")             ? clg_sgd_default_params().lr
                                                           : clg_adam_default_params().lr;
    /* Outputs only a training run writes; where they go is checked now, not after an epoch. */
    const bool trains = !o->eval_only && o->epochs > 0;
    if ((o->save || o->metrics || o->allow_nonfinite) && !trains && !o->list_models) {
        fprintf(stderr, "clgrad-train: --save, --metrics and --allow-nonfinite need training (--epochs >= 1, "
                        "no --eval-only)\n");
        return -1;
    }
    if (o->save && !tool_check_writable(T, "--save", o->save)) return -1;
    if (o->metrics && !tool_check_writable(T, "--metrics", o->metrics)) return -1;
    return 0;
}

/* Reads <dir>/<stem>-images-idx3-ubyte[.gz] (ndim 3) or <stem>-labels-idx1-ubyte[.gz]. */
static int read_idx(const char *dir, const char *stem, int ndim, clg_idx *out) {
    const char *suffix[] = {"images-idx3-ubyte.gz", "labels-idx1-ubyte.gz", "images-idx3-ubyte", "labels-idx1-ubyte"};
    char path[4096], err[512] = "";
    for (int i = 0; i < 4; i++) {
        if ((ndim == 3) != (i % 2 == 0)) continue;
        snprintf(path, sizeof path, "%s/%s-%s", dir, stem, suffix[i]);
        if (access(path, R_OK) != 0) continue;
        clg_status st = clg_idx_read(path, out, err, sizeof err);
        if (st != CLG_OK) {
            fprintf(stderr, "clgrad-train: %s: %s\n", path, err);
            return -1;
        }
        if (out->ndim != ndim) {
            fprintf(stderr, "clgrad-train: %s has %d dimensions, expected %d\n", path, out->ndim, ndim);
            clg_idx_free(out);
            return -1;
        }
        return 0;
    }
    fprintf(stderr, "clgrad-train: no %s-%s[.gz] in %s", stem, ndim == 3 ? "images-idx3-ubyte" : "labels-idx1-ubyte", dir);
    if (!strcmp(dir, DEFAULT_DATA)) fprintf(stderr, " (install it: apt-get install dataset-fashion-mnist)");
    fprintf(stderr, "\n");
    return -1;
}

static int load_set(const char *dir, const char *prefix, int limit, const model_entry *m, dataset *d) {
    memset(d, 0, sizeof *d);
    if (read_idx(dir, prefix, 3, &d->images) || read_idx(dir, prefix, 1, &d->labels)) {
        clg_idx_free(&d->images);
        return -1;
    }
    if (d->images.dims[0] != d->labels.dims[0]) {
        fprintf(stderr, "clgrad-train: %s: %d images but %d labels\n", prefix, d->images.dims[0], d->labels.dims[0]);
        return -1;
    }
    d->n = d->images.dims[0];
    d->h = d->images.dims[1];
    d->w = d->images.dims[2];
    /* IDX images are one grey channel */
    if (m->channels != 1 || d->h != m->height || d->w != m->width) {
        fprintf(stderr, "clgrad-train: images are 1x%dx%d; model %s takes %dx%dx%d\n", d->h, d->w, m->name,
                m->channels, m->height, m->width);
        return -1;
    }
    for (int i = 0; i < d->n; i++)
        if (d->labels.data[i] >= m->classes) {
            fprintf(stderr, "clgrad-train: label %d of image %d is not a class 0..%d\n", d->labels.data[i], i,
                    m->classes - 1);
            return -1;
        }
    if (limit > 0 && limit < d->n) d->n = limit;
    return 0;
}

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fisher-Yates with a generator seeded by (seed, epoch): reproducible by seed. */
static void shuffle(int *order, int n, uint64_t seed, int epoch) {
    uint64_t state = mix(seed * 1000003u + (uint64_t)epoch);
    for (int i = n - 1; i > 0; i--) {
        state = mix(state);
        int j = (int)(state % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

typedef struct batch_result {
    double loss_sum; /* sum over the batch (mean * n) */
    int correct;
    double last; /* the last batch's mean loss */
} batch_result;

static int fail(clg_context *ctx, const char *what, clg_status st) {
    fprintf(stderr, "clgrad-train: %s: %s: %s\n", what, clg_status_name(st), clg_context_errmsg(ctx));
    return -1;
}

/* Runs one batch; trains when opt is not NULL. */
static int run_batch(clg_context *ctx, clg_module *model, int classes, clg_optimizer *opt, const dataset *d,
                     const int *idx, int n, float *xbuf, int32_t *ybuf, float *logits, batch_result *r) {
    const int pixels = d->h * d->w;
    for (int i = 0; i < n; i++) {
        const unsigned char *img = d->images.data + (size_t)idx[i] * (size_t)pixels;
        for (int p = 0; p < pixels; p++) xbuf[(size_t)i * pixels + p] = (float)img[p] * (1.0f / 255.0f);
        ybuf[i] = d->labels.data[idx[i]];
    }
    int shape[4] = {n, 1, d->h, d->w};
    clg_tensor *x = NULL, *y = NULL, *loss = NULL;
    clg_status st = clg_tensor_from_host(ctx, CLG_F32, 4, shape, xbuf, &x);
    if (st == CLG_OK) st = clg_module_forward(ctx, model, x, &y);
    if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, y, ybuf, (size_t)n, &loss);
    if (st == CLG_OK && opt) st = clg_backward(ctx, loss);
    if (st == CLG_OK && opt) st = clg_optimizer_step(opt);
    if (opt) clg_optimizer_zero_grad(opt);
    double l = 0;
    if (st == CLG_OK) st = clg_tensor_item(loss, &l);
    if (st == CLG_OK) st = clg_tensor_to_host(y, logits, (size_t)n * (size_t)classes * sizeof(float));
    clg_tensor_free(loss);
    clg_tensor_free(y);
    clg_tensor_free(x);
    if (st != CLG_OK) return fail(ctx, opt ? "training step" : "evaluation", st);
    r->loss_sum += l * n;
    r->last = l;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < classes; c++)
            if (logits[i * classes + c] > logits[i * classes + best]) best = c;
        r->correct += best == ybuf[i];
    }
    return 0;
}

static int evaluate(clg_context *ctx, clg_module *model, int classes, const dataset *d, float *xbuf,
                    int32_t *ybuf, float *logits, int bs, double *loss, double *acc) {
    bool was = clg_set_grad_enabled(ctx, false);
    clg_module_train(model, false);
    batch_result r = {0, 0, 0};
    int *idx = malloc((size_t)bs * sizeof *idx);
    int rc = idx ? 0 : -1;
    for (int start = 0; rc == 0 && start < d->n; start += bs) {
        int n = d->n - start < bs ? d->n - start : bs;
        for (int i = 0; i < n; i++) idx[i] = start + i;
        rc = run_batch(ctx, model, classes, NULL, d, idx, n, xbuf, ybuf, logits, &r);
    }
    free(idx);
    clg_set_grad_enabled(ctx, was);
    clg_module_train(model, true);
    *loss = r.loss_sum / d->n;
    *acc = (double)r.correct / d->n;
    return rc;
}

static void progress(bool tty, int epoch, int epochs, int done, int total, double t0, double loss) {
    double el = tool_now_seconds() - t0, ips = el > 0 ? done / el : 0, eta = ips > 0 ? (total - done) / ips : 0;
    if (tty) {
        int width = 30, fill = total ? (int)((long)width * done / total) : width;
        fprintf(stderr, "\repoch %d/%d [", epoch, epochs);
        for (int i = 0; i < width; i++) fputc(i < fill ? '=' : (i == fill ? '>' : ' '), stderr);
        fprintf(stderr, "] %d/%d %.0f img/s loss %.4f ETA %.0fs ", done, total, ips, loss, eta);
        fflush(stderr);
    } else {
        printf("epoch %d/%d %d/%d images %.0f img/s loss %.4f eta %.0fs\n", epoch, epochs, done, total, ips, loss, eta);
        fflush(stdout);
    }
}

/* Rewrites the whole CSV through a temp file + rename, so a crash never leaves half a file.
 * The temp name is one per path ("<path>.tmp"), so a killed run leaves at most that one, which
 * the next write replaces. */
static int write_metrics(const char *path, const char *rows) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    int ok = fputs("epoch,train_loss,train_accuracy,test_loss,test_accuracy,images_per_s,seconds\n", f) >= 0 &&
             fputs(rows, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

static clg_context *open_context(const char *device) {
    clg_context_params cp = clg_context_default_params();
    cp.device = device;
    clg_context *ctx = NULL;
    char err[2048];
    clg_status st = clg_context_create(&cp, &ctx, err, sizeof err);
    if (st != CLG_OK) fprintf(stderr, "clgrad-train: %s: %s\n", clg_status_name(st), err);
    return ctx;
}

/* --list-models: the catalogue; with --json also each model's state (names and shapes, in
 * state_dict order), which needs a context to build the models on. */
static int list_models(const options *o) {
    if (!o->json) {
        model_print_list(stdout, "");
        return 0;
    }
    clg_context *ctx = open_context(o->device);
    if (!ctx) return 1;
    int rc = 0;
    printf("{\"models\": [");
    for (int i = 0; i < model_count && !rc; i++) {
        const model_entry *e = &model_catalogue[i];
        clg_module *m = NULL;
        clg_named_tensor state[256];
        size_t n = 0;
        clg_status st = e->build(ctx, 1, &m);
        if (st == CLG_OK && (n = clg_module_state(m, state, 256)) > 256) st = CLG_INVALID_ARGUMENT;
        if (st != CLG_OK) {
            rc = fail(ctx, e->name, st);
            clg_module_free(m);
            break;
        }
        printf("%s\n  {\"name\": \"%s\", \"optimizer\": \"%s\", \"lr\": %.17g, \"input\": [%d, %d, %d], "
               "\"classes\": %d, \"state\": [",
               i ? "," : "", e->name, e->optimizer, e->lr, e->channels, e->height, e->width, e->classes);
        for (size_t j = 0; j < n; j++) {
            const int nd = clg_tensor_ndim(state[j].tensor);
            const int *shape = clg_tensor_shape(state[j].tensor);
            printf("%s\n    {\"name\": \"%s\", \"shape\": [", j ? "," : "", state[j].name);
            for (int d = 0; d < nd; d++) printf("%s%d", d ? ", " : "", shape[d]);
            printf("], \"trainable\": %s}", state[j].trainable ? "true" : "false");
        }
        printf("]}");
        clg_module_free(m);
    }
    printf("\n]}\n");
    clg_context_free(ctx);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    double t_start = tool_now_seconds();
    options o;
    if (parse_args(argc, argv, &o)) return 2;
    if (o.list_models) return list_models(&o);

    dataset train = {0}, test = {0};
    if ((!o.eval_only && load_set(o.data, "train", o.limit, o.entry, &train)) ||
        load_set(o.data, "t10k", o.test_limit, o.entry, &test))
        return 1;
    const int classes = o.entry->classes, pixels = o.entry->channels * o.entry->height * o.entry->width;

    clg_context *ctx = open_context(o.device);
    if (!ctx) return 1;
    clg_status st;
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    printf("device: %s (%s)\n", info.name, info.platform_name);

    clg_module *model = NULL;
    clg_optimizer *opt = NULL;
    int rc = 1;
    const int bs = o.batch, eval_bs = 500 > bs ? 500 : bs;
    float *xbuf = malloc((size_t)eval_bs * (size_t)pixels * sizeof *xbuf);
    float *logits = malloc((size_t)eval_bs * (size_t)classes * sizeof *logits);
    int32_t *ybuf = malloc((size_t)eval_bs * sizeof *ybuf);
    int *order = train.n ? malloc((size_t)train.n * sizeof *order) : NULL;
    char *rows = calloc(1, 1);
    if (!xbuf || !logits || !ybuf || (train.n && !order) || !rows) {
        fprintf(stderr, "clgrad-train: out of memory\n");
        goto done;
    }
    if ((st = o.entry->build(ctx, o.seed, &model))) {
        fail(ctx, "model", st);
        goto done;
    }
    if (o.load && (st = clg_module_load(ctx, model, o.load))) {
        fail(ctx, o.load, st);
        goto done;
    }
    if ((st = model_optimizer_create(ctx, model, o.optimizer, o.lr, o.momentum, o.weight_decay, &opt))) {
        fail(ctx, "optimizer", st);
        goto done;
    }
    printf("model %s, %s lr %g, batch %d, %d training and %d test images\n", o.model, o.optimizer, o.lr, bs,
           train.n, test.n);

    double test_loss = 0, test_acc = 0;
    if (o.eval_only || o.epochs == 0) {
        if (evaluate(ctx, model, classes, &test, xbuf, ybuf, logits, eval_bs, &test_loss, &test_acc)) goto done;
        printf("test_loss=%.6f\ntest_accuracy=%.4f\n", test_loss, test_acc);
        rc = 0;
        goto done;
    }
    bool tty = isatty(fileno(stderr)) && isatty(fileno(stdout));
    for (int i = 0; i < train.n; i++) order[i] = i;
    clg_module_train(model, true);
    bool first_step = true, nonfinite = false;
    int saved_epoch = 0;
    for (int epoch = 1; epoch <= o.epochs; epoch++) {
        if (!o.no_shuffle) shuffle(order, train.n, o.seed, epoch);
        double t0 = tool_now_seconds(), last_shown = t0;
        batch_result r = {0, 0, 0};
        int done_n = 0, next_line = train.n / 10;
        for (int start = 0; start < train.n; start += bs) {
            int n = train.n - start < bs ? train.n - start : bs;
            if (run_batch(ctx, model, classes, opt, &train, order + start, n, xbuf, ybuf, logits, &r)) goto done;
            done_n += n;
            /* A NaN or infinite loss: the step just taken spread it into the parameters, and
             * every later step trains on garbage. Stop, unless told to go on. */
            if (!isfinite(r.last) && !nonfinite) {
                nonfinite = true;
                if (tty) fprintf(stderr, "\r%*s\r", 110, "");
                fprintf(stderr, "clgrad-train: the training loss is %g at epoch %d, batch %d (images %d..%d of the "
                        "epoch)", r.last, epoch, start / bs + 1, start, start + n - 1);
                if (!o.allow_nonfinite) {
                    fprintf(stderr, ": stopping (the parameters are no longer finite; lower --lr, or "
                            "--allow-nonfinite to go on)");
                    if (o.save && saved_epoch)
                        fprintf(stderr, "; %s holds epoch %d", o.save, saved_epoch);
                    else if (o.save)
                        fprintf(stderr, "; nothing saved to %s (as it was before this run)", o.save);
                    fprintf(stderr, "\n");
                    rc = EXIT_NONFINITE;
                    goto done;
                }
                fprintf(stderr, ": going on (--allow-nonfinite)\n");
            }
            if (first_step) {
                printf("first step done %.2f s after start (cold start: data, device, kernel builds)\n", tool_now_seconds() - t_start);
                first_step = false;
            }
            double t = tool_now_seconds();
            if ((tty && t - last_shown > 0.2) || (!tty && done_n >= next_line && done_n < train.n)) {
                progress(tty, epoch, o.epochs, done_n, train.n, t0, r.loss_sum / done_n);
                last_shown = t;
                next_line += train.n / 10 > 0 ? train.n / 10 : 1;
            }
        }
        double secs = tool_now_seconds() - t0, ips = train.n / secs;
        if (tty) fprintf(stderr, "\r%*s\r", 110, "");
        if (evaluate(ctx, model, classes, &test, xbuf, ybuf, logits, eval_bs, &test_loss, &test_acc)) goto done;
        double train_loss = r.loss_sum / train.n, train_acc = (double)r.correct / train.n;
        printf("epoch %d train_loss %.4f train_accuracy %.4f test_loss %.4f test_accuracy %.4f images/s %.0f seconds %.1f\n",
               epoch, train_loss, train_acc, test_loss, test_acc, ips, secs);
        fflush(stdout);
        if (o.metrics) {
            char row[256];
            snprintf(row, sizeof row, "%d,%.6f,%.6f,%.6f,%.6f,%.1f,%.3f\n", epoch, train_loss, train_acc, test_loss,
                     test_acc, ips, secs);
            char *grown = realloc(rows, strlen(rows) + strlen(row) + 1);
            if (!grown) goto done;
            rows = grown;
            strcat(rows, row);
            if (write_metrics(o.metrics, rows)) {
                fprintf(stderr, "clgrad-train: cannot write %s\n", o.metrics);
                goto done;
            }
        }
        if (o.save) {
            st = clg_module_save(ctx, model, o.save);
            if (st == CLG_INVALID_ARGUMENT && nonfinite) {
                /* refused by the library: NaN or infinity in the state; the good file stays */
                fprintf(stderr, "clgrad-train: epoch %d not saved: %s; %s\n", epoch, clg_context_errmsg(ctx),
                        saved_epoch ? "the file holds the last finite epoch" : "no finite epoch to save");
            } else if (st) {
                fail(ctx, o.save, st);
                goto done;
            } else {
                saved_epoch = epoch;
            }
        }
    }
    printf("test_loss=%.6f\ntest_accuracy=%.4f\n", test_loss, test_acc);
    rc = 0;
done:
    clg_optimizer_free(opt);
    clg_module_free(model);
    clg_context_free(ctx);
    clg_idx_free(&train.images);
    clg_idx_free(&train.labels);
    clg_idx_free(&test.images);
    clg_idx_free(&test.labels);
    free(xbuf);
    free(logits);
    free(ybuf);
    free(order);
    free(rows);
    return rc;
}
