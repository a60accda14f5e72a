// Loads Vulkan at run time: mole never links libvulkan, so the binary starts on machines without a Vulkan loader
// and says why Vulkan is unavailable instead of failing to start. libvulkan.so.1 is opened with dlopen (never
// closed: the function pointers below point into it), vkGetInstanceProcAddr is looked up in it, and every other
// function comes from one X-macro list into one dispatch table, vk().
//
// mole uses one Vulkan instance and one device per process. Instance::create() fills the table's instance-level
// entries and Device::create() its device-level entries; both stay valid until that object is destroyed. A second,
// short-lived Instance (vulkan_availability()'s probe while a backend runs) keeps the first one's entries: they are
// the loader's trampolines, which dispatch on the handle they are given. A second live Device is a programmer error
// (asserted): its driver's device-level entries would replace the first one's.
#pragma once

#include <string>

#include "vk-runtime/check.h"

// Every Vulkan function mole calls: X(level, name, required). `level` says which getter loads it (Global:
// vkGetInstanceProcAddr(nullptr), Instance: vkGetInstanceProcAddr(instance), Device: vkGetDeviceProcAddr(device)).
// A function promoted to core is also looked up under its KHR name (vkWaitSemaphores -> vkWaitSemaphoresKHR), so a
// Vulkan 1.1 device with the extension works too. A missing required function is an error naming it; a missing
// optional one stays nullptr (its extension or feature is off).
#define MOLE_VK_FUNCTIONS(X)                                      \
  X(Global, vkCreateInstance, true)                               \
  X(Global, vkEnumerateInstanceVersion, false)                    \
  X(Global, vkEnumerateInstanceLayerProperties, true)             \
  X(Global, vkEnumerateInstanceExtensionProperties, true)         \
  X(Instance, vkDestroyInstance, true)                            \
  X(Instance, vkEnumeratePhysicalDevices, true)                   \
  X(Instance, vkGetPhysicalDeviceProperties, true)                \
  X(Instance, vkGetPhysicalDeviceProperties2, true)               \
  X(Instance, vkGetPhysicalDeviceFeatures2, true)                 \
  X(Instance, vkGetPhysicalDeviceMemoryProperties, true)          \
  X(Instance, vkGetPhysicalDeviceQueueFamilyProperties, true)     \
  X(Instance, vkEnumerateDeviceExtensionProperties, true)         \
  X(Instance, vkCreateDevice, true)                               \
  X(Instance, vkGetDeviceProcAddr, true)                          \
  X(Instance, vkGetPhysicalDeviceExternalBufferProperties, false) \
  X(Instance, vkCreateDebugUtilsMessengerEXT, false)              \
  X(Instance, vkDestroyDebugUtilsMessengerEXT, false)             \
  X(Instance, vkSetDebugUtilsObjectNameEXT, false)                \
  X(Device, vkDestroyDevice, true)                                \
  X(Device, vkGetDeviceQueue, true)                               \
  X(Device, vkDeviceWaitIdle, true)                               \
  X(Device, vkQueueSubmit, true)                                  \
  X(Device, vkQueueWaitIdle, true)                                \
  X(Device, vkCreateBuffer, true)                                 \
  X(Device, vkDestroyBuffer, true)                                \
  X(Device, vkGetBufferMemoryRequirements, true)                  \
  X(Device, vkAllocateMemory, true)                               \
  X(Device, vkFreeMemory, true)                                   \
  X(Device, vkBindBufferMemory, true)                             \
  X(Device, vkMapMemory, true)                                    \
  X(Device, vkUnmapMemory, true)                                  \
  X(Device, vkGetBufferDeviceAddress, false)                      \
  X(Device, vkGetMemoryHostPointerPropertiesEXT, false)           \
  X(Device, vkCreateCommandPool, true)                            \
  X(Device, vkDestroyCommandPool, true)                           \
  X(Device, vkResetCommandPool, true)                             \
  X(Device, vkAllocateCommandBuffers, true)                       \
  X(Device, vkFreeCommandBuffers, true)                           \
  X(Device, vkResetCommandBuffer, true)                           \
  X(Device, vkBeginCommandBuffer, true)                           \
  X(Device, vkEndCommandBuffer, true)                             \
  X(Device, vkCmdBindPipeline, true)                              \
  X(Device, vkCmdBindDescriptorSets, true)                        \
  X(Device, vkCmdPushConstants, true)                             \
  X(Device, vkCmdDispatch, true)                                  \
  X(Device, vkCmdCopyBuffer, true)                                \
  X(Device, vkCmdFillBuffer, true)                                \
  X(Device, vkCmdUpdateBuffer, true)                              \
  X(Device, vkCmdPipelineBarrier, true)                           \
  X(Device, vkCmdPipelineBarrier2, false)                         \
  X(Device, vkQueueSubmit2, false)                                \
  X(Device, vkCmdResetQueryPool, true)                            \
  X(Device, vkCmdWriteTimestamp, true)                            \
  X(Device, vkCreateQueryPool, true)                              \
  X(Device, vkDestroyQueryPool, true)                             \
  X(Device, vkGetQueryPoolResults, true)                          \
  X(Device, vkCreateFence, true)                                  \
  X(Device, vkDestroyFence, true)                                 \
  X(Device, vkWaitForFences, true)                                \
  X(Device, vkResetFences, true)                                  \
  X(Device, vkGetFenceStatus, true)                               \
  X(Device, vkCreateSemaphore, true)                              \
  X(Device, vkDestroySemaphore, true)                             \
  X(Device, vkGetSemaphoreCounterValue, true)                     \
  X(Device, vkWaitSemaphores, true)                               \
  X(Device, vkSignalSemaphore, true)                              \
  X(Device, vkCreateDescriptorSetLayout, true)                    \
  X(Device, vkDestroyDescriptorSetLayout, true)                   \
  X(Device, vkCreateDescriptorPool, true)                         \
  X(Device, vkDestroyDescriptorPool, true)                        \
  X(Device, vkResetDescriptorPool, true)                          \
  X(Device, vkAllocateDescriptorSets, true)                       \
  X(Device, vkUpdateDescriptorSets, true)                         \
  X(Device, vkCreateShaderModule, true)                           \
  X(Device, vkDestroyShaderModule, true)                          \
  X(Device, vkCreatePipelineLayout, true)                         \
  X(Device, vkDestroyPipelineLayout, true)                        \
  X(Device, vkCreatePipelineCache, true)                          \
  X(Device, vkDestroyPipelineCache, true)                         \
  X(Device, vkGetPipelineCacheData, true)                         \
  X(Device, vkCreateComputePipelines, true)                       \
  X(Device, vkDestroyPipeline, true)

namespace mole {

// The dispatch table: one PFN_ pointer per function of MOLE_VK_FUNCTIONS, nullptr until loaded.
struct VkFns {
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
#define MOLE_VK_FIELD(level, name, required) PFN_##name name = nullptr;
  MOLE_VK_FUNCTIONS(MOLE_VK_FIELD)
#undef MOLE_VK_FIELD
};

// The process's table (see the file comment for who fills it and when).
const VkFns& vk();

// Whether libvulkan.so.1 (or $MOLE_VK_LOADER, a file name for dlopen) can be opened and exports
// vkGetInstanceProcAddr; if not, `why` (when given) gets a sentence saying what to install. Never throws.
// The answer is computed once per process.
bool vulkan_loader_available(std::string* why);

// Used by Instance and Device only. Each load throws mole::Error: no loader, or a required function missing.
// load_instance_functions() fills the instance-level entries for the first live instance only (a later one reuses
// them: they are loader trampolines); without VK_EXT_debug_utils its entries stay nullptr. Each Instance calls
// release_instance_functions() when destroyed, each Device release_device_functions().
void load_global_functions();
void load_instance_functions(VkInstance instance, bool debug_utils);
void release_instance_functions();
void load_device_functions(VkDevice device);
void release_device_functions();
// Keeps every shared object mapped now (the drivers and layers vkCreateInstance just opened) loaded for the life
// of the process. The loader unloads its drivers when the last instance goes; some cannot be loaded again:
// NVIDIA's libnvidia-tls uses static TLS, which glibc never gives back, so after about 28 reloads it fails with
// "cannot allocate memory in static TLS block" and Vulkan finds no driver. Instance::create() calls it.
void pin_loaded_libraries();

// Gives a Vulkan object a name that validation messages and debuggers show; does nothing without VK_EXT_debug_utils
// (only enabled with validation).
void set_object_name(VkDevice device, VkObjectType type, uint64_t handle, const char* name);

}  // namespace mole
