/* src/core/context.c - context creation and teardown, the error helper every file uses,
 * logging and fault injection. Device choice: device.c; programs: program_cache.c.
 * Tests: tests/core/test_context.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

#include "core/disk_cache.h"

clg_status clg__device_pick(const char *choice, cl_platform_id *platform, cl_device_id *device,
                            char *err, size_t err_len);
clg_status clg__device_fill_info(cl_platform_id platform, cl_device_id device, int pi, int di,
                                 clg_device_info *info);
void clg__device_indices(cl_device_id device, int *pi, int *di);


clg_context_params clg_context_default_params(void) {
    clg_context_params p;
    memset(&p, 0, sizeof p);
    return p;
}

clg_status clg__fail(clg_context *ctx, clg_status status, const char *fmt, ...) {
    if (!ctx) return status;
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need >= 0 && (size_t)need + 1 > ctx->errmsg_cap) {
        char *grown = realloc(ctx->errmsg, (size_t)need + 1);
        if (grown) {
            ctx->errmsg = grown;
            ctx->errmsg_cap = (size_t)need + 1;
        }
    }
    vsnprintf(ctx->errmsg, ctx->errmsg_cap, fmt, ap2);
    va_end(ap2);
    return status;
}

clg_status clg__cl_fail(clg_context *ctx, cl_int err, const char *call) {
    clg_status st = CLG_OPENCL_ERROR;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
        err == CL_INVALID_BUFFER_SIZE)
        st = CLG_OUT_OF_DEVICE_MEMORY;
    else if (err == CL_OUT_OF_HOST_MEMORY)
        st = CLG_OUT_OF_HOST_MEMORY;
    return clg__fail(ctx, st, "%s: %s (%d)", call, clg__cl_error_name(err), (int)err);
}

void clg__log(clg_context *ctx, clg_log_level level, const char *fmt, ...) {
    if (!ctx || !ctx->log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, level, buf);
}

bool clg__fault(clg_context *ctx, clg_fault_kind kind) {
    uint64_t seen = ++ctx->fault_seen[kind];
    if (ctx->fault_at[kind] && seen == ctx->fault_at[kind]) {
        ctx->fault_at[kind] = 0;
        return true;
    }
    return false;
}

uint64_t clg_context_inject_fault(clg_context *ctx, clg_fault_kind kind, uint64_t n) {
    if (!ctx || (unsigned)kind > CLG_FAULT_ENQUEUE) return 0;
    ctx->fault_at[kind] = n ? ctx->fault_seen[kind] + n : 0;
    return ctx->fault_seen[kind];
}

static const char *env_or(const char *param, const char *env) {
    if (param) return param;
    const char *v = getenv(env);
    return v && *v ? v : NULL;
}

void *clg__context_slot(const clg_context *ctx, const void *key) {
    for (size_t i = 0; i < CLG_CONTEXT_SLOTS; i++)
        if (ctx->slots[i].key == key) return ctx->slots[i].state;
    return NULL;
}

clg_status clg__context_slot_set(clg_context *ctx, const void *key, void *state, clg_teardown_fn teardown) {
    for (size_t i = 0; i < CLG_CONTEXT_SLOTS; i++) {
        if (!ctx->slots[i].key || ctx->slots[i].key == key) {
            ctx->slots[i] = (clg_context_slot){key, state, teardown};
            return CLG_OK;
        }
    }
    return clg__fail(ctx, CLG_UNSUPPORTED, "context: every one of the %d floor slots is taken", CLG_CONTEXT_SLOTS);
}

/* The one place the kernel style is decided: the param, else CLGRAD_KERNEL_STYLE, else the
 * device type (a device that is a CPU and nothing else; simulators report several types). */
static clg_status resolve_kernel_style(clg_context *ctx, clg_kernel_style param) {
    const char *env = getenv("CLGRAD_KERNEL_STYLE");
    clg_kernel_style style = param;
    if (style == CLG_KERNEL_STYLE_AUTO && env && *env) {
        if (!strcasecmp(env, "cpu"))
            style = CLG_KERNEL_STYLE_CPU;
        else if (!strcasecmp(env, "gpu"))
            style = CLG_KERNEL_STYLE_GPU;
        else if (strcasecmp(env, "auto") != 0)
            return clg__fail(ctx, CLG_INVALID_ARGUMENT, "CLGRAD_KERNEL_STYLE=\"%s\": expected cpu, gpu or auto", env);
    }
    if (style != CLG_KERNEL_STYLE_AUTO && style != CLG_KERNEL_STYLE_CPU && style != CLG_KERNEL_STYLE_GPU)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "kernel_style %d: expected AUTO, CPU or GPU", (int)style);
    if (style == CLG_KERNEL_STYLE_AUTO)
        style = clg__device_is_plain_cpu(ctx) ? CLG_KERNEL_STYLE_CPU : CLG_KERNEL_STYLE_GPU;
    ctx->kernel_style = style;
    return CLG_OK;
}

clg_kernel_style clg_context_kernel_style(const clg_context *ctx) {
    return ctx ? ctx->kernel_style : CLG_KERNEL_STYLE_CPU;
}

static void context_destroy(clg_context *ctx) {
    for (size_t i = CLG_CONTEXT_SLOTS; i-- > 0;)
        if (ctx->slots[i].key && ctx->slots[i].teardown) ctx->slots[i].teardown(ctx, ctx->slots[i].state);
    for (size_t i = 0; i < ctx->n_programs; i++) {
        clg_program_entry *p = &ctx->programs[i];
        for (size_t k = 0; k < p->n_kernels; k++) {
            clReleaseKernel(p->kernels[k].kernel);
            free(p->kernels[k].name);
        }
        free(p->kernels);
        if (p->program) clReleaseProgram(p->program);
        free(p->name);
        free(p->options);
    }
    free(ctx->programs);
    clg__profiler_free(ctx);
    clg__pool_destroy(&ctx->pool);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->cl_ctx) clReleaseContext(ctx->cl_ctx);
    if (ctx->device) clReleaseDevice(ctx->device);
    free(ctx->cache_dir);
    free(ctx->kernel_dir);
    free(ctx->errmsg);
    free(ctx);
}

clg_status clg_context_create(const clg_context_params *params, clg_context **out, char *err,
                              size_t err_len) {
    if (err && err_len) err[0] = '\0';
    if (!out) {
        clg__fmt(err, err_len, "clg_context_create: out is NULL");
        return CLG_INVALID_ARGUMENT;
    }
    *out = NULL;
    clg_context_params p = params ? *params : clg_context_default_params();
    bool adopt = p.cl_ctx || p.cl_device || p.cl_queue;
    if (adopt && !(p.cl_ctx && p.cl_device && p.cl_queue)) {
        clg__fmt(err, err_len, "clg_context_create: adopting needs cl_ctx, cl_device and cl_queue together");
        return CLG_INVALID_ARGUMENT;
    }
    clg_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx || !(ctx->errmsg = calloc(1, 256))) {
        free(ctx);
        clg__fmt(err, err_len, "clg_context_create: out of host memory");
        return CLG_OUT_OF_HOST_MEMORY;
    }
    ctx->errmsg_cap = 256;
    ctx->grad_enabled = true;
    ctx->log = p.log;
    ctx->log_user = p.log_user;
    ctx->conv_workspace_bytes = p.conv_workspace_bytes ? p.conv_workspace_bytes : (64u << 20);

    clg_status st;
    cl_int e = CL_SUCCESS;
    if (adopt) {
        ctx->cl_ctx = p.cl_ctx;
        ctx->device = p.cl_device;
        ctx->queue = p.cl_queue;
        e = clGetDeviceInfo(ctx->device, CL_DEVICE_PLATFORM, sizeof ctx->platform, &ctx->platform, NULL);
        if (e != CL_SUCCESS) {
            ctx->cl_ctx = NULL, ctx->device = NULL, ctx->queue = NULL;
            context_destroy(ctx);
            clg__fmt(err, err_len, "clg_context_create: clGetDeviceInfo on the adopted device: %s",
                     clg__cl_error_name(e));
            return CLG_INVALID_ARGUMENT;
        }
        clRetainContext(ctx->cl_ctx);
        clRetainDevice(ctx->device);
        clRetainCommandQueue(ctx->queue);
    } else {
        st = clg__device_pick(env_or(p.device, "CLGRAD_DEVICE"), &ctx->platform, &ctx->device, err,
                              err_len);
        if (st != CLG_OK) {
            context_destroy(ctx);
            return st;
        }
        cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0};
        ctx->cl_ctx = clCreateContext(props, 1, &ctx->device, NULL, NULL, &e);
        /* Timestamps only when asked for: a profiling queue may cost a little on every command. */
        const char *prof = getenv("CLGRAD_PROFILE");
        const bool profiling = p.profiling || (prof && !strcmp(prof, "1"));
        if (e == CL_SUCCESS)
            ctx->queue = clCreateCommandQueue(ctx->cl_ctx, ctx->device, profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &e);
        if (e != CL_SUCCESS) {
            context_destroy(ctx);
            clg__fmt(err, err_len, "clg_context_create: clCreateContext/clCreateCommandQueue: %s",
                     clg__cl_error_name(e));
            return e == CL_OUT_OF_HOST_MEMORY ? CLG_OUT_OF_HOST_MEMORY : CLG_OPENCL_ERROR;
        }
    }
    int pi, di;
    clg__device_indices(ctx->device, &pi, &di);
    st = clg__device_fill_info(ctx->platform, ctx->device, pi, di, &ctx->info);
    if (st == CLG_OK) st = clg__cache_dir_resolve(env_or(p.cache_dir, "CLGRAD_CACHE_DIR"), &ctx->cache_dir);
    const char *kdir = env_or(p.kernel_dir, "CLGRAD_KERNEL_DIR");
    if (st == CLG_OK && kdir && strpbrk(kdir, " \t\"'"))
        st = clg__fail(ctx, CLG_INVALID_ARGUMENT, "kernel folder \"%s\": no spaces or quotes (it becomes a -I build option)", kdir);
    if (st == CLG_OK && kdir && !(ctx->kernel_dir = clg__strdup(kdir))) st = CLG_OUT_OF_HOST_MEMORY;
    if (st == CLG_OK) st = resolve_kernel_style(ctx, p.kernel_style);
    if (st != CLG_OK) {
        clg__fmt(err, err_len, "clg_context_create: %s", ctx->errmsg[0] ? ctx->errmsg : clg_status_string(st));
        context_destroy(ctx);
        return st;
    }
    clg__log(ctx, CLG_LOG_INFO, "clgrad: device %s (%s), cache %s", ctx->info.name,
             ctx->info.platform_name, ctx->cache_dir ? ctx->cache_dir : "off");
    *out = ctx;
    return CLG_OK;
}

void clg_context_free(clg_context *ctx) {
    if (!ctx) return;
    clFinish(ctx->queue);
    context_destroy(ctx);
}

const char *clg_context_errmsg(const clg_context *ctx) { return ctx ? ctx->errmsg : "no context"; }

clg_status clg_context_finish(clg_context *ctx) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    cl_int e = clFinish(ctx->queue);
    return e == CL_SUCCESS ? CLG_OK : clg__cl_fail(ctx, e, "clFinish");
}

cl_context clg_context_cl_context(const clg_context *ctx) { return ctx ? ctx->cl_ctx : NULL; }
cl_device_id clg_context_cl_device(const clg_context *ctx) { return ctx ? ctx->device : NULL; }
cl_command_queue clg_context_cl_queue(const clg_context *ctx) { return ctx ? ctx->queue : NULL; }

clg_status clg_context_device_info(const clg_context *ctx, clg_device_info *info) {
    if (!ctx || !info) return CLG_INVALID_ARGUMENT;
    *info = ctx->info;
    return CLG_OK;
}

const char *clg_context_cache_dir(const clg_context *ctx) {
    return ctx && ctx->cache_dir ? ctx->cache_dir : "";
}

bool clg_set_grad_enabled(clg_context *ctx, bool enabled) {
    if (!ctx) return false;
    bool old = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return old;
}

bool clg_grad_enabled(const clg_context *ctx) { return ctx && ctx->grad_enabled; }
