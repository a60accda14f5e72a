#version 450
#extension GL_GOOGLE_include_directive : require
// attention_store: attention's KV store as a pass of its own, for steps where a sequence has several tokens
// (attention_store_pass() in model/attention_splits.h; in other steps attention.comp stores them itself). Writes each
// token's keys and values, the last 2 * kvd columns of its row of the q/k/v product (rows of qd + 2 * kvd: q, k, v
// side by side), into its sequence's cache row (keys, then values):
//   cache[(slot[t] * ctx + pos[t]) * 2 * kvd + i] = src[t * (qd + 2 * kvd) + qd + i],   i < 2 * kvd
// and, when hd > 0, each key head (i < kvd) of hd rotated first by token t's angles, rotate_half form as the CPU's
// rope(): for j < hd/2: x1 = head[j], x2 = head[j + hd/2]; out[j] = x1 * cos[t][j] - x2 * sin[t][j];
//                       out[j + hd/2] = x2 * cos[t][j] + x1 * sin[t][j]
//
// Bindings: 0 src   float (T, qd + 2 * kvd)
//           1 cache float (B * S, 2 * kvd)
//           2 slot  int (T), in [0, B)
//           3 pos   int (T), in [0, S)
//           4 cos   float (T, hd / 2)
//           5 sin   float (T, hd / 2)
// Push:     T, qd (H * hd), kvd (KVH * hd), ctx (S, rows per slot), hd (0: no rotation)
// Spec:     local size (id 1)
// Dispatch: (min(ceil(T * 2 * kvd / local size), 65535), 1, 1); one invocation per element, grid-stride.
#include "common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Src { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Cache { float cache[]; };
layout(std430, set = 0, binding = 2) readonly buffer Slot { int slot[]; };
layout(std430, set = 0, binding = 3) readonly buffer Pos { int pos[]; };
layout(std430, set = 0, binding = 4) readonly buffer Cos { float cos_t[]; };
layout(std430, set = 0, binding = 5) readonly buffer Sin { float sin_t[]; };

layout(push_constant) uniform Push {
  uint T;
  uint qd;
  uint kvd;
  uint ctx;
  uint hd;
} pc;

void main() {
  const uint width = 2u * pc.kvd, count = pc.T * width;
  for (uint g = gl_GlobalInvocationID.x; g < count; g += gl_NumWorkGroups.x * BLOCK) {
    const uint t = g / width;
    const uint i = g % width;
    const uint at = t * (pc.qd + width) + pc.qd + i;  // the element in src
    float v = src[at];
    if (pc.hd != 0u && i < pc.kvd) {
      const uint half_hd = pc.hd / 2u, j = i % pc.hd, f = j % half_hd;
      const float c = cos_t[t * half_hd + f], s = sin_t[t * half_hd + f];
      v = j < half_hd ? v * c - src[at + half_hd] * s : v * c + src[at - half_hd] * s;
    }
    cache[(uint(slot[t]) * pc.ctx + uint(pos[t])) * width + i] = v;
  }
}
