// The body shared by router_lut.comp (rows from the step's ring) and router_lut_direct.comp (rows read in place
// from the table's chunks): router softmax + lookup-table weighted sum + residual add. For each token t,
//   p = softmax(logits[t]) (max-subtracted, summed in expert order, as cpu::softmax)
//   dst[t][d] += sum_e p[e] * row_t[(layer * E + e) * D + d], added into dst one expert at a time in expert order,
//   as the CPU backend's router_lut().
// The two differ only in where row_t is, so they give the same bits. Included after common.glsl by a shader that
// declares the buffers `logits` (float (T, E)) and `dst` (float (T, D)) and defines, after this include:
//   uint lut_row(uint t)   the element index of token t's row in what lut_load() reads (and selects that memory)
//   float lut_load(uint i) element i of it, decoded from LDTYPE words
// Push:     T, E (<= 1024, checked by the host), D, layer, row_elems (L * E * D)  (RouterLutPush in ops.h)
// Dispatch: (min(T, 65535), 1, 1); one workgroup per token, grid-stride; threads stride over D.

layout(push_constant) uniform Push {
  uint T;
  uint E;
  uint D;
  uint layer;
  uint row_elems;
} pc;

uint lut_row(uint t);
float lut_load(uint i);

const uint MAX_EXPERTS = 1024u;  // 4 KiB of shared memory; kRouterLutMaxExperts in ops.h
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
    const uint row = lut_row(t) + pc.layer * pc.E * pc.D;
    for (uint d = TID; d < pc.D; d += BLOCK) {
      float v = dst[t * pc.D + d];
      for (uint e = 0u; e < pc.E; e++) v += prob[e] * lut_load(row + e * pc.D + d);
      dst[t * pc.D + d] = v;
    }
    barrier();  // prob is rewritten by the next token
  }
}
