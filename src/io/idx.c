/* src/io/idx.c - the IDX reader (MNIST / Fashion-MNIST): magic 00 00 08 ndims, ndims
 * big-endian u32 dims, then exactly prod(dims) unsigned bytes; gzip input is inflated with
 * zlib under a size cap. Host memory only (no context), so it compiles alone for
 * tests/fuzz/fuzz_idx.c (and, with src/io/file.c, fuzz_idx_read.c). Tests: tests/io/test_idx.c.
 */
#include "clgrad/io.h"

#include <limits.h>
#include <stdlib.h>

#include <zlib.h>

#include "io/io.h"

/* Decoded data cap (the header's few bytes come on top). */
#define IDX_MAX_DATA ((size_t)1 << 30)
#define IDX_MAX_HEADER (4 + 4 * CLG_MAX_DIMS)

/* Inflates a gzip stream (members back to back, as `cat a.gz b.gz` makes) into a new buffer
 * of at most cap bytes. The output grows by doubling up to cap + 1 bytes, and reaching that
 * one byte more says the stream is too big: a zip bomb stops there. */
static clg_status idx_gunzip(const unsigned char *in, size_t len, size_t cap, unsigned char **out,
                             size_t *out_len, char *err, size_t err_len) {
    *out = NULL;
    *out_len = 0;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) { /* 16 + : the gzip wrapper, not zlib's */
        clg__fmt(err, err_len, "IDX: zlib inflateInit2 failed");
        return CLG_OUT_OF_HOST_MEMORY;
    }
    clg_status st = CLG_OK;
    const size_t limit = cap + 1;
    size_t capacity = limit; /* first guess: 4x the input, within the limit */
    if (len < limit / 4 && len * 4 + 64 < limit) capacity = len * 4 + 64;
    size_t produced = 0;
    const unsigned char *next = in;
    size_t left = len;
    unsigned char *buf = malloc(capacity);
    if (!buf) {
        clg__fmt(err, err_len, "IDX: out of host memory for %zu bytes", capacity);
        st = CLG_OUT_OF_HOST_MEMORY;
        goto done;
    }
    for (;;) {
        if (produced == capacity) {
            if (capacity >= limit) {
                clg__fmt(err, err_len, "IDX: gzip data inflates past the %zu-byte cap", cap);
                st = CLG_BAD_FORMAT;
                goto done;
            }
            size_t grown = capacity > limit / 2 ? limit : capacity * 2;
            unsigned char *nb = realloc(buf, grown);
            if (!nb) {
                clg__fmt(err, err_len, "IDX: out of host memory for %zu bytes", grown);
                st = CLG_OUT_OF_HOST_MEMORY;
                goto done;
            }
            buf = nb;
            capacity = grown;
        }
        /* zlib counts in uInt: feed and drain in chunks that fit. */
        uInt in_chunk = left > UINT_MAX ? UINT_MAX : (uInt)left;
        uInt out_chunk = capacity - produced > UINT_MAX ? UINT_MAX : (uInt)(capacity - produced);
        zs.next_in = (unsigned char *)next; /* zlib's API is not const; it only reads */
        zs.avail_in = in_chunk;
        zs.next_out = buf + produced;
        zs.avail_out = out_chunk;
        int r = inflate(&zs, Z_NO_FLUSH);
        size_t used = in_chunk - zs.avail_in, made = out_chunk - zs.avail_out;
        next += used;
        left -= used;
        produced += made;
        if (r == Z_STREAM_END) {
            if (left == 0)
                break;
            if (left >= 2 && next[0] == 0x1f && next[1] == 0x8b) { /* another member */
                if (inflateReset(&zs) != Z_OK) {
                    clg__fmt(err, err_len, "IDX: zlib inflateReset failed");
                    st = CLG_BAD_FORMAT;
                    goto done;
                }
                continue;
            }
            clg__fmt(err, err_len, "IDX: %zu bytes of trailing garbage after the gzip stream",
                         left);
            st = CLG_BAD_FORMAT;
            goto done;
        }
        if (r == Z_MEM_ERROR) {
            clg__fmt(err, err_len, "IDX: zlib ran out of host memory");
            st = CLG_OUT_OF_HOST_MEMORY;
            goto done;
        }
        if (r != Z_OK && r != Z_BUF_ERROR) { /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
            clg__fmt(err, err_len, "IDX: corrupt gzip data: %s", zs.msg ? zs.msg : "bad stream");
            st = CLG_BAD_FORMAT;
            goto done;
        }
        /* Output room left means inflate wanted more input: with none left (or no progress
         * at all) the stream ends early. */
        if (zs.avail_out > 0 && (left == 0 || (used == 0 && made == 0))) {
            clg__fmt(err, err_len, "IDX: gzip stream is truncated");
            st = CLG_BAD_FORMAT;
            goto done;
        }
    }
done:
    inflateEnd(&zs);
    if (st != CLG_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = produced;
    return CLG_OK;
}

/* Checks a raw IDX header against the length of the whole input (len bytes, of which the
 * first avail are at b: at least min(len, IDX_MAX_HEADER)): magic, type, dims, and exactly
 * prod(dims) data bytes after the header. Fills out->ndim and out->dims, *header and *total. */
static clg_status idx_check_header(const unsigned char *b, size_t avail, uint64_t len, size_t cap, clg_idx *out,
                                   size_t *header_out, size_t *total_out, char *err, size_t err_len) {
    (void)avail;
    if (len < 4) {
        clg__fmt(err, err_len, "IDX: %llu bytes, too short for the 4-byte magic", (unsigned long long)len);
        return CLG_BAD_FORMAT;
    }
    if (b[0] != 0 || b[1] != 0) {
        clg__fmt(err, err_len, "IDX: wrong magic 0x%02x 0x%02x (want 0x00 0x00)", b[0], b[1]);
        return CLG_BAD_FORMAT;
    }
    if (b[2] != 0x08) {
        clg__fmt(err, err_len, "IDX: unsupported data type 0x%02x (only 0x08, unsigned byte)",
                     b[2]);
        return CLG_BAD_FORMAT;
    }
    int ndim = b[3];
    if (ndim < 1 || ndim > CLG_MAX_DIMS) {
        clg__fmt(err, err_len, "IDX: ndims %d is not in 1..%d", ndim, CLG_MAX_DIMS);
        return CLG_BAD_FORMAT;
    }
    size_t header = 4 + 4 * (size_t)ndim;
    if (len < header) {
        clg__fmt(err, err_len, "IDX: %llu bytes, too short for the %zu-byte header of %d dims",
                     (unsigned long long)len, header, ndim);
        return CLG_BAD_FORMAT;
    }
    size_t total = 1;
    char dims_str[80];
    size_t off = 0;
    for (int i = 0; i < ndim; i++) {
        uint32_t d = io__load_be32(b + 4 + 4 * i);
        if (d == 0 || d > INT32_MAX) {
            clg__fmt(err, err_len, "IDX: dim %d is %lu (want 1..%ld)", i, (unsigned long)d,
                         (long)INT32_MAX);
            return CLG_BAD_FORMAT;
        }
        out->dims[i] = (int)d;
        /* Checked against the cap at each step, so the product cannot overflow either. */
        if (!clg__mul_size(total, d, &total) || total > cap) {
            clg__fmt(err, err_len, "IDX: dims need more than the %zu-byte cap", cap);
            return CLG_BAD_FORMAT;
        }
        off += (size_t)snprintf(dims_str + off, sizeof dims_str - off, i ? ", %lu" : "%lu",
                                (unsigned long)d);
    }
    uint64_t have = len - header;
    if (have != total) {
        clg__fmt(err, err_len, "IDX: dims (%s) need %zu data bytes but the file has %llu (%s)",
                     dims_str, total, (unsigned long long)have, have > total ? "trailing bytes" : "truncated");
        return CLG_BAD_FORMAT;
    }
    out->ndim = ndim;
    *header_out = header;
    *total_out = total;
    return CLG_OK;
}

/* Parses raw IDX bytes; the data is copied into out. */
static clg_status idx_parse_raw(const unsigned char *b, size_t len, size_t cap, clg_idx *out,
                                char *err, size_t err_len) {
    size_t header, total;
    clg_status st = idx_check_header(b, len, len, cap, out, &header, &total, err, err_len);
    if (st != CLG_OK) return st;
    unsigned char *data = malloc(total);
    if (!data) {
        clg__fmt(err, err_len, "IDX: out of host memory for %zu bytes", total);
        return CLG_OUT_OF_HOST_MEMORY;
    }
    memcpy(data, b + header, total);
    out->data = data;
    out->size = total;
    return CLG_OK;
}

clg_status clg__idx_parse_capped(const void *bytes, size_t len, size_t cap, clg_idx *out,
                                 char *err, size_t err_len) {
    if (!out || (!bytes && len > 0)) {
        clg__fmt(err, err_len, "clg_idx_parse: out is NULL, or bytes is NULL with len > 0");
        return CLG_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    const unsigned char *b = bytes;
    clg_status st;
    if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        unsigned char *raw;
        size_t raw_len;
        st = idx_gunzip(b, len, cap + IDX_MAX_HEADER, &raw, &raw_len, err, err_len);
        if (st != CLG_OK) return st;
        st = idx_parse_raw(raw, raw_len, cap, out, err, err_len);
        free(raw);
    } else {
        st = idx_parse_raw(b, len, cap, out, err, err_len);
    }
    if (st != CLG_OK) memset(out, 0, sizeof *out);
    return st;
}

CLG_API clg_status clg_idx_parse(const void *bytes, size_t len, clg_idx *out, char *err,
                                 size_t err_len) {
    return clg__idx_parse_capped(bytes, len, IDX_MAX_DATA, out, err, err_len);
}

/* Reads path under the cap, reading no more than it must: a regular file only (a FIFO or
 * /dev/zero is refused before a byte is read); a raw file's header is checked against the
 * file's size before the data is read, straight into out; a gzip file is read whole only when
 * it is no bigger than the biggest IDX under the cap compresses to. */
static clg_status idx_read_capped(const char *path, size_t cap, clg_idx *out, char *err, size_t err_len) {
    io_file f;
    clg_status st = io__open_regular(path, "IDX", &f, err, err_len);
    if (st != CLG_OK) return st;
    unsigned char head[IDX_MAX_HEADER];
    size_t head_len = f.size < sizeof head ? (size_t)f.size : sizeof head;
    unsigned char *buf = NULL;
    if ((st = io__read_at(&f, 0, head, head_len, "IDX", path, err, err_len)) != CLG_OK) goto done;
    if (head_len >= 2 && head[0] == 0x1f && head[1] == 0x8b) {
        /* Deflate's worst case (stored blocks) adds 5 bytes per 64 KiB; members back to back
         * and header fields add a little more: 1/64 and 64 KiB are far beyond both. */
        const uint64_t max_gz = (uint64_t)cap + cap / 64 + ((uint64_t)1 << 16);
        if (f.size > max_gz || f.size > SIZE_MAX - 1) {
            clg__fmt(err, err_len, "IDX: a %llu-byte gzip file is more than any IDX under the %zu-byte cap "
                     "compresses to", (unsigned long long)f.size, cap);
            st = CLG_BAD_FORMAT;
            goto done;
        }
        buf = malloc(f.size ? (size_t)f.size : 1);
        if (!buf) {
            clg__fmt(err, err_len, "IDX: out of host memory for %llu bytes", (unsigned long long)f.size);
            st = CLG_OUT_OF_HOST_MEMORY;
            goto done;
        }
        if ((st = io__read_at(&f, 0, buf, (size_t)f.size, "IDX", path, err, err_len)) != CLG_OK) goto done;
        st = clg__idx_parse_capped(buf, (size_t)f.size, cap, out, err, err_len);
        goto done;
    }
    size_t header, total;
    if ((st = idx_check_header(head, head_len, f.size, cap, out, &header, &total, err, err_len)) != CLG_OK)
        goto done;
    out->data = malloc(total);
    if (!out->data) {
        clg__fmt(err, err_len, "IDX: out of host memory for %zu bytes", total);
        st = CLG_OUT_OF_HOST_MEMORY;
        goto done;
    }
    out->size = total;
    st = io__read_at(&f, header, out->data, total, "IDX", path, err, err_len);
done:
    free(buf);
    io__close(&f);
    if (st != CLG_OK) clg_idx_free(out);
    return st;
}

clg_status clg__idx_read_capped(const char *path, size_t cap, clg_idx *out, char *err, size_t err_len) {
    if (!out || !path) {
        clg__fmt(err, err_len, "clg_idx_read: path or out is NULL");
        return CLG_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    char why[400] = "";
    clg_status st = idx_read_capped(path, cap, out, why, sizeof why);
    if (st != CLG_OK) { /* "IDX: <path>: <reason>", the path once */
        const char *reason = strncmp(why, "IDX: ", 5) == 0 ? why + 5 : why;
        if (strstr(reason, path))
            clg__fmt(err, err_len, "IDX: %s", reason);
        else
            clg__fmt(err, err_len, "IDX: %s: %s", path, reason);
    }
    return st;
}

CLG_API clg_status clg_idx_read(const char *path, clg_idx *out, char *err, size_t err_len) {
    return clg__idx_read_capped(path, IDX_MAX_DATA, out, err, err_len);
}

CLG_API void clg_idx_free(clg_idx *idx) {
    if (!idx)
        return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
