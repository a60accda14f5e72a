// GPU timestamps, for per-op timings (mole bench, profiling).
#pragma once

#include <cstdint>
#include <vector>

#include "vk-runtime/check.h"

namespace mole {

class Device;

// Owns a timestamp VkQueryPool for command buffers of the device's compute queue family and destroys it. The Device
// must outlive it. On a family without timestamps (timestampValidBits == 0) reset() and write() record nothing and
// read_ns() returns an empty vector.
class TimestampQueryPool {
 public:
  static TimestampQueryPool create(const Device& device, uint32_t count);

  TimestampQueryPool(TimestampQueryPool&& other) noexcept;
  TimestampQueryPool& operator=(TimestampQueryPool&& other) noexcept;
  TimestampQueryPool(const TimestampQueryPool&) = delete;
  TimestampQueryPool& operator=(const TimestampQueryPool&) = delete;
  ~TimestampQueryPool();

  VkQueryPool handle() const { return pool_; }
  uint32_t count() const { return count_; }
  bool supported() const { return valid_bits_ != 0; }
  // Records a reset of every query; must come before write() in the same or an earlier submission.
  void reset(VkCommandBuffer cb);
  // Records query i: the time at which all commands recorded before it have completed.
  void write(VkCommandBuffer cb, uint32_t i);
  // The first `count` timestamps in nanoseconds since timestamp 0 (so [0] is 0), timestampPeriod applied and
  // counter wrap-around handled. Call after the submission's fence: a query not yet written reads as NaN (this never
  // waits, so a query that will never be written cannot hang it).
  std::vector<double> read_ns(uint32_t count) const;

 private:
  TimestampQueryPool() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkQueryPool pool_ = VK_NULL_HANDLE;
  uint32_t count_ = 0;
  uint32_t valid_bits_ = 0;
  double period_ns_ = 0;
};

}  // namespace mole
