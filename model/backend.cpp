// Backend registry: which backends this build has, which can run here, and the factory behind --backend.
#include "model/backend.h"

#include "model/cpu_backend.h"
#include "model/error.h"

namespace mole {

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::Embed: return "embed";
    case OpKind::RmsNorm: return "rmsnorm";
    case OpKind::MatMul: return "matmul";
    case OpKind::Rope: return "rope";
    case OpKind::KvStore: return "kv_store";
    case OpKind::Attention: return "attention";
    case OpKind::Gelu: return "gelu";
    case OpKind::Add: return "add";
    case OpKind::RouterLut: return "router_lut";
    case OpKind::Gather: return "gather";
  }
  return "?";
}

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
