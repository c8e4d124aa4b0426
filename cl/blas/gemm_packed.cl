/* cl/blas/gemm_packed.cl - GEMM shaped for CPU devices: panel packing (pack_a, pack_b) and a
 * register-blocked compute kernel (gemm_tile, or gemm_tile_da reading A in place), one
 * work-item per work-group, no local memory, no barriers: the CPU way, not the GPU way.
 * Host side and path choice: src/blas/packed.c; tests: tests/unit/test_gemm_packed.c.
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

/* Packed A: panel p holds rows p*MR .. p*MR+MR-1 of op(A), K-major, zero rows past m:
 *   ap[(p * k + kk) * MR + r] = op(A)[p*MR + r, kk]            // (ceil(m/MR), k, MR)
 * op(A)[i, kk] = a[a_off + i*lda + kk], or a[a_off + kk*lda + i] when trans.
 * One work-item packs KB consecutive kk of one panel. */
#ifndef KB
#define KB 64
#endif
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pack_a(__global const REAL *a, const int a_off, const int lda, const int trans, const int m,
       const int k, __global REAL *ap) {
    const int kb = get_global_id(0) * KB, p = get_global_id(1);
    if (kb >= k || p * MR >= m) return;
    const int kend = min(k, kb + KB);
    __global REAL *dst = ap + ((size_t)p * k) * MR;
    const int rows = min(MR, m - p * MR);
    if (trans) {
        /* op(A) row i is column i of a: MR adjacent reads per kk */
        for (int kk = kb; kk < kend; kk++) {
            __global const REAL *src = a + a_off + (size_t)kk * lda + p * MR;
            for (int r = 0; r < MR; r++) dst[kk * MR + r] = r < rows ? src[r] : (REAL)0;
        }
    } else {
        /* row by row so each read stream is contiguous */
        for (int r = 0; r < MR; r++) {
            if (r < rows) {
                __global const REAL *src = a + a_off + (size_t)(p * MR + r) * lda;
                for (int kk = kb; kk < kend; kk++) dst[kk * MR + r] = src[kk];
            } else {
                for (int kk = kb; kk < kend; kk++) dst[kk * MR + r] = (REAL)0;
            }
        }
    }
}

/* Packed B: panel q holds columns q*NR .. q*NR+NR-1 of op(B), zero columns past n:
 *   bp[(q * k + kk) * NR + c] = op(B)[kk, q*NR + c]            // (ceil(n/NR), k, NR)
 * op(B)[kk, j] = b[b_off + kk*ldb + j], or b[b_off + j*ldb + kk] when trans. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
pack_b(__global const REAL *b, const int b_off, const int ldb, const int trans, const int n,
       const int k, __global REAL *bp) {
    const int kb = get_global_id(0) * KB, q = get_global_id(1);
    if (kb >= k || q * NR >= n) return;
    const int kend = min(k, kb + KB);
    __global REAL *dst = bp + ((size_t)q * k) * NR;
    const int cols = min(NR, n - q * NR);
    if (trans) {
        for (int c = 0; c < NR; c++) {
            if (c < cols) {
                __global const REAL *src = b + b_off + (size_t)(q * NR + c) * ldb;
                for (int kk = kb; kk < kend; kk++) dst[kk * NR + c] = src[kk];
            } else {
                for (int kk = kb; kk < kend; kk++) dst[kk * NR + c] = (REAL)0;
            }
        }
    } else if (cols == NR) {
        for (int kk = kb; kk < kend; kk++) {
            __global const REAL *src = b + b_off + (size_t)kk * ldb + q * NR;
            for (int v = 0; v < NV; v++) VSTOREV(VLOADV(v, src), 0, dst + kk * NR + v * VW);
        }
    } else {
        for (int kk = kb; kk < kend; kk++) {
            __global const REAL *src = b + b_off + (size_t)kk * ldb + q * NR;
            for (int c = 0; c < NR; c++) dst[kk * NR + c] = c < cols ? src[c] : (REAL)0;
        }
    }
}

/* ---- compute: C = alpha * op(A) op(B) + beta * C, one MR x NR tile of C per work-item ----
 * B: element (kk, c) of tile column block tj is b[b_off + tj*b_ps + kk*b_rs + c*b_cs]:
 * packed (b_ps = k*NR, b_rs = NR, b_cs = 1, zero-padded) or, when b_direct, op(B) itself:
 * row-major (b_ps = NR, b_rs = ldb, b_cs = 1; the last column block may be partial and is
 * then read element by element) or transposed (b_ps = NR*ldb, b_rs = 1, b_cs = ldb).
 * Work-group g covers tile (g % tiles_m, g / tiles_m): consecutive groups share one B
 * panel, which stays in cache while A panels stream past. The accumulators are MR x NV
 * vectors that the compiler keeps in registers (fully unrolled, constant indices), so each
 * step of k is NV vector loads, MR broadcasts and MR*NV FMAs. */

/* acc[r][v] += AV(r, kk) * row kk of B for kk < k; B rows come from bq with stride b_rs,
 * or element by element into a private row when only cols < NR columns exist or when B is
 * read transposed in place (b_cs = ldb: tiny products, where a packing launch would cost
 * more than the whole product). */
#define TILE_KLOOP(AV)                                                                        \
    if (b_cs == 1 && (!b_direct || cols == NR)) {                                             \
        for (int kk = 0; kk < k; kk++) {                                                      \
            REALV bv[NV];                                                                     \
            _Pragma("unroll") for (int v = 0; v < NV; v++) bv[v] = VLOADV(v, bq + (size_t)kk * b_rs); \
            _Pragma("unroll") for (int r = 0; r < MR; r++) {                                  \
                const REALV av = (REALV)(AV(r, kk));                                          \
                _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = fma(av, bv[v], acc[r][v]); \
            }                                                                                 \
        }                                                                                     \
    } else {                                                                                  \
        for (int kk = 0; kk < k; kk++) {                                                      \
            REAL bs[NR];                                                                      \
            for (int cc = 0; cc < NR; cc++)                                                   \
                bs[cc] = cc < cols ? bq[(size_t)kk * b_rs + (size_t)cc * b_cs] : (REAL)0;     \
            REALV bv[NV];                                                                     \
            _Pragma("unroll") for (int v = 0; v < NV; v++) bv[v] = VLOADV(v, bs);            \
            _Pragma("unroll") for (int r = 0; r < MR; r++) {                                  \
                const REALV av = (REALV)(AV(r, kk));                                          \
                _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = fma(av, bv[v], acc[r][v]); \
            }                                                                                 \
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

#define TILE_SETUP()                                                                          \
    const int g = get_global_id(0);                                                           \
    const int ti = g % tiles_m, tj = g / tiles_m;                                             \
    const int i0 = ti * MR, j0 = tj * NR;                                                     \
    if (i0 >= m || j0 >= n) return;                                                          \
    const int cols = min(NR, n - j0);                                                         \
    __global const REAL *bq = b + b_off + (size_t)tj * b_ps;                                  \
    REALV acc[MR][NV];                                                                        \
    _Pragma("unroll") for (int r = 0; r < MR; r++)                                            \
    _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (REALV)(0);

/* A packed by pack_a: the tile's rows are panel ti, MR values per kk. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_tile(const int m, const int n, const int k, __global const REAL *ap,
          __global const REAL *b, const int b_off, const int b_ps, const int b_rs,
          const int b_cs, const int b_direct, const REAL alpha, const REAL beta, __global REAL *c,
          const int c_off, const int ldc, const int c_trans, const int tiles_m) {
    TILE_SETUP()
    __global const REAL *pa = ap + (size_t)ti * k * MR;
#define AV_PACKED(r, kk) pa[(kk) * MR + (r)]
    TILE_KLOOP(AV_PACKED)
    TILE_STORE()
}

/* A read in place: op(A)[i, kk] = a[a_off + i*a_rs + kk*a_cs] (a_rs = lda, a_cs = 1, or
 * transposed a_rs = 1, a_cs = lda). Rows past m are clamped to row m-1; the guarded store
 * drops their results. For small products where packing would cost more than it saves. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
gemm_tile_da(const int m, const int n, const int k, __global const REAL *a, const int a_off,
             const int a_rs, const int a_cs, __global const REAL *b, const int b_off,
             const int b_ps, const int b_rs, const int b_cs, const int b_direct, const REAL alpha,
             const REAL beta, __global REAL *c, const int c_off, const int ldc,
             const int c_trans, const int tiles_m) {
    TILE_SETUP()
    __global const REAL *ar[MR];
    _Pragma("unroll") for (int r = 0; r < MR; r++)
        ar[r] = a + a_off + (size_t)min(i0 + r, m - 1) * a_rs;
#define AV_DIRECT(r, kk) ar[r][(size_t)(kk) * a_cs]
    TILE_KLOOP(AV_DIRECT)
    TILE_STORE()
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
             const int tiles_m) {
    const int g = get_global_id(0);
    const int ti = g % tiles_m, tj = g / tiles_m;
    const int i0 = ti * MR, j0 = tj * NT;
    if (i0 >= m || j0 >= n) return;
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
}
