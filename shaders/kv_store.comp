#version 450
#extension GL_GOOGLE_include_directive : require
// kv_store (with RoPE fused for keys): writes each token's key or value row into its sequence's cache row,
//   cache[(slot[t] * ctx + pos[t]) * n + i] = src[t * n + i]                      when hd = 0 (values)
// and, when hd > 0 (keys), each head of hd rotated first by token t's angles, rotate_half form as the CPU's rope():
//   for j < hd/2: x1 = head[j], x2 = head[j + hd/2]; out[j] = x1 * cos[t][j] - x2 * sin[t][j];
//                 out[j + hd/2] = x2 * cos[t][j] + x1 * sin[t][j]
//
// Bindings: 0 src   float (T, n)
//           1 cache float (B * S, n)
//           2 slot  int (T), in [0, B)
//           3 pos   int (T), in [0, S)
//           4 cos   float (T, hd / 2)
//           5 sin   float (T, hd / 2)
// Push:     T, n (row width, KVH * hd), ctx (S, rows per slot), hd (0: no rotation)
// Spec:     local size (id 1)
// Dispatch: (min(ceil(T * n / local size), 65535), 1, 1); one invocation per element, grid-stride.
#include "common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Src { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Cache { float cache[]; };
layout(std430, set = 0, binding = 2) readonly buffer Slot { int slot[]; };
layout(std430, set = 0, binding = 3) readonly buffer Pos { int pos[]; };
layout(std430, set = 0, binding = 4) readonly buffer Cos { float cos_t[]; };
layout(std430, set = 0, binding = 5) readonly buffer Sin { float sin_t[]; };

layout(push_constant) uniform Push {
  uint T;
  uint n;
  uint ctx;
  uint hd;
} pc;

void main() {
  const uint count = pc.T * pc.n;
  for (uint g = gl_GlobalInvocationID.x; g < count; g += gl_NumWorkGroups.x * BLOCK) {
    const uint t = g / pc.n;
    const uint i = g % pc.n;
    float v = src[g];
    if (pc.hd != 0u) {
      const uint half_hd = pc.hd / 2u, j = i % pc.hd, f = j % half_hd;
      const float c = cos_t[t * half_hd + f], s = sin_t[t * half_hd + f];
      v = j < half_hd ? v * c - src[g + half_hd] * s : v * c + src[g - half_hd] * s;
    }
    cache[(uint(slot[t]) * pc.ctx + uint(pos[t])) * pc.n + i] = v;
  }
}
