// Names of Vulkan result codes and the throw behind VK_CHECK.
#include "vk-runtime/check.h"

#include "model/error.h"

namespace mole {

const char* vk_result_name(VkResult result) {
  switch (result) {
#define MOLE_VK_RESULT(name) \
  case name:                 \
    return #name;
    MOLE_VK_RESULT(VK_SUCCESS)
    MOLE_VK_RESULT(VK_NOT_READY)
    MOLE_VK_RESULT(VK_TIMEOUT)
    MOLE_VK_RESULT(VK_EVENT_SET)
    MOLE_VK_RESULT(VK_EVENT_RESET)
    MOLE_VK_RESULT(VK_INCOMPLETE)
    MOLE_VK_RESULT(VK_ERROR_OUT_OF_HOST_MEMORY)
    MOLE_VK_RESULT(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    MOLE_VK_RESULT(VK_ERROR_INITIALIZATION_FAILED)
    MOLE_VK_RESULT(VK_ERROR_DEVICE_LOST)
    MOLE_VK_RESULT(VK_ERROR_MEMORY_MAP_FAILED)
    MOLE_VK_RESULT(VK_ERROR_LAYER_NOT_PRESENT)
    MOLE_VK_RESULT(VK_ERROR_EXTENSION_NOT_PRESENT)
    MOLE_VK_RESULT(VK_ERROR_FEATURE_NOT_PRESENT)
    MOLE_VK_RESULT(VK_ERROR_INCOMPATIBLE_DRIVER)
    MOLE_VK_RESULT(VK_ERROR_TOO_MANY_OBJECTS)
    MOLE_VK_RESULT(VK_ERROR_FORMAT_NOT_SUPPORTED)
    MOLE_VK_RESULT(VK_ERROR_FRAGMENTED_POOL)
    MOLE_VK_RESULT(VK_ERROR_UNKNOWN)
    MOLE_VK_RESULT(VK_ERROR_OUT_OF_POOL_MEMORY)
    MOLE_VK_RESULT(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    MOLE_VK_RESULT(VK_ERROR_FRAGMENTATION)
    MOLE_VK_RESULT(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    MOLE_VK_RESULT(VK_PIPELINE_COMPILE_REQUIRED)
    MOLE_VK_RESULT(VK_ERROR_SURFACE_LOST_KHR)
    MOLE_VK_RESULT(VK_ERROR_NATIVE_WINDOW_IN_USE_KHR)
    MOLE_VK_RESULT(VK_SUBOPTIMAL_KHR)
    MOLE_VK_RESULT(VK_ERROR_OUT_OF_DATE_KHR)
    MOLE_VK_RESULT(VK_ERROR_VALIDATION_FAILED_EXT)
    MOLE_VK_RESULT(VK_ERROR_INVALID_SHADER_NV)
    MOLE_VK_RESULT(VK_ERROR_NOT_PERMITTED_KHR)
    MOLE_VK_RESULT(VK_THREAD_IDLE_KHR)
    MOLE_VK_RESULT(VK_THREAD_DONE_KHR)
    MOLE_VK_RESULT(VK_OPERATION_DEFERRED_KHR)
    MOLE_VK_RESULT(VK_OPERATION_NOT_DEFERRED_KHR)
#undef MOLE_VK_RESULT
    default:
      break;
  }
  // Unknown codes (newer than these headers): a per-thread buffer keeps the returned pointer valid.
  thread_local std::string unknown;
  unknown = "VkResult(" + std::to_string(int(result)) + ")";
  return unknown.c_str();
}

void vk_fail(VkResult result, const char* expr, const char* file, int line, const std::string& context) {
  std::string msg = std::string("vulkan: ") + expr + " failed: " + vk_result_name(result) + " at " + file + ":" +
                    std::to_string(line);
  if (!context.empty()) msg += " (" + context + ")";
  if (result == VK_ERROR_DEVICE_LOST) {
    msg += ": the GPU driver reset the device (a hang, a crash in a shader, or the GPU was removed)";
  }
  throw Error(msg);
}

}  // namespace mole
