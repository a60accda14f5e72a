// What mole knows about each Vulkan physical device: name, driver, memory heaps, queue families, the features and
// limits the backend's shaders and buffers depend on. Feeds device choice, `mole devices` and Device::create().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vk-runtime/check.h"

namespace mole {

class Instance;

struct DeviceInfo {
  int index = 0;                               // position in vkEnumeratePhysicalDevices, what --device names
  VkPhysicalDevice physical = VK_NULL_HANDLE;  // valid while the Instance that enumerated it lives
  std::string name;                            // "NVIDIA GeForce RTX 4090", "llvmpipe (LLVM 15.0.6, 256 bits)"
  std::string driver_name;  // "NVIDIA", "llvmpipe"; empty before Vulkan 1.2 without VK_KHR_driver_properties
  std::string driver_info;  // "535.54.03", "Mesa 22.3.6 (LLVM 15.0.6)"
  VkDriverId driver_id = VkDriverId(0);  // VK_DRIVER_ID_MESA_LLVMPIPE, ...; 0 when unknown
  VkPhysicalDeviceType type = VK_PHYSICAL_DEVICE_TYPE_OTHER;
  uint32_t api_version = 0;  // the device's own; mole uses min(this, 1.2)
  uint32_t vendor_id = 0, device_id = 0;
  std::vector<VkMemoryHeap> heaps;
  std::vector<VkMemoryType> memory_types;
  struct QueueFamily {
    uint32_t index = 0, count = 0;
    VkQueueFlags flags = 0;
    uint32_t timestamp_valid_bits = 0;  // 0: no timestamps on this family
  };
  std::vector<QueueFamily> queue_families;
  std::vector<std::string> extensions;  // device extensions offered

  // Features (what the device offers; Device::enabled() says what was turned on).
  bool fp16_arith = false;          // shaderFloat16
  bool storage16 = false;           // storageBuffer16BitAccess
  bool int8 = false;                // shaderInt8 and storageBuffer8BitAccess
  bool int64 = false;               // shaderInt64
  bool timeline_semaphore = false;  // required by mole
  bool sync2 = false;               // VK_KHR_synchronization2
  bool buffer_device_address = false;
  bool compute_full_subgroups = false;  // VK_EXT_subgroup_size_control's computeFullSubgroups
  bool cooperative_matrix = false;      // VK_KHR_cooperative_matrix or VK_NV_cooperative_matrix offered (not enabled)
  bool external_memory_host = false;    // VK_EXT_external_memory_host: import host memory (an mmap'd table)

  uint32_t subgroup_size = 0;
  uint32_t max_subgroup_size = 0;  // VK_EXT_subgroup_size_control's maxSubgroupSize; 0 without it
  VkSubgroupFeatureFlags subgroup_ops = 0;
  uint64_t max_storage_buffer_range = 0;    // bytes one storage-buffer binding can see
  uint64_t max_memory_allocation_size = 0;  // bytes one VkDeviceMemory can hold
  uint64_t min_storage_buffer_offset_alignment = 0;
  uint64_t min_imported_host_pointer_alignment = 0;  // external_memory_host only
  uint32_t max_compute_shared_memory = 0;            // bytes
  uint32_t max_workgroup_invocations = 0;
  float timestamp_period = 0;                      // ns per timestamp tick
  uint8_t uuid[VK_UUID_SIZE] = {};                 // deviceUUID: stable across runs, names the pipeline cache file
  uint8_t pipeline_cache_uuid[VK_UUID_SIZE] = {};  // changes with the driver build
};

// Every physical device of the instance, in Vulkan's order. A device older than Vulkan 1.1 is listed with its
// name, type and heaps only.
std::vector<DeviceInfo> enumerate_devices(const Instance& instance);

// The device to use: `requested` >= 0 picks that index; else the best type (discrete >
// integrated > virtual > CPU > other), ties to the lower index. Throws mole::Error naming the flag or variable when
// the index is out of range or malformed, or when there is no device at all.
int pick_device(const std::vector<DeviceInfo>& devices, int requested);

// True for a CPU implementation (lavapipe, SwiftShader): usable, but slower than mole's own CPU backend.
bool is_cpu_device(const DeviceInfo& info);

const char* device_type_name(VkPhysicalDeviceType type);  // "discrete GPU", "CPU", ...
// The name users know a CPU driver by ("lavapipe", "SwiftShader"); nullptr for others, whose device name says it.
const char* driver_nickname(VkDriverId id);
std::string api_version_string(uint32_t version);           // "1.3.230"
std::string uuid_hex(const uint8_t (&uuid)[VK_UUID_SIZE]);  // 32 lowercase hex digits

// Several lines (driver, heaps, queue families, features, limits) for `mole devices`; ends with a newline.
std::string describe(const DeviceInfo& info);

}  // namespace mole
