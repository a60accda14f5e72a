// The Vulkan backend: runs the engine's StepGraph with the GLSL compute shaders of shaders/ on any Vulkan device.
#pragma once

#include <memory>
#include <string>

#include "model/backend.h"

namespace mole::vulkan {

struct VulkanOptions {
  int device_index = -1;    // -1: $MOLE_VK_DEVICE, else the best device (discrete > integrated > virtual > CPU)
  bool validation = false;  // Khronos validation + synchronization validation (also $MOLE_VK_VALIDATION=sync)
};

std::unique_ptr<Backend> make_vulkan_backend(const VulkanOptions& opt);
// Validation messages seen so far by the backend's instance (tests fail on any). Null-safe for non-Vulkan backends.
uint64_t validation_message_count(const Backend& b);
std::string validation_log(const Backend& b);

}  // namespace mole::vulkan
