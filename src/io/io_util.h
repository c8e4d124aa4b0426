/* src/io/io_util.h - what the readers and writers of src/io share: little/big-endian byte
 * access (files have a fixed byte order, the host may not), overflow-checked size products,
 * whole-file reading and the caller-buffer error formatter (src/io/io_util.c). Nothing here
 * needs a context or OpenCL, so the parsers compile alone for the fuzz targets in tests/fuzz.
 */
#ifndef CLGRAD_IO_UTIL_H
#define CLGRAD_IO_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "clgrad/status.h"

/* Formats into a caller buffer that may be NULL or empty (the readers' err argument). */
void clg__io_errf(char *err, size_t err_len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Reads the whole file into a new malloc'd buffer (*data, never NULL on success; the caller
 * frees it). Fails with CLG_IO_ERROR naming path and strerror, or CLG_BAD_FORMAT when the
 * file is longer than cap bytes. what prefixes the message ("IDX"). */
clg_status clg__io_read_file(const char *path, size_t cap, const char *what, unsigned char **data,
                             size_t *size, char *err, size_t err_len);

/* clg_idx_parse with the decoded-data cap as a parameter (1 GiB there); src/io/idx.c.
 * Tests reach the cap paths with a small one. */
struct clg_idx;
clg_status clg__idx_parse_capped(const void *bytes, size_t len, size_t cap, struct clg_idx *out,
                                 char *err, size_t err_len);

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

/* *out = a * b; false when it does not fit a size_t. */
static inline bool io__mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

#endif
