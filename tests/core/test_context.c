/* tests/core/test_context.c - the context manager (include/clgrad/context.h, src/core/):
 * device choice in every CLGRAD_DEVICE form and unknown ones, adopting an application's
 * OpenCL objects, build failures that carry the compiler log, the on-disk binary cache
 * (hit, corrupt, mismatched, off), the cache folder's sources, device info.
 */
#include "ref.h"

#include <ctype.h>
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

static void rm_rf(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char child[4096];
                snprintf(child, sizeof child, "%s/%s", path, e->d_name);
                rm_rf(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
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

/* setenv/unsetenv with the old value kept, so a test leaves the environment as it found it. */
typedef struct saved_env {
    const char *name;
    char *value; /* NULL: was unset */
} saved_env;

static saved_env env_set(const char *name, const char *value) {
    saved_env s = {name, NULL};
    const char *old = getenv(name);
    if (old) {
        s.value = malloc(strlen(old) + 1);
        assert_non_null(s.value);
        strcpy(s.value, old);
    }
    if (value)
        assert_int_equal(setenv(name, value, 1), 0);
    else
        assert_int_equal(unsetenv(name), 0);
    return s;
}

static void env_restore(saved_env *s) {
    if (s->value)
        setenv(s->name, s->value, 1);
    else
        unsetenv(s->name);
    free(s->value);
    s->value = NULL;
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

static clg_context *make_ctx(const char *device, const char *cache_dir, const char *kernel_dir) {
    clg_context_params p = clg_context_default_params();
    p.device = device;
    p.cache_dir = cache_dir;
    p.kernel_dir = kernel_dir;
    clg_context *ctx = NULL;
    char err[2048] = "";
    clg_status st = clg_context_create(&p, &ctx, err, sizeof err);
    if (st != CLG_OK)
        fail_msg("clg_context_create(device %s) -> %s: %s", device ? device : "NULL", clg_status_name(st),
                 err);
    assert_non_null(ctx);
    return ctx;
}

/* A small job that needs a kernel (fill) and a round trip: proves a context still works. */
static void check_ctx_works(clg_context *ctx) {
    const int shape[2] = {3, 5};
    clg_tensor *t = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, shape, &t));
    REF_OK(ctx, clg_tensor_fill(t, 2.5));
    float h[15];
    REF_OK(ctx, clg_tensor_to_host(t, h, sizeof h));
    for (int i = 0; i < 15; i++)
        assert_true(h[i] == 2.5f);
    clg_tensor_free(t);
}

static void lower(char *s) {
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* Where a name-substring choice should land: the first device whose name contains it,
 * ignoring case. */
static size_t first_name_match(const clg_device_info *d, size_t n, const char *needle) {
    char lneedle[256];
    snprintf(lneedle, sizeof lneedle, "%s", needle);
    lower(lneedle);
    for (size_t i = 0; i < n; i++) {
        char lname[sizeof d[i].name];
        memcpy(lname, d[i].name, sizeof lname);
        lname[sizeof lname - 1] = '\0';
        lower(lname);
        if (strstr(lname, lneedle)) return i;
    }
    return (size_t)-1;
}

static size_t first_of_type(const clg_device_info *d, size_t n, cl_device_type type) {
    for (size_t i = 0; i < n; i++)
        if (d[i].type & type) return i;
    return (size_t)-1;
}

#define MAX_DEVS 32
static clg_device_info devs[MAX_DEVS];
static size_t n_devs;

static void load_devices(void) {
    size_t count = 0;
    assert_int_equal(clg_devices_list(devs, MAX_DEVS, &count), CLG_OK);
    assert_true(count >= 1);
    n_devs = count < MAX_DEVS ? count : MAX_DEVS;
}

/* ---------------------------------------------------------------- device choice */

static void test_devices_list(void **state) {
    (void)state;
    load_devices();
    size_t count = 0;
    /* cap 0 only counts */
    assert_int_equal(clg_devices_list(NULL, 0, &count), CLG_OK);
    assert_int_equal(count, n_devs);
    assert_int_equal(clg_devices_list(devs, MAX_DEVS, NULL), CLG_INVALID_ARGUMENT);
    for (size_t i = 0; i < n_devs; i++) {
        assert_true(strlen(devs[i].name) > 0);
        assert_true(strlen(devs[i].platform_name) > 0);
        assert_true(devs[i].compute_units > 0);
        assert_true(devs[i].platform_index >= 0 && devs[i].device_index >= 0);
        if (i > 0) { /* platform then device order */
            const bool ordered = devs[i].platform_index > devs[i - 1].platform_index ||
                                 (devs[i].platform_index == devs[i - 1].platform_index &&
                                  devs[i].device_index == devs[i - 1].device_index + 1);
            assert_true(ordered);
        }
    }
    size_t def = 99, def2 = 98;
    char err[512];
    assert_int_equal(clg_device_choose(NULL, &def, err, sizeof err), CLG_OK);
    assert_int_equal(clg_device_choose("", &def2, err, sizeof err), CLG_OK);
    assert_int_equal(def, def2);
    assert_true(def < n_devs);
    /* Default: first GPU, else accelerator, else CPU. */
    size_t want = first_of_type(devs, n_devs, CL_DEVICE_TYPE_GPU);
    if (want == (size_t)-1) want = first_of_type(devs, n_devs, CL_DEVICE_TYPE_ACCELERATOR);
    if (want == (size_t)-1) want = first_of_type(devs, n_devs, CL_DEVICE_TYPE_CPU);
    if (want != (size_t)-1) assert_int_equal(def, want);
}

/* One choice checked three ways: clg_device_choose, params.device, and CLGRAD_DEVICE. */
static void check_choice(const char *choice, size_t want) {
    size_t idx = (size_t)-1;
    char err[2048] = "";
    clg_status st = clg_device_choose(choice, &idx, err, sizeof err);
    if (st != CLG_OK) fail_msg("clg_device_choose(%s) -> %s: %s", choice, clg_status_name(st), err);
    assert_int_equal(idx, want);

    for (int via_env = 0; via_env < 2; via_env++) {
        saved_env s = env_set("CLGRAD_DEVICE", via_env ? choice : "nosuchdevice-from-env");
        /* via params: params.device wins over an environment that would fail */
        clg_context *ctx = make_ctx(via_env ? NULL : choice, "off", NULL);
        env_restore(&s);
        clg_device_info info;
        assert_int_equal(clg_context_device_info(ctx, &info), CLG_OK);
        if (info.platform_index != devs[want].platform_index ||
            info.device_index != devs[want].device_index || strcmp(info.name, devs[want].name))
            fail_msg("choice '%s' via %s picked %d:%d %s, want %d:%d %s", choice,
                     via_env ? "CLGRAD_DEVICE" : "params.device", info.platform_index, info.device_index,
                     info.name, devs[want].platform_index, devs[want].device_index, devs[want].name);
        assert_string_equal(clg_context_errmsg(ctx), "");
        clg_context_free(ctx);
    }
}

static void test_choice_cpu(void **state) {
    (void)state;
    load_devices();
    const size_t want = first_of_type(devs, n_devs, CL_DEVICE_TYPE_CPU);
    if (want == (size_t)-1) skip(); /* no CPU device; the unknown-choice test covers "cpu" */
    check_choice("cpu", want);
    check_choice("CPU", want);
}

static void test_choice_platform_device(void **state) {
    (void)state;
    load_devices();
    check_choice("0:0", 0);
    /* every device by its own P:D, e.g. the last one */
    for (size_t i = 0; i < n_devs; i++) {
        char choice[32];
        snprintf(choice, sizeof choice, "%d:%d", devs[i].platform_index, devs[i].device_index);
        size_t idx = 99;
        assert_int_equal(clg_device_choose(choice, &idx, NULL, 0), CLG_OK);
        assert_int_equal(idx, i);
    }
    const size_t last = n_devs - 1;
    char choice[32];
    snprintf(choice, sizeof choice, "%d:%d", devs[last].platform_index, devs[last].device_index);
    check_choice(choice, last);
}

static void test_choice_name_substring(void **state) {
    (void)state;
    load_devices();
    size_t def = 0;
    assert_int_equal(clg_device_choose(NULL, &def, NULL, 0), CLG_OK);
    /* A piece from inside the default device's name with its case flipped: proves both
     * substring matching and case-insensitivity ("pthread-haswell-..." -> "THREAD-HAS"). */
    const char *name = devs[def].name;
    const size_t len = strlen(name);
    char piece[16] = "";
    const size_t start = len > 4 ? 1 : 0;
    size_t plen = len - start < 10 ? len - start : 10;
    memcpy(piece, name + start, plen);
    piece[plen] = '\0';
    /* trim trailing blanks: a choice does not end in a space */
    while (plen > 0 && piece[plen - 1] == ' ')
        piece[--plen] = '\0';
    assert_true(plen > 0);
    for (char *c = piece; *c; c++)
        *c = (char)(islower((unsigned char)*c) ? toupper((unsigned char)*c) : tolower((unsigned char)*c));
    const size_t want = first_name_match(devs, n_devs, piece);
    assert_true(want != (size_t)-1);
    check_choice(piece, want);
}

static void test_choice_gpu(void **state) {
    (void)state;
    load_devices();
    const size_t want = first_of_type(devs, n_devs, CL_DEVICE_TYPE_GPU);
    if (want == (size_t)-1) {
        /* no GPU here: "gpu" is an unknown choice (checked in test_choice_unknown) */
        size_t idx;
        assert_int_equal(clg_device_choose("gpu", &idx, NULL, 0), CLG_DEVICE_NOT_FOUND);
        return;
    }
    check_choice("gpu", want);
}

static void check_unknown(const char *choice) {
    /* every listed device name appears in the message, so the user can pick one */
    char err[4096] = "";
    size_t idx = 12345;
    assert_int_equal(clg_device_choose(choice, &idx, err, sizeof err), CLG_DEVICE_NOT_FOUND);
    for (size_t i = 0; i < n_devs; i++)
        if (!strstr(err, devs[i].name))
            fail_msg("choose(%s): error does not list device '%s': %s", choice, devs[i].name, err);

    for (int via_env = 0; via_env < 2; via_env++) {
        saved_env s = env_set("CLGRAD_DEVICE", via_env ? choice : NULL);
        clg_context_params p = clg_context_default_params();
        p.device = via_env ? NULL : choice;
        p.cache_dir = "off";
        clg_context *ctx = (clg_context *)&err; /* must be overwritten with NULL */
        char cerr[4096] = "";
        clg_status st = clg_context_create(&p, &ctx, cerr, sizeof cerr);
        env_restore(&s);
        if (st != CLG_DEVICE_NOT_FOUND)
            fail_msg("create(device %s via %s) -> %s, want CLG_DEVICE_NOT_FOUND", choice,
                     via_env ? "env" : "params", clg_status_name(st));
        assert_null(ctx);
        for (size_t i = 0; i < n_devs; i++)
            if (!strstr(cerr, devs[i].name))
                fail_msg("create(%s): error does not list device '%s': %s", choice, devs[i].name, cerr);
        if (!strstr(cerr, choice)) fail_msg("create(%s): error does not name the choice: %s", choice, cerr);
    }
}

static void test_choice_unknown(void **state) {
    (void)state;
    load_devices();
    check_unknown("nosuchdevice");
    check_unknown("9:9");
    char choice[32];
    snprintf(choice, sizeof choice, "0:%zu", n_devs + 7); /* platform exists, device does not */
    check_unknown(choice);
    if (first_of_type(devs, n_devs, CL_DEVICE_TYPE_GPU) == (size_t)-1) check_unknown("gpu");
    if (first_of_type(devs, n_devs, CL_DEVICE_TYPE_CPU) == (size_t)-1) check_unknown("cpu");

    /* A tiny error buffer is cut, never overrun; NULL err is allowed. */
    struct {
        char err[8];
        char canary[8];
    } small;
    memset(&small, 'Z', sizeof small);
    clg_context_params p = clg_context_default_params();
    p.device = "nosuchdevice";
    p.cache_dir = "off";
    clg_context *ctx = NULL;
    assert_int_equal(clg_context_create(&p, &ctx, small.err, sizeof small.err), CLG_DEVICE_NOT_FOUND);
    assert_non_null(memchr(small.err, '\0', sizeof small.err));
    for (size_t i = 0; i < sizeof small.canary; i++)
        assert_int_equal(small.canary[i], 'Z');
    assert_int_equal(clg_context_create(&p, &ctx, NULL, 0), CLG_DEVICE_NOT_FOUND);
    assert_null(ctx);
}

/* ---------------------------------------------------------------- context basics */

static void test_fresh_context(void **state) {
    clg_context *ctx = *state;
    clg_context *fresh = make_ctx(NULL, "off", NULL);
    assert_string_equal(clg_context_errmsg(fresh), "");
    assert_string_equal(clg_context_cache_dir(fresh), "");
    assert_true(clg_grad_enabled(fresh));
    assert_true(clg_set_grad_enabled(fresh, false));
    assert_false(clg_grad_enabled(fresh));
    assert_false(clg_set_grad_enabled(fresh, true));
    assert_true(clg_grad_enabled(fresh));
    /* grad mode is per context: the shared one did not change */
    assert_true(clg_grad_enabled(ctx));
    assert_int_equal(clg_context_finish(fresh), CLG_OK);
    assert_non_null(clg_context_cl_context(fresh));
    assert_non_null(clg_context_cl_device(fresh));
    assert_non_null(clg_context_cl_queue(fresh));
    const clg_pool_stats ps = clg_context_pool_stats(fresh);
    assert_int_equal(ps.bytes_in_use, 0);
    assert_int_equal(ps.bytes_cached, 0);
    assert_int_equal(ps.driver_allocs, 0);
    clg_context_free(fresh);
    clg_context_free(NULL); /* no-op */

    clg_context_params p = clg_context_default_params();
    assert_null(p.device);
    assert_null(p.cache_dir);
    assert_null(p.kernel_dir);
    assert_null(p.cl_ctx);
    assert_int_equal(clg_context_create(&p, NULL, NULL, 0), CLG_INVALID_ARGUMENT);
}

static void test_device_info(void **state) {
    clg_context *ctx = *state;
    clg_device_info info;
    memset(&info, 0, sizeof info);
    REF_OK(ctx, clg_context_device_info(ctx, &info));
    assert_true(strlen(info.name) > 0);
    assert_true(strlen(info.vendor) > 0);
    assert_true(strlen(info.platform_name) > 0);
    assert_true(strlen(info.platform_version) > 0);
    assert_true(strlen(info.driver_version) > 0);
    assert_true(info.compute_units > 0);
    assert_true(info.max_work_group_size > 0);
    assert_true(info.global_mem_bytes >= (1u << 20));
    assert_true(info.local_mem_bytes > 0);
    assert_true(info.type & (CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR));
    /* The same facts as the device list's entry for it. */
    load_devices();
    size_t k = (size_t)-1;
    for (size_t i = 0; i < n_devs; i++)
        if (devs[i].platform_index == info.platform_index && devs[i].device_index == info.device_index) k = i;
    assert_true(k != (size_t)-1);
    assert_string_equal(devs[k].name, info.name);
    assert_int_equal(devs[k].compute_units, info.compute_units);
    assert_int_equal(devs[k].fp64, info.fp64);
    /* Against OpenCL itself. */
    cl_uint cu = 0;
    assert_int_equal(
        clGetDeviceInfo(clg_context_cl_device(ctx), CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL),
        CL_SUCCESS);
    assert_int_equal(cu, info.compute_units);
    if (strstr(info.platform_name, "Portable Computing Language")) assert_true(info.fp64);
    assert_int_equal(clg_context_device_info(ctx, NULL), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_context_device_info(NULL, &info), CLG_INVALID_ARGUMENT);
}

/* ---------------------------------------------------------------- adopting OpenCL objects */

/* The reference counts of an application's context and queue. */
static void ref_counts(cl_context app_ctx, cl_command_queue app_q, cl_uint *ctx_refs, cl_uint *q_refs) {
    assert_int_equal(clGetContextInfo(app_ctx, CL_CONTEXT_REFERENCE_COUNT, sizeof *ctx_refs, ctx_refs, NULL),
                     CL_SUCCESS);
    assert_int_equal(clGetCommandQueueInfo(app_q, CL_QUEUE_REFERENCE_COUNT, sizeof *q_refs, q_refs, NULL),
                     CL_SUCCESS);
}

/* An application's own context and queue on the shared context's device. */
static void app_objects(clg_context *shared, cl_device_id *dev, cl_context *app_ctx, cl_command_queue *app_q) {
    *dev = clg_context_cl_device(shared);
    cl_int e = CL_SUCCESS;
    *app_ctx = clCreateContext(NULL, 1, dev, NULL, NULL, &e);
    assert_int_equal(e, CL_SUCCESS);
    *app_q = clCreateCommandQueue(*app_ctx, *dev, 0, &e);
    assert_int_equal(e, CL_SUCCESS);
}

/* Waits (up to 2 s) until the application's context and queue are back to want_ctx and
 * want_q references: drivers drop their own references to retired commands asynchronously
 * (PoCL's commands hold the queue and the context until its worker threads retire them). */
static void settle_refs(cl_context app_ctx, cl_command_queue app_q, cl_uint want_ctx, cl_uint want_q) {
    assert_int_equal(clFinish(app_q), CL_SUCCESS);
    for (int i = 0; i < 200; i++) {
        cl_uint refs = 0, q_refs = 0;
        ref_counts(app_ctx, app_q, &refs, &q_refs);
        if (refs <= want_ctx && q_refs <= want_q) return;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
}

static void test_adopt_application_objects(void **state) {
    cl_device_id dev;
    cl_context app_ctx;
    cl_command_queue app_q;
    app_objects(*state, &dev, &app_ctx, &app_q);
    cl_int e = CL_SUCCESS;

    /* Half an adoption is refused. */
    clg_context_params p = clg_context_default_params();
    p.cache_dir = "off";
    p.cl_ctx = app_ctx;
    clg_context *ctx = NULL;
    char err[1024] = "";
    assert_int_equal(clg_context_create(&p, &ctx, err, sizeof err), CLG_INVALID_ARGUMENT);
    assert_null(ctx);
    assert_true(strlen(err) > 0);

    p.cl_device = dev;
    p.cl_queue = app_q;
    /* Drivers keep references of their own (PoCL's queue holds its context): compare
     * with the counts before clgrad saw the objects. */
    cl_uint ctx_refs0 = 0, q_refs0 = 0, refs = 0, q_refs = 0;
    ref_counts(app_ctx, app_q, &ctx_refs0, &q_refs0);
    clg_status st = clg_context_create(&p, &ctx, err, sizeof err);
    if (st != CLG_OK) fail_msg("adopt -> %s: %s", clg_status_name(st), err);
    assert_ptr_equal(clg_context_cl_context(ctx), app_ctx);
    assert_ptr_equal(clg_context_cl_device(ctx), dev);
    assert_ptr_equal(clg_context_cl_queue(ctx), app_q);
    /* retained while clgrad uses them */
    ref_counts(app_ctx, app_q, &refs, &q_refs);
    assert_true(refs > ctx_refs0);
    check_ctx_works(ctx);
    clg_context_free(ctx);
    /* The driver may hold the context a little longer for commands and buffers it is still
     * retiring on its own threads (PoCL does, now and then): wait for that to settle. */
    settle_refs(app_ctx, app_q, ctx_refs0, q_refs0);

    /* The application's references are intact: ours were retained and released. */
    ref_counts(app_ctx, app_q, &refs, &q_refs);
    assert_int_equal(refs, ctx_refs0);
    assert_int_equal(q_refs, q_refs0);
    /* ...and still usable by the application. */
    float in[4] = {1, 2, 3, 4}, out[4] = {0};
    cl_mem buf = clCreateBuffer(app_ctx, CL_MEM_READ_WRITE, sizeof in, NULL, &e);
    assert_int_equal(e, CL_SUCCESS);
    assert_int_equal(clEnqueueWriteBuffer(app_q, buf, CL_TRUE, 0, sizeof in, in, 0, NULL, NULL), CL_SUCCESS);
    assert_int_equal(clEnqueueReadBuffer(app_q, buf, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL), CL_SUCCESS);
    assert_memory_equal(in, out, sizeof in);
    clReleaseMemObject(buf);
    assert_int_equal(clReleaseCommandQueue(app_q), CL_SUCCESS);
    assert_int_equal(clReleaseContext(app_ctx), CL_SUCCESS);
}

/* Once the caller has freed its tensors (cached in the pool or not), clg_context_free must
 * release every driver object that holds the adopted OpenCL context. */
static void test_context_free_releases_driver_objects(void **state) {
    cl_device_id dev;
    cl_context app_ctx;
    cl_command_queue app_q;
    app_objects(*state, &dev, &app_ctx, &app_q);
    clg_context_params p = clg_context_default_params();
    p.cache_dir = "off";
    p.cl_ctx = app_ctx;
    p.cl_device = dev;
    p.cl_queue = app_q;
    cl_uint refs0 = 0, refs = 0, q_refs0 = 0, q_refs = 0;
    ref_counts(app_ctx, app_q, &refs0, &q_refs0);
    clg_context *ctx = NULL;
    assert_int_equal(clg_context_create(&p, &ctx, NULL, 0), CLG_OK);
    const int shape[1] = {100};
    clg_tensor *leftover = NULL, *cached = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, shape, &leftover));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, shape, &cached));
    clg_tensor_free(cached);   /* in the pool's cache: the context releases it */
    clg_tensor_free(leftover); /* the contract: objects go before their context */
    clg_context_free(ctx);
    settle_refs(app_ctx, app_q, refs0, q_refs0); /* see test_adopt_application_objects */
    ref_counts(app_ctx, app_q, &refs, &q_refs);
    if (refs != refs0)
        fail_msg("after clg_context_free the application's cl_context has %u references, want %u "
                 "as before (a cached buffer, program or queue was not released)",
                 refs, refs0);
    clReleaseCommandQueue(app_q);
    clReleaseContext(app_ctx);
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
    rm_rf(dir);
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
    rm_rf(dir);
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
    rm_rf(dir);
    free(dir);
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
    rm_rf(a);
    rm_rf(b);
    rm_rf(h);
    free(a);
    free(b);
    free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devices_list),
        cmocka_unit_test(test_choice_cpu),
        cmocka_unit_test(test_choice_platform_device),
        cmocka_unit_test(test_choice_name_substring),
        cmocka_unit_test(test_choice_gpu),
        cmocka_unit_test(test_choice_unknown),
        cmocka_unit_test(test_fresh_context),
        cmocka_unit_test(test_device_info),
        cmocka_unit_test(test_adopt_application_objects),
        cmocka_unit_test(test_context_free_releases_driver_objects),
        cmocka_unit_test(test_build_failure_surfaces_log),
        cmocka_unit_test(test_build_failure_bad_options),
        cmocka_unit_test(test_unknown_program),
        cmocka_unit_test(test_disk_cache_hit),
        cmocka_unit_test(test_disk_cache_corrupt_rebuilt),
        cmocka_unit_test(test_cache_dir_sources),
    };
    return cmocka_run_group_tests(tests, ref_group_setup, ref_group_teardown);
}
