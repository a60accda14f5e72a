#version 450
#extension GL_GOOGLE_include_directive : require
// argmax: out[r] = the index of the largest of logits[r][0, V), the lowest such index on ties, or -1 where the row
// holds a NaN (mole::argmax's order: a NaN ranks above every number), so greedy decoding needs no read-back of the
// logits. Written as a float (exact for V < 2^24) into a float buffer like every other op's output.
//
// Bindings: 0 logits float (R, V)
//           1 out    float (R)
// Push:     R, V
// Spec:     local size (id 1)
// Dispatch: (min(R, 65535), 1, 1); one workgroup per row, grid-stride; threads stride over V, then a
//           shared-memory tree keeps (value, index) pairs.
// mole-chain
#include "common.glsl"

layout(std430, set = 0, binding = 0) MOLE_DATA readonly buffer Logits { float logits[]; };
layout(std430, set = 0, binding = 1) MOLE_DATA writeonly buffer Out { float out_[]; };

layout(push_constant) uniform Push {
  uint R;
  uint V;
  MOLE_CHAIN_PUSH
} pc;

const uint NONE = 0xFFFFFFFFu;  // an invocation that saw no element
shared float best_v[gl_WorkGroupSize.x];
shared uint best_i[gl_WorkGroupSize.x];

// A NaN, told by its bits (a driver may assume comparisons never see one).
bool is_nan(float v) {
  return (floatBitsToUint(v) & 0x7FFFFFFFu) > 0x7F800000u;
}

// Whether (v, i) beats the current best (bv, bi): the best is empty; or a NaN against a number, or the lower index
// of two NaNs; or of two numbers the larger, or on equal values the lower index. The order is total, so the result
// does not depend on which invocation saw which element.
bool better(float v, uint i, float bv, uint bi) {
  if (i == NONE) return false;
  if (bi == NONE) return true;
  const bool vn = is_nan(v), bn = is_nan(bv);
  if (vn || bn) return vn && (!bn || i < bi);
  return v > bv || (v == bv && i < bi);
}

void MOLE_MAIN() {
  for (uint r = gl_WorkGroupID.x; r < pc.R; r += gl_NumWorkGroups.x) {
    float bv = 0.0;
    uint bi = NONE;
    for (uint i = TID; i < pc.V; i += BLOCK) {
      const float v = logits[r * pc.V + i];
      if (better(v, i, bv, bi)) {
        bv = v;
        bi = i;
      }
    }
    best_v[TID] = bv;
    best_i[TID] = bi;
    barrier();
    for (uint s = BLOCK / 2u; s > 0u; s >>= 1) {
      if (TID < s && better(best_v[TID + s], best_i[TID + s], best_v[TID], best_i[TID])) {
        best_v[TID] = best_v[TID + s];
        best_i[TID] = best_i[TID + s];
      }
      barrier();
    }
    if (TID == 0u) out_[r] = is_nan(best_v[0]) ? -1.0 : float(best_i[0]);
    barrier();  // best_v/best_i are rewritten by the next row
  }
}

#include "chain.glsl"
