/* src/core/host.h - host-side helpers every floor may use and that need neither a context nor
 * OpenCL: formatting into a caller buffer, strdup, the monotonic clock, mkdir -p, whole-file
 * reading, FNV-1a and checked size arithmetic (src/core/host.c). The io parsers and the fuzz
 * targets (tests/fuzz) link this alone. Tests: tests/core/test_host.c.
 */
#ifndef CLGRAD_CORE_HOST_H
#define CLGRAD_CORE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/status.h"

#if defined(__GNUC__)
#define CLG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLG_PRINTF(f, a)
#endif

/* Formats into a caller buffer that may be NULL or empty (context creation and the readers
 * have no context to hold a message). */
void clg__fmt(char *buf, size_t len, const char *fmt, ...) CLG_PRINTF(3, 4);
/* strdup that reports failure by NULL (and maps NULL to NULL). */
char *clg__strdup(const char *s);
/* Seconds on the monotonic clock. */
double clg__now_seconds(void);
/* mkdir -p: creates dir and its missing parents (0755); true when dir exists afterwards. */
bool clg__mkdirs(const char *dir);
/* Reads the whole file into a new malloc'd buffer with a NUL after the last byte (*data, never
 * NULL on success; the caller frees it). Fails with CLG_IO_ERROR naming path and strerror, or
 * CLG_BAD_FORMAT when the file is longer than cap bytes. what prefixes the message ("IDX"). */
clg_status clg__read_file(const char *path, size_t cap, const char *what, unsigned char **data, size_t *size,
                          char *err, size_t err_len);
/* Writes len bytes to path through "<path>.tmp" + fsync + rename: a reader sees the old file
 * or the new one, never a part. CLG_IO_ERROR on failure (the temp file removed). */
clg_status clg__write_file_atomic(const char *path, const void *data, size_t len);
/* Writers that many processes may run at once on one path (the disk cache, the tuning file)
 * write "<path>.tmp.<pid>" and rename it. A writer killed before the rename leaves its temp
 * file behind: this removes those of path whose process is gone (best effort). */
void clg__remove_stale_temps(const char *path);
/* FNV-1a 64 continued from h (start with CLG_FNV1A_START). */
#define CLG_FNV1A_START 0xcbf29ce484222325ull
uint64_t clg__fnv1a(uint64_t h, const void *data, size_t len);

/* *out = a * b, a + b; false when the result does not fit a size_t. */
static inline bool clg__mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}
static inline bool clg__add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return false;
    *out = a + b;
    return true;
}

#endif
