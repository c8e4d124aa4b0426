/* src/io/loader.c - batches from an in-memory uint8 image set: the epoch's order (Fisher-Yates
 * from (seed, epoch), the same as clgrad-train's), per-sample crop and flip drawn from (seed,
 * epoch, image index), normalisation, and one batch prepared ahead on a worker thread that
 * touches host memory only (the context stays on the caller's thread). Public API:
 * include/clgrad/loader.h. Tests: tests/io/test_loader.c.
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/loader.h"
#include "tensor/tensor.h"

typedef struct slot {
    void *x;         /* batch_size * c * h * w values of the dtype */
    int32_t *labels; /* batch_size */
    int count;
} slot;

struct clg_loader {
    clg_context *ctx;
    clg_image_set set;
    clg_loader_params p;
    float *mean, *std; /* c each, owned; NULL: x / 255 */
    int *order;        /* this replica's share of the epoch's permutation: n_local entries */
    int n_local;
    int *full;         /* the whole permutation (n entries), scratch for make_order */
    uint64_t epoch;
    int64_t batch, batches;
    slot slots[2];
    int cur; /* the slot the next batch comes from when it was prefetched */
    /* worker */
    pthread_t thread;
    bool has_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t job;     /* batch the worker is asked to prepare into slot job_slot; -1: none */
    int job_slot;
    int64_t done;    /* batch prepared in slot done_slot; -1: none */
    int done_slot;
    bool quit;
};

clg_loader_params clg_loader_default_params(void) {
    return (clg_loader_params){.batch_size = 64, .shuffle = true, .seed = 0, .drop_last = false,
                               .mean = NULL, .std = NULL, .crop_padding = 0, .hflip = false,
                               .prefetch = true, .dtype = CLG_F32, .rank = 0, .world_size = 1};
}

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* This replica's share of the epoch's permutation into order (n_local entries), through full
 * (n entries): the permutation of all images, padded by repeating its start to a multiple of
 * world_size, position rank + i * world_size for entry i. */
static void make_order(const clg_loader *l, uint64_t epoch, int *order, int *full) {
    const int n = l->set.n, world = l->p.world_size;
    for (int i = 0; i < n; i++)
        full[i] = i;
    if (l->p.shuffle) {
        uint64_t state = mix(l->p.seed * 1000003u + epoch);
        for (int i = n - 1; i > 0; i--) {
            state = mix(state);
            const int j = (int)(state % (uint64_t)(i + 1));
            const int t = full[i];
            full[i] = full[j];
            full[j] = t;
        }
    }
    for (int i = 0; i < l->n_local; i++)
        order[i] = full[((int64_t)l->p.rank + (int64_t)i * world) % n];
}

void clg_loader_augment_of(const clg_loader *l, uint64_t epoch, int index, int *dy, int *dx, bool *flip) {
    const int pad = l ? l->p.crop_padding : 0;
    const uint64_t r = l ? mix(mix(l->p.seed ^ 0x6c6f61646572ull) + epoch * 0x100000001b3ull + (uint64_t)index) : 0;
    const uint64_t span = (uint64_t)(2 * pad + 1);
    *dy = pad > 0 ? (int)((r & 0xfffff) % span) : pad;
    *dx = pad > 0 ? (int)(((r >> 20) & 0xfffff) % span) : pad;
    *flip = l && l->p.hflip && ((r >> 63) & 1u);
}

int clg_loader_index_at(const clg_loader *l, uint64_t epoch, int pos) {
    if (!l || pos < 0 || pos >= l->n_local) return -1;
    if (epoch == l->epoch) return l->order[pos];
    int *order = malloc(sizeof *order * (size_t)l->n_local), *full = malloc(sizeof *full * (size_t)l->set.n);
    const int v = order && full ? (make_order(l, epoch, order, full), order[pos]) : -1;
    free(order);
    free(full);
    return v;
}

/* Batch b of the current epoch into s: host work only (the worker runs it). */
static void prepare(const clg_loader *l, int64_t b, slot *s) {
    const clg_image_set *d = &l->set;
    const int bs = l->p.batch_size, C = d->c, H = d->h, W = d->w, pad = l->p.crop_padding;
    const int64_t start = b * bs;
    const int count = (int)((int64_t)l->n_local - start < bs ? (int64_t)l->n_local - start : bs);
    const size_t plane = (size_t)H * (size_t)W, image = plane * (size_t)C;
    for (int i = 0; i < count; i++) {
        const int idx = l->order[start + i];
        int dy, dx;
        bool flip;
        clg_loader_augment_of(l, l->epoch, idx, &dy, &dx, &flip);
        const uint8_t *src = d->images + (size_t)idx * image;
        for (int c = 0; c < C; c++) {
            const float scale = l->std ? 1.0f / (255.0f * l->std[c]) : 1.0f / 255.0f;
            const float shift = l->mean ? -l->mean[c] / l->std[c] : 0.0f;
            const size_t out0 = (size_t)i * image + (size_t)c * plane;
            for (int y = 0; y < H; y++) {
                const int sy = y + dy - pad; /* row in the unpadded image */
                for (int x = 0; x < W; x++) {
                    const int cx = flip ? W - 1 - x : x;  /* flip after the crop */
                    const int sx = cx + dx - pad;
                    const uint8_t v = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? src[(size_t)c * plane + (size_t)sy * W + (size_t)sx] : 0;
                    const float f = (float)v * scale + shift;
                    const size_t o = out0 + (size_t)y * W + (size_t)x;
                    if (l->p.dtype == CLG_F64)
                        ((double *)s->x)[o] = (double)f;
                    else
                        ((float *)s->x)[o] = f;
                }
            }
        }
        s->labels[i] = d->labels[idx];
    }
    s->count = count;
}

static void *worker(void *arg) {
    clg_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && l->job < 0)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        const int64_t b = l->job;
        const int si = l->job_slot;
        pthread_mutex_unlock(&l->mu);
        prepare(l, b, &l->slots[si]);
        pthread_mutex_lock(&l->mu);
        l->job = -1;
        l->done = b;
        l->done_slot = si;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Waits until the worker has nothing in hand. */
static void drain(clg_loader *l) {
    if (!l->has_thread) return;
    pthread_mutex_lock(&l->mu);
    while (l->job >= 0)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static void request(clg_loader *l, int64_t b, int si) {
    pthread_mutex_lock(&l->mu);
    l->job = b;
    l->job_slot = si;
    l->done = -1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void clg_loader_free(clg_loader *l) {
    if (!l) return;
    if (l->has_thread) {
        pthread_mutex_lock(&l->mu);
        l->quit = true;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
    }
    for (int i = 0; i < 2; i++) {
        free(l->slots[i].x);
        free(l->slots[i].labels);
    }
    free(l->mean);
    free(l->std);
    free(l->order);
    free(l->full);
    free(l);
}

static clg_status check(clg_context *ctx, const clg_image_set *d, const clg_loader_params *p) {
    const char *what = NULL;
    if (!d->images || !d->labels) what = "images or labels is NULL";
    else if (d->n < 1 || d->c < 1 || d->h < 1 || d->w < 1) what = "n, c, h and w must be >= 1";
    else if (p->batch_size < 1) what = "batch_size must be >= 1";
    else if (p->crop_padding < 0 || p->crop_padding > INT_MAX / 4) what = "crop_padding must be >= 0";
    else if (!p->mean != !p->std) what = "mean and std go together";
    else if (p->dtype != CLG_F32 && p->dtype != CLG_F64) what = "dtype must be f32 or f64";
    else if (p->world_size < 1 || p->rank < 0 || p->rank >= p->world_size) what = "rank must be in [0, world_size)";
    if (!what && p->std)
        for (int c = 0; c < d->c; c++)
            if (!(p->std[c] > 0.0f) || !(p->mean[c] == p->mean[c])) what = "std must be > 0 and mean a number";
    size_t image = 0, batch = 0, all = 0;
    if (!what && !(clg__mul_size((size_t)d->c * (size_t)d->h, (size_t)d->w, &image) &&
                   clg__mul_size(image, (size_t)p->batch_size, &batch) && batch <= (size_t)INT_MAX &&
                   clg__mul_size(image, (size_t)d->n, &all)))
        what = "a batch of that size does not fit";
    return what ? clg__fail(ctx, CLG_INVALID_ARGUMENT, "loader: %s", what) : CLG_OK;
}

clg_status clg_loader_create(clg_context *ctx, const clg_image_set *set, const clg_loader_params *p,
                             clg_loader **out) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!set || !p || !out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "loader: set, params or out is NULL");
    *out = NULL;
    clg_status st = check(ctx, set, p);
    if (st != CLG_OK) return st;
    clg_loader *l = calloc(1, sizeof *l);
    if (!l) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "loader: out of host memory");
    l->ctx = ctx;
    l->set = *set;
    l->p = *p;
    l->p.mean = l->p.std = NULL;
    const size_t vals = (size_t)p->batch_size * (size_t)set->c * (size_t)set->h * (size_t)set->w;
    l->n_local = (int)(((int64_t)set->n + p->world_size - 1) / p->world_size);
    bool ok = (l->order = malloc(sizeof *l->order * (size_t)l->n_local)) != NULL &&
              (l->full = malloc(sizeof *l->full * (size_t)set->n)) != NULL;
    for (int i = 0; ok && i < 2; i++)
        ok = (l->slots[i].x = malloc(vals * clg_dtype_size(p->dtype))) &&
             (l->slots[i].labels = malloc(sizeof(int32_t) * (size_t)p->batch_size));
    if (ok && p->mean) {
        ok = (l->mean = malloc(sizeof(float) * (size_t)set->c)) && (l->std = malloc(sizeof(float) * (size_t)set->c));
        if (ok) {
            memcpy(l->mean, p->mean, sizeof(float) * (size_t)set->c);
            memcpy(l->std, p->std, sizeof(float) * (size_t)set->c);
        }
    }
    if (!ok) {
        clg_loader_free(l);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "loader: out of host memory for %zu values", vals);
    }
    l->batches = p->drop_last ? l->n_local / p->batch_size : (l->n_local + p->batch_size - 1) / p->batch_size;
    l->job = l->done = -1;
    make_order(l, 0, l->order, l->full);
    if (p->prefetch) {
        if (pthread_mutex_init(&l->mu, NULL) || pthread_cond_init(&l->cv, NULL) ||
            pthread_create(&l->thread, NULL, worker, l)) {
            clg_loader_free(l); /* has_thread still false: nothing to join */
            return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "loader: cannot start the prefetch thread");
        }
        l->has_thread = true;
    }
    *out = l;
    return CLG_OK;
}

int64_t clg_loader_batches(const clg_loader *l) { return l ? l->batches : 0; }

void clg_loader_position(const clg_loader *l, uint64_t *epoch, int64_t *batch) {
    if (epoch) *epoch = l ? l->epoch : 0;
    if (batch) *batch = l ? l->batch : 0;
}

clg_status clg_loader_seek(clg_loader *l, uint64_t epoch, int64_t batch) {
    if (!l) return CLG_INVALID_ARGUMENT;
    if (batch < 0 || batch > l->batches)
        return clg__fail(l->ctx, CLG_INVALID_ARGUMENT, "loader: batch %lld of %lld", (long long)batch,
                         (long long)l->batches);
    drain(l);
    l->done = -1;
    if (epoch != l->epoch) make_order(l, epoch, l->order, l->full);
    l->epoch = epoch;
    l->batch = batch;
    return CLG_OK;
}

clg_status clg_loader_next(clg_loader *l, clg_tensor **x, const int32_t **labels, int *count) {
    if (!l) return CLG_INVALID_ARGUMENT;
    if (!x || !labels || !count) return clg__fail(l->ctx, CLG_INVALID_ARGUMENT, "loader: next: NULL output");
    *x = NULL;
    *labels = NULL;
    *count = 0;
    if (l->batch >= l->batches) return CLG_OK;
    const int64_t b = l->batch;
    int si;
    if (l->has_thread) {
        drain(l);
        if (l->done == b) {
            si = l->done_slot;
        } else { /* not asked for (first batch, or after a seek) */
            si = l->cur;
            prepare(l, b, &l->slots[si]);
        }
        if (b + 1 < l->batches) request(l, b + 1, si ^ 1);
        l->cur = si ^ 1;
    } else {
        si = 0;
        prepare(l, b, &l->slots[0]);
    }
    const slot *s = &l->slots[si];
    const int shape[4] = {s->count, l->set.c, l->set.h, l->set.w};
    clg_status st = clg_tensor_from_host(l->ctx, l->p.dtype, 4, shape, s->x, x);
    if (st != CLG_OK) return st;
    *labels = s->labels;
    *count = s->count;
    l->batch = b + 1;
    return CLG_OK;
}
