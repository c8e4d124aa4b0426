/* tests/fuzz/fuzz_idx.c - libFuzzer target for clg_idx_parse (src/io/idx.c), raw and gzip:
 * the input is parsed as given (gzip when it starts with 1f 8b), and also gzip-compressed
 * here and parsed again, where both parses must agree (status and bytes). Built and run by
 * tests/fuzz/run.sh; seeds in tests/fuzz/corpus/fuzz_idx/.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "clgrad/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const clg_idx *x, clg_status st, const char *err) {
    if (st != CLG_OK) {
        if (!err[0] || x->data || x->size) abort();
        return;
    }
    if (x->ndim < 1 || x->ndim > CLG_MAX_DIMS || !x->data) abort();
    size_t total = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (x->dims[d] < 1) abort();
        total *= (size_t)x->dims[d];
    }
    if (total != x->size) abort();
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < x->size; i++) sink ^= x->data[i];
    (void)sink;
}

/* gzip of in, or NULL (zlib's own failure is not what is under test). */
static unsigned char *gzip(const uint8_t *in, size_t len, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&zs, (uLong)len) + 32;
    unsigned char *out = malloc(cap);
    if (!out) {
        deflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        free(out);
        deflateEnd(&zs);
        return NULL;
    }
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    clg_idx a, b;
    char err_a[256] = "", err_b[256] = "";
    clg_status sa = clg_idx_parse(data, size, &a, err_a, sizeof err_a);
    check(&a, sa, err_a);

    /* Differential: the gzip path must see exactly what the raw path saw. (Gzip inputs are
     * only checked for soundness once more wrapped: one inflate leaves gzip bytes.) */
    size_t zlen = 0;
    unsigned char *z = size < (1u << 20) ? gzip(data, size, &zlen) : NULL;
    if (z) {
        clg_status sb = clg_idx_parse(z, zlen, &b, err_b, sizeof err_b);
        check(&b, sb, err_b);
        bool raw_input = !(size >= 2 && data[0] == 0x1f && data[1] == 0x8b);
        if (raw_input) {
            if (sa != sb) abort();
            if (sa == CLG_OK &&
                (a.ndim != b.ndim || a.size != b.size || memcmp(a.dims, b.dims, sizeof a.dims) ||
                 memcmp(a.data, b.data, a.size)))
                abort();
        }
        clg_idx_free(&b);
        free(z);
    }
    clg_idx_free(&a);
    return 0;
}
