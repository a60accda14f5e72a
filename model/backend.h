// The backend interface: the dozen operations a compute backend provides. The forward pass is written once, in
// model/forward.cpp, as a StepGraph of the ops below; a backend executes that graph on its device.
//
// Legend: T tokens in a step (all sequences together), D hidden, F FFN width, H/KVH query/key-value heads,
// hd head dim, E experts, L layers, V vocabulary, S context rows per sequence slot, B sequence slots, R output rows.
//
// Contract, in the order a run uses it:
//   1. upload_weight() for every checkpoint tensor the graph names, alloc() for activations and KV caches.
//   2. set_lut() once: the table and its placement.
//   3. Per step: stream_lut_rows(ids) as soon as the step's tokens are known (it may return at once and let the
//      copy run beside compute), then run_step(graph, inputs), then read_back() of the output rows.
// A backend may record the graph the first time it sees it and replay it afterwards: the graph never changes
// between steps; everything that does is in StepInputs.
// Router weights: RouterLut keeps its softmax to itself. A graph built to show the router's weights (for `mole run
// --router-trace` and mole-studio) adds one RouterProbs op beside each RouterLut, all writing graph.router_probs;
// the probabilities must be RouterLut's own (same formula, same summation order where the backend can). Graphs
// without them (every normal run) pay nothing. Every backend of the registry implements both ops.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/lut.h"
#include "model/safetensors.h"

namespace mole {

using BufferId = int32_t;  // a backend-owned buffer; valid until the backend is destroyed
constexpr BufferId kNoBuffer = -1;

enum class OpKind {
  Embed,        // dst (T, D) = src0 (V, D) [ids[t]]                                  (src0: weight)
  NormMatMul,   // dst (T, N) = act(rmsnorm(src0 (T, K)) * src2 (K) @ src1 (N, K)^T); rmsnorm(x) = x / sqrt(mean(x^2)
                //   + eps), eps = op.eps; act = gelu (exact erf form) when op.gelu, else none; n = N, k = K
                //   (src1, src2: weights; the norm is fused into the product so the normed rows are never stored)
  MatMul,       // dst (T, N) (+)= src0 (T, K) @ src1 (N, K)^T (+ src2 (T, N) if given); n = N, k = K; accumulate
                //   adds into dst, then src2 is added                                           (src1: weight)
  Attention,    // dst (T, H*hd) = causal attention of rope?(q) over the layer's KV cache src1 (B*S, 2*KVH*hd), each
                //   row its keys, then its values; src0 (T, (H + 2*KVH)*hd) holds each token's q, k and v side by
                //   side (the one q/k/v product): q = columns [0, H*hd), k = the KVH*hd after them, v = the last
                //   KVH*hd. Token t sees rows slot[t]*S + [0, pos[t]]. The op also stores the step's own keys and
                //   values: cache row slot[t]*S + pos[t] = [rope?(k), v] of token t (the only rows it writes), and
                //   token t's keys at positions written in this step are those keys, whichever way a backend reads
                //   them (the CPU stores first; a GPU may read such a key from its q/k/v row, rotated, while other
                //   workgroups store it: model/attention_splits.h). n = H, k = hd, kv_heads = KVH, ctx = S; with
                //   op.rope, q and k are rotated (see below), src0 is left as it is. A step holds each slot at most
                //   once, as consecutive rows at consecutive positions (as Engine makes steps).
  RouterLut,    // dst (T, D) = sum_e p_e * LUT[ids[t]][layer][e] (the step's LUT rows), with the router fused in:
                //   p = softmax(rmsnorm(src0 x (T, D)) * src2 (D) @ src1 (E, D)^T), eps = op.eps; n = E, k = D
                //   (src1, src2: weights). It reads x and writes its own dst, so it runs beside the MLP's up
                //   projection; the down projection adds dst into the residual stream (MatMul's src2).
  RouterProbs,  // dst (R, layers*n): columns [layer*n, (layer+1)*n) of row r = p for token out_rows[r], the router
                //   weights RouterLut computes from the same x (its formula above, with the same src0, src1, src2,
                //   n = E, k = D, eps and layer; op.layers = L). Only in graphs that ask for the router's weights
                //   (EngineOptions::router_probs): it reads x and writes its own dst, beside RouterLut and up.
  Gather,       // dst (R, n) = src0 (T, n) [out_rows[r]]
  Argmax,       // dst (R) = for each row r of src0 (R, n), the index of its largest value, the lowest on ties, as a
                //   float (exact: n < 2^24), or -1 where the row holds a NaN (mole::argmax's order); on_out_rows.
                //   Greedy decoding reads these R floats, not the logits.
};
const char* op_name(OpKind k);
struct Op;
// The op's (largest) weight buffer (Embed: src0; NormMatMul, MatMul: src1), or kNoBuffer for ops that read none.
BufferId op_weight(const Op& op);
// The activation buffers an op reads (weights excluded: no op writes one), and those it writes (its dst; Attention
// also its KV cache, src1), for backends that let ops without data dependencies overlap.
std::vector<BufferId> op_reads(const Op& op);
std::vector<BufferId> op_writes(const Op& op);

struct Op {
  OpKind kind;
  BufferId dst = kNoBuffer, src0 = kNoBuffer, src1 = kNoBuffer, src2 = kNoBuffer;
  int n = 0, k = 0;           // widths, as each kind above says
  int kv_heads = 0, ctx = 0;  // Attention
  int layer = 0;              // RouterLut, RouterProbs
  int layers = 0;             // RouterProbs only: L, dst's row holds layers * n weights
  bool rope = false;          // Attention: rotate q and k by RoPE first: rotate_half form, cos/sin (T, hd/2) from
                              //   the step's inputs, pairs (i, i + hd/2) of each head
  float eps = 0.0f;           // NormMatMul, RouterLut
  bool gelu = false;          // NormMatMul only
  bool accumulate = false;    // MatMul only
  bool on_out_rows = false;   // NormMatMul/MatMul after Gather: runs over the R output rows instead of the T tokens
};

// A layer's attention (and KV store): reads the q/k/v rows (T, (H + 2*KVH)*hd), stores the step's keys and values
// in the cache (B*S, 2*KVH*hd) and attends over it, writing `out` (T, H*hd). With rope, keys are rotated as they are
// stored and queries as they are read.
Op attention_op(BufferId qkv, BufferId kv_cache, BufferId out, int H, int hd, int KVH, int ctx, bool rope);

// The forward pass of one step, in order. Widths are fixed; the token count comes with each step's inputs.
struct StepGraph {
  std::vector<Op> ops;
  BufferId logits = kNoBuffer;        // (R, V) float32: what read_back() returns after a step
  BufferId argmax = kNoBuffer;        // (R) float32: each output row's greedy token id (an Argmax op), for read_back()
  BufferId router_probs = kNoBuffer;  // (R, L*E) float32: the output rows' router weights (RouterProbs ops), or none
  int max_tokens = 0;                 // T never exceeds this
  int max_out_rows = 0;               // R never exceeds this
};

// What changes from step to step. All vectors have T entries except out_rows (R) and rope (T*hd/2 each).
struct StepInputs {
  std::vector<int32_t> ids;       // token ids (also select the LUT rows)
  std::vector<int32_t> slot;      // sequence slot of each token, in [0, B)
  std::vector<int32_t> pos;       // position of each token in its sequence, in [0, S)
  std::vector<float> rope_cos;    // (T, hd/2) cos of the rotation angle per token and frequency
  std::vector<float> rope_sin;    // (T, hd/2)
  std::vector<int32_t> out_rows;  // token rows whose logits the step returns, R <= max_out_rows
  bool want_logits = true;        // false: only graph.argmax will be read back (a GPU backend then leaves the
                                  //   logits on the device; read_back() of them still works, just slower)
  // Asked between the ops of a step by a backend whose steps can take seconds (the CPU reference: a long prompt's
  // piece); true ends the step with StepCancelled, its results void. Empty: never. A GPU step, one submission of
  // milliseconds, runs to its end.
  std::function<bool()> cancelled;
  int tokens() const { return int(ids.size()); }
};

// Where graph g has an Attention op (which relies on it): throws mole::Error unless each slot's tokens in `in` are
// consecutive rows at consecutive positions, a slot at most once per step. Every backend's run_step() checks.
void check_step_slots(const StepGraph& g, const StepInputs& in);

// Per-op measurements, accumulated over the steps run while profiling was on (index = op index in the graph).
struct OpProfile {
  OpKind kind = OpKind::Embed;
  int calls = 0;
  double seconds = 0;  // device time (GPU timestamps) or wall time (CPU)
  uint64_t bytes = 0;  // bytes the op must read and write at least (op_bytes()), for achieved GB/s
};
struct StepProfile {
  std::vector<OpProfile> ops;
  int steps = 0;
  double lut_copy_seconds = 0;     // rows moved to where RouterLut reads them (transfer queue time on a GPU)
  double lut_window_seconds = 0;   // compute time before the first LUT sum, which the copy can hide behind
  int replayed_steps = 0;          // steps that replayed recorded commands (GPU backends)
  double host_launch_seconds = 0;  // host time to launch those steps: inputs written, submitted
  int submits = 0;                 // queue submissions made by those steps
  uint64_t dispatches = 0;         // GPU backends: compute dispatches recorded for the profiled steps, summed
  uint64_t barriers = 0;           // and the pipeline barriers between them (ops without one may overlap)
  uint64_t split_attention = 0;    // GPU backends: attention ops that ran split-K (--tune attention-splits), summed
  uint64_t attention_splits = 0;   // and their splits (workgroups or blocks per (token, head) pair), summed
};
// Where a step's output rows are its tokens in order (a decode step of one sequence, or a chunk whose every logit is
// wanted), a Gather only copies its source: it is skipped, and the one op that reads its result (the final norm and
// lm_head) reads the source instead, a dispatch (kernel) and a barrier fewer on a GPU backend. That holds for a Gather
// whose result is read by exactly one later op, a row-wise product on the output rows (NormMatMul or MatMul with
// on_out_rows) that reads it as src0 only, with no op between them writing the source; and never for a graph output.
struct GatherBypass {
  std::vector<bool> skip;      // per op: a Gather that such a step skips
  std::vector<BufferId> src0;  // per op: what it reads in src0's place in such a step, or kNoBuffer
  // After such a step: the buffer that holds the rows of `id` (a skipped Gather's source, for its output), else id.
  BufferId rows_of(const StepGraph& g, BufferId id) const;
};
GatherBypass gather_bypass(const StepGraph& g);
// Whether out_rows are 0, 1, ..., T - 1.
bool rows_identity(const std::vector<int32_t>& out_rows, int T);

// The least memory traffic of one op on one step: weights once, activations in and out, KV rows read.
uint64_t op_bytes(const Op& op, const StepInputs& in, size_t weight_elem_bytes, size_t lut_elem_bytes);

// How a GPU backend's router_lut reads the step's LUT rows (--lut-read): copied into a small device ring beside the
// step's first ops, then read (Copy); or read in place from wherever the table lives (Direct: nothing copied, each
// row read over the bus when the kernel needs it). Auto: the choice `mole bench --record` measured for the device,
// else the backend's rule (model/lut_rows.h). --lut disk always copies.
enum class LutRead { Auto, Copy, Direct };
const char* lut_read_name(LutRead r);  // "auto", "copy", "direct"
// "auto", "copy" or "direct"; nullopt for anything else.
std::optional<LutRead> parse_lut_read(const std::string& s);

// Kernel and streaming choices a backend makes itself unless told (tests pick variants, a user tunes): --tune.
// Each backend honours the keys its registry entry lists and ignores the rest (BackendEntry::tuning_keys).
struct BackendTuning {
  int subgroups = -1;                 // "subgroups": matrix products, attention and the router with subgroup
                                      //   reductions: -1 where the device can
  int tiled_min_rows = 0;             // "tiled-min-rows": steps of at least this many tokens use the tiled product; 0:
                                      //   the backend's default
  int attention_splits = 0;           // "attention-splits": split-K attention: 0 automatic, 1 never, N (<= 32) forced
  bool attention_store_pass = false;  // "attention-store=pass": GPU attention stores the step's keys in a pass of
                                      //   its own in every step, decode too (auto: only where a sequence has
                                      //   several tokens, model/attention_splits.h)
  uint64_t lut_chunk_bytes = 0;       // "lut-chunk-bytes": the most bytes of the table in one buffer; 0: the default
  enum class Gather { Auto, Thread, Inline };
  Gather lut_gather = Gather::Auto;  // "lut-gather": --lut disk gathers rows on a thread or in the caller
  bool lut_import = true;            // "lut-import": --lut host may map the file's own pages instead of copying
  enum class LutCopy { Auto, Dma, Kernel };
  LutCopy lut_copy = LutCopy::Auto;  // "lut-copy" (CUDA): where the rows are copied into the ring (reads copy, --lut
                                     //   host or device): by the copy engine on a copy stream the step waits for
                                     //   (dma), or by a kernel inside the step's graph (kernel); auto: dma
  enum class MatVec { Auto, Warp, Staged };
  MatVec matvec = MatVec::Auto;  // "matvec": the column kernel for few rows (CUDA): x read by every warp (warp) or
                                 //   staged once per block in shared memory (staged); auto: the backend's default
  int matvec_loads = 0;          // "matvec-loads": 16-byte weight loads each lane of the column kernel issues
                                 //   before it uses the first (1, 4 or 8); 0: the backend's default (4; Vulkan on
                                 //   a CPU driver 1)
  enum class Persistent { Off, On, NoPrefetch };
  Persistent persistent = Persistent::Off;  // "persistent" (CUDA): a decode step runs as one cooperative kernel
                                            //   (cuda-backend/persistent_step.cuh) instead of a graph of kernels;
                                            //   no-prefetch: without asking for the next op's weights in L2
  bool pdl = true;  // "pdl": CUDA kernels start before the kernel before them ends (programmatic
                    //   dependent launch) where the GPU can (compute capability 9.0 and up with CUDA
                    //   12.3 or newer); "pdl=off": never
  enum class HostWait { Auto, Spin, Block };
  HostWait host_wait = HostWait::Auto;  // "host-wait" (Vulkan): how the host waits for a step's greedy ids or
                                        //   logits: polling the GPU's progress for up to 10 ms before it blocks
                                        //   (spin), or blocking in the driver at once (block); auto: spin on a GPU,
                                        //   block on a CPU driver (whose own threads need the cores)
  bool chain = false;                   // "chain" (Vulkan): the dispatches of a step of few tokens wait for the ones
                                        //   they depend on in the shader (shaders/chain.glsl), with no pipeline
                                        //   barrier between them; "chain=off": barriers
  std::string perturb_op;               // "perturb" (tests): the cpu-perturbed test backend's wrong op (op_name(), e.g.
                                        //   matmul); Vulkan with chain=on: "chain-wait", every wait gives up;
                                        //   CUDA with persistent=on: "persistent-barrier", no barrier passes
                                        //   (-once: in the first step only), "persistent-few-blocks", a grid of 3
                                        //   blocks; CUDA: "lut-copy-late", the rows' copy starts late (30 ms;
                                        //   a copy kernel's, lut-copy=kernel or persistent: 20 ms)
};

// One run's choices for a backend (apps/ fills it from flags, their defaults from the environment; README).
struct BackendOptions {
  int device = -1;                   // --device: index in `mole devices` for this backend; -1: the best
  LutRead lut_read = LutRead::Auto;  // --lut-read
  enum class Validation { Off, On, Sync };
  Validation validation = Validation::Off;  // --validate: the Khronos layer (Sync: plus synchronization validation)
  std::string cache_dir;                    // where per-device caches go (pipelines, the measured read mode); "": none
  std::string pipeline_cache;               // --pipeline-cache: a file, "off" (memory only), or "" (in cache_dir)
  double memory_limit_mib = 0;              // --memory-limit: pretend the device has this much memory; 0: what it has
  bool allow_cpu_device = false;            // --backend auto may pick a CPU implementation of a GPU API (lavapipe)
  BackendTuning tuning;                     // --tune
};

struct BackendInfo {
  std::string name;            // "cpu", "vulkan", "cuda"
  std::string device;          // the device's own name
  std::string driver;          // the driver's version ("NVIDIA 580.159.04, CUDA 13.0", "Mesa 22.3.6 (LLVM 15.0.6)");
                               //   "" where there is none (the CPU) or it is not known
  uint64_t device_memory = 0;  // bytes usable for weights, table and activations; 0 if unknown
  uint64_t device_memory_used = 0;  // bytes this backend holds there now (weights, table, activations); 0 if unknown
  // What --lut auto means here for a table that is in a file (a computed table always starts in host memory).
  LutPlacement preferred_lut = LutPlacement::Host;
  bool runs_on_cpu = false;  // the CPU reference, or a CPU Vulkan driver (lavapipe): host loops are as fast or faster
  // What the backend decided, once set_lut() has run ("" before, and where it does not apply):
  std::string lut_read;        // "copy" or "direct"
  std::string lut_table_note;  // --lut host: the table's pages mapped from the file (no copy), or copied and why
  std::string device_key;      // identifies the device across runs (its UUID), for caches of measured choices
  std::string host_wait;       // how the host waits for a step's results ("spin up to 10 ms, then block", "block");
                               //   "" where the backend does not say (--tune host-wait)
  std::string reductions;      // how the GPU's sums within a workgroup run (Vulkan: "subgroups of 32, full", or
                               //   "shared memory (why)", --tune subgroups); "" where the backend does not say
  std::string execution;       // how the backend runs steps where it has a choice (CUDA: "graphs", or the
                               //   persistent decode kernel and why it did not run, --tune persistent; Vulkan:
                               //   pipeline barriers, or the dispatch chain, --tune chain); "" otherwise
  // Rows and bytes of the table moved to where router_lut reads them, over the backend's life (always counted).
  uint64_t lut_rows_moved = 0, lut_bytes_moved = 0;
  // Messages of a validation layer (--validate), counted and kept (tests fail on any); 0 and "" without one.
  uint64_t validation_messages = 0;
  std::string validation_log;
};

// The one-line contract every backend relies on: a backend instance runs one StepGraph for its life (the first
// run_step() binds it; a GPU backend records command buffers or graphs for it); a second graph needs a second
// backend. Buffers, the table and the graph belong to the instance; two instances share nothing.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual BackendInfo info() const = 0;

  // Copies a checkpoint tensor to the device in its stored dtype (or keeps a reference to host memory where the
  // device is the host). Throws mole::Error naming the tensor if the device is out of memory.
  virtual BufferId upload_weight(const TensorView& t) = 0;
  // One weight made of several tensors stacked along their rows (the same dtype and row width; stack_check()
  // says so or throws), as upload_weight() would store their concatenation: q, k and v become one product.
  virtual BufferId upload_stacked(const std::vector<const TensorView*>& parts) = 0;
  // A float32 buffer of `count` elements whose contents are undefined until an op writes them (the graph writes
  // every row before reading it, so nothing is zero-filled: a 2048-position KV cache costs no time until used).
  // `what` names it in out-of-memory errors.
  virtual BufferId alloc(size_t count, const char* what) = 0;
  // Copies float32 values into a buffer made by alloc() (op tests, and state a caller restores); after queued work.
  virtual void write(BufferId buf, size_t first, size_t count, const float* src) = 0;
  // Chooses where the table lives for the rest of the run (see LutPlacement). The store outlives the backend.
  // A step streams at most max_step_tokens rows. Throws mole::Error when the placement does not fit (e.g. Device
  // on a device too small), saying what would.
  virtual void set_lut(const LutStore& lut, LutPlacement placement, int max_step_tokens) = 0;
  // Starts bringing the rows of `ids` (the next step's tokens, in step order) to where RouterLut reads them.
  virtual void stream_lut_rows(const std::vector<int32_t>& ids) = 0;
  // Runs the graph for one step. Returns when the step is queued; read_back() waits for it.
  virtual void run_step(const StepGraph& graph, const StepInputs& in) = 0;
  // Copies float32 elements [first, first+count) of a buffer to dst, after all queued work.
  virtual void read_back(BufferId buf, size_t first, size_t count, float* dst) = 0;
  // Waits for all queued work, transfers included.
  virtual void synchronize() = 0;

  // Optional: per-op timing of every later step (default: not measured; profile() stays empty).
  virtual void set_profiling(bool on) { (void)on; }
  virtual StepProfile profile() { return {}; }
};

// Checks that `parts` can be stacked along their rows (at least one, all 2-D, one dtype, one row width) and returns
// their description as one tensor: the name "a+b+c", the summed rows, data null. Throws mole::Error naming them.
TensorView stack_check(const std::vector<const TensorView*>& parts);

// ---- the backend registry's row type (apps/backends.h holds the table) ----

// What a backend's probe found: whether it can run here, and its devices.
struct BackendProbe {
  bool available = false;
  std::string detail;   // the device that would be used, or why none can be and what to do (one line)
  std::string devices;  // every device described, for `mole devices`; "" when there are none
  bool gpu = false;     // the device that would be used is a GPU (not a CPU implementation unless allowed), so
                        //   --backend auto may pick it
};

// One row of the registry: a backend's name, its probe and its factory. Each backend's public header exports its
// row; adding a backend is adding a folder and a row.
struct BackendEntry {
  std::string name;
  std::function<BackendProbe(const BackendOptions&)> probe;  // never throws
  // Throws mole::Error when the backend cannot be made (no device, bad options), naming the cause.
  std::function<std::unique_ptr<Backend>(const BackendOptions&)> make;
  std::vector<std::string> tuning_keys;  // the --tune keys it honours, and "lut-read" where --lut-read matters
  bool hidden = false;                   // a backend for tests: not in `mole devices`, never --backend auto's choice
  bool built = true;                     // false: a row saying this build lacks the backend (its probe says why)
};

}  // namespace mole
