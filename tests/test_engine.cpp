// Engine paths that must agree with a single one-pass forward (itself checked against the float64 reference in
// tests/reference/): KV-cache decode, chunked prefill, batches of sequences of different lengths, the three LUT
// placements, and the errors a caller can provoke.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "model/cpu_backend.h"
#include "model/cpu_ops.h"
#include "model/error.h"
#include "model/forward.h"
#include "model/lut_rows.h"
#include "model/parallel.h"
#include "model/sampling.h"
#include "tests/test_helpers.h"

using namespace mole;
using mole::test::rel_l2;

namespace {

struct Loaded : LoadedModel {
  explicit Loaded(const std::string& dir) : LoadedModel(test::load(dir)) {}
  std::vector<std::vector<float>> logits(const std::vector<int32_t>& ids, EngineOptions o = {}) {
    auto be = make_cpu_backend();
    Engine e(cfg, weights, table(), *be, o);
    return e.step({{0, ids}}, true);
  }
};

const std::vector<int32_t> kIds = {5, 17, 300, 2, 99, 383, 0, 42, 7, 128, 64};

}  // namespace

TEST_CASE("KV-cache decode gives the one-pass logits at every position") {
  test::TempDir tmp;
  for (Form form : {Form::Infer, Form::Dense}) {
    Loaded m(test::synth(tmp, form == Form::Infer ? "i" : "d", form));
    auto full = m.logits(kIds);
    auto be = make_cpu_backend();
    Engine e(m.cfg, m.weights, m.lut ? &*m.lut : nullptr, *be, {});
    auto first = e.step({{0, {kIds.begin(), kIds.begin() + 4}}}, true);
    for (size_t t = 0; t < 4; t++) CHECK(rel_l2(first[t], full[t]) < 1e-6);
    for (size_t t = 4; t < kIds.size(); t++) {
      auto row = e.step({{0, {kIds[t]}}}).at(0);
      CHECK(rel_l2(row, full[t]) < 1e-6);
    }
    CHECK(e.length(0) == int(kIds.size()));
  }
}

TEST_CASE("prefill in chunks equals one pass") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer, {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}));
  auto full = m.logits(kIds);
  EngineOptions o;
  o.max_step_tokens = 3;
  auto chunked = m.logits(kIds, o);
  REQUIRE(chunked.size() == full.size());
  for (size_t t = 0; t < full.size(); t++) CHECK(rel_l2(chunked[t], full[t]) < 1e-6);
}

TEST_CASE("a cancelled step stops within an op and leaves the sequences as they were") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer));
  const auto full = m.logits(kIds);  // the one-pass reference
  auto be = make_cpu_backend();
  EngineOptions o;
  o.max_step_tokens = 4;  // kIds runs in three pieces
  Engine e(m.cfg, m.weights, m.table(), *be, o);
  e.step({{0, {kIds[0], kIds[1]}}});
  const int ops = int(e.graph().ops.size());
  // Asked before each piece and before each of its ops: cancelled before piece 1's first op, in the middle of
  // piece 2 (piece 1 having run whole), and before piece 3 (two pieces having run).
  for (const int cancel_at : {2, ops + 1 + 1 + ops / 2, 2 * (ops + 1) + 1}) {
    int asked = 0;
    e.set_cancel([&] { return ++asked == cancel_at; });
    CHECK_THROWS_AS(e.step({{0, {kIds.begin() + 2, kIds.end()}}}, true), StepCancelled);
    CHECK(asked == cancel_at);  // it stopped when asked, not at the end of the step
    CHECK(e.length(0) == 2);    // the pieces that ran are forgotten
  }
  e.set_cancel(nullptr);
  // The sequence goes on as if the cancelled steps had never been: the one-pass logits, position by position.
  const auto rest = e.step({{0, {kIds.begin() + 2, kIds.end()}}}, true);
  REQUIRE(rest.size() == kIds.size() - 2);
  for (size_t t = 2; t < kIds.size(); t++) CHECK(rel_l2(rest[t - 2], full[t]) < 1e-6);
  CHECK(e.length(0) == int(kIds.size()));
}

// The CPU backend, with a read_back that fails when armed: a step a GPU could not finish (its results void).
class FailingBackend final : public Backend {
 public:
  std::unique_ptr<Backend> be = make_cpu_backend();
  bool fail_next_read = false;
  BackendInfo info() const override { return be->info(); }
  BufferId upload_weight(const TensorView& t) override { return be->upload_weight(t); }
  BufferId upload_stacked(const std::vector<const TensorView*>& p) override { return be->upload_stacked(p); }
  BufferId alloc(size_t count, const char* what) override { return be->alloc(count, what); }
  void write(BufferId b, size_t first, size_t count, const float* src) override { be->write(b, first, count, src); }
  void set_lut(const LutStore& lut, LutPlacement p, int max_step_tokens) override {
    be->set_lut(lut, p, max_step_tokens);
  }
  void stream_lut_rows(const std::vector<int32_t>& ids) override { be->stream_lut_rows(ids); }
  void run_step(const StepGraph& g, const StepInputs& in) override { be->run_step(g, in); }
  void read_back(BufferId b, size_t first, size_t count, float* dst) override {
    if (std::exchange(fail_next_read, false)) throw Error("the step failed on the device");
    be->read_back(b, first, count, dst);
  }
  void synchronize() override { be->synchronize(); }
};

TEST_CASE("a step the backend fails to finish leaves the sequences as they were") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer));
  const auto full = m.logits(kIds);
  FailingBackend be;
  EngineOptions o;
  o.max_step_tokens = 4;
  Engine e(m.cfg, m.weights, m.table(), be, o);
  e.step({{0, {kIds[0], kIds[1]}}});
  // A decode step, then a prompt in pieces whose first piece fails: both are errors, and the length stays 2.
  be.fail_next_read = true;
  CHECK_THROWS_WITH_AS(e.step_argmax({{0, {kIds[2]}}}), "the step failed on the device", Error);
  CHECK(e.length(0) == 2);
  be.fail_next_read = true;
  CHECK_THROWS_AS(e.step({{0, {kIds.begin() + 2, kIds.end()}}}, true), Error);
  CHECK(e.length(0) == 2);
  const auto rest = e.step({{0, {kIds.begin() + 2, kIds.end()}}}, true);
  REQUIRE(rest.size() == kIds.size() - 2);
  for (size_t t = 2; t < kIds.size(); t++) CHECK(rel_l2(rest[t - 2], full[t]) < 1e-6);
}

TEST_CASE("the CPU backend's logits are the same bit for bit with and without AVX2") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}));  // GQA, as the attention's groups
  std::vector<int32_t> ids;
  for (int i = 0; i < 150; i++) ids.push_back((kIds[size_t(i) % kIds.size()] + i) % 384);  // three attention slabs
  if (!cpu::use_avx2(true)) {
    MESSAGE("skipped: this CPU has no AVX2, so there is one path only");
    return;
  }
  const auto wide = m.logits(ids);
  cpu::use_avx2(false);
  const auto baseline = m.logits(ids);
  cpu::use_avx2(true);
  REQUIRE(wide.size() == baseline.size());
  int differ = 0;
  for (size_t t = 0; t < wide.size(); t++) differ += wide[t] != baseline[t];
  CHECK(differ == 0);
}

TEST_CASE("a batch of sequences of different lengths equals each sequence alone") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 1}}));
  std::vector<int32_t> a = {1, 2, 3, 4, 5, 6, 7}, b = {300, 200}, c = {9, 8, 7, 6};
  auto la = m.logits(a), lb = m.logits(b), lc = m.logits(c);
  auto be = make_cpu_backend();
  EngineOptions o;
  o.max_batch = 3;
  Engine e(m.cfg, m.weights, &*m.lut, *be, o);
  // Prefill all three in one step (slots out of order), then decode two of them together.
  auto rows = e.step({{2, {c.begin(), c.end() - 1}}, {0, {a.begin(), a.end() - 2}}, {1, {b[0]}}});
  REQUIRE(rows.size() == 3);
  CHECK(rel_l2(rows[0], lc[c.size() - 2]) < 1e-6);
  CHECK(rel_l2(rows[1], la[a.size() - 3]) < 1e-6);
  CHECK(rel_l2(rows[2], lb[0]) < 1e-6);
  rows = e.step({{0, {a[a.size() - 2]}}, {1, {b[1]}}, {2, {c.back()}}});
  CHECK(rel_l2(rows[0], la[a.size() - 2]) < 1e-6);
  CHECK(rel_l2(rows[1], lb[1]) < 1e-6);
  CHECK(rel_l2(rows[2], lc.back()) < 1e-6);
  rows = e.step({{0, {a.back()}}});
  CHECK(rel_l2(rows[0], la.back()) < 1e-6);
  e.reset(1);  // a reset slot starts over
  CHECK(rel_l2(e.step({{1, b}}).at(0), lb.back()) < 1e-6);
}

TEST_CASE("step_argmax returns the argmax of each chunk's last logits row, through chunked prefill and batches") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer));
  EngineOptions o;
  o.max_batch = 2;
  o.max_step_tokens = 4;
  auto b1 = make_cpu_backend(), b2 = make_cpu_backend();
  Engine with_logits(m.cfg, m.weights, m.table(), *b1, o), with_ids(m.cfg, m.weights, m.table(), *b2, o);
  std::vector<Engine::Chunk> chunks = {{0, kIds}, {1, {3, 1, 4}}};
  for (int step = 0; step < 6; step++) {
    auto rows = with_logits.step(chunks);
    auto ids = with_ids.step_argmax(chunks);
    REQUIRE(ids.size() == rows.size());
    chunks.clear();
    for (size_t s = 0; s < rows.size(); s++) {
      CHECK(ids[s] == argmax(rows[s]));
      chunks.push_back({int(s), {ids[s]}});
    }
  }
}

TEST_CASE("the three LUT placements give identical logits") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer, {}, DType::BF16));
  std::vector<std::vector<float>> ref;
  for (LutPlacement p : {LutPlacement::Device, LutPlacement::Host, LutPlacement::Disk}) {
    EngineOptions o;
    o.lut = p;
    auto rows = m.logits(kIds, o);
    if (ref.empty()) ref = rows;
    for (size_t t = 0; t < rows.size(); t++) CHECK(rows[t] == ref[t]);
  }
}

TEST_CASE("the table changes the output: zeroing the router's effect is detectable") {
  // Guards against a RouterLut op that silently does nothing: a MoLE model and the same weights run as dense
  // (without the LUT term) must differ.
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer));
  auto with = m.logits(kIds);
  std::vector<uint8_t> zeros(m.lut->bytes(), 0);
  TensorView tv = *m.weights.moe_table;
  tv.data = zeros.data();
  LutStore z = LutStore::from_tensor(tv, m.cfg.lut_row_elems());
  auto be = make_cpu_backend();
  Engine e(m.cfg, m.weights, &z, *be, {});
  auto without = e.step({{0, kIds}}, true);
  CHECK(rel_l2(without.back(), with.back()) > 1e-2);
}

TEST_CASE("engine errors name what is wrong") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer, {{"max_position_embeddings", 8}}));
  auto be = make_cpu_backend();
  EngineOptions o;
  o.max_batch = 2;
  Engine e(m.cfg, m.weights, &*m.lut, *be, o);
  CHECK_THROWS_WITH_AS(e.step({{0, {384}}}), doctest::Contains("outside the vocabulary"), Error);
  CHECK_THROWS_WITH_AS(e.step({{0, {-1}}}), doctest::Contains("outside the vocabulary"), Error);
  CHECK_THROWS_WITH_AS(e.step({{2, {1}}}), doctest::Contains("outside the batch"), Error);
  CHECK_THROWS_WITH_AS(e.step({{0, {1}}, {0, {2}}}), doctest::Contains("twice"), Error);
  CHECK_THROWS_WITH_AS(e.step({{0, std::vector<int32_t>(9, 1)}}), doctest::Contains("longer than the context"), Error);
  CHECK(e.length(0) == 0);  // a refused step changes nothing
  e.step({{0, std::vector<int32_t>(8, 1)}});
  CHECK_THROWS_WITH_AS(e.step({{0, {1}}}), doctest::Contains("longer than the context"), Error);
  o.max_context = 16;  // past max_position_embeddings without rope scaling
  auto be2 = make_cpu_backend();
  CHECK_THROWS_WITH_AS(Engine(m.cfg, m.weights, &*m.lut, *be2, o), doctest::Contains("max_position_embeddings"), Error);
}

TEST_CASE("engine sizes: --ubatch-size past the context sizes nothing more; out-of-range sizes are errors") {
  test::TempDir tmp;
  Loaded m(test::synth(tmp, "m", Form::Infer, {{"max_position_embeddings", 8}}));
  const auto expected = m.logits({1, 2, 3});
  // A step holds at most B*S tokens, so a 65536-token --ubatch-size allocates for 8 (a 65536-row buffer of logits
  // would need 96 MiB for this model's 384-id vocabulary).
  EngineOptions o;
  o.max_step_tokens = kMaxStepTokens;
  auto be = make_cpu_backend();
  Engine e(m.cfg, m.weights, &*m.lut, *be, o);
  CHECK(e.graph().max_tokens == 8);
  CHECK(rel_l2(e.step({{0, {1, 2, 3}}}, true).back(), expected.back()) == 0.0);

  auto be2 = make_cpu_backend();
  o.max_step_tokens = 0;
  CHECK_THROWS_WITH_AS(Engine(m.cfg, m.weights, &*m.lut, *be2, o), doctest::Contains("--ubatch-size"), Error);
  o.max_step_tokens = kMaxStepTokens + 1;  // the GPU kernels' grids hold at most this many rows a step
  CHECK_THROWS_WITH_AS(Engine(m.cfg, m.weights, &*m.lut, *be2, o), doctest::Contains("--ubatch-size 65537"), Error);
  o.max_step_tokens = 4;
  o.max_batch = kMaxBatch + 1;
  CHECK_THROWS_WITH_AS(Engine(m.cfg, m.weights, &*m.lut, *be2, o), doctest::Contains("batch size"), Error);
  o.max_batch = 1;
  Loaded scaled(
      test::synth(tmp, "s", Form::Infer,
                  {{"max_position_embeddings", 8}, {"rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}}}));
  o.max_context = kMaxContext + 1;
  CHECK_THROWS_WITH_AS(Engine(scaled.cfg, scaled.weights, &*scaled.lut, *be2, o), doctest::Contains("--ctx-size"),
                       Error);
}

TEST_CASE("thread counts outside [0, kMaxThreads] are errors naming -t; the pool restarts at the size asked for") {
  CHECK_THROWS_WITH_AS(set_num_threads(kMaxThreads + 1), doctest::Contains("-t"), Error);
  CHECK_THROWS_WITH_AS(set_num_threads(-1), doctest::Contains("-t"), Error);
  set_num_threads(3);
  CHECK(num_threads() == 3);
  set_num_threads(0);  // back to one per core for the other cases
  CHECK(num_threads() == cpu_cores());
  CHECK(cpu_cores() >= 1);
}

TEST_CASE("a cgroup's CPU quota in cores: quota over period, rounded up; none for max, -1 or no number") {
  CHECK(cpu_quota_cores("200000", "100000") == 2);
  CHECK(cpu_quota_cores("150000", "100000") == 2);  // --cpus 1.5: two threads, each busy three quarters of the time
  CHECK(cpu_quota_cores("50000", "100000") == 1);
  CHECK(cpu_quota_cores("100000000000", "1000") == kMaxThreads);
  CHECK(cpu_quota_cores("max", "100000") == 0);
  CHECK(cpu_quota_cores("-1", "100000") == 0);
  CHECK(cpu_quota_cores("", "") == 0);
  CHECK(cpu_quota_cores("100000", "0") == 0);
  CHECK(cpu_quota_cores("abc", "100000") == 0);
}

// The pool (model/parallel.cpp) polls between jobs, then blocks; every worker answers every job, those without a part
// too. Jobs here alternate between more parts than fewer, some parts outlast the caller's poll, some jobs come after
// the workers have blocked, and some throw; the sums below see a part run twice, or lost, or a worker that reads a
// job's fields as the next is set.
TEST_CASE("parallel_for runs each index of [0, n) once per job: any part count, after idle gaps, after an error") {
  for (int threads : {2, 3, 64}) {  // 64: more threads than cores, where the pool blocks instead of polling
    CAPTURE(threads);
    set_num_threads(threads);
    std::vector<std::atomic<int>> hits(300);
    int wrong = 0;
    for (int job = 0; job < 3000; job++) {
      const int64_t n = 1 + (job * 37) % 300;  // 1 to 300: from one part to one a thread
      const bool slow = job % 500 == 7;        // a part outlasts the caller's poll (0.5 ms)
      if (job % 500 == 9) std::this_thread::sleep_for(std::chrono::milliseconds(3));  // the workers block
      parallel_for(n, [&](int64_t b, int64_t e) {
        if (slow && b > 0) std::this_thread::sleep_for(std::chrono::milliseconds(3));
        for (int64_t i = b; i < e; i++) hits[size_t(i)]++;
      });
      for (int64_t i = 0; i < 300; i++) wrong += hits[size_t(i)].exchange(0) != (i < n ? 1 : 0);
    }
    CHECK(wrong == 0);
    CHECK_THROWS_WITH_AS(parallel_for(100,
                                      [](int64_t b, int64_t) {
                                        if (b > 0) throw Error("part " + std::to_string(b));
                                      }),
                         doctest::Contains("part "), Error);
    std::atomic<int64_t> sum{0};
    parallel_for(1000, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) sum += i;
    });
    CHECK(sum == 1000 * 999 / 2);
  }
  set_num_threads(0);
}

// --lut disk's gather thread (model/lut_rows.h), driven as the GPU backends drive it: a job at a time, the next once
// the last one's signal came, some right away (the thread polling) and some after it has blocked. Each job's rows are
// compared with the table's own bytes.
TEST_CASE(
    "the gather thread copies each job's rows, signals each job in order, and reports a bad id after its signal") {
  const int64_t V = 97, row_elems = 40;  // F16: 80 bytes a row
  const size_t row = size_t(row_elems) * 2;
  std::vector<uint16_t> table(size_t(V * row_elems));
  for (size_t i = 0; i < table.size(); i++) table[i] = uint16_t((i * 2654435761u) >> 7);
  TensorView tv;
  tv.name = "t";
  tv.dtype = DType::F16;
  tv.shape = {V, row_elems};
  tv.data = reinterpret_cast<const uint8_t*>(table.data());
  tv.nbytes = table.size() * 2;
  const LutStore lut = LutStore::from_tensor(tv, row_elems);

  std::mutex mu;
  std::condition_variable cv;
  uint64_t signalled = 0;
  int out_of_order = 0;
  auto signal = [&](uint64_t v) {
    std::lock_guard<std::mutex> lock(mu);
    out_of_order += v != signalled + 1;
    signalled = v;
    cv.notify_all();
  };
  auto signal_came = [&](uint64_t v) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(20), [&] { return signalled >= v; });
  };
  std::vector<uint8_t> dst(8 * row);
  {
    LutGatherThread g(lut, signal);
    int wrong = 0;
    for (uint64_t v = 1; v <= 400; v++) {
      std::vector<int32_t> ids;
      for (uint64_t k = 0; k <= v % 8; k++) ids.push_back(int32_t((v * 31 + k * 7) % uint64_t(V)));
      if (v % 100 == 50) std::this_thread::sleep_for(std::chrono::milliseconds(3));  // past the thread's polling
      std::fill(dst.begin(), dst.end(), uint8_t(0xAB));
      g.submit(ids, dst.data(), v);
      REQUIRE(signal_came(v));
      for (size_t t = 0; t < ids.size(); t++)
        wrong += std::memcmp(dst.data() + t * row, tv.data + size_t(ids[t]) * row, row) != 0;
      g.check();  // nothing to report
    }
    CHECK(wrong == 0);
    g.submit({int32_t(V)}, dst.data(), 401);  // outside the table: signalled all the same
    REQUIRE(signal_came(401));
    CHECK_THROWS_WITH_AS(g.check(), doctest::Contains("token id 97"), Error);
    CHECK_NOTHROW(g.check());           // reported once
    g.submit({0, 1}, dst.data(), 402);  // stopped at once: finished or skipped, signalled either way
  }
  CHECK(signalled == 402);
  CHECK(out_of_order == 0);
}
