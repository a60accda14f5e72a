#version 450
#extension GL_GOOGLE_include_directive : require
#ifdef MOLE_SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
// router_probs: the router's weights of the step's output rows (OpKind::RouterProbs), for `mole run --router-trace`
// and mole-studio. router.glsl computes them, the code router_lut uses, so they are the bits its LUT sum weighed.
//
// Bindings: 0-2 as router.glsl (x, Wr, nw), then
//           3 dst      float (R, cols): row r's columns [layer * E, (layer + 1) * E) are written
//           4 out_rows int (R), the token rows of x whose weights are wanted
// Push:     R, E (<= 1024, checked by the host), D, layer, cols (L * E), eps (float)  (RouterProbsPush)
// Spec:     WDTYPE (id 0), local size (id 1), NDTYPE (id 3)
// Dispatch: (min(R, 65535), 1, 1); one workgroup per output row, grid-stride.
// Variant <name>_subgroup: the router's sums reduced with subgroup arithmetic (workgroup_sum_n in common.glsl).
// mole-variant: subgroup MOLE_SUBGROUP_REDUCE
#define MOLE_WORKGROUP_REDUCE_N
#include "common.glsl"

#include "router.glsl"

layout(std430, set = 0, binding = 3) writeonly buffer Dst { float dst[]; };
layout(std430, set = 0, binding = 4) readonly buffer Rows { int out_rows[]; };

layout(push_constant) uniform Push {
  uint R;
  uint E;
  uint D;
  uint layer;
  uint cols;
  float eps;
} pc;

void main() {
  for (uint r = gl_WorkGroupID.x; r < pc.R; r += gl_NumWorkGroups.x) {
    router_softmax(uint(out_rows[r]) * pc.D, pc.E, pc.D, pc.eps);
    for (uint e = TID; e < pc.E; e += BLOCK) dst[r * pc.cols + pc.layer * pc.E + e] = prob[e];
    barrier();  // prob is rewritten by the next row
  }
}
