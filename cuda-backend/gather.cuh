// gather: dst (R, n) = src (T, n) [out_rows[r]], the token rows whose logits a step returns (OpKind::Gather in
// model/backend.h, shaders/gather.comp).
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct GatherArgs {
  const float* src = nullptr;         // (T, n)
  const int32_t* out_rows = nullptr;  // (R), each in [0, T)
  float* dst = nullptr;               // (R, n)
  int R = 0, n = 0;
};
void launch_gather(const GatherArgs& a, const Launch& l);

}  // namespace mole::cuda
