/* tests/ref/ref_style.h - runs a test group under both kernel styles, whatever the device:
 * GPU style (an item per element, work-group tree reductions) and CPU style (runs of
 * elements, whole rows, sequential per-channel sums), so both pass the same references and
 * fixtures. Each group gets its own context made with that style (clg_context_params). Header only.
 */
#ifndef CLGRAD_TESTS_REF_STYLE_H
#define CLGRAD_TESTS_REF_STYLE_H

#include "ref.h"

static inline int ref_group_setup_style(void **state, clg_kernel_style style) {
    clg_context_params p = clg_context_default_params();
    p.kernel_style = style;
    return ref_group_setup_params(state, p);
}
static inline int ref_setup_gpu_style(void **state) { return ref_group_setup_style(state, CLG_KERNEL_STYLE_GPU); }
static inline int ref_setup_cpu_style(void **state) { return ref_group_setup_style(state, CLG_KERNEL_STYLE_CPU); }

/* The group `tests` (an array) twice; nonzero when either run failed. */
#define REF_RUN_BOTH_STYLES(name, tests)                                                                     \
    (cmocka_run_group_tests_name(name " (GPU-style kernels)", tests, ref_setup_gpu_style,                  \
                                 ref_group_teardown) |                                                     \
     cmocka_run_group_tests_name(name " (CPU-style kernels)", tests, ref_setup_cpu_style, ref_group_teardown))

#endif
