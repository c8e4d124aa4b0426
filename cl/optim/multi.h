/* cl/optim/multi.h - the multi-tensor launch of the optimizer kernels (PyTorch's foreach /
 * multi_tensor_apply): one launch covers up to MT_K tensors as if they were laid end to end.
 * Each slot j has its own buffers and element count n##j (0 for an unused slot); a work-item
 * takes elements [GID0 * chunk, + chunk) of the concatenation and runs each slot's part of it
 * through the same per-element function as the single-tensor kernel, so the results are the
 * same bits. MT_K comes from the host (src/optim/multi.c): 4, 8 or 16, to fit the device's
 * CL_DEVICE_MAX_PARAMETER_SIZE. Inlined by tools/cl2c.c.
 */
#ifndef CLG_CL_OPTIM_MULTI_H
#define CLG_CL_OPTIM_MULTI_H

#ifndef MT_K
#define MT_K 8
#endif

/* X(j) for every slot j < MT_K. */
#if MT_K == 4
#define MT_EACH(X) X(0) X(1) X(2) X(3)
#elif MT_K == 8
#define MT_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#elif MT_K == 16
#define MT_EACH(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#else
#error "MT_K must be 4, 8 or 16"
#endif

/* The element range of this work-item in the concatenation: declares mt_start, mt_end and
 * mt_off (where the next slot begins). */
#define MT_RANGE(total, chunk)                                                          \
    const int mt_start = GID0 * (chunk), mt_end = min(mt_start + (chunk), (total)); \
    int mt_off = 0

/* Runs BODY(i) for i over slot j's indices that fall in this work-item's range. */
#define MT_SLOT(j, BODY)                                                          \
    {                                                                             \
        const int lo_ = max(mt_start, mt_off) - mt_off;                           \
        const int hi_ = min(mt_end, mt_off + n##j) - mt_off;                      \
        for (int i = lo_; i < hi_; ++i) BODY(j, i);                               \
        mt_off += n##j;                                                           \
    }

#endif
