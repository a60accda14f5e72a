// Sampler checks against probabilities computed here by hand, not by the sampler.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <type_traits>
#include <vector>

#include "model/error.h"
#include "model/sampling.h"

using namespace mole;

namespace {

std::map<int32_t, double> frequencies(SamplingParams p, const std::vector<float>& logits, int draws,
                                      const std::vector<int32_t>& history = {}) {
  Sampler s(p);
  std::map<int32_t, double> f;
  for (int i = 0; i < draws; i++) f[s.sample(logits, history)] += 1.0 / draws;
  return f;
}

// Probabilities 0.5, 0.3, 0.15, 0.05 as logits.
const std::vector<float> kLogits = {float(std::log(0.5)), float(std::log(0.3)), float(std::log(0.15)),
                                    float(std::log(0.05))};

SamplingParams plain() {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 123;
  return p;
}

}  // namespace

TEST_CASE("greedy picks the argmax, the lowest id on ties") {
  SamplingParams p = plain();
  p.temperature = 0.0f;
  Sampler s(p);
  CHECK(s.sample({0.1f, 3.0f, -2.0f, 3.0f}, {}) == 1);
  CHECK(argmax({0.1f, 3.0f, -2.0f, 4.0f}) == 3);
  CHECK(argmax({-0.0f, 0.0f}) == 0);  // equal values
  CHECK(argmax({-INFINITY, -INFINITY}) == 0);
  CHECK(argmax({1.0f, INFINITY, INFINITY}) == 1);
  CHECK(argmax(std::vector<float>{}) == -1);
}

TEST_CASE("logits that hold a NaN: argmax gives -1 and sample() an error naming where, at any temperature") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK(argmax({1.0f, nan, 3.0f}) == -1);
  CHECK(argmax({nan}) == -1);
  CHECK(argmax({3.0f, 1.0f, -nan}) == -1);  // either sign
  CHECK(logit_is_nan(nan));
  CHECK(logit_is_nan(-nan));
  CHECK_FALSE(logit_is_nan(INFINITY));
  CHECK_FALSE(logit_is_nan(-INFINITY));
  // Sorting with a NaN has no order to follow (std::sort's behaviour is undefined): every path refuses first.
  std::vector<float> many(50000);
  for (size_t i = 0; i < many.size(); i++) many[i] = (i % 7 == 3) ? nan : float(i % 11);
  for (float temp : {0.0f, 0.7f}) {
    for (int top_k : {0, 40}) {
      SamplingParams p = plain();
      p.temperature = temp;
      p.top_k = top_k;
      Sampler s(p);
      try {
        s.sample(many, {1, 2}, "position 9");
        FAIL("no error at temperature " << temp << ", top-k " << top_k);
      } catch (const Error& e) {
        CHECK(std::string(e.what()).find("NaN logits at position 9") != std::string::npos);
      }
    }
  }
}

TEST_CASE("infinite logits sample as the softmax's limit: the largest ones share all the weight") {
  // Two +inf among finite values: half each, the others never.
  auto f = frequencies(plain(), {1.0f, INFINITY, 5.0f, INFINITY}, 20000);
  CHECK(f[0] + f[2] == 0.0);
  CHECK(f[1] == doctest::Approx(0.5).epsilon(0.05));
  CHECK(f[3] == doctest::Approx(0.5).epsilon(0.05));
  // -inf never drawn beside a finite value; every one -inf: uniform.
  f = frequencies(plain(), {-INFINITY, 0.0f, -INFINITY}, 1000);
  CHECK(f[1] == doctest::Approx(1.0));
  f = frequencies(plain(), {-INFINITY, -INFINITY}, 20000);
  CHECK(f[0] == doctest::Approx(0.5).epsilon(0.05));
  // With the filters on (top-p and min-p use the same weights).
  SamplingParams p = plain();
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.top_k = 3;
  f = frequencies(p, {INFINITY, 2.0f, 3.0f}, 1000);
  CHECK(f[0] == doctest::Approx(1.0));
}

TEST_CASE("a tiny temperature or repeat penalty makes no infinities of finite logits: the largest still wins") {
  SamplingParams p = plain();
  p.temperature = 1e-38f;  // 5 / 1e-38 and 4 / 1e-38 are both +inf in float
  CHECK(frequencies(p, {5.0f, 4.0f}, 1000)[0] == doctest::Approx(1.0));
  p = plain();
  p.repeat_penalty = 1e-6f;  // 3e38 / 1e-6 and 2e38 / 1e-6 too
  p.repeat_last_n = -1;
  CHECK(frequencies(p, {2e38f, 3e38f}, 1000, {0, 1})[1] == doctest::Approx(1.0));
}

TEST_CASE("temperature 1 with no filters samples the softmax distribution") {
  auto f = frequencies(plain(), kLogits, 200000);
  CHECK(f[0] == doctest::Approx(0.5).epsilon(0.02));
  CHECK(f[1] == doctest::Approx(0.3).epsilon(0.02));
  CHECK(f[2] == doctest::Approx(0.15).epsilon(0.03));
  CHECK(f[3] == doctest::Approx(0.05).epsilon(0.05));
}

TEST_CASE("temperature 0.5 squares the odds") {
  SamplingParams p = plain();
  p.temperature = 0.5f;
  auto f = frequencies(p, kLogits, 200000);
  double z = 0.25 + 0.09 + 0.0225 + 0.0025;
  CHECK(f[0] == doctest::Approx(0.25 / z).epsilon(0.02));
  CHECK(f[1] == doctest::Approx(0.09 / z).epsilon(0.03));
}

TEST_CASE("top-k, top-p and min-p keep the right candidates, renormalised") {
  SamplingParams p = plain();
  p.top_k = 2;
  auto f = frequencies(p, kLogits, 100000);
  CHECK(f.count(2) == 0);
  CHECK(f[0] == doctest::Approx(0.5 / 0.8).epsilon(0.02));

  p = plain();
  p.top_p = 0.9f;  // cumulative 0.5, 0.8, 0.95: the third token reaches 0.9, the fourth is dropped
  f = frequencies(p, kLogits, 100000);
  CHECK(f.count(3) == 0);
  CHECK(f[2] == doctest::Approx(0.15 / 0.95).epsilon(0.05));

  p = plain();
  p.min_p = 0.4f;  // keeps p >= 0.2: tokens 0 and 1
  f = frequencies(p, kLogits, 100000);
  CHECK(f.count(2) == 0);
  CHECK(f.count(3) == 0);
  CHECK(f[1] == doctest::Approx(0.3 / 0.8).epsilon(0.03));
}

TEST_CASE("repetition penalty divides positive and multiplies negative logits of recent tokens") {
  SamplingParams p = plain();
  p.temperature = 0.0f;
  p.repeat_penalty = 1.2f;
  Sampler s(p);
  CHECK(s.sample({2.0f, 1.9f}, {0}) == 1);    // 2.0 / 1.2 = 1.67 < 1.9
  CHECK(s.sample({-1.0f, -1.1f}, {0}) == 1);  // -1.0 * 1.2 = -1.2 < -1.1
  CHECK(s.sample({2.0f, 1.9f}, {1}) == 0);
  p.repeat_last_n = 1;
  Sampler s2(p);
  CHECK(s2.sample({2.0f, 1.9f}, {0, 1}) == 0);  // token 0 is outside the last 1
}

TEST_CASE("argmax_only: greedy without a penalty in effect, where sample() is the argmax whatever the history") {
  SamplingParams p = plain();
  CHECK_FALSE(Sampler(p).argmax_only());  // temperature 1
  p.temperature = 0.0f;
  CHECK(Sampler(p).argmax_only());
  p.repeat_penalty = 1.2f;
  CHECK_FALSE(Sampler(p).argmax_only());  // the penalty changes the pick (see above)
  p.repeat_last_n = 0;
  CHECK(Sampler(p).argmax_only());  // ... unless it looks at no tokens
  Sampler s(p);
  CHECK(s.sample({2.0f, 1.9f}, {0}) == argmax({2.0f, 1.9f}));
}

TEST_CASE("a seed fixes the draws") {
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); i++) logits[i] = float(std::sin(double(i)));
  SamplingParams p;
  p.seed = 7;
  Sampler a(p), b(p);
  p.seed = 8;
  Sampler c(p);
  std::vector<int32_t> ra, rb, rc;
  for (int i = 0; i < 50; i++) {
    ra.push_back(a.sample(logits, {}));
    rb.push_back(b.sample(logits, {}));
    rc.push_back(c.sample(logits, {}));
  }
  CHECK(ra == rb);
  CHECK(ra != rc);
}

namespace {

// The chain as plainly as it can be written (mole's sampler until it learned to skip most of the vocabulary): every
// id a candidate, the penalty applied in place, a sort of all of them (a partial one for top-k), then the filters.
// The sampler must draw exactly what this draws, from the same seed.
class PlainSampler {
 public:
  explicit PlainSampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
  int32_t sample(const std::vector<float>& logits, const std::vector<int32_t>& history) {
    struct Cand {
      int32_t id;
      double logit;
    };
    std::vector<Cand> c(logits.size());
    for (size_t i = 0; i < logits.size(); i++) c[i] = {int32_t(i), logits[i]};
    if (p_.repeat_penalty != 1.0f && p_.repeat_last_n != 0) {
      size_t n = p_.repeat_last_n < 0 ? history.size() : std::min(history.size(), size_t(p_.repeat_last_n));
      std::set<int32_t> recent(history.end() - long(n), history.end());
      for (int32_t id : recent) {
        if (id < 0 || size_t(id) >= c.size()) continue;
        double& l = c[size_t(id)].logit;
        l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
      }
    }
    auto before = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
    if (p_.temperature <= 0.0f) return std::min_element(c.begin(), c.end(), before)->id;
    if (p_.top_k > 0 && size_t(p_.top_k) < c.size()) {
      std::partial_sort(c.begin(), c.begin() + p_.top_k, c.end(), before);
      c.resize(size_t(p_.top_k));
    } else {
      std::sort(c.begin(), c.end(), before);
    }
    auto probs = [&] {
      std::vector<double> pr(c.size());
      double s = 0;
      for (size_t i = 0; i < c.size(); i++) s += pr[i] = softmax_term(c[i].logit, c[0].logit);
      for (double& x : pr) x /= s;
      return pr;
    };
    if (p_.top_p < 1.0f) {
      std::vector<double> pr = probs();
      double cum = 0;
      size_t keep = c.size();
      for (size_t i = 0; i < c.size(); i++)
        if ((cum += pr[i]) >= p_.top_p) {
          keep = i + 1;
          break;
        }
      c.resize(keep);
    }
    if (p_.min_p > 0.0f) {
      std::vector<double> pr = probs();
      size_t keep = 1;
      while (keep < c.size() && pr[keep] >= p_.min_p * pr[0]) keep++;
      c.resize(keep);
    }
    for (Cand& x : c) x.logit /= p_.temperature;
    std::vector<double> pr = probs();
    double u = double(rng_() >> 11) * 0x1.0p-53, cum = 0;
    for (size_t i = 0; i < c.size(); i++)
      if (u < (cum += pr[i])) return c[i].id;
    return c.back().id;
  }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
};

}  // namespace

TEST_CASE(
    "the sampler draws exactly what the plain chain draws: any vocabulary, ties, infinities, penalties, filters") {
  std::mt19937_64 rng(2026);
  auto pick = [&](auto... v) {
    const std::vector<std::common_type_t<decltype(v)...>> options{v...};
    return options[rng() % options.size()];
  };
  int cases = 0, differ = 0;
  for (int vocab : {1, 2, 7, 16, 17, 100, 1000, 50304}) {
    for (int round = 0; round < (vocab > 1000 ? 12 : 60); round++) {
      std::normal_distribution<float> normal(0.0f, pick(0.5f, 3.0f, 20.0f));
      std::vector<float> logits(static_cast<size_t>(vocab));
      const int kind = int(rng() % 4);  // 0: distinct; 1: many ties; 2: signed zeros and ties; 3: some infinities
      for (float& v : logits) {
        v = normal(rng);
        if (kind == 1) v = std::round(v);
        if (kind == 2) v = rng() % 3 == 0 ? (rng() % 2 ? 0.0f : -0.0f) : std::round(v * 2) / 2;
        if (kind == 3 && rng() % 50 == 0) v = (rng() % 2 ? 1 : -1) * std::numeric_limits<float>::infinity();
      }
      SamplingParams p;
      p.temperature = pick(0.0f, 1e-3f, 0.8f, 1.0f, 1.7f);
      p.top_k = pick(0, 1, 3, 40, vocab - 1, vocab, vocab + 3);
      p.top_p = pick(1.0f, 0.95f, 0.5f);
      p.min_p = pick(0.0f, 0.05f, 0.3f);
      p.repeat_penalty = pick(1.0f, 1.1f, 1.3f, 0.7f, 1e-30f);
      p.repeat_last_n = pick(-1, 0, 8, 64);
      p.seed = rng();
      std::vector<int32_t> history;
      for (int i = int(rng() % 80); i > 0; i--)
        history.push_back(rng() % 10 == 0 ? pick(-3, vocab, vocab + 5) : int32_t(rng() % uint64_t(vocab)));
      Sampler fast(p);
      PlainSampler plain(p);
      for (int draw = 0; draw < 8; draw++) differ += fast.sample(logits, history) != plain.sample(logits, history);
      cases++;
    }
  }
  CHECK(cases > 400);
  CHECK(differ == 0);
}

TEST_CASE("top_ids gives the first k ids of a partial sort of all of them, ties to the lower id; a NaN is an error") {
  std::mt19937_64 rng(11);
  int differ = 0;
  for (int vocab : {1, 5, 16, 33, 1000, 50304}) {
    for (int round = 0; round < 6; round++) {
      std::vector<float> logits(static_cast<size_t>(vocab));
      std::normal_distribution<float> normal(0.0f, 4.0f);
      for (float& v : logits) v = round % 2 ? std::round(normal(rng)) : normal(rng);  // odd rounds: many ties
      for (size_t k : {size_t(1), size_t(5), size_t(40), size_t(vocab), size_t(vocab) + 2}) {
        std::vector<int32_t> order(logits.size());
        for (size_t i = 0; i < order.size(); i++) order[i] = int32_t(i);
        const size_t n = std::min(k, order.size());
        std::partial_sort(order.begin(), order.begin() + long(n), order.end(), [&](int32_t a, int32_t b) {
          return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
        });
        order.resize(n);
        differ += top_ids(logits, k, "here") != order;
      }
    }
  }
  CHECK(differ == 0);
  std::vector<float> nan_row(100, 1.0f);
  nan_row[77] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(top_ids(nan_row, 5, "position 9"), doctest::Contains("position 9"), Error);
  CHECK_THROWS_WITH_AS(top_ids(nan_row, 500, "position 9"), doctest::Contains("position 9"), Error);
}
