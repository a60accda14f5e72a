// Fences and timeline semaphores (see sync.h).
#include "vk-runtime/sync.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "model/error.h"
#include "vk-runtime/device.h"
#include "vk-runtime/loader.h"

namespace mole {
namespace {

[[noreturn]] void timed_out(uint64_t timeout_ns) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "vulkan: the GPU did not finish within %.3g s (hung or too slow)",
                double(timeout_ns) * 1e-9);
  throw Error(buf);
}

// A hint to the CPU that this thread is spinning (cheaper for a sibling hyperthread, less power).
void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

Fence Fence::create(const Device& device, bool signaled) {
  Fence f;
  f.device_ = device.handle();
  VkFenceCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
  ci.flags = signaled ? VK_FENCE_CREATE_SIGNALED_BIT : 0;
  VK_CHECK(vk().vkCreateFence(f.device_, &ci, nullptr, &f.fence_));
  return f;
}

Fence::Fence(Fence&& other) noexcept : device_(other.device_), fence_(std::exchange(other.fence_, VK_NULL_HANDLE)) {}

Fence& Fence::operator=(Fence&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    fence_ = std::exchange(other.fence_, VK_NULL_HANDLE);
  }
  return *this;
}

Fence::~Fence() {
  destroy();
}

void Fence::destroy() {
  if (fence_ != VK_NULL_HANDLE) vk().vkDestroyFence(device_, fence_, nullptr);
  fence_ = VK_NULL_HANDLE;
}

void Fence::wait(uint64_t timeout_ns) const {
  VkResult r = vk().vkWaitForFences(device_, 1, &fence_, VK_TRUE, timeout_ns);
  if (r == VK_TIMEOUT) timed_out(timeout_ns);
  VK_CHECK(r);
}

bool Fence::signaled() const {
  VkResult r = vk().vkGetFenceStatus(device_, fence_);
  if (r == VK_NOT_READY) return false;
  VK_CHECK(r);
  return true;
}

void Fence::reset() {
  VK_CHECK(vk().vkResetFences(device_, 1, &fence_));
}

TimelineSemaphore TimelineSemaphore::create(const Device& device, uint64_t initial) {
  TimelineSemaphore s;
  s.device_ = device.handle();
  VkSemaphoreTypeCreateInfo type{};
  type.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
  type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
  type.initialValue = initial;
  VkSemaphoreCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
  ci.pNext = &type;
  VK_CHECK(vk().vkCreateSemaphore(s.device_, &ci, nullptr, &s.semaphore_));
  return s;
}

TimelineSemaphore::TimelineSemaphore(TimelineSemaphore&& other) noexcept
    : device_(other.device_), semaphore_(std::exchange(other.semaphore_, VK_NULL_HANDLE)) {}

TimelineSemaphore& TimelineSemaphore::operator=(TimelineSemaphore&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    semaphore_ = std::exchange(other.semaphore_, VK_NULL_HANDLE);
  }
  return *this;
}

TimelineSemaphore::~TimelineSemaphore() {
  destroy();
}

void TimelineSemaphore::destroy() {
  if (semaphore_ != VK_NULL_HANDLE) vk().vkDestroySemaphore(device_, semaphore_, nullptr);
  semaphore_ = VK_NULL_HANDLE;
}

uint64_t TimelineSemaphore::value() const {
  uint64_t v = 0;
  VK_CHECK(vk().vkGetSemaphoreCounterValue(device_, semaphore_, &v));
  return v;
}

void TimelineSemaphore::wait(uint64_t v, uint64_t timeout_ns, uint64_t spin_ns) const {
  const uint64_t full_timeout_ns = timeout_ns;
  if (spin_ns > 0) {
    const auto start = std::chrono::steady_clock::now();
    const auto spin = std::chrono::nanoseconds(std::min(spin_ns, timeout_ns));
    for (;;) {
      if (value() >= v) return;
      const auto spent = std::chrono::steady_clock::now() - start;
      if (spent >= spin) {  // block for the rest of the timeout
        timeout_ns -= std::min<uint64_t>(timeout_ns, uint64_t(std::chrono::nanoseconds(spent).count()));
        break;
      }
      for (int i = 0; i < 16; i++) cpu_pause();
    }
  }
  VkSemaphoreWaitInfo wi{};
  wi.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
  wi.semaphoreCount = 1;
  wi.pSemaphores = &semaphore_;
  wi.pValues = &v;
  VkResult r = vk().vkWaitSemaphores(device_, &wi, timeout_ns);
  if (r == VK_TIMEOUT) timed_out(full_timeout_ns);
  VK_CHECK(r);
}

void TimelineSemaphore::signal_from_host(uint64_t v) {
  VkSemaphoreSignalInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO;
  si.semaphore = semaphore_;
  si.value = v;
  VK_CHECK(vk().vkSignalSemaphore(device_, &si));
}

}  // namespace mole
