// embed: dst (T, D) = table (V, D) [ids[t]], converted to float32 (OpKind::Embed in model/backend.h; the CPU's loop
// in model/cpu_backend.cpp, shaders/embed.comp).
#pragma once

#include "cuda-backend/common.cuh"

namespace mole::cuda {

struct EmbedArgs {
  const void* table = nullptr;  // (V, D) in `dtype`
  DType dtype = DType::F32;
  const int32_t* ids = nullptr;  // (T), each in [0, V)
  float* dst = nullptr;          // (T, D)
  int T = 0, D = 0;
};
void launch_embed(const EmbedArgs& a, const Launch& l);

}  // namespace mole::cuda
