// The Vulkan instance, optionally with the Khronos validation layer (and its synchronization validation) and a
// debug messenger that counts and keeps every warning and error the layer reports.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vk-runtime/check.h"

namespace mole {

// Owns the VkInstance and its debug messenger and destroys both. Every Device, and every object made from one, must
// be destroyed before it. Creating it loads the Vulkan loader and the instance-level entries of vk().
class Instance {
 public:
  // Requests Vulkan 1.2 (a 1.3 driver is used as 1.2; 1.3 is never required). Validation is also turned on by the
  // environment: MOLE_VK_VALIDATION=1 (validation) or MOLE_VK_VALIDATION=sync (plus synchronization validation).
  // Throws mole::Error: no loader, no driver, or validation asked for without the layer installed.
  static Instance create(bool validation, bool sync_validation);

  Instance(Instance&& other) noexcept;
  Instance& operator=(Instance&& other) noexcept;
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;
  ~Instance();

  VkInstance handle() const { return instance_; }
  std::vector<VkPhysicalDevice> physical_devices() const;
  bool validation_enabled() const { return messenger_ != VK_NULL_HANDLE; }

  // Warnings and errors reported by the validation layer (or the loader) so far; 0 without validation. Each one is
  // also printed to stderr as it arrives (see echo_validation_messages()). Thread-safe: drivers may report from their
  // own threads.
  uint64_t validation_messages() const;
  // Their text, oldest first (the first 1000 only; the count above keeps counting).
  std::vector<std::string> validation_log() const;
  // Whether each message is also printed to stderr (default true); tests that provoke messages turn it off.
  void echo_validation_messages(bool on);

  struct MessageLog;  // the messenger's count and texts; defined in instance.cpp

 private:
  Instance() = default;
  void destroy();

  VkInstance instance_ = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger_ = nullptr;  // this instance's own (see loader.h)
  std::unique_ptr<MessageLog> log_;  // heap-allocated: the messenger keeps a pointer to it across moves
};

}  // namespace mole
