/* tests/tensor/test_tensor.c - tensors and the buffer pool (include/clgrad/tensor.h,
 * src/tensor/, src/core/pool.c): round trips, reads and writes at an element offset,
 * fill/copy/cast/item, the seeded generators, pool reuse and statistics, every bad input
 * returning its status with the context still usable afterwards, and NaN kept through
 * transfers, casts and gradient accumulation. Both kernel styles (element launches run a
 * chunk per work-item in CPU style).
 */
#include "ref.h"
#include "ref_style.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int shapes[][CLG_MAX_DIMS] = {{7}, {3, 5}, {2, 3, 4}, {2, 3, 4, 5}};

static size_t numel_of(int ndim, const int *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    return n;
}

/* Fails unless the context's message holds piece (and piece2 when not NULL). */
static void assert_msg_has(clg_context *ctx, const char *piece, const char *piece2) {
    const char *msg = clg_context_errmsg(ctx);
    if (!strstr(msg, piece) || (piece2 && !strstr(msg, piece2)))
        fail_msg("error message \"%s\" does not mention \"%s\"%s%s", msg, piece, piece2 ? " and " : "",
                 piece2 ? piece2 : "");
}

static void assert_pool_same(clg_context *ctx, clg_pool_stats before) {
    const clg_pool_stats now = clg_context_pool_stats(ctx);
    if (now.bytes_in_use != before.bytes_in_use)
        fail_msg("bytes_in_use went from %zu to %zu: a failed call kept a buffer", before.bytes_in_use,
                 now.bytes_in_use);
}

/* ---------------------------------------------------------------- round trips */

static void test_dtype(void **state) {
    (void)state;
    assert_int_equal(clg_dtype_size(CLG_F32), 4);
    assert_int_equal(clg_dtype_size(CLG_F64), 8);
    assert_string_equal(clg_dtype_name(CLG_F32), "f32");
    assert_string_equal(clg_dtype_name(CLG_F64), "f64");
}

static void test_round_trip(void **state) {
    clg_context *ctx = *state;
    for (int dt = CLG_F32; dt <= CLG_F64; dt++) {
        for (int nd = 1; nd <= 4; nd++) {
            const int *shape = shapes[nd - 1];
            const size_t n = numel_of(nd, shape), es = clg_dtype_size((clg_dtype)dt);
            unsigned char *in = malloc(n * es), *out = malloc(n * es);
            assert_non_null(in);
            assert_non_null(out);
            for (size_t i = 0; i < n; i++) {
                const double v = (double)i * 0.37 - 3.0 + 1.0 / 3.0; /* not exact in binary */
                if (dt == CLG_F64)
                    ((double *)in)[i] = v;
                else
                    ((float *)in)[i] = (float)v;
            }
            clg_tensor *t = NULL;
            REF_OK(ctx, clg_tensor_from_host(ctx, (clg_dtype)dt, nd, shape, in, &t));
            assert_non_null(t);
            assert_ptr_equal(clg_tensor_context(t), ctx);
            assert_int_equal(clg_tensor_dtype(t), dt);
            assert_int_equal(clg_tensor_ndim(t), nd);
            assert_memory_equal(clg_tensor_shape(t), shape, (size_t)nd * sizeof(int));
            assert_int_equal(clg_tensor_numel(t), n);
            assert_int_equal(clg_tensor_bytes(t), n * es);
            assert_non_null(clg_tensor_cl_mem(t));
            assert_false(clg_tensor_requires_grad(t));
            assert_null(clg_tensor_grad(t));
            memset(out, 0xEE, n * es);
            REF_OK(ctx, clg_tensor_to_host(t, out, n * es));
            assert_memory_equal(in, out, n * es); /* bit-exact */

            /* write replaces the contents */
            for (size_t i = 0; i < n * es; i++)
                in[i] ^= 0x01; /* still finite numbers */
            REF_OK(ctx, clg_tensor_write(t, in, n * es));
            REF_OK(ctx, clg_tensor_to_host(t, out, n * es));
            assert_memory_equal(in, out, n * es);
            clg_tensor_free(t);
            free(in);
            free(out);
        }
    }
}

static void test_zeros_on_recycled_buffer(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {17, 19};
    for (int dt = CLG_F32; dt <= CLG_F64; dt++) {
        clg_tensor *dirty = NULL, *z = NULL;
        REF_OK(ctx, clg_tensor_zeros(ctx, (clg_dtype)dt, 2, shape, &dirty));
        REF_OK(ctx, clg_tensor_fill(dirty, NAN));
        clg_tensor_free(dirty);
        /* same size: the pool hands back the NaN-filled buffer, which must be cleared */
        REF_OK(ctx, clg_tensor_zeros(ctx, (clg_dtype)dt, 2, shape, &z));
        double *h = ref_to_host_f64(z);
        for (size_t i = 0; i < 17 * 19; i++)
            if (h[i] != 0.0) fail_msg("zeros[%zu] = %g (%s)", i, h[i], clg_dtype_name((clg_dtype)dt));
        free(h);
        clg_tensor_free(z);
    }
}

static void test_fill_copy_cast_item(void **state) {
    clg_context *ctx = *state;
    const int shape[3] = {3, 4, 5};
    const size_t n = 60;
    clg_tensor *a = NULL, *b = NULL, *c = NULL;

    /* fill: f32 holds the value rounded to float, f64 exactly */
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 3, shape, &a));
    REF_OK(ctx, clg_tensor_fill(a, 0.1));
    float hf[60];
    REF_OK(ctx, clg_tensor_to_host(a, hf, sizeof hf));
    for (size_t i = 0; i < n; i++)
        assert_true(hf[i] == 0.1f);
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 3, shape, &b));
    REF_OK(ctx, clg_tensor_fill(b, 0.1));
    double hd[60];
    REF_OK(ctx, clg_tensor_to_host(b, hd, sizeof hd));
    for (size_t i = 0; i < n; i++)
        assert_true(hd[i] == 0.1);
    clg_tensor_free(a);
    clg_tensor_free(b);

    /* copy: same dtype and numel; a different shape of the same numel is allowed */
    double src[60];
    for (size_t i = 0; i < n; i++)
        src[i] = sin((double)i) * 10;
    a = ref_tensor_f64(ctx, 3, shape, src);
    const int flat[2] = {12, 5};
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 2, flat, &b));
    REF_OK(ctx, clg_tensor_copy(b, a));
    REF_OK(ctx, clg_tensor_fill(a, -1.0)); /* the copy has its own buffer */
    REF_OK(ctx, clg_tensor_to_host(b, hd, sizeof hd));
    assert_memory_equal(hd, src, sizeof hd);
    REF_OK(ctx, clg_tensor_copy(b, b)); /* onto itself: no change */
    REF_OK(ctx, clg_tensor_to_host(b, hd, sizeof hd));
    assert_memory_equal(hd, src, sizeof hd);

    /* cast f64 -> f32 rounds each value; f32 -> f64 is exact; a new buffer each time */
    REF_OK(ctx, clg_tensor_cast(b, CLG_F32, &c));
    assert_int_equal(clg_tensor_dtype(c), CLG_F32);
    assert_int_equal(clg_tensor_ndim(c), 2);
    assert_memory_equal(clg_tensor_shape(c), flat, sizeof flat);
    REF_OK(ctx, clg_tensor_to_host(c, hf, sizeof hf));
    for (size_t i = 0; i < n; i++)
        assert_true(hf[i] == (float)src[i]);
    clg_tensor *d = NULL;
    REF_OK(ctx, clg_tensor_cast(c, CLG_F64, &d));
    REF_OK(ctx, clg_tensor_to_host(d, hd, sizeof hd));
    for (size_t i = 0; i < n; i++)
        assert_true(hd[i] == (double)(float)src[i]);
    clg_tensor *same = NULL;
    REF_OK(ctx, clg_tensor_cast(d, CLG_F64, &same));
    assert_ptr_not_equal(same, d);
    assert_ptr_not_equal(clg_tensor_cl_mem(same), clg_tensor_cl_mem(d));
    clg_tensor_free(same);

    /* item */
    const int one[1] = {1};
    clg_tensor *s32 = NULL, *s64 = NULL;
    const float v32 = 2.75f;
    const double v64 = -1.0 / 3.0;
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F32, 1, one, &v32, &s32));
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F64, 1, one, &v64, &s64));
    double v = 0;
    REF_OK(ctx, clg_tensor_item(s32, &v));
    assert_true(v == 2.75);
    REF_OK(ctx, clg_tensor_item(s64, &v));
    assert_true(v == v64);
    v = 123;
    REF_EXPECT(ctx, clg_tensor_item(b, &v), CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "60", NULL);
    REF_EXPECT(ctx, clg_tensor_item(s32, NULL), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_item(NULL, &v), CLG_INVALID_ARGUMENT);

    clg_tensor_free(s32);
    clg_tensor_free(s64);
    clg_tensor_free(a);
    clg_tensor_free(b);
    clg_tensor_free(c);
    clg_tensor_free(d);
}

static void test_refcount(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {1000};
    const clg_pool_stats s0 = clg_context_pool_stats(ctx);
    clg_tensor *t = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, shape, &t));
    const clg_pool_stats s1 = clg_context_pool_stats(ctx);
    assert_ptr_equal(clg_tensor_ref(t), t);
    assert_null(clg_tensor_ref(NULL));
    clg_tensor_free(t); /* one reference left: buffer still in use, data intact */
    assert_int_equal(clg_context_pool_stats(ctx).bytes_in_use, s1.bytes_in_use);
    REF_OK(ctx, clg_tensor_fill(t, 4.0));
    float h[1000];
    REF_OK(ctx, clg_tensor_to_host(t, h, sizeof h));
    assert_true(h[0] == 4.0f && h[999] == 4.0f);
    clg_tensor_free(t);
    assert_int_equal(clg_context_pool_stats(ctx).bytes_in_use, s0.bytes_in_use);
    clg_tensor_free(NULL);
}

/* ---------------------------------------------------------------- random */

static double *draw(clg_context *ctx, clg_dtype dt, bool normal, int n, double a, double b, uint64_t seed) {
    const int shape[1] = {n};
    clg_tensor *t = NULL;
    if (normal)
        REF_OK(ctx, clg_tensor_rand_normal(ctx, dt, 1, shape, a, b, seed, &t));
    else
        REF_OK(ctx, clg_tensor_rand_uniform(ctx, dt, 1, shape, a, b, seed, &t));
    assert_int_equal(clg_tensor_dtype(t), dt);
    double *h = ref_to_host_f64(t);
    clg_tensor_free(t);
    return h;
}

static void moments(const double *x, size_t n, double *mean, double *std) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++)
        s2 += (x[i] - *mean) * (x[i] - *mean);
    *std = sqrt(s2 / (double)(n - 1));
}

static void test_random_reproducible(void **state) {
    clg_context *ctx = *state;
    const int n = 1000;
    for (int normal = 0; normal < 2; normal++) {
        const double a = normal ? 0.5 : -2.0, b = normal ? 2.0 : 3.0;
        double *x1 = draw(ctx, CLG_F64, normal, n, a, b, 42);
        double *x2 = draw(ctx, CLG_F64, normal, n, a, b, 42);
        double *y = draw(ctx, CLG_F64, normal, n, a, b, 43);
        double *f = draw(ctx, CLG_F32, normal, n, a, b, 42);
        assert_memory_equal(x1, x2, (size_t)n * sizeof(double)); /* same seed, same numbers */
        int same = 0, distinct = 0;
        for (int i = 0; i < n; i++) {
            same += x1[i] == y[i];
            if (i > 0 && x1[i] != x1[i - 1]) distinct++;
            /* f32 stream is the f64 stream rounded */
            if (f[i] != (double)(float)x1[i])
                fail_msg("%s: f32 value [%d] = %.9g, f64 rounded = %.9g", normal ? "normal" : "uniform", i,
                         f[i], (double)(float)x1[i]);
        }
        assert_true(same < 3);         /* another seed, other numbers */
        assert_true(distinct > n - 3); /* not a constant stream */
        /* A shorter tensor from the same seed is a prefix of the longer stream. */
        double *p = draw(ctx, CLG_F64, normal, 10, a, b, 42);
        assert_memory_equal(p, x1, 10 * sizeof(double));
        free(p);
        free(x1);
        free(x2);
        free(y);
        free(f);
    }
}

static void test_random_moments(void **state) {
    clg_context *ctx = *state;
    const int n = 100000;
    double mean, std;
    /* U(lo, hi): mean (lo+hi)/2, std (hi-lo)/sqrt(12); standard errors ~0.003 here. */
    double *u = draw(ctx, CLG_F64, false, n, -1.0, 3.0, 7);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        lo = fmin(lo, u[i]), hi = fmax(hi, u[i]);
    assert_true(lo >= -1.0 && hi < 3.0);
    assert_true(lo < -0.99 && hi > 2.99); /* covers the range */
    moments(u, (size_t)n, &mean, &std);
    print_message("    uniform(-1, 3): mean %.4f (1), std %.4f (%.4f)\n", mean, std, 4 / sqrt(12.0));
    assert_true(fabs(mean - 1.0) < 0.02);
    assert_true(fabs(std - 4.0 / sqrt(12.0)) < 0.02);
    /* no two halves of the range much unequal */
    int below = 0;
    for (int i = 0; i < n; i++)
        below += u[i] < 1.0;
    assert_true(abs(below - n / 2) < 1000);
    free(u);

    double *g = draw(ctx, CLG_F64, true, n, 2.0, 0.5, 11);
    moments(g, (size_t)n, &mean, &std);
    int within1 = 0;
    for (int i = 0; i < n; i++)
        within1 += fabs(g[i] - 2.0) < 0.5;
    print_message("    normal(2, 0.5): mean %.4f, std %.4f, within 1 std %.4f (0.6827)\n", mean, std,
                  (double)within1 / n);
    assert_true(fabs(mean - 2.0) < 0.01);
    assert_true(fabs(std - 0.5) < 0.01);
    assert_true(fabs((double)within1 / n - 0.6827) < 0.01);
    free(g);
}

/* ---------------------------------------------------------------- pool */

static void test_pool_reuse(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {33, 31}; /* 1023 f32 = 4092 bytes: an odd size */
    const size_t bytes = 33 * 31 * 4;
    clg_tensor *t = NULL;

    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, shape, &t));
    const clg_pool_stats s1 = clg_context_pool_stats(ctx);
    clg_tensor_free(t);
    const clg_pool_stats s2 = clg_context_pool_stats(ctx);
    const size_t held = s1.bytes_in_use - s2.bytes_in_use; /* its size class */
    assert_true(held >= bytes && held <= bytes + bytes / 2 + 256);
    assert_int_equal(s2.bytes_cached, s1.bytes_cached + held);

    /* the identical tensor again: a hit, no driver allocation */
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, shape, &t));
    const clg_pool_stats s3 = clg_context_pool_stats(ctx);
    assert_int_equal(s3.driver_allocs, s2.driver_allocs);
    assert_int_equal(s3.hits, s2.hits + 1);
    assert_int_equal(s3.misses, s2.misses);
    assert_int_equal(s3.bytes_in_use, s1.bytes_in_use);
    assert_int_equal(s3.bytes_cached, s2.bytes_cached - held);
    clg_tensor_free(t);

    /* a loop that frees and re-creates the same shapes allocates nothing new */
    const uint64_t allocs = clg_context_pool_stats(ctx).driver_allocs;
    for (int it = 0; it < 20; it++) {
        clg_tensor *x = NULL, *y = NULL;
        REF_OK(ctx, clg_tensor_rand_uniform(ctx, CLG_F32, 2, shape, 0, 1, (uint64_t)it, &x));
        REF_OK(ctx, clg_tensor_cast(x, CLG_F64, &y));
        clg_tensor_free(x);
        clg_tensor_free(y);
    }
    const clg_pool_stats s4 = clg_context_pool_stats(ctx);
    assert_true(s4.driver_allocs <= allocs + 1); /* at most the f64 size class, once */
    assert_int_equal(s4.driver_allocs, s4.misses);

    /* trim empties the cache; the next request goes to the driver again */
    clg_context_pool_trim(ctx);
    const clg_pool_stats s5 = clg_context_pool_stats(ctx);
    assert_int_equal(s5.bytes_cached, 0);
    assert_int_equal(s5.bytes_in_use, s4.bytes_in_use);
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, shape, &t));
    const clg_pool_stats s6 = clg_context_pool_stats(ctx);
    assert_int_equal(s6.driver_allocs, s5.driver_allocs + 1);
    assert_int_equal(s6.misses, s5.misses + 1);
    clg_tensor_free(t);
    clg_context_pool_trim(NULL); /* no-op */
}

/* ---------------------------------------------------------------- bad input */

static void test_bad_create(void **state) {
    clg_context *ctx = *state;
    const int good[2] = {2, 3};
    const double data[6] = {1, 2, 3, 4, 5, 6};
    clg_tensor *t = (clg_tensor *)&t; /* must come back NULL */
    const clg_pool_stats s0 = clg_context_pool_stats(ctx);

    REF_EXPECT(ctx, clg_tensor_zeros(NULL, CLG_F32, 2, good, &t), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, good, NULL), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "out", NULL);
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, NULL, &t), CLG_INVALID_ARGUMENT);
    assert_null(t);
    assert_msg_has(ctx, "shape", NULL);
    t = (clg_tensor *)&t;
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F32, 0, good, &t), CLG_INVALID_ARGUMENT);
    assert_null(t);
    assert_msg_has(ctx, "ndim", "0");
    const int five[5] = {1, 1, 1, 1, 1};
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F32, 5, five, &t), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "ndim", "5");
    const int zero[2] = {2, 0}, neg[3] = {2, 3, -4};
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, zero, &t), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "dimension", NULL);
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F64, 3, neg, &t), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "-4", NULL);
    assert_int_equal(clg_tensor_zeros(ctx, (clg_dtype)7, 2, good, &t), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "dtype", NULL);
    REF_EXPECT(ctx, clg_tensor_from_host(ctx, CLG_F64, 2, good, NULL, &t), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "data", NULL);
    REF_EXPECT(ctx, clg_tensor_from_host(NULL, CLG_F64, 2, good, data, &t), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_rand_uniform(ctx, CLG_F32, 0, good, 0, 1, 1, &t), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_rand_normal(ctx, CLG_F32, 2, zero, 0, 1, 1, &t), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_rand_normal(ctx, CLG_F32, 2, good, 0, 1, 1, NULL), CLG_INVALID_ARGUMENT);
    assert_null(t);
    /* element counts whose byte size overflows size_t must not wrap to a small buffer */
    const int big[4] = {INT_MAX, INT_MAX, INT_MAX, INT_MAX};
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F64, 4, big, &t), CLG_INVALID_ARGUMENT);
    assert_null(t);
    assert_pool_same(ctx, s0);
    assert_int_equal(clg_context_pool_stats(ctx).driver_allocs, s0.driver_allocs);

    /* and the context still works */
    REF_OK(ctx, clg_tensor_from_host(ctx, CLG_F64, 2, good, data, &t));
    double back[6];
    REF_OK(ctx, clg_tensor_to_host(t, back, sizeof back));
    assert_memory_equal(back, data, sizeof back);
    clg_tensor_free(t);
}

static void test_bad_transfers(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {2, 3}, other[1] = {7};
    clg_tensor *a = NULL, *b = NULL, *c = NULL, *out = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, shape, &a));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, other, &b));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 2, shape, &c));
    REF_OK(ctx, clg_tensor_fill(a, 5.0));
    const clg_pool_stats s0 = clg_context_pool_stats(ctx);
    float h[8];

    /* wrong byte counts: the message gives both */
    REF_EXPECT(ctx, clg_tensor_to_host(a, h, 5 * sizeof(float)), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "24", "20");
    REF_EXPECT(ctx, clg_tensor_to_host(a, h, 8 * sizeof(float)), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "24", "32");
    REF_EXPECT(ctx, clg_tensor_write(a, h, 4), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "24", NULL);
    REF_EXPECT(ctx, clg_tensor_to_host(a, NULL, 24), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_write(a, NULL, 24), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_to_host(NULL, h, 24), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_write(NULL, h, 24), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_fill(NULL, 1.0), CLG_INVALID_ARGUMENT);

    /* copies between tensors that do not fit */
    REF_EXPECT(ctx, clg_tensor_copy(b, a), CLG_SHAPE_MISMATCH);
    assert_msg_has(ctx, "(7)", "(2, 3)");
    REF_EXPECT(ctx, clg_tensor_copy(c, a), CLG_INVALID_ARGUMENT); /* dtype, as gemm does */
    assert_msg_has(ctx, "f32", "f64");
    REF_EXPECT(ctx, clg_tensor_copy(NULL, a), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_copy(a, NULL), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_cast(a, CLG_F64, NULL), CLG_INVALID_ARGUMENT);
    out = (clg_tensor *)&out;
    REF_EXPECT(ctx, clg_tensor_cast(NULL, CLG_F64, &out), CLG_INVALID_ARGUMENT);
    assert_pool_same(ctx, s0);

    /* the failed calls changed nothing, and the context still works */
    REF_OK(ctx, clg_tensor_to_host(a, h, 6 * sizeof(float)));
    for (int i = 0; i < 6; i++)
        assert_true(h[i] == 5.0f);
    REF_OK(ctx, clg_tensor_copy(c, c));
    clg_tensor_free(a);
    clg_tensor_free(b);
    clg_tensor_free(c);
}

/* count host values of dtype dt into raw: base + i / 4, exact in both dtypes. */
static void host_values(clg_dtype dt, double base, int count, unsigned char *raw) {
    for (int i = 0; i < count; i++) {
        const double v = base + i / 4.0;
        const float f = (float)v;
        if (dt == CLG_F64) memcpy(raw + (size_t)i * 8, &v, 8);
        else memcpy(raw + (size_t)i * 4, &f, 4);
    }
}

/* Reads and writes at an element offset (clg_tensor_to_host_at / clg_tensor_write_at): a
 * smaller last batch written into the front, a slice in the middle, the front of a tensor read
 * back, each checked against a host copy of what the whole tensor must then hold. */
static void test_transfer_at(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {4, 3}; /* a batch of 4 rows of 3 */
    for (int dt = CLG_F32; dt <= CLG_F64; dt++) {
        const size_t es = clg_dtype_size((clg_dtype)dt);
        double want[12], got[12];
        unsigned char raw[12 * 8], part[12 * 8];
        clg_tensor *t = NULL;
        REF_OK(ctx, clg_tensor_zeros(ctx, (clg_dtype)dt, 2, shape, &t));
        REF_OK(ctx, clg_tensor_fill(t, -1.0));
        for (int i = 0; i < 12; i++)
            want[i] = -1.0;
        host_values((clg_dtype)dt, 10.0, 6, part); /* the last batch holds 2 rows: the front 6 elements */
        REF_OK(ctx, clg_tensor_write_at(t, 0, part, 6 * es));
        for (int i = 0; i < 6; i++)
            want[i] = 10.0 + i / 4.0;
        host_values((clg_dtype)dt, 20.0, 4, part); /* elements 7..10, across a row boundary */
        REF_OK(ctx, clg_tensor_write_at(t, 7, part, 4 * es));
        for (int i = 0; i < 4; i++)
            want[7 + i] = 20.0 + i / 4.0;
        host_values((clg_dtype)dt, 30.0, 1, part); /* the very last element */
        REF_OK(ctx, clg_tensor_write_at(t, 11, part, es));
        want[11] = 30.0;
        REF_OK(ctx, clg_tensor_to_host(t, raw, 12 * es));
        for (int i = 0; i < 12; i++) {
            if (dt == CLG_F64) memcpy(&got[i], raw + (size_t)i * 8, 8);
            else {
                float f;
                memcpy(&f, raw + (size_t)i * 4, 4);
                got[i] = f;
            }
        }
        ref_assert_close(got, want, 12, 0, 0, "whole tensor after writes at offsets");
        /* reads: the front 2 rows, a middle run, the last element, each exactly its part */
        const size_t offs[3] = {0, 5, 11}, counts[3] = {6, 4, 1};
        for (int r = 0; r < 3; r++) {
            memset(part, 0xff, sizeof part);
            REF_OK(ctx, clg_tensor_to_host_at(t, offs[r], part, counts[r] * es));
            assert_memory_equal(part, raw + offs[r] * es, counts[r] * es);
            assert_int_equal(part[counts[r] * es], 0xff); /* nothing past dst_bytes */
        }
        /* nothing at all, also at the end: no transfer, no error */
        REF_OK(ctx, clg_tensor_to_host_at(t, 12, part, 0));
        REF_OK(ctx, clg_tensor_write_at(t, 0, part, 0));
        clg_tensor_free(t);
    }
}

/* Every range that does not lie inside the tensor is refused before anything moves, also
 * those whose end would wrap size_t; the tensor and the context are unchanged after. */
static void test_bad_transfer_at(void **state) {
    clg_context *ctx = *state;
    const int shape[2] = {2, 3};
    clg_tensor *a = NULL, *d = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 2, shape, &a));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 2, shape, &d));
    REF_OK(ctx, clg_tensor_fill(a, 5.0));
    float h[8] = {0};
    double hd[8] = {0};

    REF_EXPECT(ctx, clg_tensor_write_at(a, 0, h, 5), CLG_INVALID_ARGUMENT); /* not whole floats */
    assert_msg_has(ctx, "whole number", "f32");
    REF_EXPECT(ctx, clg_tensor_to_host_at(d, 0, hd, 12), CLG_INVALID_ARGUMENT); /* 1.5 doubles */
    assert_msg_has(ctx, "whole number", "f64");
    REF_EXPECT(ctx, clg_tensor_to_host_at(a, 4, h, 3 * sizeof(float)), CLG_INVALID_ARGUMENT); /* 4..6 */
    assert_msg_has(ctx, "offset 4", "(2, 3)");
    REF_EXPECT(ctx, clg_tensor_write_at(a, 7, h, 0), CLG_INVALID_ARGUMENT); /* starts past the end */
    REF_EXPECT(ctx, clg_tensor_write_at(a, 0, h, 7 * sizeof(float)), CLG_INVALID_ARGUMENT);
    /* ends that wrap: offset + count past SIZE_MAX must not look small */
    REF_EXPECT(ctx, clg_tensor_write_at(a, SIZE_MAX, h, sizeof(float)), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_to_host_at(a, 1, h, SIZE_MAX - 3), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_to_host_at(d, SIZE_MAX / 8, hd, 16), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_to_host_at(a, 0, NULL, 4), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "dst is NULL", NULL);
    REF_EXPECT(ctx, clg_tensor_write_at(a, 0, NULL, 4), CLG_INVALID_ARGUMENT);
    assert_msg_has(ctx, "src is NULL", NULL);
    REF_EXPECT(ctx, clg_tensor_to_host_at(NULL, 0, h, 4), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_tensor_write_at(NULL, 0, h, 4), CLG_INVALID_ARGUMENT);

    /* nothing was written, and the context still works */
    REF_OK(ctx, clg_tensor_to_host_at(a, 0, h, 6 * sizeof(float)));
    for (int i = 0; i < 6; i++)
        assert_true(h[i] == 5.0f);
    clg_tensor_free(a);
    clg_tensor_free(d);
}

static void test_huge_allocation(void **state) {
    clg_context *ctx = *state;
    clg_device_info info;
    REF_OK(ctx, clg_context_device_info(ctx, &info));
    const clg_pool_stats s0 = clg_context_pool_stats(ctx);
    clg_tensor *t = (clg_tensor *)&t;
    clg_status st;

    /* 1 << 40 bytes of f32 */
    const int tera[2] = {1 << 19, 1 << 19};
    st = clg_tensor_zeros(ctx, CLG_F32, 2, tera, &t);
    if (st != CLG_OUT_OF_DEVICE_MEMORY && st != CLG_INVALID_ARGUMENT)
        fail_msg("1 TiB tensor -> %s: %s", clg_status_name(st), clg_context_errmsg(ctx));
    assert_null(t);
    assert_true(strlen(clg_context_errmsg(ctx)) > 0);

    /* Within the element limit but beyond the device's memory (16 GiB of f64 here). */
    const int big[2] = {32768, 65535};
    const double big_bytes = 32768.0 * 65535.0 * 8.0;
    if (big_bytes > (double)info.global_mem_bytes) {
        t = (clg_tensor *)&t;
        st = clg_tensor_zeros(ctx, CLG_F64, 2, big, &t);
        if (st != CLG_OUT_OF_DEVICE_MEMORY) ref_skip_without_fp64(ctx, st);
        if (st != CLG_OUT_OF_DEVICE_MEMORY)
            fail_msg("%.0f-byte tensor on a %llu-byte device -> %s: %s", big_bytes,
                     (unsigned long long)info.global_mem_bytes, clg_status_name(st), clg_context_errmsg(ctx));
        assert_null(t);
    }

    /* Over the device's largest single allocation (but within its memory): the driver says no. */
    cl_ulong max_alloc = 0;
    assert_int_equal(clGetDeviceInfo(clg_context_cl_device(ctx), CL_DEVICE_MAX_MEM_ALLOC_SIZE,
                                     sizeof max_alloc, &max_alloc, NULL),
                     CL_SUCCESS);
    const double want_bytes = (double)max_alloc * 1.25;
    if (want_bytes < (double)info.global_mem_bytes && want_bytes / 8 < (double)INT_MAX) {
        const int over[2] = {(int)(want_bytes / 8 / 1024) + 1, 1024};
        t = (clg_tensor *)&t;
        st = clg_tensor_zeros(ctx, CLG_F64, 2, over, &t);
        if (st != CLG_OUT_OF_DEVICE_MEMORY && st != CLG_INVALID_ARGUMENT)
            fail_msg("tensor of 1.25x the max allocation (%llu) -> %s: %s", (unsigned long long)max_alloc,
                     clg_status_name(st), clg_context_errmsg(ctx));
        assert_null(t);
    }
    assert_pool_same(ctx, s0);

    /* still works */
    const int shape[1] = {1000};
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, shape, &t));
    REF_OK(ctx, clg_tensor_fill(t, 1.5));
    double v;
    const int one[1] = {1};
    clg_tensor *s = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, one, &s));
    REF_OK(ctx, clg_tensor_fill(s, 1.5));
    REF_OK(ctx, clg_tensor_item(s, &v));
    assert_true(v == 1.5);
    clg_tensor_free(s);
    clg_tensor_free(t);
}

/* The driver refusing one allocation (fault injection) is survived the same way. */
static void test_alloc_fault(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {12345}; /* a size class nothing else uses: the pool cannot hit */
    clg_context_pool_trim(ctx);
    const clg_pool_stats s0 = clg_context_pool_stats(ctx);
    clg_context_inject_fault(ctx, CLG_FAULT_ALLOC, 1);
    clg_tensor *t = (clg_tensor *)&t;
    REF_EXPECT(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, shape, &t), CLG_OUT_OF_DEVICE_MEMORY);
    assert_null(t);
    assert_msg_has(ctx, "clCreateBuffer", NULL);
    assert_pool_same(ctx, s0);
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 1, shape, &t)); /* the fault fired once */
    clg_tensor_free(t);
}

/* ---------------------------------------------------------------- autograd state */

static void test_requires_grad_state(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {4};
    clg_tensor *t = ref_rand_f64(ctx, 1, shape, 3, -1, 1);
    assert_false(clg_tensor_requires_grad(t));
    REF_OK(ctx, clg_tensor_set_requires_grad(t, true));
    assert_true(clg_tensor_requires_grad(t));
    assert_null(clg_tensor_grad(t)); /* no backward yet */
    clg_tensor_zero_grad(t);
    assert_null(clg_tensor_grad(t));
    clg_tensor_detach(t); /* a leaf: nothing to drop, still usable */
    REF_OK(ctx, clg_tensor_set_requires_grad(t, false));
    assert_false(clg_tensor_requires_grad(t));
    REF_EXPECT(ctx, clg_tensor_set_requires_grad(NULL, true), CLG_INVALID_ARGUMENT);
    clg_tensor_zero_grad(NULL);
    clg_tensor_detach(NULL);
    clg_tensor_free(t);
}

/* A 1-D tensor of dtype dt holding v (NaN stays NaN through the f32 conversion). */
static clg_tensor *nan_tensor(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, const double *v) {
    assert_int_equal(ndim, 1);
    clg_tensor *t = NULL;
    float f[8];
    assert_true(shape[0] <= 8);
    for (int i = 0; i < shape[0]; i++)
        f[i] = (float)v[i];
    REF_OK(ctx, clg_tensor_from_host(ctx, dt, 1, shape, dt == CLG_F64 ? (const void *)v : (const void *)f, &t));
    return t;
}

static clg_tensor *nan_filled(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, double v) {
    clg_tensor *t = NULL;
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, ndim, shape, &t));
    REF_OK(ctx, clg_tensor_fill(t, v));
    return t;
}

/* t holds want exactly: the same NaN positions, the same infinities and values. */
static void nan_expect(const clg_tensor *t, const double *want, size_t n, double rtol, double atol,
                       const char *what, clg_dtype dt) {
    (void)rtol, (void)atol;
    assert_non_null(t);
    assert_int_equal(clg_tensor_numel(t), n);
    double *got = ref_to_host_f64(t);
    for (size_t i = 0; i < n; i++)
        if (isnan(want[i]) ? !isnan(got[i]) : got[i] != want[i])
            fail_msg("%s (%s): [%zu] = %g, want %g", what, clg_dtype_name(dt), i, got[i], want[i]);
    free(got);
}

/* NaN and infinities survive every tensor operation as PyTorch's do: write/read, fill, copy,
 * cast both ways, item, and the gradient accumulation (a tensor used twice sums its two
 * gradients with clg__axpby: NaN + x is NaN; beta = 0 after zero_grad overwrites an old NaN). */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {5};
    const double v[5] = {NAN, INFINITY, -INFINITY, -0.0, 1.5};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32, other = d ? CLG_F32 : CLG_F64;
        clg_tensor *x = nan_tensor(ctx, dt, 1, shape, v), *c = NULL, *cc = NULL, *y = NULL;
        nan_expect(x, v, 5, 0, 0, "write and read of NaN", dt);
        REF_OK(ctx, clg_tensor_cast(x, other, &c));
        nan_expect(c, v, 5, 0, 0, "cast of NaN", other);
        REF_OK(ctx, clg_tensor_cast(c, dt, &cc));
        nan_expect(cc, v, 5, 0, 0, "cast back of NaN", dt);
        REF_OK(ctx, clg_tensor_fill(cc, NAN));
        const double all_nan[5] = {NAN, NAN, NAN, NAN, NAN};
        nan_expect(cc, all_nan, 5, 0, 0, "fill with NaN", dt);
        REF_OK(ctx, clg_tensor_copy(cc, x));
        nan_expect(cc, v, 5, 0, 0, "copy of NaN", dt);
        clg_tensor *one = nan_filled(ctx, dt, 1, (const int[]){1}, NAN);
        double item = 0;
        REF_OK(ctx, clg_tensor_item(one, &item));
        assert_true(isnan(item));
        /* gradient accumulation: y = x + x, dy with a NaN: dx = 2 dy; then a finite dy after
         * zero_grad overwrites the NaN */
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        const double dyv[5] = {1, NAN, 2, 3, 4};
        clg_tensor *dy = nan_tensor(ctx, dt, 1, shape, dyv);
        REF_OK(ctx, clg_add(ctx, x, x, &y));
        REF_OK(ctx, clg_backward_grad(ctx, y, dy));
        const double want[5] = {2, NAN, 4, 6, 8};
        nan_expect(clg_tensor_grad(x), want, 5, 0, 0, "accumulated gradient with NaN", dt);
        clg_tensor_free(y);
        clg_tensor_zero_grad(x);
        REF_OK(ctx, clg_tensor_fill(dy, 1.0));
        REF_OK(ctx, clg_add(ctx, x, x, &y));
        REF_OK(ctx, clg_backward_grad(ctx, y, dy));
        const double twos[5] = {2, 2, 2, 2, 2};
        nan_expect(clg_tensor_grad(x), twos, 5, 0, 0, "gradient after zero_grad over NaN", dt);
        clg_tensor_free(y), clg_tensor_free(dy), clg_tensor_free(one);
        clg_tensor_free(x), clg_tensor_free(c), clg_tensor_free(cc);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_zeros_on_recycled_buffer),
        cmocka_unit_test(test_fill_copy_cast_item),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_random_reproducible),
        cmocka_unit_test(test_random_moments),
        cmocka_unit_test(test_pool_reuse),
        cmocka_unit_test(test_bad_create),
        cmocka_unit_test(test_bad_transfers),
        cmocka_unit_test(test_transfer_at),
        cmocka_unit_test(test_bad_transfer_at),
        cmocka_unit_test(test_huge_allocation),
        cmocka_unit_test(test_alloc_fault),
        cmocka_unit_test(test_requires_grad_state),
        cmocka_unit_test(test_nan),
    };
    return REF_RUN_BOTH_STYLES("tensor", tests);
}
