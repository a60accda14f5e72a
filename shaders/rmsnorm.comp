#version 450
#extension GL_GOOGLE_include_directive : require
// rmsnorm: dst (rows, D) = weight (D) * (src * (1 / sqrt(mean(src^2) + eps))), row by row, in the operation order
// of cpu::rmsnorm (the sum of squares is reduced in a different order, so results differ by rounding only).
//
// Bindings: 0 src    float (rows, D)
//           1 weight (D) weight, uint words of dtype WDTYPE
//           2 dst    float (rows, D); may be the same buffer as src (each row is reduced before any of it is
//                    written, and each invocation then reads and writes only its own elements)
// Push:     rows, D, eps (float)
// Spec:     WDTYPE (id 0), local size (id 1)
// Dispatch: (min(rows, 65535), 1, 1); group g handles rows g, g + groups, ...
#define MOLE_WORKGROUP_REDUCE
#include "common.glsl"

layout(constant_id = 0) const uint WDTYPE = DTYPE_F32;

// No readonly/writeonly: src and dst may alias.
layout(std430, set = 0, binding = 0) buffer Src { float src[]; };
layout(std430, set = 0, binding = 1) readonly buffer Weight { uint weight[]; };
layout(std430, set = 0, binding = 2) buffer Dst { float dst[]; };

layout(push_constant) uniform Push {
  uint rows;
  uint D;
  float eps;
} pc;

DEFINE_WEIGHT_LOADER(load_weight, weight, WDTYPE)

void main() {
  for (uint row = gl_WorkGroupID.x; row < pc.rows; row += gl_NumWorkGroups.x) {
    const uint base = row * pc.D;
    float ss = 0.0;
    for (uint i = TID; i < pc.D; i += BLOCK) {
      const float v = src[base + i];
      ss += v * v;
    }
    ss = workgroup_sum(ss);
    const float scale = 1.0 / sqrt(ss / float(pc.D) + pc.eps);
    for (uint i = TID; i < pc.D; i += BLOCK) dst[base + i] = load_weight(i) * (src[base + i] * scale);
  }
}
