/* tests/fuzz/fuzz_safetensors.c - libFuzzer target for clg_st_parse (src/io/safetensors.c):
 * any input must give CLG_OK with entries that lie inside the buffer and agree with their
 * shapes, or an error with a reason. Built and run by tests/fuzz/run.sh; seeds in
 * tests/fuzz/corpus/fuzz_safetensors/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clg_st_file f;
    char err[256] = "";
    clg_status st = clg_st_parse(data, size, &f, err, sizeof err);
    if (st != CLG_OK) {
        /* Every refusal says why, and leaves nothing owned behind. */
        if (!err[0] || f.buffer || f.entries || f.n_entries) abort();
        return 0;
    }
    if (f.size != size || !f.buffer) abort();
    const unsigned char *lo = f.buffer, *hi = f.buffer + f.size;
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < f.n_entries; i++) {
        const clg_st_entry *e = &f.entries[i];
        if (!e->name || e->ndim < 0 || e->ndim > CLG_MAX_DIMS) abort();
        if (e->dtype != CLG_F32 && e->dtype != CLG_F64) abort();
        size_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0) abort();
            numel *= (size_t)e->shape[d]; /* bounded: bytes below fit the buffer */
        }
        if (e->bytes != numel * (e->dtype == CLG_F64 ? 8 : 4)) abort();
        const unsigned char *p = e->data;
        if (p < lo || p > hi || e->bytes > (size_t)(hi - p)) abort();
        /* Touch every byte: AddressSanitizer catches any range past the copy. */
        for (size_t b = 0; b < e->bytes; b++) sink ^= p[b];
        sink ^= (unsigned char)strlen(e->name);
    }
    (void)sink;
    clg_st_file_free(&f);
    return 0;
}
