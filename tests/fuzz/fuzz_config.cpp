// libFuzzer harness: config.json text through parse_json and Config::from_json. Each input must give a Config or a
// mole::Error naming the file; a Config's derived sizes must be in range (model/config.h).
#include <cstdint>
#include <string>
#include <string_view>

#include "model/config.h"
#include "model/error.h"
#include "model/forward.h"
#include "model/user_files.h"
#include "tests/fuzz/fuzz_common.h"

using namespace mole;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source = "fuzz/config.json";
  try {
    const Config c = Config::from_json(
        parse_json(std::string_view(reinterpret_cast<const char*>(data), size), source, "config.json"), source);
    fuzz::require(c.head_dim * c.num_heads == c.hidden_size, "head_dim * heads == hidden");
    fuzz::require(c.num_heads % c.num_kv_heads == 0, "kv heads divide heads");
    const int ctx = default_context(c);
    fuzz::require(ctx >= 1 && ctx <= kMaxContext, "default context in range");
    fuzz::require(int64_t(c.vocab_size) * c.lut_row_elems() <= kMaxTensorElements || !c.is_mole(), "table in range");
    fuzz::require(c.rms_norm_eps > 0, "eps positive");
  } catch (const Error& e) {
    fuzz::require(std::string(e.what()).find(source) != std::string::npos, "error names the file");
  }
  return 0;
}
