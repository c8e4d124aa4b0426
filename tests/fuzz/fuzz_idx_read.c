/* tests/fuzz/fuzz_idx_read.c - libFuzzer target for clg_idx_read (src/io/idx.c over
 * src/io/file.c): the input is written to a file and read back under a small cap, and must
 * give what clg_idx_parse gives on the same bytes under the same cap (status, dims, data):
 * the header-first raw path and the gzip path agree with the parser. Built and run by
 * tests/fuzz/run.sh from fuzz_idx's seeds.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clgrad/io.h"
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough that the fuzzer reaches it, big enough for real shapes. */
#define CAP 4096

static char path[64];

static void remove_input(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz-idx-read-%ld", (long)getpid());
        atexit(remove_input);
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
    clg_idx a, b;
    char err_a[512] = "", err_b[512] = "";
    clg_status sa = clg__idx_read_capped(path, CAP, &a, err_a, sizeof err_a);
    clg_status sb = clg__idx_parse_capped(data, size, CAP, &b, err_b, sizeof err_b);
    if (sa != sb) abort();
    if (sa != CLG_OK) {
        if (!err_a[0] || a.data || a.size) abort();
        return 0;
    }
    if (a.ndim != b.ndim || a.size != b.size || memcmp(a.dims, b.dims, sizeof a.dims) ||
        memcmp(a.data, b.data, a.size))
        abort();
    clg_idx_free(&a);
    clg_idx_free(&b);
    return 0;
}
