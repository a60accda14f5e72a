// Everything the Vulkan backend needs opened once per process: the instance, the chosen device and the pipeline
// cache; and the probe `mole devices` and `--backend auto` use to ask whether Vulkan is usable here.
// Choices come from the caller (BackendOptions, filled by apps/); the one environment variable read in
// vk-runtime/ is MOLE_VK_LOADER (loader.cpp: dlopen this instead of libvulkan.so.1, for tests of the no-loader
// path), besides those the Vulkan loader itself reads (VK_DRIVER_FILES, VK_LAYER_PATH, ...).
#pragma once

#include <memory>
#include <string>

#include "vk-runtime/device.h"
#include "vk-runtime/device_info.h"
#include "vk-runtime/instance.h"
#include "vk-runtime/pipeline.h"

namespace mole {

// Owns (in destruction order: cache, device, instance) the process's Vulkan objects. Its destructor saves the
// pipeline cache; everything the backend made from `device` must be destroyed before it.
struct VulkanContext {
  Instance instance;
  DeviceInfo info;
  Device device;
  PipelineCache cache;

  // `device_index` -1: the best device (see pick_device()). The pipeline cache lives at `pipeline_cache`, or when
  // that is "" at PipelineCache::default_path(cache_dir) ("off", or no cache_dir: memory only).
  // Throws mole::Error saying what is missing and what to do.
  static std::unique_ptr<VulkanContext> create(int device_index, bool validation, bool sync_validation = false,
                                               const std::string& pipeline_cache = "off",
                                               const std::string& cache_dir = "");

  ~VulkanContext();
};

// One line for `mole devices` and --backend auto. Usable: "NVIDIA H100 80GB HBM3, driver 535.104.05, Vulkan 1.3" or
// "lavapipe (llvmpipe (LLVM 15.0.6, 256 bits)), driver Mesa 22.3.6 (LLVM 15.0.6), Vulkan 1.3, a CPU implementation",
// *ok = true. Otherwise the reason and what to do,
// *ok = false. `cpu_device` (when given) says whether the device that would be used is a CPU implementation:
// --backend auto should not prefer it to mole's own CPU backend unless allowed (--allow-cpu-device). Never throws.
std::string vulkan_availability(bool* ok, bool* cpu_device = nullptr);

// Every Vulkan device described for `mole devices` (driver, heaps, queues, features), the default one marked; ""
// when there is none. Never throws.
std::string vulkan_device_details();

}  // namespace mole
