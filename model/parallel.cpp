// A small persistent thread pool behind parallel_for; one job at a time (callers do not nest parallel_for).
#include "model/parallel.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "model/error.h"

namespace mole {
namespace {

class Pool {
 public:
  explicit Pool(int n) {
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
    std::unique_lock<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    parts_ = parts;
    pending_ = parts - 1;
    error_ = nullptr;
    generation_++;
    lock.unlock();
    cv_.notify_all();
    run_part(0);
    lock.lock();
    done_cv_.wait(lock, [this] { return pending_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
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
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      bool mine = i < parts_;
      lock.unlock();
      if (!mine) continue;
      run_part(i);
      lock.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  int size_ = 1;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  bool stop_ = false;
  uint64_t generation_ = 0;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int parts_ = 0;
  int pending_ = 0;
  std::exception_ptr error_;
};

int g_requested = 0;
std::mutex g_pool_mu;
std::unique_ptr<Pool> g_pool;

int threads_for(int requested) {
  return requested > 0 ? requested : int(std::clamp(std::thread::hardware_concurrency(), 1u, unsigned(kMaxThreads)));
}

Pool& pool() {
  std::lock_guard<std::mutex> lock(g_pool_mu);
  if (!g_pool) g_pool = std::make_unique<Pool>(threads_for(g_requested));
  return *g_pool;
}

}  // namespace

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
