// gather: one thread per element of the output, grid-stride. A copy: exact.
#include "cuda-backend/gather.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) gather_kernel(GatherArgs a) {
  start_after_producers();
  const size_t count = size_t(a.R) * size_t(a.n);
  for (size_t g = size_t(blockIdx.x) * kThreads + threadIdx.x; g < count; g += size_t(gridDim.x) * kThreads) {
    const size_t r = g / size_t(a.n), i = g % size_t(a.n);
    a.dst[g] = a.src[size_t(a.out_rows[r]) * size_t(a.n) + i];
  }
}

}  // namespace

void launch_gather(const GatherArgs& a, const Launch& l) {
  const size_t count = size_t(a.R) * size_t(a.n);
  if (count == 0) return;
  const unsigned blocks = unsigned(std::min<size_t>((count + kThreads - 1) / kThreads, 65535));
  launch_kernel(gather_kernel, blocks, kThreads, 0, l, a);
}

}  // namespace mole::cuda
