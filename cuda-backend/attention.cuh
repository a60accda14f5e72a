// attention (the KV store and RoPE fused in): causal attention of each query head over its sequence's keys and
// values, storing the step's own keys and values into the cache (OpKind::Attention in model/backend.h,
// shaders/attention.comp). Token t, head h, kv head h / (H / KVH) (GQA; MQA when KVH = 1)
// attends to its slot's positions j in [0, pos[t]]:
//   out[t][h] = sum_j softmax_j(scale * rope(q[t][h]) . rope(K[j])) * V[j],  scale = 1 / sqrt(hd)
// with the max subtracted before exp, as cpu::softmax. K[j] and V[j] are cache row slot[t] * S + j. Where a sequence
// has several tokens in the step (store_pass, model/attention_splits.h) a store kernel writes the step's keys and
// values there first; otherwise each token is its sequence's only token in the step, the attention kernel stores
// them itself (the block of (t, first head of each kv group), split 0) and reads token t's own key, its last, from
// its row of the q/k/v product, rotated there.
//
// One block per (token, head) pair walks its keys in chunks of kAttentionThreads with an online softmax (the
// running max, the running sum and the output rescaled by exp(old max - new max) at each chunk). Split-K
// (flash-decoding): a decode step has only T x H pairs, too few blocks for a GPU once a context holds a few hundred
// keys, so each pair's keys may be divided among `splits` blocks, each writing its running max,
// sum and unnormalised output to `part`; the block that writes a pair's last partial (counted in `arrivals`) merges
// them in split order into the output row, so split-K is one kernel (Vulkan merges in a dispatch of its own). The
// split count follows the step's longest sequence (attention_splits()), as on Vulkan, so few step shapes are
// recorded.
#pragma once

#include "cuda-backend/common.cuh"
#include "model/attention_splits.h"

namespace mole::cuda {

constexpr int kAttentionThreads = 256;      // keys per chunk, threads per block
constexpr int kAttentionMaxHeadDim = 1024;  // q in shared memory, and at most 4 output dims per thread
constexpr int kAttentionMaxSplits = int(mole::kAttentionMaxSplits);  // model/attention_splits.h
constexpr int kAttentionSplitSlots = int(mole::kAttentionSplitSlots);

// How many blocks share each pair's keys (1: the single pass): the rule of every GPU backend
// (model/attention_splits.h), with chunks of kAttentionThreads keys.
inline int attention_splits(int max_keys, int T, int slots, int forced) {
  return int(mole::attention_splits(uint32_t(max_keys), uint32_t(T), uint32_t(slots), uint32_t(forced),
                                    uint32_t(kAttentionThreads)));
}

struct AttentionArgs {
  const float* q = nullptr;       // (T, (H + 2 * KVH) * hd): q, k, v side by side; q = each row's first H * hd
  float* kv_cache = nullptr;      // (B * S, 2 * KVH * hd): each row the keys, then the values
  const int32_t* slot = nullptr;  // (T), in [0, B)
  const int32_t* pos = nullptr;   // (T), in [0, S)
  const float* cos = nullptr;     // (T, hd / 2), read when rope
  const float* sin = nullptr;     // (T, hd / 2)
  float* out = nullptr;           // (T, H * hd)
  float* part = nullptr;          // split-K partials (T * H, splits, 2 + hd): {max, sum, acc[hd]}; splits > 1
  int* arrivals = nullptr;        // split-K: (T * H) counts of the pairs' partials written, 0 before and after
  int T = 0, H = 0, KVH = 0, hd = 0, ctx = 0;  // ctx = S
  bool rope = false;
  int splits = 1;
  bool store_pass = false;  // the step's keys and values stored by a kernel of their own first
};
// The store pass (store_pass), then the single pass (splits = 1) or split-K (splits > 1), on one stream.
// hd <= kAttentionMaxHeadDim.
void launch_attention(const AttentionArgs& a, const Launch& l);

}  // namespace mole::cuda
