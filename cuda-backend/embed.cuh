// embed: dst (T, D) = table (V, D) [ids[t]], converted to float32 (OpKind::Embed in model/backend.h; the CPU's loop
// in model/cpu_backend.cpp, shaders/embed.comp).
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct EmbedArgs {
  const void* table = nullptr;  // (V, D) in `dtype`
  DType dtype = DType::F32;
  const int32_t* ids = nullptr;  // (T), each in [0, V)
  float* dst = nullptr;          // (T, D)
  int T = 0, D = 0;
};
void launch_embed(const EmbedArgs& a, const Launch& l);

constexpr int kEmbedThreads = 256;  // one thread per element of a row; blocks over (D, T)

#if defined(__CUDACC__)
// Block (bx, by) of a grid (ceil(D / kEmbedThreads), gy): embed_kernel's, or an item of the persistent decode kernel.
template <DType DT>
__device__ __forceinline__ void embed_block(const EmbedArgs& a, int bx, int by, int gy) {
  const int d = bx * kEmbedThreads + threadIdx.x;
  if (d >= a.D) return;
  for (int t = by; t < a.T; t += gy) {
    const size_t row = size_t(a.ids[t]) * size_t(a.D);
    a.dst[size_t(t) * a.D + d] = load_elem<DT>(a.table, row + d);
  }
}
#endif

// The virtual architecture (PTX version, e.g. 90 for compute_90) of the code device `device` runs for this build's
// kernels; 0 where it cannot be found out. Every .cu file is compiled with the same architectures
// (cmake/cuda.cmake), so embed's kernel answers for all. Kernels compiled for less than 90 have no
// griddepcontrol.wait (common.cuh): they must never be launched early (can_start_early()).
int kernels_ptx_version(int device);

}  // namespace mole::cuda
