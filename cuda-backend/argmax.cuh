// argmax: dst[r] = the index of the largest of src row r (R, n), the lowest such index on ties, or -1 where the row
// holds a NaN (mole::argmax's order in model/sampling.h), written as a float (exact: n < 2^24). Greedy decoding
// reads these R floats instead of the logits (OpKind::Argmax in model/backend.h, shaders/argmax.comp).
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct ArgmaxArgs {
  const float* src = nullptr;  // (R, n) logits
  float* dst = nullptr;        // (R)
  int R = 0, n = 0;
};
void launch_argmax(const ArgmaxArgs& a, const Launch& l);

constexpr int kArgmaxNone = -1;  // the index of a thread that saw no element

#if defined(__CUDACC__)
// A NaN, told by its bits (as shaders/argmax.comp and mole::logit_is_nan do).
__device__ __forceinline__ bool argmax_is_nan(float v) {
  return (__float_as_uint(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether (v, i) beats the best so far (bv, bi): a NaN against a number, or the lower index of two NaNs; of two
// numbers the larger value, or on equal values the lower index (mole::argmax's order: total, so any split of a row
// gives the same answer); used by argmax.cu and the persistent decode kernel.
__device__ __forceinline__ bool argmax_better(float v, int i, float bv, int bi) {
  if (i == kArgmaxNone) return false;
  if (bi == kArgmaxNone) return true;
  const bool vn = argmax_is_nan(v), bn = argmax_is_nan(bv);
  if (vn || bn) return vn && (!bn || i < bi);
  return v > bv || (v == bv && i < bi);
}

// What the op writes for a row whose best is (bv, bi): its index, or -1 where it is a NaN.
__device__ __forceinline__ float argmax_result(float bv, int bi) {
  return argmax_is_nan(bv) ? -1.0f : float(bi);
}

__device__ __forceinline__ void argmax_keep(float v, int i, float& bv, int& bi) {
  if (argmax_better(v, i, bv, bi)) {
    bv = v;
    bi = i;
  }
}

// The best of a block's (bv, bi), left in thread 0's; called by every thread of a block of WARPS warps, with WARPS
// entries each of shared memory in warp_v and warp_i (free again after the caller's next barrier).
template <int WARPS>
__device__ __forceinline__ void argmax_block(float& bv, int& bi, float* warp_v, int* warp_i) {
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFullMask, bv, o);
    const int oi = __shfl_xor_sync(kFullMask, bi, o);
    argmax_keep(ov, oi, bv, bi);
  }
  const int warp = threadIdx.x / kWarpSize;
  if (threadIdx.x % kWarpSize == 0) {
    warp_v[warp] = bv;
    warp_i[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0)
    for (int w = 1; w < WARPS; w++) argmax_keep(warp_v[w], warp_i[w], bv, bi);
}
#endif

}  // namespace mole::cuda
