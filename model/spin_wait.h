// Waiting for another thread without the tens of microseconds a blocked thread takes to wake (40-70 us measured on a
// 2-core VM, longer than most ops of a decode step): poll first, then block. The thread pool (model/parallel.cpp)
// and --lut disk's gather thread (model/lut_rows.h) wait this way.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mole {

// One round of polling's pause: the CPU's spin-wait hint (x86's pause), else a yield of the core.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Returns once ready() holds. Polls it for up to spin_ns (64 pauses, then a yield of the core, and again), then
// blocks on cv under mu; spin_ns 0 blocks at once. Whoever makes ready() true does so under mu (or takes mu after)
// and then notifies cv, so that a thread deciding to block cannot miss it.
template <class Ready>
void spin_then_block(std::mutex& mu, std::condition_variable& cv, const Ready& ready, int64_t spin_ns) {
  if (ready()) return;
  if (spin_ns > 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns);
    do {
      for (int k = 0; k < 64; k++) {
        if (ready()) return;
        cpu_relax();
      }
      std::this_thread::yield();
    } while (std::chrono::steady_clock::now() < until);
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, ready);
}

}  // namespace mole
