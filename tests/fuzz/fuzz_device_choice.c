/* tests/fuzz/fuzz_device_choice.c - libFuzzer target for the device choice logic of
 * src/core/device.c (clg__device_choice_parse / _pick / _explain, src/core/device_choice.h),
 * which runs without OpenCL devices. Input: the choice string, a NUL, then made-up devices
 * (type byte, platform byte, device byte, NUL-terminated name; the platform byte also picks the
 * platform's name from a table), the first byte after the choice also sizing the error buffer.
 * A reference written independently here (lowered strings and strstr, types compared whole)
 * says which device each form must pick. Built and run by tests/fuzz/run.sh; seeds in
 * tests/fuzz/corpus/fuzz_device_choice/.
 */
#include <ctype.h>
#include <stdbool.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/device_choice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DEVS 64

static const char *const platforms[4] = {
    "Portable Computing Language / The pocl project", "Oclgrind / University of Bristol",
    "NVIDIA CUDA / NVIDIA Corporation", "AMD Accelerated Parallel Processing / Advanced Micro Devices, Inc."};

static char *lower_n(const char *s, size_t n) {
    char *l = malloc(n + 1);
    if (!l) abort();
    for (size_t i = 0; i < n; i++) l[i] = (char)tolower((unsigned char)s[i]);
    l[n] = '\0';
    return l;
}

/* needle[0..n) in hay, any case; an empty needle is in nothing. */
static bool ref_contains(const char *hay, const char *needle, size_t n) {
    if (n == 0) return false;
    char *h = lower_n(hay, strlen(hay)), *nd = lower_n(needle, n);
    bool in = strstr(h, nd) != NULL;
    free(h);
    free(nd);
    return in;
}

#define TYPES (CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR | CL_DEVICE_TYPE_CUSTOM)

static int ref_rank(cl_device_type t) {
    t &= TYPES;
    return t == CL_DEVICE_TYPE_GPU ? 0 : t == CL_DEVICE_TYPE_ACCELERATOR ? 1 : t == CL_DEVICE_TYPE_CPU ? 2 : 3;
}

typedef struct ref_filter {
    const char *plat; /* NULL: every platform */
    size_t plat_len;
} ref_filter;

static bool ref_on(const ref_filter *f, const clg_device_desc *d) {
    return !f->plat || ref_contains(d->platform, f->plat, f->plat_len);
}

static int ref_best(const ref_filter *f, const clg_device_desc *devs, size_t n, const char *plat_name) {
    for (int r = 0; r <= 3; r++)
        for (size_t i = 0; i < n; i++)
            if (ref_on(f, &devs[i]) && ref_rank(devs[i].type) == r &&
                (!plat_name || ref_contains(devs[i].platform, plat_name, strlen(plat_name))))
                return (int)i;
    return -1;
}

static int ref_type(const ref_filter *f, const clg_device_desc *devs, size_t n, cl_device_type t) {
    for (size_t i = 0; i < n; i++)
        if (ref_on(f, &devs[i]) && (devs[i].type & TYPES) == t) return (int)i;
    for (size_t i = 0; i < n; i++)
        if (ref_on(f, &devs[i]) && (devs[i].type & t)) return (int)i;
    return -1;
}

static int ref_name(const ref_filter *f, const clg_device_desc *devs, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (ref_on(f, &devs[i]) && ref_contains(devs[i].name, name, strlen(name))) return (int)i;
    return ref_best(f, devs, n, name);
}

/* The rules of clgrad/context.h for a choice after any "PLATFORM:" was taken off. */
static int ref_rest(const ref_filter *f, const clg_device_desc *devs, size_t n, const char *rest) {
    if (!*rest) return ref_best(f, devs, n, NULL);
    if (!strcmp(rest, "gpu") || !strcmp(rest, "GPU")) return ref_type(f, devs, n, CL_DEVICE_TYPE_GPU);
    if (!strcmp(rest, "cpu") || !strcmp(rest, "CPU")) return ref_type(f, devs, n, CL_DEVICE_TYPE_CPU);
    return ref_name(f, devs, n, rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* The choice: a C string of the bytes before the first NUL. */
    size_t clen = 0;
    while (clen < size && data[clen]) clen++;
    char *choice = malloc(clen + 1);
    if (!choice) return 0;
    memcpy(choice, data, clen);
    choice[clen] = '\0';

    clg_device_desc *devs = calloc(MAX_DEVS, sizeof *devs);
    if (!devs) abort();
    size_t n = 0, pos = clen + 1;
    size_t err_len = pos < size ? data[pos] : 64; /* 0..255: tiny buffers too */
    while (pos + 3 <= size && n < MAX_DEVS) {
        clg_device_desc *d = &devs[n++];
        static const cl_device_type types[4] = {CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU,
                                                CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_CUSTOM};
        d->type = types[data[pos] & 3] | (data[pos] & 4 ? CL_DEVICE_TYPE_DEFAULT : 0);
        d->pi = data[pos + 1] % 4;
        strcpy(d->platform, platforms[d->pi]);
        d->di = data[pos + 2];
        pos += 3;
        size_t k = 0;
        while (pos < size && data[pos] && k + 1 < sizeof d->name) d->name[k++] = (char)data[pos++];
        while (pos < size && data[pos]) pos++; /* a longer name is cut, as get_str does */
        pos++;
    }

    const clg_device_choice c = clg__device_choice_parse(choice);
    const int got = clg__device_choice_pick(&c, devs, n);
    if (got < -1 || got >= (int)n) abort();

    /* Each form picks what the rules say. */
    const ref_filter all = {NULL, 0};
    const char *colon = strchr(choice, ':');
    int want;
    switch (c.kind) {
    case CLG_CHOICE_DEFAULT:
        if (clen != 0 && !(colon && colon[1] == '\0')) abort();
        break;
    case CLG_CHOICE_GPU:
        if (strcmp(colon && c.platform_len ? colon + 1 : choice, "gpu") &&
            strcmp(colon && c.platform_len ? colon + 1 : choice, "GPU"))
            abort();
        break;
    case CLG_CHOICE_CPU:
        if (strcmp(colon && c.platform_len ? colon + 1 : choice, "cpu") &&
            strcmp(colon && c.platform_len ? colon + 1 : choice, "CPU"))
            abort();
        break;
    case CLG_CHOICE_INDEX:
        if (!colon || c.platform_len || c.platform < -1 || c.platform > INT_MAX || c.device < -1 || c.device > INT_MAX)
            abort();
        break;
    case CLG_CHOICE_NAME:
        if (!c.name || !*c.name || c.name < choice || c.name >= choice + clen) abort();
        break;
    default:
        abort();
    }
    if (c.kind == CLG_CHOICE_INDEX) {
        want = -1;
        for (size_t i = 0; i < n && want < 0; i++)
            if (c.platform >= 0 && devs[i].pi == c.platform && devs[i].di == c.device) want = (int)i;
    } else if (c.platform_len) {
        /* "PLATFORM:REST" only when PLATFORM starts with a letter; else the whole as a name. */
        if (!colon || c.platform_len != (size_t)(colon - choice) || !isalpha((unsigned char)choice[0])) abort();
        const ref_filter f = {choice, c.platform_len};
        want = ref_rest(&f, devs, n, colon + 1);
        if (want < 0) want = ref_name(&all, devs, n, choice);
    } else {
        want = ref_rest(&all, devs, n, choice);
    }
    if (got != want) abort();

    /* The explanation stays inside its buffer, ends in a NUL, and names every device when it
     * has room. The buffer is exactly err_len bytes so ASan sees any overrun. */
    char *err = err_len ? malloc(err_len) : NULL;
    if (err_len && !err) abort();
    clg__device_choice_explain(choice, devs, n, err, err_len);
    if (err_len) {
        if (!memchr(err, '\0', err_len)) abort();
        if (strlen(err) + 1 < err_len) /* not cut: everything is there */
            for (size_t i = 0; i < n; i++)
                if (!strstr(err, devs[i].name)) abort();
    }
    free(err);
    free(devs);
    free(choice);
    return 0;
}
