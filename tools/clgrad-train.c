/* tools/clgrad-train.c - the main job: trains a model of the catalogue (tools/models.c) on an
 * IDX image set (Fashion-MNIST by default) or an image folder (tools/train_data.c) on the chosen
 * device, with a progress bar, one line per epoch, optional CSV metrics and safetensors
 * checkpoints. Public API only. The last line is always `test_accuracy=0.xxxx`.
 * Tests: tests/tools/test_train.sh, test_train_images.sh, test_cli.sh.
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
#ifdef CLG_HAVE_MPI
#include <clgrad/dist.h>
#else
typedef struct clg_dist clg_dist; /* never made without MPI */
#endif

#include "models.h"
#ifdef CLG_HAVE_PLOT
#include "plot.h" /* --plot: tools/plot.c, cairo */
#endif
#include "tool_args.h"
#include "tool_clock.h"
#include "tool_profile.h"
#include "train_data.h"

#define DEFAULT_DATA TRAIN_DATA_DEFAULT_DIR

typedef struct options {
    const char *model, *optimizer, *data, *device, *save, *load, *metrics, *plot;
    int epochs, batch, limit, test_limit;
    double lr, momentum, weight_decay;
    unsigned long long seed;
    int no_shuffle, eval_only, list_models, json, allow_nonfinite;
    bool lr_set, momentum_set;
    const model_entry *entry;
    /* the training recipe (defaults: the model's, tools/models.c) */
    const char *schedule;    /* none | cosine */
    double warmup_epochs, clip_grad_norm;
    double label_smoothing; /* training's cross-entropy only; evaluation reports the plain one */
    int augment;             /* -1: the model's recipe, 0 off, 1 on */
    int nesterov;            /* -1: the model's recipe */
    int blocks;              /* resnet's blocks per stage */
    bool batch_set, wd_set;
    /* resume */
    const char *checkpoint, *resume, *profile;
    long long save_every;    /* optimizer steps between training-state saves (0: at epoch ends) */
    int distributed;         /* data-parallel over the MPI ranks (mpirun) */
    int sync_bn;             /* --sync-bn: batch-norm statistics over every rank's batch */
    int no_prefetch;         /* prepare batches on the training thread (to measure the prefetch) */
    /* image folders (--data DIR of class folders) */
    double holdout;          /* share of each class held out without test/ or val/ */
    bool holdout_set;
    int skip_bad;            /* --bad-files skip */
    int channels;            /* 0: the first image's */
    int height, width;       /* --image-size; 0: one size required */
} options;

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
            "Trains a model on images (Fashion-MNIST, another IDX set, or a folder of PNG/JPEG images)\n"
            "on an OpenCL device with the model's recipe, and evaluates it on the test set after every\n"
            "epoch. Every option is optional.\n"
            "model and training:\n"
            "  --model %-15s model (default cnn; the list is below)\n"
            "  --list-models [--json]  the models, with --json also their state names and shapes\n"
            "  --epochs N              epochs, 0..%d (default 5; 0 only evaluates)\n"
            "  --batch N               batch size, 1..%d (default: the model's, 64; resnet 128)\n"
            "  --optimizer sgd|adam    default: the model's (below)\n"
            "  --lr X                  >= 0; default: the model's with its optimizer, else the optimizer's\n"
            "  --momentum X            SGD momentum in [0, 1] (default 0.9)\n"
            "  --weight-decay X        >= 0 (default: the model's, 0; resnet 5e-4)\n"
            "  --seed N                initialisation, shuffling, dropout and holdout seed (default 1)\n"
            "  --no-shuffle            fixed order: the same batches every run\n"
            "  --device CHOICE         gpu, cpu, P:D (platform:device) or a device-name substring\n"
            "                          (default: CLGRAD_DEVICE, else the first GPU, else a CPU)\n"
            "  --load FILE             start from a safetensors checkpoint\n"
            "  --eval-only             only evaluate (use with --load)\n"
            "  --allow-nonfinite       go on when the training loss becomes NaN or infinite\n"
            "                          (else training stops there, exit status %d)\n",
            names, MAX_EPOCHS, MAX_BATCH, EXIT_NONFINITE);
    fprintf(f,
            "data (formats below):\n"
            "  --data DIR              IDX files or an image folder (default " DEFAULT_DATA ")\n"
            "  --limit N               use N training images (0: all, the default); the first N of an\n"
            "                          IDX set, a draw from --seed in an image folder\n"
            "  --test-limit N          likewise for the test images\n"
            "  --holdout F             image folder without test/ or val/: the share of every class held\n"
            "                          out as the test set, in (0, 1) (default %g, drawn from --seed)\n"
            "  --bad-files fail|skip   image folder: a file that cannot be used (unreadable, corrupt,\n"
            "                          truncated, PNG data named .jpg or the reverse, another size)\n"
            "                          ends the run with a message naming it (fail, the default), or is\n"
            "                          left out with that message and the run goes on (skip)\n"
            "  --image-size HxW        image folder: resize every image to H x W pixels (bilinear);\n"
            "                          default: every image must have the first one's size\n"
            "  --channels 1|3          image folder: convert every image to grey (1) or RGB (3);\n"
            "                          default: 1 when the first image is grey, else 3\n"
            "outputs:\n"
            "  --save FILE             write a safetensors checkpoint after each epoch (never one\n"
            "                          holding NaN or infinity: the last finite one stays)\n"
            "  --metrics FILE.csv      per-epoch metrics as CSV (epoch,train_loss,train_accuracy,\n"
            "                          test_loss,test_accuracy,images_per_s,seconds), rewritten each epoch,\n"
            "                          and each step's loss in FILE.steps.csv (epoch,loss) for clgrad-plot\n"
            "  --plot FILE.png|.svg    training curves, redrawn after every epoch (builds with cairo)\n",
            TRAIN_DATA_DEFAULT_HOLDOUT);
    fprintf(f,
            "training recipe (defaults: the model's; resnet: batch 128, SGD nesterov, weight decay\n"
            "5e-4 on weights only, 0.5 epoch warm-up then cosine, crop + flip, normalised inputs):\n"
            "  --lr-schedule none|cosine  per step: cosine decays to 0 at the last step\n"
            "  --warmup EPOCHS         linear warm-up from 1%% of the rate (fractions allowed)\n"
            "  --clip-grad-norm X      clip the gradients' global 2-norm to X (> 0; default: no clipping)\n"
            "  --label-smoothing X     training loss: cross-entropy with label smoothing X in [0, 1] as\n"
            "                          PyTorch's (default 0); test_loss stays the plain cross-entropy\n"
            "  --augment / --no-augment  random crop (2 px zero padding) and horizontal flip\n"
            "  --no-prefetch           prepare each batch on the training thread (default: the next\n"
            "                          batch is prepared on a worker thread during the step)\n"
            "  --nesterov / --no-nesterov  SGD's Nesterov momentum\n"
            "  --blocks N              resnet: BasicBlocks per stage, 1..16 (default 1)\n"
            "resume, profile, distributed:\n"
            "  --checkpoint FILE       training state (model, optimizer, schedule, data position)\n"
            "                          written atomically at each epoch end and every --save-every\n"
            "  --save-every N          optimizer steps between training-state saves\n"
            "  --resume FILE           continue a run from its training state, exactly\n"
            "  --profile FILE.json     profile the first epoch after 3 warm-up steps: a table per op\n"
            "                          and phase at the end, and a Chrome trace (Perfetto)\n"
            "  --distributed           under mpirun: one replica per rank, --batch images per rank\n"
            "                          (the global batch is ranks x --batch), gradients averaged\n"
            "                          each step; rank 0 evaluates, prints and saves (needs MPI)\n"
            "  --sync-bn               with --distributed: synchronized batch norm (SyncBatchNorm),\n"
            "                          training statistics over the global batch (default: each\n"
            "                          rank's own, as PyTorch DDP)\n"
            "  -h, --help              this text\n");
    /* C11 promises string literals of 4,095 characters: one fprintf per part */
    fprintf(f,
            "data formats:\n"
            "  IDX (MNIST's layout): DIR holds train-images-idx3-ubyte and train-labels-idx1-ubyte,\n"
            "    t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each plain or .gz; one grey channel,\n"
            "    labels 0..9. Chosen whenever DIR holds train- or t10k-images-idx3-ubyte[.gz].\n"
            "  image folder (torchvision's ImageFolder): DIR/CLASS/.../NAME.png|.jpg|.jpeg, one\n"
            "    subfolder per class (2..256), labelled by its place in the sorted folder names; grey or\n"
            "    RGB. With DIR/train and DIR/test (or DIR/val), those are the training and test sets (the\n"
            "    same class folders); else the test set is --holdout of every class of DIR (or of\n"
            "    DIR/train). Decoded once into memory. The model is built for the images' channels and\n"
            "    size and the number of classes (lenet takes 12 x 12 pixels and up, cnn 4 x 4).\n"
            "output (stdout): the device, the run's set-up, the cold start once (data, device, model\n"
            "  and the first step with its kernel builds), progress lines (a bar on stderr on a\n"
            "  terminal) with the steady img/s and the epoch's eta, one line per epoch whose images/s\n"
            "  is the steady rate (from the epoch's second step on) and seconds its wall time, and\n"
            "  last test_loss=X and test_accuracy=0.xxxx. Errors go to stderr.\n"
            "exit status: 0 done; 1 a failure (the message says which file, device or step); 2 bad\n"
            "  usage; %d the training loss became NaN or infinite (without --allow-nonfinite).\n"
            "environment: CLGRAD_DEVICE (the device when --device is not given), CLGRAD_CACHE_DIR\n"
            "  (compiled kernels; default $XDG_CACHE_HOME/clgrad or ~/.cache/clgrad; off: none),\n"
            "  CLGRAD_KERNEL_STYLE (cpu|gpu|auto), CLGRAD_KERNEL_DIR (.cl files read from a folder),\n"
            "  CLGRAD_GEMM (auto|clblast|packed), CLGRAD_GEMM_TUNING (off), CLGRAD_PROFILE (1: a\n"
            "  profiling queue); see README.md's Environment.\n"
            "examples:\n"
            "  clgrad-train --epochs 1 --limit 10000          one epoch of cnn on 10,000 Fashion-MNIST images\n"
            "  clgrad-train --model resnet --epochs 10 --save resnet.safetensors --metrics resnet.csv\n"
            "  clgrad-train --data shapes/ --model lenet --image-size 32x32 --bad-files skip --plot shapes.png\n"
            "  mpirun -np 2 clgrad-train --distributed --batch 32\n"
            "models (the input and classes below are Fashion-MNIST's; on other data a model is built\n"
            "for the data's channels, size and classes):\n",
            EXIT_NONFINITE);
    model_print_list(f, "  ");
}

/* Image sides up to this (clg_image_folder_read's own limit is 64 Mi pixels per image). */
#define MAX_IMAGE_SIDE 8192

/* --image-size HxW: two integers in 1..MAX_IMAGE_SIDE joined by 'x'. */
static bool parse_size(const char *s, int *height, int *width) {
    char h[32], w[32];
    const char *x = strchr(s, 'x');
    long long hv = 0, wv = 0;
    bool ok = x && (size_t)(x - s) < sizeof h && strlen(x + 1) < sizeof w;
    if (ok) {
        memcpy(h, s, (size_t)(x - s)), h[x - s] = '\0';
        strcpy(w, x + 1);
        char *end;
        hv = strtoll(h, &end, 10), ok = end != h && !*end && h[0] != '-' && h[0] != '+';
        wv = strtoll(w, &end, 10), ok = ok && end != w && !*end && w[0] != '-' && w[0] != '+';
    }
    if (!ok || hv < 1 || hv > MAX_IMAGE_SIDE || wv < 1 || wv > MAX_IMAGE_SIDE) {
        fprintf(stderr, "clgrad-train: --image-size must be HxW with H and W in 1..%d (32x32), not '%s'\n",
                MAX_IMAGE_SIDE, s);
        return false;
    }
    *height = (int)hv, *width = (int)wv;
    return true;
}

static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.model = "cnn", .data = DEFAULT_DATA, .epochs = 5, .batch = 64, .lr = 0,
                   .momentum = MODEL_SGD_MOMENTUM, .seed = 1, .augment = -1, .nesterov = -1, .blocks = 1,
                   .holdout = TRAIN_DATA_DEFAULT_HOLDOUT};
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},     {"epochs", required_argument, 0, 'e'},
        {"batch", required_argument, 0, 'b'},     {"lr", required_argument, 0, 'l'},
        {"momentum", required_argument, 0, 'M'},  {"optimizer", required_argument, 0, 'o'},
        {"weight-decay", required_argument, 0, 'w'}, {"seed", required_argument, 0, 's'},
        {"limit", required_argument, 0, 'n'},     {"test-limit", required_argument, 0, 't'},
        {"no-shuffle", no_argument, 0, 'N'},      {"data", required_argument, 0, 'd'},
        {"device", required_argument, 0, 'D'},    {"save", required_argument, 0, 'S'},
        {"load", required_argument, 0, 'L'},      {"eval-only", no_argument, 0, 'E'},
        {"metrics", required_argument, 0, 'C'},   {"plot", required_argument, 0, 'G'},   {"help", no_argument, 0, 'h'},
        {"list-models", no_argument, 0, 'Z'},     {"json", no_argument, 0, 'J'},
        {"allow-nonfinite", no_argument, 0, 'F'}, {"lr-schedule", required_argument, 0, 1},
        {"warmup", required_argument, 0, 2},      {"clip-grad-norm", required_argument, 0, 3},
        {"label-smoothing", required_argument, 0, 30},
        {"augment", no_argument, 0, 4},           {"no-augment", no_argument, 0, 5},
        {"nesterov", no_argument, 0, 6},          {"no-nesterov", no_argument, 0, 7},
        {"blocks", required_argument, 0, 8},      {"checkpoint", required_argument, 0, 9},
        {"save-every", required_argument, 0, 10}, {"resume", required_argument, 0, 11},
        {"profile", required_argument, 0, 12},    {"distributed", no_argument, 0, 13},
        {"sync-bn", no_argument, 0, 40},
        {"no-prefetch", no_argument, 0, 14},      {"holdout", required_argument, 0, 15},
        {"bad-files", required_argument, 0, 16},  {"image-size", required_argument, 0, 17},
        {"channels", required_argument, 0, 18},   {0, 0, 0, 0}};
    static const char *T = "clgrad-train";
    int c;
    long long v;
    bool ok = true;
    while (ok && (c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'e': ok = tool_parse_int(T, "--epochs", optarg, 0, MAX_EPOCHS, &v), o->epochs = (int)v; break;
        case 'b': ok = tool_parse_int(T, "--batch", optarg, 1, MAX_BATCH, &v), o->batch = (int)v, o->batch_set = true; break;
        case 'l': ok = tool_parse_real(T, "--lr", optarg, 0, INFINITY, &o->lr), o->lr_set = true; break;
        case 'M': ok = tool_parse_real(T, "--momentum", optarg, 0, 1, &o->momentum), o->momentum_set = true; break;
        case 'o': o->optimizer = optarg; break;
        case 'w': ok = tool_parse_real(T, "--weight-decay", optarg, 0, INFINITY, &o->weight_decay), o->wd_set = true; break;
        case 1: o->schedule = optarg; break;
        case 2: ok = tool_parse_real(T, "--warmup", optarg, 0, MAX_EPOCHS, &o->warmup_epochs); break;
        case 3:
            ok = tool_parse_real(T, "--clip-grad-norm", optarg, 0, INFINITY, &o->clip_grad_norm);
            if (ok && !(o->clip_grad_norm > 0)) {
                fprintf(stderr, "clgrad-train: --clip-grad-norm must be > 0\n");
                ok = false;
            }
            break;
        case 4: o->augment = 1; break;
        case 5: o->augment = 0; break;
        case 6: o->nesterov = 1; break;
        case 7: o->nesterov = 0; break;
        case 8: ok = tool_parse_int(T, "--blocks", optarg, 1, 16, &v), o->blocks = (int)v; break;
        case 9: o->checkpoint = optarg; break;
        case 10: ok = tool_parse_int(T, "--save-every", optarg, 1, LLONG_MAX, &o->save_every); break;
        case 11: o->resume = optarg; break;
        case 12: o->profile = optarg; break;
        case 13: o->distributed = 1; break;
        case 40: o->sync_bn = 1; break;
        case 14: o->no_prefetch = 1; break;
        case 30: ok = tool_parse_real(T, "--label-smoothing", optarg, 0, 1, &o->label_smoothing); break;
        case 15:
            ok = tool_parse_real(T, "--holdout", optarg, 0, 1, &o->holdout), o->holdout_set = true;
            if (ok && !(o->holdout > 0 && o->holdout < 1)) {
                fprintf(stderr, "clgrad-train: --holdout must be a share in (0, 1), not '%s'\n", optarg);
                ok = false;
            }
            break;
        case 16:
            o->skip_bad = !strcmp(optarg, "skip");
            if (!o->skip_bad && strcmp(optarg, "fail")) {
                fprintf(stderr, "clgrad-train: --bad-files must be fail or skip, not '%s'\n", optarg);
                ok = false;
            }
            break;
        case 17: ok = parse_size(optarg, &o->height, &o->width); break;
        case 18:
            ok = tool_parse_int(T, "--channels", optarg, 1, 3, &v), o->channels = (int)v;
            if (ok && o->channels == 2) {
                fprintf(stderr, "clgrad-train: --channels must be 1 (grey) or 3 (RGB), not '%s'\n", optarg);
                ok = false;
            }
            break;
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
        case 'G':
            o->plot = optarg;
#ifndef CLG_HAVE_PLOT
            fprintf(stderr, "clgrad-train: --plot needs a build with cairo (meson feature plot): apt-get install "
                            "libcairo2-dev, then meson setup --reconfigure and rebuild\n");
            ok = false;
#else
            { /* the format is checked now, not after the first epoch */
                char err[256];
                if (plot_check_path(optarg, err, sizeof err)) {
                    fprintf(stderr, "clgrad-train: --plot: %s\n", err);
                    ok = false;
                }
            }
#endif
            break;
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
    if (o->plot && !tool_check_writable(T, "--plot", o->plot)) return -1;
    /* the recipe: what the options leave open, the model decides */
    const model_recipe *r = &o->entry->recipe;
    if (!o->batch_set) o->batch = r->batch;
    if (!o->wd_set) o->weight_decay = r->weight_decay;
    if (!o->schedule) o->schedule = r->schedule;
    if (strcmp(o->schedule, "none") && strcmp(o->schedule, "cosine")) {
        fprintf(stderr, "clgrad-train: --lr-schedule must be none or cosine, not '%s'\n", o->schedule);
        return -1;
    }
    if (o->warmup_epochs == 0 && !strcmp(o->schedule, r->schedule)) o->warmup_epochs = r->warmup_epochs;
    if (o->augment < 0) o->augment = r->crop_padding > 0 || r->hflip;
    if (o->nesterov < 0) o->nesterov = r->nesterov && !strcmp(o->optimizer, "sgd");
    if (o->nesterov && (strcmp(o->optimizer, "sgd") || !(o->momentum > 0))) {
        fprintf(stderr, "clgrad-train: --nesterov needs SGD with momentum > 0\n");
        return -1;
    }
    if (o->blocks != 1 && !o->entry->build_blocks) {
        fprintf(stderr, "clgrad-train: --blocks is for resnet; %s has no blocks\n", o->model);
        return -1;
    }
    if ((o->checkpoint || o->resume || o->profile) && !trains) {
        fprintf(stderr, "clgrad-train: --checkpoint, --resume and --profile need training\n");
        return -1;
    }
    if (o->save_every && !o->checkpoint) {
        fprintf(stderr, "clgrad-train: --save-every needs --checkpoint FILE\n");
        return -1;
    }
    if (o->sync_bn && !o->distributed) {
        fprintf(stderr, "clgrad-train: --sync-bn synchronizes batch norm over the ranks of --distributed: "
                        "give both, under mpirun\n");
        return -1;
    }
#ifndef CLG_HAVE_MPI
    if (o->distributed) {
        fprintf(stderr, "clgrad-train: --distributed needs a build with MPI (apt-get install libopenmpi-dev "
                        "openmpi-bin, then reconfigure)\n");
        return -1;
    }
#endif
    if (o->distributed && (o->checkpoint || o->resume || o->profile || o->eval_only)) {
        /* replicas keep their own batch-norm statistics, which one training state cannot hold */
        fprintf(stderr, "clgrad-train: --distributed does not go with --checkpoint, --resume, --profile or "
                        "--eval-only\n");
        return -1;
    }
    if (o->checkpoint && !tool_check_writable(T, "--checkpoint", o->checkpoint)) return -1;
    if (o->profile && !tool_check_writable(T, "--profile", o->profile)) return -1;
    return 0;
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

/* Runs one batch (x holds n images); trains when opt is not NULL, clipping the gradients'
 * global norm to clip first when clip > 0. The loss is cross-entropy with label smoothing
 * smoothing (0: clg_softmax_cross_entropy, the kernel every earlier run used). */
static int run_batch(clg_context *ctx, clg_module *model, int classes, clg_optimizer *opt, double clip,
                     double smoothing, clg_tensor *const *params, size_t n_params, clg_dist *dist,
                     clg_tensor *x, const int32_t *labels, int n, float *logits, batch_result *r) {
    clg_tensor *y = NULL, *loss = NULL;
    clg_status st = clg_module_forward(ctx, model, x, &y);
    clg_cross_entropy_params ce = clg_cross_entropy_default_params();
    ce.label_smoothing = smoothing;
    if (st == CLG_OK && smoothing > 0) st = clg_cross_entropy(ctx, y, labels, (size_t)n, &ce, &loss);
    else if (st == CLG_OK) st = clg_softmax_cross_entropy(ctx, y, labels, (size_t)n, &loss);
    if (st == CLG_OK && opt) st = clg_backward(ctx, loss);
#ifdef CLG_HAVE_MPI
    if (st == CLG_OK && opt && dist) st = clg_dist_average_grads(dist, ctx, params, n_params);
#else
    (void)dist;
#endif
    if (st == CLG_OK && opt && clip > 0) st = clg_clip_grad_norm(params, n_params, clip, 2.0, NULL);
    if (st == CLG_OK && opt) st = clg_optimizer_step(opt);
    if (opt) clg_optimizer_zero_grad(opt);
    double l = 0;
    if (st == CLG_OK) st = clg_tensor_item(loss, &l);
    if (st == CLG_OK) st = clg_tensor_to_host(y, logits, (size_t)n * (size_t)classes * sizeof(float));
    clg_tensor_free(loss);
    clg_tensor_free(y);
    if (st != CLG_OK) return fail(ctx, opt ? "training step" : "evaluation", st);
    r->loss_sum += l * n;
    r->last = l;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < classes; c++)
            if (logits[i * classes + c] > logits[i * classes + best]) best = c;
        r->correct += best == labels[i];
    }
    return 0;
}

static int evaluate(clg_context *ctx, clg_module *model, int classes, clg_loader *test, int n_test,
                    float *logits, double *loss, double *acc) {
    bool was = clg_set_grad_enabled(ctx, false);
    clg_module_train(model, false);
    batch_result r = {0, 0, 0};
    clg_status st = clg_loader_seek(test, 0, 0);
    int rc = st == CLG_OK ? 0 : fail(ctx, "test data", st);
    for (;;) {
        clg_tensor *x;
        const int32_t *labels;
        int n;
        if (rc || (st = clg_loader_next(test, &x, &labels, &n)) != CLG_OK) {
            if (!rc) rc = fail(ctx, "test data", st);
            break;
        }
        if (!x) break;
        rc = run_batch(ctx, model, classes, NULL, 0, 0, NULL, 0, NULL, x, labels, n, logits, &r);
        clg_tensor_free(x);
    }
    clg_set_grad_enabled(ctx, was);
    clg_module_train(model, true);
    *loss = r.loss_sum / n_test;
    *acc = (double)r.correct / n_test;
    return rc;
}

/* One progress report: ips is the steady rate (the cold start left out), so the eta (of the
 * epoch) holds from the first report on. */
static void progress(bool tty, int epoch, int epochs, int done, int total, double ips, double loss) {
    const double eta = ips > 0 && total > done ? (total - done) / ips : 0;
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

#define METRICS_HEADER "epoch,train_loss,train_accuracy,test_loss,test_accuracy,images_per_s,seconds\n"
/* RUN.steps.csv (tool_steps_path): each training step's loss, for clgrad-plot's per-step curve */
#define STEPS_HEADER "epoch,loss\n"

/* A CSV's rows so far (text NUL-terminated once anything is appended), grown geometrically: a
 * row per training step must not copy the whole text each time. */
typedef struct csv_rows {
    char *text;
    size_t len, cap;
} csv_rows;

/* Appends n bytes of row; -1 when out of memory. */
static int rows_append(csv_rows *r, const char *row, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1) cap *= 2;
        char *grown = realloc(r->text, cap);
        if (!grown) return -1;
        r->text = grown, r->cap = cap;
    }
    memcpy(r->text + r->len, row, n);
    r->len += n;
    r->text[r->len] = '\0';
    return 0;
}

/* A resumed run's metrics (or step losses, by header): the rows of path (a CSV this tool
 * wrote) for the epochs before `before`, appended to rows, so the file keeps the whole run's
 * epochs. No file: nothing kept; another file: a warning, and it is rewritten from this run's
 * epochs. -1: out of memory. */
static int resume_metrics(const char *path, const char *header, uint64_t before, csv_rows *rows) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    bool ours = getline(&line, &cap, f) > 0 && !strcmp(line, header);
    if (!ours) fprintf(stderr, "clgrad-train: %s is no metrics CSV of clgrad-train: it is rewritten\n", path);
    for (ssize_t len; ours && (len = getline(&line, &cap, f)) > 0;) {
        char *end;
        const long long e = strtoll(line, &end, 10);
        if (end == line || *end != ',' || e < 1 || (uint64_t)e >= before || line[len - 1] != '\n') continue;
        if (rows_append(rows, line, (size_t)len)) {
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

/* Rewrites the whole CSV through a temp file + rename, so a crash never leaves half a file.
 * The temp name is one per path ("<path>.tmp"), so a killed run leaves at most that one, which
 * the next write replaces. */
static int write_metrics(const char *path, const char *header, const csv_rows *rows) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    int ok = fputs(header, f) >= 0 &&
             (rows->len == 0 || fwrite(rows->text, 1, rows->len, f) == rows->len);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

static clg_context *open_context(const char *device, bool profiling, clg_dist *dist) {
    clg_context_params cp = clg_context_default_params();
    cp.device = device;
    cp.profiling = profiling;
#ifdef CLG_HAVE_MPI
    char dist_device[64];
    if (dist) clg_dist_context_params(dist, &cp, dist_device, sizeof dist_device); /* a GPU per local rank */
#else
    (void)dist;
#endif
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
    clg_context *ctx = open_context(o->device, false, NULL);
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

/* The schedule of the recipe over the whole run (NULL for a constant rate without warm-up). */
static clg_status make_schedule(clg_optimizer *opt, const options *o, int64_t steps_per_epoch,
                                clg_lr_scheduler **out) {
    *out = NULL;
    const int64_t total = steps_per_epoch * o->epochs;
    const int64_t warm = (int64_t)llround(o->warmup_epochs * (double)steps_per_epoch);
    const bool cosine = !strcmp(o->schedule, "cosine");
    if (!cosine && warm == 0) return CLG_OK;
    clg_lr_scheduler_params lp = clg_lr_scheduler_default_params(cosine ? CLG_LR_COSINE : CLG_LR_CONSTANT);
    lp.t_max = total - warm > 1 ? total - warm : 1;
    lp.warmup_steps = warm;
    const double f = o->entry->recipe.warmup_start_factor;
    lp.warmup_start_factor = f < 1 ? f : 0.01;
    return clg_lr_scheduler_create(opt, &lp, out);
}

int main(int argc, char **argv) {
    double t_start = tool_now_seconds();
    options o;
    if (parse_args(argc, argv, &o)) return 2;
    if (o.list_models) return list_models(&o);

    clg_dist *dist = NULL;
    int rank = 0, world = 1;
    size_t synced_bn = 0; /* batch-norm layers --sync-bn synchronized */
#ifdef CLG_HAVE_MPI
    if (o.distributed) {
        MPI_Init(&argc, &argv);
        char derr[512];
        if (clg_dist_create(MPI_COMM_WORLD, &dist, derr, sizeof derr) != CLG_OK) {
            fprintf(stderr, "clgrad-train: %s\n", derr);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        rank = clg_dist_rank(dist), world = clg_dist_world_size(dist);
        if (rank != 0 && !freopen("/dev/null", "w", stdout)) clg_dist_abort(dist, 1, "cannot quiet stdout");
    }
#endif
    const bool trains = !o.eval_only && o.epochs > 0;
    const train_data_options dopt = {o.data, o.limit, o.test_limit, trains, o.entry->classes, o.holdout,
                                     o.holdout_set, o.seed, o.skip_bad, o.channels, o.height, o.width, rank != 0};
    train_data data;
    if (train_data_load(&dopt, &data)) {
        train_data_free(&data);
#ifdef CLG_HAVE_MPI
        if (dist) clg_dist_abort(dist, 1, "cannot read the data");
#endif
        return 1;
    }
    const clg_image_set *train = &data.train, *test = &data.test;
    const int classes = data.classes;
    const model_recipe *recipe = &o.entry->recipe;
    const double t_data = tool_now_seconds();

    clg_context *ctx = open_context(o.device, o.profile != NULL, dist);
    if (!ctx) {
        train_data_free(&data);
#ifdef CLG_HAVE_MPI
        if (dist) clg_dist_abort(dist, 1, "no context");
#endif
        return 1;
    }
    const double t_device = tool_now_seconds();
    clg_status st;
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    printf("device: %s (%s)\n", info.name, info.platform_name);

    clg_module *model = NULL;
    clg_optimizer *opt = NULL;
    clg_lr_scheduler *sched = NULL;
    clg_loader *train_loader = NULL, *test_loader = NULL;
    clg_tensor **params = NULL;
    size_t n_params = 0;
    int rc = 1;
    const int bs = o.batch, eval_bs = 500 > bs ? 500 : bs;
    float *logits = malloc((size_t)eval_bs * (size_t)classes * sizeof *logits);
    csv_rows rows = {0}, step_rows = {0}; /* --metrics: the two CSVs' rows so far */
    char *steps_path = o.metrics ? tool_steps_path(o.metrics) : NULL;
#ifdef CLG_HAVE_PLOT
    plot_run curve = {0}; /* --plot: the epochs and per-step losses so far */
    char plot_err[512];
#endif
    if (!logits || (o.metrics && !steps_path)) {
        fprintf(stderr, "clgrad-train: out of memory\n");
        goto done;
    }
    /* The model takes what the data holds: its channels, size and classes. */
    const model_shape shape = {test->c, test->h, test->w, classes};
    char model_err[512];
    st = model_build(o.entry, ctx, o.seed, o.blocks, &shape, &model, model_err, sizeof model_err);
    if (st == CLG_INVALID_ARGUMENT && model_err[0]) {
        fprintf(stderr, "clgrad-train: %s\n", model_err);
        goto done;
    }
    if (st) {
        fail(ctx, "model", st);
        goto done;
    }
    if (o.load && (st = clg_module_load(ctx, model, o.load))) {
        fail(ctx, o.load, st);
        goto done;
    }
#ifdef CLG_HAVE_MPI
    if (dist && (st = clg_dist_broadcast_module(dist, ctx, model))) { /* every replica from rank 0's */
        fail(ctx, "broadcast", st);
        goto done;
    }
    if (dist && o.sync_bn) synced_bn = clg_dist_sync_batch_norm(dist, model);
#endif
    if ((st = model_optimizer_create_ex(ctx, model, o.optimizer, o.lr, o.momentum, o.nesterov, o.weight_decay,
                                        recipe->decay_split, &opt))) {
        fail(ctx, "optimizer", st);
        goto done;
    }
    n_params = clg_optimizer_param_count(opt);
    params = malloc((n_params ? n_params : 1) * sizeof *params);
    if (!params) goto done;
    for (size_t i = 0; i < n_params; i++) params[i] = clg_optimizer_param(opt, i);

    /* The data: normalised by the training set's statistics per channel when the recipe says so. */
    float mean[3] = {0, 0, 0}, sd[3] = {1, 1, 1};
    const bool normalize = recipe->normalize && train->n > 0;
    if (normalize) train_data_stats(train, mean, sd);
    clg_loader_params lp = clg_loader_default_params();
    lp.batch_size = eval_bs, lp.shuffle = false, lp.seed = o.seed;
    if (normalize) lp.mean = mean, lp.std = sd;
    if ((st = clg_loader_create(ctx, test, &lp, &test_loader))) {
        fail(ctx, "test data", st);
        goto done;
    }
    printf("data: %s; %d classes", data.source, classes);
    for (int i = 0; data.class_names && i < classes && i < 8; i++)
        printf("%s%s", i ? ", " : " (", data.class_names[i]);
    printf("%s; images %d x %d x %d", !data.class_names ? "" : classes > 8 ? ", ...)" : ")", test->c, test->h, test->w);
    if (data.skipped) printf("; %d bad file%s skipped", data.skipped, data.skipped == 1 ? "" : "s");
    printf("\nmodel %s, %s lr %g%s, batch %d, %d training and %d test images\n", o.model, o.optimizer, o.lr,
           o.nesterov ? " nesterov" : "", bs, train->n, test->n);
    if (dist) {
        printf("distributed: %d ranks x batch %d = %d images per step; batch norm ", world, bs, world * bs);
        if (o.sync_bn)
            printf("synchronized over the ranks (%zu layer%s)\n", synced_bn, synced_bn == 1 ? "" : "s");
        else
            printf("per rank\n");
    }

    double test_loss = 0, test_acc = 0;
    if (o.eval_only || o.epochs == 0) {
        if (evaluate(ctx, model, classes, test_loader, test->n, logits, &test_loss, &test_acc)) goto done;
        printf("test_loss=%.6f\ntest_accuracy=%.4f\n", test_loss, test_acc);
        rc = 0;
        goto done;
    }
    lp.batch_size = bs, lp.shuffle = !o.no_shuffle, lp.rank = rank, lp.world_size = world;
    lp.prefetch = !o.no_prefetch;
    if (o.augment) lp.crop_padding = recipe->crop_padding > 0 ? recipe->crop_padding : 2, lp.hflip = true;
    if ((st = clg_loader_create(ctx, train, &lp, &train_loader))) {
        fail(ctx, "training data", st);
        goto done;
    }
    const int64_t batches = clg_loader_batches(train_loader);
    if ((st = make_schedule(opt, &o, batches, &sched))) {
        fail(ctx, "learning-rate schedule", st);
        goto done;
    }
    printf("recipe: schedule %s, warm-up %g epochs, weight decay %g%s, augment %s, inputs %s, clip %g, "
           "label smoothing %g\n",
           o.schedule, o.warmup_epochs, o.weight_decay, recipe->decay_split ? " (weights only)" : "",
           o.augment ? "crop + flip" : "none", normalize ? "normalised" : "x / 255", o.clip_grad_norm,
           o.label_smoothing);
    if (normalize) {
        printf("normalisation: mean");
        for (int c = 0; c < train->c; c++) printf(" %.6f", mean[c]);
        printf(" std");
        for (int c = 0; c < train->c; c++) printf(" %.6f", sd[c]);
        printf("\n");
    }

    /* Where the run starts: a resumed one where its training state says. */
    clg_train_counters at = {.epoch = 1, .batch = 0, .step = 0};
    if (o.resume) {
        if ((st = clg_train_state_load(ctx, o.resume, model, opt, sched, &at))) {
            fail(ctx, o.resume, st);
            goto done;
        }
        printf("resumed from %s: epoch %llu, batch %lld, step %lld\n", o.resume, (unsigned long long)at.epoch,
               (long long)at.batch, (long long)at.step);
        if (at.epoch < 1 || at.batch < 0 || at.batch > batches) {
            fprintf(stderr, "clgrad-train: %s: epoch %llu batch %lld do not fit this run (%lld batches per epoch)\n",
                    o.resume, (unsigned long long)at.epoch, (long long)at.batch, (long long)batches);
            goto done;
        }
        if (o.metrics && rank == 0 &&
            (resume_metrics(o.metrics, METRICS_HEADER, at.epoch, &rows) ||
             resume_metrics(steps_path, STEPS_HEADER, at.epoch, &step_rows))) {
            fprintf(stderr, "clgrad-train: out of memory\n");
            goto done;
        }
#ifdef CLG_HAVE_PLOT
        /* the earlier epochs' rows on the plot too (their per-step losses are not kept) */
        for (const char *row = rows.text; o.plot && row && *row; row = strchr(row, '\n') + 1) {
            plot_epoch pe;
            if (sscanf(row, "%lf,%lf,%lf,%lf,%lf", &pe.epoch, &pe.train_loss, &pe.train_accuracy, &pe.test_loss,
                       &pe.test_accuracy) == 5 &&
                plot_run_add_epoch(&curve, pe)) {
                fprintf(stderr, "clgrad-train: out of memory\n");
                goto done;
            }
        }
#endif
    }
    bool tty = isatty(fileno(stderr)) && isatty(fileno(stdout));
    clg_module_train(model, true);
    bool first_step = true, nonfinite = false, profiling = false;
    int saved_epoch = 0;
    long long step = at.step, profiled_from = 0;
    /* This replica's images per epoch (the loader pads the shards to one size). */
    const int share = (int)(((int64_t)train->n + world - 1) / world);
    const double t_ready = tool_now_seconds();
    for (int epoch = (int)at.epoch; epoch <= o.epochs; epoch++) {
        const int64_t first_batch = epoch == (int)at.epoch ? at.batch : 0;
        if ((st = clg_loader_seek(train_loader, (uint64_t)(epoch - 1), first_batch))) {
            fail(ctx, "training data", st);
            goto done;
        }
        /* The rates count from t_rate, after rate_from images: from the start of the epoch, or,
         * in the epoch with the run's first step (the cold start), from after that step. */
        double t0 = tool_now_seconds(), last_shown = t0, t_rate = t0;
        batch_result r = {0, 0, 0};
        const int total = share - (int)(first_batch * bs < share ? first_batch * bs : share); /* this epoch's */
        int done_n = 0, rate_from = 0, next_line = total / 10;
        for (int64_t b = first_batch;; b++) {
            clg_tensor *x;
            const int32_t *labels;
            int n;
            if ((st = clg_loader_next(train_loader, &x, &labels, &n))) {
                fail(ctx, "training data", st);
                goto done;
            }
            if (!x) break;
            if (o.profile && !profiling && !profiled_from && step - at.step == 3) {
                if ((st = clg_profiler_start(ctx))) {
                    clg_tensor_free(x);
                    fail(ctx, "profile", st);
                    goto done;
                }
                profiling = true, profiled_from = step;
            }
            int brc = run_batch(ctx, model, classes, opt, o.clip_grad_norm, o.label_smoothing, params, n_params, dist, x, labels, n,
                                logits, &r);
            clg_tensor_free(x);
            if (brc) goto done;
#ifdef CLG_HAVE_PLOT
            if (o.plot && plot_run_add_step(&curve, epoch - 1 + (double)(b + 1) / (double)batches, r.last)) goto done;
#endif
            if (o.metrics && rank == 0) {
                char row[400]; /* a %.6f of any finite double fits */
                snprintf(row, sizeof row, "%d,%.6f\n", epoch, r.last);
                if (rows_append(&step_rows, row, strlen(row))) goto done;
            }
            step++;
            if (sched && (st = clg_lr_scheduler_step(sched))) {
                fail(ctx, "learning-rate schedule", st);
                goto done;
            }
            done_n += n;
            /* A NaN or infinite loss: the step just taken spread it into the parameters, and
             * every later step trains on garbage. Stop, unless told to go on. */
            if (!isfinite(r.last) && !nonfinite) {
                nonfinite = true;
                if (tty) fprintf(stderr, "\r%*s\r", 110, "");
                fprintf(stderr, "clgrad-train: the training loss is %g at epoch %d, batch %lld (images %lld..%lld of "
                        "the epoch)", r.last, epoch, (long long)b + 1, (long long)b * bs, (long long)b * bs + n - 1);
                if (!o.allow_nonfinite) {
                    fprintf(stderr, ": stopping (the parameters are no longer finite; lower --lr, or "
                            "--allow-nonfinite to go on)");
#ifdef CLG_HAVE_MPI
                    if (dist) clg_dist_abort(dist, EXIT_NONFINITE, "the training loss is no longer finite");
#endif
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
            if (o.checkpoint && o.save_every && step % o.save_every == 0) {
                const clg_train_counters c = {(uint64_t)epoch, b + 1, step};
                if ((st = clg_train_state_save(ctx, o.checkpoint, model, opt, sched, &c))) {
                    fail(ctx, o.checkpoint, st);
                    goto done;
                }
            }
            double t = tool_now_seconds();
            if (first_step) {
                printf("cold start %.2f s, not in the rates below: data %.2f s, device %.2f s, set-up %.2f s, "
                       "first step %.2f s (its kernel builds)\n",
                       t - t_start, t_data - t_start, t_device - t_data, t_ready - t_device, t - t_ready);
                first_step = false;
                t_rate = t, rate_from = done_n; /* the steady rate counts from here */
            }
            if (done_n > rate_from && t > t_rate &&
                ((tty && t - last_shown > 0.2) || (!tty && done_n >= next_line && done_n < total))) {
                progress(tty, epoch, o.epochs, done_n, total, (done_n - rate_from) / (t - t_rate),
                         r.loss_sum / done_n);
                last_shown = t;
                while (next_line <= done_n) next_line += total / 10 > 0 ? total / 10 : 1;
            }
        }
        const double t_end = tool_now_seconds(), secs = t_end - t0;
        /* images per second of the whole job: each replica's steady rate times the ranks (an
         * epoch of one step, the cold one, has no steady rate: then its own) */
        const double ips = world * (t_end > t_rate && done_n > rate_from ? (done_n - rate_from) / (t_end - t_rate)
                                                                         : done_n / secs);
        if (tty) fprintf(stderr, "\r%*s\r", 110, "");
        if (profiling) {
            clg_profiler_stop(ctx);
            profiling = false;
            tool_print_profile(ctx, "clgrad-train", o.profile, step - profiled_from);
        }
#ifdef CLG_HAVE_MPI
        if (dist) { /* the epoch's figures over every replica */
            double sums[3] = {r.loss_sum, (double)r.correct, (double)done_n};
            if ((st = clg_dist_sum(dist, sums, 3))) {
                fail(ctx, "metrics", st);
                goto done;
            }
            r.loss_sum = sums[0], r.correct = (int)sums[1], done_n = (int)sums[2];
        }
#endif
        if (rank == 0 && evaluate(ctx, model, classes, test_loader, test->n, logits, &test_loss, &test_acc)) goto done;
        const double train_loss = done_n ? r.loss_sum / done_n : 0, train_acc = done_n ? (double)r.correct / done_n : 0;
        printf("epoch %d train_loss %.4f train_accuracy %.4f test_loss %.4f test_accuracy %.4f images/s %.0f seconds %.1f\n",
               epoch, train_loss, train_acc, test_loss, test_acc, ips, secs);
        fflush(stdout);
        if (o.metrics && rank == 0) {
            char row[2400]; /* six %f of any finite double fit */
            snprintf(row, sizeof row, "%d,%.6f,%.6f,%.6f,%.6f,%.1f,%.3f\n", epoch, train_loss, train_acc, test_loss,
                     test_acc, ips, secs);
            if (rows_append(&rows, row, strlen(row))) goto done;
            if (write_metrics(o.metrics, METRICS_HEADER, &rows)) {
                fprintf(stderr, "clgrad-train: cannot write %s\n", o.metrics);
                goto done;
            }
            if (write_metrics(steps_path, STEPS_HEADER, &step_rows)) {
                fprintf(stderr, "clgrad-train: cannot write %s\n", steps_path);
                goto done;
            }
        }
#ifdef CLG_HAVE_PLOT
        if (o.plot && rank == 0) {
            if (!curve.label) curve.label = strdup(o.model);
            if (plot_run_add_epoch(&curve, (plot_epoch){epoch, train_loss, train_acc, test_loss, test_acc}) ||
                plot_write(o.plot, &curve, 1, NULL, plot_err, sizeof plot_err)) {
                fprintf(stderr, "clgrad-train: %s\n", curve.label ? plot_err : "out of memory");
                goto done;
            }
        }
#endif
        if (o.save && rank == 0) {
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
        if (o.checkpoint) {
            const clg_train_counters c = {(uint64_t)epoch + 1, 0, step};
            if ((st = clg_train_state_save(ctx, o.checkpoint, model, opt, sched, &c))) {
                fail(ctx, o.checkpoint, st);
                goto done;
            }
        }
    }
#ifdef CLG_HAVE_MPI
    if (dist) {
        uint64_t bytes;
        double comm;
        clg_dist_stats(dist, &bytes, &comm);
        double all[2] = {comm, (double)bytes};
        if (clg_dist_sum(dist, all, 2) == CLG_OK && step > at.step)
            printf("communication per step and rank: %.2f ms, %.0f KiB sent (gradients averaged over %d ranks%s)\n",
                   all[0] / world / (double)(step - at.step) * 1e3, all[1] / world / (double)(step - at.step) / 1024.0,
                   world, synced_bn ? ", batch-norm statistics summed" : "");
    }
#endif
    printf("test_loss=%.6f\ntest_accuracy=%.4f\n", test_loss, test_acc);
    rc = 0;
done:
#ifdef CLG_HAVE_MPI
    if (dist && rc != 0) clg_dist_abort(dist, rc, "training failed (the message above says why)");
#endif
    clg_loader_free(train_loader);
    clg_loader_free(test_loader);
    clg_lr_scheduler_free(sched);
    clg_optimizer_free(opt);
    clg_module_free(model);
    clg_context_free(ctx);
    train_data_free(&data);
    free(params);
    free(logits);
    free(rows.text);
    free(step_rows.text);
    free(steps_path);
#ifdef CLG_HAVE_PLOT
    plot_run_free(&curve);
#endif
#ifdef CLG_HAVE_MPI
    if (dist) {
        clg_dist_free(dist);
        MPI_Finalize();
    }
#endif
    return rc;
}
