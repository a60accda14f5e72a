// router_probs: one block per output row (grid-stride beyond 65,535 rows). The logits and softmax are router_lut.cu's
// code with its constants: each thread sums its dims d = tid, tid + kThreads, ... for kExpertChunk experts at a time,
// warps then the block add the partial sums in a fixed order, and every thread computes the max and the sum serially
// in expert order. Same block size, same order: the same bits as the weights router_lut's sum used. Keep the two in
// step (router_lut.cu is the one that matters for speed; this one runs only when a caller asks for the weights).
#include "cuda-backend/router_lut.cuh"  // kRouterLutMaxExperts
#include "cuda-backend/router_probs.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = 256;  // router_lut.cu's
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kExpertChunk = 8;  // router_lut.cu's

__global__ void __launch_bounds__(kThreads) router_probs_kernel(RouterProbsArgs a) {
  extern __shared__ float prob[];                  // (E) the logits
  __shared__ float partial[kWarps][kExpertChunk];  // per-warp sums of a chunk of logits
  __shared__ float scratch[kWarpSize];
  const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
  for (int r = blockIdx.x; r < a.R; r += gridDim.x) {
    const float* x = a.x + size_t(a.out_rows[r]) * a.D;
    float ss = 0.0f;
    for (int d = tid; d < a.D; d += kThreads) ss += x[d] * x[d];
    const float inv_rms = 1.0f / sqrtf(block_sum(ss, scratch) / float(a.D) + a.eps);
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
    float m = prob[0];
    for (int e = 1; e < a.E; e++) m = fmaxf(m, prob[e]);
    float sum = 0.0f;
    for (int e = 0; e < a.E; e++) sum += expf(prob[e] - m);
    float* out = a.dst + size_t(r) * size_t(a.cols) + size_t(a.layer) * size_t(a.E);
    for (int e = tid; e < a.E; e += kThreads) out[e] = expf(prob[e] - m) / sum;
    __syncthreads();  // every thread has read prob before the next row's logits overwrite it
  }
}

}  // namespace

void launch_router_probs(const RouterProbsArgs& a, cudaStream_t stream) {
  MOLE_CUDA_ASSERT(a.E >= 1 && a.E <= kRouterLutMaxExperts);
  MOLE_CUDA_ASSERT(a.cols >= (a.layer + 1) * a.E);
  if (a.R == 0 || a.D == 0) return;
  const size_t shared = size_t(a.E) * sizeof(float);
  router_probs_kernel<<<std::min(a.R, 65535), kThreads, shared, stream>>>(a);
}

}  // namespace mole::cuda
