// router_lut: blocks over (D in chunks of kThreads, T). Every block of a token computes the token's router
// probabilities itself (router.cuh: E dot products of length D, a little redundant work, no second kernel and no
// global scratch), then its own chunk of dims of the weighted sum: at decode, D / kThreads blocks read the row in
// parallel.
// All sums have a fixed order: the same bits on every run, and for the copied and the in-place rows.
#include "cuda-backend/router_lut.cuh"

#include "cuda-backend/router.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = kRouterThreads;

template <DType LDT>
__global__ void __launch_bounds__(kThreads) router_lut_kernel(RouterLutArgs a) {
  start_after_producers();
  extern __shared__ float prob[];  // (E) the router's probabilities
  __shared__ RouterScratch scratch;
  const int d_out = blockIdx.x * kThreads + threadIdx.x;  // this thread's dim of the weighted sum
  for (int t = blockIdx.y; t < a.T; t += gridDim.y) {
    router_softmax(a.x + size_t(t) * a.D, a.router, a.router_dtype, a.norm, a.E, a.D, a.eps, prob, scratch);
    if (d_out < a.D) {
      const size_t row_id = a.ids ? size_t(a.ids[t]) : size_t(t);
      const void* row = static_cast<const uint8_t*>(a.rows) + row_id * a.row_bytes;
      const size_t first = size_t(a.layer) * a.E * a.D + d_out;  // element (layer, 0, d_out) of the row
      float v = 0.0f;
      for (int e = 0; e < a.E; e++) v += prob[e] * load_elem<LDT>(row, first + size_t(e) * a.D);
      a.dst[size_t(t) * a.D + d_out] = v;
    }
    __syncthreads();  // prob is rewritten by the next token
  }
}

}  // namespace

void launch_router_lut(const RouterLutArgs& a, const Launch& l) {
  MOLE_CUDA_ASSERT(a.E >= 1 && a.E <= kRouterLutMaxExperts);
  if (a.T == 0 || a.D == 0) return;
  const dim3 grid((a.D + kThreads - 1) / kThreads, std::min(a.T, 65535));
  const size_t shared = size_t(a.E) * sizeof(float);
  switch (a.lut_dtype) {
    case DType::F32:
      launch_kernel(router_lut_kernel<DType::F32>, grid, kThreads, shared, l, a);
      break;
    case DType::F16:
      launch_kernel(router_lut_kernel<DType::F16>, grid, kThreads, shared, l, a);
      break;
    case DType::BF16:
      launch_kernel(router_lut_kernel<DType::BF16>, grid, kThreads, shared, l, a);
      break;
  }
}

}  // namespace mole::cuda
