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

#include "model/attention_splits.h"

namespace mole::vulkan {

// Specialization constant ids (shaders/common.glsl).
constexpr uint32_t kSpecWeightDtype = 0;  // embed, matmul, norm_matmul: dtype of the weight binding (ShaderDtype)
constexpr uint32_t kSpecLocalSize = 1;    // all: workgroup size x, a power of two >= 32; attention needs >= hd
                                          // (shared memory: matmul 32, norm_matmul 64 bytes per invocation)
constexpr uint32_t kSpecLutDtype = 2;     // router_lut: dtype of the table rows (ShaderDtype)
constexpr uint32_t kSpecNormDtype = 3;    // norm_matmul, router_lut, router_probs: dtype of the norm weight
constexpr uint32_t kSpecGelu = 4;         // norm_matmul: 1 applies GELU to the product, 0 not
constexpr uint32_t kSpecStore = 5;        // attention: 1 stores the step's keys and values, 0 after attention_store
constexpr uint32_t kSpecLoads = 6;        // matmul, norm_matmul: 16-byte weight loads a lane issues before it uses
                                          // the first (1, 4 or 8; kMatMulGpuLoads on GPUs, 1 on CPU drivers)
constexpr uint32_t kMatMulGpuLoads = 4;

// Values of kSpecWeightDtype/kSpecLutDtype; equal to uint32_t(mole::DType) (F32, F16, BF16 in that order).
// 16-bit weights are bound as uint words holding two elements, low half first; buffers are padded to whole words.
enum class ShaderDtype : uint32_t { F32 = 0, F16 = 1, BF16 = 2 };

constexpr uint32_t kDefaultLocalSize = 256;
constexpr uint32_t kMaxGroups = 65535;           // per dispatch dimension; every shader grid-strides beyond it
constexpr uint32_t kMatMulRows = 8;              // token rows per matmul workgroup (ROWS in matmul_core.glsl)
constexpr uint32_t kMatMulSharedLanes = 32;      // threads per output column without subgroups (SHARED_LANES)
constexpr uint32_t kMatMulTile = 64;             // token rows and columns per workgroup of the _tiled variants
constexpr uint32_t kMatMulTiledMinRows = 32;     // the _tiled variants run for steps of at least this many rows
constexpr uint32_t kAttentionMaxHeadDim = 1024;  // attention's shared query row (and 4 dims per invocation at 256)
using mole::kAttentionMaxSplits;                 // split-K's limits: model/attention_splits.h
using mole::kAttentionSplitSlots;
constexpr uint32_t kRouterLutMaxExperts = 1024;  // router.glsl's shared softmax holds at most this many experts

// Push-constant blocks, one per shader, in declaration order. All members are 32-bit; uint unless float.

// embed: dst (T, D) = table (V, D) [ids[t]]. Bindings: table (weight), ids int (T), dst (T, D).
struct EmbedPush {
  uint32_t T, D;
};
// matmul: y (T, N) (+)= x (T, K) @ W (N, K)^T (+ addend (T, N)). Bindings: x, W (weight), y, addend.
struct MatMulPush {
  uint32_t T, K, N, accumulate;  // accumulate: 0 writes y, 1 adds into it
  uint32_t add;                  // 1: the addend binding is added after that (0: it is bound but not read)
};
// norm_matmul: y (T, N) = act(rmsnorm(x (T, K)) * nw (K) @ W (N, K)^T). Bindings: x, W (weight), y, nw (weight).
struct NormMatMulPush {
  uint32_t T, K, N;
  float eps;
};
// attention: out (T, H*hd), q and k RoPE-rotated when rope = 1; the pipeline with kSpecStore = 1 stores the step's
// keys and values itself (steps of one token per sequence), the one with 0 runs after attention_store, the store
// pass (the same bindings and push constants).
// Bindings: q/k/v (T, (H + 2*KVH)*hd), the KV cache (B*S, 2*KVH*hd) twice (keys read; values read, the step's rows
// written), slot int, pos int, out, cos (T, hd/2), sin (T, hd/2).
struct AttentionPush {
  uint32_t T, H, KVH, hd, ctx;
  float scale;  // 1 / sqrt(hd), computed as the CPU backend does: 1.0f / std::sqrt(float(hd))
  uint32_t rope;
};
// attention_split: the same push constants and bindings, but binding 5 is the partials' scratch, part (T * H,
// splits, 2 + hd) per (pair, split) {running max, running sum, unnormalised accumulator (hd)}; splits = the
// dispatch's y. The workgroup that writes a pair's last partial merges them into out, binding 8; binding 9 is the
// uint count of partials written per pair (T * H), 0 before and after the dispatch.
// router_lut: dst (T, D) = sum_e softmax(rmsnorm(x) * nw @ Wr^T)_e * lut row t [layer][e]. Bindings: x (T, D),
// Wr (E, D) (weight), nw (D) (norm weight), dst (T, D), lut (the step's rows in step order, LDTYPE words; row t
// starts at element t*row_elems). E <= kRouterLutMaxExperts. router_lut_direct takes the same push constants and
// reads row ids[t] in place from the table's chunks (by buffer device address): bindings x, Wr, nw, dst, ids int (T),
// chunks {rows_per_chunk, pad, uvec2 address[]}.
struct RouterLutPush {
  uint32_t T, E, D, layer, row_elems;  // row_elems = L*E*D
  float eps;
};
// router_probs: dst (R, cols) columns [layer*E, (layer+1)*E) of row r = softmax(rmsnorm(x row out_rows[r]) * nw @
// Wr^T), router_lut's weights (router.glsl). Bindings: x (T, D), Wr (E, D) (weight), nw (D) (norm weight), dst,
// out_rows int (R). E <= kRouterLutMaxExperts.
struct RouterProbsPush {
  uint32_t R, E, D, layer, cols;  // cols = L*E
  float eps;
};
// gather: dst (R, n) = src (T, n) [out_rows[r]]. Bindings: src, out_rows int (R), dst.
struct GatherPush {
  uint32_t R, n;
};
// argmax: out[r] = first index of the max of logits row r, as a float. Bindings: logits (R, V), out (R).
struct ArgmaxPush {
  uint32_t R, V;
};

// The _chain builds (--tune chain=on, shaders/chain.glsl) take their shader's push constants at offset 0 and these at
// kChainPushOffset: where the step's counters are, which one to wait for and how far, and which one to count in.
// Counters are words kChainCounterStride apart (counter g at word g * kChainCounterStride), each in a cache line of
// its own, so that the workgroups polling one do not contend with the atomic adds to the next; `wait` and `signal`
// are word indices.
struct ChainPush {
  uint32_t counters_lo, counters_hi;  // the counters' buffer device address; word 0 is the failure flag
  uint32_t wait, target;              // wait until the counter at word `wait` reaches `target` (0: no wait)
  uint32_t signal;                    // then, once done, add 1 to the counter at word `signal` for each workgroup
};
constexpr uint32_t kChainCounterStride = 64;  // words: 256 bytes
constexpr uint32_t kChainPushOffset = 32;
constexpr uint32_t kChainPushBytes = kChainPushOffset + sizeof(ChainPush);

static_assert(sizeof(EmbedPush) == 8);
static_assert(sizeof(MatMulPush) == 20);
static_assert(sizeof(NormMatMulPush) == 16);
static_assert(sizeof(AttentionPush) == 28);
static_assert(sizeof(RouterLutPush) == 24);
static_assert(sizeof(RouterProbsPush) == 24);
static_assert(sizeof(GatherPush) == 8);
static_assert(sizeof(ArgmaxPush) == 8);
static_assert(sizeof(ChainPush) == 20 && kChainPushBytes <= 128);
static_assert(std::max({sizeof(EmbedPush), sizeof(MatMulPush), sizeof(NormMatMulPush), sizeof(AttentionPush),
                        sizeof(RouterLutPush), sizeof(GatherPush), sizeof(ArgmaxPush)}) <= kChainPushOffset,
              "a chained shader's own push constants must end before ChainPush");

// What a pipeline for each shader needs. `name` is the .comp file's stem, the key of shader_spirv(); a variant
// (`// mole-variant:` in the .comp, see cmake/shaders.cmake) is <stem>_<variant> and has its shader's bindings. A
// _chain build (`// mole-chain`) has its build's bindings and kChainPushBytes of push constants.
// The specialization constants a shader does not declare are ignored.
struct ShaderOp {
  std::string_view name;
  uint32_t bindings;    // storage buffers at bindings 0..bindings-1
  uint32_t push_bytes;  // sizeof the push struct
};
inline constexpr ShaderOp kShaderOps[] = {
    {"embed", 3, sizeof(EmbedPush)},                      // table, ids, dst
    {"matmul", 4, sizeof(MatMulPush)},                    // x, W, y, addend
    {"matmul_subgroup", 4, sizeof(MatMulPush)},           // x, W, y, addend
    {"matmul_tiled", 4, sizeof(MatMulPush)},              // x, W, y, addend
    {"norm_matmul", 4, sizeof(NormMatMulPush)},           // x, W, y, norm weight
    {"norm_matmul_subgroup", 4, sizeof(NormMatMulPush)},  // x, W, y, norm weight
    {"norm_matmul_tiled", 4, sizeof(NormMatMulPush)},     // x, W, y, norm weight
    {"attention_store", 8, sizeof(AttentionPush)},        // as attention (out unused)
    {"attention", 8, sizeof(AttentionPush)},              // q/k/v, KV cache (twice), slot, pos, out, cos, sin
    {"attention_split", 10, sizeof(AttentionPush)},       // as attention, partials in out's place, then out, arrivals
    {"attention_subgroup", 8, sizeof(AttentionPush)},
    {"attention_split_subgroup", 10, sizeof(AttentionPush)},
    {"router_lut", 5, sizeof(RouterLutPush)},  // x, router W, norm W, dst, lut rows
    {"router_lut_direct", 6, sizeof(RouterLutPush)},
    {"router_lut_subgroup", 5, sizeof(RouterLutPush)},
    {"router_lut_direct_subgroup", 6, sizeof(RouterLutPush)},  // x, router W, norm W, dst, ids, chunk addresses
    {"router_probs", 5, sizeof(RouterProbsPush)},
    {"router_probs_subgroup", 5, sizeof(RouterProbsPush)},  // x, router W, norm W, dst, out_rows
    {"gather", 3, sizeof(GatherPush)},                      // src, out_rows, dst
    {"argmax", 2, sizeof(ArgmaxPush)},                      // logits, out
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
// matmul and norm_matmul: `lanes` threads per column (kMatMulSharedLanes, or the subgroup size for the _subgroup
// variants), so local size / lanes columns per workgroup, and kMatMulRows token rows.
constexpr Groups matmul_groups(uint32_t T, uint32_t N, uint32_t ls, uint32_t lanes) {
  return {groups_for_elements(N, ls / lanes), groups_for_items((T + kMatMulRows - 1) / kMatMulRows)};
}
// The _tiled variants: a kMatMulTile x kMatMulTile block of y per workgroup.
constexpr Groups matmul_tiled_groups(uint32_t T, uint32_t N) {
  return {groups_for_elements(N, kMatMulTile), groups_for_elements(T, kMatMulTile)};
}
// attention_store: one invocation per key or value element of the step's rows.
constexpr Groups attention_store_groups(const AttentionPush& p, uint32_t ls) {
  return {groups_for_elements(p.T * 2 * p.KVH * p.hd, ls)};
}
constexpr Groups groups(const AttentionPush& p, uint32_t) {
  return {groups_for_items(p.T * p.H)};
}
// attention_split: one workgroup per (t, h) pair and split.
constexpr Groups attention_split_groups(const AttentionPush& p, uint32_t splits) {
  return {groups_for_items(p.T * p.H), splits};
}

constexpr Groups groups(const RouterLutPush& p, uint32_t ls) {
  return {groups_for_elements(p.D, ls), groups_for_items(p.T)};
}
constexpr Groups groups(const RouterProbsPush& p, uint32_t) {
  return {groups_for_items(p.R)};
}
constexpr Groups groups(const GatherPush& p, uint32_t ls) {
  return {groups_for_elements(p.R * p.n, ls)};
}
constexpr Groups groups(const ArgmaxPush& p, uint32_t) {
  return {groups_for_items(p.R)};
}

// Split-K's rule (model/attention_splits.h) with the single pass's chunk: the local size.
using mole::attention_splits;

}  // namespace mole::vulkan
