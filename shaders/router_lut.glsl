// The body shared by router_lut.comp (rows from the step's ring) and router_lut_direct.comp (rows read in place
// from the table's chunks): the router (RMSNorm and its product fused in), its softmax (both in router.glsl, shared
// with router_probs.comp) and the lookup-table weighted sum. For each token t:
//   p = router_softmax(x[t]) (router.glsl: softmax(rmsnorm(x[t]) * nw @ Wr^T))
//   dst[t][d] = sum_e p[e] * row_t[(layer * E + e) * D + d], summed in expert order as the CPU backend's router_lut()
// dst is the step's LUT sums, which the down projection adds into the residual stream (matmul.comp's addend), so
// this runs beside the MLP's up projection: both only read x. The two shaders differ only in where row_t is, so they
// give the same bits. Included after common.glsl (with MOLE_WORKGROUP_REDUCE_N) by a shader that declares its
// bindings from 4 on and defines, after this include:
//   uint lut_row(uint t)   the element index of token t's row in what lut_load() reads (and selects that memory)
//   float lut_load(uint i) element i of it, decoded from LDTYPE words
// Bindings: 0 x   float (T, D), the residual stream (read only)
//           1 Wr  (E, D) the router's weight, uint words of dtype WDTYPE
//           2 nw  (D) the post-attention norm's weight, uint words of dtype NDTYPE
//           3 dst float (T, D), the LUT sums (written)
// Push:     T, E (<= 1024, checked by the host), D, layer, row_elems (L * E * D), eps (float)  (RouterLutPush)
// Spec:     WDTYPE (id 0), local size (id 1), LDTYPE (id 2), NDTYPE (id 3)
// Dispatch: (min(ceil(D / local size), 65535), min(T, 65535), 1): workgroup (x, y) computes dims [x * BLOCK, + BLOCK)
// (grid-striding) of tokens y, y + gl_NumWorkGroups.y, ...; one dim an invocation. Every workgroup of a token computes
// the token's router weights itself (a little redundant work, as cuda-backend/router_lut.cu does): a decode step's
// table sum is then D / BLOCK workgroups side by side, instead of one workgroup walking all D dims (3 dims an
// invocation at D = 768, each waiting on its E loads, over the bus with --lut-read direct). Each invocation issues its
// loads of up to LUT_BATCH experts before it sums them, in expert order (so the bits are those of one load at a time).

layout(constant_id = 2) const uint LDTYPE = DTYPE_F32;

#include "router.glsl"

layout(std430, set = 0, binding = 3) MOLE_DATA writeonly buffer Dst { float dst[]; };

layout(push_constant) uniform Push {
  uint T;
  uint E;
  uint D;
  uint layer;
  uint row_elems;
  float eps;
  MOLE_CHAIN_PUSH
} pc;

uint lut_row(uint t);
float lut_load(uint i);

const uint LUT_BATCH = 8u;  // table loads an invocation issues before it uses the first

void MOLE_MAIN() {
  for (uint t = gl_WorkGroupID.y; t < pc.T; t += gl_NumWorkGroups.y) {
    const uint base = t * pc.D;
    router_softmax(base, pc.E, pc.D, pc.eps);
    const uint row = lut_row(t) + pc.layer * pc.E * pc.D;  // element (layer, 0, 0) of the token's row
    for (uint d = gl_WorkGroupID.x * BLOCK + TID; d < pc.D; d += gl_NumWorkGroups.x * BLOCK) {
      const uint at = row + d;
      float v = 0.0;
      for (uint e0 = 0u; e0 < pc.E; e0 += LUT_BATCH) {
        float l[LUT_BATCH];
        [[unroll]] for (uint i = 0u; i < LUT_BATCH; i++) l[i] = e0 + i < pc.E ? lut_load(at + (e0 + i) * pc.D) : 0.0;
        [[unroll]] for (uint i = 0u; i < LUT_BATCH; i++)
          if (e0 + i < pc.E) v += prob[e0 + i] * l[i];
      }
      dst[base + d] = v;
    }
    barrier();  // prob is rewritten by the next token
  }
}
