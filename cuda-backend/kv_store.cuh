// kv_store: each token's key or value row into its sequence's cache row (OpKind::KvStore in model/backend.h,
// shaders/kv_store.comp):
//   cache[(slot[t] * S + pos[t]) * n + i] = src[t * n + i]                          (hd = 0: values)
// and for keys (hd > 0) each head of hd first rotated by token t's RoPE angles, rotate_half form as the CPU's rope():
//   for j < hd/2: x1 = head[j], x2 = head[j + hd/2]; out[j] = x1 cos[t][j] - x2 sin[t][j],
//                 out[j + hd/2] = x2 cos[t][j] + x1 sin[t][j]
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct KvStoreArgs {
  const float* src = nullptr;     // (T, n), n = KVH * hd
  float* cache = nullptr;         // (B * S, n)
  const int32_t* slot = nullptr;  // (T), in [0, B)
  const int32_t* pos = nullptr;   // (T), in [0, S)
  const float* cos = nullptr;     // (T, hd / 2); read only when hd > 0
  const float* sin = nullptr;     // (T, hd / 2)
  int T = 0, n = 0, ctx = 0;      // ctx = S, cache rows per slot
  int hd = 0;                     // 0: store the row as it is
};
void launch_kv_store(const KvStoreArgs& a, cudaStream_t stream);

}  // namespace mole::cuda
