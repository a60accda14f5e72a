// The logical Vulkan device: its compute and transfer queues, the features mole turns on, and memory-type choice.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "vk-runtime/device_info.h"

namespace mole {

class Instance;

// Which of the device's two queue roles a submission goes to.
enum class QueueRole { Compute, Transfer };

// Owns the VkDevice and destroys it (after vkDeviceWaitIdle). Every buffer, pool, pipeline and other object made
// from it must be destroyed first; the Instance must outlive it. Its queues belong to it and need no destruction.
// Creating it loads the device-level entries of vk(); mole has one live Device per process (see loader.h).
class Device {
 public:
  enum class TransferQueueKind {
    Dedicated,    // a transfer-only family (a DMA engine): copies run beside compute
    SecondQueue,  // a second queue of the compute family
    SameQueue,    // the compute queue itself: transfer_queue() == compute_queue(), one queue for both roles
  };

  // The features mole turned on (a subset of what DeviceInfo says the device offers).
  struct EnabledFeatures {
    bool fp16_arith = false, storage16 = false, int8 = false, int64 = false;
    bool timeline_semaphore = false;  // always true: creation fails without it
    bool sync2 = false, buffer_device_address = false, external_memory_host = false;
    bool compute_full_subgroups = false;  // pipelines may require full subgroups
  };

  // Throws mole::Error naming the device when it lacks Vulkan 1.1, timeline semaphores or a compute queue.
  static Device create(const Instance& instance, const DeviceInfo& info);

  Device(Device&& other) noexcept;
  Device& operator=(Device&& other) noexcept;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device();

  VkDevice handle() const { return device_; }
  VkPhysicalDevice physical() const { return info_.physical; }
  const DeviceInfo& info() const { return info_; }
  const EnabledFeatures& enabled() const { return enabled_; }

  // Compute: the first family with COMPUTE. Transfer: a family with TRANSFER but neither COMPUTE nor GRAPHICS if
  // there is one, else a second queue of the compute family, else the compute queue itself (SameQueue).
  // Vulkan queues are not thread-safe: submit through submit() (command.h), which locks the queue's mutex
  // (one mutex for both roles when SameQueue), or hold queue_mutex() around any other use of a queue.
  VkQueue compute_queue() const { return compute_queue_; }
  uint32_t compute_family() const { return compute_family_; }
  VkQueue transfer_queue() const { return transfer_queue_; }
  uint32_t transfer_family() const { return transfer_family_; }
  TransferQueueKind transfer_kind() const { return transfer_kind_; }
  VkQueue queue(QueueRole role) const { return role == QueueRole::Compute ? compute_queue_ : transfer_queue_; }
  std::mutex& queue_mutex(QueueRole role) const;

  // The families that share buffers (compute, then transfer when it differs): buffers are created CONCURRENT
  // across them, so a transfer-queue copy needs no queue-family ownership transfer.
  std::vector<uint32_t> buffer_families() const;

  // The memory type for `type_bits` (from VkMemoryRequirements) that has every `required` flag and the most
  // `preferred` ones, ties to the lower index (the driver's order); kNoMemoryType if none has `required`.
  static constexpr uint32_t kNoMemoryType = UINT32_MAX;
  uint32_t find_memory_type(uint32_t type_bits, VkMemoryPropertyFlags required, VkMemoryPropertyFlags preferred) const;
  // All types with `required`, best first (the order find_memory_type() ranks by): allocation falls back along it.
  std::vector<uint32_t> memory_type_candidates(uint32_t type_bits, VkMemoryPropertyFlags required,
                                               VkMemoryPropertyFlags preferred) const;

  // Bytes mole's Buffers hold in each memory heap now (for out-of-memory messages and reports). Buffers keep the
  // counter of their heap (stable across moves of the Device) and subtract their size when destroyed.
  uint64_t heap_allocated(uint32_t heap) const;
  std::atomic<uint64_t>* heap_counter(uint32_t heap) const;

  // Waits until the device is idle (vkDeviceWaitIdle). A backend calls it before destroying objects in use.
  void wait_idle() const;

 private:
  Device() = default;
  void destroy();

  VkDevice device_ = VK_NULL_HANDLE;
  DeviceInfo info_;
  EnabledFeatures enabled_;
  VkQueue compute_queue_ = VK_NULL_HANDLE, transfer_queue_ = VK_NULL_HANDLE;
  uint32_t compute_family_ = 0, transfer_family_ = 0;
  TransferQueueKind transfer_kind_ = TransferQueueKind::SameQueue;
  std::unique_ptr<std::mutex[]> queue_mutexes_;              // [0] compute, [1] transfer; stable across moves
  std::unique_ptr<std::atomic<uint64_t>[]> heap_allocated_;  // one per heap
};

const char* transfer_kind_name(Device::TransferQueueKind kind);  // "dedicated", "second queue", "same queue"

}  // namespace mole
