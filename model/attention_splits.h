// Attention's rules for every GPU backend (shaders/attention*.comp, cuda-backend/attention.cu): split-K, how many
// workgroups (blocks) share each (token, head) pair's keys in a step (1 is the single pass: no partials, no
// merge); and whether the step's keys and values are stored in a pass of their own first.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mole {

constexpr uint32_t kAttentionSplitKeys = 64;    // about one split per this many keys (of the step's longest sequence)
constexpr uint32_t kAttentionMaxSplits = 32;    // splits per (t, h) pair at most
constexpr uint32_t kAttentionSplitSlots = 256;  // tokens x splits the partials' scratch holds (8 tokens x 32)
// A split's keys are a multiple of this many (a warp), except the last split's: the kernels round ceil(keys /
// splits) up to it (shaders/attention.comp, cuda-backend/attention.cu).
constexpr uint32_t kAttentionSplitGranule = 32;

// Automatic (forced = 0): 1 below one chunk of `chunk` keys (a chunk is the keys one workgroup of the single pass
// reads at a time: a shorter sequence is one chunk), else about one split per kAttentionSplitKeys keys of the step's
// longest sequence (max_keys = max pos + 1), rounded up to a power of two so that few step shapes are recorded, at
// most kAttentionMaxSplits. A decode step has only H workgroups without splits, a few of a GPU's multiprocessors,
// each walking every key (on an H100 attention took 30 us a layer at a few hundred keys with one pass). forced > 0
// (--tune attention-splits) asks for that many, up to kAttentionMaxSplits. Either way at most `slots` / T (the
// scratch holds `slots` token-splits): steps of many tokens have T * H workgroups already.
constexpr uint32_t attention_splits(uint32_t max_keys, uint32_t T, uint32_t slots, uint32_t forced, uint32_t chunk) {
  uint32_t s = 1;
  if (forced > 0) {
    s = std::min(forced, kAttentionMaxSplits);
  } else if (max_keys >= chunk) {
    const uint32_t want = (max_keys + kAttentionSplitKeys - 1) / kAttentionSplitKeys;
    while (s < want && s < kAttentionMaxSplits) s *= 2;
  }
  return std::max(1u, std::min(s, slots / std::max(T, 1u)));
}

// Whether attention stores the step's keys and values in a pass of its own (attention_store) before attending, so
// that every key is read from the cache: where some sequence has several tokens in the step (a prefill chunk; the
// step's slots are runs of consecutive rows, check_step_slots()). Otherwise (decode, batched decode: each token is
// its sequence's only one, so its only key of the step is its own) attention stores them itself and reads that key
// from its q/k/v row, rotating it there: one dispatch fewer. In a prefill chunk nearly every key is the step's;
// reading each from its q/k/v row, rotated for every query that reads it, made prefill attention 1.8x slower on
// lavapipe than storing them once.
inline bool attention_store_pass(const std::vector<int32_t>& slot) {
  for (size_t t = 1; t < slot.size(); t++)
    if (slot[t] == slot[t - 1]) return true;
  return false;
}

}  // namespace mole
