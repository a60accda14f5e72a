#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef MOLE_SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
// router_lut (fused: RMSNorm + router product + softmax + lookup-table weighted sum), reading the step's rows from
// the ring LutStream copies them into (vk-runtime/lut_stream.h). The math, bindings 0-3, push constants and
// dispatch are in router_lut.glsl.
//
// Bindings: 4 lut the step's table rows in step order, uint words of dtype LDTYPE; row t starts at element
//                 t * row_elems and is laid out (L, E, D)
// Variant <name>_subgroup: the router's sums reduced with subgroup arithmetic (workgroup_sum_n in common.glsl).
// mole-variant: subgroup MOLE_SUBGROUP_REDUCE
// mole-chain
#define MOLE_WORKGROUP_REDUCE_N
#include "common.glsl"
#include "router_lut.glsl"

layout(std430, set = 0, binding = 4) readonly buffer Lut { uint lut[]; };

DEFINE_WEIGHT_LOADER(lut_load, lut, LDTYPE)

uint lut_row(uint t) {
  return t * pc.row_elems;
}

#include "chain.glsl"
