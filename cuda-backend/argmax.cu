// argmax: one block of 1024 threads per row (a decode step's lm_head row is one row of V logits: the more loads in
// flight, the sooner it is read). Each thread keeps the best (value, index) of its elements, read as float4 when
// V % 4 == 0, then a warp and a block reduction keep the better of two pairs: the larger value, or on equal values
// the lower index. That order is total, so the result does not depend on which thread saw what: exact.
#include "cuda-backend/argmax.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kNone = -1;  // a thread that saw no element (n < kThreads)

// Whether (v, i) beats the best so far (bv, bi).
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
  return i != kNone && (bi == kNone || v > bv || (v == bv && i < bi));
}

__device__ __forceinline__ void keep(float v, int i, float& bv, int& bi) {
  if (better(v, i, bv, bi)) {
    bv = v;
    bi = i;
  }
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(ArgmaxArgs a) {
  start_after_producers();
  __shared__ float warp_v[kThreads / kWarpSize];
  __shared__ int warp_i[kThreads / kWarpSize];
  for (int r = blockIdx.x; r < a.R; r += gridDim.x) {
    const float* row = a.src + size_t(r) * size_t(a.n);
    float bv = 0.0f;
    int bi = kNone;
    if (a.n % 4 == 0) {  // every row starts 16-byte aligned
      const float4* row4 = reinterpret_cast<const float4*>(row);
#pragma unroll 4
      for (int i = threadIdx.x; i < a.n / 4; i += kThreads) {
        const float4 v = row4[i];
        keep(v.x, 4 * i, bv, bi);
        keep(v.y, 4 * i + 1, bv, bi);
        keep(v.z, 4 * i + 2, bv, bi);
        keep(v.w, 4 * i + 3, bv, bi);
      }
    } else {
#pragma unroll 4
      for (int i = threadIdx.x; i < a.n; i += kThreads) keep(row[i], i, bv, bi);
    }
    for (int o = kWarpSize / 2; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(kFullMask, bv, o);
      const int oi = __shfl_xor_sync(kFullMask, bi, o);
      keep(ov, oi, bv, bi);
    }
    const int warp = threadIdx.x / kWarpSize;
    if (threadIdx.x % kWarpSize == 0) {
      warp_v[warp] = bv;
      warp_i[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kThreads / kWarpSize; w++) keep(warp_v[w], warp_i[w], bv, bi);
      a.dst[r] = float(bi);
    }
    __syncthreads();  // warp_v/warp_i are rewritten by the next row
  }
}

}  // namespace

void launch_argmax(const ArgmaxArgs& a, const Launch& l) {
  if (a.R == 0) return;
  launch_kernel(argmax_kernel, std::min(a.R, 65535), kThreads, 0, l, a);
}

}  // namespace mole::cuda
