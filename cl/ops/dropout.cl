/* cl/ops/dropout.cl - dropout's mask from Philox-4x32-10 (Salmon et al., "Parallel random
 * numbers: as easy as 1, 2, 3", SC'11), a counter-based generator: pure integer arithmetic
 * on (seed, element index), so every device and both dtypes draw the same mask.
 * Host side: src/ops/dropout.c. Tests: tests/ops/test_dropout.c (with a host Philox checked
 * against Random123's known-answer vectors).
 */
#include "common/defs.h"

/* Philox-4x32 with 10 rounds: counter ctr, key key. */
inline uint4 philox4x32_10(uint4 ctr, uint2 key) {
    const uint M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const uint W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            key.x += W0;
            key.y += W1;
        }
        /* One 64-bit product gives both halves; PoCL's mul_hi costs ~1.7x the whole kernel. */
        const ulong p0 = (ulong)M0 * ctr.x, p1 = (ulong)M1 * ctr.z;
        const uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
        const uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
        ctr = (uint4)(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
    }
    return ctr;
}

/* Element i keeps its value when word (i % 4) of philox(counter = (i / 4, 0), key = seed),
 * read as an unsigned 32-bit integer, is >= threshold (= ceil(p * 2^32), so p = 1 keeps
 * nothing and p = 0 keeps everything). Kept values are scaled by scale = 1 / (1 - p).
 *   forward:  y = x * (mask * scale)             (beta = 0)
 *   backward: dx = beta * dx + dy * (mask * scale)
 * One Philox call serves 4 elements: the loop runs over those groups of 4. */
__kernel void dropout_apply(__global REAL *y, __global const REAL *x, const ulong seed, const ulong threshold,
                            const REAL scale, const REAL beta, const int n, const int chunk) {
    FOR_ELEMS(g, (n + 3) / 4, chunk) {
        const int base = g * 4;
        const ulong c = (ulong)g;
        const uint4 r =
            philox4x32_10((uint4)((uint)c, (uint)(c >> 32), 0u, 0u), (uint2)((uint)seed, (uint)(seed >> 32)));
        const uint words[4] = {r.x, r.y, r.z, r.w};
        for (int j = 0; j < 4 && base + j < n; ++j) {
            const int i = base + j;
            /* x times the mask's value (scale or 0), as PyTorch's input * noise: a dropped NaN
             * or infinity stays NaN (0 * NaN), it does not become 0 */
            const REAL v = x[i] * ((ulong)words[j] >= threshold ? scale : (REAL)0);
            ACCUM(y[i], v);
        }
    }
}
