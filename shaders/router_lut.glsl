// The body shared by router_lut.comp (rows from the step's ring) and router_lut_direct.comp (rows read in place
// from the table's chunks): the router (RMSNorm and its product fused in), its softmax and the lookup-table weighted
// sum. For each token t:
//   logit_e = (sum_d x[t][d] * nw[d] * Wr[e][d]) / sqrt(mean_d x[t][d]^2 + eps)   (= rmsnorm(x) * nw @ Wr^T)
//   p = softmax(logit) (max-subtracted, summed in expert order, as cpu::softmax)
//   dst[t][d] = sum_e p[e] * row_t[(layer * E + e) * D + d], summed in expert order as the CPU backend's router_lut()
// dst is the step's LUT sums, which the down projection adds into the residual stream (matmul.comp's addend), so
// this runs beside the MLP's up projection: both only read x. The two shaders differ only in where row_t is, so they
// give the same bits. Included after common.glsl (with MOLE_WORKGROUP_REDUCE) by a shader that declares its
// bindings from 4 on and defines, after this include:
//   uint lut_row(uint t)   the element index of token t's row in what lut_load() reads (and selects that memory)
//   float lut_load(uint i) element i of it, decoded from LDTYPE words
// Bindings: 0 x   float (T, D), the residual stream (read only)
//           1 Wr  (E, D) the router's weight, uint words of dtype WDTYPE
//           2 nw  (D) the post-attention norm's weight, uint words of dtype NDTYPE
//           3 dst float (T, D), the LUT sums (written)
// Push:     T, E (<= 1024, checked by the host), D, layer, row_elems (L * E * D), eps (float)  (RouterLutPush)
// Spec:     WDTYPE (id 0), local size (id 1), LDTYPE (id 2), NDTYPE (id 3)
// Dispatch: (min(T, 65535), 1, 1); one workgroup per token, grid-stride; threads stride over D.

layout(constant_id = 0) const uint WDTYPE = DTYPE_F32;
layout(constant_id = 2) const uint LDTYPE = DTYPE_F32;
layout(constant_id = 3) const uint NDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Wr { uint wr[]; };
layout(std430, set = 0, binding = 2) readonly buffer NW { uint nw[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Dst { float dst[]; };

layout(push_constant) uniform Push {
  uint T;
  uint E;
  uint D;
  uint layer;
  uint row_elems;
  float eps;
} pc;

DEFINE_WEIGHT_LOADER(load_router, wr, WDTYPE)
DEFINE_WEIGHT_LOADER(load_norm, nw, NDTYPE)

uint lut_row(uint t);
float lut_load(uint i);

const uint MAX_EXPERTS = 1024u;  // 4 KiB of shared memory; kRouterLutMaxExperts in ops.h
shared float prob[MAX_EXPERTS];

void main() {
  for (uint t = gl_WorkGroupID.x; t < pc.T; t += gl_NumWorkGroups.x) {
    const uint base = t * pc.D;
    float ss = 0.0;
    for (uint d = TID; d < pc.D; d += BLOCK) ss += x[base + d] * x[base + d];
    const float inv_rms = 1.0 / sqrt(workgroup_sum(ss) / float(pc.D) + pc.eps);
    // The router's E logits, one workgroup-wide sum each (E is small: 4 to 64 in published models).
    for (uint e = 0u; e < pc.E; e++) {
      float part = 0.0;
      for (uint d = TID; d < pc.D; d += BLOCK) part += x[base + d] * load_norm(d) * load_router(e * pc.D + d);
      const float logit = workgroup_sum(part) * inv_rms;
      if (TID == 0u) prob[e] = logit;
    }
    barrier();  // prob holds the logits
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
      float v = 0.0;
      for (uint e = 0u; e < pc.E; e++) v += prob[e] * lut_load(row + e * pc.D + d);
      dst[base + d] = v;
    }
    barrier();  // prob is rewritten by the next token
  }
}
