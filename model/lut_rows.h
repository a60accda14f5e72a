// What every GPU backend needs to bring the lookup table's rows to its router_lut, whatever its API: the
// copy-or-direct choice (with the measured choice `mole bench --record` keeps per device), the table cut into
// row-aligned chunks no buffer limit refuses, checks of the step's ids, and --lut disk's gather thread, which copies
// the step's rows from the mmap'd file into a staging ring (where the page faults, i.e. the disk reads, happen) and
// then signals the device through a callback. The API half (buffers, queues, semaphores or events, copies) stays in
// each backend (vk-runtime/lut_stream.h, cuda-backend/).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "model/backend.h"
#include "model/lut.h"

namespace mole {

// Copy or Direct for a run (never Auto). Direct where it was asked for (an error if the device cannot read the
// table in place: `direct_unsupported` says why), or, for Auto, where `record_file` holds a measured "direct", else
// where the backend's rule prefers it (`direct_preferred`: the device reads the table's memory at full speed, e.g.
// host memory on a CPU or integrated GPU). --lut disk always copies.
LutRead resolve_lut_read(LutRead asked, LutPlacement placement, bool direct_preferred, bool can_read_direct,
                         const std::string& direct_unsupported, const std::string& record_file);

// The file holding the measured read mode of one device of one backend: CACHE_DIR/lut-read-BACKEND-KEY; "" when
// there is no cache directory or no device key.
std::string lut_read_record_file(const std::string& cache_dir, const std::string& backend,
                                 const std::string& device_key);
// The recorded choice; nullopt when none (or a damaged file: ignored, the next record overwrites it).
std::optional<LutRead> recorded_lut_read(const std::string& file);
// Writes `read` (Copy or Direct) to the file, creating its folder; returns the file, or "" when it cannot.
std::string record_lut_read(const std::string& file, LutRead read);

// The table as row-aligned chunks of at most max_bytes each (the last may hold fewer rows).
struct LutChunks {
  int64_t rows = 0;            // rows of the table
  int64_t rows_per_chunk = 0;  // at least 1
  int64_t count() const { return (rows + rows_per_chunk - 1) / rows_per_chunk; }
  // Chunk c's first row and row count.
  std::pair<int64_t, int64_t> chunk(int64_t c) const {
    const int64_t r0 = c * rows_per_chunk;
    return {r0, std::min(rows_per_chunk, rows - r0)};
  }
};
// Throws mole::Error when one row is larger than max_bytes.
LutChunks plan_lut_chunks(const LutStore& lut, uint64_t max_bytes, const std::string& device_name);

// Throws mole::Error naming the first id outside the table.
void check_lut_ids(const LutStore& lut, const std::vector<int32_t>& ids);
// The rows of `ids`, in order, copied to dst (ids.size() * row_bytes bytes); checks the ids first.
void gather_lut_rows(const LutStore& lut, const std::vector<int32_t>& ids, void* dst);

// How long --lut disk's gather thread polls for its next job before it blocks (model/spin_wait.h), and who waits on
// the host for its signal (the CUDA backend's copy stream) for that signal: 1 ms, as a decode step's job comes within
// a millisecond of the last and a blocked thread took 50 us to wake; 0 (block at once) where the process has one core
// (cpu_cores()).
int64_t lut_gather_spin_ns();

// --lut disk's gather thread. submit() hands over one job: the rows of `ids` into `dst`, then signal(value) on the
// thread. The signal comes even when gathering fails (so that a device waiting for it never waits forever); the
// failure is rethrown as a mole::Error by the next check() on the caller's thread. One job at a time: the caller
// submits the next only after the device has consumed the previous rows. The destructor stops and joins the thread
// (a job already handed over is finished or skipped, and signalled either way). Between jobs the thread polls for
// lut_gather_spin_ns() before it blocks.
class LutGatherThread {
 public:
  LutGatherThread(const LutStore& lut, std::function<void(uint64_t value)> signal);
  ~LutGatherThread();
  LutGatherThread(const LutGatherThread&) = delete;
  LutGatherThread& operator=(const LutGatherThread&) = delete;

  void submit(std::vector<int32_t> ids, void* dst, uint64_t value);
  // Rethrows a failure of the thread not yet reported (once), as a mole::Error.
  void check();

 private:
  void loop();

  const LutStore* lut_;
  std::function<void(uint64_t)> signal_;
  struct Job {
    std::vector<int32_t> ids;
    void* dst = nullptr;
    uint64_t value = 0;
  };
  std::mutex mu_;  // guards job_ and error_; taken to block, and to set what a blocked thread waits for
  std::condition_variable cv_;
  std::optional<Job> job_;
  std::atomic<bool> has_job_{false}, stop_{false};  // job_ holds one; stopping
  std::exception_ptr error_;
  std::thread thread_;  // declared last: started after, and joined before, everything it uses
};

}  // namespace mole
