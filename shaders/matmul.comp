#version 450
#extension GL_GOOGLE_include_directive : require
// matmul: y (T, N) = x (T, K) @ W (N, K)^T, or y += that when accumulate != 0.
//
// Bindings: 0 x float (T, K)
//           1 W   (N, K) weight, uint words of dtype WDTYPE
//           2 y   float (T, N)
// Push:     T, K, N, accumulate (0 or 1)
// Spec:     WDTYPE (id 0), local size (id 1; a power of two >= LANES)
// Dispatch: (min(ceil(N / COLS), 65535), min(ceil(T / ROWS), 65535), 1), COLS = local size / LANES and ROWS = 8
//           (kMatMulLanes, kMatMulRows in ops.h). The workgroup is COLS lane groups of LANES threads; lane group c
//           computes column n = gx * COLS + c (+ multiples of COLS * the x group count) for token rows
//           [gy * ROWS, + ROWS) (+ multiples of ROWS * the y group count). Its lanes read consecutive weights of the
//           row (coalesced), each decoded once and used for up to ROWS token rows, and reduce through shared memory
//           in log2(LANES) steps.
// Shared memory: ROWS * local size floats (8 KiB at 256; keep the local size <= 512 for the 16 KiB minimum limit).
//
// Version 2. Version 1 gave each column a whole workgroup striding over K: for the lm_head (N = 50304, K = 64)
// three quarters of its threads idled and every column paid an 8-step reduction; `mole run --profile` on lavapipe
// measured 1451 ms per decode step in matmul for the tiny model. Next steps: subgroup reductions where available,
// vectorised uint4 weight loads, x tiles in shared memory for T > ROWS, cooperative-matrix tiles for large T.
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
const uint LANES = 32u;
shared float partial[ROWS * gl_WorkGroupSize.x];  // partial[r * BLOCK + thread]

void main() {
  const uint cols = BLOCK / LANES, col = TID / LANES, lane = TID % LANES;
  for (uint n0 = gl_WorkGroupID.x * cols; n0 < pc.N; n0 += gl_NumWorkGroups.x * cols) {
    const uint n = n0 + col;
    for (uint t0 = gl_WorkGroupID.y * ROWS; t0 < pc.T; t0 += gl_NumWorkGroups.y * ROWS) {
      const uint rows = min(ROWS, pc.T - t0);
      float acc[ROWS];
      for (uint r = 0u; r < ROWS; r++) acc[r] = 0.0;
      if (n < pc.N) {
        for (uint k = lane; k < pc.K; k += LANES) {
          const float wk = load_w(n * pc.K + k);
          for (uint r = 0u; r < ROWS; r++) {
            if (r < rows) acc[r] += x[(t0 + r) * pc.K + k] * wk;
          }
        }
      }
      for (uint r = 0u; r < ROWS; r++) partial[r * BLOCK + TID] = acc[r];
      barrier();
      for (uint s = LANES / 2u; s > 0u; s >>= 1) {
        if (lane < s) {
          for (uint r = 0u; r < rows; r++) partial[r * BLOCK + TID] += partial[r * BLOCK + TID + s];
        }
        barrier();
      }
      if (n < pc.N && lane < rows) {
        const uint o = (t0 + lane) * pc.N + n;
        const float v = partial[lane * BLOCK + col * LANES];
        y[o] = pc.accumulate != 0u ? y[o] + v : v;
      }
      barrier();  // partial is rewritten by the next (n0, t0)
    }
  }
}
