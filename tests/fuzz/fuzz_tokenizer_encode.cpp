// libFuzzer harness: arbitrary bytes through the GPT-NeoX tokenizer (plus added tokens that use the lstrip, rstrip,
// single_word and normalized flags), as text to encode and as ids to decode. Promises checked: invalid UTF-8 is a
// mole::Error and nothing else throws; ids are in the vocabulary; decode(encode(text)) is the text as Hugging Face
// normalizes it (NFC, Unicode 9.0); decode gives valid UTF-8 for any ids; the stream decoder's pieces concatenate
// to decode().
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "model/error.h"
#include "model/nfc.h"
#include "model/paths.h"
#include "model/tokenizer.h"
#include "model/user_files.h"
#include "tests/fuzz/fuzz_common.h"

using namespace mole;

namespace {

std::string neox_path() {
  return data_dir() + "/gpt-neox-tokenizer/tokenizer.json";
}

const Tokenizer& neox() {
  static const Tokenizer tok = Tokenizer::load(neox_path());
  return tok;
}

// GPT-NeoX's with added tokens that strip the spaces around them, match only whole words, or match normalized text.
const Tokenizer& variant() {
  static const Tokenizer tok = [] {
    nlohmann::json doc = load_json_file(neox_path(), "tokenizer file");
    const char* added[][2] = {
        {"<mask>", "lstrip"}, {"[SEP]", "rstrip"}, {"xyzzy", "single_word"}, {"cafe\xCC\x81", "normalized"}};
    int32_t id = 50277;
    for (const auto& [content, flag] : added) {
      nlohmann::json t = {{"id", id++}, {"content", content}, {"special", false}, {"normalized", false}};
      t[flag] = true;
      doc["added_tokens"].push_back(t);
    }
    const std::string path = fuzz::scratch_dir() + "/tokenizer.json";
    const std::string text = doc.dump();
    fuzz::write_file(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
    return Tokenizer::load(path);
  }();
  return tok;
}

// Checked here byte by byte, not with the tokenizer's own rule.
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? b : b & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = valid_utf8(text);
  for (const Tokenizer* tok : {&neox(), &variant()}) {
    try {
      const std::vector<int32_t> ids = tok->encode(text);
      fuzz::require(valid, "invalid UTF-8 was encoded");
      for (int32_t id : ids) fuzz::require(id >= 0 && id < tok->vocab_size(), "encoded ids are in the vocabulary");
      if (tok == &neox()) {  // (the variant's lstrip and rstrip tokens drop spaces)
        std::string normalized;
        append_nfc_hf(text, normalized);
        fuzz::require(tok->decode(ids) == normalized, "decode(encode(text)) is NFC(text)");
      }
    } catch (const Error&) {
      fuzz::require(!valid, "valid UTF-8 was refused");
    }
  }

  // The same bytes as ids: mostly known ones, some past the vocabulary or negative, which decode skips.
  const Tokenizer& tok = variant();
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  for (int32_t& id : ids) id %= tok.vocab_size() + 64;
  const std::string decoded = tok.decode(ids);
  fuzz::require(valid_utf8(decoded), "decode gives valid UTF-8");
  Tokenizer::StreamDecoder stream(tok);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.finish();
  fuzz::require(streamed == decoded, "stream decoding concatenates to decode()");
  return 0;
}
