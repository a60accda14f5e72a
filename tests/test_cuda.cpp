// The CUDA backend against the CPU reference: whole models with every table placement and way of reading its rows,
// both matmul kernels and split-K attention forced on and off, batched greedy decode with the ids computed on the
// device, profiling, and reparameterization. The op-by-op parity cases come from the cross-backend table; these are
// the end-to-end checks a first run on an NVIDIA GPU needs. Without a usable CUDA device every case but the first
// says it was skipped (the first checks that the reason is given and that no backend opens).
#include <doctest/doctest.h>

#include "tests/test_helpers.h"

#ifdef MOLE_HAVE_CUDA

#include <chrono>
#include <cstdlib>  // setenv
#include <filesystem>
#include <random>

#include "cuda-backend/cuda_backend.h"
#include "cuda-backend/device_info.h"  // can_start_early(), nvml_driver_version()
#include "cuda-backend/handles.h"      // FreeDevice
#include "model/cpu_backend.h"
#include "model/error.h"
#include "model/forward.h"
#include "model/parity.h"
#include "model/reparam.h"
#include "model/sampling.h"

using namespace mole;
using mole::test::rel_l2;

namespace {

// A CUDA backend, or nullptr (with the reason printed) when CUDA is unavailable here.
std::unique_ptr<Backend> cuda_or_skip(const BackendOptions& opt = {}) {
  bool ok = false;
  const std::string why = cuda_availability(&ok);
  if (!ok) {
    test::skip_no_device("no CUDA device: " + why, "cuda");
    return nullptr;
  }
  return make_cuda_backend(opt);
}

BackendOptions options(LutRead read, int tiled_min_rows = 0, int splits = 0) {
  BackendOptions o;
  o.lut_read = read;
  o.tuning.tiled_min_rows = tiled_min_rows;
  o.tuning.attention_splits = splits;
  return o;
}

// Logits of every position of one sequence, the prompt in one step.
std::vector<std::vector<float>> all_logits(LoadedModel& m, Backend& be, const std::vector<int32_t>& ids,
                                           LutPlacement placement) {
  EngineOptions o;
  o.max_context = std::max(int(ids.size()), 64);
  o.max_step_tokens = int(ids.size());
  o.lut = placement;
  Engine e(m.cfg, m.weights, m.table(), be, o);
  return e.step({{0, ids}}, true);
}

double worst_rel(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double worst = 0;
  for (size_t t = 0; t < a.size(); t++) worst = std::max(worst, rel_l2(a[t], b[t]));
  return worst;
}

}  // namespace

TEST_CASE("cuda: availability names a device or the reason; no backend opens without one") {
  bool ok = false;
  const std::string line = cuda_availability(&ok);
  MESSAGE("cuda: " << line);
  CHECK(!line.empty());
  if (!ok) {
    CHECK(cuda_device_details().empty());
    CHECK_THROWS_WITH_AS(make_cuda_backend(BackendOptions{}), doctest::Contains(line.c_str()), Error);
    return;
  }
  MESSAGE(cuda_device_details());
  auto b = make_cuda_backend(BackendOptions{});
  CHECK(b->info().name == "cuda");
  CHECK(b->info().device_memory > 0);
  BackendOptions far;
  far.device = 1000;
  CHECK_THROWS_AS(make_cuda_backend(far), Error);
}

TEST_CASE("cuda: whole models match the CPU reference in every placement, read and kernel choice") {
  test::TempDir tmp;
  struct Run {
    LutPlacement placement;
    BackendOptions opt;
  };
  const std::vector<Run> runs = {
      {LutPlacement::Device, options(LutRead::Auto)},     {LutPlacement::Device, options(LutRead::Copy)},
      {LutPlacement::Host, options(LutRead::Auto)},       {LutPlacement::Host, options(LutRead::Copy)},
      {LutPlacement::Host, options(LutRead::Direct)},     {LutPlacement::Disk, options(LutRead::Auto)},
      {LutPlacement::Host, options(LutRead::Auto, 1, 3)}, {LutPlacement::Host, options(LutRead::Auto, 1 << 30, 1)},
  };
  for (const ModelCase& v : model_cases()) {  // as the cross-backend model cases: 32 tokens and more use tensor cores
    std::string name = v.name;
    CAPTURE(name);
    if (!cuda_or_skip()) return;
    LoadedModel m = test::load(test::synth(tmp, v.name, v.form, v.set, v.dtype), DType::F16);
    const auto ids = random_ids(v.tokens, m.cfg.vocab_size, 11);
    auto cpu = make_cpu_backend();
    const auto ref = all_logits(m, *cpu, ids, LutPlacement::Host);
    for (const Run& r : runs) {
      if (r.placement == LutPlacement::Disk && (!m.lut || !m.lut->file_backed())) continue;
      const std::string what = name + " --lut " + placement_name(r.placement) + " read " +
                               lut_read_name(r.opt.lut_read) + " tiled_min_rows " +
                               std::to_string(r.opt.tuning.tiled_min_rows) + " splits " +
                               std::to_string(r.opt.tuning.attention_splits);
      CAPTURE(what);
      auto be = make_cuda_backend(r.opt);
      const double err = worst_rel(all_logits(m, *be, ids, r.placement), ref);
      const BackendInfo info = be->info();
      MESSAGE(what << ": worst rel. L2 error " << err << (m.lut ? ", rows read by " + info.lut_read : "") << " "
                   << info.lut_table_note);
      CHECK(err < 1e-4);
    }
  }
}

// Greedy ids computed on the device (R floats come back, not the logits) over batched decode steps, with profiling
// on; a logits step between id-only steps returns that step's logits.
TEST_CASE("cuda: batched greedy decode gives the CPU's tokens; the profile is filled") {
  test::TempDir tmp;
  for (LutPlacement placement : {LutPlacement::Host, LutPlacement::Disk}) {
    if (!cuda_or_skip()) return;
    LoadedModel m = test::load(test::synth(tmp, placement == LutPlacement::Host ? "host" : "disk", Form::Infer,
                                           {{"num_key_value_heads", 2}}, DType::BF16));
    auto be = make_cuda_backend({});  // after the model: its table outlives the backend (model/backend.h)
    const int B = 3;
    EngineOptions o;
    o.max_batch = B;
    o.max_context = 96;
    o.max_step_tokens = 32;
    o.lut = placement;
    be->set_profiling(true);
    auto cpu = make_cpu_backend();
    Engine ec(m.cfg, m.weights, m.table(), *cpu, o), eg(m.cfg, m.weights, m.table(), *be, o);
    std::vector<Engine::Chunk> chunks;
    for (int s = 0; s < B; s++) chunks.push_back({s, random_ids(5 + 9 * s, m.cfg.vocab_size, uint32_t(200 + s))});
    auto lc = ec.step(chunks);
    auto ig = eg.step_argmax(chunks);
    int compared = 0;
    for (int step = 0; step < 24; step++) {
      REQUIRE(ig.size() == size_t(B));
      chunks.clear();
      for (int s = 0; s < B; s++) {
        const int32_t tc = argmax(lc[size_t(s)]);
        if (clear_winner(lc[size_t(s)])) {
          CHECK(ig[size_t(s)] == tc);
          compared++;
        }
        chunks.push_back({s, {tc}});  // both follow the CPU's tokens so that the sequences stay comparable
      }
      lc = ec.step(chunks);
      if (step % 3 == 2) {
        auto lg = eg.step(chunks);
        ig.clear();
        for (int s = 0; s < B; s++) {
          CHECK(rel_l2(lg[size_t(s)], lc[size_t(s)]) < 1e-4);
          ig.push_back(argmax(lg[size_t(s)]));
        }
      } else {
        ig = eg.step_argmax(chunks);
      }
    }
    MESSAGE("greedy tokens compared: " << compared << " of " << 24 * B);
    CHECK(compared > 24 * B / 2);
    const StepProfile p = be->profile();
    CHECK(p.steps >= 25);
    CHECK(p.replayed_steps > 0);
    CHECK(p.ops.size() == eg.graph().ops.size());
    if (be->info().lut_read == "copy") CHECK(p.lut_copy_seconds > 0);
    double total = 0;
    for (const OpProfile& op : p.ops) total += op.seconds;
    CHECK(total > 0);
  }
}

// --lut disk gathers the rows on a thread of its own (the copy stream waits for it in a host function) or, with
// --tune lut-gather=inline, on the caller's; --lut host copies the same rows from page-locked memory. Same rows, same
// kernels: the logits must be equal bit for bit, over a prompt and many batched decode steps (each step's rows are
// gathered while the step before it may still run).
TEST_CASE("cuda: --lut disk (gather thread or inline) gives --lut host's logits bit for bit over many steps") {
  test::TempDir tmp;
  if (!cuda_or_skip()) return;
  LoadedModel m = test::load(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::BF16));
  auto run = [&m](LutPlacement placement, BackendTuning::Gather gather) {
    BackendOptions opt = options(LutRead::Copy);
    opt.tuning.lut_gather = gather;
    auto be = make_cuda_backend(opt);
    const int B = 4;
    EngineOptions o;
    o.max_batch = B;
    o.max_context = 96;
    o.max_step_tokens = 3;  // the prompt goes in many steps
    o.lut = placement;
    Engine e(m.cfg, m.weights, m.table(), *be, o);
    std::vector<std::vector<float>> out;
    std::vector<Engine::Chunk> chunks;
    for (int s = 0; s < B; s++) chunks.push_back({s, random_ids(2 + 3 * s, m.cfg.vocab_size, uint32_t(30 + s))});
    for (int step = 0; step < 24; step++) {
      auto rows = e.step(chunks);
      chunks.clear();
      for (int s = 0; s < B; s++) chunks.push_back({s, {argmax(rows[size_t(s)])}});
      out.insert(out.end(), rows.begin(), rows.end());
    }
    return out;
  };
  const auto host = run(LutPlacement::Host, BackendTuning::Gather::Auto);
  for (BackendTuning::Gather g : {BackendTuning::Gather::Thread, BackendTuning::Gather::Inline}) {
    CAPTURE(g == BackendTuning::Gather::Thread ? "thread" : "inline");
    const auto disk = run(LutPlacement::Disk, g);
    REQUIRE(disk.size() == host.size());
    for (size_t i = 0; i < host.size(); i++) CHECK(disk[i] == host[i]);
  }
}

// The logits of every step: `prompt` in steps of 64 tokens, then one step per id of `decoded` (fed, not chosen, so no
// run can drift from another), in a context of 320.
static std::vector<std::vector<float>> chunked_logits(const LoadedModel& m, Backend& be, LutPlacement placement,
                                                      const std::vector<int32_t>& prompt,
                                                      const std::vector<int32_t>& decoded) {
  EngineOptions o;
  o.max_context = 320;
  o.max_step_tokens = 64;
  o.lut = placement;
  Engine e(m.cfg, m.weights, m.table(), be, o);
  std::vector<std::vector<float>> out;
  for (size_t at = 0; at < prompt.size(); at += 64) {
    const std::vector<int32_t> chunk(prompt.begin() + long(at),
                                     prompt.begin() + long(std::min(at + 64, prompt.size())));
    out.push_back(e.step({{0, chunk}}, false).at(0));
  }
  for (int32_t id : decoded) out.push_back(e.step({{0, {id}}}, false).at(0));
  return out;
}

// Each step's logits in `got` equal `want`'s bit for bit, and `ref`'s (the CPU's) within the usual bound.
void check_same_logits(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& want,
                       const std::vector<std::vector<float>>& ref) {
  REQUIRE(got.size() == want.size());
  REQUIRE(ref.size() == want.size());
  for (size_t i = 0; i < want.size(); i++) {
    CAPTURE(i);
    CHECK(got[i] == want[i]);
    CHECK(rel_l2(got[i], ref[i]) < 1e-4);
  }
}

// Programmatic dependent launch (--tune pdl, on by default) changes when kernels start, never what they compute: a
// kernel that read its input or wrote its output before its predecessor had finished would change some logit. Over a
// prompt in chunks (tensor cores, attention's store pass), then decode steps past 256 keys (split-K and its merge),
// with the rows copied (router_lut after the copy's wait) and read in place (no wait: up starts early beside the LUT
// sum): the logits of every step equal those of ordinary launches (--tune pdl=off) bit for bit, and the CPU's within
// the usual bound.
// On a GPU that cannot start kernels early both runs would be ordinary ones: the case says so and stops.
TEST_CASE("cuda: --tune pdl=on gives ordinary launches' logits bit for bit over prefill and decode") {
  test::TempDir tmp;
  if (!cuda_or_skip()) return;
  if (!cuda::can_start_early(0)) {  // device 0: the one make_cuda_backend() opens without --device
    MESSAGE("skipped: this GPU cannot start kernels early (compute capability 9.0 and CUDA 12.3 needed)");
    return;
  }
  LoadedModel m = test::load(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::BF16));
  const std::vector<int32_t> prompt = random_ids(250, m.cfg.vocab_size, 5);
  const std::vector<int32_t> decoded = random_ids(40, m.cfg.vocab_size, 6);
  for (const auto& [placement, read] :
       {std::pair{LutPlacement::Host, LutRead::Copy}, std::pair{LutPlacement::Device, LutRead::Direct}}) {
    CAPTURE(placement_name(placement));
    BackendOptions plain_opt = options(read);
    plain_opt.tuning.pdl = false;  // the default is on
    auto plain = make_cuda_backend(plain_opt);
    BackendOptions early_opt = options(read);
    early_opt.tuning.pdl = true;
    auto early = make_cuda_backend(early_opt);
    auto cpu = make_cpu_backend();
    check_same_logits(chunked_logits(m, *early, placement, prompt, decoded),
                      chunked_logits(m, *plain, placement, prompt, decoded),
                      chunked_logits(m, *cpu, LutPlacement::Host, prompt, decoded));
  }
}

// The rows copied into the ring by a kernel in the step's graph (--tune lut-copy=kernel) are the copy engine's rows:
// a row copied wrong, late (router_lut not waiting for the kernel) or into the slot of another step changes some
// logit. From the table in mapped host memory and in device memory, prompt in chunks and decode steps: the logits of
// every step equal the dma copy's bit for bit, and the CPU's within the usual bound. Kernels start early as by default.
TEST_CASE("cuda: --tune lut-copy=kernel gives the dma copy's logits bit for bit over prefill and decode") {
  test::TempDir tmp;
  if (!cuda_or_skip()) return;
  LoadedModel m = test::load(test::synth(tmp, "m", Form::Infer, {{"num_key_value_heads", 2}}, DType::F16));
  const std::vector<int32_t> prompt = random_ids(150, m.cfg.vocab_size, 7);
  const std::vector<int32_t> decoded = random_ids(30, m.cfg.vocab_size, 8);
  auto cpu = make_cpu_backend();
  const auto ref = chunked_logits(m, *cpu, LutPlacement::Host, prompt, decoded);
  for (LutPlacement placement : {LutPlacement::Host, LutPlacement::Device}) {
    CAPTURE(placement_name(placement));
    BackendOptions dma_opt = options(LutRead::Copy), kernel_opt = options(LutRead::Copy);
    dma_opt.tuning.lut_copy = BackendTuning::LutCopy::Dma;
    kernel_opt.tuning.lut_copy = BackendTuning::LutCopy::Kernel;
    auto dma = make_cuda_backend(dma_opt);
    auto kernel = make_cuda_backend(kernel_opt);
    const auto got = chunked_logits(m, *kernel, placement, prompt, decoded);
    CHECK(kernel->info().lut_table_note.find("by a kernel") != std::string::npos);
    check_same_logits(got, chunked_logits(m, *dma, placement, prompt, decoded), ref);
  }
}

// The persistent decode kernel (--tune persistent=on) runs every op of a decode step with the op kernels' own device
// code, items for blocks, and a grid barrier between dependent ops: a missing or misplaced barrier, an item run
// twice or not at all, or a row of the table not yet fetched would change some logit. Prompt in chunks (graphs), then
// decode steps on both sides of 256 keys (attention in one pass, then split-K): every step's logits equal the graphs'
// bit for bit, and the CPU's within the usual bound; greedy decoding (the kernel's own argmax) gives the graphs' ids;
// with the table in mapped host memory (rows fetched by the kernel), in device memory (read in place) and on disk
// (copied by the copy engine, waited for before the kernel). Twice: on the GPU's whole grid, where this small model's
// phases have fewer items than the grid has blocks; and on 3 blocks (perturb=persistent-few-blocks) with a
// vocabulary of 5,000, so that each block runs several items of a phase, of different ops one after another (shared
// memory reused between them), and argmax merges 3 chunks of the logits.
TEST_CASE("cuda: --tune persistent=on gives the graphs' logits and ids bit for bit over decode") {
  test::TempDir tmp;
  if (!cuda_or_skip()) return;
  for (const bool few_blocks : {false, true}) {
    CAPTURE(few_blocks);
    nlohmann::json overrides = {{"num_key_value_heads", 2}};
    if (few_blocks) overrides["vocab_size"] = 5000;
    LoadedModel m = test::load(test::synth(tmp, few_blocks ? "few" : "m", Form::Infer, overrides, DType::BF16));
    const std::vector<int32_t> prompt = random_ids(230, m.cfg.vocab_size, 9);
    const std::vector<int32_t> decoded = random_ids(50, m.cfg.vocab_size, 10);
    auto cpu = make_cpu_backend();
    const auto ref = chunked_logits(m, *cpu, LutPlacement::Host, prompt, decoded);
    for (LutPlacement placement : {LutPlacement::Host, LutPlacement::Device, LutPlacement::Disk}) {
      CAPTURE(placement_name(placement));
      BackendOptions persistent_opt = options(LutRead::Auto);
      persistent_opt.tuning.persistent = BackendTuning::Persistent::On;
      if (few_blocks) persistent_opt.tuning.perturb_op = "persistent-few-blocks";
      auto graphs = make_cuda_backend(options(LutRead::Auto));
      auto persistent = make_cuda_backend(persistent_opt);
      const auto got = chunked_logits(m, *persistent, placement, prompt, decoded);
      const std::string execution = persistent->info().execution;
      CAPTURE(execution);
      if (execution.find("cannot launch cooperative") != std::string::npos) {
        MESSAGE("skipped: this GPU cannot launch cooperative kernels");
        return;
      }
      REQUIRE(execution.find(few_blocks ? "persistent decode kernel (3 blocks" : "persistent decode kernel (") == 0);
      check_same_logits(got, chunked_logits(m, *graphs, placement, prompt, decoded), ref);
      // Greedy: the ids of 40 steps, each fed the last one's.
      auto greedy = [&](Backend& be) {
        EngineOptions o;
        o.max_context = 320;
        o.max_step_tokens = 64;
        o.lut = placement;
        Engine e(m.cfg, m.weights, m.table(), be, o);
        std::vector<int32_t> ids{e.step_argmax({{0, std::vector<int32_t>(prompt.begin(), prompt.begin() + 60)}}).at(0)};
        for (int i = 0; i < 40; i++) ids.push_back(e.step_argmax({{0, {ids.back()}}}).at(0));
        return ids;
      };
      // A backend runs one Engine's graph for its life (model/backend.h): the greedy steps get backends of their own.
      auto persistent_greedy = make_cuda_backend(persistent_opt);
      auto graphs_greedy = make_cuda_backend(options(LutRead::Auto));
      CHECK(greedy(*persistent_greedy) == greedy(*graphs_greedy));
      // The greedy steps (ids only, no logits back) are shapes of their own: they ran the kernel too.
      CHECK(persistent_greedy->info().execution.find("persistent decode kernel (") == 0);
    }
  }
}

// A step that read its table rows before they were in the ring would read the last step's rows and go unnoticed: a
// copy of a few KiB lands in microseconds. With each step's copy held back (perturb=lut-copy-late: the copy engine's
// 30 ms behind a host function, a copy kernel's 20 ms spun on the GPU's clock) every step's logits still equal those
// of an unperturbed backend bit for bit. `persistent`: with --tune persistent=on.
static void check_late_copies(bool persistent) {
  test::TempDir tmp;
  if (!cuda_or_skip()) return;
  LoadedModel m = test::load(test::synth(tmp, "m", Form::Infer, {}, DType::F16));
  const std::vector<int32_t> prompt = random_ids(70, m.cfg.vocab_size, 11);
  const std::vector<int32_t> decoded = random_ids(12, m.cfg.vocab_size, 12);
  auto cpu = make_cpu_backend();
  const auto ref = chunked_logits(m, *cpu, LutPlacement::Host, prompt, decoded);
  using C = BackendTuning::LutCopy;
  struct Variant {
    C copy;  // the graphs' (persistent=on copies host and device rows by kernel)
    LutPlacement placement;
  };
  const std::vector<Variant> variants =
      persistent ? std::vector<Variant>{{C::Auto, LutPlacement::Host}, {C::Auto, LutPlacement::Disk}}
                 : std::vector<Variant>{{C::Dma, LutPlacement::Host},
                                        {C::Dma, LutPlacement::Disk},
                                        {C::Kernel, LutPlacement::Host},
                                        {C::Kernel, LutPlacement::Device}};
  for (const Variant& v : variants) {
    CAPTURE(persistent ? "persistent" : v.copy == C::Kernel ? "kernel" : "dma");
    CAPTURE(placement_name(v.placement));
    BackendOptions plain = options(LutRead::Copy);
    if (persistent)
      plain.tuning.persistent = BackendTuning::Persistent::On;
    else
      plain.tuning.lut_copy = v.copy;
    BackendOptions late = plain;
    late.tuning.perturb_op = "lut-copy-late";
    auto want_be = make_cuda_backend(plain);
    auto got_be = make_cuda_backend(late);
    check_same_logits(chunked_logits(m, *got_be, v.placement, prompt, decoded),
                      chunked_logits(m, *want_be, v.placement, prompt, decoded), ref);
    const BackendInfo info = got_be->info();
    CAPTURE(info.execution);
    CAPTURE(info.lut_table_note);
    if (v.copy == C::Kernel) CHECK(info.lut_table_note.find("by a kernel") != std::string::npos);
    if (persistent && info.execution.find("cannot launch cooperative") != std::string::npos)
      MESSAGE("this GPU cannot launch cooperative kernels: the persistent half ran the graphs");
    else if (persistent)
      CHECK(info.execution.find("persistent decode kernel (") == 0);
  }
}

// The graphs wait for the copy engine (rows from host memory and from disk) and for their own copy kernel
// (lut-copy=kernel, from host and device memory).
TEST_CASE("cuda: table rows copied late are waited for by the graphs") {
  check_late_copies(false);
}

// The persistent kernel waits for the copy engine (from disk) and for its own fetch (from host memory, in an earlier
// phase than the first router_lut).
TEST_CASE("cuda: --tune persistent=on: table rows copied late are waited for by the persistent kernel") {
  check_late_copies(true);
}

// A grid barrier of the persistent kernel that never passes (perturb=persistent-barrier: it waits for one block more
// than the grid has): every block gives up after its time limit and leaves, and the host makes the step a mole::Error
// that says what to do: no hang. After a step that failed so once (persistent-barrier-once), the next steps run the
// kernel again from a clean scratch and give the graphs' greedy ids.
TEST_CASE("cuda: --tune persistent=on: a barrier that never passes is an error, not a hang, and the next steps run") {
  test::TempDir tmp;
  if (!cuda_or_skip()) return;
  LoadedModel m = test::load(test::synth(tmp, "m", Form::Infer, {}, DType::BF16));
  EngineOptions o;
  o.max_context = 32;
  o.lut = LutPlacement::Device;
  // One Engine per backend (model/backend.h): the failed step (which leaves the sequence empty, as it was), then
  // (persistent-barrier-once) 20 greedy steps on the same Engine, which must recover; a fresh graphs backend runs the
  // same 20.
  auto failed_step = [&](Engine& e) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string what;
    try {
      e.step_argmax({{0, {1}}});  // one token: a decode step, run by the persistent kernel
    } catch (const Error& err) {
      what = err.what();
    }
    MESSAGE("the failed step took " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
                                    << " s");
    return what;
  };
  auto greedy = [&](Engine& e) {
    std::vector<int32_t> ids{1};
    for (int i = 0; i < 20; i++) ids.push_back(e.step_argmax({{0, {ids.back()}}}).at(0));
    return ids;
  };
  for (const std::string perturb : {"persistent-barrier", "persistent-barrier-once"}) {
    CAPTURE(perturb);
    BackendOptions opt = options(LutRead::Auto);
    opt.tuning.persistent = BackendTuning::Persistent::On;
    opt.tuning.perturb_op = perturb;
    auto be = make_cuda_backend(opt);
    Engine e(m.cfg, m.weights, m.table(), *be, o);
    const std::string what = failed_step(e);
    if (be->info().execution.find("cannot launch cooperative") != std::string::npos) {
      MESSAGE("skipped: this GPU cannot launch cooperative kernels");
      return;
    }
    CHECK(what.find("persistent decode kernel (--tune persistent) failed") != std::string::npos);
    CHECK(what.find("run without --tune persistent") != std::string::npos);
    if (perturb == "persistent-barrier-once") {
      CHECK(e.length(0) == 0);
      auto graphs = make_cuda_backend(options(LutRead::Auto));
      Engine want(m.cfg, m.weights, m.table(), *graphs, o);
      CHECK(greedy(e) == greedy(want));
      CHECK(be->info().execution.find("persistent decode kernel (") == 0);
    }
  }
}

// --memory-limit (as on Vulkan): every device buffer of the backend is charged to it, so a table past it is an error
// that names the sizes, the limit and what to do, before the device itself runs out; what fits under it runs.
TEST_CASE("cuda: --memory-limit: past it, an error naming the limit and what to do; under it, the CPU's tokens") {
  test::TempDir tmp;
  if (!cuda_or_skip()) return;
  LoadedModel m = test::load(test::synth(tmp, "m", Form::Infer, {}, DType::F16));
  EngineOptions eo;
  eo.max_context = 16;
  eo.max_step_tokens = 4;
  BackendOptions limited;
  limited.memory_limit_mib =
      0.34375;  // 352 KiB: this model's weights and activations (about 280), not its 384 KiB table
  const size_t table_bytes = m.lut->bytes();
  REQUIRE(table_bytes > size_t(0.34375 * 1048576));
  {
    auto be = make_cuda_backend(limited);
    eo.lut = LutPlacement::Device;
    const std::string what = test::error_of([&] { Engine e(m.cfg, m.weights, m.table(), *be, eo); });
    test::check_contains(what, {"lookup table", "--memory-limit", "--lut host"});
  }
  eo.lut = LutPlacement::Host;
  auto be = make_cuda_backend(limited), cpu = make_cpu_backend();
  Engine e(m.cfg, m.weights, m.table(), *be, eo), ref(m.cfg, m.weights, m.table(), *cpu, eo);
  std::vector<int32_t> ids = {5, 17, 300, 2};
  for (int step = 0; step < 8; step++) {
    const int32_t want = argmax(ref.step({{0, ids}}).at(0));
    CHECK(e.step_argmax({{0, ids}}).at(0) == want);
    ids = {want};
  }
  // Too little for the activations: the first buffer past it is named.
  limited.memory_limit_mib = 0.001;
  auto tiny = make_cuda_backend(limited);
  test::check_contains(test::error_of([&] { Engine t(m.cfg, m.weights, m.table(), *tiny, eo); }),
                       {"not enough GPU memory", "(--memory-limit) remain"});
}

TEST_CASE("cuda: reparameterization on the GPU gives the CPU's table") {
  test::TempDir tmp;
  auto be = cuda_or_skip();
  if (!be) return;
  const std::string dir = test::synth(tmp, "train", Form::Train, {{"num_key_value_heads", 2}}, DType::F16);
  const Config cfg = Config::load_dir(dir);
  const Weights w = Weights::load(dir, cfg);
  const int64_t rows = 40, per_row = cfg.lut_row_elems();
  std::vector<float> ref(size_t(rows * per_row)), got(ref.size());
  compute_lut_rows(cfg, w, 3, rows, ref.data());
  BackendLutRows source(cfg, w, *be, 64);
  source.rows(3, rows, got.data());
  const double err = rel_l2(got, ref);
  MESSAGE("reparameterization rel. L2 error " << err);
  CHECK(err < 1e-5);
}

// A device buffer's deleter gives its bytes back to the --memory-limit budget it was charged to, without a GPU
// (cudaFree of nothing fails harmlessly here).
TEST_CASE("cuda: a device buffer's deleter refunds its budget") {
  auto budget = std::make_shared<MemoryBudget>(1000, 0);
  budget->charge(1000, "a");
  CHECK(budget->left() == 0);
  cuda::FreeDevice{budget, 400}(nullptr);
  CHECK(budget->left() == 400);
  CHECK(budget->used() == 600);
}

#ifdef MOLE_FAKE_NVML
// The driver's version from NVML, where /proc/driver/nvidia/version is hidden (cuda-backend/device_info.h), through
// a stand-in library (tests/fake_nvml.cpp): its answer, and "" (never an error) where the library is missing, its
// initialisation fails or the version does not fit.
TEST_CASE("nvml: the driver's version through NVML, or nothing where NVML cannot answer") {
  if (!std::filesystem::exists(MOLE_FAKE_NVML)) {  // the build tree's library: not in a bundle (scripts/gpu-bundle.sh)
    MESSAGE("skipped: no " << MOLE_FAKE_NVML << " here");
    return;
  }
  unsetenv("FAKE_NVML_INIT");
  setenv("FAKE_NVML_VERSION", "580.159.04", 1);
  CHECK(cuda::nvml_driver_version(MOLE_FAKE_NVML) == "580.159.04");
  setenv("FAKE_NVML_INIT", "fail", 1);
  CHECK(cuda::nvml_driver_version(MOLE_FAKE_NVML).empty());
  unsetenv("FAKE_NVML_INIT");
  setenv("FAKE_NVML_VERSION", std::string(200, '9').c_str(), 1);  // longer than the caller's buffer
  CHECK(cuda::nvml_driver_version(MOLE_FAKE_NVML).empty());
  unsetenv("FAKE_NVML_VERSION");
  CHECK(cuda::nvml_driver_version("/nonexistent/libnvidia-ml.so.1").empty());
}
#endif

#endif  // MOLE_HAVE_CUDA
