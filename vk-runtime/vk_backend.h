// The Vulkan backend's public face, the only vk-runtime/ header apps/ includes: its row of the backend registry
// (name, probe, factory). It runs the engine's StepGraph with the GLSL compute shaders of shaders/ on any Vulkan
// device; what it decided (how the table's rows are read, whether the table was imported, validation messages)
// comes back through Backend::info().
#pragma once

#include <memory>

#include "model/backend.h"

namespace mole::vulkan {

// The registry row: probe (the Vulkan loader, a driver, the best device; `mole devices` gets every device
// described) and factory. Honours --device, --lut-read, --validate, --pipeline-cache, --memory-limit, the cache
// directory, and the tuning keys subgroups, tiled-min-rows, attention-splits, attention-store, lut-chunk-bytes,
// lut-gather, lut-import, matvec-loads, host-wait, chain.
BackendEntry vulkan_backend_entry();

// The factory of the row: throws mole::Error when no device can be opened (no loader, no driver, --device out of
// range, the validation layer asked for and missing), saying what to do.
std::unique_ptr<Backend> make_vulkan_backend(const BackendOptions& opt);

}  // namespace mole::vulkan
