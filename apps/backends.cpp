// Backend registry. Each GPU backend is compiled in only when its toolkit was found at build time.
#include "apps/backends.h"

#include <cstdlib>

#include "model/cpu_backend.h"
#include "model/error.h"

#ifdef MOLE_HAVE_VULKAN
#include "vk-runtime/context.h"
#include "vk-runtime/device_info.h"
#include "vk-runtime/instance.h"
#include "vk-runtime/vk_backend.h"
#endif

namespace mole {
namespace {

// A Vulkan device that is itself a CPU driver (lavapipe) is slower than the CPU reference's plain loops only in
// theory, but it is never what a user with a GPU wants: `auto` skips it unless MOLE_VK_ALLOW_CPU=1.
BackendAvailability vulkan_availability_entry(bool* gpu) {
  *gpu = false;
#ifdef MOLE_HAVE_VULKAN
  bool ok = false, is_cpu = false;
  std::string detail = vulkan_availability(&ok, &is_cpu);
  *gpu = ok && (!is_cpu || (std::getenv("MOLE_VK_ALLOW_CPU") && std::string(std::getenv("MOLE_VK_ALLOW_CPU")) == "1"));
  return {"vulkan", ok, detail};
#else
  return {"vulkan", false,
          "this build has no Vulkan backend (Vulkan headers or glslangValidator were missing when it was configured; "
          "run scripts/setup.sh)"};
#endif
}

}  // namespace

std::vector<BackendAvailability> list_backends() {
  bool gpu = false;
  return {
      vulkan_availability_entry(&gpu),
      {"cuda", false, "not built yet in this version of mole (the CUDA backend is in progress)"},
      {"cpu", true, make_cpu_backend()->info().device},
  };
}

std::string device_details() {
  std::string out;
#ifdef MOLE_HAVE_VULKAN
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
#endif
  return out;
}

std::unique_ptr<Backend> make_backend(const std::string& name, int device, const std::string& lut_read) {
  if (name == "auto") {
    bool gpu = false;
    vulkan_availability_entry(&gpu);
    return make_backend(gpu ? "vulkan" : "cpu", device, lut_read);
  }
  if (name == "cpu") return make_cpu_backend();
  if (name == "vulkan") {
#ifdef MOLE_HAVE_VULKAN
    return vulkan::make_vulkan_backend({.device_index = device, .validation = false}, lut_read);
#endif
  }
  for (const auto& b : list_backends())
    if (b.name == name && !b.available) throw Error("--backend " + name + ": " + b.detail);
  throw Error("--backend " + name + ": unknown backend (choose auto, vulkan, cuda or cpu)");
}

std::string lut_read_mode(const Backend& b) {
#ifdef MOLE_HAVE_VULKAN
  return vulkan::lut_read_mode(b);
#else
  (void)b;
  return "";
#endif
}

std::string lut_table_note(const Backend& b) {
#ifdef MOLE_HAVE_VULKAN
  return vulkan::lut_table_note(b);
#else
  (void)b;
  return "";
#endif
}

std::string record_lut_read(const Backend& b, const std::string& mode) {
#ifdef MOLE_HAVE_VULKAN
  return vulkan::record_lut_read(b, mode);
#else
  (void)b;
  (void)mode;
  return "";
#endif
}

}  // namespace mole
