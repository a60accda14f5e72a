#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef MATMUL_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
// matmul: y (T, N) = x (T, K) @ W (N, K)^T, or y += that when accumulate != 0, plus an addend when add != 0. The algorithm and its dispatch are
// in matmul_core.glsl (few token rows: decode) and matmul_tiled.glsl (many: prefill, reparameterization).
//
// Bindings: 0 x float (T, K)
//           1 W   (N, K) weight, uint words of dtype WDTYPE
//           2 y   float (T, N)
//           3 a   float (T, N), an addend: y = (y + x @ W^T) + a, in that order, when add != 0 (the LUT sums
//                 added with the down projection); when add = 0 the host binds x here and it is not read
// Push:     T, K, N, accumulate (0 or 1), add (0 or 1)
// Spec:     WDTYPE (id 0), local size (id 1; a power of two >= 32, <= 512 for the shared-memory variant), LOADS (id 6;
//           weight loads in flight per lane, matmul_core.glsl)
// Variants: matmul_subgroup, built with -DMATMUL_SUBGROUP (needs subgroup arithmetic), and matmul_tiled, built
//           with -DMATMUL_TILED (matmul_tiled.glsl, for many token rows; local size 256); cmake/shaders.cmake reads
//           the lines below.
// mole-variant: subgroup MATMUL_SUBGROUP
// mole-variant: tiled MATMUL_TILED
// mole-chain
#include "common.glsl"

layout(constant_id = 0) const uint WDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) MOLE_DATA readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 0) MOLE_DATA readonly buffer X4 { vec4 x4[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { uint w[]; };
layout(std430, set = 0, binding = 1) readonly buffer W4 { uvec4 w4[]; };
layout(std430, set = 0, binding = 2) MOLE_DATA buffer Y { float y[]; };
layout(std430, set = 0, binding = 3) MOLE_DATA readonly buffer A { float addend[]; };

layout(push_constant) uniform Push {
  uint T;
  uint K;
  uint N;
  uint accumulate;
  uint add;
  MOLE_CHAIN_PUSH
} pc;

DEFINE_WEIGHT_LOADER(load_w, w, WDTYPE)

float finish(float dot, float ss) {
  return dot;
}

void store(uint o, float v) {
  float r = pc.accumulate != 0u ? y[o] + v : v;
  if (pc.add != 0u) r += addend[o];
  y[o] = r;
}

#ifdef MATMUL_TILED
#include "matmul_tiled.glsl"
#else
#include "matmul_core.glsl"
#endif

void MOLE_MAIN() {
  matmul_main();
}

#include "chain.glsl"
