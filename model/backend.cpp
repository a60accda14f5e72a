// Names of the backend ops, for messages and profiles.
#include "model/backend.h"

#include <algorithm>

#include "model/error.h"
#include "model/weights.h"

namespace mole {

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::Embed:
      return "embed";
    case OpKind::NormMatMul:
      return "norm_matmul";
    case OpKind::MatMul:
      return "matmul";
    case OpKind::Attention:
      return "attention";
    case OpKind::RouterLut:
      return "router_lut";
    case OpKind::RouterProbs:
      return "router_probs";
    case OpKind::Gather:
      return "gather";
    case OpKind::Argmax:
      return "argmax";
  }
  return "?";
}

BufferId op_weight(const Op& op) {
  if (op.kind == OpKind::Embed) return op.src0;
  if (op.kind == OpKind::NormMatMul || op.kind == OpKind::MatMul || op.kind == OpKind::RouterLut ||
      op.kind == OpKind::RouterProbs)
    return op.src1;
  return kNoBuffer;
}

std::vector<BufferId> op_reads(const Op& op) {
  switch (op.kind) {
    case OpKind::Embed:
      return {};
    case OpKind::NormMatMul:
    case OpKind::Gather:
    case OpKind::RouterLut:
    case OpKind::RouterProbs:
    case OpKind::Argmax:
      return {op.src0};
    case OpKind::MatMul: {
      std::vector<BufferId> r = {op.src0};
      if (op.accumulate) r.push_back(op.dst);
      if (op.src2 != kNoBuffer) r.push_back(op.src2);
      return r;
    }
    case OpKind::Attention:
      return {op.src0, op.src1};
  }
  return {};
}

std::vector<BufferId> op_writes(const Op& op) {
  if (op.kind == OpKind::Attention) return {op.dst, op.src1};
  return {op.dst};
}

namespace {
bool has(const std::vector<BufferId>& set, BufferId b) {
  return std::find(set.begin(), set.end(), b) != set.end();
}
}  // namespace

GatherBypass gather_bypass(const StepGraph& g) {
  const size_t n = g.ops.size();
  GatherBypass b{std::vector<bool>(n, false), std::vector<BufferId>(n, kNoBuffer)};
  for (size_t i = 0; i < n; i++) {
    const Op& gather = g.ops[i];
    if (gather.kind != OpKind::Gather) continue;
    const BufferId out = gather.dst;
    if (out == g.logits || out == g.argmax || out == g.router_probs || out == gather.src0) continue;
    size_t reader = n;
    int uses = 0;
    for (size_t j = 0; j < n; j++) {
      if (j == i) continue;
      const bool reads = has(op_reads(g.ops[j]), out), writes = has(op_writes(g.ops[j]), out);
      if (reads || writes) {
        uses++;
        reader = j;
      }
    }
    if (uses != 1 || reader < i) continue;
    const Op& r = g.ops[reader];
    if ((r.kind != OpKind::NormMatMul && r.kind != OpKind::MatMul) || !r.on_out_rows || r.src0 != out) continue;
    std::vector<BufferId> other = op_reads(r);
    other.erase(other.begin());  // src0 comes first
    if (has(other, out) || has(op_writes(r), out)) continue;
    bool source_written = false;
    for (size_t j = i + 1; j < reader; j++) source_written = source_written || has(op_writes(g.ops[j]), gather.src0);
    if (source_written) continue;
    b.skip[i] = true;
    b.src0[reader] = gather.src0;
  }
  return b;
}

BufferId GatherBypass::rows_of(const StepGraph& g, BufferId id) const {
  for (size_t i = 0; i < skip.size(); i++)
    if (skip[i] && g.ops[i].dst == id) return g.ops[i].src0;
  return id;
}

bool rows_identity(const std::vector<int32_t>& out_rows, int T) {
  if (int(out_rows.size()) != T) return false;
  for (int r = 0; r < T; r++)
    if (out_rows[size_t(r)] != r) return false;
  return true;
}

uint64_t op_bytes(const Op& op, const StepInputs& in, size_t wb, size_t lb) {
  const uint64_t T = uint64_t(in.tokens()), R = uint64_t(in.out_rows.size()), rows = op.on_out_rows ? R : T;
  const uint64_t n = uint64_t(op.n), k = uint64_t(op.k);
  switch (op.kind) {
    case OpKind::Embed:
      return T * n * (wb + 4);
    case OpKind::NormMatMul:  // the norm weight (k elements) counted at the product weight's width
      return (n + 1) * k * wb + rows * k * 4 + rows * n * 4;
    case OpKind::MatMul:
      return n * k * wb + rows * k * 4 + rows * n * (op.accumulate ? 8 : 4) + (op.src2 != kNoBuffer ? rows * n * 4 : 0);
    case OpKind::Attention: {  // the cache rows read, q in and out; the step's k and v in and stored, the angles
      uint64_t kv_rows = 0;
      for (int32_t p : in.pos) kv_rows += uint64_t(p) + 1;
      return kv_rows * uint64_t(op.kv_heads) * k * 8 + T * n * k * 8 + T * uint64_t(op.kv_heads) * k * 16 +
             (op.rope ? T * k * 4 : 0);
    }
    case OpKind::RouterLut:  // x in, the router weight (and the norm's, at its width), the rows, dst out
      return T * k * 8 + (n + 1) * k * wb + T * n * k * lb;
    case OpKind::RouterProbs:  // the output rows of x in, the router weight (and the norm's), R x E weights out
      return R * k * 4 + (n + 1) * k * wb + R * n * 4;
    case OpKind::Gather:
      return R * n * 8;
    case OpKind::Argmax:
      return R * n * 4 + R * 4;
  }
  return 0;
}

Op attention_op(BufferId qkv, BufferId kv_cache, BufferId out, int H, int hd, int KVH, int ctx, bool rope) {
  return {.kind = OpKind::Attention,
          .dst = out,
          .src0 = qkv,
          .src1 = kv_cache,
          .n = H,
          .k = hd,
          .kv_heads = KVH,
          .ctx = ctx,
          .rope = rope};
}

void check_step_slots(const StepGraph& g, const StepInputs& in) {
  std::vector<int32_t> seen;  // the slots of the runs before the current one
  for (size_t t = 0; t < in.slot.size(); t++) {
    const bool continues = t > 0 && in.slot[t] == in.slot[t - 1] && in.pos.at(t) == in.pos.at(t - 1) + 1;
    if (continues) continue;
    if (std::find(seen.begin(), seen.end(), in.slot[t]) != seen.end()) {
      // The graph is looked at only for a step that breaks the rule: a decode step costs one comparison.
      if (std::none_of(g.ops.begin(), g.ops.end(), [](const Op& op) { return op.kind == OpKind::Attention; })) return;
      throw Error("step row " + std::to_string(t) + ": sequence slot " + std::to_string(in.slot[t]) +
                  " again after other rows or at a position out of order (a step holds each slot as one run of "
                  "consecutive positions)");
    }
    seen.push_back(in.slot[t]);
  }
}

TensorView stack_check(const std::vector<const TensorView*>& parts) {
  if (parts.empty()) throw Error("a stacked weight needs at least one tensor");
  TensorView out;
  out.dtype = parts[0]->dtype;
  out.shape = {0, parts[0]->shape.size() == 2 ? parts[0]->shape[1] : 0};
  for (const TensorView* t : parts) {
    out.name += (out.name.empty() ? "" : "+") + t->name;
    if (t->shape.size() != 2 || t->shape[1] != out.shape[1] || t->dtype != out.dtype)
      throw Error("tensors " + out.name + " cannot be stacked into one weight: " + t->name + " is " +
                  dtype_name(t->dtype) + " " + shape_str(t->shape) + ", the first was " + dtype_name(out.dtype) +
                  " with rows of " + std::to_string(out.shape[1]));
    out.shape[0] += t->shape[0];
    out.nbytes += t->nbytes;
  }
  return out;
}

}  // namespace mole
