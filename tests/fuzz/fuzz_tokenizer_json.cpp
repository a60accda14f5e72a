// libFuzzer harness: tokenizer.json through Tokenizer::load. Each input must give a tokenizer or a mole::Error
// naming the file; a loaded tokenizer must encode fixed texts into ids it can name and decode.
#include <cstdint>
#include <string>
#include <vector>

#include "model/error.h"
#include "model/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

using namespace mole;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::scratch_dir() + "/tokenizer.json";
  fuzz::write_file(path, data, size);
  try {
    const Tokenizer tok = Tokenizer::load(path);
    for (const char* text : {"Hello world", "  a\tb\n", "caf\xC3\xA9 cafe\xCC\x81 <s> </s>", "\xE4\xB8\xAD 123 !!"}) {
      const std::vector<int32_t> ids = tok.encode(text);
      for (int32_t id : ids) {
        fuzz::require(id >= 0 && id < tok.vocab_size(), "encoded ids are in the vocabulary");
        tok.id_to_token(id);
      }
      tok.decode(ids);
    }
    if (tok.eos_id()) fuzz::require(*tok.eos_id() >= 0 && *tok.eos_id() < tok.vocab_size(), "eos id in range");
  } catch (const Error& e) {
    fuzz::require(
        std::string(e.what()).find(path) != std::string::npos || std::string(e.what()).starts_with("tokenizer:"),
        "error names the file");
  }
  return 0;
}
