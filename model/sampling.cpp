// Sampler implementation. Candidates are (id, logit) pairs narrowed step by step; the draw uses 53 random bits
// from mt19937_64, so a seed gives the same tokens on every platform.
#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace mole {

int32_t argmax(const float* logits, size_t n) {
  int32_t best = -1;
  for (size_t i = 0; i < n; i++) {
    if (logit_is_nan(logits[i])) return -1;
    if (best < 0 || logits[i] > logits[size_t(best)]) best = int32_t(i);
  }
  return best;
}

int32_t argmax(const std::vector<float>& logits) {
  return argmax(logits.data(), logits.size());
}

Error nan_logits_error(const std::string& where) {
  return Error(
      "the model computed NaN logits at " + where +
      ", so there is no next token. If --backend cpu computes them too, the checkpoint's weights or lookup "
      "table hold NaN or infinity (or values past their dtype's range); if only a GPU backend does, "
      "`mole parity -m DIR --backend NAME` checks that backend against the CPU reference, op by op and on this "
      "model");
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}

bool Sampler::argmax_only() const {
  return p_.temperature <= 0.0f && (p_.repeat_penalty == 1.0f || p_.repeat_last_n == 0);
}

namespace {

struct Cand {
  int32_t id;
  double logit;  // in double: a float logit divided by a tiny --temp or --repeat-penalty stays finite
};

// Softmax probabilities of the candidates (sorted by logit, descending) at temperature 1.
std::vector<double> probs_of(const std::vector<Cand>& c) {
  std::vector<double> pr(c.size());
  const double m = c[0].logit;
  double s = 0;
  for (size_t i = 0; i < c.size(); i++) s += pr[i] = softmax_term(c[i].logit, m);
  for (double& x : pr) x /= s;
  return pr;
}

}  // namespace

int32_t Sampler::sample(const std::vector<float>& logits, const std::vector<int32_t>& history,
                        const std::string& where) {
  // A NaN has no place in the order below (std::sort needs one), and no probability.
  for (float v : logits)
    if (logit_is_nan(v)) throw nan_logits_error(where);
  std::vector<Cand> c(logits.size());
  for (size_t i = 0; i < logits.size(); i++) c[i] = {int32_t(i), logits[i]};

  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n != 0) {
    size_t n = p_.repeat_last_n < 0 ? history.size() : std::min(history.size(), size_t(p_.repeat_last_n));
    std::unordered_set<int32_t> recent(history.end() - long(n), history.end());
    for (int32_t id : recent) {
      if (id < 0 || size_t(id) >= c.size()) continue;
      double& l = c[size_t(id)].logit;
      l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  // Sorted by logit, ties by id (a total order), so that every filter below keeps a prefix and results are
  // deterministic. Greedy needs only the first; top-k only the first k (partial_sort puts exactly the sorted
  // prefix there, at a fraction of sorting the whole vocabulary).
  auto before = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
  if (p_.temperature <= 0.0f) return std::min_element(c.begin(), c.end(), before)->id;
  if (p_.top_k > 0 && size_t(p_.top_k) < c.size()) {
    std::partial_sort(c.begin(), c.begin() + p_.top_k, c.end(), before);
    c.resize(size_t(p_.top_k));
  } else {
    std::sort(c.begin(), c.end(), before);
  }
  if (p_.top_p < 1.0f) {
    std::vector<double> pr = probs_of(c);
    double cum = 0;
    size_t keep = c.size();
    for (size_t i = 0; i < c.size(); i++) {
      cum += pr[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    c.resize(keep);
  }
  if (p_.min_p > 0.0f) {
    std::vector<double> pr = probs_of(c);
    size_t keep = 1;
    while (keep < c.size() && pr[keep] >= p_.min_p * pr[0]) keep++;
    c.resize(keep);
  }
  for (Cand& x : c) x.logit /= p_.temperature;
  std::vector<double> pr = probs_of(c);
  double u = double(rng_() >> 11) * 0x1.0p-53, cum = 0;
  for (size_t i = 0; i < c.size(); i++) {
    cum += pr[i];
    if (u < cum) return c[i].id;
  }
  return c.back().id;
}

}  // namespace mole
