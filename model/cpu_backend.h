// The CPU reference backend: every op as a plain float32 loop (model/cpu_ops.h), weights read straight from the
// mmap'd checkpoint. It is the specification the GPU backends are tested against, not a fast path.
#pragma once

#include <memory>

#include "model/backend.h"

namespace mole {

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace mole
