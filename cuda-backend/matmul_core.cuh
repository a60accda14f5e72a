// The kernels of the matmul family, included by matmul.cu (NORM = false) and norm_matmul.cu (NORM = true), each
// instantiated once per weight dtype. For every output column n and token row t:
//   dot = sum_k x[t][k] * norm[k] * W[n][k]     (norm = 1 without NORM)
//   ss  = sum_k x[t][k]^2                        (NORM only: the row's sum of squares, for its RMS)
// then store() writes y[t][n] as the op says (matmul: y = dot, y += dot, plus the addend; norm_matmul:
// act(dot / sqrt(ss / K + eps))). Two kernels:
//
// Column kernel (few rows: decode, batched decode): one warp per output column, for up to kColRows token rows at
// once (one row in a decode step). The warp reads the weight row with 16-byte loads (4 floats or 8 halves per lane;
// coalesced), each lane kMatVecLoads of them in flight at once, decodes each element once and uses it for every row,
// then reduces with shuffles. Weights are read once per kColRows rows: for a decode step the product is a pass over
// the weights at memory bandwidth. 16-byte loads need K to be a multiple of the elements per load (every row then
// starts 16-byte aligned); otherwise scalar loads, same order of work.
// A variant, the staged column kernel (--tune matvec=staged), reads each block's rows of x into shared memory once.
//
// Tiled kernel (rows >= tiled_min_rows: prefill chunks, reparameterization blocks): a block of 256 threads computes
// a 64 x 64 tile of y from 32-wide K slices of x and W staged in shared memory (as float32, the norm applied to x),
// on tensor cores with WMMA TF32 m16n16k8 fragments, each of the 8 warps a 16 x 32 part. TF32 keeps 11 significant
// bits, too few for the float32 results the CPU reference gives (the op tests bound the NMSE at 1e-10), so x is
// split as x = x_hi + x_lo, both TF32, and the products summed as x_lo W + x_hi W: F16 and BF16 weights are exact in
// TF32 (11 and 8 significant bits), so that is x to 22 bits against exact weights. F32 weights are split too:
// x_lo W_hi + x_hi W_lo + x_hi W_hi ("3xTF32"), dropping only x_lo W_lo (2^-22 relative). Tensor cores accumulate in
// float32. 2 or 3 MMAs per product is still far above the float32 SIMT rate.
#pragma once

#include <mma.h>

#include <algorithm>

#include "cuda-backend/matmul.cuh"
#include "cuda-backend/persistent_step.cuh"

namespace mole::cuda {
namespace {

constexpr int kColWarps = 4;  // output columns per block of the column kernel
constexpr int kColRows = 8;   // token rows per warp (decode steps: 1)
constexpr int kColThreads = kColWarps * kWarpSize;

constexpr int kStagedWarps = 8;  // output columns per block of the staged column kernel
constexpr int kStagedThreads = kStagedWarps * kWarpSize;
constexpr size_t kStagedMaxShared = 48 * 1024;  // the most dynamic shared memory a launch may ask without opting in
static_assert(kStagedWarps >= kColRows, "each staged row's sum of squares has a warp");

constexpr int kTileM = 64, kTileN = 64, kTileK = 32;  // the tiled kernel's output tile and K slice
constexpr int kTileLd = kTileK + 4;                   // shared-memory row stride of the staged slices (floats)
constexpr int kTileLdC = kTileN + 4;                  // and of the output tile
constexpr int kTileThreads = 256;                     // 8 warps: 4 along M (16 rows each) x 2 along N (32 columns)
static_assert(kTileM * kTileLdC <= 2 * kTileM * kTileLd, "the output tile reuses the staging memory");

// Writes y[t][n] from the row's dot product and, for NORM, its 1 / RMS.
template <bool NORM>
__device__ __forceinline__ void store(const MatMulArgs& a, int t, int n, float dot, float inv_rms) {
  const size_t o = size_t(t) * size_t(a.N) + size_t(n);
  if constexpr (NORM) {
    const float v = dot * inv_rms;
    a.y[o] = a.gelu ? gelu(v) : v;
  } else {
    float r = a.accumulate ? a.y[o] + dot : dot;
    if (a.addend) r += a.addend[o];
    a.y[o] = r;
  }
}

// 1 / sqrt(mean(x^2) + eps), as the CPU's rmsnorm computes its scale.
__device__ __forceinline__ float inv_rms_of(float ss, int K, float eps) {
  return 1.0f / sqrtf(ss / float(K) + eps);
}

// Grid: (ceil(N / kColWarps), ceil(rows / ROWS)). Warp w of block b computes column b.x * kColWarps + w for rows
// [b.y * ROWS, + ROWS). ROWS is 1 (a decode step) or kColRows: the rows are compile-time, so the loop over them has
// no branches; a block's rows past the step's last read that last row again and store nothing.
// LOADS (--tune matvec-loads): each lane issues this many 16-byte weight loads before it uses the first, so that a
// warp has LOADS x 512 bytes on their way at once. With 1 a lane waits for each load before it issues the next: the
// compiler does not move a load above the branches of the previous chunk's work, so every chunk cost a trip to
// memory (a decode step's 768-wide rows are 3 chunks a lane, all 3 in flight with LOADS = 4). The first batch is
// issued before wait_for_producers(): a kernel started early (--tune pdl) reads its weights while its predecessor
// ends.
// The work of one warp: column n for row block by. Called by every lane of the warp; no block-wide synchronisation.
// Also an item of the persistent decode kernel (persistent_step.cu), where the waits are no-ops.
template <DType DT, bool NORM, int ROWS, int LOADS>
__device__ __forceinline__ void matmul_col_warp(const MatMulArgs& a, int n, int by) {
  constexpr int kEpv = kElemsPer16<DT>;  // weight elements per 16-byte load
  constexpr size_t kElemBytes = DT == DType::F32 ? 4 : 2;
  const int lane = threadIdx.x % kWarpSize;
  const int t0 = by * ROWS, rows = min(ROWS, a.rows - t0);
  const float* xr[ROWS];  // each row's x; rows past the step's last read the last one again
  float acc[ROWS], ss[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; r++) {
    xr[r] = a.x + size_t(t0 + min(r, rows - 1)) * size_t(a.K);
    acc[r] = ss[r] = 0.0f;
  }
  const size_t wrow = size_t(n) * size_t(a.K);  // the weight row's first element
  if (a.K % kEpv == 0) {                        // every row starts 16-byte aligned (x and the norm too: K % 4 == 0)
    const uint4* w4 = reinterpret_cast<const uint4*>(static_cast<const char*>(a.w) + wrow * kElemBytes);
    const int chunks = a.K / kEpv;
    uint4 q[LOADS];
    auto fetch = [&](int i0) {
#pragma unroll
      for (int j = 0; j < LOADS; j++) {  // all issued before any is used
        const int i = i0 + j * kWarpSize;
        q[j] = i < chunks ? __ldg(w4 + i) : make_uint4(0, 0, 0, 0);
      }
    };
    fetch(lane);  // weights only: on their way while an early-launched kernel waits for its predecessor
    start_after_producers();
    for (int i0 = lane; i0 < chunks; i0 += LOADS * kWarpSize) {
      if (i0 != lane) fetch(i0);
#pragma unroll
      for (int j = 0; j < LOADS; j++) {
        const int i = i0 + j * kWarpSize, k = i * kEpv;
        if (i >= chunks) continue;  // past the row's end (so are the later j)
        float wf[kEpv];
        unpack16<DT>(q[j], wf);
        if constexpr (NORM) {
#pragma unroll
          for (int v = 0; v < kEpv / 4; v++) {
            const float4 nv = reinterpret_cast<const float4*>(a.norm + k)[v];
            wf[4 * v] *= nv.x;
            wf[4 * v + 1] *= nv.y;
            wf[4 * v + 2] *= nv.z;
            wf[4 * v + 3] *= nv.w;
          }
        }
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
          const float4* x4 = reinterpret_cast<const float4*>(xr[r] + k);
#pragma unroll
          for (int v = 0; v < kEpv / 4; v++) {
            const float4 xv = x4[v];
            acc[r] += xv.x * wf[4 * v] + xv.y * wf[4 * v + 1] + xv.z * wf[4 * v + 2] + xv.w * wf[4 * v + 3];
            if constexpr (NORM) ss[r] += xv.x * xv.x + xv.y * xv.y + xv.z * xv.z + xv.w * xv.w;
          }
        }
      }
    }
  } else {
    start_after_producers();
#pragma unroll 4
    for (int k = lane; k < a.K; k += kWarpSize) {
      float wk = load_elem<DT>(a.w, wrow + k);
      if constexpr (NORM) wk *= a.norm[k];
#pragma unroll
      for (int r = 0; r < ROWS; r++) {
        const float xv = xr[r][k];
        acc[r] += xv * wk;
        if constexpr (NORM) ss[r] += xv * xv;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; r++) {
    if (r < rows) {  // uniform over the warp: every lane takes part in the shuffles
      const float d = warp_sum(acc[r]);
      const float s = NORM ? warp_sum(ss[r]) : 0.0f;
      if (lane == 0) store<NORM>(a, t0 + r, n, d, NORM ? inv_rms_of(s, a.K, a.eps) : 1.0f);
    }
  }
}

template <DType DT, bool NORM, int ROWS, int LOADS>
__global__ void __launch_bounds__(kColThreads) matmul_col_kernel(MatMulArgs a) {
  const int n = blockIdx.x * kColWarps + threadIdx.x / kWarpSize;
  if (n >= a.N) return;  // the whole warp (no block-wide synchronisation below)
  matmul_col_warp<DT, NORM, ROWS, LOADS>(a, n, blockIdx.y);
}

// Staged column kernel (--tune matvec=staged; 0.80x the column kernel's decode tokens/s on an H200): the block's rows
// of x, times the norm, are read from global memory once into shared memory, and NORM's sums of squares are taken
// once per row (warp r sums row r); then each warp computes one column as the column kernel does, reading x from
// shared memory: per 16-byte weight load the warp does no global loads of x or of the norm. Launched only where the
// rows (and kSharedSlack) fit in kStagedMaxShared bytes (otherwise the column kernel runs).
// Grid: (ceil(N / kStagedWarps), ceil(rows / kColRows)); dynamic shared memory min(rows, kColRows) * K floats.
template <DType DT, bool NORM>
__global__ void __launch_bounds__(kStagedThreads) matmul_staged_kernel(MatMulArgs a) {
  start_after_producers();
  // [r * K + k] = x[t0 + r][k] * norm[k]; each row starts 16-byte aligned when K % 4 == 0.
  extern __shared__ float4 staged4[];
  __shared__ float inv_rms[kColRows];  // NORM: 1 / RMS of each staged row
  constexpr int kEpv = kElemsPer16<DT>;
  constexpr size_t kElemBytes = DT == DType::F32 ? 4 : 2;
  float* xs = reinterpret_cast<float*>(staged4);
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int t0 = blockIdx.y * kColRows, rows = min(kColRows, a.rows - t0);
  const float* x0 = a.x + size_t(t0) * size_t(a.K);
  for (int i = threadIdx.x; i < rows * a.K; i += kStagedThreads) {
    float v = x0[i];
    if constexpr (NORM) v *= a.norm[i % a.K];
    xs[i] = v;
  }
  if constexpr (NORM) {
    if (warp < rows) {
      float ss = 0.0f;
      for (int k = lane; k < a.K; k += kWarpSize) {
        const float v = x0[size_t(warp) * a.K + k];
        ss += v * v;
      }
      ss = warp_sum(ss);
      if (lane == 0) inv_rms[warp] = inv_rms_of(ss, a.K, a.eps);
    }
  }
  __syncthreads();
  const int n = blockIdx.x * kStagedWarps + warp;
  if (n >= a.N) return;  // the whole warp, after the block's only barrier
  float acc[kColRows];
#pragma unroll
  for (int r = 0; r < kColRows; r++) acc[r] = 0.0f;
  const size_t wrow = size_t(n) * size_t(a.K);
  if (a.K % kEpv == 0) {
    const uint4* w4 = reinterpret_cast<const uint4*>(static_cast<const char*>(a.w) + wrow * kElemBytes);
#pragma unroll 4
    for (int i = lane; i < a.K / kEpv; i += kWarpSize) {
      const int k = i * kEpv;
      float wf[kEpv];
      unpack16<DT>(__ldg(w4 + i), wf);
#pragma unroll
      for (int r = 0; r < kColRows; r++) {
        if (r < rows) {
          const float4* x4 = reinterpret_cast<const float4*>(xs + r * a.K + k);
#pragma unroll
          for (int v = 0; v < kEpv / 4; v++) {
            const float4 xv = x4[v];
            acc[r] += xv.x * wf[4 * v] + xv.y * wf[4 * v + 1] + xv.z * wf[4 * v + 2] + xv.w * wf[4 * v + 3];
          }
        }
      }
    }
  } else {
#pragma unroll 4
    for (int k = lane; k < a.K; k += kWarpSize) {
      const float wk = load_elem<DT>(a.w, wrow + k);
#pragma unroll
      for (int r = 0; r < kColRows; r++)
        if (r < rows) acc[r] += xs[r * a.K + k] * wk;
    }
  }
#pragma unroll
  for (int r = 0; r < kColRows; r++) {
    if (r < rows) {  // uniform over the warp
      const float d = warp_sum(acc[r]);
      if (lane == 0) store<NORM>(a, t0 + r, n, d, NORM ? inv_rms[r] : 1.0f);
    }
  }
}

using namespace nvcuda;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

// hi = tf32(v), lo = tf32(v - hi) for each element (v - hi is exact in float32). Fragments of one type share their
// element layout, so this works element by element.
template <typename Frag>
__device__ __forceinline__ void split_tf32(Frag& hi, Frag& lo) {
#pragma unroll
  for (int e = 0; e < hi.num_elements; e++) {
    const float v = hi.x[e], h = wmma::__float_to_tf32(v);
    hi.x[e] = h;
    lo.x[e] = wmma::__float_to_tf32(v - h);
  }
}

// Grid: (ceil(N / 64), ceil(rows / 64)); block (x, y) computes y rows [y * 64, + 64) x columns [x * 64, + 64).
template <DType DT, bool NORM>
__global__ void __launch_bounds__(kTileThreads) matmul_tiled_kernel(MatMulArgs a) {
  start_after_producers();
  __shared__ __align__(32) float smem[2 * kTileM * kTileLd];  // xs (64 x 32 of x) and ws (64 x 32 of W), then y's tile
  __shared__ float inv_rms[kTileM];                           // NORM: 1 / RMS of the tile's rows
  float* xs = smem;                                           // [m * kTileLd + kk] = x[mb + m][k0 + kk] * norm
  float* ws = smem + kTileM * kTileLd;                        // [n * kTileLd + kk] = W[nb + n][k0 + kk]
  const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int wm = warp % 4, wn = warp / 4;  // this warp's rows wm * 16 + [0, 16), columns wn * 32 + [0, 32)
  const int mb = blockIdx.y * kTileM, nb = blockIdx.x * kTileN;
  if constexpr (NORM) {
    for (int m = warp; m < kTileM; m += kTileThreads / kWarpSize) {
      const int t = mb + m;
      float ss = 0.0f;
      if (t < a.rows)
        for (int k = lane; k < a.K; k += kWarpSize) {
          const float v = a.x[size_t(t) * a.K + k];
          ss += v * v;
        }
      ss = warp_sum(ss);
      if (lane == 0) inv_rms[m] = inv_rms_of(ss, a.K, a.eps);  // published by the barriers of the K loop
    }
  }
  // c: the sums over the slices so far, added in float32 (round to nearest); s: one slice's sums on the tensor
  // cores. A tensor core adds into its accumulator with truncation, so one long chain of MMAs over K drifts (NMSE up
  // to 1e-9 at K = 2053 on an H100); restarting from zero every slice keeps each chain short.
  FragC c[2], s[2];
  wmma::fill_fragment(c[0], 0.0f);
  wmma::fill_fragment(c[1], 0.0f);
  for (int k0 = 0; k0 < a.K; k0 += kTileK) {
    // Stage: consecutive threads take consecutive k of a row (coalesced); out of range is zero.
    for (int i = tid; i < kTileM * kTileK; i += kTileThreads) {
      const int m = i / kTileK, kk = i % kTileK, k = k0 + kk, t = mb + m, n = nb + m;
      float xv = 0.0f, wv = 0.0f;
      if (k < a.K) {
        if (t < a.rows) {
          xv = a.x[size_t(t) * a.K + k];
          if constexpr (NORM) xv *= a.norm[k];
        }
        if (n < a.N) wv = load_elem<DT>(a.w, size_t(n) * a.K + k);
      }
      xs[m * kTileLd + kk] = xv;
      ws[m * kTileLd + kk] = wv;
    }
    __syncthreads();
    wmma::fill_fragment(s[0], 0.0f);
    wmma::fill_fragment(s[1], 0.0f);
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 8) {
      FragA a_hi, a_lo;
      wmma::load_matrix_sync(a_hi, xs + wm * 16 * kTileLd + kk, kTileLd);
      split_tf32(a_hi, a_lo);
#pragma unroll
      for (int j = 0; j < 2; j++) {
        FragB b_hi, b_lo;
        wmma::load_matrix_sync(b_hi, ws + (wn * 32 + j * 16) * kTileLd + kk, kTileLd);
        split_tf32(b_hi, b_lo);  // 16-bit weights: b_lo is all zero, not used
        wmma::mma_sync(s[j], a_lo, b_hi, s[j]);
        if constexpr (DT == DType::F32) wmma::mma_sync(s[j], a_hi, b_lo, s[j]);
        wmma::mma_sync(s[j], a_hi, b_hi, s[j]);
      }
    }
    // Accumulator fragments of one type map their elements alike, so they add element by element.
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
      for (int e = 0; e < s[j].num_elements; e++) c[j].x[e] += s[j].x[e];
    __syncthreads();  // xs and ws are staged again by the next slice
  }
  float* cs = smem;  // the 64 x 64 tile of dot products, row stride kTileLdC
#pragma unroll
  for (int j = 0; j < 2; j++)
    wmma::store_matrix_sync(cs + wm * 16 * kTileLdC + wn * 32 + j * 16, c[j], kTileLdC, wmma::mem_row_major);
  __syncthreads();
  for (int i = tid; i < kTileM * kTileN; i += kTileThreads) {
    const int m = i / kTileN, nn = i % kTileN, t = mb + m, n = nb + nn;
    if (t < a.rows && n < a.N) store<NORM>(a, t, n, cs[m * kTileLdC + nn], NORM ? inv_rms[m] : 1.0f);
  }
}

static_assert(kMatVecLoads == 4, "launch_col's default case instantiates the default");

// The column kernel for ROWS rows a block, with the weight loads in flight that the step asks for (a.col_loads).
template <DType DT, bool NORM, int ROWS>
void launch_col(const MatMulArgs& a, const Launch& l) {
  const dim3 grid((a.N + kColWarps - 1) / kColWarps, (a.rows + ROWS - 1) / ROWS);
  switch (a.col_loads) {
    case 1:
      launch_kernel(matmul_col_kernel<DT, NORM, ROWS, 1>, grid, kColThreads, 0, l, a);
      break;
    case 8:
      launch_kernel(matmul_col_kernel<DT, NORM, ROWS, 8>, grid, kColThreads, 0, l, a);
      break;
    default:
      launch_kernel(matmul_col_kernel<DT, NORM, ROWS, 4>, grid, kColThreads, 0, l, a);
      break;
  }
}

// The staged kernel's shared memory for the step's rows, or 0 where the step does not run it (--tune matvec).
inline size_t staged_shared(const MatMulArgs& a) {
  const size_t shared = size_t(std::min(a.rows, kColRows)) * size_t(a.K) * sizeof(float);
  return a.staged && shared + kSharedSlack <= kStagedMaxShared ? shared : 0;
}

template <DType DT, bool NORM>
void launch_dtype(const MatMulArgs& a, const Launch& l) {
  if (a.rows >= a.tiled_min_rows) {
    const dim3 grid((a.N + kTileN - 1) / kTileN, (a.rows + kTileM - 1) / kTileM);
    launch_kernel(matmul_tiled_kernel<DT, NORM>, grid, kTileThreads, 0, l, a);
  } else if (const size_t shared = staged_shared(a); shared > 0) {
    const dim3 grid((a.N + kStagedWarps - 1) / kStagedWarps, (a.rows + kColRows - 1) / kColRows);
    launch_kernel(matmul_staged_kernel<DT, NORM>, grid, kStagedThreads, shared, l, a);
  } else if (a.rows == 1) {
    launch_col<DT, NORM, 1>(a, l);
  } else {
    launch_col<DT, NORM, kColRows>(a, l);
  }
}

// Picks the kernel for the step's rows and the weight's dtype. rows / 64 and rows / 8 stay far below the grid's
// 65535 in y (rows is at most a step's tokens, kMaxStepTokens = 65536 in model/forward.h).
template <bool NORM>
void launch_matmul_family(const MatMulArgs& a, const Launch& l) {
  MOLE_CUDA_ASSERT(a.x != a.y);
  MOLE_CUDA_ASSERT(a.rows <= 65535 * kColRows);
  if (a.rows == 0 || a.N == 0) return;
  if (l.program) {  // the column kernel's work, a warp per column (persistent_step.cuh)
    // Only where the graph would run the column kernel too, so that both give the same bits.
    if (a.rows != 1) l.program->refuse("a matrix product of several rows");
    if (a.rows >= a.tiled_min_rows) l.program->refuse("--tune tiled-min-rows=" + std::to_string(a.tiled_min_rows));
    if (staged_shared(a) > 0) l.program->refuse("--tune matvec=staged");
    StepItemOp& op = l.program->add(NORM ? StepItemKind::NormMatMul : StepItemKind::MatMul,
                                    (a.N + kPersistentWarps - 1) / kPersistentWarps);
    op.mm = a;
    op.weights = a.w;
    op.weight_bytes = size_t(a.N) * size_t(a.K) * (a.dtype == DType::F32 ? 4 : 2);
    return;
  }
  switch (a.dtype) {
    case DType::F32:
      launch_dtype<DType::F32, NORM>(a, l);
      break;
    case DType::F16:
      launch_dtype<DType::F16, NORM>(a, l);
      break;
    case DType::BF16:
      launch_dtype<DType::BF16, NORM>(a, l);
      break;
  }
}

}  // namespace
}  // namespace mole::cuda
