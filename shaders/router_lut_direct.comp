#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference_uvec2 : require
// router_lut_direct: router_lut reading each token's row in place, from the table's chunks (host-visible for
// --lut host, device-local for --lut device) through their buffer device addresses, by token id: no copy, no wait
// for one (MOLE_VK_LUT_READ, vk-runtime/lut_stream.h). The math is in router_lut.glsl, shared with router_lut.comp,
// so both give the same bits. Needs bufferDeviceAddress (no 64-bit integers: addresses are uvec2).
//
// Bindings: 0 logits float (T, E), the router's output
//           1 ids    int (T), the step's token ids
//           2 chunks rows_per_chunk, then each chunk's device address (uvec2, low word first); chunk c holds table
//                    rows [c * rows_per_chunk, (c + 1) * rows_per_chunk), uint words of dtype LDTYPE, row r of the
//                    chunk starting at element r * row_elems, laid out (L, E, D)
//           3 dst    float (T, D), the residual stream, updated in place
// Push:     T, E (<= 1024, checked by the host), D, layer, row_elems (L * E * D)  (RouterLutPush, as router_lut)
// Spec:     LDTYPE (id 2), local size (id 1)
// Dispatch: (min(T, 65535), 1, 1); one workgroup per token, grid-stride; threads stride over D.
#include "common.glsl"

layout(constant_id = 2) const uint LDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, set = 0, binding = 1) readonly buffer Ids { int ids[]; };
layout(std430, set = 0, binding = 2) readonly buffer Chunks {
  uint rows_per_chunk;
  uint pad;
  uvec2 address[];
} chunks;
layout(std430, set = 0, binding = 3) buffer Dst { float dst[]; };

#include "router_lut.glsl"

layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer LutWords { uint w[]; };
LutWords row_chunk;  // the chunk holding the current token's row, chosen by lut_row()

DEFINE_WEIGHT_LOADER(lut_load, row_chunk.w, LDTYPE)

uint lut_row(uint t) {
  const uint id = uint(ids[t]);
  row_chunk = LutWords(chunks.address[id / chunks.rows_per_chunk]);
  return (id % chunks.rows_per_chunk) * pc.row_elems;
}
