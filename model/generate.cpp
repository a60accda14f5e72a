// Generation loop. Timing: prefill covers the prompt and the first sampled token; decode covers every later step.
#include "model/generate.h"

#include <algorithm>
#include <chrono>

#include "model/error.h"

namespace mole {

GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                        const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) throw Error("the prompt is empty: give -p TEXT or --prompt-ids with at least one token");
  if (int(prompt.size()) > engine.max_context())
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens but the context holds " +
                std::to_string(engine.max_context()) + "; shorten it");
  using clock = std::chrono::steady_clock;
  GenerateResult res;
  res.prompt_tokens = int(prompt.size());
  engine.reset(0);
  Sampler sampler(opt.sampling);
  std::vector<int32_t> history = prompt;

  // Greedy without a repetition penalty needs only the argmax, which the backend computes (a GPU then sends back
  // one id per step instead of V logits).
  const bool greedy = sampler.argmax_only();
  auto next_of = [&](const std::vector<int32_t>& tokens) {
    if (greedy) return engine.step_argmax({{0, tokens}}).at(0);
    return sampler.sample(engine.step({{0, tokens}}).at(0), history);
  };
  auto t0 = clock::now();
  int32_t next = next_of(prompt);
  res.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  if (opt.on_prefilled) opt.on_prefilled();
  auto t1 = clock::now();
  res.stop_reason = "length";
  for (int i = 0; opt.max_new_tokens < 0 || i < opt.max_new_tokens; i++) {
    if (std::find(opt.eos_ids.begin(), opt.eos_ids.end(), next) != opt.eos_ids.end()) {
      res.stop_reason = "eos";
      break;
    }
    res.tokens.push_back(next);
    history.push_back(next);
    if (!on_token(next)) {
      res.stop_reason = "stop";
      break;
    }
    if (opt.max_new_tokens >= 0 && i + 1 == opt.max_new_tokens) break;
    if (engine.length(0) >= engine.max_context()) {
      res.stop_reason = "context";
      break;
    }
    next = next_of({next});
  }
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace mole
