#version 450
#extension GL_GOOGLE_include_directive : require
// add: dst (count) += src (count), element-wise.
//
// Bindings: 0 dst float (count), updated in place
//           1 src float (count)
// Push:     count
// Spec:     local size (id 1)
// Dispatch: (min(ceil(count / local size), 65535), 1, 1); one invocation per element, grid-stride.
#include "common.glsl"

layout(std430, set = 0, binding = 0) buffer Dst { float dst[]; };
layout(std430, set = 0, binding = 1) readonly buffer Src { float src[]; };

layout(push_constant) uniform Push {
  uint count;
} pc;

void main() {
  for (uint i = gl_GlobalInvocationID.x; i < pc.count; i += gl_NumWorkGroups.x * BLOCK) dst[i] += src[i];
}
