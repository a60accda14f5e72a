// Command pools, command buffers and queue submission (see command.h).
#include "vk-runtime/command.h"

#include <mutex>
#include <utility>

#include "vk-runtime/loader.h"

namespace mole {

CommandPool CommandPool::create(const Device& device, uint32_t family, bool resettable) {
  CommandPool p;
  p.device_ = device.handle();
  p.family_ = family;
  p.resettable_ = resettable;
  VkCommandPoolCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  ci.flags = resettable ? VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT : 0;
  ci.queueFamilyIndex = family;
  VK_CHECK(vk().vkCreateCommandPool(p.device_, &ci, nullptr, &p.pool_));
  return p;
}

CommandPool::CommandPool(CommandPool&& other) noexcept
    : device_(other.device_),
      pool_(std::exchange(other.pool_, VK_NULL_HANDLE)),
      family_(other.family_),
      resettable_(other.resettable_) {}

CommandPool& CommandPool::operator=(CommandPool&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = other.device_;
    pool_ = std::exchange(other.pool_, VK_NULL_HANDLE);
    family_ = other.family_;
    resettable_ = other.resettable_;
  }
  return *this;
}

CommandPool::~CommandPool() {
  destroy();
}

void CommandPool::destroy() {
  if (pool_ != VK_NULL_HANDLE) vk().vkDestroyCommandPool(device_, pool_, nullptr);
  pool_ = VK_NULL_HANDLE;
}

void CommandPool::reset() {
  VK_CHECK(vk().vkResetCommandPool(device_, pool_, 0));
}

CommandBuffer CommandBuffer::create(const Device& device, const CommandPool& pool) {
  CommandBuffer c;
  VkCommandBufferAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
  ai.commandPool = pool.handle();
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  VK_CHECK(vk().vkAllocateCommandBuffers(device.handle(), &ai, &c.cb_));
  c.device_ = device.handle();
  c.pool_ = pool.handle();
  return c;
}

CommandBuffer::CommandBuffer(CommandBuffer&& other) noexcept
    : device_(std::exchange(other.device_, VK_NULL_HANDLE)),
      pool_(std::exchange(other.pool_, VK_NULL_HANDLE)),
      cb_(std::exchange(other.cb_, VK_NULL_HANDLE)) {}

CommandBuffer& CommandBuffer::operator=(CommandBuffer&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = std::exchange(other.device_, VK_NULL_HANDLE);
    pool_ = std::exchange(other.pool_, VK_NULL_HANDLE);
    cb_ = std::exchange(other.cb_, VK_NULL_HANDLE);
  }
  return *this;
}

CommandBuffer::~CommandBuffer() {
  destroy();
}

void CommandBuffer::destroy() {
  if (cb_) vk().vkFreeCommandBuffers(device_, pool_, 1, &cb_);
  cb_ = VK_NULL_HANDLE;
}

void CommandBuffer::begin(bool one_time) {
  VkCommandBufferBeginInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  bi.flags = one_time ? VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT : 0;
  VK_CHECK(vk().vkBeginCommandBuffer(cb_, &bi));
}

void CommandBuffer::end() {
  VK_CHECK(vk().vkEndCommandBuffer(cb_));
}

void CommandBuffer::reset() {
  VK_CHECK(vk().vkResetCommandBuffer(cb_, 0));
}

void memory_barrier(VkCommandBuffer cb, VkPipelineStageFlags src_stage, VkAccessFlags src_access,
                    VkPipelineStageFlags dst_stage, VkAccessFlags dst_access) {
  VkMemoryBarrier mb{};
  mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
  mb.srcAccessMask = src_access;
  mb.dstAccessMask = dst_access;
  vk().vkCmdPipelineBarrier(cb, src_stage, dst_stage, 0, 1, &mb, 0, nullptr, 0, nullptr);
}

void CommandBuffer::barrier(VkPipelineStageFlags src_stage, VkAccessFlags src_access, VkPipelineStageFlags dst_stage,
                            VkAccessFlags dst_access) {
  memory_barrier(cb_, src_stage, src_access, dst_stage, dst_access);
}

void submit(const Device& device, QueueRole role, VkCommandBuffer cb, const std::vector<SemaphorePoint>& waits,
            const std::vector<SemaphorePoint>& signals, VkFence fence) {
  std::vector<VkSemaphore> wait_sems, signal_sems;
  std::vector<uint64_t> wait_values, signal_values;
  std::vector<VkPipelineStageFlags> wait_stages;
  for (const auto& w : waits) {
    wait_sems.push_back(w.semaphore);
    wait_values.push_back(w.value);
    wait_stages.push_back(w.stage);
  }
  for (const auto& s : signals) {
    signal_sems.push_back(s.semaphore);
    signal_values.push_back(s.value);
  }
  VkTimelineSemaphoreSubmitInfo ti{};
  ti.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
  ti.waitSemaphoreValueCount = uint32_t(wait_values.size());
  ti.pWaitSemaphoreValues = wait_values.data();
  ti.signalSemaphoreValueCount = uint32_t(signal_values.size());
  ti.pSignalSemaphoreValues = signal_values.data();
  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.pNext = &ti;
  si.waitSemaphoreCount = uint32_t(wait_sems.size());
  si.pWaitSemaphores = wait_sems.data();
  si.pWaitDstStageMask = wait_stages.data();
  si.commandBufferCount = cb != VK_NULL_HANDLE ? 1 : 0;
  si.pCommandBuffers = &cb;
  si.signalSemaphoreCount = uint32_t(signal_sems.size());
  si.pSignalSemaphores = signal_sems.data();
  std::lock_guard<std::mutex> lock(device.queue_mutex(role));
  VK_CHECK(vk().vkQueueSubmit(device.queue(role), 1, &si, fence));
}

}  // namespace mole
