// embed: one thread per element of a token's row, blocks over (D, T). A copy with a widening conversion: exact.
#include "cuda-backend/embed.cuh"
#include "cuda-backend/persistent_step.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = kEmbedThreads;

template <DType DT>
__global__ void __launch_bounds__(kThreads) embed_kernel(EmbedArgs a) {
  start_after_producers();
  embed_block<DT>(a, blockIdx.x, blockIdx.y, gridDim.y);
}

}  // namespace

int kernels_ptx_version(int device) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  cudaFuncAttributes attr{};
  const cudaError_t err = cudaFuncGetAttributes(&attr, embed_kernel<DType::F32>);
  cudaSetDevice(previous);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return attr.ptxVersion;
}

void launch_embed(const EmbedArgs& a, const Launch& l) {
  if (a.T == 0 || a.D == 0) return;
  const dim3 grid((a.D + kThreads - 1) / kThreads, std::min(a.T, 65535));
  if (l.program) {
    l.program->add(StepItemKind::Embed, int(grid.x), int(grid.y)).embed = a;
    return;
  }
  switch (a.dtype) {
    case DType::F32:
      launch_kernel(embed_kernel<DType::F32>, grid, kThreads, 0, l, a);
      break;
    case DType::F16:
      launch_kernel(embed_kernel<DType::F16>, grid, kThreads, 0, l, a);
      break;
    case DType::BF16:
      launch_kernel(embed_kernel<DType::BF16>, grid, kThreads, 0, l, a);
      break;
  }
}

}  // namespace mole::cuda
