// Sampling the next token from a row of logits: llama.cpp's chain and defaults, applied in this order:
// repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw. temperature <= 0 means greedy (argmax).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "model/error.h"

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
  // `history`: the sequence so far (prompt and generated), for the repetition penalty. Logits that hold a NaN are a
  // mole::Error (nan_logits_error(where)); infinite ones are the softmax's limit (softmax_term).
  int32_t sample(const std::vector<float>& logits, const std::vector<int32_t>& history,
                 const std::string& where = "this step");
  // True when sample() is the logits' argmax whatever the history (greedy, no repetition penalty in effect), so a
  // caller may ask the backend for the argmax (Engine::step_argmax) instead of the logits.
  bool argmax_only() const;

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

// The greedy pick's order, the same in every backend's argmax op (cpu_backend.cpp, shaders/argmax.comp,
// cuda-backend/argmax.cuh): a NaN above every number, then the larger value, the lower index on ties. It is total, so
// any split of a row gives the same answer; a row that holds a NaN has no next token (argmax() gives -1 for it).
inline bool logit_is_nan(float v) {
  // By its bits, so that it holds under any floating-point options.
  return (std::bit_cast<uint32_t>(v) & 0x7fffffffu) > 0x7f800000u;
}

// The index of the largest of logits[0, n), the lowest on ties; -1 if one of them is NaN (or n is 0).
int32_t argmax(const float* logits, size_t n);
int32_t argmax(const std::vector<float>& logits);

// The first k ids of logits in the greedy order (the larger value first, the lower index on ties), all of them for
// k >= n, without sorting the rest (as sample()'s top-k). Throws nan_logits_error(where) for a row that holds a NaN.
std::vector<int32_t> top_ids(const std::vector<float>& logits, size_t k, const std::string& where);

// The error for a row of logits that holds a NaN, at `where` (which sequence and position).
Error nan_logits_error(const std::string& where);

// exp(v - max) for a softmax over values whose largest is `max`; where `max` is infinite, the softmax's limit: the
// values equal to it share all the weight (1 each, before normalizing) and the rest get none.
inline double softmax_term(double v, double max) {
  if (std::isinf(max)) return v == max ? 1.0 : 0.0;
  return std::exp(v - max);
}

}  // namespace mole
