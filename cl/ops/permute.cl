/* cl/ops/permute.cl - a permutation of dimensions, copied: y[i] = x[its source] under the beta
 * rule (forward passes beta = 0; backward is the inverse permutation with the caller's beta).
 * Host side: src/ops/permute.c (which merges dimensions first, so most permutations become a
 * batched 2-D transpose). Tests: tests/ops/test_permute.c.
 * permute_gather serves both styles (a run of output elements per item on CPUs); transpose
 * comes in two forms: an item per output element (GPU style) and transpose_cpu, a TILE x TILE
 * tile per step through a private copy, so both x and y are walked along their rows.
 */
#include "common/defs.h"

#ifndef TILE
#define TILE 32
#endif

/* y (size.x, size.y, size.z, size.w) row-major; its element (a, b, c, e) is
 * x[a * stride.x + b * stride.y + c * stride.z + e * stride.w]. n = the product of size. */
__kernel void permute_gather(__global REAL *y, __global const REAL *x, const int4 size, const int4 stride,
                             const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        int r = i;
        const int e = r % size.w;
        r /= size.w;
        const int c = r % size.z;
        r /= size.z;
        const int b = r % size.y;
        const int a = r / size.y;
        const size_t src = (size_t)a * stride.x + (size_t)b * stride.y + (size_t)c * stride.z + (size_t)e * stride.w;
        ACCUM(y[i], x[src]);
    }
}

/* x (batch, R, C) -> y (batch, C, R): y[(b * C + c) * R + r] = x[(b * R + r) * C + c], one output
 * element per item. n = batch * R * C. */
__kernel void transpose(__global REAL *y, __global const REAL *x, const int R, const int C, const REAL beta,
                        const int n, const int chunk) {
    FOR_ELEMS(i, n, chunk) {
        const int r = i % R, t = i / R; /* t = b * C + c */
        const int c = t % C, b = t / C;
        ACCUM(y[i], x[((size_t)b * R + r) * C + c]);
    }
}

/* The same, a TILE x TILE tile per step: tiles = batch * ceil(C / TILE) * ceil(R / TILE). The
 * tile goes through a private copy, so both x and y are walked along their rows (contiguous
 * runs) and only the small private tile is read across: a direct strided walk of x over
 * power-of-two C lands every row in one cache set. */
__kernel void transpose_cpu(__global REAL *y, __global const REAL *x, const int R, const int C, const REAL beta,
                            const int tiles, const int chunk) {
    const int tr = (R + TILE - 1) / TILE, tc = (C + TILE - 1) / TILE;
    REAL tile[TILE][TILE + 1]; /* (r, c); + 1 so its columns are not a power-of-two stride apart */
    FOR_ELEMS(t, tiles, chunk) {
        const int r0 = (t % tr) * TILE, c0 = ((t / tr) % tc) * TILE, b = t / tr / tc;
        const int nr = min(TILE, R - r0), nc = min(TILE, C - c0);
        __global const REAL *xt = x + ((size_t)b * R + r0) * C + c0;
        __global REAL *yt = y + ((size_t)b * C + c0) * R + r0;
        for (int r = 0; r < nr; ++r)
            for (int c = 0; c < nc; ++c)
                tile[r][c] = xt[(size_t)r * C + c];
        for (int c = 0; c < nc; ++c)
            for (int r = 0; r < nr; ++r)
                ACCUM(yt[(size_t)c * R + r], tile[r][c]);
    }
}
