/* tests/ops/test_split.c - clg_narrow, clg_split and clg_chunk (src/ops/split.c,
 * cl/ops/split.cl): every piece and x's gradient against the host reference below (copies:
 * exact), pieces used in another order or not at all (zeros in their slice, as PyTorch), f64
 * finite differences, the beta contract (0 and 1, and 0.5 through the general kernel), NaN
 * passing through both ways, chunk's sizes against torch.chunk, and bad input, in both kernel
 * styles; and torch.split / chunk / narrow's own pieces and gradients (make_copy_fixtures.py's
 * tests/fixtures/copy.safetensors: which slice a piece is, negative dims and starts), exact in
 * both dtypes.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nan_test.h"
#include "ops/op.h"
#include "ref.h"
#include "ref_ops.h"
#include "ref_style.h"

#define MAX_PIECES 5 /* at most CLG_CAT_MAX, so the pieces can be joined again for the gradcheck */

typedef struct split_case {
    int ndim, shape[4], dim, n, sizes[MAX_PIECES];
    const char *name;
} split_case;

static const split_case cases[] = {
    {4, {2, 5, 3, 4}, 1, 3, {2, 1, 2}, "channels"},
    {4, {3, 2, 3, 2}, 0, 2, {1, 2}, "batch"},
    {4, {2, 2, 3, 7}, -1, 3, {3, 3, 1}, "last dim, negative"},
    {2, {4, 9}, 1, 4, {1, 4, 2, 2}, "features"},
    {2, {6, 3}, -2, 5, {1, 1, 2, 1, 1}, "rows"},
    {1, {7}, 0, 2, {5, 2}, "1-D"},
    {3, {2, 6, 5}, -2, 1, {6}, "one piece: a copy"},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static size_t numel(const int *s, int nd) {
    size_t n = 1;
    for (int d = 0; d < nd; d++)
        n *= (size_t)s[d];
    return n;
}

/* x viewed as (outer, D, inner) around dim (already non-negative). */
static void view3(int ndim, const int *shape, int dim, size_t *outer, size_t *D, size_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < dim; d++)
        *outer *= (size_t)shape[d];
    for (int d = dim + 1; d < ndim; d++)
        *inner *= (size_t)shape[d];
    *D = (size_t)shape[dim];
}

/* The piece [off, off + len) along dim of x: y (outer, len, inner). */
static void ref_narrow(int ndim, const int *shape, int dim, int off, int len, const double *x, double *y) {
    size_t outer, D, inner;
    view3(ndim, shape, dim, &outer, &D, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < (size_t)len; j++)
            for (size_t k = 0; k < inner; k++)
                y[(o * len + j) * inner + k] = x[(o * D + (size_t)off + j) * inner + k];
}

/* The inverse: dy put into its slice of dx, the rest of dx untouched. */
static void ref_narrow_back(int ndim, const int *shape, int dim, int off, int len, const double *dy, double *dx) {
    size_t outer, D, inner;
    view3(ndim, shape, dim, &outer, &D, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t j = 0; j < (size_t)len; j++)
            for (size_t k = 0; k < inner; k++)
                dx[(o * D + (size_t)off + j) * inner + k] = dy[(o * len + j) * inner + k];
}

static int wrapped(int dim, int ndim) { return dim < 0 ? dim + ndim : dim; }

/* split, then each piece against the reference; backward through every piece but the second
 * (when there are three or more: it must leave zeros in its slice), one walk per piece, so the
 * first writes x's gradient (beta 0) and the others add to it (beta 1). With NaN in x and in
 * one dy: a copy carries it to exactly its place. */
static void run_case(clg_context *ctx, const split_case *c, clg_dtype dt, bool nan) {
    const int dim = wrapped(c->dim, c->ndim);
    const size_t nx = numel(c->shape, c->ndim);
    clg_tensor *x0 = ref_rand(ctx, dt, c->ndim, c->shape, 10, -1, 1);
    double *xh = ref_to_host_f64(x0);
    clg_tensor_free(x0);
    if (nan) xh[0] = xh[nx - 1] = NAN;
    clg_tensor *x = nan_tensor(ctx, dt, c->ndim, c->shape, xh);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    clg_tensor *outs[MAX_PIECES];
    REF_OK(ctx, clg_split(ctx, x, c->dim, c->n, c->sizes, outs));
    double *want_dx = calloc(nx, sizeof *want_dx);
    assert_non_null(want_dx);
    char what[160];
    int off = 0;
    for (int i = 0; i < c->n; i++) {
        int pshape[4];
        memcpy(pshape, c->shape, sizeof pshape);
        pshape[dim] = c->sizes[i];
        const size_t np = numel(pshape, c->ndim);
        assert_int_equal(clg_tensor_ndim(outs[i]), c->ndim);
        assert_memory_equal(clg_tensor_shape(outs[i]), pshape, (size_t)c->ndim * sizeof(int));
        double *got = ref_to_host_f64(outs[i]), *want = malloc(np * sizeof *want);
        assert_non_null(want);
        ref_narrow(c->ndim, c->shape, dim, off, c->sizes[i], xh, want);
        snprintf(what, sizeof what, "split %s %s piece %d%s", c->name, clg_dtype_name(dt), i, nan ? " with NaN" : "");
        ref_assert_close_nan(got, want, np, 0, 0, what);
        if (!(c->n >= 3 && i == 1)) {
            clg_tensor *dy0 = ref_rand(ctx, dt, c->ndim, pshape, 50 + (uint64_t)i, -1, 1);
            double *dyh = ref_to_host_f64(dy0);
            clg_tensor_free(dy0);
            if (nan && i == 0) dyh[np - 1] = NAN;
            clg_tensor *dy = nan_tensor(ctx, dt, c->ndim, pshape, dyh);
            REF_OK(ctx, clg_backward_grad(ctx, outs[i], dy));
            ref_narrow_back(c->ndim, c->shape, dim, off, c->sizes[i], dyh, want_dx);
            clg_tensor_free(dy);
            free(dyh);
        }
        free(got), free(want);
        off += c->sizes[i];
    }
    double *g = ref_to_host_f64(clg_tensor_grad(x));
    snprintf(what, sizeof what, "split %s %s dx%s", c->name, clg_dtype_name(dt), nan ? " with NaN" : "");
    ref_assert_close_nan(g, want_dx, nx, 0, 0, what);
    free(g), free(want_dx), free(xh);
    for (int i = 0; i < c->n; i++)
        clg_tensor_free(outs[i]);
    clg_tensor_free(x);
}

static void test_split_vs_ref(void **state) {
    for (size_t c = 0; c < N_CASES; c++)
        for (int d = 0; d < 2; d++)
            for (int nan = 0; nan < 2; nan++)
                run_case(*state, &cases[c], d ? CLG_F64 : CLG_F32, nan);
}

/* Pieces joined again in one graph: (x_2, x_0) of three pieces, so one backward walk reaches
 * two pieces' nodes (beta 0 then 1 into x's gradient) and leaves the middle slice at 0. */
static void test_pieces_in_one_graph(void **state) {
    clg_context *ctx = *state;
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        const int s[3] = {2, 7, 3}, sizes[3] = {3, 2, 2};
        clg_tensor *x = ref_rand(ctx, dt, 3, s, 3, -1, 1), *outs[3], *z = NULL;
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, clg_split(ctx, x, 1, 3, sizes, outs));
        const clg_tensor *parts[2] = {outs[2], outs[0]};
        REF_OK(ctx, clg_cat(ctx, 2, parts, 1, &z));
        clg_tensor *dz = ref_rand(ctx, dt, 3, clg_tensor_shape(z), 4, -1, 1);
        REF_OK(ctx, clg_backward_grad(ctx, z, dz));
        double *dzh = ref_to_host_f64(dz), *g = ref_to_host_f64(clg_tensor_grad(x)), want[42] = {0};
        for (int o = 0; o < 2; o++)
            for (int j = 0; j < 5; j++) /* z's row j: x's row 5 + j (j < 2), else row j - 2 */
                for (int k = 0; k < 3; k++)
                    want[(o * 7 + (j < 2 ? 5 + j : j - 2)) * 3 + k] = dzh[(o * 5 + j) * 3 + k];
        ref_assert_close(g, want, 42, 0, 0, dt == CLG_F64 ? "cat(x_2, x_0) f64 dx" : "cat(x_2, x_0) f32 dx");
        free(dzh), free(g);
        clg_tensor_free(dz), clg_tensor_free(z), clg_tensor_free(x);
        for (int i = 0; i < 3; i++)
            clg_tensor_free(outs[i]);
    }
}

/* torch.chunk's sizes, from torch 1.13 (Debian's python3-torch):
 * /usr/bin/python3 -c "import torch
 * for D in (1, 5, 6, 7, 10, 13, 17):
 *     for c in (1, 2, 3, 4, 5, 6, 8, 20):
 *         print(D, c, [t.shape[0] for t in torch.arange(D).chunk(c)])"
 * (rows picked from its output; the piece count is the length of the list). */
typedef struct chunk_case {
    int D, chunks, n, sizes[17];
} chunk_case;
static const chunk_case chunk_cases[] = {
    {1, 1, 1, {1}},
    {1, 4, 1, {1}},
    {5, 2, 2, {3, 2}},
    {5, 3, 3, {2, 2, 1}},
    {5, 4, 3, {2, 2, 1}},
    {5, 8, 5, {1, 1, 1, 1, 1}},
    {6, 3, 3, {2, 2, 2}},
    {6, 4, 3, {2, 2, 2}},
    {6, 5, 3, {2, 2, 2}},
    {6, 6, 6, {1, 1, 1, 1, 1, 1}},
    {7, 2, 2, {4, 3}},
    {7, 3, 3, {3, 3, 1}},
    {7, 4, 4, {2, 2, 2, 1}},
    {7, 6, 4, {2, 2, 2, 1}},
    {10, 3, 3, {4, 4, 2}},
    {10, 4, 4, {3, 3, 3, 1}},
    {10, 6, 5, {2, 2, 2, 2, 2}},
    {10, 8, 5, {2, 2, 2, 2, 2}},
    {13, 5, 5, {3, 3, 3, 3, 1}},
    {13, 6, 5, {3, 3, 3, 3, 1}},
    {13, 8, 7, {2, 2, 2, 2, 2, 2, 1}},
    {17, 3, 3, {6, 6, 5}},
    {17, 4, 4, {5, 5, 5, 2}},
    {17, 6, 6, {3, 3, 3, 3, 3, 2}},
    {17, 8, 6, {3, 3, 3, 3, 3, 2}},
    {17, 20, 17, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
};

/* Along dim 1 (given as -2) of (2, D, 3): the number and sizes of the pieces as torch.chunk's,
 * the entries past them NULL, each piece's values exact. */
static void test_chunk_sizes(void **state) {
    clg_context *ctx = *state;
    for (size_t c = 0; c < sizeof chunk_cases / sizeof chunk_cases[0]; c++) {
        const chunk_case *cc = &chunk_cases[c];
        const int s[3] = {2, cc->D, 3};
        clg_tensor *x = ref_rand(ctx, CLG_F32, 3, s, 7, -1, 1), *outs[20];
        double *xh = ref_to_host_f64(x), want[2 * 17 * 3];
        for (int i = 0; i < 20; i++)
            outs[i] = (clg_tensor *)x; /* must be overwritten */
        int n = -1, off = 0;
        REF_OK(ctx, clg_chunk(ctx, x, cc->chunks, -2, outs, &n));
        if (n != cc->n) fail_msg("chunk(%d into %d): %d pieces, torch.chunk gives %d", cc->D, cc->chunks, n, cc->n);
        for (int i = 0; i < n; i++) {
            if (clg_tensor_shape(outs[i])[1] != cc->sizes[i])
                fail_msg("chunk(%d into %d): piece %d has %d, torch.chunk gives %d", cc->D, cc->chunks, i,
                         clg_tensor_shape(outs[i])[1], cc->sizes[i]);
            double *got = ref_to_host_f64(outs[i]);
            ref_narrow(3, s, 1, off, cc->sizes[i], xh, want);
            ref_assert_close(got, want, (size_t)2 * cc->sizes[i] * 3, 0, 0, "chunk piece");
            free(got);
            off += cc->sizes[i];
            clg_tensor_free(outs[i]);
        }
        for (int i = n; i < cc->chunks; i++)
            assert_null(outs[i]);
        free(xh);
        clg_tensor_free(x);
    }
}

/* narrow against the reference over starts counted both ways, with its gradient. */
static void test_narrow_vs_ref(void **state) {
    clg_context *ctx = *state;
    const int s[4] = {2, 3, 5, 4};
    const struct {
        int dim, start, len, off; /* off: start as a non-negative offset */
    } ns[] = {{2, 1, 3, 1}, {2, -2, 2, 3}, {-1, 0, 4, 0}, {0, 1, 1, 1}, {1, -3, 1, 0}, {3, 3, 1, 3}};
    for (int d = 0; d < 2; d++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            const int dim = wrapped(ns[i].dim, 4);
            clg_tensor *x = ref_rand(ctx, dt, 4, s, 11, -1, 1), *y = NULL;
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_narrow(ctx, x, ns[i].dim, ns[i].start, ns[i].len, &y));
            assert_int_equal(clg_tensor_shape(y)[dim], ns[i].len);
            const size_t ny = clg_tensor_numel(y);
            double *xh = ref_to_host_f64(x), *yh = ref_to_host_f64(y), want[120], want_dx[120] = {0};
            ref_narrow(4, s, dim, ns[i].off, ns[i].len, xh, want);
            char what[96];
            snprintf(what, sizeof what, "narrow(%d, %d, %d) %s", ns[i].dim, ns[i].start, ns[i].len, clg_dtype_name(dt));
            ref_assert_close(yh, want, ny, 0, 0, what);
            clg_tensor *dy = ref_rand(ctx, dt, 4, clg_tensor_shape(y), 12, -1, 1);
            REF_OK(ctx, clg_backward_grad(ctx, y, dy));
            double *dyh = ref_to_host_f64(dy), *g = ref_to_host_f64(clg_tensor_grad(x));
            ref_narrow_back(4, s, dim, ns[i].off, ns[i].len, dyh, want_dx);
            ref_assert_close(g, want_dx, 120, 0, 0, what);
            free(xh), free(yh), free(dyh), free(g);
            clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(x);
        }
}

/* ---------------------------------------------------------------- gradcheck */

/* The pieces joined again in reverse order (so each lands somewhere else). */
static clg_status gc_split(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n;
    const split_case *c = user;
    clg_tensor *outs[MAX_PIECES];
    clg_status st = clg_split(ctx, in[0], c->dim, c->n, c->sizes, outs);
    if (st != CLG_OK) return st;
    const clg_tensor *rev[MAX_PIECES];
    for (int i = 0; i < c->n; i++)
        rev[i] = outs[c->n - 1 - i];
    st = clg_cat(ctx, c->n, rev, c->dim < 0 ? c->dim + c->ndim : c->dim, y);
    for (int i = 0; i < c->n; i++)
        clg_tensor_free(outs[i]);
    return st;
}

/* chunk into 3, the first and the last joined: the middle piece is not used. */
static clg_status gc_chunk_unused(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n, (void)user;
    clg_tensor *outs[3];
    int got = 0;
    clg_status st = clg_chunk(ctx, in[0], 3, 1, outs, &got);
    if (st != CLG_OK) return st;
    const clg_tensor *ends[2] = {outs[0], outs[got - 1]};
    st = clg_cat(ctx, 2, ends, 1, y);
    for (int i = 0; i < got; i++)
        clg_tensor_free(outs[i]);
    return st;
}

static clg_status gc_narrow(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    (void)n, (void)user;
    return clg_narrow(ctx, in[0], -2, -3, 2, y);
}

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    char what[96];
    for (size_t c = 0; c < N_CASES; c++) {
        clg_tensor *x = ref_rand_f64(ctx, cases[c].ndim, cases[c].shape, 20, -1, 1);
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        snprintf(what, sizeof what, "split %s gradcheck", cases[c].name);
        ref_gradcheck(ctx, gc_split, &x, 1, (void *)&cases[c], 1e-6, 1e-8, what);
        clg_tensor_free(x);
    }
    const int s[3] = {2, 7, 3};
    clg_tensor *x = ref_rand_f64(ctx, 3, s, 21, -1, 1);
    REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
    ref_gradcheck(ctx, gc_chunk_unused, &x, 1, NULL, 1e-6, 1e-8, "chunk with a piece unused gradcheck");
    ref_gradcheck(ctx, gc_narrow, &x, 1, NULL, 1e-6, 1e-8, "narrow gradcheck");
    clg_tensor_free(x);
}

/* ---------------------------------------------------------------- the beta contract */

static void test_accumulate(void **state) {
    clg_context *ctx = *state;
    for (int d = 0; d < 2; d++)
        for (size_t c = 0; c < N_CASES; c++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            clg_tensor *x = ref_rand(ctx, dt, cases[c].ndim, cases[c].shape, 30, -1, 1), *outs[MAX_PIECES];
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            REF_OK(ctx, clg_split(ctx, x, cases[c].dim, cases[c].n, cases[c].sizes, outs));
            for (int i = 0; i < cases[c].n; i++) {
                char what[96];
                snprintf(what, sizeof what, "split %s %s piece %d", cases[c].name, clg_dtype_name(dt), i);
                ref_check_accumulate(ctx, outs[i], &x, 1, what);
                clg_tensor_free(outs[i]);
            }
            clg_tensor_free(x);
        }
}

/* beta = 0.5 (neither overwrite nor add): dx = 0.5 dx + dy in the slice, 0.5 dx outside it.
 * 0.5 dx is exact, so the result is one rounding of the exact sum: within the dtype's epsilon. */
static void test_beta_half(void **state) {
    clg_context *ctx = *state;
    const int s[3] = {3, 6, 5};
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        clg_tensor *x = ref_rand(ctx, dt, 3, s, 40, -1, 1), *y = NULL;
        REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
        REF_OK(ctx, clg_narrow(ctx, x, 1, 2, 3, &y));
        clg_tensor *dy = ref_rand(ctx, dt, 3, clg_tensor_shape(y), 41, -1, 1);
        clg_tensor *dx = ref_rand(ctx, dt, 3, s, 42, -1, 1);
        double *dyh = ref_to_host_f64(dy), *old = ref_to_host_f64(dx), want[90], add[90] = {0};
        ref_narrow_back(3, s, 1, 2, 3, dyh, add);
        for (int i = 0; i < 90; i++)
            want[i] = 0.5 * old[i] + add[i];
        const double half = 0.5;
        REF_OK(ctx, ref_call_backward(ctx, y, dy, &dx, &half));
        double *g = ref_to_host_f64(dx);
        ref_assert_close(g, want, 90, dt == CLG_F64 ? DBL_EPSILON : FLT_EPSILON, 0, "narrow backward at beta 0.5");
        free(g), free(dyh), free(old);
        clg_tensor_free(dx), clg_tensor_free(dy), clg_tensor_free(y), clg_tensor_free(x);
    }
}

/* ---------------------------------------------------------------- PyTorch */

/* Each fixture case (make_copy_fixtures.py) through the matching call, in both dtypes: every
 * piece, and x's gradient after a backward from each piece that has an upstream (a piece
 * without one is left out of the loss, so its slice stays 0). Copies: exact. */
static void test_pytorch_fixtures(void **state) {
    clg_context *ctx = *state;
    static const struct {
        const char *name;
        char kind;                /* 's' split, 'c' chunk, 'n' narrow */
        int dim, n, a[3], unused; /* split: a = sizes; chunk: a[0] = chunks; narrow: start, length */
    } fx[] = {
        {"split_sizes", 's', 1, 3, {2, 1, 2}, 1}, {"split_int_n1", 's', -1, 3, {3, 3, 1}, -1},
        {"chunk_3_n2", 'c', -2, 3, {3}, -1},      {"chunk_4_0", 'c', 0, 3, {4}, 2},
        {"narrow_2_1_3", 'n', 2, 1, {1, 3}, -1},  {"narrow_n1_n3_2", 'n', -1, 1, {-3, 2}, -1},
    };
    clg_st_file f;
    ref_fixture_open(&f, "copy.safetensors");
    char name[96];
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof fx / sizeof fx[0]; k++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            snprintf(name, sizeof name, "%s.x", fx[k].name);
            clg_tensor *x = ref_fixture_tensor_as(ctx, &f, name, dt), *outs[4] = {NULL};
            REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
            int n = fx[k].n;
            if (fx[k].kind == 's')
                REF_OK(ctx, clg_split(ctx, x, fx[k].dim, fx[k].n, fx[k].a, outs));
            else if (fx[k].kind == 'c')
                REF_OK(ctx, clg_chunk(ctx, x, fx[k].a[0], fx[k].dim, outs, &n));
            else
                REF_OK(ctx, clg_narrow(ctx, x, fx[k].dim, fx[k].a[0], fx[k].a[1], &outs[0]));
            assert_int_equal(n, fx[k].n);
            for (int i = 0; i < n; i++) {
                snprintf(name, sizeof name, "%s.y%d", fx[k].name, i);
                ref_assert_fixture_exact(&f, name, outs[i]);
                if (i == fx[k].unused) continue;
                snprintf(name, sizeof name, "%s.r%d", fx[k].name, i);
                clg_tensor *r = ref_fixture_tensor_as(ctx, &f, name, dt);
                REF_OK(ctx, clg_backward_grad(ctx, outs[i], r));
                clg_tensor_free(r);
            }
            snprintf(name, sizeof name, "%s.dx", fx[k].name);
            ref_assert_fixture_exact(&f, name, clg_tensor_grad(x));
            for (int i = 0; i < n; i++)
                clg_tensor_free(outs[i]);
            clg_tensor_free(x);
        }
    clg_st_file_free(&f);
}

/* ---------------------------------------------------------------- bad input */

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    const int s[3] = {2, 6, 3};
    clg_tensor *x = ref_rand(ctx, CLG_F32, 3, s, 1, -1, 1), *y = (clg_tensor *)1, *outs[8];
    int n = 99;
    /* narrow: dims, starts and lengths that do not fit, also near INT_MIN / INT_MAX */
    REF_EXPECT(ctx, clg_narrow(ctx, x, 3, 0, 1, &y), CLG_INVALID_ARGUMENT);
    assert_null(y);
    assert_non_null(strstr(clg_context_errmsg(ctx), "dim 3 out of range"));
    REF_EXPECT(ctx, clg_narrow(ctx, x, -4, 0, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, 4, 3, &y), CLG_INVALID_ARGUMENT); /* 4 + 3 > 6 */
    assert_non_null(strstr(clg_context_errmsg(ctx), "size 6"));
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, -7, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, 0, 0, &y), CLG_INVALID_ARGUMENT); /* no empty tensors */
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, 0, -1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, 6, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, INT_MAX, INT_MAX, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, 2, INT_MAX, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, INT_MIN, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, -1, INT_MAX, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, NULL, 1, 0, 1, &y), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_narrow(ctx, x, 1, 0, 1, NULL), CLG_INVALID_ARGUMENT);
    /* split: sizes that do not sum to the dim, empty pieces, no room */
    const int short_sizes[2] = {2, 3}, long_sizes[3] = {4, 4, INT_MAX}, zero[3] = {3, 0, 3}, neg[3] = {7, -1, 0};
    const int huge[3] = {INT_MAX, INT_MAX, INT_MAX};
    REF_EXPECT(ctx, clg_split(ctx, x, 1, 2, short_sizes, outs), CLG_SHAPE_MISMATCH);
    assert_non_null(strstr(clg_context_errmsg(ctx), "sum to 5"));
    for (int i = 0; i < 2; i++)
        assert_null(outs[i]);
    REF_EXPECT(ctx, clg_split(ctx, x, 1, 3, long_sizes, outs), CLG_SHAPE_MISMATCH);
    REF_EXPECT(ctx, clg_split(ctx, x, 1, 3, huge, outs), CLG_SHAPE_MISMATCH);
    REF_EXPECT(ctx, clg_split(ctx, x, 1, 3, zero, outs), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_split(ctx, x, 1, 3, neg, outs), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_split(ctx, x, 1, 0, short_sizes, outs), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_split(ctx, x, 1, 2, NULL, outs), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_split(ctx, x, 1, 2, short_sizes, NULL), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_split(ctx, x, 5, 2, short_sizes, outs), CLG_INVALID_ARGUMENT);
    /* chunk */
    REF_EXPECT(ctx, clg_chunk(ctx, x, 0, 1, outs, &n), CLG_INVALID_ARGUMENT);
    assert_int_equal(n, 0);
    REF_EXPECT(ctx, clg_chunk(ctx, x, -2, 1, outs, &n), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_chunk(ctx, x, 2, 1, NULL, &n), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_chunk(ctx, x, 2, 1, outs, NULL), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_chunk(ctx, x, 2, -4, outs, &n), CLG_INVALID_ARGUMENT);
    REF_EXPECT(ctx, clg_chunk(ctx, NULL, 2, 1, outs, &n), CLG_INVALID_ARGUMENT);
    /* the context still works: more chunks asked than the dim holds gives one per index */
    REF_OK(ctx, clg_chunk(ctx, x, 8, 1, outs, &n));
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++)
        clg_tensor_free(outs[i]);
    clg_tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_vs_ref), cmocka_unit_test(test_pieces_in_one_graph),
        cmocka_unit_test(test_chunk_sizes),  cmocka_unit_test(test_narrow_vs_ref),
        cmocka_unit_test(test_gradcheck),    cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_beta_half),    cmocka_unit_test(test_pytorch_fixtures),
        cmocka_unit_test(test_bad_input),
    };
    return REF_RUN_BOTH_STYLES("split", tests);
}
