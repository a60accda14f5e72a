// argmax: dst[r] = the index of the largest of src row r (R, n), the lowest such index on ties (as std::max_element
// in the CPU reference), written as a float (exact: n < 2^24). Greedy decoding reads these R floats instead of the
// logits (OpKind::Argmax in model/backend.h, shaders/argmax.comp).
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct ArgmaxArgs {
  const float* src = nullptr;  // (R, n) logits
  float* dst = nullptr;        // (R)
  int R = 0, n = 0;
};
void launch_argmax(const ArgmaxArgs& a, const Launch& l);

}  // namespace mole::cuda
