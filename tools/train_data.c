/* tools/train_data.c - clgrad-train's data (tools/train_data.h): IDX pairs as Fashion-MNIST
 * ships them, or an image folder through clg_image_folder_read, with the train/test layout
 * found from the folder, and the per-channel normalisation statistics.
 * Tests: tests/tools/test_train.sh (IDX), tests/tools/test_train_images.sh (image folders).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_data.h"

#define T "clgrad-train"

static bool is_dir(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

/* Whether dir has a folder in it (hidden names aside): a class, or train/. */
static bool has_subfolder(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    char path[4200];
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        found = is_dir(path);
    }
    closedir(d);
    return found;
}

/* ---- IDX ---- */

static const char *const idx_suffix[4] = {"images-idx3-ubyte.gz", "labels-idx1-ubyte.gz", "images-idx3-ubyte",
                                          "labels-idx1-ubyte"};

/* Whether dir holds <stem>-images-idx3-ubyte[.gz]. */
static bool idx_has(const char *dir, const char *stem) {
    char path[4200];
    for (int i = 0; i < 4; i += 2) {
        snprintf(path, sizeof path, "%s/%s-%s", dir, stem, idx_suffix[i]);
        if (access(path, F_OK) == 0) return true;
    }
    return false;
}

/* Reads <dir>/<stem>-images-idx3-ubyte[.gz] (ndim 3) or <stem>-labels-idx1-ubyte[.gz]. */
static int read_idx(const char *dir, const char *stem, int ndim, clg_idx *out) {
    char path[4200], err[512] = "";
    for (int i = 0; i < 4; i++) {
        if ((ndim == 3) != (i % 2 == 0)) continue;
        snprintf(path, sizeof path, "%s/%s-%s", dir, stem, idx_suffix[i]);
        if (access(path, R_OK) != 0) continue;
        clg_status st = clg_idx_read(path, out, err, sizeof err);
        if (st != CLG_OK) {
            fprintf(stderr, T ": %s: %s\n", path, err);
            return -1;
        }
        if (out->ndim != ndim) {
            fprintf(stderr, T ": %s has %d dimensions, expected %d\n", path, out->ndim, ndim);
            clg_idx_free(out);
            return -1;
        }
        return 0;
    }
    fprintf(stderr, T ": no %s-%s[.gz] in %s", stem, ndim == 3 ? "images-idx3-ubyte" : "labels-idx1-ubyte", dir);
    if (!strcmp(dir, TRAIN_DATA_DEFAULT_DIR)) fprintf(stderr, " (install it: apt-get install dataset-fashion-mnist)");
    fprintf(stderr, "\n");
    return -1;
}

/* One IDX pair into *set: one grey channel, labels below classes, the first limit images. */
static int load_idx_set(const char *dir, const char *stem, int limit, int classes, clg_idx *images,
                        clg_idx *labels, clg_image_set *set) {
    if (read_idx(dir, stem, 3, images) || read_idx(dir, stem, 1, labels)) return -1;
    if (images->dims[0] != labels->dims[0]) {
        fprintf(stderr, T ": %s: %d images but %d labels\n", stem, images->dims[0], labels->dims[0]);
        return -1;
    }
    const int n = images->dims[0];
    for (int i = 0; i < n; i++)
        if (labels->data[i] >= classes) {
            fprintf(stderr, T ": %s: label %d of image %d is not a class 0..%d\n", stem, labels->data[i], i,
                    classes - 1);
            return -1;
        }
    *set = (clg_image_set){images->data, labels->data, limit > 0 && limit < n ? limit : n, 1, images->dims[1],
                           images->dims[2]};
    return 0;
}

/* ---- image folders ---- */

static void on_skipped(void *user, clg_log_level level, const char *msg) {
    (void)level;
    if (!*(const bool *)user) fprintf(stderr, T ": skipped (--bad-files skip): %s\n", msg);
}

/* Whether name ends in .png, .jpg or .jpeg, any case. */
static bool image_name(const char *name, size_t len) {
    static const char *const exts[] = {".png", ".jpg", ".jpeg"};
    for (int i = 0; i < 3; i++) {
        const size_t k = strlen(exts[i]);
        if (len < k) continue;
        size_t j = 0;
        while (j < k && (name[len - k + j] | 0x20) == exts[i][j])
            j++;
        if (j == k) return true;
    }
    return false;
}

/* The reader's message, and what the options can do about it: the reader names the file first
 * ("image folder: PATH: cause"), so a bad file is one whose PATH is an image's. */
static void folder_failed(const train_data_options *o, const char *err) {
    fprintf(stderr, T ": %s\n", err);
    const char *path = strstr(err, ": "), *end = path ? strstr(path + 2, ": ") : NULL;
    if (!end || !image_name(path + 2, (size_t)(end - path - 2))) return;
    if (strstr(end, " pixels, not ") && !o->height)
        fprintf(stderr, T ": the images must share one size; --image-size HxW resizes every image\n");
    else if (!o->skip_bad)
        fprintf(stderr, T ": --bad-files skip leaves such a file out and goes on\n");
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Keeps limit of f's images, drawn from seed, in their order: a folder lists its images class
 * by class, so its first images would be one class. */
static int keep_drawn(clg_image_folder *f, int limit, uint64_t seed) {
    const int n = f->set.n;
    if (limit <= 0 || limit >= n) return 0;
    int *idx = malloc((size_t)n * sizeof *idx);
    bool *keep = calloc((size_t)n, sizeof *keep);
    if (!idx || !keep) {
        free(idx), free(keep);
        fprintf(stderr, T ": out of memory\n");
        return -1;
    }
    uint64_t s = seed ^ 0x6c696d6974ull; /* "limit" */
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = 0; i < limit; i++) { /* the first limit places of a Fisher-Yates shuffle */
        const int j = i + (int)(splitmix64(&s) % (uint64_t)(n - i)), t = idx[i];
        idx[i] = idx[j], idx[j] = t;
        keep[idx[i]] = true;
    }
    const size_t img = (size_t)f->set.c * (size_t)f->set.h * (size_t)f->set.w;
    uint8_t *images = (uint8_t *)f->set.images, *labels = (uint8_t *)f->set.labels; /* owned by f */
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!keep[i]) {
            free(f->paths[i]);
            continue;
        }
        memmove(images + (size_t)k * img, images + (size_t)i * img, img);
        labels[k] = labels[i];
        f->paths[k++] = f->paths[i];
    }
    f->set.n = k;
    free(idx), free(keep);
    return 0;
}

static void list_classes(const clg_image_folder *f, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < f->classes && used + 1 < len; i++) {
        const int more = f->classes - i;
        int w = i == 8 && more > 1 ? snprintf(buf + used, len - used, ", ... (%d more)", more)
                                   : snprintf(buf + used, len - used, "%s%s", i ? ", " : "", f->class_names[i]);
        if (w < 0) break;
        used += (size_t)w;
        if (i == 8 && more > 1) break;
    }
}

/* The same classes in the same order, so that a label means one class in both sets. */
static int same_classes(const clg_image_folder *train, const char *train_dir, const clg_image_folder *test,
                        const char *test_dir) {
    bool same = train->classes == test->classes;
    for (int i = 0; same && i < train->classes; i++)
        same = !strcmp(train->class_names[i], test->class_names[i]);
    if (same) return 0;
    char a[512], b[512];
    list_classes(train, a, sizeof a), list_classes(test, b, sizeof b);
    fprintf(stderr, T ": the class folders of %s (%s) differ from those of %s (%s): a label would mean another "
                    "class\n", test_dir, b, train_dir, a);
    return -1;
}

static int read_folder(const train_data_options *o, const char *dir, clg_image_folder_params p,
                       clg_image_folder *out, clg_image_folder *held_out) {
    char err[1200];
    bool quiet = o->quiet;
    p.log = on_skipped, p.log_user = &quiet;
    if (clg_image_folder_read(dir, &p, out, held_out, err, sizeof err) != CLG_OK) {
        folder_failed(o, err);
        return -1;
    }
    return 0;
}

static int load_folder(const train_data_options *o, train_data *d) {
    char train_dir[4200], test_dir[4200], val_dir[4200];
    snprintf(train_dir, sizeof train_dir, "%s/train", o->dir);
    snprintf(test_dir, sizeof test_dir, "%s/test", o->dir);
    snprintf(val_dir, sizeof val_dir, "%s/val", o->dir);
    const bool has_train = is_dir(train_dir), has_test = is_dir(test_dir), has_val = !has_test && is_dir(val_dir);
    clg_image_folder_params p = clg_image_folder_default_params();
    p.channels = o->channels, p.height = o->height, p.width = o->width, p.skip_bad = o->skip_bad;
    p.seed = o->seed;
    clg_image_folder *train = &d->folder[0], *test = &d->folder[1];
    if (has_train && (has_test || has_val)) {
        const char *tdir = has_test ? test_dir : val_dir;
        if (o->holdout_set) {
            fprintf(stderr, T ": --holdout is for a folder without test/ or val/; %s has %s\n", o->dir, tdir);
            return -1;
        }
        snprintf(d->source, sizeof d->source, "image folder: %s and %s", train_dir, tdir);
        if (o->need_train && read_folder(o, train_dir, p, train, NULL)) return -1;
        if (o->need_train && !p.channels) p.channels = train->set.c; /* the test set as the training set */
        if (read_folder(o, tdir, p, test, NULL)) return -1;
        if (o->need_train && (test->set.h != train->set.h || test->set.w != train->set.w)) {
            fprintf(stderr, T ": %s is %d x %d pixels, the training images (%s) %d x %d; --image-size HxW resizes "
                            "both\n", test->paths[0], test->set.w, test->set.h, train->paths[0], train->set.w,
                    train->set.h);
            return -1;
        }
        if (o->need_train && same_classes(train, train_dir, test, tdir)) return -1;
    } else {
        /* One folder of classes (or train/ alone): its test set is a stratified holdout. */
        const char *root = has_train ? train_dir : o->dir;
        snprintf(d->source, sizeof d->source, "image folder: %s, %g of every class held out as the test set "
                 "(--holdout, drawn from --seed)", root, o->holdout);
        p.holdout = o->holdout;
        if (read_folder(o, root, p, train, test)) return -1;
        if (test->set.n == 0) {
            fprintf(stderr, T ": a holdout of %g leaves no test image in %s (%d images); raise --holdout or add "
                            "%s/test\n", o->holdout, root, train->set.n, o->dir);
            return -1;
        }
    }
    if (keep_drawn(train, o->limit, o->seed) || keep_drawn(test, o->test_limit, o->seed + 1)) return -1;
    const clg_image_folder *names = o->need_train ? train : test;
    if (names->classes < 2) {
        fprintf(stderr, T ": %s has one class folder (%s): --data takes the folder above the class folders\n",
                has_train ? train_dir : o->dir, names->class_names[0]);
        return -1;
    }
    d->train = train->set, d->test = test->set;
    d->classes = names->classes;
    d->class_names = (const char *const *)names->class_names;
    d->skipped = train->skipped + test->skipped;
    return 0;
}

int train_data_load(const train_data_options *o, train_data *d) {
    memset(d, 0, sizeof *d);
    if (idx_has(o->dir, "train") || idx_has(o->dir, "t10k")) {
        if (o->holdout_set || o->skip_bad || o->channels || o->height) {
            fprintf(stderr, T ": --holdout, --bad-files skip, --image-size and --channels are for image folders; %s "
                            "holds IDX files\n", o->dir);
            return -1;
        }
        snprintf(d->source, sizeof d->source, "IDX files in %s", o->dir);
        d->classes = o->classes;
        if (o->need_train &&
            load_idx_set(o->dir, "train", o->limit, o->classes, &d->idx[0], &d->idx[1], &d->train))
            return -1;
        if (load_idx_set(o->dir, "t10k", o->test_limit, o->classes, &d->idx[2], &d->idx[3], &d->test)) return -1;
        if (o->need_train && (d->train.h != d->test.h || d->train.w != d->test.w)) {
            fprintf(stderr, T ": %s: the training images are %d x %d, the test images %d x %d\n", o->dir, d->train.w,
                    d->train.h, d->test.w, d->test.h);
            return -1;
        }
        return 0;
    }
    if (!is_dir(o->dir)) {
        fprintf(stderr, T ": --data %s: no such folder%s\n", o->dir,
                !strcmp(o->dir, TRAIN_DATA_DEFAULT_DIR) ? " (install it: apt-get install dataset-fashion-mnist)"
                                                        : "");
        return -1;
    }
    /* Without IDX files: an image folder, when it has a subfolder. */
    if (!has_subfolder(o->dir)) {
        fprintf(stderr, T ": no train-images-idx3-ubyte[.gz] or t10k-images-idx3-ubyte[.gz] in %s, and no class "
                        "folders: --data takes IDX files or an image folder (clgrad-train --help)\n", o->dir);
        return -1;
    }
    return load_folder(o, d);
}

void train_data_free(train_data *d) {
    for (int i = 0; i < 4; i++)
        clg_idx_free(&d->idx[i]);
    clg_image_folder_free(&d->folder[0]);
    clg_image_folder_free(&d->folder[1]);
    memset(d, 0, sizeof *d);
}

void train_data_stats(const clg_image_set *s, float *mean, float *std) {
    const size_t plane = (size_t)s->h * (size_t)s->w, image = (size_t)s->c * plane, n = (size_t)s->n * plane;
    for (int c = 0; c < s->c; c++) {
        double sum = 0, sq = 0;
        for (size_t i = 0; i < (size_t)s->n; i++) {
            const uint8_t *p = s->images + i * image + (size_t)c * plane;
            for (size_t j = 0; j < plane; j++)
                sum += p[j] / 255.0;
        }
        const double m = n ? sum / (double)n : 0;
        for (size_t i = 0; i < (size_t)s->n; i++) {
            const uint8_t *p = s->images + i * image + (size_t)c * plane;
            for (size_t j = 0; j < plane; j++) {
                const double v = p[j] / 255.0 - m;
                sq += v * v;
            }
        }
        mean[c] = (float)m;
        std[c] = (float)sqrt(sq / (double)(n > 1 ? n - 1 : 1));
    }
}
