/* src/core/device.c - device discovery and choice across every platform of the ICD loader:
 * first plain GPU, else accelerator, else CPU, devices of several types (simulators) last,
 * unless a choice ("gpu", "cpu", "P:D", a case-insensitive substring of the device or platform
 * name, "PLATFORM:" before any of them) says otherwise. The choice logic itself is pure
 * (clg__device_choice_*, src/core/device_choice.h) so the fuzzer runs it without devices.
 * The first enumeration in the process runs once, under a pthread_once guard (see below).
 * Tests: tests/core/test_device_choice.c, test_context.c, test_threads.c; fuzzing:
 * tests/fuzz/fuzz_device_choice.c.
 */
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device_choice.h"

clg_status clg__device_pick(const char *choice, cl_platform_id *platform, cl_device_id *device,
                            char *err, size_t err_len);
clg_status clg__device_fill_info(cl_platform_id platform, cl_device_id device, int pi, int di,
                                 clg_device_info *info);
void clg__device_indices(cl_device_id device, int *pi, int *di);

#define MAX_PLATFORMS 16
#define MAX_DEVICES 64

typedef struct device_slot {
    cl_platform_id platform;
    cl_device_id device;
    int pi, di;
} device_slot;

static void get_str(cl_device_id d, cl_device_info what, char *buf, size_t len);

/* Fills slots with every device; returns the count (0 when there is no platform). */
static size_t enumerate_unguarded(device_slot *slots, size_t cap) {
    cl_platform_id plats[MAX_PLATFORMS];
    cl_uint np = 0;
    if (clGetPlatformIDs(MAX_PLATFORMS, plats, &np) != CL_SUCCESS) return 0;
    if (np > MAX_PLATFORMS) np = MAX_PLATFORMS;
    size_t n = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_device_id devs[MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devs, &nd) != CL_SUCCESS) continue;
        if (nd > MAX_DEVICES) nd = MAX_DEVICES;
        for (cl_uint d = 0; d < nd && n < cap; d++)
            slots[n++] = (device_slot){plats[p], devs[d], (int)p, (int)d};
    }
    return n;
}

/* The one process-wide state of clgrad (documented in clgrad/context.h): the ICD loader and
 * drivers such as PoCL initialise lazily on the first clGetPlatformIDs / clGetDeviceIDs, and
 * threads racing through that crashed or saw no platform. The first enumeration (platforms,
 * devices, their names) therefore runs once, whatever thread gets there first; the others wait
 * for it, and every later enumeration finds the drivers ready. */
static pthread_once_t first_enumeration = PTHREAD_ONCE_INIT;

static void enumerate_first(void) {
    device_slot slots[MAX_DEVICES];
    size_t n = enumerate_unguarded(slots, MAX_DEVICES);
    for (size_t i = 0; i < n; i++) {
        char name[256];
        get_str(slots[i].device, CL_DEVICE_NAME, name, sizeof name);
    }
}

static size_t enumerate(device_slot *slots, size_t cap) {
    pthread_once(&first_enumeration, enumerate_first);
    return enumerate_unguarded(slots, cap);
}

static void get_str(cl_device_id d, cl_device_info what, char *buf, size_t len) {
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, len, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[len - 1] = '\0';
}

clg_status clg__device_fill_info(cl_platform_id platform, cl_device_id device, int pi, int di,
                                 clg_device_info *info) {
    memset(info, 0, sizeof *info);
    get_str(device, CL_DEVICE_NAME, info->name, sizeof info->name);
    get_str(device, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    get_str(device, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
    if (clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof info->platform_name,
                          info->platform_name, NULL) != CL_SUCCESS)
        info->platform_name[0] = '\0';
    if (clGetPlatformInfo(platform, CL_PLATFORM_VERSION, sizeof info->platform_version,
                          info->platform_version, NULL) != CL_SUCCESS)
        info->platform_version[0] = '\0';
    info->platform_name[sizeof info->platform_name - 1] = '\0';
    info->platform_version[sizeof info->platform_version - 1] = '\0';
    info->platform_index = pi;
    info->device_index = di;
    cl_uint cu = 0;
    cl_ulong gmem = 0, lmem = 0;
    size_t wg = 0;
    cl_device_fp_config dfp = 0, hfp = 0;
    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof info->type, &info->type, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    clGetDeviceInfo(device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof gmem, &gmem, NULL);
    clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lmem, &lmem, NULL);
    clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    clGetDeviceInfo(device, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof dfp, &dfp, NULL);
    char ext[4096];
    get_str(device, CL_DEVICE_EXTENSIONS, ext, sizeof ext);
    if (strstr(ext, "cl_khr_fp16")) clGetDeviceInfo(device, 0x1034 /* HALF_FP_CONFIG */, sizeof hfp, &hfp, NULL);
    info->compute_units = cu;
    info->global_mem_bytes = gmem;
    info->local_mem_bytes = lmem;
    info->max_work_group_size = wg;
    info->fp64 = dfp != 0 || strstr(ext, "cl_khr_fp64") != NULL;
    info->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
    return CLG_OK;
}

/* Is needle[0..n) inside hay, ignoring case? An empty needle is in nothing. */
static bool contains_nocase(const char *hay, const char *needle, size_t n) {
    if (n == 0) return false;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return true;
    }
    return false;
}

/* [blanks][+|-]digits, as sscanf's %d reads it but without its undefined behaviour on
 * overflow: *v is -1 for negative or out-of-int-range numbers. Returns the end, or NULL. */
static const char *parse_index(const char *s, long *v) {
    while (isspace((unsigned char)*s)) s++;
    bool neg = false;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    if (!isdigit((unsigned char)*s)) return NULL;
    long x = 0;
    bool big = false;
    for (; isdigit((unsigned char)*s); s++) {
        if (x > (INT_MAX - (*s - '0')) / 10) big = true;
        else x = x * 10 + (*s - '0');
    }
    *v = neg && x != 0 ? -1 : big ? -1 : x;
    return s;
}

/* The forms without a platform: "", gpu, cpu, P:D, else a name. */
static clg_device_choice parse_unqualified(const char *choice, bool allow_index) {
    clg_device_choice c = {CLG_CHOICE_DEFAULT, -1, -1, NULL, NULL, 0, choice};
    if (!*choice) return c;
    if (!strcmp(choice, "gpu") || !strcmp(choice, "GPU")) {
        c.kind = CLG_CHOICE_GPU;
        return c;
    }
    if (!strcmp(choice, "cpu") || !strcmp(choice, "CPU")) {
        c.kind = CLG_CHOICE_CPU;
        return c;
    }
    long p, d;
    const char *s = allow_index ? parse_index(choice, &p) : NULL;
    if (s && *s == ':' && (s = parse_index(s + 1, &d)) && *s == '\0') {
        c.kind = CLG_CHOICE_INDEX;
        c.platform = p;
        c.device = d;
        return c;
    }
    c.kind = CLG_CHOICE_NAME;
    c.name = choice;
    return c;
}

clg_device_choice clg__device_choice_parse(const char *choice) {
    if (!choice || !*choice) return (clg_device_choice){CLG_CHOICE_DEFAULT, -1, -1, NULL, NULL, 0, choice};
    clg_device_choice c = parse_unqualified(choice, true);
    const char *colon = strchr(choice, ':');
    if (c.kind != CLG_CHOICE_NAME || !colon || !isalpha((unsigned char)choice[0])) return c;
    /* "PLATFORM:REST" (PLATFORM starts with a letter, so "1:" stays a name): REST is "", gpu,
     * cpu or a device name (no P:D inside a platform). */
    c = parse_unqualified(colon + 1, false);
    c.platform_name = choice;
    c.platform_len = (size_t)(colon - choice);
    c.whole = choice;
    return c;
}

int clg__device_type_rank(cl_device_type type) {
    switch (type & (CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR | CL_DEVICE_TYPE_CUSTOM)) {
    case CL_DEVICE_TYPE_GPU: return 0;
    case CL_DEVICE_TYPE_ACCELERATOR: return 1;
    case CL_DEVICE_TYPE_CPU: return 2;
    default: return 3;
    }
}

static bool on_platform(const clg_device_choice *c, const clg_device_desc *d) {
    return c->platform_len == 0 || contains_nocase(d->platform, c->platform_name, c->platform_len);
}

/* The first device of the best rank (among those of the choice's platform and, when name is
 * set, whose platform contains it). */
static int best_ranked(const clg_device_choice *c, const clg_device_desc *devs, size_t n, const char *name) {
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        if (!on_platform(c, &devs[i]) || (name && !contains_nocase(devs[i].platform, name, strlen(name)))) continue;
        if (best < 0 || clg__device_type_rank(devs[i].type) < clg__device_type_rank(devs[best].type)) best = (int)i;
    }
    return best;
}

/* A plain device of that type first, else any with the type's bit. */
static int first_of_type(const clg_device_choice *c, const clg_device_desc *devs, size_t n, cl_device_type type) {
    for (size_t i = 0; i < n; i++)
        if (on_platform(c, &devs[i]) && (devs[i].type & ~(cl_device_type)CL_DEVICE_TYPE_DEFAULT) == type) return (int)i;
    for (size_t i = 0; i < n; i++)
        if (on_platform(c, &devs[i]) && (devs[i].type & type)) return (int)i;
    return -1;
}

static int pick_once(const clg_device_choice *c, const clg_device_desc *devs, size_t n) {
    switch (c->kind) {
    case CLG_CHOICE_DEFAULT: return best_ranked(c, devs, n, NULL);
    case CLG_CHOICE_GPU: return first_of_type(c, devs, n, CL_DEVICE_TYPE_GPU);
    case CLG_CHOICE_CPU: return first_of_type(c, devs, n, CL_DEVICE_TYPE_CPU);
    case CLG_CHOICE_INDEX:
        for (size_t i = 0; i < n; i++)
            if (c->platform >= 0 && devs[i].pi == c->platform && devs[i].di == c->device) return (int)i;
        return -1;
    case CLG_CHOICE_NAME:
        for (size_t i = 0; i < n; i++)
            if (on_platform(c, &devs[i]) && contains_nocase(devs[i].name, c->name, strlen(c->name))) return (int)i;
        return best_ranked(c, devs, n, c->name); /* "pocl", "oclgrind": a platform's best device */
    }
    return -1;
}

int clg__device_choice_pick(const clg_device_choice *c, const clg_device_desc *devs, size_t n) {
    int i = pick_once(c, devs, n);
    if (i < 0 && c->platform_len && c->whole && *c->whole) { /* "gfx90a:sramecc+": a device name */
        const clg_device_choice whole = {CLG_CHOICE_NAME, -1, -1, c->whole, NULL, 0, c->whole};
        i = pick_once(&whole, devs, n);
    }
    return i;
}

/* "GPU", "CPU", "accelerator", "custom", joined by '|', or "other". */
static void type_words(cl_device_type t, char *buf, size_t len) {
    static const struct {
        cl_device_type bit;
        const char *word;
    } words[] = {{CL_DEVICE_TYPE_GPU, "GPU"}, {CL_DEVICE_TYPE_CPU, "CPU"},
                 {CL_DEVICE_TYPE_ACCELERATOR, "accelerator"}, {CL_DEVICE_TYPE_CUSTOM, "custom"}};
    buf[0] = '\0';
    size_t w = 0;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if ((t & words[i].bit) && w < len)
            w += (size_t)snprintf(buf + w, len - w, "%s%s", w ? "|" : "", words[i].word);
    if (!buf[0]) snprintf(buf, len, "other");
}

void clg__device_choice_explain(const char *choice, const clg_device_desc *devs, size_t n, char *err,
                                size_t len) {
    if (!err || !len) return;
    int w = snprintf(err, len, "no OpenCL device matches \"%s\"; devices:", choice ? choice : "");
    if (n == 0 && w >= 0 && (size_t)w < len) snprintf(err + w, len - (size_t)w, " none (is an ICD installed?)");
    for (size_t i = 0; i < n && w >= 0 && (size_t)w < len; i++) {
        char types[64];
        type_words(devs[i].type, types, sizeof types);
        w += snprintf(err + w, len - (size_t)w, " %d:%d %s (%s; %s)%s", devs[i].pi, devs[i].di, devs[i].name, types,
                      devs[i].platform, i + 1 < n ? ";" : "");
    }
}

/* The OpenCL side: every device's description, for the pure functions above. */
static size_t describe(const device_slot *slots, size_t n, clg_device_desc *devs) {
    for (size_t i = 0; i < n; i++) {
        get_str(slots[i].device, CL_DEVICE_NAME, devs[i].name, sizeof devs[i].name);
        devs[i].type = 0;
        clGetDeviceInfo(slots[i].device, CL_DEVICE_TYPE, sizeof devs[i].type, &devs[i].type, NULL);
        devs[i].pi = slots[i].pi;
        devs[i].di = slots[i].di;
        char pname[128] = "", pvendor[120] = "";
        if (clGetPlatformInfo(slots[i].platform, CL_PLATFORM_NAME, sizeof pname, pname, NULL) != CL_SUCCESS)
            pname[0] = '\0';
        if (clGetPlatformInfo(slots[i].platform, CL_PLATFORM_VENDOR, sizeof pvendor, pvendor, NULL) != CL_SUCCESS)
            pvendor[0] = '\0';
        pname[sizeof pname - 1] = pvendor[sizeof pvendor - 1] = '\0';
        snprintf(devs[i].platform, sizeof devs[i].platform, "%s / %s", pname, pvendor);
    }
    return n;
}

/* The slot a choice picks among every device (slots filled), or an error listing them. */
static clg_status pick_slot(const char *choice, device_slot *slots, int *index, char *err, size_t err_len) {
    clg_device_desc devs[MAX_DEVICES];
    size_t n = describe(slots, enumerate(slots, MAX_DEVICES), devs);
    const clg_device_choice c = clg__device_choice_parse(choice);
    *index = clg__device_choice_pick(&c, devs, n);
    if (*index < 0) {
        clg__device_choice_explain(choice, devs, n, err, err_len);
        return CLG_DEVICE_NOT_FOUND;
    }
    return CLG_OK;
}

clg_status clg__device_pick(const char *choice, cl_platform_id *platform, cl_device_id *device,
                            char *err, size_t err_len) {
    device_slot slots[MAX_DEVICES];
    int i;
    clg_status st = pick_slot(choice, slots, &i, err, err_len);
    if (st != CLG_OK) return st;
    *platform = slots[i].platform;
    *device = slots[i].device;
    return CLG_OK;
}

void clg__device_indices(cl_device_id device, int *pi, int *di) {
    device_slot slots[MAX_DEVICES];
    size_t n = enumerate(slots, MAX_DEVICES);
    *pi = *di = -1; /* an adopted sub-device, say, is in no platform's list */
    for (size_t i = 0; i < n; i++)
        if (slots[i].device == device) *pi = slots[i].pi, *di = slots[i].di;
}

clg_status clg_devices_list(clg_device_info *infos, size_t cap, size_t *count) {
    if (!count || (cap && !infos)) return CLG_INVALID_ARGUMENT;
    device_slot slots[MAX_DEVICES];
    size_t n = enumerate(slots, MAX_DEVICES);
    for (size_t i = 0; i < n && i < cap; i++)
        clg__device_fill_info(slots[i].platform, slots[i].device, slots[i].pi, slots[i].di, &infos[i]);
    *count = n;
    return CLG_OK;
}

clg_status clg_device_choose(const char *choice, size_t *index, char *err, size_t err_len) {
    if (!index) return CLG_INVALID_ARGUMENT;
    device_slot slots[MAX_DEVICES];
    int i;
    clg_status st = pick_slot(choice, slots, &i, err, err_len);
    if (st == CLG_OK) *index = (size_t)i;
    return st;
}
