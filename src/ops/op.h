/* src/ops/op.h - what the ops share: the floors below (tensors, autograd, the GEMM entry)
 * and the helpers every op family uses. One op family per file: src/ops/x.c, its kernels in
 * cl/ops/x.cl, its tests in tests/ops/test_x.c.
 */
#ifndef CLGRAD_OPS_OP_H
#define CLGRAD_OPS_OP_H

#include "blas/blas.h"
#include "tensor/tensor.h"

#endif
