#version 450
#extension GL_GOOGLE_include_directive : require
// rope: rotates x (T, n * hd) in place, each head's two halves as pairs: for token t, head h, i < hd / 2,
//   x1 = x[i], x2 = x[i + hd/2];  x[i] = x1 * cos[t][i] - x2 * sin[t][i];  x[i + hd/2] = x2 * cos[t][i] + x1 * sin[t][i]
// (rotate_half form, as the CPU backend's rope()).
//
// Bindings: 0 x   float (T, n * hd), rotated in place
//           1 cos float (T, hd / 2)
//           2 sin float (T, hd / 2)
// Push:     T, n (heads), hd (head dim)
// Spec:     local size (id 1)
// Dispatch: (min(ceil(T * n * (hd / 2) / local size), 65535), 1, 1); one invocation per (t, h, i), grid-stride.
#include "common.glsl"

layout(std430, set = 0, binding = 0) buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Cos { float cos_t[]; };
layout(std430, set = 0, binding = 2) readonly buffer Sin { float sin_t[]; };

layout(push_constant) uniform Push {
  uint T;
  uint n;
  uint hd;
} pc;

void main() {
  const uint half_hd = pc.hd / 2u;
  const uint per_token = pc.n * half_hd;
  const uint count = pc.T * per_token;
  for (uint g = gl_GlobalInvocationID.x; g < count; g += gl_NumWorkGroups.x * BLOCK) {
    const uint t = g / per_token;
    const uint h = (g % per_token) / half_hd;
    const uint i = g % half_hd;
    const uint u = (t * pc.n + h) * pc.hd + i;
    const float c = cos_t[t * half_hd + i];
    const float s = sin_t[t * half_hd + i];
    const float x1 = x[u];
    const float x2 = x[u + half_hd];
    x[u] = x1 * c - x2 * s;
    x[u + half_hd] = x2 * c + x1 * s;
  }
}
