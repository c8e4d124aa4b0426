/* cl/blas/gemm_packed.cl - GEMM shaped for CPU devices: panel packing (pack_a, pack_b) and a
 * register-blocked compute kernel (gemm_tile, or gemm_tile_da reading A in place), one
 * work-item per work-group, no local memory, no barriers: the CPU way, not the GPU way.
 * Host side: src/blas/packed.c; tests: tests/blas/test_gemm_packed.c.
 * Speed: tools/clgrad-bench gemm.
 */
#include "common/defs.h"

/* Tile of C per work-item: MR rows by NR columns, NR = VW * (vectors per row). The host
 * picks VW from the device's preferred vector width and MR/NR from tuning; the defaults
 * only let the file compile alone. */
#ifndef VW
#define VW 8
#endif
#ifndef MR
#define MR 6
#endif
#ifndef NR
#define NR 16
#endif
#define NV (NR / VW)
#if NV * VW != NR
#error "NR must be a multiple of VW"
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define REALV CAT(REAL, VW)
#define VLOADV CAT(vload, VW)
#define VSTOREV CAT(vstore, VW)

/* Transposing copy into a panel: dst[kk*R + r] = src[r*rs + kk] for kk in [kb, kend),
 * r < rows, zero for rows <= r < R. The rows are read VW at a time and written back as one
 * contiguous block of VW*R, so both sides stream (a scalar scatter at stride R cost 1.5x
 * as much). */
#define DEFINE_PACK_ROWS(R)                                                                   \
    inline void pack_rows_##R(__global const REAL *src, const int rs, const int rows,         \
                              const int kb, const int kend, __global REAL *dst) {             \
        int kk = kb;                                                                          \
        for (; kk + VW <= kend; kk += VW) {                                                   \
            REAL blk[R][VW];                                                                  \
            _Pragma("unroll") for (int r = 0; r < R; r++) {                                   \
                const REALV v = r < rows ? VLOADV(0, src + (size_t)r * rs + kk) : (REALV)(0); \
                VSTOREV(v, 0, blk[r]);                                                        \
            }                                                                                 \
            __global REAL *d = dst + (size_t)kk * R;                                          \
            _Pragma("unroll") for (int j = 0; j < VW; j++)                                    \
            _Pragma("unroll") for (int r = 0; r < R; r++) d[j * R + r] = blk[r][j];           \
        }                                                                                     \
        for (; kk < kend; kk++)                                                               \
            for (int r = 0; r < R; r++)                                                       \
                dst[(size_t)kk * R + r] = r < rows ? src[(size_t)r * rs + kk] : (REAL)0;      \
    }
DEFINE_PACK_ROWS(MR)
DEFINE_PACK_ROWS(NR)

/* Straight copy into a panel: dst[kk*R + c] = src[kk*rs + c] for c < cols, zero past. */
#define DEFINE_PACK_COLS(R)                                                                   \
    inline void pack_cols_##R(__global const REAL *src, const int rs, const int cols,         \
                              const int kb, const int kend, __global REAL *dst) {             \
        for (int kk = kb; kk < kend; kk++) {                                                  \
            __global const REAL *s = src + (size_t)kk * rs;                                   \
            __global REAL *d = dst + (size_t)kk * R;                                          \
            if (cols == R)                                                                    \
                for (int c = 0; c < R; c++) d[c] = s[c];                                      \
            else                                                                              \
                for (int c = 0; c < R; c++) d[c] = c < cols ? s[c] : (REAL)0;                 \
        }                                                                                     \
    }
DEFINE_PACK_COLS(MR)
DEFINE_PACK_COLS(NR)

/* Packed A: panel p holds rows p*MR .. p*MR+MR-1 of op(A), K-major, zero rows past m:
 *   ap[(p * k + kk) * MR + r] = op(A)[p*MR + r, kk]            // (ceil(m/MR), k, MR)
 * op(A)[i, kk] = a[a_off + i*lda + kk], or a[a_off + kk*lda + i] when trans.
 * One work-item packs KB consecutive kk of one panel. */
#ifndef KB
#define KB 256
#endif
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pack_a(__global const REAL *a, const int a_off, const int lda, const int trans, const int m,
       const int k, __global REAL *ap) {
    const int kb = get_global_id(0) * KB, p = get_global_id(1);
    if (kb >= k || p * MR >= m) return;
    const int kend = min(k, kb + KB), rows = min(MR, m - p * MR);
    __global REAL *dst = ap + ((size_t)p * k) * MR;
    if (trans) /* op(A) row i is column i of a: MR adjacent values per kk */
        pack_cols_MR(a + a_off + p * MR, lda, rows, kb, kend, dst);
    else
        pack_rows_MR(a + a_off + (size_t)p * MR * lda, lda, rows, kb, kend, dst);
}

/* Packed B: panel q holds columns q*NR .. q*NR+NR-1 of op(B), zero columns past n:
 *   bp[(q * k + kk) * NR + c] = op(B)[kk, q*NR + c]            // (ceil(n/NR), k, NR)
 * op(B)[kk, j] = b[b_off + kk*ldb + j], or b[b_off + j*ldb + kk] when trans.
 * Transposed: one work-item packs KB consecutive kk of one panel, reading NR rows of b.
 * Not transposed: one work-item packs KBB rows of b into PG consecutive panels, so that it
 * reads each row as one run of PG*NR values (panel by panel, the reads were NR-value pieces
 * a row apart, and the copy ran at a fifth of memcpy's speed). */
#ifndef KBB
#define KBB 32
#endif
#ifndef PG
#define PG 8
#endif
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pack_b(__global const REAL *b, const int b_off, const int ldb, const int trans, const int n,
       const int k, __global REAL *bp) {
    if (trans) {
        const int kb = get_global_id(0) * KB, q = get_global_id(1);
        if (kb >= k || q * NR >= n) return;
        const int kend = min(k, kb + KB), cols = min(NR, n - q * NR);
        pack_rows_NR(b + b_off + (size_t)q * NR * ldb, ldb, cols, kb, kend, bp + ((size_t)q * k) * NR);
        return;
    }
    const int kb = get_global_id(0) * KBB, q0 = get_global_id(1) * PG;
    if (kb >= k || q0 * NR >= n) return;
    const int kend = min(k, kb + KBB), qend = min(q0 + PG, (n + NR - 1) / NR);
    for (int kk = kb; kk < kend; kk++) /* row kk, panel by panel */
        for (int q = q0; q < qend; q++)
            pack_cols_NR(b + b_off + q * NR, ldb, min(NR, n - q * NR), kk, kk + 1, bp + (size_t)q * k * NR);
}

/* One kk row of a pack_b_conv panel at T (global or private) from its runs at stride 1: each
 * run as NV vectors from its first column, so a run spills up to NR - 1 values past its end;
 * the next run, the zeros past cols or the next kk row overwrite them. Values the vectors read
 * outside the image row are zeroed after; a read that would leave x goes value by value. */
#define CONV_ROW(T)                                                                           \
    for (int r = 0; r < runs; r++) {                                                          \
        const int c0 = rc[r], len = rl[r], h = rh[r] + i * DH, a = ra[r][j], b = rb[r][j];    \
        const long first = rimgl[r] + ((long)ci * H + h) * W + j * DW;                        \
        if (h < 0 || h >= H || b == a) {                                                      \
            _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV((REALV)(0), v, T + c0);    \
        } else if (first >= 0 && first + NR <= (long)x_len) {                                 \
            _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV(VLOADV(v, x + first), v, T + c0); \
            for (int t = 0; t < a; t++) T[c0 + t] = (REAL)0;                                  \
            for (int t = b; t < len; t++) T[c0 + t] = (REAL)0;                                \
        } else {                                                                              \
            for (int t = 0; t < len; t++) T[c0 + t] = t >= a && t < b ? x[first + t] : (REAL)0; \
        }                                                                                     \
    }                                                                                         \
    for (int c = cols; c < NR; c++) T[c] = (REAL)0;

/* Packed B straight from images, for implicit-GEMM convolution (src/ops/conv2d.c): the
 * panels pack_b makes of the im2col matrix col (k = Cg*KH*KW rows, n = nb*OH*OW columns;
 * im2col in cl/ops/conv2d.cl), without col in memory:
 *   bp[(q * k + kk) * NR + c] = col[kk][q*NR + c], zero for columns past n,
 *   col[(ci*KH + i)*KW + j][nn*OH*OW + oh*OW + ow] = x[x_off + ((nn*C + ci)*H + h)*W + w],
 *   h = oh*SH - PH + i*DH, w = ow*SW - PW + j*DW, zero outside the image.
 * The values are copies, so the GEMM sees exactly the B it would read from col. One work-item
 * packs KB consecutive kk of one panel: its NR columns are cut once into runs along one
 * output row (one image, one oh), and each kk copies each run as a strided row piece with
 * zero edges; the panel is written front to back. Small k: ppi panels per work-item, so that
 * a work-item's copy outweighs its scheduling (0.1-0.2 us on PoCL). x_len: the elements x holds. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pack_b_conv(__global const REAL *x, const ulong x_off, const ulong x_len, const int C, const int H, const int W,
            const int KH, const int KW, const int SH, const int SW, const int PH, const int PW,
            const int DH, const int DW, const int OH, const int OW, const int n, const int k,
            const int ppi, __global REAL *bp) {
    const int kb = get_global_id(0) * KB;
    for (int q = get_global_id(1) * ppi, q_end = q + ppi; q < q_end && kb < k && q * NR < n; q++) {
        const int kend = min(k, kb + KB), j0 = q * NR, cols = min(NR, n - j0), P = OH * OW;
        /* run r: panel columns [rc[r], rc[r] + rl[r]) are image rimg[r], output row with first
         * input row rh[r] (tap 0), output columns from row[r] */
        int rc[NR], rl[NR], rh[NR], row[NR];
        size_t rimg[NR];
        int runs = 0;
        for (int c = 0; c < cols; runs++) {
            const int jj = j0 + c, nn = jj / P, p = jj - nn * P, oh = p / OW, ow = p - oh * OW;
            rc[runs] = c;
            rl[runs] = min(OW - ow, cols - c);
            rh[runs] = oh * SH - PH;
            row[runs] = ow;
            rimg[runs] = x_off + (size_t)nn * C * H * W;
            c += rl[runs];
        }
        const int khw = KH * KW;
        int ci = kb / khw, i = (kb - ci * khw) / KW, j = kb - ci * khw - i * KW;
        __global REAL *dst = bp + ((size_t)q * k) * NR;
        /* the whole panel is one run inside one output row: then a kk whose taps all fall inside
         * the image is NV vector copies (stride 1: 3x3 convolutions with OW >= NR) */
        const bool whole = SW == 1 && runs == 1 && cols == NR;
        if (whole && KW <= 16) {
            /* per tap column j, the panel's columns [wa[j], wb[j]) read inside the image row */
            int wa[16], wb[16];
            for (int jj = 0; jj < KW; jj++) {
                const int w0 = jj * DW - PW;
                wa[jj] = clamp(-w0 - row[0], 0, NR);
                wb[jj] = clamp(W - w0 - row[0], wa[jj], NR);
            }
            const long img = (long)rimg[0] + row[0] - PW;
            for (int kk = kb; kk < kend; kk++) {
                __global REAL *d = dst + (size_t)kk * NR;
                const int h = rh[0] + i * DH, a = wa[j], b = wb[j];
                const long first = img + ((long)ci * H + h) * W + j * DW;
                if (h >= 0 && h < H && b > a && first >= 0 && first + NR <= (long)x_len) {
                    _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV(VLOADV(v, x + first), v, d);
                    for (int t = 0; t < a; t++) d[t] = (REAL)0;
                    for (int t = b; t < NR; t++) d[t] = (REAL)0;
                } else {
                    for (int t = 0; t < NR; t++)
                        d[t] = h >= 0 && h < H && t >= a && t < b ? x[first + t] : (REAL)0;
                }
                if (++j == KW) {
                    j = 0;
                    if (++i == KH) i = 0, ci++;
                }
            }
            continue;
        }
        if (SW == 1 && runs <= 4 && KW <= 16) {
            /* a few runs (OW < NR, or a panel across two rows): per run and tap column the
             * run's columns [ra, rb) inside the image row, then CONV_ROW straight into the
             * panel, but for the block's last kk row, whose spill would reach the next
             * work-item's rows: that one goes through a private row */
            int ra[4][16], rb[4][16];
            long rimgl[4];
            for (int r = 0; r < runs; r++) {
                rimgl[r] = (long)rimg[r] + row[r] - PW;
                for (int jj = 0; jj < KW; jj++) {
                    const int w0 = jj * DW - PW;
                    ra[r][jj] = clamp(-w0 - row[r], 0, rl[r]);
                    rb[r][jj] = clamp(W - w0 - row[r], ra[r][jj], rl[r]);
                }
            }
            for (int kk = kb; kk < kend; kk++) {
                __global REAL *d = dst + (size_t)kk * NR;
                if (kk + 1 < kend) {
                    CONV_ROW(d)
                } else {
                    REAL tmp[2 * NR];
                    CONV_ROW(tmp)
                    _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV(VLOADV(v, tmp), v, d);
                }
                if (++j == KW) {
                    j = 0;
                    if (++i == KH) i = 0, ci++;
                }
            }
            continue;
        }
        for (int kk = kb; kk < kend; kk++) {
            __global REAL *d = dst + (size_t)kk * NR;
            /* output columns [lo, hi) of tap j read inside the image, as im2col_cpu (no
             * division at stride 1) */
            const int w0 = j * DW - PW;
            int lo, hi;
            if (SW == 1) {
                lo = clamp(-w0, 0, OW);
                hi = clamp(W - w0, lo, OW);
            } else {
                lo = min(w0 >= 0 ? 0 : (-w0 - 1) / SW + 1, OW);
                hi = max(lo, min(W - 1 - w0 >= 0 ? (W - 1 - w0) / SW + 1 : 0, OW));
            }
            if (SW == 1) {
                /* run by run into a private row, each as NV vectors from its first column (the
                 * excess is overwritten by the next run, or zeroed past cols), then NV stores */
                REAL tmp[2 * NR];
                for (int r = 0; r < runs; r++) {
                    REAL *tr = tmp + rc[r];
                    const int len = rl[r], h = rh[r] + i * DH, ow0 = row[r];
                    const int a = clamp(lo - ow0, 0, len), b = clamp(hi - ow0, a, len);
                    const long first = (long)rimg[r] + ((long)ci * H + h) * W + ow0 + w0;
                    if (h < 0 || h >= H || b == a) {
                        _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV((REALV)(0), v, tr);
                    } else if (first >= 0 && first + NR <= (long)x_len) {
                        _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV(VLOADV(v, x + first), v, tr);
                        for (int t = 0; t < a; t++) tr[t] = (REAL)0;
                        for (int t = b; t < len; t++) tr[t] = (REAL)0;
                    } else {
                        for (int t = 0; t < len; t++) tr[t] = t >= a && t < b ? x[first + t] : (REAL)0;
                    }
                }
                for (int c = cols; c < NR; c++) tmp[c] = (REAL)0;
                _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV(VLOADV(v, tmp), v, d);
                goto next;
            }
            for (int r = 0; r < runs; r++) {
                __global REAL *dr = d + rc[r];
                const int len = rl[r], h = rh[r] + i * DH, ow0 = row[r];
                if (h < 0 || h >= H) {
                    for (int t = 0; t < len; t++) dr[t] = (REAL)0;
                    continue;
                }
                /* src[ow*SW + w0] is x at (h, w) of output column ow */
                __global const REAL *src = x + rimg[r] + ((size_t)ci * H + h) * W;
                const int a = clamp(lo - ow0, 0, len), b = clamp(hi - ow0, a, len);
                for (int t = 0; t < a; t++) dr[t] = (REAL)0;
                if (SW == 1)
                    for (int t = a; t < b; t++) dr[t] = src[ow0 + t + w0];
                else
                    for (int t = a; t < b; t++) dr[t] = src[(ow0 + t) * SW + w0];
                for (int t = b; t < len; t++) dr[t] = (REAL)0;
            }
            for (int c = cols; c < NR; c++) d[c] = (REAL)0;
        next:
            if (++j == KW) {
                j = 0;
                if (++i == KH) i = 0, ci++;
            }
        }
    }
}

/* ---- compute: C = alpha * op(A) op(B) + beta * C, one MR x NR tile of C per step ----
 * B: element (kk, c) of tile column block tj is b[b_off + tj*b_ps + kk*b_rs + c*b_cs]:
 * packed (b_ps = k*NR, b_rs = NR, b_cs = 1, zero-padded) or, when b_direct, op(B) itself:
 * row-major (b_ps = NR, b_rs = ldb, b_cs = 1; the last column block may be partial and is
 * then read element by element) or transposed (b_ps = NR*ldb, b_rs = 1, b_cs = ldb).
 * Tile g is (g % tiles_m, g / tiles_m): consecutive tiles share one B panel, which stays in
 * cache while A panels stream past. Work-item w computes tiles w*tpw .. w*tpw+tpw-1: a
 * work-group costs PoCL about 0.1-0.2 us, as much as a whole tile of a small product. The
 * accumulators are MR x NV vectors that the compiler keeps in registers (fully unrolled,
 * constant indices), so each step of k is NV vector loads, MR broadcasts and MR*NV FMAs. */

/* One step of k from a B row in registers: MR broadcasts of A, MR * NV FMAs. */
#define TILE_STEP(AV, kk, bv)                                                                 \
    _Pragma("unroll") for (int r = 0; r < MR; r++) {                                          \
        const REALV av = (REALV)(AV(r, kk));                                                  \
        _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = fma(av, bv[v], acc[r][v]); \
    }
#define TILE_BROW(bv, kk)                                                                     \
    REALV bv[NV];                                                                             \
    _Pragma("unroll") for (int v = 0; v < NV; v++) bv[v] = VLOADV(v, bq + (size_t)(kk) * b_rs);

/* acc[r][v] += AV(r, kk) * row kk of B for kk < k; B rows come from bq with stride b_rs,
 * or element by element into a private row when only cols < NR columns exist or when B is
 * read transposed in place (b_cs = ldb: tiny products, where a packing launch would cost
 * more than the whole product). Two steps of k per trip: the loop's own instructions
 * (index, compare, branch) were a sixth of a step's, and the unrolled loop measured 10-15%
 * faster on PoCL/AVX2. */
#define TILE_KLOOP(AV)                                                                        \
    if (b_cs == 1 && (!b_direct || cols == NR)) {                                             \
        int kk = 0;                                                                           \
        for (; kk + 1 < k; kk += 2) {                                                         \
            TILE_BROW(b0, kk)                                                                 \
            TILE_STEP(AV, kk, b0)                                                             \
            TILE_BROW(b1, kk + 1)                                                             \
            TILE_STEP(AV, kk + 1, b1)                                                         \
        }                                                                                     \
        if (kk < k) {                                                                         \
            TILE_BROW(b0, kk)                                                                 \
            TILE_STEP(AV, kk, b0)                                                             \
        }                                                                                     \
    } else {                                                                                  \
        for (int kk = 0; kk < k; kk++) {                                                      \
            REAL bs[NR];                                                                      \
            for (int cc = 0; cc < NR; cc++)                                                   \
                bs[cc] = cc < cols ? bq[(size_t)kk * b_rs + (size_t)cc * b_cs] : (REAL)0;     \
            REALV bv[NV];                                                                     \
            _Pragma("unroll") for (int v = 0; v < NV; v++) bv[v] = VLOADV(v, bs);            \
            TILE_STEP(AV, kk, bv)                                                             \
        }                                                                                     \
    }

/* C tile = alpha * acc + beta * C, guarded at the matrix edges. C(i, j) lives at
 * c[c_off + i*ldc + j], or at c[c_off + j*ldc + i] when c_trans: the host computes Cᵀ
 * = op(B)ᵀ op(A)ᵀ that way when it saves packing a large operand, and C is small then.
 * beta == 0 overwrites: C may hold NaN garbage from the pool. */
#define TILE_STORE()                                                                          \
    const int rows = min(MR, m - i0);                                                         \
    if (rows == MR && cols == NR && !c_trans) {                                               \
        __global REAL *c0 = c + c_off + (size_t)i0 * ldc + j0;                                \
        _Pragma("unroll") for (int r = 0; r < MR; r++)                                        \
        _Pragma("unroll") for (int v = 0; v < NV; v++) {                                      \
            __global REAL *p = c0 + (size_t)r * ldc + v * VW;                                 \
            const REALV val = beta == (REAL)0 ? alpha * acc[r][v]                             \
                                              : fma((REALV)beta, VLOADV(0, p), alpha * acc[r][v]); \
            VSTOREV(val, 0, p);                                                               \
        }                                                                                     \
    } else {                                                                                  \
        const size_t rs = c_trans ? 1 : (size_t)ldc, cs = c_trans ? (size_t)ldc : 1;          \
        __global REAL *c0 = c + c_off + i0 * rs + j0 * cs;                                    \
        for (int r = 0; r < rows; r++) {                                                      \
            REAL t[NR];                                                                       \
            _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV(acc[r][v], v, t);          \
            __global REAL *p = c0 + r * rs;                                                   \
            for (int cc = 0; cc < cols; cc++)                                                 \
                p[cc * cs] = beta == (REAL)0 ? alpha * t[cc] : beta * p[cc * cs] + alpha * t[cc]; \
        }                                                                                     \
    }

/* Opens the loop over this work-item's tiles (closed by TILES_END). Tiles go in blocks of mb
 * row panels: all column blocks of one block of rows, then the next, so that a block of A
 * panels (sized to stay in L2) is reused across the B panels of a pass; mb = tiles_m is the
 * plain order, consecutive tiles sharing one B panel. */
#define TILES_BEGIN(tile_cols)                                                                \
    const int tiles_n = (n + (tile_cols) - 1) / (tile_cols);                                  \
    for (int g = get_global_id(0) * tpw, g_end = min(g + tpw, tiles_m * tiles_n); g < g_end; g++) { \
        const int blk = g / (mb * tiles_n), base = blk * mb, mbe = min(mb, tiles_m - base);   \
        const int rest = g - blk * mb * tiles_n;                                              \
        const int ti = base + rest % mbe, tj = rest / mbe;                                    \
        const int i0 = ti * MR, j0 = tj * (tile_cols);
#define TILES_END() }

#define TILE_SETUP()                                                                          \
    const int cols = min(NR, n - j0);                                                         \
    __global const REAL *bq = b + b_off + (size_t)tj * b_ps;                                  \
    REALV acc[MR][NV];                                                                        \
    _Pragma("unroll") for (int r = 0; r < MR; r++)                                            \
    _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (REALV)(0);

/* C is read back at the store when beta != 0 (every pass but the first of a k-blocked
 * product): ask for its lines now, so that they arrive while the k loop runs instead of
 * stalling the store. OpenCL's own prefetch() is a no-op on PoCL; clang's builtin is not, but
 * other compilers that claim it (Oclgrind's) leave an undefined llvm.prefetch behind, so the
 * host asks for it only where it is known to work (CLG_HAVE_BUILTIN_PREFETCH, src/blas/packed.c). */
#ifdef CLG_HAVE_BUILTIN_PREFETCH
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) prefetch(p, 1)
#endif
#define TILE_PREFETCH_C()                                                                     \
    if (beta != (REAL)0) {                                                                    \
        const size_t rs = c_trans ? 1 : (size_t)ldc, cs = c_trans ? (size_t)ldc : 1;          \
        __global const REAL *c0 = c + c_off + i0 * rs + j0 * cs;                              \
        for (int r = 0; r < min(MR, m - i0); r++) {                                           \
            PREFETCH(c0 + r * rs);                                                            \
            PREFETCH(c0 + r * rs + (cols - 1) * cs);                                          \
        }                                                                                     \
    }

/* A packed by pack_a: the tile's rows are panel ti, MR values per kk, starting a_off into
 * it; panels lie a_ps apart (k-blocked products run a slice of k per launch). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_tile(const int m, const int n, const int k, __global const REAL *ap, const int a_off,
          const int a_ps, __global const REAL *b, const int b_off, const int b_ps, const int b_rs,
          const int b_cs, const int b_direct, const REAL alpha, const REAL beta, __global REAL *c,
          const int c_off, const int ldc, const int c_trans, const int tiles_m, const int mb,
          const int tpw) {
    TILES_BEGIN(NR)
    TILE_SETUP()
    TILE_PREFETCH_C()
    __global const REAL *pa = ap + a_off + (size_t)ti * a_ps;
#define AV_PACKED(r, kk) pa[(kk) * MR + (r)]
    TILE_KLOOP(AV_PACKED)
    TILE_STORE()
    TILES_END()
}

/* A read in place: op(A)[i, kk] = a[a_off + i*a_rs + kk*a_cs] (a_rs = lda, a_cs = 1, or
 * transposed a_rs = 1, a_cs = lda). Rows past m are clamped to row m-1; the guarded store
 * drops their results. For small products where packing would cost more than it saves. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_tile_da(const int m, const int n, const int k, __global const REAL *a, const int a_off,
             const int a_rs, const int a_cs, __global const REAL *b, const int b_off,
             const int b_ps, const int b_rs, const int b_cs, const int b_direct, const REAL alpha,
             const REAL beta, __global REAL *c, const int c_off, const int ldc,
             const int c_trans, const int tiles_m, const int tpw) {
    const int mb = tiles_m;
    TILES_BEGIN(NR)
    TILE_SETUP()
    TILE_PREFETCH_C()
    __global const REAL *ar[MR];
    _Pragma("unroll") for (int r = 0; r < MR; r++)
        ar[r] = a + a_off + (size_t)min(i0 + r, m - 1) * a_rs;
#define AV_DIRECT(r, kk) ar[r][(size_t)(kk) * a_cs]
    TILE_KLOOP(AV_DIRECT)
    TILE_STORE()
    TILES_END()
}

/* ---- C = alpha * A Bᵀ + beta * C with A (m, k) and B (n, k) both row-major: every element
 * of C is a dot product of two contiguous rows, so the k loop runs over vectors of both
 * operands with no packing at all. MR x NT tile of C per work-item, NT = NR / VW columns,
 * MR * NT vector accumulators summed across lanes at the end. For products too small for a
 * packing launch to pay (linear layers' forward at small batch). */
#define NT NV
#define REAL2 CAT(REAL, 2)
#define REAL4 CAT(REAL, 4)
#define REAL8 CAT(REAL, 8)

inline REAL lane_sum(REALV v) {
#if VW == 16
    const REAL8 h8 = v.lo + v.hi;
    const REAL4 h4 = h8.lo + h8.hi;
#elif VW == 8
    const REAL4 h4 = v.lo + v.hi;
#elif VW == 4
    const REAL4 h4 = v;
#endif
#if VW >= 4
    const REAL2 h2 = h4.lo + h4.hi;
#else
    const REAL2 h2 = v;
#endif
    return h2.lo + h2.hi;
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_tile_nt(const int m, const int n, const int k, __global const REAL *a, const int a_off,
             const int lda, __global const REAL *b, const int b_off, const int ldb,
             const REAL alpha, const REAL beta, __global REAL *c, const int c_off, const int ldc,
             const int tiles_m, const int tpw) {
    const int mb = tiles_m;
    TILES_BEGIN(NT)
    /* rows past the edges are clamped to the last one; the guarded store drops them */
    __global const REAL *ar[MR], *br[NT];
    _Pragma("unroll") for (int r = 0; r < MR; r++) ar[r] = a + a_off + (size_t)min(i0 + r, m - 1) * lda;
    _Pragma("unroll") for (int q = 0; q < NT; q++) br[q] = b + b_off + (size_t)min(j0 + q, n - 1) * ldb;
    REALV acc[MR][NT];
    _Pragma("unroll") for (int r = 0; r < MR; r++)
    _Pragma("unroll") for (int q = 0; q < NT; q++) acc[r][q] = (REALV)(0);
    const int kv = k / VW * VW;
    for (int kk = 0; kk < kv; kk += VW) {
        REALV bv[NT];
        _Pragma("unroll") for (int q = 0; q < NT; q++) bv[q] = VLOADV(0, br[q] + kk);
        _Pragma("unroll") for (int r = 0; r < MR; r++) {
            const REALV av = VLOADV(0, ar[r] + kk);
            _Pragma("unroll") for (int q = 0; q < NT; q++) acc[r][q] = fma(av, bv[q], acc[r][q]);
        }
    }
    const int rows = min(MR, m - i0), cols = min(NT, n - j0);
    for (int r = 0; r < rows; r++) {
        __global REAL *p = c + c_off + (size_t)(i0 + r) * ldc + j0;
        for (int q = 0; q < cols; q++) {
            REAL s = lane_sum(acc[r][q]);
            for (int kk = kv; kk < k; kk++) s = fma(ar[r][kk], br[q][kk], s);
            /* beta == 0 overwrites: C may hold NaN garbage from the pool */
            p[q] = beta == (REAL)0 ? alpha * s : beta * p[q] + alpha * s;
        }
    }
    TILES_END()
}

/* ---- conv2d's input gradient straight from dy, for stride-1 convolutions (conv_dx_run in
 * src/blas/packed.c, used by src/ops/conv2d.c):
 *   dx[n][g*Cg + ci][h][w] = beta*dx + the sum, over taps (i, j) in order, of
 *   dcol(ci, i, j)[n, oh, ow] = the fma chain over k of W[g*Kg + k][ci][i][j] * dy[n][g*Kg + k][oh][ow],
 *   oh = h + PH - i*DH, ow = w + PW - j*DW, taps that fall outside dy skipped.
 * That is the im2col route's GEMM dcol = Wᵀ dY (gemm_tile: one fma chain over k from zero)
 * and its col2im_cpu (taps added in order to a sum from zero) in one pass: the same bits,
 * without dcol in memory. A lane whose tap falls outside adds +0, which leaves a sum that
 * started at +0 unchanged; its product, which may be NaN from W, is masked off first.
 * Tile: MR channels by NR consecutive pixels (h*W + w) of one image, so small images fill
 * whole tiles; where OW == W ("same" convolutions), or all NR pixels lie in one row, a tap's
 * dy values for the tile are consecutive too, and read as NV vectors. Tile t: channel block
 * t % ctb (ctb = G * ceil(Cg/MR)), then pixel block, then image. */
#ifdef REAL_IS_DOUBLE
#define MASK long
#else
#define MASK int
#endif
#define MASKV CAT(MASK, VW)

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_dx(__global const REAL *dy, __global const REAL *w, __global REAL *dx, const REAL beta, const int N,
        const int C, const int H, const int W, const int K, const int KH, const int KW, const int PH,
        const int PW, const int DH, const int DW, const int OH, const int OW, const int G, const int tpw,
        const ulong dy_len) {
    const int Cg = C / G, Kg = K / G, HW = H * W, P = OH * OW, khw = KH * KW, wk = Cg * khw;
    const int tcg = (Cg + MR - 1) / MR, ctb = G * tcg, tp = (HW + NR - 1) / NR, all = N * tp * ctb;
    for (int t = get_global_id(0) * tpw, t_end = min(t + tpw, all); t < t_end; t++) {
        const int cb = t % ctb, rest = t / ctb, pb = rest % tp, n = rest / tp;
        const int g = cb / tcg, c0 = (cb - g * tcg) * MR, rows = min(MR, Cg - c0);
        const int p0 = pb * NR, cols = min(NR, HW - p0);
        int hl[NR], wl[NR];
        for (int l = 0; l < NR; l++) {
            const int p = p0 + min(l, cols - 1);
            hl[l] = p / W;
            wl[l] = p - hl[l] * W;
        }
        /* W[g*Kg + k][c0 + r][i][j] at wr[r][k*wk + i*KW + j]; rows past Cg clamped, dropped at the store */
        __global const REAL *wr[MR];
        _Pragma("unroll") for (int r = 0; r < MR; r++)
            wr[r] = w + ((size_t)g * Kg * Cg + min(c0 + r, Cg - 1)) * khw;
        const long dyb_off = ((long)n * K + (long)g * Kg) * P;
        __global const REAL *dyb = dy + dyb_off;
        /* the tile's sums, in private memory: with the accumulators they would not fit the
         * vector registers, and they change only once per tap */
        REAL s[MR * NR];
        for (int e = 0; e < MR * NR; e++) s[e] = (REAL)0;
        for (int i = 0; i < KH; i++)
            for (int j = 0; j < KW; j++) {
                const int sh = PH - i * DH, sw = PW - j * DW, woff = i * KW + j;
                MASK m[NR];
                int src[NR], valid = 0;
                for (int l = 0; l < NR; l++) {
                    const int oh = hl[l] + sh, ow = wl[l] + sw;
                    const bool ok = l < cols && oh >= 0 && oh < OH && ow >= 0 && ow < OW;
                    m[l] = ok ? (MASK)-1 : (MASK)0;
                    valid += ok;
                    src[l] = oh * OW + ow;
                }
                if (valid == 0) continue;
                /* the lanes read dy at src[0] + l, the masked ones too (other planes' values, or
                 * outside it: then lane by lane) */
                const int s0 = src[0];
                const bool consecutive = (OW == W || hl[0] == hl[cols - 1]) && dyb_off + s0 >= 0 &&
                                         dyb_off + (long)(Kg - 1) * P + s0 + NR <= (long)dy_len;
                REALV acc[MR][NV];
                _Pragma("unroll") for (int r = 0; r < MR; r++)
                _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (REALV)(0);
#define AV_CONV_DX(r, kk) wr[r][(kk) * wk + woff]
                if (consecutive) {
                    __global const REAL *bq = dyb + s0;
                    const int b_rs = P;
                    int kk = 0;
                    for (; kk + 1 < Kg; kk += 2) {
                        TILE_BROW(b0, kk)
                        TILE_STEP(AV_CONV_DX, kk, b0)
                        TILE_BROW(b1, kk + 1)
                        TILE_STEP(AV_CONV_DX, kk + 1, b1)
                    }
                    if (kk < Kg) {
                        TILE_BROW(b0, kk)
                        TILE_STEP(AV_CONV_DX, kk, b0)
                    }
                } else {
                    for (int kk = 0; kk < Kg; kk++) {
                        REAL bs[NR];
                        for (int l = 0; l < NR; l++) bs[l] = m[l] ? dyb[(size_t)kk * P + src[l]] : (REAL)0;
                        REALV bv[NV];
                        _Pragma("unroll") for (int v = 0; v < NV; v++) bv[v] = VLOADV(v, bs);
                        TILE_STEP(AV_CONV_DX, kk, bv)
                    }
                }
                if (valid == NR) {
                    _Pragma("unroll") for (int r = 0; r < MR; r++)
                    _Pragma("unroll") for (int v = 0; v < NV; v++)
                        VSTOREV(VLOADV(v, s + r * NR) + acc[r][v], v, s + r * NR);
                } else {
                    _Pragma("unroll") for (int v = 0; v < NV; v++) {
                        const MASKV mv = VLOADV(v, m);
                        _Pragma("unroll") for (int r = 0; r < MR; r++)
                            VSTOREV(VLOADV(v, s + r * NR) + select((REALV)(0), acc[r][v], mv), v, s + r * NR);
                    }
                }
            }
        for (int r = 0; r < rows; r++) {
            __global REAL *d = dx + ((size_t)n * C + (size_t)g * Cg + c0 + r) * HW + p0;
            for (int l = 0; l < cols; l++) ACCUM(d[l], s[r * NR + l]);
        }
    }
}

/* ---- conv2d's forward for stride 1 without col (src/ops/conv2d.c; clg__gemm_conv_fwd in
 * src/blas/packed.c), in two launches: pad_planes copies x into zero-padded planes xp of
 * Hp x Wp (Hp = H + 2*PH, Wp = W + 2*PW), then conv_fwd computes
 *   y[n][g*Kg + k][oh][ow] = (the fma chain, over kk = (ci*KH + i)*KW + j ascending from zero,
 *   of W[g*Kg + k][ci][i][j] * xp[n][g*Cg + ci][oh + i*DH][ow + j*DW]) + b[g*Kg + k] if has_bias.
 * xp holds exactly the values im2col would put in col (x, or +0 outside the image), so this is
 * the im2col route's GEMM on the packed path (one fma chain over k, alpha 1) and its bias add:
 * the same bits. conv_fwd's tile is MR output channels by NR consecutive positions q = oh*Wp + ow
 * of the padded grid, so tap (i, j) of every lane reads xp at q + i*DH*Wp + j*DW: NV plain vector
 * loads per step, no masks. Lanes with ow >= OW (or past the plane) compute values nobody
 * stores; their reads stay inside xp's slack of NR + (KW-1)*DW values past the last plane. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pad_planes(__global const REAL *x, __global REAL *xp, const int H, const int W, const int PH, const int PW,
           const int planes, const int slack) {
    const int pl = get_global_id(0);
    if (pl >= planes) return;
    const int Hp = H + 2 * PH, Wp = W + 2 * PW;
    __global const REAL *src = x + (size_t)pl * H * W;
    __global REAL *dst = xp + (size_t)pl * Hp * Wp;
    for (int hp = 0; hp < Hp; hp++) {
        __global REAL *d = dst + (size_t)hp * Wp;
        const int h = hp - PH;
        if (h < 0 || h >= H) {
            for (int t = 0; t < Wp; t++) d[t] = (REAL)0;
            continue;
        }
        for (int t = 0; t < PW; t++) d[t] = (REAL)0;
        for (int t = 0; t < W; t++) d[PW + t] = src[(size_t)h * W + t];
        for (int t = PW + W; t < Wp; t++) d[t] = (REAL)0;
    }
    if (pl == planes - 1) /* the slack the last lanes read: defined values, never stored */
        for (int t = 0; t < slack; t++) dst[(size_t)Hp * Wp + t] = (REAL)0;
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
conv_fwd(__global const REAL *xp, __global const REAL *w, __global const REAL *b, const int has_bias,
         __global REAL *y, const int N, const int C, const int K, const int Hp, const int Wp, const int KH,
         const int KW, const int DH, const int DW, const int OH, const int OW, const int G, const int tpw) {
    const int Cg = C / G, Kg = K / G, P = OH * OW, Q = OH * Wp, HWp = Hp * Wp, cgkk = Cg * KH * KW;
    const int tkg = (Kg + MR - 1) / MR, ktb = G * tkg, tq = (Q + NR - 1) / NR, all = N * tq * ktb;
    for (int t = get_global_id(0) * tpw, t_end = min(t + tpw, all); t < t_end; t++) {
        const int kb = t % ktb, rest = t / ktb, qb = rest % tq, n = rest / tq;
        const int g = kb / tkg, k0 = (kb - g * tkg) * MR, rows = min(MR, Kg - k0), q0 = qb * NR;
        __global const REAL *wr[MR];
        _Pragma("unroll") for (int r = 0; r < MR; r++)
            wr[r] = w + ((size_t)g * Kg + min(k0 + r, Kg - 1)) * cgkk;
        REALV acc[MR][NV];
        _Pragma("unroll") for (int r = 0; r < MR; r++)
        _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (REALV)(0);
#define AV_CONV_FWD(r, kk) wr[r][kk]
        __global const REAL *xb = xp + ((size_t)n * C + (size_t)g * Cg) * HWp + q0;
        int kk = 0;
        for (int ci = 0; ci < Cg; ci++)
            for (int i = 0; i < KH; i++) {
                __global const REAL *xr = xb + (size_t)ci * HWp + (size_t)i * DH * Wp;
                for (int j = 0; j < KW; j++, kk++) {
                    REALV bv[NV];
                    _Pragma("unroll") for (int v = 0; v < NV; v++) bv[v] = VLOADV(v, xr + j * DW);
                    TILE_STEP(AV_CONV_FWD, kk, bv)
                }
            }
        /* lane l's place in a y plane, or -1: a position past OW or OH */
        int dst[NR];
        for (int l = 0, oh = q0 / Wp, ow = q0 - oh * Wp; l < NR; l++) {
            dst[l] = oh < OH && ow < OW ? oh * OW + ow : -1;
            if (++ow == Wp) ow = 0, oh++;
        }
        for (int r = 0; r < rows; r++) {
            REAL tt[NR];
            _Pragma("unroll") for (int v = 0; v < NV; v++) VSTOREV(acc[r][v], v, tt);
            __global REAL *d = y + ((size_t)n * K + (size_t)g * Kg + k0 + r) * P;
            const REAL bias = has_bias ? b[g * Kg + k0 + r] : (REAL)0;
            for (int l = 0; l < NR; l++)
                if (dst[l] >= 0) d[dst[l]] = has_bias ? tt[l] + bias : tt[l];
        }
    }
}
