// The lookup table's rows on their way to router_lut, for the Vulkan backend (vk_backend.cpp): the Vulkan half
// (buffers, the transfer queue, timeline semaphores); the choice of read mode, the chunk plan, id checks and the
// disk gather thread are model/lut_rows.h's. Two ways to read them (LutRead, --lut-read copy|direct|auto):
//
// Direct (--lut host and device): router_lut_direct.comp reads each token's row in place from the table's chunks,
// through their buffer device addresses, by token id. Nothing is copied and nothing waits; each row crosses to the
// device once, when the shader reads it (over PCIe from host memory on a discrete GPU: latency-bound reads from a
// shader, where a DMA copy beside part A moves the same bytes at full speed and hidden; from the same memory on a
// CPU or integrated GPU, where the copy is a pure extra read and write). Auto picks direct where host memory is the
// device's memory (CPU and integrated GPU) and bufferDeviceAddress is there, copy on a discrete GPU, unless
// `mole bench --record` measured both on this device and recorded the faster (recorded_lut_read()): then that one.
//
// Copy (and always for --lut disk): router_lut.comp reads a small device-local ring of the step's rows
// (max_step_tokens rows, in step order), filled by vkCmdCopyBuffer regions on the transfer queue from wherever the
// table lives:
//   device: row-aligned device-local chunks (no buffer exceeds maxStorageBufferRange or maxMemoryAllocationSize),
//   host:   the same chunks in host-visible memory: the file's own pages imported where the device can
//           (VK_EXT_external_memory_host; import_table()), else copied in (--tune lut-import=0: always copied),
//   disk:   a host-visible staging ring that a gather thread fills from the mmap'd file.
// The copy signals a timeline semaphore that only the compute work reading the ring waits on, so it overlaps the
// compute before the first LUT sum.
//
// Disk, on a device with a transfer queue of its own: stream() returns at once. It hands the ids to the gather
// thread and submits the copy, which waits (on the GPU) for a timeline semaphore the thread signals from the host
// once it has memcpy'd the rows from the mapping into the staging ring (the page faults, i.e. the disk reads, happen
// on that thread). So the compute before the first LUT sum is queued without waiting for the disk, and the rows are
// read while it runs. A timeline wait submitted before its signal is legal. The thread signals even when gathering
// fails, so no queue waits forever, and the failure is rethrown as a mole::Error by the next call on the caller's
// thread (stream(), check(), wait()).
// Disk, on a device whose one queue does both (lavapipe): stream() gathers the rows itself before submitting the
// copy. There the copy's wait would hold up everything queued behind it, the compute before the first LUT sum
// included, so a thread would overlap nothing. (Also, the Khronos validation layer of Debian 12, 1.3.239, can report
// UNASSIGNED-VkSemaphore-state-timeout, "most likely a validation bug", for a host signal racing host waits: fixed
// upstream in Vulkan-ValidationLayers PR #8519.) --tune lut-gather=thread|inline forces either way (tests).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/backend.h"
#include "model/lut.h"
#include "model/lut_rows.h"
#include "vk-runtime/buffer.h"
#include "vk-runtime/command.h"
#include "vk-runtime/device_info.h"
#include "vk-runtime/query.h"
#include "vk-runtime/sync.h"

namespace mole::vulkan {

// A wait on the GPU longer than this is treated as a hung device (as the backend's own waits).
constexpr uint64_t kLutWaitNs = 120ull * 1000 * 1000 * 1000;

// Owns the table's chunks, the row ring, the staging ring, the transfer command buffer that fills the ring, the
// timeline semaphores and the timestamp pool, and destroys them; no compute submission may still read the ring then
// (the backend waits for the device to go idle first). Owns the disk placement's gather thread: the destructor stops
// and joins it (a job already handed over is finished or skipped, and its value signalled either way), then waits
// for the last copy. The Device and the LutStore must outlive it. Not movable (its thread points at it): create()
// makes it on the heap.
class LutStream {
 public:
  // Called before each device-local allocation with its size and what it is; throws mole::Error to refuse (the
  // backend's memory budget, so that a table too large is an error naming it, not a driver failure).
  using Charge = std::function<void(size_t bytes, const std::string& what)>;
  // Copies host bytes to the start of a device-local buffer (load time).
  using Upload = std::function<void(const Buffer& dst, const void* src, size_t bytes)>;

  // Allocates the table's chunks (device, host: the whole table copied in now) and, for direct reads, their
  // address table, or for copies the ring and (disk) the staging ring and the gather thread. `read`: Auto as above
  // (`record_file`: where a measured choice may be, lut_read_record_file()); Direct needs bufferDeviceAddress (else
  // a mole::Error saying so); --lut disk always copies. `tuning`: lut_chunk_bytes, lut_gather, lut_import. Throws
  // mole::Error from `charge` or Buffer::create when something does not fit.
  static std::unique_ptr<LutStream> create(const Device& device, const LutStore& lut, LutPlacement placement,
                                           int max_step_tokens, LutRead read, const BackendTuning& tuning,
                                           const std::string& record_file, const Charge& charge, const Upload& upload);

  LutStream(const LutStream&) = delete;
  LutStream& operator=(const LutStream&) = delete;
  ~LutStream();

  const LutStore& lut() const { return *lut_; }
  LutPlacement placement() const { return placement_; }
  LutRead read() const { return read_; }  // Copy or Direct
  bool direct() const { return read_ == LutRead::Direct; }
  // --lut host: a line saying that the table's chunks are the file's own pages, imported (import_table()), or why
  // they were copied instead; "" for the other placements.
  const std::string& import_note() const { return import_note_; }

  // Direct: checks the ids and notes how many there are (the shader reads them from the step's id buffer).
  // Copy: starts bringing the rows of `ids` (the next step's tokens, in step order) into the ring, and returns. The
  // copy waits on the GPU until `compute` reaches `compute_value` (the last step submitted no longer reads the ring).
  // The host waits only for the previous copy (the command buffer and the single staging ring are reused), which
  // the caller's read-back of the previous step has already waited for. Throws mole::Error for more ids than
  // max_step_tokens, an id outside the table (disk: found by the thread, reported by a later call), or the failure
  // of the previous step's gathering.
  void stream(const std::vector<int32_t>& ids, const TimelineSemaphore& compute, uint64_t compute_value);
  // Rows streamed since the last consumed(): run_step checks that they are the step's tokens.
  int rows_streamed() const { return rows_streamed_; }
  void consumed() { rows_streamed_ = 0; }
  // Rows and bytes brought to router_lut since create(): copied into the ring, or read in place.
  uint64_t rows_moved() const { return rows_moved_; }
  uint64_t bytes_moved() const { return rows_moved_ * lut_->row_bytes(); }

  // Copy: what router_lut.comp reads, (max_step_tokens, L*E*D) in the table's dtype.
  const Buffer& ring() const { return *ring_; }
  // Direct: what router_lut_direct.comp reads, {rows_per_chunk, 0, each chunk's device address (uvec2)}.
  const Buffer& chunk_addresses() const { return *addresses_; }
  // Copy: the semaphore and value a submission reading the ring waits on (at the compute-shader stage); direct:
  // nothing to wait for (wait_needed() false).
  bool wait_needed() const { return read_ == LutRead::Copy; }
  VkSemaphore semaphore() const { return lut_tl_.handle(); }
  uint64_t value() const { return lut_value_; }
  // Blocks until every copy submitted so far is done, then check()s.
  void wait();
  // Rethrows, as a mole::Error, a failure of the gather thread not yet reported (once). A caller that has waited
  // for a compute step reading the ring knows that the step's gathering has finished, so this reports its failure.
  void check();

  // With profiling on, timestamps are written around each copy.
  void set_profiling(bool on) { profiling_ = on; }
  // Seconds the last copy took on the transfer queue (0 when not measured); call once that copy is done.
  double last_copy_seconds() const;

 private:
  LutStream(const Device& device, const LutStore& lut);
  // --lut host, file-backed table: chunks_ made by importing the pages under each chunk's rows
  // (Buffer::import_host), each chunk's first row at chunk_offsets_[c] within its buffer. Throws mole::Error saying
  // why it cannot (the caller then copies the table instead).
  void import_table(VkBufferUsageFlags usage);

  const Device* dev_;
  const LutStore* lut_;
  LutPlacement placement_ = LutPlacement::Host;
  LutRead read_ = LutRead::Copy;
  int max_tokens_ = 0;
  CommandPool transfer_pool_;
  TimelineSemaphore lut_tl_;  // value lut_value_: the last copy submitted has filled the ring
  uint64_t lut_value_ = 0;
  std::vector<Buffer> chunks_;               // device/host placement: the whole table, row-aligned chunks
  std::vector<VkDeviceSize> chunk_offsets_;  // where each chunk's first row starts in its buffer (imported: > 0)
  std::string import_note_;
  LutChunks plan_;                   // rows in each chunk (the last may hold fewer)
  std::optional<Buffer> addresses_;  // direct: {rows_per_chunk, 0, uvec2 address[chunks]} device-local
  std::optional<Buffer> staging_;    // disk placement: (max_tokens, L*E*D) host-visible
  std::optional<Buffer> ring_;       // (max_tokens, L*E*D) device-local: what router_lut.comp reads
  std::optional<CommandBuffer> cb_;  // the copy, re-recorded each step (transfer pool)
  bool profiling_ = false;
  std::optional<TimestampQueryPool> ts_;  // 2 timestamps around the copy
  int rows_streamed_ = 0;
  uint64_t rows_moved_ = 0;

  // Disk placement: the gather thread and the one job it may hold. The staging ring is single-buffered: stream()
  // hands over step N's job only after step N-1's copy out of the ring is done (a second ring would let it go
  // earlier, but the engine's read-back of step N-1 has already waited for that copy, so it would buy nothing).
  TimelineSemaphore gathered_tl_;  // value gathered_value_: the staging ring holds the last job's rows (host-signalled)
  uint64_t gathered_value_ = 0;
  std::unique_ptr<LutGatherThread> gather_;  // declared last: joined before anything it uses goes
};

}  // namespace mole::vulkan
