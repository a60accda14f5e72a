// LutStream: the table's chunks, the row ring, the copies that fill it and the disk gather thread (see lut_stream.h).
#include "vk-runtime/lut_stream.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/error.h"
#include "vk-runtime/device.h"
#include "vk-runtime/env.h"
#include "vk-runtime/loader.h"
#include "vk-runtime/pipeline.h"

namespace mole::vulkan {
namespace {

// Auto: direct where the table's memory is the device's own memory (a CPU or integrated GPU), copy on a discrete
// GPU; direct only with bufferDeviceAddress. --lut disk always copies (its rows exist only in the staging ring).
std::string lut_read_file(const DeviceInfo& info) {
  return device_cache_file(info, "lut-read");
}

LutRead resolve(LutRead read, const Device& dev, LutPlacement placement) {
  if (placement == LutPlacement::Disk || read == LutRead::Copy) return LutRead::Copy;
  const bool bda = dev.enabled().buffer_device_address;
  if (read == LutRead::Direct) {
    if (!bda)
      throw Error("MOLE_VK_LUT_READ=direct: " + dev.info().name +
                  " has no bufferDeviceAddress, which reading the table in place needs; use copy or auto");
    return LutRead::Direct;
  }
  // Auto: what `mole bench` measured faster on this device, if it recorded a choice; else the rule.
  if (std::optional<LutRead> measured = recorded_lut_read(dev.info()))
    return *measured == LutRead::Direct && !bda ? LutRead::Copy : *measured;
  const VkPhysicalDeviceType type = dev.info().type;
  const bool shared_memory = type == VK_PHYSICAL_DEVICE_TYPE_CPU || type == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
  return bda && shared_memory ? LutRead::Direct : LutRead::Copy;
}

}  // namespace

std::optional<LutRead> recorded_lut_read(const DeviceInfo& info) {
  const std::string path = lut_read_file(info);
  std::ifstream f(path);
  std::string word;
  if (path.empty() || !(f >> word)) return std::nullopt;
  if (word == "copy") return LutRead::Copy;
  if (word == "direct") return LutRead::Direct;
  return std::nullopt;  // not ours or damaged: ignored, the next bench overwrites it
}

std::string record_lut_read(const DeviceInfo& info, LutRead read) {
  const std::string path = lut_read_file(info);
  if (path.empty() || read == LutRead::Auto) return "";
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << lut_read_name(read) << "\n";
    if (!f) return "";
  }
  std::filesystem::rename(tmp, path, ec);
  return ec ? "" : path;
}

const char* lut_read_name(LutRead r) {
  switch (r) {
    case LutRead::Auto:
      return "auto";
    case LutRead::Copy:
      return "copy";
    case LutRead::Direct:
      return "direct";
  }
  return "?";
}

LutRead parse_lut_read(const std::string& value) {
  const std::string v = value.empty() ? env_choice("MOLE_VK_LUT_READ", {"auto", "copy", "direct"}) : value;
  if (v == "auto") return LutRead::Auto;
  if (v == "copy") return LutRead::Copy;
  if (v == "direct") return LutRead::Direct;
  throw Error("MOLE_VK_LUT_READ: '" + v + "' is not one of copy, direct, auto");
}

LutStream::LutStream(const Device& device, const LutStore& lut)
    : dev_(&device),
      lut_(&lut),
      transfer_pool_(CommandPool::create(device, device.transfer_family(), true)),
      lut_tl_(TimelineSemaphore::create(device, 0)),
      gathered_tl_(TimelineSemaphore::create(device, 0)) {}

// MOLE_VK_LUT_GATHER=thread|inline|auto (default auto): where --lut disk gathers its rows.
static bool gather_on_thread(const Device& dev) {
  const std::string v = env_choice("MOLE_VK_LUT_GATHER", {"auto", "thread", "inline"});
  if (v != "auto") return v == "thread";
  return dev.transfer_kind() != Device::TransferQueueKind::SameQueue;
}

// The most bytes in one chunk of the table: 1 GiB, or $MOLE_VK_LUT_CHUNK_BYTES (a test knob).
static VkDeviceSize chunk_limit() {
  const auto bytes = env_number("MOLE_VK_LUT_CHUNK_BYTES", 1, 1ull << 40, true, "a whole number of bytes, at least 1");
  return bytes ? VkDeviceSize(*bytes) : VkDeviceSize(1) << 30;
}

// MOLE_VK_LUT_IMPORT=auto|off (default auto): whether --lut host may import the file's pages (import_table()).
static bool import_wanted() {
  return env_choice("MOLE_VK_LUT_IMPORT", {"auto", "off"}) == "auto";
}

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
  const int64_t n_chunks = (lut.rows() + rows_per_chunk_ - 1) / rows_per_chunk_;
  for (int64_t c = 0; c < n_chunks; c++) {
    const auto [r0, n] = chunk_rows(c);
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
                                             int max_step_tokens, LutRead read, const Charge& charge,
                                             const Upload& upload) {
  std::unique_ptr<LutStream> s(new LutStream(dev, lut));
  s->placement_ = placement;
  s->read_ = resolve(read, dev, placement);
  s->max_tokens_ = max_step_tokens;
  const bool direct = s->direct();
  const size_t row = lut.row_bytes();
  if ((row & 3) != 0) throw Error("internal: LUT rows must be a multiple of 4 bytes");
  if (!direct) charge(row * size_t(max_step_tokens), "the LUT row ring");
  if (placement == LutPlacement::Device)
    charge(lut.bytes(), "the whole lookup table (--lut device, " + std::to_string(lut.bytes() >> 20) + " MiB)");
  constexpr VkBufferUsageFlags kRingUsage =
      VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  if (!direct)
    s->ring_ = Buffer::create(dev, row * size_t(max_step_tokens), kRingUsage, MemoryKind::DeviceLocal, "LUT row ring");
  if (placement == LutPlacement::Disk) {
    s->staging_ = Buffer::create(dev, row * size_t(max_step_tokens), VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                                 MemoryKind::HostVisible, "LUT staging ring");
    if (gather_on_thread(dev)) s->gather_ = std::thread([p = s.get()] { p->gather_loop(); });
    return s;
  }
  // Row-aligned chunks, each within the device's allocation and binding limits (lavapipe: 128 MiB) and 1 GiB, or
  // MOLE_VK_LUT_CHUNK_BYTES (tests: many chunks from a small table).
  const VkDeviceSize limit = chunk_limit();
  const VkDeviceSize chunk = chunk_bytes(dev, limit, row);
  s->rows_per_chunk_ = int64_t(chunk / row);
  const VkBufferUsageFlags read_usage =
      VK_BUFFER_USAGE_TRANSFER_SRC_BIT | (direct ? VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT : 0);
  if (placement == LutPlacement::Host) {
    lut.prefetch_all();  // the whole table into host memory now, as this placement promises, imported or not
    if (!import_wanted()) {
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
      const auto [r0, n] = s->chunk_rows(int64_t(c));
      if (kind == MemoryKind::HostVisible)
        std::memcpy(s->chunks_[c].mapped(), lut.row(int32_t(r0)), size_t(n) * row);
      else
        upload(s->chunks_[c], lut.row(int32_t(r0)), size_t(n) * row);
    }
  }
  if (direct) {
    // {rows_per_chunk, 0, then each chunk's address as two words, low first}: router_lut_direct.comp's binding 2.
    std::vector<uint32_t> words = {uint32_t(s->rows_per_chunk_), 0};
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
  stop_gathering();
  try {
    lut_tl_.wait(lut_value_, kLutWaitNs);  // the copy's command buffer must not be pending when it is freed
  } catch (const Error&) {
    // A lost or hung device: nothing left to wait for (vkDeviceWaitIdle in the Device's destructor has the last word).
  }
}

void LutStream::stop_gathering() noexcept {
  if (!gather_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  gather_.join();
}

void LutStream::check_ids(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids)
    if (id < 0 || int64_t(id) >= lut_->rows())
      throw Error("token id " + std::to_string(id) + " is outside the lookup table (" + std::to_string(lut_->rows()) +
                  " rows)");
}

void LutStream::gather(const std::vector<int32_t>& ids) {
  check_ids(ids);
  lut_->prefetch(ids);  // all rows' reads start now; the memcpy below faults in the first ones meanwhile
  const size_t row = lut_->row_bytes();
  for (size_t t = 0; t < ids.size(); t++)
    std::memcpy(static_cast<uint8_t*>(staging_->mapped()) + t * row, lut_->row(ids[t]), row);
}

void LutStream::gather_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || job_; });
    if (!job_) return;  // stopping, nothing handed over
    Job job = std::move(*job_);
    job_.reset();
    const bool skip = stop_;  // stopping: the rows will never be read, only the signal matters
    lock.unlock();
    std::exception_ptr failed;
    try {
      if (!skip) gather(job.ids);
    } catch (...) {
      failed = std::current_exception();
    }
    lock.lock();
    if (failed && !error_) error_ = failed;  // recorded before the signal, so whoever saw the signal finds it
    lock.unlock();
    // Signal whatever happened: the copy (and the compute after it) waits for this value on the GPU.
    try {
      gathered_tl_.signal_from_host(job.value);
    } catch (...) {
      lock.lock();
      if (!error_) error_ = std::current_exception();
      lock.unlock();
    }
    lock.lock();
  }
}

void LutStream::check() {
  std::exception_ptr e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    e = std::exchange(error_, nullptr);
  }
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& x) {
    throw Error(std::string("--lut disk: reading lookup table rows failed: ") + x.what());
  } catch (...) {
    throw Error("--lut disk: reading lookup table rows failed");
  }
}

void LutStream::wait() {
  lut_tl_.wait(lut_value_, kLutWaitNs);
  check();
}

void LutStream::stream(const std::vector<int32_t>& ids, const TimelineSemaphore& compute, uint64_t compute_value) {
  if (int(ids.size()) > max_tokens_) throw Error("internal: more LUT rows than the step size");
  const bool disk = placement_ == LutPlacement::Disk;
  if (!disk) check_ids(ids);
  if (direct()) {
    rows_streamed_ = int(ids.size());
    return;
  }
  // The previous copy must be done before its command buffer is re-recorded and (disk) the staging ring refilled.
  // It waited for the step before it, whose read-back the engine has waited for: this costs nothing there.
  wait();
  const size_t row = lut_->row_bytes();
  const bool threaded = disk && gather_.joinable();
  if (threaded) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = Job{ids, ++gathered_value_};
    }
    cv_.notify_one();  // the thread gathers while the copy is recorded and the compute step is queued
  } else if (disk) {
    gather(ids);  // one queue: the copy could not start before the rows are here anyway (see the header)
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
      int64_t chunk = ids[t] / rows_per_chunk_, within = ids[t] % rows_per_chunk_;
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
