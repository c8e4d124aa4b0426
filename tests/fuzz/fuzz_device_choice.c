/* tests/fuzz/fuzz_device_choice.c - libFuzzer target for the device choice logic of
 * src/core/device.c (clg__device_choice_parse / _pick / _explain, src/core/device_choice.h),
 * which runs without OpenCL devices. Input: the choice string, a NUL, then made-up devices
 * (type byte, platform byte, device byte, NUL-terminated name), the first byte after the
 * choice also sizing the error buffer. Built and run by tests/fuzz/run.sh; seeds in
 * tests/fuzz/corpus/fuzz_device_choice/.
 */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/device_choice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DEVS 64

/* The reference for name matching: both sides lowered, then strstr. */
static int ref_name_pick(const clg_device_desc *devs, size_t n, const char *needle) {
    size_t nl = strlen(needle);
    if (nl == 0) return -1;
    char *low = malloc(nl + 1);
    if (!low) abort();
    for (size_t i = 0; i <= nl; i++) low[i] = (char)tolower((unsigned char)needle[i]);
    int found = -1;
    for (size_t d = 0; d < n && found < 0; d++) {
        char name[256];
        for (size_t i = 0; i < sizeof name; i++) name[i] = (char)tolower((unsigned char)devs[d].name[i]);
        if (strstr(name, low)) found = (int)d;
    }
    free(low);
    return found;
}

static int ref_first_of(const clg_device_desc *devs, size_t n, cl_device_type t) {
    for (size_t i = 0; i < n; i++)
        if (devs[i].type & t) return (int)i;
    return -1;
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
    int want;
    switch (c.kind) {
    case CLG_CHOICE_DEFAULT:
        if (clen != 0) abort();
        want = ref_first_of(devs, n, CL_DEVICE_TYPE_GPU);
        if (want < 0) want = ref_first_of(devs, n, CL_DEVICE_TYPE_ACCELERATOR);
        if (want < 0) want = ref_first_of(devs, n, CL_DEVICE_TYPE_CPU);
        if (want < 0 && n > 0) want = 0;
        break;
    case CLG_CHOICE_GPU:
        if (strcmp(choice, "gpu") && strcmp(choice, "GPU")) abort();
        want = ref_first_of(devs, n, CL_DEVICE_TYPE_GPU);
        break;
    case CLG_CHOICE_CPU:
        if (strcmp(choice, "cpu") && strcmp(choice, "CPU")) abort();
        want = ref_first_of(devs, n, CL_DEVICE_TYPE_CPU);
        break;
    case CLG_CHOICE_INDEX:
        if (!strchr(choice, ':') || c.platform < -1 || c.platform > INT_MAX || c.device < -1 ||
            c.device > INT_MAX)
            abort();
        want = -1;
        for (size_t i = 0; i < n && want < 0; i++)
            if (c.platform >= 0 && devs[i].pi == c.platform && devs[i].di == c.device) want = (int)i;
        break;
    case CLG_CHOICE_NAME:
        if (c.name != choice || clen == 0) abort();
        want = ref_name_pick(devs, n, choice);
        break;
    default:
        abort();
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
