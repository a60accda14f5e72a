// Sampling the next token from a row of logits: llama.cpp's chain and defaults, applied in this order:
// repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw. temperature <= 0 means greedy (argmax).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace mole {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;               // 0 = off
  float top_p = 0.95f;          // 1 = off
  float min_p = 0.05f;          // 0 = off; keeps tokens with p >= min_p * p_max
  float repeat_penalty = 1.0f;  // 1 = off; CTRL-style: divides positive logits, multiplies negative ones
  int repeat_last_n = 64;       // how many recent tokens the penalty looks at
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // `history`: the sequence so far (prompt and generated), for the repetition penalty.
  int32_t sample(const std::vector<float>& logits, const std::vector<int32_t>& history);
  // True when sample() is the logits' argmax whatever the history (greedy, no repetition penalty in effect), so a
  // caller may ask the backend for the argmax (Engine::step_argmax) instead of the logits.
  bool argmax_only() const;

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

int32_t argmax(const std::vector<float>& logits);

}  // namespace mole
