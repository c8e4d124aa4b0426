/* src/nn/nn_init.c - torch.nn.init's functions (uniform_, normal_, constant_, zeros_, ones_,
 * xavier_*, kaiming_*, calculate_gain) with PyTorch's formulas, drawing from a module's
 * generator (module.c) so that a model seeded once initialises all its layers. The layers'
 * own default init is in init.c. Tests: tests/nn/test_init.c.
 */
#include <math.h>

#include "nn/nn.h"

double clg_init_calculate_gain(clg_nonlinearity nl, double param) {
    switch (nl) {
    case CLG_NONLINEARITY_LINEAR:
    case CLG_NONLINEARITY_SIGMOID:
        return 1.0;
    case CLG_NONLINEARITY_TANH:
        return 5.0 / 3.0;
    case CLG_NONLINEARITY_RELU:
        return sqrt(2.0);
    case CLG_NONLINEARITY_LEAKY_RELU:
        return sqrt(2.0 / (1.0 + param * param));
    case CLG_NONLINEARITY_SELU:
        return 0.75;
    }
    return NAN;
}

/* The checks every filling makes: t exists; gen (when one is needed) is in t's context. */
static clg_status check(clg_module *gen, bool need_gen, const clg_tensor *t, const char *fn) {
    if (!t)
        return gen ? clg__fail(gen->ctx, CLG_INVALID_ARGUMENT, "%s: the tensor is NULL", fn)
                   : CLG_INVALID_ARGUMENT;
    if (need_gen && !gen)
        return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "%s: gen (the module whose generator draws) is NULL",
                         fn);
    if (gen && gen->ctx != t->ctx)
        return clg__fail(t->ctx, CLG_INVALID_ARGUMENT,
                         "%s: the module and the tensor belong to other contexts", fn);
    return CLG_OK;
}

/* t = numbers of the given distribution drawn host-side from gen's next seed. */
static clg_status fill_random(clg_module *gen, clg_tensor *t, bool normal, double a, double b,
                              const char *fn) {
    clg_status st = check(gen, true, t, fn);
    if (st != CLG_OK) return st;
    if (!(isfinite(a) && isfinite(b)) || (normal ? b < 0 : a > b))
        return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "%s: bad %s %g, %g", fn,
                         normal ? "mean, std" : "bounds", a, b);
    clg_tensor *r = NULL;
    const uint64_t seed = clg__module_next_seed(gen);
    st = normal ? clg_tensor_rand_normal(t->ctx, t->dtype, t->ndim, t->shape, a, b, seed, &r)
                : clg_tensor_rand_uniform(t->ctx, t->dtype, t->ndim, t->shape, a, b, seed, &r);
    if (st == CLG_OK) st = clg_tensor_copy(t, r);
    clg_tensor_free(r);
    return st;
}

clg_status clg_init_uniform_(clg_module *gen, clg_tensor *t, double a, double b) {
    return fill_random(gen, t, false, a, b, "clg_init_uniform_");
}

clg_status clg_init_normal_(clg_module *gen, clg_tensor *t, double mean, double std) {
    return fill_random(gen, t, true, mean, std, "clg_init_normal_");
}

clg_status clg_init_constant_(clg_tensor *t, double value) {
    clg_status st = check(NULL, false, t, "clg_init_constant_");
    return st != CLG_OK ? st : clg_tensor_fill(t, value);
}

clg_status clg_init_zeros_(clg_tensor *t) { return clg_init_constant_(t, 0.0); }
clg_status clg_init_ones_(clg_tensor *t) { return clg_init_constant_(t, 1.0); }

/* PyTorch's _calculate_fan_in_and_fan_out: dims (out, in, k...) -> in * k..., out * k... */
static clg_status fans(const clg_tensor *t, double *fan_in, double *fan_out, const char *fn) {
    if (t->ndim < 2)
        return clg__fail(t->ctx, CLG_INVALID_ARGUMENT,
                         "%s: fan in and fan out need a tensor of 2 or more dimensions, not %d", fn, t->ndim);
    double receptive = 1;
    for (int d = 2; d < t->ndim; d++)
        receptive *= t->shape[d];
    *fan_in = t->shape[1] * receptive;
    *fan_out = t->shape[0] * receptive;
    return CLG_OK;
}

static clg_status xavier(clg_module *gen, clg_tensor *t, double gain, bool normal, const char *fn) {
    clg_status st = check(gen, true, t, fn);
    double fi = 1, fo = 1;
    if (st == CLG_OK) st = fans(t, &fi, &fo, fn);
    if (st != CLG_OK) return st;
    const double std = gain * sqrt(2.0 / (fi + fo));
    return normal ? fill_random(gen, t, true, 0.0, std, fn)
                  : fill_random(gen, t, false, -sqrt(3.0) * std, sqrt(3.0) * std, fn);
}

clg_status clg_init_xavier_uniform_(clg_module *gen, clg_tensor *t, double gain) {
    return xavier(gen, t, gain, false, "clg_init_xavier_uniform_");
}

clg_status clg_init_xavier_normal_(clg_module *gen, clg_tensor *t, double gain) {
    return xavier(gen, t, gain, true, "clg_init_xavier_normal_");
}

static clg_status kaiming(clg_module *gen, clg_tensor *t, double a, clg_fan_mode mode, clg_nonlinearity nl,
                          bool normal, const char *fn) {
    clg_status st = check(gen, true, t, fn);
    double fi = 1, fo = 1;
    if (st == CLG_OK) st = fans(t, &fi, &fo, fn);
    if (st != CLG_OK) return st;
    const double gain = clg_init_calculate_gain(nl, a);
    if (isnan(gain) || (mode != CLG_FAN_IN && mode != CLG_FAN_OUT))
        return clg__fail(t->ctx, CLG_INVALID_ARGUMENT, "%s: unknown nonlinearity %d or fan mode %d", fn,
                         (int)nl, (int)mode);
    const double std = gain / sqrt(mode == CLG_FAN_IN ? fi : fo);
    return normal ? fill_random(gen, t, true, 0.0, std, fn)
                  : fill_random(gen, t, false, -sqrt(3.0) * std, sqrt(3.0) * std, fn);
}

clg_status clg_init_kaiming_uniform_(clg_module *gen, clg_tensor *t, double a, clg_fan_mode mode,
                                     clg_nonlinearity nl) {
    return kaiming(gen, t, a, mode, nl, false, "clg_init_kaiming_uniform_");
}

clg_status clg__reset_weight_and_bias(clg_module *m, clg_module *gen) {
    clg_tensor *w = clg_module_get_tensor(m, "weight"), *b = clg_module_get_tensor(m, "bias");
    clg_status st = clg_init_kaiming_uniform_(gen, w, sqrt(5.0), CLG_FAN_IN, CLG_NONLINEARITY_LEAKY_RELU);
    double fi = 1, fo = 1;
    if (st == CLG_OK && b && (st = fans(w, &fi, &fo, "reset_parameters")) == CLG_OK)
        st = clg_init_uniform_(gen, b, -1 / sqrt(fi), 1 / sqrt(fi));
    return st;
}

clg_status clg_init_kaiming_normal_(clg_module *gen, clg_tensor *t, double a, clg_fan_mode mode,
                                    clg_nonlinearity nl) {
    return kaiming(gen, t, a, mode, nl, true, "clg_init_kaiming_normal_");
}
