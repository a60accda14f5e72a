// norm_matmul: the matmul family's kernels (matmul_core.cuh) with the RMSNorm fused in.
#include "cuda-backend/matmul_core.cuh"
#include "cuda-backend/norm_matmul.cuh"

namespace mole::cuda {

void launch_norm_matmul(const MatMulArgs& a, const Launch& l) {
  launch_matmul_family<true>(a, l);
}

}  // namespace mole::cuda
