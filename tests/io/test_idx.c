/* tests/io/test_idx.c - IDX files (src/io/idx.c): plain and gzip parsing of crafted good
 * and bad buffers, a zip bomb stopped at the cap, reading files, and Fashion-MNIST when
 * installed under /usr/share/datasets.
 */
#include "io_test.h"

#include <zlib.h>

/* ---------------------------------------------------------------- IDX */

static unsigned char *idx_build(int ndim, const uint32_t *dims, size_t extra, size_t *len) {
    size_t total = 1;
    for (int i = 0; i < ndim; i++) total *= dims[i];
    *len = 4 + 4 * (size_t)ndim + total + extra;
    unsigned char *b = malloc(*len);
    assert_non_null(b);
    b[0] = 0;
    b[1] = 0;
    b[2] = 0x08;
    b[3] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
        b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
        b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
        b[7 + 4 * i] = (unsigned char)dims[i];
    }
    for (size_t i = 0; i < total + extra; i++) b[4 + 4 * (size_t)ndim + i] = (unsigned char)(i * 13 + 1);
    return b;
}

/* gzip of in (one member); free() it. */
static unsigned char *gz(const unsigned char *in, size_t len, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static void expect_idx_fail(const void *buf, size_t len, clg_status want, const char *needle) {
    clg_idx x;
    char err[512] = "";
    clg_status st = clg_idx_parse(buf, len, &x, err, sizeof err);
    if (st != want || !strstr(err, needle))
        fail_msg("want %s with \"%s\", got %s: \"%s\"", clg_status_name(want), needle,
                 clg_status_name(st), err);
    assert_null(x.data);
}

static void assert_idx_matches(const clg_idx *x, int ndim, const uint32_t *dims, const unsigned char *file) {
    assert_int_equal(x->ndim, ndim);
    size_t total = 1;
    for (int i = 0; i < ndim; i++) {
        assert_int_equal(x->dims[i], (int)dims[i]);
        total *= dims[i];
    }
    assert_int_equal(x->size, total);
    assert_memory_equal(x->data, file + 4 + 4 * ndim, total);
}

static void test_idx_parse_valid(void **state) {
    (void)state;
    const uint32_t d3[3] = {3, 5, 4}, d1[1] = {7}, d4[4] = {2, 1, 3, 2};
    const uint32_t *dims[3] = {d3, d1, d4};
    const int ndims[3] = {3, 1, 4};
    for (int k = 0; k < 3; k++) {
        size_t len;
        unsigned char *b = idx_build(ndims[k], dims[k], 0, &len);
        clg_idx x;
        char err[256] = "";
        assert_int_equal(clg_idx_parse(b, len, &x, err, sizeof err), CLG_OK);
        assert_idx_matches(&x, ndims[k], dims[k], b);
        clg_idx_free(&x);
        assert_null(x.data);
        /* The same bytes gzipped parse to the same thing. */
        size_t zlen;
        unsigned char *z = gz(b, len, &zlen);
        assert_int_equal(clg_idx_parse(z, zlen, &x, err, sizeof err), CLG_OK);
        assert_idx_matches(&x, ndims[k], dims[k], b);
        clg_idx_free(&x);
        free(z);
        free(b);
    }
}

static void test_idx_parse_rejects(void **state) {
    (void)state;
    const uint32_t d2[2] = {4, 3};
    size_t len;
    unsigned char *b = idx_build(2, d2, 1, &len);
    expect_idx_fail(b, len, CLG_BAD_FORMAT, "need 12 data bytes but the file has 13 (trailing bytes)");
    expect_idx_fail(b, len - 2, CLG_BAD_FORMAT, "need 12 data bytes but the file has 11 (truncated)");
    for (size_t cut = 0; cut < len - 1; cut++) {
        clg_idx x;
        char err[256] = "";
        assert_int_equal(clg_idx_parse(b, cut, &x, err, sizeof err), CLG_BAD_FORMAT);
        assert_true(strlen(err) > 0);
    }
    b[1] = 0x01;
    expect_idx_fail(b, len - 1, CLG_BAD_FORMAT, "wrong magic 0x00 0x01");
    b[1] = 0;
    b[2] = 0x0d; /* float */
    expect_idx_fail(b, len - 1, CLG_BAD_FORMAT, "unsupported data type 0x0d");
    b[2] = 0x08;
    b[3] = 0;
    expect_idx_fail(b, len - 1, CLG_BAD_FORMAT, "ndims 0 is not in 1..4");
    b[3] = 5;
    expect_idx_fail(b, len - 1, CLG_BAD_FORMAT, "ndims 5 is not in 1..4");
    free(b);

    const uint32_t zero[2] = {4, 0};
    b = idx_build(2, zero, 0, &len);
    expect_idx_fail(b, len, CLG_BAD_FORMAT, "dim 1 is 0");
    free(b);
    /* 2^16 x 2^16 x 2^16 would wrap in 32 bits and is far over the cap. */
    unsigned char big[4 + 12] = {0, 0, 8, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0};
    expect_idx_fail(big, sizeof big, CLG_BAD_FORMAT, "cap");
    unsigned char huge[4 + 4] = {0, 0, 8, 1, 0xff, 0xff, 0xff, 0xff};
    expect_idx_fail(huge, sizeof huge, CLG_BAD_FORMAT, "dim 0 is 4294967295");
    unsigned char header_cut[4 + 6] = {0, 0, 8, 2, 0, 0, 0, 1, 0, 0};
    expect_idx_fail(header_cut, sizeof header_cut, CLG_BAD_FORMAT, "too short for the 12-byte header");
    expect_idx_fail(NULL, 0, CLG_BAD_FORMAT, "too short");
}

static void test_idx_gzip_rejects(void **state) {
    (void)state;
    const uint32_t d1[1] = {100};
    size_t len, zlen;
    unsigned char *b = idx_build(1, d1, 0, &len);
    unsigned char *z = gz(b, len, &zlen);
    /* Cut anywhere inside the stream (even in the CRC and size trailer). */
    for (size_t cut = 2; cut < zlen; cut++) {
        clg_idx x;
        char err[256] = "";
        clg_status st = clg_idx_parse(z, cut, &x, err, sizeof err);
        if (st != CLG_BAD_FORMAT) fail_msg("gzip cut to %zu of %zu: %s %s", cut, zlen, clg_status_name(st), err);
    }
    expect_idx_fail(z, zlen - 1, CLG_BAD_FORMAT, "truncated");
    /* A flipped CRC byte is caught by zlib's check. */
    z[zlen - 6] ^= 0x55;
    expect_idx_fail(z, zlen, CLG_BAD_FORMAT, "corrupt gzip data");
    z[zlen - 6] ^= 0x55;
    /* Garbage after the stream, and a second member that makes trailing IDX bytes. */
    unsigned char *zz = malloc(2 * zlen);
    assert_non_null(zz);
    memcpy(zz, z, zlen);
    memcpy(zz + zlen, "junk", 4);
    expect_idx_fail(zz, zlen + 4, CLG_BAD_FORMAT, "trailing garbage");
    memcpy(zz + zlen, z, zlen);
    expect_idx_fail(zz, 2 * zlen, CLG_BAD_FORMAT, "trailing bytes");
    free(zz);
    /* Two members that together make one file, as `cat a.gz b.gz` does. */
    size_t z1len, z2len;
    unsigned char *z1 = gz(b, 30, &z1len), *z2 = gz(b + 30, len - 30, &z2len);
    unsigned char *cat = malloc(z1len + z2len);
    assert_non_null(cat);
    memcpy(cat, z1, z1len);
    memcpy(cat + z1len, z2, z2len);
    clg_idx x;
    char err[256] = "";
    assert_int_equal(clg_idx_parse(cat, z1len + z2len, &x, err, sizeof err), CLG_OK);
    assert_idx_matches(&x, 1, d1, b);
    clg_idx_free(&x);
    free(cat);
    free(z1);
    free(z2);
    free(z);
    free(b);
}

/* A zip bomb stops at the cap instead of inflating it all (cap made small here; the
 * library's is 1 GiB). */
static void test_idx_gzip_bomb_capped(void **state) {
    (void)state;
    const uint32_t d1[1] = {4u << 20}; /* 4 MiB of data, compresses to ~4 KiB */
    size_t len, zlen;
    unsigned char *b = idx_build(1, d1, 0, &len);
    memset(b + 8, 0, len - 8);
    unsigned char *z = gz(b, len, &zlen);
    assert_true(zlen < 64 * 1024);
    clg_idx x;
    char err[256] = "";
    assert_int_equal(clg__idx_parse_capped(z, zlen, 1u << 20, &x, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "inflates past the"));
    assert_null(x.data);
    /* Raw, the header alone says it is over the cap. */
    assert_int_equal(clg__idx_parse_capped(b, len, 1u << 20, &x, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "cap"));
    /* And with room, the same stream is fine. */
    assert_int_equal(clg__idx_parse_capped(z, zlen, 8u << 20, &x, err, sizeof err), CLG_OK);
    assert_int_equal(x.size, 4u << 20);
    clg_idx_free(&x);
    free(z);
    free(b);
}

static void test_idx_read_files(void **state) {
    (void)state;
    const uint32_t d3[3] = {2, 3, 3};
    size_t len, zlen;
    unsigned char *b = idx_build(3, d3, 0, &len);
    unsigned char *z = gz(b, len, &zlen);
    char raw_path[256], gz_path[256], err[512] = "";
    tmp_path(raw_path, sizeof raw_path, "small-idx3-ubyte");
    tmp_path(gz_path, sizeof gz_path, "small-idx3-ubyte.gz");
    write_file(raw_path, b, len);
    write_file(gz_path, z, zlen);
    clg_idx x;
    assert_int_equal(clg_idx_read(raw_path, &x, err, sizeof err), CLG_OK);
    assert_idx_matches(&x, 3, d3, b);
    clg_idx_free(&x);
    assert_int_equal(clg_idx_read(gz_path, &x, err, sizeof err), CLG_OK);
    assert_idx_matches(&x, 3, d3, b);
    clg_idx_free(&x);
    /* A trailing byte on disk; the reason names the path. */
    b = realloc(b, len + 1);
    assert_non_null(b);
    b[len] = 9;
    write_file(raw_path, b, len + 1);
    assert_int_equal(clg_idx_read(raw_path, &x, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, raw_path));
    assert_non_null(strstr(err, "trailing bytes"));

    char missing[256];
    tmp_path(missing, sizeof missing, "no-such-idx");
    assert_int_equal(clg_idx_read(missing, &x, err, sizeof err), CLG_IO_ERROR);
    assert_non_null(strstr(err, missing));
    assert_non_null(strstr(err, strerror(ENOENT)));
    assert_null(x.data);
    free(z);
    free(b);
}

/* Only regular files: a FIFO (which used to hang the open) and /dev/zero (read up to the
 * 1 GiB cap before) fail at once. */
static void test_idx_read_not_regular(void **state) {
    (void)state;
    char path[256], err[512] = "";
    clg_idx x;
    tmp_path(path, sizeof path, "fifo-idx1-ubyte");
    if (make_fifo(path)) {
        assert_int_equal(clg_idx_read(path, &x, err, sizeof err), CLG_IO_ERROR);
        assert_non_null(strstr(err, "a FIFO, not a regular file"));
        assert_null(x.data);
        unlink(path);
    }
    if (access("/dev/zero", R_OK) == 0) {
        assert_int_equal(clg_idx_read("/dev/zero", &x, err, sizeof err), CLG_IO_ERROR);
        assert_non_null(strstr(err, "a character device, not a regular file"));
    }
    assert_int_equal(clg_idx_read(tmp_root, &x, err, sizeof err), CLG_IO_ERROR);
    assert_non_null(strstr(err, "a folder"));
}

/* The header is checked against the file's size before any data is read: a sparse 3 GiB
 * file whose dims say 6 bytes is refused with its full size in the reason (the old reader
 * read 1 GiB of it first); a gzip file too big for any IDX under the cap is refused unread. */
static void test_idx_read_caps_before_reading(void **state) {
    (void)state;
    char path[256], err[512] = "";
    clg_idx x;
    tmp_path(path, sizeof path, "big-idx1-ubyte");
    const uint32_t d1[1] = {6};
    size_t len;
    unsigned char *b = idx_build(1, d1, 0, &len);
    write_sparse(path, b, len, (off_t)3 << 30);
    assert_int_equal(clg_idx_read(path, &x, err, sizeof err), CLG_BAD_FORMAT);
    char want[128];
    snprintf(want, sizeof want, "need 6 data bytes but the file has %llu (trailing bytes)",
             ((unsigned long long)3 << 30) - 8);
    if (!strstr(err, want)) fail_msg("%s", err);
    assert_null(x.data);
    /* Dims that need more than the file holds: truncated, also before reading. */
    const uint32_t d2[2] = {1000, 1000};
    free(b);
    b = idx_build(2, d2, 0, &len);
    write_file(path, b, 12 + 10);
    assert_int_equal(clg_idx_read(path, &x, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "need 1000000 data bytes but the file has 10 (truncated)"));
    /* The same with a small cap: refused on the dims. */
    write_file(path, b, len);
    assert_int_equal(clg__idx_read_capped(path, 1000, &x, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "more than the 1000-byte cap"));
    assert_int_equal(clg__idx_read_capped(path, 1000000, &x, err, sizeof err), CLG_OK);
    assert_int_equal(x.size, 1000000);
    clg_idx_free(&x);
    /* gzip: a cap of 1000 bytes allows at most 1000 + 15 + 65536 compressed bytes. */
    const unsigned char magic[2] = {0x1f, 0x8b};
    write_sparse(path, magic, 2, 1000 + 15 + 65536 + 1);
    assert_int_equal(clg__idx_read_capped(path, 1000, &x, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "more than any IDX under the 1000-byte cap compresses to"));
    assert_null(x.data);
    free(b);
    unlink(path);
}

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static void test_idx_fashion_mnist(void **state) {
    (void)state;
    const char *labels_path = FASHION_DIR "/t10k-labels-idx1-ubyte.gz";
    const char *images_path = FASHION_DIR "/t10k-images-idx3-ubyte.gz";
    if (access(labels_path, R_OK) != 0 || access(images_path, R_OK) != 0) skip();
    clg_idx labels, images;
    char err[512] = "";
    clg_status st = clg_idx_read(labels_path, &labels, err, sizeof err);
    if (st != CLG_OK) fail_msg("%s", err);
    assert_int_equal(labels.ndim, 1);
    assert_int_equal(labels.dims[0], 10000);
    /* The test split is balanced: 1000 of each of the 10 classes. */
    size_t count[256] = {0};
    for (size_t i = 0; i < labels.size; i++) count[labels.data[i]]++;
    for (int c = 0; c < 10; c++) assert_int_equal(count[c], 1000);

    st = clg_idx_read(images_path, &images, err, sizeof err);
    if (st != CLG_OK) fail_msg("%s", err);
    assert_int_equal(images.ndim, 3);
    assert_int_equal(images.dims[0], 10000);
    assert_int_equal(images.dims[1], 28);
    assert_int_equal(images.dims[2], 28);
    assert_int_equal(images.size, (size_t)10000 * 28 * 28);
    /* Real pictures: the full 0..255 range, mostly dark background. */
    size_t zeros = 0;
    unsigned char hi = 0;
    for (size_t i = 0; i < images.size; i++) {
        zeros += images.data[i] == 0;
        if (images.data[i] > hi) hi = images.data[i];
    }
    assert_int_equal(hi, 255);
    assert_true(zeros > images.size / 4 && zeros < images.size);
    clg_idx_free(&labels);
    clg_idx_free(&images);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_parse_valid),
        cmocka_unit_test(test_idx_parse_rejects),
        cmocka_unit_test(test_idx_gzip_rejects),
        cmocka_unit_test(test_idx_gzip_bomb_capped),
        cmocka_unit_test(test_idx_read_files),
        cmocka_unit_test(test_idx_read_not_regular),
        cmocka_unit_test(test_idx_read_caps_before_reading),
        cmocka_unit_test(test_idx_fashion_mnist),
    };
    if (make_tmp_root(NULL) != 0) return 1;
    const int failed = cmocka_run_group_tests_name("idx", tests, NULL, NULL);
    remove_tmp_root(NULL);
    return failed;
}
