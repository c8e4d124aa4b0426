/* src/blas/packed.c - the packed path: host side of the register-blocked GEMM for CPU-shaped
 * devices (kernels in cl/blas/gemm_packed.cl): tile shape from the device's preferred vector
 * width, which operands to pack, the pool buffers for the panels, the launches. Its entry in
 * the path table (src/blas/gemm.c) is at the bottom. Tests: tests/blas/test_gemm_packed.c.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "blas/paths.h"

#define PROGRAM "blas/gemm_packed"

/* Work per packing work-item (cl/blas/gemm_packed.cl): KB values of k of one panel, or for
 * B not transposed KBB rows of PG panels (a run of about 256 values of each row). Larger
 * pieces than the 64 of k once used: a work-group costs PoCL 0.1-0.2 us. */
enum { PACK_KB = 256, PACK_KBB = 32 };

/* Products with packed A, k >= 2 KC_PASS and at least 8 column blocks run k in passes, tiles
 * in L2-sized blocks of A (run() below). Measured at 2048^3 on PoCL/AVX2: +7-31% while other tenants loaded the
 * machine's L3, 1.5-3% slower on a quiet machine (where the kernel runs at ~92% of the FMA
 * peak either way); at 1024 (one pass) nothing changes, and two passes of 512 there were 5%
 * slower. */
#define KC_PASS ((size_t)1024)
#define A_BLOCK_BYTES ((size_t)256 << 10)
static int pack_pg(clg_packed_config cfg) { return cfg.nr >= 256 ? 1 : 256 / cfg.nr; }

/* Tiles per work-item: enough that a work-item does ~16K multiply-adds (its scheduling
 * cost is then small beside its work), but never fewer than 8 work-items per compute unit
 * to share out. Runtime, not a build option, so it costs no extra program builds. */
static cl_int tiles_per_item(clg_context *ctx, size_t tiles, size_t tile_fmas) {
    const size_t cu = ctx->info.compute_units ? ctx->info.compute_units : 1;
    size_t t = tile_fmas >= 16384 ? 1 : 16384 / (tile_fmas ? tile_fmas : 1);
    const size_t spread = tiles / (8 * cu);
    if (t > spread) t = spread;
    return t < 1 ? 1 : (cl_int)(t > 1024 ? 1024 : t);
}

clg_packed_config clg_blas_packed_default_config(int vw) {
    /* The accumulators must stay in vector registers: 12 vectors of VW leave room for the
     * B row and the broadcast in 16 registers (AVX2), 16 of 32 (AVX-512) keep two FMA
     * chains per port in flight with room for a second B row. (6 x 2VW measured within noise
     * of 4 x 3VW at 512-2048 on AVX2 and 20-30% slower at 256, where A is read in place;
     * clgrad-tune picks per device.) */
    if (vw >= 16) return (clg_packed_config){vw, 8, 2 * vw};
    if (vw < 2) vw = 4; /* a scalar-preferring device still gets vector code, unrolled */
    return (clg_packed_config){vw, 4, 3 * vw};
}

static int preferred_width(clg_context *ctx, clg_dtype dt) {
    cl_uint w = 0;
    const cl_device_info q =
        dt == CLG_F64 ? CL_DEVICE_PREFERRED_VECTOR_WIDTH_DOUBLE : CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT;
    if (clGetDeviceInfo(ctx->device, q, sizeof w, &w, NULL) != CL_SUCCESS || w == 0) {
        const cl_device_info nq =
            dt == CLG_F64 ? CL_DEVICE_NATIVE_VECTOR_WIDTH_DOUBLE : CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT;
        if (clGetDeviceInfo(ctx->device, nq, sizeof w, &w, NULL) != CL_SUCCESS) w = 0;
    }
    /* OpenCL vector types come in 2, 4, 8 and 16 */
    return w >= 16 ? 16 : w >= 8 ? 8 : w >= 4 ? 4 : w >= 2 ? 2 : 1;
}

static bool config_valid(clg_packed_config c) {
    const bool vw_ok = c.vw == 2 || c.vw == 4 || c.vw == 8 || c.vw == 16;
    return vw_ok && c.mr >= 1 && c.mr <= 16 && c.nr >= c.vw && c.nr % c.vw == 0 && c.nr <= 64;
}

clg_packed_config clg__packed_config(clg_context *ctx, clg_dtype dt) {
    clg_gemm_state *s = clg__gemm_state_peek(ctx);
    const clg_packed_config *c = s ? &s->cfg[dt == CLG_F64] : NULL;
    if (c && config_valid(*c)) return *c;
    const clg_packed_config def = clg_blas_packed_default_config(preferred_width(ctx, dt));
    if (s) s->cfg[dt == CLG_F64] = def;
    return def;
}

clg_status clg_blas_packed_config(clg_context *ctx, clg_dtype dt, clg_packed_config *out) {
    if (!ctx || !out) return CLG_INVALID_ARGUMENT;
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    if (st == CLG_OK) *out = clg__packed_config(ctx, dt);
    return st;
}

clg_status clg_blas_set_pack_mode(clg_context *ctx, clg_pack_mode mode) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    if (mode != CLG_PACK_BY_SIZE && mode != CLG_PACK_NONE && mode != CLG_PACK_ALL)
        return clg__fail(ctx, CLG_INVALID_ARGUMENT, "gemm packed: pack mode %d", (int)mode);
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    if (st == CLG_OK) s->pack_mode = mode;
    return st;
}

clg_status clg_blas_packed_set_config(clg_context *ctx, clg_dtype dt, clg_packed_config cfg) {
    if (!ctx) return CLG_INVALID_ARGUMENT;
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    if (st != CLG_OK) return st;
    const bool reset = cfg.vw == 0 && cfg.mr == 0 && cfg.nr == 0; /* resolved again on next use */
    if (!reset && !config_valid(cfg))
        return clg__fail(ctx, CLG_INVALID_ARGUMENT,
                         "gemm packed: tile MR=%d NR=%d VW=%d: VW must be 2, 4, 8 or 16, NR a multiple "
                         "of VW up to 64, MR 1..16",
                         cfg.mr, cfg.nr, cfg.vw);
    s->cfg[dt == CLG_F64] = cfg;
    /* other build options: the kernels are built (and may fail) anew */
    clg__gemm_path_reset(ctx, &clg__gemm_path_packed, dt);
    return CLG_OK;
}

/* Build options of the packed program for a tile. __builtin_prefetch only where the compiler
 * is known to lower it (PoCL's CPU devices): other compilers (Oclgrind's) leave an undefined
 * llvm.prefetch call and the kernels cannot be created; OpenCL's own prefetch() stands in. */
static void build_options(const clg_context *ctx, clg_packed_config cfg, char *buf, size_t len) {
    const bool pocl_cpu = clg__device_is_plain_cpu(ctx) &&
                          strstr(ctx->info.platform_name, "Portable Computing Language") != NULL;
    snprintf(buf, len, "-DMR=%d -DNR=%d -DVW=%d -DKB=%d -DKBB=%d -DPG=%d%s", cfg.mr, cfg.nr, cfg.vw, PACK_KB,
             PACK_KBB, pack_pg(cfg), pocl_cpu ? " -DCLG_HAVE_BUILTIN_PREFETCH=1" : "");
}

/* Every index the kernels compute fits an int (they take int arguments). */
static bool fits_int(size_t x) { return x <= (size_t)INT_MAX; }

/* A launch costs about as much as moving this many elements (PoCL: ~5 us queued). */
#define LAUNCH_COST 20000.0

typedef struct plan {
    bool swap; /* compute Cᵀ = op(B)ᵀ op(A)ᵀ, storing C transposed */
    bool pack_a, pack_b;
    bool gather_b; /* B transposed read in place, element by element (tiny products) */
    bool dot;      /* A Bᵀ as row-by-row dot products (gemm_tile_nt): nothing packed */
    double cost;   /* elements moved beyond the product itself */
} plan;

/* Which operands to pack, for one orientation of the product. Packing A (one pass over it)
 * pays when the tiles re-read A many times and it does not stay in cache; B read in place
 * needs op(B) row-major and is cheap while its tile-wide blocks of k rows stay in cache and
 * in the TLB, but a pass over a big B costs as much as the product when m is small (conv2d
 * forward: m = output channels). Limits measured on PoCL (tools/clgrad-bench gemm). */
static plan plan_for(clg_pack_mode mode, clg_packed_config cfg, bool swap, bool ta, bool tb, size_t m,
                     size_t n, size_t k, size_t elt) {
    const size_t tiles_n = (n + (size_t)cfg.nr - 1) / (size_t)cfg.nr;
    bool pa = tiles_n > 2 && m * k * elt > ((size_t)256 << 10);
    bool pb = tb || m >= 256 || k >= 512;
    /* below about 2^18 multiply-adds a launch (some microseconds) outweighs the product */
    const bool tiny = (double)m * (double)n * (double)k <= (double)(1 << 18);
    bool gather = tb && tiny;
    /* A Bᵀ as dot products of rows needs no launch but the product, and beats packing B
     * until both k and n are large (conv2d's weight gradient: k = batch x pixels) */
    bool dot = !swap && tb && !ta && !(k > 8192 && n > 64);
    if (mode == CLG_PACK_ALL) pa = pb = true, gather = dot = false;
    if (mode == CLG_PACK_NONE) pa = false, pb = false, gather = tb, dot = tb && !ta;
    if (dot) pa = pb = gather = false;
    if (gather) pb = false;
    const double cost = (pa ? (double)m * (double)k + LAUNCH_COST : 0) +
                        (pb ? (double)k * (double)n + LAUNCH_COST : 0) +
                        (swap ? 2.0 * (double)m * (double)n : 0);
    return (plan){swap, pa, pb, gather, dot, cost};
}

/* The cheaper orientation: Cᵀ = op(B)ᵀ op(A)ᵀ turns a transposed B (which must be packed)
 * into an A read in place, at the price of a strided store of C; it wins for weight
 * gradients (dW = dY colᵀ: C small, B = col large). */
static plan choose_plan(clg_pack_mode mode, clg_packed_config cfg, bool ta, bool tb, size_t m, size_t n,
                        size_t k, size_t elt) {
    const plan direct = plan_for(mode, cfg, false, ta, tb, m, n, k, elt);
    if (!tb || direct.dot || mode != CLG_PACK_BY_SIZE) return direct;
    /* swapped, A' = op(B)ᵀ is transposed exactly when B is not, and B' = op(A)ᵀ when A is not */
    const plan swapped = plan_for(mode, cfg, true, !tb, !ta, n, m, k, elt);
    return swapped.cost < direct.cost ? swapped : direct;
}

/* Checked a + b * c, a + b * c + d: false past SIZE_MAX (and then past INT_MAX too). */
static bool fits_int_sum(size_t a, size_t b, size_t c, size_t d) {
    size_t x;
    return clg__mul_size(b, c, &x) && clg__add_size(x, a, &x) && clg__add_size(x, d, &x) && fits_int(x);
}

static bool packed_fits(clg_context *ctx, const clg_gemm_args *g) {
    const clg_packed_config cfg = clg__packed_config(ctx, g->dt);
    const size_t m = g->m, n = g->n, k = g->k;
    if (!fits_int(m) || !fits_int(n) || !fits_int(k)) return false;
    const size_t tiles_m = (m + (size_t)cfg.mr - 1) / (size_t)cfg.mr;
    const size_t tiles_n = (n + (size_t)cfg.nr - 1) / (size_t)cfg.nr;
    /* + 1024: the kernels' tile index runs up to a whole work-item (tiles_per_item) past the end */
    return fits_int_sum(g->a_off, g->ta ? k : m, g->lda, 0) && fits_int_sum(g->b_off, g->tb ? n : k, g->ldb, 0) &&
           fits_int_sum(g->c_off, m, g->ldc, 0) && fits_int_sum(1024, tiles_m, tiles_n, 0) &&
           fits_int_sum(0, tiles_m * (size_t)cfg.mr, k, 0) && fits_int_sum(0, tiles_n * (size_t)cfg.nr, k, 0);
}

/* One orientation, operands as given; c_trans stores C(i, j) at c[c_off + j*ldc + i]. With cs,
 * B (not transposed) is a convolution's im2col matrix, packed from the images (pack_b_conv)
 * into the panels pack_b would make of it; b, b_off and ldb are then unused. */
static clg_status run(clg_context *ctx, clg_dtype dt, clg_packed_config cfg, plan pl, bool ta, bool tb,
                      size_t m, size_t n, size_t k, double alpha, cl_mem a, size_t a_off, size_t lda,
                      cl_mem b, size_t b_off, size_t ldb, const clg_gemm_conv_src *cs, double beta, cl_mem c,
                      size_t c_off, size_t ldc) {
    const size_t elt = clg_dtype_size(dt);
    const size_t tiles_m = (m + (size_t)cfg.mr - 1) / (size_t)cfg.mr;
    const size_t tiles_n = (n + (size_t)cfg.nr - 1) / (size_t)cfg.nr;
    char opts[160];
    build_options(ctx, cfg, opts, sizeof opts);
    const cl_int im = (cl_int)m, in = (cl_int)n, ik = (cl_int)k, itm = (cl_int)tiles_m;
    const cl_int coff = (cl_int)c_off, ildc = (cl_int)ldc;
    /* alpha and beta travel in the kernel's REAL; `unit` is beta 1 for later k passes */
    const float af = (float)alpha, bf = (float)beta, one_f = 1.0f;
    const double one_d = 1.0;
    const clg_karg al = dt == CLG_F64 ? CLG_ARG(alpha) : CLG_ARG(af);
    const clg_karg be = dt == CLG_F64 ? CLG_ARG(beta) : CLG_ARG(bf);
    const clg_karg unit = dt == CLG_F64 ? CLG_ARG(one_d) : CLG_ARG(one_f);
    if (pl.dot) {
        /* NT = NR / VW columns of C per tile */
        const size_t nt = (size_t)(cfg.nr / cfg.vw), all = tiles_m * ((n + nt - 1) / nt);
        const cl_int tpw = tiles_per_item(ctx, all, (size_t)cfg.mr * nt * k);
        const size_t items = (all + (size_t)tpw - 1) / (size_t)tpw;
        cl_kernel kd;
        clg_status st = clg__kernel_dt(ctx, PROGRAM, "gemm_tile_nt", dt, opts, &kd);
        if (st != CLG_OK) return st;
        const cl_int aoff = (cl_int)a_off, ilda = (cl_int)lda, boff = (cl_int)b_off, ildb = (cl_int)ldb;
        return clg__launch(ctx, kd, 1, &items, (size_t[]){1},
                           (clg_karg[]){CLG_ARG(im), CLG_ARG(in), CLG_ARG(ik), CLG_ARG(a), CLG_ARG(aoff),
                                        CLG_ARG(ilda), CLG_ARG(b), CLG_ARG(boff), CLG_ARG(ildb), al, be,
                                        CLG_ARG(c), CLG_ARG(coff), CLG_ARG(ildc), CLG_ARG(itm), CLG_ARG(tpw)},
                           16, "gemm_tile_nt");
    }
    const bool pack_a = pl.pack_a, pack_b = cs || pl.pack_b || (tb && !pl.gather_b);
    cl_kernel kpa = NULL, kpb = NULL, kc;
    clg_status st = clg__kernel_dt(ctx, PROGRAM, pack_a ? "gemm_tile" : "gemm_tile_da", dt, opts, &kc);
    if (st == CLG_OK && pack_a) st = clg__kernel_dt(ctx, PROGRAM, "pack_a", dt, opts, &kpa);
    if (st == CLG_OK && pack_b)
        st = clg__kernel_dt(ctx, PROGRAM, cs ? "pack_b_conv" : "pack_b", dt, opts, &kpb);
    if (st != CLG_OK) return st;

    const size_t one[2] = {1, 1}, kblocks = (k + PACK_KB - 1) / PACK_KB;
    clg_pool_block ap = {0}, bp = {0};
    if (pack_a) {
        // (tiles_m, k, MR)
        st = clg__pool_alloc(ctx, tiles_m * (size_t)cfg.mr * k * elt, &ap);
        const cl_int off = (cl_int)a_off, ld = (cl_int)lda, tr = ta;
        if (st == CLG_OK)
            st = clg__launch(ctx, kpa, 2, (size_t[]){kblocks, tiles_m}, one,
                             (clg_karg[]){CLG_ARG(a), CLG_ARG(off), CLG_ARG(ld), CLG_ARG(tr), CLG_ARG(im),
                                          CLG_ARG(ik), CLG_ARG(ap.mem)},
                             7, "gemm pack_a");
    }
    if (st == CLG_OK && pack_b && cs) {
        // (tiles_n, k, NR), from the images
        st = clg__pool_alloc(ctx, tiles_n * (size_t)cfg.nr * k * elt, &bp);
        const cl_ulong xoff = cs->x_off, xlen = cs->x_len;
        /* panels per work-item: about 8K values each, as tiles_per_item does for the tiles */
        const cl_int ppi =
            tiles_per_item(ctx, tiles_n * kblocks, (k < PACK_KB ? k : PACK_KB) * (size_t)cfg.nr / 2);
        const size_t groups = (tiles_n + (size_t)ppi - 1) / (size_t)ppi;
        if (st == CLG_OK)
            st = clg__launch(ctx, kpb, 2, (size_t[]){kblocks, groups}, one,
                             (clg_karg[]){CLG_ARG(cs->x),  CLG_ARG(xoff),   CLG_ARG(xlen),   CLG_ARG(cs->C),
                                          CLG_ARG(cs->H),  CLG_ARG(cs->W),  CLG_ARG(cs->KH), CLG_ARG(cs->KW),
                                          CLG_ARG(cs->SH), CLG_ARG(cs->SW), CLG_ARG(cs->PH), CLG_ARG(cs->PW),
                                          CLG_ARG(cs->DH), CLG_ARG(cs->DW), CLG_ARG(cs->OH), CLG_ARG(cs->OW),
                                          CLG_ARG(in),     CLG_ARG(ik),     CLG_ARG(ppi),    CLG_ARG(bp.mem)},
                             20, "gemm pack_b_conv");
    } else if (st == CLG_OK && pack_b) {
        // (tiles_n, k, NR)
        st = clg__pool_alloc(ctx, tiles_n * (size_t)cfg.nr * k * elt, &bp);
        const cl_int off = (cl_int)b_off, ld = (cl_int)ldb, tr = tb;
        const size_t pg = (size_t)pack_pg(cfg);
        const size_t grid[2] = {tb ? kblocks : (k + PACK_KBB - 1) / PACK_KBB,
                                tb ? tiles_n : (tiles_n + pg - 1) / pg};
        if (st == CLG_OK)
            st = clg__launch(ctx, kpb, 2, grid, one,
                             (clg_karg[]){CLG_ARG(b), CLG_ARG(off), CLG_ARG(ld), CLG_ARG(tr), CLG_ARG(in),
                                          CLG_ARG(ik), CLG_ARG(bp.mem)},
                             7, "gemm pack_b");
    }
    if (st == CLG_OK) {
        /* B: a packed panel per column block, op(B) itself row by row, or B transposed read
         * element by element */
        const cl_mem bm = pack_b ? bp.mem : b;
        const cl_int boff = pack_b ? 0 : (cl_int)b_off;
        /* NR * ldb (B transposed in place) is the step between column blocks: within the
         * n * ldb elements packed_fits checked when there are two blocks or more, but a lone
         * block (n < NR) never steps, and NR * ldb may then pass INT_MAX. */
        const cl_int b_ps = pack_b ? (cl_int)k * cfg.nr : tb ? (tiles_n > 1 ? cfg.nr * (cl_int)ldb : 0) : cfg.nr;
        const cl_int b_rs = pack_b ? cfg.nr : tb ? 1 : (cl_int)ldb, b_cs = !pack_b && tb ? (cl_int)ldb : 1;
        const cl_int b_direct = !pack_b;
        const cl_int ctr = pl.swap;
        const size_t all = tiles_m * tiles_n;
        const cl_int tpw = tiles_per_item(ctx, all, (size_t)cfg.mr * (size_t)cfg.nr * k);
        const size_t items = (all + (size_t)tpw - 1) / (size_t)tpw;
        if (pack_a) {
            /* k in passes of about KC_PASS (each adds its share to C, beta 1 after the first),
             * tiles in blocks of mb row panels whose A slice fits A_BLOCK_BYTES: the block
             * stays in L2 while the pass's B panels go by, instead of all of A streaming from
             * L3 once per B panel (1.4 GB of traffic at 2048^3, 0.4 GB blocked). With few B
             * panels (tiles_n < 8: weight gradients, C small) A streams only a few times and
             * the extra passes would cost more than they save. */
            const size_t passes = tiles_n >= 8 && k / KC_PASS ? k / KC_PASS : 1;
            const size_t kcb = (k + passes - 1) / passes;
            const size_t mbs = passes > 1 ? A_BLOCK_BYTES / ((size_t)cfg.mr * kcb * elt) : tiles_m;
            const cl_int mb = (cl_int)(mbs < 1 ? 1 : mbs > tiles_m ? tiles_m : mbs);
            const cl_int a_ps = (cl_int)k * cfg.mr;
            for (size_t k0 = 0; (k0 == 0 || k0 < k) && st == CLG_OK; k0 += kcb) {
                const cl_int kc_len = (cl_int)(k - k0 < kcb ? k - k0 : kcb), aoff = (cl_int)k0 * cfg.mr;
                const cl_int boffp = boff + (cl_int)k0 * b_rs;
                const clg_karg bep = k0 == 0 ? be : unit;
                st = clg__launch(ctx, kc, 1, &items, one,
                                 (clg_karg[]){CLG_ARG(im), CLG_ARG(in), CLG_ARG(kc_len), CLG_ARG(ap.mem),
                                              CLG_ARG(aoff), CLG_ARG(a_ps), CLG_ARG(bm), CLG_ARG(boffp),
                                              CLG_ARG(b_ps), CLG_ARG(b_rs), CLG_ARG(b_cs), CLG_ARG(b_direct), al,
                                              bep, CLG_ARG(c), CLG_ARG(coff), CLG_ARG(ildc), CLG_ARG(ctr),
                                              CLG_ARG(itm), CLG_ARG(mb), CLG_ARG(tpw)},
                                 21, "gemm_tile");
            }
        } else {
            /* op(A)[i, kk] = a[a_off + i*a_rs + kk*a_cs] */
            const cl_int aoff = (cl_int)a_off, a_rs = ta ? 1 : (cl_int)lda, a_cs = ta ? (cl_int)lda : 1;
            st = clg__launch(ctx, kc, 1, &items, one,
                             (clg_karg[]){CLG_ARG(im), CLG_ARG(in), CLG_ARG(ik), CLG_ARG(a), CLG_ARG(aoff),
                                          CLG_ARG(a_rs), CLG_ARG(a_cs), CLG_ARG(bm), CLG_ARG(boff), CLG_ARG(b_ps),
                                          CLG_ARG(b_rs), CLG_ARG(b_cs), CLG_ARG(b_direct), al, be, CLG_ARG(c),
                                          CLG_ARG(coff), CLG_ARG(ildc), CLG_ARG(ctr), CLG_ARG(itm), CLG_ARG(tpw)},
                             21, "gemm_tile_da");
        }
    }
    /* The queue is in order: whatever reuses these blocks is enqueued after this GEMM. */
    clg__pool_release(ctx, ap);
    clg__pool_release(ctx, bp);
    return st;
}

static clg_status packed_run(clg_context *ctx, const clg_gemm_args *g) {
    const clg_packed_config cfg = clg__packed_config(ctx, g->dt);
    if (!packed_fits(ctx, g))
        return clg__fail(ctx, CLG_UNSUPPORTED, "gemm packed: m=%zu n=%zu k=%zu: operands past 2^31 elements",
                         g->m, g->n, g->k);
    const clg_gemm_state *s = clg__gemm_state_peek(ctx);
    const clg_pack_mode mode = s ? s->pack_mode : CLG_PACK_BY_SIZE;
    const plan pl = choose_plan(mode, cfg, g->ta, g->tb, g->m, g->n, g->k, clg_dtype_size(g->dt));
    if (pl.swap) /* Cᵀ = op(B)ᵀ op(A)ᵀ: B takes A's place untransposed, and the other way round */
        return run(ctx, g->dt, cfg, pl, !g->tb, !g->ta, g->n, g->m, g->k, g->alpha, g->b, g->b_off, g->ldb,
                   g->a, g->a_off, g->lda, NULL, g->beta, g->c, g->c_off, g->ldc);
    return run(ctx, g->dt, cfg, pl, g->ta, g->tb, g->m, g->n, g->k, g->alpha, g->a, g->a_off, g->lda, g->b,
               g->b_off, g->ldb, NULL, g->beta, g->c, g->c_off, g->ldc);
}

/* Every kernel of the program, so that a compiler that builds the program but cannot give
 * one of its kernels (CL_INVALID_KERNEL_NAME) shows before the choice relies on the path. */
static clg_status packed_prepare(clg_context *ctx, clg_dtype dt) {
    static const char *const kernels[] = {"gemm_tile", "gemm_tile_da", "gemm_tile_nt", "pack_a",
                                          "pack_b",    "pack_b_conv",  "conv_dx",     "pad_planes",
                                          "conv_fwd"};
    char opts[160];
    build_options(ctx, clg__packed_config(ctx, dt), opts, sizeof opts);
    clg_status st = CLG_OK;
    for (size_t i = 0; st == CLG_OK && i < sizeof kernels / sizeof kernels[0]; i++) {
        cl_kernel k;
        st = clg__kernel_dt(ctx, PROGRAM, kernels[i], dt, opts, &k);
    }
    return st;
}

/* Shaped for a CPU (one work-item per group, a register tile, no local memory): the default
 * on devices that are CPUs and nothing else, where it ran 0.9x-4x OpenBLAS and 5-20x CLBlast's
 * untuned kernels (README, GEMM); simulators that report several device types are not. */
static bool packed_suits(const clg_context *ctx) { return clg__device_is_plain_cpu(ctx); }

const clg_gemm_path clg__gemm_path_packed = {"packed", packed_suits, packed_fits, packed_prepare, packed_run};

/* ---------------------------------------------------------------- implicit-GEMM convolution */

/* The product clg__gemm_conv_mem stands for, with B = col in memory (tight, at offset 0). */
static clg_gemm_args conv_args(clg_dtype dt, size_t m, size_t n, size_t k, double alpha, cl_mem a,
                               size_t a_off, size_t lda, double beta, cl_mem c, size_t c_off, size_t ldc) {
    return (clg_gemm_args){.dt = dt,
                           .m = m,
                           .n = n,
                           .k = k,
                           .alpha = alpha,
                           .beta = beta,
                           .a = a,
                           .c = c,
                           .a_off = a_off,
                           .lda = lda,
                           .ldb = n,
                           .c_off = c_off,
                           .ldc = ldc};
}

static clg_status conv_ok(clg_context *ctx, const clg_gemm_args *g, bool *ok) {
    *ok = false;
    if (!g->m || !g->n || !g->k || g->lda < (g->ta ? g->m : g->k) || g->ldc < g->n) return CLG_OK;
    clg_gemm_state *s = NULL;
    clg_status st = clg__gemm_state(ctx, &s);
    const clg_gemm_path *path = NULL;
    if (st == CLG_OK) st = clg__gemm_pick(ctx, s, g, &path);
    /* a product no path runs is the im2col route's error to report */
    if (st == CLG_UNSUPPORTED) {
        ctx->errmsg[0] = '\0';
        return CLG_OK;
    }
    if (st == CLG_OK) *ok = path == &clg__gemm_path_packed && packed_fits(ctx, g);
    return st;
}

/* The plan packed_run makes for the product with col in memory: B not transposed never swaps,
 * so A is packed (and k split into passes) exactly as there. */
static plan conv_plan(clg_context *ctx, clg_dtype dt, size_t m, size_t n, size_t k) {
    const clg_gemm_state *s = clg__gemm_state_peek(ctx);
    const clg_pack_mode mode = s ? s->pack_mode : CLG_PACK_BY_SIZE;
    return choose_plan(mode, clg__packed_config(ctx, dt), false, false, m, n, k, clg_dtype_size(dt));
}

clg_status clg__gemm_conv_check(clg_context *ctx, clg_dtype dtype, size_t m, size_t n, size_t k, size_t a_off,
                                size_t lda, size_t c_off, size_t ldc, bool *ok, bool *saves_pass) {
    const clg_gemm_args g = conv_args(dtype, m, n, k, 1.0, NULL, a_off, lda, 0.0, NULL, c_off, ldc);
    const clg_status st = conv_ok(ctx, &g, ok);
    if (saves_pass) *saves_pass = st == CLG_OK && *ok && conv_plan(ctx, dtype, m, n, k).pack_b;
    return st;
}

clg_status clg__gemm_conv_mem(clg_context *ctx, clg_dtype dtype, size_t m, size_t n, size_t k, double alpha,
                              cl_mem a, size_t a_off, size_t lda, const clg_gemm_conv_src *b, double beta,
                              cl_mem c, size_t c_off, size_t ldc) {
    if (m == 0 || n == 0) return CLG_OK;
    if (clg__fault(ctx, CLG_FAULT_ENQUEUE)) return clg__fail(ctx, CLG_BLAS_ERROR, "gemm: injected fault");
    const clg_gemm_args g = conv_args(dtype, m, n, k, alpha, a, a_off, lda, beta, c, c_off, ldc);
    bool ok = false;
    clg_status st = conv_ok(ctx, &g, &ok);
    if (st != CLG_OK) return st;
    if (!ok || !b)
        return clg__fail(ctx, CLG_UNSUPPORTED, "gemm: m=%zu n=%zu k=%zu from images: not on the packed path",
                         m, n, k);
    const clg_packed_config cfg = clg__packed_config(ctx, dtype);
    const plan pl = conv_plan(ctx, dtype, m, n, k);
    return run(ctx, dtype, cfg, pl, false, false, m, n, k, alpha, a, a_off, lda, NULL, 0, n, b, beta, c,
               c_off, ldc);
}

/* ---------------------------------------------------------------- direct convolution kernels */

clg_status clg__gemm_conv_direct_check(clg_context *ctx, clg_dtype dtype, bool ta, size_t m, size_t n, size_t k,
                                       bool *ok) {
    clg_gemm_args g = conv_args(dtype, m, n, k, 1.0, NULL, 0, ta ? m : k, 0.0, NULL, 0, n);
    g.ta = ta;
    clg_status st = conv_ok(ctx, &g, ok);
    /* k in one pass: from 2 KC_PASS on, run() splits k and adds the passes' sums (other bits) */
    if (st == CLG_OK && k >= 2 * KC_PASS) *ok = false;
    return st;
}

clg_status clg__gemm_conv_dx(clg_context *ctx, clg_dtype dtype, const clg_gemm_conv_dx *a, double beta) {
    if (clg__fault(ctx, CLG_FAULT_ENQUEUE)) return clg__fail(ctx, CLG_BLAS_ERROR, "gemm: injected fault");
    const clg_packed_config cfg = clg__packed_config(ctx, dtype);
    const size_t cg = (size_t)(a->C / a->G), kg = (size_t)(a->K / a->G), khw = (size_t)a->KH * a->KW;
    const size_t tiles = (size_t)a->N * (((size_t)a->H * a->W + (size_t)cfg.nr - 1) / (size_t)cfg.nr) *
                         (size_t)a->G * ((cg + (size_t)cfg.mr - 1) / (size_t)cfg.mr);
    /* the kernel's indices: tiles (+ a work-item's worth past the end), one group's weights, planes */
    if (!fits_int_sum(1024, tiles, 1, 0) || !fits_int_sum(0, kg * cg, khw, 0) ||
        !fits_int_sum(0, (size_t)a->OH, (size_t)a->OW, (size_t)cfg.nr) ||
        !fits_int_sum(0, (size_t)a->H, (size_t)a->W, (size_t)cfg.nr))
        return clg__fail(ctx, CLG_UNSUPPORTED, "gemm: conv2d input gradient of %d x %d x %d x %d past 2^31",
                         a->N, a->C, a->H, a->W);
    char opts[160];
    build_options(ctx, cfg, opts, sizeof opts);
    cl_kernel kd;
    clg_status st = clg__kernel_dt(ctx, PROGRAM, "conv_dx", dtype, opts, &kd);
    if (st != CLG_OK) return st;
    const cl_int tpw = tiles_per_item(ctx, tiles, (size_t)cfg.mr * (size_t)cfg.nr * kg * khw);
    const size_t items = (tiles + (size_t)tpw - 1) / (size_t)tpw, one = 1;
    const float bf = (float)beta;
    const clg_karg be = dtype == CLG_F64 ? CLG_ARG(beta) : CLG_ARG(bf);
    const cl_ulong dy_len = (cl_ulong)a->N * (cl_ulong)a->K * (cl_ulong)a->OH * (cl_ulong)a->OW;
    return clg__launch(ctx, kd, 1, &items, &one,
                       (clg_karg[]){CLG_ARG(a->dy), CLG_ARG(a->w),  CLG_ARG(a->dx), be,
                                    CLG_ARG(a->N),  CLG_ARG(a->C),  CLG_ARG(a->H),  CLG_ARG(a->W),
                                    CLG_ARG(a->K),  CLG_ARG(a->KH), CLG_ARG(a->KW), CLG_ARG(a->PH),
                                    CLG_ARG(a->PW), CLG_ARG(a->DH), CLG_ARG(a->DW), CLG_ARG(a->OH),
                                    CLG_ARG(a->OW), CLG_ARG(a->G),  CLG_ARG(tpw),  CLG_ARG(dy_len)},
                       20, "gemm conv_dx");
}

clg_status clg__gemm_conv_fwd(clg_context *ctx, clg_dtype dtype, const clg_gemm_conv_fwd *a) {
    if (clg__fault(ctx, CLG_FAULT_ENQUEUE)) return clg__fail(ctx, CLG_BLAS_ERROR, "gemm: injected fault");
    const clg_packed_config cfg = clg__packed_config(ctx, dtype);
    const size_t kg = (size_t)(a->K / a->G), cgkk = (size_t)(a->C / a->G) * (size_t)a->KH * a->KW;
    const size_t hp = (size_t)a->H + 2 * (size_t)a->PH, wp = (size_t)a->W + 2 * (size_t)a->PW;
    const size_t planes = (size_t)a->N * (size_t)a->C, slack = (size_t)cfg.nr + ((size_t)a->KW - 1) * a->DW;
    const size_t tiles = (size_t)a->N * (((size_t)a->OH * wp + (size_t)cfg.nr - 1) / (size_t)cfg.nr) *
                         (size_t)a->G * ((kg + (size_t)cfg.mr - 1) / (size_t)cfg.mr);
    /* the kernels' indices: tiles (+ a work-item's worth past the end), one group's weights, a
     * padded plane with its reads past the end; the padded planes themselves in size_t */
    size_t xp_len = 0;
    if (!fits_int_sum(1024, tiles, 1, 0) || !fits_int_sum(0, kg, cgkk, 0) || !fits_int_sum(slack, hp, wp, 0) ||
        !fits_int(planes) || !clg__mul_size(planes, hp * wp, &xp_len) || !clg__add_size(xp_len, slack, &xp_len) ||
        xp_len > SIZE_MAX / clg_dtype_size(dtype))
        return clg__fail(ctx, CLG_UNSUPPORTED, "gemm: direct conv2d forward of %d x %d x %d x %d past 2^31", a->N,
                         a->C, a->H, a->W);
    char opts[160];
    build_options(ctx, cfg, opts, sizeof opts);
    cl_kernel kp, kf;
    clg_status st = clg__kernel_dt(ctx, PROGRAM, "pad_planes", dtype, opts, &kp);
    if (st == CLG_OK) st = clg__kernel_dt(ctx, PROGRAM, "conv_fwd", dtype, opts, &kf);
    clg_pool_block xp = {0};
    if (st == CLG_OK) st = clg__pool_alloc(ctx, xp_len * clg_dtype_size(dtype), &xp);
    if (st != CLG_OK) return st;
    const cl_int ihp = (cl_int)hp, iwp = (cl_int)wp, iplanes = (cl_int)planes, islack = (cl_int)slack;
    const size_t one = 1;
    st = clg__launch(ctx, kp, 1, &planes, &one,
                     (clg_karg[]){CLG_ARG(a->x), CLG_ARG(xp.mem), CLG_ARG(a->H), CLG_ARG(a->W), CLG_ARG(a->PH),
                                  CLG_ARG(a->PW), CLG_ARG(iplanes), CLG_ARG(islack)},
                     8, "gemm pad_planes");
    const cl_int tpw = tiles_per_item(ctx, tiles, (size_t)cfg.mr * (size_t)cfg.nr * cgkk);
    const size_t items = (tiles + (size_t)tpw - 1) / (size_t)tpw;
    const cl_int has_bias = a->b != NULL;
    const cl_mem bm = a->b ? a->b : a->w; /* any valid buffer when there is no bias */
    if (st == CLG_OK)
        st = clg__launch(ctx, kf, 1, &items, &one,
                         (clg_karg[]){CLG_ARG(xp.mem), CLG_ARG(a->w),  CLG_ARG(bm),   CLG_ARG(has_bias),
                                      CLG_ARG(a->y),   CLG_ARG(a->N),  CLG_ARG(a->C), CLG_ARG(a->K),
                                      CLG_ARG(ihp),    CLG_ARG(iwp),   CLG_ARG(a->KH), CLG_ARG(a->KW),
                                      CLG_ARG(a->DH),  CLG_ARG(a->DW), CLG_ARG(a->OH), CLG_ARG(a->OW),
                                      CLG_ARG(a->G),   CLG_ARG(tpw)},
                         18, "gemm conv_fwd");
    /* The queue is in order: whatever reuses the block is enqueued after conv_fwd. */
    clg__pool_release(ctx, xp);
    return st;
}
