// router_lut: blocks over (D in chunks of kThreads, T). Every block of a token computes the token's router
// probabilities itself (router.cuh: E dot products of length D, a little redundant work, no second kernel and no
// global scratch), then its own chunk of dims of the weighted sum: at decode, D / kThreads blocks read the row in
// parallel.
// All sums have a fixed order: the same bits on every run, and for the copied and the in-place rows.
// fetch_lut_rows (--tune lut-copy=kernel): each thread issues kFetchInFlight loads of the widest aligned word before
// it stores any, so reads over the bus from mapped host memory overlap; blocks over (the row's words, T).
#include "cuda-backend/persistent_step.cuh"
#include "cuda-backend/router_lut.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = kRouterThreads;
constexpr int kFetchThreads = kLutFetchThreads;
constexpr int kFetchInFlight = kLutFetchInFlight;

template <DType LDT>
__global__ void __launch_bounds__(kThreads) router_lut_kernel(RouterLutArgs a) {
  start_after_producers();
  router_lut_block<LDT>(a, blockIdx.x, blockIdx.y, gridDim.y);
}

template <typename W>
__global__ void __launch_bounds__(kFetchThreads) fetch_lut_rows_kernel(LutFetchArgs a) {
  fetch_lut_rows_block<W>(a, blockIdx.x, gridDim.x, blockIdx.y, gridDim.y);
}

template <typename W>
void launch_fetch(const LutFetchArgs& a, const Launch& l) {
  const size_t words = a.row_bytes / sizeof(W), chunk = size_t(kFetchThreads) * kFetchInFlight;
  const dim3 grid(unsigned(std::min<size_t>((words + chunk - 1) / chunk, 65535)), std::min(a.T, 65535));
  if (l.program) {
    StepItemOp& op = l.program->add(StepItemKind::FetchRows, int(grid.x), int(grid.y));
    op.fetch = a;
    op.word = int(sizeof(W));
    return;
  }
  launch_kernel(fetch_lut_rows_kernel<W>, grid, kFetchThreads, 0, l, a);
}

}  // namespace

void launch_fetch_lut_rows(const LutFetchArgs& a, const Launch& l) {
  if (a.T == 0 || a.row_bytes == 0) return;
  const uintptr_t align = reinterpret_cast<uintptr_t>(a.table) | reinterpret_cast<uintptr_t>(a.ring) | a.row_bytes;
  if (align % 16 == 0)
    launch_fetch<uint4>(a, l);
  else if (align % 8 == 0)
    launch_fetch<uint2>(a, l);
  else if (align % 4 == 0)
    launch_fetch<uint32_t>(a, l);
  else if (align % 2 == 0)
    launch_fetch<uint16_t>(a, l);
  else
    launch_fetch<uint8_t>(a, l);
}

void launch_router_lut(const RouterLutArgs& a, const Launch& l) {
  MOLE_CUDA_ASSERT(a.E >= 1 && a.E <= kRouterLutMaxExperts);
  if (a.T == 0 || a.D == 0) return;
  const dim3 grid((a.D + kThreads - 1) / kThreads, std::min(a.T, 65535));
  const size_t shared = size_t(a.E) * sizeof(float);
  if (l.program) {
    l.program->add(StepItemKind::RouterLut, int(grid.x), int(grid.y)).lut = a;
    l.program->shared = std::max(l.program->shared, shared);
    return;
  }
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
