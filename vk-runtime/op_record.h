// Recording a StepGraph op into a command buffer (vk_backend.cpp records each step shape once and replays it): the
// dispatches of its shader with the grid shaders/ops.h gives (attention's store pass first where a step needs it),
// and the tracking that puts a pipeline barrier only where a dispatch depends on an earlier one, or in a chained
// step (--tune chain=on) has the dispatch wait for the earlier ones in the shader instead (shaders/chain.glsl).
#pragma once

#include <cstdint>
#include <vector>

#include "model/backend.h"
#include "shaders/ops.h"
#include "vk-runtime/check.h"

namespace mole {
class ComputePipeline;
}

namespace mole::vulkan {

// What an op runs with, made once per graph: pipelines and descriptor sets (buffers never change).
struct OpPlan {
  const ComputePipeline* pipe = nullptr;
  const ComputePipeline* tiled = nullptr;  // matmul family: the _tiled variant, for steps of many rows
  VkDescriptorSet set = VK_NULL_HANDLE;
  // Attention: the store pass (attention_store, with `set`); the single pass and split-K's pass (attention_split,
  // with `split_set`: the partials bound in out's place, then out and the counts), each [0] after the store pass
  // and [1] storing the keys itself (kSpecStore).
  const ComputePipeline* store = nullptr;
  const ComputePipeline *attend[2] = {nullptr, nullptr}, *split[2] = {nullptr, nullptr};
  VkDescriptorSet split_set = VK_NULL_HANDLE;
  // Steps whose output rows are their tokens (RecordShape::rows_identity; GatherBypass, model/backend.h): a Gather with
  // skip_on_identity_rows records nothing, and its reader runs with bypass_set, which binds bypass_src (the
  // Gather's source) in src0's place.
  bool skip_on_identity_rows = false;
  VkDescriptorSet bypass_set = VK_NULL_HANDLE;
  BufferId bypass_src = kNoBuffer;
  // What a chained step runs (no store pass, no tiled variant; null without --tune chain=on, or for an op whose
  // shader has no _chain build): the _chain build of `pipe`, for attention of its single pass that stores the keys,
  // and of split-K's.
  const ComputePipeline *chain = nullptr, *chain_split = nullptr;
};

// A recorded step's shape and the backend's choices that size its dispatches.
struct RecordShape {
  uint32_t T = 0, R = 0;       // the step's tokens and output rows
  uint32_t splits = 1;         // attention: 1 the single pass, more: split-K over that many workgroups per (t, h) pair
  bool store_pass = false;     // attention: the step's keys and values stored by a pass of their own first
  bool rows_identity = false;  // the step's output rows are its tokens in order (R = T, out_rows[r] = r)
};
struct RecordSettings {
  uint32_t local_size = 0;             // every pipeline's workgroup size
  uint32_t matmul_lanes = 0;           // threads per output column of the matmul family's column kernel
  uint32_t tiled_min_rows = 0;         // steps of at least this many rows use the _tiled variants
  uint32_t lut_row_elems = 0;          // RouterLut: L*E*D of the table
  BufferId attn_part = kNoBuffer;      // split-K attention's partials, shared by the layers
  BufferId attn_arrivals = kNoBuffer;  // and their counts per (token, head) pair
};

// Decides where a step's dispatches need a pipeline barrier: before one that reads or writes a buffer written since
// the last barrier, or writes one read since then (op_reads() and op_writes() list each op's). Dispatches without
// such a dependency may overlap: the LUT sum and up (and the router's weights beside them). One tracker runs across a
// step's command buffers when they are submitted in order (a barrier in a later one covers the earlier one's writes).
//
// Chained (constructed with the step's counters' address; shaders/chain.glsl): where a barrier would go, a new group
// of dispatches starts instead, numbered from 1, and nothing is recorded; each dispatch of group g waits until counter
// g - 1 has counted every workgroup of group g - 1 (chain_push()), then counts its own in counter g. A group with
// no workgroups (only skipped dispatches) is not closed, so the next waits for the last one that had some.
class BarrierTracker {
 public:
  BarrierTracker() = default;
  // `stall` (tests): every wait's target is one workgroup more than its group has, so every wait gives up.
  explicit BarrierTracker(VkDeviceAddress chain_counters, bool stall = false)
      : counters_(chain_counters), stall_(stall), workgroups_(2, 0) {}

  // Records a compute-to-compute barrier into cb (chained: starts a new group) when a dispatch that reads `reads`
  // and writes `writes` needs one, and notes its accesses.
  void before(VkCommandBuffer cb, const std::vector<BufferId>& reads, const std::vector<BufferId>& writes);
  int barriers() const { return barriers_; }

  bool chained() const { return counters_ != 0; }
  // Chained: the push constants of a dispatch of `workgroups` in the current group, which are counted in it.
  ChainPush chain_push(uint32_t workgroups);
  // Chained: the groups so far; the counters a step needs are 1 + groups() (counter 0 is the failure flag).
  uint32_t groups() const { return uint32_t(workgroups_.size() - 1); }
  // Chained: the workgroups of group g (1 <= g <= groups()), which the next group waits for.
  uint64_t workgroups(uint32_t g) const { return workgroups_.at(g); }

 private:
  std::vector<BufferId> written_, read_;
  int barriers_ = 0;
  VkDeviceAddress counters_ = 0;
  bool stall_ = false;
  std::vector<uint64_t> workgroups_;  // chained: [g] workgroups of group g (from 1; the last is the current one)
};

// Records op's dispatches (and the barriers `tracker` asks for before each); returns how many were recorded.
// Attention is up to two: with shape.store_pass the store pass, a barrier; then the single pass, or with
// shape.splits > 1 the split pass, its partials in settings.attn_part, merged into dst in the same dispatch.
int record_op(VkCommandBuffer cb, const Op& op, const OpPlan& plan, const RecordShape& shape,
              const RecordSettings& settings, BarrierTracker& tracker);

}  // namespace mole::vulkan
