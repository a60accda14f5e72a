// Float32 loops for the CPU reference backend and for computing the lookup table on the CPU.
#include "model/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

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

// Eight float32 lanes: the dot product's eight accumulators (dot() in cpu_ops.h), one vector register with AVX. Only
// ever inside one function (the helpers are always inlined), so no call passes one: GCC's note that passing it
// would differ between AVX and baseline builds does not apply.
typedef float v8 __attribute__((vector_size(32)));
#pragma GCC diagnostic ignored "-Wpsabi"

__attribute__((always_inline)) inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// y[c][r] = dot(x[c], w[r]) for R weight rows and C rows of x, over K, with the same per-lane sums, combination and
// tail as dot(), so each value is dot()'s bit for bit; but each weight and x vector loaded serves C or R products.
// always_inline: compiled once per caller below, for that caller's instruction set.
template <int R, int C>
__attribute__((always_inline)) inline void dot_tile(const float* x, const float* const* w, int64_t K, float* y) {
  v8 acc[R][C] = {};
  int64_t i = 0;
  for (; i + 8 <= K; i += 8) {
    v8 wv[R];
    for (int r = 0; r < R; r++) wv[r] = load8(w[r] + i);
    for (int c = 0; c < C; c++) {
      const v8 xv = load8(x + c * K + i);
      for (int r = 0; r < R; r++) acc[r][c] += xv * wv[r];
    }
  }
  for (int r = 0; r < R; r++) {
    for (int c = 0; c < C; c++) {
      const v8& a = acc[r][c];
      float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
      for (int64_t j = i; j < K; j++) s += x[c * K + j] * w[r][j];
      y[c * R + r] = s;
    }
  }
}

// One tile of R weight rows by two rows of x, or one where `two` is false (x's last row).
template <int R>
__attribute__((always_inline)) inline void dot_tile_rows(const float* x, const float* const* w, int64_t K, bool two,
                                                         float* tile) {
  if (two)
    dot_tile<R, 2>(x, w, K, tile);
  else
    dot_tile<R, 1>(x, w, K, tile);
}

// The products of rows (already float32) w[0..rows) with all T rows of x, into out[t * rows + r]: 4 x 2 tiles,
// narrower at the edges.
__attribute__((always_inline)) inline void dot_rows(const float* x, const float* const* w, int rows, int64_t T,
                                                    int64_t K, float* out) {
  float tile[8];
  for (int64_t t = 0; t < T; t += 2) {
    const bool two = t + 1 < T;
    const float* xt = x + t * K;
    if (rows == 4) dot_tile_rows<4>(xt, w, K, two, tile);
    if (rows == 3) dot_tile_rows<3>(xt, w, K, two, tile);
    if (rows == 2) dot_tile_rows<2>(xt, w, K, two, tile);
    if (rows == 1) dot_tile_rows<1>(xt, w, K, two, tile);
    for (int c = 0; c < (two ? 2 : 1); c++)
      for (int r = 0; r < rows; r++) out[(t + c) * rows + r] = tile[c * rows + r];
  }
}

// AVX2 (no FMA: a fused multiply-add would round differently from dot()) where the CPU has it, else the baseline.
void dot_rows_baseline(const float* x, const float* const* w, int rows, int64_t T, int64_t K, float* out) {
  dot_rows(x, w, rows, T, K, out);
}
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void dot_rows_avx2(const float* x, const float* const* w, int rows, int64_t T,
                                                   int64_t K, float* out) {
  dot_rows(x, w, rows, T, K, out);
}
const bool g_has_avx2 = __builtin_cpu_supports("avx2");
#else
void dot_rows_avx2(const float* x, const float* const* w, int rows, int64_t T, int64_t K, float* out) {
  dot_rows(x, w, rows, T, K, out);  // never called: no AVX2 off x86
}
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
  // Parallel over output columns: each thread converts its weight rows once, four at a time, and runs them against
  // all T rows of x in tiles of four weight rows by two rows of x.
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        std::vector<float> rows(size_t(4 * K)), out(size_t(4 * T));
        const float* wr[4] = {rows.data(), rows.data() + K, rows.data() + 2 * K, rows.data() + 3 * K};
        for (int64_t n = n0; n < n1; n += 4) {
          const int count = int(std::min<int64_t>(4, n1 - n));
          for (int r = 0; r < count; r++) w.to_f32((n + r) * K, K, rows.data() + r * K);
          if (g_avx2)
            dot_rows_avx2(x, wr, count, T, K, out.data());
          else
            dot_rows_baseline(x, wr, count, T, K, out.data());
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
