// Shared by every file of the CUDA backend: CUDA_CHECK (the one error mechanism for CUDA calls), MOLE_CUDA_ASSERT
// (programmer errors), and, for the kernels (.cu files only), weight loads in the stored dtype and warp/block
// reductions. Host .cpp files include this too; everything device-side is behind __CUDACC__.
//
// Legend: T tokens in a step, D hidden, F FFN width, H/KVH query/key-value heads, hd head dim, E experts, L layers,
// V vocabulary, S context rows per sequence slot, B sequence slots, R output rows, N/K matmul output/input widths.
//
// Numerics, as the CPU reference (model/cpu_ops.cpp) and the Vulkan shaders: weights and table rows stay in their
// stored dtype (F32, F16, BF16) and are converted to float32 exactly on load; everything accumulates in float32;
// every reduction has a fixed order, so a kernel gives the same bits on every run. No fast-math.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "model/safetensors.h"  // DType

namespace mole::cuda {

// Throws mole::Error "cuda: <expr> failed: <name> (<description>) at <file>:<line>", with what to do for the
// errors a user can meet (out of memory, no device, a driver too old). Clears the error first when it is not sticky.
[[noreturn]] void cuda_fail(cudaError_t err, const char* expr, const char* file, int line);
// Prints "mole: internal error: <what> at <file>:<line>" and aborts. For programmer errors, in every build type.
[[noreturn]] void assert_fail(const char* what, const char* file, int line);

// Where a kernel starts: its stream, and whether it may start before the kernel before it on that stream has ended
// (programmatic dependent launch, --tune pdl, compute capability 9.0 and up; cuda_backend.cpp decides which
// launches). A kernel so launched runs its code before wait_for_producers() beside its predecessor's end; there it
// reads only weights (written once, at load) and the step's inputs (copied before the step's first kernel), and asks
// for lines an earlier step wrote (attention's cache rows) to be fetched into L2. The op's first kernel starts early
// where `early`, its later ones (attention's pass after its store pass) where `pdl`.
struct PersistentProgram;  // persistent_step.cuh
struct Launch {
  cudaStream_t stream = nullptr;
  bool pdl = false;
  bool early = false;
  int* launched = nullptr;  // when set, counts the kernels started
  // When set, the op is added to this program of the persistent decode kernel (persistent_step.cuh) with the grid
  // its kernel would have run, instead of launched.
  PersistentProgram* program = nullptr;
  Launch then() const { return {stream, pdl, pdl, launched, program}; }  // for the op's second and later kernels
};

}  // namespace mole::cuda

#define CUDA_CHECK(expr)                                                                                     \
  do {                                                                                                       \
    const cudaError_t cuda_check_err_ = (expr);                                                              \
    if (cuda_check_err_ != cudaSuccess) ::mole::cuda::cuda_fail(cuda_check_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// Always checked (unlike assert(), which Release builds drop): a wrong row index on a GPU corrupts results silently.
#define MOLE_CUDA_ASSERT(cond)                                         \
  do {                                                                 \
    if (!(cond)) ::mole::cuda::assert_fail(#cond, __FILE__, __LINE__); \
  } while (0)

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace mole::cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// The GPU's global timer, in nanoseconds.
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Programmatic dependent launch (Launch above). Every kernel calls wait_for_producers() before it reads anything but
// weights and before it writes anything: it returns once the kernels before it in the step have ended and their
// writes are visible (at once for a kernel launched the ordinary way). Then it calls let_dependents_start(): once
// every block of it has, the next kernel, if launched early, may start its own weight reads. A kernel launched
// early thus never overlaps more than its predecessor's end, and writes only after it. Both are no-ops before
// compute capability 9.0, where launches are never early.
__device__ __forceinline__ void wait_for_producers() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void let_dependents_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Asks for the 128-byte line holding p to be fetched into L2: a hint, nothing waits for it or reads it.
__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// Both, first thing in a kernel that reads no weights before its inputs.
__device__ __forceinline__ void start_after_producers() {
  wait_for_producers();
  let_dependents_start();
}

// Bytes of dynamic shared memory a launch gets beyond what it asks for. On an H200 (CUDA 13.0, commit f2fb23c)
// compute-sanitizer's memcheck reported "Invalid __shared__ read of size 12 bytes" starting at the first element
// of arrays shorter than that: router_lut's prob (E = 1, 4 bytes) and attention's q_s (hd = 2, store pass, 8 bytes).
// The source reads neither past its end, and the results were right; the SASS has no 12-byte load, so the read is
// the compiler's (a loop's last loads issued together) or the sanitizer's account of one. With the slack memcheck
// is clean (commit f080183): a read a few floats past an array's end stays inside the block's allocation.
constexpr size_t kSharedSlack = 16;

// kernel<<<grid, block, shared (+ kSharedSlack), l.stream>>>(args...), started early where l.early (above). Throws
// on a launch that cannot start (its configuration).
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, const Launch& l, Args&&... args) {
  cudaLaunchAttribute early{};
  early.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  early.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = shared > 0 ? shared + kSharedSlack : 0;
  cfg.stream = l.stream;
  cfg.attrs = l.early ? &early : nullptr;
  cfg.numAttrs = l.early ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
  if (l.launched) ++*l.launched;
}

// Element i of a tensor of dtype DT, as float32 (exact: F16 and BF16 widen without rounding).
template <DType DT>
__device__ __forceinline__ float load_elem(const void* p, size_t i) {
  if constexpr (DT == DType::F32) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (DT == DType::F16) {
    return __half2float(static_cast<const __half*>(p)[i]);
  } else {
    return __uint_as_float(uint32_t(static_cast<const uint16_t*>(p)[i]) << 16);
  }
}

// The same with the dtype known only at run time (small tensors: the router's weight).
__device__ __forceinline__ float load_elem(const void* p, DType dt, size_t i) {
  switch (dt) {
    case DType::F32:
      return load_elem<DType::F32>(p, i);
    case DType::F16:
      return load_elem<DType::F16>(p, i);
    default:
      return load_elem<DType::BF16>(p, i);
  }
}

// Elements held by 16 bytes of a tensor of dtype DT: 4 floats or 8 halves.
template <DType DT>
constexpr int kElemsPer16 = DT == DType::F32 ? 4 : 8;

// The kElemsPer16<DT> elements of one 16-byte load, in memory order, as float32.
template <DType DT>
__device__ __forceinline__ void unpack16(const uint4& q, float* out) {
  if constexpr (DT == DType::F32) {
    out[0] = __uint_as_float(q.x);
    out[1] = __uint_as_float(q.y);
    out[2] = __uint_as_float(q.z);
    out[3] = __uint_as_float(q.w);
  } else {
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const uint32_t lo = words[i] & 0xffffu, hi = words[i] >> 16;  // little-endian: the lower element first
      if constexpr (DT == DType::F16) {
        out[2 * i] = __half2float(__ushort_as_half(uint16_t(lo)));
        out[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(hi)));
      } else {
        out[2 * i] = __uint_as_float(lo << 16);
        out[2 * i + 1] = __uint_as_float(hi << 16);
      }
    }
  }
}

// Butterfly reductions over the 32 lanes of a warp: every lane gets the result, in the same order on every run.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Block-wide reductions: every thread of the block must call them (uniform control flow), blockDim.x a multiple of
// 32. Each warp reduces its lanes, then every thread adds the warp results in warp order, so all threads return the
// same value; `scratch` (32 floats of shared memory) is free again on return.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  v = warp_sum(v);
  const int warp = threadIdx.x / kWarpSize, warps = blockDim.x / kWarpSize;
  if (threadIdx.x % kWarpSize == 0) scratch[warp] = v;
  __syncthreads();
  float r = 0.0f;
  for (int w = 0; w < warps; w++) r += scratch[w];
  __syncthreads();
  return r;
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  v = warp_max(v);
  const int warp = threadIdx.x / kWarpSize, warps = blockDim.x / kWarpSize;
  if (threadIdx.x % kWarpSize == 0) scratch[warp] = v;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < warps; w++) r = fmaxf(r, scratch[w]);
  __syncthreads();
  return r;
}

// The exact GELU of the CPU reference (cpu::gelu): 0.5 x (1 + erf(x / sqrt(2))).
__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

}  // namespace mole::cuda
#endif  // __CUDACC__
