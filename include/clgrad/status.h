/* clgrad/status.h - status codes shared by every public call.
 * One X-macro list generates the enum, clg_status_name() and clg_status_string(),
 * so the three cannot drift apart (libuv's UV_ERRNO_MAP). Implemented in src/core/status.c.
 */
#ifndef CLGRAD_STATUS_H
#define CLGRAD_STATUS_H

#if defined(_WIN32)
#define CLG_API __declspec(dllexport)
#elif defined(__GNUC__)
#define CLG_API __attribute__((visibility("default")))
#else
#define CLG_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, description). 0 is success; every failure is negative. */
#define CLG_STATUS_LIST(X)                                                                 \
    X(CLG_OK, 0, "success")                                                                \
    X(CLG_INVALID_ARGUMENT, -1, "invalid argument (null pointer, bad value)")              \
    X(CLG_SHAPE_MISMATCH, -2, "tensor shapes do not fit together")                        \
    X(CLG_OUT_OF_DEVICE_MEMORY, -3, "out of device memory")                                \
    X(CLG_OUT_OF_HOST_MEMORY, -4, "out of host memory")                                    \
    X(CLG_OPENCL_ERROR, -5, "an OpenCL call failed")                                       \
    X(CLG_BUILD_FAILED, -6, "an OpenCL program failed to build")                           \
    X(CLG_BLAS_ERROR, -7, "a CLBlast call failed")                                         \
    X(CLG_IO_ERROR, -8, "file input/output failed")                                        \
    X(CLG_UNSUPPORTED, -9, "not supported on this device or build")                        \
    X(CLG_BAD_FORMAT, -10, "malformed, truncated or inconsistent data")                    \
    X(CLG_DEVICE_NOT_FOUND, -11, "no OpenCL device matches the choice")                    \
    X(CLG_INVALID_STATE, -12, "the call does not fit the object's state (e.g. no graph)")  \
    X(CLG_COMM_ERROR, -13, "communication between processes failed (MPI)")

/* What every fallible call returns: CLG_OK (0) or a negative cause (CLG_STATUS_LIST). */
typedef enum clg_status {
#define CLG_STATUS_ENUM_(name, value, text) name = value,
    CLG_STATUS_LIST(CLG_STATUS_ENUM_)
#undef CLG_STATUS_ENUM_
} clg_status;

/* "CLG_SHAPE_MISMATCH"; "CLG_UNKNOWN_STATUS" for a value not in the list. Static text. */
CLG_API const char *clg_status_name(clg_status status);
/* A sentence about the cause: "tensor shapes do not fit together". Static text. */
CLG_API const char *clg_status_string(clg_status status);

#ifdef __cplusplus
}
#endif
#endif
