// The chain of Vulkan feature structs mole queries (device_info.cpp) and enables (device.cpp), written once so both
// agree. On a Vulkan 1.2+ device the features live in VkPhysicalDeviceVulkan11/12Features; on a 1.1 device in the
// structs of the extensions that were later promoted (the two forms must never be chained together).
#pragma once

#include <string>
#include <vector>

#include "vk-runtime/check.h"

namespace mole {

struct FeatureChain {
  // Links base.pNext through the structs this device can have, all zeroed. Not copyable: it points into itself.
  FeatureChain(uint32_t api_version, const std::vector<std::string>& extensions);
  FeatureChain(const FeatureChain&) = delete;
  FeatureChain& operator=(const FeatureChain&) = delete;

  // Zeroed; the constructor sets each sType.
  VkPhysicalDeviceFeatures2 base{};
  VkPhysicalDeviceVulkan11Features v11{};
  VkPhysicalDeviceVulkan12Features v12{};
  VkPhysicalDevice16BitStorageFeatures storage16{};
  VkPhysicalDevice8BitStorageFeatures storage8{};
  VkPhysicalDeviceShaderFloat16Int8Features f16i8{};
  VkPhysicalDeviceTimelineSemaphoreFeatures timeline{};
  VkPhysicalDeviceBufferDeviceAddressFeatures bda{};
  VkPhysicalDeviceSynchronization2FeaturesKHR sync2{};
  VkPhysicalDeviceSubgroupSizeControlFeaturesEXT size_control{};

  // Where each feature lives in this chain; nullptr when this device cannot have it.
  VkBool32* shader_float16 = nullptr;
  VkBool32* shader_int8 = nullptr;
  VkBool32* storage_buffer16 = nullptr;
  VkBool32* storage_buffer8 = nullptr;
  VkBool32* timeline_semaphore = nullptr;
  VkBool32* buffer_device_address = nullptr;
  VkBool32* synchronization2 = nullptr;
  VkBool32* compute_full_subgroups = nullptr;  // VK_EXT_subgroup_size_control
  VkBool32* shader_int64 = &base.features.shaderInt64;

  // The device extensions these features need enabled on this device (none of the promoted ones on 1.2+).
  std::vector<const char*> extensions;

  static bool get(const VkBool32* feature) { return feature && *feature; }
};

bool has_extension(const std::vector<std::string>& extensions, const char* name);

}  // namespace mole
