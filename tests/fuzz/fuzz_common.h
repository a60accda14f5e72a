// Shared by the libFuzzer harnesses: a scratch directory in memory for harnesses whose parser reads a path, and a
// check that aborts with a message (libFuzzer then keeps the input as a crash).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace mole::fuzz {

// A directory under /dev/shm (else /tmp) made once per process and removed at exit (not after a crash).
class ScratchDir {
 public:
  ScratchDir() {
    path_ = std::filesystem::exists("/dev/shm") ? "/dev/shm/mole-fuzz-XXXXXX" : "/tmp/mole-fuzz-XXXXXX";
    if (!mkdtemp(path_.data())) std::abort();
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline const std::string& scratch_dir() {
  static const ScratchDir dir;
  return dir.path();
}

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!out) std::abort();
}

// An invariant the code under test promises; a violation is a finding.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace mole::fuzz
