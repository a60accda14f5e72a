// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (GPT-NeoX's and alike), giving exactly the ids
// and text that Hugging Face `tokenizers` gives: added tokens, NFC, GPT-2 pre-tokenization, rank-ordered merges.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mole {

class Tokenizer {
 public:
  // Loads a Hugging Face tokenizer.json (model.type "BPE", byte-level pre-tokenizer/decoder, as GPT-NeoX's).
  // tokenizer_config.json / special_tokens_map.json beside it, when present, name the BOS and EOS tokens.
  static Tokenizer load(const std::string& path);  // throws mole::Error naming path on any problem

  // Encodes UTF-8 text as HF's encode(text) does with add_special_tokens on (GPT-NeoX's post-processor adds none).
  // Throws mole::Error on invalid UTF-8 (message says the byte offset).
  std::vector<int32_t> encode(std::string_view text) const;
  // Decodes as HF's decode(ids, skip_special_tokens=false): ids the tokenizer does not know (a model's vocabulary
  // padding) decode to nothing, as in HF.
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const;  // number of ids (model vocab + added tokens), max id + 1
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // the token as tokenizer.json spells it ("Ġworld"); bad id -> Error
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

  // Streams decoded text: push() returns only complete, valid UTF-8; bytes of a character split across tokens are
  // held until complete. finish() returns what is left (incomplete sequences as U+FFFD, as HF's decode does).
  class StreamDecoder {
   public:
    explicit StreamDecoder(const Tokenizer& tok);
    std::string push(int32_t id);
    std::string finish();

   private:
    const Tokenizer* tok_;
    std::string pending_;  // bytes of a character not yet complete
  };

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<Impl> impl);
  const std::string& token_bytes(int32_t id) const;           // unknown id -> mole::Error
  const std::string& token_bytes_or_empty(int32_t id) const;  // unknown id -> ""

  // Shared so copies are cheap; the word cache inside is guarded by a mutex, so copies may encode concurrently.
  std::shared_ptr<Impl> impl_;
};

// Encodes `text` repeatedly for about `seconds` and returns MB/s of input on one core.
double tokenizer_benchmark_mb_per_s(const Tokenizer& tok, std::string_view text, double seconds);

}  // namespace mole
