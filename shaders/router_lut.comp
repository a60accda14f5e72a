#version 450
#extension GL_GOOGLE_include_directive : require
// router_lut (fused: router softmax + lookup-table weighted sum + residual add): for each token t,
//   p = softmax(logits[t]) (max-subtracted, summed in expert order, as cpu::softmax)
//   dst[t][d] += sum_e p[e] * lut[t * row_elems + (layer * E + e) * D + d], added into dst one expert at a time in
//   expert order, as the CPU backend's router_lut().
//
// Bindings: 0 logits float (T, E), the router's output
//           1 lut    the step's table rows in step order, uint words of dtype LDTYPE; row t starts at element
//                    t * row_elems and is laid out (L, E, D)
//           2 dst    float (T, D), the residual stream, updated in place
// Push:     T, E (<= 64, checked by the host), D, layer, row_elems (L * E * D)
// Spec:     LDTYPE (id 2), local size (id 1)
// Dispatch: (min(T, 65535), 1, 1); one workgroup per token, grid-stride; threads stride over D.
#include "common.glsl"

layout(constant_id = 2) const uint LDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, set = 0, binding = 1) readonly buffer Lut { uint lut[]; };
layout(std430, set = 0, binding = 2) buffer Dst { float dst[]; };

layout(push_constant) uniform Push {
  uint T;
  uint E;
  uint D;
  uint layer;
  uint row_elems;
} pc;

DEFINE_WEIGHT_LOADER(load_lut, lut, LDTYPE)

const uint MAX_EXPERTS = 64u;
shared float prob[MAX_EXPERTS];

void main() {
  for (uint t = gl_WorkGroupID.x; t < pc.T; t += gl_NumWorkGroups.x) {
    for (uint e = TID; e < pc.E; e += BLOCK) prob[e] = logits[t * pc.E + e];
    barrier();
    // Every invocation computes the max and the sum itself, serially in expert order (E is small), so they equal
    // the CPU's exactly up to exp's rounding, with no extra barriers.
    float m = prob[0];
    for (uint e = 1u; e < pc.E; e++) m = max(m, prob[e]);
    float sum = 0.0;
    for (uint e = 0u; e < pc.E; e++) sum += exp(prob[e] - m);
    barrier();  // every invocation has read the logits before they are overwritten
    for (uint e = TID; e < pc.E; e += BLOCK) prob[e] = exp(prob[e] - m) / sum;
    barrier();
    const uint row = t * pc.row_elems + pc.layer * pc.E * pc.D;
    for (uint d = TID; d < pc.D; d += BLOCK) {
      float v = dst[t * pc.D + d];
      for (uint e = 0u; e < pc.E; e++) v += prob[e] * load_lut(row + e * pc.D + d);
      dst[t * pc.D + d] = v;
    }
    barrier();  // prob is rewritten by the next token
  }
}
