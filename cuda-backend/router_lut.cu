// router_lut: blocks over (D in chunks of kThreads, T). Every block of a token computes the token's router
// probabilities itself (router.cuh: E dot products of length D, a little redundant work, no second kernel and no
// global scratch), then its own chunk of dims of the weighted sum: at decode, D / kThreads blocks read the row in
// parallel.
// All sums have a fixed order: the same bits on every run, and for the copied and the in-place rows.
// fetch_lut_rows (--tune lut-copy=kernel): each thread issues kFetchInFlight loads of the widest aligned word before
// it stores any, so reads over the bus from mapped host memory overlap; blocks over (the row's words, T).
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

constexpr int kFetchThreads = 256;
constexpr int kFetchInFlight = 4;  // loads a thread issues before its first store: the bus's latency overlaps

// Blocks over (a row's words in chunks of kFetchThreads * kFetchInFlight, T); W is the widest word both the rows and
// the addresses are aligned to.
template <typename W>
__global__ void __launch_bounds__(kFetchThreads) fetch_lut_rows_kernel(LutFetchArgs a) {
  const size_t words = a.row_bytes / sizeof(W), chunk = size_t(kFetchThreads) * kFetchInFlight;
  for (int t = blockIdx.y; t < a.T; t += gridDim.y) {
    const int32_t id = a.ids[t];
    if (id < 0 || id >= a.V) continue;
    const W* src = reinterpret_cast<const W*>(static_cast<const uint8_t*>(a.table) + size_t(id) * a.row_bytes);
    W* dst = reinterpret_cast<W*>(static_cast<uint8_t*>(a.ring) + size_t(t) * a.row_bytes);
    for (size_t i0 = blockIdx.x * chunk + threadIdx.x; i0 < words; i0 += gridDim.x * chunk) {
      W v[kFetchInFlight];
#pragma unroll
      for (int j = 0; j < kFetchInFlight; j++) {
        const size_t i = i0 + size_t(j) * kFetchThreads;
        if (i < words) v[j] = src[i];
      }
#pragma unroll
      for (int j = 0; j < kFetchInFlight; j++) {
        const size_t i = i0 + size_t(j) * kFetchThreads;
        if (i < words) dst[i] = v[j];
      }
    }
  }
}

template <typename W>
void launch_fetch(const LutFetchArgs& a, const Launch& l) {
  const size_t words = a.row_bytes / sizeof(W), chunk = size_t(kFetchThreads) * kFetchInFlight;
  const dim3 grid(unsigned(std::min<size_t>((words + chunk - 1) / chunk, 65535)), std::min(a.T, 65535));
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
