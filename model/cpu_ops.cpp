// Float32 loops for the CPU reference backend and for computing the lookup table on the CPU.
#include "model/cpu_ops.h"

#include <cmath>
#include <vector>

#include "model/parallel.h"

namespace mole::cpu {

float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

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

void matmul(const float* x, const TensorView& w, int64_t T, int64_t K, int64_t N, float* y, bool accumulate) {
  // Parallel over output columns: each thread converts its weight rows once and reuses them for all T rows of x.
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        std::vector<float> row(K);
        for (int64_t n = n0; n < n1; n++) {
          w.to_f32(n * K, K, row.data());
          for (int64_t t = 0; t < T; t++) {
            float v = dot(x + t * K, row.data(), K);
            y[t * N + n] = accumulate ? y[t * N + n] + v : v;
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
