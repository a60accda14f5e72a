// Text generation over an Engine: prefill the prompt, then sample one token per step until EOS, a stop string or
// the token limit, handing each new token to a callback as soon as it exists.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "model/forward.h"
#include "model/sampling.h"

namespace mole {

struct GenerateOptions {
  int max_new_tokens = 128;  // -n; < 0 means until EOS or the context is full
  SamplingParams sampling;
  std::vector<int32_t> eos_ids;           // stop after any of these (not returned to the callback)
  std::vector<std::string> stop_strings;  // stop once the decoded text contains one (checked by the caller's
                                          // callback returning false)
  // Called once the prompt has run, before the first token is handed on: a caller prints the prompt here, so a
  // run that fails on its prompt (too long, an id the model lacks, a device error) has printed nothing.
  std::function<void()> on_prefilled;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (EOS excluded)
  std::string stop_reason;      // "eos", "stop", "length", "context"
  int prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  double prefill_tokens_per_s() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tokens_per_s() const {
    return decode_seconds > 0 && tokens.size() > 1 ? double(tokens.size() - 1) / decode_seconds : 0;
  }
};

// `on_token(id)` returns false to stop (a stop string was seen). Uses sequence slot 0, which it resets first.
GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<bool(int32_t)>& on_token);

}  // namespace mole
