/* tests/io/io_test.h - helpers shared by tests/io/test_safetensors.c, test_idx.c and
 * test_checkpoint.c: a crafted safetensors buffer and entry lookup, a temporary folder per
 * process (made before and removed after the groups) and writing a file into it.
 */
#ifndef CLGRAD_TESTS_IO_IO_TEST_H
#define CLGRAD_TESTS_IO_IO_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "clgrad.h"
#include "io/io.h"
#include "ref.h"

/* A safetensors buffer: length, json padded with spaces to 8, then data_len bytes of data
 * (or of the pattern i*7 when data is NULL). *len gets the size; free() it. */
static inline unsigned char *st_build(const char *json, const void *data, size_t data_len, size_t *len) {
    size_t j = strlen(json), padded = (j + 7) / 8 * 8;
    *len = 8 + padded + data_len;
    unsigned char *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    io__store_le64(b, padded);
    memcpy(b + 8, json, j);
    memset(b + 8 + j, ' ', padded - j);
    for (size_t i = 0; i < data_len; i++)
        b[8 + padded + i] = data ? ((const unsigned char *)data)[i] : (unsigned char)(i * 7);
    return b;
}

static inline const clg_st_entry *st_find(const clg_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

static char tmp_root[64];

static inline int make_tmp_root(void **state) {
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/clgrad-io-XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}


static inline int remove_tmp_root(void **state) {
    (void)state;
    ref_rm_rf(tmp_root);
    return 0;
}

static inline void tmp_path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", tmp_root, name); }

static inline void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A sparse file of size bytes starting with head (len bytes): big on paper, nothing on disk. */
static inline void write_sparse(const char *path, const void *head, size_t len, off_t size) {
    write_file(path, head, len);
    assert_int_equal(truncate(path, size), 0);
}

/* A FIFO at path (mkfifo), or false where the file system has none. */
static inline bool make_fifo(const char *path) {
    unlink(path);
    return mkfifo(path, 0600) == 0;
}

#endif
