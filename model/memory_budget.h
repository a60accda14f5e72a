// The device memory a GPU backend may allocate (vk-runtime/vk_backend.cpp, cuda-backend/handles.h): what the device
// has, or less with --memory-limit (to try what does not fit). Allocations are charged before they are made, so
// running out is an error naming what did not fit and what to do, not a driver failure halfway through; a backend
// that frees memory gives its bytes back.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace mole {

class MemoryBudget {
 public:
  // `device_bytes`: what the device has (0: unknown, no bound but the limit); `limit_mib` > 0: --memory-limit.
  MemoryBudget(uint64_t device_bytes, double limit_mib);
  uint64_t limit() const { return limit_; }
  uint64_t used() const { return used_.load(); }
  uint64_t left() const;
  bool by_limit() const { return by_limit_; }  // limit() is --memory-limit's, below what the device has
  // Counts `bytes` more, or throws mole::Error "not enough GPU memory: <what> needs X, Y of Z remain; <hint>".
  void charge(uint64_t bytes, const std::string& what);
  void refund(uint64_t bytes) noexcept { used_ -= bytes; }

 private:
  uint64_t limit_ = UINT64_MAX;
  bool by_limit_ = false;
  std::atomic<uint64_t> used_{0};
};

// "12.5 MiB"; below 10 MiB "0.3438 MiB", below 1 KiB "53 bytes".
std::string memory_size_text(uint64_t bytes);

// What to do when `what` does not fit in GPU memory (or in one Vulkan binding): the table goes elsewhere; the KV
// cache needs a shorter context or batch; a weight needs the table off the GPU, or the CPU; the step's activations
// need fewer tokens a step, a shorter context or batch.
std::string out_of_memory_hint(const std::string& what);

}  // namespace mole
