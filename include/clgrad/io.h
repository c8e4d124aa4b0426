/* clgrad/io.h - outside data: safetensors checkpoints (read: src/io/safetensors.c; write and
 * module load/save: src/io/checkpoint.c) and IDX image sets (src/io/idx.c). Every reader
 * takes regular files only and checks sizes before it reads (src/io/file.c); files are
 * written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.
 * Tests: tests/io/ (test_safetensors.c, test_idx.c, test_checkpoint.c, test_checkpoint_crash.c);
 * fuzz targets in tests/fuzz (run.sh).
 */
#ifndef CLGRAD_IO_H
#define CLGRAD_IO_H

#include "nn.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- safetensors ---- */
/* What a save may do beyond the default. */
typedef struct clg_save_params {
    /* false (the default): a tensor holding a NaN or an infinity fails the save with
     * CLG_INVALID_ARGUMENT, naming the tensor and the element, before the file at path is
     * touched, so a diverged run never replaces a good checkpoint. true writes them as they
     * are (safetensors has no objection; PyTorch loads them). */
    bool allow_nonfinite;
    /* The file's "__metadata__": n_metadata (key, value) string pairs, metadata[2i] the key and
     * metadata[2i + 1] its value (both copied into the file; NULL with 0 for none). */
    const char *const *metadata;
    size_t n_metadata; /* (key, value) pairs in metadata */
} clg_save_params;
CLG_API clg_save_params clg_save_default_params(void); /* allow_nonfinite false, no metadata */

/* Writes entries (name -> tensor, F32 or F64, C order) atomically to path: in the given
 * order, the header padded with spaces to a multiple of 8, every value checked finite (see
 * clg_save_params), via the temp file "<path>.tmp" + fsync + rename, so a failure leaves any
 * previous file at path as it was.
 * - The temp name is one per path: a save that is killed leaves at most "<path>.tmp", and the
 *   next save to path removes it. (A file of yours called "<path>.tmp" is not safe there.)
 * - Saves to one path, from any process or thread, take turns: each holds an flock on its
 *   temp file from creation to rename, a second waits for the first, and the last to finish
 *   wins. (On a file system without flock they do not wait: the last rename wins, and a save
 *   whose temp file another removed fails with CLG_IO_ERROR.)
 * - Over an existing regular file, the new file keeps its permission bits (not its owner,
 *   group, ACLs or extended attributes; hard links to the old file keep the old content).
 * - A symlink at path is replaced by the new file, as rename does: the link's target is left
 *   as it was. Resolve the link first (realpath) to write through it.
 * Same-named entries, "__metadata__" as a name, or NULLs: CLG_INVALID_ARGUMENT. */
CLG_API clg_status clg_safetensors_save(clg_context *ctx, const char *path,
                                        const clg_named_tensor *entries, size_t n);
CLG_API clg_status clg_safetensors_save_with(clg_context *ctx, const char *path,
                                             const clg_named_tensor *entries, size_t n,
                                             clg_save_params params);
/* Loads every tensor of the module's state from path: names and shapes must all match
 * (F64 files convert into F32 tensors and back; a file's shape [] counts as [1]). Extra or
 * missing names fail with CLG_BAD_FORMAT, other shapes with CLG_SHAPE_MISMATCH, all checked
 * before anything is written (only a failing device write can leave a partial load).
 * num_batches_tracked: PyTorch's I64 [] loads into clgrad's F32 (1); save writes F32 [1]. */
CLG_API clg_status clg_module_load(clg_context *ctx, clg_module *m, const char *path);
/* The module's state through clg_safetensors_save (default params) / _with (params). */
CLG_API clg_status clg_module_save(clg_context *ctx, const clg_module *m, const char *path);
CLG_API clg_status clg_module_save_with(clg_context *ctx, const clg_module *m, const char *path,
                                        clg_save_params params);

/* A parsed safetensors file held in host memory (for tools and fuzzing). */
typedef struct clg_st_entry {
    char *name;        /* owned by the file */
    int dtype;         /* CLG_F32 or CLG_F64; other dtypes are rejected, except a one-element
                        * I64 (PyTorch's num_batches_tracked), converted to F64 in place */
    int ndim; /* entries in shape */
    int shape[CLG_MAX_DIMS]; /* the dimensions */
    const void *data;  /* points into the file's buffer, dtype-sized values, maybe unaligned,
                        * little-endian as in the file */
    size_t bytes; /* bytes at data */
} clg_st_entry;
/* A whole safetensors file in host memory (clg_st_parse, clg_st_read); free with clg_st_file_free. */
typedef struct clg_st_file {
    unsigned char *buffer; /* owned */
    size_t size; /* bytes in buffer */
    clg_st_entry *entries; /* owned */
    size_t n_entries; /* entries in entries */
    char **metadata;       /* owned: n_metadata (key, value) pairs of "__metadata__", in file order */
    size_t n_metadata; /* (key, value) pairs in metadata */
} clg_st_file;
/* Parses size bytes at data (copied). err gets a reason. Free with clg_st_file_free. */
CLG_API clg_status clg_st_parse(const void *data, size_t size, clg_st_file *out, char *err, size_t err_len);
/* Reads and parses path. Only a regular file: a FIFO, a device (/dev/zero) or a folder fails
 * with CLG_IO_ERROR before anything is read. The header length is checked (at most 100 MB,
 * within the file) before the header is read, and only the data the header's entries reach
 * is read after it (out->size counts what was read; trailing bytes are not). */
CLG_API clg_status clg_st_read(const char *path, clg_st_file *out, char *err, size_t err_len);
CLG_API void clg_st_file_free(clg_st_file *f);

/* ---- IDX (MNIST-style), plain or gzip ---- */
/* An IDX file (MNIST's format) decoded into host memory (clg_idx_read); free with clg_idx_free. */
typedef struct clg_idx {
    int ndim;            /* 1 (labels) or 3 (images) usually; up to 4 */
    int dims[CLG_MAX_DIMS]; /* the sizes, ndim of them */
    unsigned char *data; /* owned; unsigned bytes, type 0x08 only */
    size_t size;         /* product of dims */
} clg_idx;
/* Parses len bytes: raw IDX, or gzip of it (starts with 1f 8b). */
CLG_API clg_status clg_idx_parse(const void *bytes, size_t len, clg_idx *out, char *err, size_t err_len);
/* Reads path (gunzipping when it starts with the gzip magic). Caps the decoded size at 1 GiB.
 * Only a regular file (else CLG_IO_ERROR, nothing read); a raw file's header is checked
 * against the file's size before its data is read; a gzip file bigger than 1 GiB + 1/64 +
 * 64 KiB (more than any IDX under the cap compresses to) is refused unread. */
CLG_API clg_status clg_idx_read(const char *path, clg_idx *out, char *err, size_t err_len);
CLG_API void clg_idx_free(clg_idx *idx);

/* ---- training state (src/io/train_state.c): exact resume ----
 * One safetensors file holding everything a run needs to continue bit for bit:
 * - the model's state under its own names (as clg_module_save writes it);
 * - per parameter (by its state name P): "optim.P.S" for each optimizer state slot S that
 *   exists (momentum_buffer, exp_avg, exp_avg_sq) and "optim.P.step" (F64 [1]);
 * - "optim.group_lr" (F64 [groups]): each group's current rate;
 * - "rng.M" (F64 [1]) for each module M with a random-draw counter (dropout);
 * - "train.counters" (F64 [4]): epoch, batch (the next batch of that epoch), global step and
 *   the schedule's last step (-1 without one);
 * - __metadata__: format "clgrad-train-state-1", the optimizer's kind and hyper-parameters.
 * The optimizer must be over the module's parameters (any order, any groups). Loading checks
 * every name and shape before it writes anything, and needs a model, optimizer (same kind)
 * and schedule built as the saved run's were. Written atomically (clg_safetensors_save). */
typedef struct clg_train_counters {
    uint64_t epoch; /* the epoch of the next batch */
    int64_t batch; /* the next batch of epoch */
    int64_t step;  /* optimizer steps taken */
} clg_train_counters;
/* Saves m, opt's state, sched's step (sched may be NULL) and counters to path in one safetensors file. */
CLG_API clg_status clg_train_state_save(clg_context *ctx, const char *path, const clg_module *m,
                                        const clg_optimizer *opt, const clg_lr_scheduler *sched,
                                        const clg_train_counters *counters);
/* sched may be NULL (then the file's schedule step is ignored); counters gets the saved ones. */
CLG_API clg_status clg_train_state_load(clg_context *ctx, const char *path, clg_module *m, clg_optimizer *opt,
                                        clg_lr_scheduler *sched, clg_train_counters *counters);

#ifdef __cplusplus
}
#endif
#endif
