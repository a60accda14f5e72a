// Sampler implementation. Candidates are (id, logit) pairs narrowed step by step; the draw uses 53 random bits
// from mt19937_64, so a seed gives the same tokens on every platform.
#include "model/sampling.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <utility>

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

// The order every step below works in: by logit, descending, ties by id (a total order, so that every filter keeps a
// prefix and results are deterministic).
bool before(const Cand& a, const Cand& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Softmax probabilities of the candidates (sorted by logit, descending) at temperature 1.
std::vector<double> probs_of(const std::vector<Cand>& c) {
  std::vector<double> pr(c.size());
  const double m = c[0].logit;
  double s = 0;
  for (size_t i = 0; i < c.size(); i++) s += pr[i] = softmax_term(c[i].logit, m);
  for (double& x : pr) x /= s;
  return pr;
}

// The largest magnitude among logits[b, e), by its bits (a NaN's lie above infinity's), and whether any of them is at
// least t: one pass, which the compiler vectorizes.
struct BlockScan {
  uint32_t magnitude = 0;
  bool any = false;
};
BlockScan scan_block(const float* logits, size_t b, size_t e, float t) {
  uint32_t magnitude = 0;
  int any = 0;
  for (size_t i = b; i < e; i++) {
    magnitude = std::max(magnitude, std::bit_cast<uint32_t>(logits[i]) & 0x7fffffffu);
    any |= logits[i] >= t;
  }
  return {magnitude, any != 0};
}
constexpr uint32_t kInfinityBits = 0x7f800000u;  // above it: a NaN

// A float threshold for `x >= t` over floats x: t rounded to the nearest float (no float lies between the two), or an
// infinity past the floats' range.
float float_threshold(double t) {
  constexpr float kMax = std::numeric_limits<float>::max(), kInf = std::numeric_limits<float>::infinity();
  return t > double(kMax) ? kInf : t < -double(kMax) ? -kInf : float(t);
}

constexpr size_t kScanBlock = 16;  // logits a block of the scan below

// The first k candidates in the order above (k < the vocabulary), in that order: what sorting all of them and keeping
// k gives. Id i's logit is logits[i], or for an id of `penalized` (sorted by id, each once) the one there. A heap
// holds the best k so far with the last of them on top; past the first few hundred blocks, nearly every block of
// logits holds none that would come before it, and one vectorized pass (scan_block, which also finds a NaN, a
// mole::Error at `where`) passes it over. The penalized ids join at the end, with their own logits (the set of the
// first k does not depend on the order it is built in).
std::vector<Cand> top_k_of(const std::vector<float>& logits, const std::vector<Cand>& penalized, size_t k,
                           const std::string& where) {
  std::vector<Cand> top;
  top.reserve(k);
  auto offer = [&](const Cand& x) {
    if (top.size() < k) {
      top.push_back(x);
      if (top.size() == k) std::make_heap(top.begin(), top.end(), before);  // front: the last in the order
    } else if (before(x, top.front())) {
      std::pop_heap(top.begin(), top.end(), before);
      top.back() = x;
      std::push_heap(top.begin(), top.end(), before);
    }
  };
  size_t next = 0;  // the first penalized id not yet passed
  for (size_t b = 0; b < logits.size(); b += kScanBlock) {
    const size_t e = std::min(logits.size(), b + kScanBlock);
    const float t = top.size() == k ? float_threshold(top.front().logit) : -std::numeric_limits<float>::infinity();
    const BlockScan scan = scan_block(logits.data(), b, e, t);
    if (scan.magnitude > kInfinityBits) throw nan_logits_error(where);
    if (!scan.any) continue;
    for (size_t i = b; i < e; i++) {
      while (next < penalized.size() && size_t(penalized[next].id) < i) next++;
      if (next < penalized.size() && size_t(penalized[next].id) == i) continue;
      offer(Cand{int32_t(i), double(logits[i])});
    }
  }
  for (const Cand& x : penalized) offer(x);
  std::sort(top.begin(), top.end(), before);
  return top;
}

// A float's place in the order as an unsigned key: smaller for a larger value, equal for equal values (-0 as +0).
uint32_t order_key(float v) {
  const uint32_t u = v == 0.0f ? 0u : std::bit_cast<uint32_t>(v);
  return (u & 0x80000000u) ? u : ~(u | 0x80000000u);
}

// Every candidate (as top_k_of's), in the order: the logits without the penalized ids by a stable radix sort of
// their keys (in id order to begin with, so ties stay in id order), merged with the penalized ones. Several times as
// fast as a comparison sort of the whole vocabulary.
std::vector<Cand> sorted_all(const std::vector<float>& logits, const std::vector<Cand>& penalized,
                             const std::string& where) {
  if (scan_block(logits.data(), 0, logits.size(), 0.0f).magnitude > kInfinityBits) throw nan_logits_error(where);
  struct Keyed {
    uint32_t key;
    int32_t id;
  };
  std::vector<Keyed> a, b(logits.size() - penalized.size());
  a.reserve(b.size());
  for (size_t i = 0, next = 0; i < logits.size(); i++) {
    if (next < penalized.size() && size_t(penalized[next].id) == i) {
      next++;
      continue;
    }
    a.push_back({order_key(logits[i]), int32_t(i)});
  }
  constexpr int kDigit = 11;  // three passes cover the key's 32 bits
  for (int shift = 0; shift < 32; shift += kDigit) {
    std::vector<size_t> start(size_t(1) << kDigit);
    for (const Keyed& x : a) start[(x.key >> shift) & ((1u << kDigit) - 1)]++;
    size_t sum = 0;
    for (size_t& s : start) sum += std::exchange(s, sum);
    for (const Keyed& x : a) b[start[(x.key >> shift) & ((1u << kDigit) - 1)]++] = x;
    a.swap(b);
  }
  std::vector<Cand> sorted(a.size()), pen = penalized, out(logits.size());
  for (size_t i = 0; i < a.size(); i++) sorted[i] = {a[i].id, double(logits[size_t(a[i].id)])};
  std::sort(pen.begin(), pen.end(), before);
  std::merge(sorted.begin(), sorted.end(), pen.begin(), pen.end(), out.begin(), before);
  return out;
}

}  // namespace

std::vector<int32_t> top_ids(const std::vector<float>& logits, size_t k, const std::string& where) {
  const std::vector<Cand> c = k < logits.size() ? top_k_of(logits, {}, k, where) : sorted_all(logits, {}, where);
  std::vector<int32_t> ids(c.size());
  for (size_t i = 0; i < c.size(); i++) ids[i] = c[i].id;
  return ids;
}

int32_t Sampler::sample(const std::vector<float>& logits, const std::vector<int32_t>& history,
                        const std::string& where) {
  // A NaN has no place in the order below (std::sort needs one), and no probability: the scans throw on one.
  std::vector<Cand> penalized;  // the recent tokens' logits after the penalty, by id, each once
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n != 0) {
    const size_t n = p_.repeat_last_n < 0 ? history.size() : std::min(history.size(), size_t(p_.repeat_last_n));
    for (auto it = history.end() - long(n); it != history.end(); ++it)
      if (*it >= 0 && size_t(*it) < logits.size()) penalized.push_back({*it, 0.0});
    std::sort(penalized.begin(), penalized.end(), [](const Cand& a, const Cand& b) { return a.id < b.id; });
    penalized.erase(
        std::unique(penalized.begin(), penalized.end(), [](const Cand& a, const Cand& b) { return a.id == b.id; }),
        penalized.end());
    for (Cand& x : penalized) {
      const double l = logits[size_t(x.id)];
      x.logit = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  if (p_.temperature <= 0.0f) return top_k_of(logits, penalized, 1, where)[0].id;  // greedy: the first in the order
  // Top-k keeps the first k in the order; without it, every candidate goes on, sorted.
  std::vector<Cand> c = p_.top_k > 0 && size_t(p_.top_k) < logits.size()
                            ? top_k_of(logits, penalized, size_t(p_.top_k), where)
                            : sorted_all(logits, penalized, where);
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
