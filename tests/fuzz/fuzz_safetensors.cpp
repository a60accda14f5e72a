// libFuzzer harness: a whole safetensors file (length prefix, JSON header, data) through SafetensorsFile::open,
// the mmap-and-validate path every checkpoint takes. Each input must open or throw mole::Error naming the file;
// an opened file's tensors must lie inside it and convert to float32.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/error.h"
#include "model/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

using namespace mole;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An in-memory file opened by path (/proc/self/fd/N), so open() runs exactly as on disk.
  const int fd = memfd_create("mole-fuzz-safetensors", MFD_CLOEXEC);
  fuzz::require(fd >= 0, "memfd_create");
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd, data + done, size - done);
    fuzz::require(n > 0, "write to memfd");
    done += size_t(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  try {
    SafetensorsFile file = SafetensorsFile::open(path);
    for (const TensorView& t : file.tensors()) {
      fuzz::require(t.data >= t.mapping && t.data + t.nbytes <= t.mapping + t.mapping_bytes, "tensor inside file");
      fuzz::require(t.nbytes == size_t(t.numel()) * dtype_size(t.dtype), "nbytes matches shape");
      fuzz::require(file.find(t.name) == &t, "find() gives the tensor");
      std::vector<float> values(size_t(std::min<int64_t>(t.numel(), 4096)));
      t.to_f32(0, int64_t(values.size()), values.data());
    }
  } catch (const Error& e) {
    fuzz::require(std::string(e.what()).find(path) != std::string::npos, "error names the file");
  }
  ::close(fd);
  return 0;
}
