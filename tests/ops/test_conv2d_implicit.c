/* tests/ops/test_conv2d_implicit.c - conv2d's implicit-GEMM forward (src/ops/conv2d.c,
 * CLGRAD_CONV=implicit): where the packed GEMM runs, its B panels come straight from the
 * images (pack_b_conv in cl/blas/gemm_packed.cl) instead of from im2col's col buffer. The
 * GEMM adds the same products in the same order either way, so y must be bit for bit the im2col
 * route's: checked over strides, padding, dilation, groups, 1x1 kernels, odd sizes, panels
 * that span images and rows, k split into passes, batches in many chunks, both dtypes and both
 * kernel styles. The profiler shows which route ran, so the comparison cannot pass by both
 * runs taking the same route. Where CLBlast is the GEMM, implicit falls back to im2col; auto
 * takes implicit only where it saves the packed kernel's pass over col.
 * References for conv2d's values: tests/ops/test_conv2d.c.
 */
#include <math.h>
#include <stdlib.h>

#include "blas/tuning.h"
#include "test_conv2d.h"

/* Launches of the kernels that tell the routes apart. */
typedef struct route_seen {
    uint64_t pack_conv; /* "gemm pack_b_conv": panels from the images */
    uint64_t im2col;    /* "conv2d im2col": col in memory */
    uint64_t direct;    /* "gemm conv_fwd": from padded copies of the images */
} route_seen;

/* Stops ctx's profiler; counts[i]: the launches of the kernel names[i] since it started. */
static void stop_counting(clg_context *ctx, size_t n, const char *const *names, uint64_t *const *counts) {
    clg_profile_row rows[64];
    size_t n_rows = 0;
    REF_OK(ctx, clg_profiler_summary(ctx, rows, 64, &n_rows));
    for (size_t k = 0; k < n; k++) {
        *counts[k] = 0;
        for (size_t i = 0; i < n_rows && i < 64; i++)
            if (!strcmp(rows[i].name, names[k])) *counts[k] += rows[i].launches;
    }
    clg_profiler_stop(ctx);
}

/* A profiling context of this style and workspace with the GEMM forced onto path. */
static clg_context *route_context(clg_kernel_style style, size_t workspace, const char *path) {
    clg_context_params p = clg_context_default_params();
    p.kernel_style = style;
    p.conv_workspace_bytes = workspace;
    p.profiling = true;
    void *state = NULL;
    if (ref_group_setup_params(&state, p) != 0) fail_msg("cannot create a profiling context");
    REF_OK(state, clg_blas_force_path(state, path));
    return state;
}

/* y of case c (inputs from seed) with CLGRAD_CONV=route; *seen counts the routes' launches.
 * Through the graph op (clg_conv2d) when graph, else clg_conv2d_forward. Returns y as doubles
 * (f32 converts exactly: equal doubles of equal sign are equal bits). */
static double *forward_on(clg_context *ctx, const char *route, clg_dtype dt, const conv_case *c,
                          uint64_t seed, bool graph, route_seen *seen, size_t *n_out) {
    assert_int_equal(setenv("CLGRAD_CONV", route, 1), 0);
    case_tensors t;
    case_make(ctx, dt, c, seed, &t);
    clg_profiler_reset(ctx);
    REF_OK(ctx, clg_profiler_start(ctx));
    clg_tensor *y = t.y;
    if (graph)
        REF_OK(ctx, clg_conv2d(ctx, t.x, t.w, t.b, c->p, &y));
    else
        REF_OK(ctx, clg_conv2d_forward(ctx, t.x, t.w, t.b, c->p, t.y));
    stop_counting(ctx, 3, (const char *const[]){"gemm pack_b_conv", "conv2d im2col", "gemm conv_fwd"},
                  (uint64_t *const[]){&seen->pack_conv, &seen->im2col, &seen->direct});
    double *out = ref_to_host_f64(y);
    *n_out = clg_tensor_numel(y);
    if (y != t.y) clg_tensor_free(y);
    case_free(&t);
    assert_int_equal(unsetenv("CLGRAD_CONV"), 0);
    return out;
}

/* got and want hold the same bits: equal values and equal signs (zeros included), or both NaN. */
static void assert_same_bits(const double *got, const double *want, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (isnan(got[i]) != isnan(want[i]) ||
            (!isnan(got[i]) && (got[i] != want[i] || signbit(got[i]) != signbit(want[i]))))
            fail_msg("%s: [%zu] is %.17g by the implicit route, %.17g by im2col", what, i, got[i], want[i]);
}

static const conv_case cases[] = {
    /* N, C, H, W, K, KH, KW, (stride h w, pad h w, dilation h w, groups), bias */
    {2, 3, 9, 8, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true},
    {3, 4, 8, 8, 6, 3, 2, P_(2, 1, 2, 1, 1, 2, 2), true},      /* stride, dilation, groups */
    {3, 4, 6, 6, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 4), false},     /* depthwise */
    {2, 5, 7, 9, 3, 1, 1, P_(1, 1, 0, 0, 1, 1, 1), true},      /* 1x1 */
    {2, 6, 11, 13, 5, 1, 1, P_(2, 3, 0, 0, 1, 1, 1), false},   /* 1x1, strided */
    {3, 3, 13, 11, 7, 5, 3, P_(3, 2, 2, 1, 1, 2, 1), true},    /* odd sizes, stride > 1 */
    {4, 2, 5, 3, 3, 3, 3, P_(1, 1, 2, 2, 2, 1, 1), true},      /* padding wider than the image */
    {5, 2, 4, 1, 3, 2, 1, P_(1, 1, 1, 0, 1, 1, 1), false},     /* OW = 1: a run per column */
    {6, 3, 3, 3, 2, 3, 3, P_(1, 1, 0, 0, 1, 1, 1), true},      /* OH = OW = 1: panels span images */
    {2, 2, 70, 9, 2, 3, 5, P_(1, 2, 2, 1, 1, 1, 1), true},     /* long columns */
    {2, 2, 9, 70, 2, 5, 3, P_(2, 1, 1, 2, 2, 1, 2), false},    /* long rows */
    {2, 64, 12, 12, 8, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true},   /* k = 576: the im2col route packs col */
    {2, 8, 10, 10, 260, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), false}, /* m = 260: likewise */
    {1, 232, 16, 16, 40, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true}, /* k = 2088: A packed, k in passes */
    {2, 12, 9, 9, 12, 3, 3, P_(2, 2, 3, 3, 3, 3, 3), true},    /* everything at once */
    /* OW a multiple of the panel width (32 for f32 with 16-wide vectors, 24 for f64 with 8):
     * panels that are whole output rows, padded edges read past the row's ends */
    {2, 3, 5, 32, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true},
    {2, 2, 4, 48, 3, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), false},
    {3, 2, 4, 64, 3, 3, 5, P_(1, 1, 2, 2, 1, 2, 1), true},
};

/* Each case with the batch in one chunk, in chunks of three images (and a remainder), and
 * one image per chunk (the GEMM then writes y directly): y from images equals y from col. */
static void case_run(clg_kernel_style style, clg_dtype dt, const conv_case *c, uint64_t seed, bool graph) {
    const size_t per_image =
        ((size_t)c->C * c->KH * c->KW + c->K) * ref_conv_out_h(c) * ref_conv_out_w(c) * clg_dtype_size(dt);
    const size_t workspaces[3] = {(size_t)1 << 30, per_image * 3 + 1, 1};
    for (int wi = 0; wi < 3; wi++) {
        char what[320], name[256];
        case_name(c, graph ? "graph" : "forward", name, sizeof name);
        snprintf(what, sizeof what, "%s, %s, workspace %zu", name, clg_dtype_name(dt), workspaces[wi]);
        route_seen si, sc;
        size_t ni, nc;
        clg_context *ctx = route_context(style, workspaces[wi], "packed");
        double *got = forward_on(ctx, "implicit", dt, c, seed, graph, &si, &ni);
        double *want = forward_on(ctx, "im2col", dt, c, seed, graph, &sc, &nc);
        clg_context_free(ctx);
        assert_int_equal(ni, nc);
        if (si.pack_conv == 0 || si.im2col != 0)
            fail_msg("%s: the implicit route ran pack_b_conv %llu times and im2col %llu times", what,
                     (unsigned long long)si.pack_conv, (unsigned long long)si.im2col);
        if (sc.pack_conv != 0 || sc.im2col == 0)
            fail_msg("%s: the im2col route ran pack_b_conv %llu times and im2col %llu times", what,
                     (unsigned long long)sc.pack_conv, (unsigned long long)sc.im2col);
        assert_same_bits(got, want, ni, what);
        free(got), free(want);
    }
}

static void test_bits_f32(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        case_run(style, CLG_F32, &cases[i], 900 + i, false);
}

static void test_bits_f64(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        case_run(style, CLG_F64, &cases[i], 950 + i, false);
}

/* The graph op takes the same route (and records its backward as before). */
static void test_graph(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    case_run(style, CLG_F32, &cases[1], 31, true);
}

/* Where CLBlast is the GEMM there are no panels to fill: implicit runs im2col, same bits. */
static void test_clblast_falls_back(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    const conv_case *c = &cases[0];
    route_seen si, sc;
    size_t ni, nc;
    clg_context *ctx = route_context(style, 0, "clblast");
    double *got = forward_on(ctx, "implicit", CLG_F32, c, 77, false, &si, &ni);
    double *want = forward_on(ctx, "im2col", CLG_F32, c, 77, false, &sc, &nc);
    clg_context_free(ctx);
    assert_int_equal(ni, nc);
    assert_true(si.pack_conv == 0 && si.im2col > 0);
    assert_same_bits(got, want, ni, "CLBlast, implicit asked for");
    free(got), free(want);
}

/* auto (the default): a stride-1 "same" convolution with k = Cg*KH*KW >= 256 runs from padded
 * images (conv_fwd); otherwise the panels come from the images only where the packed kernel
 * would pack col into panels too (k >= 512 here), and col is read in place elsewhere. */
static void test_auto(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    const struct {
        conv_case c;
        const char *expect; /* "direct", "panels" or "im2col" */
    } runs[] = {
        {{2, 64, 12, 12, 8, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true}, "direct"},  /* k = 576, same */
        {{2, 32, 9, 9, 8, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), false}, "direct"},   /* k = 288, same */
        {{2, 16, 9, 9, 8, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true}, "im2col"},    /* k = 144 */
        {{2, 64, 12, 12, 8, 3, 3, P_(2, 2, 1, 1, 1, 1, 1), true}, "panels"},  /* k = 576, strided */
        {{2, 64, 12, 12, 8, 3, 3, P_(1, 1, 0, 0, 1, 1, 1), false}, "panels"}, /* k = 576, OW < W */
        {{2, 3, 9, 8, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), true}, "im2col"},     /* k = 27 */
    };
    clg_context *ctx = route_context(style, 0, "packed");
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        route_seen sa, sw;
        size_t na, nw;
        double *got = forward_on(ctx, "auto", CLG_F32, &runs[i].c, 41 + i, false, &sa, &na);
        double *want = forward_on(ctx, "im2col", CLG_F32, &runs[i].c, 41 + i, false, &sw, &nw);
        const char *took = sa.direct ? "direct" : sa.pack_conv ? "panels" : sa.im2col ? "im2col" : "nothing";
        if (strcmp(took, runs[i].expect) || (sa.direct && (sa.pack_conv || sa.im2col)))
            fail_msg("auto case %zu took %s (conv_fwd %llu, pack_b_conv %llu, im2col %llu), expected %s", i, took,
                     (unsigned long long)sa.direct, (unsigned long long)sa.pack_conv,
                     (unsigned long long)sa.im2col, runs[i].expect);
        assert_int_equal(na, nw);
        assert_same_bits(got, want, na, "auto");
        free(got), free(want);
    }
    clg_context_free(ctx);
}

/* A CLGRAD_CONV that names no route is refused with a message naming the choices. */
static void test_bad_env(void **state) {
    clg_context *ctx = *state;
    const conv_case c = {1, 1, 4, 4, 1, 3, 3, P_(1, 1, 0, 0, 1, 1, 1), false};
    case_tensors t;
    case_make(ctx, CLG_F32, &c, 5, &t);
    assert_int_equal(setenv("CLGRAD_CONV", "gather", 1), 0);
    assert_int_equal(clg_conv2d_forward(ctx, t.x, t.w, NULL, c.p, t.y), CLG_INVALID_ARGUMENT);
    assert_non_null(strstr(clg_context_errmsg(ctx), "CLGRAD_CONV"));
    assert_int_equal(unsetenv("CLGRAD_CONV"), 0);
    REF_OK(ctx, clg_conv2d_forward(ctx, t.x, t.w, NULL, c.p, t.y));
    case_free(&t);
}

/* ---------------------------------------------------------------- the direct forward */

/* CLGRAD_CONV=direct: a stride-1 forward runs from zero-padded copies of the images (pad_planes
 * and conv_fwd), y bit for bit the im2col route's; a strided one (or one whose k the packed
 * kernel splits into passes) falls back to the panels. Every
 * case of the table, one chunk and one image per chunk, with the tile given (vw 0: the device's). */
static void direct_case_run(clg_kernel_style style, clg_dtype dt, const conv_case *c, uint64_t seed,
                            clg_packed_config tile, int chunkings) {
    /* k = Cg*KH*KW from 2048 on: the packed kernel adds k in passes (other bits), so panels */
    const bool stride1 = c->p.stride_h == 1 && c->p.stride_w == 1 && c->C / c->p.groups * c->KH * c->KW < 2048;
    for (int wi = 0; wi < chunkings; wi++) {
        char what[400], name[256];
        case_name(c, "direct forward", name, sizeof name);
        snprintf(what, sizeof what, "%s, %s, tile %dx%d, %s", name, clg_dtype_name(dt), tile.mr, tile.nr,
                 wi ? "one image per chunk" : "one chunk");
        clg_context *ctx = route_context(style, wi ? 1 : (size_t)1 << 30, "packed");
        if (tile.vw) REF_OK(ctx, clg_blas_packed_set_config(ctx, dt, tile));
        route_seen sd, sc;
        size_t nd, nc;
        double *got = forward_on(ctx, "direct", dt, c, seed, false, &sd, &nd);
        double *want = forward_on(ctx, "im2col", dt, c, seed, false, &sc, &nc);
        clg_context_free(ctx);
        assert_int_equal(nd, nc);
        if ((sd.direct == 1) != stride1 || (stride1 && (sd.im2col != 0 || sd.pack_conv != 0)))
            fail_msg("%s: direct ran conv_fwd %llu times, im2col %llu, pack_b_conv %llu", what,
                     (unsigned long long)sd.direct, (unsigned long long)sd.im2col,
                     (unsigned long long)sd.pack_conv);
        assert_same_bits(got, want, nd, what);
        free(got), free(want);
    }
}

static void test_direct_bits_f32(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        direct_case_run(style, CLG_F32, &cases[i], 1400 + i, (clg_packed_config){0, 0, 0}, 2);
}

static void test_direct_bits_f64(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        direct_case_run(style, CLG_F64, &cases[i], 1450 + i, (clg_packed_config){0, 0, 0}, 2);
}

/* The other machines' tiles, as test_dx_tiles. */
static void test_direct_tiles(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    if (style != CLG_KERNEL_STYLE_CPU) skip(); /* as test_dx_tiles */
    const int widths[2] = {16, 4};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            direct_case_run(style, CLG_F32, &cases[i], 1500 + i, clg_blas_packed_default_config(widths[t]), 2);
}

/* The cases whose last tiles read furthest past the padded planes (small images, padding
 * wider than the image, 1x1 outputs, rows as wide as a tile), with three tiles and the batch
 * in one chunk: the checks the Oclgrind suite runs for conv_fwd's reads (the whole table takes
 * minutes there). */
static void test_direct_edges(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    const size_t picks[] = {0, 6, 7, 8, 15};
    const int widths[3] = {0, 16, 4};
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < sizeof picks / sizeof *picks; i++)
            direct_case_run(style, CLG_F32, &cases[picks[i]], 1600 + i,
                            widths[t] ? clg_blas_packed_default_config(widths[t]) : (clg_packed_config){0, 0, 0},
                            1);
}

/* ---------------------------------------------------------------- the input gradient */

/* Launches that tell the dx routes apart. */
typedef struct dx_seen {
    uint64_t direct; /* "gemm conv_dx": dx straight from dy */
    uint64_t col2im; /* "conv2d col2im": through dcol */
} dx_seen;

/* One value of t at element i, written from a double in t's dtype. */
static void put_value(clg_context *ctx, clg_tensor *t, size_t i, double v) {
    const size_t es = clg_dtype_size(clg_tensor_dtype(t));
    const float f = (float)v;
    REF_OK(ctx, clg_tensor_write_at(t, i, es == 4 ? (const void *)&f : (const void *)&v, es));
}

/* dx of case c by clg_conv2d_backward with CLGRAD_CONV=route, dx only, as doubles. beta != 0:
 * dx starts from random values; special: w holds a NaN and dy an infinity (NaN spreads as
 * through dcol, and a masked lane's product never reaches a sum). */
static double *dx_on(clg_context *ctx, const char *route, clg_dtype dt, const conv_case *c, uint64_t seed,
                     double beta, bool special, dx_seen *seen, size_t *n_out) {
    assert_int_equal(setenv("CLGRAD_CONV", route, 1), 0);
    case_tensors t;
    case_make(ctx, dt, c, seed, &t);
    if (beta != 0.0) {
        clg_tensor_free(t.dx);
        t.dx = ref_rand(ctx, dt, 4, t.xs, seed + 7, -1, 1);
    }
    if (special) {
        put_value(ctx, t.w, clg_tensor_numel(t.w) / 2, NAN);
        put_value(ctx, t.dy, clg_tensor_numel(t.dy) / 3, INFINITY);
    }
    clg_profiler_reset(ctx);
    REF_OK(ctx, clg_profiler_start(ctx));
    REF_OK(ctx, clg_conv2d_backward(ctx, t.x, t.w, t.dy, c->p, t.dx, NULL, NULL, beta));
    stop_counting(ctx, 2, (const char *const[]){"gemm conv_dx", "conv2d col2im"},
                  (uint64_t *const[]){&seen->direct, &seen->col2im});
    double *out = ref_to_host_f64(t.dx);
    *n_out = clg_tensor_numel(t.dx);
    case_free(&t);
    assert_int_equal(unsetenv("CLGRAD_CONV"), 0);
    return out;
}

/* Stride-1 cases (the rest take dcol and col2im on every route): same and valid padding,
 * dilation, groups, 1x1, images smaller and larger than a tile, OW != W (tiles across rows
 * read dy lane by lane), padding wider than the kernel reaches, many channels. */
static const conv_case dx_cases[] = {
    {2, 3, 9, 8, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), false},
    {3, 4, 8, 8, 6, 3, 3, P_(1, 1, 2, 2, 2, 2, 2), false},   /* dilation, groups */
    {3, 4, 6, 6, 4, 3, 3, P_(1, 1, 1, 1, 1, 1, 4), false},   /* depthwise */
    {2, 5, 7, 9, 3, 1, 1, P_(1, 1, 0, 0, 1, 1, 1), false},   /* 1x1 */
    {2, 3, 13, 11, 7, 5, 3, P_(1, 1, 2, 1, 1, 1, 1), false}, /* same, odd sizes */
    {3, 2, 10, 12, 3, 5, 5, P_(1, 1, 0, 0, 1, 1, 1), false}, /* valid: OW < W */
    {4, 2, 5, 3, 3, 3, 3, P_(1, 1, 2, 2, 2, 1, 1), false},   /* padding past the kernel's reach */
    {2, 2, 4, 70, 3, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), false},  /* rows longer than tiles */
    {2, 40, 7, 7, 36, 3, 3, P_(1, 1, 1, 1, 1, 1, 1), false}, /* channels in several tiles */
    {1, 6, 1, 1, 5, 1, 1, P_(1, 1, 0, 0, 1, 1, 1), false},   /* one pixel */
};

/* dx by the implicit route equals dx by im2col bit for bit, and each route ran as named. tile:
 * the packed kernel's tile for both routes, or vw 0 for the device's own. */
static void dx_case_run_tile(clg_kernel_style style, clg_dtype dt, const conv_case *c, uint64_t seed,
                             clg_packed_config tile) {
    const double betas[2] = {0.0, 1.0};
    for (int wi = 0; wi < 2; wi++)
        for (int bi = 0; bi < 4; bi++) {
            const double beta = betas[bi & 1];
            const bool special = bi >= 2;
            char what[400], name[256];
            case_name(c, "dx", name, sizeof name);
            snprintf(what, sizeof what, "%s, %s, beta %g%s, %s", name, clg_dtype_name(dt), beta,
                     special ? ", NaN in w and inf in dy" : "", wi ? "one image per chunk" : "one chunk");
            clg_context *ctx = route_context(style, wi ? 1 : (size_t)1 << 30, "packed");
            if (tile.vw) REF_OK(ctx, clg_blas_packed_set_config(ctx, dt, tile));
            dx_seen si, sc;
            size_t ni, nc;
            double *got = dx_on(ctx, "implicit", dt, c, seed, beta, special, &si, &ni);
            double *want = dx_on(ctx, "im2col", dt, c, seed, beta, special, &sc, &nc);
            clg_context_free(ctx);
            assert_int_equal(ni, nc);
            if (si.direct != 1 || si.col2im != 0)
                fail_msg("%s: the implicit route ran conv_dx %llu times and col2im %llu times", what,
                         (unsigned long long)si.direct, (unsigned long long)si.col2im);
            if (sc.direct != 0 || sc.col2im == 0)
                fail_msg("%s: the im2col route ran conv_dx %llu times and col2im %llu times", what,
                         (unsigned long long)sc.direct, (unsigned long long)sc.col2im);
            size_t nan_count = 0;
            for (size_t i = 0; i < ni; i++) nan_count += isnan(want[i]) != 0;
            if (special && nan_count == 0) fail_msg("%s: the NaN in w reached no dx value", what);
            assert_same_bits(got, want, ni, what);
            free(got), free(want);
        }
}

static void dx_case_run(clg_kernel_style style, clg_dtype dt, const conv_case *c, uint64_t seed) {
    dx_case_run_tile(style, dt, c, seed, (clg_packed_config){0, 0, 0});
}

/* The other machines' tiles (clg_blas_packed_default_config): 16-wide vectors (AVX-512: 8 x 32,
 * tiles wider than a 28-pixel row) and 4-wide ones (4 x 12), whatever this device prefers. */
static void test_dx_tiles(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    /* conv_dx is one kernel in both styles (only the im2col route's kernels differ, and
     * test_dx_bits_* compare against both): the other tiles once, in the CPU style's group */
    if (style != CLG_KERNEL_STYLE_CPU) skip();
    const int widths[2] = {16, 4};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof dx_cases / sizeof *dx_cases; i++)
            dx_case_run_tile(style, CLG_F32, &dx_cases[i], 1300 + i, clg_blas_packed_default_config(widths[t]));
}

/* The cases whose conv_dx tiles read furthest outside dy's planes (small images, OW < W,
 * padding past the kernel's reach, one pixel) with the other machines' tiles: the checks the
 * Oclgrind suite runs for conv_dx's reads (test_dx_tiles takes minutes there). */
static void test_dx_edges(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    if (style != CLG_KERNEL_STYLE_CPU) skip(); /* as test_dx_tiles */
    const size_t picks[] = {0, 5, 6, 9};
    const int widths[2] = {16, 4};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < sizeof picks / sizeof *picks; i++)
            dx_case_run_tile(style, CLG_F32, &dx_cases[picks[i]], 1700 + i, clg_blas_packed_default_config(widths[t]));
}

static void test_dx_bits_f32(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    for (size_t i = 0; i < sizeof dx_cases / sizeof *dx_cases; i++)
        dx_case_run(style, CLG_F32, &dx_cases[i], 1200 + i);
}

static void test_dx_bits_f64(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    for (size_t i = 0; i < sizeof dx_cases / sizeof *dx_cases; i++)
        dx_case_run(style, CLG_F64, &dx_cases[i], 1250 + i);
}

/* auto gathers dx from dy for "same" convolutions (OW == W) only; strides and CLBlast never. */
static void test_dx_auto(void **state) {
    const clg_kernel_style style = clg_context_kernel_style(*state);
    const conv_case strided = {2, 3, 9, 8, 4, 3, 3, P_(2, 1, 1, 1, 1, 1, 1), false};
    const struct {
        const conv_case *c;
        const char *route, *path;
        bool direct;
    } runs[] = {
        {&dx_cases[0], "auto", "packed", true},   {&dx_cases[5], "auto", "packed", false},
        {&strided, "implicit", "packed", false},  {&dx_cases[0], "implicit", "clblast", false},
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        clg_context *ctx = route_context(style, 0, runs[i].path);
        dx_seen seen;
        size_t n;
        free(dx_on(ctx, runs[i].route, CLG_F32, runs[i].c, 60 + i, 0.0, false, &seen, &n));
        clg_context_free(ctx);
        if ((seen.direct > 0) != runs[i].direct || (seen.col2im > 0) == runs[i].direct)
            fail_msg("run %zu (%s on %s): conv_dx %llu launches, col2im %llu", i, runs[i].route, runs[i].path,
                     (unsigned long long)seen.direct, (unsigned long long)seen.col2im);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bits_f32), cmocka_unit_test(test_bits_f64),
        cmocka_unit_test(test_graph),    cmocka_unit_test(test_clblast_falls_back),
        cmocka_unit_test(test_auto),     cmocka_unit_test(test_bad_env),
        cmocka_unit_test(test_dx_bits_f32), cmocka_unit_test(test_dx_bits_f64),
        cmocka_unit_test(test_dx_auto),     cmocka_unit_test(test_dx_tiles),
        cmocka_unit_test(test_dx_edges),
        cmocka_unit_test(test_direct_bits_f32), cmocka_unit_test(test_direct_bits_f64),
        cmocka_unit_test(test_direct_tiles),    cmocka_unit_test(test_direct_edges),
    };
    return REF_RUN_BOTH_STYLES("conv2d implicit", tests);
}
