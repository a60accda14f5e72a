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
// For tests: matmul's AVX2 path on (where the CPU has AVX2) or off; returns whether it is now on.
bool use_avx2(bool on);
// Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))), in place over n values.
void gelu(float* x, int64_t n);
// In-place softmax over n values (max-subtracted).
void softmax(float* x, int64_t n);
// Dot product with 8 independent float32 accumulators (so the compiler can vectorise without -ffast-math).
float dot(const float* a, const float* b, int64_t n);

}  // namespace mole::cpu
