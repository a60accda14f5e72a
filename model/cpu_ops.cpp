// Float32 loops for the CPU reference backend and for computing the lookup table on the CPU.
#include "model/cpu_ops.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>  // the AVX2 build of cpu_tiles.inc
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "model/half.h"
#include "model/parallel.h"

namespace mole::cpu {

void rmsnorm(const float* x, const TensorView& w, float eps, int64_t T, int64_t D, float* y) {
  std::vector<float> wf(D);
  w.to_f32(0, D, wf.data());
  for (int64_t t = 0; t < T; t++) {
    const float* xr = x + t * D;
    float ss = dot(xr, xr, D);
    float scale = 1.0f / std::sqrt(ss / float(D) + eps);
    for (int64_t i = 0; i < D; i++) y[t * D + i] = wf[i] * (xr[i] * scale);
  }
}

namespace {

// The tile kernels, compiled for the baseline instruction set and, on x86, for AVX2 with F16C (GCC's target pragma,
// clang's attribute pragma; every AVX2 CPU has F16C; no FMA: a fused multiply-add would round differently from dot()).
// Their helpers are always inlined, so no call passes a vector: GCC's note that passing one would differ between AVX
// and baseline builds does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#define MOLE_TILES_AVX2 0
namespace baseline {
#include "model/cpu_tiles.inc"
}  // namespace baseline
#undef MOLE_TILES_AVX2
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,f16c")
#endif
#define MOLE_TILES_AVX2 1
namespace avx2 {
#include "model/cpu_tiles.inc"
}  // namespace avx2
#undef MOLE_TILES_AVX2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
// F16C by CPUID (leaf 1, ECX): clang's __builtin_cpu_supports does not know it.
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
const bool g_has_avx2 = __builtin_cpu_supports("avx2") && has_f16c();
#else
namespace avx2 = baseline;  // never used: no AVX2 off x86
const bool g_has_avx2 = false;
#endif
bool g_avx2 = g_has_avx2;

}  // namespace

bool use_avx2(bool on) {
  g_avx2 = on && g_has_avx2;
  return g_avx2;
}
bool avx2() {
  return g_avx2;
}

void matmul(const float* x, const TensorView& w, int64_t T, int64_t K, int64_t N, float* y, bool accumulate) {
  // Parallel over output columns, four weight rows at a time, against all T rows of x in tiles of four weight rows by
  // two rows of x. F32 weights, and any for at most two rows of x (decode), are read in place; otherwise each thread
  // converts its four rows to float32 once, for all T rows of x.
  const bool in_place = w.dtype == DType::F32 || T <= 2;
  const size_t row_bytes = size_t(K) * dtype_size(w.dtype);
  const auto dot_rows_in_place = g_avx2 ? avx2::dot_rows_in_place : baseline::dot_rows_in_place;
  const auto row_to_f32 = g_avx2 ? avx2::row_to_f32 : baseline::row_to_f32;
  const auto dot_rows_converted = g_avx2 ? avx2::dot_rows_converted : baseline::dot_rows_converted;
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        std::vector<float> rows(in_place ? 0 : size_t(4 * K)), out(size_t(4 * T));
        const float* wr[4] = {rows.data(), rows.data() + K, rows.data() + 2 * K, rows.data() + 3 * K};
        for (int64_t n = n0; n < n1; n += 4) {
          const int count = int(std::min<int64_t>(4, n1 - n));
          const uint8_t* wb[4];  // the rows' bytes (a short tile repeats its last row)
          for (int r = 0; r < 4; r++) wb[r] = w.data + size_t(n + std::min(r, count - 1)) * row_bytes;
          if (in_place) {
            dot_rows_in_place(w.dtype, x, wb, 4 * row_bytes, count, T, K, out.data());
          } else {
            for (int r = 0; r < count; r++) row_to_f32(w.dtype, wb[r], K, rows.data() + r * K);
            dot_rows_converted(x, wr, count, T, K, out.data());
          }
          for (int64_t t = 0; t < T; t++) {
            for (int r = 0; r < count; r++) {
              const float v = out[size_t(t * count + r)];
              float& dst = y[t * N + n + r];
              dst = accumulate ? dst + v : v;
            }
          }
        }
      },
      16);
}

void gelu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * float(M_SQRT1_2)));
}

void softmax(float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; i++) m = std::max(m, x[i]);
  float s = 0;
  for (int64_t i = 0; i < n; i++) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  for (int64_t i = 0; i < n; i++) x[i] /= s;
}

}  // namespace mole::cpu
