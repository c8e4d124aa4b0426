/* tests/core/test_context.c - creating and freeing a context (src/core/context.c, device.c):
 * device choice in every CLGRAD_DEVICE form against the real device list, unknown choices
 * and their errors, a fresh context's defaults, device info, and adopting an application's
 * OpenCL objects (references retained and released). With Oclgrind registered (the oclgrind
 * suite, tests/oclgrind/run.sh), the default and "cpu" still pick a plain device and
 * "oclgrind" picks the simulator.
 */
#include "context_test.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- helpers */

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

#define TYPE_BITS (CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR | CL_DEVICE_TYPE_CUSTOM)

/* The rule of clgrad/context.h: a device of exactly that type first, else any with its bit. */
static size_t first_of_type(const clg_device_info *d, size_t n, cl_device_type type) {
    for (size_t i = 0; i < n; i++)
        if ((d[i].type & TYPE_BITS) == type) return i;
    for (size_t i = 0; i < n; i++)
        if (d[i].type & type) return i;
    return (size_t)-1;
}

/* The default: plain GPU, plain accelerator, plain CPU, then devices of several types. */
static size_t default_device(const clg_device_info *d, size_t n) {
    const cl_device_type order[] = {CL_DEVICE_TYPE_GPU, CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_CPU};
    for (size_t o = 0; o < 3; o++)
        for (size_t i = 0; i < n; i++)
            if ((d[i].type & TYPE_BITS) == order[o]) return i;
    return n ? 0 : (size_t)-1;
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
    /* Default: first plain GPU, else accelerator, else CPU, else a device of several types. */
    assert_int_equal(def, default_device(devs, n_devs));
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

/* Oclgrind reports ACCELERATOR | GPU | CPU. Registered beside PoCL (OCL_ICD_VENDORS, as the
 * oclgrind suite does), neither the default nor "cpu" may pick it; "oclgrind" and
 * "oclgrind:" do. Skipped where Oclgrind is not registered. */
static void test_choice_simulator(void **state) {
    (void)state;
    load_devices();
    size_t sim = (size_t)-1, plain_cpu = (size_t)-1;
    for (size_t i = 0; i < n_devs; i++) {
        if (strstr(devs[i].platform_name, "Oclgrind") && sim == (size_t)-1) sim = i;
        if ((devs[i].type & TYPE_BITS) == CL_DEVICE_TYPE_CPU && plain_cpu == (size_t)-1) plain_cpu = i;
    }
    if (sim == (size_t)-1) {
        const char *want = getenv("CLGRAD_EXPECT_OCLGRIND"); /* set by the oclgrind suite */
        if (want && !strcmp(want, "1")) fail_msg("Oclgrind is not registered with the ICD loader (OCL_ICD_VENDORS?)");
        skip();
    }
    size_t def = 99;
    assert_int_equal(clg_device_choose(NULL, &def, NULL, 0), CLG_OK);
    if (n_devs > 1 && def == sim) fail_msg("the default choice is the simulator %s", devs[sim].name);
    if (plain_cpu != (size_t)-1) {
        check_choice("cpu", plain_cpu);
        if (strstr(devs[plain_cpu].platform_name, "Portable Computing Language")) check_choice("pocl:cpu", plain_cpu);
    }
    check_choice("oclgrind", sim);
    check_choice("oclgrind:", sim);
    check_choice("Oclgrind:cpu", sim);
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devices_list),
        cmocka_unit_test(test_choice_cpu),
        cmocka_unit_test(test_choice_platform_device),
        cmocka_unit_test(test_choice_name_substring),
        cmocka_unit_test(test_choice_gpu),
        cmocka_unit_test(test_choice_simulator),
        cmocka_unit_test(test_choice_unknown),
        cmocka_unit_test(test_fresh_context),
        cmocka_unit_test(test_device_info),
        cmocka_unit_test(test_adopt_application_objects),
        cmocka_unit_test(test_context_free_releases_driver_objects),
    };
    return cmocka_run_group_tests(tests, ref_group_setup, ref_group_teardown);
}
