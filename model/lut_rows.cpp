// The backend-neutral half of LUT streaming (see lut_rows.h).
#include "model/lut_rows.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "model/error.h"
#include "model/parallel.h"
#include "model/spin_wait.h"

namespace mole {

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

std::optional<LutRead> parse_lut_read(const std::string& s) {
  if (s == "auto") return LutRead::Auto;
  if (s == "copy") return LutRead::Copy;
  if (s == "direct") return LutRead::Direct;
  return std::nullopt;
}

LutRead resolve_lut_read(LutRead asked, LutPlacement placement, bool direct_preferred, bool can_read_direct,
                         const std::string& direct_unsupported, const std::string& record_file) {
  if (placement == LutPlacement::Disk || asked == LutRead::Copy) return LutRead::Copy;
  if (asked == LutRead::Direct) {
    if (!can_read_direct) throw Error("--lut-read direct: " + direct_unsupported + "; use copy or auto");
    return LutRead::Direct;
  }
  // Auto: what `mole bench --record` measured faster on this device, if anything; else the rule.
  if (std::optional<LutRead> measured = recorded_lut_read(record_file))
    return *measured == LutRead::Direct && !can_read_direct ? LutRead::Copy : *measured;
  return can_read_direct && direct_preferred ? LutRead::Direct : LutRead::Copy;
}

std::string lut_read_record_file(const std::string& cache_dir, const std::string& backend,
                                 const std::string& device_key) {
  if (cache_dir.empty() || device_key.empty()) return "";
  return cache_dir + "/lut-read-" + backend + "-" + device_key;
}

std::optional<LutRead> recorded_lut_read(const std::string& file) {
  if (file.empty()) return std::nullopt;
  std::ifstream f(file);
  std::string word;
  if (!(f >> word)) return std::nullopt;
  std::optional<LutRead> r = parse_lut_read(word);
  return r == LutRead::Auto ? std::nullopt : r;
}

std::string record_lut_read(const std::string& file, LutRead read) {
  if (file.empty() || read == LutRead::Auto) return "";
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(file).parent_path(), ec);
  const std::string tmp = file + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << lut_read_name(read) << "\n";
    if (!f) return "";
  }
  std::filesystem::rename(tmp, file, ec);
  return ec ? "" : file;
}

LutChunks plan_lut_chunks(const LutStore& lut, uint64_t max_bytes, const std::string& device_name) {
  const uint64_t row = lut.row_bytes();
  if (row > max_bytes)
    throw Error("a lookup table row (" + std::to_string(row) + " bytes) is larger than one buffer can be on " +
                device_name + " (" + std::to_string(max_bytes) + " bytes)");
  LutChunks c;
  c.rows = lut.rows();
  c.rows_per_chunk = std::max<int64_t>(1, std::min<int64_t>(int64_t(max_bytes / row), lut.rows()));
  return c;
}

void check_lut_ids(const LutStore& lut, const std::vector<int32_t>& ids) {
  for (int32_t id : ids)
    if (id < 0 || int64_t(id) >= lut.rows())
      throw Error("token id " + std::to_string(id) + " is outside the lookup table (" + std::to_string(lut.rows()) +
                  " rows)");
}

void gather_lut_rows(const LutStore& lut, const std::vector<int32_t>& ids, void* dst) {
  check_lut_ids(lut, ids);
  lut.prefetch(ids);  // all rows' reads start now; the memcpy below faults in the first ones meanwhile
  const size_t row = lut.row_bytes();
  for (size_t t = 0; t < ids.size(); t++) std::memcpy(static_cast<uint8_t*>(dst) + t * row, lut.row(ids[t]), row);
}

int64_t lut_gather_spin_ns() {
  return cpu_cores() > 1 ? 1'000'000 : 0;
}

LutGatherThread::LutGatherThread(const LutStore& lut, std::function<void(uint64_t)> signal)
    : lut_(&lut), signal_(std::move(signal)), thread_([this] { loop(); }) {}

LutGatherThread::~LutGatherThread() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
  thread_.join();
}

void LutGatherThread::submit(std::vector<int32_t> ids, void* dst, uint64_t value) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = Job{std::move(ids), dst, value};
    has_job_.store(true, std::memory_order_release);
  }
  cv_.notify_one();
}

void LutGatherThread::loop() {
  const int64_t spin_ns = lut_gather_spin_ns();
  for (;;) {
    spin_then_block(
        mu_, cv_, [this] { return stop_.load(std::memory_order_acquire) || has_job_.load(std::memory_order_acquire); },
        spin_ns);
    std::unique_lock<std::mutex> lock(mu_);
    if (!job_) return;  // stopping, nothing handed over
    Job job = std::move(*job_);
    job_.reset();
    has_job_.store(false, std::memory_order_relaxed);
    // Stopping: the rows will never be read, only the signal matters.
    const bool skip = stop_.load(std::memory_order_relaxed);
    lock.unlock();
    std::exception_ptr failed;
    try {
      if (!skip) gather_lut_rows(*lut_, job.ids, job.dst);
    } catch (...) {
      failed = std::current_exception();
    }
    lock.lock();
    if (failed && !error_) error_ = failed;  // recorded before the signal, so whoever saw the signal finds it
    lock.unlock();
    try {
      signal_(job.value);  // whatever happened: the device waits for this value
    } catch (...) {
      lock.lock();
      if (!error_) error_ = std::current_exception();
    }
  }
}

void LutGatherThread::check() {
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

}  // namespace mole
