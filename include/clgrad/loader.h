/* clgrad/loader.h - batches from an in-memory image set (src/io/loader.c): a seeded shuffle per
 * epoch, drop-last or a short last batch, random crop with zero padding and horizontal flip
 * per sample, normalisation by per-channel mean and std (torchvision's RandomCrop,
 * RandomHorizontalFlip, ToTensor, Normalize, in that order), the next batch prepared on a
 * background thread while the device trains. Everything random is a function of (seed, epoch,
 * sample): the same seed gives the same batches whatever the prefetching, and a run resumes at
 * any (epoch, batch). The loader is host code: only the calling thread touches the context.
 * Tests: tests/io/test_loader.c.
 */
#ifndef CLGRAD_LOADER_H
#define CLGRAD_LOADER_H

#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* n images of (c, h, w) uint8 values in C order, and n labels; borrowed: they must outlive the
 * loader and not change while it runs. */
typedef struct clg_image_set {
    const uint8_t *images; /* n * c * h * w values */
    const uint8_t *labels; /* n class indices */
    int n, c, h, w; /* images, channels, height, width */
} clg_image_set;

/* Options of clg_loader_create; start from clg_loader_default_params(). */
typedef struct clg_loader_params {
    int batch_size;     /* default 64 */
    bool shuffle;       /* default true: a permutation per epoch from (seed, epoch) */
    uint64_t seed;      /* default 0 */
    bool drop_last;     /* default false: the last batch may be short */
    const float *mean;  /* c values (copied), or NULL: x / 255 only */
    const float *std;   /* c values (copied, > 0); with mean */
    int crop_padding;   /* > 0: a random h x w crop of the image zero-padded by this much */
    bool hflip;         /* a random horizontal flip, probability 1/2 */
    bool prefetch;      /* default true: the next batch on a background thread */
    clg_dtype dtype;    /* default CLG_F32 */
    /* Sharding over world_size replicas (default 0 of 1), PyTorch's DistributedSampler: every
     * replica draws the same epoch permutation, pads it by repeating its start to a multiple
     * of world_size, and takes positions rank, rank + world_size, ... (ceil(n / world_size)
     * images each); batch_size and drop_last then apply to that share. */
    int rank, world_size;
} clg_loader_params;
CLG_API clg_loader_params clg_loader_default_params(void); /* the defaults noted at each field */

/* A batch loader over one image set (opaque). */
typedef struct clg_loader clg_loader;
/* Ownership: the caller frees *out with clg_loader_free (which joins its thread) before
 * freeing ctx. The loader starts at epoch 0, batch 0. */
CLG_API clg_status clg_loader_create(clg_context *ctx, const clg_image_set *set, const clg_loader_params *p,
                                     clg_loader **out);
CLG_API void clg_loader_free(clg_loader *l);
/* Batches in one epoch (of this replica's share). */
CLG_API int64_t clg_loader_batches(const clg_loader *l);
/* Moves to batch `batch` of epoch `epoch` (0 <= batch <= batches; batches: the epoch's end). */
CLG_API clg_status clg_loader_seek(clg_loader *l, uint64_t epoch, int64_t batch);
/* Where the next clg_loader_next reads from. */
CLG_API void clg_loader_position(const clg_loader *l, uint64_t *epoch, int64_t *batch);
/* The next batch of the current epoch: *x a new (count, c, h, w) tensor the caller frees, and
 * *labels count labels owned by the loader, valid until the next call. At the end of the
 * epoch: CLG_OK with *x NULL and *count 0; clg_loader_seek(l, epoch + 1, 0) starts the next. */
CLG_API clg_status clg_loader_next(clg_loader *l, clg_tensor **x, const int32_t **labels, int *count);
/* What the loader does to image `index` in epoch `epoch`: the crop's top-left corner in the
 * padded image (0..2 * crop_padding each; crop_padding, crop_padding without cropping) and
 * whether it is flipped; and the image at position `pos` of the epoch's order (this replica's
 * share; -1 past its end). */
CLG_API void clg_loader_augment_of(const clg_loader *l, uint64_t epoch, int index, int *dy, int *dx, bool *flip);
CLG_API int clg_loader_index_at(const clg_loader *l, uint64_t epoch, int pos);

#ifdef __cplusplus
}
#endif
#endif
