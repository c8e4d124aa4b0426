/* tests/fuzz/fuzz_cache_file.c - libFuzzer target for the binary program cache reader,
 * clg__disk_cache_parse (src/core/disk_cache.c): random bytes against a fixed key must parse
 * only when they are exactly a well-formed file; the input as a payload, wrapped by an
 * independent writer of the format, must parse back to itself; and one changed byte or a cut
 * anywhere in that file must be refused. Built and run by tests/fuzz/run.sh; seeds in
 * tests/fuzz/corpus/fuzz_cache_file/.
 */
#include <stdlib.h>
#include <string.h>

#include "core/disk_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY 0x0123456789abcdefull

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* The format as documented in disk_cache.c: "CLGBIN02", key, length, FNV-1a 64 of the
 * payload (little-endian u64 each), then the payload. Written here from the description,
 * not with the library's writer, so the two can disagree. */
static unsigned char *wrap(const uint8_t *payload, size_t len, size_t *out_len) {
    unsigned char *f = malloc(32 + len);
    if (!f) abort();
    memcpy(f, "CLGBIN02", 8);
    put_u64(f + 8, KEY);
    put_u64(f + 16, len);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ payload[i]) * 0x100000001b3ull;
    put_u64(f + 24, h);
    memcpy(f + 32, payload, len);
    *out_len = 32 + len;
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* 1. The raw bytes, in an exact-size heap copy so ASan catches any read past the end. */
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    const unsigned char *payload = NULL;
    size_t plen = 0;
    clg_status st = clg__disk_cache_parse(copy, size, KEY, &payload, &plen);
    if (st != CLG_OK && st != CLG_BAD_FORMAT) abort();
    if (st == CLG_OK) {
        /* Accepted: it must be exactly what the writer would make of its payload. */
        if (payload != copy + 32 || plen != size - 32 || plen == 0) abort();
        size_t rl;
        unsigned char *re = wrap(payload, plen, &rl);
        if (rl != size || memcmp(re, copy, size)) abort();
        free(re);
    }
    free(copy);

    /* 2. The input as a payload: a well-formed file parses back to it. */
    if (size == 0) return 0; /* an empty payload is refused by design */
    size_t flen;
    unsigned char *file = wrap(data, size, &flen);
    if (clg__disk_cache_parse(file, flen, KEY, &payload, &plen) != CLG_OK) abort();
    if (payload != file + 32 || plen != size || memcmp(payload, data, size)) abort();
    /* Another key never matches. */
    if (clg__disk_cache_parse(file, flen, KEY ^ 1, &payload, &plen) == CLG_OK) abort();
    /* 3. One byte changed anywhere (where and how: from the input) is refused: FNV-1a's steps
     * are bijections, so a one-byte change always changes the checksum. */
    size_t at = (size_t)data[0] * 131 % flen;
    unsigned char delta = (unsigned char)(data[size - 1] | 1);
    file[at] ^= delta;
    if (clg__disk_cache_parse(file, flen, KEY, &payload, &plen) == CLG_OK) abort();
    file[at] ^= delta;
    /* 4. Any cut is refused (an exact-size copy again, for ASan). */
    size_t cut = (size_t)data[size / 2] * 257 % flen;
    unsigned char *part = malloc(cut ? cut : 1);
    if (!part) abort();
    memcpy(part, file, cut);
    if (clg__disk_cache_parse(part, cut, KEY, &payload, &plen) == CLG_OK) abort();
    free(part);
    free(file);
    return 0;
}
