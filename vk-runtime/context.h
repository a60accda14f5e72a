// Everything the Vulkan backend needs opened once per process: the instance, the chosen device and the pipeline
// cache; and the probe `mole devices` and `--backend auto` use to ask whether Vulkan is usable here.
//
// Environment variables read by vk-runtime/:
//   MOLE_VK_DEVICE=N           the device index when --device is not given (`mole devices` lists them)
//   MOLE_VK_VALIDATION=1|sync  the Khronos validation layer (sync: plus synchronization validation)
//   MOLE_VK_PIPELINE_CACHE=P   the pipeline cache file ("off": memory only); default ~/.cache/mole/pipelines-*.bin
//   MOLE_VK_ALLOW_CPU=1        --backend auto may pick a CPU Vulkan device (lavapipe)
//   MOLE_VK_LUT_READ=R         copy|direct|auto: how router_lut reads the table's rows (lut_stream.h)
//   MOLE_VK_LUT_GATHER=G       thread|inline|auto: where --lut disk gathers rows (lut_stream.h)
//   MOLE_VK_SUBGROUPS=0        matmul without the subgroup-arithmetic variants (vk_backend.cpp)
//   MOLE_VK_TILED_MIN_ROWS=N   steps of at least N rows use the tiled matmul (default 32)
//   MOLE_VK_LOADER=FILE        dlopen this instead of libvulkan.so.1 (tests of the no-loader path)
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

  // `device_index` -1: MOLE_VK_DEVICE, else the best device (see pick_device()). Validation also comes from
  // MOLE_VK_VALIDATION (1, or sync for synchronization validation too). The pipeline cache lives at
  // PipelineCache::default_path(), or at $MOLE_VK_PIPELINE_CACHE when set ("" or "off": memory only).
  // Throws mole::Error saying what is missing and what to do.
  static std::unique_ptr<VulkanContext> create(int device_index, bool validation, bool sync_validation = false);

  ~VulkanContext();
};

// One line for `mole devices` and --backend auto. Usable: "NVIDIA H100 80GB HBM3, driver 535.104.05, Vulkan 1.3" or
// "lavapipe (llvmpipe (LLVM 15.0.6, 256 bits)), driver Mesa 22.3.6 (LLVM 15.0.6), Vulkan 1.3, a CPU implementation",
// *ok = true. Otherwise the reason and what to do,
// *ok = false. `cpu_device` (when given) says whether the device that would be used is a CPU implementation:
// --backend auto should not prefer it to mole's own CPU backend unless MOLE_VK_ALLOW_CPU=1. Never throws.
std::string vulkan_availability(bool* ok, bool* cpu_device = nullptr);

// Whether MOLE_VK_ALLOW_CPU=1 lets --backend auto use a CPU Vulkan device.
bool vulkan_cpu_device_allowed();

}  // namespace mole
