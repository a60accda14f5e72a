// FeatureChain: which feature structs a device gets, by API version and extensions (see features.h).
#include "vk-runtime/features.h"

namespace mole {

bool has_extension(const std::vector<std::string>& extensions, const char* name) {
  for (const auto& e : extensions) {
    if (e == name) return true;
  }
  return false;
}

FeatureChain::FeatureChain(uint32_t api_version, const std::vector<std::string>& exts) {
  base.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  v11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
  v12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  storage16.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES;
  storage8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES;
  f16i8.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES;
  timeline.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES;
  bda.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_BUFFER_DEVICE_ADDRESS_FEATURES;
  sync2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SYNCHRONIZATION_2_FEATURES_KHR;
  size_control.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES_EXT;
  void** next = &base.pNext;
  auto link = [&next](auto& s) {
    *next = &s;
    next = &s.pNext;
  };
  auto use_extension = [&](const char* name) {
    if (!has_extension(exts, name)) return false;
    extensions.push_back(name);
    return true;
  };
  if (api_version >= VK_API_VERSION_1_2) {
    link(v11);
    link(v12);
    storage_buffer16 = &v11.storageBuffer16BitAccess;
    shader_float16 = &v12.shaderFloat16;
    shader_int8 = &v12.shaderInt8;
    storage_buffer8 = &v12.storageBuffer8BitAccess;
    timeline_semaphore = &v12.timelineSemaphore;
    buffer_device_address = &v12.bufferDeviceAddress;
  } else if (api_version >= VK_API_VERSION_1_1) {
    link(storage16);
    storage_buffer16 = &storage16.storageBuffer16BitAccess;
    if (use_extension(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME)) {
      link(f16i8);
      shader_float16 = &f16i8.shaderFloat16;
      shader_int8 = &f16i8.shaderInt8;
    }
    if (use_extension(VK_KHR_8BIT_STORAGE_EXTENSION_NAME)) {
      link(storage8);
      storage_buffer8 = &storage8.storageBuffer8BitAccess;
    }
    if (use_extension(VK_KHR_TIMELINE_SEMAPHORE_EXTENSION_NAME)) {
      link(timeline);
      timeline_semaphore = &timeline.timelineSemaphore;
    }
    if (use_extension(VK_KHR_BUFFER_DEVICE_ADDRESS_EXTENSION_NAME)) {
      link(bda);
      buffer_device_address = &bda.bufferDeviceAddress;
    }
  }
  // Used through the extension on 1.3 devices too: mole asks for Vulkan 1.2, where synchronization2 is not core.
  if (api_version >= VK_API_VERSION_1_1 && use_extension(VK_KHR_SYNCHRONIZATION_2_EXTENSION_NAME)) {
    link(sync2);
    synchronization2 = &sync2.synchronization2;
  }
  // The same (promoted in 1.3): full subgroups for the _subgroup shaders (vk_backend.cpp, why_no_subgroups()).
  if (api_version >= VK_API_VERSION_1_1 && use_extension(VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME)) {
    link(size_control);
    compute_full_subgroups = &size_control.computeFullSubgroups;
  }
}

}  // namespace mole
