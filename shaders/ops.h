// The host side of the compute shaders in shaders/*.comp: one push-constant struct per shader, mirroring its
// `layout(push_constant)` block member for member, the specialization-constant ids, and each shader's bindings and
// dispatch size. Every binding is a std430 storage buffer in descriptor set 0, bindings 0..n-1 in the order each
// shader's header comment lists them (and kShaderOps below counts).
//
// Legend: T tokens in the step, D hidden, H/KVH query/key-value heads, hd head dim, E experts, V vocabulary,
// S context rows per sequence slot (ctx), B sequence slots, R output rows, N/K matmul output/input widths.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>

namespace mole::vulkan {

// Specialization constant ids (shaders/common.glsl).
constexpr uint32_t kSpecWeightDtype = 0;  // embed, rmsnorm, matmul: dtype of the weight binding (ShaderDtype)
constexpr uint32_t kSpecLocalSize = 1;    // all: workgroup size x, a power of two >= 32; attention needs >= hd
                                          // (matmul's shared memory is 32 * local size bytes)
constexpr uint32_t kSpecLutDtype = 2;     // router_lut: dtype of the table rows (ShaderDtype)

// Values of kSpecWeightDtype/kSpecLutDtype; equal to uint32_t(mole::DType) (F32, F16, BF16 in that order).
// 16-bit weights are bound as uint words holding two elements, low half first; buffers are padded to whole words.
enum class ShaderDtype : uint32_t { F32 = 0, F16 = 1, BF16 = 2 };

constexpr uint32_t kDefaultLocalSize = 256;
constexpr uint32_t kMaxGroups = 65535;         // per dispatch dimension; every shader grid-strides beyond it
constexpr uint32_t kMatMulRows = 8;            // token rows per matmul workgroup (ROWS in matmul.comp)
constexpr uint32_t kMatMulLanes = 32;          // threads per output column (LANES in matmul.comp)
constexpr uint32_t kRouterLutMaxExperts = 64;  // router_lut's shared softmax holds at most this many experts

// Push-constant blocks, one per shader, in declaration order. All members are 32-bit; uint unless float.

// embed: dst (T, D) = table (V, D) [ids[t]]. Bindings: table (weight), ids int (T), dst (T, D).
struct EmbedPush {
  uint32_t T, D;
};
// rmsnorm: dst (rows, D) = w * (src * 1/sqrt(mean(src^2) + eps)). Bindings: src, weight (D), dst (may be src).
struct RmsNormPush {
  uint32_t rows, D;
  float eps;
};
// matmul: y (T, N) (+)= x (T, K) @ W (N, K)^T. Bindings: x, W (weight), y.
struct MatMulPush {
  uint32_t T, K, N, accumulate;  // accumulate: 0 writes y, 1 adds into it
};
// rope: x (T, n*hd) rotated in place. Bindings: x, cos (T, hd/2), sin (T, hd/2).
struct RopePush {
  uint32_t T, n, hd;  // n: heads
};
// kv_store: cache row slot[t]*ctx + pos[t] = src row t. Bindings: src (T, n), cache (B*S, n), slot int, pos int.
struct KvStorePush {
  uint32_t T, n, ctx;
};
// attention: out (T, H*hd). Bindings: q (T, H*hd), K cache, V cache (B*S, KVH*hd), slot int, pos int, out.
struct AttentionPush {
  uint32_t T, H, KVH, hd, ctx;
  float scale;  // 1 / sqrt(hd), computed as the CPU backend does: 1.0f / std::sqrt(float(hd))
};
// gelu: x (count) in place, exact erf form. Bindings: x.
struct GeluPush {
  uint32_t count;
};
// add: dst (count) += src (count). Bindings: dst, src.
struct AddPush {
  uint32_t count;
};
// router_lut: dst (T, D) += sum_e softmax(logits (T, E))_e * lut row t [layer][e]. Bindings: logits, lut (the
// step's rows in step order, LDTYPE words; row t starts at element t*row_elems), dst. E <= kRouterLutMaxExperts.
struct RouterLutPush {
  uint32_t T, E, D, layer, row_elems;  // row_elems = L*E*D
};
// gather: dst (R, n) = src (T, n) [out_rows[r]]. Bindings: src, out_rows int (R), dst.
struct GatherPush {
  uint32_t R, n;
};
// argmax: out[r] = first index of the max of logits row r. Bindings: logits (R, V), out int (R).
struct ArgmaxPush {
  uint32_t R, V;
};

static_assert(sizeof(EmbedPush) == 8);
static_assert(sizeof(RmsNormPush) == 12);
static_assert(sizeof(MatMulPush) == 16);
static_assert(sizeof(RopePush) == 12);
static_assert(sizeof(KvStorePush) == 12);
static_assert(sizeof(AttentionPush) == 24);
static_assert(sizeof(GeluPush) == 4);
static_assert(sizeof(AddPush) == 4);
static_assert(sizeof(RouterLutPush) == 20);
static_assert(sizeof(GatherPush) == 8);
static_assert(sizeof(ArgmaxPush) == 8);

// What a pipeline for each shader needs. `name` is the .comp file's stem, the key of shader_spirv().
struct ShaderOp {
  std::string_view name;
  uint32_t bindings;    // storage buffers at bindings 0..bindings-1
  uint32_t push_bytes;  // sizeof the push struct
  bool weight_dtype;    // takes kSpecWeightDtype
  bool lut_dtype;       // takes kSpecLutDtype
};
inline constexpr ShaderOp kShaderOps[] = {
    {"embed", 3, sizeof(EmbedPush), true, false},           // table, ids, dst
    {"rmsnorm", 3, sizeof(RmsNormPush), true, false},       // src, weight, dst
    {"matmul", 3, sizeof(MatMulPush), true, false},         // x, W, y
    {"rope", 3, sizeof(RopePush), false, false},            // x, cos, sin
    {"kv_store", 4, sizeof(KvStorePush), false, false},     // src, cache, slot, pos
    {"attention", 6, sizeof(AttentionPush), false, false},  // q, K cache, V cache, slot, pos, out
    {"gelu", 1, sizeof(GeluPush), false, false},            // x
    {"add", 2, sizeof(AddPush), false, false},              // dst, src
    {"router_lut", 3, sizeof(RouterLutPush), false, true},  // logits, lut rows, dst
    {"gather", 3, sizeof(GatherPush), false, false},        // src, out_rows, dst
    {"argmax", 2, sizeof(ArgmaxPush), false, false},        // logits, out
};

// Workgroup counts for one dispatch (z is always 1). A zero count means nothing to do: skip the dispatch.
struct Groups {
  uint32_t x = 0, y = 1;
};
// One workgroup per item (token, row, (t, h) pair, output column), capped: the shaders grid-stride.
constexpr uint32_t groups_for_items(uint32_t items) {
  return std::min(items, kMaxGroups);
}
// One invocation per element, capped.
constexpr uint32_t groups_for_elements(uint32_t elements, uint32_t local_size) {
  return std::min((elements + local_size - 1) / local_size, kMaxGroups);
}

constexpr Groups groups(const EmbedPush& p, uint32_t ls) {
  return {groups_for_elements(p.D, ls), groups_for_items(p.T)};
}
constexpr Groups groups(const RmsNormPush& p, uint32_t) {
  return {groups_for_items(p.rows)};
}
constexpr Groups groups(const MatMulPush& p, uint32_t ls) {
  return {groups_for_elements(p.N, ls / kMatMulLanes), groups_for_items((p.T + kMatMulRows - 1) / kMatMulRows)};
}
constexpr Groups groups(const RopePush& p, uint32_t ls) {
  return {groups_for_elements(p.T * p.n * (p.hd / 2), ls)};
}
constexpr Groups groups(const KvStorePush& p, uint32_t ls) {
  return {groups_for_elements(p.T * p.n, ls)};
}
constexpr Groups groups(const AttentionPush& p, uint32_t) {
  return {groups_for_items(p.T * p.H)};
}
constexpr Groups groups(const GeluPush& p, uint32_t ls) {
  return {groups_for_elements(p.count, ls)};
}
constexpr Groups groups(const AddPush& p, uint32_t ls) {
  return {groups_for_elements(p.count, ls)};
}
constexpr Groups groups(const RouterLutPush& p, uint32_t) {
  return {groups_for_items(p.T)};
}
constexpr Groups groups(const GatherPush& p, uint32_t ls) {
  return {groups_for_elements(p.R * p.n, ls)};
}
constexpr Groups groups(const ArgmaxPush& p, uint32_t) {
  return {groups_for_items(p.R)};
}

}  // namespace mole::vulkan
