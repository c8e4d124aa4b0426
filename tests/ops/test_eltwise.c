/* tests/ops/test_eltwise.c - add, sub, mul, div with PyTorch broadcasting, and scale
 * (src/ops/eltwise.c, cl/ops/eltwise.cl), in both kernel styles: forward and gradients against
 * host loops in f32 and f64 (same shapes, and broadcast cases that take every kernel path),
 * f64 finite-difference gradients (including x*x + x, where one tensor feeds an op twice), the
 * beta contract, NaN and infinities as PyTorch, PyTorch fixtures (tests/fixtures/
 * eltwise.safetensors, written by tests/fixtures/make_eltwise_fixtures.py) and bad input.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_style.h"
#include "ref_ops.h"
#include "nan_test.h"
#include "ops/op.h"

static const int SHAPE[3] = {2, 3, 5};

static double tol_for(clg_dtype dt) { return dt == CLG_F64 ? 1e-14 : 1e-6; }

/* ---------------------------------------------------------------- forward */

static void check_forward(clg_context *ctx, clg_dtype dt) {
    clg_tensor *a = ref_rand(ctx, dt, 3, SHAPE, 1, -2, 2), *b = ref_rand(ctx, dt, 3, SHAPE, 2, -2, 2);
    clg_tensor *sum = NULL, *prod = NULL, *sc = NULL;
    REF_OK(ctx, clg_add(ctx, a, b, &sum));
    REF_OK(ctx, clg_mul(ctx, a, b, &prod));
    REF_OK(ctx, clg_scale(ctx, a, -1.75, &sc));
    const size_t n = clg_tensor_numel(a);
    assert_int_equal(clg_tensor_numel(sum), n);
    assert_int_equal(clg_tensor_ndim(prod), 3);
    assert_memory_equal(clg_tensor_shape(sc), SHAPE, sizeof SHAPE);
    assert_int_equal(clg_tensor_dtype(sc), dt);
    double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b);
    double *want_sum = malloc(n * sizeof(double)), *want_prod = malloc(n * sizeof(double)),
           *want_sc = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        want_sum[i] = ah[i] + bh[i];
        want_prod[i] = ah[i] * bh[i];
        want_sc[i] = -1.75 * ah[i];
    }
    double *got = ref_to_host_f64(sum);
    ref_assert_close(got, want_sum, n, tol_for(dt), 0, "add");
    free(got);
    got = ref_to_host_f64(prod);
    ref_assert_close(got, want_prod, n, tol_for(dt), 0, "mul");
    free(got);
    got = ref_to_host_f64(sc);
    ref_assert_close(got, want_sc, n, tol_for(dt), 0, "scale");
    free(got);
    free(ah);
    free(bh);
    free(want_sum);
    free(want_prod);
    free(want_sc);
    clg_tensor_free(a);
    clg_tensor_free(b);
    clg_tensor_free(sum);
    clg_tensor_free(prod);
    clg_tensor_free(sc);
}

static void test_forward_f32(void **state) { check_forward(*state, CLG_F32); }
static void test_forward_f64(void **state) { check_forward(*state, CLG_F64); }

/* ---------------------------------------------------------------- gradients */

static clg_status f_add(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    return clg_add(ctx, in[0], in[1], y);
}
static clg_status f_mul(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    return clg_mul(ctx, in[0], in[1], y);
}
static clg_status f_scale(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    return clg_scale(ctx, in[0], -1.75, y);
}
/* x*x + x: x reaches mul through both inputs and add once more. */
static clg_status f_square_plus(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n, (void)u;
    clg_tensor *sq = NULL;
    clg_status st = clg_mul(ctx, in[0], in[0], &sq);
    if (st == CLG_OK) st = clg_add(ctx, sq, in[0], y);
    clg_tensor_free(sq);
    return st;
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    clg_tensor *in[2] = {ref_rand_f64(ctx, 3, SHAPE, 11, -1, 1), ref_rand_f64(ctx, 3, SHAPE, 12, -1, 1)};
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
    REF_OK(ctx, clg_tensor_set_requires_grad(in[1], true));
    ref_gradcheck(ctx, f_add, in, 2, NULL, 1e-6, 1e-7, "add");
    ref_gradcheck(ctx, f_mul, in, 2, NULL, 1e-6, 1e-7, "mul");
    ref_gradcheck(ctx, f_scale, in, 1, NULL, 1e-6, 1e-7, "scale");
    ref_gradcheck(ctx, f_square_plus, in, 1, NULL, 1e-6, 1e-7, "x*x + x");
    /* Only b needs a gradient: a's stays absent. */
    REF_OK(ctx, clg_tensor_set_requires_grad(in[0], false));
    clg_tensor_zero_grad(in[0]);
    ref_gradcheck(ctx, f_mul, in, 2, NULL, 1e-6, 1e-7, "mul, b only");
    assert_null(clg_tensor_grad(in[0]));
    clg_tensor_free(in[0]);
    clg_tensor_free(in[1]);
}

/* x*x through the engine: d/dx = 2 x r, both contributions summed into one gradient. */
static void test_square_grad_values(void **state) {
    clg_context *ctx = *state;
    clg_tensor *x = ref_rand_f64(ctx, 3, SHAPE, 21, -1, 1);
    clg_tensor *r = ref_rand_f64(ctx, 3, SHAPE, 22, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_mul(ctx, x, x, &y));
    REF_OK(ctx, clg_backward_grad(ctx, y, r));
    double *xh = ref_to_host_f64(x), *rh = ref_to_host_f64(r);
    const size_t n = clg_tensor_numel(x);
    assert_non_null(clg_tensor_grad(x));
    double *g = ref_to_host_f64(clg_tensor_grad(x));
    for (size_t i = 0; i < n; i++)
        xh[i] = 2 * xh[i] * rh[i];
    ref_assert_close(g, xh, n, 1e-15, 0, "d(x*x)/dx");
    free(g);
    free(xh);
    free(rh);
    clg_tensor_free(y);
    clg_tensor_free(r);
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- beta contract */

static void check_accumulate(clg_context *ctx, clg_dtype dt) {
    clg_tensor *a = ref_rand(ctx, dt, 3, SHAPE, 31, -1, 1), *b = ref_rand(ctx, dt, 3, SHAPE, 32, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
    REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
    clg_tensor *y = NULL;
    clg_tensor *in[2] = {a, b};
    REF_OK(ctx, clg_add(ctx, a, b, &y));
    ref_check_accumulate(ctx, y, in, 2, "add");
    clg_tensor_free(y);
    REF_OK(ctx, clg_mul(ctx, a, b, &y));
    ref_check_accumulate(ctx, y, in, 2, "mul");
    clg_tensor_free(y);
    REF_OK(ctx, clg_scale(ctx, a, 0.3, &y));
    ref_check_accumulate(ctx, y, in, 1, "scale");
    clg_tensor_free(y);
    clg_tensor_free(a);
    clg_tensor_free(b);
}

static void test_accumulate_f32(void **state) { check_accumulate(*state, CLG_F32); }
static void test_accumulate_f64(void **state) { check_accumulate(*state, CLG_F64); }

/* No input needs a gradient, or grad mode is off: nothing is recorded. */
static void test_no_record(void **state) {
    clg_context *ctx = *state;
    clg_tensor *a = ref_rand_f64(ctx, 3, SHAPE, 41, -1, 1), *b = ref_rand_f64(ctx, 3, SHAPE, 42, -1, 1);
    clg_tensor *y = NULL;
    REF_OK(ctx, clg_mul(ctx, a, b, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
    const bool was = clg_set_grad_enabled(ctx, false);
    REF_OK(ctx, clg_add(ctx, a, b, &y));
    assert_null(y->grad_fn);
    clg_tensor_free(y);
    clg_set_grad_enabled(ctx, true);
    REF_OK(ctx, clg_scale(ctx, a, 2.0, &y));
    assert_non_null(y->grad_fn);
    clg_tensor_free(y);
    clg_set_grad_enabled(ctx, was);
    clg_tensor_free(a);
    clg_tensor_free(b);
}

/* ---------------------------------------------------------------- bad input */

static void test_errors(void **state) {
    clg_context *ctx = *state;
    const int other[3] = {2, 5, 3};
    clg_tensor *a = ref_rand(ctx, CLG_F32, 3, SHAPE, 51, -1, 1);
    clg_tensor *b64 = ref_rand(ctx, CLG_F64, 3, SHAPE, 52, -1, 1);
    clg_tensor *c = ref_rand(ctx, CLG_F32, 3, other, 53, -1, 1);
    clg_tensor *y = (clg_tensor *)&y; /* must come back NULL */

    assert_int_equal(clg_add(ctx, a, b64, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "f64"));
    assert_int_equal(clg_mul(ctx, a, c, &y), CLG_SHAPE_MISMATCH);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "(2, 3, 5)"));
    assert_non_null(strstr(clg_context_errmsg(ctx), "(2, 5, 3)"));
    /* Sizes that are neither equal nor 1 do not broadcast, whichever op and order. */
    const int s3[1] = {3}, s5[1] = {5}, s31[2] = {3, 1}, s4x1[2] = {4, 1};
    clg_tensor *v3 = ref_rand(ctx, CLG_F32, 1, s3, 53, -1, 1), *v5 = ref_rand(ctx, CLG_F32, 1, s5, 54, -1, 1);
    clg_tensor *v31 = ref_rand(ctx, CLG_F32, 2, s31, 55, -1, 1), *v41 = ref_rand(ctx, CLG_F32, 2, s4x1, 56, -1, 1);
    assert_int_equal(clg_sub(ctx, v3, a, &y), CLG_SHAPE_MISMATCH);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "sub: shapes (3) and (2, 3, 5) do not broadcast"));
    assert_int_equal(clg_div(ctx, a, v41, &y), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "div: shapes (2, 3, 5) and (4, 1)"));
    assert_int_equal(clg_add(ctx, v31, v41, &y), CLG_SHAPE_MISMATCH);
    assert_int_equal(clg_add(ctx, NULL, a, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_sub(ctx, a, NULL, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_div(ctx, a, a, NULL), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_div(ctx, a, b64, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_sub(NULL, a, a, &y), CLG_INVALID_ARGUMENT);
    /* (3, 1) with (5): a (3, 5) result. */
    REF_OK(ctx, clg_mul(ctx, v31, v5, &y));
    assert_int_equal(clg_tensor_ndim(y), 2);
    assert_int_equal(clg_tensor_shape(y)[0], 3);
    assert_int_equal(clg_tensor_shape(y)[1], 5);
    clg_tensor_free(y);
    clg_tensor_free(v3), clg_tensor_free(v5), clg_tensor_free(v31), clg_tensor_free(v41);
    assert_int_equal(clg_scale(ctx, NULL, 1.0, &y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_scale(ctx, a, 1.0, NULL), CLG_INVALID_ARGUMENT);

    /* The context is still usable. */
    REF_OK(ctx, clg_add(ctx, a, a, &y));
    double *ah = ref_to_host_f64(a), *yh = ref_to_host_f64(y);
    for (size_t i = 0; i < clg_tensor_numel(a); i++)
        ah[i] *= 2;
    ref_assert_close(yh, ah, clg_tensor_numel(a), 0, 0, "a + a after errors");
    free(ah);
    free(yh);
    clg_tensor_free(y);
    clg_tensor_free(a);
    clg_tensor_free(b64);
    clg_tensor_free(c);
}

/* NaN (and infinity) in, NaN out as PyTorch: a + NaN, a * NaN, inf * 0 and NaN * 0 (scale by
 * 0) are NaN forward; backward passes a NaN dy through (add, scale by 0) and multiplies it
 * (mul: dy * b, dy * a), so NaN in dy or in the other factor gives NaN. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    const int shape[1] = {6};
    const double av[6] = {NAN, 1, 2, 3, INFINITY, -1}, bv[6] = {1, NAN, 0, 2, 0, NAN};
    const double dyv[6] = {1, 1, 1, NAN, 1, 1};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        const double rt = nan_rtol(dt);
        clg_tensor *a = nan_tensor(ctx, dt, 1, shape, av), *b = nan_tensor(ctx, dt, 1, shape, bv);
        clg_tensor *dy = nan_tensor(ctx, dt, 1, shape, dyv);
        REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
        REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
        double want[6], wa[6], wb[6];
        for (int op = 0; op < 4; op++) {
            clg_tensor *y = NULL;
            const double s = op == 3 ? 0.0 : 2.5;
            if (op == 0) REF_OK(ctx, clg_add(ctx, a, b, &y));
            if (op == 1) REF_OK(ctx, clg_mul(ctx, a, b, &y));
            if (op >= 2) REF_OK(ctx, clg_scale(ctx, a, s, &y));
            for (int i = 0; i < 6; i++) {
                want[i] = op == 0 ? av[i] + bv[i] : op == 1 ? av[i] * bv[i] : s * av[i];
                wa[i] = op == 0 ? dyv[i] : op == 1 ? dyv[i] * bv[i] : s * dyv[i];
                wb[i] = op == 0 ? dyv[i] : dyv[i] * av[i];
            }
            static const char *const names[4] = {"add", "mul", "scale", "scale by 0"};
            char what[64];
            snprintf(what, sizeof what, "%s forward with NaN", names[op]);
            nan_expect(y, want, 6, rt, 0, what, dt);
            clg_tensor_zero_grad(a), clg_tensor_zero_grad(b);
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            snprintf(what, sizeof what, "%s backward (a) with NaN", names[op]);
            nan_expect(clg_tensor_grad(a), wa, 6, rt, 0, what, dt);
            if (op < 2) {
                snprintf(what, sizeof what, "%s backward (b) with NaN", names[op]);
                nan_expect(clg_tensor_grad(b), wb, 6, rt, 0, what, dt);
            }
            clg_tensor_free(y);
        }
        clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(dy);
    }
}

/* ---------------------------------------------------------------- broadcasting */

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV } bin_op;
static const char *const OP_NAME[4] = {"add", "sub", "mul", "div"};

static clg_status call_bin(clg_context *ctx, int op, const clg_tensor *a, const clg_tensor *b, clg_tensor **y) {
    switch (op) {
    case OP_ADD: return clg_add(ctx, a, b, y);
    case OP_SUB: return clg_sub(ctx, a, b, y);
    case OP_MUL: return clg_mul(ctx, a, b, y);
    default: return clg_div(ctx, a, b, y);
    }
}

typedef struct bcase {
    const char *name; /* the fixture's name for the cases it has */
    int an, bn;       /* a's and b's ndim */
    int as[4], bs[4]; /* their shapes */
} bcase;

/* Between them every kernel path: one shape; one element count in two shapes; each CPU-style
 * row form (last dimension kept by a, by b, by both); gradients with no terms to sum (R = 1),
 * a few (one work-item per element in either style) and many (a work-group tree in GPU style,
 * past one group's width in big_1). */
static const bcase bcases[] = {
    {"nchw_c11", 4, 3, {2, 3, 4, 5}, {3, 1, 1}},     {"c11_nchw", 3, 4, {3, 1, 1}, {2, 3, 4, 5}},
    {"nchw_chw", 4, 3, {2, 3, 4, 5}, {3, 4, 5}},     {"nchw_1", 4, 1, {2, 3, 4, 5}, {1}},
    {"n1h1_1c1w", 4, 4, {2, 1, 4, 1}, {1, 3, 1, 5}}, {"outer", 2, 2, {5, 1}, {1, 6}},
    {"row_3x5", 2, 1, {3, 5}, {5}},                  {"ones_2x3", 4, 2, {1, 1, 1, 1}, {2, 3}},
    {"same_numel", 2, 3, {3, 4}, {1, 3, 4}},         {"big_c1w", 4, 3, {4, 8, 9, 10}, {8, 1, 10}},
    {"big_1", 4, 1, {4, 8, 9, 10}, {1}},             {"same", 3, 3, {2, 3, 4}, {2, 3, 4}},
};
#define N_BCASES (sizeof bcases / sizeof bcases[0])

/* The case in four dimensions, padded in front with 1s, and the broadcast shape, worked out
 * here independently of the library. */
typedef struct bgeom {
    int a4[4], b4[4], y4[4];
    int yn, yshape[4];
    size_t na, nb, ny;
} bgeom;

static void bgeom_of(const bcase *c, bgeom *g) {
    g->yn = c->an > c->bn ? c->an : c->bn;
    g->na = g->nb = g->ny = 1;
    for (int d = 0; d < 4; d++) {
        const int ia = d - (4 - c->an), ib = d - (4 - c->bn);
        g->a4[d] = ia >= 0 ? c->as[ia] : 1;
        g->b4[d] = ib >= 0 ? c->bs[ib] : 1;
        assert_true(g->a4[d] == g->b4[d] || g->a4[d] == 1 || g->b4[d] == 1);
        g->y4[d] = g->a4[d] > g->b4[d] ? g->a4[d] : g->b4[d];
        g->na *= (size_t)g->a4[d], g->nb *= (size_t)g->b4[d], g->ny *= (size_t)g->y4[d];
        if (d >= 4 - g->yn) g->yshape[d - (4 - g->yn)] = g->y4[d];
    }
}

/* Row-major index in shape s4 of output coordinates i, a size-1 dimension repeating. */
static size_t bidx(const int *s4, const int *i) {
    size_t k = 0;
    for (int d = 0; d < 4; d++)
        k = k * (size_t)s4[d] + (size_t)(s4[d] == 1 ? 0 : i[d]);
    return k;
}

static double ref_op(int op, double u, double v) {
    return op == OP_ADD ? u + v : op == OP_SUB ? u - v : op == OP_MUL ? u * v : u / v;
}

/* y from a, b; and with dy, each input's gradient summed over its broadcast dimensions in
 * output order, with the sum of the terms' magnitudes (sa, sb) for the error bound. */
static void ref_bin(int op, const bgeom *g, const double *a, const double *b, const double *dy, double *y,
                    double *da, double *db, double *sa, double *sb) {
    memset(da, 0, g->na * sizeof *da), memset(sa, 0, g->na * sizeof *sa);
    memset(db, 0, g->nb * sizeof *db), memset(sb, 0, g->nb * sizeof *sb);
    int i[4];
    for (i[0] = 0; i[0] < g->y4[0]; i[0]++)
        for (i[1] = 0; i[1] < g->y4[1]; i[1]++)
            for (i[2] = 0; i[2] < g->y4[2]; i[2]++)
                for (i[3] = 0; i[3] < g->y4[3]; i[3]++) {
                    const size_t ka = bidx(g->a4, i), kb = bidx(g->b4, i), ky = bidx(g->y4, i);
                    const double u = a[ka], v = b[kb], d = dy[ky];
                    y[ky] = ref_op(op, u, v);
                    /* PyTorch's derivatives (derivatives.yaml), grouped as it groups them */
                    const double ta = op == OP_MUL ? d * v : op == OP_DIV ? d / v : d;
                    const double tb = op == OP_ADD ? d : op == OP_SUB ? -d : op == OP_MUL ? d * u : -d * ((u / v) / v);
                    da[ka] += ta, sa[ka] += fabs(ta);
                    db[kb] += tb, sb[kb] += fabs(tb);
                }
}

/* |got - want| <= (R + 4) eps * sum |terms| for each element summed from R terms: a sum of R
 * rounded terms, in any order, is that close (each term's own 1-3 roundings included). */
static void assert_sum_close(const double *got, const double *want, const double *mag, size_t n, size_t terms,
                             double eps, const char *what) {
    for (size_t i = 0; i < n; i++) {
        const double bound = ((double)terms + 4) * eps * mag[i];
        if (!(fabs(got[i] - want[i]) <= bound))
            fail_msg("%s: [%zu] got %.17g, want %.17g (bound %.3g over %zu terms)", what, i, got[i], want[i], bound,
                     terms);
    }
}

/* Forward and both gradients of every op on every case against ref_bin; the gradients repeat
 * bit for bit on a second backward (a fixed summation order). */
static void check_broadcast(clg_context *ctx, clg_dtype dt) {
    const double eps = dt == CLG_F64 ? DBL_EPSILON : FLT_EPSILON;
    for (size_t ci = 0; ci < N_BCASES; ci++) {
        const bcase *c = &bcases[ci];
        bgeom g;
        bgeom_of(c, &g);
        clg_tensor *a = ref_rand(ctx, dt, c->an, c->as, 60 + ci, -2, 2);
        clg_tensor *b = ref_rand(ctx, dt, c->bn, c->bs, 80 + ci, 0.5, 2);
        clg_tensor *r = ref_rand(ctx, dt, g.yn, g.yshape, 100 + ci, -1, 1);
        REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
        REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
        double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b), *rh = ref_to_host_f64(r);
        double *wy = malloc(g.ny * sizeof *wy), *wa = malloc(g.na * sizeof *wa), *wb = malloc(g.nb * sizeof *wb);
        double *ma = malloc(g.na * sizeof *ma), *mb = malloc(g.nb * sizeof *mb), *my = malloc(g.ny * sizeof *my);
        assert_true(wy && wa && wb && ma && mb && my);
        for (int op = 0; op < 4; op++) {
            char what[128];
            snprintf(what, sizeof what, "%s %s (%s)", OP_NAME[op], c->name, clg_dtype_name(dt));
            clg_tensor *y = NULL;
            REF_OK(ctx, call_bin(ctx, op, a, b, &y));
            assert_int_equal(clg_tensor_ndim(y), g.yn);
            assert_memory_equal(clg_tensor_shape(y), g.yshape, (size_t)g.yn * sizeof(int));
            assert_int_equal(clg_tensor_dtype(y), dt);
            ref_bin(op, &g, ah, bh, rh, wy, wa, wb, ma, mb);
            for (size_t i = 0; i < g.ny; i++)
                my[i] = fabs(wy[i]);
            double *got = ref_to_host_f64(y);
            assert_sum_close(got, wy, my, g.ny, 0, eps, what); /* one rounding (div: 2.5 ulp) */
            free(got);
            clg_tensor_zero_grad(a), clg_tensor_zero_grad(b);
            REF_OK(ctx, clg_backward_grad(ctx, y, r));
            double *ga = ref_to_host_f64(clg_tensor_grad(a)), *gb = ref_to_host_f64(clg_tensor_grad(b));
            strcat(what, " da");
            assert_sum_close(ga, wa, ma, g.na, g.ny / g.na, eps, what);
            what[strlen(what) - 1] = 'b';
            assert_sum_close(gb, wb, mb, g.nb, g.ny / g.nb, eps, what);
            clg_tensor_free(y);
            /* Again from a fresh graph: the same bits. */
            clg_tensor_zero_grad(a), clg_tensor_zero_grad(b);
            REF_OK(ctx, call_bin(ctx, op, a, b, &y));
            REF_OK(ctx, clg_backward_grad(ctx, y, r));
            double *ga2 = ref_to_host_f64(clg_tensor_grad(a)), *gb2 = ref_to_host_f64(clg_tensor_grad(b));
            assert_memory_equal(ga, ga2, g.na * sizeof *ga);
            assert_memory_equal(gb, gb2, g.nb * sizeof *gb);
            free(ga), free(gb), free(ga2), free(gb2);
            clg_tensor_free(y);
        }
        free(ah), free(bh), free(rh), free(wy), free(wa), free(wb), free(ma), free(mb), free(my);
        clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(r);
    }
}

static void test_broadcast_f32(void **state) { check_broadcast(*state, CLG_F32); }
static void test_broadcast_f64(void **state) { check_broadcast(*state, CLG_F64); }

static clg_status f_bin(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *u) {
    (void)n;
    return call_bin(ctx, *(const int *)u, in[0], in[1], y);
}

/* Central differences in f64 through each op on the smaller cases (b away from 0). */
static void test_broadcast_gradcheck(void **state) {
    clg_context *ctx = *state;
    static const char *const which[] = {"nchw_c11", "c11_nchw", "n1h1_1c1w", "outer", "row_3x5", "ones_2x3"};
    for (size_t ci = 0; ci < N_BCASES; ci++) {
        const bcase *c = &bcases[ci];
        bool take = false;
        for (size_t w = 0; w < sizeof which / sizeof which[0]; w++)
            take = take || !strcmp(which[w], c->name);
        if (!take) continue;
        clg_tensor *in[2] = {ref_rand_f64(ctx, c->an, c->as, 120 + ci, -1, 1),
                             ref_rand_f64(ctx, c->bn, c->bs, 140 + ci, 0.5, 1.5)};
        REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
        REF_OK(ctx, clg_tensor_set_requires_grad(in[1], true));
        for (int op = 0; op < 4; op++) {
            char what[96];
            snprintf(what, sizeof what, "%s %s", OP_NAME[op], c->name);
            ref_gradcheck(ctx, f_bin, in, 2, &op, 1e-6, 1e-7, what);
        }
        clg_tensor_free(in[0]), clg_tensor_free(in[1]);
    }
}

/* The beta contract through the broadcast gradients: R = 1, a few terms, a tree. */
static void check_broadcast_accumulate(clg_context *ctx, clg_dtype dt) {
    static const char *const which[] = {"nchw_c11", "n1h1_1c1w", "big_1", "same_numel"};
    for (size_t ci = 0; ci < N_BCASES; ci++) {
        const bcase *c = &bcases[ci];
        bool take = false;
        for (size_t w = 0; w < sizeof which / sizeof which[0]; w++)
            take = take || !strcmp(which[w], c->name);
        if (!take) continue;
        clg_tensor *in[2] = {ref_rand(ctx, dt, c->an, c->as, 160 + ci, -1, 1),
                             ref_rand(ctx, dt, c->bn, c->bs, 180 + ci, 0.5, 1.5)};
        REF_OK(ctx, clg_tensor_set_requires_grad(in[0], true));
        REF_OK(ctx, clg_tensor_set_requires_grad(in[1], true));
        for (int op = 0; op < 4; op++) {
            char what[96];
            snprintf(what, sizeof what, "%s %s", OP_NAME[op], c->name);
            clg_tensor *y = NULL;
            REF_OK(ctx, call_bin(ctx, op, in[0], in[1], &y));
            ref_check_accumulate(ctx, y, in, 2, what);
            clg_tensor_free(y);
        }
        clg_tensor_free(in[0]), clg_tensor_free(in[1]);
    }
}

static void test_broadcast_accumulate_f32(void **state) { check_broadcast_accumulate(*state, CLG_F32); }
static void test_broadcast_accumulate_f64(void **state) { check_broadcast_accumulate(*state, CLG_F64); }

/* NaN and infinities through broadcasting: a NaN in the broadcast b reaches every output it
 * meets and the gradients that sum over it; x / 0 is inf, 0 / 0 NaN; a NaN in dy spoils the
 * sums it is in; all as IEEE arithmetic (and so PyTorch) gives. Sub and div, same shape, too. */
static void test_nan_broadcast(void **state) {
    clg_context *ctx = *state;
    static const bcase cs[2] = {{"nan_row", 2, 1, {2, 3}, {3}}, {"nan_same", 2, 2, {2, 3}, {2, 3}}};
    const double av[6] = {1, NAN, 2, INFINITY, 0, -1}, bv3[3] = {0, 2, NAN}, bv6[6] = {0, NAN, 0, 2, 0, -INFINITY};
    const double dyv[6] = {1, 1, 1, 1, NAN, 1};
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            bgeom g;
            bgeom_of(&cs[k], &g);
            const double *bv = k ? bv6 : bv3;
            clg_tensor *a = nan_tensor(ctx, dt, 2, cs[k].as, av), *b = nan_tensor(ctx, dt, cs[k].bn, cs[k].bs, bv);
            clg_tensor *dy = nan_tensor(ctx, dt, 2, cs[k].as, dyv);
            REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
            REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
            for (int op = 0; op < 4; op++) {
                double wy[6], wa[6], wb[6], ma[6], mb[6];
                ref_bin(op, &g, av, bv, dyv, wy, wa, wb, ma, mb);
                clg_tensor *y = NULL;
                REF_OK(ctx, call_bin(ctx, op, a, b, &y));
                clg_tensor_zero_grad(a), clg_tensor_zero_grad(b);
                REF_OK(ctx, clg_backward_grad(ctx, y, dy));
                char what[96];
                snprintf(what, sizeof what, "%s %s forward", OP_NAME[op], cs[k].name);
                nan_expect(y, wy, 6, nan_rtol(dt), 0, what, dt);
                snprintf(what, sizeof what, "%s %s da", OP_NAME[op], cs[k].name);
                nan_expect(clg_tensor_grad(a), wa, g.na, nan_rtol(dt), 0, what, dt);
                snprintf(what, sizeof what, "%s %s db", OP_NAME[op], cs[k].name);
                nan_expect(clg_tensor_grad(b), wb, g.nb, nan_rtol(dt), 0, what, dt);
                clg_tensor_free(y);
            }
            clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(dy);
        }
}

/* torch.add/sub/mul/div on the fixture's cases (f64): y, and the gradients of sum(y * r)
 * within the sum bound of assert_sum_close (torch sums in another order). */
static void test_pytorch_fixtures(void **state) {
    clg_context *ctx = *state;
    static const char *const names[] = {"nchw_c11", "nchw_1", "n1h1_1c1w", "c11_nchw", "row_3x5", "same"};
    clg_st_file f;
    ref_fixture_open(&f, "eltwise.safetensors");
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const bcase *c = NULL;
        for (size_t ci = 0; ci < N_BCASES; ci++)
            if (!strcmp(bcases[ci].name, names[k])) c = &bcases[ci];
        assert_non_null(c);
        bgeom g;
        bgeom_of(c, &g);
        char name[96];
        snprintf(name, sizeof name, "%s.a", c->name);
        clg_tensor *a = ref_fixture_tensor(ctx, &f, name);
        snprintf(name, sizeof name, "%s.b", c->name);
        clg_tensor *b = ref_fixture_tensor(ctx, &f, name);
        snprintf(name, sizeof name, "%s.r", c->name);
        clg_tensor *r = ref_fixture_tensor(ctx, &f, name);
        REF_OK(ctx, clg_tensor_set_requires_grad(a, true));
        REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
        double *ah = ref_to_host_f64(a), *bh = ref_to_host_f64(b), *rh = ref_to_host_f64(r);
        double *wy = malloc(g.ny * sizeof *wy), *wa = malloc(g.na * sizeof *wa), *wb = malloc(g.nb * sizeof *wb);
        double *ma = malloc(g.na * sizeof *ma), *mb = malloc(g.nb * sizeof *mb), *my = malloc(g.ny * sizeof *my);
        assert_true(wy && wa && wb && ma && mb && my);
        for (int op = 0; op < 4; op++) {
            ref_bin(op, &g, ah, bh, rh, wy, wa, wb, ma, mb); /* only the magnitudes are used */
            for (size_t i = 0; i < g.ny; i++)
                my[i] = fabs(wy[i]);
            clg_tensor *y = NULL;
            REF_OK(ctx, call_bin(ctx, op, a, b, &y));
            clg_tensor_zero_grad(a), clg_tensor_zero_grad(b);
            REF_OK(ctx, clg_backward_grad(ctx, y, r));
            static const char *const parts[3] = {"y", "da", "db"};
            const clg_tensor *got_t[3] = {y, clg_tensor_grad(a), clg_tensor_grad(b)};
            const double *mag[3] = {my, ma, mb};
            const size_t terms[3] = {0, g.ny / g.na, g.ny / g.nb};
            for (int p = 0; p < 3; p++) {
                snprintf(name, sizeof name, "%s.%s.%s", OP_NAME[op], c->name, parts[p]);
                size_t n = 0;
                double *want = ref_fixture_f64(&f, name, &n), *got = ref_to_host_f64(got_t[p]);
                assert_int_equal(n, clg_tensor_numel(got_t[p]));
                char what[128];
                snprintf(what, sizeof what, "%s vs PyTorch", name);
                /* PyTorch's own f64 rounding: one more term's worth in the bound */
                assert_sum_close(got, want, mag[p], n, terms[p] + 1, DBL_EPSILON, what);
                free(want), free(got);
            }
            clg_tensor_free(y);
        }
        free(ah), free(bh), free(rh), free(wy), free(wa), free(wb), free(ma), free(mb), free(my);
        clg_tensor_free(a), clg_tensor_free(b), clg_tensor_free(r);
    }
    clg_st_file_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_f32),    cmocka_unit_test(test_forward_f64),
        cmocka_unit_test(test_gradcheck),      cmocka_unit_test(test_square_grad_values),
        cmocka_unit_test(test_accumulate_f32), cmocka_unit_test(test_accumulate_f64),
        cmocka_unit_test(test_no_record),      cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nan),            cmocka_unit_test(test_broadcast_f32),
        cmocka_unit_test(test_broadcast_f64),  cmocka_unit_test(test_broadcast_gradcheck),
        cmocka_unit_test(test_broadcast_accumulate_f32), cmocka_unit_test(test_broadcast_accumulate_f64),
        cmocka_unit_test(test_nan_broadcast),  cmocka_unit_test(test_pytorch_fixtures),
    };
    return REF_RUN_BOTH_STYLES("eltwise", tests);
}
