// matmul: the matmul family's kernels (matmul_core.cuh) without the norm.
#include "cuda-backend/matmul.cuh"
#include "cuda-backend/matmul_core.cuh"

namespace mole::cuda {

void launch_matmul(const MatMulArgs& a, const Launch& l) {
  launch_matmul_family<false>(a, l);
}

}  // namespace mole::cuda
