/* tests/fuzz/fuzz_safetensors_read.c - libFuzzer target for clg_st_read (src/io/safetensors.c
 * over src/io/file.c): the input is written to a file and read back, and must give what
 * clg_st_parse gives on the same bytes (status; names, dtypes, shapes and data), while the
 * reader reads no more than the header reaches. Built and run by tests/fuzz/run.sh from
 * fuzz_safetensors's seeds and dictionary.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clgrad/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void remove_input(void) { unlink(path); }

static void write_input(const uint8_t *data, size_t size) {
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz-st-read-%ld", (long)getpid());
        atexit(remove_input);
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    write_input(data, size);
    clg_st_file a, b;
    char err_a[512] = "", err_b[512] = "";
    clg_status sa = clg_st_read(path, &a, err_a, sizeof err_a);
    clg_status sb = clg_st_parse(data, size, &b, err_b, sizeof err_b);
    if (sa != sb) abort();
    if (sa != CLG_OK) {
        if (!err_a[0] || a.buffer || a.entries || a.n_entries) abort();
        return 0;
    }
    /* What was read is no longer than the file (the bytes are compared entry by entry: I64
     * counters are converted in place). */
    if (a.size > size) abort();
    if (a.n_entries != b.n_entries) abort();
    for (size_t i = 0; i < a.n_entries; i++) {
        const clg_st_entry *x = &a.entries[i], *y = &b.entries[i];
        if (strcmp(x->name, y->name) || x->dtype != y->dtype || x->ndim != y->ndim || x->bytes != y->bytes ||
            memcmp(x->shape, y->shape, sizeof x->shape))
            abort();
        const unsigned char *p = x->data;
        if (p < a.buffer || x->bytes > (size_t)(a.buffer + a.size - p)) abort();
        if (memcmp(x->data, y->data, x->bytes)) abort();
    }
    clg_st_file_free(&a);
    clg_st_file_free(&b);
    return 0;
}
