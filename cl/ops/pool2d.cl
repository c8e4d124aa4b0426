/* cl/ops/pool2d.cl - max and average pooling over (N, C, H, W), forward and backward.
 * Host side: src/ops/pool2d.c. Tests: tests/ops/test_pool2d.c.
 * Backward kernels are gathers (each input element sums the output windows that cover it,
 * in a fixed order), so they need no atomics and are deterministic. Every kernel loops with
 * FOR_ELEMS: one element per work-item on GPUs, runs of them on CPUs. Forward kernels also
 * come in a CPU form by output rows (name_cpu: no index division per element), chosen by the
 * host through clg__op_kernel (src/ops/op.h); both call the same per-window code.
 * max_pool2d_bwd_tiled is not a style variant: it serves windows that tile the input, in
 * either style.
 */
#include "common/defs.h"

/* Output rows (or columns) whose window covers input position i: [*lo, *hi], maybe empty. */
inline void covering_range(const int i, const int k, const int s, const int pad, const int out, int *lo,
                           int *hi) {
    const int t = i + pad - k + 1; /* first window start that still reaches i */
    *lo = t <= 0 ? 0 : (t - 1) / s + 1; /* ceil(t / s); t + s - 1 would overflow int for large s */
    *hi = min(out - 1, (i + pad) / s);
}

/* The max of output (oh, ow)'s window in plane (H, W), its index h * W + w in *at. Padding
 * counts as -inf; ties keep the first element in scan order and NaN wins, as PyTorch does. */
inline REAL max_window(__global const REAL *plane, const int oh, const int ow, const int H, const int W,
                       const int kh, const int kw, const int sh, const int sw, const int ph, const int pw,
                       int *at) {
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
    *at = best_i;
    return best;
}

/* Output element o (GPU form). idx, when not 0, gets the argmax within the plane. */
inline void max_pool2d_at(const int o, __global REAL *y, __global const REAL *x, __global int *idx,
                          const int H, const int W, const int OH, const int OW, const int kh, const int kw,
                          const int sh, const int sw, const int ph, const int pw) {
    const int ow = o % OW;
    const int oh = (o / OW) % OH;
    const int nc = o / (OW * OH);
    int at;
    y[o] = max_window(x + (size_t)nc * H * W, oh, ow, H, W, kh, kw, sh, sw, ph, pw, &at);
    if (idx) idx[o] = at;
}

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#ifdef REAL_IS_DOUBLE
#define MASK(n) CAT(long, n) /* what comparisons of double vectors give */
#else
#define MASK(n) CAT(int, n)
#endif

/* VW outputs of a row at once where windows are 2 columns wide at stride 2 without column
 * padding: 2 * VW contiguous inputs per window row, even columns then odd ones, which is
 * max_window's scan order with its comparisons, so values and argmax are the same bits. */
#define MAX_PAIRS(VW, VW2, LANES)                                                                            \
    for (; ow + VW <= OW; ow += VW) {                                                                        \
        const CAT(int, VW) lane = LANES;                                                                     \
        CAT(REAL, VW) best = (CAT(REAL, VW))(-INFINITY);                                                     \
        CAT(int, VW) best_i = (CAT(int, VW))(hs * W + ow * 2) + lane;                                        \
        for (int h = hs; h < he; ++h) {                                                                      \
            const CAT(REAL, VW2) v = CAT(vload, VW2)(0, plane + h * W + ow * 2);                             \
            const CAT(int, VW) at = (CAT(int, VW))(h * W + ow * 2) + lane;                                   \
            MASK(VW) take = isgreater(v.even, best) | isnan(v.even);                                         \
            best = select(best, v.even, take);                                                               \
            best_i = select(best_i, at, CAT(convert_int, VW)(take));                                         \
            take = isgreater(v.odd, best) | isnan(v.odd);                                                    \
            best = select(best, v.odd, take);                                                                \
            best_i = select(best_i, at + 1, CAT(convert_int, VW)(take));                                     \
        }                                                                                                    \
        CAT(vstore, VW)(best, 0, y + o0 + ow);                                                               \
        if (idx) CAT(vstore, VW)(best_i, 0, idx + o0 + ow);                                                  \
    }

/* Output row r = (nc, oh) (CPU form): the plane and row come once per row instead of being
 * divided out of every element's index; each element is max_window as above, the common
 * 2-column windows 8 and 4 at a time in vectors. */
inline void max_pool2d_row(const int r, __global REAL *y, __global const REAL *x, __global int *idx,
                           const int H, const int W, const int OH, const int OW, const int kh, const int kw,
                           const int sh, const int sw, const int ph, const int pw) {
    const int oh = r % OH, nc = r / OH;
    __global const REAL *plane = x + (size_t)nc * H * W; /* (H, W) */
    const size_t o0 = (size_t)r * OW;
    int ow = 0;
    if (kw == 2 && sw == 2 && pw == 0) { /* then 2 * OW <= W: every load stays in the row */
        int hs = oh * sh - ph;
        const int he = min(hs + kh, H);
        hs = max(hs, 0);
        MAX_PAIRS(8, 16, ((int8)(0, 2, 4, 6, 8, 10, 12, 14)))
        MAX_PAIRS(4, 8, ((int4)(0, 2, 4, 6)))
    }
    for (; ow < OW; ++ow) {
        int at;
        y[o0 + ow] = max_window(plane, oh, ow, H, W, kh, kw, sh, sw, ph, pw, &at);
        if (idx) idx[o0 + ow] = at;
    }
}

/* y (N, C, OH, OW) from x (N, C, H, W); no argmax (evaluation). */
__kernel void max_pool2d_fwd(__global REAL *y, __global const REAL *x, const int H, const int W, const int OH,
                             const int OW, const int kh, const int kw, const int sh, const int sw,
                             const int ph, const int pw, const int n, const int chunk) {
    FOR_ELEMS(o, n, chunk) max_pool2d_at(o, y, x, 0, H, W, OH, OW, kh, kw, sh, sw, ph, pw);
}

/* Same, also writing the argmax idx (N, C, OH, OW) that backward gathers with. */
__kernel void max_pool2d_fwd_idx(__global REAL *y, __global const REAL *x, __global int *idx, const int H,
                                 const int W, const int OH, const int OW, const int kh, const int kw,
                                 const int sh, const int sw, const int ph, const int pw, const int n,
                                 const int chunk) {
    FOR_ELEMS(o, n, chunk) max_pool2d_at(o, y, x, idx, H, W, OH, OW, kh, kw, sh, sw, ph, pw);
}

/* CPU forms of the two above: rows = N * C * OH output rows. */
__kernel void max_pool2d_fwd_cpu(__global REAL *y, __global const REAL *x, const int H, const int W,
                                  const int OH, const int OW, const int kh, const int kw, const int sh,
                                  const int sw, const int ph, const int pw, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) max_pool2d_row(r, y, x, 0, H, W, OH, OW, kh, kw, sh, sw, ph, pw);
}

__kernel void max_pool2d_fwd_idx_cpu(__global REAL *y, __global const REAL *x, __global int *idx,
                                      const int H, const int W, const int OH, const int OW, const int kh,
                                      const int kw, const int sh, const int sw, const int ph, const int pw,
                                      const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) max_pool2d_row(r, y, x, idx, H, W, OH, OW, kh, kw, sh, sw, ph, pw);
}

/* dx (N, C, H, W) = beta * dx + sum of dy over the windows whose argmax is this element.
 * Overlapping windows (kernel > stride) can pick the same input: the gather sums them. */
__kernel void max_pool2d_bwd(__global REAL *dx, __global const REAL *dy, __global const int *idx, const int H,
                             const int W, const int OH, const int OW, const int kh, const int kw,
                             const int sh, const int sw, const int ph, const int pw, const REAL beta,
                             const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
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
        ACCUM(dx[i], acc);
    }
}

/* Backward of 2-column windows, VW outputs (2 * VW inputs of row ih) at once: the same
 * comparisons and beta rule per element as the scalar loop below it. */
#define MAX_PAIRS_BWD(VW, VW2, LANES)                                                                        \
    for (; iw + VW2 <= OW * 2; iw += VW2) {                                                                  \
        const int ow = iw / 2;                                                                               \
        const CAT(REAL, VW) gy = CAT(vload, VW)(0, dyr + ow), zero = (CAT(REAL, VW))(0);                     \
        const CAT(int, VW) a = CAT(vload, VW)(0, ir + ow), at = (CAT(int, VW))(ih * W + iw) + LANES;         \
        CAT(REAL, VW2) g;                                                                                    \
        g.even = select(zero, gy, CAT(convert_, MASK(VW))(a == at));                                         \
        g.odd = select(zero, gy, CAT(convert_, MASK(VW))(a == at + 1));                                      \
        g = ACCUM_VALUE(CAT(vload, VW2)(0, dxr + iw), g);                                                    \
        CAT(vstore, VW2)(g, 0, dxr + iw);                                                                    \
    }

/* The common case of windows that tile the input exactly (kernel == stride, no padding,
 * H == OH * kh): every input element lies in one window, so each output row (nc, oh)
 * writes its kh input rows outright. A long, branch-light loop is what CPU devices vectorise
 * well (2-column windows go 8 and 4 at a time in vectors); the general gather above does ~4x
 * the index work. */
__kernel void max_pool2d_bwd_tiled(__global REAL *dx, __global const REAL *dy, __global const int *idx,
                                   const int W, const int OH, const int OW, const int kh, const int kw,
                                   const REAL beta, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int oh = r % OH, nc = r / OH;
        const size_t plane = (size_t)nc * OH * kh * W;
        __global const REAL *dyr = dy + (size_t)r * OW;
        __global const int *ir = idx + (size_t)r * OW;
        for (int dh = 0; dh < kh; ++dh) {
            const int ih = oh * kh + dh;
            __global REAL *dxr = dx + plane + (size_t)ih * W;
            int iw = 0;
            if (kw == 2) {
                MAX_PAIRS_BWD(8, 16, ((int8)(0, 2, 4, 6, 8, 10, 12, 14)))
                MAX_PAIRS_BWD(4, 8, ((int4)(0, 2, 4, 6)))
            }
            for (; iw < OW * kw; ++iw) {
                const int ow = iw / kw;
                const REAL g = ir[ow] == ih * W + iw ? dyr[ow] : (REAL)0;
                ACCUM(dxr[iw], g);
            }
        }
    }
}

/* count_include_pad = true: the divisor counts padded positions (not those beyond the padding).
 * Each side fits an int (the host keeps H + 2 * ph within int); their product need not, so it
 * is formed in long, as PyTorch forms it in int64. */
inline REAL avg_divisor(const int hs, const int ws, const int H, const int W, const int kh, const int kw,
                        const int ph, const int pw) {
    return (REAL)((long)(min(hs + kh, H + ph) - hs) * (long)(min(ws + kw, W + pw) - ws));
}

/* The mean of output (oh, ow)'s window in plane (H, W). */
inline REAL avg_window(__global const REAL *plane, const int oh, const int ow, const int H, const int W,
                       const int kh, const int kw, const int sh, const int sw, const int ph, const int pw) {
    const int hs0 = oh * sh - ph, ws0 = ow * sw - pw;
    const REAL div = avg_divisor(hs0, ws0, H, W, kh, kw, ph, pw);
    const int he = min(hs0 + kh, H), we = min(ws0 + kw, W);
    REAL acc = 0;
    for (int h = max(hs0, 0); h < he; ++h)
        for (int w = max(ws0, 0); w < we; ++w)
            acc += plane[h * W + w];
    return acc / div;
}

/* Per output element: y (N, C, OH, OW) from x (N, C, H, W). */
__kernel void avg_pool2d_fwd(__global REAL *y, __global const REAL *x, const int H, const int W, const int OH,
                             const int OW, const int kh, const int kw, const int sh, const int sw,
                             const int ph, const int pw, const int n, const int chunk) {
    FOR_ELEMS(o, n, chunk) {
        const int ow = o % OW;
        const int oh = (o / OW) % OH;
        const int nc = o / (OW * OH);
        y[o] = avg_window(x + (size_t)nc * H * W, oh, ow, H, W, kh, kw, sh, sw, ph, pw);
    }
}

/* CPU form: per output row r = (nc, oh) of the rows = N * C * OH. */
__kernel void avg_pool2d_fwd_cpu(__global REAL *y, __global const REAL *x, const int H, const int W,
                                  const int OH, const int OW, const int kh, const int kw, const int sh,
                                  const int sw, const int ph, const int pw, const int rows, const int chunk) {
    FOR_ELEMS(r, rows, chunk) {
        const int oh = r % OH, nc = r / OH;
        __global const REAL *plane = x + (size_t)nc * H * W; /* (H, W) */
        for (int ow = 0; ow < OW; ++ow)
            y[(size_t)r * OW + ow] = avg_window(plane, oh, ow, H, W, kh, kw, sh, sw, ph, pw);
    }
}

/* dx (N, C, H, W) = beta * dx + sum over covering windows of dy / divisor. */
__kernel void avg_pool2d_bwd(__global REAL *dx, __global const REAL *dy, const int H, const int W,
                             const int OH, const int OW, const int kh, const int kw, const int sh,
                             const int sw, const int ph, const int pw, const REAL beta, const int n,
                             const int chunk) {
    FOR_ELEMS(i, n, chunk) {
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
                const REAL div = avg_divisor(oh * sh - ph, ow * sw - pw, H, W, kh, kw, ph, pw);
                acc += dy[base + oh * OW + ow] / div;
            }
        ACCUM(dx[i], acc);
    }
}
