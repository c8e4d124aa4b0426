/* src/tensor/random.c - host-side counter-based random numbers: value i of stream seed is
 * a pure function of (seed, i), so every device, dtype and run sees the same numbers.
 * Tests: tests/tensor/test_tensor.c.
 */
#include <math.h>
#include <stdlib.h>

#include "tensor/tensor.h"

/* splitmix64's finaliser over a counter: statistically solid, trivially parallel. */
uint64_t clg__rand_u64(uint64_t seed, uint64_t index) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + (index + 1) * 0xbf58476d1ce4e5b9ull;
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ull;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebull;
    z ^= z >> 31;
    z += seed;
    z ^= z >> 29;
    z *= 0x9e3779b97f4a7c15ull;
    return z ^ (z >> 32);
}

double clg__rand_uniform01(uint64_t seed, uint64_t index) {
    return (double)(clg__rand_u64(seed, index) >> 11) * (1.0 / 9007199254740992.0);
}

typedef enum { DIST_UNIFORM, DIST_NORMAL } dist;

static clg_status make_random(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape, dist d,
                              double a, double b, uint64_t seed, clg_tensor **out, const char *op) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (!out) return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: out is NULL", op);
    *out = NULL;
    /* torch.empty(...).uniform_(lo, hi) needs lo <= hi, normal_(mean, std) std >= 0; both finite. */
    if (d == DIST_UNIFORM && !(isfinite(a) && isfinite(b) && a <= b))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: bounds [%g, %g] must be finite with lo <= hi", op, a, b);
    if (d == DIST_NORMAL && !(isfinite(a) && isfinite(b) && b >= 0))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "%s: mean %g and std %g must be finite with std >= 0", op, a, b);
    clg_tensor *t;
    clg_status st = clg__tensor_new(ctx, dtype, ndim, shape, &t);
    if (st != CLG_OK) return st;
    double *v = malloc(t->numel * sizeof *v);
    if (!v) {
        clg_tensor_free(t);
        return clg__fail(ctx, CLG_OUT_OF_HOST_MEMORY, "%s: out of host memory", op);
    }
    for (size_t i = 0; i < t->numel; i++) {
        if (d == DIST_UNIFORM) {
            v[i] = a + (b - a) * clg__rand_uniform01(seed, i);
        } else { /* Box-Muller on two draws of the element's own counters */
            double u1 = 1.0 - clg__rand_uniform01(seed, 2 * i), u2 = clg__rand_uniform01(seed, 2 * i + 1);
            v[i] = a + b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        }
    }
    if (dtype == CLG_F32) {
        float *f = (float *)v; /* narrow in place: f[i] never overtakes v[i] */
        for (size_t i = 0; i < t->numel; i++) f[i] = (float)v[i];
    }
    st = clg_tensor_write(t, v, clg_tensor_bytes(t));
    free(v);
    if (st != CLG_OK) {
        clg_tensor_free(t);
        return st;
    }
    *out = t;
    return CLG_OK;
}

clg_status clg_tensor_rand_uniform(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape, double lo,
                                   double hi, uint64_t seed, clg_tensor **out) {
    return make_random(ctx, dtype, ndim, shape, DIST_UNIFORM, lo, hi, seed, out, "clg_tensor_rand_uniform");
}

clg_status clg_tensor_rand_normal(clg_context *ctx, clg_dtype dtype, int ndim, const int *shape, double mean,
                                  double std, uint64_t seed, clg_tensor **out) {
    return make_random(ctx, dtype, ndim, shape, DIST_NORMAL, mean, std, seed, out, "clg_tensor_rand_normal");
}
