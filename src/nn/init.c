/* src/nn/init.c - the parameter initialisations the built-in layers share: PyTorch's default
 * conv/linear init and constant-filled parameters and buffers. Tests: tests/nn/test_nn.c
 * (test_init_conv_linear, test_init_batch_norm).
 */
#include <math.h>

#include "nn/nn.h"

/* A uniform f32 tensor registered as a parameter. */
static clg_status add_uniform(clg_module *m, const char *leaf, int ndim, const int *shape, double bound,
                              uint64_t seed) {
    clg_tensor *t = NULL;
    clg_status st = clg_tensor_rand_uniform(m->ctx, CLG_F32, ndim, shape, -bound, bound, seed, &t);
    if (st != CLG_OK) return st;
    return clg_module_add_parameter(m, leaf, t);
}

/* Weight and bias draw from two sub-streams of seed so that neither repeats the other's
 * numbers. */
clg_status clg__init_weight_and_bias(clg_module *m, int ndim, const int *wshape, int out_features,
                                     double fan_in, bool bias, uint64_t seed) {
    /* A fan-in of 0 (or NaN) would make the bound infinite (or NaN) and every weight NaN. The
     * layers check their sizes first; this is the last line. */
    if (!(isfinite(fan_in) && fan_in > 0))
        return clg__fail(m->ctx, CLG_INVALID_ARGUMENT, "%s: init: fan_in %g must be a finite number > 0",
                         m->name ? m->name : "module", fan_in);
    const double bound = 1.0 / sqrt(fan_in);
    clg_status st = add_uniform(m, "weight", ndim, wshape, bound, seed * 2);
    if (st != CLG_OK || !bias) return st;
    return add_uniform(m, "bias", 1, &out_features, bound, seed * 2 + 1);
}

clg_status clg__init_filled(clg_module *m, const char *leaf, int n, double value, bool trainable,
                            bool persistent) {
    if (!isfinite(value) || n < 1)
        return clg__fail(m->ctx, CLG_INVALID_ARGUMENT, "%s: init: \"%s\" filled with %g over %d elements "
                         "(want a finite value, n >= 1)", m->name ? m->name : "module", leaf, value, n);
    clg_tensor *t = NULL;
    clg_status st = clg__tensor_new(m->ctx, CLG_F32, 1, &n, &t);
    if (st == CLG_OK) st = clg_tensor_fill(t, value);
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    return trainable ? clg_module_add_parameter(m, leaf, t) : clg_module_add_buffer(m, leaf, t, persistent);
}
