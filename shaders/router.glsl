// The router's weights, shared by router_lut.glsl (which then sums the token's table rows with them) and
// router_probs.comp (which writes them out), so the weights a user sees are the bits the LUT sum used. For the row of
// x starting at element `base`:
//   logit_e = (sum_d x[base + d] * nw[d] * Wr[e][d]) / sqrt(mean_d x[base + d]^2 + eps)   (= rmsnorm(x) * nw @ Wr^T)
//   prob[e] = softmax(logit)_e (max-subtracted, summed in expert order, as cpu::softmax)
// Included after common.glsl (with MOLE_WORKGROUP_REDUCE) by a shader whose bindings 0-2 are:
//   0 x   float (T, D), the residual stream (read only)
//   1 Wr  (E, D) the router's weight, uint words of dtype WDTYPE
//   2 nw  (D) the post-attention norm's weight, uint words of dtype NDTYPE
// Spec: WDTYPE (id 0), NDTYPE (id 3). E <= MAX_EXPERTS (kRouterLutMaxExperts in ops.h, checked by the host).

layout(constant_id = 0) const uint WDTYPE = DTYPE_F32;
layout(constant_id = 3) const uint NDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Wr { uint wr[]; };
layout(std430, set = 0, binding = 2) readonly buffer NW { uint nw[]; };

DEFINE_WEIGHT_LOADER(load_router, wr, WDTYPE)
DEFINE_WEIGHT_LOADER(load_norm, nw, NDTYPE)

const uint MAX_EXPERTS = 1024u;  // 4 KiB of shared memory; kRouterLutMaxExperts in ops.h
shared float prob[MAX_EXPERTS];

// Fills prob[0, E) with the weights of the row at x[base]. Every invocation calls it, in uniform control flow; on
// return prob is visible to the whole workgroup. A caller that calls it again first waits (barrier()) until every
// invocation has finished reading prob.
void router_softmax(uint base, uint E, uint D, float eps) {
  float ss = 0.0;
  for (uint d = TID; d < D; d += BLOCK) ss += x[base + d] * x[base + d];
  const float inv_rms = 1.0 / sqrt(workgroup_sum(ss) / float(D) + eps);
  // The router's E logits, one workgroup-wide sum each (E is small: 4 to 64 in published models).
  for (uint e = 0u; e < E; e++) {
    float part = 0.0;
    for (uint d = TID; d < D; d += BLOCK) part += x[base + d] * load_norm(d) * load_router(e * D + d);
    const float logit = workgroup_sum(part) * inv_rms;
    if (TID == 0u) prob[e] = logit;
  }
  barrier();  // prob holds the logits
  // Every invocation computes the max and the sum itself, serially in expert order (E is small), so they equal
  // the CPU's exactly up to exp's rounding, with no extra barriers.
  float m = prob[0];
  for (uint e = 1u; e < E; e++) m = max(m, prob[e]);
  float sum = 0.0;
  for (uint e = 0u; e < E; e++) sum += exp(prob[e] - m);
  barrier();  // every invocation has read the logits before they are overwritten
  for (uint e = TID; e < E; e += BLOCK) prob[e] = exp(prob[e] - m) / sum;
  barrier();
}
