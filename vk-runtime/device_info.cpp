// Physical-device queries, device choice and the `mole devices` description (see device_info.h).
#include "vk-runtime/device_info.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "model/error.h"
#include "vk-runtime/features.h"
#include "vk-runtime/instance.h"
#include "vk-runtime/loader.h"

namespace mole {
namespace {

std::vector<std::string> device_extensions(VkPhysicalDevice pd) {
  uint32_t n = 0;
  VK_CHECK(vk().vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr));
  std::vector<VkExtensionProperties> props(n);
  VkResult r = vk().vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, props.data());
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) VK_CHECK(r);
  std::vector<std::string> names;
  for (uint32_t i = 0; i < n && i < props.size(); ++i) names.emplace_back(props[i].extensionName);
  return names;
}

void query_properties(DeviceInfo& d) {
  bool core12 = d.api_version >= VK_API_VERSION_1_2;
  VkPhysicalDeviceProperties2 props{};
  props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
  VkPhysicalDeviceSubgroupProperties subgroup{};
  subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES;
  VkPhysicalDeviceMaintenance3Properties maint3{};
  maint3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES;
  VkPhysicalDeviceIDProperties id{};
  id.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES;
  VkPhysicalDeviceDriverProperties driver{};
  driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
  VkPhysicalDeviceExternalMemoryHostPropertiesEXT host{};
  host.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT;
  VkPhysicalDeviceSubgroupSizeControlPropertiesEXT size_control{};
  size_control.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES_EXT;
  props.pNext = &subgroup;
  subgroup.pNext = &maint3;
  maint3.pNext = &id;
  void** next = &id.pNext;
  bool has_driver = core12 || has_extension(d.extensions, VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME);
  if (has_driver) {
    *next = &driver;
    next = &driver.pNext;
  }
  if (has_extension(d.extensions, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME)) {
    *next = &size_control;
    next = &size_control.pNext;
  }
  if (d.external_memory_host) *next = &host;
  vk().vkGetPhysicalDeviceProperties2(d.physical, &props);

  if (has_driver) {
    d.driver_name = driver.driverName;
    d.driver_info = driver.driverInfo;
    d.driver_id = driver.driverID;
  }
  d.subgroup_size = subgroup.subgroupSize;
  d.subgroup_ops = subgroup.supportedOperations;
  d.max_subgroup_size = size_control.maxSubgroupSize;
  d.max_memory_allocation_size = maint3.maxMemoryAllocationSize;
  std::memcpy(d.uuid, id.deviceUUID, VK_UUID_SIZE);
  d.min_imported_host_pointer_alignment = d.external_memory_host ? host.minImportedHostPointerAlignment : 0;
}

void query_features(DeviceInfo& d) {
  FeatureChain chain(d.api_version, d.extensions);
  vk().vkGetPhysicalDeviceFeatures2(d.physical, &chain.base);
  d.fp16_arith = FeatureChain::get(chain.shader_float16);
  d.storage16 = FeatureChain::get(chain.storage_buffer16);
  d.int8 = FeatureChain::get(chain.shader_int8) && FeatureChain::get(chain.storage_buffer8);
  d.int64 = FeatureChain::get(chain.shader_int64);
  d.timeline_semaphore = FeatureChain::get(chain.timeline_semaphore);
  d.sync2 = FeatureChain::get(chain.synchronization2);
  d.buffer_device_address = FeatureChain::get(chain.buffer_device_address);
  d.compute_full_subgroups = FeatureChain::get(chain.compute_full_subgroups);
}

DeviceInfo query_device(VkPhysicalDevice pd, int index) {
  DeviceInfo d;
  d.index = index;
  d.physical = pd;
  VkPhysicalDeviceProperties p;
  vk().vkGetPhysicalDeviceProperties(pd, &p);
  d.name = p.deviceName;
  d.type = p.deviceType;
  d.api_version = p.apiVersion;
  d.vendor_id = p.vendorID;
  d.device_id = p.deviceID;
  std::memcpy(d.pipeline_cache_uuid, p.pipelineCacheUUID, VK_UUID_SIZE);
  d.max_storage_buffer_range = p.limits.maxStorageBufferRange;
  d.min_storage_buffer_offset_alignment = p.limits.minStorageBufferOffsetAlignment;
  d.max_compute_shared_memory = p.limits.maxComputeSharedMemorySize;
  d.max_workgroup_invocations = p.limits.maxComputeWorkGroupInvocations;
  d.timestamp_period = p.limits.timestampPeriod;

  VkPhysicalDeviceMemoryProperties mem;
  vk().vkGetPhysicalDeviceMemoryProperties(pd, &mem);
  d.heaps.assign(mem.memoryHeaps, mem.memoryHeaps + mem.memoryHeapCount);
  d.memory_types.assign(mem.memoryTypes, mem.memoryTypes + mem.memoryTypeCount);

  uint32_t nq = 0;
  vk().vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> families(nq);
  vk().vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, families.data());
  for (uint32_t i = 0; i < nq; ++i) {
    d.queue_families.push_back({i, families[i].queueCount, families[i].queueFlags, families[i].timestampValidBits});
  }

  if (d.api_version < VK_API_VERSION_1_1) return d;  // Properties2/Features2 need 1.1 on the device
  d.extensions = device_extensions(pd);
  d.cooperative_matrix = has_extension(d.extensions, "VK_KHR_cooperative_matrix") ||
                         has_extension(d.extensions, "VK_NV_cooperative_matrix");
  d.external_memory_host = has_extension(d.extensions, VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME);
  query_properties(d);
  query_features(d);
  return d;
}

int type_rank(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return 3;
    default:
      return 4;
  }
}

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", double(bytes) / double(1ull << 30));
  return buf;
}

std::string yes_no(bool b) {
  return b ? "yes" : "no";
}

}  // namespace

std::vector<DeviceInfo> enumerate_devices(const Instance& instance) {
  std::vector<DeviceInfo> out;
  std::vector<VkPhysicalDevice> pds = instance.physical_devices();
  for (size_t i = 0; i < pds.size(); ++i) out.push_back(query_device(pds[i], int(i)));
  return out;
}

int pick_device(const std::vector<DeviceInfo>& devices, int requested) {
  int n = int(devices.size());
  if (n == 0) {
    throw Error(
        "vulkan: no Vulkan device found: install a driver for the GPU (or mesa-vulkan-drivers for "
        "the CPU's lavapipe), or use --backend cpu");
  }
  std::string range = n == 1 ? "only device 0" : "devices 0.." + std::to_string(n - 1);
  if (requested >= 0) {
    if (requested >= n) {
      throw Error("--device " + std::to_string(requested) + ": there is no such Vulkan device (" + range +
                  "; `mole devices` lists them)");
    }
    return requested;
  }
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (type_rank(devices[i].type) < type_rank(devices[best].type)) best = i;
  }
  return best;
}

bool is_cpu_device(const DeviceInfo& info) {
  return info.type == VK_PHYSICAL_DEVICE_TYPE_CPU;
}

const char* device_type_name(VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
      return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
      return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU:
      return "CPU";
    default:
      return "other";
  }
}

const char* driver_nickname(VkDriverId id) {
  switch (id) {
    case VK_DRIVER_ID_MESA_LLVMPIPE:
      return "lavapipe";
    case VK_DRIVER_ID_GOOGLE_SWIFTSHADER:
      return "SwiftShader";
    default:
      return nullptr;
  }
}

std::string api_version_string(uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
         std::to_string(VK_API_VERSION_PATCH(v));
}

std::string uuid_hex(const uint8_t (&uuid)[VK_UUID_SIZE]) {
  char hex[2 * VK_UUID_SIZE + 1];
  for (uint32_t i = 0; i < VK_UUID_SIZE; ++i) std::snprintf(hex + 2 * i, 3, "%02x", uuid[i]);
  return hex;
}

std::string describe(const DeviceInfo& d) {
  std::string s = "device " + std::to_string(d.index) + ": " + d.name + " (" + device_type_name(d.type) + ", Vulkan " +
                  api_version_string(d.api_version) + ")\n";
  s += "  driver: " + (d.driver_name.empty() ? std::string("(unknown)") : d.driver_name);
  if (!d.driver_info.empty()) s += ", " + d.driver_info;
  s += "\n  memory heaps:";
  for (size_t i = 0; i < d.heaps.size(); ++i) {
    s += (i ? ", " : " ") + std::to_string(i) + ": " + gib(d.heaps[i].size);
    if (d.heaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) s += " DEVICE_LOCAL";
  }
  s += "\n  queue families:";
  for (const auto& q : d.queue_families) {
    s += "\n    " + std::to_string(q.index) + ": " + std::to_string(q.count) + (q.count == 1 ? " queue," : " queues,");
    if (q.flags & VK_QUEUE_GRAPHICS_BIT) s += " GRAPHICS";
    if (q.flags & VK_QUEUE_COMPUTE_BIT) s += " COMPUTE";
    if (q.flags & VK_QUEUE_TRANSFER_BIT) s += " TRANSFER";
    s += q.timestamp_valid_bits ? ", " + std::to_string(q.timestamp_valid_bits) + "-bit timestamps" : ", no timestamps";
  }
  s += "\n  features: fp16 arithmetic " + yes_no(d.fp16_arith) + ", 16-bit storage " + yes_no(d.storage16) + ", int8 " +
       yes_no(d.int8) + ", int64 " + yes_no(d.int64) + ", timeline semaphores " + yes_no(d.timeline_semaphore) +
       ",\n            synchronization2 " + yes_no(d.sync2) + ", buffer device address " +
       yes_no(d.buffer_device_address) + ", cooperative matrix " + yes_no(d.cooperative_matrix) +
       ", host memory import " + yes_no(d.external_memory_host) + "\n";
  s += "  subgroups: size " + std::to_string(d.subgroup_size) + ",";
  const std::pair<VkSubgroupFeatureFlagBits, const char*> ops[] = {
      {VK_SUBGROUP_FEATURE_BASIC_BIT, "basic"},
      {VK_SUBGROUP_FEATURE_VOTE_BIT, "vote"},
      {VK_SUBGROUP_FEATURE_ARITHMETIC_BIT, "arithmetic"},
      {VK_SUBGROUP_FEATURE_BALLOT_BIT, "ballot"},
      {VK_SUBGROUP_FEATURE_SHUFFLE_BIT, "shuffle"},
      {VK_SUBGROUP_FEATURE_SHUFFLE_RELATIVE_BIT, "shuffle-relative"},
      {VK_SUBGROUP_FEATURE_CLUSTERED_BIT, "clustered"},
      {VK_SUBGROUP_FEATURE_QUAD_BIT, "quad"}};
  for (const auto& [bit, name] : ops) {
    if (d.subgroup_ops & bit) s += std::string(" ") + name;
  }
  s += std::string("; full subgroups ") + yes_no(d.compute_full_subgroups);
  if (d.max_subgroup_size > 0) s += " (up to " + std::to_string(d.max_subgroup_size) + ")";
  s += "\n  limits: storage buffer range " + std::to_string(d.max_storage_buffer_range >> 20) + " MiB, allocation " +
       std::to_string(d.max_memory_allocation_size >> 20) + " MiB, storage offset alignment " +
       std::to_string(d.min_storage_buffer_offset_alignment) + " B, shared memory " +
       std::to_string(d.max_compute_shared_memory >> 10) + " KiB, workgroup " +
       std::to_string(d.max_workgroup_invocations) + " invocations\n";
  s += "  uuid: " + uuid_hex(d.uuid) + "\n";
  return s;
}

}  // namespace mole
