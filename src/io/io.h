/* src/io/io.h - what the readers and writers of src/io share: little/big-endian byte access
 * (files have a fixed byte order, the host may not) and bit patterns; whole-file reading, the
 * error formatter and checked sizes come from src/core/host.h; the readers open files through
 * io__open_regular (src/io/file.c). Nothing here needs a context or
 * OpenCL, so the parsers compile alone for the fuzz targets in tests/fuzz.
 */
#ifndef CLGRAD_IO_IO_H
#define CLGRAD_IO_IO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "clgrad/status.h"
#include "clgrad/tensor.h"
#include "core/host.h"

/* clg_idx_parse with the decoded-data cap as a parameter (1 GiB there); src/io/idx.c.
 * Tests reach the cap paths with a small one. */
struct clg_idx;
clg_status clg__idx_parse_capped(const void *bytes, size_t len, size_t cap, struct clg_idx *out,
                                 char *err, size_t err_len);
/* clg_idx_read with the cap as a parameter. */
clg_status clg__idx_read_capped(const char *path, size_t cap, struct clg_idx *out, char *err, size_t err_len);

/* An open regular file for the readers (src/io/file.c). */
typedef struct io_file {
    int fd;
    uint64_t size; /* from fstat at open */
} io_file;
/* Opens path for reading without blocking and refuses anything but a regular file (a FIFO,
 * /dev/zero, a folder) with CLG_IO_ERROR; what prefixes messages ("IDX"). */
clg_status io__open_regular(const char *path, const char *what, io_file *f, char *err, size_t err_len);
/* Reads exactly len bytes at offset: CLG_BAD_FORMAT when the file ends first (it shrank),
 * CLG_IO_ERROR on a read error. */
clg_status io__read_at(const io_file *f, uint64_t offset, void *buf, size_t len, const char *what,
                       const char *path, char *err, size_t err_len);
void io__close(io_file *f);
/* numel values of a safetensors entry (F32 or F64, little-endian, maybe unaligned) into dst as
 * dtype: F32 to F32 bit-exact, NaNs kept (src/io/checkpoint.c; module and training-state loads). */
struct clg_st_entry;
void io__st_values(const struct clg_st_entry *e, clg_dtype dtype, void *dst, size_t numel);

static inline uint64_t io__load_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint32_t io__load_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint32_t io__load_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void io__store_le64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

static inline void io__store_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++, v >>= 8)
        p[i] = (unsigned char)(v & 0xff);
}

/* Bit patterns <-> values, without aliasing tricks. */
static inline double io__f64_from_bits(uint64_t bits) {
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}
static inline uint64_t io__f64_bits(double d) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits;
}
static inline float io__f32_from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
static inline uint32_t io__f32_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

#endif
