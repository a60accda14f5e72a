// LutStream: the table's chunks, the row ring, the copies that fill it and the disk gather thread (see lut_stream.h).
#include "vk-runtime/lut_stream.h"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/error.h"
#include "vk-runtime/device.h"
#include "vk-runtime/loader.h"
#include "vk-runtime/pipeline.h"

namespace mole::vulkan {

LutStream::LutStream(const Device& device, const LutStore& lut)
    : dev_(&device),
      lut_(&lut),
      transfer_pool_(CommandPool::create(device, device.transfer_family(), true)),
      lut_tl_(TimelineSemaphore::create(device, 0)),
      gathered_tl_(TimelineSemaphore::create(device, 0)) {}

void LutStream::import_table(VkBufferUsageFlags usage) {
  const LutStore& lut = *lut_;
  if (!lut.file_backed() || !lut.mapping()) throw Error("the table was computed at load, not read from a file");
  if (reinterpret_cast<uintptr_t>(lut.data()) % 4 != 0)
    throw Error("the table is not 4-byte aligned in its file");  // router_lut_direct.comp reads 32-bit words
  // Not tried on NVIDIA's driver: it refuses a file's pages (VK_ERROR_OUT_OF_DEVICE_MEMORY), and after refusing a
  // small import the device could allocate nothing more (H100, driver 580.159; docs/benchmarks.md).
  if (dev_->info().driver_id == VK_DRIVER_ID_NVIDIA_PROPRIETARY)
    throw Error("NVIDIA's Vulkan driver cannot import a file's pages");
  const uintptr_t align = std::max<uintptr_t>(dev_->info().min_imported_host_pointer_alignment, 1);
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  // The mapping is readable from its page-aligned start to its length rounded up to a page.
  const uintptr_t lo = reinterpret_cast<uintptr_t>(lut.mapping());
  const uintptr_t hi = lo + (lut.mapping_bytes() + page - 1) / page * page;
  const size_t row = lut.row_bytes();
  const int64_t n_chunks = plan_.count();
  for (int64_t c = 0; c < n_chunks; c++) {
    const auto [r0, n] = plan_.chunk(c);
    const uintptr_t p = reinterpret_cast<uintptr_t>(lut.row(int32_t(r0)));
    const uintptr_t a0 = p / align * align, a1 = (p + size_t(n) * row + align - 1) / align * align;
    if (a0 < lo || a1 > hi)
      throw Error("the table's pages cannot be imported at this device's " + std::to_string(align) + "-byte alignment");
    const std::string what =
        "lookup table (--lut host, imported; chunk " + std::to_string(c + 1) + " of " + std::to_string(n_chunks) + ")";
    chunks_.push_back(Buffer::import_host(*dev_, reinterpret_cast<const void*>(a0), a1 - a0, usage, what.c_str()));
    chunk_offsets_.push_back(p - a0);
  }
  import_note_ = "imported from the file's mapping (no copy)";
}

std::unique_ptr<LutStream> LutStream::create(const Device& dev, const LutStore& lut, LutPlacement placement,
                                             int max_step_tokens, LutRead read, const BackendTuning& tuning,
                                             const std::string& record_file, const Charge& charge,
                                             const Upload& upload) {
  std::unique_ptr<LutStream> s(new LutStream(dev, lut));
  s->placement_ = placement;
  // Direct reads need buffer device addresses; they suit devices that read host memory as their own.
  const VkPhysicalDeviceType type = dev.info().type;
  s->read_ = resolve_lut_read(
      read, placement, type == VK_PHYSICAL_DEVICE_TYPE_CPU || type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU,
      dev.enabled().buffer_device_address,
      dev.info().name + " has no bufferDeviceAddress, which reading the table in place needs", record_file);
  s->max_tokens_ = max_step_tokens;
  const bool direct = s->direct();
  const size_t row = lut.row_bytes();
  if ((row & 3) != 0)
    throw Error("vulkan: the lookup table's rows are " + std::to_string(row) +
                " bytes, not whole 32-bit words, which the shaders read: convert with --dtype f32, or use another "
                "backend");
  if (!direct) {
    check_binding_range(dev, row * size_t(max_step_tokens), "the LUT row ring");  // router_lut.comp binds it whole
    charge(row * size_t(max_step_tokens), "the LUT row ring");
  }
  if (placement == LutPlacement::Device) charge(lut.bytes(), "the whole lookup table (--lut device)");
  constexpr VkBufferUsageFlags kRingUsage =
      VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  if (!direct)
    s->ring_ = Buffer::create(dev, row * size_t(max_step_tokens), kRingUsage, MemoryKind::DeviceLocal, "LUT row ring");
  if (placement == LutPlacement::Disk) {
    s->staging_ = Buffer::create(dev, row * size_t(max_step_tokens), VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                                 MemoryKind::HostVisible, "LUT staging ring");
    // On a thread where the transfer queue is a queue of its own; inline where one queue does everything.
    const bool thread = tuning.lut_gather == BackendTuning::Gather::Auto
                            ? dev.transfer_kind() != Device::TransferQueueKind::SameQueue
                            : tuning.lut_gather == BackendTuning::Gather::Thread;
    if (thread)
      s->gather_ = std::make_unique<LutGatherThread>(
          lut, [p = s.get()](uint64_t value) { p->gathered_tl_.signal_from_host(value); });
    return s;
  }
  // Row-aligned chunks, each within the device's allocation and binding limits (lavapipe: 128 MiB) and 1 GiB, or
  // --tune lut-chunk-bytes (tests: many chunks from a small table).
  const VkDeviceSize limit = tuning.lut_chunk_bytes ? VkDeviceSize(tuning.lut_chunk_bytes) : VkDeviceSize(1) << 30;
  s->plan_ = plan_lut_chunks(lut, chunk_bytes(dev, limit, row), dev.info().name);
  const VkBufferUsageFlags read_usage =
      VK_BUFFER_USAGE_TRANSFER_SRC_BIT | (direct ? VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT : 0);
  if (placement == LutPlacement::Host) {
    lut.prefetch_all();  // the whole table into host memory now, as this placement promises, imported or not
    if (!tuning.lut_import) {
      s->import_note_ = "copied (import turned off)";
    } else {
      try {
        s->import_table(read_usage);
      } catch (const Error& e) {
        s->chunks_.clear();
        s->chunk_offsets_.clear();
        s->import_note_ = std::string("copied: ") + e.what();
      }
    }
  }
  if (s->chunks_.empty()) {
    const MemoryKind kind = placement == LutPlacement::Device ? MemoryKind::DeviceLocal : MemoryKind::HostVisible;
    const std::string what = std::string("lookup table (--lut ") + placement_name(placement) + ")";
    s->chunks_ =
        create_chunked(dev, lut.bytes(), limit, read_usage | VK_BUFFER_USAGE_TRANSFER_DST_BIT, kind, what.c_str(), row);
    s->chunk_offsets_.assign(s->chunks_.size(), 0);
    for (size_t c = 0; c < s->chunks_.size(); c++) {
      const auto [r0, n] = s->plan_.chunk(int64_t(c));
      if (kind == MemoryKind::HostVisible)
        std::memcpy(s->chunks_[c].mapped(), lut.row(int32_t(r0)), size_t(n) * row);
      else
        upload(s->chunks_[c], lut.row(int32_t(r0)), size_t(n) * row);
    }
  }
  if (direct) {
    // {rows_per_chunk, 0, then each chunk's address as two words, low first}: router_lut_direct.comp's binding 2.
    std::vector<uint32_t> words = {uint32_t(s->plan_.rows_per_chunk), 0};
    for (size_t c = 0; c < s->chunks_.size(); c++) {
      const VkDeviceAddress a = s->chunks_[c].device_address() + s->chunk_offsets_[c];
      words.push_back(uint32_t(a));
      words.push_back(uint32_t(a >> 32));
    }
    const size_t bytes = words.size() * sizeof(uint32_t);
    charge(bytes, "the LUT chunk addresses");
    s->addresses_ = Buffer::create(dev, bytes, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                   MemoryKind::DeviceLocal, "LUT chunk addresses");
    upload(*s->addresses_, words.data(), bytes);
  }
  return s;
}

LutStream::~LutStream() {
  gather_.reset();  // stopped and joined: a job handed over is finished or skipped, and signalled either way
  try {
    lut_tl_.wait(lut_value_, kLutWaitNs);  // the copy's command buffer must not be pending when it is freed
  } catch (const Error&) {
    // A lost or hung device: nothing left to wait for (vkDeviceWaitIdle in the Device's destructor has the last word).
  }
}

void LutStream::check() {
  if (gather_) gather_->check();
}

void LutStream::wait() {
  lut_tl_.wait(lut_value_, kLutWaitNs);
  check();
}

void LutStream::stream(const std::vector<int32_t>& ids, const TimelineSemaphore& compute, uint64_t compute_value) {
  assert(int(ids.size()) <= max_tokens_ && "more LUT rows than the step size");
  const bool disk = placement_ == LutPlacement::Disk;
  if (!disk) check_lut_ids(*lut_, ids);
  rows_moved_ += ids.size();
  if (direct()) {
    rows_streamed_ = int(ids.size());
    return;
  }
  // The previous copy must be done before its command buffer is re-recorded and (disk) the staging ring refilled.
  // It waited for the step before it, whose read-back the engine has waited for: this costs nothing there.
  wait();
  const size_t row = lut_->row_bytes();
  const bool threaded = disk && gather_;
  if (threaded) {
    gather_->submit(ids, staging_->mapped(), ++gathered_value_);  // gathers while the copy and the step are queued
  } else if (disk) {
    gather_lut_rows(*lut_, ids, staging_->mapped());  // one queue: the copy could not start before the rows anyway
  }
  if (!cb_) cb_ = CommandBuffer::create(*dev_, transfer_pool_);
  VkCommandBuffer cb = cb_->handle();
  VK_CHECK(vk().vkResetCommandBuffer(cb, 0));
  cb_->begin(true);
  if (profiling_) {
    if (!ts_) ts_ = TimestampQueryPool::create(*dev_, 2);
    ts_->reset(cb);
    ts_->write(cb, 0);
  }
  if (disk) {
    // The staging ring is written by the host after this submission: HOST_WRITE in the source access makes those
    // writes (coherent memory, so available to the host domain) available to the device domain (a memory domain
    // operation, which the submission does implicitly only for writes made before it). The thread's signal, which
    // the submission waits for at the transfer stage, orders them before the copy.
    memory_barrier(cb, VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_HOST_WRITE_BIT,
                   VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
    VkBufferCopy region{0, 0, row * ids.size()};
    vk().vkCmdCopyBuffer(cb, staging_->handle(), ring_->handle(), 1, &region);
  } else {
    for (size_t t = 0; t < ids.size(); t++) {
      int64_t chunk = ids[t] / plan_.rows_per_chunk, within = ids[t] % plan_.rows_per_chunk;
      VkBufferCopy region{chunk_offsets_[size_t(chunk)] + size_t(within) * row, t * row, row};
      vk().vkCmdCopyBuffer(cb, chunks_[size_t(chunk)].handle(), ring_->handle(), 1, &region);
    }
  }
  if (profiling_) ts_->write(cb, 1);
  cb_->end();
  // Waits: the previous step's compute no longer reads the ring; (disk) the thread has filled the staging ring.
  const uint64_t signal = lut_value_ + 1;
  const uint64_t waits[2] = {compute_value, gathered_value_};
  const VkSemaphore wait_sems[2] = {compute.handle(), gathered_tl_.handle()};
  const VkPipelineStageFlags wait_stages[2] = {VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT};
  const uint32_t n_waits = threaded ? 2 : 1;
  VkTimelineSemaphoreSubmitInfo ts{};
  ts.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
  ts.waitSemaphoreValueCount = n_waits;
  ts.pWaitSemaphoreValues = waits;
  ts.signalSemaphoreValueCount = 1;
  ts.pSignalSemaphoreValues = &signal;
  VkSemaphore signal_sem = lut_tl_.handle();
  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.pNext = &ts;
  si.waitSemaphoreCount = n_waits;
  si.pWaitSemaphores = wait_sems;
  si.pWaitDstStageMask = wait_stages;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  si.signalSemaphoreCount = 1;
  si.pSignalSemaphores = &signal_sem;
  VK_CHECK(vk().vkQueueSubmit(dev_->transfer_queue(), 1, &si, VK_NULL_HANDLE));
  lut_value_ = signal;
  rows_streamed_ = int(ids.size());
}

double LutStream::last_copy_seconds() const {
  if (!ts_) return 0;
  std::vector<double> c = ts_->read_ns(2);  // empty where the queue family has no timestamps
  return c.size() == 2 && std::isfinite(c[1] - c[0]) ? (c[1] - c[0]) * 1e-9 : 0;
}

}  // namespace mole::vulkan
