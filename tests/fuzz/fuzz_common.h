// Shared by the libFuzzer harnesses: a scratch directory in memory for harnesses whose parser reads a path, and a
// check that aborts with a message (libFuzzer then keeps the input as a crash).
#pragma once

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace mole::fuzz {

// A directory under /dev/shm (else /tmp), mole-fuzz-PID, made once per process and removed at exit. libFuzzer
// may leave with _Exit (a time limit, a crash), skipping that, so each start also removes the directories of
// processes that no longer exist.
class ScratchDir {
 public:
  ScratchDir() {
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(base, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("mole-fuzz-", 0) != 0) continue;
      const long pid = std::strtol(name.c_str() + 10, nullptr, 10);
      if (pid > 0 && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH) std::filesystem::remove_all(entry.path(), ec);
    }
    path_ = (base / ("mole-fuzz-" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(path_, ec);
    if (ec) std::abort();
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
