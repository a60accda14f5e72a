// attention's device code (attention.cuh says what it computes), included by attention.cu, whose kernel runs
// attention_block() for its block, and by persistent_step.cu, whose decode kernel runs it for each of its items.
// A port of shaders/attention.comp: scores in cpu::dot's 8-lane order, the softmax's max subtracted as cpu::softmax
// does.
#pragma once

#include <cmath>

#include "cuda-backend/attention.cuh"

namespace mole::cuda {
namespace {

constexpr int kAttentionMaxPasses =
    kAttentionMaxHeadDim / kAttentionThreads;  // output dims per thread at most (hd > kAttentionThreads)

// q_s . k[0, hd) with 8 partial sums combined as cpu::dot does; k read as float4 when hd % 4 == 0 (then every key
// head, at a multiple of hd floats into the 256-byte aligned cache, is 16-byte aligned).
__device__ __forceinline__ float score_dot(const float* q_s, const float* k, int hd) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int d = 0;
  if (hd % 4 == 0) {
    const float4* k4 = reinterpret_cast<const float4*>(k);
    for (; d + 8 <= hd; d += 8) {
      const float4 a = k4[d / 4], b = k4[d / 4 + 1];
      acc[0] += q_s[d] * a.x;
      acc[1] += q_s[d + 1] * a.y;
      acc[2] += q_s[d + 2] * a.z;
      acc[3] += q_s[d + 3] * a.w;
      acc[4] += q_s[d + 4] * b.x;
      acc[5] += q_s[d + 5] * b.y;
      acc[6] += q_s[d + 6] * b.z;
      acc[7] += q_s[d + 7] * b.w;
    }
  }
  for (; d + 8 <= hd; d += 8)
#pragma unroll
    for (int j = 0; j < 8; j++) acc[j] += q_s[d + j] * k[d + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; d < hd; d++) s += q_s[d] * k[d];
  return s;
}

// Element d of a head h[0, hd) of token row r's q/k/v row (a query or key head), rotated by r's angles when rope.
__device__ __forceinline__ float rotated(const float* h, int d, int r, const AttentionArgs& a) {
  float v = h[d];
  if (a.rope) {
    const int half = a.hd / 2, f = d % half;
    const float c = a.cos[size_t(r) * half + f], s = a.sin[size_t(r) * half + f];
    v = d < half ? v * c - h[d + half] * s : v * c + h[d - half] * s;
  }
  return v;
}

// Split `split` of `splits` of a pair's n_keys keys: [k0, k1), see attention_kernel.
__device__ __forceinline__ void split_keys(int n_keys, int splits, int split, int& k0, int& k1) {
  constexpr int kGranule = int(mole::kAttentionSplitGranule);
  const int per_split = ((n_keys + splits - 1) / splits + kGranule - 1) / kGranule * kGranule;
  k0 = split * per_split;
  k1 = min(n_keys, k0 + per_split);
}

// Decode steps (no store pass): every cache row a block reads but its token's own key and value was written by an
// earlier step, so a block started early (--tune pdl) asks for its first pair's split of those rows, keys and values,
// to be fetched into L2 before it waits (slot and pos are step inputs). A hint only: nothing is read here.
__device__ void prefetch_cached_rows(const AttentionArgs& a, int bx, int by, int gy) {
  const int pair = bx, t = pair / a.H, h = pair % a.H;  // the grid is at most T * H wide
  int k0 = 0, k1 = 0;
  split_keys(a.pos[t] + 1, gy, by, k0, k1);
  k1 = min(k1, a.pos[t]);  // the own key, the last, comes from the q/k/v row
  const size_t kv_width = size_t(a.KVH) * a.hd, cache_row = 2 * kv_width;
  const float* head = a.kv_cache + size_t(a.slot[t]) * size_t(a.ctx) * cache_row + size_t(h / (a.H / a.KVH)) * a.hd;
  const int lines = (a.hd * int(sizeof(float)) + 127) / 128;  // of one head's keys, and of its values
  for (int i = threadIdx.x; i < (k1 - k0) * 2 * lines; i += blockDim.x) {
    const int j = k0 + i / (2 * lines), r = i % (2 * lines);
    prefetch_l2(head + size_t(j) * cache_row + (r < lines ? 0 : kv_width) + size_t(r % lines) * 32);
  }
}

// Split-K's merge of one output element: out[pair][d] = sum_s exp(m_s - M) acc_s[d] / sum_s exp(m_s - M) l_s over
// the splits with keys (l_s > 0; split 0 always has), M the largest of their m_s, in split order. `first` is the
// pair's split 0 record; the records are read from L2 (other blocks wrote them).
__device__ __forceinline__ float merge_splits(const float* first, int splits, int hd, int d) {
  const size_t stride = size_t(hd) + 2;
  float m = __ldcg(first);
  for (int s = 1; s < splits; s++)
    if (__ldcg(first + s * stride + 1) > 0.0f) m = fmaxf(m, __ldcg(first + s * stride));
  float l = 0.0f, o = 0.0f;
  for (int s = 0; s < splits; s++) {
    const float* rec = first + s * stride;
    const float l_s = __ldcg(rec + 1);
    if (l_s > 0.0f) {
      const float w = expf(__ldcg(rec) - m);
      l += l_s * w;
      o += __ldcg(rec + 2 + d) * w;
    }
  }
  return o / l;
}

// Split-K's end, called by every thread of a block once its partial of `pair` is written: the block counts itself in
// arrivals[pair], and the one that counts last merges the pair's partials into its output row and sets the count
// back to 0 for the next layer and step. Release and acquire: thread 0 fences after the barrier that follows the
// block's writes and before it counts; the last block's thread 0 fences after counting, before the barrier that
// precedes the reads.
// Not inlined: inlined, its loops took attention_kernel from 80 registers a thread to 128.
__device__ __noinline__ void merge_if_last(const float* part, float* out, int* arrivals, int hd, int pair, int splits,
                                           int& last_s) {
  __syncthreads();  // the block's partial is written
  if (threadIdx.x == 0) {
    __threadfence();
    last_s = atomicAdd(arrivals + pair, 1) == splits - 1;
    if (last_s) __threadfence();
  }
  __syncthreads();
  if (!last_s) return;  // uniform over the block
  const float* first = part + size_t(pair) * splits * (size_t(hd) + 2);
  for (int d = threadIdx.x; d < hd; d += kAttentionThreads)
    out[size_t(pair) * hd + d] = merge_splits(first, splits, hd, d);
  if (threadIdx.x == 0) arrivals[pair] = 0;
}

// Grid: (min(T * H, 65535), splits); block (x, y) takes pairs x, x + gx, ... and split y of each.
// Split s takes keys [s * c, min((s + 1) * c, n_keys)) with c = ceil(n_keys / splits) rounded up to a multiple of
// kAttentionSplitGranule (32; a split of fewer keys than a chunk is one partial chunk); a split without keys writes
// sum = 0, which the merge skips. Split 0 always has keys.
//
// Each chunk: thread i scores key c0 + i; the block's max and sum update the running ones; then the V sum is shared
// by G = kAttentionThreads / span groups of span = min(hd, kAttentionThreads) threads, group g taking keys g, g + G,
// ... of the chunk for dims vd + i * span (several dims per thread only when hd > kAttentionThreads, and then G = 1).
// The G partial sums of each dim are added in group order at the end. Block (bx, by) of a grid (gx, gy), in uniform
// control flow: attention_kernel's, or an item of the persistent decode kernel (persistent_step.cu), which runs blocks
// of the same size.
__device__ __forceinline__ void attention_block(const AttentionArgs& a, float scale, int bx, int gx, int by, int gy) {
  extern __shared__ __align__(16) float q_s[];  // (hd) the query row, rotated; without store_pass then own_s
  float* own_s = q_s + a.hd;  // (hd) token t's own key, rotated (16-byte aligned where score_dot reads float4s)
  __shared__ float p_s[kAttentionThreads];  // the chunk's unnormalised probabilities, then the V groups' partial sums
  __shared__ float scratch[kWarpSize];
  __shared__ int last_s;  // split-K: this block wrote its pair's last partial (merge_if_last)
  const int tid = threadIdx.x, hd = a.hd;
  const int group = a.H / a.KVH;
  const size_t kv_width = size_t(a.KVH) * hd, cache_row = 2 * kv_width;  // a cache row: keys, then values
  const size_t q_row = size_t(a.H) * hd + cache_row;                     // a q/k/v row
  const int span = min(hd, kAttentionThreads), passes = (hd + span - 1) / span, v_groups = kAttentionThreads / span;
  const int vg = tid / span, vd = tid % span;
  const bool v_lane = vg < v_groups;
  const int splits = gy, split = by;
  for (int pair = bx; pair < a.T * a.H; pair += gx) {
    const int t = pair / a.H, h = pair % a.H;
    const size_t kv_off = size_t(h / group) * hd;           // the kv head's columns within a cache row
    const size_t base = size_t(a.slot[t]) * size_t(a.ctx);  // the slot's first cache row
    const size_t k_col = size_t(a.H) * hd + kv_off, v_col = k_col + kv_width;  // the kv head's q/k/v columns
    const int n_keys = a.pos[t] + 1;
    int k0 = 0, k1 = 0;
    split_keys(n_keys, splits, split, k0, k1);
    float* rec = a.part ? a.part + (size_t(pair) * splits + split) * size_t(hd + 2) : nullptr;
    if (k0 >= n_keys) {  // only a split after the first (uniform over the block): sum = 0, skipped by the merge
      if (tid == 0) rec[0] = rec[1] = 0.0f;
      merge_if_last(a.part, a.out, a.arrivals, hd, pair, splits, last_s);
      continue;
    }
    const float* src = a.q + size_t(t) * q_row;  // token t's q/k/v row
    for (int d = tid; d < hd; d += kAttentionThreads) {
      q_s[d] = rotated(src + size_t(h) * hd, d, t, a);
      if (!a.store_pass) own_s[d] = rotated(src + k_col, d, t, a);
    }
    __syncthreads();
    if (!a.store_pass && split == 0 && h % group == 0) {  // the KV store: token t's keys and values of this kv head
      float* row = a.kv_cache + (base + size_t(a.pos[t])) * cache_row;
      for (int d = tid; d < hd; d += kAttentionThreads) {
        row[kv_off + d] = own_s[d];
        row[kv_width + kv_off + d] = src[v_col + d];
      }
    }

    float run_max = 0.0f, run_sum = 0.0f;  // set by the first chunk
    float acc[kAttentionMaxPasses];        // this thread's running sums of exp(score - run_max) * V[j][d]
#pragma unroll
    for (int i = 0; i < kAttentionMaxPasses; i++) acc[i] = 0.0f;
    for (int c0 = k0; c0 < k1; c0 += kAttentionThreads) {
      const int j = c0 + tid;
      const bool valid = j < k1;
      const bool own = !a.store_pass && j + 1 == n_keys;  // token t's own key, which this kernel stores
      float s = -INFINITY;
      if (valid) s = score_dot(q_s, own ? own_s : a.kv_cache + (base + j) * cache_row + kv_off, hd) * scale;
      const float chunk_max = block_max(s, scratch);  // finite: the chunk has at least one key
      const float new_max = c0 == k0 ? chunk_max : fmaxf(run_max, chunk_max);
      const float p = valid ? expf(s - new_max) : 0.0f;
      p_s[tid] = p;
      const float chunk_sum = block_sum(p, scratch);  // its barriers also publish p_s
      const float alpha = c0 == k0 ? 0.0f : expf(run_max - new_max);
      run_sum = run_sum * alpha + chunk_sum;
      run_max = new_max;
      if (v_lane) {
        const int count = min(kAttentionThreads, k1 - c0);
        // Without store_pass, token t's own key (the last) is read from its q/k/v row, after the cached ones.
        const int cached = !a.store_pass && c0 + count == n_keys ? count - 1 : count;
        const float* vrow = a.kv_cache + (base + c0) * cache_row + kv_width + kv_off;
#pragma unroll
        for (int i = 0; i < kAttentionMaxPasses; i++) {
          const int d = vd + i * span;
          if (i < passes && d < hd) {
            float s_acc = acc[i] * alpha;
            for (int jj = vg; jj < cached; jj += v_groups) s_acc += p_s[jj] * vrow[size_t(jj) * cache_row + d];
            if (cached < count && cached % v_groups == vg) s_acc += p_s[cached] * src[v_col + d];
            acc[i] = s_acc;
          }
        }
      }
      __syncthreads();  // p_s is rewritten by the next chunk
    }
    if (rec && tid == 0) {
      rec[0] = run_max;
      rec[1] = run_sum;
    }
    // The output row: divided by the sum (single pass), or unnormalised into the partial (split-K).
    float* dst = rec ? rec + 2 : a.out + size_t(pair) * hd;
    const float div = rec ? 1.0f : run_sum;
    if (passes == 1) {
      p_s[tid] = v_lane ? acc[0] : 0.0f;  // thread vg * hd + vd holds group vg's sum of dim vd
      __syncthreads();
      if (tid < hd) {
        float o = 0.0f;
        for (int g = 0; g < v_groups; g++) o += p_s[g * hd + tid];
        dst[tid] = o / div;
      }
    } else {  // one group: each thread has its dims' whole sums
#pragma unroll
      for (int i = 0; i < kAttentionMaxPasses; i++)
        if (i < passes && vd + i * span < hd) dst[vd + i * span] = acc[i] / div;
    }
    if (rec) merge_if_last(a.part, a.out, a.arrivals, hd, pair, splits, last_s);
    __syncthreads();  // q_s and p_s are rewritten by the next pair
  }
}

}  // namespace
}  // namespace mole::cuda
