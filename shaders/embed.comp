#version 450
#extension GL_GOOGLE_include_directive : require
// embed: dst (T, D) = table (V, D) [ids[t]], converted to float32.
//
// Bindings: 0 table (V, D) weight, uint words of dtype WDTYPE
//           1 ids   int (T), each in [0, V)
//           2 dst   float (T, D)
// Push:     T, D
// Spec:     WDTYPE (id 0), local size (id 1)
// Dispatch: (min(ceil(D / local size), 65535), min(T, 65535), 1): x blocks of a row's elements, y tokens, both
//           grid-stride.
// mole-chain
#include "common.glsl"

layout(constant_id = 0) const uint WDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) readonly buffer Table { uint table[]; };
layout(std430, set = 0, binding = 1) readonly buffer Ids { int ids[]; };
layout(std430, set = 0, binding = 2) MOLE_DATA writeonly buffer Dst { float dst[]; };

layout(push_constant) uniform Push {
  uint T;
  uint D;
  MOLE_CHAIN_PUSH
} pc;

DEFINE_WEIGHT_LOADER(load_table, table, WDTYPE)

void MOLE_MAIN() {
  for (uint t = gl_WorkGroupID.y; t < pc.T; t += gl_NumWorkGroups.y) {
    const uint row = uint(ids[t]) * pc.D;
    for (uint d = gl_GlobalInvocationID.x; d < pc.D; d += gl_NumWorkGroups.x * BLOCK) {
      dst[t * pc.D + d] = load_table(row + d);
    }
  }
}

#include "chain.glsl"
