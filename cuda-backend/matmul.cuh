// matmul: y (rows, N) (+)= x (rows, K) @ W (N, K)^T (+ addend (rows, N)); with accumulate the product is added into
// y, then the addend (OpKind::MatMul in model/backend.h: o and down write into the residual stream, down adding the
// LUT sums). The kernels are in matmul_core.cuh, shared with norm_matmul.
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

constexpr int kMatVecLoads = 4;  // the column kernel's 16-byte weight loads in flight per lane unless told (1, 4, 8)

// The arguments of the matmul family (matmul and norm_matmul); the last fields say which applies.
struct MatMulArgs {
  const float* x = nullptr;  // (rows, K)
  const void* w = nullptr;   // (N, K) in `dtype`
  DType dtype = DType::F32;
  float* y = nullptr;  // (rows, N); never the same buffer as x
  int rows = 0, K = 0, N = 0;
  int tiled_min_rows = 32;       // steps of at least this many rows use the tensor-core kernel, fewer the column kernel
  bool staged = false;           // the column kernel's variant that stages x in shared memory (--tune matvec=staged)
  int col_loads = kMatVecLoads;  // the column kernel's weight loads in flight per lane: 1, 4 or 8 (--tune matvec-loads)
  // matmul only:
  bool accumulate = false;        // y += product instead of y = product
  const float* addend = nullptr;  // (rows, N), added after the product, or null
  // norm_matmul only:
  const float* norm = nullptr;  // (K) the norm weight, float32
  float eps = 0.0f;
  bool gelu = false;
};
void launch_matmul(const MatMulArgs& a, const Launch& l);

}  // namespace mole::cuda
