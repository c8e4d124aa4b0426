/* tests/ops/test_conv_transpose2d.c - clg_conv_transpose2d (src/ops/conv_transpose2d.c, on
 * conv2d's kernels in cl/ops/conv2d.cl): forward and the three gradients against a direct
 * scatter loop (below) over a table of shapes, within the f32/f64 rounding bound of each sum;
 * PyTorch's numbers (tests/fixtures/conv_transpose2d.safetensors); finite differences in f64;
 * the beta contract in one chunk and in several; NaN as PyTorch propagates it; bad input; in
 * both kernel styles.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nan_test.h"
#include "ref.h"
#include "ref_ops.h"
#include "ref_style.h"

typedef struct ct_case {
    int N, C_in, H, W, C_out, KH, KW; /* x (N, C_in, H, W), w (C_in, C_out/groups, KH, KW) */
    clg_conv_transpose2d_params p;
    bool bias;
} ct_case;

#define TP_(sh, sw, ph, pw, oph, opw, dh, dw, g)                                                             \
    { sh, sw, ph, pw, oph, opw, dh, dw, g }

static int out_h(const ct_case *c) {
    return (c->H - 1) * c->p.stride_h - 2 * c->p.pad_h + c->p.dilation_h * (c->KH - 1) + c->p.output_pad_h +
           1;
}
static int out_w(const ct_case *c) {
    return (c->W - 1) * c->p.stride_w - 2 * c->p.pad_w + c->p.dilation_w * (c->KW - 1) + c->p.output_pad_w +
           1;
}

/* ---------------------------------------------------------------- the reference */

/* Values and, per value, the sum of the magnitudes of the terms it adds up (for the rounding
 * bound) and how many terms that is at most. */
typedef struct ct_ref {
    double *y, *dx, *dw, *db;     /* y (N, C_out, OH, OW), dx like x, dw like w, db (C_out) */
    double *my, *mdx, *mdw, *mdb; /* sums of |term| */
    double ny, ndx, ndw, ndb;     /* terms per value, at most */
} ct_ref;

/* The transposed convolution as its definition: every input pixel scatters x * w into the
 * output pixel each kernel tap lands on; taps landing outside the output are dropped. The
 * gradients run the same loop backwards. PyTorch computes dx and dw from dy with its padding
 * read as zeros (im2col), so a dropped tap still multiplies: dx += w * 0 and dw += x * 0,
 * which changes nothing for finite values and gives NaN where PyTorch does (a NaN weight
 * makes its input channel's dx NaN everywhere; a NaN x makes its channel's dw rows NaN). */
static void ct_reference(const ct_case *c, const double *x, const double *w, const double *b,
                         const double *dy, ct_ref *r) {
    const int OH = out_h(c), OW = out_w(c), G = c->p.groups, Cig = c->C_in / G, Cog = c->C_out / G;
    const size_t nx = (size_t)c->N * c->C_in * c->H * c->W, nw = (size_t)c->C_in * Cog * c->KH * c->KW;
    const size_t ny = (size_t)c->N * c->C_out * OH * OW;
    double **all[8] = {&r->y, &r->dx, &r->dw, &r->db, &r->my, &r->mdx, &r->mdw, &r->mdb};
    const size_t len[8] = {ny, nx, nw, (size_t)c->C_out, ny, nx, nw, (size_t)c->C_out};
    for (int i = 0; i < 8; i++) {
        *all[i] = calloc(len[i], sizeof(double));
        assert_non_null(*all[i]);
    }
    for (int n = 0; n < c->N; n++)
        for (int co = 0; co < c->C_out; co++)
            for (int o = 0; o < OH * OW; o++) {
                const size_t yi = ((size_t)n * c->C_out + co) * OH * OW + o;
                r->y[yi] = b ? b[co] : 0.0;
                r->my[yi] = b ? fabs(b[co]) : 0.0;
                r->db[co] += dy[yi];
                r->mdb[co] += fabs(dy[yi]);
            }
    for (int n = 0; n < c->N; n++)
        for (int ci = 0; ci < c->C_in; ci++)
            for (int h = 0; h < c->H; h++)
                for (int ww = 0; ww < c->W; ww++)
                    for (int cog = 0; cog < Cog; cog++)
                        for (int i = 0; i < c->KH; i++)
                            for (int j = 0; j < c->KW; j++) {
                                const int co = ci / Cig * Cog + cog;
                                const int oh = h * c->p.stride_h - c->p.pad_h + i * c->p.dilation_h;
                                const int ow = ww * c->p.stride_w - c->p.pad_w + j * c->p.dilation_w;
                                const size_t xi = (((size_t)n * c->C_in + ci) * c->H + h) * c->W + ww;
                                const size_t wi = (((size_t)ci * Cog + cog) * c->KH + i) * c->KW + j;
                                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) {
                                    r->dx[xi] += w[wi] * 0.0;
                                    r->dw[wi] += x[xi] * 0.0;
                                    continue;
                                }
                                const size_t yi = (((size_t)n * c->C_out + co) * OH + oh) * OW + ow;
                                r->y[yi] += x[xi] * w[wi];
                                r->my[yi] += fabs(x[xi] * w[wi]);
                                r->dx[xi] += w[wi] * dy[yi];
                                r->mdx[xi] += fabs(w[wi] * dy[yi]);
                                r->dw[wi] += x[xi] * dy[yi];
                                r->mdw[wi] += fabs(x[xi] * dy[yi]);
                            }
    r->ny = (double)Cig * c->KH * c->KW + 1; /* + the bias */
    r->ndx = (double)Cog * c->KH * c->KW;
    r->ndw = (double)c->N * c->H * c->W;
    r->ndb = (double)c->N * OH * OW;
}

static void ref_free(ct_ref *r) {
    free(r->y), free(r->dx), free(r->dw), free(r->db);
    free(r->my), free(r->mdx), free(r->mdw), free(r->mdb);
}

/* Unit roundoff of the dtype the device computed in. */
static double unit_roundoff(clg_dtype dt) { return dt == CLG_F64 ? DBL_EPSILON / 2 : FLT_EPSILON / 2; }

/* Every value within the rounding bound of a sum of `terms` products, in any order (the GEMM
 * path and the CPU's vector width choose it): |got - want| <= (terms + extra) * u * sum |term|,
 * plus the f64 reference's own rounding. extra counts the other roundings on the way (the
 * product, the f32 store, f32 inputs against PyTorch's f64 ones). NaN exactly where want is
 * NaN. */
static void assert_bounded(const double *got, const double *want, const double *mag, size_t n, double terms,
                           double extra, clg_dtype dt, const char *what) {
    const double u = unit_roundoff(dt), u64 = DBL_EPSILON / 2;
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]) || isnan(got[i])) {
            if (isnan(want[i]) != isnan(got[i]))
                fail_msg("%s (%s) [%zu]: got %.17g want %.17g", what, clg_dtype_name(dt), i, got[i], want[i]);
            continue;
        }
        const double bound = ((terms + extra) * u + (terms + 2) * u64) * mag[i];
        if (!(fabs(got[i] - want[i]) <= bound))
            fail_msg("%s (%s) [%zu]: got %.17g want %.17g: off by %.3g, bound %.3g", what, clg_dtype_name(dt),
                     i, got[i], want[i], fabs(got[i] - want[i]), bound);
    }
}

/* ---------------------------------------------------------------- a case's tensors */

typedef struct ct_tensors {
    clg_tensor *x, *w, *b, *y, *dy, *dx, *dw, *db;
    double *hx, *hw, *hb, *hdy; /* host copies of the inputs (after rounding to the dtype) */
    int xs[4], ws[4], ys[4];
} ct_tensors;

static void case_make(clg_context *ctx, clg_dtype dt, const ct_case *c, uint64_t seed, ct_tensors *t) {
    memset(t, 0, sizeof *t);
    const int xs[4] = {c->N, c->C_in, c->H, c->W};
    const int ws[4] = {c->C_in, c->C_out / c->p.groups, c->KH, c->KW};
    const int ys[4] = {c->N, c->C_out, out_h(c), out_w(c)};
    memcpy(t->xs, xs, sizeof xs), memcpy(t->ws, ws, sizeof ws), memcpy(t->ys, ys, sizeof ys);
    assert_int_equal(clg_conv_transpose2d_out_size(c->H, c->KH, c->p.stride_h, c->p.pad_h, c->p.output_pad_h,
                                                   c->p.dilation_h),
                     ys[2]);
    assert_int_equal(clg_conv_transpose2d_out_size(c->W, c->KW, c->p.stride_w, c->p.pad_w, c->p.output_pad_w,
                                                   c->p.dilation_w),
                     ys[3]);
    t->x = ref_rand(ctx, dt, 4, xs, seed, -1, 1);
    t->w = ref_rand(ctx, dt, 4, ws, seed + 1, -1, 1);
    if (c->bias) t->b = ref_rand(ctx, dt, 1, &c->C_out, seed + 2, -1, 1);
    t->dy = ref_rand(ctx, dt, 4, ys, seed + 3, -1, 1);
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ys, &t->y));
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, xs, &t->dx));
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ws, &t->dw));
    REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, &c->C_out, &t->db));
    t->hx = ref_to_host_f64(t->x);
    t->hw = ref_to_host_f64(t->w);
    t->hb = t->b ? ref_to_host_f64(t->b) : NULL;
    t->hdy = ref_to_host_f64(t->dy);
}

static void case_free(ct_tensors *t) {
    clg_tensor *all[] = {t->x, t->w, t->b, t->y, t->dy, t->dx, t->dw, t->db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clg_tensor_free(all[i]);
    free(t->hx), free(t->hw), free(t->hb), free(t->hdy);
}

static void case_name(const ct_case *c, const char *what, char *buf, size_t len) {
    snprintf(
        buf, len,
        "%s: x (%d,%d,%d,%d) w (%d,%d,%d,%d) stride %dx%d pad %dx%d output_pad %dx%d dil %dx%d groups %d "
        "bias %d",
        what, c->N, c->C_in, c->H, c->W, c->C_in, c->C_out / c->p.groups, c->KH, c->KW, c->p.stride_h,
        c->p.stride_w, c->p.pad_h, c->p.pad_w, c->p.output_pad_h, c->p.output_pad_w, c->p.dilation_h,
        c->p.dilation_w, c->p.groups, c->bias);
}

/* A context of this style whose conv workspace is workspace bytes (0: the default), so that
 * a batch runs in chunks of a chosen number of images. Free with clg_context_free. */
static clg_context *workspace_context(clg_kernel_style style, size_t workspace) {
    clg_context_params p = clg_context_default_params();
    p.kernel_style = style;
    p.conv_workspace_bytes = workspace;
    void *state = NULL;
    if (ref_group_setup_params(&state, p) != 0)
        fail_msg("cannot create a context with workspace %zu", workspace);
    return state;
}

/* ---------------------------------------------------------------- the table */

/* stride 1/2/3, padding, output padding (below the stride, and at or past it under a larger
 * dilation), dilation 2/3, groups 2/3/depthwise, square and non-square kernels and images,
 * batch 1 to 17, bias on and off; edges: a 1x1 input, a 1x1 kernel whose output padding rows
 * get only the bias, padding that makes the output smaller than the input. */
static const ct_case table[] = {
    {2, 3, 4, 4, 2, 3, 3, TP_(1, 1, 0, 0, 0, 0, 1, 1, 1), true},
    {2, 4, 5, 4, 6, 3, 3, TP_(2, 2, 1, 1, 1, 1, 1, 1, 2), true},
    {3, 2, 4, 5, 3, 3, 2, TP_(1, 1, 0, 1, 1, 0, 2, 2, 1), false}, /* output_pad 1 = stride, < dilation */
    {1, 6, 3, 4, 3, 4, 3, TP_(3, 2, 2, 0, 2, 1, 1, 2, 3), true},
    {5, 4, 6, 6, 4, 4, 4, TP_(2, 2, 1, 1, 0, 0, 1, 1, 1), false}, /* DCGAN's k4 s2 p1 upsampling */
    {17, 2, 3, 3, 2, 2, 2, TP_(2, 2, 0, 0, 0, 0, 1, 1, 2), true},
    {2, 8, 4, 4, 8, 3, 3, TP_(1, 1, 1, 1, 0, 0, 1, 1, 8), true},  /* depthwise */
    {1, 1, 1, 1, 3, 5, 5, TP_(1, 1, 0, 0, 0, 0, 1, 1, 1), true},  /* 1x1 input */
    {2, 3, 5, 3, 2, 1, 1, TP_(2, 3, 0, 0, 1, 2, 1, 1, 1), true},  /* 1x1 kernel: bias-only rows */
    {3, 2, 6, 5, 4, 3, 3, TP_(1, 1, 2, 2, 0, 0, 2, 1, 2), false}, /* output smaller than x */
    {2, 4, 3, 7, 2, 2, 3, TP_(2, 1, 0, 1, 1, 0, 1, 1, 2), true},
    {4, 3, 9, 9, 5, 3, 3, TP_(2, 2, 1, 1, 1, 1, 1, 1, 1), true},
    {2, 2, 3, 3, 2, 3, 3, TP_(1, 1, 0, 0, 2, 2, 3, 3, 1), false}, /* output_pad 2 under dilation 3 */
    {5, 6, 2, 5, 9, 2, 4, TP_(3, 2, 1, 2, 1, 0, 2, 3, 3), true},
};
#define N_TABLE (sizeof table / sizeof *table)

/* Forward and the three gradients of one case through the raw calls. Gradients start as NaN,
 * so beta = 0 must overwrite without reading. */
static void check_case(clg_context *ctx, clg_dtype dt, const ct_case *c, uint64_t seed) {
    ct_tensors t;
    char what[320];
    case_make(ctx, dt, c, seed, &t);
    ct_ref r;
    ct_reference(c, t.hx, t.hw, t.hb, t.hdy, &r);
    REF_OK(ctx, clg_tensor_fill(t.y, NAN));
    REF_OK(ctx, clg_tensor_fill(t.dx, NAN));
    REF_OK(ctx, clg_tensor_fill(t.dw, NAN));
    REF_OK(ctx, clg_tensor_fill(t.db, NAN));
    REF_OK(ctx, clg_conv_transpose2d_forward(ctx, t.x, t.w, t.b, c->p, t.y));
    REF_OK(ctx, clg_conv_transpose2d_backward(ctx, t.x, t.w, t.dy, c->p, t.dx, t.dw, t.db, 0.0));
    const clg_tensor *got_t[4] = {t.y, t.dx, t.dw, t.db};
    const double *want[4] = {r.y, r.dx, r.dw, r.db}, *mag[4] = {r.my, r.mdx, r.mdw, r.mdb};
    const double terms[4] = {r.ny, r.ndx, r.ndw, r.ndb};
    static const char *const names[4] = {"y", "dx", "dw", "db"};
    for (int i = 0; i < 4; i++) {
        double *got = ref_to_host_f64(got_t[i]);
        case_name(c, names[i], what, sizeof what);
        assert_bounded(got, want[i], mag[i], clg_tensor_numel(got_t[i]), terms[i], 2, dt, what);
        free(got);
    }
    ref_free(&r);
    case_free(&t);
}

/* The table in f32 in the group's kernel style (the group runs once per style). */
static void test_table_f32(void **state) {
    for (size_t i = 0; i < N_TABLE; i++)
        check_case(*state, CLG_F32, &table[i], 100 + 10 * i);
}

/* The same in f64; half of it one image per chunk (a 1-byte workspace), a quarter three
 * images per chunk with a remainder where the batch allows. */
static void test_table_f64(void **state) {
    clg_context *ctx = *state;
    clg_context *per_image = workspace_context(clg_context_kernel_style(ctx), 1);
    for (size_t i = 0; i < N_TABLE; i++)
        check_case(i % 2 ? per_image : ctx, CLG_F64, &table[i], 700 + 10 * i);
    clg_context_free(per_image);
}

/* Through the graph: the same numbers, each input getting its own gradient. */
static clg_status ct_fn(clg_context *ctx, clg_tensor *const *in, int n, clg_tensor **y, void *user) {
    const clg_conv_transpose2d_params *p = user;
    return clg_conv_transpose2d(ctx, in[0], in[1], n > 2 ? in[2] : NULL, *p, y);
}

static void test_graph(void **state) {
    clg_context *ctx = *state;
    for (size_t k = 0; k < 4; k++) {
        const ct_case *c = &table[k * 3];
        ct_tensors t;
        char what[320];
        case_make(ctx, CLG_F32, c, 300 + k, &t);
        ct_ref r;
        ct_reference(c, t.hx, t.hw, t.hb, t.hdy, &r);
        clg_tensor *in[3] = {t.x, t.w, t.b};
        const int n = c->bias ? 3 : 2;
        for (int i = 0; i < n; i++)
            REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
        clg_tensor *y = NULL;
        REF_OK(ctx, clg_conv_transpose2d(ctx, t.x, t.w, t.b, c->p, &y));
        for (int d = 0; d < 4; d++)
            assert_int_equal(clg_tensor_shape(y)[d], t.ys[d]);
        REF_OK(ctx, clg_backward_grad(ctx, y, t.dy));
        const clg_tensor *got_t[4] = {y, clg_tensor_grad(t.x), clg_tensor_grad(t.w),
                                      t.b ? clg_tensor_grad(t.b) : NULL};
        const double *want[4] = {r.y, r.dx, r.dw, r.db}, *mag[4] = {r.my, r.mdx, r.mdw, r.mdb};
        const double terms[4] = {r.ny, r.ndx, r.ndw, r.ndb};
        static const char *const names[4] = {"graph y", "graph x.grad", "graph w.grad", "graph b.grad"};
        for (int i = 0; i < n + 1; i++) {
            assert_non_null(got_t[i]);
            double *got = ref_to_host_f64(got_t[i]);
            case_name(c, names[i], what, sizeof what);
            assert_bounded(got, want[i], mag[i], clg_tensor_numel(got_t[i]), terms[i], 2, CLG_F32, what);
            free(got);
        }
        clg_tensor_free(y);
        /* a fresh node's backward straight: beta 0 overwrites NaN, each input alone, beta 1 doubles */
        REF_OK(ctx, clg_conv_transpose2d(ctx, t.x, t.w, t.b, c->p, &y));
        case_name(c, "accumulate", what, sizeof what);
        ref_check_accumulate(ctx, y, in, n, what);
        clg_tensor_free(y);
        ref_free(&r);
        case_free(&t);
    }
}

/* ---------------------------------------------------------------- PyTorch's numbers */

/* Entry "<case>.<leaf>" of the fixture, or NULL. */
static const clg_st_entry *fx_entry(const clg_st_file *f, const char *c, const char *leaf) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", c, leaf);
    for (size_t i = 0; i < f->n_entries; i++)
        if (!strcmp(f->entries[i].name, name)) return &f->entries[i];
    return NULL;
}

/* A malloc'd copy of entry "<case>.<leaf>" (the test fails when it is missing). */
static double *fx_get(const clg_st_file *f, const char *c, const char *leaf, size_t *n) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", c, leaf);
    return ref_fixture_f64(f, name, n);
}

/* The case a fixture entry set describes: its parameters as stored, shapes from x and w. */
static ct_case fx_case(const clg_st_file *f, const char *c) {
    size_t np = 0;
    double *hp = fx_get(f, c, "params", &np);
    assert_int_equal(np, 9);
    ct_case k;
    k.p = (clg_conv_transpose2d_params)TP_((int)hp[0], (int)hp[1], (int)hp[2], (int)hp[3], (int)hp[4],
                                           (int)hp[5], (int)hp[6], (int)hp[7], (int)hp[8]);
    free(hp);
    const clg_st_entry *x = fx_entry(f, c, "x"), *w = fx_entry(f, c, "w");
    assert_true(x && w && x->ndim == 4 && w->ndim == 4);
    k.N = x->shape[0], k.C_in = x->shape[1], k.H = x->shape[2], k.W = x->shape[3];
    k.C_out = w->shape[1] * k.p.groups, k.KH = w->shape[2], k.KW = w->shape[3];
    k.bias = fx_entry(f, c, "b") != NULL;
    return k;
}

/* conv_transpose2d.safetensors: three cases, their parameters stored with them; y and the
 * gradients of sum(y * r), through the raw calls and the graph, in f32 and f64. The bound:
 * the reference's sums of |term| over the fixture's values, plus one rounding of each f32
 * input (PyTorch's inputs are f64). The host reference must match PyTorch too. */
static void test_pytorch_fixture(void **state) {
    clg_context *ctx = *state;
    static const char *const cases[] = {"s2p1op1g2", "d2op1", "mixed_g3"};
    static const char *const names[4] = {"y", "dx", "dw", "db"};
    clg_st_file fx;
    ref_fixture_open(&fx, "conv_transpose2d.safetensors");
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char what[320];
        const ct_case c = fx_case(&fx, cases[k]);
        const int xs[4] = {c.N, c.C_in, c.H, c.W}, ws[4] = {c.C_in, c.C_out / c.p.groups, c.KH, c.KW};
        const int ys[4] = {c.N, c.C_out, out_h(&c), out_w(&c)}, bs = c.C_out;
        double *hx = fx_get(&fx, cases[k], "x", NULL), *hw = fx_get(&fx, cases[k], "w", NULL);
        double *hb = c.bias ? fx_get(&fx, cases[k], "b", NULL) : NULL, *hr = fx_get(&fx, cases[k], "r", NULL);
        size_t n_want[4];
        double *want[4];
        for (int i = 0; i < 4; i++)
            want[i] = fx_get(&fx, cases[k], names[i], &n_want[i]);
        ct_ref r; /* the magnitudes for the bound */
        ct_reference(&c, hx, hw, hb, hr, &r);
        const double *mag[4] = {r.my, r.mdx, r.mdw, r.mdb}, *mine[4] = {r.y, r.dx, r.dw, r.db};
        const double terms[4] = {r.ny, r.ndx, r.ndw, r.ndb};
        for (int i = 0; i < 4; i++) {
            snprintf(what, sizeof what, "%s %s: host reference vs PyTorch", cases[k], names[i]);
            assert_bounded(mine[i], want[i], mag[i], n_want[i], terms[i], 2, CLG_F64, what);
        }
        for (int d = 0; d < 2; d++) {
            const clg_dtype dt = d ? CLG_F64 : CLG_F32;
            clg_tensor *x = nan_tensor(ctx, dt, 4, xs, hx), *w = nan_tensor(ctx, dt, 4, ws, hw);
            clg_tensor *b = c.bias ? nan_tensor(ctx, dt, 1, &bs, hb) : NULL,
                       *rr = nan_tensor(ctx, dt, 4, ys, hr);
            clg_tensor *got[2][4] = {{NULL}};
            REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ys, &got[0][0]));
            REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, xs, &got[0][1]));
            REF_OK(ctx, clg_tensor_zeros(ctx, dt, 4, ws, &got[0][2]));
            REF_OK(ctx, clg_tensor_zeros(ctx, dt, 1, &bs, &got[0][3]));
            REF_OK(ctx, clg_conv_transpose2d_forward(ctx, x, w, b, c.p, got[0][0]));
            REF_OK(ctx,
                   clg_conv_transpose2d_backward(ctx, x, w, rr, c.p, got[0][1], got[0][2], got[0][3], 0.0));
            /* the graph: loss = sum(y * r), seeded with r */
            clg_tensor *in[3] = {x, w, b};
            for (int i = 0; i < (b ? 3 : 2); i++)
                REF_OK(ctx, clg_tensor_set_requires_grad(in[i], true));
            REF_OK(ctx, clg_conv_transpose2d(ctx, x, w, b, c.p, &got[1][0]));
            REF_OK(ctx, clg_backward_grad(ctx, got[1][0], rr));
            got[1][1] = clg_tensor_grad(x), got[1][2] = clg_tensor_grad(w),
            got[1][3] = b ? clg_tensor_grad(b) : NULL;
            for (int way = 0; way < 2; way++)
                for (int i = 0; i < 4; i++) {
                    if (way && i == 3 && !b) continue; /* no bias: no graph db */
                    assert_non_null(got[way][i]);
                    double *g = ref_to_host_f64(got[way][i]);
                    snprintf(what, sizeof what, "%s %s (%s) vs PyTorch", cases[k], names[i],
                             way ? "graph" : "raw");
                    /* f32: the two factors of each term rounded once more */
                    assert_bounded(g, want[i], mag[i], n_want[i], terms[i], d ? 2 : 4, dt, what);
                    free(g);
                }
            for (int i = 0; i < 4; i++)
                clg_tensor_free(got[0][i]);
            clg_tensor_free(got[1][0]);
            clg_tensor_free(x), clg_tensor_free(w), clg_tensor_free(b), clg_tensor_free(rr);
        }
        for (int i = 0; i < 4; i++)
            free(want[i]);
        free(hx), free(hw), free(hb), free(hr);
        ref_free(&r);
    }
    clg_st_file_free(&fx);
}

/* ---------------------------------------------------------------- finite differences */

static void test_gradcheck(void **state) {
    clg_context *ctx = *state;
    const ct_case cases[] = {
        {2, 4, 3, 4, 6, 3, 2, TP_(2, 1, 1, 0, 1, 0, 1, 2, 2), true},
        {1, 3, 3, 3, 3, 3, 3, TP_(1, 1, 1, 1, 1, 1, 2, 2, 3),
         true}, /* depthwise, output_pad under dilation */
        {3, 2, 2, 3, 3, 2, 2, TP_(3, 2, 0, 1, 2, 1, 1, 1, 1), false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const ct_case *c = &cases[i];
        ct_tensors t;
        char what[320];
        case_make(ctx, CLG_F64, c, 900 + 10 * i, &t);
        clg_tensor *in[3] = {t.x, t.w, t.b};
        for (int k = 0; k < 3; k++)
            if (in[k]) REF_OK(ctx, clg_tensor_set_requires_grad(in[k], true));
        case_name(c, "gradcheck", what, sizeof what);
        clg_conv_transpose2d_params p = c->p;
        ref_gradcheck(ctx, ct_fn, in, c->bias ? 3 : 2, &p, 1e-6, 1e-6, what);
        case_free(&t);
    }
}

/* ---------------------------------------------------------------- the beta contract */

/* Raw backward with beta 0 then beta 1 gives exactly 2x; beta 0.5 on top gives 2x again;
 * skipped gradients are left alone. With the batch in one chunk, one image per chunk and two
 * per chunk with a remainder (dW then sums chunks). */
static void accumulate_case(clg_kernel_style style, clg_dtype dt, size_t workspace) {
    const ct_case c = {5, 4, 4, 3, 6, 3, 3, TP_(2, 1, 1, 1, 1, 0, 1, 2, 2), true};
    ct_tensors t;
    clg_context *ctx = workspace_context(style, workspace);
    case_make(ctx, dt, &c, 4242, &t);
    clg_tensor *g[3] = {t.dx, t.dw, t.db};
    static const char *const names[3] = {"dx", "dw", "db"};
    double *once[3];
    for (int i = 0; i < 3; i++)
        REF_OK(ctx, clg_tensor_fill(g[i], NAN));
    REF_OK(ctx, clg_conv_transpose2d_backward(ctx, t.x, t.w, t.dy, c.p, t.dx, t.dw, t.db, 0.0));
    for (int i = 0; i < 3; i++)
        once[i] = ref_to_host_f64(g[i]);
    REF_OK(ctx, clg_conv_transpose2d_backward(ctx, t.x, t.w, t.dy, c.p, t.dx, t.dw, t.db, 1.0));
    for (int i = 0; i < 3; i++) {
        const size_t n = clg_tensor_numel(g[i]);
        double *twice = ref_to_host_f64(g[i]);
        for (size_t j = 0; j < n; j++)
            if (!(twice[j] == 2 * once[i][j]))
                fail_msg("%s[%zu]: beta 1 after beta 0 gave %.17g, not exactly 2 x %.17g (workspace %zu)",
                         names[i], j, twice[j], once[i][j], workspace);
        free(twice);
    }
    /* beta 0.5 on 2x: 0.5 * 2x + x, exact too (halving and doubling are exact) */
    REF_OK(ctx, clg_conv_transpose2d_backward(ctx, t.x, t.w, t.dy, c.p, t.dx, t.dw, t.db, 0.5));
    for (int i = 0; i < 3; i++) {
        const size_t n = clg_tensor_numel(g[i]);
        double *got = ref_to_host_f64(g[i]);
        for (size_t j = 0; j < n; j++)
            once[i][j] *= 2;
        ref_assert_close(got, once[i], n, 0, 0, names[i]);
        free(got);
        free(once[i]);
    }
    /* skipped gradients are left alone */
    REF_OK(ctx, clg_tensor_fill(t.dx, 7.0));
    REF_OK(ctx, clg_tensor_fill(t.db, 7.0));
    REF_OK(ctx, clg_conv_transpose2d_backward(ctx, t.x, t.w, t.dy, c.p, NULL, t.dw, NULL, 0.0));
    const clg_tensor *kept[2] = {t.dx, t.db};
    for (int i = 0; i < 2; i++) {
        double *v = ref_to_host_f64(kept[i]);
        for (size_t j = 0; j < clg_tensor_numel(kept[i]); j++)
            assert_true(v[j] == 7.0);
        free(v);
    }
    case_free(&t);
    clg_context_free(ctx);
}

static void test_accumulate(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    accumulate_case(style, CLG_F32, 0); /* default: one chunk */
    accumulate_case(style, CLG_F32, 1); /* one image per chunk */
    /* two images per chunk: per image the col buffer (C_out*9 rows) and the packed x (C_in
     * rows) over the H*W = 12 columns, 4 bytes each: (54 + 4) * 12 * 4 = 2784 */
    accumulate_case(style, CLG_F32, 2 * 2784 + 100);
    accumulate_case(style, CLG_F64, 1);
}

/* ---------------------------------------------------------------- NaN */

static void test_nan(void **state) {
    clg_context *ctx = *state;
    const ct_case cases[2] = {
        {2, 2, 3, 3, 2, 3, 3, TP_(2, 2, 1, 1, 0, 0, 1, 1, 1), true},
        {1, 4, 3, 4, 4, 2, 3, TP_(1, 2, 1, 2, 1, 1, 2, 1, 2), true},
    };
    for (int d = 0; d < 2; d++) {
        const clg_dtype dt = d ? CLG_F64 : CLG_F32;
        for (int ci = 0; ci < 2; ci++) {
            const ct_case *c = &cases[ci];
            for (int where = 0; where < 4; where++) { /* NaN in x, in w, in b, in dy */
                ct_tensors t;
                case_make(ctx, dt, c, 700 + (uint64_t)ci, &t);
                const size_t nx = clg_tensor_numel(t.x), nw = clg_tensor_numel(t.w),
                             ny = clg_tensor_numel(t.dy);
                if (where == 0) t.hx[0] = NAN; /* a corner: some of its taps fall off the output */
                if (where == 1) t.hw[0] = NAN; /* the first tap: off the output at the top left */
                if (where == 2) t.hb[1] = NAN;
                if (where == 3) t.hdy[ny / 3] = NAN;
                clg_tensor *x = nan_tensor(ctx, dt, 4, t.xs, t.hx), *w = nan_tensor(ctx, dt, 4, t.ws, t.hw);
                clg_tensor *b = nan_tensor(ctx, dt, 1, &c->C_out, t.hb),
                           *dy = nan_tensor(ctx, dt, 4, t.ys, t.hdy);
                clg_tensor *y = NULL;
                REF_OK(ctx, clg_tensor_set_requires_grad(x, true));
                REF_OK(ctx, clg_tensor_set_requires_grad(w, true));
                REF_OK(ctx, clg_tensor_set_requires_grad(b, true));
                REF_OK(ctx, clg_conv_transpose2d(ctx, x, w, b, c->p, &y));
                REF_OK(ctx, clg_backward_grad(ctx, y, dy));
                ct_ref r;
                ct_reference(c, t.hx, t.hw, t.hb, t.hdy, &r);
                char what[320], name[32];
                static const char *const where_s[4] = {"x", "w", "b", "dy"};
                snprintf(name, sizeof name, "NaN in %s", where_s[where]);
                case_name(c, name, what, sizeof what);
                const clg_tensor *got_t[4] = {y, clg_tensor_grad(x), clg_tensor_grad(w), clg_tensor_grad(b)};
                const double *want[4] = {r.y, r.dx, r.dw, r.db}, *mag[4] = {r.my, r.mdx, r.mdw, r.mdb};
                const double terms[4] = {r.ny, r.ndx, r.ndw, r.ndb};
                const size_t n[4] = {ny, nx, nw, (size_t)c->C_out};
                for (int i = 0; i < 4; i++) {
                    assert_non_null(got_t[i]);
                    double *got = ref_to_host_f64(got_t[i]);
                    assert_bounded(got, want[i], mag[i], n[i], terms[i], 2, dt, what);
                    free(got);
                }
                /* the NaN reached something, and not everything */
                size_t nan_y = 0;
                for (size_t i = 0; i < ny; i++)
                    nan_y += isnan(r.y[i]) != 0;
                if (where != 3) assert_true(nan_y > 0 && nan_y < ny);
                ref_free(&r);
                clg_tensor_free(x), clg_tensor_free(w), clg_tensor_free(b), clg_tensor_free(dy),
                    clg_tensor_free(y);
                case_free(&t);
            }
        }
    }
}

/* ---------------------------------------------------------------- bad input */

static void expect_fail(clg_context *ctx, clg_status got, clg_status want, const char *needle) {
    const char *msg = clg_context_errmsg(ctx);
    if (got != want) fail_msg("expected %s, got %s (%s)", clg_status_name(want), clg_status_name(got), msg);
    if (!strstr(msg, needle)) fail_msg("message \"%s\" does not mention \"%s\"", msg, needle);
}

static void test_bad_input(void **state) {
    clg_context *ctx = *state;
    /* x (2, 4, 3, 3), w (4, 3, 3, 3), groups 2: C_out 6, stride 2, pad 1 -> y (2, 6, 5, 5) */
    const int xs[4] = {2, 4, 3, 3}, ws[4] = {4, 3, 3, 3}, ys[4] = {2, 6, 5, 5}, bs = 6;
    clg_tensor *x = ref_rand(ctx, CLG_F32, 4, xs, 1, -1, 1), *w = ref_rand(ctx, CLG_F32, 4, ws, 2, -1, 1);
    clg_tensor *b = ref_rand(ctx, CLG_F32, 1, &bs, 3, -1, 1);
    clg_tensor *y, *dy = ref_rand(ctx, CLG_F32, 4, ys, 4, -1, 1), *dx, *dw, *db;
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 4, ys, &y));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 4, xs, &dx));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 4, ws, &dw));
    REF_OK(ctx, clg_tensor_zeros(ctx, CLG_F32, 1, &bs, &db));
    clg_conv_transpose2d_params ok = clg_conv_transpose2d_default_params(), p;
    ok.groups = 2, ok.stride_h = ok.stride_w = 2, ok.pad_h = ok.pad_w = 1;
    clg_tensor *out = (clg_tensor *)&out; /* must become NULL on failure */
    REF_OK(ctx, clg_conv_transpose2d(ctx, x, w, b, ok, &out));
    assert_int_equal(clg_tensor_shape(out)[1], 6);
    assert_int_equal(clg_tensor_shape(out)[2], 5);
    clg_tensor_free(out);

    /* output padding: below the stride, or below the dilation, else refused as by PyTorch */
    p = ok, p.output_pad_h = 1;
    REF_OK(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out));
    assert_int_equal(clg_tensor_shape(out)[2], 6);
    clg_tensor_free(out);
    p = ok, p.output_pad_w = 2;
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_INVALID_ARGUMENT,
                "output padding 0 x 2 must be smaller than either stride 2 x 2 or dilation 1 x 1");
    assert_null(out);
    p = ok, p.output_pad_w = 2, p.dilation_w = 3; /* 2 < dilation 3: allowed */
    REF_OK(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out));
    clg_tensor_free(out);
    p = ok, p.stride_h = 1, p.output_pad_h = 1; /* 1 = stride and = dilation */
    expect_fail(ctx, clg_conv_transpose2d_forward(ctx, x, w, b, p, y), CLG_INVALID_ARGUMENT,
                "output padding");
    p = ok, p.output_pad_h = -1;
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_INVALID_ARGUMENT, "output padding");

    /* groups not dividing the input channels; w's first dimension not C_in */
    p = ok, p.groups = 3;
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_INVALID_ARGUMENT,
                "groups 3 does not divide the 4 input channels");
    const int w5_s[4] = {5, 3, 3, 3};
    clg_tensor *w5 = ref_rand(ctx, CLG_F32, 4, w5_s, 6, -1, 1);
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w5, b, ok, &out), CLG_SHAPE_MISMATCH,
                "w (5, 3, 3, 3) has 5 input channels but x (2, 4, 3, 3) has 4");
    /* conv2d's weight order (C_out, C_in/groups, ...) is caught: (6, 2, 3, 3) */
    const int wc_s[4] = {6, 2, 3, 3};
    clg_tensor *wc = ref_rand(ctx, CLG_F32, 4, wc_s, 7, -1, 1);
    expect_fail(ctx, clg_conv_transpose2d_backward(ctx, x, wc, dy, ok, dx, dw, db, 0), CLG_SHAPE_MISMATCH,
                "has 6 input channels");
    /* b sized for groups 1: (3) instead of (6) */
    const int b3 = 3;
    clg_tensor *bad_b = ref_rand(ctx, CLG_F32, 1, &b3, 8, -1, 1);
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, bad_b, ok, &out), CLG_SHAPE_MISMATCH, "b is (3)");

    /* zero or negative stride, dilation, padding, groups; an output below one pixel */
    p = ok, p.stride_w = 0;
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_INVALID_ARGUMENT, "stride");
    p = ok, p.dilation_h = -1;
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_INVALID_ARGUMENT, "dilation");
    p = ok, p.pad_w = -1;
    expect_fail(ctx, clg_conv_transpose2d_backward(ctx, x, w, dy, p, dx, dw, db, 0), CLG_INVALID_ARGUMENT,
                "padding");
    p = ok, p.groups = 0;
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_INVALID_ARGUMENT, "groups");
    p = ok, p.pad_h = 5; /* (3 - 1) * 2 - 10 + 2 + 1 = -3 */
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_SHAPE_MISMATCH, "would be -3 x 5");
    p = ok, p.pad_h = 4, p.output_pad_h = 1; /* 0 rows */
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_SHAPE_MISMATCH, "would be 0 x 5");
    p = ok, p.pad_h = INT_MAX; /* no int wrap in the output size */
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_SHAPE_MISMATCH, "would be");
    p = ok, p.stride_h = INT_MAX, p.pad_h = 0; /* 2^31 rows: past 32-bit indexing */
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, p, &out), CLG_UNSUPPORTED, "32-bit");
    assert_int_equal(clg_conv_transpose2d_out_size(3, 3, 2, 1, 1, 1), 6);
    assert_int_equal(clg_conv_transpose2d_out_size(3, 3, 2, 1, 2, 1), -1);
    assert_int_equal(clg_conv_transpose2d_out_size(3, 3, 1, 0, 2, 3), 11);
    assert_int_equal(clg_conv_transpose2d_out_size(3, 3, 0, 1, 0, 1), -1);
    assert_int_equal(clg_conv_transpose2d_out_size(3, 3, 2, 4, 0, 1), -1);
    assert_int_equal(clg_conv_transpose2d_out_size(INT_MAX, 2, 2, 0, 0, 1), -1);

    /* tensors of the wrong rank, shape or dtype */
    const int x3_s[3] = {4, 3, 3};
    clg_tensor *x3 = ref_rand(ctx, CLG_F32, 3, x3_s, 9, -1, 1);
    expect_fail(ctx, clg_conv_transpose2d(ctx, x3, w, b, ok, &out), CLG_SHAPE_MISMATCH, "4-D");
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, x3, b, ok, &out), CLG_SHAPE_MISMATCH, "4-D");
    expect_fail(ctx, clg_conv_transpose2d_forward(ctx, x, w, b, ok, dx), CLG_SHAPE_MISMATCH,
                "y is (2, 4, 3, 3) but must be (2, 6, 5, 5)");
    expect_fail(ctx, clg_conv_transpose2d_backward(ctx, x, w, dx, ok, dx, dw, db, 0), CLG_SHAPE_MISMATCH,
                "dy is (2, 4, 3, 3)");
    expect_fail(ctx, clg_conv_transpose2d_backward(ctx, x, w, dy, ok, y, dw, db, 0), CLG_SHAPE_MISMATCH,
                "dx is (2, 6, 5, 5)");
    expect_fail(ctx, clg_conv_transpose2d_backward(ctx, x, w, dy, ok, dx, wc, db, 0), CLG_SHAPE_MISMATCH,
                "dw is (6, 2, 3, 3)");
    expect_fail(ctx, clg_conv_transpose2d_backward(ctx, x, w, dy, ok, dx, dw, bad_b, 0), CLG_SHAPE_MISMATCH,
                "db is (3)");

    /* null pointers */
    expect_fail(ctx, clg_conv_transpose2d(ctx, NULL, w, b, ok, &out), CLG_INVALID_ARGUMENT, "x is NULL");
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, NULL, b, ok, &out), CLG_INVALID_ARGUMENT, "w is NULL");
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w, b, ok, NULL), CLG_INVALID_ARGUMENT, "out is NULL");
    expect_fail(ctx, clg_conv_transpose2d_forward(ctx, x, w, b, ok, NULL), CLG_INVALID_ARGUMENT, "y is NULL");
    expect_fail(ctx, clg_conv_transpose2d_backward(ctx, x, w, NULL, ok, dx, dw, db, 0), CLG_INVALID_ARGUMENT,
                "dy is NULL");
    assert_int_equal(clg_conv_transpose2d(NULL, x, w, b, ok, &out), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_conv_transpose2d_forward(NULL, x, w, b, ok, y), CLG_INVALID_ARGUMENT);
    assert_int_equal(clg_conv_transpose2d_backward(NULL, x, w, dy, ok, dx, dw, db, 0), CLG_INVALID_ARGUMENT);

    /* and the next call works */
    REF_OK(ctx, clg_conv_transpose2d_forward(ctx, x, w, b, ok, y));
    REF_OK(ctx, clg_conv_transpose2d_backward(ctx, x, w, dy, ok, dx, dw, db, 0));
    REF_OK(ctx, clg_conv_transpose2d(ctx, x, w, NULL, ok, &out));
    clg_tensor_free(out);

    /* last: a device without fp64 skips the test here */
    clg_tensor *w64 = ref_rand(ctx, CLG_F64, 4, ws, 10, -1, 1);
    expect_fail(ctx, clg_conv_transpose2d(ctx, x, w64, b, ok, &out), CLG_INVALID_ARGUMENT, "f64");
    clg_tensor *all[] = {x, w, b, y, dy, dx, dw, db, w5, wc, bad_b, x3, w64};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clg_tensor_free(all[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_f32),
        cmocka_unit_test(test_table_f64),
        cmocka_unit_test(test_graph),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_pytorch_fixture),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_nan),
        cmocka_unit_test(test_bad_input),
    };
    return REF_RUN_BOTH_STYLES("conv_transpose2d", tests);
}
