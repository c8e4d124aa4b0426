/* tests/ref/ref_style.h - runs a test group under both kernel styles, whatever the device:
 * GPU style (an item per element, work-group tree reductions) and CPU style (runs of
 * elements, whole rows, sequential per-channel sums), so both pass the same references and
 * fixtures. Each group gets its own context made with that style (clg_context_params), or, for
 * tests that make their own contexts, the style through CLGRAD_KERNEL_STYLE. Header only.
 */
#ifndef CLGRAD_TESTS_REF_STYLE_H
#define CLGRAD_TESTS_REF_STYLE_H

#include <stdlib.h>

#include "ref.h"

static inline int ref_group_setup_style(void **state, clg_kernel_style style) {
    clg_context_params p = clg_context_default_params();
    p.kernel_style = style;
    return ref_group_setup_params(state, p);
}
static inline int ref_setup_gpu_style(void **state) { return ref_group_setup_style(state, CLG_KERNEL_STYLE_GPU); }
static inline int ref_setup_cpu_style(void **state) { return ref_group_setup_style(state, CLG_KERNEL_STYLE_CPU); }

/* The group `tests` (an array) twice; nonzero when either run failed. */
#define REF_N_TESTS(tests) (sizeof(tests) / sizeof((tests)[0]))
#define REF_RUN_BOTH_STYLES(name, tests)                                                                     \
    (ref_run_group(name " (GPU-style kernels)", tests, REF_N_TESTS(tests), ref_setup_gpu_style,            \
                   ref_group_teardown) |                                                                   \
     ref_run_group(name " (CPU-style kernels)", tests, REF_N_TESTS(tests), ref_setup_cpu_style, ref_group_teardown))

/* For tests whose contexts are made with default params elsewhere (tiny_context, several per
 * test): the style through CLGRAD_KERNEL_STYLE, set for the group and removed after. */
static inline int ref_env_gpu_style(void **state) {
    (void)state;
    return setenv("CLGRAD_KERNEL_STYLE", "gpu", 1);
}
static inline int ref_env_cpu_style(void **state) {
    (void)state;
    return setenv("CLGRAD_KERNEL_STYLE", "cpu", 1);
}
static inline int ref_env_style_reset(void **state) {
    (void)state;
    return unsetenv("CLGRAD_KERNEL_STYLE");
}
#define REF_RUN_BOTH_STYLES_ENV(name, tests)                                                                 \
    (ref_run_group(name " (GPU-style kernels)", tests, REF_N_TESTS(tests), ref_env_gpu_style,              \
                   ref_env_style_reset) |                                                                  \
     ref_run_group(name " (CPU-style kernels)", tests, REF_N_TESTS(tests), ref_env_cpu_style, ref_env_style_reset))

#endif
