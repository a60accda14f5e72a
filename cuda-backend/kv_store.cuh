// kv_store: each token's keys and values, the last 2 * kvd columns of its row of the q/k/v product, into its
// sequence's cache row (OpKind::KvStore in model/backend.h, shaders/kv_store.comp), keys then values:
//   cache[(slot[t] * S + pos[t]) * 2 * kvd + i] = src[t * (qd + 2 * kvd) + qd + i],  i < 2 * kvd
// and with hd > 0 each key head (i < kvd) of hd first rotated by token t's RoPE angles, rotate_half form as the
// CPU's rope():
//   for j < hd/2: x1 = head[j], x2 = head[j + hd/2]; out[j] = x1 cos[t][j] - x2 sin[t][j],
//                 out[j + hd/2] = x2 cos[t][j] + x1 sin[t][j]
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct KvStoreArgs {
  const float* src = nullptr;     // (T, qd + 2 * kvd): q, k, v side by side
  float* cache = nullptr;         // (B * S, 2 * kvd)
  const int32_t* slot = nullptr;  // (T), in [0, B)
  const int32_t* pos = nullptr;   // (T), in [0, S)
  const float* cos = nullptr;     // (T, hd / 2); read only when hd > 0
  const float* sin = nullptr;     // (T, hd / 2)
  int T = 0, qd = 0, kvd = 0;     // qd = H * hd, kvd = KVH * hd
  int ctx = 0;                    // S, cache rows per slot
  int hd = 0;                     // 0: store the keys as they are
};
void launch_kv_store(const KvStoreArgs& a, cudaStream_t stream);

}  // namespace mole::cuda
