/* tests/io/test_safetensors.c - safetensors parsing and reading (src/io/safetensors.c):
 * crafted good and bad buffers, every truncation and hostile byte of a file, bad arguments,
 * a missing file, and the PyTorch fixture. Saving is in tests/io/test_checkpoint.c; fuzz
 * targets are in tests/fuzz/.
 */
#include "io_test.h"

/* ---------------------------------------------------------------- helpers */

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

static double st_value(const clg_st_entry *e, size_t i) {
    const unsigned char *p = (const unsigned char *)e->data;
    return e->dtype == CLG_F64 ? io__f64_from_bits(io__load_le64(p + 8 * i))
                               : (double)io__f32_from_bits(io__load_le32(p + 4 * i));
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

/* Only regular files are read: a FIFO (which used to hang the open), /dev/zero (which used
 * to be read until memory ran out) and a folder fail at once, with what they are. */
static void test_st_read_not_regular(void **state) {
    (void)state;
    char path[256], err[512] = "";
    clg_st_file f;
    tmp_path(path, sizeof path, "fifo.safetensors");
    if (make_fifo(path)) {
        assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_IO_ERROR);
        assert_non_null(strstr(err, "a FIFO, not a regular file"));
        assert_null(f.buffer);
        unlink(path);
    }
    if (access("/dev/zero", R_OK) == 0) {
        assert_int_equal(clg_st_read("/dev/zero", &f, err, sizeof err), CLG_IO_ERROR);
        assert_non_null(strstr(err, "a character device, not a regular file"));
        assert_non_null(strstr(err, "/dev/zero"));
    }
    assert_int_equal(clg_st_read(tmp_root, &f, err, sizeof err), CLG_IO_ERROR);
    assert_non_null(strstr(err, "a folder"));
}

/* The length and the header are checked against the file's size before the rest is read,
 * and only the data the header reaches is read: sparse files of many GiB show it (reading
 * them would take the 8 GiB the old reader allocated). */
static void test_st_read_caps_before_reading(void **state) {
    (void)state;
    char path[256], err[512] = "";
    clg_st_file f;
    tmp_path(path, sizeof path, "big.safetensors");
    const off_t big = (off_t)8 << 30;

    /* A header length of 2^40: refused on the 8 bytes alone. */
    unsigned char len_only[8];
    io__store_le64(len_only, (uint64_t)1 << 40);
    write_sparse(path, len_only, 8, big);
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "over the 100 MB limit"));

    /* A header length beyond the file's end: refused against the size, nothing read. */
    io__store_le64(len_only, 4096);
    write_file(path, len_only, 8);
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "more than the 0 bytes after it"));

    /* A sound header and 4 data bytes, then 8 GiB of nothing: only 8 + header + 4 bytes are
     * read, and the tensor is there. */
    const float one = 1.5f;
    size_t len;
    unsigned char *b = st_build("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", &one, 4, &len);
    write_sparse(path, b, len, big);
    clg_status st = clg_st_read(path, &f, err, sizeof err);
    if (st != CLG_OK) fail_msg("%s", err);
    assert_int_equal(f.size, len);
    assert_int_equal(f.n_entries, 1);
    assert_memory_equal(f.entries[0].data, &one, 4);
    clg_st_file_free(&f);

    /* A header that reaches past the end of the file: refused before the data is read. */
    free(b);
    b = st_build("{\"t\":{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]}}", NULL, 100, &len);
    write_file(path, b, len);
    assert_int_equal(clg_st_read(path, &f, err, sizeof err), CLG_BAD_FORMAT);
    assert_non_null(strstr(err, "reach byte 4096 of the data block, but the file has 100"));
    assert_non_null(strstr(err, path));
    free(b);
    unlink(path);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st_parse_valid),
        cmocka_unit_test(test_st_parse_i64_counter),
        cmocka_unit_test(test_st_parse_edge_accepts),
        cmocka_unit_test(test_st_parse_rejects_header),
        cmocka_unit_test(test_st_parse_rejects_entries),
        cmocka_unit_test(test_st_parse_truncated_and_mutated),
        cmocka_unit_test(test_st_parse_bad_args),
        cmocka_unit_test(test_st_read_missing_file),
        cmocka_unit_test(test_st_read_not_regular),
        cmocka_unit_test(test_st_read_caps_before_reading),
        cmocka_unit_test(test_st_read_pytorch_fixture),
    };
    if (make_tmp_root(NULL) != 0) return 1;
    const int failed = cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
    remove_tmp_root(NULL);
    return failed;
}
