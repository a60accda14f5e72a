// A stand-in for NVIDIA's libnvidia-ml.so.1 with the three functions mole calls (cuda-backend/device_info.cpp's
// nvml_driver_version()), for tests/test_cuda.cpp on machines without a driver. Its answers follow the environment,
// read at each call: FAKE_NVML_INIT=fail makes nvmlInit_v2 fail, FAKE_NVML_VERSION is the version it reports.
#include <cstdlib>
#include <cstring>

extern "C" {
int nvmlInit_v2() {
  const char* init = std::getenv("FAKE_NVML_INIT");
  return init && std::strcmp(init, "fail") == 0 ? 999 : 0;  // 999: NVML_ERROR_UNKNOWN
}
int nvmlSystemGetDriverVersion(char* version, unsigned length) {
  const char* v = std::getenv("FAKE_NVML_VERSION");
  if (!v || std::strlen(v) + 1 > length) return 7;  // NVML_ERROR_INSUFFICIENT_SIZE
  std::memcpy(version, v, std::strlen(v) + 1);
  return 0;
}
int nvmlShutdown() {
  return 0;
}
}
