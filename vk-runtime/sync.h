// Fences (the host waits for a submission) and timeline semaphores (queues and the host wait for each other), with
// waits that time out into a mole::Error instead of hanging on a stuck GPU.
#pragma once

#include <cstdint>

#include "vk-runtime/check.h"

namespace mole {

class Device;

constexpr uint64_t kDefaultGpuTimeoutNs = 60'000'000'000ull;  // 60 s: far beyond any single step

// Owns a VkFence and destroys it; it must not be pending on a queue then. The Device must outlive it.
class Fence {
 public:
  static Fence create(const Device& device, bool signaled);

  Fence(Fence&& other) noexcept;
  Fence& operator=(Fence&& other) noexcept;
  Fence(const Fence&) = delete;
  Fence& operator=(const Fence&) = delete;
  ~Fence();

  VkFence handle() const { return fence_; }
  // Throws mole::Error "GPU did not finish within Ns (hung or too slow)" after timeout_ns, and VK_CHECK's error on
  // a lost device.
  void wait(uint64_t timeout_ns = kDefaultGpuTimeoutNs) const;
  bool signaled() const;  // without waiting
  void reset();

 private:
  Fence() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
};

// Owns a timeline VkSemaphore and destroys it; no submission may still wait on or signal it then. The Device must
// outlive it. Its value only grows: each signal must be greater than the current value.
class TimelineSemaphore {
 public:
  static TimelineSemaphore create(const Device& device, uint64_t initial);

  TimelineSemaphore(TimelineSemaphore&& other) noexcept;
  TimelineSemaphore& operator=(TimelineSemaphore&& other) noexcept;
  TimelineSemaphore(const TimelineSemaphore&) = delete;
  TimelineSemaphore& operator=(const TimelineSemaphore&) = delete;
  ~TimelineSemaphore();

  VkSemaphore handle() const { return semaphore_; }
  uint64_t value() const;  // vkGetSemaphoreCounterValue
  // Blocks until the value is >= v; throws mole::Error like Fence::wait() after timeout_ns. With spin_ns > 0 it
  // first polls the value for up to spin_ns (the calling thread busy, a CPU pause between polls), and blocks in
  // vkWaitSemaphores only after that: a thread the driver puts to sleep wakes up some microseconds after the GPU
  // signals, which a step of a millisecond feels (llama.cpp's Vulkan backend measured up to 5% on NVIDIA).
  void wait(uint64_t v, uint64_t timeout_ns = kDefaultGpuTimeoutNs, uint64_t spin_ns = 0) const;
  void signal_from_host(uint64_t v);

 private:
  TimelineSemaphore() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkSemaphore semaphore_ = VK_NULL_HANDLE;
};

}  // namespace mole
