// The matrix product shared by matmul.comp and norm_matmul.comp: for each output column n and token row t,
//   dot = sum_k x[t][k] * nw[k] * W[n][k]   (nw = 1 without MATMUL_NORM)
//   ss  = sum_k x[t][k]^2                   (MATMUL_NORM only: the row's sum of squares, for its RMS)
// and then store(t * N + n, finish(dot, ss)), both defined by the includer.
//
// The includer declares, before including: buffers x (float) with a vec4 alias x4 at the same binding, w (uint
// words of dtype WDTYPE) with a uvec4 alias w4, the push block `pc` with T, K, N, the functions
// `float finish(float dot, float ss)` and `void store(uint index, float value)`, and with MATMUL_NORM defined
// `float load_norm(uint k)`. Then main() calls matmul_main().
//
// Dispatch: (min(ceil(N / COLS), 65535), min(ceil(T / ROWS), 65535), 1) with ROWS = 8 (kMatMulRows in ops.h) and
// COLS = local size / LANES, LANES = 32 (shared-memory reduction) or the subgroup size (MATMUL_SUBGROUP). A lane
// group (a subgroup with MATMUL_SUBGROUP) computes one column for up to ROWS token rows at a time: its lanes read
// consecutive weights of the row (coalesced), each decoded once and used for every row, then reduce. Columns and
// rows beyond the grid are reached by grid-striding, so a subgroup size other than the one the host assumed is
// still correct.
//
// Version 3 (version 2: one 32-lane group per column, scalar loads, shared-memory reduction only; version 1: a
// workgroup per column, 1451 ms per decode step in matmul on lavapipe, 144 ms with version 2):
//   - weights read as uvec4 (8 halves or 4 floats per load) and x as vec4 when K is a multiple of 8 (16-bit) or 4
//     (F32), so every row starts 16-byte aligned; scalar loads otherwise;
//   - MATMUL_SUBGROUP: lanes = subgroup, reduced with subgroupAdd: no shared memory, no barriers;
//   - MATMUL_NORM: the RMS of each x row is summed beside the product by the same lanes over the same loads, so
//     fusing the norm costs no extra pass over x and the normed rows are never written;
//   - each lane issues LOADS uvec4 weight loads before it uses the first (a decode step's 768-wide rows of 16-bit
//     weights are 3 loads a lane): a loop of load, then use, lets a compiler keep one load in flight (CUDA's
//     column kernel did so, its PTX showed), and a decode step's products wait on memory, not arithmetic. On a CPU
//     driver LOADS is 1: lavapipe's decode was 2x slower with 4 (the loaded words, 8 lanes wide, do not fit its
//     vector registers beside the sums).
// Next: x tiles in shared memory and cooperative-matrix tiles for prefill (large T).

const uint ROWS = 8u;
const uint SHARED_LANES = 32u;
const uint EPV = WDTYPE == DTYPE_F32 ? 4u : 8u;  // weight elements per uvec4
// uvec4 weight loads a lane issues before it uses the first (kSpecLoads)
layout(constant_id = 6) const uint LOADS = 4u;

#ifndef MATMUL_SUBGROUP
#ifdef MATMUL_NORM
shared float partial[2u * ROWS * gl_WorkGroupSize.x];  // [r * BLOCK + thread] dot, [(ROWS + r) * BLOCK + thread] ss
#else
shared float partial[ROWS * gl_WorkGroupSize.x];
#endif
#endif

// The EPV weights of one uvec4, in element order (for F32 only lo is used).
void unpack_weights(uvec4 q, out vec4 lo, out vec4 hi) {
  if (WDTYPE == DTYPE_F32) {
    lo = uintBitsToFloat(q);
    hi = vec4(0.0);
  } else if (WDTYPE == DTYPE_F16) {
    lo = vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y));
    hi = vec4(unpackHalf2x16(q.z), unpackHalf2x16(q.w));
  } else {  // BF16: low half first
    lo = uintBitsToFloat(uvec4(q.x << 16, q.x & 0xFFFF0000u, q.y << 16, q.y & 0xFFFF0000u));
    hi = uintBitsToFloat(uvec4(q.z << 16, q.z & 0xFFFF0000u, q.w << 16, q.w & 0xFFFF0000u));
  }
}

void matmul_main() {
#ifdef MATMUL_SUBGROUP
  const uint lanes = gl_SubgroupSize, cols = gl_NumSubgroups, col = gl_SubgroupID, lane = gl_SubgroupInvocationID;
#else
  const uint lanes = SHARED_LANES, cols = BLOCK / lanes, col = TID / lanes, lane = TID % lanes;
#endif
  const bool vec = pc.K % EPV == 0u;
  for (uint n0 = gl_WorkGroupID.x * cols; n0 < pc.N; n0 += gl_NumWorkGroups.x * cols) {
    const uint n = n0 + col;
    for (uint t0 = gl_WorkGroupID.y * ROWS; t0 < pc.T; t0 += gl_NumWorkGroups.y * ROWS) {
      const uint rows = min(ROWS, pc.T - t0);
      float acc[ROWS], ss[ROWS];
      for (uint r = 0u; r < ROWS; r++) {
        acc[r] = 0.0;
        ss[r] = 0.0;
      }
      if (n < pc.N && vec) {
        const uint base = n * (pc.K / EPV), chunks = pc.K / EPV;
        for (uint i0 = lane; i0 < chunks; i0 += LOADS * lanes) {
          uvec4 q[LOADS];
          [[unroll]] for (uint j = 0u; j < LOADS; j++) {  // all issued before any is used
            const uint i = i0 + j * lanes;
            q[j] = i < chunks ? w4[base + i] : uvec4(0u);
          }
          [[unroll]] for (uint j = 0u; j < LOADS; j++) {
            const uint i = i0 + j * lanes;
            if (i >= chunks) break;
            const uint k = i * EPV;
            vec4 wlo, whi;
            unpack_weights(q[j], wlo, whi);
#ifdef MATMUL_NORM
            wlo *= vec4(load_norm(k), load_norm(k + 1u), load_norm(k + 2u), load_norm(k + 3u));
            if (EPV == 8u) whi *= vec4(load_norm(k + 4u), load_norm(k + 5u), load_norm(k + 6u), load_norm(k + 7u));
#endif
            for (uint r = 0u; r < ROWS; r++) {
              if (r < rows) {
                const uint xi = ((t0 + r) * pc.K + k) / 4u;
                const vec4 xlo = x4[xi];
                acc[r] += dot(xlo, wlo);
#ifdef MATMUL_NORM
                ss[r] += dot(xlo, xlo);
#endif
                if (EPV == 8u) {
                  const vec4 xhi = x4[xi + 1u];
                  acc[r] += dot(xhi, whi);
#ifdef MATMUL_NORM
                  ss[r] += dot(xhi, xhi);
#endif
                }
              }
            }
          }
        }
      } else if (n < pc.N) {
        for (uint k = lane; k < pc.K; k += lanes) {
          float wk = load_w(n * pc.K + k);
#ifdef MATMUL_NORM
          wk *= load_norm(k);
#endif
          for (uint r = 0u; r < ROWS; r++) {
            if (r < rows) {
              const float xv = x[(t0 + r) * pc.K + k];
              acc[r] += xv * wk;
#ifdef MATMUL_NORM
              ss[r] += xv * xv;
#endif
            }
          }
        }
      }
#ifdef MATMUL_SUBGROUP
      // rows is uniform over the workgroup, so every invocation of a subgroup takes the same branches.
      for (uint r = 0u; r < ROWS; r++) {
        if (r < rows) {
          const float d = subgroupAdd(acc[r]);
#ifdef MATMUL_NORM
          const float s = subgroupAdd(ss[r]);
#else
          const float s = 0.0;
#endif
          if (lane == 0u && n < pc.N) store((t0 + r) * pc.N + n, finish(d, s));
        }
      }
#else
      for (uint r = 0u; r < ROWS; r++) {
        partial[r * BLOCK + TID] = acc[r];
#ifdef MATMUL_NORM
        partial[(ROWS + r) * BLOCK + TID] = ss[r];
#endif
      }
      barrier();
      for (uint s = lanes / 2u; s > 0u; s >>= 1) {
        if (lane < s) {
          for (uint r = 0u; r < rows; r++) {
            partial[r * BLOCK + TID] += partial[r * BLOCK + TID + s];
#ifdef MATMUL_NORM
            partial[(ROWS + r) * BLOCK + TID] += partial[(ROWS + r) * BLOCK + TID + s];
#endif
          }
        }
        barrier();
      }
      if (n < pc.N && lane < rows) {
        const float d = partial[lane * BLOCK + col * lanes];
#ifdef MATMUL_NORM
        const float s = partial[(ROWS + lane) * BLOCK + col * lanes];
#else
        const float s = 0.0;
#endif
        store((t0 + lane) * pc.N + n, finish(d, s));
      }
      barrier();  // partial is rewritten by the next (n0, t0)
#endif
    }
  }
}
