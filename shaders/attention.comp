#version 450
#extension GL_GOOGLE_include_directive : require
#ifdef ATTENTION_SPLIT_SUBGROUP  // the split variant with subgroup reductions
#define ATTENTION_SPLIT
#define MOLE_SUBGROUP_REDUCE
#endif
#ifdef MOLE_SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
// attention (with the KV store and RoPE fused in): causal attention of each query head over its sequence's keys and
// values, storing the step's own keys and values into the cache. With rope != 0 the query row is rotated on its way
// into shared memory by token t's angles, and so is each key this dispatch stores (rotate_half form, as the CPU's
// rope(): pairs (i, i + hd/2)); the q/k/v buffer itself is not changed.
// Token t, head h (kv head h / (H / KVH)) attends to its slot's positions j in [0, pos[t]]:
//   out[t][h] = sum_j softmax_j(scale * q[t][h] . K[j]) * V[j]
// with the max subtracted before exp, as cpu::softmax. Key j is cache row slot[t] * ctx + j. Where a sequence has
// several tokens in the step (prefill chunks), the variant attention_store (below) has stored the step's keys and
// values before (STORE = 0). Otherwise (STORE = 1: decode, batched decode) each token is its sequence's only token
// in the step (attention_store_pass() in model/attention_splits.h), and this dispatch stores them: the workgroup of
// pair (t, h) with h the first head of its kv group writes token t's rotated keys and values of that kv head into
// cache row slot[t] * ctx + pos[t] (split 0 only), and token t's last key, its own, is read from its row of the q/k/v
// product instead, rotated into shared memory. No workgroup reads a row another one writes in the same dispatch.
//
// Keys are taken in chunks of the local size with an online softmax: each invocation scores one key of the chunk (a
// dot product in the 8-lane order of cpu::dot, so scores match the CPU's), the chunk max updates the running max,
// the running sum and the output accumulator are rescaled by exp(old max - new max), and the invocations add
// sum_j p_j * V[j][d]: G = local size / hd groups of hd invocations, group g taking keys j = g, g + G, ... of each
// chunk, so all of the workgroup shares that work; the G partial sums of each d are added in group order at the
// end. A sequence of at most local-size keys is one chunk: the same max and exp arguments as the CPU, normalised at
// the end (the sum over keys in another order).
//
// Split-K (flash-decoding), the variant attention_split: a decode step has only T * H pairs, too few workgroups to
// fill a GPU, and at a long context each walks thousands of keys; so the host may divide each pair's keys among
// `splits` workgroups (the dispatch's y; chosen per step from the longest key count, see attention_splits() in
// ops.h; 1 is the single pass above). Split s takes keys [s * c, min((s + 1) * c, n_keys)) with c = ceil(n_keys /
// splits) rounded up to a multiple of 32 (kAttentionSplitGranule in model/attention_splits.h; a split of fewer keys
// than the local size is one partial chunk), and writes its partial to the scratch part: the running max m, the
// running sum l and the unnormalised accumulator. A split without keys writes l = 0, which the merge skips. The pass
// is the same code as the single one (splits = 1 gives c >= n_keys). The workgroup that writes a pair's last partial
// merges them all into out (merge_if_last, below): it counts itself in arrivals[pair] after its writes, and the one
// that counts splits - 1 reads the others' partials, so split-K is one dispatch, with no barrier between its passes.
// The partials are read and written through a coherent binding, fenced with memoryBarrierBuffer() before the count
// (every invocation, then a workgroup barrier) and after it (the last workgroup), as cuda-backend/attention.cu's
// merge_if_last fences its count: no workgroup waits for another, so the order in which they run does not matter.
//
// The store pass, the variant attention_store (for steps where a sequence has several tokens): one invocation per
// key or value element of the step's rows, grid-stride, writing
//   cache[(slot[t] * ctx + pos[t]) * 2 * kvd + i] = qkv[t][H * hd + i] (rotated for i < kvd),   kvd = KVH * hd
// through the same bindings and push constants; dispatch (min(ceil(T * 2 * kvd / local size), 65535), 1, 1).
//
// Bindings: 0 qkv   float (T, (H + 2 * KVH) * hd): q, k, v side by side, q the first H * hd of each row
//           1 kv    float (B * S, 2 * KVH * hd), the layer's KV cache: each row its keys, then its values
//           2 kv    the same buffer again (values read; with STORE, the step's rows written)
//           3 slot  int (T), in [0, B)
//           4 pos   int (T), in [0, S)
//           5 out   float (T, H * hd); attention_split: part float (T * H, splits, 2 + hd), per (pair, split)
//                   {m, l, acc[hd]}
//           6 cos   float (T, hd / 2)
//           7 sin   float (T, hd / 2)
//           attention_split only:
//           8 out   float (T, H * hd)
//           9 arrivals uint (T * H), the partials written per pair: 0 before the dispatch, and after it (the merging
//                   workgroup sets its pair's count back to 0 for the next layer and step)
// Push:     T, H, KVH, hd, ctx (S), scale (float, 1 / sqrt(hd)), rope (0 or 1)
// Spec:     local size (id 1), STORE (id 5: 1 stores, 0 after attention_store; a pipeline each, so the variant for
//           prefill chunks carries none of the store's code); hd <= min(1024, 4 x local size) (checked by the host)
// Dispatch: (min(T * H, 65535), splits, 1); one workgroup per (t, h) pair and split, grid-stride over pairs.
//
// Version 8: the workgroup reductions with subgroup arithmetic (the _subgroup variants). Version 7: split-K's merge in
// the dispatch, by the workgroup that writes a pair's last partial (attention_combine was a dispatch of its own, after
// a barrier). Version 6: the KV store fused in for steps of one token per sequence, each token's own key read from its
// q/k/v row (version 5: splits of a multiple of 32 keys, not of the local size; version 4: q read from the q/k/v
// product's rows, keys and values from one cache; version 3: split-K over long contexts; version 2: keys read as vec4
// when hd is a multiple of 4, the V sum split over G groups; version 1: only hd invocations summed V, one key after
// another). Faster later: several heads of a kv group per workgroup.
// Variants with subgroup reductions (workgroup_max/workgroup_sum in common.glsl: 2 barriers each instead of a tree's
// 10; the host picks them where the device has subgroup arithmetic, --tune subgroups): attention_subgroup and
// attention_split_subgroup.
// mole-variant: split ATTENTION_SPLIT
// mole-variant: store ATTENTION_STORE
// mole-variant: subgroup MOLE_SUBGROUP_REDUCE
// mole-variant: split_subgroup ATTENTION_SPLIT_SUBGROUP
// mole-chain
#define MOLE_WORKGROUP_REDUCE
#include "common.glsl"

layout(std430, set = 0, binding = 0) MOLE_DATA readonly buffer Q { float q[]; };
layout(std430, set = 0, binding = 1) MOLE_DATA readonly buffer KCache { float k_cache[]; };
layout(std430, set = 0, binding = 1) MOLE_DATA readonly buffer KCache4 { vec4 k_cache4[]; };  // hd % 4 == 0
layout(std430, set = 0, binding = 2) MOLE_DATA readonly buffer VCache { float v_cache[]; };  // the same cache (values)
layout(std430, set = 0, binding = 2) MOLE_DATA writeonly buffer KvOut { float kv_out[]; };   // the step's rows
layout(std430, set = 0, binding = 3) readonly buffer Slot { int slot[]; };
layout(std430, set = 0, binding = 4) readonly buffer Pos { int pos[]; };
#ifdef ATTENTION_SPLIT
layout(std430, set = 0, binding = 5) coherent buffer Part { float part[]; };  // other workgroups' partials are read
layout(std430, set = 0, binding = 8) MOLE_DATA writeonly buffer Out { float out_[]; };
layout(std430, set = 0, binding = 9) MOLE_DATA buffer Arrivals { uint arrivals[]; };
shared bool last_s;  // this workgroup wrote its pair's last partial (merge_if_last)
#else
layout(std430, set = 0, binding = 5) MOLE_DATA writeonly buffer Out { float out_[]; };
#endif
layout(std430, set = 0, binding = 6) readonly buffer Cos { float cos_t[]; };
layout(std430, set = 0, binding = 7) readonly buffer Sin { float sin_t[]; };

layout(push_constant) uniform Push {
  uint T;
  uint H;
  uint KVH;
  uint hd;
  uint ctx;
  float scale;
  uint rope;
  MOLE_CHAIN_PUSH
} pc;

layout(constant_id = 5) const bool STORE = true;  // this dispatch stores the step's keys and values (see the top)

const uint MAX_HD = 1024u;              // kAttentionMaxHeadDim in ops.h
const uint MAX_PASSES = 4u;             // dims per invocation when hd > local size (the host checks hd <= 4 x it)
shared float q_s[MAX_HD];               // the query row
shared float p_s[gl_WorkGroupSize.x];  // the chunk's unnormalised probabilities
shared float own_s[MAX_HD];             // STORE: token t's own key, rotated

// q_s . k_cache[off, off + hd) with 8 partial sums combined as cpu::dot does.
float score_dot(uint off) {
  float acc[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  uint d = 0u;
  if (pc.hd % 4u == 0u) {  // off is a multiple of hd: whole vec4s
    for (; d + 8u <= pc.hd; d += 8u) {
      const vec4 k0 = k_cache4[(off + d) / 4u], k1 = k_cache4[(off + d) / 4u + 1u];
      for (uint j = 0u; j < 4u; j++) {
        acc[j] += q_s[d + j] * k0[j];
        acc[j + 4u] += q_s[d + 4u + j] * k1[j];
      }
    }
  }
  for (; d + 8u <= pc.hd; d += 8u) {
    for (uint j = 0u; j < 8u; j++) acc[j] += q_s[d + j] * k_cache[off + d + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; d < pc.hd; d++) s += q_s[d] * k_cache[off + d];
  return s;
}

// Element d of the head at columns [off, off + hd) of the q/k/v rows (a query or key head of token row r), rotated
// by r's angles when rope != 0.
float rotated(uint off, uint d, uint r) {
  float v = q[off + d];
  if (pc.rope != 0u) {
    const uint half_hd = pc.hd / 2u, f = d % half_hd;
    const float c = cos_t[r * half_hd + f], s = sin_t[r * half_hd + f];
    v = d < half_hd ? v * c - q[off + d + half_hd] * s : v * c + q[off + d - half_hd] * s;
  }
  return v;
}

// q_s . own_s (token t's own key, rotated): score_dot's order.
float score_dot_own() {
  float acc[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  uint d = 0u;
  for (; d + 8u <= pc.hd; d += 8u) {
    for (uint j = 0u; j < 8u; j++) acc[j] += q_s[d + j] * own_s[d + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; d < pc.hd; d++) s += q_s[d] * own_s[d];
  return s;
}

#ifdef ATTENTION_SPLIT
// Split-K's end, called by every invocation once the workgroup has written its partial of `pair`: the workgroup
// counts itself in arrivals[pair], and the one that counts last merges the pair's partials into its output row, in
// split order, then sets the count back to 0:
//   M = max_s m_s,  out[pair][d] = sum_s exp(m_s - M) * acc_s[d] / sum_s exp(m_s - M) * l_s
// over the splits that had keys (l_s > 0; split 0 always has). Called in uniform control flow (it has barriers).
void merge_if_last(uint pair, uint splits) {
  memoryBarrierBuffer();  // release: this invocation's partial writes, before invocation 0 counts
  barrier();
  if (TID == 0u) last_s = atomicAdd(arrivals[pair], 1u) == splits - 1u;
  barrier();
  if (!last_s) return;  // uniform over the workgroup
  memoryBarrierBuffer();  // acquire: the other workgroups' partials, written before they counted
  const uint stride = pc.hd + 2u, first = pair * splits * stride;  // split 0's record
  float m = part[first];
  for (uint s = 1u; s < splits; s++)
    if (part[first + s * stride + 1u] > 0.0) m = max(m, part[first + s * stride]);
  for (uint d = TID; d < pc.hd; d += BLOCK) {
    float l = 0.0, o = 0.0;
    for (uint s = 0u; s < splits; s++) {
      const uint rec = first + s * stride;
      const float l_s = part[rec + 1u];
      if (l_s > 0.0) {
        const float w = exp(part[rec] - m);
        l += l_s * w;
        o += part[rec + 2u + d] * w;
      }
    }
    out_[pair * pc.hd + d] = o / l;
  }
  if (TID == 0u) arrivals[pair] = 0u;
}
#endif

#ifdef ATTENTION_STORE
void MOLE_MAIN() {
  const uint kvd = pc.KVH * pc.hd, width = 2u * kvd, q_row = pc.H * pc.hd + width;
  for (uint g = gl_GlobalInvocationID.x; g < pc.T * width; g += gl_NumWorkGroups.x * BLOCK) {
    const uint t = g / width, i = g % width;
    const uint at = t * q_row + pc.H * pc.hd;  // token t's keys, then its values
    kv_out[(uint(slot[t]) * pc.ctx + uint(pos[t])) * width + i] =
        i < kvd ? rotated(at + i / pc.hd * pc.hd, i % pc.hd, t) : q[at + i];
  }
}
#else
void MOLE_MAIN() {
  const uint group = pc.H / pc.KVH;
  const uint kv_width = pc.KVH * pc.hd, cache_row = 2u * kv_width;  // a cache row: keys, then values
  const uint q_row = pc.H * pc.hd + cache_row;                      // a q/k/v row
  // V lanes: span = min(hd, local size) dims per group, G = local size / span groups; an invocation of group g
  // handles dims vd + i * span, i < passes (several only when hd > local size, and then G = 1).
  const uint span = min(pc.hd, BLOCK), passes = (pc.hd + span - 1u) / span;
  const uint v_groups = BLOCK / span;
  const uint vg = TID / span, vd = TID % span;  // this invocation's V group and first dimension
  const bool v_lane = vg < v_groups;
  const uint splits = gl_NumWorkGroups.y, split = gl_WorkGroupID.y;  // 1 and 0 unless attention_split
  for (uint pair = gl_WorkGroupID.x; pair < pc.T * pc.H; pair += gl_NumWorkGroups.x) {
    const uint t = pair / pc.H;
    const uint h = pair % pc.H;
    const uint kv_off = (h / group) * pc.hd;       // the kv head's columns within a cache row's keys
    const uint q_off = t * q_row + h * pc.hd;      // the query head's first element
    const uint k_col = pc.H * pc.hd + kv_off;       // the kv head's key columns within a q/k/v row
    const uint v_col = k_col + kv_width;            // and its value columns
    const uint base = uint(slot[t]) * pc.ctx;       // the slot's first cache row
    const uint n_keys = uint(pos[t]) + 1u;
    // This split's keys [k0, k1): all of them when splits = 1.
    const uint per_split = ((n_keys + splits - 1u) / splits + 31u) / 32u * 32u;  // kAttentionSplitGranule
    const uint k0 = split * per_split, k1 = min(n_keys, k0 + per_split);
#ifdef ATTENTION_SPLIT
    const uint rec = (pair * splits + split) * (pc.hd + 2u);  // this (pair, split)'s partial in part
    if (k0 >= n_keys) {  // no keys here (uniform across the workgroup): l = 0 tells the merge to skip it
      if (TID == 0u) {
        part[rec] = 0.0;
        part[rec + 1u] = 0.0;
      }
      merge_if_last(pair, splits);
      continue;
    }
#endif
    for (uint d = TID; d < pc.hd; d += BLOCK) {
      q_s[d] = rotated(q_off, d, t);
      if (STORE) own_s[d] = rotated(t * q_row + k_col, d, t);
    }
    barrier();
    if (STORE && split == 0u && h % group == 0u) {  // the KV store: token t's keys and values of this kv head
      const uint row = (base + uint(pos[t])) * cache_row;
      for (uint d = TID; d < pc.hd; d += BLOCK) {
        kv_out[row + kv_off + d] = own_s[d];
        kv_out[row + kv_width + kv_off + d] = q[t * q_row + v_col + d];
      }
    }

    float run_max = 0.0;  // running max of the scores seen (set by the first chunk)
    float run_sum = 0.0;  // running sum of exp(score - run_max)
    float acc[MAX_PASSES];  // V lane (g, d): running sums over its keys j of exp(score_j - run_max) * V[j][d]
    for (uint i = 0u; i < MAX_PASSES; i++) acc[i] = 0.0;
    for (uint c0 = k0; c0 < k1; c0 += BLOCK) {
      const uint j = c0 + TID;
      const bool valid = j < k1;
      const bool own = STORE && j + 1u == n_keys;  // token t's own key, which this dispatch stores
      float s = NEG_INF;
      if (valid)
        s = (own ? score_dot_own() : score_dot((base + j) * cache_row + kv_off)) * pc.scale;
      const float chunk_max = workgroup_max(s);  // finite: the chunk has at least one key
      const float new_max = c0 == k0 ? chunk_max : max(run_max, chunk_max);
      const float p = valid ? exp(s - new_max) : 0.0;
      p_s[TID] = p;
      const float chunk_sum = workgroup_sum(p);  // its barriers also publish p_s
      const float alpha = c0 == k0 ? 0.0 : exp(run_max - new_max);
      run_sum = run_sum * alpha + chunk_sum;
      run_max = new_max;
      if (v_lane) {
        const uint count = min(BLOCK, k1 - c0);
        // With STORE, token t's own key (the last) is read from its q/k/v row, after the cached ones: the same order.
        const uint cached = STORE && c0 + count == n_keys ? count - 1u : count;
        for (uint i = 0u; i < passes; i++) {
          const uint d = vd + i * span;
          float a = acc[i] * alpha;
          if (d < pc.hd) {
            for (uint jj = vg; jj < cached; jj += v_groups)
              a += p_s[jj] * v_cache[(base + c0 + jj) * cache_row + kv_width + kv_off + d];
            if (cached < count && cached % v_groups == vg) a += p_s[cached] * q[t * q_row + v_col + d];
          }
          acc[i] = a;
        }
      }
      barrier();  // p_s is rewritten by the next chunk
    }
#ifdef ATTENTION_SPLIT
    if (TID == 0u) {
      part[rec] = run_max;
      part[rec + 1u] = run_sum;
    }
#define WRITE_OUT(d, o) part[rec + 2u + (d)] = (o)
#else
#define WRITE_OUT(d, o) out_[pair * pc.hd + (d)] = (o) / run_sum
#endif
    if (passes == 1u) {
      p_s[TID] = v_lane ? acc[0] : 0.0;  // the G partial sums of each d, added in group order
      barrier();
      if (TID < pc.hd) {
        float o = 0.0;
        for (uint g = 0u; g < v_groups; g++) o += p_s[g * pc.hd + TID];
        WRITE_OUT(TID, o);
      }
    } else {  // one group: each invocation has its dims' whole sums
      for (uint i = 0u; i < passes; i++)
        if (vd + i * span < pc.hd) WRITE_OUT(vd + i * span, acc[i]);
    }
#ifdef ATTENTION_SPLIT
    merge_if_last(pair, splits);  // its first barrier also keeps p_s until every invocation has read it
#endif
    barrier();  // q_s and p_s are rewritten by the next pair
  }
}
#endif

#include "chain.glsl"
