// attention: the store pass where a sequence has several tokens (attention_store, a variant of
// shaders/attention.comp), then the single pass and split-K's split kernel, one kernel (gridDim.y = splits; the
// single pass is splits = 1, writing out instead of partials). With splits > 1 the block that writes a pair's last
// partial merges them all (merge_if_last), as shaders/attention.comp's attention_split does. The device code is in
// attention_core.cuh.
#include "cuda-backend/attention_core.cuh"
#include "cuda-backend/persistent_step.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = kAttentionThreads;

__global__ void __launch_bounds__(kThreads) attention_kernel(AttentionArgs a, float scale) {
  if (!a.store_pass) prefetch_cached_rows(a, blockIdx.x, blockIdx.y, gridDim.y);
  start_after_producers();
  attention_block(a, scale, blockIdx.x, gridDim.x, blockIdx.y, gridDim.y);
}

// The store pass: one thread per key or value element of the step's rows, grid-stride, into cache row
// slot[t] * S + pos[t]. A rotated element reads its pair partner from the q/k/v row, so the rotation never reads
// what another thread writes.
__global__ void __launch_bounds__(kThreads) attention_store_kernel(AttentionArgs a) {
  start_after_producers();
  const size_t kvd = size_t(a.KVH) * a.hd, width = 2 * kvd, qd = size_t(a.H) * a.hd, count = size_t(a.T) * width;
  for (size_t g = size_t(blockIdx.x) * kThreads + threadIdx.x; g < count; g += size_t(gridDim.x) * kThreads) {
    const int t = int(g / width);
    const size_t i = g % width;
    const float* k = a.q + size_t(t) * (qd + width) + qd;  // token t's keys, then values
    const float v = i < kvd ? rotated(k + i / a.hd * a.hd, int(i % a.hd), t, a) : k[i];
    a.kv_cache[(size_t(a.slot[t]) * size_t(a.ctx) + size_t(a.pos[t])) * width + i] = v;
  }
}

}  // namespace

void launch_attention(const AttentionArgs& a, const Launch& l) {
  MOLE_CUDA_ASSERT(a.hd >= 1 && a.hd <= kAttentionMaxHeadDim && a.KVH >= 1 && a.H % a.KVH == 0);
  MOLE_CUDA_ASSERT(!a.rope || a.hd % 2 == 0);
  MOLE_CUDA_ASSERT(a.splits == 1 || (a.part && a.arrivals));
  if (a.T == 0 || a.H == 0) return;
  const int pairs = a.T * a.H;
  const float scale = 1.0f / std::sqrt(float(a.hd));  // as the CPU backend computes it
  if (a.store_pass) {
    const size_t count = size_t(a.T) * 2 * size_t(a.KVH) * a.hd;
    const unsigned blocks = unsigned(std::min<size_t>((count + kThreads - 1) / kThreads, 65535));
    launch_kernel(attention_store_kernel, blocks, kThreads, 0, l, a);
  }
  AttentionArgs split_args = a;
  if (a.splits == 1) split_args.part = nullptr;  // the single pass writes out
  const dim3 grid(std::min(pairs, 65535), a.splits);
  const size_t shared = size_t(a.store_pass ? 1 : 2) * size_t(a.hd) * sizeof(float);  // q_s, and own_s
  if (l.program) {
    if (a.store_pass) l.program->refuse("attention's store pass (a sequence with several tokens in the step)");
    StepItemOp& op = l.program->add(StepItemKind::Attention, int(grid.x), int(grid.y));
    op.att = split_args;
    op.scale = scale;
    l.program->shared = std::max(l.program->shared, shared);
    return;
  }
  launch_kernel(attention_kernel, grid, kThreads, shared, a.store_pass ? l.then() : l, split_args, scale);
}

}  // namespace mole::cuda
