// gather: dst (R, n) = src (T, n) [out_rows[r]], the token rows whose logits a step returns (OpKind::Gather in
// model/backend.h, shaders/gather.comp).
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct GatherArgs {
  const float* src = nullptr;         // (T, n)
  const int32_t* out_rows = nullptr;  // (R), each in [0, T)
  float* dst = nullptr;               // (R, n)
  int R = 0, n = 0;
};
void launch_gather(const GatherArgs& a, const Launch& l);

constexpr int kGatherThreads = 256;  // one thread per element of the output, grid-stride

#if defined(__CUDACC__)
// Block bx of gx: gather_kernel's, or an item of the persistent decode kernel.
__device__ __forceinline__ void gather_block(const GatherArgs& a, int bx, int gx) {
  const size_t count = size_t(a.R) * size_t(a.n);
  for (size_t g = size_t(bx) * kGatherThreads + threadIdx.x; g < count; g += size_t(gx) * kGatherThreads) {
    const size_t r = g / size_t(a.n), i = g % size_t(a.n);
    a.dst[g] = a.src[size_t(a.out_rows[r]) * size_t(a.n) + i];
  }
}
#endif

}  // namespace mole::cuda
