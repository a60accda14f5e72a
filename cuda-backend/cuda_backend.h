// The CUDA backend: runs the engine's StepGraph on an NVIDIA GPU (compute capability 8.0 or newer) with the kernels
// of cuda-backend/*.cu, one per op. The only header of cuda-backend/ that code outside it includes; it needs no CUDA
// headers. The CUDA runtime is linked statically: without an NVIDIA driver or GPU, cuda_availability() says why and
// make_cuda_backend() throws mole::Error saying the same.
#pragma once

#include <memory>
#include <string>

#include "model/backend.h"

namespace mole {

// One line for `mole devices` and --backend auto. Usable: "NVIDIA H100 80GB HBM3, compute capability 9.0, 81559 MiB,
// 132 SMs, driver CUDA 13.0, runtime CUDA 13.0", *ok = true. Otherwise why not (no driver, a driver too old for this
// build's runtime, no GPU, a GPU older than compute capability 8.0) and what to do, *ok = false. Never throws.
std::string cuda_availability(bool* ok);
// Every CUDA device, described for `mole devices` (name, compute capability, memory, SMs, what the table placements
// need, driver and runtime versions), the default one marked; "" when there is none.
std::string cuda_device_details();
// Opens the device. Honours --device, --lut-read, --memory-limit (a MemoryBudget every device buffer is charged to),
// the cache directory (a read mode `mole bench --record` measured) and the tuning keys of cuda_backend_entry()
// (tiled-min-rows, attention-splits, attention-store, lut-gather, lut-copy, matvec, matvec-loads, pdl, persistent).
// Throws mole::Error when CUDA is unavailable (the reason of cuda_availability()) or for a device index out of range.
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opt);

namespace cuda {
// The registry row: probe (cuda_availability, cuda_device_details) and factory (make_cuda_backend).
BackendEntry cuda_backend_entry();
}  // namespace cuda

}  // namespace mole
