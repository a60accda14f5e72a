// The persistent decode kernel (persistent_step.cuh): the program's phases, items and barriers, running the ops'
// own device code.
#include <algorithm>

#include "cuda-backend/attention_core.cuh"
#include "cuda-backend/matmul_core.cuh"
#include "cuda-backend/persistent_step.cuh"

namespace mole::cuda {

// An item is a whole block of the op's own kernel, run by a block of this kernel: the same size.
static_assert(kAttentionThreads == kPersistentThreads && kRouterThreads == kPersistentThreads &&
                  kEmbedThreads == kPersistentThreads && kGatherThreads == kPersistentThreads &&
                  kLutFetchThreads == kPersistentThreads,
              "the persistent kernel runs the ops' blocks with its own");
// The most dynamic shared memory an op asks for (router_lut: E floats; attention: 2 hd floats), with the slack and
// room for the kernel's static arrays, stays under the 48 KiB a launch gets without opting in to more
// (cudaFuncSetAttribute), which the kernel does not do.
static_assert(kRouterLutMaxExperts * sizeof(float) + kSharedSlack + 4096 <= 48 * 1024 &&
                  2 * kAttentionMaxHeadDim * sizeof(float) + kSharedSlack + 4096 <= 48 * 1024,
              "an op's shared memory past 48 KiB: the persistent kernel would need cudaFuncSetAttribute");

void PersistentProgram::end_phase() {
  if (!ops.empty()) ops.back().barrier_after = true;
}

void PersistentProgram::insert_at_phase_of(size_t at, const PersistentProgram& other) {
  if (!other.why.empty()) refuse(other.why);
  shared = std::max(shared, other.shared);
  size_t start = std::min(at, ops.size());
  while (start > 0 && !ops[start - 1].barrier_after) start--;
  ops.insert(ops.begin() + std::ptrdiff_t(start), other.ops.begin(), other.ops.end());
}

void PersistentProgram::finish() {
  int first = 0;
  for (StepItemOp& op : ops) {
    op.first = first;
    first = op.barrier_after ? 0 : first + op.gx * op.gy;
  }
}

namespace {

// Every block waits here until every block of the grid has arrived (they are all resident: a cooperative launch).
// Thread 0 of each block reads the generation, fences its block's writes (release), counts itself in, and the last
// to arrive resets the count and moves the generation on; the others spin until it moves, then fence (acquire), so
// that what every block wrote before the barrier is what every block reads after it. Never a hang: a block that has
// waited kPersistentBarrierTimeoutNs gives up and sets the failure flag (in the scratch, where every waiting block
// sees it and stops waiting, and in host memory, where the host reads it: CudaBackend::check_persistent). Returns
// whether the step goes on; once failed, every block leaves the kernel at its next barrier, and says so in host
// memory too (a step queued before the host saw the first failure, and zeroed the flag, fails as loudly). `stall`
// (tests): the barrier waits for one block more than the grid has, so it never passes.
__device__ __forceinline__ bool grid_barrier(PersistentScratch* s, unsigned* failed_host, bool stall) {
  __shared__ bool go_on;
  __syncthreads();
  if (threadIdx.x == 0) {
    volatile unsigned* gen = &s->barrier_gen;
    volatile unsigned* failed = &s->failed;
    const unsigned seen = *gen;
    __threadfence();
    if (atomicAdd(&s->barrier_count, 1u) == gridDim.x - 1 + (stall ? 1u : 0u)) {
      s->barrier_count = 0;
      __threadfence();
      atomicAdd(&s->barrier_gen, 1u);
    } else {
      const unsigned long long start = global_ns();
      while (*gen == seen && *failed == 0u) {
        __nanosleep(20);
        if (global_ns() - start > kPersistentBarrierTimeoutNs) {
          *failed = 1u;
          *static_cast<volatile unsigned*>(failed_host) = 1u;
          break;
        }
      }
    }
    __threadfence();
    go_on = *failed == 0u;
    if (!go_on) *static_cast<volatile unsigned*>(failed_host) = 1u;
  }
  __syncthreads();
  return go_on;
}

// Argmax item `item` of row 0 (the program has one output row): the best of its chunk, then, in the block that
// finishes last (counted as attention's merge_if_last counts), the best of all chunks, in chunk order.
__device__ __noinline__ void argmax_item(const StepItemOp& op, int item, PersistentScratch* s) {
  __shared__ float warp_v[kPersistentWarps];
  __shared__ int warp_i[kPersistentWarps];
  const ArgmaxArgs& a = op.argmax;
  const int lo = item * kPersistentArgmaxChunk, hi = min(a.n, lo + kPersistentArgmaxChunk);
  float bv = 0.0f;
  int bi = kArgmaxNone;
  for (int i = lo + threadIdx.x; i < hi; i += kPersistentThreads) argmax_keep(a.src[i], i, bv, bi);
  argmax_block<kPersistentWarps>(bv, bi, warp_v, warp_i);
  if (threadIdx.x == 0) {
    s->argmax_value[item] = bv;
    s->argmax_index[item] = bi;
    __threadfence();
    if (atomicAdd(&s->argmax_arrivals, 1) == op.gx - 1) {
      __threadfence();
      bv = 0.0f;
      bi = kArgmaxNone;
      for (int c = 0; c < op.gx; c++) argmax_keep(__ldcg(&s->argmax_value[c]), __ldcg(&s->argmax_index[c]), bv, bi);
      a.dst[0] = argmax_result(bv, bi);
      s->argmax_arrivals = 0;
    }
  }
  __syncthreads();  // warp_v and warp_i are rewritten by the block's next item
}

// The kernel is held to 128 registers a thread (__launch_bounds__ below: two blocks an SM; it took 175-180, one
// block an SM); the items' code is not inlined, so that what spills, spills in each on its own (attention, a little).
template <bool NORM>
__device__ __noinline__ void column(const MatMulArgs& a, int n) {
  if (n >= a.N) return;  // the whole warp
  switch (a.dtype) {
    case DType::F32:
      matmul_col_warp<DType::F32, NORM, 1, kMatVecLoads>(a, n, 0);
      break;
    case DType::F16:
      matmul_col_warp<DType::F16, NORM, 1, kMatVecLoads>(a, n, 0);
      break;
    case DType::BF16:
      matmul_col_warp<DType::BF16, NORM, 1, kMatVecLoads>(a, n, 0);
      break;
  }
}

__device__ __noinline__ void attention_item(const StepItemOp& op, int bx, int by) {
  attention_block(op.att, op.scale, bx, op.gx, by, op.gy);
}

__device__ __noinline__ void router_lut_item(const StepItemOp& op, int bx, int by) {
  if (op.lut.lut_dtype == DType::F32) router_lut_block<DType::F32>(op.lut, bx, by, op.gy);
  if (op.lut.lut_dtype == DType::F16) router_lut_block<DType::F16>(op.lut, bx, by, op.gy);
  if (op.lut.lut_dtype == DType::BF16) router_lut_block<DType::BF16>(op.lut, bx, by, op.gy);
}

// Runs item `item` of op: in uniform control flow over the block, as the op's own kernel runs a block.
__device__ void run_item(const StepItemOp& op, int item, PersistentScratch* s) {
  const int bx = item % op.gx, by = item / op.gx;
  switch (op.kind) {
    case StepItemKind::Embed:
      if (op.embed.dtype == DType::F32) embed_block<DType::F32>(op.embed, bx, by, op.gy);
      if (op.embed.dtype == DType::F16) embed_block<DType::F16>(op.embed, bx, by, op.gy);
      if (op.embed.dtype == DType::BF16) embed_block<DType::BF16>(op.embed, bx, by, op.gy);
      break;
    case StepItemKind::MatMul:
      column<false>(op.mm, item * kPersistentWarps + int(threadIdx.x) / kWarpSize);
      break;
    case StepItemKind::NormMatMul:
      column<true>(op.mm, item * kPersistentWarps + int(threadIdx.x) / kWarpSize);
      break;
    case StepItemKind::Attention:
      attention_item(op, bx, by);
      break;
    case StepItemKind::RouterLut:
      router_lut_item(op, bx, by);
      break;
    case StepItemKind::FetchRows:
      if (op.word == 16) fetch_lut_rows_block<uint4>(op.fetch, bx, op.gx, by, op.gy);
      if (op.word == 8) fetch_lut_rows_block<uint2>(op.fetch, bx, op.gx, by, op.gy);
      if (op.word == 4) fetch_lut_rows_block<uint32_t>(op.fetch, bx, op.gx, by, op.gy);
      if (op.word == 2) fetch_lut_rows_block<uint16_t>(op.fetch, bx, op.gx, by, op.gy);
      if (op.word == 1) fetch_lut_rows_block<uint8_t>(op.fetch, bx, op.gx, by, op.gy);
      break;
    case StepItemKind::Gather:
      gather_block(op.gather, bx, op.gx);
      break;
    case StepItemKind::Argmax:
      argmax_item(op, item, s);
      break;
  }
}

// Asks for this block's share of the weights of the phase starting at op `begin` to be fetched into L2: 128-byte
// lines, the block's threads taking lines blockIdx.x * kPersistentThreads + threadIdx.x, + the grid's threads, ...
__device__ void prefetch_phase(const StepItemOp* __restrict__ ops, int begin, int n_ops) {
  size_t left = kPersistentPrefetchBytes;
  for (int j = begin; j < n_ops && left > 0; j++) {
    const size_t bytes = min(ops[j].weight_bytes, left);
    const char* w = static_cast<const char*>(ops[j].weights);
    if (w) {
      const size_t lines = (bytes + 127) / 128, stride = size_t(gridDim.x) * kPersistentThreads;
      for (size_t i = size_t(blockIdx.x) * kPersistentThreads + threadIdx.x; i < lines; i += stride)
        prefetch_l2(w + i * 128);
      left -= bytes;
    }
    if (ops[j].barrier_after) break;
  }
}

// The phases in order: a block takes items blockIdx.x, + gridDim.x, ... of the phase (its ops' items numbered one
// after another), then waits at the barrier that ends the phase. Two blocks an SM (128 registers a thread).
__global__ void __launch_bounds__(kPersistentThreads, 2)
    persistent_step_kernel(const StepItemOp* __restrict__ ops, int n_ops, PersistentScratch* s, unsigned* failed_host,
                           bool prefetch, bool stall) {
  for (int begin = 0; begin < n_ops;) {
    int end = begin;
    while (!ops[end].barrier_after && end + 1 < n_ops) end++;
    const int total = ops[end].first + ops[end].gx * ops[end].gy;
    int j = begin;
    for (int g = blockIdx.x; g < total; g += gridDim.x) {
      while (j < end && g >= ops[j + 1].first) j++;  // g only grows
      run_item(ops[j], g - ops[j].first, s);
    }
    begin = end + 1;
    if (begin < n_ops) {
      if (prefetch) prefetch_phase(ops, begin, n_ops);
      if (!grid_barrier(s, failed_host, stall)) return;
    }
  }
}

}  // namespace

int persistent_step_blocks(size_t shared) {
  int device = 0, cooperative = 0, sms = 0, per_sm = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (!cooperative) return 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_step_kernel, kPersistentThreads,
                                                           shared + kSharedSlack));
  return per_sm * sms;
}

cudaError_t launch_persistent_step(const StepItemOp* ops, int n_ops, PersistentScratch* scratch, unsigned* failed_host,
                                   int blocks, size_t shared, bool prefetch, bool stall, cudaStream_t stream) {
  MOLE_CUDA_ASSERT(blocks > 0 && n_ops > 0);
  cudaLaunchAttribute cooperative{};
  cooperative.id = cudaLaunchAttributeCooperative;
  cooperative.val.cooperative = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = unsigned(blocks);
  cfg.blockDim = kPersistentThreads;
  cfg.dynamicSmemBytes = shared + kSharedSlack;
  cfg.stream = stream;
  cfg.attrs = &cooperative;
  cfg.numAttrs = 1;
  const cudaError_t err =
      cudaLaunchKernelEx(&cfg, persistent_step_kernel, ops, n_ops, scratch, failed_host, prefetch, stall);
  if (err != cudaSuccess) cudaGetLastError();
  return err;
}

}  // namespace mole::cuda
