// Names of the backend ops, for messages and profiles.
#include "model/backend.h"

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
    case OpKind::KvStore:
      return "kv_store";
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
    case OpKind::KvStore:
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
    case OpKind::KvStore:  // k and v in, the cache rows out, the angles
      return T * uint64_t(op.kv_heads) * k * 16 + (op.rope ? T * k * 4 : 0);
    case OpKind::Attention: {
      uint64_t kv_rows = 0;
      for (int32_t p : in.pos) kv_rows += uint64_t(p) + 1;
      return kv_rows * uint64_t(op.kv_heads) * k * 8 + T * n * k * 8;
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

std::array<Op, 2> kv_store_and_attention(BufferId qkv, BufferId kv_cache, BufferId out, int H, int hd, int KVH, int ctx,
                                         bool rope) {
  const Op store{.kind = OpKind::KvStore,
                 .dst = kv_cache,
                 .src0 = qkv,
                 .n = H,
                 .k = hd,
                 .kv_heads = KVH,
                 .ctx = ctx,
                 .rope = rope};
  Op attend = store;  // the same heads, head dimension, kv heads, context and RoPE
  attend.kind = OpKind::Attention;
  attend.dst = out;
  attend.src1 = kv_cache;
  return {store, attend};
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
