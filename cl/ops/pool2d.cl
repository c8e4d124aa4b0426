/* cl/ops/pool2d.cl - max and average pooling over (N, C, H, W), forward and backward.
 * Host side: src/ops/pool2d.c. Tests: tests/ops/test_pool2d.c.
 * Backward kernels are gathers (one work-item per input element summing the output windows
 * that cover it, in a fixed order), so they need no atomics and are deterministic.
 */
#include "common/defs.h"

/* Output rows (or columns) whose window covers input position i: [*lo, *hi], maybe empty. */
inline void covering_range(const int i, const int k, const int s, const int pad, const int out, int *lo,
                           int *hi) {
    const int t = i + pad - k + 1; /* first window start that still reaches i */
    *lo = t <= 0 ? 0 : (t + s - 1) / s;
    *hi = min(out - 1, (i + pad) / s);
}

/* One work-item per output element. idx (when not 0) gets the argmax as h * W + w within the
 * plane. Padding counts as -inf; ties keep the first element in scan order and NaN wins, as
 * PyTorch does. */
inline void max_pool2d_body(__global REAL *y, __global const REAL *x, __global int *idx, const int H,
                            const int W, const int OH, const int OW, const int kh, const int kw, const int sh,
                            const int sw, const int ph, const int pw, const int n) {
    const int o = GID0;
    if (o >= n) return;
    const int ow = o % OW;
    const int oh = (o / OW) % OH;
    const int nc = o / (OW * OH);
    __global const REAL *plane = x + (size_t)nc * H * W; /* (H, W) */
    int hs = oh * sh - ph, ws = ow * sw - pw;
    const int he = min(hs + kh, H), we = min(ws + kw, W);
    hs = max(hs, 0);
    ws = max(ws, 0);
    REAL best = -INFINITY;
    int best_i = hs * W + ws;
    for (int h = hs; h < he; ++h) {
        for (int w = ws; w < we; ++w) {
            const REAL v = plane[h * W + w];
            if (v > best || isnan(v)) {
                best = v;
                best_i = h * W + w;
            }
        }
    }
    y[o] = best;
    if (idx) idx[o] = best_i;
}

/* y (N, C, OH, OW) from x (N, C, H, W); no argmax (evaluation). */
__kernel void max_pool2d_fwd(__global REAL *y, __global const REAL *x, const int H, const int W, const int OH,
                             const int OW, const int kh, const int kw, const int sh, const int sw,
                             const int ph, const int pw, const int n) {
    max_pool2d_body(y, x, 0, H, W, OH, OW, kh, kw, sh, sw, ph, pw, n);
}

/* Same, also writing the argmax idx (N, C, OH, OW) that backward gathers with. */
__kernel void max_pool2d_fwd_idx(__global REAL *y, __global const REAL *x, __global int *idx, const int H,
                                 const int W, const int OH, const int OW, const int kh, const int kw,
                                 const int sh, const int sw, const int ph, const int pw, const int n) {
    max_pool2d_body(y, x, idx, H, W, OH, OW, kh, kw, sh, sw, ph, pw, n);
}

/* dx (N, C, H, W) = beta * dx + sum of dy over the windows whose argmax is this element.
 * Overlapping windows (kernel > stride) can pick the same input: the gather sums them. */
__kernel void max_pool2d_bwd(__global REAL *dx, __global const REAL *dy, __global const int *idx, const int H,
                             const int W, const int OH, const int OW, const int kh, const int kw,
                             const int sh, const int sw, const int ph, const int pw, const REAL beta,
                             const int n) {
    const int i = GID0;
    if (i >= n) return;
    const int iw = i % W;
    const int ih = (i / W) % H;
    const int nc = i / (W * H);
    const int self = ih * W + iw;
    int oh0, oh1, ow0, ow1;
    covering_range(ih, kh, sh, ph, OH, &oh0, &oh1);
    covering_range(iw, kw, sw, pw, OW, &ow0, &ow1);
    const size_t base = (size_t)nc * OH * OW;
    REAL acc = 0;
    for (int oh = oh0; oh <= oh1; ++oh)
        for (int ow = ow0; ow <= ow1; ++ow) {
            const size_t o = base + oh * OW + ow;
            if (idx[o] == self) acc += dy[o];
        }
    dx[i] = beta == (REAL)0 ? acc : beta * dx[i] + acc;
}

/* The common case of windows that tile the input exactly (kernel == stride, no padding,
 * H == OH * kh): every input element lies in one window, so one work-item per output row
 * (nc, oh) writes its kh input rows outright. A long, branch-light loop per work-item is
 * what CPU devices vectorise well; the general gather above does ~4x the index work. */
__kernel void max_pool2d_bwd_tiled(__global REAL *dx, __global const REAL *dy, __global const int *idx,
                                   const int W, const int OH, const int OW, const int kh, const int kw,
                                   const REAL beta, const int rows) {
    const int r = GID0; /* (nc, oh) */
    if (r >= rows) return;
    const int oh = r % OH, nc = r / OH;
    const size_t plane = (size_t)nc * OH * kh * W;
    __global const REAL *dyr = dy + (size_t)r * OW;
    __global const int *ir = idx + (size_t)r * OW;
    for (int dh = 0; dh < kh; ++dh) {
        const int ih = oh * kh + dh;
        __global REAL *dxr = dx + plane + (size_t)ih * W;
        for (int iw = 0; iw < OW * kw; ++iw) {
            const int ow = iw / kw;
            const REAL g = ir[ow] == ih * W + iw ? dyr[ow] : (REAL)0;
            dxr[iw] = beta == (REAL)0 ? g : beta * dxr[iw] + g;
        }
    }
}

/* count_include_pad = true: the divisor counts padded positions (not those beyond the padding). */
inline int avg_divisor(const int hs, const int ws, const int H, const int W, const int kh, const int kw,
                       const int ph, const int pw) {
    return (min(hs + kh, H + ph) - hs) * (min(ws + kw, W + pw) - ws);
}

/* One work-item per output element: y (N, C, OH, OW) from x (N, C, H, W). */
__kernel void avg_pool2d_fwd(__global REAL *y, __global const REAL *x, const int H, const int W, const int OH,
                             const int OW, const int kh, const int kw, const int sh, const int sw,
                             const int ph, const int pw, const int n) {
    const int o = GID0;
    if (o >= n) return;
    const int ow = o % OW;
    const int oh = (o / OW) % OH;
    const int nc = o / (OW * OH);
    __global const REAL *plane = x + (size_t)nc * H * W; /* (H, W) */
    const int hs0 = oh * sh - ph, ws0 = ow * sw - pw;
    const int div = avg_divisor(hs0, ws0, H, W, kh, kw, ph, pw);
    const int he = min(hs0 + kh, H), we = min(ws0 + kw, W);
    REAL acc = 0;
    for (int h = max(hs0, 0); h < he; ++h)
        for (int w = max(ws0, 0); w < we; ++w)
            acc += plane[h * W + w];
    y[o] = acc / (REAL)div;
}

/* dx (N, C, H, W) = beta * dx + sum over covering windows of dy / divisor. */
__kernel void avg_pool2d_bwd(__global REAL *dx, __global const REAL *dy, const int H, const int W,
                             const int OH, const int OW, const int kh, const int kw, const int sh,
                             const int sw, const int ph, const int pw, const REAL beta, const int n) {
    const int i = GID0;
    if (i >= n) return;
    const int iw = i % W;
    const int ih = (i / W) % H;
    const int nc = i / (W * H);
    int oh0, oh1, ow0, ow1;
    covering_range(ih, kh, sh, ph, OH, &oh0, &oh1);
    covering_range(iw, kw, sw, pw, OW, &ow0, &ow1);
    const size_t base = (size_t)nc * OH * OW;
    REAL acc = 0;
    for (int oh = oh0; oh <= oh1; ++oh)
        for (int ow = ow0; ow <= ow1; ++ow) {
            const int div = avg_divisor(oh * sh - ph, ow * sw - pw, H, W, kh, kw, ph, pw);
            acc += dy[base + oh * OW + ow] / (REAL)div;
        }
    dx[i] = beta == (REAL)0 ? acc : beta * dx[i] + acc;
}
