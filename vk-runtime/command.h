// Command pools, command buffers, and submission to a device queue with timeline-semaphore waits and signals.
#pragma once

#include <cstdint>
#include <vector>

#include "vk-runtime/check.h"
#include "vk-runtime/device.h"

namespace mole {

// Owns a VkCommandPool and destroys it, which frees every command buffer allocated from it. The Device must outlive
// it. Vulkan pools are not thread-safe: one pool per recording thread.
class CommandPool {
 public:
  // `resettable`: its command buffers can be reset one by one (CommandBuffer::reset()); else reset the whole pool.
  static CommandPool create(const Device& device, uint32_t family, bool resettable);

  CommandPool(CommandPool&& other) noexcept;
  CommandPool& operator=(CommandPool&& other) noexcept;
  CommandPool(const CommandPool&) = delete;
  CommandPool& operator=(const CommandPool&) = delete;
  ~CommandPool();

  VkCommandPool handle() const { return pool_; }
  uint32_t family() const { return family_; }
  bool resettable() const { return resettable_; }
  // Returns every command buffer of the pool to the initial state; none may be pending on a queue.
  void reset();

 private:
  CommandPool() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  uint32_t family_ = 0;
  bool resettable_ = false;
};

// A primary command buffer. Frees itself back to its pool on destruction (it must not be pending then); the pool
// and device must outlive it. Move-only, like its siblings.
class CommandBuffer {
 public:
  static CommandBuffer create(const Device& device, const CommandPool& pool);

  CommandBuffer(CommandBuffer&& other) noexcept;
  CommandBuffer& operator=(CommandBuffer&& other) noexcept;
  CommandBuffer(const CommandBuffer&) = delete;
  CommandBuffer& operator=(const CommandBuffer&) = delete;
  ~CommandBuffer();

  VkCommandBuffer handle() const { return cb_; }
  // `one_time`: it will be submitted once before the next begin() (lets the driver skip keeping it replayable).
  void begin(bool one_time);
  void end();
  // Back to the initial state (the pool must be resettable); not while pending.
  void reset();
  // A global memory barrier: everything in src_stage writing with src_access happens before, and is visible to,
  // dst_stage's dst_access (e.g. COMPUTE_SHADER/SHADER_WRITE -> COMPUTE_SHADER/SHADER_READ between two dispatches,
  // or -> HOST/HOST_READ before the host reads a result after the fence).
  void barrier(VkPipelineStageFlags src_stage, VkAccessFlags src_access, VkPipelineStageFlags dst_stage,
               VkAccessFlags dst_access);

 private:
  CommandBuffer() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cb_ = VK_NULL_HANDLE;
};

// Records a global memory barrier into any command buffer (what CommandBuffer::barrier() does for its own).
void memory_barrier(VkCommandBuffer cb, VkPipelineStageFlags src_stage, VkAccessFlags src_access,
                    VkPipelineStageFlags dst_stage, VkAccessFlags dst_access);

// A timeline-semaphore value to wait for or signal in a submission. `stage`: for waits, the stages that wait
// (e.g. COMPUTE_SHADER for a dispatch reading what a copy wrote); ignored for signals.
struct SemaphorePoint {
  VkSemaphore semaphore = VK_NULL_HANDLE;
  uint64_t value = 0;
  VkPipelineStageFlags stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
};

// Submits one command buffer to the device's compute or transfer queue, holding that queue's mutex. `fence`
// (VK_NULL_HANDLE for none) is signalled when it completes.
void submit(const Device& device, QueueRole role, VkCommandBuffer cb, const std::vector<SemaphorePoint>& waits,
            const std::vector<SemaphorePoint>& signals, VkFence fence);

}  // namespace mole
