// data_dir() and friends: see paths.h.
#include "model/paths.h"

#include <unistd.h>

#include <filesystem>
#include <vector>

#include "model/error.h"

#ifndef MOLE_DEFAULT_MODEL_NAME
#error "MOLE_DEFAULT_MODEL_NAME must name the built-in default model (a folder name under share/mole/models)"
#endif

namespace fs = std::filesystem;

namespace mole {

std::string executable_dir() {
  std::vector<char> buf(4096);
  ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) throw Error("cannot find the mole executable's own path (/proc/self/exe): is /proc mounted?");
  return fs::path(std::string(buf.data(), size_t(n))).parent_path().string();
}

std::string data_dir() {
  const fs::path exe = executable_dir();
  const fs::path candidates[] = {exe / "share" / "mole", exe.parent_path() / "share" / "mole"};
  for (const fs::path& c : candidates) {
    std::error_code ec;
    if (fs::is_directory(c / "gpt-neox-tokenizer", ec)) return c.lexically_normal().string();
  }
  throw Error("cannot find mole's data folder: neither " + candidates[0].string() + " nor " +
              candidates[1].lexically_normal().string() +
              " exists; keep share/mole/ beside the build's mole, or above an installed bin/mole "
              "(cmake --install build --prefix P)");
}

std::string builtin_model_name() {
  return MOLE_DEFAULT_MODEL_NAME;
}

std::string builtin_model_dir() {
  return data_dir() + "/models/" + builtin_model_name();
}

}  // namespace mole
