// router_lut: the router (RMSNorm and its product fused in), its softmax and the lookup-table weighted sum
// (OpKind::RouterLut in model/backend.h, shaders/router_lut.glsl). For each token t:
//   logit_e = (sum_d x[t][d] * norm[d] * Wr[e][d]) / sqrt(mean_d x[t][d]^2 + eps)   (= rmsnorm(x) * norm @ Wr^T)
//   p = softmax(logit)  (max-subtracted, summed in expert order, as cpu::softmax)
//   dst[t][d] = sum_e p[e] * row_t[(layer * E + e) * D + d], summed in expert order as the CPU's router_lut()
// Row t is read from one of two places, by the same kernel (so both give the same bits):
//   copy:   the step's rows copied into a device ring, in step order: row t at rows + t * row_bytes (ids null);
//   direct: the whole table, in device memory or mapped pinned host memory: row ids[t] at rows + ids[t] * row_bytes.
// And the copy into the ring by a kernel, fetch_lut_rows (below).
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

constexpr int kRouterLutMaxExperts = 8192;  // the probabilities live in shared memory (32 KiB)

struct RouterLutArgs {
  const float* x = nullptr;      // (T, D) the residual stream
  const void* router = nullptr;  // (E, D) the router's weight in router_dtype
  DType router_dtype = DType::F32;
  const float* norm = nullptr;   // (D) the post-attention norm's weight, float32
  float* dst = nullptr;          // (T, D) the LUT sums
  const void* rows = nullptr;    // the ring (copy) or the table (direct), rows of L * E * D values in lut_dtype
  const int32_t* ids = nullptr;  // direct: the step's token ids (T); copy: null
  DType lut_dtype = DType::F32;
  size_t row_bytes = 0;  // L * E * D * the dtype's size
  int T = 0, E = 0, D = 0, layer = 0;
  float eps = 0.0f;
};
void launch_router_lut(const RouterLutArgs& a, const Launch& l);

// fetch_lut_rows: ring[t] = table[ids[t]] for the step's T rows of row_bytes each, a plain copy by a kernel
// (--tune lut-copy=kernel, lut_stream.h): the copy router_lut's copy reads otherwise get from the copy engine. The
// table is device memory or mapped pinned host memory (read over the bus); ids were checked on the host (rows outside
// [0, V) are skipped, never read).
struct LutFetchArgs {
  const void* table = nullptr;   // (V, row_bytes)
  const int32_t* ids = nullptr;  // (T) the step's token ids
  void* ring = nullptr;          // (T, row_bytes)
  size_t row_bytes = 0;
  int T = 0, V = 0;
  unsigned delay_ns = 0;  // tests (perturb=lut-copy-late): each block waits this long before it copies
};
void launch_fetch_lut_rows(const LutFetchArgs& a, const Launch& l);

constexpr int kLutFetchThreads = 256;
constexpr int kLutFetchInFlight = 4;  // loads a thread issues before its first store: the bus's latency overlaps

}  // namespace mole::cuda

#if defined(__CUDACC__)
#include "cuda-backend/router.cuh"

namespace mole::cuda {

// Block (bx, by) of router_lut's grid (ceil(D / kRouterThreads), gy), in uniform control flow: router_lut_kernel's,
// or an item of the persistent decode kernel (persistent_step.cu).
template <DType LDT>
__device__ __forceinline__ void router_lut_block(const RouterLutArgs& a, int bx, int by, int gy) {
  extern __shared__ float prob[];  // (E) the router's probabilities
  __shared__ RouterScratch scratch;
  const int d_out = bx * kRouterThreads + threadIdx.x;  // this thread's dim of the weighted sum
  for (int t = by; t < a.T; t += gy) {
    router_softmax(a.x + size_t(t) * a.D, a.router, a.router_dtype, a.norm, a.E, a.D, a.eps, prob, scratch);
    if (d_out < a.D) {
      const size_t row_id = a.ids ? size_t(a.ids[t]) : size_t(t);
      const void* row = static_cast<const uint8_t*>(a.rows) + row_id * a.row_bytes;
      const size_t first = size_t(a.layer) * a.E * a.D + d_out;  // element (layer, 0, d_out) of the row
      float v = 0.0f;
      for (int e = 0; e < a.E; e++) v += prob[e] * load_elem<LDT>(row, first + size_t(e) * a.D);
      a.dst[size_t(t) * a.D + d_out] = v;
    }
    __syncthreads();  // prob is rewritten by the next token
  }
}

// Block (bx, by) of fetch_lut_rows' grid (gx, gy): blocks over (a row's words in chunks of kLutFetchThreads *
// kLutFetchInFlight, T); W is the widest word both the rows and the addresses are aligned to.
template <typename W>
__device__ __forceinline__ void fetch_lut_rows_block(const LutFetchArgs& a, int bx, int gx, int by, int gy) {
  const size_t words = a.row_bytes / sizeof(W), chunk = size_t(kLutFetchThreads) * kLutFetchInFlight;
  if (a.delay_ns != 0) {  // uniform over the block
    if (threadIdx.x == 0)
      for (const unsigned long long t0 = global_ns(); global_ns() - t0 < a.delay_ns;) {
      }
    __syncthreads();
  }
  for (int t = by; t < a.T; t += gy) {
    const int32_t id = a.ids[t];
    if (id < 0 || id >= a.V) continue;
    const W* src = reinterpret_cast<const W*>(static_cast<const uint8_t*>(a.table) + size_t(id) * a.row_bytes);
    W* dst = reinterpret_cast<W*>(static_cast<uint8_t*>(a.ring) + size_t(t) * a.row_bytes);
    for (size_t i0 = bx * chunk + threadIdx.x; i0 < words; i0 += gx * chunk) {
      W v[kLutFetchInFlight];
#pragma unroll
      for (int j = 0; j < kLutFetchInFlight; j++) {
        const size_t i = i0 + size_t(j) * kLutFetchThreads;
        if (i < words) v[j] = src[i];
      }
#pragma unroll
      for (int j = 0; j < kLutFetchInFlight; j++) {
        const size_t i = i0 + size_t(j) * kLutFetchThreads;
        if (i < words) dst[i] = v[j];
      }
    }
  }
}

}  // namespace mole::cuda
#endif
