#version 450
#extension GL_GOOGLE_include_directive : require
// gather: dst (R, n) = src (T, n) [out_rows[r]], the token rows whose logits a step returns.
//
// Bindings: 0 src      float (T, n)
//           1 out_rows int (R), each in [0, T)
//           2 dst      float (R, n)
// Push:     R, n
// Spec:     local size (id 1)
// Dispatch: (min(ceil(R * n / local size), 65535), 1, 1); one invocation per element, grid-stride.
// mole-chain
#include "common.glsl"

layout(std430, set = 0, binding = 0) MOLE_DATA readonly buffer Src { float src[]; };
layout(std430, set = 0, binding = 1) readonly buffer OutRows { int out_rows[]; };
layout(std430, set = 0, binding = 2) MOLE_DATA writeonly buffer Dst { float dst[]; };

layout(push_constant) uniform Push {
  uint R;
  uint n;
  MOLE_CHAIN_PUSH
} pc;

void MOLE_MAIN() {
  const uint count = pc.R * pc.n;
  for (uint g = gl_GlobalInvocationID.x; g < count; g += gl_NumWorkGroups.x * BLOCK) {
    const uint r = g / pc.n;
    const uint i = g % pc.n;
    dst[g] = src[uint(out_rows[r]) * pc.n + i];
  }
}

#include "chain.glsl"
