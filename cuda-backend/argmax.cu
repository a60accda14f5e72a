// argmax: one block of 1024 threads per row (a decode step's lm_head row is one row of V logits: the more loads in
// flight, the sooner it is read). Each thread keeps the best (value, index) of its elements, read as float4 when
// V % 4 == 0, then a warp and a block reduction keep the better of two pairs: the larger value, or on equal values
// the lower index, a NaN above every number (argmax.cuh). That order is total, so the result does not depend on which
// thread saw what: exact. A row that holds a NaN gives -1.
#include "cuda-backend/argmax.cuh"
#include "cuda-backend/persistent_step.cuh"

namespace mole::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kNone = kArgmaxNone;

__global__ void __launch_bounds__(kThreads) argmax_kernel(ArgmaxArgs a) {
  start_after_producers();
  __shared__ float warp_v[kThreads / kWarpSize];
  __shared__ int warp_i[kThreads / kWarpSize];
  for (int r = blockIdx.x; r < a.R; r += gridDim.x) {
    const float* row = a.src + size_t(r) * size_t(a.n);
    float bv = 0.0f;
    int bi = kNone;
    if (a.n % 4 == 0) {  // every row starts 16-byte aligned
      const float4* row4 = reinterpret_cast<const float4*>(row);
#pragma unroll 4
      for (int i = threadIdx.x; i < a.n / 4; i += kThreads) {
        const float4 v = row4[i];
        argmax_keep(v.x, 4 * i, bv, bi);
        argmax_keep(v.y, 4 * i + 1, bv, bi);
        argmax_keep(v.z, 4 * i + 2, bv, bi);
        argmax_keep(v.w, 4 * i + 3, bv, bi);
      }
    } else {
#pragma unroll 4
      for (int i = threadIdx.x; i < a.n; i += kThreads) argmax_keep(row[i], i, bv, bi);
    }
    argmax_block<kThreads / kWarpSize>(bv, bi, warp_v, warp_i);
    if (threadIdx.x == 0) a.dst[r] = argmax_result(bv, bi);
    __syncthreads();  // warp_v/warp_i are rewritten by the next row
  }
}

}  // namespace

void launch_argmax(const ArgmaxArgs& a, const Launch& l) {
  if (a.R == 0) return;
  if (l.program) {  // items: chunks of the one row (persistent_step.cu)
    const int chunks = (a.n + kPersistentArgmaxChunk - 1) / kPersistentArgmaxChunk;
    if (a.R != 1 || chunks > kPersistentMaxArgmaxItems || chunks < 1)
      l.program->refuse("argmax of several rows, or of more than " +
                        std::to_string(kPersistentMaxArgmaxItems * kPersistentArgmaxChunk) + " logits");
    if (l.program->has(StepItemKind::Argmax))  // its items share the scratch's one counter and result slots
      l.program->refuse("a second argmax in the step");
    l.program->add(StepItemKind::Argmax, chunks).argmax = a;
    return;
  }
  launch_kernel(argmax_kernel, std::min(a.R, 65535), kThreads, 0, l, a);
}

}  // namespace mole::cuda
