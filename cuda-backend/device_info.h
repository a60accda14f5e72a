// Which CUDA devices there are and whether this build can use them: the probe behind cuda_availability() and
// cuda_device_details() (cuda_backend.h), and the device choice of make_cuda_backend().
#pragma once

#include <string>

namespace mole::cuda {

constexpr int kMinComputeMajor = 8;  // the architectures this build has code for start at sm_80 (cmake/cuda.cmake)

// "13.0" from CUDA's 13000.
std::string cuda_version_name(int version);
// "NVIDIA 580.159.04, CUDA 13.0": the kernel module's version (from /proc/driver/nvidia/version where readable, else
// from NVML) and the CUDA version the driver supports; worked out once a process.
std::string driver_description();
// The driver's version from NVML (`library`: libnvidia-ml.so.1, which every NVIDIA driver installs and nvidia-smi
// reads), opened at run time, or "" where it cannot be opened or does not answer. Containers often hide
// /proc/driver/nvidia/version (the GPU check's H200 machines did) but mount NVML. The library stays loaded: NVIDIA's
// libraries are not made to be unloaded.
std::string nvml_driver_version(const char* library = "libnvidia-ml.so.1");
// The device `index` asks for (-1: the default, device 0) after checking that CUDA works here and that the device
// exists and is recent enough; throws mole::Error saying why not and what to do.
int choose_device(int index);
// Whether kernels on device `index` can start while the one before them ends, inside a graph (programmatic dependent
// launch, --tune pdl): compute capability 9.0 and up, a driver and runtime of CUDA 12.3 or newer, and kernels this
// build compiled for compute_90 or newer (kernels_ptx_version(), embed.cuh; older ones do not wait for producers).
bool can_start_early(int index);
// "NVIDIA H100 80GB HBM3, compute capability 9.0, 81559 MiB, 132 SMs"
std::string describe_device(int index);

}  // namespace mole::cuda
