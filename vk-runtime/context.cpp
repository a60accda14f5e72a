// VulkanContext creation and the availability probe (see context.h).
#include "vk-runtime/context.h"

#include <cstdlib>
#include <cstring>
#include <exception>

#include "model/error.h"
#include "vk-runtime/loader.h"

namespace mole {

std::unique_ptr<VulkanContext> VulkanContext::create(int device_index, bool validation, bool sync_validation,
                                                     const std::string& pipeline_cache, const std::string& cache_dir) {
  Instance instance = Instance::create(validation, sync_validation);
  std::vector<DeviceInfo> devices = enumerate_devices(instance);
  DeviceInfo info = devices[size_t(pick_device(devices, device_index))];
  Device device = Device::create(instance, info);
  const std::string path = pipeline_cache == "off"  ? ""
                           : pipeline_cache.empty() ? PipelineCache::default_path(cache_dir, info)
                                                    : pipeline_cache;
  PipelineCache cache = PipelineCache::create(device, path);
  return std::unique_ptr<VulkanContext>(
      new VulkanContext{std::move(instance), std::move(info), std::move(device), std::move(cache)});
}

VulkanContext::~VulkanContext() {
  cache.save();
}

std::string vulkan_availability(bool* ok, bool* cpu_device) {
  *ok = false;
  if (cpu_device) *cpu_device = false;
  std::string why;
  if (!vulkan_loader_available(&why)) return why;
  try {
    Instance instance = Instance::create(false, false);
    std::vector<DeviceInfo> devices = enumerate_devices(instance);
    const DeviceInfo& d = devices[size_t(pick_device(devices, -1))];
    if (d.api_version < VK_API_VERSION_1_1 || !d.timeline_semaphore) {
      return d.name + ": its driver lacks Vulkan 1.2 timeline semaphores, which mole needs: update the driver";
    }
    const char* nickname = driver_nickname(d.driver_id);
    std::string s = nickname ? std::string(nickname) + " (" + d.name + ")" : d.name;
    if (!d.driver_info.empty()) s += ", driver " + d.driver_info;
    s += ", Vulkan " + std::to_string(VK_API_VERSION_MAJOR(d.api_version)) + "." +
         std::to_string(VK_API_VERSION_MINOR(d.api_version));
    if (is_cpu_device(d)) s += ", a CPU implementation";
    *ok = true;
    if (cpu_device) *cpu_device = is_cpu_device(d);
    return s;
  } catch (const std::exception& e) {
    return e.what();
  }
}

std::string vulkan_device_details() {
  std::string out;
  bool ok = false;
  vulkan_availability(&ok);
  if (!ok) return out;
  try {
    Instance instance = Instance::create(false, false);
    auto devices = enumerate_devices(instance);
    int picked = devices.empty() ? -1 : pick_device(devices, -1);
    for (const auto& d : devices) {
      out += "\nvulkan device " + std::to_string(d.index) + (d.index == picked ? " (default)" : "") + "\n";
      out += describe(d);
    }
  } catch (const Error& e) {
    out += std::string("\nvulkan: ") + e.what() + "\n";
  }
  return out;
}

}  // namespace mole
