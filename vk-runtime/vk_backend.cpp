// Vulkan backend. Each step is two command buffers submitted in one vkQueueSubmit: part A (embedding up to the first
// layer's LUT sum: embedding, norm, q/k/v, RoPE, attention, MLP) needs no LUT rows; part B (from the first RouterLut
// on) waits on the LUT timeline semaphore, so the rows' copy on the transfer queue overlaps part A.
//
// The table's rows always reach the shaders through a small device-local ring (max_step_tokens rows, in step order),
// filled by vkCmdCopyBuffer regions on the transfer queue from wherever the table lives:
//   device: row-aligned device-local chunks (no buffer exceeds maxStorageBufferRange or maxMemoryAllocationSize),
//   host:   the same chunks in host-visible memory,
//   disk:   a host-visible staging ring that the host fills from the mmap'd file.
// Command buffers are recorded once per step shape (token count T, output rows R) and replayed: a decode step
// (T = 1) is recorded once; per step only the small input arrays (ids, slots, positions, RoPE cos/sin, output
// rows) are written into persistently mapped buffers.
#include "vk-runtime/vk_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>

#include "model/error.h"
#include "shaders/ops.h"
#include "shaders/shader_registry.h"
#include "vk-runtime/buffer.h"
#include "vk-runtime/check.h"
#include "vk-runtime/command.h"
#include "vk-runtime/context.h"
#include "vk-runtime/descriptor.h"
#include "vk-runtime/loader.h"
#include "vk-runtime/pipeline.h"
#include "vk-runtime/query.h"
#include "vk-runtime/sync.h"

namespace mole::vulkan {
namespace {

constexpr VkBufferUsageFlags kStorage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
constexpr uint64_t kWaitNs = 120ull * 1000 * 1000 * 1000;  // a step that takes longer is treated as a hung GPU
constexpr size_t kMaxRecorded = 16;                        // recorded step shapes kept; beyond, start over

uint32_t dtype_code(DType d) {
  return d == DType::F32 ? 0u : d == DType::F16 ? 1u : 2u;
}
constexpr uint32_t kLocalSize = kDefaultLocalSize;

// Writes a step input array into its persistently mapped buffer (nothing for an empty one: no null memcpy).
template <typename T>
void copy_in(const Buffer& dst, const std::vector<T>& src) {
  if (src.empty()) return;
  if (src.size() * sizeof(T) > dst.size()) throw Error("internal: step input larger than its buffer");
  std::memcpy(dst.mapped(), src.data(), src.size() * sizeof(T));
}

struct Buf {
  Buffer buffer;
  DType dtype = DType::F32;  // weights: the stored dtype; activations: F32
  size_t count = 0;          // elements
};

// The command buffers of one step shape.
struct Recorded {
  CommandBuffer part_a, part_b;
};

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(std::unique_ptr<VulkanContext> ctx)
      : ctx_(std::move(ctx)),
        dev_(ctx_->device),
        compute_pool_(CommandPool::create(dev_, dev_.compute_family(), true)),
        transfer_pool_(CommandPool::create(dev_, dev_.transfer_family(), true)),
        compute_tl_(TimelineSemaphore::create(dev_, 0)),
        lut_tl_(TimelineSemaphore::create(dev_, 0)),
        upload_fence_(Fence::create(dev_, false)) {
    budget_ = info().device_memory;
    if (const char* lim = std::getenv("MOLE_VK_MEMORY_LIMIT_MB"); lim && *lim)
      budget_ = std::min<uint64_t>(budget_ ? budget_ : UINT64_MAX, uint64_t(std::strtod(lim, nullptr) * 1048576.0));
    if (budget_ == 0) budget_ = UINT64_MAX;
  }

  ~VulkanBackend() override {
    if (dev_.handle()) vk().vkDeviceWaitIdle(dev_.handle());
    ctx_->cache.save();
  }

  BackendInfo info() const override {
    uint64_t mem = 0;
    for (const auto& h : ctx_->info.heaps)
      if (h.flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) mem = std::max<uint64_t>(mem, h.size);
    return {"vulkan", ctx_->info.name + " (" + ctx_->info.driver_name + ")", mem, LutPlacement::Host,
            ctx_->info.type == VK_PHYSICAL_DEVICE_TYPE_CPU};
  }

  const Instance& instance() const { return ctx_->instance; }

  // Device-local memory is budgeted before it is allocated, so running out is a clear error naming what did not fit
  // (and, for the table, what to do) rather than a driver failure halfway through. MOLE_VK_MEMORY_LIMIT_MB lowers
  // the budget to simulate a smaller device.
  void charge(size_t bytes, const std::string& what) {
    if (used_ + bytes > budget_) {
      auto mib = [](uint64_t b) { return std::to_string(double(b) / 1048576.0).substr(0, 6) + " MiB"; };
      throw Error("not enough GPU memory: " + what + " needs " + mib(bytes) + ", " +
                  mib(budget_ - std::min(used_, budget_)) + " of " + mib(budget_) + " remain" +
                  (what.find("lookup table") != std::string::npos ? "; use --lut host or --lut disk" : ""));
    }
    used_ += bytes;
  }

  BufferId upload_weight(const TensorView& t) override {
    size_t bytes = std::max<size_t>((t.nbytes + 3) & ~size_t(3), 4);  // shaders read 32-bit words
    charge(bytes, t.name);
    Buf b{Buffer::create(dev_, bytes, kStorage, MemoryKind::DeviceLocal, t.name.c_str()), t.dtype, size_t(t.numel())};
    upload_bytes(b.buffer, 0, t.data, t.nbytes);
    bufs_.push_back(std::move(b));
    return BufferId(bufs_.size() - 1);
  }

  BufferId alloc(size_t count, const char* what) override {
    charge(std::max<size_t>(count, 1) * 4, what);
    bufs_.push_back({Buffer::create(dev_, std::max<size_t>(count, 1) * 4, kStorage, MemoryKind::DeviceLocal, what),
                     DType::F32, count});
    return BufferId(bufs_.size() - 1);
  }

  void write(BufferId id, size_t first, size_t count, const float* src) override {
    upload_bytes(bufs_.at(size_t(id)).buffer, first * 4, src, count * 4);
  }

  void read_back(BufferId id, size_t first, size_t count, float* dst) override {
    if (id == logits_ && first + count <= readback_count_) {
      compute_tl_.wait(compute_value_, kWaitNs);
      std::memcpy(dst, static_cast<const float*>(readback_->mapped()) + first, count * 4);
      return;
    }
    synchronize();
    Buffer staging = Buffer::create(dev_, std::max<size_t>(count, 1) * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                    MemoryKind::Readback, "read-back staging");
    one_time_commands([&](VkCommandBuffer cb) {
      VkBufferCopy region{first * 4, 0, count * 4};
      vk().vkCmdCopyBuffer(cb, bufs_.at(size_t(id)).buffer.handle(), staging.handle(), 1, &region);
      host_read_barrier(cb);
    });
    std::memcpy(dst, staging.mapped(), count * 4);
  }

  void synchronize() override {
    compute_tl_.wait(compute_value_, kWaitNs);
    lut_tl_.wait(lut_value_, kWaitNs);
  }

  void set_lut(const LutStore& lut, LutPlacement placement, int max_step_tokens) override;

  // Profiling records a timestamp after every op into the recorded command buffers (so they are recorded again),
  // and around each LUT copy on the transfer queue.
  void set_profiling(bool on) override {
    if (on == profiling_) return;
    synchronize();
    recorded_.clear();
    profiling_ = on;
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
  // The pipeline of a shader (bindings and push size from shaders/ops.h) with the given dtype constants.
  const ComputePipeline& pipeline(std::string_view shader, uint32_t weight_dtype = 0, uint32_t lut_dtype = 0) {
    const ShaderOp* op = nullptr;
    for (const ShaderOp& o : kShaderOps)
      if (o.name == shader) op = &o;
    auto spirv = shader_spirv(shader);
    if (!op || spirv.empty()) throw Error("internal: shader '" + std::string(shader) + "' is not in this build");
    std::vector<uint32_t> spec = {weight_dtype, kLocalSize, lut_dtype};  // by kSpec* id; unused ids are ignored
    std::string key = std::string(shader) + ":" + std::to_string(weight_dtype) + ":" + std::to_string(lut_dtype);
    auto it = pipelines_.find(key);
    if (it != pipelines_.end()) return it->second;
    std::string name(shader);
    auto made =
        ComputePipeline::create(dev_, ctx_->cache, spirv, set_layout(op->bindings), op->push_bytes, spec, name.c_str());
    return pipelines_.emplace(key, std::move(made)).first->second;
  }
  const DescriptorSetLayout& set_layout(uint32_t bindings) {
    auto it = layouts_.find(bindings);
    if (it == layouts_.end()) it = layouts_.emplace(bindings, DescriptorSetLayout::create(dev_, bindings)).first;
    return it->second;
  }

  struct OpPlan {
    const ComputePipeline* pipe = nullptr;
    VkDescriptorSet set = VK_NULL_HANDLE;
  };
  void prepare(const StepGraph& g);
  void record_op(VkCommandBuffer cb, const Op& op, const OpPlan& plan, uint32_t T, uint32_t R);
  Recorded& recorded_for(const StepGraph& g, uint32_t T, uint32_t R);
  VkDescriptorBufferInfo whole(BufferId id) const { return {bufs_.at(size_t(id)).buffer.handle(), 0, VK_WHOLE_SIZE}; }
  static VkDescriptorBufferInfo whole(const Buffer& b) { return {b.handle(), 0, VK_WHOLE_SIZE}; }

  std::unique_ptr<VulkanContext> ctx_;
  const Device& dev_;
  CommandPool compute_pool_, transfer_pool_;
  TimelineSemaphore compute_tl_, lut_tl_;
  uint64_t compute_value_ = 0, lut_value_ = 0;
  Fence upload_fence_;
  std::optional<CommandBuffer> upload_cb_;  // reused by every one-time submission (uploads, read-backs)
  std::vector<Buf> bufs_;
  uint64_t used_ = 0, budget_ = 0;  // device-local bytes allocated, and the most we may
  std::map<std::string, ComputePipeline> pipelines_;
  std::map<uint32_t, DescriptorSetLayout> layouts_;

  // Graph-bound state, made on the first run_step (the graph never changes afterwards).
  const StepGraph* graph_ = nullptr;
  std::optional<DescriptorPool> desc_pool_;
  std::vector<OpPlan> plans_;
  size_t split_ = 0;  // first op of part B (the first RouterLut), or ops.size() for a dense model
  std::optional<Buffer> in_ids_, in_slot_, in_pos_, in_cos_, in_sin_, in_rows_;  // (T) (T) (T) (T,hd/2) x2 (R)
  std::optional<Buffer> readback_;                                               // (R, V) logits copied for the host
  size_t readback_count_ = 0;
  BufferId logits_ = kNoBuffer;
  std::map<std::pair<uint32_t, uint32_t>, Recorded> recorded_;

  // Profiling.
  bool profiling_ = false, profile_pending_ = false;
  std::optional<TimestampQueryPool> op_ts_, lut_ts_;  // (ops + 1) timestamps per step; 2 around the LUT copy
  StepInputs profiled_in_;                            // the step whose timestamps are pending
  StepProfile prof_;
  void collect_profile();

  // LUT.
  const LutStore* lut_ = nullptr;
  LutPlacement placement_ = LutPlacement::Host;
  int lut_max_tokens_ = 0;
  std::vector<Buffer> lut_chunks_;  // device/host placement: the whole table, row-aligned chunks
  int64_t rows_per_chunk_ = 0;
  std::optional<Buffer> lut_staging_;  // disk placement: (max_tokens, L*E*D) host-visible
  std::optional<Buffer> lut_ring_;     // (max_tokens, L*E*D) device-local: what router_lut.comp reads
  std::optional<CommandBuffer> lut_cb_;
  int lut_rows_streamed_ = 0;
};

void VulkanBackend::set_lut(const LutStore& lut, LutPlacement placement, int max_step_tokens) {
  lut_ = &lut;
  placement_ = placement;
  lut_max_tokens_ = max_step_tokens;
  const size_t row = lut.row_bytes();
  if ((row & 3) != 0) throw Error("internal: LUT rows must be a multiple of 4 bytes");
  charge(row * size_t(max_step_tokens), "the LUT row ring");
  if (placement == LutPlacement::Device)
    charge(lut.bytes(), "the whole lookup table (--lut device, " + std::to_string(lut.bytes() >> 20) + " MiB)");
  lut_ring_ = Buffer::create(dev_, row * size_t(max_step_tokens), kStorage, MemoryKind::DeviceLocal, "LUT row ring");
  if (placement == LutPlacement::Disk) {
    lut_staging_ = Buffer::create(dev_, row * size_t(max_step_tokens), VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                                  MemoryKind::HostVisible, "LUT staging ring");
    return;
  }
  // Row-aligned chunks, each within the device's allocation and binding limits (lavapipe: 128 MiB).
  const VkDeviceSize chunk = chunk_bytes(dev_, VkDeviceSize(1) << 30, row);
  rows_per_chunk_ = int64_t(chunk / row);
  MemoryKind kind = placement == LutPlacement::Device ? MemoryKind::DeviceLocal : MemoryKind::HostVisible;
  std::string what = std::string("lookup table (--lut ") + placement_name(placement) + ")";
  lut_chunks_ =
      create_chunked(dev_, lut.bytes(), VkDeviceSize(1) << 30,
                     VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT, kind, what.c_str(), row);
  for (size_t c = 0; c < lut_chunks_.size(); c++) {
    int64_t r0 = int64_t(c) * rows_per_chunk_, n = std::min(rows_per_chunk_, lut.rows() - r0);
    if (kind == MemoryKind::HostVisible)
      std::memcpy(lut_chunks_[c].mapped(), lut.row(int32_t(r0)), size_t(n) * row);
    else
      upload_bytes(lut_chunks_[c], 0, lut.row(int32_t(r0)), size_t(n) * row);
  }
}

void VulkanBackend::stream_lut_rows(const std::vector<int32_t>& ids) {
  if (!lut_) return;
  if (int(ids.size()) > lut_max_tokens_) throw Error("internal: more LUT rows than the step size");
  const size_t row = lut_->row_bytes();
  // The previous step's compute must be done reading the ring (and, for disk, the staging ring) before we overwrite.
  compute_tl_.wait(compute_value_, kWaitNs);
  lut_tl_.wait(lut_value_, kWaitNs);
  std::vector<VkBufferCopy> regions;
  std::vector<VkBuffer> sources;
  if (placement_ == LutPlacement::Disk) {
    lut_->prefetch(ids);
    for (size_t t = 0; t < ids.size(); t++)
      std::memcpy(static_cast<uint8_t*>(lut_staging_->mapped()) + t * row, lut_->row(ids[t]), row);
  }
  if (!lut_cb_) lut_cb_ = CommandBuffer::create(dev_, transfer_pool_);
  VkCommandBuffer cb = lut_cb_->handle();
  VK_CHECK(vk().vkResetCommandBuffer(cb, 0));
  lut_cb_->begin(true);
  if (profiling_) {
    if (!lut_ts_) lut_ts_ = TimestampQueryPool::create(dev_, 2);
    lut_ts_->reset(cb);
    lut_ts_->write(cb, 0);
  }
  if (placement_ == LutPlacement::Disk) {
    VkBufferCopy region{0, 0, row * ids.size()};
    vk().vkCmdCopyBuffer(cb, lut_staging_->handle(), lut_ring_->handle(), 1, &region);
  } else {
    for (size_t t = 0; t < ids.size(); t++) {
      int64_t chunk = ids[t] / rows_per_chunk_, within = ids[t] % rows_per_chunk_;
      VkBufferCopy region{size_t(within) * row, t * row, row};
      vk().vkCmdCopyBuffer(cb, lut_chunks_[size_t(chunk)].handle(), lut_ring_->handle(), 1, &region);
    }
  }
  if (profiling_) lut_ts_->write(cb, 1);
  lut_cb_->end();
  uint64_t signal = ++lut_value_;
  uint64_t wait = compute_value_;
  VkTimelineSemaphoreSubmitInfo ts{};
  ts.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
  ts.waitSemaphoreValueCount = 1;
  ts.pWaitSemaphoreValues = &wait;
  ts.signalSemaphoreValueCount = 1;
  ts.pSignalSemaphoreValues = &signal;
  VkSemaphore wait_sem = compute_tl_.handle(), signal_sem = lut_tl_.handle();
  VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.pNext = &ts;
  si.waitSemaphoreCount = 1;
  si.pWaitSemaphores = &wait_sem;
  si.pWaitDstStageMask = &wait_stage;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  si.signalSemaphoreCount = 1;
  si.pSignalSemaphores = &signal_sem;
  VK_CHECK(vk().vkQueueSubmit(dev_.transfer_queue(), 1, &si, VK_NULL_HANDLE));
  lut_rows_streamed_ = int(ids.size());
}

void VulkanBackend::prepare(const StepGraph& g) {
  graph_ = &g;
  logits_ = g.logits;
  uint32_t half = 1;
  size_t n_desc = 0;
  for (const Op& op : g.ops) {
    if (op.kind == OpKind::Rope) half = std::max<uint32_t>(half, uint32_t(op.k / 2));
    if (op.kind == OpKind::Attention && uint32_t(op.k) > kLocalSize)
      throw Error("the Vulkan backend supports head dimensions up to " + std::to_string(kLocalSize) +
                  " (this model: " + std::to_string(op.k) + ")");
    if (op.kind == OpKind::RouterLut && uint32_t(op.n) > kRouterLutMaxExperts)
      throw Error("the Vulkan backend supports at most 64 experts (this model has " + std::to_string(op.n) + ")");
    n_desc += 6;
  }
  const size_t T = size_t(g.max_tokens), R = size_t(g.max_out_rows);
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
  readback_ = Buffer::create(dev_, readback_count_ * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT, MemoryKind::Readback,
                             "logits read-back");
  desc_pool_ = DescriptorPool::create(dev_, uint32_t(g.ops.size()), uint32_t(n_desc));

  split_ = g.ops.size();
  plans_.clear();
  for (size_t i = 0; i < g.ops.size(); i++) {
    const Op& op = g.ops[i];
    std::vector<VkDescriptorBufferInfo> b;
    const ComputePipeline* p = nullptr;
    auto wdt = [&](BufferId w) { return dtype_code(bufs_.at(size_t(w)).dtype); };
    switch (op.kind) {
      case OpKind::Embed:
        p = &pipeline("embed", wdt(op.src0));
        b = {whole(op.src0), whole(*in_ids_), whole(op.dst)};
        break;
      case OpKind::RmsNorm:
        p = &pipeline("rmsnorm", wdt(op.src1));
        b = {whole(op.src0), whole(op.src1), whole(op.dst)};
        break;
      case OpKind::MatMul:
        p = &pipeline("matmul", wdt(op.src1));
        b = {whole(op.src0), whole(op.src1), whole(op.dst)};
        break;
      case OpKind::Rope:
        p = &pipeline("rope");
        b = {whole(op.dst), whole(*in_cos_), whole(*in_sin_)};
        break;
      case OpKind::KvStore:
        p = &pipeline("kv_store");
        b = {whole(op.src0), whole(op.dst), whole(*in_slot_), whole(*in_pos_)};
        break;
      case OpKind::Attention:
        p = &pipeline("attention");
        b = {whole(op.src0), whole(op.src1), whole(op.src2), whole(*in_slot_), whole(*in_pos_), whole(op.dst)};
        break;
      case OpKind::Gelu:
        p = &pipeline("gelu");
        b = {whole(op.dst)};
        break;
      case OpKind::Add:
        p = &pipeline("add");
        b = {whole(op.dst), whole(op.src0)};
        break;
      case OpKind::RouterLut:
        if (!lut_) throw Error("internal: RouterLut without a table");
        split_ = std::min(split_, i);
        p = &pipeline("router_lut", 0, dtype_code(lut_->dtype()));
        b = {whole(op.src0), whole(*lut_ring_), whole(op.dst)};
        break;
      case OpKind::Gather:
        p = &pipeline("gather");
        b = {whole(op.src0), whole(*in_rows_), whole(op.dst)};
        break;
    }
    OpPlan plan{p, desc_pool_->allocate(set_layout(uint32_t(b.size())))};
    write_storage_buffers(dev_, plan.set, b);
    plans_.push_back(plan);
  }
}

// Binds the op's pipeline and descriptor set, pushes its constants and dispatches the grid shaders/ops.h gives.
template <typename Push>
void dispatch(VkCommandBuffer cb, const ComputePipeline& pipe, VkDescriptorSet set, const Push& push) {
  vk().vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe.handle());
  vk().vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe.layout(), 0, 1, &set, 0, nullptr);
  vk().vkCmdPushConstants(cb, pipe.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(Push), &push);
  Groups g = groups(push, kLocalSize);
  vk().vkCmdDispatch(cb, g.x, g.y, 1);
}

void VulkanBackend::record_op(VkCommandBuffer cb, const Op& op, const OpPlan& plan, uint32_t T, uint32_t R) {
  const uint32_t rows = op.on_out_rows ? R : T, n = uint32_t(op.n), k = uint32_t(op.k);
  const ComputePipeline& p = *plan.pipe;
  switch (op.kind) {
    case OpKind::Embed:
      dispatch(cb, p, plan.set, EmbedPush{T, n});
      break;
    case OpKind::RmsNorm:
      dispatch(cb, p, plan.set, RmsNormPush{rows, n, op.eps});
      break;
    case OpKind::MatMul:
      dispatch(cb, p, plan.set, MatMulPush{rows, k, n, op.accumulate ? 1u : 0u});
      break;
    case OpKind::Rope:
      dispatch(cb, p, plan.set, RopePush{T, n, k});
      break;
    case OpKind::KvStore:
      dispatch(cb, p, plan.set, KvStorePush{T, n, uint32_t(op.ctx)});
      break;
    case OpKind::Attention:
      dispatch(cb, p, plan.set,
               AttentionPush{T, n, uint32_t(op.kv_heads), k, uint32_t(op.ctx), 1.0f / std::sqrt(float(op.k))});
      break;
    case OpKind::Gelu:
      dispatch(cb, p, plan.set, GeluPush{T * n});
      break;
    case OpKind::Add:
      dispatch(cb, p, plan.set, AddPush{T * n});
      break;
    case OpKind::RouterLut:
      dispatch(cb, p, plan.set, RouterLutPush{T, n, k, uint32_t(op.layer), uint32_t(lut_->row_elems())});
      break;
    case OpKind::Gather:
      dispatch(cb, p, plan.set, GatherPush{R, n});
      break;
  }
  memory_barrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                 VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
}

Recorded& VulkanBackend::recorded_for(const StepGraph& g, uint32_t T, uint32_t R) {
  auto key = std::make_pair(T, R);
  auto it = recorded_.find(key);
  if (it != recorded_.end()) return it->second;
  if (recorded_.size() >= kMaxRecorded) {
    synchronize();
    recorded_.clear();
  }
  Recorded r{CommandBuffer::create(dev_, compute_pool_), CommandBuffer::create(dev_, compute_pool_)};
  if (profiling_ && !op_ts_) op_ts_ = TimestampQueryPool::create(dev_, uint32_t(g.ops.size() + 1));
  r.part_a.begin(false);
  full_barrier(r.part_a.handle());  // orders this step after the previous step's reads and writes
  if (profiling_) {
    op_ts_->reset(r.part_a.handle());
    op_ts_->write(r.part_a.handle(), 0);
  }
  auto record = [&](VkCommandBuffer cb, size_t i) {
    record_op(cb, g.ops[i], plans_[i], T, R);
    if (profiling_) op_ts_->write(cb, uint32_t(i + 1));
  };
  for (size_t i = 0; i < split_; i++) record(r.part_a.handle(), i);
  r.part_a.end();
  r.part_b.begin(false);
  for (size_t i = split_; i < g.ops.size(); i++) record(r.part_b.handle(), i);
  // Logits to the host-visible read-back buffer.
  memory_barrier(r.part_b.handle(), VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                 VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
  size_t V = readback_count_ / size_t(g.max_out_rows);
  VkBufferCopy region{0, 0, size_t(R) * V * 4};
  vk().vkCmdCopyBuffer(r.part_b.handle(), bufs_.at(size_t(g.logits)).buffer.handle(), readback_->handle(), 1, &region);
  host_read_barrier(r.part_b.handle());
  r.part_b.end();
  return recorded_.emplace(key, std::move(r)).first->second;
}

void VulkanBackend::run_step(const StepGraph& g, const StepInputs& in) {
  if (graph_ != &g) {
    if (graph_) throw Error("internal: the Vulkan backend runs one graph per instance");
    prepare(g);
  }
  const uint32_t T = uint32_t(in.tokens()), R = uint32_t(in.out_rows.size());
  if (T == 0 || T > uint32_t(g.max_tokens) || R == 0 || R > uint32_t(g.max_out_rows))
    throw Error("internal: step of " + std::to_string(T) + " tokens outside the graph's limits");
  if (lut_ && lut_rows_streamed_ != int(T)) throw Error("internal: stream_lut_rows() must precede run_step()");
  compute_tl_.wait(compute_value_, kWaitNs);  // the previous step no longer reads the inputs
  collect_profile();
  const auto launch_start = std::chrono::steady_clock::now();
  const bool replay = recorded_.count({T, R}) != 0;
  copy_in(*in_ids_, in.ids);
  copy_in(*in_slot_, in.slot);
  copy_in(*in_pos_, in.pos);
  copy_in(*in_cos_, in.rope_cos);  // empty for a graph without RoPE
  copy_in(*in_sin_, in.rope_sin);
  copy_in(*in_rows_, in.out_rows);

  Recorded& rec = recorded_for(g, T, R);
  const uint64_t done = ++compute_value_;
  const uint64_t lut_wait = lut_value_;
  VkCommandBuffer a = rec.part_a.handle(), b = rec.part_b.handle();
  VkSemaphore lut_sem = lut_tl_.handle(), compute_sem = compute_tl_.handle();
  VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT;
  VkTimelineSemaphoreSubmitInfo ts{};
  ts.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
  ts.waitSemaphoreValueCount = lut_ ? 1 : 0;
  ts.pWaitSemaphoreValues = &lut_wait;
  ts.signalSemaphoreValueCount = 1;
  ts.pSignalSemaphoreValues = &done;
  VkSubmitInfo si[2] = {};
  si[0].sType = si[1].sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si[1].pNext = &ts;
  si[0].commandBufferCount = 1;
  si[0].pCommandBuffers = &a;
  si[1].waitSemaphoreCount = lut_ ? 1 : 0;
  si[1].pWaitSemaphores = &lut_sem;
  si[1].pWaitDstStageMask = &wait_stage;
  si[1].commandBufferCount = 1;
  si[1].pCommandBuffers = &b;
  si[1].signalSemaphoreCount = 1;
  si[1].pSignalSemaphores = &compute_sem;
  VK_CHECK(vk().vkQueueSubmit(dev_.compute_queue(), 2, si, VK_NULL_HANDLE));  // one submit per step
  lut_rows_streamed_ = 0;
  if (profiling_ && replay) {
    prof_.replayed_steps++;
    prof_.submits++;
    prof_.host_launch_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - launch_start).count();
  }
  if (profiling_) {
    profiled_in_ = in;
    profile_pending_ = true;
  }
}

// Adds the finished step's timestamps to prof_ (call only once that step is complete).
void VulkanBackend::collect_profile() {
  if (!profile_pending_ || !graph_) return;
  profile_pending_ = false;
  const auto& ops = graph_->ops;
  std::vector<double> t = op_ts_->read_ns(uint32_t(ops.size() + 1));
  if (prof_.ops.size() != ops.size()) prof_.ops.assign(ops.size(), {});
  for (size_t i = 0; i < ops.size(); i++) {
    OpProfile& p = prof_.ops[i];
    p.kind = ops[i].kind;
    p.calls++;
    if (std::isfinite(t[i + 1] - t[i])) p.seconds += (t[i + 1] - t[i]) * 1e-9;
    BufferId w = op_weight(ops[i]);
    size_t wb = w == kNoBuffer ? 0 : dtype_size(bufs_.at(size_t(w)).dtype);
    p.bytes += op_bytes(ops[i], profiled_in_, wb, lut_ ? dtype_size(lut_->dtype()) : 0);
  }
  if (std::isfinite(t[split_] - t[0])) prof_.lut_window_seconds += (t[split_] - t[0]) * 1e-9;
  if (lut_ts_) {
    std::vector<double> c = lut_ts_->read_ns(2);
    if (std::isfinite(c[1] - c[0])) prof_.lut_copy_seconds += (c[1] - c[0]) * 1e-9;
  }
  prof_.steps++;
}

}  // namespace

std::unique_ptr<Backend> make_vulkan_backend(const VulkanOptions& opt) {
  return std::make_unique<VulkanBackend>(VulkanContext::create(opt.device_index, opt.validation, opt.validation));
}

uint64_t validation_message_count(const Backend& b) {
  auto* v = dynamic_cast<const VulkanBackend*>(&b);
  return v ? v->instance().validation_messages() : 0;
}

std::string validation_log(const Backend& b) {
  auto* v = dynamic_cast<const VulkanBackend*>(&b);
  std::string s;
  if (v)
    for (const auto& line : v->instance().validation_log()) s += line + "\n";
  return s;
}

}  // namespace mole::vulkan
