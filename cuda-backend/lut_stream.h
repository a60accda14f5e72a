// The lookup table's rows on their way to router_lut, for the CUDA backend (cuda_backend.cpp). Where the table
// lives (LutPlacement, chosen once per run):
//   device: all of it in device memory (cudaMalloc), uploaded once; a clear error with the needed and free sizes
//           when it does not fit;
//   host:   all of it in page-locked host memory: the file's own pages registered in place (cudaHostRegister with
//           cudaHostRegisterReadOnly: the mapping is read-only) where the device allows, else a copy in
//           cudaHostAlloc'd memory; note() says which, and why;
//   disk:   it stays in the mmap'd file; each step's rows are gathered (memcpy: where the page faults, i.e. the
//           disk reads, happen) into a page-locked staging ring (max_step_tokens rows), then copied as below. The
//           gather runs on a thread of its own (model/lut_rows.h's LutGatherThread, as on Vulkan): the copy stream
//           waits for it in a host function (cudaLaunchHostFunc) queued before the copy, so the caller returns at
//           once and the step's embedding and first attention run while the rows are read. A failed read still
//           releases the copy; it is reported by the next check() (the read-back of that step). --tune
//           lut-gather=inline gathers on the calling thread instead (tests).
// How router_lut reads a step's rows (LutRead, the CLI's copy|direct|auto):
//   copy:   router_lut reads a device ring of max_step_tokens rows in step order, filled by cudaMemcpyAsync (one per
//           run of consecutive ids) on a copy stream of its own from wherever the table lives, once the last step
//           that read the ring is done (the caller's `ring_free` event; the host waits for it, which the engine's
//           read-back of that step has already done). The copies record ready(), which only the step's first
//           RouterLut waits on (an external event-wait node in the recorded graph), so the copy overlaps the
//           embedding and the first attention.
//   direct: router_lut reads row ids[t] in place (host: through the mapped pinned memory, over the bus; device: the
//           table in device memory). No copy, no wait, no ring.
//   auto:   direct where the table already is in memory the device reads at full speed: --lut device, and --lut host
//           on an integrated GPU (host memory is its memory); copy for --lut host on a discrete GPU, where a kernel
//           reading host memory pays bus latency on the critical path while a DMA copy moves the same bytes hidden
//           behind compute. --lut disk always copies (its rows exist only in the staging ring).
// Who copies (--tune lut-copy, for copy reads of --lut host and device): dma, the above; kernel: a kernel captured
// into the step's graph (fetch_lut_rows, router_lut.cu) on a branch of its own from the graph's start, reading the
// step's ids from its inputs and the rows through the mapped pinned memory (host) or device memory; the first
// RouterLut waits for it by a graph edge. No copy, event or wait on the host per step, and no event node from outside
// the graph; the ring is free because graph launches on one stream run one after another. --lut disk keeps dma (its
// rows reach the staging ring on the host).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda-backend/handles.h"
#include "model/backend.h"
#include "model/lut.h"
#include "model/lut_rows.h"

namespace mole::cuda {

// Owns the table's device or pinned copy (or its registration), the ring, the staging ring, the copy stream and
// its events; the destructor waits for the copy stream before any of them goes. The LutStore must outlive it.
class LutStream {
 public:
  // Makes the placement on the current device (see above); `read` Auto is resolved here (model/lut_rows.h, with a
  // choice `mole bench --record` measured in `record_file`). Throws mole::Error when something does not fit, or for
  // direct reads the device cannot do.
  // `gather`: where --lut disk gathers (Auto and Thread: on the thread).
  static std::unique_ptr<LutStream> create(const LutStore& lut, LutPlacement placement, int max_step_tokens,
                                           LutRead read, const std::string& record_file,
                                           BackendTuning::Gather gather = BackendTuning::Gather::Auto,
                                           BackendTuning::LutCopy copy = BackendTuning::LutCopy::Auto,
                                           std::shared_ptr<MemoryBudget> budget = nullptr);
  LutStream(const LutStream&) = delete;
  LutStream& operator=(const LutStream&) = delete;
  ~LutStream();

  const LutStore& lut() const { return *lut_; }
  LutPlacement placement() const { return placement_; }
  bool direct() const { return read_ == LutRead::Direct; }
  const char* read_name() const { return lut_read_name(read_); }  // "copy" or "direct"
  // Copy reads whose rows a kernel in the step's graph copies (--tune lut-copy=kernel): the backend captures
  // fetch_lut_rows from kernel_table() into kernel_rows(); stream() moves nothing.
  bool kernel_copy() const { return kernel_copy_; }
  // Kernel copy: row 0 of the table as kernels address it.
  const void* kernel_table() const { return table_device_; }
  // --lut host: "registered in place ..." or "copied into pinned memory: <why>"; then, with a kernel copy, that a
  // kernel copies the rows (for --lut device, only that); "" otherwise.
  const std::string& note() const { return note_; }
  // What router_lut reads (a device-visible address): the ring (copy; row t of the step at t * row_bytes) or the
  // table (direct; row id at id * row_bytes).
  const void* kernel_rows() const { return direct() ? table_device_ : ring_.get(); }

  // Checks the ids (mole::Error naming one outside the table) and notes how many there are. Copy: waits on the host
  // for `ring_free` (recorded after the last step that read the ring) and for the last copy, then starts bringing
  // the rows into the ring, in step order, on the copy stream, and records ready(). Disk gathers them into the
  // staging ring first (on the gather thread, which the copy stream waits for).
  void stream(const std::vector<int32_t>& ids, cudaEvent_t ring_free);
  // Rethrows, as a mole::Error, a failure of the gather thread not yet reported (a failed disk read).
  void check();
  // Copy by dma: recorded once the last stream()'s rows are in the ring. The step reading them waits on it.
  cudaEvent_t ready() const { return ready_.get(); }
  int rows_streamed() const { return rows_streamed_; }
  void consumed() { rows_streamed_ = 0; }
  // Rows brought to router_lut since create() (copied into the ring, or read in place), and their bytes.
  uint64_t rows_moved() const { return rows_moved_; }
  uint64_t bytes_moved() const { return rows_moved_ * lut_->row_bytes(); }
  // Blocks until every copy queued so far is done; then check().
  void wait();

  // With profiling on, events around each step's copies measure them. Two steps' events are kept (the caller reads a
  // step's time once it is done, after the next step's rows have been streamed): copy_slot() names the last
  // stream()'s, copy_seconds(slot) returns its time on the copy stream (0 when not measured).
  void set_profiling(bool on) { profiling_ = on; }
  // Tests (perturb=lut-copy-late): the copy engine's copy of each step's rows starts 30 ms late, behind a host
  // function on the copy stream, so that a step that does not wait for it reads the last step's rows.
  void set_copy_late(bool on) { copy_late_ = on; }
  int copy_slot() const { return slot_; }
  double copy_seconds(int slot);
  // Kernel copy, profiling: the backend records these around fetch_lut_rows in the graph; copy_seconds() reads them.
  cudaEvent_t fetch_start() const { return fetch_start_.get(); }
  cudaEvent_t fetch_end() const { return fetch_end_.get(); }

 private:
  LutStream(const LutStore& lut, LutPlacement placement, int max_step_tokens, LutRead read, bool kernel_copy);
  void place_on_device();
  void place_in_host_memory();
  // The copy stream's host function: returns once the gather thread has signalled awaited_.
  static void CUDART_CB wait_for_gather(void* stream);

  const LutStore* lut_;
  LutPlacement placement_;
  LutRead read_;
  bool kernel_copy_;
  int max_tokens_;
  Stream copy_;
  Event ready_, copy_start_[2], copy_end_[2], fetch_start_, fetch_end_;
  std::shared_ptr<MemoryBudget> budget_;  // --memory-limit, if set: what the device buffers below are charged to
  DeviceBuffer table_dev_;                // device: (V, L*E*D)
  PinnedBuffer table_pinned_;             // host, when copied: (V, L*E*D)
  HostRegistration registered_;           // host, when registered: the file's pages under the table
  const uint8_t* table_host_ = nullptr;   // host: row 0 of the page-locked table, as the host addresses it
  const void* table_device_ = nullptr;    // direct, kernel copy: row 0 of the table, as kernels address it
  DeviceBuffer ring_;                     // copy: (max_step_tokens, L*E*D)
  PinnedBuffer staging_;                  // disk: (max_step_tokens, L*E*D)
  std::string note_;
  int rows_streamed_ = 0;
  uint64_t rows_moved_ = 0;
  bool profiling_ = false;
  bool copy_late_ = false;
  int slot_ = 0;  // copy_start_/copy_end_ of the last stream()
  bool copy_timed_[2] = {false, false};
  // --lut disk on the gather thread: the last value it signalled, and the one the queued host function waits for.
  // The host function polls for it before it blocks (model/spin_wait.h), as the thread polls for its jobs.
  std::mutex gather_mu_;  // taken to set gathered_, and to block waiting for it
  std::condition_variable gather_cv_;
  std::atomic<uint64_t> gathered_{0}, awaited_{0};
  std::unique_ptr<LutGatherThread> gather_;  // declared last: stopped before what its signal uses goes
};

}  // namespace mole::cuda
