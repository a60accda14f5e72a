// Vulkan backend. Each step is two command buffers submitted in one vkQueueSubmit: part A (up to the first layer's
// LUT sum: embedding, the q/k/v product with the norm fused in, attention with the KV store, o) needs no LUT rows;
// part B (from the first RouterLut on) waits on the LUT timeline semaphore, so the rows' copy on the transfer queue
// overlaps part A. Within a part, a barrier separates two ops only where one reads or writes what the other writes
// (op_reads(), op_writes()).
//
// The table's rows reach the shaders through LutStream (lut_stream.h), read one of two ways (--lut-read):
//   copy:   router_lut.comp reads a small device-local ring of the step's rows (max_step_tokens rows, in step
//           order), filled by vkCmdCopyBuffer regions on the transfer queue from wherever the table lives
//           (device-local chunks, host-visible chunks, or for disk a host-visible staging ring that a host thread
//           fills from the mmap'd file); part B waits for the copy.
//   direct: router_lut_direct.comp reads each token's row in place from the chunks (buffer device addresses) by
//           the step's ids: no copy, no wait. The default on a CPU or integrated GPU, for --lut host and device.
// This file keeps thin calls: set_lut() makes the stream (charging the budget below for the ring and a
// device-placed table), stream_lut_rows() starts the copy, run_step() makes part B wait for it.
// Command buffers are recorded once per step shape (token count T, output rows R, whether the logits come back or
// only the greedy ids, attention's split count, a power of two that follows the longest sequence: split-K over
// long contexts, see attention.comp, and whether attention stores the step's keys in a pass of its own: where a
// sequence has several tokens, model/attention_splits.h) and replayed: a decode step (T = 1) is recorded once per
// split count; per step only the small input arrays (ids, slots, positions, RoPE cos/sin, output rows) are written
// into persistently mapped buffers. op_record.cpp records each op's dispatches and the barriers between them.
#include "vk-runtime/vk_backend.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>

#include "model/error.h"
#include "model/lut_rows.h"
#include "model/memory_budget.h"
#include "shaders/ops.h"
#include "shaders/shader_registry.h"
#include "vk-runtime/buffer.h"
#include "vk-runtime/check.h"
#include "vk-runtime/command.h"
#include "vk-runtime/context.h"
#include "vk-runtime/descriptor.h"
#include "vk-runtime/loader.h"
#include "vk-runtime/lut_stream.h"
#include "vk-runtime/op_record.h"
#include "vk-runtime/pipeline.h"
#include "vk-runtime/query.h"
#include "vk-runtime/sync.h"

namespace mole::vulkan {
namespace {

constexpr VkBufferUsageFlags kStorage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
constexpr uint64_t kWaitNs = 120ull * 1000 * 1000 * 1000;  // a step that takes longer is treated as a hung GPU
constexpr uint64_t kSpinNs = 10ull * 1000 * 1000;  // --tune host-wait=spin: poll a step's end this long, then block
constexpr size_t kMaxRecorded = 32;                // recorded step shapes kept; beyond, start over

uint32_t dtype_code(DType d) {
  return d == DType::F32 ? 0u : d == DType::F16 ? 1u : 2u;
}
constexpr uint32_t kLocalSize = kDefaultLocalSize;
static_assert(kLocalSize == 256, "matmul_tiled.glsl computes 64 x 64 blocks with exactly 256 invocations");

// A pipeline's specialization constants other than the local size (shaders/ops.h's kSpec* ids); the ids a shader
// does not declare are ignored.
struct PipelineSpec {
  uint32_t weight_dtype = 0, lut_dtype = 0, norm_dtype = 0, gelu = 0, store = 1, loads = kMatMulGpuLoads;
};

// Writes a step input array into its persistently mapped buffer (nothing for an empty one: no null memcpy).
template <typename T>
void copy_in(const Buffer& dst, const std::vector<T>& src) {
  if (src.empty()) return;
  assert(src.size() * sizeof(T) <= dst.size() && "step input larger than its buffer");
  std::memcpy(dst.mapped(), src.data(), src.size() * sizeof(T));
}

struct Buf {
  Buffer buffer;
  DType dtype = DType::F32;  // weights: the stored dtype; activations: F32
  size_t count = 0;          // elements
};

// The command buffers of one step shape.
struct Recorded {
  Recorded(CommandBuffer a, CommandBuffer b) : part_a(std::move(a)), part_b(std::move(b)) {}
  CommandBuffer part_a, part_b;
  int dispatches = 0, barriers = 0;  // recorded into them, for the profile
  int split_attention = 0;           // attention ops recorded split-K
  // Chained: for each group g (from 1), its ops and its workgroups, for check_chain()'s message.
  std::vector<std::string> chain_ops;
  std::vector<uint64_t> chain_workgroups;
};

class VulkanBackend final : public Backend {
 public:
  VulkanBackend(std::unique_ptr<VulkanContext> ctx, const BackendOptions& opt)
      : ctx_(std::move(ctx)),
        lut_read_(opt.lut_read),
        tuning_(opt.tuning),
        record_file_(lut_read_record_file(opt.cache_dir, "vulkan", uuid_hex(ctx_->info.uuid))),
        dev_(ctx_->device),
        compute_pool_(CommandPool::create(dev_, dev_.compute_family(), true)),
        compute_tl_(TimelineSemaphore::create(dev_, 0)),
        upload_fence_(Fence::create(dev_, false)) {
    budget_.emplace(info().device_memory, opt.memory_limit_mib);
    const std::string no_subgroups = why_no_subgroups(opt.tuning.subgroups);
    subgroups_ = no_subgroups.empty();
    reductions_ = subgroups_ ? "subgroups of " + std::to_string(ctx_->info.subgroup_size) + ", full"
                             : "shared memory (" + no_subgroups + ")";
    if (opt.tuning.tiled_min_rows > 0) tiled_min_rows_ = uint32_t(opt.tuning.tiled_min_rows);
    const bool cpu = ctx_->info.type == VK_PHYSICAL_DEVICE_TYPE_CPU;
    matvec_loads_ = opt.tuning.matvec_loads > 0 ? uint32_t(opt.tuning.matvec_loads) : cpu ? 1u : kMatMulGpuLoads;
    forced_splits_ = uint32_t(std::clamp<int>(opt.tuning.attention_splits, 0, int(kAttentionMaxSplits)));
    store_pass_always_ = opt.tuning.attention_store_pass;
    // Split-K fills a wide GPU; a CPU driver has a few cores that T * H workgroups already keep busy, and there it
    // only adds work (attention 1.16-1.37x slower at 2,000-4,000 keys on lavapipe, 2 cores).
    if (forced_splits_ == 0 && cpu) forced_splits_ = 1;
    // The host polls for a step's greedy ids (or logits) on a GPU, where a thread the driver puts to sleep wakes up
    // late; a CPU driver's own threads need the cores the polling would take.
    const auto wait = opt.tuning.host_wait;
    spin_ns_ = wait == BackendTuning::HostWait::Spin || (wait == BackendTuning::HostWait::Auto && !cpu) ? kSpinNs : 0;
    chain_ = opt.tuning.chain;
    chain_stall_ = chain_ && opt.tuning.perturb_op == "chain-wait";  // tests: every wait of the chain gives up
    if (chain_ && !dev_.enabled().buffer_device_address)
      throw Error("--tune chain=on needs buffer device addresses (bufferDeviceAddress), which " + ctx_->info.name +
                  " does not offer; run without it (pipeline barriers)");
  }

  ~VulkanBackend() override {
    if (dev_.handle()) vk().vkDeviceWaitIdle(dev_.handle());
    ctx_->cache.save();
  }

  BackendInfo info() const override {
    BackendInfo i;
    i.name = "vulkan";
    i.device = ctx_->info.name + " (" + ctx_->info.driver_name + ")";
    i.driver = ctx_->info.driver_info;
    for (const auto& h : ctx_->info.heaps)
      if (h.flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) i.device_memory = std::max<uint64_t>(i.device_memory, h.size);
    i.preferred_lut = LutPlacement::Host;
    i.runs_on_cpu = ctx_->info.type == VK_PHYSICAL_DEVICE_TYPE_CPU;
    i.device_memory_used = budget_ ? budget_->used() : 0;
    i.device_key = uuid_hex(ctx_->info.uuid);
    i.host_wait = spin_ns_ > 0 ? "spin up to " + std::to_string(spin_ns_ / 1000000) + " ms, then block" : "block";
    i.reductions = reductions_;
    if (last_chained_)
      i.execution = "dispatch chain: the dispatches wait for each other in the shaders, no pipeline barriers";
    else if (chain_)
      i.execution = "pipeline barriers (--tune chain=on chains steps of fewer than " + std::to_string(tiled_min_rows_) +
                    " tokens that store their keys in attention, without router weights or profiling" +
                    (graph_ && !chain_possible_ ? "; this graph has an op without a chained shader)" : ")");
    else
      i.execution = "pipeline barriers";
    if (lut_stream_) {
      i.lut_read = lut_read_name(lut_stream_->read());
      i.lut_table_note = lut_stream_->import_note();
      i.lut_rows_moved = lut_stream_->rows_moved();
      i.lut_bytes_moved = lut_stream_->bytes_moved();
    }
    i.validation_messages = ctx_->instance.validation_messages();
    for (const auto& line : ctx_->instance.validation_log()) i.validation_log += line + "\n";
    return i;
  }

  // Device-local memory is budgeted before it is allocated (model/memory_budget.h), so running out is a clear error
  // naming what did not fit and what to do rather than a driver failure halfway through.
  void charge(size_t bytes, const std::string& what) { budget_->charge(bytes, what); }
  // A shader binds each weight and activation buffer whole: none may be past maxStorageBufferRange.
  void check_binding(size_t bytes, const std::string& what) const { check_binding_range(dev_, bytes, what); }

  BufferId upload_weight(const TensorView& t) override { return upload_parts(t, {&t}); }
  BufferId upload_stacked(const std::vector<const TensorView*>& parts) override {
    return upload_parts(stack_check(parts), parts);
  }

  BufferId alloc(size_t count, const char* what) override {
    check_binding(std::max<size_t>(count, 1) * 4, what);
    charge(std::max<size_t>(count, 1) * 4, what);
    bufs_.push_back({Buffer::create(dev_, std::max<size_t>(count, 1) * 4, kStorage, MemoryKind::DeviceLocal, what),
                     DType::F32, count});
    return BufferId(bufs_.size() - 1);
  }

  void write(BufferId id, size_t first, size_t count, const float* src) override {
    upload_bytes(bufs_.at(size_t(id)).buffer, first * 4, src, count * 4);
  }

  void read_back(BufferId id, size_t first, size_t count, float* dst) override {
    // A Gather the last step skipped (its output rows were its tokens): its rows are its source's first rows.
    if (last_rows_identity_) id = bypass_.rows_of(*graph_, id);
    if (id == argmax_ && argmax_ != kNoBuffer && first + count <= size_t(graph_->max_out_rows)) {
      compute_tl_.wait(compute_value_, kWaitNs, spin_ns_);
      check_chain();
      if (lut_stream_) lut_stream_->check();
      std::memcpy(dst, static_cast<const float*>(ids_readback_->mapped()) + first, count * 4);
      return;
    }
    if (id == logits_ && logits_copied_ && first + count <= readback_count_) {
      compute_tl_.wait(compute_value_, kWaitNs, spin_ns_);
      check_chain();
      if (lut_stream_) lut_stream_->check();  // the step's rows were gathered (disk): did that fail?
      std::memcpy(dst, static_cast<const float*>(readback_->mapped()) + first, count * 4);
      return;
    }
    synchronize();
    // Through one host-visible staging buffer kept for the next read (reparameterization reads L*E blocks per
    // step), at most 64 MiB at a time.
    const size_t chunk = size_t(16) << 20;  // floats
    const size_t need = std::max<size_t>(std::min(count, chunk), 1) * 4;
    if (!read_staging_ || read_staging_->size() < need)
      read_staging_ =
          Buffer::create(dev_, need, VK_BUFFER_USAGE_TRANSFER_DST_BIT, MemoryKind::Readback, "read-back staging");
    for (size_t done = 0; done < count; done += chunk) {
      const size_t n = std::min(chunk, count - done);
      one_time_commands([&](VkCommandBuffer cb) {
        VkBufferCopy region{(first + done) * 4, 0, n * 4};
        vk().vkCmdCopyBuffer(cb, bufs_.at(size_t(id)).buffer.handle(), read_staging_->handle(), 1, &region);
        host_read_barrier(cb);
      });
      std::memcpy(dst + done, read_staging_->mapped(), n * 4);
    }
  }

  void synchronize() override {
    compute_tl_.wait(compute_value_, kWaitNs);
    check_chain();
    if (lut_stream_) lut_stream_->wait();
  }

  void set_lut(const LutStore& lut, LutPlacement placement, int max_step_tokens) override;

  // Profiling records a timestamp after every op into the recorded command buffers (so they are recorded again),
  // and around each LUT copy on the transfer queue.
  void set_profiling(bool on) override {
    if (on == profiling_) return;
    synchronize();
    recorded_.clear();
    last_recorded_ = nullptr;
    profiling_ = on;
    if (lut_stream_) lut_stream_->set_profiling(on);
  }
  StepProfile profile() override {
    synchronize();
    collect_profile();
    return prof_;
  }
  void stream_lut_rows(const std::vector<int32_t>& ids) override;
  void run_step(const StepGraph& graph, const StepInputs& in) override;

 private:
  // ---- uploads and one-off commands (load time, tests) ----
  template <typename F>
  void one_time_commands(F&& record) {
    if (!upload_cb_) upload_cb_ = CommandBuffer::create(dev_, compute_pool_);
    CommandBuffer& cb = *upload_cb_;
    cb.reset();  // the previous one-time submission has completed (its fence was waited on)
    cb.begin(true);
    full_barrier(cb.handle());  // after every earlier submission's writes
    record(cb.handle());
    cb.end();
    VkCommandBuffer h = cb.handle();
    VkSubmitInfo si{};
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &h;
    upload_fence_.reset();
    VK_CHECK(vk().vkQueueSubmit(dev_.compute_queue(), 1, &si, upload_fence_.handle()));
    upload_fence_.wait(kWaitNs);
  }

  // One device-local weight buffer described by `all` (name, dtype, size), holding the parts' bytes one after
  // another (a single tensor is its own one part).
  BufferId upload_parts(const TensorView& all, const std::vector<const TensorView*>& parts) {
    const size_t bytes = std::max<size_t>((all.nbytes + 3) & ~size_t(3), 4);  // shaders read 32-bit words
    check_binding(bytes, all.name);
    charge(bytes, all.name);
    Buf b{Buffer::create(dev_, bytes, kStorage, MemoryKind::DeviceLocal, all.name.c_str()), all.dtype,
          size_t(all.numel())};
    size_t at = 0;
    for (const TensorView* t : parts) {
      upload_bytes(b.buffer, at, t->data, t->nbytes);
      at += t->nbytes;
    }
    bufs_.push_back(std::move(b));
    return BufferId(bufs_.size() - 1);
  }

  void upload_bytes(const Buffer& dst, size_t offset, const void* src, size_t n) {
    if (n == 0) return;
    const size_t chunk = size_t(64) << 20;
    Buffer staging = Buffer::create(dev_, std::min(n, chunk), VK_BUFFER_USAGE_TRANSFER_SRC_BIT, MemoryKind::HostVisible,
                                    "upload staging");
    for (size_t done = 0; done < n; done += chunk) {
      size_t len = std::min(chunk, n - done);
      std::memcpy(staging.mapped(), static_cast<const uint8_t*>(src) + done, len);
      one_time_commands([&](VkCommandBuffer cb) {
        VkBufferCopy region{0, offset + done, len};
        vk().vkCmdCopyBuffer(cb, staging.handle(), dst.handle(), 1, &region);
      });
    }
  }

  static void full_barrier(VkCommandBuffer cb) {
    const VkPipelineStageFlags st = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
    memory_barrier(cb, st, VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, st,
                   VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                       VK_ACCESS_TRANSFER_WRITE_BIT);
  }
  static void host_read_barrier(VkCommandBuffer cb) {
    memory_barrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
                   VK_ACCESS_HOST_READ_BIT);
  }

  // ---- pipelines and descriptors ----
  // The pipeline of a shader (bindings and push size from shaders/ops.h) with the given specialization constants.
  const ComputePipeline& pipeline(std::string_view shader, const PipelineSpec& s = {}) {
    const ShaderOp* op = nullptr;
    constexpr std::string_view kChain = "_chain";  // a _chain build: its build's bindings, the chain's push constants
    const bool chain = shader.ends_with(kChain);
    const std::string_view build = chain ? shader.substr(0, shader.size() - kChain.size()) : shader;
    for (const ShaderOp& o : kShaderOps)
      if (o.name == build) op = &o;
    auto spirv = shader_spirv(shader);
    assert(op && !spirv.empty() && "a shader this build does not have");
    static_assert(kSpecWeightDtype == 0 && kSpecLocalSize == 1 && kSpecLutDtype == 2 && kSpecNormDtype == 3 &&
                  kSpecGelu == 4 && kSpecStore == 5 && kSpecLoads == 6);
    std::vector<uint32_t> spec = {s.weight_dtype, kLocalSize, s.lut_dtype, s.norm_dtype, s.gelu, s.store, s.loads};
    std::string key = std::string(shader);
    for (uint32_t v : spec) {
      key += ':';
      key += std::to_string(v);
    }
    auto it = pipelines_.find(key);
    if (it != pipelines_.end()) return it->second;
    std::string name(shader);
    // A _subgroup variant's subgroups are full (why_no_subgroups()), so that gl_SubgroupSize invocations run each.
    const bool full_subgroups = build.find("_subgroup") != std::string_view::npos;
    auto made = ComputePipeline::create(dev_, ctx_->cache, spirv, set_layout(op->bindings),
                                        chain ? kChainPushBytes : op->push_bytes, spec, name.c_str(), full_subgroups);
    return pipelines_.emplace(key, std::move(made)).first->second;
  }
  // Why the _subgroup variants (the matmul family's, attention's and the router's) do not run here; "" where they
  // do: subgroup arithmetic, a subgroup size that divides the local size (then a column's lanes are one subgroup,
  // reduced without shared memory or barriers, and a workgroup reduction takes 2 barriers), and full subgroups.
  // Without REQUIRE_FULL_SUBGROUPS a device may run subgroups with fewer invocations than gl_SubgroupSize (Intel's
  // driver reports 32 and may compile 8 or 16 wide), and the matmul family's lanes would leave part of each row
  // unsummed. --tune subgroups=0 turns them off (the tests run both).
  std::string why_no_subgroups(int wanted) const {
    const uint32_t sg = ctx_->info.subgroup_size, most = ctx_->info.max_subgroup_size;
    if (wanted == 0) return "--tune subgroups=0";
    if (!(ctx_->info.subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT)) return "no subgroup arithmetic";
    if (sg < 4 || sg > kLocalSize || kLocalSize % sg != 0)
      return "subgroups of " + std::to_string(sg) + " do not divide " + std::to_string(kLocalSize) + " invocations";
    if (!dev_.enabled().compute_full_subgroups || most == 0 || kLocalSize % most != 0)
      return "full subgroups cannot be required (computeFullSubgroups)";
    return "";
  }
  // The shader to run of those with a _subgroup variant; and the threads per column the matmul family's dispatch
  // assumes.
  std::string subgroup_variant(const char* base) const {
    std::string name = base;
    if (subgroups_) name += "_subgroup";
    return name;
  }
  uint32_t matmul_lanes() const { return subgroups_ ? ctx_->info.subgroup_size : kMatMulSharedLanes; }
  const DescriptorSetLayout& set_layout(uint32_t bindings) {
    auto it = layouts_.find(bindings);
    if (it == layouts_.end()) it = layouts_.emplace(bindings, DescriptorSetLayout::create(dev_, bindings)).first;
    return it->second;
  }

  void prepare(const StepGraph& g);
  // (T, R, whether part B copies the logits to the host, attention's splits, attention's store pass, whether the
  // output rows are the tokens in order: GatherBypass, whether the step is chained) -> the step's command buffers.
  using ShapeKey = std::tuple<uint32_t, uint32_t, bool, uint32_t, bool, bool, bool>;
  Recorded& recorded_for(const StepGraph& g, const ShapeKey& key);
  VkDescriptorBufferInfo whole(BufferId id) const { return {bufs_.at(size_t(id)).buffer.handle(), 0, VK_WHOLE_SIZE}; }
  static VkDescriptorBufferInfo whole(const Buffer& b) { return {b.handle(), 0, VK_WHOLE_SIZE}; }

  std::unique_ptr<VulkanContext> ctx_;
  LutRead lut_read_;         // as asked for (--lut-read); LutStream resolves Auto
  BackendTuning tuning_;     // --tune: the table's chunks, the disk gather, the import
  std::string record_file_;  // where `mole bench --record` keeps this device's measured read mode
  const Device& dev_;
  CommandPool compute_pool_;
  TimelineSemaphore compute_tl_;
  uint64_t compute_value_ = 0;
  Fence upload_fence_;
  std::optional<Buffer> read_staging_;      // read_back() of buffers other than the logits, reused
  std::optional<CommandBuffer> upload_cb_;  // reused by every one-time submission (uploads, read-backs)
  std::vector<Buf> bufs_;
  std::optional<MemoryBudget> budget_;  // device-local memory: the device's, or --memory-limit's
  std::map<std::string, ComputePipeline> pipelines_;
  bool subgroups_ = false;                         // why_no_subgroups() is empty, decided once
  std::string reductions_;                         // BackendInfo::reductions
  uint32_t tiled_min_rows_ = kMatMulTiledMinRows;  // --tune tiled-min-rows overrides (tests, tuning)
  uint32_t matvec_loads_ = kMatMulGpuLoads;        // the column kernels' LOADS (kSpecLoads; --tune matvec-loads)
  uint32_t forced_splits_ = 0;      // --tune attention-splits, else 1 on a CPU device; 0: attention_splits() decides
  bool store_pass_always_ = false;  // --tune attention-store=pass
  uint64_t spin_ns_ = 0;            // --tune host-wait: how long read_back() polls a step's end before it blocks
  bool chain_ = false;              // --tune chain=on: steps that can are recorded chained (shaders/chain.glsl)
  bool chain_stall_ = false;        // --tune chain=on,perturb=chain-wait (tests): waits for a workgroup too many
  std::map<uint32_t, DescriptorSetLayout> layouts_;

  // Graph-bound state, made on the first run_step (the graph never changes afterwards).
  const StepGraph* graph_ = nullptr;
  std::optional<DescriptorPool> desc_pool_;
  std::vector<OpPlan> plans_;
  size_t split_ = 0;                    // first op of part B (the first RouterLut), or ops.size() for a dense model
  BufferId attn_part_ = kNoBuffer;      // split-K attention's partials (slots x max H*(2+hd)), shared by the layers
  BufferId attn_arrivals_ = kNoBuffer;  // and their counts per (token, head) pair (uint)
  uint32_t attn_slots_ = 0;             // tokens x splits attn_part_ holds; 0: the graph has no attention
  std::optional<Buffer> in_ids_, in_slot_, in_pos_, in_cos_, in_sin_, in_rows_;  // (T) (T) (T) (T,hd/2) x2 (R)
  std::optional<Buffer> readback_;                                               // (R, V) logits copied for the host
  size_t readback_count_ = 0;
  BufferId logits_ = kNoBuffer;
  std::map<ShapeKey, Recorded> recorded_;
  BufferId argmax_ = kNoBuffer;         // the graph's greedy ids (R), which its Argmax writes into ids_readback_
  std::optional<Buffer> ids_readback_;  // (R) host-visible
  bool logits_copied_ = false;          // the last step copied its logits to readback_ (want_logits)
  GatherBypass bypass_;                 // the Gathers a step whose output rows are its tokens skips
  bool last_rows_identity_ = false;     // the last step was one (it skipped them)
  // The dispatch chain (--tune chain=on): whether every op of the graph has a _chain build, the steps' counters
  // (host-visible, so the host reads counter 0, the failure flag) and whether the last step submitted was chained.
  bool chain_possible_ = false;
  std::optional<Buffer> chain_counters_;
  uint32_t chain_counter_count_ = 0;
  bool last_chained_ = false;
  const Recorded* last_recorded_ = nullptr;  // the last step submitted (null once recorded_ was cleared)
  uint64_t chain_checked_ = 0;               // the step (compute_value_) whose failure flag check_chain() read last
  std::string chain_failure_;                // the error of a chained step that failed: every later call gets it
  // Call once the last step is complete: throws mole::Error if it was chained and one of its waits gave up. Reads
  // the flag (host-visible memory, on a discrete GPU across the bus) once a step. A failure sticks: once a wait gave
  // up, every later one went on at once, so dispatches overlapped that share state across steps (split attention's
  // counts, zero between uses, say), and nothing this backend computes after it can be trusted.
  void check_chain() {
    if (!chain_failure_.empty()) throw Error(chain_failure_);
    if (!last_chained_ || chain_checked_ == compute_value_) return;
    chain_checked_ = compute_value_;
    const volatile uint32_t* c = static_cast<const volatile uint32_t*>(chain_counters_->mapped());
    const uint32_t word = c[0];
    if (word == 0) return;
    // Which wait gave up first: the group it waited for, its ops, and how many of its workgroups had counted by
    // the step's end (all of them: they ran, but too late or their counts were not seen; fewer: some never ran).
    std::string which;
    const uint32_t g = word / kChainCounterStride;
    if (last_recorded_ && word % kChainCounterStride == 0 && g >= 1 && g < last_recorded_->chain_workgroups.size() &&
        g < last_recorded_->chain_ops.size()) {
      const uint64_t want = last_recorded_->chain_workgroups[g];
      which = " (group " + std::to_string(g) + " of " + std::to_string(last_recorded_->chain_workgroups.size() - 1) +
              ", " + last_recorded_->chain_ops[g] + ": " + std::to_string(c[word]) + " of its " + std::to_string(want) +
              " workgroups had counted by the step's end)";
    }
    chain_failure_ = "the Vulkan dispatch chain (--tune chain=on) failed on " + ctx_->info.name +
                     ": a dispatch gave up waiting for the ones before it" + which +
                     ", so this device does not run a queue's dispatches in order as the chain needs, and the "
                     "step's results, and this backend's from now on, are void; run without --tune chain=on";
    throw Error(chain_failure_);
  }

  // Profiling.
  bool profiling_ = false, profile_pending_ = false;
  std::optional<TimestampQueryPool> op_ts_;  // (ops + 1) timestamps per step
  StepInputs profiled_in_;                   // the step whose timestamps are pending
  StepProfile prof_;
  void collect_profile();

  // LUT: the table (null for a dense model) and the stream of its rows to router_lut.comp.
  const LutStore* lut_ = nullptr;
  std::unique_ptr<LutStream> lut_stream_;
};

void VulkanBackend::set_lut(const LutStore& lut, LutPlacement placement, int max_step_tokens) {
  compute_tl_.wait(compute_value_, kWaitNs);  // no step still reads the old stream's ring or chunks
  lut_stream_.reset();
  lut_ = nullptr;
  lut_stream_ = LutStream::create(
      dev_, lut, placement, max_step_tokens, lut_read_, tuning_, record_file_,
      [this](size_t bytes, const std::string& what) { charge(bytes, what); },
      [this](const Buffer& dst, const void* src, size_t bytes) { upload_bytes(dst, 0, src, bytes); });
  lut_stream_->set_profiling(profiling_);
  lut_ = &lut;
}

void VulkanBackend::stream_lut_rows(const std::vector<int32_t>& ids) {
  if (lut_stream_) lut_stream_->stream(ids, compute_tl_, compute_value_);
}

void VulkanBackend::prepare(const StepGraph& g) {
  graph_ = &g;
  logits_ = g.logits;
  argmax_ = g.argmax;
  uint32_t half = 1;
  size_t n_desc = 0, n_sets = g.ops.size(), part_width = 0;  // part_width: the widest attention's H * (2 + hd)
  size_t max_heads = 0;
  bypass_ = gather_bypass(g);
  for (const BufferId src : bypass_.src0) {  // a second set for each op that reads a skipped Gather's source
    n_desc += src != kNoBuffer ? 8 : 0;
    n_sets += src != kNoBuffer ? 1 : 0;
  }
  for (const Op& op : g.ops) {
    if (op.rope) half = std::max<uint32_t>(half, uint32_t(op.k / 2));
    const uint32_t max_hd = std::min(kAttentionMaxHeadDim, 4 * kLocalSize);
    if (op.kind == OpKind::Attention && uint32_t(op.k) > max_hd)
      throw Error("the Vulkan backend supports head dimensions up to " + std::to_string(max_hd) +
                  " (this model: " + std::to_string(op.k) + ")");
    if ((op.kind == OpKind::RouterLut || op.kind == OpKind::RouterProbs) && uint32_t(op.n) > kRouterLutMaxExperts)
      throw Error("the Vulkan backend supports at most " + std::to_string(kRouterLutMaxExperts) +
                  " experts (this model has " + std::to_string(op.n) + ")");
    n_desc += 8;                         // the most any shader binds but split-K's
    if (op.kind == OpKind::Attention) {  // and split-K's set
      n_desc += 10;
      n_sets += 1;
      part_width = std::max(part_width, size_t(op.n) * size_t(2 + op.k));
      max_heads = std::max(max_heads, size_t(op.n));
    }
  }
  const size_t T = size_t(g.max_tokens), R = size_t(g.max_out_rows);
  if (part_width > 0) {  // at most kAttentionSplitSlots token-splits: 0.8 MiB for 12 heads of 64
    attn_slots_ = uint32_t(std::min<size_t>(kAttentionSplitSlots, T * kAttentionMaxSplits));
    attn_part_ = alloc(attn_slots_ * part_width, "attention split partials");
    // The counts per (token, head) pair, which the merging workgroups set back to 0.
    const size_t pairs = size_t(attn_slots_) * max_heads;
    attn_arrivals_ = alloc(pairs, "attention split counts");
    const std::vector<float> zeros(pairs, 0.0f);
    write(attn_arrivals_, 0, pairs, zeros.data());
  }
  auto input = [&](size_t count, const char* what) {
    return Buffer::create(dev_, std::max<size_t>(count, 1) * 4, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
                          MemoryKind::HostToDevice, what);
  };
  in_ids_ = input(T, "step token ids");
  in_slot_ = input(T, "step slots");
  in_pos_ = input(T, "step positions");
  in_cos_ = input(T * half, "step RoPE cos");
  in_sin_ = input(T * half, "step RoPE sin");
  in_rows_ = input(R, "step output rows");
  readback_count_ = bufs_.at(size_t(g.logits)).count;
  if (argmax_ != kNoBuffer)  // the graph's Argmax writes the ids here itself (host-visible)
    ids_readback_ =
        Buffer::create(dev_, size_t(g.max_out_rows) * 4, kStorage, MemoryKind::Readback, "greedy ids read-back");
  readback_ = Buffer::create(dev_, readback_count_ * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT, MemoryKind::Readback,
                             "logits read-back");
  desc_pool_ = DescriptorPool::create(dev_, uint32_t(n_sets), uint32_t(n_desc));

  split_ = g.ops.size();
  plans_.clear();
  for (size_t i = 0; i < g.ops.size(); i++) {
    const Op& op = g.ops[i];
    std::vector<VkDescriptorBufferInfo> b;
    const ComputePipeline *p = nullptr, *tiled = nullptr, *chain = nullptr;
    // The op's pipeline, and with --tune chain=on its _chain build where the shader has one (not router_probs).
    auto use = [&](const std::string& name, const PipelineSpec& spec) {
      p = &pipeline(name, spec);
      if (chain_ && !shader_spirv(name + "_chain").empty()) chain = &pipeline(name + "_chain", spec);
    };
    auto wdt = [&](BufferId w) { return dtype_code(bufs_.at(size_t(w)).dtype); };
    switch (op.kind) {
      case OpKind::Embed:
        use("embed", {.weight_dtype = wdt(op.src0)});
        b = {whole(op.src0), whole(*in_ids_), whole(op.dst)};
        break;
      case OpKind::NormMatMul:
        use(subgroup_variant("norm_matmul"), {.weight_dtype = wdt(op.src1),
                                              .norm_dtype = wdt(op.src2),
                                              .gelu = op.gelu ? 1u : 0u,
                                              .loads = matvec_loads_});
        tiled = &pipeline("norm_matmul_tiled",
                          {.weight_dtype = wdt(op.src1), .norm_dtype = wdt(op.src2), .gelu = op.gelu ? 1u : 0u});
        b = {whole(op.src0), whole(op.src1), whole(op.dst), whole(op.src2)};
        break;
      case OpKind::MatMul:
        use(subgroup_variant("matmul"), {.weight_dtype = wdt(op.src1), .loads = matvec_loads_});
        tiled = &pipeline("matmul_tiled", {.weight_dtype = wdt(op.src1)});
        // Without an addend, x (which the op reads anyway) is bound in its place, unread: the push constant says so.
        b = {whole(op.src0), whole(op.src1), whole(op.dst), whole(op.src2 != kNoBuffer ? op.src2 : op.src0)};
        break;
      case OpKind::Attention:  // plan.attend[] and plan.split[] below are what runs
        p = &pipeline("attention");
        b = {whole(op.src0),  whole(op.src1), whole(op.src1),  whole(*in_slot_),  // the KV cache: keys; values, store
             whole(*in_pos_), whole(op.dst),  whole(*in_cos_), whole(*in_sin_)};
        break;
      case OpKind::RouterLut:
        assert(lut_ && "RouterLut without a table");
        split_ = std::min(split_, i);
        use(subgroup_variant(lut_stream_->direct() ? "router_lut_direct" : "router_lut"),
            {.weight_dtype = wdt(op.src1), .lut_dtype = dtype_code(lut_->dtype()), .norm_dtype = wdt(op.src2)});
        b = {whole(op.src0), whole(op.src1), whole(op.src2), whole(op.dst)};
        if (lut_stream_->direct()) {
          b.push_back(whole(*in_ids_));
          b.push_back(whole(lut_stream_->chunk_addresses()));
        } else {
          b.push_back(whole(lut_stream_->ring()));
        }
        break;
      case OpKind::RouterProbs:
        use(subgroup_variant("router_probs"), {.weight_dtype = wdt(op.src1), .norm_dtype = wdt(op.src2)});
        b = {whole(op.src0), whole(op.src1), whole(op.src2), whole(op.dst), whole(*in_rows_)};
        break;
      case OpKind::Gather:
        use("gather", {});
        b = {whole(op.src0), whole(*in_rows_), whole(op.dst)};
        break;
      case OpKind::Argmax:  // the graph's ids straight into host-visible memory: no copy, no barrier before one
        use("argmax", {});
        b = {whole(op.src0), op.dst == argmax_ ? whole(*ids_readback_) : whole(op.dst)};
        break;
    }
    OpPlan plan{p, tiled, desc_pool_->allocate(set_layout(uint32_t(b.size())))};
    plan.chain = chain;
    write_storage_buffers(dev_, plan.set, b);
    plan.skip_on_identity_rows = bypass_.skip[i];
    if (bypass_.src0[i] != kNoBuffer) {  // binding 0 is src0 for the matmul family
      plan.bypass_src = bypass_.src0[i];
      b[0] = whole(plan.bypass_src);
      plan.bypass_set = desc_pool_->allocate(set_layout(uint32_t(b.size())));
      write_storage_buffers(dev_, plan.bypass_set, b);
    }
    if (op.kind == OpKind::Attention) {  // the store pass (plan.set); split-K: the partials in out's place, then -> out
      plan.store = &pipeline("attention_store");
      for (uint32_t store : {0u, 1u}) {
        plan.attend[store] = &pipeline(subgroup_variant("attention"), {.store = store});
        plan.split[store] = &pipeline(subgroup_variant("attention_split"), {.store = store});
      }
      if (chain_) {
        plan.chain = &pipeline(subgroup_variant("attention") + "_chain", {.store = 1});
        plan.chain_split = &pipeline(subgroup_variant("attention_split") + "_chain", {.store = 1});
      }
      b[5] = whole(attn_part_);
      b.push_back(whole(op.dst));
      b.push_back(whole(attn_arrivals_));
      plan.split_set = desc_pool_->allocate(set_layout(uint32_t(b.size())));
      write_storage_buffers(dev_, plan.split_set, b);
    }
    plans_.push_back(plan);
  }
  chain_possible_ = chain_;
  for (const OpPlan& plan : plans_) chain_possible_ = chain_possible_ && plan.chain;
  if (chain_possible_) {
    chain_counter_count_ = uint32_t(2 * g.ops.size() + 2);  // at most a group a dispatch (attention: 2), and the flag
    chain_counters_ = Buffer::create(dev_, size_t(chain_counter_count_) * kChainCounterStride * 4,
                                     VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                                         VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
                                     MemoryKind::HostToDevice, "dispatch chain counters");
  }
}

Recorded& VulkanBackend::recorded_for(const StepGraph& g, const ShapeKey& key) {
  const auto [T, R, copy_logits, splits, store_pass, identity, chained] = key;
  auto it = recorded_.find(key);
  if (it != recorded_.end()) return it->second;
  if (recorded_.size() >= kMaxRecorded) {
    synchronize();
    recorded_.clear();
    last_recorded_ = nullptr;
  }
  Recorded r(CommandBuffer::create(dev_, compute_pool_), CommandBuffer::create(dev_, compute_pool_));
  if (profiling_ && !op_ts_) op_ts_ = TimestampQueryPool::create(dev_, uint32_t(g.ops.size() + 1));
  r.part_a.begin(false);
  if (chained)  // the chain's counters from 0 (the barrier below orders the fill before the dispatches)
    vk().vkCmdFillBuffer(r.part_a.handle(), chain_counters_->handle(), 0, VK_WHOLE_SIZE, 0);
  full_barrier(r.part_a.handle());  // orders this step after the previous step's reads and writes
  if (profiling_) {
    op_ts_->reset(r.part_a.handle());
    op_ts_->write(r.part_a.handle(), 0);
  }
  // Barriers only where a dispatch depends on an earlier one (BarrierTracker), tracked across part A and part B:
  // they are submitted in order, so a barrier in B covers A's writes.
  BarrierTracker tracker = chained ? BarrierTracker(chain_counters_->device_address(), chain_stall_) : BarrierTracker();
  const RecordShape shape{T, R, splits, store_pass, identity};
  const RecordSettings settings{kLocalSize, matmul_lanes(), tiled_min_rows_, lut_ ? uint32_t(lut_->row_elems()) : 0u,
                                attn_part_, attn_arrivals_};
  auto record = [&](VkCommandBuffer cb, size_t i) {
    const int dispatched = record_op(cb, g.ops[i], plans_[i], shape, settings, tracker);
    r.dispatches += dispatched;
    if (chained && dispatched > 0) {  // the op's dispatch is in the tracker's current group
      r.chain_ops.resize(tracker.groups() + 1);
      std::string& ops = r.chain_ops[tracker.groups()];
      ops += (ops.empty() ? "" : ", ") + std::string(op_name(g.ops[i].kind));
    }
    if (g.ops[i].kind == OpKind::Attention && splits > 1) r.split_attention++;
    if (profiling_) op_ts_->write(cb, uint32_t(i + 1));
  };
  for (size_t i = 0; i < split_; i++) record(r.part_a.handle(), i);
  r.part_a.end();
  r.part_b.begin(false);
  for (size_t i = split_; i < g.ops.size(); i++) record(r.part_b.handle(), i);
  // The logits, when the caller wants them, to a host-visible buffer (after every op's writes); Argmax wrote the
  // greedy ids there itself. Then the host may read both.
  if (copy_logits) {
    memory_barrier(r.part_b.handle(), VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                   VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
    size_t V = readback_count_ / size_t(g.max_out_rows);
    VkBufferCopy region{0, 0, size_t(R) * V * 4};
    vk().vkCmdCopyBuffer(r.part_b.handle(), bufs_.at(size_t(g.logits)).buffer.handle(), readback_->handle(), 1,
                         &region);
  }
  memory_barrier(r.part_b.handle(), VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                 VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
                 VK_ACCESS_HOST_READ_BIT);
  r.part_b.end();
  r.barriers = tracker.barriers();
  assert((!chained || tracker.groups() < chain_counter_count_) && "more chained groups than counters");
  if (chained)
    for (uint32_t gi = 0; gi <= tracker.groups(); gi++) r.chain_workgroups.push_back(gi ? tracker.workgroups(gi) : 0);
  return recorded_.emplace(key, std::move(r)).first->second;
}

void VulkanBackend::run_step(const StepGraph& g, const StepInputs& in) {
  if (graph_ != &g) {
    assert(!graph_ && "a backend runs one graph for its life (model/backend.h)");
    prepare(g);
  }
  const uint32_t T = uint32_t(in.tokens()), R = uint32_t(in.out_rows.size());
  assert(T > 0 && T <= uint32_t(g.max_tokens) && R > 0 && R <= uint32_t(g.max_out_rows) && "step outside the graph");
  assert((!lut_ || lut_stream_->rows_streamed() == int(T)) && "stream_lut_rows() must precede run_step()");
  check_step_slots(g, in);
  compute_tl_.wait(compute_value_, kWaitNs);  // the previous step no longer reads the inputs
  check_chain();                              // nor did it give up waiting (a chained step)
  if (lut_stream_) lut_stream_->check();      // a failed gather (disk) is reported before the step goes out
  collect_profile();
  const auto launch_start = std::chrono::steady_clock::now();
  // Without an Argmax op in the graph (reparameterization) the logits always come back. Attention's splits follow
  // the step's longest sequence, in powers of two (few shapes to record).
  uint32_t max_keys = 0;
  for (int32_t p : in.pos) max_keys = std::max(max_keys, uint32_t(p) + 1);
  const uint32_t splits = attn_slots_ ? attention_splits(max_keys, T, attn_slots_, forced_splits_, kLocalSize) : 1;
  const bool store_pass = store_pass_always_ || attention_store_pass(in.slot);
  // Chained (--tune chain=on): steps whose every dispatch has a _chain build (no tiled product, for the step's tokens
  // or its output rows, which the Backend interface lets outnumber them; no store pass), when no timestamps go
  // between the ops.
  const bool chained = chain_possible_ && !profiling_ && std::max(T, R) < tiled_min_rows_ && !store_pass;
  const ShapeKey key{
      T, R, in.want_logits || argmax_ == kNoBuffer, splits, store_pass, rows_identity(in.out_rows, int(T)), chained};
  const bool replay = recorded_.count(key) != 0;
  copy_in(*in_ids_, in.ids);
  copy_in(*in_slot_, in.slot);
  copy_in(*in_pos_, in.pos);
  copy_in(*in_cos_, in.rope_cos);  // empty for a graph without RoPE
  copy_in(*in_sin_, in.rope_sin);
  copy_in(*in_rows_, in.out_rows);

  Recorded& rec = recorded_for(g, key);
  logits_copied_ = std::get<2>(key);
  last_rows_identity_ = std::get<5>(key);
  last_chained_ = chained;
  last_recorded_ = &rec;
  const uint64_t done = ++compute_value_;
  const bool wait_lut = lut_ && lut_stream_->wait_needed();  // not for direct reads
  const uint64_t lut_wait = wait_lut ? lut_stream_->value() : 0;
  VkCommandBuffer a = rec.part_a.handle(), b = rec.part_b.handle();
  VkSemaphore lut_sem = wait_lut ? lut_stream_->semaphore() : VK_NULL_HANDLE, compute_sem = compute_tl_.handle();
  VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT;
  VkTimelineSemaphoreSubmitInfo ts{};
  ts.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
  ts.waitSemaphoreValueCount = wait_lut ? 1 : 0;
  ts.pWaitSemaphoreValues = &lut_wait;
  ts.signalSemaphoreValueCount = 1;
  ts.pSignalSemaphoreValues = &done;
  VkSubmitInfo si[2] = {};
  si[0].sType = si[1].sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si[1].pNext = &ts;
  si[0].commandBufferCount = 1;
  si[0].pCommandBuffers = &a;
  si[1].waitSemaphoreCount = wait_lut ? 1 : 0;
  si[1].pWaitSemaphores = &lut_sem;
  si[1].pWaitDstStageMask = &wait_stage;
  si[1].commandBufferCount = 1;
  si[1].pCommandBuffers = &b;
  si[1].signalSemaphoreCount = 1;
  si[1].pSignalSemaphores = &compute_sem;
  VK_CHECK(vk().vkQueueSubmit(dev_.compute_queue(), 2, si, VK_NULL_HANDLE));  // one submit per step
  if (lut_) lut_stream_->consumed();
  if (profiling_ && replay) {
    prof_.replayed_steps++;
    prof_.submits++;
    prof_.host_launch_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - launch_start).count();
  }
  if (profiling_) {
    profiled_in_ = in;
    profile_pending_ = true;
    prof_.dispatches += uint64_t(rec.dispatches);
    prof_.barriers += uint64_t(rec.barriers);
    prof_.split_attention += uint64_t(rec.split_attention);
    prof_.attention_splits += uint64_t(rec.split_attention) * splits;
  }
}

// Adds the finished step's timestamps to prof_ (call only once that step is complete).
void VulkanBackend::collect_profile() {
  if (!profile_pending_ || !graph_) return;
  profile_pending_ = false;
  const auto& ops = graph_->ops;
  std::vector<double> t = op_ts_->read_ns(uint32_t(ops.size() + 1));
  if (prof_.ops.size() != ops.size()) prof_.ops.assign(ops.size(), {});
  const bool identity = rows_identity(profiled_in_.out_rows, profiled_in_.tokens());
  for (size_t i = 0; i < ops.size(); i++) {
    OpProfile& p = prof_.ops[i];
    p.kind = ops[i].kind;
    if (identity && bypass_.skip[i]) continue;  // a Gather the step skipped (GatherBypass)
    p.calls++;
    if (std::isfinite(t[i + 1] - t[i])) p.seconds += (t[i + 1] - t[i]) * 1e-9;
    BufferId w = op_weight(ops[i]);
    size_t wb = w == kNoBuffer ? 0 : dtype_size(bufs_.at(size_t(w)).dtype);
    p.bytes += op_bytes(ops[i], profiled_in_, wb, lut_ ? dtype_size(lut_->dtype()) : 0);
  }
  if (std::isfinite(t[split_] - t[0])) prof_.lut_window_seconds += (t[split_] - t[0]) * 1e-9;
  if (lut_stream_) prof_.lut_copy_seconds += lut_stream_->last_copy_seconds();
  prof_.steps++;
}

}  // namespace

std::unique_ptr<Backend> make_vulkan_backend(const BackendOptions& opt) {
  using V = BackendOptions::Validation;
  return std::make_unique<VulkanBackend>(
      VulkanContext::create(opt.device, opt.validation != V::Off, opt.validation == V::Sync, opt.pipeline_cache,
                            opt.cache_dir),
      opt);
}

BackendProbe probe_vulkan(const BackendOptions& opt) {
  BackendProbe p;
  bool cpu = false;
  p.detail = vulkan_availability(&p.available, &cpu);
  p.gpu = p.available && (!cpu || opt.allow_cpu_device);
  if (p.available) p.devices = vulkan_device_details();
  return p;
}

BackendEntry vulkan_backend_entry() {
  return {"vulkan",
          probe_vulkan,
          make_vulkan_backend,
          {"lut-read", "subgroups", "tiled-min-rows", "attention-splits", "attention-store", "lut-chunk-bytes",
           "lut-gather", "lut-import", "matvec-loads", "host-wait", "chain"}};
}

}  // namespace mole::vulkan
