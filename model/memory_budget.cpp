// MemoryBudget (memory_budget.h).
#include "model/memory_budget.h"

#include <algorithm>
#include <cstdio>

#include "model/error.h"

namespace mole {

MemoryBudget::MemoryBudget(uint64_t device_bytes, double limit_mib) {
  if (device_bytes > 0) limit_ = device_bytes;
  if (limit_mib > 0) {
    const uint64_t limit = uint64_t(std::min(limit_mib * 1048576.0, 1e18));
    by_limit_ = limit < limit_;
    limit_ = std::min(limit_, limit);
  }
}

uint64_t MemoryBudget::left() const {
  return limit_ - std::min(limit_, used_.load());
}

void MemoryBudget::charge(uint64_t bytes, const std::string& what) {
  uint64_t used = used_.load();
  do {
    const uint64_t left = limit_ - std::min(limit_, used);
    if (bytes > left)
      throw Error("not enough GPU memory: " + what + " needs " + memory_size_text(bytes) + ", " +
                  memory_size_text(left) + " of " + memory_size_text(limit_) + (by_limit_ ? " (--memory-limit)" : "") +
                  " remain" + out_of_memory_hint(what));
  } while (!used_.compare_exchange_weak(used, used + bytes));
}

std::string memory_size_text(uint64_t bytes) {
  char buf[48];
  if (bytes < 1024)
    std::snprintf(buf, sizeof buf, "%llu bytes", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, bytes < (uint64_t(10) << 20) ? "%.4f MiB" : "%.1f MiB", double(bytes) / 1048576.0);
  return buf;
}

std::string out_of_memory_hint(const std::string& what) {
  if (what.find("lookup table") != std::string::npos) return "; use --lut host or --lut disk";
  if (what.find("KV cache") != std::string::npos) return "; try a smaller --ctx-size or batch";
  // A tensor of the checkpoint: the engine's sizes do not change it; the table may be what took the memory.
  if (what.find(".weight") != std::string::npos)
    return "; keep the table off the GPU (--lut host or --lut disk), or use --backend cpu";
  // mole convert's blocks of vocabulary rows (model/reparam.cpp): no flag sizes them
  if (what.rfind("reparameterization", 0) == 0) return "; convert on the CPU (--backend cpu)";
  return "; try a smaller --ubatch-size, --ctx-size or batch";  // the step's activations: T or B rows each
}

}  // namespace mole
