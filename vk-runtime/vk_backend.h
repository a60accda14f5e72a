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

// `lut_read`: how router_lut reads the table's rows (vk-runtime/lut_stream.h), "copy", "direct" or "auto"; empty:
// $MOLE_VK_LUT_READ, else auto (direct on a CPU or integrated GPU, copy on a discrete one; --lut disk copies).
// Throws mole::Error when no device can be opened, or for a lut_read / MOLE_VK_LUT_READ not copy|direct|auto.
std::unique_ptr<Backend> make_vulkan_backend(const VulkanOptions& opt, const std::string& lut_read = "");
// How the backend reads the table's rows: "copy" or "direct" once set_lut() has run; "" before, or for another
// backend.
std::string lut_read_mode(const Backend& b);
// --lut host: "imported from the file's mapping (no copy)" or "copied..." with the reason (MOLE_VK_LUT_IMPORT in
// vk-runtime/lut_stream.h); "" for other placements and backends.
std::string lut_table_note(const Backend& b);
// Records `mode` ("copy" or "direct") as the measured choice of --lut auto for the backend's device (`mole bench`
// does, for whichever decoded faster); returns the file written, or "" (no cache directory, or not Vulkan).
std::string record_lut_read(const Backend& b, const std::string& mode);
// Validation messages seen so far by the backend's instance (tests fail on any). Null-safe for non-Vulkan backends.
uint64_t validation_message_count(const Backend& b);
std::string validation_log(const Backend& b);

}  // namespace mole::vulkan
