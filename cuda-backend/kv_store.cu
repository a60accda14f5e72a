// kv_store: one thread per key or value element of the step's rows, grid-stride. A rotated element reads its pair
// partner from src, so the rotation never reads what another thread writes.
#include "cuda-backend/kv_store.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) kv_store_kernel(KvStoreArgs a) {
  const size_t width = 2 * size_t(a.kvd), count = size_t(a.T) * width;
  for (size_t g = size_t(blockIdx.x) * kThreads + threadIdx.x; g < count; g += size_t(gridDim.x) * kThreads) {
    const int t = int(g / width), i = int(g % width);
    const size_t at = size_t(t) * (size_t(a.qd) + width) + size_t(a.qd) + size_t(i);  // the element in src
    float v = a.src[at];
    if (a.hd > 0 && i < a.kvd) {
      const int half = a.hd / 2, j = i % a.hd, f = j % half;  // j: the element within its head
      const float c = a.cos[size_t(t) * half + f], s = a.sin[size_t(t) * half + f];
      v = j < half ? v * c - a.src[at + half] * s : v * c + a.src[at - half] * s;
    }
    const size_t row = size_t(a.slot[t]) * size_t(a.ctx) + size_t(a.pos[t]);
    a.cache[row * width + size_t(i)] = v;
  }
}

}  // namespace

void launch_kv_store(const KvStoreArgs& a, cudaStream_t stream) {
  MOLE_CUDA_ASSERT(a.hd % 2 == 0 && (a.hd == 0 || a.kvd % a.hd == 0));
  const size_t count = size_t(a.T) * 2 * size_t(a.kvd);
  if (count == 0) return;
  const unsigned blocks = unsigned(std::min<size_t>((count + kThreads - 1) / kThreads, 65535));
  kv_store_kernel<<<blocks, kThreads, 0, stream>>>(a);
}

}  // namespace mole::cuda
