#version 450
#extension GL_GOOGLE_include_directive : require
// router_lut (fused: router softmax + lookup-table weighted sum + residual add), reading the step's rows from the
// ring LutStream copies them into (vk-runtime/lut_stream.h). The math is in router_lut.glsl.
//
// Bindings: 0 logits float (T, E), the router's output
//           1 lut    the step's table rows in step order, uint words of dtype LDTYPE; row t starts at element
//                    t * row_elems and is laid out (L, E, D)
//           2 dst    float (T, D), the residual stream, updated in place
// Push:     T, E (<= 1024, checked by the host), D, layer, row_elems (L * E * D)
// Spec:     LDTYPE (id 2), local size (id 1)
// Dispatch: (min(T, 65535), 1, 1); one workgroup per token, grid-stride; threads stride over D.
#include "common.glsl"

layout(constant_id = 2) const uint LDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, set = 0, binding = 1) readonly buffer Lut { uint lut[]; };
layout(std430, set = 0, binding = 2) buffer Dst { float dst[]; };

#include "router_lut.glsl"

DEFINE_WEIGHT_LOADER(lut_load, lut, LDTYPE)

uint lut_row(uint t) {
  return t * pc.row_elems;
}
