/* cl/ops/adaptive_pool2d.cl - adaptive average pooling over (N, C, H, W) to (N, C, OH, OW),
 * forward and backward. Host side: src/ops/adaptive_pool2d.c. Tests:
 * tests/ops/test_adaptive_pool2d.c.
 * Windows as PyTorch defines them: output row oh averages input rows
 * [floor(oh * H / OH), ceil((oh + 1) * H / OH)), columns likewise; they may overlap when H is
 * not a multiple of OH. Backward is a gather (each input element sums dy / area over the
 * windows that cover it, in a fixed order): no atomics. Each kernel comes in two forms with
 * the same per-element code, so both styles give the same bits: an item per element (GPU
 * style) and an item per row of elements (name_cpu: the row's indices computed once).
 */
#include "common/defs.h"

/* Window [*s, *e) of output position o along a dimension of size in pooled to out. */
inline void adaptive_window(const int o, const int in, const int out, int *s, int *e) {
    *s = (o * in) / out;                         /* floor */
    *e = ((o + 1) * in + out - 1) / out;         /* ceil */
}

/* Output positions whose window covers input position i: [*lo, *hi] (never empty). */
inline void adaptive_covering(const int i, const int in, const int out, int *lo, int *hi) {
    *lo = (i * out) / in;                        /* floor(i * out / in) */
    *hi = min(out, ((i + 1) * out + in - 1) / in) - 1; /* ceil((i + 1) * out / in) - 1 */
}

/* The mean of output (oh, ow)'s window in plane (H, W). NaN propagates through the sum. */
inline REAL adaptive_avg_window(__global const REAL *plane, const int oh, const int ow, const int H, const int W,
                                const int OH, const int OW) {
    int hs, he, ws, we;
    adaptive_window(oh, H, OH, &hs, &he);
    adaptive_window(ow, W, OW, &ws, &we);
    REAL acc = 0;
    for (int h = hs; h < he; ++h)
        for (int w = ws; w < we; ++w)
            acc += plane[h * W + w];
    return acc / (REAL)((he - hs) * (we - ws));
}

/* The gradient of input (ih, iw) of plane nc: sum of dy / area over the covering windows. */
inline REAL adaptive_avg_grad(__global const REAL *dyp, const int ih, const int iw, const int H, const int W,
                              const int OH, const int OW) {
    int oh0, oh1, ow0, ow1;
    adaptive_covering(ih, H, OH, &oh0, &oh1);
    adaptive_covering(iw, W, OW, &ow0, &ow1);
    REAL acc = 0;
    for (int oh = oh0; oh <= oh1; ++oh) {
        int hs, he;
        adaptive_window(oh, H, OH, &hs, &he);
        for (int ow = ow0; ow <= ow1; ++ow) {
            int ws, we;
            adaptive_window(ow, W, OW, &ws, &we);
            acc += dyp[oh * OW + ow] / (REAL)((he - hs) * (we - ws));
        }
    }
    return acc;
}

/* y (N, C, OH, OW) from x (N, C, H, W): an element per item, n = N * C * OH * OW. */
__kernel void adaptive_avg_pool2d_fwd(__global REAL *y, __global const REAL *x, const int H, const int W,
                                      const int OH, const int OW, const int n, const int chunk) {
    FOR_ELEMS(o, n, chunk) {
        const int ow = o % OW;
        const int oh = (o / OW) % OH;
        const int nc = o / (OW * OH);
        y[o] = adaptive_avg_window(x + (size_t)nc * H * W, oh, ow, H, W, OH, OW);
    }
}

/* CPU form: output rows r = (nc, oh), rows = N * C * OH. */
__kernel void adaptive_avg_pool2d_fwd_cpu(__global REAL *y, __global const REAL *x, const int H, const int W,
                                          const int OH, const int OW, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int oh = r % OH, nc = r / OH;
        __global const REAL *plane = x + (size_t)nc * H * W; /* (H, W) */
        for (int ow = 0; ow < OW; ++ow)
            y[(size_t)r * OW + ow] = adaptive_avg_window(plane, oh, ow, H, W, OH, OW);
    }
}

/* dx (N, C, H, W) = beta * dx + gathered dy / area: an element per item, n = N * C * H * W. */
__kernel void adaptive_avg_pool2d_bwd(__global REAL *dx, __global const REAL *dy, const int H, const int W,
                                      const int OH, const int OW, const REAL beta, const int n,
                                      const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int iw = i % W;
        const int ih = (i / W) % H;
        const int nc = i / (W * H);
        ACCUM(dx[i], adaptive_avg_grad(dy + (size_t)nc * OH * OW, ih, iw, H, W, OH, OW));
    }
}

/* CPU form: input rows r = (nc, ih), rows = N * C * H. */
__kernel void adaptive_avg_pool2d_bwd_cpu(__global REAL *dx, __global const REAL *dy, const int H, const int W,
                                          const int OH, const int OW, const REAL beta, const int rows,
                                          const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int ih = r % H, nc = r / H;
        __global const REAL *dyp = dy + (size_t)nc * OH * OW; /* (OH, OW) */
        __global REAL *dxr = dx + (size_t)r * W;
        for (int iw = 0; iw < W; ++iw)
            ACCUM(dxr[iw], adaptive_avg_grad(dyp, ih, iw, H, W, OH, OW));
    }
}
