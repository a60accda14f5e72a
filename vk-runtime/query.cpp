// Timestamp queries (see query.h).
#include "vk-runtime/query.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <utility>

#include "vk-runtime/device.h"
#include "vk-runtime/loader.h"

namespace mole {

TimestampQueryPool TimestampQueryPool::create(const Device& device, uint32_t count) {
  assert(count > 0);
  TimestampQueryPool q;
  q.device_ = device.handle();
  q.count_ = count;
  for (const auto& f : device.info().queue_families) {
    if (f.index == device.compute_family()) q.valid_bits_ = f.timestamp_valid_bits;
  }
  q.period_ns_ = device.info().timestamp_period;
  if (q.period_ns_ <= 0) q.valid_bits_ = 0;
  VkQueryPoolCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
  ci.queryType = VK_QUERY_TYPE_TIMESTAMP;
  ci.queryCount = count;
  VK_CHECK(vk().vkCreateQueryPool(q.device_, &ci, nullptr, &q.pool_));
  return q;
}

TimestampQueryPool::TimestampQueryPool(TimestampQueryPool&& other) noexcept
    : device_(other.device_),
      pool_(std::exchange(other.pool_, VK_NULL_HANDLE)),
      count_(other.count_),
      valid_bits_(other.valid_bits_),
      period_ns_(other.period_ns_) {}

TimestampQueryPool& TimestampQueryPool::operator=(TimestampQueryPool&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    pool_ = std::exchange(other.pool_, VK_NULL_HANDLE);
    count_ = other.count_;
    valid_bits_ = other.valid_bits_;
    period_ns_ = other.period_ns_;
  }
  return *this;
}

TimestampQueryPool::~TimestampQueryPool() {
  destroy();
}

void TimestampQueryPool::destroy() {
  if (pool_ != VK_NULL_HANDLE) vk().vkDestroyQueryPool(device_, pool_, nullptr);
  pool_ = VK_NULL_HANDLE;
}

void TimestampQueryPool::reset(VkCommandBuffer cb) {
  if (supported()) vk().vkCmdResetQueryPool(cb, pool_, 0, count_);
}

void TimestampQueryPool::write(VkCommandBuffer cb, uint32_t i) {
  assert(i < count_);
  if (supported()) vk().vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool_, i);
}

std::vector<double> TimestampQueryPool::read_ns(uint32_t count) const {
  if (!supported() || count == 0) return {};
  count = std::min(count, count_);
  std::vector<uint64_t> raw(2 * size_t(count));  // (value, availability) pairs
  VkResult r =
      vk().vkGetQueryPoolResults(device_, pool_, 0, count, raw.size() * sizeof(uint64_t), raw.data(),
                                 2 * sizeof(uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WITH_AVAILABILITY_BIT);
  if (r != VK_NOT_READY) VK_CHECK(r);
  const uint64_t mask = valid_bits_ >= 64 ? ~uint64_t(0) : (uint64_t(1) << valid_bits_) - 1;
  std::vector<double> ns(count, std::numeric_limits<double>::quiet_NaN());
  if (!raw[1]) return ns;
  for (uint32_t i = 0; i < count; ++i) {
    if (raw[2 * i + 1]) ns[i] = double((raw[2 * i] - raw[0]) & mask) * period_ns_;
  }
  return ns;
}

}  // namespace mole
