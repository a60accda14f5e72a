// kv_store: one thread per element of the step's rows, grid-stride. A rotated element reads its pair partner from
// src, so the rotation never reads what another thread writes.
#include "cuda-backend/kv_store.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) kv_store_kernel(KvStoreArgs a) {
  const size_t count = size_t(a.T) * size_t(a.n);
  for (size_t g = size_t(blockIdx.x) * kThreads + threadIdx.x; g < count; g += size_t(gridDim.x) * kThreads) {
    const int t = int(g / size_t(a.n)), i = int(g % size_t(a.n));
    float v = a.src[g];
    if (a.hd > 0) {
      const int half = a.hd / 2, j = i % a.hd, f = j % half;  // j: the element within its head
      const float c = a.cos[size_t(t) * half + f], s = a.sin[size_t(t) * half + f];
      v = j < half ? v * c - a.src[g + half] * s : v * c + a.src[g - half] * s;
    }
    const size_t row = size_t(a.slot[t]) * size_t(a.ctx) + size_t(a.pos[t]);
    a.cache[row * size_t(a.n) + i] = v;
  }
}

}  // namespace

void launch_kv_store(const KvStoreArgs& a, cudaStream_t stream) {
  MOLE_CUDA_ASSERT(a.hd % 2 == 0 && (a.hd == 0 || a.n % a.hd == 0));
  const size_t count = size_t(a.T) * size_t(a.n);
  if (count == 0) return;
  const unsigned blocks = unsigned(std::min<size_t>((count + kThreads - 1) / kThreads, 65535));
  kv_store_kernel<<<blocks, kThreads, 0, stream>>>(a);
}

}  // namespace mole::cuda
