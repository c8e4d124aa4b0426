/* tools/train_data.h - clgrad-train's data: IDX files (Fashion-MNIST's layout) or an image folder
 * (torchvision's ImageFolder: train/ and test/ or val/, else a seeded holdout), read once into
 * the in-memory uint8 sets the loader takes, and their per-channel statistics. Public API only.
 * tools/train_data.c; tests: tests/tools/test_train.sh (IDX), test_train_images.sh (folders).
 */
#ifndef CLGRAD_TOOLS_TRAIN_DATA_H
#define CLGRAD_TOOLS_TRAIN_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include <clgrad.h>

/* The IDX folder clgrad-train reads unless told otherwise. */
#define TRAIN_DATA_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
/* The share of every class an image folder without test/ or val/ holds out as the test set. */
#define TRAIN_DATA_DEFAULT_HOLDOUT 0.1

typedef struct train_data_options {
    const char *dir;
    int limit, test_limit; /* 0: every image; else the first n (a seeded draw in a folder) */
    bool need_train;       /* false: the test set only (evaluation) */
    int classes;           /* IDX: the classes labels must fall in (the model's) */
    /* image folders only */
    double holdout;        /* without test/ or val/: the share held out */
    bool holdout_set;      /* given on the command line: refused when there is a test folder */
    uint64_t seed;         /* the holdout's and the limits' draws */
    bool skip_bad;         /* a bad file is left out with a message, not the end of the run */
    int channels;          /* 0: the first image's; 1 or 3: every image converted */
    int height, width;     /* 0, 0: every image must have one size; else each resized to this */
    bool quiet;            /* no messages about skipped files (MPI ranks other than 0) */
} train_data_options;

typedef struct train_data {
    /* what the loaders read (borrowed from the storage below; (n, c, h, w) uint8) */
    clg_image_set train, test;
    int classes;
    /* how the data was found, for the run's header: "IDX", "image folder: DIR/train and DIR/test" */
    char source[8800];
    int skipped;          /* bad image files left out (skip_bad) */
    const char *const *class_names; /* classes names (image folders), else NULL; owned below */
    /* storage, owned */
    clg_idx idx[4];       /* train images, train labels, test images, test labels */
    clg_image_folder folder[2]; /* train, test */
} train_data;

/* Reads o->dir into *d (zeroed first; free with train_data_free, also after a failure).
 * Messages go to stderr, "clgrad-train: ..." naming the file and the cause; returns 0 or -1. */
int train_data_load(const train_data_options *o, train_data *d);
void train_data_free(train_data *d);
/* torchvision's Normalize statistics of s in [0, 1], per channel: the mean and the unbiased
 * standard deviation over every image's pixels (torch's x.mean((0, 2, 3)), x.std((0, 2, 3))).
 * mean and std hold s->c values. */
void train_data_stats(const clg_image_set *s, float *mean, float *std);

#endif
