/* tests/core/test_device_choice.c - the device choice logic of src/core/device.c without
 * OpenCL (clg__device_choice_parse / _pick / _explain, src/core/device_choice.h) on made-up
 * device lists: each form, devices of several types (Oclgrind: ACCELERATOR | GPU | CPU) ranked
 * after plain ones, platform-qualified choices ("pocl:cpu", "oclgrind"), the edges sscanf used
 * to get wrong (numbers past INT_MAX were undefined behaviour), and the message cut to any
 * buffer size. With real devices: tests/core/test_context.c; fuzzed by tests/fuzz/fuzz_device_choice.c.
 */
#include <stdio.h>
#include <string.h>

#include "ref.h"
#include "core/device_choice.h"

#define POCL "Portable Computing Language / The pocl project"
#define SIM_TYPE (CL_DEVICE_TYPE_ACCELERATOR | CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_DEFAULT)
static const clg_device_desc devs[] = {
    {"pthread-haswell-Intel(R) Core(TM) i7", CL_DEVICE_TYPE_CPU, 0, 0, POCL},
    {"Intel(R) FPGA Emulation Device", CL_DEVICE_TYPE_ACCELERATOR, 1, 0, "Intel(R) FPGA / Intel(R) Corporation"},
    {"NVIDIA GeForce RTX 3060", CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_DEFAULT, 2, 0, "NVIDIA CUDA / NVIDIA Corporation"},
    {"NVIDIA GeForce GTX 1050", CL_DEVICE_TYPE_GPU, 2, 1, "NVIDIA CUDA / NVIDIA Corporation"},
};
/* What this machine has with Oclgrind registered: the simulator on platform 0. */
static const clg_device_desc with_sim[] = {
    {"Oclgrind Simulator", SIM_TYPE, 0, 0, "Oclgrind / University of Bristol"},
    {"pthread-skylake-avx512-AMD EPYC", CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_DEFAULT, 1, 0, POCL},
    {"gfx90a:sramecc+:xnack-", CL_DEVICE_TYPE_GPU, 2, 0, "AMD Accelerated Parallel Processing / Advanced Micro Devices, Inc."},
};
#define N_DEVS (sizeof devs / sizeof *devs)

static int pick(const char *choice, size_t n) {
    const clg_device_choice c = clg__device_choice_parse(choice);
    return clg__device_choice_pick(&c, devs, n);
}

static void test_forms(void **state) {
    (void)state;
    assert_int_equal(clg__device_choice_parse(NULL).kind, CLG_CHOICE_DEFAULT);
    assert_int_equal(clg__device_choice_parse("").kind, CLG_CHOICE_DEFAULT);
    assert_int_equal(pick(NULL, N_DEVS), 2); /* first GPU */
    assert_int_equal(pick(NULL, 2), 1);      /* no GPU: the accelerator */
    assert_int_equal(pick(NULL, 1), 0);      /* then the CPU */
    assert_int_equal(pick(NULL, 0), -1);
    assert_int_equal(pick("gpu", N_DEVS), 2);
    assert_int_equal(pick("GPU", N_DEVS), 2);
    assert_int_equal(pick("gpu", 2), -1);
    assert_int_equal(pick("cpu", N_DEVS), 0);
    assert_int_equal(pick("CPU", N_DEVS), 0);
    assert_int_equal(pick("2:1", N_DEVS), 3);
    assert_int_equal(pick("1:0", N_DEVS), 1);
    assert_int_equal(pick("2:2", N_DEVS), -1);
    assert_int_equal(pick("gtx", N_DEVS), 3);     /* substring, any case */
    assert_int_equal(pick("GeForce", N_DEVS), 2); /* the first match */
    assert_int_equal(pick("Gpu", N_DEVS), -1);    /* only gpu/GPU are the type; "Gpu" is a name */
    assert_int_equal(clg__device_choice_parse("Gpu").kind, CLG_CHOICE_NAME);
}

static int pick_in(const clg_device_desc *list, size_t n, const char *choice) {
    const clg_device_choice c = clg__device_choice_parse(choice);
    return clg__device_choice_pick(&c, list, n);
}

/* Oclgrind reports ACCELERATOR | GPU | CPU: neither the default nor "cpu" may pick it over
 * PoCL; naming it does. */
static void test_several_types_rank_last(void **state) {
    (void)state;
    assert_int_equal(clg__device_type_rank(CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_DEFAULT), 0);
    assert_int_equal(clg__device_type_rank(CL_DEVICE_TYPE_ACCELERATOR), 1);
    assert_int_equal(clg__device_type_rank(CL_DEVICE_TYPE_CPU), 2);
    assert_int_equal(clg__device_type_rank(SIM_TYPE), 3);
    assert_int_equal(clg__device_type_rank(CL_DEVICE_TYPE_CUSTOM), 3);
    assert_int_equal(clg__device_type_rank(0), 3);
    assert_int_equal(pick_in(with_sim, 2, NULL), 1);   /* PoCL, not the simulator */
    assert_int_equal(pick_in(with_sim, 2, "cpu"), 1);  /* a plain CPU first */
    assert_int_equal(pick_in(with_sim, 2, "gpu"), 0);  /* no plain GPU: any with the GPU bit */
    assert_int_equal(pick_in(with_sim, 3, NULL), 2);   /* a real GPU beats both */
    assert_int_equal(pick_in(with_sim, 3, "gpu"), 2);
    assert_int_equal(pick_in(with_sim, 1, NULL), 0);   /* alone, the simulator is still a device */
    assert_int_equal(pick_in(with_sim, 1, "cpu"), 0);
    assert_int_equal(pick_in(with_sim, 2, "oclgrind"), 0);
    assert_int_equal(pick_in(with_sim, 2, "0:0"), 0);
}

static void test_platform_qualified(void **state) {
    (void)state;
    clg_device_choice c = clg__device_choice_parse("pocl:cpu");
    assert_int_equal(c.kind, CLG_CHOICE_CPU);
    assert_int_equal(c.platform_len, 4);
    assert_int_equal(pick_in(with_sim, 3, "pocl:cpu"), 1);
    assert_int_equal(pick_in(with_sim, 3, "POCL:"), 1);       /* the platform's default */
    assert_int_equal(pick_in(with_sim, 3, "pocl"), 1);        /* no device name has it: the platform */
    assert_int_equal(pick_in(with_sim, 3, "Oclgrind:"), 0);
    assert_int_equal(pick_in(with_sim, 3, "oclgrind:gpu"), 0);
    assert_int_equal(pick_in(with_sim, 3, "bristol:cpu"), 0); /* the vendor counts too */
    assert_int_equal(pick_in(with_sim, 3, "pocl:gpu"), -1);
    assert_int_equal(pick_in(with_sim, 3, "pocl:epyc"), 1);
    assert_int_equal(pick_in(with_sim, 3, "oclgrind:epyc"), -1);
    assert_int_equal(pick_in(with_sim, 3, "nosuch:cpu"), -1);
    /* A device name with colons: the qualified reading matches nothing, the whole name does. */
    assert_int_equal(pick_in(with_sim, 3, "gfx90a:sramecc+"), 2);
    assert_int_equal(pick_in(with_sim, 3, "amd:gfx90a"), 2);
    assert_int_equal(pick_in(with_sim, 3, ":cpu"), -1); /* no platform: a name */
    assert_int_equal(clg__device_choice_parse(":cpu").kind, CLG_CHOICE_NAME);
    assert_int_equal(pick_in(devs, N_DEVS, "nvidia:gtx"), 3);
    assert_int_equal(pick_in(devs, N_DEVS, "nvidia:"), 2);
    assert_int_equal(pick_in(devs, N_DEVS, "intel:"), 1);     /* FPGA platform: its accelerator */
}

static void test_index_edges(void **state) {
    (void)state;
    clg_device_choice c = clg__device_choice_parse(" 2: +1"); /* what sscanf's %d accepted */
    assert_int_equal(c.kind, CLG_CHOICE_INDEX);
    assert_int_equal(c.platform, 2);
    assert_int_equal(c.device, 1);
    assert_int_equal(pick(" 2: +1", N_DEVS), 3);
    /* Past INT_MAX: an index that matches nothing (was undefined behaviour in sscanf). */
    c = clg__device_choice_parse("99999999999999999999:0");
    assert_int_equal(c.kind, CLG_CHOICE_INDEX);
    assert_int_equal(c.platform, -1);
    assert_int_equal(pick("99999999999999999999:0", N_DEVS), -1);
    assert_int_equal(pick("4294967298:1", N_DEVS), -1); /* 2^32 + 2 must not wrap to 2 */
    c = clg__device_choice_parse("2147483647:2147483647");
    assert_int_equal(c.platform, 2147483647);
    assert_int_equal(pick("-1:0", N_DEVS), -1);
    assert_int_equal(clg__device_choice_parse("-0:0").platform, 0);
    /* Not an index: names (which match nothing here). */
    const char *names[] = {"1:", ":1", "1:2x", "1 :2", "1:2 ", "x1:2", "1::2", "+:1"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        c = clg__device_choice_parse(names[i]);
        if (c.kind != CLG_CHOICE_NAME) fail_msg("\"%s\" parsed as kind %d, want a name", names[i], (int)c.kind);
        assert_int_equal(pick(names[i], N_DEVS), -1);
    }
}

static void test_explain(void **state) {
    (void)state;
    char full[1024];
    clg__device_choice_explain("nope", devs, N_DEVS, full, sizeof full);
    assert_non_null(strstr(full, "\"nope\""));
    for (size_t i = 0; i < N_DEVS; i++) assert_non_null(strstr(full, devs[i].name));
    assert_non_null(strstr(full, "2:1 NVIDIA GeForce GTX 1050 (GPU; NVIDIA CUDA / NVIDIA Corporation)"));
    assert_non_null(strstr(full, "1:0 Intel(R) FPGA Emulation Device (accelerator; Intel(R) FPGA"));
    clg__device_choice_explain("x", with_sim, 1, full, sizeof full);
    assert_non_null(strstr(full, "0:0 Oclgrind Simulator (GPU|CPU|accelerator; Oclgrind / University of Bristol)"));
    clg__device_choice_explain("nope", devs, 0, full, sizeof full);
    assert_non_null(strstr(full, "none"));
    /* Every buffer size: a prefix of the full text, NUL-terminated, never past the end. */
    char whole[1024];
    clg__device_choice_explain("nope", devs, N_DEVS, whole, sizeof whole);
    for (size_t len = 1; len <= strlen(whole) + 2; len++) {
        char buf[1100];
        memset(buf, 'Z', sizeof buf);
        clg__device_choice_explain("nope", devs, N_DEVS, buf, len);
        assert_non_null(memchr(buf, '\0', len));
        assert_int_equal(strncmp(buf, whole, len - 1), 0);
        for (size_t i = len; i < sizeof buf; i++)
            if (buf[i] != 'Z') fail_msg("len %zu: byte %zu written", len, i);
    }
    clg__device_choice_explain("nope", devs, N_DEVS, NULL, 0); /* allowed */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_several_types_rank_last),
        cmocka_unit_test(test_platform_qualified),
        cmocka_unit_test(test_index_edges),
        cmocka_unit_test(test_explain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
