// The generation session (model/session.h): one event per generated token, in order and adding up to the result;
// cancellation honoured within one step; the router's weights (a distribution per layer, equal to a plain-loop
// computation from the checkpoint's tensors); the stop-string filter; and a router-weight graph that leaves the
// logits as they were.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <numeric>
#include <stop_token>
#include <thread>

#include "model/cpu_backend.h"
#include "model/error.h"
#include "model/session.h"
#include "tests/test_helpers.h"

using namespace mole;

namespace {

LoadOptions cpu_options(const std::string& dir) {
  LoadOptions o;
  o.model_dir = dir;
  o.make_backend = [](const std::string&, const BackendOptions&) { return make_cpu_backend(); };
  o.lut_dtype = DType::F32;
  o.engine.max_context = 64;
  return o;
}

const std::vector<int32_t> kPrompt = {5, 17, 300, 2};

std::vector<float> weights_of(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  t.to_f32(0, t.numel(), v.data());
  return v;
}

// rmsnorm(x) * w, in double.
std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); i++) y[i] = x[i] * s * w[i];
  return y;
}

// y = W (N, K) @ x (K), in double.
std::vector<double> product(const std::vector<float>& W, const std::vector<double>& x, size_t N) {
  std::vector<double> y(N, 0.0);
  for (size_t n = 0; n < N; n++)
    for (size_t k = 0; k < x.size(); k++) y[n] += double(W[n * x.size() + k]) * x[k];
  return y;
}

// Layer 0's router weights for a one-token prompt, from the tensors with plain loops: with a single position,
// attention's softmax is 1, so each head's output is its value row and RoPE does not matter.
std::vector<double> first_layer_router(const LoadedModel& m, int32_t id) {
  const Config& c = m.cfg;
  const LayerWeights& lw = m.weights.layers[0];
  const size_t D = size_t(c.hidden_size), hd = size_t(c.head_dim), H = size_t(c.num_heads);
  const size_t group = H / size_t(c.num_kv_heads);
  std::vector<float> embed = weights_of(*m.weights.embed);
  std::vector<double> x(embed.begin() + long(size_t(id) * D), embed.begin() + long((size_t(id) + 1) * D));
  const std::vector<double> xn = rmsnorm(x, weights_of(*lw.input_norm), c.rms_norm_eps);
  const std::vector<double> v = product(weights_of(*lw.v), xn, size_t(c.num_kv_heads) * hd);
  std::vector<double> att(H * hd);
  for (size_t h = 0; h < H; h++)
    for (size_t d = 0; d < hd; d++) att[h * hd + d] = v[(h / group) * hd + d];
  const std::vector<double> o = product(weights_of(*lw.o), att, D);
  for (size_t i = 0; i < D; i++) x[i] += o[i];
  std::vector<double> logits =
      product(weights_of(*lw.router), rmsnorm(x, weights_of(*lw.post_norm), c.rms_norm_eps), size_t(c.num_experts));
  const double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (double& l : logits) sum += (l = std::exp(l - mx));
  for (double& l : logits) l /= sum;
  return logits;
}

}  // namespace

TEST_CASE("--lut auto: a table bigger than half of the host memory available stays on disk, saying why") {
  const uint64_t GiB = uint64_t(1) << 30;
  std::string note;
  CHECK(auto_lut_placement(LutPlacement::Host, 10 * GiB, 20 * GiB, &note) == LutPlacement::Host);  // exactly half
  CHECK(note.empty());
  CHECK(auto_lut_placement(LutPlacement::Host, 10 * GiB + 1, 20 * GiB, &note) == LutPlacement::Disk);
  CHECK(note ==
        "--lut auto: the table (10.0 GiB) is more than half of the host memory available (20.0 GiB), so its rows "
        "are read from the file (--lut disk); --lut host holds it in memory");
  note.clear();
  CHECK(auto_lut_placement(LutPlacement::Host, 40 * GiB, 0, &note) == LutPlacement::Host);  // unknown: no bound
  CHECK(auto_lut_placement(LutPlacement::Disk, 1, 1 << 20, &note) == LutPlacement::Disk);
  CHECK(note.empty());
  CHECK(auto_lut_placement(LutPlacement::Host, 40 * GiB, 16 * GiB, nullptr) == LutPlacement::Disk);
  // This machine's figure: something, and less than a petabyte.
  const uint64_t available = host_memory_available();
  CHECK(available > 0);
  CHECK(available < (uint64_t(1) << 50));
}

TEST_CASE("session: one event per generated token, in order, adding up to the result") {
  test::TempDir tmp;
  LoadOptions o = cpu_options(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}));
  o.profile = true;
  o.engine.router_probs = true;
  Session s(o);
  const LoadedModel& m = s.model();
  REQUIRE(m.tokenizer);
  GenerateOptions g;
  g.max_new_tokens = 12;
  g.sampling.seed = 3;
  g.top_k = 5;
  std::vector<TokenEvent> events;
  bool prefilled = false;
  g.on_prefilled = [&] {
    CHECK(events.empty());
    prefilled = true;
  };
  const GenerateResult r = s.generate(kPrompt, g, [&](const TokenEvent& ev) {
    CHECK(prefilled);
    events.push_back(ev);
  });
  CHECK(r.stop_reason == "length");
  REQUIRE(r.tokens.size() == 12);
  REQUIRE(events.size() == 12);
  std::string text;
  const int L = m.cfg.num_layers, E = m.cfg.num_experts;
  for (size_t i = 0; i < events.size(); i++) {
    const TokenEvent& ev = events[i];
    CAPTURE(i);
    CHECK(ev.index == int(i));
    CHECK(ev.id == r.tokens[i]);
    CHECK(ev.position == int(kPrompt.size() + i) - 1);
    CHECK(ev.input_id == (i == 0 ? kPrompt.back() : r.tokens[i - 1]));
    CHECK(ev.step_tokens == (i == 0 ? int(kPrompt.size()) : 1));
    text += ev.piece;
    // The table's traffic: one row per token of the step.
    CHECK(ev.lut_rows == uint64_t(ev.step_tokens));
    CHECK(ev.lut_bytes == ev.lut_rows * m.lut->row_bytes());
    // Times per phase from the CPU backend's profile, inside the step's wall time.
    CHECK(ev.times.wall > 0);
    CHECK(ev.times.attention > 0);
    CHECK(ev.times.mlp > 0);
    CHECK(ev.times.lut > 0);
    CHECK(ev.times.attention + ev.times.mlp + ev.times.lut + ev.times.other <= ev.times.wall);
    CHECK(ev.times.lut_copy == 0);  // the CPU moves nothing
    // The top 5, most likely first, the chosen token's probability among them when it is one of them.
    REQUIRE(ev.top.size() == 5);
    float total = 0;
    for (size_t j = 0; j < ev.top.size(); j++) {
      total += ev.top[j].second;
      if (j > 0) CHECK(ev.top[j].second <= ev.top[j - 1].second);
      if (ev.top[j].first == ev.id) CHECK(ev.top[j].second == ev.prob);
    }
    CHECK(total <= 1.0001f);
    CHECK(ev.prob > 0);
    CHECK(ev.prob <= ev.top[0].second);
    // The router's weights: L distributions over E experts.
    REQUIRE(ev.router.size() == size_t(L * E));
    for (int l = 0; l < L; l++) {
      double sum = 0;
      for (int e = 0; e < E; e++) {
        const float w = ev.router[size_t(l * E + e)];
        CHECK(w >= 0);
        CHECK(w <= 1);
        sum += w;
      }
      CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
    }
  }
  CHECK(text + r.tail == r.text);
  CHECK(r.text == m.tokenizer->decode(r.tokens));
}

TEST_CASE("session: the router's weights equal a plain-loop computation from the checkpoint") {
  test::TempDir tmp;
  for (Form form : {Form::Infer, Form::Train}) {
    CAPTURE(form_name(form));
    LoadOptions o = cpu_options(test::synth(tmp, form_name(form), form, {{"num_key_value_heads", 2}}));
    o.engine.router_probs = true;
    Session s(o);
    GenerateOptions g;
    g.max_new_tokens = 1;
    g.sampling.temperature = 0;
    for (int32_t id : {0, 7, 383}) {
      std::vector<float> got;
      s.generate({id}, g, [&](const TokenEvent& ev) { got = ev.router; });
      const std::vector<double> want = first_layer_router(s.model(), id);
      REQUIRE(got.size() >= want.size());
      for (size_t e = 0; e < want.size(); e++) CHECK(double(got[e]) == doctest::Approx(want[e]).epsilon(1e-5));
    }
  }
}

TEST_CASE("session: a stop request is honoured within one step") {
  test::TempDir tmp;
  Session s(cpu_options(test::synth(tmp, "m", Form::Infer)));
  GenerateOptions g;
  g.max_new_tokens = -1;  // only the context (64) or the request ends it
  g.sampling.temperature = 0;

  std::stop_source before;
  before.request_stop();
  int calls = 0;
  GenerateResult r = s.generate(
      kPrompt, g, [&](const TokenEvent&) { calls++; }, before.get_token());
  CHECK(r.stop_reason == "cancelled");
  CHECK(r.tokens.empty());
  CHECK(calls == 0);

  // Asked during the event of token 2: no step runs after it.
  std::stop_source during;
  r = s.generate(
      kPrompt, g,
      [&](const TokenEvent& ev) {
        if (ev.index == 2) during.request_stop();
      },
      during.get_token());
  CHECK(r.stop_reason == "cancelled");
  CHECK(r.tokens.size() == 3);

  // From another thread, as mole-studio's Stop button does. The event of token 2 waits for the request, so that a
  // fast machine cannot fill the context before this thread asks (a loaded one once did).
  std::stop_source other;
  std::atomic<int> seen{-1};
  std::jthread gen([&] {
    r = s.generate(
        kPrompt, g,
        [&](const TokenEvent& ev) {
          seen = ev.index;
          while (ev.index == 2 && !other.stop_requested()) std::this_thread::yield();
        },
        other.get_token());
  });
  while (seen < 2) std::this_thread::yield();
  other.request_stop();
  gen.join();
  CHECK(r.stop_reason == "cancelled");
  CHECK(r.tokens.size() == 3);

  // A new generation after a cancelled one starts afresh.
  const GenerateResult again = s.generate(kPrompt, g, nullptr, std::stop_token{});
  CHECK(again.stop_reason == "context");
  CHECK(again.tokens.size() == 64 - kPrompt.size() + 1);
}

TEST_CASE("session: a stop asked during the prompt ends its step within an op") {
  test::TempDir tmp;
  const std::string dir = test::synth(tmp, "m", Form::Infer);
  Session s(cpu_options(dir));
  GenerateOptions g;
  g.max_new_tokens = 5;
  g.sampling.temperature = 0;
  bool prefilled = false;
  g.on_prefilled = [&] { prefilled = true; };
  int asked = 0;  // the engine's own check, as the CLI sets one to the signal flag
  s.model().engine->set_cancel([&] { return ++asked == 4; });  // before the prompt's step, then its ops: the third
  int events = 0;
  GenerateResult r = s.generate(kPrompt, g, [&](const TokenEvent&) { events++; });
  CHECK(r.stop_reason == "cancelled");
  CHECK(asked == 4);
  CHECK(!r.prefilled);
  CHECK(r.prefill_tokens_per_s() == 0);  // a prompt cut short has no speed
  CHECK(!prefilled);                     // the caller prints nothing for it
  CHECK(events == 0);
  CHECK(r.tokens.empty());

  // The next generation gives what a fresh session gives.
  s.model().engine->set_cancel(nullptr);
  const GenerateResult again = s.generate(kPrompt, g, nullptr);
  const GenerateResult fresh = Session(cpu_options(dir)).generate(kPrompt, g, nullptr);
  CHECK(again.prefilled);
  CHECK(again.tokens == fresh.tokens);
  CHECK(again.tokens.size() == 5);
}

TEST_CASE("session: greedy decoding gives the same tokens with and without the probabilities") {
  test::TempDir tmp;
  LoadOptions o = cpu_options(test::synth(tmp, "m", Form::Infer));
  Session s(o);
  GenerateOptions g;
  g.max_new_tokens = 20;
  g.sampling.temperature = 0;
  const GenerateResult ids_only = s.generate(kPrompt, g, nullptr);
  g.top_k = 3;
  std::vector<int32_t> top1;
  const GenerateResult with_probs = s.generate(kPrompt, g, [&](const TokenEvent& ev) {
    top1.push_back(ev.top.at(0).first);
    CHECK(ev.router.empty());  // not asked for
  });
  CHECK(ids_only.tokens == with_probs.tokens);
  CHECK(top1 == with_probs.tokens);  // greedy: the chosen token is the most likely one
}

TEST_CASE("session: stop strings end the text before them, even across tokens") {
  StopFilter f({"END", "xyz"});
  bool stopped = false;
  std::string shown = f.push("abc E", stopped);
  CHECK(shown == "abc ");  // "E" may begin END
  CHECK(!stopped);
  shown = f.push("N", stopped);
  CHECK(shown.empty());
  shown = f.push("Dafter", stopped);
  CHECK(stopped);
  CHECK(shown.empty());
  StopFilter g({"END"});
  stopped = false;
  CHECK(g.push("EN", stopped).empty());
  CHECK(g.push("x", stopped) == "ENx");
  CHECK(g.push("E", stopped).empty());
  CHECK(g.flush() == "E");
}

TEST_CASE("session: a graph with the router's weights gives the same logits; errors name what to fix") {
  test::TempDir tmp;
  const std::string dir = test::synth(tmp, "m", Form::Infer);
  LoadedModel m = test::load(dir);
  auto b1 = make_cpu_backend(), b2 = make_cpu_backend();
  EngineOptions plain, probs;
  probs.router_probs = true;
  Engine e1(m.cfg, m.weights, m.table(), *b1, plain), e2(m.cfg, m.weights, m.table(), *b2, probs);
  const auto l1 = e1.step({{0, kPrompt}}, true), l2 = e2.step({{0, kPrompt}}, true);
  CHECK(l1 == l2);
  CHECK(e1.router_probs().empty());
  CHECK(e2.router_probs().size() == kPrompt.size());  // one row per returned row
  e2.step({{0, {9}}});
  CHECK(e2.router_probs().size() == 1);

  Session s(cpu_options(dir));
  test::check_contains(test::error_of([&] { s.encode("hello", "-p"); }), {"-p", "vocabulary", "tokenizer.json"});
  GenerateOptions g;
  test::check_contains(test::error_of([&] { s.generate(std::vector<int32_t>(65, 1), g, nullptr); }),
                       {"65 tokens", "context holds 64"});
  test::check_contains(test::error_of([&] { s.generate({}, g, nullptr); }), {"prompt is empty"});
  test::check_contains(test::error_of([&] { Session bad(cpu_options(tmp / "missing")); }), {"missing"});
}
