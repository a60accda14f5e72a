// VK_CHECK and Vulkan result names: the one error mechanism for Vulkan calls inside vk-runtime/ and the Vulkan
// backend. A failed call throws mole::Error "vulkan: <expr> failed: VK_ERROR_NAME at file:line".
// Every vk-runtime/ header includes Vulkan through this one, with VK_NO_PROTOTYPES: mole never links libvulkan and
// calls Vulkan only through the dispatch table of loader.h.
#pragma once

#ifndef VK_NO_PROTOTYPES
#define VK_NO_PROTOTYPES
#endif
#include <vulkan/vulkan.h>

#include <string>

namespace mole {

// "VK_ERROR_OUT_OF_DEVICE_MEMORY", or "VkResult(-1000)" for a code this list does not know.
const char* vk_result_name(VkResult result);

// Throws mole::Error "vulkan: <expr> failed: <name> at <file>:<line>" (plus ": <context>" when given).
[[noreturn]] void vk_fail(VkResult result, const char* expr, const char* file, int line, const std::string& context);

}  // namespace mole

// Anything but VK_SUCCESS throws: the few calls with other success codes (VK_TIMEOUT from a wait, VK_NOT_READY from
// a query, VK_INCOMPLETE from an enumeration) are handled where they are made, never through this macro.
#define VK_CHECK(expr)                                                             \
  do {                                                                             \
    VkResult vk_check_result_ = (expr);                                            \
    if (vk_check_result_ != VK_SUCCESS) {                                          \
      ::mole::vk_fail(vk_check_result_, #expr, __FILE__, __LINE__, std::string()); \
    }                                                                              \
  } while (0)

// VK_CHECK with a note saying what was being made (a pipeline's name, a buffer's purpose).
#define VK_CHECK_CTX(expr, context)                                            \
  do {                                                                         \
    VkResult vk_check_result_ = (expr);                                        \
    if (vk_check_result_ != VK_SUCCESS) {                                      \
      ::mole::vk_fail(vk_check_result_, #expr, __FILE__, __LINE__, (context)); \
    }                                                                          \
  } while (0)
