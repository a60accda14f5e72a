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
};
void launch_fetch_lut_rows(const LutFetchArgs& a, const Launch& l);

}  // namespace mole::cuda
