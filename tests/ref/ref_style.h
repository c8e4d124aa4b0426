/* tests/ref/ref_style.h - runs a test group under both kernel styles, whatever the device:
 * GPU style (an item per element, work-group tree reductions) and CPU style (runs of
 * elements, whole rows, sequential per-channel sums), so both pass the same references and
 * fixtures. The style is ctx->kernel_style (src/core/internal.h). Header only.
 */
#ifndef CLGRAD_TESTS_REF_STYLE_H
#define CLGRAD_TESTS_REF_STYLE_H

#include "core/internal.h"
#include "ref.h"

static inline int ref_group_setup_style(void **state, int style) {
    int r = ref_group_setup(state);
    if (r == 0) ((clg_context *)*state)->kernel_style = style;
    return r;
}
static inline int ref_setup_gpu_style(void **state) { return ref_group_setup_style(state, 1); }
static inline int ref_setup_cpu_style(void **state) { return ref_group_setup_style(state, 2); }

/* The group `tests` (an array) twice; nonzero when either run failed. */
#define REF_RUN_BOTH_STYLES(name, tests)                                                                     \
    (cmocka_run_group_tests_name(name " (GPU-style kernels)", tests, ref_setup_gpu_style,                  \
                                 ref_group_teardown) |                                                     \
     cmocka_run_group_tests_name(name " (CPU-style kernels)", tests, ref_setup_cpu_style, ref_group_teardown))

#endif
