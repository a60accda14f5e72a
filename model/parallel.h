// parallel_for: splits [0, n) into contiguous chunks over a fixed pool of worker threads (by default one per core the
// process may run on: cpu_cores()). Chunks are fixed by n and the thread count alone, so results never depend on
// timing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace mole {

// Calls fn(begin, end) on disjoint ranges covering [0, n); returns when all are done. Exceptions thrown by fn
// are rethrown (the first one) on the calling thread.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);
// The most threads set_num_threads() starts (-t); far above any machine's cores, far below what exhausts a
// process's thread limit.
constexpr int kMaxThreads = 1024;

int num_threads();
// The cores this process may run on: those of its CPU affinity mask (taskset, a container's cpuset), else the
// machine's, and no more than its cgroup's CPU quota allows (a container's --cpus, rounded up); found once, at the
// first call. The pool's default size.
int cpu_cores();
// The cores a CPU quota allows: quota / period rounded up, from a cgroup's numbers as text; 0 where there is no
// quota ("max", -1, or not a number).
int cpu_quota_cores(const std::string& quota, const std::string& period);
// Starts the pool now with n threads (0 = one per core), so a failure shows at the flag: throws mole::Error for n
// outside [0, kMaxThreads] or when the system cannot start that many threads.
void set_num_threads(int n);

}  // namespace mole
