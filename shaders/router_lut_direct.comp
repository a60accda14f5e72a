#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
#ifdef MOLE_SUBGROUP_REDUCE
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
// router_lut_direct: router_lut reading each token's row in place, from the table's chunks (host-visible for
// --lut host, device-local for --lut device) through their buffer device addresses, by token id: no copy, no wait
// for one (--lut-read, vk-runtime/lut_stream.h). The math is in router_lut.glsl, shared with router_lut.comp,
// so both give the same bits. Needs bufferDeviceAddress (no 64-bit integers: addresses are uvec2).
//
// Bindings: 0-3 and push constants as router_lut.glsl, then
//           4 ids    int (T), the step's token ids
//           5 chunks rows_per_chunk, then each chunk's device address (uvec2, low word first); chunk c holds table
//                    rows [c * rows_per_chunk, (c + 1) * rows_per_chunk), uint words of dtype LDTYPE, row r of the
//                    chunk starting at element r * row_elems, laid out (L, E, D)
// Variant <name>_subgroup: the router's sums reduced with subgroup arithmetic (workgroup_sum_n in common.glsl).
// mole-variant: subgroup MOLE_SUBGROUP_REDUCE
// mole-chain
#define MOLE_WORKGROUP_REDUCE_N
#include "common.glsl"

#include "router_lut.glsl"

layout(std430, set = 0, binding = 4) readonly buffer Ids { int ids[]; };
layout(std430, set = 0, binding = 5) readonly buffer Chunks {
  uint rows_per_chunk;
  uint pad;
  uvec2 address[];
} chunks;

layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer LutWords { uint w[]; };
LutWords row_chunk;  // the chunk holding the current token's row, chosen by lut_row()

DEFINE_WEIGHT_LOADER(lut_load, row_chunk.w, LDTYPE)

uint lut_row(uint t) {
  const uint id = uint(ids[t]);
  row_chunk = LutWords(chunks.address[id / chunks.rows_per_chunk]);
  return (id % chunks.rows_per_chunk) * pc.row_elems;
}

#include "chain.glsl"
