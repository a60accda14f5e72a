// The tiled product for many token rows (prefill chunks, reparameterization blocks), an alternative body for
// matmul.comp and norm_matmul.comp selected by MATMUL_TILED (the _tiled variants), with the same includer contract
// as matmul_core.glsl: buffers x, w (and load_norm with MATMUL_NORM), push pc with T, K, N, finish() and store().
//
// A workgroup of 256 invocations (the local size must be 256: kLocalSize in the host) computes a TM x TN = 64 x 64
// block of y, each invocation a 4 x 4 sub-block; x and W tiles TK = 16 wide along K are staged in shared memory, so
// every weight is read from memory once per 64 token rows (the column kernel reads it once per 8) and every
// loaded value feeds 4 products. With MATMUL_NORM the norm weight is applied to x as it is staged, and each row's
// sum of squares is gathered from the same loads.
// Dispatch: (min(ceil(N / 64), 65535), min(ceil(T / 64), 65535), 1), grid-stride beyond (kMatMulTile in ops.h).
//
// First version: scalar loads, no vectorised shared-memory reads, no cooperative matrix.

const uint TM = 64u, TN = 64u, TK = 16u;
shared float xs[TK * TM];  // [kk * TM + m]; reused at the end for the rows' sums of squares
shared float ws[TK * TN];  // [kk * TN + n]

void matmul_main() {
  const uint tx = TID % 16u, ty = TID / 16u;  // this invocation's columns tx*4 + j and rows ty*4 + i
  const uint kk_load = TID % TK;              // the k within a tile this invocation stages (x and W)
  for (uint nb = gl_WorkGroupID.x * TN; nb < pc.N; nb += gl_NumWorkGroups.x * TN) {
    for (uint mb = gl_WorkGroupID.y * TM; mb < pc.T; mb += gl_NumWorkGroups.y * TM) {
      float acc[16];
      for (uint i = 0u; i < 16u; i++) acc[i] = 0.0;
      float ss_part[4] = float[4](0.0, 0.0, 0.0, 0.0);  // sums of x^2 of rows TID / TK + 16 r, over k = kk_load mod TK
      for (uint k0 = 0u; k0 < pc.K; k0 += TK) {
        const uint k = k0 + kk_load;
        for (uint r = 0u; r < 4u; r++) {
          const uint m = TID / TK + 16u * r, t = mb + m, n = nb + m;  // TM = TN = 64 = 4 rounds of 16 rows
          float xv = t < pc.T && k < pc.K ? x[t * pc.K + k] : 0.0;
#ifdef MATMUL_NORM
          ss_part[r] += xv * xv;
          if (k < pc.K) xv *= load_norm(k);
#endif
          xs[kk_load * TM + m] = xv;
          ws[kk_load * TN + m] = n < pc.N && k < pc.K ? load_w(n * pc.K + k) : 0.0;
        }
        barrier();
        for (uint kk = 0u; kk < TK; kk++) {
          vec4 a, b;
          for (uint i = 0u; i < 4u; i++) {
            a[i] = xs[kk * TM + ty * 4u + i];
            b[i] = ws[kk * TN + tx * 4u + i];
          }
          for (uint i = 0u; i < 4u; i++)
            for (uint j = 0u; j < 4u; j++) acc[i * 4u + j] += a[i] * b[j];
        }
        barrier();
      }
      float ss[4] = float[4](0.0, 0.0, 0.0, 0.0);
#ifdef MATMUL_NORM
      // Row m's sum is spread over the TK invocations that staged its columns: gather it through xs.
      for (uint r = 0u; r < 4u; r++) xs[(TID / TK + 16u * r) * TK + kk_load] = ss_part[r];
      barrier();
      for (uint i = 0u; i < 4u; i++)
        for (uint j = 0u; j < TK; j++) ss[i] += xs[(ty * 4u + i) * TK + j];
      barrier();  // xs is staged again by the next block
#endif
      for (uint i = 0u; i < 4u; i++) {
        const uint t = mb + ty * 4u + i;
        for (uint j = 0u; j < 4u; j++) {
          const uint n = nb + tx * 4u + j;
          if (t < pc.T && n < pc.N) store(t * pc.N + n, finish(acc[i * 4u + j], ss[i]));
        }
      }
    }
  }
}
