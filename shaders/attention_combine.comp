#version 450
#extension GL_GOOGLE_include_directive : require
// attention_combine: the second pass of split-K attention. attention_split (attention.comp) left, per (t, h) pair
// and split s, the running max m_s, the running sum l_s and the unnormalised accumulator acc_s[hd] of its keys; this
// merges them, in split order, into the pair's output row:
//   M = max_s m_s,  out[pair][d] = sum_s exp(m_s - M) * acc_s[d] / sum_s exp(m_s - M) * l_s
// over the splits that had keys (l_s > 0; split 0 always has). One invocation per output element; every invocation
// of a pair reads the same few headers (splits <= 32), so nothing is shared and there is no barrier.
//
// Bindings: 0 part  float (T * H, splits, 2 + hd), per (pair, split) {m, l, acc[hd]}
//           1 out   float (T, H * hd)
// Push:     pairs (T * H), hd, splits
// Dispatch: (min(ceil(pairs * hd / local size), 65535), 1, 1); grid-stride over the elements.
#include "common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer Part { float part[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float out_[]; };

layout(push_constant) uniform Push {
  uint pairs;
  uint hd;
  uint splits;
} pc;

void main() {
  const uint stride = pc.hd + 2u;
  for (uint i = gl_GlobalInvocationID.x; i < pc.pairs * pc.hd; i += gl_NumWorkGroups.x * BLOCK) {
    const uint pair = i / pc.hd, d = i % pc.hd;
    const uint first = pair * pc.splits * stride;  // split 0's record
    float m = part[first];
    for (uint s = 1u; s < pc.splits; s++)
      if (part[first + s * stride + 1u] > 0.0) m = max(m, part[first + s * stride]);
    float l = 0.0, o = 0.0;
    for (uint s = 0u; s < pc.splits; s++) {
      const uint rec = first + s * stride;
      const float l_s = part[rec + 1u];
      if (l_s > 0.0) {
        const float w = exp(part[rec] - m);
        l += l_s * w;
        o += part[rec + 2u + d] * w;
      }
    }
    out_[i] = o / l;
  }
}
