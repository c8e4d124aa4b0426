/* tests/core/test_program_cache.c - building programs (src/core/program_cache.c) and the
 * on-disk binary cache (src/core/disk_cache.c): build failures that carry the compiler log,
 * a kernel folder from params or CLGRAD_KERNEL_DIR, unknown programs, cache hits, corrupt
 * cache files rebuilt, a kernel folder's includes in the cache key, another program's binary
 * under a valid header rebuilt (at load, or when a kernel is missing), where the cache
 * folder comes from (params, environment, "off"), and when a program is written: at once on
 * first use except on CPU-only devices, where clg_program_prepare or clg_program_save_all do.
 */
#include "context_test.h"
#include "core/core.h"
#include "core/disk_cache.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef CLG_TEST_CL_DIR
#error "meson passes CLG_TEST_CL_DIR, the source folder cl/"
#endif

/* ---------------------------------------------------------------- helpers */

/* A fresh folder under $TMPDIR (or /tmp); the caller removes it with rm_rf and frees it. */
static char *make_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !base[0]) base = "/tmp";
    char *path = malloc(strlen(base) + 32);
    assert_non_null(path);
    sprintf(path, "%s/clgrad-test-XXXXXX", base);
    if (!mkdtemp(path)) fail_msg("mkdtemp(%s): %s", path, strerror(errno));
    return path;
}


/* Regular files under path (recursive); up to 64 malloc'd paths. */
typedef struct file_list {
    char *paths[64];
    size_t n;
} file_list;

static void list_files_into(const char *path, file_list *out) {
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        struct stat sb;
        if (lstat(child, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            list_files_into(child, out);
        } else if (S_ISREG(sb.st_mode) && out->n < 64) {
            out->paths[out->n] = malloc(strlen(child) + 1);
            assert_non_null(out->paths[out->n]);
            strcpy(out->paths[out->n++], child);
        }
    }
    closedir(d);
}

static file_list list_files(const char *path) {
    file_list l = {{0}, 0};
    list_files_into(path, &l);
    return l;
}

static void file_list_free(file_list *l) {
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    l->n = 0;
}

static bool list_has(const file_list *l, const char *path) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->paths[i], path)) return true;
    return false;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("fopen(%s): %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(sz > 0 ? (size_t)sz : 1);
    assert_non_null(buf);
    *len = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    assert_int_equal(*len, (size_t)sz);
    return buf;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("fopen(%s): %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static off_t file_size(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    return sb.st_size;
}

/* Build options no earlier run has used, so neither our disk tier nor the driver's own
 * cache (PoCL's kcache) can hold the program: its first build in this process is really
 * cold. One set per process: each cold build costs seconds on PoCL, and the cache tests
 * after the first work in fresh folders anyway. */
static const char *unique_options(void) {
    static char opts[96];
    if (!opts[0]) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(opts, sizeof opts, "-DCLG_TEST_NONCE=%lld%09ld%ld", (long long)ts.tv_sec, (long)ts.tv_nsec,
                 (long)getpid());
    }
    return opts;
}

/* ---------------------------------------------------------------- build failures */

static const char bad_cl[] = "/* a kernel that cannot compile: the log must reach the caller */\n"
                             "__kernel void bad(__global float *y) {\n"
                             "    y[get_global_id(0)] = clg_undeclared_identifier_42 + 1.0f;\n"
                             "}\n";
static const char good_cl[] = "#include \"common/defs.h\"\n"
                              "__kernel void good(__global REAL *y, const int n) {\n"
                              "    const int i = GID0;\n"
                              "    if (i >= n) return;\n"
                              "    y[i] = (REAL)1;\n"
                              "}\n";

/* A kernel folder laid out like cl/: the real common/ and tensor/ plus broken/. */
static char *make_kernel_dir(void) {
    char *dir = make_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/broken", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/broken/bad.cl", dir);
    write_file(path, bad_cl, strlen(bad_cl));
    snprintf(path, sizeof path, "%s/broken/good.cl", dir);
    write_file(path, good_cl, strlen(good_cl));
    const char *linked[] = {"common", "tensor"};
    for (size_t i = 0; i < 2; i++) {
        char target[4096];
        snprintf(target, sizeof target, "%s/%s", CLG_TEST_CL_DIR, linked[i]);
        snprintf(path, sizeof path, "%s/%s", dir, linked[i]);
        if (symlink(target, path) != 0) fail_msg("symlink(%s): %s", target, strerror(errno));
    }
    return dir;
}

/* full: also the repeat and the f64 variant (each failed build costs PoCL ~0.5 s). */
static void check_build_failure(clg_context *ctx, bool full) {
    clg_build_report rep;
    clg_status st = clg_program_prepare(ctx, "broken/bad", NULL, &rep);
    const char *msg = clg_context_errmsg(ctx);
    if (st != CLG_BUILD_FAILED)
        fail_msg("prepare(broken/bad) -> %s, want CLG_BUILD_FAILED: %s", clg_status_name(st), msg);
    if (!strstr(msg, "clBuildProgram") || !strstr(msg, "clg_undeclared_identifier_42"))
        fail_msg("build error lacks the call or the compiler log: %s", msg);
    /* The failure is not cached as a success: asking again fails again. */
    if (full) assert_int_equal(clg_program_prepare(ctx, "broken/bad", NULL, &rep), CLG_BUILD_FAILED);
    /* The context is fine afterwards, and includes resolve inside the kernel folder. */
    REF_OK(ctx, clg_program_prepare(ctx, "broken/good", NULL, &rep));
    if (full) REF_OK(ctx, clg_program_prepare(ctx, "broken/good", "-DREAL=double -DREAL_IS_DOUBLE=1", &rep));
    check_ctx_works(ctx);
}

static void test_build_failure_surfaces_log(void **state) {
    (void)state;
    char *dir = make_kernel_dir();
    clg_context *ctx = make_ctx(NULL, "off", dir);
    assert_string_equal(clg_context_errmsg(ctx), "");
    check_build_failure(ctx, true);
    clg_context_free(ctx);

    /* The same folder through CLGRAD_KERNEL_DIR. */
    saved_env s = env_set("CLGRAD_KERNEL_DIR", dir);
    ctx = make_ctx(NULL, "off", NULL);
    env_restore(&s);
    check_build_failure(ctx, false);
    clg_context_free(ctx);
    ref_rm_rf(dir);
    free(dir);
}

static void test_build_failure_bad_options(void **state) {
    clg_context *ctx = *state;
    clg_build_report rep;
    clg_status st = clg_program_prepare(ctx, "tensor/tensor", "-DREAL=clg_no_such_type_7", &rep);
    const char *msg = clg_context_errmsg(ctx);
    if (st != CLG_BUILD_FAILED)
        fail_msg("prepare with a bad REAL -> %s, want CLG_BUILD_FAILED: %s", clg_status_name(st), msg);
    if (!strstr(msg, "clBuildProgram") || !strstr(msg, "clg_no_such_type_7"))
        fail_msg("build error lacks the call or the compiler log: %s", msg);
    check_ctx_works(ctx);
}

static void test_unknown_program(void **state) {
    clg_context *ctx = *state;
    clg_build_report rep;
    clg_status st = clg_program_prepare(ctx, "nosuch/program", NULL, &rep);
    assert_int_not_equal(st, CLG_OK);
    if (!strstr(clg_context_errmsg(ctx), "nosuch/program"))
        fail_msg("error does not name the program: %s", clg_context_errmsg(ctx));
    assert_int_equal(clg_program_prepare(ctx, NULL, NULL, &rep), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_program_prepare(NULL, "tensor/tensor", NULL, &rep), CLG_INVALID_ARGUMENT);
    /* report may be NULL */
    REF_OK(ctx, clg_program_prepare(ctx, "tensor/tensor", NULL, NULL));
    check_ctx_works(ctx);
}

/* ---------------------------------------------------------------- binary cache */

static clg_build_report prepare(clg_context *ctx, const char *opts) {
    /* Values a real report never has together, so unwritten fields show. */
    clg_build_report rep = {.seconds = -1, .from_memory = true, .from_disk = true};
    REF_OK(ctx, clg_program_prepare(ctx, "tensor/tensor", opts, &rep));
    assert_false(rep.from_memory && rep.from_disk);
    assert_true(rep.seconds >= 0);
    return rep;
}

static void test_disk_cache_hit(void **state) {
    (void)state;
    char *dir = make_tmpdir();
    const char *opts = unique_options();

    clg_context *c1 = make_ctx(NULL, dir, NULL);
    if (strncmp(clg_context_cache_dir(c1), dir, strlen(dir)))
        fail_msg("cache dir is '%s', want under '%s'", clg_context_cache_dir(c1), dir);
    const clg_build_report cold = prepare(c1, opts);
    assert_false(cold.from_disk);
    assert_false(cold.from_memory);
    const clg_build_report again = prepare(c1, opts);
    assert_true(again.from_memory);
    clg_context_free(c1);

    file_list files = list_files(dir);
    assert_true(files.n >= 1);
    file_list_free(&files);

    clg_context *c2 = make_ctx(NULL, dir, NULL);
    const clg_build_report warm = prepare(c2, opts);
    assert_true(warm.from_disk);
    assert_false(warm.from_memory);
    print_message("    cold build %.1f ms, load from disk cache %.1f ms\n", cold.seconds * 1e3,
                  warm.seconds * 1e3);
    if (!(warm.seconds < cold.seconds))
        fail_msg("disk cache (%.3f s) is not faster than the cold build (%.3f s)", warm.seconds,
                 cold.seconds);
    /* Other options are another key: no hit (the plain f64 variant, which the driver's
     * cache likely holds, so this costs little). */
    const clg_build_report miss = prepare(c2, "-DREAL=double -DREAL_IS_DOUBLE=1");
    assert_false(miss.from_disk);
    assert_false(miss.from_memory);
    check_ctx_works(c2);
    clg_context_free(c2);
    ref_rm_rf(dir);
    free(dir);
}

typedef enum corruption { TRUNCATE_HALF, EMPTY, FLIP_MIDDLE, GARBAGE, SWAPPED } corruption;
static const char *corruption_name[] = {"truncated to half", "emptied", "bytes flipped in the middle",
                                        "overwritten with garbage", "replaced by another program's file"};

static void corrupt(const char *path, corruption how, const char *other_file) {
    size_t len = 0;
    unsigned char *buf = read_file(path, &len);
    assert_true(len > 32);
    switch (how) {
    case TRUNCATE_HALF:
        write_file(path, buf, len / 2);
        break;
    case EMPTY:
        write_file(path, buf, 0);
        break;
    case FLIP_MIDDLE:
        for (size_t i = len / 2; i < len / 2 + 16 && i < len; i++)
            buf[i] ^= 0x5A;
        write_file(path, buf, len);
        break;
    case GARBAGE: {
        uint64_t s = 0x9E3779B97F4A7C15ULL;
        for (size_t i = 0; i < len; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            buf[i] = (unsigned char)s;
        }
        write_file(path, buf, len);
        break;
    }
    case SWAPPED: {
        size_t olen = 0;
        unsigned char *other = read_file(other_file, &olen);
        write_file(path, other, olen);
        free(other);
        break;
    }
    }
    free(buf);
}

static void test_disk_cache_corrupt_rebuilt(void **state) {
    (void)state;
    char *dir = make_tmpdir();
    const char *opts = unique_options();

    /* The cache holds exactly this program's file(s) after the first build. */
    clg_context *c = make_ctx(NULL, dir, NULL);
    prepare(c, opts);
    clg_context_free(c);
    file_list mine = list_files(dir);
    assert_true(mine.n >= 1);

    /* Another program's cache file, for the swap (the plain f64 variant). */
    c = make_ctx(NULL, dir, NULL);
    prepare(c, "-DREAL=double -DREAL_IS_DOUBLE=1");
    clg_context_free(c);
    file_list all = list_files(dir);
    const char *other = NULL;
    for (size_t i = 0; i < all.n; i++)
        if (!list_has(&mine, all.paths[i])) other = all.paths[i];
    assert_non_null(other);

    for (corruption how = TRUNCATE_HALF; how <= SWAPPED; how++) {
        for (size_t i = 0; i < mine.n; i++)
            corrupt(mine.paths[i], how, other);
        c = make_ctx(NULL, dir, NULL);
        const clg_build_report r = prepare(c, opts);
        if (r.from_disk)
            fail_msg("cache file %s was trusted (from_disk) after being %s", mine.paths[0],
                     corruption_name[how]);
        assert_string_equal(clg_context_errmsg(c), "");
        check_ctx_works(c);
        clg_context_free(c);
        for (size_t i = 0; i < mine.n; i++)
            if (file_size(mine.paths[i]) <= 0)
                fail_msg("cache file %s not rewritten after being %s", mine.paths[i], corruption_name[how]);
        /* Rebuilt and rewritten valid: the next context loads it. */
        c = make_ctx(NULL, dir, NULL);
        const clg_build_report again = prepare(c, opts);
        if (!again.from_disk)
            fail_msg("after rebuilding a file %s, the next context did not load it from disk",
                     corruption_name[how]);
        clg_context_free(c);
    }
    /* No temp files left behind by the atomic writes. */
    file_list after = list_files(dir);
    for (size_t i = 0; i < after.n; i++) {
        const char *base = strrchr(after.paths[i], '/') + 1;
        if (strstr(base, "tmp") || strstr(base, ".part") || base[0] == '.')
            fail_msg("leftover temporary file %s", after.paths[i]);
    }
    file_list_free(&after);
    file_list_free(&all);
    file_list_free(&mine);
    ref_rm_rf(dir);
    free(dir);
}

/* A kernel folder with its own copy of cl/common/defs.h (so a test may break it) and
 * kern/good.cl including it, kern/two.cl (kernels one and two), kern/one.cl (one only). */
static const char two_cl[] = "__kernel void one(__global float *y) { y[0] = 1.0f; }\n"
                             "__kernel void two(__global float *y) { y[0] = 2.0f; }\n";
static const char one_cl[] = "__kernel void one(__global float *y) { y[0] = 3.0f; }\n";

static char *make_copied_kernel_dir(void) {
    char *dir = make_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/common", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/kern", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    size_t len = 0;
    snprintf(path, sizeof path, "%s/common/defs.h", CLG_TEST_CL_DIR);
    unsigned char *defs = read_file(path, &len);
    snprintf(path, sizeof path, "%s/common/defs.h", dir);
    write_file(path, defs, len);
    free(defs);
    const struct {
        const char *name, *text;
    } files[] = {{"kern/good.cl", good_cl}, {"kern/two.cl", two_cl}, {"kern/one.cl", one_cl}};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        write_file(path, files[i].text, strlen(files[i].text));
    }
    return dir;
}

static void append_file(const char *path, const char *text) {
    FILE *f = fopen(path, "ab");
    if (!f) fail_msg("fopen(%s): %s", path, strerror(errno));
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static clg_build_report prepare_in(clg_context *ctx, const char *program, clg_status want) {
    clg_build_report rep = {.seconds = -1, .from_memory = true, .from_disk = true};
    REF_EXPECT(ctx, clg_program_prepare(ctx, program, unique_options(), &rep), want);
    return rep;
}

/* A kernel folder's include is part of what is compiled, so part of the key: a broken
 * common/defs.h must fail the build, not load the binary built before it broke. */
static void test_disk_cache_key_covers_includes(void **state) {
    (void)state;
    char *kdir = make_copied_kernel_dir(), *cdir = make_tmpdir();
    char defs[4200];
    snprintf(defs, sizeof defs, "%s/common/defs.h", kdir);
    size_t defs_len = 0;
    unsigned char *defs_orig = read_file(defs, &defs_len);

    clg_context *c = make_ctx(NULL, cdir, kdir);
    assert_false(prepare_in(c, "kern/good", CLG_OK).from_disk);
    clg_context_free(c);
    c = make_ctx(NULL, cdir, kdir);
    assert_true(prepare_in(c, "kern/good", CLG_OK).from_disk);
    clg_context_free(c);

    append_file(defs, "\n#error clg_broken_defs_h_17\n");
    c = make_ctx(NULL, cdir, kdir);
    clg_status st = clg_program_prepare(c, "kern/good", unique_options(), NULL);
    if (st != CLG_BUILD_FAILED)
        fail_msg("with a broken common/defs.h, prepare -> %s (want CLG_BUILD_FAILED): the cache key misses includes",
                 clg_status_name(st));
    if (!strstr(clg_context_errmsg(c), "clg_broken_defs_h_17"))
        fail_msg("the build log of the broken include is missing: %s", clg_context_errmsg(c));
    clg_context_free(c);

    /* A harmless edit is a new key too (built, then loaded); the original text finds its
     * old entry again. */
    write_file(defs, defs_orig, defs_len);
    append_file(defs, "\n/* an edit */\n");
    c = make_ctx(NULL, cdir, kdir);
    assert_false(prepare_in(c, "kern/good", CLG_OK).from_disk);
    clg_context_free(c);
    write_file(defs, defs_orig, defs_len);
    c = make_ctx(NULL, cdir, kdir);
    assert_true(prepare_in(c, "kern/good", CLG_OK).from_disk);
    clg_context_free(c);
    free(defs_orig);
    ref_rm_rf(kdir);
    ref_rm_rf(cdir);
    free(kdir);
    free(cdir);
}

/* The key of the one cache file that appeared in dir since `before`. */
static uint64_t new_file_key(const char *dir, const file_list *before) {
    file_list now = list_files(dir);
    uint64_t key = 0;
    int found = 0;
    for (size_t i = 0; i < now.n; i++) {
        if (list_has(before, now.paths[i])) continue;
        const char *base = strrchr(now.paths[i], '/') + 1;
        unsigned long long k = 0;
        if (sscanf(base, "%16llx.bin", &k) == 1) key = (uint64_t)k, found++;
    }
    file_list_free(&now);
    if (found != 1) fail_msg("%d new cache files, want 1", found);
    return key;
}

/* The binary payload of the cache file with that key. */
static unsigned char *cached_payload(const char *dir, uint64_t key, size_t *len) {
    unsigned char *bin = NULL;
    assert_int_equal(clg__disk_cache_load(dir, key, &bin, len), CLG_OK);
    return bin;
}

/* Another program's binary stored under a key with a valid header (a checksum that holds):
 * the load must notice its kernels are not the source's and rebuild, never end in
 * CL_INVALID_KERNEL_NAME. Where the stray binary's kernels are a subset of the source's, the
 * load cannot tell: the missing kernel then rebuilds the program. */
static void test_disk_cache_foreign_binary_rebuilt(void **state) {
    (void)state;
    char *kdir = make_copied_kernel_dir(), *cdir = make_tmpdir();
    uint64_t key_good, key_two, key_one;
    file_list before = list_files(cdir);
    clg_context *c = make_ctx(NULL, cdir, kdir);
    prepare_in(c, "kern/good", CLG_OK);
    key_good = new_file_key(cdir, &before);
    file_list_free(&before);
    before = list_files(cdir);
    prepare_in(c, "kern/two", CLG_OK);
    key_two = new_file_key(cdir, &before);
    file_list_free(&before);
    before = list_files(cdir);
    prepare_in(c, "kern/one", CLG_OK);
    key_one = new_file_key(cdir, &before);
    file_list_free(&before);
    clg_context_free(c);

    /* good's key now holds two's binary: other kernel names, caught at load. */
    size_t len = 0;
    unsigned char *bin = cached_payload(cdir, key_two, &len);
    assert_int_equal(clg__disk_cache_store(cdir, key_good, bin, len), CLG_OK);
    free(bin);
    c = make_ctx(NULL, cdir, kdir);
    assert_false(prepare_in(c, "kern/good", CLG_OK).from_disk);
    cl_kernel k = NULL;
    REF_OK(c, clg__kernel(c, "kern/good", "good", unique_options(), &k));
    clg_context_free(c);
    c = make_ctx(NULL, cdir, kdir); /* rewritten: the next context loads it */
    assert_true(prepare_in(c, "kern/good", CLG_OK).from_disk);
    clg_context_free(c);

    /* two's key holds one's binary (kernel one only): loads, then kernel two rebuilds it. */
    bin = cached_payload(cdir, key_one, &len);
    assert_int_equal(clg__disk_cache_store(cdir, key_two, bin, len), CLG_OK);
    free(bin);
    c = make_ctx(NULL, cdir, kdir);
    REF_OK(c, clg__kernel(c, "kern/two", "one", unique_options(), &k));
    REF_OK(c, clg__kernel(c, "kern/two", "two", unique_options(), &k));
    /* Both kernels run from the rebuilt program: one writes 1, two writes 2. */
    cl_int e;
    cl_mem buf = clCreateBuffer(clg_context_cl_context(c), CL_MEM_READ_WRITE, sizeof(float), NULL, &e);
    assert_int_equal(e, CL_SUCCESS);
    const char *names[] = {"one", "two"};
    for (int i = 0; i < 2; i++) {
        REF_OK(c, clg__kernel(c, "kern/two", names[i], unique_options(), &k));
        size_t one_item = 1;
        assert_int_equal(clSetKernelArg(k, 0, sizeof buf, &buf), CL_SUCCESS);
        assert_int_equal(clEnqueueNDRangeKernel(clg_context_cl_queue(c), k, 1, NULL, &one_item, &one_item, 0, NULL, NULL),
                         CL_SUCCESS);
        float y = 0;
        assert_int_equal(clEnqueueReadBuffer(clg_context_cl_queue(c), buf, CL_TRUE, 0, sizeof y, &y, 0, NULL, NULL),
                         CL_SUCCESS);
        if (y != (float)(i + 1)) fail_msg("kernel %s wrote %g, want %d (a stale binary)", names[i], y, i + 1);
    }
    clReleaseMemObject(buf);
    /* A kernel no source has still fails, naming the device and carrying the build log. */
    assert_int_equal(clg__kernel(c, "kern/two", "three", unique_options(), &k), CLG_OPENCL_ERROR);
    clg_device_info info;
    assert_int_equal(clg_context_device_info(c, &info), CLG_OK);
    const char *msg = clg_context_errmsg(c);
    if (!strstr(msg, "three") || !strstr(msg, info.name) || !strstr(msg, "build log"))
        fail_msg("the kernel error lacks the kernel, the device or the build log: %s", msg);
    clg_context_free(c);
    c = make_ctx(NULL, cdir, kdir);
    assert_true(prepare_in(c, "kern/two", CLG_OK).from_disk);
    REF_OK(c, clg__kernel(c, "kern/two", "two", unique_options(), &k));
    clg_context_free(c);
    ref_rm_rf(kdir);
    ref_rm_rf(cdir);
    free(kdir);
    free(cdir);
}

static bool dir_is_empty(const char *dir) {
    file_list l = list_files(dir);
    const bool empty = l.n == 0;
    file_list_free(&l);
    return empty;
}

static void test_cache_dir_sources(void **state) {
    (void)state;
    char *a = make_tmpdir(), *b = make_tmpdir(), *h = make_tmpdir();
    saved_env s_cache = env_set("CLGRAD_CACHE_DIR", a);
    saved_env s_xdg = env_set("XDG_CACHE_HOME", b);
    saved_env s_home = env_set("HOME", h);

    /* "off" in params beats both variables and writes nothing anywhere. */
    const char *opts = unique_options();
    clg_context *c = make_ctx(NULL, "off", NULL);
    assert_string_equal(clg_context_cache_dir(c), "");
    const clg_build_report r = prepare(c, opts);
    assert_false(r.from_disk);
    check_ctx_works(c);
    clg_context_free(c);
    /* (only our folders: the driver may keep its own cache under these variables) */
    char path[4200];
    assert_true(dir_is_empty(a));
    snprintf(path, sizeof path, "%s/clgrad", b);
    assert_int_equal(file_size(path), -1);
    snprintf(path, sizeof path, "%s/.cache/clgrad", h);
    assert_int_equal(file_size(path), -1);
    /* a second context cannot hit a disk tier that is off */
    c = make_ctx(NULL, "off", NULL);
    assert_false(prepare(c, opts).from_disk);
    clg_context_free(c);

    /* NULL: CLGRAD_CACHE_DIR, then $XDG_CACHE_HOME/clgrad, then ~/.cache/clgrad. */
    char want[4200];
    c = make_ctx(NULL, NULL, NULL);
    if (strncmp(clg_context_cache_dir(c), a, strlen(a)))
        fail_msg("with CLGRAD_CACHE_DIR=%s the cache dir is '%s'", a, clg_context_cache_dir(c));
    clg_context_free(c);

    assert_int_equal(setenv("CLGRAD_CACHE_DIR", "off", 1), 0);
    c = make_ctx(NULL, NULL, NULL);
    assert_string_equal(clg_context_cache_dir(c), "");
    clg_context_free(c);

    assert_int_equal(unsetenv("CLGRAD_CACHE_DIR"), 0);
    c = make_ctx(NULL, NULL, NULL);
    snprintf(want, sizeof want, "%s/clgrad", b);
    if (strncmp(clg_context_cache_dir(c), want, strlen(want)))
        fail_msg("with XDG_CACHE_HOME=%s the cache dir is '%s'", b, clg_context_cache_dir(c));
    clg_context_free(c);

    assert_int_equal(unsetenv("XDG_CACHE_HOME"), 0);
    c = make_ctx(NULL, NULL, NULL);
    snprintf(want, sizeof want, "%s/.cache/clgrad", h);
    if (strncmp(clg_context_cache_dir(c), want, strlen(want)))
        fail_msg("with only HOME=%s the cache dir is '%s'", h, clg_context_cache_dir(c));
    clg_context_free(c);

    env_restore(&s_home);
    env_restore(&s_xdg);
    env_restore(&s_cache);
    ref_rm_rf(a);
    ref_rm_rf(b);
    ref_rm_rf(h);
    free(a);
    free(b);
    free(h);
}

/* ---------------------------------------------------------------- when programs are written */

static size_t count_files(const char *dir) {
    file_list l = list_files(dir);
    const size_t n = l.n;
    file_list_free(&l);
    return n;
}

/* An op's first use writes the disk tier at once, except on a CPU-only device (whose driver
 * would compile every kernel of the program to hand over a binary); clg_program_save_all
 * writes what is missing, once, and a later context loads it. */
static void test_first_use_then_save_all(void **state) {
    (void)state;
    char *dir = make_tmpdir();
    const char *opts = unique_options();
    clg_context *c = make_ctx(NULL, dir, NULL);
    clg_device_info info;
    REF_OK(c, clg_context_device_info(c, &info));
    const bool cpu_only = clg__device_is_plain_cpu(c);
    cl_kernel k;
    REF_OK(c, clg__kernel(c, "tensor/tensor", "axpby", opts, &k));
    if (count_files(dir) != (cpu_only ? 0u : 1u))
        fail_msg("after a first use on %s (%s): %zu cache files, want %d", info.name,
                 cpu_only ? "CPU only: written when prepared" : "written at once", count_files(dir), !cpu_only);
    size_t written = 99;
    REF_OK(c, clg_program_save_all(c, &written));
    assert_int_equal(written, cpu_only ? 1 : 0);
    assert_int_equal(count_files(dir), 1);
    REF_OK(c, clg_program_save_all(c, &written)); /* nothing left to write */
    assert_int_equal(written, 0);
    REF_OK(c, clg_program_save_all(c, NULL));
    clg_context_free(c);

    c = make_ctx(NULL, dir, NULL);
    const clg_build_report warm = prepare(c, opts);
    assert_true(warm.from_disk);
    check_ctx_works(c);
    clg_context_free(c);
    ref_rm_rf(dir);
    free(dir);
}

/* clg_program_prepare writes on every device, also a program first used without writing. */
static void test_prepare_after_first_use_writes(void **state) {
    (void)state;
    char *dir = make_tmpdir();
    clg_context *c = make_ctx(NULL, dir, NULL);
    cl_kernel k;
    REF_OK(c, clg__kernel(c, "tensor/tensor", "axpby", unique_options(), &k));
    const clg_build_report again = prepare(c, unique_options());
    assert_true(again.from_memory);
    assert_int_equal(count_files(dir), 1);
    size_t written = 99;
    REF_OK(c, clg_program_save_all(c, &written));
    assert_int_equal(written, 0);
    clg_context_free(c);
    ref_rm_rf(dir);
    free(dir);
}

/* Bad input and a folder that cannot be made: clear statuses, nothing written. */
static void test_save_all_errors(void **state) {
    (void)state;
    size_t written = 99;
    assert_int_equal(clg_program_save_all(NULL, &written), CLG_INVALID_ARGUMENT);
    assert_int_equal(written, 0);

    clg_context *off = make_ctx(NULL, "off", NULL);
    cl_kernel k;
    REF_OK(off, clg__kernel(off, "tensor/tensor", "axpby", NULL, &k));
    written = 99;
    REF_OK(off, clg_program_save_all(off, &written));
    assert_int_equal(written, 0);
    clg_context_free(off);

    /* A cache folder below a regular file can never be made. */
    char *dir = make_tmpdir();
    char file[4200], below[4300];
    snprintf(file, sizeof file, "%s/a-file", dir);
    write_file(file, (const unsigned char *)"x", 1);
    snprintf(below, sizeof below, "%s/cache", file);
    clg_context *c = make_ctx(NULL, below, NULL);
    REF_OK(c, clg__kernel(c, "tensor/tensor", "axpby", NULL, &k));
    written = 99;
    assert_int_equal(clg_program_save_all(c, &written), CLG_IO_ERROR);
    assert_int_equal(written, 0);
    if (!strstr(clg_context_errmsg(c), "tensor/tensor"))
        fail_msg("the error names no program: %s", clg_context_errmsg(c));
    check_ctx_works(c);
    clg_context_free(c);
    ref_rm_rf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_failure_surfaces_log),
        cmocka_unit_test(test_build_failure_bad_options),
        cmocka_unit_test(test_unknown_program),
        cmocka_unit_test(test_disk_cache_hit),
        cmocka_unit_test(test_disk_cache_corrupt_rebuilt),
        cmocka_unit_test(test_disk_cache_key_covers_includes),
        cmocka_unit_test(test_disk_cache_foreign_binary_rebuilt),
        cmocka_unit_test(test_cache_dir_sources),
        cmocka_unit_test(test_first_use_then_save_all),
        cmocka_unit_test(test_prepare_after_first_use_writes),
        cmocka_unit_test(test_save_all_errors),
    };
    return cmocka_run_group_tests(tests, ref_group_setup, ref_group_teardown);
}
