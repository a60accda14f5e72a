// The CUDA probe: cuda_availability() and cuda_device_details() (cuda_backend.h), and choose_device().
// With the runtime linked statically, cudaGetDeviceCount() is where a missing or old driver shows: it fails, and
// cudaDriverGetVersion() says 0 (no driver) or the CUDA version the driver supports.
#include "cuda-backend/device_info.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstring>
#include <fstream>
#include <regex>

#include "cuda-backend/cuda_backend.h"
#include "cuda-backend/embed.cuh"
#include "cuda-backend/handles.h"
#include "model/error.h"

namespace mole::cuda {
namespace {

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}
int driver_version() {
  int v = 0;
  cudaDriverGetVersion(&v);  // 0 when no driver is installed
  return v;
}

// Why CUDA cannot be used on this machine, and what to do, or "" when it can (with *count devices).
std::string unavailable_reason(int* count) {
  *count = 0;
  const cudaError_t err = cudaGetDeviceCount(count);
  if (err == cudaSuccess && *count > 0) return "";
  cudaGetLastError();
  const int driver = driver_version(), runtime = runtime_version();
  if (driver == 0)
    return "no NVIDIA driver found (libcuda.so.1 could not be loaded): install an NVIDIA driver that supports CUDA " +
           cuda_version_name(runtime) + " to use the CUDA backend";
  if (err == cudaErrorInsufficientDriver || driver < runtime)
    return "the NVIDIA driver supports CUDA " + cuda_version_name(driver) + ", older than this build's CUDA runtime " +
           cuda_version_name(runtime) + ": update the NVIDIA driver";
  if (err == cudaSuccess || err == cudaErrorNoDevice)
    return "no NVIDIA GPU found (the driver, for CUDA " + cuda_version_name(driver) +
           ", is installed): check nvidia-smi and CUDA_VISIBLE_DEVICES";
  return std::string("CUDA cannot start: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
         "); check nvidia-smi";
}

int attribute(cudaDeviceAttr attr, int device) {
  int v = 0;
  if (cudaDeviceGetAttribute(&v, attr, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

}  // namespace

std::string cuda_version_name(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

std::string nvml_driver_version(const char* library) {
  void* lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (!lib) return "";
  using Call = int (*)();
  using GetVersion = int (*)(char*, unsigned);
  const auto init = reinterpret_cast<Call>(dlsym(lib, "nvmlInit_v2"));
  const auto get = reinterpret_cast<GetVersion>(dlsym(lib, "nvmlSystemGetDriverVersion"));
  const auto shutdown = reinterpret_cast<Call>(dlsym(lib, "nvmlShutdown"));
  std::string version;
  if (init && get && shutdown && init() == 0) {  // 0: NVML_SUCCESS
    char buf[96] = {};                           // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE is 80
    if (get(buf, sizeof buf) == 0) version.assign(buf, strnlen(buf, sizeof buf));
    shutdown();
  }
  return version;
}

std::string driver_description() {
  // Once a process: every CUDA backend and every device of `mole devices` asks, and NVML's start takes a while.
  static const std::string description = [] {
    std::string out = "CUDA " + cuda_version_name(driver_version());
    // The kernel module's own version, as nvidia-smi shows it: where Linux says it, else from NVML.
    std::ifstream f("/proc/driver/nvidia/version");
    std::string line, version;
    std::smatch m;
    if (std::getline(f, line) && std::regex_search(line, m, std::regex("Kernel Module +([0-9][0-9.]*)")))
      version = m[1].str();
    else
      version = nvml_driver_version();
    if (!version.empty()) out = "NVIDIA " + version + ", " + out;
    return out;
  }();
  return description;
}

bool can_start_early(int index) {
  constexpr int kGraphEdges = 12030;  // programmatic edges in graphs (and so in stream capture) came with CUDA 12.3
  // The kernels wait for their producers (griddepcontrol.wait) only where compiled for compute_90 or newer: a build
  // configured without sm_90 runs PTX of an older architecture on a Hopper GPU, and a kernel launched early there
  // would read its inputs before they are written. Asked last: it loads the kernels on the device.
  return attribute(cudaDevAttrComputeCapabilityMajor, index) >= 9 && driver_version() >= kGraphEdges &&
         runtime_version() >= kGraphEdges && kernels_ptx_version(index) >= 90;
}

std::string describe_device(int index) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
    cudaGetLastError();
    return "CUDA device " + std::to_string(index) + " (its properties could not be read)";
  }
  return std::string(p.name) + ", compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
         ", " + std::to_string(p.totalGlobalMem >> 20) + " MiB, " + std::to_string(p.multiProcessorCount) + " SMs";
}

int choose_device(int index) {
  int count = 0;
  if (std::string why = unavailable_reason(&count); !why.empty()) throw Error("CUDA is unavailable: " + why);
  const int device = index < 0 ? 0 : index;
  if (device >= count)
    throw Error("--device " + std::to_string(index) + ": there " +
                (count == 1 ? "is 1 CUDA device" : "are " + std::to_string(count) + " CUDA devices") +
                " (see `mole devices`)");
  const int major = attribute(cudaDevAttrComputeCapabilityMajor, device);
  if (major < kMinComputeMajor)
    throw Error(describe_device(device) + ": mole's CUDA backend needs compute capability " +
                std::to_string(kMinComputeMajor) + ".0 or newer (Ampere and later); use --backend vulkan");
  return device;
}

}  // namespace mole::cuda

namespace mole {

std::string cuda_availability(bool* ok) {
  using namespace mole::cuda;
  *ok = false;
  int count = 0;
  if (std::string why = unavailable_reason(&count); !why.empty()) return why;
  const std::string versions =
      ", driver CUDA " + cuda_version_name(driver_version()) + ", runtime CUDA " + cuda_version_name(runtime_version());
  if (attribute(cudaDevAttrComputeCapabilityMajor, 0) < kMinComputeMajor)
    return describe_device(0) +
           ": mole's CUDA backend needs compute capability 8.0 or newer (Ampere and later); "
           "use --backend vulkan";
  *ok = true;
  return describe_device(0) + versions + (count > 1 ? " (device 0 of " + std::to_string(count) + ")" : "");
}

std::string cuda_device_details() {
  using namespace mole::cuda;
  int count = 0;
  if (!unavailable_reason(&count).empty()) return "";
  std::string out;
  auto yes = [](int v) { return v ? "yes" : "no"; };
  for (int d = 0; d < count; d++) {
    out += "\ncuda device " + std::to_string(d) + (d == 0 ? " (default)" : "") + "\n";
    out += "  " + describe_device(d) + "\n";
    const int l2 = attribute(cudaDevAttrL2CacheSize, d);
    out += "  L2 cache " + std::to_string(l2 >> 20) + " MiB, PCI " +
           std::to_string(attribute(cudaDevAttrPciDomainId, d)) + ":" +
           std::to_string(attribute(cudaDevAttrPciBusId, d)) + ":" +
           std::to_string(attribute(cudaDevAttrPciDeviceId, d)) +
           ", integrated: " + yes(attribute(cudaDevAttrIntegrated, d)) + "\n";
    out +=
        std::string("  --lut host: maps host memory (--lut-read direct): ") +
        yes(attribute(cudaDevAttrCanMapHostMemory, d)) + ", registers the table's file pages in place: " +
        yes(attribute(cudaDevAttrHostRegisterSupported, d) && attribute(cudaDevAttrHostRegisterReadOnlySupported, d)) +
        "\n";
    out += std::string("  kernels may start before the previous one ends (programmatic dependent launch, unless ") +
           "--tune pdl=off; compute capability 9.0+, CUDA 12.3+, kernels built for compute_90+): " +
           yes(can_start_early(d)) + "\n";
    out += "  driver " + driver_description() + ", runtime CUDA " + cuda_version_name(runtime_version()) +
           " (linked statically)\n";
  }
  return out;
}

}  // namespace mole
