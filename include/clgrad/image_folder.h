/* clgrad/image_folder.h - your own images: a folder of class subfolders of PNG or JPEG files,
 * as torchvision's ImageFolder, decoded once (libpng, libturbojpeg) into the in-memory uint8
 * set that clg_loader_create takes (clgrad/loader.h). src/io/image_folder.c; tests:
 * tests/io/test_image_folder.c. Host only: no context, no OpenCL.
 */
#ifndef CLGRAD_IMAGE_FOLDER_H
#define CLGRAD_IMAGE_FOLDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context.h"
#include "loader.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options of clg_image_folder_read; start from clg_image_folder_default_params(). */
typedef struct clg_image_folder_params {
    /** 0 (default): the first image's (1 when it is grayscale, else 3); 1: every image to
     *  grayscale (ITU-R 601-2 luma, PIL's "L"); 3: every image to RGB (gray replicated).
     *  An alpha channel is dropped, as PIL's convert("RGB") does. */
    int channels;
    /** 0, 0 (default): every image must have the first image's size (a different size is a
     *  bad file); both > 0: every image of another size is resized to height x width
     *  (bilinear, half-pixel centres, no antialiasing: torch's interpolate(align_corners=False)). */
    int height, width;
    /** false (default): the first bad file (unreadable, corrupt, truncated, a PNG named .jpg,
     *  the wrong size) fails the read with its message in err; true: it is skipped, its
     *  message goes to log (CLG_LOG_WARN) and the read goes on. */
    bool skip_bad;
    /** In [0, 1): the share of every class moved to *held_out (round(share * class size)
     *  images per class, drawn from seed); 0 (default): none. For a folder without a test
     *  folder. */
    double holdout;
    /** The holdout draw (default 0). */
    uint64_t seed;
    /** Optional sink for the messages of skipped files; called on the caller's thread. */
    clg_log_fn log;
    /** Passed to log. */
    void *log_user;
    /** Most decoded bytes in all (default 4 GiB): a bigger folder fails with CLG_OUT_OF_HOST_MEMORY. */
    uint64_t max_bytes;
} clg_image_folder_params;

/** The defaults: channels and size from the first image, fail on a bad file, no holdout. */
CLG_API clg_image_folder_params clg_image_folder_default_params(void);

/** A decoded image folder; all of it owned, freed by clg_image_folder_free. */
typedef struct clg_image_folder {
    /** (n, c, h, w) uint8 images and n labels: pass &set to clg_loader_create. */
    clg_image_set set;
    /** Number of classes: the subfolders of the root. */
    int classes;
    /** classes names, in label order (sorted by bytes, as Python's sorted()). */
    char **class_names;
    /** set.n file paths (root/class/...), image i read from paths[i]. */
    char **paths;
    /** Bad files skipped (skip_bad). */
    int skipped;
} clg_image_folder;

/** Reads root: every subfolder not starting with '.' is a class (label = its index in the
 *  sorted names, at most 256 classes); every file below it (recursively, sorted, symlinks
 *  followed, hidden names skipped) whose name ends in .png, .jpg or .jpeg (any case) is an
 *  image of that class; other files are ignored. The format is taken from the file's first
 *  bytes and must match its name. An empty class folder fails the read.
 *  @param root the folder
 *  @param p options, or NULL for the defaults
 *  @param out the images; on failure it is left empty (safe to free)
 *  @param held_out with p->holdout > 0, the held-out images (same classes); may be NULL otherwise
 *  @param err, err_len on failure a message naming the file and the cause (may be NULL)
 *  @return CLG_OK; CLG_IO_ERROR (a folder or file cannot be read), CLG_BAD_FORMAT (a bad file,
 *  no classes, an empty class), CLG_INVALID_ARGUMENT, CLG_OUT_OF_HOST_MEMORY, CLG_UNSUPPORTED (a
 *  format this build has no decoder for: see clg_image_folder_supports) */
CLG_API clg_status clg_image_folder_read(const char *root, const clg_image_folder_params *p,
                                         clg_image_folder *out, clg_image_folder *held_out, char *err,
                                         size_t err_len);

/** Frees what clg_image_folder_read filled in and zeroes *f; NULL and an empty folder are fine. */
CLG_API void clg_image_folder_free(clg_image_folder *f);

/** Whether this build decodes format ("png" or "jpeg"): libpng and libturbojpeg are optional. */
CLG_API bool clg_image_folder_supports(const char *format);

#ifdef __cplusplus
}
#endif
#endif
