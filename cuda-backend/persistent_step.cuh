// The persistent decode kernel (--tune persistent=on; off by default until measured on a GPU): a whole decode step,
// every op of it, in one cooperative launch instead of a graph of about 75 kernels. Kernels of a decode step are
// short and bound by their own latency (docs/benchmarks.md: about 6 us each on an H200, for 1-5 us of memory
// traffic); here the step's ops run one after another inside one kernel, separated by a grid-wide barrier where one
// depends on another, so a launch, a drain and a ramp-up become one barrier.
//
// The program is the step's ops with their arguments, each with the grid its own kernel would run (the op's launch
// function records it instead of launching: Launch::program), in the groups the graph runs side by side (ops without
// a dependency between them share a phase; a barrier ends each phase). Every block of the kernel takes the phase's
// items (the op kernels' blocks, in order) in turns, and runs each with the op's own device code (attention_block,
// router_lut_block, matmul_col_warp, ...), so every output has the same bits as from the op's kernel: items are whole
// blocks of the op's kernel (blocks of 256 threads), or for the matrix products one output column per warp, which
// is what a warp of the column kernel computes. Argmax is the one exception: its items are chunks of the row, and
// the block that finishes the last merges their bests (the order is total: the same index as argmax.cu's).
//
// Where it runs: steps of one token with one output row (decode), no router weights wanted, attention storing keys
// inside (no store pass), not while profiling, weights in one matrix-vector layout (columns of 16-byte loads or
// not), on a GPU that launches cooperative kernels. Everything else runs the graph (cuda_backend.cpp).
#pragma once

#include <string>
#include <vector>

#include "cuda-backend/argmax.cuh"
#include "cuda-backend/attention.cuh"
#include "cuda-backend/embed.cuh"
#include "cuda-backend/gather.cuh"
#include "cuda-backend/matmul.cuh"
#include "cuda-backend/router_lut.cuh"

namespace mole::cuda {

constexpr int kPersistentThreads = 256;                         // the block size of every op it runs
constexpr int kPersistentWarps = kPersistentThreads / 32;       // warps a block: matrix columns per item
constexpr int kPersistentArgmaxChunk = 8 * kPersistentThreads;  // logits per argmax item
constexpr int kPersistentMaxArgmaxItems = 4096;                 // a vocabulary of up to 8M entries
constexpr size_t kPersistentPrefetchBytes = size_t(24) << 20;   // of a phase's weights (an H100's L2 is 50 MB)

enum class StepItemKind : int { Embed, MatMul, NormMatMul, Attention, RouterLut, FetchRows, Gather, Argmax };

// One op of the program: its kind, its arguments (the member for its kind), and its items.
struct StepItemOp {
  StepItemKind kind = StepItemKind::Embed;
  int gx = 1, gy = 1;             // items: gx * gy, item i is block (i % gx, i / gx) of the op's grid
  int first = 0;                  // the op's first item in its phase's numbering
  bool barrier_after = false;     // the op ends a phase
  int word = 16;                  // FetchRows: the bytes each load moves (16, 8, 4, 2 or 1)
  float scale = 0.0f;             // Attention: 1 / sqrt(hd)
  const void* weights = nullptr;  // MatMul, NormMatMul: the weights, asked into L2 before the op's phase starts
  size_t weight_bytes = 0;
  EmbedArgs embed;
  MatMulArgs mm;
  AttentionArgs att;
  RouterLutArgs lut;
  LutFetchArgs fetch;
  GatherArgs gather;
  ArgmaxArgs argmax;
};

// Built on the host by running the step's launch code with Launch::program set. `why` says why the step cannot run
// persistently (the first op that could not be added); empty when it can.
struct PersistentProgram {
  std::vector<StepItemOp> ops;
  std::string why;
  size_t shared = 0;  // the most dynamic shared memory an op asks for
  // A new op of `kind` with gx * gy items; the caller sets its arguments.
  StepItemOp& add(StepItemKind kind, int gx, int gy = 1) {
    StepItemOp& op = ops.emplace_back();
    op.kind = kind;
    op.gx = gx;
    op.gy = gy;
    return op;
  }
  void refuse(const std::string& reason) {
    if (why.empty()) why = reason;
  }
  bool has(StepItemKind kind) const {
    for (const StepItemOp& op : ops)
      if (op.kind == kind) return true;
    return false;
  }
  // Adds `other`'s ops (none of which ends a phase) at the start of the phase that op `at` is in, and takes its
  // refusal and shared memory; before finish().
  void insert_at_phase_of(size_t at, const PersistentProgram& other);
  // Closes the current phase: its last op gets the barrier, and the next op starts a phase.
  void end_phase();
  // Numbers each phase's items (StepItemOp::first), once every op is in.
  void finish();
};

// Device memory the kernel keeps between launches, zero to begin with and left so at every launch's end.
struct PersistentScratch {
  unsigned barrier_count;  // blocks arrived at the current barrier
  unsigned barrier_gen;    // barriers passed (compared for change, never for value)
  unsigned failed;         // a block gave up waiting at a barrier (the host zeroes the scratch again after one)
  int argmax_arrivals;     // argmax items finished
  int argmax_index[kPersistentMaxArgmaxItems];
  float argmax_value[kPersistentMaxArgmaxItems];
};

// Blocks of kPersistentThreads with `shared` bytes of dynamic shared memory that can all be resident at once on the
// current device (the grid of a cooperative launch); 0 where the device cannot launch cooperative kernels.
int persistent_step_blocks(size_t shared);
// Runs the program (in device memory, n_ops ops) on `blocks` blocks: one cooperative launch on `stream`. With
// `prefetch`, each block, its items of a phase done, asks for its share of the next phase's weights (up to
// kPersistentPrefetchBytes of them) to be fetched into L2 before it waits at the barrier: they do not depend on the
// phase, so they travel while the slowest blocks finish and the barrier passes.
// A block that waits longer than this at a barrier gives up: the step fails (`failed_host`, mapped host memory, is
// set to 1) instead of hanging. A decode step's phase takes microseconds.
constexpr unsigned long long kPersistentBarrierTimeoutNs = 2'000'000'000ull;
// `stall` (tests, perturb=persistent-barrier): no barrier ever passes, so every block gives up. Returns the launch's
// error (cudaErrorCooperativeLaunchTooLarge where the GPU is shared with fewer SMs than it was asked about, say), so
// that the caller can run the step's graph instead; the error is not sticky and has been cleared.
cudaError_t launch_persistent_step(const StepItemOp* ops, int n_ops, PersistentScratch* scratch, unsigned* failed_host,
                                   int blocks, size_t shared, bool prefetch, bool stall, cudaStream_t stream);

}  // namespace mole::cuda
