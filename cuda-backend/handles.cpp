// The owning handles (handles.h), and the failure paths behind CUDA_CHECK and MOLE_CUDA_ASSERT (common.cuh).
#include "cuda-backend/handles.h"

#include <cstdio>
#include <cstdlib>

#include "cuda-backend/common.cuh"
#include "model/error.h"

namespace mole::cuda {

[[noreturn]] void cuda_fail(cudaError_t err, const char* expr, const char* file, int line) {
  cudaGetLastError();  // clears the error unless it is sticky (a fault in a kernel), so the backend stays usable
  std::string msg = std::string("cuda: ") + expr + " failed: " + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ") at " + file + ":" + std::to_string(line);
  switch (err) {
    case cudaErrorMemoryAllocation:
      msg += ": the GPU is out of memory; try a smaller --ctx-size or batch, or --lut host or --lut disk";
      break;
    case cudaErrorInsufficientDriver:
      msg += ": the NVIDIA driver is older than this build's CUDA runtime; update the driver";
      break;
    case cudaErrorNoDevice:
      msg += ": no NVIDIA GPU is visible (see nvidia-smi and CUDA_VISIBLE_DEVICES)";
      break;
    case cudaErrorNoKernelImageForDevice:
      msg += ": this build has no code for this GPU (mole's CUDA backend needs compute capability 8.0 or newer)";
      break;
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
      msg +=
          ": a kernel of mole's CUDA backend failed and the GPU context cannot be used any more (a bug in mole: "
          "please report it, with compute-sanitizer's output if you can)";
      break;
    default:
      break;
  }
  throw Error(msg);
}

[[noreturn]] void assert_fail(const char* what, const char* file, int line) {
  std::fprintf(stderr, "mole: internal error in the CUDA backend: %s at %s:%d\n", what, file, line);
  std::abort();
}

Stream make_stream() {
  cudaStream_t s = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}

Event make_event(bool timing) {
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  return Event(e);
}

DeviceBuffer DeviceBuffer::create(size_t bytes, const std::string& what, const std::shared_ptr<MemoryBudget>& budget) {
  const size_t size = std::max<size_t>(bytes, 1);
  if (budget) budget->charge(size, what);
  DeviceBuffer b;
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, size);
  if (err != cudaSuccess && budget) budget->refund(size);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    throw Error("not enough GPU memory: " + what + " needs " + memory_size_text(bytes) + ", " + memory_size_text(free) +
                " free of " + memory_size_text(total) + out_of_memory_hint(what));
  }
  CUDA_CHECK(err);
  b.ptr_ = std::unique_ptr<void, FreeDevice>(p, FreeDevice{budget, budget ? size : 0});
  b.bytes_ = bytes;
  return b;
}

PinnedBuffer PinnedBuffer::create(size_t bytes, const std::string& what) {
  PinnedBuffer b;
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocMapped);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw Error("not enough page-locked host memory: " + what + " needs " + memory_size_text(bytes) +
                (what.find("lookup table") != std::string::npos ? "; use --lut disk" : ""));
  }
  CUDA_CHECK(err);
  b.ptr_.reset(p);
  b.bytes_ = bytes;
  return b;
}

cudaError_t HostRegistration::create(const void* p, size_t bytes, unsigned flags, HostRegistration* out) {
  void* q = const_cast<void*>(p);  // cudaHostRegister takes void*; with cudaHostRegisterReadOnly nothing writes it
  const cudaError_t err = cudaHostRegister(q, bytes, flags);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return err;
  }
  out->ptr_.reset(q);
  return cudaSuccess;
}

}  // namespace mole::cuda
