/* tests/ops/test_reduce.c - clg_sum, clg_mean, clg_var, clg_std, clg_max and clg_argmax
 * (src/ops/reduce.c, cl/ops/reduce.cl): forward and backward against the host reference below
 * on 1- to 4-D shapes and many dim/keepdim combinations, within error bounds that follow from
 * the kernels' summation order; the f32 sum bit for bit against that order emulated on the
 * host; mean and var of a million f32 values; f64 finite differences; the beta contract; NaN,
 * ties and infinities; PyTorch fixtures (tests/fixtures/reduce.safetensors); bad input. Both
 * kernel styles.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nan_test.h"
#include "ops/op.h"
#include "ref.h"
#include "ref_ops.h"
#include "ref_style.h"

/* The kernels' block of in-order summation (cl/ops/reduce.cl RBLOCK). */
#define RBLOCK 64

enum { K_SUM, K_MEAN, K_VAR, K_STD, K_MAX, K_ARGMAX, K_COUNT };
static const char *const kind_names[K_COUNT] = {"sum", "mean", "var", "std", "max", "argmax"};

/* ---------------------------------------------------------------- host reference */

/* The reduction worked out on the host, independently of the library's folding of dims: for
 * every x element, its output o and its place r in that output's set (row-major over the
 * reduced dims), and the result's shape. */
typedef struct plan {
    size_t n, outs, m;
    size_t *o, *r;
    int yndim, yshape[4];
} plan;

static void plan_make(int ndim, const int *shape, int ndims, const int *dims, bool keepdim, plan *p) {
    bool red[4] = {false};
    for (int i = 0; i < ndims; i++)
        red[dims[i] < 0 ? dims[i] + ndim : dims[i]] = true;
    for (int d = 0; ndims == 0 && d < ndim; d++)
        red[d] = true;
    p->n = 1, p->outs = 1, p->m = 1, p->yndim = 0;
    for (int d = 0; d < ndim; d++) {
        p->n *= (size_t)shape[d];
        *(red[d] ? &p->m : &p->outs) *= (size_t)shape[d];
        if (!red[d] || keepdim) p->yshape[p->yndim++] = red[d] ? 1 : shape[d];
    }
    if (p->yndim == 0) p->yshape[p->yndim++] = 1;
    p->o = malloc(p->n * sizeof *p->o);
    p->r = malloc(p->n * sizeof *p->r);
    assert_true(p->o && p->r);
    for (size_t i = 0; i < p->n; i++) {
        size_t rest = i, o = 0, r = 0, ko = 1, kr = 1;
        for (int d = ndim - 1; d >= 0; d--) {
            const size_t c = rest % (size_t)shape[d];
            rest /= (size_t)shape[d];
            if (red[d])
                r += c * kr, kr *= (size_t)shape[d];
            else
                o += c * ko, ko *= (size_t)shape[d];
        }
        p->o[i] = o, p->r[i] = r;
    }
}

static void plan_free(plan *p) { free(p->o), free(p->r); }

/* The unit roundoff of dt and the kernels' rounding factor for a set of m: RBLOCK - 1 in-order
 * additions per block, ceil(log2(blocks)) tree levels, and 2 to spare for the second order. */
static double unit(clg_dtype dt) { return dt == CLG_F64 ? DBL_EPSILON / 2 : FLT_EPSILON / 2; }
static double sum_levels(size_t m) {
    const size_t blocks = (m + RBLOCK - 1) / RBLOCK;
    int lv = 0;
    while (((size_t)1 << lv) < blocks)
        lv++;
    return RBLOCK + lv + 1;
}

/* True when (v, r) comes before (bv, br) as the maximum: NaN first, then larger, then the
 * smaller r (PyTorch's first maximum). */
static bool max_before(double v, size_t r, double bv, size_t br) {
    if (isnan(v) != isnan(bv)) return isnan(v);
    if (isnan(v) || v == bv) return r < br;
    return v > bv;
}

/* Each output's statistics in long double, and the bounds of the kernels' errors (IEEE
 * arithmetic: a NaN in a set makes its results NaN, so their bounds do not matter). */
typedef struct stats {
    double *sum, *mean, *var, *std, *max;
    size_t *arg;                            /* the first maximum's r */
    double *b_sum, *b_mean, *b_var, *b_std; /* error bounds */
    double *dof;
} stats;

static void stats_make(const plan *p, const double *x, int correction, clg_dtype dt, stats *s) {
    const size_t no = p->outs;
    double **all[] = {&s->sum,   &s->mean,   &s->var,   &s->std,   &s->max,
                      &s->b_sum, &s->b_mean, &s->b_var, &s->b_std, &s->dof};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        assert_non_null(*all[i] = calloc(no, sizeof(double)));
    assert_non_null(s->arg = calloc(no, sizeof *s->arg));
    long double *acc = calloc(no, sizeof *acc), *absacc = calloc(no, sizeof *absacc);
    assert_true(acc && absacc);
    bool *seen = calloc(no, sizeof *seen);
    assert_non_null(seen);
    for (size_t i = 0; i < p->n; i++) {
        const size_t o = p->o[i];
        acc[o] += x[i], absacc[o] += fabs(x[i]);
        if (!seen[o] || max_before(x[i], p->r[i], s->max[o], s->arg[o]))
            s->max[o] = x[i], s->arg[o] = p->r[i];
        seen[o] = true;
    }
    const double u = unit(dt), k = sum_levels(p->m), m = (double)p->m;
    for (size_t o = 0; o < no; o++) {
        s->sum[o] = (double)acc[o];
        s->mean[o] = (double)(acc[o] / m);
        s->b_sum[o] = k * u * (double)absacc[o];
        s->b_mean[o] = s->b_sum[o] / m + 3 * u * fabs(s->mean[o]); /* OpenCL divides to 2.5 ulp */
        acc[o] = 0;
    }
    for (size_t i = 0; i < p->n; i++) {
        const long double d = x[i] - (long double)s->mean[p->o[i]];
        acc[p->o[i]] += d * d;
    }
    const long long dof = (long long)p->m - correction;
    for (size_t o = 0; o < no; o++) {
        s->dof[o] = dof > 0 ? (double)dof : 0.0;
        s->var[o] = (double)(acc[o] / s->dof[o]);
        s->std[o] = sqrt(s->var[o]);
        /* The mean off by delta adds m delta^2 to the squares; each square rounds ~3 times. */
        const double delta = s->b_mean[o], sq = (double)acc[o] + m * delta * delta;
        s->b_var[o] = (m * delta * delta + (k + 3) * u * sq) / s->dof[o] + 3 * u * fabs(s->var[o]);
        s->b_std[o] =
            sqrt(s->var[o] + s->b_var[o]) - sqrt(fmax(s->var[o] - s->b_var[o], 0)) + 3 * u * s->std[o];
    }
    free(acc), free(absacc), free(seen);
}

static void stats_free(stats *s) {
    double *all[] = {s->sum,   s->mean,   s->var,   s->std,   s->max,
                     s->b_sum, s->b_mean, s->b_var, s->b_std, s->dof};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(s->arg);
}

/* The forward result of kind and its bound, per output. */
static void ref_forward(int kind, const plan *p, const stats *s, double *y, double *bound) {
    for (size_t o = 0; o < p->outs; o++) {
        const double v[K_COUNT] = {s->sum[o], s->mean[o], s->var[o], s->std[o], s->max[o], (double)s->arg[o]};
        const double b[K_COUNT] = {s->b_sum[o], s->b_mean[o], s->b_var[o], s->b_std[o], 0, 0};
        y[o] = v[kind], bound[o] = b[kind];
    }
}

/* dx for upstream dy, as PyTorch: dy (sum), dy / m (mean), (2 / dof) g (x - mean) with g = dy
 * (var) or dy / (2 std), 0 where std is 0 (std), dy at the first maximum (max); and bounds. */
static void ref_backward(int kind, const plan *p, const stats *s, const double *x, const double *dy,
                         clg_dtype dt, double *dx, double *bound) {
    const double u = unit(dt), m = (double)p->m;
    for (size_t i = 0; i < p->n; i++) {
        const size_t o = p->o[i];
        const double dev = x[i] - s->mean[o], delta = s->b_mean[o];
        switch (kind) {
        case K_SUM:
            dx[i] = dy[o], bound[i] = 0;
            break;
        case K_MEAN:
            dx[i] = dy[o] / m, bound[i] = 3 * u * fabs(dx[i]);
            break;
        case K_VAR:
            dx[i] = 2 / s->dof[o] * dy[o] * dev;
            bound[i] = fabs(2 / s->dof[o] * dy[o]) * (delta + 8 * u * (fabs(dev) + delta));
            break;
        case K_STD: {
            const double g = s->std[o] == 0 ? 0 : dy[o] / (2 * s->std[o]);
            const double e = s->std[o] == 0 ? 0 : s->b_std[o] / s->std[o] + 4 * u; /* g's relative error */
            dx[i] = 2 / s->dof[o] * g * dev;
            bound[i] = fabs(2 / s->dof[o] * g) *
                       (e / (1 - e) * fabs(dev) + (1 + 2 * e) * (delta + 8 * u * (fabs(dev) + delta)));
            break;
        }
        case K_MAX:
            dx[i] = p->r[i] == s->arg[o] ? dy[o] : 0, bound[i] = 0;
            break;
        default:
            fail_msg("no backward for %s", kind_names[kind]);
        }
    }
}

/* got must be NaN exactly where want is, the same infinity where want is one, and within
 * bound (scaled 1.01 for second-order terms) elsewhere. */
static void expect_within(const double *got, const double *want, const double *bound, size_t n,
                          const char *what) {
    for (size_t i = 0; i < n; i++) {
        const bool ok = isnan(want[i])   ? isnan(got[i])
                        : isinf(want[i]) ? got[i] == want[i]
                                         : fabs(got[i] - want[i]) <= 1.01 * bound[i] + DBL_MIN;
        if (!ok)
            fail_msg("%s: [%zu] got %.17g, want %.17g (bound %.3g, off by %.3g)", what, i, got[i], want[i],
                     1.01 * bound[i], fabs(got[i] - want[i]));
    }
}

/* ---------------------------------------------------------------- cases */

typedef struct rcase {
    int ndim, shape[4];
    int ndims, dims[4];
} rcase;

/* Every dim set of 1- to 4-D shapes that folds differently: leading, middle, trailing and
 * interleaved dims ({0, 2, 3} of (N, C, H, W) is batch norm's), negative dims, size-1 dims,
 * all dims; and sets long enough for many blocks and a two-level tree. */
static const rcase cases[] = {
    {1, {7}, 0, {0}},
    {1, {7}, 1, {0}},
    {1, {700}, 1, {-1}},
    {2, {3, 5}, 1, {0}},
    {2, {3, 5}, 1, {1}},
    {2, {3, 5}, 2, {1, 0}},
    {2, {3, 300}, 1, {-1}},
    {2, {130, 3}, 1, {0}},
    {3, {2, 3, 4}, 1, {1}},
    {3, {2, 3, 4}, 2, {0, 2}},
    {3, {2, 3, 4}, 2, {-1, -2}},
    {3, {2, 3, 4}, 2, {0, 1}},
    {3, {2, 50, 41}, 2, {0, 2}},
    {4, {2, 3, 4, 5}, 3, {0, 2, 3}},
    {4, {2, 3, 4, 5}, 1, {1}},
    {4, {2, 3, 4, 5}, 1, {0}},
    {4, {2, 3, 4, 5}, 1, {3}},
    {4, {2, 3, 4, 5}, 2, {1, 3}},
    {4, {2, 3, 4, 5}, 2, {-4, -2}},
    {4, {2, 3, 4, 5}, 0, {0}},
    {4, {2, 3, 4, 5}, 4, {3, 2, 1, 0}},
    {4, {2, 1, 3, 1}, 1, {1}},
    {4, {2, 1, 3, 1}, 2, {0, 2}},
    {4, {2, 1, 3, 1}, 2, {0, 1}},
    {4, {4, 3, 33, 17}, 3, {0, 2, 3}},
    {4, {1, 2, 130, 131}, 2, {2, 3}},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static const char *case_name(const rcase *c, bool keepdim, char *buf, size_t len) {
    int w = snprintf(buf, len, "(");
    for (int d = 0; d < c->ndim; d++)
        w += snprintf(buf + w, len - (size_t)w, d ? ", %d" : "%d", c->shape[d]);
    w += snprintf(buf + w, len - (size_t)w, ") dims {");
    for (int d = 0; d < c->ndims; d++)
        w += snprintf(buf + w, len - (size_t)w, d ? ", %d" : "%d", c->dims[d]);
    snprintf(buf + w, len - (size_t)w, "}%s", keepdim ? " keepdim" : "");
    return buf;
}

/* Runs kind on x through the public API (argmax takes the case's one dim). */
static clg_status run_kind(clg_context *ctx, int kind, const clg_tensor *x, const rcase *c, bool keepdim,
                           int correction, clg_tensor **y) {
    switch (kind) {
    case K_SUM:
        return clg_sum(ctx, x, c->ndims, c->ndims ? c->dims : NULL, keepdim, y);
    case K_MEAN:
        return clg_mean(ctx, x, c->ndims, c->ndims ? c->dims : NULL, keepdim, y);
    case K_VAR:
        return clg_var(ctx, x, c->ndims, c->ndims ? c->dims : NULL, keepdim, correction, y);
    case K_STD:
        return clg_std(ctx, x, c->ndims, c->ndims ? c->dims : NULL, keepdim, correction, y);
    case K_MAX:
        return clg_max(ctx, x, c->ndims, c->ndims ? c->dims : NULL, keepdim, y);
    default:
        return clg_argmax(ctx, x, c->dims[0], keepdim, y);
    }
}

/* A tensor of dt holding v exactly (v came from dt, or holds NaN/inf). */
static clg_tensor *tensor_of(clg_context *ctx, clg_dtype dt, int ndim, const int *shape, const double *v) {
    return nan_tensor(ctx, dt, ndim, shape, v);
}

/* Forward, shape and backward of kind on x (host values xh) against the reference. */
static void check_kind(clg_context *ctx, int kind, const rcase *c, bool keepdim, int correction, clg_dtype dt,
                       const double *xh, const double *dyh, const char *label) {
    plan p;
    plan_make(c->ndim, c->shape, kind == K_ARGMAX ? 1 : c->ndims, c->dims, keepdim, &p);
    stats s;
    stats_make(&p, xh, correction, dt, &s);
    char nm[96], what[256];
    case_name(c, keepdim, nm, sizeof nm);
    clg_tensor *x = tensor_of(ctx, dt, c->ndim, c->shape, xh), *y = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    REF_OK(ctx, run_kind(ctx, kind, x, c, keepdim, correction, &y));
    snprintf(what, sizeof what, "%s %s %s%s forward", kind_names[kind], nm, clg_dtype_name(dt), label);
    assert_int_equal(clg_tensor_ndim(y), p.yndim);
    if (memcmp(clg_tensor_shape(y), p.yshape, (size_t)p.yndim * sizeof(int)) != 0)
        fail_msg("%s: wrong result shape", what);
    assert_true(clg_tensor_dtype(y) == dt);
    double *yh = ref_to_host_f64(y), *yw = malloc(p.outs * sizeof *yw), *yb = malloc(p.outs * sizeof *yb);
    assert_true(yw && yb);
    ref_forward(kind, &p, &s, yw, yb);
    expect_within(yh, yw, yb, p.outs, what);
    if (kind == K_ARGMAX) {
        assert_null(y->grad_fn); /* no gradient: nothing recorded */
    } else {
        clg_tensor *dy = tensor_of(ctx, dt, p.yndim, p.yshape, dyh);
        REF_OK(ctx, clg_backward_grad(ctx, y, dy));
        double *dxh = ref_to_host_f64(clg_tensor_grad(x)), *dxw = malloc(p.n * sizeof *dxw),
               *dxb = malloc(p.n * sizeof *dxb);
        assert_true(dxw && dxb);
        ref_backward(kind, &p, &s, xh, dyh, dt, dxw, dxb);
        snprintf(what, sizeof what, "%s %s %s%s backward", kind_names[kind], nm, clg_dtype_name(dt), label);
        expect_within(dxh, dxw, dxb, p.n, what);
        free(dxh), free(dxw), free(dxb);
        clg_tensor_free(dy);
    }
    free(yh), free(yw), free(yb);
    clg_tensor_free(y);
    clg_tensor_free(x);
    stats_free(&s);
    plan_free(&p);
}

/* Random values of dt in [lo, hi] as doubles (exactly representable in dt). */
static double *rand_values(clg_context *ctx, clg_dtype dt, size_t n, uint64_t seed, double lo, double hi) {
    const int s = (int)n;
    clg_tensor *t = ref_rand(ctx, dt, 1, &s, seed, lo, hi);
    double *v = ref_to_host_f64(t);
    clg_tensor_free(t);
    return v;
}

static size_t case_numel(const rcase *c) {
    size_t n = 1;
    for (int d = 0; d < c->ndim; d++)
        n *= (size_t)c->shape[d];
    return n;
}

static void test_vs_ref(void **state) {
    clg_context *ctx = *state;
    for (size_t ci = 0; ci < N_CASES; ci++)
        for (int d = 0; d < 2; d++)
            for (int keep = 0; keep < 2; keep++) {
                const clg_dtype dt = d ? CLG_F64 : CLG_F32;
                const rcase *c = &cases[ci];
                const size_t n = case_numel(c);
                double *xh = rand_values(ctx, dt, n, 100 + ci, -2, 2),
                       *dyh = rand_values(ctx, dt, n, 200 + ci, -1, 1);
                for (int kind = 0; kind < K_COUNT; kind++) {
                    if (kind == K_ARGMAX && c->ndims != 1) continue;
                    check_kind(ctx, kind, c, keep, 1, dt, xh, dyh, "");
                    if (kind == K_VAR || kind == K_STD)
                        check_kind(ctx, kind, c, keep, 0, dt, xh, dyh, " correction 0");
                }
                free(xh), free(dyh);
            }
}

/* ---------------------------------------------------------------- summation order */

/* The kernels' order for one set v[0..m): in-order blocks of RBLOCK, the block sums added as
 * the aligned pairwise tree (cl/ops/reduce.cl), in float. */
static float canonical_sum(const float *v, size_t m) {
    float stack[64];
    int depth = 0;
    const size_t blocks = (m + RBLOCK - 1) / RBLOCK;
    for (size_t b = 0; b < blocks; b++) {
        float s = 0;
        for (size_t j = b * RBLOCK; j < m && j < (b + 1) * RBLOCK; j++)
            s += v[j];
        for (size_t c = b + 1; (c & 1) == 0; c >>= 1)
            s = stack[--depth] + s;
        stack[depth++] = s;
    }
    float t = stack[--depth];
    while (depth > 0)
        t = stack[--depth] + t;
    return t;
}

/* The f32 sum is that order bit for bit, in both styles and whatever work-group size the
 * GPU form picks for the set's length (from 1 item to the device's most, with 1 to many
 * blocks per item). The same data summed in one running sum differs somewhere, so the test
 * can tell the orders apart. */
static void test_summation_order(void **state) {
    clg_context *ctx = *state;
    static const rcase orders[] = {
        {2, {5, 64}, 1, {1}},     {2, {3, 65}, 1, {1}},
        {2, {2, 1000}, 1, {1}},   {1, {70001}, 0, {0}},
        {2, {300, 3}, 1, {0}},    {3, {4, 77, 9}, 2, {0, 2}},
        {2, {2, 40000}, 1, {-1}}, {4, {3, 2, 150, 151}, 3, {0, 2, 3}},
    };
    bool any_differs = false;
    for (size_t ci = 0; ci < sizeof orders / sizeof orders[0]; ci++) {
        const rcase *c = &orders[ci];
        plan p;
        plan_make(c->ndim, c->shape, c->ndims, c->dims, false, &p);
        double *xh = rand_values(ctx, CLG_F32, p.n, 300 + ci, -1, 1);
        clg_tensor *x = tensor_of(ctx, CLG_F32, c->ndim, c->shape, xh), *y = NULL;
        REF_OK(ctx, clg_sum(ctx, x, c->ndims, c->ndims ? c->dims : NULL, false, &y));
        float *got = malloc(p.outs * sizeof *got), *set = malloc(p.outs * p.m * sizeof *set);
        assert_true(got && set);
        REF_OK(ctx, clg_tensor_to_host(y, got, p.outs * sizeof *got));
        for (size_t i = 0; i < p.n; i++)
            set[p.o[i] * p.m + p.r[i]] = (float)xh[i];
        for (size_t o = 0; o < p.outs; o++) {
            const float want = canonical_sum(set + o * p.m, p.m);
            if (memcmp(&got[o], &want, sizeof want) != 0) {
                char nm[96];
                fail_msg("sum %s: output %zu is %.9g, the canonical order gives %.9g",
                         case_name(c, false, nm, sizeof nm), o, got[o], want);
            }
            float running = 0;
            for (size_t j = 0; j < p.m; j++)
                running += set[o * p.m + j];
            any_differs |= running != want;
        }
        free(got), free(set), free(xh);
        clg_tensor_free(y), clg_tensor_free(x);
        plan_free(&p);
    }
    assert_true(any_differs);
}

/* Mean and var (two-pass) of about a million f32 values in [999, 1001], over all dims and
 * over batch norm's {0, 2, 3}, within the bounds of the blocked order. One running f32 sum
 * misses this mean by ~9e-3 relative (the order's emulation: 8e-9), far past the bounds, and
 * E[x^2] - E[x]^2 would subtract two numbers near 1e6 whose f32 spacing (0.06) is a fifth of
 * this variance. */
static void test_million(void **state) {
    clg_context *ctx = *state;
    static const rcase big[] = {{1, {1000003}, 0, {0}}, {4, {16, 4, 128, 128}, 3, {0, 2, 3}}};
    for (size_t ci = 0; ci < 2; ci++) {
        const rcase *c = &big[ci];
        const size_t n = case_numel(c);
        double *xh = rand_values(ctx, CLG_F32, n, 77 + ci, 999, 1001),
               *dyh = rand_values(ctx, CLG_F32, 4, 5, -1, 1);
        check_kind(ctx, K_MEAN, c, false, 1, CLG_F32, xh, dyh, " (a million)");
        check_kind(ctx, K_VAR, c, false, 1, CLG_F32, xh, dyh, " (a million)");
        check_kind(ctx, K_STD, c, true, 0, CLG_F32, xh, dyh, " (a million)");
        free(xh), free(dyh);
    }
}

/* ---------------------------------------------------------------- gradients */

typedef struct gc_user {
    int kind, correction;
    const rcase *c;
    bool keepdim;
} gc_user;

static clg_status gc_reduce(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    const gc_user *u = user;
    return run_kind(ctx, u->kind, in[0], u->c, u->keepdim, u->correction, y);
}

/* f64 central differences of every op on a few dim sets. sum, mean and var are polynomials
 * of degree <= 2 (central differences exact up to rounding), std smooth away from 0, max
 * linear between ties (random values have none within the step). */
static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    static const size_t picks[] = {1, 5, 9, 13, 14, 19, 22};
    for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++)
        for (int kind = 0; kind < K_ARGMAX; kind++) {
            const rcase *c = &cases[picks[i]];
            gc_user u = {kind, kind == K_VAR ? (int)i % 2 : 1, c, i % 2 == 0};
            clg_tensor *x = ref_rand_f64(ctx, c->ndim, c->shape, 40 + i, -1, 1);
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            char nm[96], what[160];
            snprintf(what, sizeof what, "%s %s gradcheck", kind_names[kind],
                     case_name(c, u.keepdim, nm, sizeof nm));
            ref_gradcheck(ctx, gc_reduce, &x, 1, &u, 1e-6, 1e-7, what);
            clg_tensor_free(x);
        }
}

/* beta = 0 overwrites (even NaN), beta = 1 after it gives exactly twice. */
static void test_accumulate(void **state) {
    clg_context *ctx = *state;
    static const size_t picks[] = {0, 6, 13, 18, 24};
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++)
            for (int kind = 0; kind < K_ARGMAX; kind++) {
                const clg_dtype dt = d ? CLG_F64 : CLG_F32;
                const rcase *c = &cases[picks[i]];
                clg_tensor *x = ref_rand(ctx, dt, c->ndim, c->shape, 60 + i, -1, 1), *y = NULL;
                REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
                REF_OK(ctx, run_kind(ctx, kind, x, c, i % 2, 1, &y));
                char nm[96], what[160];
                snprintf(what, sizeof what, "%s %s %s", kind_names[kind], case_name(c, i % 2, nm, sizeof nm),
                         clg_dtype_name(dt));
                ref_check_accumulate(ctx, y, &x, 1, what);
                clg_tensor_free(y);
                clg_tensor_free(x);
            }
}

/* ---------------------------------------------------------------- NaN, ties, infinities */

/* NaN in x makes exactly the sets that hold it NaN (sum, mean, var, std, max), and max's
 * gradient and argmax go to the set's first NaN; NaN in dy reaches all of a sum's set but only
 * the maximum of a max's. As PyTorch. */
static void test_nan(void **state) {
    clg_context *ctx = *state;
    static const size_t picks[] = {1, 4, 9, 13, 14, 15, 20};
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            const rcase *c = &cases[picks[i]];
            const size_t n = case_numel(c);
            double *xh = rand_values(ctx, dt, n, 500 + i, -2, 2),
                   *dyh = rand_values(ctx, dt, n, 600 + i, -1, 1);
            for (size_t j = 3; j < n; j += 7)
                xh[j] = NAN;
            xh[n - 1] = NAN; /* after a NaN of the same set: the first one still wins */
            dyh[0] = NAN;
            for (int kind = 0; kind < K_COUNT; kind++) {
                if (kind == K_ARGMAX && c->ndims != 1) continue;
                check_kind(ctx, kind, c, i % 2, 1, dt, xh, dyh, " with NaN");
            }
            free(xh), free(dyh);
        }
}

/* Tied maxima: the value is theirs, the gradient and the index go to the first in row-major
 * order of the reduced set only (torch.max(x, dim) and torch.argmax). Also -inf everywhere
 * (the first element), +inf ties, and a constant set, whose std (exactly 0) has a zero
 * gradient, as PyTorch. */
static void test_ties_and_inf(void **state) {
    clg_context *ctx = *state;
    const int s[3] = {2, 3, 4};
    const double ties[24] = {1, 5, 5, 0, 5, 2, 5, 5, -1, -1, -1, -1, /* n = 0 */
                             3, 3, 3, 3, 2, 7, 1, 7, 7,  0,  7,  7}; /* n = 1 */
    const double infs[24] = {
        -INFINITY, -INFINITY, -INFINITY, -INFINITY, INFINITY, 1,        INFINITY, 0,        2, 2, 2, 2,
        -INFINITY, -INFINITY, -INFINITY, -INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, 4, 4, 4, 4};
    const double *vals[2] = {ties, infs};
    static const rcase dimsets[] = {{3, {2, 3, 4}, 1, {2}},
                                    {3, {2, 3, 4}, 1, {1}},
                                    {3, {2, 3, 4}, 2, {0, 2}},
                                    {3, {2, 3, 4}, 0, {0}},
                                    {3, {2, 3, 4}, 1, {0}}};
    for (int d = 0; d < 2; d++)
        for (int v = 0; v < 2; v++)
            for (size_t k = 0; k < sizeof dimsets / sizeof dimsets[0]; k++) {
                const clg_dtype dt = d ? CLG_F64 : CLG_F32;
                double dyh[24];
                for (int j = 0; j < 24; j++)
                    dyh[j] = 1 + j; /* distinct, so a gradient in the wrong place shows */
                const char *label = v ? " inf" : " ties";
                check_kind(ctx, K_MAX, &dimsets[k], k % 2, 1, dt, vals[v], dyh, label);
                if (dimsets[k].ndims == 1)
                    check_kind(ctx, K_ARGMAX, &dimsets[k], k % 2, 1, dt, vals[v], dyh, label);
                if (v == 0) check_kind(ctx, K_STD, &dimsets[k], false, 1, dt, vals[v], dyh, label);
            }
    /* the constant rows -1 and 3 (dim 2): std exactly 0 and a zero gradient */
    clg_tensor *x = tensor_of(ctx, CLG_F64, 3, s, ties), *y = NULL, *dy = NULL;
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    const int d2 = 2;
    REF_OK(ctx, clg_std(ctx, x, 1, &d2, false, 1, &y));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F64, 2, clg_tensor_shape(y), &dy));
    REF_OK(ctx, clg_tensor_fill(dy, 1));
    REF_OK(ctx, clg_backward_grad(ctx, y, dy));
    double *yh = ref_to_host_f64(y), *g = ref_to_host_f64(clg_tensor_grad(x));
    assert_true(yh[2] == 0 && yh[3] == 0);
    for (int j = 0; j < 4; j++)
        assert_true(g[8 + j] == 0 && g[12 + j] == 0);
    free(yh), free(g);
    clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(x);
}

/* var with correction >= the set size divides by max(0, m - correction) = 0: NaN for a
 * constant set, inf otherwise (PyTorch's forward); correction -1 divides by m + 1. */
static void test_correction_edges(void **state) {
    clg_context *ctx = *state;
    const int s[2] = {2, 3};
    const double x[6] = {1, 1, 1, 1, 2, 3};
    clg_tensor *t = tensor_of(ctx, CLG_F64, 2, s, x), *y = NULL;
    const int d1 = 1;
    const int corr[3] = {3, 5, -1};
    const double want[3][2] = {{NAN, INFINITY}, {NAN, INFINITY}, {0, 0.5}};
    for (int k = 0; k < 3; k++) {
        REF_OK(ctx, clg_var(ctx, t, 1, &d1, false, corr[k], &y));
        double *yh = ref_to_host_f64(y);
        char what[64];
        snprintf(what, sizeof what, "var correction %d", corr[k]);
        const double bound[2] = {1e-15, 1e-15};
        expect_within(yh, want[k], bound, 2, what);
        free(yh);
        clg_tensor_free(y);
    }
    clg_tensor_free(t);
}

/* ---------------------------------------------------------------- PyTorch */

typedef struct fixture_case {
    const char *name;
    int kind, ndims, dims[4];
    bool keepdim;
    int correction;
} fixture_case;

/* The named fixture entry against got: NaN where it has NaN, within atol elsewhere. */
static void expect_fixture(const clg_st_file *f, const char *name, const clg_tensor *got, double atol) {
    size_t n = 0;
    double *want = ref_fixture_f64(f, name, &n), *g = ref_to_host_f64(got),
           *bound = malloc(n * sizeof *bound);
    assert_non_null(bound);
    assert_int_equal(clg_tensor_numel(got), n);
    for (size_t i = 0; i < n; i++)
        bound[i] = atol;
    char what[128];
    snprintf(what, sizeof what, "%s vs PyTorch", name);
    expect_within(g, want, bound, n, what);
    free(want), free(g), free(bound);
}

/* torch.sum/mean/var/std/max(x, dim)/amax/argmax (tests/fixtures/make_reduce_fixtures.py):
 * y and d sum(y * r) / dx, f64. The tolerance is the f64 sum bound over the whole of x (twice:
 * PyTorch's order has its own rounding), far below any semantic difference. */
static void test_pytorch_fixtures(void **state) {
    clg_context *ctx = *state;
    static const fixture_case fx[] = {
        {"sum_0_2_3", K_SUM, 3, {0, 2, 3}, false, 0},   {"sum_n1_n3_keep", K_SUM, 2, {-1, -3}, true, 0},
        {"sum_all", K_SUM, 0, {0}, false, 0},           {"mean_1_keep", K_MEAN, 1, {1}, true, 0},
        {"mean_0_2_3", K_MEAN, 3, {0, 2, 3}, false, 0}, {"mean_all", K_MEAN, 0, {0}, false, 0},
        {"var_0_2_3", K_VAR, 3, {0, 2, 3}, false, 1},   {"var_n1_pop_keep", K_VAR, 1, {-1}, true, 0},
        {"var_all", K_VAR, 3, {0, 1, 2}, false, 1},     {"std_1_3", K_STD, 2, {1, 3}, false, 1},
        {"std_0_keep_pop", K_STD, 1, {0}, true, 0},     {"max_1", K_MAX, 1, {1}, false, 0},
        {"max_ties_2_keep", K_MAX, 1, {2}, true, 0},    {"max_ties_0", K_MAX, 1, {0}, false, 0},
        {"max_nan_1", K_MAX, 1, {1}, false, 0},         {"amax_0_2", K_MAX, 2, {0, 2}, false, 0},
        {"argmax_1", K_ARGMAX, 1, {1}, false, 0},       {"argmax_ties_n1_keep", K_ARGMAX, 1, {-1}, true, 0},
        {"argmax_nan_2", K_ARGMAX, 1, {2}, false, 0},
    };
    clg_st_file f;
    ref_fixture_open(&f, "reduce.safetensors");
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s.x", fx[i].name);
        clg_tensor *x = ref_fixture_tensor(ctx, &f, name), *y = NULL;
        double *xh = ref_to_host_f64(x), total = 0;
        for (size_t j = 0; j < clg_tensor_numel(x); j++)
            total += isnan(xh[j]) ? 0 : fabs(xh[j]) + xh[j] * xh[j];
        const double atol = 2 * sum_levels(clg_tensor_numel(x)) * unit(CLG_F64) * total;
        free(xh);
        rcase c = {clg_tensor_ndim(x), {0}, fx[i].ndims, {0}};
        memcpy(c.shape, clg_tensor_shape(x), (size_t)c.ndim * sizeof(int));
        memcpy(c.dims, fx[i].dims, sizeof c.dims);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, run_kind(ctx, fx[i].kind, x, &c, fx[i].keepdim, fx[i].correction, &y));
        snprintf(name, sizeof name, "%s.y", fx[i].name);
        expect_fixture(&f, name, y, atol);
        if (fx[i].kind != K_ARGMAX) {
            snprintf(name, sizeof name, "%s.r", fx[i].name);
            clg_tensor *r = ref_fixture_tensor(ctx, &f, name);
            REF_OK(ctx, clg_backward_grad(ctx, y, r));
            snprintf(name, sizeof name, "%s.dx", fx[i].name);
            expect_fixture(&f, name, clg_tensor_grad(x), atol);
            clg_tensor_free(r);
        }
        clg_tensor_free(y);
        clg_tensor_free(x);
    }
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- bad input */

static void expect_fail(clg_context *ctx, clg_status got, clg_status want, const char *needle) {
    if (got != want)
        fail_msg("expected %s, got %s (%s)", clg_status_name(want), clg_status_name(got),
                 clg_context_errmsg(ctx));
    if (!strstr(clg_context_errmsg(ctx), needle))
        fail_msg("error message \"%s\" does not mention \"%s\"", clg_context_errmsg(ctx), needle);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int s4[4] = {2, 3, 4, 5};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, s4, 9, -1, 1), *y = (clg_tensor *)1;
    const int d_bad[2] = {4, 0}, d_neg[1] = {-5}, d_twice[2] = {1, 1}, d_alias[2] = {1, -3},
              d_ok[2] = {0, -1};
    expect_fail(ctx, clg_sum(ctx, NULL, 0, NULL, false, &y), CLG_INVALID_ARGUMENT, "x");
    assert_null(y);
    expect_fail(ctx, clg_mean(ctx, x, 0, NULL, false, NULL), CLG_INVALID_ARGUMENT, "out");
    expect_fail(ctx, clg_sum(ctx, x, -1, d_ok, false, &y), CLG_INVALID_ARGUMENT, "dims");
    expect_fail(ctx, clg_sum(ctx, x, 5, d_ok, false, &y), CLG_INVALID_ARGUMENT, "dims");
    expect_fail(ctx, clg_var(ctx, x, 2, NULL, false, 1, &y), CLG_INVALID_ARGUMENT, "NULL");
    expect_fail(ctx, clg_max(ctx, x, 2, d_bad, false, &y), CLG_INVALID_ARGUMENT, "out of range");
    expect_fail(ctx, clg_std(ctx, x, 1, d_neg, true, 1, &y), CLG_INVALID_ARGUMENT, "out of range");
    expect_fail(ctx, clg_sum(ctx, x, 2, d_twice, false, &y), CLG_INVALID_ARGUMENT, "more than once");
    expect_fail(ctx, clg_mean(ctx, x, 2, d_alias, true, &y), CLG_INVALID_ARGUMENT, "more than once");
    expect_fail(ctx, clg_argmax(ctx, x, 4, false, &y), CLG_INVALID_ARGUMENT, "out of range");
    expect_fail(ctx, clg_argmax(ctx, x, -5, false, &y), CLG_INVALID_ARGUMENT, "out of range");
    expect_fail(ctx, clg_argmax(ctx, NULL, 0, false, &y), CLG_INVALID_ARGUMENT, "x");
    assert_null(y);
    assert_int_equal(clg_sum(NULL, x, 0, NULL, false, &y), CLG_INVALID_ARGUMENT);
    /* f32 cannot hold every index of a dim past 2^24: refused before any work (no kernel
     * reads the uninitialised buffer) */
    const int longdim = (1 << 24) + 2;
    clg_tensor *big = NULL;
    REF_OK(ctx, clg__tensor_new(ctx, CLG_F32, 1, &longdim, &big));
    expect_fail(ctx, clg_argmax(ctx, big, 0, false, &y), CLG_UNSUPPORTED, "2^24");
    assert_null(y);
    clg_tensor_free(big);
    /* the context still works */
    REF_OK(ctx, clg_sum(ctx, x, 2, d_ok, false, &y));
    assert_int_equal(clg_tensor_ndim(y), 2);
    clg_tensor_free(y);
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_ref),           cmocka_unit_test(test_summation_order),
        cmocka_unit_test(test_million),          cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_accumulate),       cmocka_unit_test(test_nan),
        cmocka_unit_test(test_ties_and_inf),     cmocka_unit_test(test_correction_edges),
        cmocka_unit_test(test_pytorch_fixtures), cmocka_unit_test(test_bad_input),
    };
    return REF_RUN_BOTH_STYLES("reduce", tests);
}
