// norm_matmul (fused): y (rows, N) = act(rmsnorm(x (rows, K)) * norm (K) @ W (N, K)^T), rmsnorm(x) = x / sqrt(mean(x^2)
// + eps), act = the exact GELU when gelu, else none (OpKind::NormMatMul in model/backend.h: the q/k/v product, the
// MLP's up and the lm_head). Computed as act(dot(x * norm, W) / sqrt(ss / K + eps)) with ss = sum x^2, so the normed
// rows are never stored; the result differs from the CPU's norm-then-product by rounding only. Arguments: MatMulArgs
// with norm, eps and gelu (accumulate and addend unused).
#pragma once

#include "cuda-backend/matmul.cuh"

namespace mole::cuda {

void launch_norm_matmul(const MatMulArgs& a, const Launch& l);

}  // namespace mole::cuda
