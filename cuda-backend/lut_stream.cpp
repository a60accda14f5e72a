// LutStream: the table's placement, the ring and the copies that fill it (see lut_stream.h).
#include "cuda-backend/lut_stream.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "cuda-backend/common.cuh"
#include "model/error.h"
#include "model/lut_rows.h"
#include "model/spin_wait.h"

namespace mole::cuda {
namespace {

// What note() adds where a kernel copies the rows.
constexpr const char* kKernelCopyNote =
    "rows copied into the ring by a kernel in the step's graph (--tune lut-copy=kernel)";

int device_attribute(cudaDeviceAttr attr) {
  int device = 0, value = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, device));
  return value;
}

}  // namespace

LutStream::LutStream(const LutStore& lut, LutPlacement placement, int max_step_tokens, LutRead read, bool kernel_copy)
    : lut_(&lut),
      placement_(placement),
      read_(read),
      kernel_copy_(kernel_copy),
      max_tokens_(max_step_tokens),
      copy_(make_stream()),
      ready_(make_event(false)),
      copy_start_{make_event(true), make_event(true)},
      copy_end_{make_event(true), make_event(true)},
      fetch_start_(make_event(true)),
      fetch_end_(make_event(true)) {}

LutStream::~LutStream() {
  // No copy may still read or write what is freed next. A host function still waiting for the gather thread is
  // released by it: the thread finishes or skips the job it was handed, and signals either way.
  cudaStreamSynchronize(copy_.get());
  gather_.reset();
}

std::unique_ptr<LutStream> LutStream::create(const LutStore& lut, LutPlacement placement, int max_step_tokens,
                                             LutRead read, const std::string& record_file, BackendTuning::Gather gather,
                                             BackendTuning::LutCopy copy, std::shared_ptr<MemoryBudget> budget) {
  MOLE_CUDA_ASSERT(max_step_tokens >= 1);
  // Direct where the table already is in memory the device reads at full speed: --lut device, and --lut host on an
  // integrated GPU; unless `mole bench --record` measured otherwise on this device.
  const bool integrated = device_attribute(cudaDevAttrIntegrated) != 0;
  const bool can_map = placement != LutPlacement::Host || device_attribute(cudaDevAttrCanMapHostMemory) != 0;
  read = resolve_lut_read(read, placement, placement == LutPlacement::Device || integrated, can_map,
                          "this GPU cannot map host memory, which reading the table in place needs", record_file);
  // A kernel copies only where it can read the table: in device memory, or mapped host memory.
  const bool kernel_copy =
      copy == BackendTuning::LutCopy::Kernel && read == LutRead::Copy && placement != LutPlacement::Disk && can_map;
  std::unique_ptr<LutStream> s(new LutStream(lut, placement, max_step_tokens, read, kernel_copy));
  s->budget_ = std::move(budget);
  const size_t ring_bytes = lut.row_bytes() * size_t(max_step_tokens);
  if (placement == LutPlacement::Device) s->place_on_device();
  if (placement == LutPlacement::Host) s->place_in_host_memory();
  if (!s->direct()) s->ring_ = DeviceBuffer::create(ring_bytes, "the lookup table's row ring", s->budget_);
  if (placement == LutPlacement::Disk) {
    s->staging_ = PinnedBuffer::create(ring_bytes, "the lookup table's staging ring");
    if (gather != BackendTuning::Gather::Inline)
      s->gather_ = std::make_unique<LutGatherThread>(lut, [p = s.get()](uint64_t value) {
        {
          std::lock_guard<std::mutex> lock(p->gather_mu_);
          p->gathered_.store(value, std::memory_order_release);
        }
        p->gather_cv_.notify_all();
      });
  }
  return s;
}

void LutStream::place_on_device() {
  const size_t bytes = lut_->bytes();
  size_t free = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free, &total));
  const bool by_limit = budget_ && budget_->left() < free;  // --memory-limit allows less than the device has free
  if (by_limit) {
    free = budget_->left();
    total = std::min(total, budget_->limit());
  }
  if (bytes > free)
    throw Error("not enough GPU memory for the whole lookup table (--lut device): it needs " + memory_size_text(bytes) +
                ", " + memory_size_text(free) + " of " + memory_size_text(total) + " are free" +
                (by_limit ? " (--memory-limit)" : "") + "; use --lut host or --lut disk");
  table_dev_ = DeviceBuffer::create(bytes, "the whole lookup table (--lut device)", budget_);
  CUDA_CHECK(cudaMemcpy(table_dev_.get(), lut_->data(), bytes, cudaMemcpyHostToDevice));
  table_device_ = table_dev_.get();
  if (kernel_copy_) note_ = kKernelCopyNote;
}

// The file's pages are registered where possible: no copy, and no second copy of a multi-GB table in memory. The
// registration covers whole pages, from the page holding row 0 to the one holding the last byte, all inside the
// mapping (it is readable up to its length rounded up to a page).
void LutStream::place_in_host_memory() {
  const LutStore& lut = *lut_;
  lut.prefetch_all();  // the whole table into memory now, as this placement promises
  std::string why;
  const uint8_t* base = nullptr;  // what was registered or allocated: the table starts at table_host_ within it
  if (!lut.file_backed() || !lut.mapping()) {
    why = "the table was computed at load, not read from a file";
  } else if (!device_attribute(cudaDevAttrHostRegisterSupported)) {
    why = "this GPU cannot register host memory (cudaDevAttrHostRegisterSupported is 0)";
  } else if (!device_attribute(cudaDevAttrHostRegisterReadOnlySupported)) {
    why = "this GPU cannot register read-only host memory (cudaDevAttrHostRegisterReadOnlySupported is 0)";
  } else {
    const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    const uintptr_t p0 = reinterpret_cast<uintptr_t>(lut.data()) / page * page;
    const uintptr_t p1 = (reinterpret_cast<uintptr_t>(lut.data()) + lut.bytes() + page - 1) / page * page;
    const uintptr_t m0 = reinterpret_cast<uintptr_t>(lut.mapping());
    const uintptr_t m1 = m0 + (lut.mapping_bytes() + page - 1) / page * page;
    MOLE_CUDA_ASSERT(m0 <= p0 && p1 <= m1);
    const cudaError_t err = HostRegistration::create(reinterpret_cast<const void*>(p0), p1 - p0,
                                                     cudaHostRegisterReadOnly | cudaHostRegisterMapped, &registered_);
    if (err == cudaSuccess) {
      base = static_cast<const uint8_t*>(registered_.get());
      note_ = "registered in place from the file's mapping (read-only, no copy)";
    } else {
      why = std::string("cudaHostRegister refused the file's pages: ") + cudaGetErrorString(err);
    }
  }
  if (!base) {
    table_pinned_ = PinnedBuffer::create(lut.bytes(), "the whole lookup table (--lut host)");
    std::memcpy(table_pinned_.get(), lut.data(), lut.bytes());
    base = static_cast<const uint8_t*>(table_pinned_.get());
    note_ = "copied into pinned memory: " + why;
  }
  table_host_ = registered_ ? lut.data() : base;
  if (kernel_copy_) note_ += std::string("; ") + kKernelCopyNote;
  if (direct() || kernel_copy_) {
    void* dev = nullptr;
    CUDA_CHECK(cudaHostGetDevicePointer(&dev, const_cast<uint8_t*>(base), 0));
    table_device_ = static_cast<const uint8_t*>(dev) + (table_host_ - base);
  }
}

void LutStream::stream(const std::vector<int32_t>& ids, cudaEvent_t ring_free) {
  MOLE_CUDA_ASSERT(int(ids.size()) <= max_tokens_);
  check_lut_ids(*lut_, ids);
  rows_streamed_ = int(ids.size());
  rows_moved_ += ids.size();
  slot_ ^= 1;
  copy_timed_[slot_] = false;
  if (direct() || kernel_copy_ || ids.empty()) return;  // kernel copy: the step's graph copies its rows itself
  const size_t row = lut_->row_bytes();
  uint8_t* ring = static_cast<uint8_t*>(ring_.get());
  // The last step that read the ring must be done, and (disk) the last copy out of the single staging ring: the
  // engine's read-back of that step has already waited for both, so this costs nothing there. Waiting on the host
  // also means ready() is recorded again only once no launched step can still be waiting on its last record.
  CUDA_CHECK(cudaEventSynchronize(ring_free));
  CUDA_CHECK(cudaEventSynchronize(ready_.get()));
  check();  // a failed read of the last step's rows, if its read-back did not report it
  if (placement_ == LutPlacement::Disk && gather_) {
    // The last host function has returned (it precedes ready_'s last record): awaited_ is free to change.
    const uint64_t value = awaited_.fetch_add(1, std::memory_order_relaxed) + 1;
    gather_->submit(ids, staging_.get(), value);  // the disk reads happen there, while the step starts
    CUDA_CHECK(cudaLaunchHostFunc(copy_.get(), &LutStream::wait_for_gather, this));
  } else if (placement_ == LutPlacement::Disk) {
    gather_lut_rows(*lut_, ids, staging_.get());  // --tune lut-gather=inline: the disk reads happen here
  }
  if (copy_late_)
    CUDA_CHECK(cudaLaunchHostFunc(
        copy_.get(), [](void*) { std::this_thread::sleep_for(std::chrono::milliseconds(30)); }, nullptr));
  if (profiling_) CUDA_CHECK(cudaEventRecord(copy_start_[slot_].get(), copy_.get()));
  if (placement_ == LutPlacement::Disk) {
    CUDA_CHECK(cudaMemcpyAsync(ring, staging_.get(), ids.size() * row, cudaMemcpyHostToDevice, copy_.get()));
  } else {
    // One copy per run of consecutive ids (a prompt's repeated or sequential ids cost fewer calls).
    const bool from_host = placement_ == LutPlacement::Host;
    const uint8_t* table = from_host ? table_host_ : static_cast<const uint8_t*>(table_dev_.get());
    for (size_t t = 0; t < ids.size();) {
      size_t run = 1;
      while (t + run < ids.size() && ids[t + run] == ids[t] + int32_t(run)) run++;
      CUDA_CHECK(cudaMemcpyAsync(ring + t * row, table + size_t(ids[t]) * row, run * row,
                                 from_host ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice, copy_.get()));
      t += run;
    }
  }
  if (profiling_) {
    CUDA_CHECK(cudaEventRecord(copy_end_[slot_].get(), copy_.get()));
    copy_timed_[slot_] = true;
  }
  CUDA_CHECK(cudaEventRecord(ready_.get(), copy_.get()));
}

void CUDART_CB LutStream::wait_for_gather(void* stream) {
  auto* s = static_cast<LutStream*>(stream);
  const uint64_t awaited = s->awaited_.load(std::memory_order_relaxed);
  spin_then_block(
      s->gather_mu_, s->gather_cv_, [s, awaited] { return s->gathered_.load(std::memory_order_acquire) >= awaited; },
      lut_gather_spin_ns());
}

void LutStream::check() {
  if (gather_) gather_->check();
}

void LutStream::wait() {
  CUDA_CHECK(cudaStreamSynchronize(copy_.get()));
  check();
}

double LutStream::copy_seconds(int slot) {
  float ms = 0;
  if (kernel_copy_) {  // the events of the last step's graph: recorded there only while profiling
    if (!profiling_) return 0;
    const cudaError_t err = cudaEventElapsedTime(&ms, fetch_start_.get(), fetch_end_.get());
    if (err != cudaSuccess) {  // a step without rows to copy recorded neither
      cudaGetLastError();
      return 0;
    }
    return double(ms) * 1e-3;
  }
  if (slot < 0 || slot > 1 || !copy_timed_[slot]) return 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, copy_start_[slot].get(), copy_end_[slot].get()));
  return double(ms) * 1e-3;
}

}  // namespace mole::cuda
