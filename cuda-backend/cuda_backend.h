// The CUDA backend: runs the engine's StepGraph on an NVIDIA GPU (compute capability 8.0 or newer) with the kernels
// of cuda-backend/*.cu, one per op. The only header of cuda-backend/ that code outside it includes; it needs no CUDA
// headers. The CUDA runtime is linked statically: without an NVIDIA driver or GPU, cuda_availability() says why and
// make_cuda_backend() throws mole::Error saying the same.
#pragma once

#include <memory>
#include <string>

#include "model/backend.h"

namespace mole {

struct CudaOptions {
  int device = -1;                // index in cuda_device_details() (CUDA's order); -1: device 0
  std::string lut_read = "auto";  // how router_lut reads the table's rows: copy|direct|auto (cuda-backend/lut_rows.h)
};

// Kernel choices, for tests and tuning; the defaults are what a run uses.
struct CudaTuning {
  int tiled_min_rows = 32;   // matmul family: steps of at least this many rows use the tensor-core (tiled) kernel
  int attention_splits = 0;  // split-K attention: 0 automatic (from 512 keys), 1 never, N > 1 always N (at most 32)
};

// One line for `mole devices` and --backend auto. Usable: "NVIDIA H100 80GB HBM3, compute capability 9.0, 81559 MiB,
// 132 SMs, driver CUDA 13.0, runtime CUDA 13.0", *ok = true. Otherwise why not (no driver, a driver too old for this
// build's runtime, no GPU, a GPU older than compute capability 8.0) and what to do, *ok = false. Never throws.
std::string cuda_availability(bool* ok);
// Every CUDA device, described for `mole devices` (name, compute capability, memory, SMs, what the table placements
// need, driver and runtime versions), the default one marked; "" when there is none.
std::string cuda_device_details();
// Opens the device. Throws mole::Error when CUDA is unavailable (the reason of cuda_availability()), for a device
// index out of range, or a lut_read that is not copy|direct|auto.
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& opt, const CudaTuning& tuning = {});

// How a CUDA backend reads the table's rows once set_lut() has run: "copy" or "direct"; "" before, or for another
// backend.
std::string cuda_lut_read_mode(const Backend& b);
// --lut host on CUDA: "registered in place from the file's mapping (read-only, no copy)" or "copied into pinned
// memory: <why>"; "" for other placements and backends.
std::string cuda_lut_table_note(const Backend& b);

}  // namespace mole
