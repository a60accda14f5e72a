// libFuzzer harness: model.safetensors.index.json through TensorSet::open_dir, in a directory holding two small
// shards (model-00001-of-00002.safetensors: a, b; model-00002-of-00002.safetensors: c) and, outside it, a third
// (../outside.safetensors: d). Each input must give a TensorSet or a mole::Error; a set never holds d (no shard may
// be read from outside the directory) and holds each tensor the index names.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/error.h"
#include "model/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

using namespace mole;

namespace {

const std::string& model_dir() {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch_dir() + "/model";
    std::filesystem::create_directories(d);
    const std::vector<uint8_t> four(4, 0);
    auto tensor = [&](const char* name) { return OwnedTensor{name, DType::F32, {1}, four}; };
    write_safetensors(d + "/model-00001-of-00002.safetensors", {tensor("a"), tensor("b")});
    write_safetensors(d + "/model-00002-of-00002.safetensors", {tensor("c")});
    write_safetensors(fuzz::scratch_dir() + "/outside.safetensors", {tensor("d")});
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = model_dir();
  fuzz::write_file(dir + "/model.safetensors.index.json", data, size);
  try {
    TensorSet set = TensorSet::open_dir(dir);
    fuzz::require(set.find("d") == nullptr, "no tensor from a shard outside the directory");
    for (const std::string& name : set.names()) fuzz::require(set.find(name) != nullptr, "listed tensors are found");
  } catch (const Error&) {
  }
  return 0;
}
