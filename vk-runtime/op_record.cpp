// Recording one op's dispatches (see op_record.h).
#include "vk-runtime/op_record.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "shaders/ops.h"
#include "vk-runtime/command.h"
#include "vk-runtime/loader.h"
#include "vk-runtime/pipeline.h"

namespace mole::vulkan {
namespace {

// Binds the pipeline and descriptor set, pushes the constants (and in a chained step the chain's, counting the
// grid's workgroups in the tracker's current group) and dispatches the grid.
template <typename Push>
void dispatch(VkCommandBuffer cb, const ComputePipeline& pipe, VkDescriptorSet set, const Push& push, Groups g,
              BarrierTracker& tracker) {
  if (g.x == 0 || g.y == 0) return;  // nothing to do
  vk().vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe.handle());
  vk().vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe.layout(), 0, 1, &set, 0, nullptr);
  vk().vkCmdPushConstants(cb, pipe.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(Push), &push);
  if (tracker.chained()) {
    assert(pipe.push_constant_bytes() == kChainPushBytes && "a chained step runs a pipeline without the chain");
    const ChainPush c = tracker.chain_push(g.x * g.y);
    vk().vkCmdPushConstants(cb, pipe.layout(), VK_SHADER_STAGE_COMPUTE_BIT, kChainPushOffset, sizeof(c), &c);
  }
  vk().vkCmdDispatch(cb, g.x, g.y, 1);
}

AttentionPush attention_push(const Op& op, uint32_t T) {
  const float scale = 1.0f / std::sqrt(float(op.k));  // as the CPU backend computes it
  return {T, uint32_t(op.n), uint32_t(op.kv_heads), uint32_t(op.k), uint32_t(op.ctx), scale, op.rope ? 1u : 0u};
}

bool contains(const std::vector<BufferId>& set, BufferId b) {
  return std::find(set.begin(), set.end(), b) != set.end();
}

}  // namespace

void BarrierTracker::before(VkCommandBuffer cb, const std::vector<BufferId>& reads,
                            const std::vector<BufferId>& writes) {
  bool hazard = false;
  for (BufferId b : writes) hazard = hazard || contains(written_, b) || contains(read_, b);
  for (BufferId b : reads) hazard = hazard || contains(written_, b);
  if (hazard && chained()) {
    if (workgroups_.back() > 0) workgroups_.push_back(0);  // the next group waits for this one
    written_.clear();
    read_.clear();
  } else if (hazard) {
    memory_barrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                   VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    written_.clear();
    read_.clear();
    barriers_++;
  }
  written_.insert(written_.end(), writes.begin(), writes.end());
  read_.insert(read_.end(), reads.begin(), reads.end());
}

ChainPush BarrierTracker::chain_push(uint32_t workgroups) {
  const uint32_t g = groups();
  ChainPush c{};
  c.counters_lo = uint32_t(counters_);
  c.counters_hi = uint32_t(counters_ >> 32);
  c.wait = (g - 1) * kChainCounterStride;
  c.target = g > 1 ? uint32_t(workgroups_[g - 1]) + (stall_ ? 1 : 0) : 0;  // the first group waits for nothing
  c.signal = g * kChainCounterStride;
  workgroups_[g] += workgroups;
  assert(workgroups_[g] < (uint64_t(1) << 32) && "a group's workgroups overflow its 32-bit counter");
  return c;
}

int record_op(VkCommandBuffer cb, const Op& op, const OpPlan& plan, const RecordShape& shape, const RecordSettings& s,
              BarrierTracker& tracker) {
  const uint32_t T = shape.T, R = shape.R;
  const uint32_t rows = op.on_out_rows ? R : T, n = uint32_t(op.n), k = uint32_t(op.k), ls = s.local_size;
  const bool chained = tracker.chained();
  const ComputePipeline& p = chained ? *plan.chain : *plan.pipe;
  const bool tiled = rows >= s.tiled_min_rows;  // the matmul family's variant for this step shape
  assert((!chained || (!tiled && !shape.store_pass)) && "a chained step has no tiled product and no store pass");
  if (shape.rows_identity && plan.skip_on_identity_rows) return 0;  // a Gather that only copies (GatherBypass)
  const bool bypass = shape.rows_identity && plan.bypass_set != VK_NULL_HANDLE;
  const VkDescriptorSet set = bypass ? plan.bypass_set : plan.set;
  auto plain = [&](const auto& push) { dispatch(cb, p, set, push, groups(push, ls), tracker); };
  auto matmul = [&](const auto& push) {
    if (tiled)
      dispatch(cb, *plan.tiled, set, push, matmul_tiled_groups(rows, n), tracker);
    else
      dispatch(cb, p, set, push, matmul_groups(rows, n, ls, s.matmul_lanes), tracker);
  };
  if (op.kind == OpKind::Attention) {
    int dispatches = 0;
    const AttentionPush push = attention_push(op, T);
    if (shape.store_pass) {  // the step's keys and values into the cache, which attention then reads
      tracker.before(cb, {op.src0}, {op.src1});
      dispatch(cb, *plan.store, plan.set, push, attention_store_groups(push, ls), tracker);
      dispatches++;
    }
    const int variant = shape.store_pass ? 0 : 1;  // kSpecStore: whether attention stores them itself
    if (shape.splits == 1) {
      tracker.before(cb, op_reads(op), op_writes(op));
      dispatch(cb, chained ? *plan.chain : *plan.attend[variant], plan.set, push, groups(push, ls), tracker);
      return dispatches + 1;
    }
    // Split-K, one dispatch: it reads q, K and V, writes the step's cache rows, the partials and their counts, and
    // merges the partials into dst. The layers share the partials and the counts: a split pass waits for the
    // previous one's.
    std::vector<BufferId> reads = op_reads(op);
    reads.insert(reads.end(), {s.attn_part, s.attn_arrivals});
    tracker.before(cb, reads, {op.src1, op.dst, s.attn_part, s.attn_arrivals});
    dispatch(cb, chained ? *plan.chain_split : *plan.split[variant], plan.split_set, push,
             attention_split_groups(push, shape.splits), tracker);
    return dispatches + 1;
  }
  std::vector<BufferId> reads = op_reads(op);
  if (bypass) reads[0] = plan.bypass_src;  // src0 comes first
  tracker.before(cb, reads, op_writes(op));
  switch (op.kind) {
    case OpKind::Embed:
      plain(EmbedPush{T, n});
      break;
    case OpKind::NormMatMul:
      matmul(NormMatMulPush{rows, k, n, op.eps});
      break;
    case OpKind::MatMul:
      matmul(MatMulPush{rows, k, n, op.accumulate ? 1u : 0u, op.src2 != kNoBuffer ? 1u : 0u});
      break;
    case OpKind::Attention:  // recorded above
      break;
    case OpKind::RouterLut:
      plain(RouterLutPush{T, n, k, uint32_t(op.layer), s.lut_row_elems, op.eps});
      break;
    case OpKind::RouterProbs:
      plain(RouterProbsPush{R, n, k, uint32_t(op.layer), uint32_t(op.layers) * n, op.eps});
      break;
    case OpKind::Gather:
      plain(GatherPush{R, n});
      break;
    case OpKind::Argmax:
      plain(ArgmaxPush{R, n});
      break;
  }
  return 1;
}

}  // namespace mole::vulkan
