// router_probs: one block per output row (grid-stride beyond 65,535 rows), the probabilities by router_lut.cu's own
// code (router.cuh), so they are the weights its sum used.
#include "cuda-backend/persistent_step.cuh"
#include "cuda-backend/router.cuh"
#include "cuda-backend/router_lut.cuh"  // kRouterLutMaxExperts
#include "cuda-backend/router_probs.cuh"

namespace mole::cuda {
namespace {

__global__ void __launch_bounds__(kRouterThreads) router_probs_kernel(RouterProbsArgs a) {
  start_after_producers();
  extern __shared__ float prob[];  // (E)
  __shared__ RouterScratch scratch;
  for (int r = blockIdx.x; r < a.R; r += gridDim.x) {
    router_softmax(a.x + size_t(a.out_rows[r]) * a.D, a.router, a.router_dtype, a.norm, a.E, a.D, a.eps, prob, scratch);
    float* out = a.dst + size_t(r) * size_t(a.cols) + size_t(a.layer) * size_t(a.E);
    for (int e = threadIdx.x; e < a.E; e += kRouterThreads) out[e] = prob[e];
    __syncthreads();  // every thread has read prob before the next row's logits overwrite it
  }
}

}  // namespace

void launch_router_probs(const RouterProbsArgs& a, const Launch& l) {
  MOLE_CUDA_ASSERT(a.E >= 1 && a.E <= kRouterLutMaxExperts);
  MOLE_CUDA_ASSERT(a.cols >= (a.layer + 1) * a.E);
  if (a.R == 0 || a.D == 0) return;
  const size_t shared = size_t(a.E) * sizeof(float);
  if (l.program) {
    l.program->refuse("the router's weights are wanted (router_probs)");
    return;
  }
  launch_kernel(router_probs_kernel, std::min(a.R, 65535), kRouterThreads, shared, l, a);
}

}  // namespace mole::cuda
