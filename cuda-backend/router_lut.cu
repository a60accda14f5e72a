// router_lut: blocks over (D in chunks of kThreads, T). Every block of a token computes the token's router
// probabilities itself (E dot products of length D: a little redundant work, no second kernel and no global
// scratch), then its own chunk of dims of the weighted sum: at decode, D / kThreads blocks read the row in parallel.
// All sums have a fixed order: the same bits on every run, and for the copied and the in-place rows.
#include "cuda-backend/router_lut.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kExpertChunk = 8;  // router logits summed together (registers per thread)

template <DType LDT>
__global__ void __launch_bounds__(kThreads) router_lut_kernel(RouterLutArgs a) {
  extern __shared__ float prob[];                  // (E) the logits, then the probabilities
  __shared__ float partial[kWarps][kExpertChunk];  // per-warp sums of a chunk of logits
  __shared__ float scratch[kWarpSize];
  const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int d_out = blockIdx.x * kThreads + tid;  // this thread's dim of the weighted sum
  for (int t = blockIdx.y; t < a.T; t += gridDim.y) {
    const float* x = a.x + size_t(t) * a.D;
    float ss = 0.0f;
    for (int d = tid; d < a.D; d += kThreads) ss += x[d] * x[d];
    const float inv_rms = 1.0f / sqrtf(block_sum(ss, scratch) / float(a.D) + a.eps);
    // The logits, kExpertChunk experts at a time: each thread sums its dims d = tid, tid + kThreads, ... for all of
    // them (the router's rows read coalesced), then warps and the block add the partial sums in a fixed order.
    for (int e0 = 0; e0 < a.E; e0 += kExpertChunk) {
      float acc[kExpertChunk];
#pragma unroll
      for (int j = 0; j < kExpertChunk; j++) acc[j] = 0.0f;
      for (int d = tid; d < a.D; d += kThreads) {
        const float xn = x[d] * a.norm[d];
#pragma unroll
        for (int j = 0; j < kExpertChunk; j++)
          if (e0 + j < a.E) acc[j] += xn * load_elem(a.router, a.router_dtype, size_t(e0 + j) * a.D + d);
      }
#pragma unroll
      for (int j = 0; j < kExpertChunk; j++) {
        const float w = warp_sum(acc[j]);
        if (lane == 0) partial[warp][j] = w;
      }
      __syncthreads();
      if (tid < kExpertChunk && e0 + tid < a.E) {
        float logit = 0.0f;
        for (int w = 0; w < kWarps; w++) logit += partial[w][tid];
        prob[e0 + tid] = logit * inv_rms;
      }
      __syncthreads();  // partial is rewritten by the next chunk; prob holds this chunk's logits
    }
    // Every thread computes the max and the sum itself, serially in expert order (E is small), as cpu::softmax.
    float m = prob[0];
    for (int e = 1; e < a.E; e++) m = fmaxf(m, prob[e]);
    float sum = 0.0f;
    for (int e = 0; e < a.E; e++) sum += expf(prob[e] - m);
    __syncthreads();  // every thread has read the logits before they are overwritten
    for (int e = tid; e < a.E; e += kThreads) prob[e] = expf(prob[e] - m) / sum;
    __syncthreads();
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

void launch_router_lut(const RouterLutArgs& a, cudaStream_t stream) {
  MOLE_CUDA_ASSERT(a.E >= 1 && a.E <= kRouterLutMaxExperts);
  if (a.T == 0 || a.D == 0) return;
  const dim3 grid((a.D + kThreads - 1) / kThreads, std::min(a.T, 65535));
  const size_t shared = size_t(a.E) * sizeof(float);
  switch (a.lut_dtype) {
    case DType::F32:
      router_lut_kernel<DType::F32><<<grid, kThreads, shared, stream>>>(a);
      break;
    case DType::F16:
      router_lut_kernel<DType::F16><<<grid, kThreads, shared, stream>>>(a);
      break;
    case DType::BF16:
      router_lut_kernel<DType::BF16><<<grid, kThreads, shared, stream>>>(a);
      break;
  }
}

}  // namespace mole::cuda
