/* clgrad.h - the whole public API of clgrad, a C11 library that trains neural networks
 * through OpenCL on any vendor's device. See README.md for a worked example.
 *
 * Ownership: every _create returns an object the caller frees with the matching _free;
 * _free(NULL) is a no-op. Tensors are refcounted (clg_tensor_ref / clg_tensor_free). Ops
 * return new tensors owned by the caller. Borrowed pointers (names, shapes, grads, error
 * text) live as long as the object they came from.
 * Threads: a context and everything created from it is used by one thread at a time;
 * different contexts are independent. The library keeps no mutable global state (CLBlast's
 * process-wide program cache is internally synchronised) and never prints, aborts or exits.
 * Errors: every fallible call returns clg_status (0 = CLG_OK, failures negative); the
 * context keeps a message saying what failed and why (clg_context_errmsg).
 */
#ifndef CLGRAD_H
#define CLGRAD_H

#include "clgrad/status.h"
#include "clgrad/context.h"
#include "clgrad/tensor.h"
#include "clgrad/ops.h"
#include "clgrad/nn.h"
#include "clgrad/optim.h"
#include "clgrad/io.h"
#include "clgrad/loader.h"
#include "clgrad/image_folder.h"

#define CLGRAD_VERSION_MAJOR 0 /* major version of these headers and the library */
#define CLGRAD_VERSION_MINOR 1 /* minor version */
#define CLGRAD_VERSION_PATCH 0 /* patch version */
#define CLGRAD_VERSION_STRING "0.1.0" /* "MAJOR.MINOR.PATCH" */

#endif
