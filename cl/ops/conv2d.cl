/* cl/ops/conv2d.cl - the kernels around conv2d's GEMMs: im2col, the col2im gather (dx),
 * the layout moves between (N, K, OH*OW) and the batched GEMM's (K, nb*OH*OW), the bias add
 * and the bias-gradient reduction. Host side: src/ops/conv2d.c; tests: tests/ops/test_conv2d.c.
 * No atomics anywhere: every output element is written by exactly one work-item, so results
 * are the same on every device and every run.
 */
#include "common/defs.h"

#ifndef RED_WG
#define RED_WG 64 /* work-group size of bias_grad; a power of two, set by the host */
#endif

/* Two launch shapes, one result. GPU style gets one work-item per element, dim 0 running
 * along an image plane, so consecutive work-items touch consecutive addresses (coalesced).
 * CPU style (PoCL and the like run a work-group's items as a loop) gets the _cpu kernels: one
 * work-item per image row or plane, a plain loop along it, no index division per element;
 * 5-10x faster there for im2col. The host picks by the context's kernel style
 * (clg__op_kernel in src/ops/op.h). */

/* col (C*KH*KW, nb*P), column n*P + p for image n of the chunk, P = OH*OW:
 * col[(c*KH + i)*KW + j][n*P + oh*OW + ow] = x[n][c][oh*SH - PH + i*DH][ow*SW - PW + j*DW]
 * (0 outside the image). x_off is the chunk's first image. Launch (P, C*KH*KW, nb). */
__kernel void im2col(__global const REAL *x, const ulong x_off, __global REAL *col, const int C, const int H,
                     const int W, const int KH, const int KW, const int SH, const int SW, const int PH,
                     const int PW, const int DH, const int DW, const int OH, const int OW, const int nb) {
    const int pp = GID0;
    const int r = (int)get_global_id(1), n = (int)get_global_id(2);
    const int P = OH * OW;
    if (pp >= P) return;
    const int c = r / (KH * KW), ij = r - c * (KH * KW);
    const int i = ij / KW, j = ij - i * KW;
    const int oh = pp / OW, ow = pp - oh * OW;
    const int h = oh * SH - PH + i * DH, w = ow * SW - PW + j * DW;
    REAL v = (REAL)0;
    if (h >= 0 && h < H && w >= 0 && w < W) v = x[x_off + ((size_t)(n * C + c) * H + h) * W + w];
    col[((size_t)r * nb + n) * P + pp] = v;
}

/* The CPU form: one (row r of col, image n) plane of OH*OW values per work-item, with the
 * padded edges of each output row split off so its middle is a plain strided copy that
 * vectorises. Launch (C*KH*KW, nb) with work-groups of (1, 1). */
__kernel void im2col_cpu(__global const REAL *x, const ulong x_off, __global REAL *col, const int C,
                            const int H, const int W, const int KH, const int KW, const int SH, const int SW,
                            const int PH, const int PW, const int DH, const int DW, const int OH, const int OW,
                            const int nb) {
    const int r = GID0, n = (int)get_global_id(1);
    if (r >= C * KH * KW || n >= nb) return;
    const int c = r / (KH * KW), ij = r - c * (KH * KW);
    const int i = ij / KW, j = ij - i * KW;
    __global REAL *dst = col + ((size_t)r * nb + n) * OH * OW;
    __global const REAL *plane = x + x_off + (size_t)(n * C + c) * H * W;
    /* Output columns [lo, hi) read inside the image: w = ow*SW + w0 in [0, W). */
    const int w0 = j * DW - PW;
    /* ceil(-w0 / SW) without forming -w0 + SW - 1, which overflows int for large SW (the
     * host keeps W + 2 * PW within int, not PW + SW) */
    const int lo = min(w0 >= 0 ? 0 : (-w0 - 1) / SW + 1, OW);
    const int hi = max(lo, min(W - 1 - w0 >= 0 ? (W - 1 - w0) / SW + 1 : 0, OW));
    for (int oh = 0; oh < OH; oh++) {
        __global REAL *row = dst + (size_t)oh * OW;
        const int h = oh * SH - PH + i * DH;
        if (h < 0 || h >= H) {
            for (int ow = 0; ow < OW; ow++) row[ow] = (REAL)0;
            continue;
        }
        __global const REAL *src = plane + (size_t)h * W + w0;
        for (int ow = 0; ow < lo; ow++) row[ow] = (REAL)0;
        if (SW == 1)
            for (int ow = lo; ow < hi; ow++) row[ow] = src[ow];
        else
            for (int ow = lo; ow < hi; ow++) row[ow] = src[ow * SW];
        for (int ow = hi; ow < OW; ow++) row[ow] = (REAL)0;
    }
}

/* Sum of every dcol entry that im2col copied from pixel (h, w) of channel c, image n:
 * the inverse of im2col as a gather, in a fixed order (deterministic, no atomics). base
 * points at dcol[c*KH*KW][n*P]; cols = nb*P is dcol's row length. */
REAL col2im_sum(__global const REAL *base, const size_t cols, const int h, const int w, const int KH,
                const int KW, const int SH, const int SW, const int PH, const int PW, const int DH,
                const int DW, const int OH, const int OW) {
    REAL s = (REAL)0;
    for (int i = 0; i < KH; i++) {
        const int hp = h + PH - i * DH; /* = oh * SH when tap i of output row oh reads h */
        if (hp < 0) break;              /* hp only falls as i grows */
        const int oh = SH == 1 ? hp : hp / SH;
        if (oh * SH != hp || oh >= OH) continue;
        for (int j = 0; j < KW; j++) {
            const int wp = w + PW - j * DW;
            if (wp < 0) break;
            const int ow = SW == 1 ? wp : wp / SW;
            if (ow * SW != wp || ow >= OW) continue;
            s += base[(size_t)(i * KW + j) * cols + oh * OW + ow];
        }
    }
    return s;
}

/* dx[n][c][h][w] = beta*dx + col2im_sum, one work-item per dx element. beta == 0 never
 * reads dx (fresh pool memory may hold NaN). dcol is (C*KH*KW, nb*P). Launch (H*W, C, nb). */
__kernel void col2im(__global const REAL *dcol, __global REAL *dx, const ulong dx_off, const REAL beta,
                     const int C, const int H, const int W, const int KH, const int KW, const int SH,
                     const int SW, const int PH, const int PW, const int DH, const int DW, const int OH,
                     const int OW, const int nb) {
    const int hw = GID0;
    const int c = (int)get_global_id(1), n = (int)get_global_id(2);
    if (hw >= H * W) return;
    const int h = hw / W, w = hw - h * W;
    const size_t cols = (size_t)nb * OH * OW;
    __global const REAL *base = dcol + (size_t)c * KH * KW * cols + (size_t)n * OH * OW;
    const REAL s = col2im_sum(base, cols, h, w, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW);
    const size_t o = dx_off + ((size_t)n * C + c) * H * W + hw;
    ACCUM(dx[o], s);
}

#ifndef COL2IM_SEG
#define COL2IM_SEG 64 /* dx values col2im_cpu sums at once, in private memory */
#endif

/* The same, one dx row (W values) per work-item. It walks the taps in col2im_sum's order,
 * but for each tap runs along the output row (contiguous in dcol, no division per value),
 * summing a segment of the dx row in private memory; each value gets the same additions
 * in the same order as col2im_sum, so both kernels give the same bits. Launch (H, C, nb). */
__kernel void col2im_cpu(__global const REAL *dcol, __global REAL *dx, const ulong dx_off, const REAL beta,
                          const int C, const int H, const int W, const int KH, const int KW, const int SH,
                          const int SW, const int PH, const int PW, const int DH, const int DW, const int OH,
                          const int OW, const int nb) {
    const int h = GID0;
    const int c = (int)get_global_id(1), n = (int)get_global_id(2);
    if (h >= H) return;
    const size_t cols = (size_t)nb * OH * OW;
    __global const REAL *base = dcol + (size_t)c * KH * KW * cols + (size_t)n * OH * OW;
    __global REAL *dst = dx + dx_off + (((size_t)n * C + c) * H + h) * W;
    REAL acc[COL2IM_SEG];
    for (int w0 = 0; w0 < W; w0 += COL2IM_SEG) {
        const int wn = min(COL2IM_SEG, W - w0);
        for (int t = 0; t < wn; t++)
            acc[t] = (REAL)0;
        for (int i = 0; i < KH; i++) {
            const int hp = h + PH - i * DH;
            if (hp < 0) break;
            const int oh = SH == 1 ? hp : hp / SH;
            if (oh * SH != hp || oh >= OH) continue;
            for (int j = 0; j < KW; j++) {
                /* tap j of output column ow reads w = ow*SW - off: the ow that land in
                 * [w0, w0 + wn) */
                const int off = PW - j * DW;
                const int lo = w0 + off, hi = w0 + wn - 1 + off;
                if (hi < 0) break; /* hi only falls as j grows */
                const int ow_lo = lo <= 0 ? 0 : (lo - 1) / SW + 1; /* ceil, without lo + SW overflowing */
                const int ow_hi = min(hi / SW, OW - 1);
                __global const REAL *src = base + (size_t)(i * KW + j) * cols + oh * OW;
                for (int ow = ow_lo; ow <= ow_hi; ow++)
                    acc[ow * SW - off - w0] += src[ow];
            }
        }
        for (int t = 0; t < wn; t++)
            ACCUM(dst[w0 + t], acc[t]);
    }
}

/* y[n0 + n][k][p] = yt[k][n*P + p] (+ b[k] when has_bias): the batched GEMM's (K, nb*P)
 * result moved into NCHW. Launch (P, K, nb). */
__kernel void unpack_y(__global const REAL *yt, __global REAL *y, const ulong y_off, __global const REAL *b,
                       const int has_bias, const int K, const int P, const int nb) {
    const int p = GID0;
    const int k = (int)get_global_id(1), n = (int)get_global_id(2);
    if (p >= P) return;
    REAL v = yt[((size_t)k * nb + n) * P + p];
    if (has_bias) v += b[k];
    y[y_off + ((size_t)n * K + k) * P + p] = v;
}

/* The same, one (k, n) plane of P values per work-item. Launch (K, nb). */
__kernel void unpack_y_cpu(__global const REAL *yt, __global REAL *y, const ulong y_off,
                            __global const REAL *b, const int has_bias, const int K, const int P,
                            const int nb) {
    const int k = GID0, n = (int)get_global_id(1);
    if (k >= K) return;
    const REAL bias = has_bias ? b[k] : (REAL)0;
    __global const REAL *src = yt + ((size_t)k * nb + n) * P;
    __global REAL *dst = y + y_off + ((size_t)n * K + k) * P;
    for (int p = 0; p < P; p++)
        dst[p] = src[p] + bias;
}

/* dyt[k][n*P + p] = dy[n0 + n][k][p]: the inverse move, so backward's GEMMs see the chunk
 * as one (K, nb*P) matrix. Launch (P, K, nb). */
__kernel void pack_dy(__global const REAL *dy, const ulong dy_off, __global REAL *dyt, const int K,
                      const int P, const int nb) {
    const int p = GID0;
    const int k = (int)get_global_id(1), n = (int)get_global_id(2);
    if (p >= P) return;
    dyt[((size_t)k * nb + n) * P + p] = dy[dy_off + ((size_t)n * K + k) * P + p];
}

/* The same, one plane per work-item. Launch (K, nb). */
__kernel void pack_dy_cpu(__global const REAL *dy, const ulong dy_off, __global REAL *dyt, const int K,
                           const int P, const int nb) {
    const int k = GID0, n = (int)get_global_id(1);
    if (k >= K) return;
    __global const REAL *src = dy + dy_off + ((size_t)n * K + k) * P;
    __global REAL *dst = dyt + ((size_t)k * nb + n) * P;
    for (int p = 0; p < P; p++)
        dst[p] = src[p];
}

/* y[k][p] += b[k] over one image (K, P) at y_off: the bias of the one-image-per-GEMM path.
 * Launch (P, K). */
__kernel void bias_add(__global REAL *y, const ulong y_off, __global const REAL *b, const int K,
                       const int P) {
    const int p = GID0;
    const int k = (int)get_global_id(1);
    if (p >= P || k >= K) return;
    y[y_off + (size_t)k * P + p] += b[k];
}

/* The same, one plane per work-item. Launch (K). */
__kernel void bias_add_cpu(__global REAL *y, const ulong y_off, __global const REAL *b, const int K,
                            const int P) {
    const int k = GID0;
    if (k >= K) return;
    __global REAL *dst = y + y_off + (size_t)k * P;
    const REAL bias = b[k];
    for (int p = 0; p < P; p++)
        dst[p] += bias;
}

/* db[k] = beta*db[k] + sum over n, p of dy[n][k][p]. One work-group of RED_WG items per k:
 * each item sums a fixed stride of every image, then a tree in local memory, so the order of additions
 * is fixed (deterministic, and better rounded than one long running sum). */
__kernel __attribute__((reqd_work_group_size(RED_WG, 1, 1))) void bias_grad(__global const REAL *dy,
                                                                            __global REAL *db,
                                                                            const REAL beta, const int N,
                                                                            const int K, const int P) {
    __local REAL part[RED_WG];
    const int k = (int)get_group_id(0);
    const int t = (int)get_local_id(0);
    REAL s = (REAL)0;
    for (int n = 0; n < N; n++) {
        __global const REAL *row = dy + ((size_t)n * K + k) * P;
        for (int p = t; p < P; p += RED_WG)
            s += row[p];
    }
    part[t] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = RED_WG / 2; h > 0; h >>= 1) {
        if (t < h) part[t] += part[t + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0 && k < K) ACCUM(db[k], part[0]);
}

/* The CPU form: one work-item per k holds the RED_WG partial sums itself (a plain loop over
 * each plane, RED_WG values at a time, which vectorises) and runs the same tree, so every
 * addition is bias_grad's, in the same order: the same bits, without a work-group of RED_WG
 * items and its barriers (PoCL runs those as loops split at each barrier). Launch (K). */
__kernel void bias_grad_cpu(__global const REAL *dy, __global REAL *db, const REAL beta, const int N, const int K,
                            const int P) {
    const int k = GID0;
    if (k >= K) return;
    REAL part[RED_WG];
    for (int t = 0; t < RED_WG; t++)
        part[t] = (REAL)0;
    for (int n = 0; n < N; n++) {
        __global const REAL *row = dy + ((size_t)n * K + k) * P;
        int p0 = 0;
        for (; p0 + RED_WG <= P; p0 += RED_WG)
            for (int t = 0; t < RED_WG; t++)
                part[t] += row[p0 + t];
        for (int t = 0; p0 + t < P; t++)
            part[t] += row[p0 + t];
    }
    for (int h = RED_WG / 2; h > 0; h >>= 1)
        for (int t = 0; t < h; t++)
            part[t] += part[t + h];
    ACCUM(db[k], part[0]);
}
