// dlopen of the Vulkan loader and the dispatch table vk() (see loader.h).
#include "vk-runtime/loader.h"

#include <dlfcn.h>
#include <link.h>

#include <atomic>
#include <cassert>
#include <cstdlib>
#include <vector>

#include "model/error.h"

namespace mole {
namespace {

enum class FnLevel { Global, Instance, Device };

VkFns g_fns;
std::atomic<int> g_live_instances{0};  // the table is filled by the first live Instance
std::atomic<int> g_live_devices{0};    // at most one (asserted)

struct LoaderState {
  bool ok = false;
  std::string why;
};

const LoaderState& loader_state() {
  static const LoaderState state = [] {
    LoaderState s;
    const char* env = std::getenv("MOLE_VK_LOADER");
    const char* soname = env && *env ? env : "libvulkan.so.1";
    // RTLD_LOCAL: the loader's symbols must not satisfy anything else in the process. Never dlclose'd.
    void* lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* err = dlerror();
      s.why = std::string("no Vulkan loader (") + soname +
              ") found: install libvulkan1 and a driver, e.g. mesa-vulkan-drivers (dlopen: " +
              (err ? err : "unknown error") + ")";
      return s;
    }
    g_fns.vkGetInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(lib, "vkGetInstanceProcAddr"));
    if (!g_fns.vkGetInstanceProcAddr) {
      s.why = std::string("the Vulkan loader ") + soname + " has no vkGetInstanceProcAddr: reinstall libvulkan1";
      return s;
    }
    s.ok = true;
    return s;
  }();
  return state;
}

// The function under `name`, else under its KHR alias (core functions promoted from KHR extensions).
template <class Get>
PFN_vkVoidFunction lookup(Get get, const char* name) {
  PFN_vkVoidFunction f = get(name);
  if (!f) f = get((std::string(name) + "KHR").c_str());
  return f;
}

template <class Get>
void load_level(FnLevel want, Get get, const char* what) {
  std::vector<std::string> missing;
#define MOLE_VK_LOAD(level, name, required)                        \
  if (FnLevel::level == want) {                                    \
    g_fns.name = reinterpret_cast<PFN_##name>(lookup(get, #name)); \
    if (!g_fns.name && (required)) missing.push_back(#name);       \
  }
  MOLE_VK_FUNCTIONS(MOLE_VK_LOAD)
#undef MOLE_VK_LOAD
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    throw Error(std::string("vulkan: the ") + what + " lacks functions mole needs (" + list +
                "): update the Vulkan loader (libvulkan1) and the GPU driver");
  }
}

}  // namespace

const VkFns& vk() {
  return g_fns;
}

bool vulkan_loader_available(std::string* why) {
  const LoaderState& s = loader_state();
  if (!s.ok && why) *why = s.why;
  return s.ok;
}

void load_global_functions() {
  std::string why;
  if (!vulkan_loader_available(&why)) throw Error(why);
  load_level(
      FnLevel::Global, [](const char* n) { return g_fns.vkGetInstanceProcAddr(VK_NULL_HANDLE, n); }, "Vulkan loader");
}

void pin_loaded_libraries() {
  // Every shared object mapped now: the loader's, the drivers' it opened for vkCreateInstance, the layers'.
  std::vector<std::string> names;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        if (info->dlpi_name && *info->dlpi_name)
          static_cast<std::vector<std::string>*>(out)->push_back(info->dlpi_name);
        return 0;
      },
      &names);
  for (const std::string& name : names) {
    // RTLD_NOLOAD: only what is loaded already; RTLD_NODELETE: never unmapped, whatever dlclose is called later.
    if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE)) dlclose(h);
  }
}

void load_instance_functions(VkInstance instance, bool debug_utils) {
  if (g_live_instances++ > 0) return;
  try {
    load_level(
        FnLevel::Instance, [instance](const char* n) { return g_fns.vkGetInstanceProcAddr(instance, n); },
        "Vulkan instance");
  } catch (...) {
    --g_live_instances;
    throw;
  }
  if (!debug_utils) {
    g_fns.vkCreateDebugUtilsMessengerEXT = nullptr;
    g_fns.vkDestroyDebugUtilsMessengerEXT = nullptr;
    g_fns.vkSetDebugUtilsObjectNameEXT = nullptr;
  }
}

void release_instance_functions() {
  --g_live_instances;
}

void load_device_functions(VkDevice device) {
  assert(g_live_devices == 0 && "mole uses one Vulkan device per process");
  load_level(
      FnLevel::Device, [device](const char* n) { return g_fns.vkGetDeviceProcAddr(device, n); },
      "Vulkan device driver");
  ++g_live_devices;
}

void release_device_functions() {
  --g_live_devices;
}

void set_object_name(VkDevice device, VkObjectType type, uint64_t handle, const char* name) {
  if (!g_fns.vkSetDebugUtilsObjectNameEXT || !name || !*name) return;
  VkDebugUtilsObjectNameInfoEXT info{};
  info.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_OBJECT_NAME_INFO_EXT;
  info.objectType = type;
  info.objectHandle = handle;
  info.pObjectName = name;
  g_fns.vkSetDebugUtilsObjectNameEXT(device, &info);  // a name is a debugging aid: its result is ignored
}

}  // namespace mole
