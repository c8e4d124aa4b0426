/* cl/common/defs.h - shared by every kernel (inlined at embed time by tools/cl2c.c).
 * REAL is the element type, chosen per build through options from clg__dtype_options():
 * "-DREAL=float" or "-DREAL=double -DREAL_IS_DOUBLE=1". Each .cl also compiles alone.
 */
#ifndef CLG_CL_DEFS_H
#define CLG_CL_DEFS_H

#ifdef REAL_IS_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif

#ifndef REAL
#define REAL float
#endif

/* The global index of a 1-D launch; launches are rounded up, so kernels guard with it. */
#define GID0 ((int)get_global_id(0))

/* The element loop of kernels launched with CLG_LAUNCH_ELEMS (src/core/core.h): each
 * work-item takes `chunk` consecutive elements (1 on GPUs, a long run on CPUs). */
#define FOR_ELEMS(i, n, chunk) \
    for (int i = GID0 * (chunk), i##_end_ = min(i + (chunk), (n)); i < i##_end_; ++i)

/* The beta rule of every gradient write, from the kernel's own `beta` argument: beta == 0
 * overwrites without reading dst (fresh pool memory may hold NaN, and 0 * NaN is NaN),
 * otherwise dst = beta * dst + v. ACCUM_VALUE is the value, for stores that are not a plain
 * assignment (vector stores); old is read only when beta != 0. */
#define ACCUM_VALUE(old, v) ((beta == (REAL)0) ? (v) : beta * (old) + (v))
#define ACCUM(dst, v) ((dst) = ACCUM_VALUE(dst, v))

#endif
