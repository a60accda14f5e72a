// What only the Vulkan backend has to show about its ops (every op's numbers are checked on every backend by
// test_backend_ops.cpp): attention's split count rule on the host, and that split-K attention really runs (one
// dispatch more per attention) exactly when the rule says, its outputs matching the CPU reference. Validation and
// synchronization validation are on. Without a Vulkan device every case says it was skipped.
#include <doctest/doctest.h>

#include "tests/test_helpers.h"

#ifdef MOLE_HAVE_VULKAN

#include <algorithm>
#include <array>
#include <bit>
#include <string>
#include <tuple>
#include <vector>

#include "model/error.h"
#include "model/parity.h"
#include "shaders/ops.h"
#include "vk-runtime/vk_backend.h"

using namespace mole;

TEST_CASE("vulkan ops: attention's split count (host rule)") {
  using vulkan::attention_splits;
  const uint32_t ls = 256, slots = vulkan::kAttentionSplitSlots;
  CHECK(attention_splits(1, 1, slots, 0, ls) == 1);
  CHECK(attention_splits(255, 1, slots, 0, ls) == 1);  // below one chunk of the local size: the single pass
  CHECK(attention_splits(256, 1, slots, 0, ls) == 4);
  CHECK(attention_splits(257, 1, slots, 0, ls) == 8);  // 5 splits of 64 keys, rounded up to a power of two
  CHECK(attention_splits(512, 1, slots, 0, ls) == 8);
  CHECK(attention_splits(1000, 8, slots, 0, ls) == 16);  // 16 splits of 64 keys
  CHECK(attention_splits(3000, 8, slots, 0, ls) == 32);  // 47, at most 32
  CHECK(attention_splits(100000, 1, slots, 0, ls) == vulkan::kAttentionMaxSplits);
  CHECK(attention_splits(100000, 19, slots, 0, ls) == slots / 19);  // the scratch holds `slots` token-splits
  CHECK(attention_splits(100000, 512, slots, 0, ls) == 1);
  CHECK(attention_splits(1, 1, slots, 5, ls) == 5);  // forced (--tune attention-splits), even over one key
  CHECK(attention_splits(3000, 1, slots, 1, ls) == 1);
  CHECK(attention_splits(1, 1, slots, 1000, ls) == vulkan::kAttentionMaxSplits);
  CHECK(attention_splits(1, 1, 32, 5, ls) == 5);  // a decode-only graph (max_tokens 1): 32 slots
}

namespace {

// A Vulkan backend under synchronization validation, with `tuning`; nullptr after a skip message without a device.
std::unique_ptr<Backend> validated_backend(const BackendTuning& tuning) {
  BackendOptions o;
  o.validation = BackendOptions::Validation::Sync;
  o.pipeline_cache = "off";
  o.tuning = tuning;
  try {
    return vulkan::make_vulkan_backend(o);
  } catch (const Error& e) {
    test::skip_no_device(std::string("no usable Vulkan device: ") + e.what());
    return nullptr;
  }
}

}  // namespace

TEST_CASE("vulkan ops: split-K attention runs exactly where the rule says (dispatch counts), and matches") {
  // Splits automatic (split-K from 256 keys on a GPU, never on a CPU device), 1 (never) and 5 (always); the store
  // pass where a sequence has several tokens, or (--tune attention-store=pass) in every step.
  for (int variant = 0; variant < 6; variant++) {
    const int forced = std::array{0, 1, 5}[size_t(variant % 3)];
    const bool always_store = variant >= 3;
    CAPTURE(forced);
    CAPTURE(always_store);
    BackendTuning tuning;
    tuning.attention_splits = forced;
    tuning.attention_store_pass = always_store;
    std::unique_ptr<Backend> be = validated_backend(tuning);
    if (!be) return;
    const bool cpu_device = be->info().runs_on_cpu;
    ParityHarness h(std::move(be), "");
    const int H = 4, hd = 64, ctx = 3001, slots = 3, T = 8;
    h.graph.max_tokens = T;
    h.rope_half = hd / 2;
    BufferId qkv = h.act(size_t(T * 3 * H * hd), 3, true);  // q, k, v side by side
    BufferId kv = h.act(size_t(slots * ctx * 2 * H * hd), 1);
    BufferId out = h.act(size_t(T * H * hd));
    h.graph.ops = {attention_op(qkv, kv, out, H, hd, H, ctx, true)};
    h.expect(out, size_t(H * hd), ParityRows::Tokens, kParityLongSum, "attention", "MHA H=4 hd=64 ctx=3001, rope");
    h.dut().set_profiling(true);
    uint64_t dispatches = 0, split_ops = 0, splits_sum = 0;
    // Each step is attention: one dispatch (split-K merges its partials in the same dispatch), and one more where a
    // sequence has several tokens (the store pass; in other steps attention stores the keys itself). The profile
    // counts the split-K ones and their splits.
    for (std::vector<std::pair<int, int>> runs :  // (slot, position) of each token
         std::vector<std::vector<std::pair<int, int>>>{{{0, 3000}},
                                                       {{1, 10}, {2, 300}},
                                                       {{0, 510}, {1, 511}},
                                                       {{2, 511}},
                                                       {{1, 100}},
                                                       {{0, 2000}, {1, 5}, {2, 1500}},
                                                       {{1, 6}, {1, 7}, {1, 8}},
                                                       {{2, 1501}, {0, 2001}, {0, 2002}}}) {
      StepInputs in = h.inputs(int(runs.size()));
      int max_keys = 0;
      bool store_pass = false;
      for (size_t t = 0; t < runs.size(); t++) {
        in.slot[t] = runs[t].first;
        in.pos[t] = runs[t].second;
        max_keys = std::max(max_keys, runs[t].second + 1);
        store_pass = store_pass || (t > 0 && runs[t].first == runs[t - 1].first);
      }
      h.step(in);
      const bool split = forced == 0 ? max_keys >= 256 && !cpu_device : forced > 1;
      const StepProfile p = h.dut().profile();
      CHECK_MESSAGE(p.dispatches - dispatches == 1u + (store_pass || always_store ? 1u : 0u), "max keys " << max_keys);
      CHECK_MESSAGE(p.split_attention - split_ops == (split ? 1u : 0u), "max keys " << max_keys);
      // Automatic: about one split per 64 keys, a power of two (the rule's own test is above); forced: 5.
      const uint64_t want = !split ? 0u : forced > 1 ? 5u : std::bit_ceil(uint64_t(max_keys + 63) / 64u);
      CHECK_MESSAGE(p.attention_splits - splits_sum == std::min<uint64_t>(want, vulkan::kAttentionMaxSplits),
                    "max keys " << max_keys);
      dispatches = p.dispatches;
      split_ops = p.split_attention;
      splits_sum = p.attention_splits;
    }
    for (const ParityResult& r : h.results()) CHECK_MESSAGE(r.ok, r.label << ": " << r.error << " " << r.note);
  }
}

TEST_CASE("vulkan ops: a step whose output rows are its tokens skips the gather before the final product") {
  // x -> Gather -> g -> NormMatMul on the output rows (the graph's end): where out_rows are 0..T-1 the Gather is a
  // copy, so the step skips it and the product reads x (one dispatch, no barrier); other steps run both. g itself
  // reads back as the gathered rows either way, and the logits match the CPU's.
  std::unique_ptr<Backend> be = validated_backend({});
  if (!be) return;
  ParityHarness h(std::move(be), "");
  const int D = 40, V = 97, R = 3, maxT = 6;
  h.graph.max_tokens = maxT;
  h.graph.max_out_rows = R;
  BufferId x = h.act(size_t(maxT * D), 2, true), g = h.act(size_t(R * D));
  BufferId norm_w = h.weight({D}, DType::F32, 2), head = h.weight({V, D}, DType::F16);
  h.graph.logits = h.act(size_t(R * V));
  h.graph.ops = {{.kind = OpKind::Gather, .dst = g, .src0 = x, .n = D},
                 {.kind = OpKind::NormMatMul,
                  .dst = h.graph.logits,
                  .src0 = g,
                  .src1 = head,
                  .src2 = norm_w,
                  .n = V,
                  .k = D,
                  .eps = 1e-5f,
                  .on_out_rows = true}};
  h.expect(g, D, ParityRows::OutRows, kParityExact, "gather", "n=40");
  h.expect(h.graph.logits, V, ParityRows::OutRows, kParityLongSum, "norm_matmul", "K=40 N=97 on the output rows");
  h.dut().set_profiling(true);
  uint64_t dispatches = 0, barriers = 0;
  for (auto [T, rows, skipped] : std::vector<std::tuple<int, std::vector<int32_t>, bool>>{{1, {0}, true},
                                                                                          {3, {0, 1, 2}, true},
                                                                                          {3, {2}, false},
                                                                                          {3, {1, 0, 2}, false},
                                                                                          {1, {0}, true},
                                                                                          {4, {0, 1, 2}, false}}) {
    CAPTURE(T);
    StepInputs in = h.inputs(T);
    in.out_rows = rows;
    h.step(in);
    const StepProfile p = h.dut().profile();
    CHECK(p.dispatches - dispatches == (skipped ? 1u : 2u));
    CHECK(p.barriers - barriers == (skipped ? 0u : 1u));
    dispatches = p.dispatches;
    barriers = p.barriers;
  }
  for (const ParityResult& r : h.results()) CHECK_MESSAGE(r.ok, r.label << ": " << r.error << " " << r.note);
}

#else

TEST_CASE("vulkan ops: not built") {
  mole::test::skip_no_device("this build has no Vulkan backend (Vulkan headers or glslang missing)");
}

#endif
