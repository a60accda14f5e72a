// Owning handles for the CUDA objects the backend makes, each freed by its destructor (move-only), and the
// allocation helpers that turn "out of memory" into a mole::Error naming what did not fit:
//   DeviceBuffer      cudaMalloc / cudaFree
//   PinnedBuffer      cudaHostAlloc / cudaFreeHost (page-locked host memory: the source of asynchronous copies)
//   HostRegistration  cudaHostRegister / cudaHostUnregister of memory someone else owns (the table's file mapping)
//   Stream, Event, Graph, GraphExec
// Nothing here synchronises: whoever frees memory a queued copy or kernel may still use synchronises first.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>

#include "model/memory_budget.h"

namespace mole::cuda {

struct FreeDevice {
  std::shared_ptr<MemoryBudget> budget;  // what the memory was charged to (--memory-limit), if anything
  size_t bytes = 0;
  void operator()(void* p) const noexcept {
    cudaFree(p);
    if (budget) budget->refund(bytes);
  }
};
struct FreeHost {
  void operator()(void* p) const noexcept { cudaFreeHost(p); }
};
struct Unregister {
  void operator()(void* p) const noexcept { cudaHostUnregister(p); }
};
struct DestroyStream {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
struct DestroyEvent {
  void operator()(cudaEvent_t e) const noexcept { cudaEventDestroy(e); }
};
struct DestroyGraph {
  void operator()(cudaGraph_t g) const noexcept { cudaGraphDestroy(g); }
};
struct DestroyGraphExec {
  void operator()(cudaGraphExec_t g) const noexcept { cudaGraphExecDestroy(g); }
};

using Stream = std::unique_ptr<CUstream_st, DestroyStream>;
using Event = std::unique_ptr<CUevent_st, DestroyEvent>;
using Graph = std::unique_ptr<CUgraph_st, DestroyGraph>;
using GraphExec = std::unique_ptr<CUgraphExec_st, DestroyGraphExec>;

// A stream that does not synchronise with the legacy default stream.
Stream make_stream();
// An event; `timing` for cudaEventElapsedTime (profiling), else a lighter one for ordering only.
Event make_event(bool timing);

// Device memory of `bytes` (at least 1), 256-byte aligned, contents undefined, charged to `budget` if given. Throws
// mole::Error "not enough GPU memory: <what> needs X MiB, ..." when the device or the budget has too little.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static DeviceBuffer create(size_t bytes, const std::string& what,
                             const std::shared_ptr<MemoryBudget>& budget = nullptr);
  void* get() const { return ptr_.get(); }
  float* f32() const { return static_cast<float*>(ptr_.get()); }
  size_t bytes() const { return bytes_; }
  explicit operator bool() const { return bool(ptr_); }

 private:
  std::unique_ptr<void, FreeDevice> ptr_;
  size_t bytes_ = 0;
};

// Page-locked host memory of `bytes` (at least 1), mapped into the device's address space (cudaHostAllocMapped, so
// kernels may read it in place), contents undefined. Throws mole::Error naming `what` when it cannot be had.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  static PinnedBuffer create(size_t bytes, const std::string& what);
  void* get() const { return ptr_.get(); }
  size_t bytes() const { return bytes_; }
  explicit operator bool() const { return bool(ptr_); }

 private:
  std::unique_ptr<void, FreeHost> ptr_;
  size_t bytes_ = 0;
};

// Host memory owned elsewhere, page-locked and mapped for as long as this lives (the memory must outlive it).
class HostRegistration {
 public:
  HostRegistration() = default;
  // cudaHostRegister(p, bytes, flags): the CUDA error, or cudaSuccess with *out holding the registration.
  static cudaError_t create(const void* p, size_t bytes, unsigned flags, HostRegistration* out);
  void* get() const { return ptr_.get(); }
  explicit operator bool() const { return bool(ptr_); }

 private:
  std::unique_ptr<void, Unregister> ptr_;
};

}  // namespace mole::cuda
