// What only the Vulkan backend has to show, with the Khronos validation layer and synchronization validation on
// (any validation message fails the test): the table placements and read modes give identical logits bit for bit,
// the host import and its fallbacks, the disk gather thread's lifetime and errors, greedy ids on the device,
// reparameterization on the GPU. (Every op and whole model against the CPU reference: test_backend_ops.cpp.) On a
// machine without a Vulkan device every case says it was skipped. CI runs these on Mesa's lavapipe.
#include <doctest/doctest.h>

#include "tests/test_helpers.h"

#ifdef MOLE_HAVE_VULKAN

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "model/cpu_backend.h"
#include "model/error.h"
#include "model/forward.h"
#include "model/lut_rows.h"
#include "model/parity.h"
#include "model/reparam.h"
#include "model/sampling.h"
#include "vk-runtime/device_info.h"
#include "vk-runtime/instance.h"
#include "vk-runtime/vk_backend.h"

using namespace mole;
using mole::test::rel_l2;

namespace {

// The options of every test's backend: validation and synchronization validation, no pipeline cache on disk.
BackendOptions options(std::function<void(BackendOptions&)> tweak = {}) {
  BackendOptions o;
  o.validation = BackendOptions::Validation::Sync;
  o.pipeline_cache = "off";
  if (tweak) tweak(o);
  return o;
}

// One Vulkan backend per test; nullptr (with the reason printed) when no device can run it.
std::unique_ptr<Backend> vulkan_or_skip(const BackendOptions& o = options()) {
  try {
    return vulkan::make_vulkan_backend(o);
  } catch (const Error& e) {
    test::skip_no_device(std::string("no usable Vulkan device: ") + e.what());
    return nullptr;
  }
}

void check_no_validation_messages(const Backend& b) {
  const BackendInfo info = b.info();
  INFO(info.validation_log);
  CHECK(info.validation_messages == 0);
}

// The same, except for known false reports of Debian 12's validation layer (1.3.239) about a timeline semaphore
// signalled from the host (the disk gather thread) while the host also waits on the device:
// UNASSIGNED-VkSemaphore-state-timeout, "This is most likely a validation bug" (KhronosGroup/Vulkan-ValidationLayers
// issue #8461, fixed by PR #8519), and the UNASSIGNED-VkFence-state-timeout ("most likley a validation bug") that
// can follow it: both are the layer's own queue thread giving up after 10 s (PR #10368 renamed them internal
// errors). Seen on a loaded 2-core machine; any other message still fails.
void check_no_validation_messages_but_timeline_timeouts(const Backend& b) {
  const BackendInfo info = b.info();
  const std::string& log = info.validation_log;
  INFO(log);
  uint64_t known = 0;  // messages (one per line of the log) that are those reports
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);)
    if (line.find("UNASSIGNED-VkSemaphore-state-timeout") != std::string::npos ||
        line.find("UNASSIGNED-VkFence-state-timeout") != std::string::npos)
      known++;
  if (known > 0) MESSAGE("ignored " << known << " UNASSIGNED-Vk*-state-timeout report(s) (layer bug)");
  CHECK(info.validation_messages == known);
}

// Where --lut disk gathers its rows (--tune lut-gather): on a thread (the default where the transfer queue is a
// queue of its own) or inline (where one queue does everything, as on lavapipe). The tests run both.
constexpr BackendTuning::Gather kGatherModes[] = {BackendTuning::Gather::Thread, BackendTuning::Gather::Inline};
std::function<void(BackendOptions&)> gather(BackendTuning::Gather g) {
  return [g](BackendOptions& o) { o.tuning.lut_gather = g; };
}

struct Model : LoadedModel {
  explicit Model(const std::string& dir) : LoadedModel(test::load(dir, DType::F16)) {}
};

// Logits of every position of one sequence, on the given backend.
std::vector<std::vector<float>> all_logits(Model& m, Backend& be, const std::vector<int32_t>& ids, EngineOptions o) {
  Engine e(m.cfg, m.weights, m.lut ? &*m.lut : nullptr, be, o);
  return e.step({{0, ids}}, true);
}

// Every logits row of a multi-step run: a 41-token prompt in steps of 3 tokens, three more prompts in one batch, then
// 24 batched decode steps of 4 sequences following greedy tokens (new ids, several rows per step, every step).
std::vector<std::vector<float>> many_steps(Model& m, Backend& be, LutPlacement placement) {
  const int B = 4;
  EngineOptions o;
  o.max_batch = B;
  o.max_context = 96;
  o.max_step_tokens = 3;
  o.lut = placement;
  Engine e(m.cfg, m.weights, &*m.lut, be, o);
  auto out = e.step({{0, random_ids(41, m.cfg.vocab_size, 21)}}, true);
  std::vector<Engine::Chunk> prompts;
  for (int s = 1; s < B; s++) prompts.push_back({s, random_ids(2 + 3 * s, m.cfg.vocab_size, uint32_t(30 + s))});
  auto rows = e.step(prompts);
  std::vector<int32_t> last = {argmax(out.back()), argmax(rows[0]), argmax(rows[1]), argmax(rows[2])};
  out.insert(out.end(), rows.begin(), rows.end());
  for (int step = 0; step < 24; step++) {
    std::vector<Engine::Chunk> next;
    for (int s = 0; s < B; s++) next.push_back({s, {last[size_t(s)]}});
    rows = e.step(next);
    for (int s = 0; s < B; s++) last[size_t(s)] = argmax(rows[size_t(s)]);
    out.insert(out.end(), rows.begin(), rows.end());
  }
  return out;
}

// Threads of this process now.
size_t thread_count() {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) n += e.is_directory() ? 1 : 0;
  return n;
}

}  // namespace

// Greedy ids computed on the device (only R ids come back) equal the argmax of the CPU's logits; a logits step
// between id-only steps returns that step's logits, not stale ones.
TEST_CASE("vulkan: step_argmax gives the CPU's greedy tokens; logits after id-only steps are current") {
  test::TempDir tmp;
  auto vkb = vulkan_or_skip();
  if (!vkb) return;
  Model m(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::F16));
  const int B = 3;
  EngineOptions o;
  o.max_batch = B;
  o.max_context = 96;
  o.max_step_tokens = 32;
  auto cpu = make_cpu_backend();
  Engine ec(m.cfg, m.weights, &*m.lut, *cpu, o), ev(m.cfg, m.weights, &*m.lut, *vkb, o);
  std::vector<Engine::Chunk> chunks;
  for (int s = 0; s < B; s++) chunks.push_back({s, random_ids(5 + 9 * s, m.cfg.vocab_size, uint32_t(200 + s))});
  auto lc = ec.step(chunks);
  auto iv = ev.step_argmax(chunks);
  int compared = 0;
  for (int step = 0; step < 24; step++) {
    REQUIRE(iv.size() == size_t(B));
    chunks.clear();
    for (int s = 0; s < B; s++) {
      const int32_t tc = argmax(lc[size_t(s)]);
      if (clear_winner(lc[size_t(s)])) {
        CHECK(iv[size_t(s)] == tc);
        compared++;
      }
      chunks.push_back({s, {tc}});
    }
    lc = ec.step(chunks);
    if (step % 3 == 2) {
      auto lv = ev.step(chunks);
      iv.clear();
      for (int s = 0; s < B; s++) {
        CHECK(rel_l2(lv[size_t(s)], lc[size_t(s)]) < 1e-3);
        iv.push_back(argmax(lv[size_t(s)]));
      }
    } else {
      iv = ev.step_argmax(chunks);
    }
  }
  MESSAGE("greedy tokens compared: " << compared << " of " << 24 * B);
  CHECK(compared > 24 * B / 2);
  check_no_validation_messages(*vkb);
}

// The _subgroup variants require full subgroups (VK_PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT, whose use
// the validation layer checks: the feature enabled, the local size a multiple of the largest subgroup). Where the
// device offers subgroup arithmetic and full subgroups (lavapipe does) they run and info() says so, else the
// shared-memory variants run; --tune subgroups=0 runs those anywhere. Both give the CPU's logits.
TEST_CASE("vulkan: the subgroup variants run with full subgroups, and info says which reductions ran") {
  test::TempDir tmp;
  bool offers = false;  // what the device offers, as enumerate_devices reads it
  try {
    const Instance instance = Instance::create(false, false);
    const std::vector<DeviceInfo> devices = enumerate_devices(instance);
    if (!devices.empty()) {
      const DeviceInfo& d = devices[size_t(pick_device(devices, -1))];
      offers = (d.subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) && d.compute_full_subgroups;
    }
  } catch (const Error& e) {
    test::skip_no_device(e.what());
    return;
  }
  Model m(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::F16));
  EngineOptions o;
  o.max_context = 48;
  const std::vector<int32_t> prompt = random_ids(20, m.cfg.vocab_size, 5);  // fewer rows than a tiled product's
  auto cpu = make_cpu_backend();
  Engine ec(m.cfg, m.weights, &*m.lut, *cpu, o);
  const std::vector<float> want = ec.step({{0, prompt}}).at(0);
  for (int wanted : {1, 0}) {
    CAPTURE(wanted);
    auto be = vulkan_or_skip(options([&](BackendOptions& b) { b.tuning.subgroups = wanted; }));
    if (!be) return;
    Engine ev(m.cfg, m.weights, &*m.lut, *be, o);
    CHECK(rel_l2(ev.step({{0, prompt}}).at(0), want) < 1e-3);
    const std::string reductions = be->info().reductions;
    CAPTURE(reductions);
    if (wanted == 0)
      CHECK(reductions == "shared memory (--tune subgroups=0)");
    else if (offers)
      CHECK(reductions.rfind("subgroups of ", 0) == 0);
    else
      CHECK(reductions.rfind("shared memory (", 0) == 0);
    check_no_validation_messages(*be);
  }
}

TEST_CASE("vulkan: the three LUT placements give identical logits") {
  test::TempDir tmp;
  Model m(test::synth(tmp, "m", Form::Infer, {}, DType::F16));
  auto ids = random_ids(23, m.cfg.vocab_size, 5);
  std::vector<std::vector<float>> first;
  for (LutPlacement p : {LutPlacement::Device, LutPlacement::Host, LutPlacement::Disk}) {
    CAPTURE(placement_name(p));
    auto vkb = vulkan_or_skip();
    if (!vkb) return;
    EngineOptions o;
    o.lut = p;
    o.max_context = 64;
    o.max_step_tokens = 8;  // several steps, so rows stream more than once
    auto rows = all_logits(m, *vkb, ids, o);
    if (first.empty()) first = rows;
    for (size_t t = 0; t < rows.size(); t++) CHECK(rows[t] == first[t]);
    check_no_validation_messages(*vkb);
  }
}

// A shader binds each weight and activation buffer whole, so one past maxStorageBufferRange (lavapipe's 128 MiB)
// would be seen only in part: the backend refuses it, naming the buffer, the limit and what to change.
TEST_CASE("vulkan: a KV cache past maxStorageBufferRange is an error naming it and the limit, not a partial binding") {
  uint64_t range = 0;
  try {
    const Instance instance = Instance::create(false, false);
    const std::vector<DeviceInfo> devices = enumerate_devices(instance);
    if (!devices.empty()) range = devices[size_t(pick_device(devices, -1))].max_storage_buffer_range;
  } catch (const Error& e) {
    test::skip_no_device(e.what());
    return;
  }
  auto vkb = vulkan_or_skip();
  if (!vkb) return;
  REQUIRE(range > 0);
  test::TempDir tmp;
  // 4 KV heads of 64: a position is 2 KiB of keys and values; dynamic RoPE lets the context run to 4M positions.
  Model m(test::synth(tmp, "m", Form::Infer,
                      {{"hidden_size", 256},
                       {"num_attention_heads", 4},
                       {"num_key_value_heads", 4},
                       {"rope_scaling", {{"type", "dynamic"}, {"factor", 8192.0}}}},
                      DType::F16));
  const uint64_t per_position = 2 * 256 * 4;
  EngineOptions o;
  o.max_step_tokens = 4;
  o.max_context = int(range / per_position) + 1;
  REQUIRE(o.max_context <= default_context(m.cfg));
  test::check_contains(test::error_of([&] { Engine(m.cfg, m.weights, m.table(), *vkb, o); }),
                       {"vulkan: KV cache of layer 0 needs", "(maxStorageBufferRange, ", "try a smaller --ctx-size"});
  if (range <= (uint64_t(256) << 20)) {  // where such a buffer is cheap: one position fewer fits and runs
    auto vkb2 = vulkan_or_skip();
    o.max_context -= 1;
    Engine e(m.cfg, m.weights, m.table(), *vkb2, o);
    CHECK(e.step({{0, {1, 2}}}).size() == 1);
    check_no_validation_messages(*vkb2);
  }
}

// --lut auto through load_model(): Vulkan's host placement, unless the table is more than half of the host memory
// available (set here), when it stays on disk and the notice says so; an explicit --lut is kept either way.
TEST_CASE("vulkan: --lut auto keeps a table too big for the host's memory on disk, with a notice") {
  if (!vulkan_or_skip()) return;
  test::TempDir tmp;
  const std::string dir = test::synth(tmp, "m", Form::Infer, {}, DType::F16);
  std::vector<std::string> notices;
  LoadOptions o;
  o.model_dir = dir;
  o.backend = "vulkan";
  o.make_backend = [](const std::string&, const BackendOptions&) { return vulkan::make_vulkan_backend(options()); };
  o.engine.max_context = 16;
  o.notice = [&](const std::string& line) { notices.push_back(line); };
  o.host_memory_available = uint64_t(1) << 40;
  CHECK(load_model(o)->placement == LutPlacement::Host);
  CHECK(notices.empty());
  const Config c = Config::load_dir(dir);
  o.host_memory_available = 2 * uint64_t(c.vocab_size) * uint64_t(c.lut_row_elems()) * 2 - 1;  // F16: past half
  const auto m = load_model(o);
  CHECK(m->placement == LutPlacement::Disk);
  REQUIRE(notices.size() == 1);
  test::check_contains(notices[0], {"--lut auto: the table", "(--lut disk); --lut host holds it in memory"});
  CHECK(m->engine->step({{0, {1, 2, 3}}}).size() == 1);
  o.lut = LutPlacement::Host;
  CHECK(load_model(o)->placement == LutPlacement::Host);
  CHECK(notices.size() == 1);
}

// --lut disk gathers rows on a host thread while the step's first part runs; host placement holds the whole table
// in host memory. Same rows, same arithmetic: the logits must be equal bit for bit, step after step.
TEST_CASE("vulkan: --lut disk (gather thread or inline) gives --lut host's logits bit for bit over many steps") {
  test::TempDir tmp;
  Model m(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::BF16));
  auto host_be = vulkan_or_skip();
  if (!host_be) return;
  auto host = many_steps(m, *host_be, LutPlacement::Host);
  check_no_validation_messages(*host_be);
  for (BackendTuning::Gather g : kGatherModes) {
    CAPTURE(g == BackendTuning::Gather::Thread ? "thread" : "inline");
    auto disk_be = vulkan_or_skip(options(gather(g)));
    REQUIRE(disk_be);
    auto disk = many_steps(m, *disk_be, LutPlacement::Disk);
    REQUIRE(disk.size() == host.size());
    for (size_t i = 0; i < host.size(); i++) CHECK(disk[i] == host[i]);
    check_no_validation_messages_but_timeline_timeouts(*disk_be);
  }
}

// router_lut_direct reads the rows in place (buffer device address) where router_lut reads the copied ring.
TEST_CASE("vulkan: direct reads of the table give the copy's logits bit for bit (--lut-read)") {
  test::TempDir tmp;
  Model m(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::F16));
  for (LutPlacement p : {LutPlacement::Host, LutPlacement::Device}) {
    CAPTURE(placement_name(p));
    std::unique_ptr<Backend> copy_be, direct_be;
    try {
      copy_be = vulkan::make_vulkan_backend(options([](BackendOptions& o) { o.lut_read = LutRead::Copy; }));
      direct_be = vulkan::make_vulkan_backend(options([](BackendOptions& o) { o.lut_read = LutRead::Direct; }));
    } catch (const Error& e) {
      test::skip_no_device(std::string("no usable Vulkan device: ") + e.what());
      return;
    }
    std::vector<std::vector<float>> direct;
    try {
      direct = many_steps(m, *direct_be, p);
    } catch (const Error& e) {
      if (std::string(e.what()).find("bufferDeviceAddress") == std::string::npos) throw;
      MESSAGE("skipped: " << e.what());
      return;
    }
    auto copy = many_steps(m, *copy_be, p);
    CHECK(copy_be->info().lut_read == "copy");
    CHECK(direct_be->info().lut_read == "direct");
    REQUIRE(direct.size() == copy.size());
    for (size_t i = 0; i < copy.size(); i++) CHECK(direct[i] == copy[i]);
    check_no_validation_messages(*copy_be);
    check_no_validation_messages(*direct_be);
  }
  // --lut disk always copies (its rows are only in the staging ring).
  auto be = vulkan::make_vulkan_backend(options([](BackendOptions& o) { o.lut_read = LutRead::Direct; }));
  be->set_lut(*m.lut, LutPlacement::Disk, 4);
  CHECK(be->info().lut_read == "copy");
}

// --tune chain=on: a step of one token per sequence runs without pipeline barriers between its dispatches, which
// wait for each other in the shaders (shaders/chain.glsl); the _chain builds do the same arithmetic, so the logits
// must equal the barriers' bit for bit. On lavapipe the dispatches run one after another (nothing ever waits), so
// this checks the recording, the counters, the push constants and validation; a GPU check runs it where they overlap.
TEST_CASE("vulkan: --tune chain=on gives the barriers' logits and greedy ids bit for bit") {
  test::TempDir tmp;
  Model moe(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::BF16));
  Model dense(test::synth(tmp, "d", Form::Dense, {}, DType::BF16));
  struct Case {
    Model* m;
    int splits;
    LutRead read;
  };
  for (const Case c : {Case{&moe, 1, LutRead::Copy}, Case{&moe, 4, LutRead::Copy}, Case{&moe, 1, LutRead::Direct},
                       Case{&dense, 4, LutRead::Copy}}) {
    CAPTURE(c.m == &dense);
    CAPTURE(c.splits);
    CAPTURE(std::string(lut_read_name(c.read)));
    // The validation layer without synchronization validation, which knows only barriers: it would report every
    // chained dispatch's reads and writes as hazards.
    auto tweak = [&c](bool chain) {
      return options([&c, chain](BackendOptions& o) {
        o.validation = BackendOptions::Validation::On;
        o.tuning.chain = chain;
        o.tuning.attention_splits = c.splits;
        o.lut_read = c.read;
      });
    };
    // A backend runs one graph: one for the batched run, one for the single sequence.
    std::unique_ptr<Backend> be[2][2];  // [chain][run]
    for (int chain : {0, 1}) {
      for (int r : {0, 1}) {
        try {
          be[chain][r] = vulkan::make_vulkan_backend(tweak(chain == 1));
        } catch (const Error& e) {  // no device; or, chained, one without the memory model or device addresses
          test::skip_no_device(std::string("no usable Vulkan device for this: ") + e.what());
          return;
        }
      }
    }
    Model& m = *c.m;
    EngineOptions o;
    o.max_batch = 4;
    o.max_context = 96;
    o.max_step_tokens = 3;
    o.lut = LutPlacement::Host;
    // Batched: a prompt (chunks of 3 tokens of one sequence: barriers), then 24 decode steps of 4 sequences
    // (chained), each row's logits compared.
    auto batched = [&](Backend& b) {
      Engine e(m.cfg, m.weights, m.lut ? &*m.lut : nullptr, b, o);
      std::vector<std::vector<float>> out = e.step({{0, random_ids(41, m.cfg.vocab_size, 21)}}, true);
      std::vector<int32_t> last(4, argmax(out.back()));
      for (int step = 0; step < 24; step++) {
        std::vector<Engine::Chunk> next;
        for (int s = 0; s < 4; s++) next.push_back({s, {last[size_t(s)]}});
        auto rows = e.step(next);
        for (int s = 0; s < 4; s++) last[size_t(s)] = (argmax(rows[size_t(s)]) + s) % m.cfg.vocab_size;
        out.insert(out.end(), rows.begin(), rows.end());
      }
      return out;
    };
    // One sequence, greedy on the device (step_argmax: T = R = 1, the Argmax op, only the id comes back).
    auto greedy = [&](Backend& b) {
      Engine e(m.cfg, m.weights, m.lut ? &*m.lut : nullptr, b, o);
      std::vector<int32_t> ids = e.step_argmax({{0, random_ids(5, m.cfg.vocab_size, 7)}});
      for (int step = 0; step < 40; step++) ids.push_back(e.step_argmax({{0, {ids.back()}}})[0]);
      return ids;
    };
    const auto base_logits = batched(*be[0][0]), chain_logits = batched(*be[1][0]);
    const auto base_ids = greedy(*be[0][1]), chain_ids = greedy(*be[1][1]);
    for (int r : {0, 1}) {
      CHECK(be[0][r]->info().execution == "pipeline barriers");
      CHECK(be[1][r]->info().execution.rfind("dispatch chain", 0) == 0);  // the last step ran chained
    }
    REQUIRE(chain_logits.size() == base_logits.size());
    for (size_t i = 0; i < base_logits.size(); i++) CHECK(chain_logits[i] == base_logits[i]);
    CHECK(chain_ids == base_ids);
    for (auto& pair : be)
      for (auto& b : pair) check_no_validation_messages(*b);
  }
}

// A wait of the chain that is never met (perturb=chain-wait: one workgroup more than its group has) gives up after its
// spins, every later wait goes on at once, and the host makes the step a mole::Error that says what to do and which
// group the first wait to give up waited for: no hang. Every later step of that backend is the same error.
TEST_CASE("vulkan: --tune chain=on: a wait that is never met is an error, not a hang") {
  test::TempDir tmp;
  Model m(test::synth(tmp, "m", Form::Infer, {}, DType::BF16));
  std::unique_ptr<Backend> be;
  try {
    be = vulkan::make_vulkan_backend(options([](BackendOptions& o) {
      o.validation = BackendOptions::Validation::On;
      o.tuning.chain = true;
      o.tuning.perturb_op = "chain-wait";
    }));
  } catch (const Error& e) {
    test::skip_no_device(std::string("no usable Vulkan device for this: ") + e.what());
    return;
  }
  EngineOptions o;
  o.max_context = 32;
  Engine e(m.cfg, m.weights, &*m.lut, *be, o);
  const auto t0 = std::chrono::steady_clock::now();
  std::string what;
  try {
    e.step_argmax({{0, {1}}});  // one token: a chained step
  } catch (const Error& err) {
    what = err.what();
  }
  MESSAGE("the failed step took " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                                  << " s");
  CAPTURE(what);
  CHECK(what.find("dispatch chain (--tune chain=on) failed") != std::string::npos);
  CHECK(what.find("run without --tune chain=on") != std::string::npos);
  // The first wait to give up names the group it waited for: the embedding, the step's first group, every one of
  // whose workgroups counted (each wait asks for one more).
  CHECK(what.find("(group 1 of ") != std::string::npos);
  CHECK(what.find(", embed: ") != std::string::npos);
  CHECK(what.find("workgroups had counted by the step's end)") != std::string::npos);
  // The failure sticks: the backend's state may be corrupt, so its next step, even one that would run with barriers
  // (32 tokens: the tiled product, never chained), is the same error, not results of that state.
  CHECK(e.length(0) == 0);
  CHECK_THROWS_WITH_AS(e.step_argmax({{0, std::vector<int32_t>(32, 1)}}), what.c_str(), Error);
  check_no_validation_messages(*be);
}

// `mole bench --record` records the faster of copy and direct per device; auto then follows it (explicit choices
// still win, --lut disk still copies, and a damaged record is ignored).
TEST_CASE("vulkan: --lut-read auto follows the read mode recorded for the device") {
  test::TempDir tmp;
  Model m(test::synth(tmp, "m", Form::Infer, {}, DType::F16));
  auto mode_of = [&](const char* read, LutPlacement p) {
    auto be = vulkan::make_vulkan_backend(options([&](BackendOptions& o) {
      o.lut_read = *parse_lut_read(read);
      o.cache_dir = tmp / "cache";
    }));
    be->set_lut(*m.lut, p, 4);
    check_no_validation_messages(*be);
    return be->info().lut_read;
  };
  std::unique_ptr<Backend> probe = vulkan_or_skip();
  if (!probe) return;
  const std::string rule = mode_of("auto", LutPlacement::Host);  // nothing recorded yet
  const std::string other = rule == "direct" ? "copy" : "direct";
  const std::string file =
      record_lut_read(lut_read_record_file(tmp / "cache", "vulkan", probe->info().device_key), *parse_lut_read(other));
  REQUIRE(file.rfind(tmp.path, 0) == 0);
  if (other == "direct" && mode_of("auto", LutPlacement::Host) == "copy") {
    MESSAGE("skipped the rest: this device cannot read the table in place");
    return;
  }
  CHECK(mode_of("auto", LutPlacement::Host) == other);
  CHECK(mode_of(rule.c_str(), LutPlacement::Host) == rule);
  CHECK(mode_of("auto", LutPlacement::Disk) == "copy");
  {
    std::ofstream f(file, std::ios::trunc);
    f << "sideways\n";
  }
  CHECK(mode_of("auto", LutPlacement::Host) == rule);
}

// --lut host imports the file's own pages where the device can (VK_EXT_external_memory_host) instead of copying
// the table into memory it allocates. Chunks of 5 rows, so that chunks start inside pages and share them.
TEST_CASE(
    "vulkan: --lut host, imported or copied, read by copy or in place: the device placement's logits bit for bit") {
  test::TempDir tmp;
  Model m(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::F16));
  const uint64_t chunk_bytes = 5 * m.lut->row_bytes();
  auto ref_be = vulkan_or_skip(options([&](BackendOptions& o) { o.tuning.lut_chunk_bytes = chunk_bytes; }));
  if (!ref_be) return;
  const auto ref = many_steps(m, *ref_be, LutPlacement::Device);
  CHECK(ref_be->info().lut_table_note.empty());
  check_no_validation_messages(*ref_be);
  // A copy of the table in aligned heap memory, starting 4100 bytes in: not a file, not page-aligned.
  const size_t bytes = m.lut->bytes(), at = 4100;
  std::unique_ptr<uint8_t, decltype(&std::free)> heap(
      static_cast<uint8_t*>(std::aligned_alloc(65536, (at + bytes + 65535) / 65536 * 65536)), &std::free);
  std::memcpy(heap.get() + at, m.lut->data(), bytes);
  TensorView view = *m.weights.moe_table;
  view.data = heap.get() + at;
  view.mapping = heap.get();
  view.mapping_bytes = at + bytes;
  const LutStore file_lut = *m.lut, heap_lut = LutStore::from_tensor(view, m.cfg.lut_row_elems());
  for (LutRead read : {LutRead::Copy, LutRead::Direct}) {
    for (bool import : {true, false}) {
      for (const LutStore* table : {&file_lut, &heap_lut}) {
        CAPTURE(lut_read_name(read));
        CAPTURE(import);
        CAPTURE(table == &heap_lut ? "heap" : "file");
        auto be = vulkan::make_vulkan_backend(options([&](BackendOptions& o) {
          o.lut_read = read;
          o.tuning.lut_import = import;
          o.tuning.lut_chunk_bytes = chunk_bytes;
        }));
        m.lut = *table;
        std::vector<std::vector<float>> rows;
        try {
          rows = many_steps(m, *be, LutPlacement::Host);
        } catch (const Error& e) {
          if (std::string(e.what()).find("bufferDeviceAddress") == std::string::npos) throw;
          MESSAGE("skipped: " << e.what());
          continue;
        }
        REQUIRE(rows.size() == ref.size());
        for (size_t i = 0; i < ref.size(); i++) CHECK(rows[i] == ref[i]);
        const std::string note = be->info().lut_table_note;
        if (!import)
          CHECK(note == "copied (import turned off)");
        else if (note.find("no VK_EXT_external_memory_host") != std::string::npos)
          MESSAGE("import not tried: " << note);
        else if (note.find("NVIDIA's Vulkan driver cannot import") != std::string::npos)
          MESSAGE("import not tried: " << note);
        else
          CHECK(note == "imported from the file's mapping (no copy)");
        check_no_validation_messages(*be);
      }
    }
  }
  m.lut = file_lut;
}

TEST_CASE("vulkan: --lut host copies a table it cannot import and says why") {
  test::TempDir tmp;
  auto be = vulkan_or_skip();
  if (!be) return;
  Model train(test::synth(tmp, "t", Form::Train, {}, DType::F16));
  be->set_lut(*train.lut, LutPlacement::Host, 4);
  CHECK(be->info().lut_table_note == "copied: the table was computed at load, not read from a file");
  // A table 2 bytes into its mapping: router_lut_direct.comp reads 32-bit words.
  Model m(test::synth(tmp, "m", Form::Infer, {}, DType::F16));
  std::vector<uint32_t> words(m.lut->bytes() / 4 + 2);
  std::memcpy(reinterpret_cast<uint8_t*>(words.data()) + 2, m.lut->data(), m.lut->bytes());
  TensorView view = *m.weights.moe_table;
  view.data = reinterpret_cast<uint8_t*>(words.data()) + 2;
  view.mapping = reinterpret_cast<uint8_t*>(words.data());
  view.mapping_bytes = words.size() * 4;
  const LutStore odd = LutStore::from_tensor(view, m.cfg.lut_row_elems());
  be->set_lut(odd, LutPlacement::Host, 4);
  CHECK(be->info().lut_table_note == "copied: the table is not 4-byte aligned in its file");
  be->set_lut(*m.lut, LutPlacement::Disk, 4);
  CHECK(be->info().lut_table_note.empty());
  check_no_validation_messages(*be);
}

TEST_CASE("vulkan: --lut disk: destroying the backend right after stream_lut_rows neither hangs nor leaks") {
  const BackendOptions threaded = options(gather(BackendTuning::Gather::Thread));
  test::TempDir tmp;
  Model m(test::synth(tmp, "m", Form::Infer, {}, DType::F16));
  const auto ids = random_ids(8, m.cfg.vocab_size, 3);
  {
    // A first device, so that the threads a driver keeps for the process (if any) are counted in the baseline.
    auto vkb = vulkan_or_skip(threaded);
    if (!vkb) return;
    vkb->set_lut(*m.lut, LutPlacement::Disk, 8);
    vkb->stream_lut_rows(ids);
    vkb->synchronize();
  }
  const size_t baseline = thread_count();
  for (int i = 0; i < 3; i++) {
    auto vkb = vulkan_or_skip(threaded);
    REQUIRE(vkb);
    vkb->set_lut(*m.lut, LutPlacement::Disk, 8);
    vkb->stream_lut_rows(ids);  // the copy waits for the gather thread; nothing waits for the copy
    if (i == 1) vkb->stream_lut_rows({ids[0], ids[1]});
    check_no_validation_messages_but_timeline_timeouts(*vkb);
  }
  CHECK(thread_count() == baseline);
}

TEST_CASE("vulkan: --lut disk: a failure on the gather thread is a mole::Error on the caller's thread") {
  test::TempDir tmp;
  Model m(test::synth(tmp, "m", Form::Infer, {}, DType::F16));
  auto vkb = vulkan_or_skip(options(gather(BackendTuning::Gather::Thread)));
  if (!vkb) return;
  vkb->set_lut(*m.lut, LutPlacement::Disk, 8);
  // An id outside the table is found by the thread (it checks each row it reads); stream_lut_rows returned at once.
  vkb->stream_lut_rows({1, m.cfg.vocab_size + 5});
  CHECK_THROWS_WITH_AS(vkb->synchronize(), doctest::Contains("outside the lookup table"), Error);
  // Reported once; the stream goes on working, and the next failure is reported by the next stream_lut_rows.
  vkb->stream_lut_rows({1, 2, 3});
  vkb->synchronize();
  vkb->stream_lut_rows({-1});
  CHECK_THROWS_AS(vkb->stream_lut_rows({4}), Error);
  check_no_validation_messages_but_timeline_timeouts(*vkb);
  // Host placement checks ids before anything is queued.
  auto host = vulkan_or_skip();
  REQUIRE(host);
  host->set_lut(*m.lut, LutPlacement::Host, 8);
  CHECK_THROWS_WITH_AS(host->stream_lut_rows({m.cfg.vocab_size}), doctest::Contains("outside the lookup table"), Error);
  check_no_validation_messages(*host);
}

TEST_CASE("vulkan: reparameterization on the GPU gives the CPU's table rows") {
  test::TempDir tmp;
  auto vkb = vulkan_or_skip();
  if (!vkb) return;
  Model m(test::synth(tmp, "m", Form::Train,
                      {{"vocab_size", 301},
                       {"hidden_size", 36},
                       {"num_attention_heads", 3},
                       {"num_key_value_heads", 1},
                       {"intermediate_size", 77},
                       {"num_experts", 3}},
                      DType::BF16));
  BackendLutRows gpu(m.cfg, m.weights, *vkb, 128);
  const int64_t row = m.cfg.lut_row_elems();
  std::vector<float> want(size_t(128 * row)), got(size_t(128 * row));
  for (int64_t first : {int64_t(0), int64_t(128), int64_t(256)}) {
    int64_t n = std::min<int64_t>(128, m.cfg.vocab_size - first);
    want.resize(size_t(n * row));
    got.resize(size_t(n * row));
    compute_lut_rows(m.cfg, m.weights, first, n, want.data());
    gpu.rows(first, n, got.data());
    CHECK(rel_l2(got, want) < 1e-5);
  }
  check_no_validation_messages(*vkb);
}

#else

TEST_CASE("vulkan: not built") {
  mole::test::skip_no_device("this build has no Vulkan backend (Vulkan headers or glslang missing)");
}

#endif
