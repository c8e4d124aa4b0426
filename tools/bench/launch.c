/* tools/bench/launch.c - clgrad-bench launch: what a kernel launch costs, and whether
 * cl_khr_command_buffer (recording a chain of launches once and replaying it) makes it cheaper.
 * A training step is hundreds of small dependent launches (README, "Measured"); this times a
 * chain of N such launches of a trivial kernel on one buffer, enqueued one by one and replayed
 * from a command buffer, side by side in the same rounds, and checks both leave the same values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CL/cl.h>
#include <CL/cl_ext.h>

#include "bench.h"
#include "clgrad/context.h"

static const char *source =
    "__kernel void axpb(__global float *y, const float a, const float b, const int n) {\n"
    "    const int i = get_global_id(0);\n"
    "    if (i < n) y[i] = y[i] * a + b;\n"
    "}\n";

typedef struct cb_api {
    clCreateCommandBufferKHR_fn create;
    clCommandNDRangeKernelKHR_fn ndrange;
    clFinalizeCommandBufferKHR_fn finalize;
    clEnqueueCommandBufferKHR_fn enqueue;
    clReleaseCommandBufferKHR_fn release;
} cb_api;

/* The extension's entry points, when the device lists it and its platform gives them all. */
static bool cb_api_get(cl_device_id dev, cb_api *api) {
    size_t len = 0;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &len) != CL_SUCCESS || len == 0) return false;
    char *ext = malloc(len);
    bool has = ext && clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, len, ext, NULL) == CL_SUCCESS &&
               strstr(ext, "cl_khr_command_buffer") != NULL;
    free(ext);
    cl_platform_id pf;
    if (!has || clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof pf, &pf, NULL) != CL_SUCCESS) return false;
    /* through memcpy: ISO C has no cast from an object pointer to a function pointer */
#define GET(field, name)                                                  \
    do {                                                                  \
        void *p_ = clGetExtensionFunctionAddressForPlatform(pf, #name);   \
        memcpy(&api->field, &p_, sizeof p_);                              \
    } while (0)
    GET(create, clCreateCommandBufferKHR);
    GET(ndrange, clCommandNDRangeKernelKHR);
    GET(finalize, clFinalizeCommandBufferKHR);
    GET(enqueue, clEnqueueCommandBufferKHR);
    GET(release, clReleaseCommandBufferKHR);
#undef GET
    return api->create && api->ndrange && api->finalize && api->enqueue && api->release;
}

/* Launch i of the chain: y = y * a_i + b_i, with a_i and b_i that keep y bounded. */
static cl_int set_args(cl_kernel k, cl_mem y, int i, int n) {
    const float a = 0.5f + 0.25f * (float)(i % 3), b = (float)(i % 7) - 3.0f;
    cl_int e = clSetKernelArg(k, 0, sizeof y, &y);
    if (e == CL_SUCCESS) e = clSetKernelArg(k, 1, sizeof a, &a);
    if (e == CL_SUCCESS) e = clSetKernelArg(k, 2, sizeof b, &b);
    if (e == CL_SUCCESS) e = clSetKernelArg(k, 3, sizeof n, &n);
    return e;
}

typedef struct chain {
    cl_command_queue q;
    cl_kernel k;
    cl_kernel *own; /* recording: one kernel object per command (see record) */
    cl_mem y;
    int launches, n;
    size_t global, local;
    float *init;
} chain;

static cl_int reset(const chain *c) {
    return clEnqueueWriteBuffer(c->q, c->y, CL_TRUE, 0, sizeof(float) * (size_t)c->n, c->init, 0, NULL, NULL);
}

static cl_int run_direct(const chain *c) {
    cl_int e = CL_SUCCESS;
    for (int i = 0; e == CL_SUCCESS && i < c->launches; i++) {
        e = set_args(c->k, c->y, i, c->n);
        if (e == CL_SUCCESS) e = clEnqueueNDRangeKernel(c->q, c->k, 1, NULL, &c->global, &c->local, 0, NULL, NULL);
    }
    return e == CL_SUCCESS ? clFinish(c->q) : e;
}

static cl_int record(const chain *c, const cb_api *api, cl_command_buffer_khr *out) {
    cl_int e = CL_SUCCESS;
    cl_command_queue q = c->q;
    *out = api->create(1, &q, NULL, &e);
    /* recorded commands are ordered only by sync points, whatever the queue: each waits for the last */
    cl_sync_point_khr last = 0;
    for (int i = 0; e == CL_SUCCESS && i < c->launches; i++) {
        /* The spec has a command take the kernel's arguments as they are when it is recorded;
         * PoCL 3.1's replay read them from the kernel object when it ran (every command saw the
         * last launch's), so each command gets a kernel object of its own. */
        e = set_args(c->own[i], c->y, i, c->n);
        cl_sync_point_khr sp = 0;
        if (e == CL_SUCCESS)
            e = api->ndrange(*out, NULL, NULL, c->own[i], 1, NULL, &c->global, &c->local, i > 0,
                             i > 0 ? &last : NULL, &sp, NULL);
        last = sp;
    }
    if (e == CL_SUCCESS) e = api->finalize(*out);
    return e;
}

static cl_int run_replay(const chain *c, const cb_api *api, cl_command_buffer_khr cb) {
    cl_command_queue q = c->q;
    const cl_int e = api->enqueue(1, &q, cb, 0, NULL, NULL);
    return e == CL_SUCCESS ? clFinish(c->q) : e;
}

static int usage(FILE *f) {
    fprintf(f, "usage: clgrad-bench launch [--device D] [--launches N] [--rounds R]\n"
               "Microseconds per launch of a chain of N dependent launches of a trivial kernel\n"
               "(y = y*a + b), on 64 values (one work-group) and on 65536 (1024 work-groups of 64):\n"
               "enqueued one by one, and recorded once into a cl_khr_command_buffer and replayed,\n"
               "alternating in each round; medians over R rounds. Both leave the same values.\n");
    return f == stdout ? 0 : 2;
}

int bench_launch(int argc, char **argv) {
    const char *device = NULL;
    int launches = 400, rounds = 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--launches") && i + 1 < argc)
            launches = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else
            return usage(strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? stderr : stdout);
    }
    if (launches < 1 || launches > 100000 || rounds < 1 || rounds > 1000) {
        fprintf(stderr, "clgrad-bench launch: --launches 1..100000, --rounds 1..1000\n");
        return 2;
    }
    clg_context_params cp = clg_context_default_params();
    cp.device = device;
    clg_context *ctx = NULL;
    char err[1024];
    if (clg_context_create(&cp, &ctx, err, sizeof err) != CLG_OK) {
        fprintf(stderr, "clgrad-bench launch: %s\n", err);
        return 1;
    }
    clg_device_info info;
    clg_context_device_info(ctx, &info);
    cl_context cl = clg_context_cl_context(ctx);
    cl_device_id dev = clg_context_cl_device(ctx);
    cb_api api = {0};
    const bool has_cb = cb_api_get(dev, &api);
    /* a queue of our own, with the properties command buffers require on this device */
    cl_command_queue_properties props = 0;
    if (has_cb)
        clGetDeviceInfo(dev, CL_DEVICE_COMMAND_BUFFER_REQUIRED_QUEUE_PROPERTIES_KHR, sizeof props, &props, NULL);
    cl_int e = CL_SUCCESS;
    chain c = {0};
    c.q = clCreateCommandQueue(cl, dev, props, &e);
    cl_program prog = NULL;
    if (e == CL_SUCCESS) prog = clCreateProgramWithSource(cl, 1, &source, NULL, &e);
    if (e == CL_SUCCESS) e = clBuildProgram(prog, 1, &dev, "", NULL, NULL);
    if (e == CL_SUCCESS) c.k = clCreateKernel(prog, "axpb", &e);
    c.own = calloc((size_t)launches, sizeof *c.own);
    if (!c.own) e = CL_OUT_OF_HOST_MEMORY;
    for (int i = 0; has_cb && e == CL_SUCCESS && i < launches; i++)
        c.own[i] = clCreateKernel(prog, "axpb", &e);
    const int sizes[2] = {64, 65536};
    c.init = malloc(sizeof(float) * (size_t)sizes[1]);
    float *got_d = malloc(sizeof(float) * (size_t)sizes[1]), *got_r = malloc(sizeof(float) * (size_t)sizes[1]);
    double *td = malloc(sizeof(double) * (size_t)rounds), *tr = malloc(sizeof(double) * (size_t)rounds);
    if (!c.init || !got_d || !got_r || !td || !tr) e = CL_OUT_OF_HOST_MEMORY;
    for (int i = 0; e == CL_SUCCESS && i < sizes[1]; i++)
        c.init[i] = (float)(i % 17) - 8.0f;
    if (e == CL_SUCCESS) c.y = clCreateBuffer(cl, CL_MEM_READ_WRITE, sizeof(float) * (size_t)sizes[1], NULL, &e);
    printf("launch cost on %s (%s), a chain of %d dependent launches, median of %d rounds\n", info.name,
           info.platform_name, launches, rounds);
    if (!has_cb) printf("  (the device offers no cl_khr_command_buffer: enqueued launches only)\n");
    printf("%-28s %14s %14s %8s\n", "work per launch", "enqueued us", "replayed us", "ratio");
    c.launches = launches;
    for (int s = 0; s < 2 && e == CL_SUCCESS; s++) {
        c.n = sizes[s];
        c.local = 64;
        c.global = (size_t)c.n;
        cl_command_buffer_khr cb = NULL;
        if (has_cb) e = record(&c, &api, &cb);
        for (int r = -1; r < rounds && e == CL_SUCCESS; r++) { /* round -1 warms up */
            double t0;
            if ((e = reset(&c)) != CL_SUCCESS) break;
            t0 = bench_now();
            if ((e = run_direct(&c)) != CL_SUCCESS) break;
            if (r >= 0) td[r] = bench_now() - t0;
            if (!has_cb) continue;
            if ((e = clEnqueueReadBuffer(c.q, c.y, CL_TRUE, 0, sizeof(float) * (size_t)c.n, got_d, 0, NULL, NULL)) !=
                    CL_SUCCESS ||
                (e = reset(&c)) != CL_SUCCESS)
                break;
            t0 = bench_now();
            if ((e = run_replay(&c, &api, cb)) != CL_SUCCESS) break;
            if (r >= 0) tr[r] = bench_now() - t0;
            e = clEnqueueReadBuffer(c.q, c.y, CL_TRUE, 0, sizeof(float) * (size_t)c.n, got_r, 0, NULL, NULL);
            if (e == CL_SUCCESS && memcmp(got_d, got_r, sizeof(float) * (size_t)c.n)) {
                fprintf(stderr, "clgrad-bench launch: the replayed chain left other values than the enqueued one\n");
                e = CL_INVALID_VALUE;
            }
        }
        if (cb) api.release(cb);
        if (e != CL_SUCCESS) break;
        char what[64];
        snprintf(what, sizeof what, "%d values, %zu work-group%s", c.n, c.global / c.local,
                 c.global / c.local > 1 ? "s" : "");
        const double d = bench_median(td, rounds) / launches * 1e6;
        if (has_cb) {
            const double p = bench_median(tr, rounds) / launches * 1e6;
            printf("%-28s %14.2f %14.2f %7.2fx\n", what, d, p, d / p);
        } else
            printf("%-28s %14.2f %14s %8s\n", what, d, "-", "-");
    }
    if (e != CL_SUCCESS) fprintf(stderr, "clgrad-bench launch: OpenCL error %d\n", (int)e);
    free(c.init), free(got_d), free(got_r), free(td), free(tr);
    if (c.y) clReleaseMemObject(c.y);
    if (c.k) clReleaseKernel(c.k);
    for (int i = 0; c.own && i < launches; i++)
        if (c.own[i]) clReleaseKernel(c.own[i]);
    free(c.own);
    if (prog) clReleaseProgram(prog);
    if (c.q) clReleaseCommandQueue(c.q);
    clg_context_free(ctx);
    return e == CL_SUCCESS ? 0 : 1;
}
