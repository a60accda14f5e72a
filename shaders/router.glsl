// The router's weights, shared by router_lut.glsl (which then sums the token's table rows with them) and
// router_probs.comp (which writes them out), so the weights a user sees are the bits the LUT sum used. For the row of
// x starting at element `base`:
//   logit_e = (sum_d x[base + d] * nw[d] * Wr[e][d]) / sqrt(mean_d x[base + d]^2 + eps)   (= rmsnorm(x) * nw @ Wr^T)
//   prob[e] = softmax(logit)_e (max-subtracted, summed in expert order, as cpu::softmax)
// Included after common.glsl (with MOLE_WORKGROUP_REDUCE_N) by a shader whose bindings 0-2 are:
//   0 x   float (T, D), the residual stream (read only)
//   1 Wr  (E, D) the router's weight, uint words of dtype WDTYPE
//   2 nw  (D) the post-attention norm's weight, uint words of dtype NDTYPE
// Spec: WDTYPE (id 0), NDTYPE (id 3). E <= MAX_EXPERTS (kRouterLutMaxExperts in ops.h, checked by the host).

layout(constant_id = 0) const uint WDTYPE = DTYPE_F32;
layout(constant_id = 3) const uint NDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) MOLE_DATA readonly buffer X { float x[]; };
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
  // The sum of squares and the E logits (E is small: 4 to 64 in published models), REDUCE_WIDTH sums per tree walk
  // (workgroup_sum_n, common.glsl): the first walk carries the sum of squares in slot 0 and the first
  // REDUCE_WIDTH - 1 logits.
  float inv_rms = 0.0;
  float v[REDUCE_WIDTH];
  for (uint e0 = 0u, pass = 0u; pass == 0u || e0 < E; pass++) {
    const uint off = pass == 0u ? 1u : 0u;
    const uint n = min(E - e0, REDUCE_WIDTH - off);  // logits in this walk
    for (uint i = 0u; i < REDUCE_WIDTH; i++) v[i] = 0.0;
    for (uint d = TID; d < D; d += BLOCK) {
      const float xv = x[base + d];
      if (off == 1u) v[0] += xv * xv;
      const float xn = xv * load_norm(d);
      for (uint i = 0u; i < n; i++) v[off + i] += xn * load_router((e0 + i) * D + d);
    }
    workgroup_sum_n(v, off + n);
    if (off == 1u) inv_rms = 1.0 / sqrt(v[0] / float(D) + eps);
    if (TID == 0u)
      for (uint i = 0u; i < n; i++) prob[e0 + i] = v[off + i] * inv_rms;
    e0 += n;
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
