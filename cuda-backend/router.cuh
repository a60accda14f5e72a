// The router's probabilities of one token, shared by router_lut.cu and router_probs.cu (as shaders/router.glsl is
// by their GLSL versions), so that the weights router_probs reports are, bit for bit, those router_lut's sum used:
//   logit_e = (sum_d x[d] * norm[d] * Wr[e][d]) / sqrt(mean_d x[d]^2 + eps)   (= rmsnorm(x) * norm @ Wr^T)
//   prob = softmax(logit)  (max-subtracted, summed in expert order, as cpu::softmax)
// Each thread sums its dims d = tid, tid + kRouterThreads, ... for kRouterExpertChunk experts at a time (the router's
// rows read coalesced), then warps and the block add the partial sums in a fixed order; every thread computes the max
// and the sum itself, serially in expert order (E is small). The first chunk's walk over x also sums its squares (as
// shaders/router.glsl does), so x, the norm and the router's rows are read in one round, and there is one barrier
// fewer than with a block_sum before it (the same bits: the same sums, in the same order).
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

constexpr int kRouterThreads = 256;  // the block size of both kernels
constexpr int kRouterWarps = kRouterThreads / kWarpSize;
constexpr int kRouterExpertChunk = 8;  // router logits summed together (registers per thread)

// Shared memory the function works in, besides prob: declared by the kernel.
struct RouterScratch {
  float partial[kRouterWarps][kRouterExpertChunk];  // per-warp sums of a chunk of logits
  float squares[kRouterWarps];                       // per-warp sums of x's squares
};

// Called by every thread of a block of kRouterThreads, in uniform control flow; leaves the E probabilities in prob
// (shared memory), visible to every thread (it ends with a barrier). x and norm have D elements; the router (E, D)
// is in router_dtype.
__device__ __forceinline__ void router_softmax(const float* x, const void* router, DType router_dtype, const float* norm,
                                               int E, int D, float eps, float* prob, RouterScratch& s) {
  const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
  float inv_rms = 0.0f;  // set by the first chunk
  for (int e0 = 0; e0 < E; e0 += kRouterExpertChunk) {
    float acc[kRouterExpertChunk];
#pragma unroll
    for (int j = 0; j < kRouterExpertChunk; j++) acc[j] = 0.0f;
    float ss = 0.0f;
    for (int d = tid; d < D; d += kRouterThreads) {
      const float xv = x[d];
      if (e0 == 0) ss += xv * xv;
      const float xn = xv * norm[d];
#pragma unroll
      for (int j = 0; j < kRouterExpertChunk; j++)
        if (e0 + j < E) acc[j] += xn * load_elem(router, router_dtype, size_t(e0 + j) * D + d);
    }
    if (e0 == 0) {
      const float w = warp_sum(ss);
      if (lane == 0) s.squares[warp] = w;
    }
#pragma unroll
    for (int j = 0; j < kRouterExpertChunk; j++) {
      const float w = warp_sum(acc[j]);
      if (lane == 0) s.partial[warp][j] = w;
    }
    __syncthreads();
    if (e0 == 0) {  // every thread adds the warps' sums of squares in warp order, as block_sum does
      float total = 0.0f;
      for (int w = 0; w < kRouterWarps; w++) total += s.squares[w];
      inv_rms = 1.0f / sqrtf(total / float(D) + eps);
    }
    if (tid < kRouterExpertChunk && e0 + tid < E) {
      float logit = 0.0f;
      for (int w = 0; w < kRouterWarps; w++) logit += s.partial[w][tid];
      prob[e0 + tid] = logit * inv_rms;
    }
    __syncthreads();  // partial is rewritten by the next chunk; prob holds this chunk's logits
  }
  float m = prob[0];
  for (int e = 1; e < E; e++) m = fmaxf(m, prob[e]);
  float sum = 0.0f;
  for (int e = 0; e < E; e++) sum += expf(prob[e] - m);
  __syncthreads();  // every thread has read the logits before they are overwritten
  for (int e = tid; e < E; e += kRouterThreads) prob[e] = expf(prob[e] - m) / sum;
  __syncthreads();
}

}  // namespace mole::cuda
