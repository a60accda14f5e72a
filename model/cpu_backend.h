// The CPU reference backend: every op as a plain float32 loop (model/cpu_ops.h), weights read straight from the
// mmap'd checkpoint. It is the specification the GPU backends are tested against, not a fast path.
#pragma once

#include <memory>
#include <optional>

#include "model/backend.h"

namespace mole {

// `perturb`: make that op's output 0.1% too large, on purpose (the cpu-perturbed backend, which proves that
// `mole parity` and the cross-backend tests catch a wrong op).
std::unique_ptr<Backend> make_cpu_backend(std::optional<OpKind> perturb = std::nullopt);
// The registry rows: "cpu", and the hidden "cpu-perturbed" (--tune perturb=OP; default matmul).
BackendEntry cpu_backend_entry();
BackendEntry cpu_perturbed_backend_entry();

}  // namespace mole
