#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef MATMUL_SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
// norm_matmul (fused: RMSNorm into the following product, optional GELU after it):
//   y (T, N) = act(rmsnorm(x (T, K)) * nw (K) @ W (N, K)^T), rmsnorm(x) = x / sqrt(mean(x^2) + eps),
//   act = the exact GELU when GELU != 0. Computed as act(dot / sqrt(ss / K + eps)) with dot = sum x * nw * W and
//   ss = sum x^2 summed by the same lanes over the same loads (matmul_core.glsl), so the normed rows are never
//   stored and x is read once; the result differs from cpu's norm-then-product by rounding only.
//
// Bindings: 0 x  float (T, K)
//           1 W  (N, K) weight, uint words of dtype WDTYPE
//           2 y  float (T, N)
//           3 nw (K) norm weight, uint words of dtype NDTYPE
// Push:     T, K, N, eps (float)
// Spec:     WDTYPE (id 0), local size (id 1; a power of two >= 32, <= 256 for the shared-memory variant: it keeps
//           2 * 8 floats per invocation), NDTYPE (id 3), GELU (id 4; 0 or 1), LOADS (id 6; weight loads in flight per
//           lane, matmul_core.glsl)
// Variants: norm_matmul_subgroup (-DMATMUL_SUBGROUP, needs subgroup arithmetic) and norm_matmul_tiled
//           (-DMATMUL_TILED, matmul_tiled.glsl, for many token rows; local size 256).
// mole-variant: subgroup MATMUL_SUBGROUP
// mole-variant: tiled MATMUL_TILED
// mole-chain
#define MATMUL_NORM
#include "common.glsl"
#include "gelu.glsl"

layout(constant_id = 0) const uint WDTYPE = DTYPE_F32;
layout(constant_id = 3) const uint NDTYPE = DTYPE_F32;
layout(constant_id = 4) const uint GELU = 0u;

layout(std430, set = 0, binding = 0) MOLE_DATA readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 0) MOLE_DATA readonly buffer X4 { vec4 x4[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { uint w[]; };
layout(std430, set = 0, binding = 1) readonly buffer W4 { uvec4 w4[]; };
layout(std430, set = 0, binding = 2) MOLE_DATA writeonly buffer Y { float y[]; };
layout(std430, set = 0, binding = 3) readonly buffer NW { uint nw[]; };

layout(push_constant) uniform Push {
  uint T;
  uint K;
  uint N;
  float eps;
  MOLE_CHAIN_PUSH
} pc;

DEFINE_WEIGHT_LOADER(load_w, w, WDTYPE)
DEFINE_WEIGHT_LOADER(load_norm, nw, NDTYPE)

float finish(float dot, float ss) {
  const float v = dot * (1.0 / sqrt(ss / float(pc.K) + pc.eps));
  return GELU != 0u ? gelu(v) : v;
}

void store(uint o, float v) {
  y[o] = v;
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
