// router_probs: the router's weights of the step's output rows (OpKind::RouterProbs in model/backend.h,
// shaders/router_probs.comp), for `mole run --router-trace` and mole-studio. For each output row r, token
// t = out_rows[r]:
//   logit_e = (sum_d x[t][d] * norm[d] * Wr[e][d]) / sqrt(mean_d x[t][d]^2 + eps)   (= rmsnorm(x) * norm @ Wr^T)
//   dst[r][layer * E + e] = softmax(logit)_e  (max-subtracted, summed in expert order, as cpu::softmax)
// computed in router_lut.cu's order (the same block size, expert chunks and reductions), so they are the weights its
// LUT sum used.
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct RouterProbsArgs {
  const float* x = nullptr;           // (T, D) the residual stream
  const int32_t* out_rows = nullptr;  // (R), each in [0, T)
  const void* router = nullptr;       // (E, D) the router's weight in router_dtype
  DType router_dtype = DType::F32;
  const float* norm = nullptr;  // (D) the post-attention norm's weight, float32
  float* dst = nullptr;         // (R, cols); columns [layer * E, (layer + 1) * E) of each row are written
  int R = 0, E = 0, D = 0, layer = 0, cols = 0;  // cols = L * E
  float eps = 0.0f;
};
void launch_router_probs(const RouterProbsArgs& a, const Launch& l);

}  // namespace mole::cuda
