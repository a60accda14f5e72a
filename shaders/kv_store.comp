#version 450
#extension GL_GOOGLE_include_directive : require
// kv_store: writes each token's key or value row into its sequence's cache row:
//   cache[(slot[t] * ctx + pos[t]) * n + i] = src[t * n + i]
//
// Bindings: 0 src   float (T, n)
//           1 cache float (B * S, n)
//           2 slot  int (T), in [0, B)
//           3 pos   int (T), in [0, S)
// Push:     T, n (row width, KVH * hd), ctx (S, rows per slot)
// Spec:     local size (id 1)
// Dispatch: (min(ceil(T * n / local size), 65535), 1, 1); one invocation per element, grid-stride.
#include "common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Src { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Cache { float cache[]; };
layout(std430, set = 0, binding = 2) readonly buffer Slot { int slot[]; };
layout(std430, set = 0, binding = 3) readonly buffer Pos { int pos[]; };

layout(push_constant) uniform Push {
  uint T;
  uint n;
  uint ctx;
} pc;

void main() {
  const uint count = pc.T * pc.n;
  for (uint g = gl_GlobalInvocationID.x; g < count; g += gl_NumWorkGroups.x * BLOCK) {
    const uint t = g / pc.n;
    const uint i = g % pc.n;
    cache[(uint(slot[t]) * pc.ctx + uint(pos[t])) * pc.n + i] = src[g];
  }
}
