// Cross-backend parity: every op case and every whole-model case of model/parity.h, on every backend of the
// registry against the CPU reference, with the validation layer on where the backend has one (any message fails).
// A backend this build has but this machine cannot run is reported as skipped with its reason (mole_tests
// --require-device makes that a failure); one the build does not have is skipped in any case. A row added for the
// test (the CPU reference under a second name) runs every case, and the cpu-perturbed row, whose router_lut is
// wrong on purpose, fails exactly the router_lut cases: the comparison can fail.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "apps/backends.h"
#include "model/cpu_backend.h"
#include "model/error.h"
#include "model/memory_budget.h"
#include "model/parity.h"
#include "model/safetensors.h"
#include "model/sampling.h"
#include "tests/test_helpers.h"

using namespace mole;

namespace {

BackendOptions test_options() {
  BackendOptions o;
  o.validation = BackendOptions::Validation::Sync;
  o.pipeline_cache = "off";
  return o;
}

// The visible GPU rows this build has; for each one the machine cannot run, says why (skipped, or failed under
// --require-device).
std::vector<const BackendEntry*> runnable_backends() {
  std::vector<const BackendEntry*> out;
  for (const BackendEntry& e : backend_registry()) {
    if (e.hidden || e.name == "cpu") continue;
    const BackendProbe p = e.probe(test_options());
    if (p.available)
      out.push_back(&e);
    else if (e.built)
      test::skip_no_device(e.name + ": " + p.detail, e.name);
    else
      MESSAGE("skipped " << e.name << ": " << p.detail);
  }
  return out;
}

// Checks every result; returns how many there were.
size_t check_results(const std::string& backend, const std::vector<ParityResult>& results) {
  for (const ParityResult& r : results) {
    CAPTURE(backend);
    CHECK_MESSAGE(r.ok, r.label << ": error " << r.error << " > " << r.bound << (r.note.empty() ? "" : ": ") << r.note);
  }
  return results.size();
}

size_t run_all_op_cases(const BackendEntry& e) {
  size_t n = 0;
  for (const OpCase& c : op_cases())
    if (op_case_applies(c, e)) n += check_results(e.name, run_op_case(c, e, test_options()));
  return n;
}

TensorView tensor(std::string name, DType dtype, std::vector<int64_t> shape, const std::vector<uint8_t>& bytes) {
  TensorView t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = bytes.data();
  t.nbytes = bytes.size();
  return t;
}

size_t run_all_model_cases(const BackendEntry& e) {
  test::TempDir tmp;
  size_t n = 0;
  for (const ModelCase& c : model_cases())
    n += check_results(e.name, run_model_case(c, tmp / c.name, e, test_options()));
  return n;
}

}  // namespace

TEST_CASE("backends: every op case on every backend matches the CPU reference (NMSE bounds per op)") {
  for (const BackendEntry* e : runnable_backends())
    MESSAGE(e->name << ": " << run_all_op_cases(*e) << " outputs compared");
}

TEST_CASE("backends: every model case on every backend matches the CPU reference (logits, greedy ids)") {
  for (const BackendEntry* e : runnable_backends())
    MESSAGE(e->name << ": " << run_all_model_cases(*e) << " comparisons");
}

TEST_CASE("backends: a row added to the registry runs every case; a perturbed op fails its cases only") {
  std::vector<BackendEntry>& rows = backend_registry();
  BackendEntry twin = cpu_backend_entry();
  twin.name = "cpu-twin";
  twin.hidden = true;
  rows.push_back(twin);
  const BackendEntry& added = find_backend("cpu-twin");
  const size_t ops = run_all_op_cases(added), models = run_all_model_cases(added);
  MESSAGE("cpu-twin: " << ops << " op outputs, " << models << " model comparisons");
  CHECK(ops > 200);
  CHECK(models >= 15);
  rows.pop_back();

  // The perturbed backend (router_lut 0.1% off): every router_lut result fails, every other op's passes.
  const BackendEntry& perturbed = find_backend("cpu-perturbed");
  BackendOptions o = test_options();
  o.tuning.perturb_op = "router_lut";
  size_t router_failed = 0, router_total = 0, others_failed = 0;
  for (const OpCase& c : op_cases()) {
    if (!op_case_applies(c, perturbed)) continue;
    for (const ParityResult& r : run_op_case(c, perturbed, o)) {
      if (r.op == "router_lut") {
        router_total++;
        router_failed += r.ok ? 0 : 1;
      } else {
        others_failed += r.ok ? 0 : 1;
      }
    }
  }
  CHECK(router_total > 0);
  CHECK(router_failed == router_total);
  CHECK(others_failed == 0);
}

TEST_CASE("backends: --backend auto takes the first GPU row that starts, and says in one line what it passed over") {
  std::vector<BackendEntry>& rows = backend_registry();
  struct Restore {
    std::vector<BackendEntry>& rows;
    std::vector<BackendEntry> saved;
    ~Restore() { rows = saved; }
  } restore{rows, rows};
  // Fake GPU rows in front of the CPU reference: what their probes say and whether they start are set here.
  auto gpu_row = [](const std::string& name, BackendProbe probe, bool starts) {
    BackendEntry e = cpu_backend_entry();
    e.name = name;
    e.probe = [probe](const BackendOptions&) { return probe; };
    if (!starts)
      e.make = [name](const BackendOptions&) -> std::unique_ptr<Backend> {
        throw Error("device lost while opening " + name);
      };
    return e;
  };
  const BackendProbe gpu{true, "Fake GPU 0", "", true}, cpu_impl{true, "Fake CPU rasterizer", "", false},
      none{false, "no driver found: install one", "", false};
  std::vector<std::string> notices;
  const BackendNotice sink = [&](const std::string& line) { notices.push_back(line); };

  // The first row starts: no notice.
  rows = {gpu_row("fast", gpu, true), gpu_row("slow", gpu, true), cpu_backend_entry()};
  CHECK(make_backend("auto", test_options(), sink) != nullptr);
  CHECK(notices.empty());

  // The first row fails to start: the next is tried, and the notice names both.
  rows = {gpu_row("fast", gpu, false), gpu_row("slow", gpu, true), cpu_backend_entry()};
  CHECK(make_backend("auto", test_options(), sink) != nullptr);
  REQUIRE(notices.size() == 1);
  CHECK(notices[0] == "--backend auto: fast did not start: device lost while opening fast; using slow");

  // No GPU: each built row's reason, then the CPU reference. A row this build lacks is not named.
  notices.clear();
  BackendEntry lacking = gpu_row("absent", none, false);
  lacking.built = false;
  rows = {lacking, gpu_row("fast", none, true), gpu_row("soft", cpu_impl, true), cpu_backend_entry()};
  const std::unique_ptr<Backend> b = make_backend("auto", test_options(), sink);
  CHECK(b->info().name == "cpu");
  REQUIRE(notices.size() == 1);
  CHECK(notices[0] ==
        "--backend auto: no GPU backend runs here (fast: no driver found: install one; soft: its only device is a CPU "
        "implementation (--allow-cpu-device)); using the CPU reference");

  // A backend named outright: made or refused as it is, without a notice.
  notices.clear();
  rows = {gpu_row("fast", gpu, false), cpu_backend_entry()};
  test::check_contains(test::error_of([&] { make_backend("fast", test_options(), sink); }), {"device lost"});
  CHECK(notices.empty());
}

TEST_CASE("backends: router weights 0.1% off fail every router_probs case") {
  const BackendEntry& perturbed = find_backend("cpu-perturbed");
  BackendOptions o = test_options();
  o.tuning.perturb_op = "router_probs";
  size_t cases = 0;
  for (const OpCase& c : op_cases()) {
    if (c.op != "router_probs") continue;
    for (const ParityResult& r : run_op_case(c, perturbed, o)) {
      cases++;
      CHECK_MESSAGE(!r.ok, r.label << " passed with perturbed weights");
    }
  }
  CHECK(cases >= 15);
}

TEST_CASE("backends: a stacked weight's product is its parts' products side by side, bit for bit") {
  // Three parts of odd row counts (a 16-bit part then starts 2 bytes into a 4-byte word) in every dtype; the CPU
  // reference and each GPU backend, each against itself: stacking may change where a row's weights live, never
  // what is computed from them.
  const int64_t K = 40, T = 3;
  const std::vector<int64_t> rows = {7, 3, 5};
  std::vector<const BackendEntry*> backends = runnable_backends();
  backends.insert(backends.begin(), &find_backend("cpu"));
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const BackendEntry* e : backends) {
    for (DType d : {DType::F32, DType::F16, DType::BF16}) {
      CAPTURE(e->name);
      CAPTURE(std::string(dtype_name(d)));
      std::unique_ptr<Backend> be = e->make(test_options());
      std::deque<std::vector<uint8_t>> bytes;
      std::deque<TensorView> views;
      std::vector<const TensorView*> parts;
      for (int64_t r : rows) {
        std::vector<float> v(size_t(r * K));
        for (float& f : v) f = u(rng);
        const std::vector<uint8_t>& b = bytes.emplace_back(f32_to_bytes(v.data(), v.size(), d));
        parts.push_back(&views.emplace_back(tensor("part" + std::to_string(parts.size()), d, {r, K}, b)));
      }
      std::vector<float> norm(size_t(K), 1.0f), xs(size_t(T * K));
      for (float& f : xs) f = u(rng);
      const std::vector<uint8_t> norm_bytes = f32_to_bytes(norm.data(), norm.size(), DType::F32);
      const TensorView norm_view = tensor("norm", DType::F32, {K}, norm_bytes);
      const BufferId nw = be->upload_weight(norm_view), x = be->alloc(size_t(T * K), "x");
      be->write(x, 0, xs.size(), xs.data());
      const int64_t N = rows[0] + rows[1] + rows[2];
      StepGraph g;
      g.max_tokens = T;
      g.max_out_rows = T;
      g.logits = be->alloc(size_t(T), "logits");  // what a GPU backend copies back with every step: one float per row
      const BufferId all = be->alloc(size_t(T * N), "stacked");
      g.ops.push_back({.kind = OpKind::NormMatMul,
                       .dst = all,
                       .src0 = x,
                       .src1 = be->upload_stacked(parts),
                       .src2 = nw,
                       .n = int(N),
                       .k = int(K),
                       .eps = 1e-5f});
      std::vector<BufferId> alone;
      for (const TensorView* p : parts) {
        alone.push_back(be->alloc(size_t(T * p->shape[0]), "alone"));
        g.ops.push_back({.kind = OpKind::NormMatMul,
                         .dst = alone.back(),
                         .src0 = x,
                         .src1 = be->upload_weight(*p),
                         .src2 = nw,
                         .n = int(p->shape[0]),
                         .k = int(K),
                         .eps = 1e-5f});
      }
      StepInputs in;
      for (int t = 0; t < T; t++) {
        in.ids.push_back(0);
        in.slot.push_back(0);
        in.pos.push_back(t);
        in.out_rows.push_back(t);
      }
      be->run_step(g, in);
      std::vector<float> got(size_t(T * N));
      be->read_back(all, 0, got.size(), got.data());
      int64_t col = 0;
      for (size_t i = 0; i < parts.size(); i++) {
        const int64_t n = rows[i];
        std::vector<float> want(size_t(T * n));
        be->read_back(alone[i], 0, want.size(), want.data());
        for (int64_t t = 0; t < T; t++)
          for (int64_t j = 0; j < n; j++)
            REQUIRE_MESSAGE(got[size_t(t * N + col + j)] == want[size_t(t * n + j)],
                            "part " << i << ", token " << t << ", row " << j);
        col += n;
      }
      CHECK(be->info().validation_messages == 0);
    }
  }
}

TEST_CASE("backends: tensors that cannot be stacked are an error naming them") {
  const std::vector<uint8_t> data(32);
  const TensorView a = tensor("q_proj", DType::F16, {2, 8}, data);
  TensorView b = a, c = a;
  b.name = "k_proj";
  b.dtype = DType::BF16;
  c.name = "v_proj";
  c.shape = {4, 4};
  CHECK(stack_check({&a, &a}).shape == std::vector<int64_t>{4, 8});
  CHECK(stack_check({&a, &a}).nbytes == 64);
  CHECK_THROWS_WITH_AS(stack_check({&a, &b}), doctest::Contains("q_proj+k_proj cannot be stacked"), Error);
  CHECK_THROWS_WITH_AS(stack_check({&a, &c}), doctest::Contains("v_proj is F16 (4, 4)"), Error);
  CHECK_THROWS_AS(stack_check({}), Error);
}

TEST_CASE("backends: a step with attention holds each slot once, as consecutive rows at consecutive positions") {
  StepGraph g;
  g.ops = {attention_op(0, 1, 2, 2, 4, 1, 16, true)};
  auto step = [](std::vector<int32_t> slot, std::vector<int32_t> pos) {
    StepInputs in;
    in.slot = std::move(slot);
    in.pos = std::move(pos);
    return in;
  };
  // Prefill chunks of three sequences, a batched decode with slots out of order: fine.
  CHECK_NOTHROW(check_step_slots(g, step({0, 0, 0, 2, 1, 1}, {7, 8, 9, 0, 3, 4})));
  CHECK_NOTHROW(check_step_slots(g, step({2, 0, 1}, {5, 9, 0})));
  // A slot twice, with or without other rows between; positions out of order or repeated.
  CHECK_THROWS_WITH_AS(check_step_slots(g, step({0, 1, 0}, {1, 1, 2})),
                       doctest::Contains("step row 2: sequence slot 0"), Error);
  CHECK_THROWS_WITH_AS(check_step_slots(g, step({0, 0}, {1, 3})), doctest::Contains("step row 1"), Error);
  CHECK_THROWS_AS(check_step_slots(g, step({0, 0}, {4, 3})), Error);
  CHECK_THROWS_AS(check_step_slots(g, step({0, 0}, {4, 4})), Error);
  // The backends check it: the CPU reference refuses such a step before it runs.
  std::unique_ptr<Backend> cpu = find_backend("cpu").make({});
  const BufferId qkv = cpu->alloc(2 * 16, "q/k/v"), kv = cpu->alloc(2 * 16 * 8, "KV cache"),
                 out = cpu->alloc(2 * 8, "out");
  StepGraph real;
  real.ops = {attention_op(qkv, kv, out, 2, 4, 1, 16, false)};
  real.max_tokens = real.max_out_rows = 2;
  StepInputs bad = step({0, 0}, {3, 5});
  bad.ids = {1, 2};
  bad.out_rows = {1};
  CHECK_THROWS_WITH_AS(cpu->run_step(real, bad), doctest::Contains("sequence slot 0"), Error);
  // A graph without attention (reparameterization) is not bound by it.
  g.ops = {{.kind = OpKind::Argmax, .dst = 0, .src0 = 1, .n = 4, .on_out_rows = true}};
  CHECK_NOTHROW(check_step_slots(g, step({0, 0}, {4, 4})));
}

TEST_CASE("backends: which Gathers a step whose output rows are its tokens may skip (GatherBypass)") {
  // Buffers: 0 x, 1 g, 2 logits, 3 argmax, 4 head, 5 norm, 6 other, 7 router probs.
  const Op gather{.kind = OpKind::Gather, .dst = 1, .src0 = 0, .n = 8};
  const Op head{
      .kind = OpKind::NormMatMul, .dst = 2, .src0 = 1, .src1 = 4, .src2 = 5, .n = 16, .k = 8, .on_out_rows = true};
  const Op argmax{.kind = OpKind::Argmax, .dst = 3, .src0 = 2, .n = 16, .on_out_rows = true};
  auto graph = [](std::vector<Op> ops) {
    StepGraph g;
    g.ops = std::move(ops);
    g.logits = 2;
    g.argmax = 3;
    g.router_probs = 7;
    return g;
  };
  // The forward pass's end: the Gather skipped, the final product reads x.
  const StepGraph end = graph({gather, head, argmax});
  GatherBypass b = gather_bypass(end);
  CHECK(b.skip == std::vector<bool>{true, false, false});
  CHECK(b.src0 == std::vector<BufferId>{kNoBuffer, 0, kNoBuffer});
  CHECK(b.rows_of(end, 1) == 0);  // after such a step g's rows are x's
  CHECK(b.rows_of(end, 2) == 2);
  CHECK(b.rows_of(end, 0) == 0);
  // A second reader of g, an op between them writing x, a reader not on the output rows, g read beside src0, a
  // Gather into a graph output, a reader before the Gather: nothing skipped.
  Op second = argmax;
  second.src0 = 1;
  second.dst = 6;
  Op writes_x{.kind = OpKind::Embed, .dst = 0, .src0 = 4, .n = 8};
  Op per_token = head;
  per_token.on_out_rows = false;
  Op addend{.kind = OpKind::MatMul, .dst = 2, .src0 = 1, .src1 = 4, .src2 = 1, .n = 16, .k = 8, .on_out_rows = true};
  Op into_output = gather;
  into_output.dst = 7;
  Op reads_output = head;
  reads_output.src0 = 7;
  for (const std::vector<Op>& ops : std::vector<std::vector<Op>>{{gather, head, second},
                                                                 {gather, writes_x, head},
                                                                 {gather, per_token},
                                                                 {gather, addend},
                                                                 {into_output, reads_output},
                                                                 {head, gather}}) {
    const StepGraph g = graph(ops);
    b = gather_bypass(g);
    CHECK(b.skip == std::vector<bool>(ops.size(), false));
    CHECK(b.src0 == std::vector<BufferId>(ops.size(), kNoBuffer));
    CHECK(b.rows_of(g, 1) == 1);
  }
  // A MatMul on the output rows is a reader like NormMatMul.
  Op product = addend;
  product.src2 = kNoBuffer;
  b = gather_bypass(graph({gather, product}));
  CHECK(b.skip == std::vector<bool>{true, false});
  CHECK(rows_identity({0}, 1));
  CHECK(rows_identity({0, 1, 2}, 3));
  CHECK_FALSE(rows_identity({0, 1}, 3));
  CHECK_FALSE(rows_identity({1, 0}, 2));
  CHECK_FALSE(rows_identity({2}, 3));
}

TEST_CASE(
    "backends: logits that hold a NaN have no next token (an error naming the sequence), on every backend, "
    "and the batch's other sequences are untouched") {
  test::TempDir tmp;
  const std::string dir = test::synth(tmp, "m", Form::Infer, {}, DType::F16);
  LoadedModel clean = test::load(dir), bad = test::load(dir);
  // Token 7's embedding row all ones bits (a NaN in every dtype): a sequence that holds it has NaN logits from there.
  const TensorView& emb = *clean.weights.embed;
  std::vector<uint8_t> bytes(emb.data, emb.data + emb.nbytes);
  const size_t row_bytes = emb.nbytes / size_t(emb.shape[0]);
  std::fill(bytes.begin() + long(7 * row_bytes), bytes.begin() + long(8 * row_bytes), uint8_t(0xff));
  TensorView nan_emb = emb;
  nan_emb.data = bytes.data();
  nan_emb.mapping = nullptr;
  nan_emb.mapping_bytes = 0;
  bad.weights.embed = &nan_emb;

  std::vector<const BackendEntry*> backends = runnable_backends();
  backends.insert(backends.begin(), &find_backend("cpu"));
  EngineOptions o;
  o.max_batch = 2;
  Sampler sampler({});
  for (const BackendEntry* e : backends) {
    CAPTURE(e->name);
    std::unique_ptr<Backend> be_clean = e->make(test_options()), be_bad = e->make(test_options());
    Engine ec(clean.cfg, clean.weights, clean.table(), *be_clean, o), eb(bad.cfg, bad.weights, bad.table(), *be_bad, o);
    // The same step shapes on both engines: sequence 0 is {8, 1} on the clean one, {7, 1} on the other.
    const auto rc = ec.step({{0, {8, 1}}, {1, {3, 1, 4}}}), rb = eb.step({{0, {7, 1}}, {1, {3, 1, 4}}});
    REQUIRE(rb.size() == 2);
    CHECK(std::all_of(rb[0].begin(), rb[0].end(), [](float v) { return std::isnan(v); }));
    CHECK(rb[1] == rc[1]);
    CHECK(argmax(rb[0]) == -1);
    test::check_contains(test::error_of([&] {
                           sampler.sample(rb[0], {7, 1}, "position 1");
                         }),
                         {"NaN logits at position 1", "mole parity"});
    CHECK(sampler.sample(rb[1], {3, 1, 4}) >= 0);
    // Greedy on the device: the NaN row's Argmax gives -1, which the engine makes an error.
    test::check_contains(test::error_of([&] {
                           eb.step_argmax({{0, {1}}, {1, {5}}});
                         }),
                         {"NaN logits at position 2 of sequence 0"});
    ec.step_argmax({{0, {1}}, {1, {5}}});
    for (int32_t id : {6, 9, 11}) CHECK(eb.step_argmax({{1, {id}}}) == ec.step_argmax({{1, {id}}}));
    CHECK(be_bad->info().validation_messages == 0);
  }
}

namespace {

// An inference-form checkpoint whose table (V = 40,000 rows of 4 layers x 64 experts x 256 dims in F16, 128 KiB a
// row: 4.9 GB) lies past byte 2^32, as every published 410M MoLE's does (9-40 GB), but costs no disk: only `rows`
// hold data, the rest are the file system's holes, which read as zeros. The dense weights come from synth (shard 1);
// the routers and the table are written here (shard 2). Returns its directory.
std::string synth_sparse_big_table(const test::TempDir& tmp, const std::vector<int32_t>& rows) {
  const int L = 4, E = 64, D = 256;
  const int64_t V = 40000, row_elems = int64_t(L) * E * D;
  const std::string dir = test::synth(tmp, "big", Form::Dense,
                                      {{"vocab_size", V},
                                       {"hidden_size", D},
                                       {"intermediate_size", 512},
                                       {"num_hidden_layers", L},
                                       {"num_attention_heads", 4},
                                       {"num_key_value_heads", 2}},
                                      DType::F16);
  std::filesystem::rename(dir + "/model.safetensors", dir + "/model-00001-of-00002.safetensors");
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  const SafetensorsFile dense = SafetensorsFile::open(dir + "/model-00001-of-00002.safetensors");
  for (const TensorView& t : dense.tensors()) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";

  std::mt19937 rng(4242);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  auto f16 = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = normal(rng);
    return f32_to_bytes(v.data(), n, DType::F16);
  };
  nlohmann::json header = {{"__metadata__", {{"format", "pt"}}}};
  std::vector<uint8_t> routers;
  for (int l = 0; l < L; l++) {
    const std::string name = "model.layers." + std::to_string(l) + ".router.weight";
    const std::vector<uint8_t> w = f16(size_t(E) * D);
    header[name] = {{"dtype", "F16"}, {"shape", {E, D}}, {"data_offsets", {routers.size(), routers.size() + w.size()}}};
    routers.insert(routers.end(), w.begin(), w.end());
    index["weight_map"][name] = "model-00002-of-00002.safetensors";
  }
  const uint64_t row_bytes = uint64_t(row_elems) * 2, table_at = routers.size();
  header["model.moe_table.weight"] = {
      {"dtype", "F16"}, {"shape", {V, row_elems}}, {"data_offsets", {table_at, table_at + uint64_t(V) * row_bytes}}};
  index["weight_map"]["model.moe_table.weight"] = "model-00002-of-00002.safetensors";
  std::string text = header.dump();
  text.append((64 - (8 + text.size()) % 64) % 64, ' ');  // the data 64-byte aligned in the file
  const uint64_t data_at = 8 + text.size(), size = data_at + table_at + uint64_t(V) * row_bytes;
  const std::string shard = dir + "/model-00002-of-00002.safetensors";
  {
    std::ofstream f(shard, std::ios::binary);
    const uint64_t n = text.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << text;
    f.write(reinterpret_cast<const char*>(routers.data()), std::streamsize(routers.size()));
  }
  std::filesystem::resize_file(shard, size);  // the table's holes
  std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
  for (int32_t r : rows) {
    const std::vector<uint8_t> row = f16(size_t(row_elems));
    f.seekp(std::streamoff(data_at + table_at + uint64_t(r) * row_bytes));
    f.write(reinterpret_cast<const char*>(row.data()), std::streamsize(row.size()));
  }
  REQUIRE(f.good());
  std::ofstream(dir + "/model.safetensors.index.json") << index.dump(2);
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir + "/config.json"));
  cfg["num_experts"] = E;
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  return dir;
}

}  // namespace

// A row's byte offset in the table past 2^31 or 2^32, cut to 32 bits anywhere, reads another row: the rows a cut
// offset would read (id - 16,384 for 2^31, id - 32,768 for 2^32, at 128 KiB a row) hold other values. The CPU
// reference's logits with --lut disk are checked against the float64 reference on the same layout
// (tests/reference: table_past_4gib); here every GPU backend in every placement that fits its memory.
TEST_CASE("backends: a table past 4 GiB: rows past byte 2^31 and 2^32 are read from there, in every placement") {
  test::TempDir tmp;
  const std::vector<int32_t> ids = {3, 32771, 16390, 39999, 32768, 24000, 7231, 0};
  std::vector<int32_t> rows = ids;
  for (int32_t id : ids) rows.insert(rows.end(), {id % 32768, id % 16384});
  const LoadedModel m = test::load(synth_sparse_big_table(tmp, rows));
  REQUIRE(m.table());
  REQUIRE(m.table()->bytes() > (uint64_t(1) << 32));
  EngineOptions eo;
  eo.max_context = 16;
  eo.max_step_tokens = int(ids.size());
  eo.lut = LutPlacement::Disk;
  auto cpu = make_cpu_backend();
  const auto ref = Engine(m.cfg, m.weights, m.table(), *cpu, eo).step({{0, ids}}, true);
  const std::pair<LutPlacement, LutRead> runs[] = {{LutPlacement::Device, LutRead::Auto},
                                                   {LutPlacement::Host, LutRead::Copy},
                                                   {LutPlacement::Host, LutRead::Direct},
                                                   {LutPlacement::Disk, LutRead::Auto}};
  for (const BackendEntry* e : runnable_backends()) {
    for (const auto& [placement, read] : runs) {
      const std::string run =
          e->name + " --lut " + placement_name(placement) + " --lut-read " + std::string(lut_read_name(read));
      CAPTURE(run);
      BackendOptions o = test_options();
      o.lut_read = read;
      eo.lut = placement;
      try {
        std::unique_ptr<Backend> be = e->make(o);
        const auto got = Engine(m.cfg, m.weights, m.table(), *be, eo).step({{0, ids}}, true);
        REQUIRE(got.size() == ref.size());
        for (size_t t = 0; t < ref.size(); t++) CHECK(test::rel_l2(got[t], ref[t]) < kParityModelRelL2);
        CHECK(be->info().validation_messages == 0);
      } catch (const Error& err) {
        // A device that cannot hold the whole table says so; nothing else may fail.
        const bool too_big = placement == LutPlacement::Device &&
                             std::string(err.what()).find("not enough GPU memory") != std::string::npos;
        if (!too_big) FAIL_CHECK(err.what());
        MESSAGE(run << ": " << std::string(err.what()));
      }
    }
  }
}

// The budget both GPU backends charge device memory to (model/memory_budget.h), against sizes written by hand.
TEST_CASE("memory budget: charges up to the device's or --memory-limit's bytes, the error past it, refunds") {
  MemoryBudget device(1000, 0);  // the device's 1000 bytes, no limit
  CHECK_FALSE(device.by_limit());
  device.charge(600, "a");
  device.charge(400, "b");
  CHECK(device.left() == 0);
  test::check_contains(
      test::error_of([&] { device.charge(1, "the lookup table's row ring"); }),
      {"not enough GPU memory: the lookup table's row ring needs 1 bytes, 0 bytes of 1000 bytes remain;",
       "use --lut host or --lut disk"});
  test::check_contains(test::error_of([&] { device.charge(1, "KV cache of layer 0"); }),
                       {"0 bytes of 1000 bytes remain; try a smaller --ctx-size or batch"});
  device.refund(400);
  CHECK(device.left() == 400);
  CHECK_THROWS_AS(device.charge(401, "c"), Error);
  device.charge(400, "c");
  CHECK(device.used() == 1000);
  // --memory-limit below what the device has: the limit bounds it, and the error says so.
  MemoryBudget limited(uint64_t(1) << 30, 0.5);
  CHECK(limited.by_limit());
  CHECK(limited.limit() == 524288);
  test::check_contains(test::error_of([&] { limited.charge(524289, "the whole lookup table (--lut device)"); }),
                       {"needs 0.5000 MiB, 0.5000 MiB of 0.5000 MiB (--memory-limit) remain; use --lut host"});
  // Above it, or an unknown device (0): no bound but the device's, or only the limit.
  CHECK_FALSE(MemoryBudget(1000, 1.0).by_limit());
  CHECK(MemoryBudget(1000, 1.0).limit() == 1000);
  CHECK(MemoryBudget(0, 1.0).limit() == 1048576);
  CHECK(MemoryBudget(0, 0).limit() == UINT64_MAX);
  // The hint follows what did not fit.
  CHECK(out_of_memory_hint("the whole lookup table (--lut device)") == "; use --lut host or --lut disk");
  CHECK(out_of_memory_hint("KV cache of layer 3") == "; try a smaller --ctx-size or batch");
  CHECK(out_of_memory_hint("model.layers.0.self_attn.q_proj.weight+model.layers.0.self_attn.k_proj.weight") ==
        "; keep the table off the GPU (--lut host or --lut disk), or use --backend cpu");
  CHECK(out_of_memory_hint("logits") == "; try a smaller --ubatch-size, --ctx-size or batch");
  CHECK(out_of_memory_hint("reparameterization: expert hidden") == "; convert on the CPU (--backend cpu)");
  CHECK(memory_size_text(53) == "53 bytes");
  CHECK(memory_size_text(352 << 10) == "0.3438 MiB");
  CHECK(memory_size_text(uint64_t(3450) << 20) == "3450.0 MiB");
}
