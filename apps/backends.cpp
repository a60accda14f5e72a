// Backend registry. Each GPU backend is compiled in only when its toolkit was found at build time.
#include "apps/backends.h"

#include "model/cpu_backend.h"
#include "model/error.h"

namespace mole {

std::vector<BackendAvailability> list_backends() {
  return {
      {"vulkan", false, "not built yet in this version of mole (the Vulkan backend is in progress); use --backend cpu"},
      {"cuda", false, "not built yet in this version of mole (the CUDA backend is in progress); use --backend cpu"},
      {"cpu", true, make_cpu_backend()->info().device},
  };
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  std::string list;
  for (const auto& b : list_backends()) {
    if (name == b.name) {
      if (!b.available) throw Error("--backend " + name + ": " + b.detail);
      if (name == "cpu") return make_cpu_backend();
    }
    list += (list.empty() ? "" : ", ") + b.name;
  }
  if (name == "auto") {
    for (const auto& b : list_backends())
      if (b.available) return make_backend(b.name);
  }
  throw Error("--backend " + name + ": unknown backend (choose auto, " + list + ")");
}

}  // namespace mole
