// Names of the backend ops, for messages and profiles.
#include "model/backend.h"


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

}  // namespace mole
