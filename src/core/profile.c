/* src/core/profile.c - the profiler (include/clgrad/context.h): while started, every kernel
 * launch (clg__launch, and CLBlast's GEMMs through clg__profile_event) keeps its OpenCL event,
 * its op name, the phase (forward, backward, optimizer) and the host time around the enqueue;
 * the summary reads the events' device timestamps per (op, phase), the trace writes them in
 * Chrome's trace JSON (Perfetto, chrome://tracing). Off (the default) a launch pays one
 * pointer test. Tests: tests/core/test_profile.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/core.h"

typedef struct prof_event {
    cl_event ev;
    unsigned name;  /* index into names */
    unsigned phase; /* clg_phase */
    double host_t0, host_t1; /* seconds, around the enqueue */
    double gap;     /* host seconds since the previous launch's enqueue returned */
} prof_event;

struct clg_profiler {
    prof_event *events;
    size_t n, cap;
    char **names;
    size_t n_names;
    double last_host_end; /* 0: no launch yet */
};

static const char *const PHASES[] = {"forward", "backward", "optimizer"};

clg_status clg_profiler_start(clg_context *ctx) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    cl_command_queue_properties props = 0;
    clGetCommandQueueInfo(ctx->queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL);
    if (!(props & CL_QUEUE_PROFILING_ENABLE))
        return clg__fail(ctx, CLG_INVALID_STATE,
                         "profiler: the queue records no timestamps: create the context with "
                         "clg_context_params.profiling (or CLGRAD_PROFILE=1)");
    if (!ctx->profiler && !(ctx->profiler = calloc(1, sizeof *ctx->profiler)))
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "profiler: out of host memory");
    ctx->profiling = true;
    return CLG_OK;
}

void clg_profiler_stop(clg_context *ctx) {
    if (ctx) ctx->profiling = false;
}

void clg_profiler_reset(clg_context *ctx) {
    if (!ctx || !ctx->profiler) return;
    clg_profiler *p = ctx->profiler;
    for (size_t i = 0; i < p->n; i++)
        clReleaseEvent(p->events[i].ev);
    p->n = 0;
    p->last_host_end = 0;
}

void clg__profiler_free(clg_context *ctx) {
    if (!ctx || !ctx->profiler) return;
    clg_profiler_reset(ctx);
    for (size_t i = 0; i < ctx->profiler->n_names; i++)
        free(ctx->profiler->names[i]);
    free(ctx->profiler->names);
    free(ctx->profiler->events);
    free(ctx->profiler);
    ctx->profiler = NULL;
}

/* The name's index (names are copied: callers may format them on the stack). */
static bool intern(clg_profiler *p, const char *name, unsigned *out) {
    for (size_t i = 0; i < p->n_names; i++)
        if (!strcmp(p->names[i], name)) return *out = (unsigned)i, true;
    char **grown = realloc(p->names, (p->n_names + 1) * sizeof *grown);
    if (!grown) return false;
    p->names = grown;
    if (!(p->names[p->n_names] = clg__strdup(name))) return false;
    *out = (unsigned)p->n_names++;
    return true;
}

cl_event *clg__profile_begin(clg_context *ctx, const char *what, double *t0) {
    if (!ctx->profiling) return NULL;
    clg_profiler *p = ctx->profiler;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 1024;
        prof_event *grown = realloc(p->events, cap * sizeof *grown);
        if (!grown) return NULL; /* this launch goes unrecorded */
        p->events = grown;
        p->cap = cap;
    }
    prof_event *e = &p->events[p->n];
    if (!intern(p, what ? what : "?", &e->name)) return NULL;
    e->ev = NULL;
    e->phase = (unsigned)ctx->phase;
    *t0 = e->host_t0 = clg__now_seconds();
    e->gap = p->last_host_end > 0 ? e->host_t0 - p->last_host_end : 0;
    return &e->ev;
}

void clg__profile_end(clg_context *ctx, cl_event *ev, bool enqueued) {
    if (!ev) return;
    clg_profiler *p = ctx->profiler;
    prof_event *e = &p->events[p->n];
    e->host_t1 = p->last_host_end = clg__now_seconds();
    if (enqueued && e->ev) p->n++;
}

/* Device start and end of event i in ns; false when the driver has none. */
static bool device_times(const prof_event *e, cl_ulong *start, cl_ulong *end) {
    return clGetEventProfilingInfo(e->ev, CL_PROFILING_COMMAND_START, sizeof *start, start, NULL) == CL_SUCCESS &&
           clGetEventProfilingInfo(e->ev, CL_PROFILING_COMMAND_END, sizeof *end, end, NULL) == CL_SUCCESS;
}

static int cmp_rows(const void *a, const void *b) {
    const clg_profile_row *x = a, *y = b;
    return x->device_ms < y->device_ms ? 1 : x->device_ms > y->device_ms ? -1 : strcmp(x->name, y->name);
}

clg_status clg_profiler_summary(clg_context *ctx, clg_profile_row *rows, size_t cap, size_t *n_rows) {
    if (!ctx || !n_rows || (!rows && cap)) return CLG_INVALID_ARGUMENT;
    *n_rows = 0;
    clg_profiler *p = ctx->profiler;
    if (!p || p->n == 0) return CLG_OK;
    cl_int e = clFinish(ctx->queue);
    if (e != CL_SUCCESS) return clg__cl_fail(ctx, e, "clFinish(profiler)");
    const size_t groups = p->n_names * 3;
    clg_profile_row *all = calloc(groups, sizeof *all);
    if (!all) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "profiler: out of host memory");
    for (size_t i = 0; i < p->n; i++) {
        const prof_event *ev = &p->events[i];
        clg_profile_row *r = &all[ev->name * 3 + ev->phase];
        cl_ulong s, t;
        if (device_times(ev, &s, &t) && t >= s) r->device_ms += (double)(t - s) * 1e-6;
        r->launches++;
        r->enqueue_ms += (ev->host_t1 - ev->host_t0) * 1e3;
        r->host_gap_ms += ev->gap * 1e3;
    }
    size_t k = 0;
    for (size_t g = 0; g < groups; g++)
        if (all[g].launches) {
            all[g].name = p->names[g / 3];
            all[g].phase = PHASES[g % 3];
            all[k++] = all[g];
        }
    qsort(all, k, sizeof *all, cmp_rows);
    memcpy(rows, all, (k < cap ? k : cap) * sizeof *rows);
    *n_rows = k;
    free(all);
    return CLG_OK;
}

clg_status clg_profiler_write_trace(clg_context *ctx, const char *path) {
    if (!ctx || !path) return CLG_INVALID_ARGUMENT;
    clg_profiler *p = ctx->profiler;
    cl_int e = clFinish(ctx->queue);
    if (e != CL_SUCCESS) return clg__cl_fail(ctx, e, "clFinish(profiler)");
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "traceEvents");
    cJSON_AddStringToObject(root, "displayTimeUnit", "ms");
    /* Device timestamps use the device's clock: they are placed on the host's time line by
     * the first event (its start is taken as its enqueue's end on the host). */
    double offset_us = 0;
    bool have_offset = false;
    const double base = p && p->n ? p->events[0].host_t0 : 0;
    for (size_t i = 0; p && i < p->n; i++) {
        const prof_event *ev = &p->events[i];
        cl_ulong s, t;
        const char *name = p->names[ev->name], *phase = PHASES[ev->phase];
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "name", name);
        cJSON_AddStringToObject(h, "cat", phase);
        cJSON_AddStringToObject(h, "ph", "X");
        cJSON_AddNumberToObject(h, "ts", (ev->host_t0 - base) * 1e6);
        cJSON_AddNumberToObject(h, "dur", (ev->host_t1 - ev->host_t0) * 1e6);
        cJSON_AddNumberToObject(h, "pid", 1);
        cJSON_AddNumberToObject(h, "tid", 1); /* host: the enqueue */
        cJSON_AddItemToArray(list, h);
        if (!device_times(ev, &s, &t)) continue;
        if (!have_offset) {
            offset_us = (ev->host_t1 - base) * 1e6 - (double)s * 1e-3;
            have_offset = true;
        }
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", name);
        cJSON_AddStringToObject(d, "cat", phase);
        cJSON_AddStringToObject(d, "ph", "X");
        cJSON_AddNumberToObject(d, "ts", (double)s * 1e-3 + offset_us);
        cJSON_AddNumberToObject(d, "dur", (double)(t >= s ? t - s : 0) * 1e-3);
        cJSON_AddNumberToObject(d, "pid", 1);
        cJSON_AddNumberToObject(d, "tid", 2); /* device */
        cJSON_AddItemToArray(list, d);
    }
    static const char *const tracks[] = {"host (enqueue)", "device"};
    for (int i = 0; i < 2; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", "thread_name");
        cJSON_AddStringToObject(m, "ph", "M");
        cJSON_AddNumberToObject(m, "pid", 1);
        cJSON_AddNumberToObject(m, "tid", i + 1);
        cJSON_AddItemToObject(m, "args", cJSON_CreateObject());
        cJSON_AddStringToObject(cJSON_GetObjectItem(m, "args"), "name", tracks[i]);
        cJSON_AddItemToArray(list, m);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "profiler: out of host memory for the trace");
    clg_status st = clg__write_file_atomic(path, text, strlen(text));
    free(text);
    return st == CLG_OK ? CLG_OK : clg__fail(ctx, st, "profiler: cannot write %s", path);
}
