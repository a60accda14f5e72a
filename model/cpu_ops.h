// Plain float32 kernels of the CPU reference: the loops every GPU op is checked against.
// Shapes: x (T, K) row-major float32; weights are checkpoint tensors (N, K) in F32/F16/BF16.
#pragma once

#include <cstdint>

#include "model/safetensors.h"

namespace mole::cpu {

// y[t] = w * x[t] / sqrt(mean(x[t]^2) + eps), in float32. x and y may alias.   x, y: (T, D); w: (D) any dtype
void rmsnorm(const float* x, const TensorView& w, float eps, int64_t T, int64_t D, float* y);
// y (T, N) = x (T, K) @ w(N, K)^T, accumulating in float32, rows of w converted once per call and split over
// threads by output column. If accumulate, adds into y instead of overwriting. Each value is dot() of its two rows
// bit for bit (computed in tiles, with AVX2 where the CPU has it, in the same order).
void matmul(const float* x, const TensorView& w, int64_t T, int64_t K, int64_t N, float* y, bool accumulate = false);
// Whether the AVX2 paths (matmul, the CPU backend's attention) run: where the CPU has AVX2, unless a test turned
// them off with use_avx2(false). use_avx2 returns whether they are now on.
bool avx2();
bool use_avx2(bool on);
// Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))), in place over n values.
void gelu(float* x, int64_t n);
// In-place softmax over n values (max-subtracted).
void softmax(float* x, int64_t n);
// Dot product with 8 independent float32 accumulators (so the compiler can vectorise without -ffast-math). Inline,
// so that a caller compiled for AVX2 (the CPU backend's attention) holds the 8 lanes in one register.
__attribute__((always_inline)) inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

}  // namespace mole::cpu
