#version 450
#extension GL_GOOGLE_include_directive : require
// matmul: y (T, N) = x (T, K) @ W (N, K)^T, or y += that when accumulate != 0.
//
// Bindings: 0 x float (T, K)
//           1 W   (N, K) weight, uint words of dtype WDTYPE
//           2 y   float (T, N)
// Push:     T, K, N, accumulate (0 or 1)
// Spec:     WDTYPE (id 0), local size (id 1)
// Dispatch: (min(N, 65535), min(ceil(T / ROWS), 65535), 1) with ROWS = 8 (kMatMulRows in ops.h); group (gx, gy)
//           computes column n = gx (+ multiples of the x group count) for token rows [gy * ROWS, + ROWS) (+ multiples
//           of ROWS * the y group count). Threads stride over K, each weight element is decoded once and used for up
//           to ROWS token rows, and the ROWS partial sums are reduced together through shared memory.
// Shared memory: ROWS * local size floats (8 KiB at 256; keep the local size <= 512 for the 16 KiB minimum limit).
//
// First version, chosen for being plainly correct. Where speed would come from, in order: tiling the weight over
// several columns per workgroup with x in shared memory for T > 1 (prefill), subgroup reductions instead of the
// shared-memory tree (decode, T = 1, is bound by weight bandwidth and this tree's barriers), vectorised uint4
// weight loads, and cooperative-matrix (tensor core) tiles for large T.
#include "common.glsl"

layout(constant_id = 0) const uint WDTYPE = DTYPE_F32;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer W { uint w[]; };
layout(std430, set = 0, binding = 2) buffer Y { float y[]; };

layout(push_constant) uniform Push {
  uint T;
  uint K;
  uint N;
  uint accumulate;
} pc;

DEFINE_WEIGHT_LOADER(load_w, w, WDTYPE)

const uint ROWS = 8u;
shared float partial[ROWS * gl_WorkGroupSize.x];  // partial[r * BLOCK + thread]

void main() {
  for (uint n = gl_WorkGroupID.x; n < pc.N; n += gl_NumWorkGroups.x) {
    for (uint t0 = gl_WorkGroupID.y * ROWS; t0 < pc.T; t0 += gl_NumWorkGroups.y * ROWS) {
      const uint rows = min(ROWS, pc.T - t0);
      float acc[ROWS];
      for (uint r = 0u; r < ROWS; r++) acc[r] = 0.0;
      for (uint k = TID; k < pc.K; k += BLOCK) {
        const float wk = load_w(n * pc.K + k);
        for (uint r = 0u; r < ROWS; r++) {
          if (r < rows) acc[r] += x[(t0 + r) * pc.K + k] * wk;
        }
      }
      for (uint r = 0u; r < ROWS; r++) partial[r * BLOCK + TID] = acc[r];
      barrier();
      for (uint s = BLOCK / 2u; s > 0u; s >>= 1) {
        if (TID < s) {
          for (uint r = 0u; r < rows; r++) partial[r * BLOCK + TID] += partial[r * BLOCK + TID + s];
        }
        barrier();
      }
      if (TID < rows) {
        const uint o = (t0 + TID) * pc.N + n;
        const float v = partial[TID * BLOCK];
        y[o] = pc.accumulate != 0u ? y[o] + v : v;
      }
      barrier();  // partial is rewritten by the next (n, t0)
    }
  }
}
