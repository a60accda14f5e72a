// gather: one thread per element of the output, grid-stride. A copy: exact.
#include "cuda-backend/gather.cuh"
#include "cuda-backend/persistent_step.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = kGatherThreads;

__global__ void __launch_bounds__(kThreads) gather_kernel(GatherArgs a) {
  start_after_producers();
  gather_block(a, blockIdx.x, gridDim.x);
}

}  // namespace

void launch_gather(const GatherArgs& a, const Launch& l) {
  const size_t count = size_t(a.R) * size_t(a.n);
  if (count == 0) return;
  const unsigned blocks = unsigned(std::min<size_t>((count + kThreads - 1) / kThreads, 65535));
  if (l.program) {
    l.program->add(StepItemKind::Gather, int(blocks)).gather = a;
    return;
  }
  launch_kernel(gather_kernel, blocks, kThreads, 0, l, a);
}

}  // namespace mole::cuda
