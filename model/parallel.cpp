// A small persistent thread pool behind parallel_for; one job at a time (callers do not nest parallel_for).
//
// A worker that has finished a part polls for the next job for up to kSpinNs before it blocks, and the caller polls
// for the parts' end as long (model/spin_wait.h): a blocked thread takes longer to wake than most ops of a small
// model's decode step take. The ops of a decode step come microseconds apart, so the workers stay awake through a
// step and between the steps of a generation, and block within a millisecond of the last. No polling where the pool
// has more threads than the process has cores to run on (-t above it): a polling thread would hold the core that a
// working one needs.
#include "model/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#ifdef __linux__
#include <sched.h>
#endif

#include "model/error.h"
#include "model/spin_wait.h"

namespace mole {
namespace {

constexpr int64_t kSpinNs = 500'000;  // how long a thread polls before it blocks

class Pool {
 public:
  explicit Pool(int n) : spin_(n <= cpu_cores()) {
    try {
      for (int i = 1; i < n; i++) workers_.emplace_back([this, i] { loop(i); });
    } catch (const std::system_error& e) {  // out of threads (EAGAIN): stop those started, then say so
      stop();
      throw Error("cannot start " + std::to_string(n) + " threads: " + e.what() + " after starting " +
                  std::to_string(workers_.size() + 1) + "; ask for fewer with -t");
    }
    size_ = n;
  }
  ~Pool() { stop(); }
  int size() const { return size_; }

  void run(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
    int parts = int(std::min<int64_t>(size_, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk))));
    if (parts <= 1) {
      fn(0, n);
      return;
    }
    // Every worker answers every job, those without a part too, so that none still reads the job's fields (written
    // here, without the lock) when the next job is set.
    fn_ = &fn;
    n_ = n;
    parts_ = parts;
    error_ = nullptr;
    pending_.store(size_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mu_);  // so that a worker deciding to block cannot miss the new generation
      generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    cv_.notify_all();
    run_part(0);
    spin_then_block(
        mu_, done_cv_, [this] { return pending_.load(std::memory_order_acquire) == 0; }, spin_ns());
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }
  void run_part(int i) {
    int64_t begin = n_ * i / parts_, end = n_ * (i + 1) / parts_;
    try {
      if (begin < end) (*fn_)(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
  }
  void loop(int i) {
    uint64_t seen = 0;
    for (;;) {
      spin_then_block(
          mu_, cv_,
          [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; },
          spin_ns());
      if (stop_.load(std::memory_order_acquire)) return;
      seen = generation_.load(std::memory_order_acquire);
      if (i < parts_) run_part(i);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        { std::lock_guard<std::mutex> lock(mu_); }  // the caller is blocked in done_cv_, or will see pending_ at 0
        done_cv_.notify_one();
      }
    }
  }

  int64_t spin_ns() const { return spin_ ? kSpinNs : 0; }

  const bool spin_;  // at most one thread a core: waits poll before they block
  std::vector<std::thread> workers_;
  int size_ = 1;
  std::mutex mu_;  // guards error_; taken to block, and to publish what a blocked thread waits for
  std::condition_variable cv_, done_cv_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> generation_{0};  // jobs started; a worker runs each new one
  std::atomic<int> pending_{0};          // workers yet to answer the current job
  // The current job, set by run() before it moves generation_ on, read by the workers after they see it move.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int parts_ = 0;
  std::exception_ptr error_;
};

int g_requested = 0;
std::mutex g_pool_mu;
std::unique_ptr<Pool> g_pool;

int threads_for(int requested) {
  return requested > 0 ? requested : std::clamp(cpu_cores(), 1, kMaxThreads);
}

Pool& pool() {
  std::lock_guard<std::mutex> lock(g_pool_mu);
  if (!g_pool) g_pool = std::make_unique<Pool>(threads_for(g_requested));
  return *g_pool;
}

}  // namespace

int cpu_quota_cores(const std::string& quota, const std::string& period) {
  try {
    const long long q = std::stoll(quota), p = std::stoll(period);
    if (q <= 0 || p <= 0) return 0;
    return int(std::min<long long>(kMaxThreads, (q + p - 1) / p));
  } catch (const std::exception&) {  // "max", or anything else that is no number: no limit known
    return 0;
  }
}

namespace {

std::string first_line(const char* path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// The CPU quota of the process's cgroup (a container started with --cpus, say), in cores; 0: none found. cgroup v2's
// cpu.max holds "QUOTA PERIOD" ("max PERIOD": none); v1 keeps them in two files (quota -1: none). Inside a container
// /sys/fs/cgroup is its own cgroup's.
int cgroup_cores() {
  std::istringstream v2(first_line("/sys/fs/cgroup/cpu.max"));
  std::string quota, period;
  if (v2 >> quota >> period) return cpu_quota_cores(quota, period);
  return cpu_quota_cores(first_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                         first_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
}

}  // namespace

int cpu_cores() {
  static const int cores = [] {  // once: the pool, the gather threads and the tests ask
    int n = int(std::max(1u, std::thread::hardware_concurrency()));
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) n = CPU_COUNT(&set);
#endif
    const int quota = cgroup_cores();
    return quota > 0 ? std::min(n, quota) : n;
  }();
  return cores;
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  pool().run(n, min_chunk, fn);
}

int num_threads() {
  return pool().size();
}

void set_num_threads(int n) {
  if (n < 0 || n > kMaxThreads)
    throw Error("-t " + std::to_string(n) + ": the thread count must be 0 (one per core) to " +
                std::to_string(kMaxThreads));
  std::lock_guard<std::mutex> lock(g_pool_mu);
  g_pool.reset();
  g_pool = std::make_unique<Pool>(threads_for(n));
  g_requested = n;
}

}  // namespace mole
