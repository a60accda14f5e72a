// Logical device creation: queue choice, features, memory-type ranking (see device.h).
#include "vk-runtime/device.h"

#include <algorithm>
#include <bit>
#include <utility>

#include "model/error.h"
#include "vk-runtime/features.h"
#include "vk-runtime/instance.h"
#include "vk-runtime/loader.h"

namespace mole {

Device Device::create(const Instance& /*instance: must outlive the device*/, const DeviceInfo& info) {
  const std::string who = "Vulkan device " + std::to_string(info.index) + " (" + info.name + ")";
  if (info.api_version < VK_API_VERSION_1_1) {
    throw Error(who + " supports only Vulkan " + api_version_string(info.api_version) +
                "; mole needs 1.1 or newer: update its driver, or use --backend cpu");
  }
  if (!info.timeline_semaphore) {
    throw Error(who +
                " has no timeline semaphores (Vulkan 1.2 or VK_KHR_timeline_semaphore), which mole needs: "
                "update its driver, or use --backend cpu");
  }

  Device dev;
  dev.info_ = info;
  const DeviceInfo::QueueFamily* compute = nullptr;
  const DeviceInfo::QueueFamily* dma = nullptr;
  for (const auto& q : info.queue_families) {
    if (q.count == 0) continue;
    if (!compute && (q.flags & VK_QUEUE_COMPUTE_BIT)) compute = &q;
    if (!dma && (q.flags & VK_QUEUE_TRANSFER_BIT) && !(q.flags & (VK_QUEUE_COMPUTE_BIT | VK_QUEUE_GRAPHICS_BIT))) {
      dma = &q;
    }
  }
  if (!compute) throw Error(who + " has no compute queue: use another --device, or --backend cpu");
  dev.compute_family_ = compute->index;
  if (dma) {
    dev.transfer_kind_ = TransferQueueKind::Dedicated;
    dev.transfer_family_ = dma->index;
  } else {
    dev.transfer_kind_ = compute->count > 1 ? TransferQueueKind::SecondQueue : TransferQueueKind::SameQueue;
    dev.transfer_family_ = compute->index;
  }

  const float priorities[2] = {1.0f, 1.0f};
  std::vector<VkDeviceQueueCreateInfo> queues;
  VkDeviceQueueCreateInfo qi{};
  qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
  qi.queueFamilyIndex = dev.compute_family_;
  qi.queueCount = dev.transfer_kind_ == TransferQueueKind::SecondQueue ? 2 : 1;
  qi.pQueuePriorities = priorities;
  queues.push_back(qi);
  if (dev.transfer_kind_ == TransferQueueKind::Dedicated) {
    qi.queueFamilyIndex = dev.transfer_family_;
    qi.queueCount = 1;
    queues.push_back(qi);
  }

  // Turn on, in a fresh chain, only the features mole uses, each where the device has it.
  FeatureChain chain(info.api_version, info.extensions);
  EnabledFeatures& en = dev.enabled_;
  auto enable = [](VkBool32* feature, bool offered) {
    if (feature && offered) *feature = VK_TRUE;
    return feature && offered;
  };
  en.timeline_semaphore = enable(chain.timeline_semaphore, true);
  en.fp16_arith = enable(chain.shader_float16, info.fp16_arith);
  en.storage16 = enable(chain.storage_buffer16, info.storage16);
  en.int8 = info.int8 && enable(chain.shader_int8, true) && enable(chain.storage_buffer8, true);
  en.int64 = enable(chain.shader_int64, info.int64);
  en.buffer_device_address = enable(chain.buffer_device_address, info.buffer_device_address);
  en.sync2 = enable(chain.synchronization2, info.sync2);
  en.compute_full_subgroups = enable(chain.compute_full_subgroups, info.compute_full_subgroups);
  std::vector<const char*> extensions = chain.extensions;
  if (info.external_memory_host) {
    extensions.push_back(VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);
    en.external_memory_host = true;
  }

  VkDeviceCreateInfo ci{};

  ci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  ci.pNext = &chain.base;
  ci.queueCreateInfoCount = uint32_t(queues.size());
  ci.pQueueCreateInfos = queues.data();
  ci.enabledExtensionCount = uint32_t(extensions.size());
  ci.ppEnabledExtensionNames = extensions.data();
  VK_CHECK_CTX(vk().vkCreateDevice(info.physical, &ci, nullptr, &dev.device_), "creating " + who);
  try {
    load_device_functions(dev.device_);
  } catch (...) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDevice>(vk().vkGetDeviceProcAddr(dev.device_, "vkDestroyDevice"));
    if (destroy) destroy(dev.device_, nullptr);
    dev.device_ = VK_NULL_HANDLE;
    throw;
  }

  vk().vkGetDeviceQueue(dev.device_, dev.compute_family_, 0, &dev.compute_queue_);
  uint32_t transfer_index = dev.transfer_kind_ == TransferQueueKind::SecondQueue ? 1 : 0;
  vk().vkGetDeviceQueue(dev.device_, dev.transfer_family_, transfer_index, &dev.transfer_queue_);
  dev.queue_mutexes_ = std::make_unique<std::mutex[]>(2);
  dev.heap_allocated_ = std::make_unique<std::atomic<uint64_t>[]>(std::max<size_t>(info.heaps.size(), 1));
  return dev;
}

Device::Device(Device&& other) noexcept
    : device_(std::exchange(other.device_, VK_NULL_HANDLE)),
      info_(std::move(other.info_)),
      enabled_(other.enabled_),
      compute_queue_(other.compute_queue_),
      transfer_queue_(other.transfer_queue_),
      compute_family_(other.compute_family_),
      transfer_family_(other.transfer_family_),
      transfer_kind_(other.transfer_kind_),
      queue_mutexes_(std::move(other.queue_mutexes_)),
      heap_allocated_(std::move(other.heap_allocated_)) {}

Device& Device::operator=(Device&& other) noexcept {
  if (this != &other) {
    destroy();
    device_ = std::exchange(other.device_, VK_NULL_HANDLE);
    info_ = std::move(other.info_);
    enabled_ = other.enabled_;
    compute_queue_ = other.compute_queue_;
    transfer_queue_ = other.transfer_queue_;
    compute_family_ = other.compute_family_;
    transfer_family_ = other.transfer_family_;
    transfer_kind_ = other.transfer_kind_;
    queue_mutexes_ = std::move(other.queue_mutexes_);
    heap_allocated_ = std::move(other.heap_allocated_);
  }
  return *this;
}

Device::~Device() {
  destroy();
}

void Device::destroy() {
  if (device_ == VK_NULL_HANDLE) return;
  vk().vkDeviceWaitIdle(device_);  // its result does not matter: the device goes either way
  vk().vkDestroyDevice(device_, nullptr);
  release_device_functions();
  device_ = VK_NULL_HANDLE;
}

std::mutex& Device::queue_mutex(QueueRole role) const {
  bool transfer = role == QueueRole::Transfer && transfer_kind_ != TransferQueueKind::SameQueue;
  return queue_mutexes_[transfer ? 1 : 0];
}

std::vector<uint32_t> Device::buffer_families() const {
  if (transfer_family_ == compute_family_) return {compute_family_};
  return {compute_family_, transfer_family_};
}

std::vector<uint32_t> Device::memory_type_candidates(uint32_t type_bits, VkMemoryPropertyFlags required,
                                                     VkMemoryPropertyFlags preferred) const {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < info_.memory_types.size() && i < 32; ++i) {
    VkMemoryPropertyFlags f = info_.memory_types[i].propertyFlags;
    if ((type_bits & (1u << i)) && (f & required) == required) out.push_back(i);
  }
  auto score = [&](uint32_t i) { return std::popcount(uint32_t(info_.memory_types[i].propertyFlags & preferred)); };
  std::stable_sort(out.begin(), out.end(), [&](uint32_t a, uint32_t b) { return score(a) > score(b); });
  return out;
}

uint32_t Device::find_memory_type(uint32_t type_bits, VkMemoryPropertyFlags required,
                                  VkMemoryPropertyFlags preferred) const {
  std::vector<uint32_t> c = memory_type_candidates(type_bits, required, preferred);
  return c.empty() ? kNoMemoryType : c.front();
}

uint64_t Device::heap_allocated(uint32_t heap) const {
  return heap < info_.heaps.size() ? heap_allocated_[heap].load() : 0;
}

std::atomic<uint64_t>* Device::heap_counter(uint32_t heap) const {
  return heap < info_.heaps.size() ? &heap_allocated_[heap] : nullptr;
}

void Device::wait_idle() const {
  VK_CHECK(vk().vkDeviceWaitIdle(device_));
}

const char* transfer_kind_name(Device::TransferQueueKind kind) {
  switch (kind) {
    case Device::TransferQueueKind::Dedicated:
      return "dedicated";
    case Device::TransferQueueKind::SecondQueue:
      return "second queue";
    case Device::TransferQueueKind::SameQueue:
      return "same queue";
  }
  return "?";
}

}  // namespace mole
