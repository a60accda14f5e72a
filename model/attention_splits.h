// Split-K attention's rule, one for every GPU backend (shaders/attention.comp with attention_combine.comp, and
// cuda-backend/attention.cu): how many workgroups (blocks) share each (token, head) pair's keys in a step. 1 is the
// single pass: no partials, no combine.
#pragma once

#include <algorithm>
#include <cstdint>

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

}  // namespace mole
