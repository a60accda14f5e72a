// norm_matmul: the matmul family's kernels (matmul_core.cuh) with the RMSNorm fused in.
#include "cuda-backend/matmul_core.cuh"
#include "cuda-backend/norm_matmul.cuh"

namespace mole::cuda {

void launch_norm_matmul(const MatMulArgs& a, cudaStream_t stream) {
  launch_matmul_family<true>(a, stream);
}

}  // namespace mole::cuda
