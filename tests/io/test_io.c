/* tests/io/test_io.c - the outside-data readers and writers of include/clgrad/io.h:
 * safetensors parsing (src/io/safetensors.c) against crafted good and bad buffers and the
 * PyTorch fixtures, atomic saving and module load/save (src/io/checkpoint.c), IDX plain and
 * gzip (src/io/idx.c) incl. Fashion-MNIST when installed. Fuzz targets: tests/fuzz/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "clgrad.h"
#include "io/io.h"
#include "ref.h"

/* ---------------------------------------------------------------- helpers */

/* A safetensors buffer: length, json padded with spaces to 8, then data_len bytes of data
 * (or of the pattern i*7 when data is NULL). *len gets the size; free() it. */
static unsigned char *st_build(const char *json, const void *data, size_t data_len, size_t *len) {
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

/* Parses and requires status plus a piece of the reason. */
static void expect_st_fail(const void *buf, size_t len, clg_status want, const char *needle) {
    clg_st_file f;
    char err[512] = "";
    clg_status st = clg_st_parse(buf, len, &f, err, sizeof err);
    if (st != want || !strstr(err, needle))
        fail_msg("want %s with \"%s\", got %s: \"%s\"", clg_status_name(want), needle,
                 clg_status_name(st), err);
    assert_null(f.entries);
    assert_null(f.buffer);
}

static void expect_json_fail(const char *json, size_t data_len, clg_status want, const char *needle) {
    size_t len;
    unsigned char *b = st_build(json, NULL, data_len, &len);
    expect_st_fail(b, len, want, needle);
    free(b);
}

static const clg_st_entry *st_find(const clg_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_entries; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

static double st_value(const clg_st_entry *e, size_t i) {
    const unsigned char *p = (const unsigned char *)e->data;
    return e->dtype == CLG_F64 ? io__f64_from_bits(io__load_le64(p + 8 * i))
                               : (double)io__f32_from_bits(io__load_le32(p + 4 * i));
}

static char tmp_root[64];

static int make_tmp_root(void **state) {
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/clgrad-io-XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static void rm_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        remove(path);
    }
}

static int remove_tmp_root(void **state) {
    (void)state;
    rm_tree(tmp_root);
    return 0;
}

static void tmp_path(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", tmp_root, name); }

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *read_all(const char *path, size_t *len) {
    unsigned char *buf;
    char err[256];
    assert_int_equal(clg__read_file(path, SIZE_MAX, "test", &buf, len, err, sizeof err), CLG_OK);
    return buf;
}

/* Names in dir that contain ".tmp." (left-over temp files of a save). */
static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* ---------------------------------------------------------------- safetensors: parse */

static void test_st_parse_valid(void **state) {
    (void)state;
    /* w: F32 (2, 3) at [0, 24), b: F64 (2) at [24, 40), s: F64 scalar [] at [40, 48). */
    unsigned char data[48];
    for (int i = 0; i < 6; i++) io__store_le32(data + 4 * i, io__f32_bits(0.5f * (float)i - 1.0f));
    for (int i = 0; i < 2; i++) io__store_le64(data + 24 + 8 * i, io__f64_bits(1e-3 * (i + 1)));
    io__store_le64(data + 40, io__f64_bits(-2.25));
    size_t len;
    unsigned char *b = st_build(
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\":{\"shape\":[2],\"dtype\":\"F64\",\"data_offsets\":[24,40]},"
        "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[40,48]}}",
        data, sizeof data, &len);
    clg_st_file f;
    char err[256] = "";
    assert_int_equal(clg_st_parse(b, len, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, 3); /* __metadata__ is not a tensor */
    assert_int_equal(f.size, len);
    const clg_st_entry *w = st_find(&f, "w"), *bb = st_find(&f, "b"), *s = st_find(&f, "s");
    assert_non_null(w);
    assert_non_null(bb);
    assert_non_null(s);
    assert_int_equal(w->dtype, CLG_F32);
    assert_int_equal(w->ndim, 2);
    assert_int_equal(w->shape[0], 2);
    assert_int_equal(w->shape[1], 3);
    assert_int_equal(w->bytes, 24);
    for (int i = 0; i < 6; i++) assert_true(st_value(w, (size_t)i) == 0.5 * i - 1.0);
    assert_int_equal(bb->dtype, CLG_F64);
    assert_true(st_value(bb, 1) == 2e-3);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->bytes, 8);
    assert_true(st_value(s, 0) == -2.25);
    /* The data points into the file's own copy, not into the caller's buffer. */
    assert_true((const unsigned char *)w->data >= f.buffer &&
                (const unsigned char *)w->data + w->bytes <= f.buffer + f.size);
    clg_st_file_free(&f);
    assert_null(f.buffer);
    clg_st_file_free(&f); /* twice is harmless: free zeroes it */
    free(b);
}

/* PyTorch writes num_batches_tracked as an I64 scalar: read as F64, value kept. */
static void test_st_parse_i64_counter(void **state) {
    (void)state;
    unsigned char data[16];
    io__store_le64(data, (uint64_t)123456789);
    io__store_le64(data + 8, (uint64_t)7);
    size_t len;
    unsigned char *b = st_build(
        "{\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"c\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}",
        data, sizeof data, &len);
    clg_st_file f;
    char err[256] = "";
    assert_int_equal(clg_st_parse(b, len, &f, err, sizeof err), CLG_OK);
    const clg_st_entry *e = st_find(&f, "bn.num_batches_tracked");
    assert_non_null(e);
    assert_int_equal(e->dtype, CLG_F64);
    assert_int_equal(e->ndim, 0);
    assert_true(st_value(e, 0) == 123456789.0);
    assert_true(st_value(st_find(&f, "c"), 0) == 7.0);
    clg_st_file_free(&f);
    /* The caller's buffer is not touched by the conversion. */
    assert_int_equal(io__load_le64(b + len - 16), 123456789);
    free(b);
}

static void test_st_parse_edge_accepts(void **state) {
    (void)state;
    clg_st_file f;
    char err[256] = "";
    size_t len;
    /* No tensors at all; an empty tensor; a gap between tensors (allowed, never read). */
    unsigned char *b = st_build("{}", NULL, 0, &len);
    assert_int_equal(clg_st_parse(b, len, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, 0);
    clg_st_file_free(&f);
    free(b);
    b = st_build("{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                 "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"y\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1],\"data_offsets\":[8,12]}}",
                 NULL, 12, &len);
    assert_int_equal(clg_st_parse(b, len, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, 3);
    assert_int_equal(st_find(&f, "e")->bytes, 0);
    assert_int_equal(st_find(&f, "y")->ndim, 4);
    clg_st_file_free(&f);
    free(b);
}

static void test_st_parse_rejects_header(void **state) {
    (void)state;
    unsigned char small[7] = {0};
    expect_st_fail(small, sizeof small, CLG_BAD_FORMAT, "too short");
    expect_st_fail(NULL, 0, CLG_BAD_FORMAT, "too short");

    /* Header length beyond the file, and beyond the 100 MB limit. */
    unsigned char b[24];
    memset(b, ' ', sizeof b);
    io__store_le64(b, 17);
    b[8] = '{';
    expect_st_fail(b, sizeof b, CLG_BAD_FORMAT, "more than the 16 bytes");
    io__store_le64(b, 200000000);
    expect_st_fail(b, sizeof b, CLG_BAD_FORMAT, "100 MB");
    io__store_le64(b, UINT64_MAX);
    expect_st_fail(b, sizeof b, CLG_BAD_FORMAT, "100 MB");

    expect_json_fail("[1, 2]", 0, CLG_BAD_FORMAT, "start with '{'");
    expect_json_fail("{\"a\": ", 0, CLG_BAD_FORMAT, "not valid JSON");
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4,
                     CLG_BAD_FORMAT, "not valid JSON");
    expect_json_fail("{} {}", 0, CLG_BAD_FORMAT, "bytes after its JSON");
    expect_json_fail("{} x", 0, CLG_BAD_FORMAT, "bytes after its JSON");
    expect_json_fail("{}\x01", 0, CLG_BAD_FORMAT, "control byte 0x01 at byte 2");
    expect_json_fail("{\"a\": 5}", 0, CLG_BAD_FORMAT, "entry \"a\" is not an object");
    expect_json_fail("{\"a\": [1]}", 0, CLG_BAD_FORMAT, "entry \"a\" is not an object");
    expect_json_fail("{\"__metadata__\": []}", 0, CLG_BAD_FORMAT, "\"__metadata__\" is not an object");
    expect_json_fail("{\"__metadata__\": {\"k\": 1}}", 0, CLG_BAD_FORMAT, "value of \"k\" is not a string");
    expect_json_fail("{\"__metadata__\": {}, \"__metadata__\": {}}", 0, CLG_BAD_FORMAT,
                     "duplicate name \"__metadata__\"");
}

static void test_st_parse_rejects_entries(void **state) {
    (void)state;
#define E1(dtype, shape, offs) "{\"t\":{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" offs "}}"
    expect_json_fail(E1("\"BF16\"", "[2]", "[0,4]"), 4, CLG_BAD_FORMAT, "unsupported dtype \"BF16\"");
    expect_json_fail(E1("\"F16\"", "[2]", "[0,4]"), 4, CLG_BAD_FORMAT, "unsupported dtype \"F16\"");
    expect_json_fail(E1("\"f32\"", "[1]", "[0,4]"), 4, CLG_BAD_FORMAT, "unsupported dtype \"f32\"");
    expect_json_fail(E1("\"I64\"", "[2]", "[0,16]"), 16, CLG_BAD_FORMAT, "unsupported dtype \"I64\"");
    expect_json_fail(E1("\"I32\"", "[1]", "[0,4]"), 4, CLG_BAD_FORMAT, "unsupported dtype \"I32\"");
    expect_json_fail(E1("32", "[1]", "[0,4]"), 4, CLG_BAD_FORMAT, "\"dtype\" is missing or not a string");
    expect_json_fail("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, CLG_BAD_FORMAT,
                     "\"dtype\" is missing");

    expect_json_fail(E1("\"F32\"", "[1,1,1,1,1]", "[0,4]"), 4, CLG_BAD_FORMAT, "shape has 5 dims");
    expect_json_fail(E1("\"F32\"", "[2,-1]", "[0,4]"), 4, CLG_BAD_FORMAT, "shape entry 1 is not an integer");
    expect_json_fail(E1("\"F32\"", "[1.5]", "[0,4]"), 4, CLG_BAD_FORMAT, "shape entry 0 is not an integer");
    expect_json_fail(E1("\"F32\"", "[\"2\"]", "[0,8]"), 8, CLG_BAD_FORMAT, "shape entry 0 is not an integer");
    expect_json_fail(E1("\"F32\"", "[3000000000]", "[0,4]"), 4, CLG_BAD_FORMAT, "shape entry 0");
    expect_json_fail(E1("\"F32\"", "{}", "[0,4]"), 4, CLG_BAD_FORMAT, "\"shape\" is missing or not an array");
    /* 4 x (2^31 - 1) elements overflow size_t: caught, not wrapped into a small size. */
    expect_json_fail(E1("\"F32\"", "[2147483647,2147483647,2147483647,2147483647]", "[0,4]"), 4,
                     CLG_BAD_FORMAT, "too large");
    expect_json_fail(E1("\"F64\"", "[1073741824,1073741824,1073741824,16]", "[0,4]"), 4,
                     CLG_BAD_FORMAT, "too large");

    expect_json_fail(E1("\"F32\"", "[1]", "[0]"), 4, CLG_BAD_FORMAT, "two non-negative integers");
    expect_json_fail(E1("\"F32\"", "[1]", "[0,4,8]"), 8, CLG_BAD_FORMAT, "two non-negative integers");
    expect_json_fail(E1("\"F32\"", "[1]", "[-4,0]"), 4, CLG_BAD_FORMAT, "two non-negative integers");
    expect_json_fail(E1("\"F32\"", "[1]", "[0,4.5]"), 8, CLG_BAD_FORMAT, "two non-negative integers");
    expect_json_fail(E1("\"F32\"", "[1]", "[\"0\",\"4\"]"), 4, CLG_BAD_FORMAT, "two non-negative integers");
    expect_json_fail(E1("\"F32\"", "[1]", "[0,1e300]"), 4, CLG_BAD_FORMAT, "two non-negative integers");
    expect_json_fail("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, CLG_BAD_FORMAT, "two non-negative integers");
    expect_json_fail(E1("\"F32\"", "[1]", "[8,4]"), 8, CLG_BAD_FORMAT, "end 4 is before begin 8");
    expect_json_fail(E1("\"F32\"", "[1]", "[4,8]"), 7, CLG_BAD_FORMAT, "end 8 is beyond the 7-byte data block");
    expect_json_fail(E1("\"F32\"", "[3]", "[0,8]"), 8, CLG_BAD_FORMAT,
                     "data_offsets cover 8 bytes but shape (3) of F32 needs 12");
    expect_json_fail(E1("\"F64\"", "[2,2]", "[0,16]"), 16, CLG_BAD_FORMAT, "shape (2, 2) of F64 needs 32");
#undef E1

    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                     12, CLG_BAD_FORMAT, "\"a\" [0, 8) and \"b\" [4, 12) overlap");
    /* Same range twice, and one range inside another listed first. */
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                     4, CLG_BAD_FORMAT, "overlap");
    expect_json_fail("{\"in\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                     "\"big\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[0,32]},"
                     "\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[32,36]}}",
                     36, CLG_BAD_FORMAT, "\"big\" [0, 32) and \"in\" [8, 12) overlap");
    /* cJSON keeps both keys; the reader must not. */
    expect_json_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                     12, CLG_BAD_FORMAT, "duplicate tensor name \"a\"");
}

/* A file made of several tensors, truncated at every length, and with every byte replaced
 * by a few hostile values: never a crash (ASan/valgrind make "never" strict), always a
 * status, and a successful parse only with entries inside the buffer. */
static void test_st_parse_truncated_and_mutated(void **state) {
    (void)state;
    size_t len;
    unsigned char *b = st_build(
        "{\"__metadata__\":{\"k\":\"v\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
        "\"b\":{\"dtype\":\"F64\",\"shape\":[1,1,1,2],\"data_offsets\":[16,32]},"
        "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]}}",
        NULL, 40, &len);
    clg_st_file f;
    char err[256];
    assert_int_equal(clg_st_parse(b, len, &f, err, sizeof err), CLG_OK);
    clg_st_file_free(&f);
    for (size_t cut = 0; cut < len; cut++) {
        err[0] = '\0';
        clg_status st = clg_st_parse(b, cut, &f, err, sizeof err);
        if (st == CLG_OK) fail_msg("a file cut to %zu of %zu bytes parsed", cut, len);
        assert_int_equal(st, CLG_BAD_FORMAT);
        assert_true(strlen(err) > 0);
    }
    const unsigned char hostile[] = {0x00, 0xff, '"', '{', '}', '[', '9', '-', '\\'};
    size_t accepted = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char keep = b[i];
        for (size_t h = 0; h < sizeof hostile; h++) {
            b[i] = hostile[h];
            clg_status st = clg_st_parse(b, len, &f, err, sizeof err);
            if (st == CLG_OK) {
                accepted++;
                for (size_t e = 0; e < f.n_entries; e++) {
                    const unsigned char *p = f.entries[e].data;
                    assert_true(p >= f.buffer && p + f.entries[e].bytes <= f.buffer + f.size);
                }
                clg_st_file_free(&f);
            } else {
                assert_int_equal(st, CLG_BAD_FORMAT);
            }
        }
        b[i] = keep;
    }
    /* Changing data bytes keeps the file valid: the loop did reach accepting paths too. */
    assert_true(accepted >= 40);
    free(b);
}

static void test_st_parse_bad_args(void **state) {
    (void)state;
    char err[128] = "";
    assert_int_equal(clg_st_parse("x", 1, NULL, err, sizeof err), CLG_INVALID_ARGUMENT);
    clg_st_file f;
    assert_int_equal(clg_st_parse(NULL, 5, &f, err, sizeof err), CLG_INVALID_ARGUMENT);
    /* A NULL err buffer is allowed. */
    assert_int_equal(clg_st_parse("0123456789", 10, &f, NULL, 0), CLG_BAD_FORMAT);
    assert_int_equal(clg_st_read(NULL, &f, err, sizeof err), CLG_INVALID_ARGUMENT);
}

static void test_st_read_missing_file(void **state) {
    (void)state;
    char path[256], err[512] = "";
    tmp_path(path, sizeof path, "does-not-exist.safetensors");
    clg_st_file f;
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_IO_ERROR);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, strerror(ENOENT)));
    /* A folder opens but does not read. */
    assert_int_equal(clg_st_read(tmp_root, &f, err, sizeof err), CLG_IO_ERROR);
    assert_non_null(strstr(err, tmp_root));
    /* A bad file's reason names the path. */
    tmp_path(path, sizeof path, "bad.safetensors");
    write_file(path, "\x03\0\0\0\0\0\0\0{}x", 11);
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "bytes after"));
}

/* A file written by the fixture script next to PyTorch (tests/fixtures/README.md): the
 * stored conv2d output must equal the conv2d of the stored input and weight. */
static void test_st_read_pytorch_fixture(void **state) {
    (void)state;
    const char *dir = getenv("CLGRAD_FIXTURES");
    if (!dir) skip();
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/worked_example.safetensors", dir);
    clg_st_file f;
    clg_status st = clg_st_read(path, &f, err, sizeof err);
    if (st != CLG_OK) fail_msg("%s", err);
    assert_int_equal(f.n_entries, 8);
    const clg_st_entry *x = st_find(&f, "x"), *w = st_find(&f, "w"), *y = st_find(&f, "y"),
                       *loss = st_find(&f, "loss");
    assert_non_null(x);
    assert_non_null(w);
    assert_non_null(y);
    assert_non_null(loss);
    assert_int_equal(x->ndim, 4);
    assert_int_equal(x->shape[2], 4);
    assert_int_equal(y->shape[3], 3);
    double sum_sq = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double acc = 0;
            for (int a = 0; a < 2; a++)
                for (int c = 0; c < 2; c++)
                    acc += st_value(x, (size_t)((i + a) * 4 + j + c)) * st_value(w, (size_t)(a * 2 + c));
            assert_true(fabs(acc - st_value(y, (size_t)(i * 3 + j))) < 1e-12);
            sum_sq += acc * acc;
        }
    assert_true(fabs(sum_sq - st_value(loss, 0)) < 1e-9);
    clg_st_file_free(&f);
}

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

/* ---------------------------------------------------------------- safetensors: save (device) */

typedef struct saved_tensor {
    const char *name;
    clg_dtype dtype;
    int ndim;
    int shape[4];
} saved_tensor;

/* Creates tensors with values i * 0.37 - k (exact in f32 up to rounding, distinct). */
static size_t make_tensors(clg_context *ctx, const saved_tensor *spec, size_t n, clg_named_tensor *out,
                           void **host) {
    size_t made = 0;
    for (size_t k = 0; k < n; k++) {
        size_t numel = 1;
        for (int d = 0; d < spec[k].ndim; d++) numel *= (size_t)spec[k].shape[d];
        void *h = malloc(numel * 8);
        assert_non_null(h);
        for (size_t i = 0; i < numel; i++) {
            double v = (double)i * 0.37 - (double)k;
            if (spec[k].dtype == CLG_F64)
                ((double *)h)[i] = v;
            else
                ((float *)h)[i] = (float)v;
        }
        clg_tensor *t = NULL;
        clg_status st = clg_tensor_from_host(ctx, spec[k].dtype, spec[k].ndim, spec[k].shape, h, &t);
        if (st == CLG_UNSUPPORTED) { /* no fp64 on this device: f64 entries are left out */
            free(h);
            continue;
        }
        REF_OK(ctx, st);
        out[made] = (clg_named_tensor){spec[k].name, t, true};
        host[made] = h;
        made++;
    }
    return made;
}

static void free_tensors(clg_named_tensor *e, void **host, size_t n) {
    for (size_t i = 0; i < n; i++) {
        clg_tensor_free(e[i].tensor);
        free(host[i]);
    }
}

static void test_st_save_round_trip(void **state) {
    clg_context *ctx = *state;
    const saved_tensor spec[] = {
        {"conv1.weight", CLG_F32, 4, {3, 2, 3, 3}},
        {"conv1.bias", CLG_F32, 1, {3}},
        {"fc.weight", CLG_F64, 2, {4, 5}},
        {"fc.bias", CLG_F64, 1, {4}},
        {"x", CLG_F64, 4, {1, 2, 1, 3}},
        {"name with \"quotes\" and \\ slash", CLG_F32, 3, {1, 1, 1}},
    };
    clg_named_tensor e[6];
    void *host[6];
    size_t n = make_tensors(ctx, spec, 6, e, host);
    assert_true(n >= 3);
    char path[256], err[512] = "";
    tmp_path(path, sizeof path, "round.safetensors");
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, n));
    assert_int_equal(count_tmp_files(tmp_root), 0);

    size_t flen;
    unsigned char *file = read_all(path, &flen);
    uint64_t hlen = io__load_le64(file);
    assert_int_equal(hlen % 8, 0); /* padded, so the data block is 8-aligned */
    assert_int_equal(file[8], '{');
    free(file);

    clg_st_file f;
    clg_status st = clg_st_read(path, &f, err, sizeof err);
    if (st != CLG_OK) fail_msg("%s", err);
    assert_int_equal(f.n_entries, n);
    const unsigned char *prev_end = NULL;
    for (size_t i = 0; i < n; i++) {
        const clg_st_entry *s = &f.entries[i]; /* written, and kept, in the given order */
        assert_string_equal(s->name, e[i].name);
        assert_int_equal(s->dtype, clg_tensor_dtype(e[i].tensor));
        assert_int_equal(s->ndim, clg_tensor_ndim(e[i].tensor));
        for (int d = 0; d < s->ndim; d++) assert_int_equal(s->shape[d], clg_tensor_shape(e[i].tensor)[d]);
        assert_int_equal(s->bytes, clg_tensor_bytes(e[i].tensor));
        assert_memory_equal(s->data, host[i], s->bytes); /* bit-exact (little-endian host) */
        if (prev_end) assert_ptr_equal(s->data, prev_end); /* offsets increase, no gaps */
        prev_end = (const unsigned char *)s->data + s->bytes;
    }
    assert_ptr_equal(prev_end, f.buffer + f.size);
    clg_st_file_free(&f);
    free_tensors(e, host, n);
}

static void test_st_save_failures(void **state) {
    clg_context *ctx = *state;
    const saved_tensor spec[] = {{"a", CLG_F32, 2, {64, 64}}, {"b", CLG_F32, 1, {5}}};
    clg_named_tensor e[2];
    void *host[2];
    size_t n = make_tensors(ctx, spec, 2, e, host);
    assert_int_equal(n, 2);
    char path[256], err[512];

    /* The folder does not exist: clean failure, nothing created. */
    tmp_path(path, sizeof path, "no-such-dir/x.safetensors");
    assert_int_equal(clg_safetensors_save(ctx, path, e, n), CLG_IO_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "cannot create"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "no-such-dir"));

    /* Over an existing file: replaced. */
    tmp_path(path, sizeof path, "over.safetensors");
    write_file(path, "old contents", 12);
    REF_OK(ctx, clg_safetensors_save(ctx, path, e, 1));
    clg_st_file f;
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, 1);
    clg_st_file_free(&f);
    size_t old_len;
    unsigned char *old = read_all(path, &old_len);

    /* A write that fails half-way (the file-size limit stands in for a full disk): the
     * previous checkpoint survives byte for byte, and no temp file is left behind. */
    struct rlimit saved_lim, small_lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved_lim), 0);
    small_lim = saved_lim;
    small_lim.rlim_cur = 1000; /* "a" alone is 16 KiB */
    void (*saved_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small_lim), 0);
    clg_status st = clg_safetensors_save(ctx, path, e, n);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved_lim), 0);
    signal(SIGXFSZ, saved_sig);
    assert_int_equal(st, CLG_IO_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "cannot write"));
    size_t now_len;
    unsigned char *now = read_all(path, &now_len);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now, old, old_len);
    free(now);
    assert_int_equal(count_tmp_files(tmp_root), 0);

    /* The rename fails (a non-empty folder holds the name): the folder and what is in it
     * survive, and the temp file is gone. */
    char dir[256], inner[300];
    tmp_path(dir, sizeof dir, "taken");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(inner, sizeof inner, "%s/keep", dir);
    write_file(inner, "keep", 4);
    assert_int_equal(clg_safetensors_save(ctx, dir, e, n), CLG_IO_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "cannot rename"));
    assert_int_equal(access(inner, R_OK), 0);
    assert_int_equal(count_tmp_files(tmp_root), 0);

    /* Entries that would make an unreadable file. */
    clg_named_tensor dup[2] = {{"same", e[0].tensor, true}, {"same", e[1].tensor, true}};
    assert_int_equal(clg_safetensors_save(ctx, path, dup, 2), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "duplicate name \"same\""));
    clg_named_tensor meta[1] = {{"__metadata__", e[0].tensor, true}};
    assert_int_equal(clg_safetensors_save(ctx, path, meta, 1), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "reserved"));
    clg_named_tensor null_t[1] = {{"t", NULL, true}};
    assert_int_equal(clg_safetensors_save(ctx, path, null_t, 1), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_safetensors_save(ctx, NULL, e, n), CLG_INVALID_ARGUMENT);
    /* None of these touched the old file. */
    now = read_all(path, &now_len);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now, old, old_len);
    free(now);
    free(old);

    /* Zero entries is a valid, empty checkpoint. */
    REF_OK(ctx, clg_safetensors_save(ctx, path, NULL, 0));
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, 0);
    clg_st_file_free(&f);
    free_tensors(e, host, n);
}

/* ---------------------------------------------------------------- module load/save (device) */

/* conv1 (1 -> conv_out, 3x3) -> bn1 -> [fc (8 -> 3)], every state tensor then filled with
 * values that depend on fill (so two models differ everywhere, running stats included). */
static clg_module *build_model(clg_context *ctx, int conv_out, bool with_fc, double fill) {
    clg_module *seq = NULL, *conv = NULL, *bn = NULL, *fc = NULL;
    REF_OK(ctx, clg_sequential_create(ctx, &seq));
    REF_OK(ctx, clg_conv2d_module_create(ctx, "conv1", 1, conv_out, 3, 3, clg_conv2d_default_params(),
                                         true, 7, &conv));
    REF_OK(ctx, clg_sequential_add(seq, conv));
    REF_OK(ctx, clg_batch_norm2d_module_create(ctx, "bn1", conv_out, 1e-5, 0.1, &bn));
    REF_OK(ctx, clg_sequential_add(seq, bn));
    if (with_fc) {
        REF_OK(ctx, clg_linear_module_create(ctx, "fc", 8, 3, true, 9, &fc));
        REF_OK(ctx, clg_sequential_add(seq, fc));
    }
    clg_named_tensor st[16];
    size_t n = clg_module_state(seq, st, 16);
    for (size_t k = 0; k < n; k++) {
        size_t numel = clg_tensor_numel(st[k].tensor);
        float *h = malloc(numel * sizeof *h);
        assert_non_null(h);
        for (size_t i = 0; i < numel; i++) h[i] = (float)sin(fill + (double)(k * 100 + i));
        REF_OK(ctx, clg_tensor_write(st[k].tensor, h, numel * sizeof *h));
        free(h);
    }
    return seq;
}

/* All state values of m, as doubles, concatenated in state order; *n gets the count. */
static double *state_values(const clg_module *m, size_t *n) {
    clg_named_tensor st[16];
    size_t ns = clg_module_state(m, st, 16), total = 0;
    for (size_t k = 0; k < ns; k++) total += clg_tensor_numel(st[k].tensor);
    double *all = malloc(total * sizeof *all);
    assert_non_null(all);
    size_t at = 0;
    for (size_t k = 0; k < ns; k++) {
        double *v = ref_to_host_f64(st[k].tensor);
        memcpy(all + at, v, clg_tensor_numel(st[k].tensor) * sizeof *v);
        at += clg_tensor_numel(st[k].tensor);
        free(v);
    }
    *n = total;
    return all;
}

static void test_module_save_load_round_trip(void **state) {
    clg_context *ctx = *state;
    clg_module *a = build_model(ctx, 4, true, 0.0), *b = build_model(ctx, 4, true, 0.5);
    char path[256], err[512] = "";
    tmp_path(path, sizeof path, "model.safetensors");
    REF_OK(ctx, clg_module_save(ctx, a, path));

    /* The file holds the state_dict names, in order, as F32 (num_batches_tracked as [1]). */
    clg_named_tensor st[16];
    size_t ns = clg_module_state(a, st, 16);
    assert_int_equal(ns, 9);
    clg_st_file f;
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
    assert_int_equal(f.n_entries, ns);
    for (size_t k = 0; k < ns; k++) {
        assert_string_equal(f.entries[k].name, st[k].name);
        assert_int_equal(f.entries[k].dtype, CLG_F32);
    }
    const clg_st_entry *nbt = st_find(&f, "bn1.num_batches_tracked");
    assert_non_null(nbt);
    assert_int_equal(nbt->ndim, 1);
    assert_int_equal(nbt->shape[0], 1);
    clg_st_file_free(&f);

    size_t na, nb;
    double *va = state_values(a, &na), *vb = state_values(b, &nb);
    assert_int_equal(na, nb);
    assert_true(memcmp(va, vb, na * sizeof *va) != 0);
    free(vb);
    REF_OK(ctx, clg_module_load(ctx, b, path));
    vb = state_values(b, &nb);
    assert_memory_equal(va, vb, na * sizeof *va); /* bit-exact */
    free(va);
    free(vb);

    /* Into an f64 copy of the model: every f32 value converts exactly. */
    clg_module *c = build_model(ctx, 4, true, 0.25);
    clg_status s64 = clg_module_to_dtype(c, CLG_F64);
    if (s64 == CLG_OK) {
        REF_OK(ctx, clg_module_load(ctx, c, path));
        va = state_values(a, &na);
        double *vc = state_values(c, &nb);
        assert_memory_equal(va, vc, na * sizeof *va);
        free(va);
        free(vc);
        /* And back: an F64 file into an f32 model rounds each value to float. */
        tmp_path(path, sizeof path, "model64.safetensors");
        clg_named_tensor sc[16];
        size_t nc = clg_module_state(c, sc, 16);
        for (size_t k = 0; k < nc; k++) {
            size_t numel = clg_tensor_numel(sc[k].tensor);
            double *h = malloc(numel * sizeof *h);
            assert_non_null(h);
            for (size_t i = 0; i < numel; i++) h[i] = 1.0 / (3.0 + (double)(k * 10 + i));
            REF_OK(ctx, clg_tensor_write(sc[k].tensor, h, numel * sizeof *h));
            free(h);
        }
        REF_OK(ctx, clg_module_save(ctx, c, path));
        assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_OK);
        assert_int_equal(f.entries[0].dtype, CLG_F64);
        clg_st_file_free(&f);
        REF_OK(ctx, clg_module_load(ctx, b, path));
        double *want = state_values(c, &na);
        vb = state_values(b, &nb);
        for (size_t i = 0; i < na; i++) assert_true(vb[i] == (double)(float)want[i]);
        free(want);
        free(vb);
    } else {
        assert_int_equal(s64, CLG_UNSUPPORTED);
    }
    clg_module_free(a);
    clg_module_free(b);
    clg_module_free(c);
}

static void test_module_load_rejects(void **state) {
    clg_context *ctx = *state;
    clg_module *small = build_model(ctx, 4, false, 0.0), *full = build_model(ctx, 4, true, 1.0),
               *wide = build_model(ctx, 5, false, 2.0);
    char small_path[256], full_path[256];
    tmp_path(small_path, sizeof small_path, "small.safetensors");
    tmp_path(full_path, sizeof full_path, "full.safetensors");
    REF_OK(ctx, clg_module_save(ctx, small, small_path));
    REF_OK(ctx, clg_module_save(ctx, full, full_path));
    size_t n0, n1;
    double *before = state_values(full, &n0);

    /* The file lacks fc: named, and the module keeps every value it had. */
    assert_int_equal(clg_module_load(ctx, full, small_path), CLG_BAD_FORMAT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "\"fc.weight\" is not in the file"));
    double *after = state_values(full, &n1);
    assert_memory_equal(before, after, n0 * sizeof *before);
    free(after);
    /* The file has fc, the module does not. */
    assert_int_equal(clg_module_load(ctx, small, full_path), CLG_BAD_FORMAT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "the file's \"fc.weight\" is not in the module"));
    /* Same names, other shapes: both shapes in the message. */
    assert_int_equal(clg_module_load(ctx, wide, small_path), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx),
                           "\"conv1.weight\" has shape (4, 1, 3, 3) in the file but (5, 1, 3, 3) in the module"));
    /* No file, a bad file: the reader's reason, under the module call. */
    char path[256];
    tmp_path(path, sizeof path, "absent.safetensors");
    assert_int_equal(clg_module_load(ctx, small, path), CLG_IO_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "clg_module_load: "));
    assert_non_null(strstr(clg_context_errmsg(ctx), path));
    tmp_path(path, sizeof path, "garbage.safetensors");
    write_file(path, "\x10\0\0\0\0\0\0\0not json at all!", 24);
    assert_int_equal(clg_module_load(ctx, small, path), CLG_BAD_FORMAT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "does not start with '{'"));
    /* A device write that fails is reported with the tensor's name. */
    clg_context_inject_fault(ctx, CLG_FAULT_ENQUEUE, 1);
    clg_status st = clg_module_load(ctx, full, full_path);
    clg_context_inject_fault(ctx, CLG_FAULT_ENQUEUE, 0);
    assert_int_equal(st, CLG_OPENCL_ERROR);
    assert_non_null(strstr(clg_context_errmsg(ctx), "clg_module_load: writing \"conv1.weight\""));
    assert_int_equal(clg_module_load(ctx, NULL, full_path), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_module_save(ctx, full, NULL), CLG_INVALID_ARGUMENT);
    free(before);
    clg_module_free(small);
    clg_module_free(full);
    clg_module_free(wide);
}

/* A batch norm as PyTorch saves it: num_batches_tracked an I64 of shape [] (or [1]), and a
 * weight stored as an F32 scalar-shaped [] where the module has (1). */
static void test_module_load_pytorch_batchnorm(void **state) {
    clg_context *ctx = *state;
    clg_module *bn = NULL;
    REF_OK(ctx, clg_batch_norm2d_module_create(ctx, "bn1", 1, 1e-5, 0.1, &bn));
    const char *shapes[2] = {"[]", "[1]"};
    for (int v = 0; v < 2; v++) {
        unsigned char data[24];
        io__store_le32(data + 0, io__f32_bits(1.5f));   /* weight */
        io__store_le32(data + 4, io__f32_bits(-0.5f));  /* bias */
        io__store_le32(data + 8, io__f32_bits(0.25f));  /* running_mean */
        io__store_le32(data + 12, io__f32_bits(2.0f));  /* running_var */
        io__store_le64(data + 16, (uint64_t)(1234 + v)); /* num_batches_tracked */
        char json[600];
        snprintf(json, sizeof json,
                 "{\"__metadata__\":{\"format\":\"pt\"},"
                 "\"bn1.weight\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                 "\"bn1.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                 "\"bn1.running_mean\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                 "\"bn1.running_var\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]},"
                 "\"bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":%s,\"data_offsets\":[16,24]}}",
                 shapes[v]);
        size_t len;
        unsigned char *b = st_build(json, data, sizeof data, &len);
        char path[256];
        tmp_path(path, sizeof path, "torch_bn.safetensors");
        write_file(path, b, len);
        free(b);
        REF_OK(ctx, clg_module_load(ctx, bn, path));
        size_t n;
        double *vals = state_values(bn, &n);
        assert_int_equal(n, 5);
        assert_true(vals[0] == 1.5 && vals[1] == -0.5 && vals[2] == 0.25 && vals[3] == 2.0);
        assert_true(vals[4] == 1234.0 + v);
        free(vals);
    }
    clg_module_free(bn);
}

int main(void) {
    const struct CMUnitTest host_tests[] = {
        cmocka_unit_test(test_st_parse_valid),
        cmocka_unit_test(test_st_parse_i64_counter),
        cmocka_unit_test(test_st_parse_edge_accepts),
        cmocka_unit_test(test_st_parse_rejects_header),
        cmocka_unit_test(test_st_parse_rejects_entries),
        cmocka_unit_test(test_st_parse_truncated_and_mutated),
        cmocka_unit_test(test_st_parse_bad_args),
        cmocka_unit_test(test_st_read_missing_file),
        cmocka_unit_test(test_st_read_pytorch_fixture),
        cmocka_unit_test(test_idx_parse_valid),
        cmocka_unit_test(test_idx_parse_rejects),
        cmocka_unit_test(test_idx_gzip_rejects),
        cmocka_unit_test(test_idx_gzip_bomb_capped),
        cmocka_unit_test(test_idx_read_files),
        cmocka_unit_test(test_idx_fashion_mnist),
    };
    const struct CMUnitTest device_tests[] = {
        cmocka_unit_test(test_st_save_round_trip),
        cmocka_unit_test(test_st_save_failures),
        cmocka_unit_test(test_module_save_load_round_trip),
        cmocka_unit_test(test_module_load_rejects),
        cmocka_unit_test(test_module_load_pytorch_batchnorm),
    };
    int failed = 0;
    if (make_tmp_root(NULL) != 0) return 1;
    failed += cmocka_run_group_tests_name("io_host", host_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("io_device", device_tests, ref_group_setup, ref_group_teardown);
    remove_tmp_root(NULL);
    return failed;
}
