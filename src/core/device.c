/* src/core/device.c - device discovery and choice across every platform of the ICD loader:
 * first GPU, else accelerator, else CPU, unless a choice ("gpu", "cpu", "P:D", or a
 * case-insensitive substring of the device name) says otherwise. Tests: tests/unit/test_context.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

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

/* Fills slots with every device; returns the count (0 when there is no platform). */
static size_t enumerate(device_slot *slots, size_t cap) {
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

static bool contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return false;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return true;
    }
    return false;
}

static cl_device_type slot_type(const device_slot *s) {
    cl_device_type t = 0;
    clGetDeviceInfo(s->device, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    return t;
}

static int first_of_type(const device_slot *slots, size_t n, cl_device_type type) {
    for (size_t i = 0; i < n; i++)
        if (slot_type(&slots[i]) & type) return (int)i;
    return -1;
}

/* The index a choice picks among slots, or -1. */
static int choose(const device_slot *slots, size_t n, const char *choice) {
    if (!choice || !*choice) {
        int i = first_of_type(slots, n, CL_DEVICE_TYPE_GPU);
        if (i < 0) i = first_of_type(slots, n, CL_DEVICE_TYPE_ACCELERATOR);
        if (i < 0) i = first_of_type(slots, n, CL_DEVICE_TYPE_CPU);
        return i < 0 && n > 0 ? 0 : i;
    }
    if (!strcmp(choice, "gpu") || !strcmp(choice, "GPU")) return first_of_type(slots, n, CL_DEVICE_TYPE_GPU);
    if (!strcmp(choice, "cpu") || !strcmp(choice, "CPU")) return first_of_type(slots, n, CL_DEVICE_TYPE_CPU);
    int p, d, used = 0;
    if (sscanf(choice, "%d:%d%n", &p, &d, &used) == 2 && choice[used] == '\0') {
        for (size_t i = 0; i < n; i++)
            if (slots[i].pi == p && slots[i].di == d) return (int)i;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char name[256];
        get_str(slots[i].device, CL_DEVICE_NAME, name, sizeof name);
        if (contains_nocase(name, choice)) return (int)i;
    }
    return -1;
}

/* "no device matches "x"; devices: 0:0 NAME (CPU), ..." */
static void list_into(const device_slot *slots, size_t n, const char *choice, char *err, size_t len) {
    if (!err || !len) return;
    int w = snprintf(err, len, "no OpenCL device matches \"%s\"; devices:", choice ? choice : "");
    if (n == 0 && w >= 0 && (size_t)w < len) snprintf(err + w, len - (size_t)w, " none (is an ICD installed?)");
    for (size_t i = 0; i < n && w >= 0 && (size_t)w < len; i++) {
        char name[256];
        get_str(slots[i].device, CL_DEVICE_NAME, name, sizeof name);
        cl_device_type t = slot_type(&slots[i]);
        w += snprintf(err + w, len - (size_t)w, " %d:%d %s (%s)%s", slots[i].pi, slots[i].di, name,
                      t & CL_DEVICE_TYPE_GPU ? "GPU" : t & CL_DEVICE_TYPE_CPU ? "CPU" : "other",
                      i + 1 < n ? ";" : "");
    }
}

clg_status clg__device_pick(const char *choice, cl_platform_id *platform, cl_device_id *device,
                            char *err, size_t err_len) {
    device_slot slots[MAX_DEVICES];
    size_t n = enumerate(slots, MAX_DEVICES);
    int i = choose(slots, n, choice);
    if (i < 0) {
        list_into(slots, n, choice, err, err_len);
        return CLG_DEVICE_NOT_FOUND;
    }
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
    size_t n = enumerate(slots, MAX_DEVICES);
    int i = choose(slots, n, choice);
    if (i < 0) {
        list_into(slots, n, choice, err, err_len);
        return CLG_DEVICE_NOT_FOUND;
    }
    *index = (size_t)i;
    return CLG_OK;
}
