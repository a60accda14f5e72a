// The CUDA backend (cuda_backend.h). Weights (in their stored dtype), activations and KV caches live in device
// memory; the table's rows come through LutStream (lut_stream.h; its backend-neutral half is model/lut_rows.h).
//
// A step is recorded once per shape as a CUDA graph (stream capture) and replayed. The shape is (T tokens, R output
// rows, whether the logits come back or only the greedy ids, attention's split count): a decode step (T = 1) is
// recorded once per split count, which follows the longest sequence in powers of two (split-K, attention.cuh).
// Per step, run_step() writes the step's inputs (ids, slots, positions, RoPE cos/sin, output rows) packed into one
// page-locked staging buffer, sends them with one cudaMemcpyAsync and launches the graph once, on the compute stream.
// The graph ends with copies of the greedy ids (and, when wanted, the logits) to page-locked host memory, so
// read_back() of them is a wait and a memcpy.
//
// Inside the graph, ops without a data dependency run side by side (the LUT sum and up): ops go into groups as the
// Vulkan backend places its barriers (a new group before an op that reads or writes a buffer written in the current
// group, or writes one read in it; op_reads() and op_writes() in model/backend.h), and a group of several ops forks
// from the capture stream onto auxiliary streams and joins back. The first group holding a RouterLut waits for the
// step's LUT copy (an external event-wait node on LutStream::ready()) on the branches of its RouterLuts only, so the
// copy overlaps the embedding and the first attention; everything later is ordered after it. With --tune
// lut-copy=kernel the copy is itself a kernel of the graph (fetch_lut_rows, on a branch from the graph's start) and
// the wait an edge from it: nothing to copy, record or wait for on the host per step.
//
// Where the GPU can (can_start_early()) and unless --tune pdl=off, a kernel whose one predecessor is a kernel starts
// early (programmatic dependent launch: capture_ops() says where, common.cuh how).
//
// Profiling records an event after every op (external event-record nodes) and captures the ops in one chain, so
// each op's time is its own; the graphs are recorded again when profiling is switched.
#include "cuda-backend/cuda_backend.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <tuple>

#include "cuda-backend/argmax.cuh"
#include "cuda-backend/attention.cuh"
#include "cuda-backend/common.cuh"
#include "cuda-backend/device_info.h"
#include "cuda-backend/embed.cuh"
#include "cuda-backend/gather.cuh"
#include "cuda-backend/handles.h"
#include "cuda-backend/lut_stream.h"
#include "cuda-backend/matmul.cuh"
#include "cuda-backend/norm_matmul.cuh"
#include "cuda-backend/persistent_step.cuh"
#include "cuda-backend/router_lut.cuh"
#include "cuda-backend/router_probs.cuh"
#include "model/error.h"
#include "model/lut_rows.h"

namespace mole::cuda {
namespace {

constexpr size_t kMaxRecorded = 32;         // recorded step shapes kept; beyond, start over
constexpr int kMaxBranches = 4;             // ops of one group run on at most this many streams side by side
constexpr BufferId kAttentionScratch = -2;  // attention's split-K partials, shared by the layers, as a pseudo-buffer

struct Buf {
  DeviceBuffer mem;
  bool weight = false;
  DType dtype = DType::F32;  // weights: the stored dtype; activations: F32
  size_t count = 0;          // elements
  DeviceBuffer norm_f32;     // 1-D weights (norms): a float32 copy, which the kernels read
};

// (T, R, whether the graph copies the logits to the host, attention's splits, attention's store pass, whether the
// output rows are the tokens in order: GatherBypass, model/backend.h).
using StepShape = std::tuple<int, int, bool, int, bool, bool>;

// A step shape's program for the persistent decode kernel (persistent_step.cuh), uploaded; or why there is none.
struct PersistentRecorded {
  DeviceBuffer ops;  // (n) StepItemOp
  int n = 0, blocks = 0;
  size_t shared = 0;
  std::string why;  // non-empty: the shape runs its graph
};

struct Recorded {
  GraphExec exec;
  int kernels = 0, groups = 0;  // for the profile: launches, and the groups they run in
  int split_attention = 0;      // attention ops captured split-K
};

// Where each step input starts in the packed input block (in 4-byte words), for a step of T tokens and R rows.
struct InputLayout {
  size_t ids, slot, pos, cos, sin, rows, words;
  InputLayout(size_t T, size_t R, size_t half)
      : ids(0), slot(T), pos(2 * T), cos(3 * T), sin(3 * T + T * half), rows(3 * T + 2 * T * half), words(rows + R) {}
};

bool contains(const std::vector<BufferId>& set, BufferId b) {
  return std::find(set.begin(), set.end(), b) != set.end();
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, const BackendOptions& opt)
      : device_(device),
        lut_read_(opt.lut_read),
        tiled_min_rows_(opt.tuning.tiled_min_rows > 0 ? opt.tuning.tiled_min_rows : 32),
        staged_matvec_(opt.tuning.matvec == BackendTuning::MatVec::Staged),
        matvec_loads_(opt.tuning.matvec_loads > 0 ? opt.tuning.matvec_loads : kMatVecLoads),
        forced_splits_(std::clamp(opt.tuning.attention_splits, 0, 32)),
        store_pass_always_(opt.tuning.attention_store_pass),
        lut_gather_(opt.tuning.lut_gather),
        lut_copy_(opt.tuning.persistent != BackendTuning::Persistent::Off ? BackendTuning::LutCopy::Kernel
                                                                          : opt.tuning.lut_copy),
        persistent_tuning_(opt.tuning.persistent),
        persistent_stall_(opt.tuning.perturb_op == "persistent-barrier"        ? PersistentStall::Always
                          : opt.tuning.perturb_op == "persistent-barrier-once" ? PersistentStall::Once
                                                                               : PersistentStall::Never),
        persistent_few_blocks_(opt.tuning.perturb_op == "persistent-few-blocks"),
        copy_late_(opt.tuning.perturb_op == "lut-copy-late"),
        cache_dir_(opt.cache_dir),
        budget_(opt.memory_limit_mib > 0 ? std::make_shared<MemoryBudget>(0, opt.memory_limit_mib) : nullptr) {
    set_device();
    compute_ = make_stream();
    capture_ = make_stream();
    for (Stream& s : aux_) s = make_stream();
    fetch_ = make_stream();
    fetched_ = make_event(false);
    fork_ = make_event(false);
    for (Event& e : join_) e = make_event(false);
    step_done_ = make_event(false);
    inputs_sent_ = make_event(false);
    CUDA_CHECK(cudaGetDeviceProperties(&props_, device_));
    pdl_ = opt.tuning.pdl && can_start_early(device_);
    driver_ = driver_description();  // once: info() is asked for after every token
  }

  ~CudaBackend() override {
    try {
      set_device();  // the members are freed on this device, after this body
      synchronize();
    } catch (const Error&) {
      // A failed device: nothing left to wait for.
    }
    recorded_.clear();  // the graphs go before the events, buffers and table they name
  }

  BackendInfo info() const override {
    BackendInfo i;
    i.name = "cuda";
    i.device = std::string(props_.name) + " (compute capability " + std::to_string(props_.major) + "." +
               std::to_string(props_.minor) + ")";
    i.driver = driver_;
    i.device_memory = uint64_t(props_.totalGlobalMem);
    i.preferred_lut = LutPlacement::Host;
    i.device_key = device_key();
    i.execution = execution_;
    if (lut_) {
      i.lut_read = lut_->read_name();
      i.lut_table_note = lut_->note();
      i.lut_rows_moved = lut_->rows_moved();
      i.lut_bytes_moved = lut_->bytes_moved();
    }
    return i;
  }

  BufferId upload_weight(const TensorView& t) override {
    const BufferId id = upload_parts(t, {&t});
    if (t.shape.size() == 1) {  // a norm weight: kernels read it as float32
      Buf& b = buf(id);
      std::vector<float> f(b.count);
      t.to_f32(0, int64_t(b.count), f.data());
      b.norm_f32 = DeviceBuffer::create(b.count * sizeof(float), t.name + " (float32)", budget_);
      CUDA_CHECK(cudaMemcpy(b.norm_f32.get(), f.data(), b.count * sizeof(float), cudaMemcpyHostToDevice));
    }
    return id;
  }

  BufferId upload_stacked(const std::vector<const TensorView*>& parts) override {
    return upload_parts(stack_check(parts), parts);
  }

  BufferId alloc(size_t count, const char* what) override {
    set_device();
    Buf b;
    b.count = count;
    b.mem = DeviceBuffer::create(std::max<size_t>(count, 1) * sizeof(float), what, budget_);
    bufs_.push_back(std::move(b));
    return BufferId(bufs_.size() - 1);
  }

  void write(BufferId id, size_t first, size_t count, const float* src) override {
    set_device();
    MOLE_CUDA_ASSERT(!buf(id).weight && first + count <= buf(id).count);
    CUDA_CHECK(cudaMemcpyAsync(act(id) + first, src, count * sizeof(float), cudaMemcpyHostToDevice, compute_.get()));
    CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    if (id == argmax_) host_ids_valid_ = false;  // the copies made by the last step are stale now
    if (id == logits_) host_logits_valid_ = false;
  }

  void set_lut(const LutStore& lut, LutPlacement placement, int max_step_tokens) override {
    set_device();
    synchronize();  // no step still reads the old ring or table
    recorded_.clear();
    persistent_.clear();  // the programs name the ring or the table
    lut_.reset();
    lut_ = LutStream::create(lut, placement, max_step_tokens, lut_read_,
                             lut_read_record_file(cache_dir_, "cuda", device_key()), lut_gather_, lut_copy_, budget_);
    lut_->set_profiling(profiling_);
    lut_->set_copy_late(copy_late_);
    CUDA_CHECK(cudaDeviceSynchronize());  // --lut device: the table's upload has landed (as prepare()'s uploads)
  }

  void stream_lut_rows(const std::vector<int32_t>& ids) override {
    set_device();
    if (lut_) lut_->stream(ids, step_done_.get());  // the ring is free once the last step is done
  }

  void run_step(const StepGraph& g, const StepInputs& in) override;

  void read_back(BufferId id, size_t first, size_t count, float* dst) override {
    set_device();
    // A Gather the last step skipped (its output rows were its tokens): its rows are its source's first rows.
    if (last_rows_identity_) id = bypass_.rows_of(*graph_, id);
    const size_t row = graph_ && graph_->max_out_rows > 0 ? buf(id).count / size_t(graph_->max_out_rows) : 0;
    if (id == argmax_ && host_ids_valid_ && first + count <= size_t(last_rows_)) {
      CUDA_CHECK(cudaEventSynchronize(step_done_.get()));
      if (lut_) lut_->check();  // --lut disk: the step's rows were read (else the step read what was there)
      check_persistent();       // nor did the persistent kernel give up at a barrier
      std::memcpy(dst, static_cast<const float*>(ids_host_.get()) + first, count * sizeof(float));
      return;
    }
    if (id == logits_ && host_logits_valid_ && first + count <= size_t(last_rows_) * row) {
      CUDA_CHECK(cudaEventSynchronize(step_done_.get()));
      if (lut_) lut_->check();
      check_persistent();
      std::memcpy(dst, static_cast<const float*>(logits_host_.get()) + first, count * sizeof(float));
      return;
    }
    MOLE_CUDA_ASSERT(first + count <= buf(id).count);
    synchronize();
    CUDA_CHECK(cudaMemcpyAsync(dst, act(id) + first, count * sizeof(float), cudaMemcpyDeviceToHost, compute_.get()));
    CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
  }

  void synchronize() override {
    set_device();
    CUDA_CHECK(cudaStreamSynchronize(compute_.get()));
    if (lut_) lut_->wait();
    check_persistent();
  }

  void set_profiling(bool on) override {
    if (on == profiling_) return;
    synchronize();
    collect_profile();
    recorded_.clear();  // recorded again with (or without) the events
    profiling_ = on;
    if (lut_) lut_->set_profiling(on);
  }

  StepProfile profile() override {
    synchronize();
    collect_profile();
    return prof_;
  }

 private:
  // The device's UUID in hex: the key of its measured choices (lut_read_record_file()).
  std::string device_key() const {
    static const char* hex = "0123456789abcdef";
    std::string k;
    for (unsigned char c : props_.uuid.bytes) {
      k += hex[c >> 4];
      k += hex[c & 15];
    }
    return k;
  }

  void set_device() const { CUDA_CHECK(cudaSetDevice(device_)); }
  // One device weight buffer described by `all` (name, dtype, size), holding the parts' bytes one after another (a
  // single tensor is its own one part).
  BufferId upload_parts(const TensorView& all, const std::vector<const TensorView*>& parts) {
    set_device();
    Buf b;
    b.weight = true;
    b.dtype = all.dtype;
    b.count = size_t(all.numel());
    b.mem = DeviceBuffer::create(all.nbytes, all.name, budget_);
    size_t at = 0;
    for (const TensorView* t : parts) {
      CUDA_CHECK(cudaMemcpy(static_cast<uint8_t*>(b.mem.get()) + at, t->data, t->nbytes, cudaMemcpyHostToDevice));
      at += t->nbytes;
    }
    bufs_.push_back(std::move(b));
    return BufferId(bufs_.size() - 1);
  }
  Buf& buf(BufferId id) { return bufs_.at(size_t(id)); }
  float* act(BufferId id) { return buf(id).mem.f32(); }
  const void* weight(BufferId id) {
    MOLE_CUDA_ASSERT(buf(id).weight);
    return buf(id).mem.get();
  }
  const float* norm_weight(BufferId id) {
    MOLE_CUDA_ASSERT(buf(id).weight && buf(id).norm_f32);  // a 1-D weight
    return buf(id).norm_f32.f32();
  }

  void prepare(const StepGraph& g);
  Recorded capture(const StepGraph& g, const StepShape& shape);
  void capture_ops(const StepGraph& g, const StepShape& shape, Recorded& rec);
  // The ops in groups without dependencies between them (see the top of this file).
  std::vector<std::vector<size_t>> op_groups(const StepGraph& g) const;
  // The shape's program for the persistent decode kernel, made and uploaded on first use; null where the shape runs
  // its graph (--tune persistent off, not a decode step, profiling, or refused: execution_ says why).
  const PersistentRecorded* persistent_program(const StepGraph& g, const StepShape& shape);
  // From now on the shape runs its graph, for this reason (execution_ says it).
  void refuse_persistent(const StepShape& shape, const std::string& why);
  static std::string persistent_refused(const std::string& why);  // execution_ for a refused shape
  void launch_op(const Op& op, size_t index, const StepShape& shape, const Launch& l);
  // Whether a kernel copies the step's table rows (--tune lut-copy=kernel, copy reads) for a graph that reads them;
  // fetch_rows() launches (or records) that kernel, fetch_lut_rows.
  bool kernel_fetches(const StepGraph& g) const;
  // The page-locked buffer the logits come back to, made where the shape wants them (before a capture: capturing
  // allows no allocation); copy_results_back() queues the greedy ids' and those logits' copies there on `s`.
  void make_logits_host(const StepShape& shape);
  void copy_results_back(const StepGraph& g, const StepShape& shape, cudaStream_t s);
  void fetch_rows(const StepShape& shape, const Launch& l);
  void collect_profile();

  const int device_;
  const LutRead lut_read_;        // as asked for (--lut-read); LutStream resolves Auto
  const int tiled_min_rows_;      // --tune tiled-min-rows: steps of at least this many rows use the tensor-core kernel
  const bool staged_matvec_;      // --tune matvec=staged: the column kernel stages x in shared memory (auto: warp)
  const int matvec_loads_;        // --tune matvec-loads: the column kernel's weight loads in flight per lane
  const int forced_splits_;       // --tune attention-splits: 0 automatic, 1 never, N always N
  const bool store_pass_always_;  // --tune attention-store=pass: attention's store pass in every step
  const BackendTuning::Gather lut_gather_;  // --tune lut-gather: where --lut disk gathers rows (thread unless inline)
  const BackendTuning::LutCopy lut_copy_;   // --tune lut-copy: who copies the rows of copy reads (dma unless kernel;
                                            //   --tune persistent copies by kernel)
  // --tune persistent: decode steps as one cooperative kernel (on, no-prefetch: without asking for each phase's
  // weights in L2 before it) or not (off)
  const BackendTuning::Persistent persistent_tuning_;
  // perturb=persistent-barrier (tests): no grid barrier passes (persistent_step.cuh); -once: in the first launch only
  enum class PersistentStall { Never, Once, Always } persistent_stall_;  // not const: Once becomes Never
  // perturb=persistent-few-blocks (tests): the kernel runs on kPersistentFewBlocks blocks, so that each block takes
  // several items of a phase, of different ops, in turn (on a GPU's full grid a small model's phases have fewer items
  // than blocks)
  const bool persistent_few_blocks_;
  static constexpr int kPersistentFewBlocks = 3;
  const bool copy_late_;         // perturb=lut-copy-late (tests): LutStream::set_copy_late
  const std::string cache_dir_;  // where `mole bench --record` keeps this device's measured read mode
  // --memory-limit: what every device buffer of this backend (the table's too) is charged to; null: no limit
  const std::shared_ptr<MemoryBudget> budget_;
  cudaDeviceProp props_{};
  std::string driver_;  // driver_description()
  bool pdl_ = false;    // --tune pdl (on by default) where the device can (can_start_early()): kernels start early
  // Streams and events first, so that they are destroyed last.
  Stream compute_;                       // steps, uploads, read-backs
  Stream capture_;                       // graphs are captured here (never run on)
  Stream aux_[kMaxBranches - 1];         // branches of a group, during capture
  Event fork_, join_[kMaxBranches - 1];  // fork and join of a group's branches, during capture
  Stream fetch_;                         // --tune lut-copy=kernel: the branch of fetch_lut_rows, during capture
  Event fetched_;                        // and its end, which the first RouterLut waits for
  Event step_done_;                      // recorded after each step's graph
  Event inputs_sent_;                    // recorded after each step's input upload
  std::vector<Buf> bufs_;

  // Graph-bound state, made on the first run_step (the graph never changes afterwards).
  const StepGraph* graph_ = nullptr;
  BufferId logits_ = kNoBuffer, argmax_ = kNoBuffer;
  int rope_half_ = 0;           // hd / 2 of the graph's RoPE ops (0: none)
  size_t first_lut_op_ = 0;     // index of the first RouterLut (ops.size() without one)
  DeviceBuffer attn_part_;      // split-K partials: attn_slots_ x max over attention ops of H * (2 + hd)
  DeviceBuffer attn_arrivals_;  // split-K: int counts of the partials written per (token, head) pair
  int attn_slots_ = 0;          // token-splits attn_part_ holds; 0: the graph has no attention
  DeviceBuffer inputs_dev_;     // the packed step inputs (InputLayout for the largest step)
  PinnedBuffer inputs_host_;    // their staging
  PinnedBuffer ids_host_;       // (max_out_rows) the greedy ids, copied by each step's graph
  PinnedBuffer logits_host_;    // (max_out_rows, V) the logits, copied by graphs that want them (made once)
  std::map<StepShape, Recorded> recorded_;
  std::map<StepShape, PersistentRecorded> persistent_;  // --tune persistent: the decode shapes' programs
  DeviceBuffer persistent_scratch_;                     // PersistentScratch, zeroed once
  PinnedBuffer persistent_failed_;             // a word the kernel sets to 1 when a block gave up at a grid barrier
  unsigned* persistent_failed_dev_ = nullptr;  // the same word, as the kernel addresses it
  // Call once the last step is complete: throws mole::Error if it ran the persistent kernel and a block gave up
  // waiting at a grid barrier (the step's results are void); zeroes the flag, the scratch and split attention's
  // counts for the next step.
  void check_persistent() {
    if (!persistent_failed_) return;
    volatile unsigned* failed = static_cast<volatile unsigned*>(persistent_failed_.get());
    if (*failed == 0) return;
    *failed = 0;
    CUDA_CHECK(cudaMemsetAsync(persistent_scratch_.get(), 0, sizeof(PersistentScratch), compute_.get()));
    // A block late past the time limit may have run some of a split attention's items after the others left: its
    // counts of partials, zero between uses, may not be.
    if (attn_arrivals_) CUDA_CHECK(cudaMemsetAsync(attn_arrivals_.get(), 0, attn_arrivals_.bytes(), compute_.get()));
    throw Error("the persistent decode kernel (--tune persistent) failed on " + std::string(props_.name) +
                ": a block waited more than " + std::to_string(kPersistentBarrierTimeoutNs / 1000000000ull) +
                " s at a grid barrier for blocks that never arrived, and the step's results are void; run without "
                "--tune persistent");
  }
  std::string execution_ = "graphs";                         // BackendInfo::execution
  bool host_ids_valid_ = false, host_logits_valid_ = false;  // the last step's copies are there
  int last_rows_ = 0;                                        // R of the last step
  GatherBypass bypass_;                                      // the Gathers a step of identity rows skips
  bool last_rows_identity_ = false;                          // the last step was one (it skipped them)

  // Profiling.
  bool profiling_ = false, profile_pending_ = false;
  std::vector<Event> op_events_;  // (ops + 1): before the first op, then after each
  StepInputs profiled_in_;        // the step whose events are pending
  int profiled_copy_slot_ = -1;   // and the LutStream copy-event slot of its rows
  StepProfile prof_;

  std::unique_ptr<LutStream> lut_;  // null for a dense model
};

void CudaBackend::prepare(const StepGraph& g) {
  MOLE_CUDA_ASSERT(g.logits == kNoBuffer || g.max_out_rows >= 1);
  first_lut_op_ = g.ops.size();
  size_t part_width = 0;  // the widest attention's H * (2 + hd)
  int max_heads = 0;
  for (size_t i = 0; i < g.ops.size(); i++) {
    const Op& op = g.ops[i];
    if (op.rope) rope_half_ = std::max(rope_half_, op.k / 2);
    if (op.kind == OpKind::Attention) {
      if (op.k > kAttentionMaxHeadDim)
        throw Error("the CUDA backend supports head dimensions up to " + std::to_string(kAttentionMaxHeadDim) +
                    " (this model: " + std::to_string(op.k) + ")");
      part_width = std::max(part_width, size_t(op.n) * size_t(2 + op.k));
      max_heads = std::max(max_heads, op.n);
    }
    if (op.kind == OpKind::RouterProbs && op.n > kRouterLutMaxExperts)
      throw Error("the CUDA backend supports at most " + std::to_string(kRouterLutMaxExperts) +
                  " experts (this model has " + std::to_string(op.n) + ")");
    if (op.kind == OpKind::RouterLut) {
      if (op.n > kRouterLutMaxExperts)
        throw Error("the CUDA backend supports at most " + std::to_string(kRouterLutMaxExperts) +
                    " experts (this model has " + std::to_string(op.n) + ")");
      first_lut_op_ = std::min(first_lut_op_, i);
    }
  }
  const size_t T = size_t(g.max_tokens), R = size_t(g.max_out_rows);
  if (part_width > 0) {  // at most kAttentionSplitSlots token-splits: 0.8 MiB for 12 heads of 64
    attn_slots_ = int(std::min<size_t>(kAttentionSplitSlots, T * kAttentionMaxSplits));
    attn_part_ =
        DeviceBuffer::create(size_t(attn_slots_) * part_width * sizeof(float), "attention split partials", budget_);
    // A count per (token, head) pair of a split step (at most attn_slots_ / 2 tokens), zero between uses.
    const size_t arrivals = size_t(attn_slots_) * size_t(max_heads) * sizeof(int);
    attn_arrivals_ = DeviceBuffer::create(arrivals, "attention split counts", budget_);
    CUDA_CHECK(cudaMemsetAsync(attn_arrivals_.get(), 0, arrivals, compute_.get()));
  }
  const InputLayout most{T, R, size_t(rope_half_)};
  inputs_dev_ = DeviceBuffer::create(most.words * 4, "step inputs", budget_);
  inputs_host_ = PinnedBuffer::create(most.words * 4, "step inputs (staging)");
  if (g.argmax != kNoBuffer) ids_host_ = PinnedBuffer::create(R * sizeof(float), "greedy ids (read-back)");
  // The weights' and the table's uploads (cudaMemcpy from pageable memory returns once its bytes are staged, maybe
  // before they land) are on the legacy default stream, which the steps' non-blocking streams do not wait for.
  CUDA_CHECK(cudaDeviceSynchronize());
  // Only now (a graph this backend cannot run has thrown above and may be retried):
  graph_ = &g;
  bypass_ = gather_bypass(g);
  logits_ = g.logits;
  argmax_ = g.argmax;
}

void CudaBackend::run_step(const StepGraph& g, const StepInputs& in) {
  set_device();
  if (graph_ != &g) {
    MOLE_CUDA_ASSERT(!graph_ && "the CUDA backend runs one graph per instance");
    prepare(g);
  }
  const int T = in.tokens(), R = int(in.out_rows.size());
  MOLE_CUDA_ASSERT(T >= 1 && T <= g.max_tokens && R <= g.max_out_rows);
  MOLE_CUDA_ASSERT(in.slot.size() == size_t(T) && in.pos.size() == size_t(T));
  const size_t angles = size_t(T) * size_t(rope_half_);  // what the graph's RoPE ops read (none without them)
  MOLE_CUDA_ASSERT(in.rope_cos.size() >= angles && in.rope_sin.size() >= angles);
  if (lut_) MOLE_CUDA_ASSERT(lut_->rows_streamed() == T && "stream_lut_rows() must precede run_step()");
  check_step_slots(g, in);
  if (profile_pending_) {  // the previous step's events are read before this step records them again
    CUDA_CHECK(cudaEventSynchronize(step_done_.get()));
    collect_profile();
  }
  int max_keys = 0;
  for (int32_t p : in.pos) max_keys = std::max(max_keys, int(p) + 1);
  const int splits = attn_slots_ ? attention_splits(max_keys, T, attn_slots_, forced_splits_) : 1;
  // Without an Argmax op (reparameterization) the logits always come back.
  const bool copy_logits = logits_ != kNoBuffer && (in.want_logits || argmax_ == kNoBuffer);
  const StepShape shape{
      T, R, copy_logits, splits, store_pass_always_ || attention_store_pass(in.slot), rows_identity(in.out_rows, T)};
  const PersistentRecorded* persistent = persistent_program(g, shape);
  auto it = recorded_.find(shape);
  const bool replay = persistent || it != recorded_.end();
  auto record = [&] {
    if (it != recorded_.end()) return;
    if (recorded_.size() >= kMaxRecorded) {
      synchronize();
      recorded_.clear();
    }
    it = recorded_.emplace(shape, capture(g, shape)).first;
  };
  if (!persistent) record();

  const auto launch_start = std::chrono::steady_clock::now();
  CUDA_CHECK(cudaEventSynchronize(inputs_sent_.get()));  // the previous step's inputs have left the staging
  const InputLayout at{size_t(T), size_t(R), size_t(rope_half_)};
  uint32_t* words = static_cast<uint32_t*>(inputs_host_.get());
  auto put = [&](size_t offset, const auto& v, size_t count) {
    if (count > 0) std::memcpy(words + offset, v.data(), count * 4);  // int32 and float: 4 bytes each
  };
  put(at.ids, in.ids, size_t(T));
  put(at.slot, in.slot, size_t(T));
  put(at.pos, in.pos, size_t(T));
  put(at.cos, in.rope_cos, angles);
  put(at.sin, in.rope_sin, angles);
  put(at.rows, in.out_rows, size_t(R));
  CUDA_CHECK(cudaMemcpyAsync(inputs_dev_.get(), words, at.words * 4, cudaMemcpyHostToDevice, compute_.get()));
  CUDA_CHECK(cudaEventRecord(inputs_sent_.get(), compute_.get()));
  if (persistent) {
    // Rows a kernel does not copy (--lut disk: the copy stream's) are waited for before the step starts.
    if (lut_ && !lut_->direct() && !lut_->kernel_copy())
      CUDA_CHECK(cudaStreamWaitEvent(compute_.get(), lut_->ready(), 0));
    const bool stall = persistent_stall_ != PersistentStall::Never;
    if (persistent_stall_ == PersistentStall::Once) persistent_stall_ = PersistentStall::Never;
    const cudaError_t err = launch_persistent_step(
        static_cast<const StepItemOp*>(persistent->ops.get()), persistent->n,
        static_cast<PersistentScratch*>(persistent_scratch_.get()), persistent_failed_dev_, persistent->blocks,
        persistent->shared, persistent_tuning_ == BackendTuning::Persistent::On, stall, compute_.get());
    if (err == cudaSuccess) {
      copy_results_back(g, shape, compute_.get());  // as the graph's last nodes do
    } else {
      // Refused at launch (a GPU shared under MPS with fewer SMs than it reports, say): this shape runs its graph
      // from now on, and execution_ says why.
      refuse_persistent(shape, std::string("the cooperative launch failed: ") + cudaGetErrorString(err));
      persistent = nullptr;
      record();
    }
  }
  if (!persistent) CUDA_CHECK(cudaGraphLaunch(it->second.exec.get(), compute_.get()));
  CUDA_CHECK(cudaEventRecord(step_done_.get(), compute_.get()));
  if (lut_) lut_->consumed();
  host_ids_valid_ = argmax_ != kNoBuffer;
  host_logits_valid_ = copy_logits;
  last_rows_ = R;
  last_rows_identity_ = std::get<5>(shape);
  if (profiling_) {
    if (replay) {
      prof_.replayed_steps++;
      prof_.submits++;
      prof_.host_launch_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - launch_start).count();
    }
    profiled_in_ = in;
    profiled_copy_slot_ = lut_ ? lut_->copy_slot() : -1;
    profile_pending_ = true;
    prof_.dispatches += uint64_t(it->second.kernels);
    prof_.barriers += uint64_t(std::max(it->second.groups - 1, 0));
    prof_.split_attention += uint64_t(it->second.split_attention);
    prof_.attention_splits += uint64_t(it->second.split_attention) * uint64_t(std::get<3>(it->first));
  }
}

// Captures the step's work on capture_ into a graph and instantiates it. Nothing in between allocates or
// synchronises (both are illegal while capturing); a failure ends the capture before it is rethrown.
Recorded CudaBackend::capture(const StepGraph& g, const StepShape& shape) {
  make_logits_host(shape);
  if (profiling_ && op_events_.size() != g.ops.size() + 1) {
    op_events_.clear();
    for (size_t i = 0; i <= g.ops.size(); i++) op_events_.push_back(make_event(true));
  }
  Recorded rec;
  cudaStream_t cs = capture_.get();
  CUDA_CHECK(cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal));
  try {
    capture_ops(g, shape, rec);
    copy_results_back(g, shape, cs);  // after every op
  } catch (...) {
    cudaGraph_t failed = nullptr;
    cudaStreamEndCapture(cs, &failed);
    if (failed) cudaGraphDestroy(failed);
    cudaGetLastError();
    throw;
  }
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(cs, &graph));
  Graph owned(graph);
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  rec.exec.reset(exec);
  return rec;
}

std::vector<std::vector<size_t>> CudaBackend::op_groups(const StepGraph& g) const {
  std::vector<std::vector<size_t>> groups;
  std::vector<BufferId> written, read;  // by the current group
  for (size_t i = 0; i < g.ops.size(); i++) {
    const Op& op = g.ops[i];
    std::vector<BufferId> writes = op_writes(op), reads = op_reads(op);
    if (op.kind == OpKind::Attention) writes.push_back(kAttentionScratch);
    bool hazard = groups.empty() || profiling_ || groups.back().size() >= size_t(kMaxBranches);
    for (BufferId w : writes) hazard = hazard || contains(written, w) || contains(read, w);
    for (BufferId r : reads) hazard = hazard || contains(written, r);
    if (hazard) {
      groups.emplace_back();
      written.clear();
      read.clear();
    }
    groups.back().push_back(i);
    written.insert(written.end(), writes.begin(), writes.end());
    read.insert(read.end(), reads.begin(), reads.end());
  }
  // A group's first op runs on the capture stream, the only one that can start early: a matrix product where there
  // is one (its kernel reads its weights before it waits), so that in [RouterLut, up] up starts early, not the LUT
  // sum. The ops of a group do not depend on each other, so their order changes no result.
  for (std::vector<size_t>& group : groups)
    std::stable_partition(group.begin(), group.end(), [&](size_t i) {
      return g.ops[i].kind == OpKind::MatMul || g.ops[i].kind == OpKind::NormMatMul;
    });
  return groups;
}

const PersistentRecorded* CudaBackend::persistent_program(const StepGraph& g, const StepShape& shape) {
  const auto [T, R, copy_logits, splits, store_pass, identity] = shape;
  if (persistent_tuning_ == BackendTuning::Persistent::Off || profiling_ || T != 1 || R != 1) return nullptr;
  auto it = persistent_.find(shape);
  if (it == persistent_.end()) {
    PersistentRecorded rec;
    PersistentProgram prog;
    for (const std::vector<size_t>& group : op_groups(g)) {
      for (size_t i : group) launch_op(g.ops[i], i, shape, {.program = &prog});
      prog.end_phase();
    }
    // The step's table rows (copy reads; --tune persistent copies them by kernel where it can), fetched in the phase
    // of the first attention, before the first RouterLut reads them: that phase has fewer items (heads x splits)
    // than the grid has blocks, so idle blocks fetch, and the rows' trip over the bus is hidden behind attention's
    // (in the embedding's phase, which is short, every block would wait for it at the barrier). Without an
    // attention before the first RouterLut, in the first phase.
    if (kernel_fetches(g)) {
      PersistentProgram fetch;
      fetch_rows(shape, {.program = &fetch});
      auto first = [&](StepItemKind kind) {
        size_t i = 0;
        while (i < prog.ops.size() && prog.ops[i].kind != kind) i++;
        return i;
      };
      const size_t attention = first(StepItemKind::Attention);
      prog.insert_at_phase_of(attention < first(StepItemKind::RouterLut) ? attention : 0, fetch);
    }
    prog.finish();
    rec.shared = prog.shared;
    if (prog.why.empty() && prog.ops.empty()) prog.refuse("an empty step");
    if (prog.why.empty()) {
      rec.blocks = persistent_step_blocks(prog.shared);
      if (rec.blocks == 0) prog.refuse("this GPU cannot launch cooperative kernels (or hold one block of this one)");
      if (persistent_few_blocks_) rec.blocks = std::min(rec.blocks, kPersistentFewBlocks);
    }
    if (prog.why.empty() && !persistent_failed_) {
      // The failure flag, in mapped host memory: the kernel needs its device address.
      persistent_failed_ = PinnedBuffer::create(sizeof(unsigned), "the persistent decode kernel's failure flag");
      *static_cast<volatile unsigned*>(persistent_failed_.get()) = 0;
      const cudaError_t err =
          cudaHostGetDevicePointer(reinterpret_cast<void**>(&persistent_failed_dev_), persistent_failed_.get(), 0);
      if (err != cudaSuccess) {
        cudaGetLastError();
        persistent_failed_ = {};
        prog.refuse(std::string("this GPU cannot map host memory for the kernel's failure flag: ") +
                    cudaGetErrorString(err));
      }
    }
    rec.why = prog.why;
    if (rec.why.empty()) {
      make_logits_host(shape);
      rec.n = int(prog.ops.size());
      rec.ops =
          DeviceBuffer::create(prog.ops.size() * sizeof(StepItemOp), "the persistent decode kernel's program", budget_);
      // On the stream the kernel runs on, so that it reads the whole program and a zeroed scratch (a cudaMemcpy or
      // cudaMemset on the legacy stream may still be landing when a non-blocking stream's kernel starts).
      CUDA_CHECK(cudaMemcpyAsync(rec.ops.get(), prog.ops.data(), prog.ops.size() * sizeof(StepItemOp),
                                 cudaMemcpyHostToDevice, compute_.get()));
      if (!persistent_scratch_) {
        persistent_scratch_ =
            DeviceBuffer::create(sizeof(PersistentScratch), "the persistent decode kernel's scratch", budget_);
        CUDA_CHECK(cudaMemsetAsync(persistent_scratch_.get(), 0, sizeof(PersistentScratch), compute_.get()));
      }
    }
    // Said once per shape (the string is not rebuilt every step).
    execution_ = rec.why.empty()
                     ? "persistent decode kernel (" + std::to_string(rec.blocks) + " blocks of " +
                           std::to_string(kPersistentThreads) + " threads, " + std::to_string(rec.n) + " ops" +
                           (persistent_tuning_ == BackendTuning::Persistent::On ? ", weights prefetched into L2" : "") +
                           "), graphs for other steps (--tune persistent)"
                     : persistent_refused(rec.why);
    it = persistent_.emplace(shape, std::move(rec)).first;
  }
  return it->second.why.empty() ? &it->second : nullptr;
}

std::string CudaBackend::persistent_refused(const std::string& why) {
  return "graphs: the persistent decode kernel cannot run this step: " + why;
}

void CudaBackend::refuse_persistent(const StepShape& shape, const std::string& why) {
  persistent_.at(shape).why = why;
  execution_ = persistent_refused(why);
}

// The ops, in groups of ops without dependencies between them (see the top of this file).
void CudaBackend::capture_ops(const StepGraph& g, const StepShape& shape, Recorded& rec) {
  // Programmatic dependent launch (--tune pdl): an op's first kernel starts early where it is the first op of its
  // group and the capture stream's last node is one kernel: not at the graph's start, after the LUT copy's wait, or
  // after a join (several predecessors), nor on a branch (its predecessor is the fork). The groups stay as without
  // it: run as one chain instead, the LUT sum waited for up (measured on an H200: 0.94x the decode tokens/s of
  // ordinary launches with branches). Never while profiling (the events between ops time each op alone).
  const bool pdl = pdl_ && !profiling_;
  const std::vector<std::vector<size_t>> groups = op_groups(g);

  cudaStream_t cs = capture_.get();
  const bool lut_wait = lut_ && !lut_->direct();
  bool lut_waited = false;    // a wait node precedes everything captured from here on
  bool after_kernel = false;  // pdl: the capture stream's last node is a kernel
  if (profiling_) CUDA_CHECK(cudaEventRecordWithFlags(op_events_[0].get(), cs, cudaEventRecordExternal));
  // --tune lut-copy=kernel: the step's rows are copied on a branch from the graph's start (lut_stream.h).
  const bool fetch = kernel_fetches(g);
  if (fetch) {
    cudaStream_t fs = fetch_.get();
    CUDA_CHECK(cudaEventRecord(fork_.get(), cs));
    CUDA_CHECK(cudaStreamWaitEvent(fs, fork_.get(), 0));
    if (profiling_) CUDA_CHECK(cudaEventRecordWithFlags(lut_->fetch_start(), fs, cudaEventRecordExternal));
    int launched = 0;
    fetch_rows(shape, {.stream = fs, .launched = &launched});
    rec.kernels += launched;
    if (profiling_) CUDA_CHECK(cudaEventRecordWithFlags(lut_->fetch_end(), fs, cudaEventRecordExternal));
    CUDA_CHECK(cudaEventRecord(fetched_.get(), fs));
  }
  for (const std::vector<size_t>& group : groups) {
    const bool fork = group.size() > 1;
    if (fork) CUDA_CHECK(cudaEventRecord(fork_.get(), cs));
    bool group_waits = false;
    for (size_t j = 0; j < group.size(); j++) {
      const Op& op = g.ops[group[j]];
      cudaStream_t s = j == 0 ? cs : aux_[j - 1].get();
      if (j > 0) CUDA_CHECK(cudaStreamWaitEvent(s, fork_.get(), 0));
      bool waits = false;
      if (op.kind == OpKind::RouterLut && lut_wait && !lut_waited) {
        if (fetch)
          CUDA_CHECK(cudaStreamWaitEvent(s, fetched_.get(), 0));  // an edge from the copy kernel
        else
          CUDA_CHECK(cudaStreamWaitEvent(s, lut_->ready(), cudaEventWaitExternal));
        group_waits = waits = true;
      }
      int launched = 0;
      const bool early = pdl && j == 0 && after_kernel && !waits;
      launch_op(op, group[j], shape, {.stream = s, .pdl = pdl, .early = early, .launched = &launched});
      rec.kernels += launched;
      if (op.kind == OpKind::Attention && std::get<3>(shape) > 1) rec.split_attention++;
      if (j == 0) after_kernel = launched > 0 || (after_kernel && !waits);
      if (profiling_) CUDA_CHECK(cudaEventRecordWithFlags(op_events_[group[j] + 1].get(), s, cudaEventRecordExternal));
      if (j > 0) {
        CUDA_CHECK(cudaEventRecord(join_[j - 1].get(), s));
        CUDA_CHECK(cudaStreamWaitEvent(cs, join_[j - 1].get(), 0));
      }
    }
    lut_waited = lut_waited || group_waits;
    if (fork) after_kernel = false;  // the capture stream joined the branches
    rec.groups++;
  }
  // The copy's branch joins the capture stream explicitly (the RouterLut after it already orders it before the end;
  // stream capture wants every forked stream joined back).
  if (fetch) CUDA_CHECK(cudaStreamWaitEvent(cs, fetched_.get(), 0));
}

void CudaBackend::make_logits_host(const StepShape& shape) {
  if (std::get<2>(shape) && !logits_host_)
    logits_host_ = PinnedBuffer::create(buf(logits_).count * sizeof(float), "logits (read-back)");
}

void CudaBackend::copy_results_back(const StepGraph& g, const StepShape& shape, cudaStream_t s) {
  const auto [T, R, copy_logits, splits, store_pass, identity] = shape;
  if (argmax_ != kNoBuffer && R > 0)
    CUDA_CHECK(cudaMemcpyAsync(ids_host_.get(), act(argmax_), size_t(R) * sizeof(float), cudaMemcpyDeviceToHost, s));
  if (copy_logits && R > 0) {
    const size_t row = buf(logits_).count / size_t(g.max_out_rows);
    CUDA_CHECK(
        cudaMemcpyAsync(logits_host_.get(), act(logits_), size_t(R) * row * sizeof(float), cudaMemcpyDeviceToHost, s));
  }
}

bool CudaBackend::kernel_fetches(const StepGraph& g) const {
  return lut_ && !lut_->direct() && lut_->kernel_copy() &&
         std::any_of(g.ops.begin(), g.ops.end(), [](const Op& op) { return op.kind == OpKind::RouterLut; });
}

void CudaBackend::fetch_rows(const StepShape& shape, const Launch& l) {
  const int T = std::get<0>(shape);
  const InputLayout at{size_t(T), size_t(std::get<1>(shape)), size_t(rope_half_)};
  launch_fetch_lut_rows({.table = lut_->kernel_table(),
                         .ids = static_cast<const int32_t*>(inputs_dev_.get()) + at.ids,
                         .ring = const_cast<void*>(lut_->kernel_rows()),
                         .row_bytes = lut_->lut().row_bytes(),
                         .T = T,
                         .V = int(lut_->lut().rows()),
                         .delay_ns = copy_late_ ? 20'000'000u : 0u},
                        l);
}

void CudaBackend::launch_op(const Op& op, size_t index, const StepShape& shape, const Launch& l) {
  const auto [T, R, copy_logits, splits, store_pass, identity] = shape;
  if (identity && bypass_.skip[index]) return;  // a Gather that only copies: its reader reads the source
  const BufferId src0 = identity && bypass_.src0[index] != kNoBuffer ? bypass_.src0[index] : op.src0;
  const InputLayout at{size_t(T), size_t(R), size_t(rope_half_)};
  const int32_t* in_words = static_cast<const int32_t*>(inputs_dev_.get());
  const int32_t* ids = in_words + at.ids;
  const int32_t* slot = in_words + at.slot;
  const int32_t* pos = in_words + at.pos;
  const float* cos = reinterpret_cast<const float*>(in_words + at.cos);
  const float* sin = reinterpret_cast<const float*>(in_words + at.sin);
  const int32_t* out_rows = in_words + at.rows;
  const int rows = op.on_out_rows ? R : T;
  switch (op.kind) {
    case OpKind::Embed:
      launch_embed(
          {.table = weight(op.src0), .dtype = buf(op.src0).dtype, .ids = ids, .dst = act(op.dst), .T = T, .D = op.n},
          l);
      break;
    case OpKind::NormMatMul:
      launch_norm_matmul({.x = act(src0),
                          .w = weight(op.src1),
                          .dtype = buf(op.src1).dtype,
                          .y = act(op.dst),
                          .rows = rows,
                          .K = op.k,
                          .N = op.n,
                          .tiled_min_rows = tiled_min_rows_,
                          .staged = staged_matvec_,
                          .col_loads = matvec_loads_,
                          .norm = norm_weight(op.src2),
                          .eps = op.eps,
                          .gelu = op.gelu},
                         l);
      break;
    case OpKind::MatMul:
      launch_matmul({.x = act(src0),
                     .w = weight(op.src1),
                     .dtype = buf(op.src1).dtype,
                     .y = act(op.dst),
                     .rows = rows,
                     .K = op.k,
                     .N = op.n,
                     .tiled_min_rows = tiled_min_rows_,
                     .staged = staged_matvec_,
                     .col_loads = matvec_loads_,
                     .accumulate = op.accumulate,
                     .addend = op.src2 != kNoBuffer ? act(op.src2) : nullptr},
                    l);
      break;
    case OpKind::Attention:
      launch_attention({.q = act(op.src0),
                        .kv_cache = act(op.src1),
                        .slot = slot,
                        .pos = pos,
                        .cos = cos,
                        .sin = sin,
                        .out = act(op.dst),
                        .part = attn_part_.f32(),
                        .arrivals = static_cast<int*>(attn_arrivals_.get()),
                        .T = T,
                        .H = op.n,
                        .KVH = op.kv_heads,
                        .hd = op.k,
                        .ctx = op.ctx,
                        .rope = op.rope,
                        .splits = splits,
                        .store_pass = store_pass},
                       l);
      break;
    case OpKind::RouterLut:
      MOLE_CUDA_ASSERT(lut_ && "a RouterLut op needs set_lut() first");
      launch_router_lut({.x = act(op.src0),
                         .router = weight(op.src1),
                         .router_dtype = buf(op.src1).dtype,
                         .norm = norm_weight(op.src2),
                         .dst = act(op.dst),
                         .rows = lut_->kernel_rows(),
                         .ids = lut_->direct() ? ids : nullptr,
                         .lut_dtype = lut_->lut().dtype(),
                         .row_bytes = lut_->lut().row_bytes(),
                         .T = T,
                         .E = op.n,
                         .D = op.k,
                         .layer = op.layer,
                         .eps = op.eps},
                        l);
      break;
    case OpKind::RouterProbs:
      launch_router_probs({.x = act(op.src0),
                           .out_rows = out_rows,
                           .router = weight(op.src1),
                           .router_dtype = buf(op.src1).dtype,
                           .norm = norm_weight(op.src2),
                           .dst = act(op.dst),
                           .R = R,
                           .E = op.n,
                           .D = op.k,
                           .layer = op.layer,
                           .cols = op.layers * op.n,
                           .eps = op.eps},
                          l);
      break;
    case OpKind::Gather:
      launch_gather({.src = act(op.src0), .out_rows = out_rows, .dst = act(op.dst), .R = R, .n = op.n}, l);
      break;
    case OpKind::Argmax:
      launch_argmax({.src = act(op.src0), .dst = act(op.dst), .R = R, .n = op.n}, l);
      break;
  }
}

// Adds the finished step's event times to prof_ (only once that step is complete).
void CudaBackend::collect_profile() {
  if (!profile_pending_ || !graph_) return;
  profile_pending_ = false;
  const auto& ops = graph_->ops;
  if (prof_.ops.size() != ops.size()) prof_.ops.assign(ops.size(), {});
  auto seconds = [&](size_t a, size_t b) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, op_events_[a].get(), op_events_[b].get()));
    return double(ms) * 1e-3;
  };
  const bool identity = rows_identity(profiled_in_.out_rows, profiled_in_.tokens());
  for (size_t i = 0; i < ops.size(); i++) {
    OpProfile& p = prof_.ops[i];
    p.kind = ops[i].kind;
    if (identity && bypass_.skip[i]) continue;  // a Gather the step skipped (GatherBypass)
    p.calls++;
    p.seconds += seconds(i, i + 1);  // attention's store pass counts in its time
    const BufferId w = op_weight(ops[i]);
    const size_t wb = w == kNoBuffer ? 0 : dtype_size(buf(w).dtype);
    p.bytes += op_bytes(ops[i], profiled_in_, wb, lut_ ? dtype_size(lut_->lut().dtype()) : 0);
  }
  if (lut_ && first_lut_op_ < ops.size()) {
    prof_.lut_window_seconds += seconds(0, first_lut_op_);
    prof_.lut_copy_seconds += lut_->copy_seconds(profiled_copy_slot_);
  }
  prof_.steps++;
}

}  // namespace
}  // namespace mole::cuda

namespace mole {

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opt) {
  return std::make_unique<cuda::CudaBackend>(cuda::choose_device(opt.device), opt);
}

namespace cuda {

BackendEntry cuda_backend_entry() {
  return {"cuda",
          [](const BackendOptions&) {
            BackendProbe p;
            p.detail = cuda_availability(&p.available);
            p.gpu = p.available;
            if (p.available) p.devices = cuda_device_details();
            return p;
          },
          make_cuda_backend,
          {"lut-read", "tiled-min-rows", "attention-splits", "attention-store", "lut-gather", "lut-copy", "matvec",
           "matvec-loads", "pdl", "persistent"}};
}

}  // namespace cuda
}  // namespace mole
