// Per-op parity of the Vulkan backend against the CPU reference, in the style of llama.cpp's test-backend-ops:
// each case builds a small StepGraph by hand, makes the same buffers on both backends, runs the same steps through
// the Backend interface and compares every output by NMSE = sum((vulkan - cpu)^2) / sum(cpu^2) with a bound per
// op: 0 for copies, 1e-12 for elementwise ops and short sums, 1e-10 for long sums (matmul, attention).
// Validation and synchronization validation are on; any message fails the case. Without a Vulkan device every case
// says it was skipped.
#include <doctest/doctest.h>

#include "tests/test_helpers.h"

#ifdef MOLE_HAVE_VULKAN

#include <stdlib.h>

#include <cmath>
#include <cstdlib>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "model/cpu_backend.h"
#include "model/error.h"
#include "shaders/ops.h"
#include "vk-runtime/vk_backend.h"

using namespace mole;

namespace {

constexpr double kExact = 0, kTight = 1e-12, kLongSum = 1e-10;  // NMSE bounds
constexpr DType kDtypes[] = {DType::F32, DType::F16, DType::BF16};

double nmse(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return den > 0 ? num / den : num;  // a NaN or infinity anywhere fails every bound
}

std::string str(const char* what, int64_t a) {
  return std::string(what) + std::to_string(a);
}

// How many rows of an output a step compares: the step's tokens, its output rows, or the whole buffer (caches).
enum class Rows { Tokens, OutRows, All };

// The same buffers and steps on the CPU reference and on a Vulkan backend. A case appends ops to `graph`, makes
// buffers with act()/weight()/lut(), names the outputs to compare with expect(), then runs steps.
class Harness {
 public:
  StepGraph graph;
  int vocab = 1;      // token ids are drawn from [0, vocab)
  int rope_half = 0;  // hd/2 of the graph's Rope ops; 0: no RoPE inputs

  // False (with the reason printed) when no Vulkan device can run the case.
  bool start() {
    try {
      vk_ = vulkan::make_vulkan_backend({.device_index = -1, .validation = true});
    } catch (const Error& e) {
      test::skip_no_device(std::string("no usable Vulkan device: ") + e.what());
      return false;
    }
    cpu_ = make_cpu_backend();
    return true;
  }

  // A float32 buffer of `count` elements. range > 0: filled with uniform values in [-range, range] now, and again
  // before every step when per_step (step inputs, and destinations that ops update in place).
  BufferId act(size_t count, float range = 0, bool per_step = false) {
    BufferId id = same(cpu_->alloc(count, "test"), vk_->alloc(count, "test"));
    if (range > 0) fill(id, count, range);
    if (per_step) refills_.push_back({id, count, range});
    return id;
  }

  // A weight of the given shape in `dtype`, uniform in [-range, range] (rounded to the dtype on both sides alike).
  BufferId weight(std::vector<int64_t> shape, DType dtype, float range = 1) {
    TensorView t = view(std::move(shape), dtype, range);
    return same(cpu_->upload_weight(t), vk_->upload_weight(t));
  }

  // A table (V, row_elems) in `dtype` at `placement` on both backends, for steps of up to graph.max_tokens tokens.
  void lut(int64_t V, int64_t row_elems, DType dtype, LutPlacement placement) {
    lut_ = LutStore::from_tensor(view({V, row_elems}, dtype, 1), row_elems);
    cpu_->set_lut(*lut_, placement, graph.max_tokens);
    vk_->set_lut(*lut_, placement, graph.max_tokens);
  }

  // Writes the same values into a buffer on both backends.
  void set(BufferId id, const std::vector<float>& v) {
    cpu_->write(id, 0, v.size(), v.data());
    vk_->write(id, 0, v.size(), v.data());
  }

  // Compares `width` elements per row of buf after every step.
  void expect(BufferId buf, size_t width, Rows rows, double bound, std::string what) {
    outputs_.push_back({buf, width, rows, bound, std::move(what)});
  }

  // Default inputs of a T-token step: random ids, slot 0, positions 0..T-1, one output row (row 0), RoPE angles of
  // random positions. Cases change what they need before step().
  StepInputs inputs(int T) {
    StepInputs in;
    for (int t = 0; t < T; t++) {
      in.ids.push_back(int32_t(rng_() % uint32_t(vocab)));
      in.slot.push_back(0);
      in.pos.push_back(t);
      float p = float(rng_() % 2048);
      for (int i = 0; i < rope_half; i++) {
        float angle = p * std::pow(10000.0f, -float(i) / float(rope_half));
        in.rope_cos.push_back(std::cos(angle));
        in.rope_sin.push_back(std::sin(angle));
      }
    }
    in.out_rows = {0};
    return in;
  }

  // Runs one step on both backends and compares every expected output.
  void step(const StepInputs& in) {
    if (graph.logits == kNoBuffer) {  // the Vulkan backend copies (R, V) logits back every step: give it one float
      graph.logits = act(1);
      graph.max_out_rows = 1;
    }
    for (const Refill& r : refills_) fill(r.buf, r.count, r.range);
    for (Backend* b : {cpu_.get(), vk_.get()}) {
      if (lut_) b->stream_lut_rows(in.ids);
      b->run_step(graph, in);
    }
    const size_t T = size_t(in.tokens()), R = in.out_rows.size();
    for (const Output& o : outputs_) {
      size_t n = o.rows == Rows::Tokens ? T * o.width : o.rows == Rows::OutRows ? R * o.width : o.width;
      std::vector<float> ref(n), got(n);
      cpu_->read_back(o.buf, 0, n, ref.data());
      vk_->read_back(o.buf, 0, n, got.data());
      double e = nmse(got, ref);
      MESSAGE(o.what << " T=" << T << (o.rows == Rows::OutRows ? str(" R=", int64_t(R)) : "") << ": NMSE " << e);
      CHECK_MESSAGE(e <= o.bound, o.what << " T=" << T << ": NMSE " << e << " > " << o.bound);
    }
  }

  // Profiling on the Vulkan backend, for the dispatches it records: vulkan_dispatches() is their sum over the steps
  // run since.
  void profile_vulkan() { vk_->set_profiling(true); }
  uint64_t vulkan_dispatches() { return vk_->profile().dispatches; }
  bool vulkan_on_cpu() const { return vk_->info().runs_on_cpu; }

  void check_validation() const {
    INFO(vulkan::validation_log(*vk_));
    CHECK(vulkan::validation_message_count(*vk_) == 0);
  }

 private:
  struct Refill {
    BufferId buf;
    size_t count;
    float range;
  };
  struct Output {
    BufferId buf;
    size_t width;
    Rows rows;
    double bound;
    std::string what;
  };

  static BufferId same(BufferId a, BufferId b) {
    REQUIRE(a == b);  // both backends number buffers in creation order
    return a;
  }
  std::vector<float> random(size_t n, float range) {
    std::uniform_real_distribution<float> u(-range, range);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng_);
    return v;
  }
  void fill(BufferId id, size_t count, float range) {
    std::vector<float> v = random(count, range);
    cpu_->write(id, 0, count, v.data());
    vk_->write(id, 0, count, v.data());
  }
  TensorView view(std::vector<int64_t> shape, DType dtype, float range) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> v = random(size_t(n), range);
    const std::vector<uint8_t>& bytes = bytes_.emplace_back(f32_to_bytes(v.data(), v.size(), dtype));
    TensorView t;
    t.name = "test weight";
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.data = bytes.data();
    t.nbytes = bytes.size();
    return t;
  }

  std::mt19937 rng_{20250601};
  std::deque<std::vector<uint8_t>> bytes_;  // weight and table bytes: the CPU backend keeps views into them
  std::optional<LutStore> lut_;             // outlives both backends (declared before them)
  std::unique_ptr<Backend> cpu_, vk_;
  std::vector<Refill> refills_;
  std::vector<Output> outputs_;
};

std::string name(const char* op, DType dt) {
  return std::string(op) + " " + dtype_name(dt);
}

// The matmul family's kernels, chosen when the backend is made: the column kernel with subgroup reductions (where
// the device has them) or with shared-memory ones, or the tiled kernel for every step (normally only for steps of
// at least kMatMulTiledMinRows rows).
enum class Kernel { Subgroup, Shared, Tiled };
constexpr Kernel kKernels[] = {Kernel::Subgroup, Kernel::Shared, Kernel::Tiled};
const char* kernel_name(Kernel k) {
  return k == Kernel::Subgroup ? " (subgroups)" : k == Kernel::Shared ? " (shared memory)" : " (tiled)";
}
struct KernelSetting {
  explicit KernelSetting(Kernel k)
      : subgroups("MOLE_VK_SUBGROUPS", k == Kernel::Subgroup ? nullptr : "0"),
        tiled("MOLE_VK_TILED_MIN_ROWS", k == Kernel::Tiled ? "1" : "1000000") {}
  test::ScopedEnv subgroups, tiled;
};

}  // namespace

TEST_CASE("vulkan ops: embed") {
  Harness h;
  if (!h.start()) return;
  h.vocab = 67;
  h.graph.max_tokens = 13;
  for (DType dt : kDtypes)
    for (int D : {1, 37, 300}) {
      BufferId w = h.weight({67, D}, dt), dst = h.act(size_t(13 * D));
      h.graph.ops.push_back({.kind = OpKind::Embed, .dst = dst, .src0 = w, .n = D});
      h.expect(dst, size_t(D), Rows::Tokens, kExact, name("embed", dt) + str(" D=", D));
    }
  for (int T : {1, 13}) h.step(h.inputs(T));
  h.check_validation();
}

// A fresh harness per matmul kernel: `add_ops(h, kernel name)` builds the graph, then steps of each token count run.
template <typename AddOps>
void for_each_kernel(int max_tokens, std::initializer_list<int> steps, AddOps add_ops) {
  for (Kernel kernel : kKernels) {
    CAPTURE(kernel_name(kernel));
    KernelSetting setting(kernel);
    Harness h;
    if (!h.start()) return;
    h.graph.max_tokens = max_tokens;
    add_ops(h, std::string(kernel_name(kernel)));
    for (int T : steps) h.step(h.inputs(T));
    h.check_validation();
  }
}

struct MatMulShape {
  int K, N;
};

TEST_CASE("vulkan ops: matmul") {
  // K = 77, 1030 (scalar loads for 16-bit weights; 1030 is not a multiple of 4 either), 64 and 1024 (vector loads), 1.
  // 70 rows: more than one 64-row tile of the tiled kernel.
  for_each_kernel(70, {1, 3, 9, 33, 70}, [](Harness& h, const std::string& kernel) {
    for (MatMulShape s : {MatMulShape{77, 13}, MatMulShape{1, 3}, MatMulShape{64, 5000}, MatMulShape{1030, 31},
                          MatMulShape{1024, 129}}) {
      BufferId x = h.act(size_t(70 * s.K), 1, true);
      for (DType dt : kDtypes) {
        BufferId w = h.weight({s.N, s.K}, dt, 1.0f / std::sqrt(float(s.K)));
        for (int mode : {0, 1, 2}) {  // write y; add into y; add into y and then an addend
          const bool acc = mode > 0;
          BufferId y = acc ? h.act(size_t(70 * s.N), 1, true) : h.act(size_t(70 * s.N));
          BufferId addend = mode == 2 ? h.act(size_t(70 * s.N), 1, true) : kNoBuffer;
          h.graph.ops.push_back({.kind = OpKind::MatMul,
                                 .dst = y,
                                 .src0 = x,
                                 .src1 = w,
                                 .src2 = addend,
                                 .n = s.N,
                                 .k = s.K,
                                 .accumulate = acc});
          h.expect(y, size_t(s.N), Rows::Tokens, kLongSum,
                   name("matmul", dt) + str(" K=", s.K) + str(" N=", s.N) + (acc ? " accumulate" : "") +
                       (mode == 2 ? " + addend" : "") + kernel);
        }
      }
    }
  });
}

TEST_CASE("vulkan ops: norm_matmul (rmsnorm fused into the product, optional gelu)") {
  for_each_kernel(70, {1, 2, 8, 19, 70}, [](Harness& h, const std::string& kernel) {
    for (MatMulShape s : {MatMulShape{1, 3}, MatMulShape{37, 13}, MatMulShape{64, 300}, MatMulShape{256, 129},
                          MatMulShape{2053, 31}, MatMulShape{768, 40}}) {
      // x with a large spread (the norm must bring it back), norm weights in [-2, 2], products spanning GELU's
      // curved range [-6, 6] and beyond.
      BufferId x = h.act(size_t(70 * s.K), 30, true);
      for (DType dt : kDtypes) {
        const DType norm_dt = dt == DType::F16 ? DType::F32 : dt == DType::BF16 ? DType::F16 : DType::BF16;
        BufferId w = h.weight({s.N, s.K}, dt, 3.0f / std::sqrt(float(s.K)));
        BufferId nw = h.weight({s.K}, norm_dt, 2);
        for (bool gelu : {false, true}) {
          BufferId y = h.act(size_t(70 * s.N));
          h.graph.ops.push_back({.kind = OpKind::NormMatMul,
                                 .dst = y,
                                 .src0 = x,
                                 .src1 = w,
                                 .src2 = nw,
                                 .n = s.N,
                                 .k = s.K,
                                 .eps = gelu ? 1e-6f : 1e-5f,
                                 .gelu = gelu});
          h.expect(y, size_t(s.N), Rows::Tokens, kLongSum,
                   name("norm_matmul", dt) + " norm " + dtype_name(norm_dt) + str(" K=", s.K) + str(" N=", s.N) +
                       (gelu ? " gelu" : "") + kernel);
        }
      }
    }
  });
}

// An attention case: heads, head dimension, context rows per slot, RoPE.
struct AttentionConfig {
  const char* name;
  int H, KVH, hd, ctx;
  bool rope;  // keys rotated as they are stored, queries as attention reads them
  std::string what() const {
    return std::string(name) + str(" H=", H) + str(" KVH=", KVH) + str(" hd=", hd) + str(" ctx=", ctx) +
           (rope ? " rope" : "");
  }
};
constexpr int kAttentionSlots = 3;  // B
constexpr int kAttentionMaxTokens = 19;

struct AttentionBuffers {
  BufferId k_cache, v_cache, out;
};
// The graph of the attention cases: both KV stores of the step's k and v, then attention over kAttentionSlots
// slots of c.ctx rows. The caches start out random: rows no step stores stand for earlier tokens.
AttentionBuffers attention_graph(Harness& h, const AttentionConfig& c) {
  const int T = kAttentionMaxTokens;
  h.graph.max_tokens = T;
  h.rope_half = c.rope ? c.hd / 2 : 0;
  const size_t q_width = size_t(c.H * c.hd), kv_width = size_t(c.KVH * c.hd);
  const size_t rows = size_t(kAttentionSlots * c.ctx);
  BufferId q = h.act(T * q_width, 3, true), k = h.act(T * kv_width, 1, true), v = h.act(T * kv_width, 1, true);
  AttentionBuffers b{h.act(rows * kv_width, 1), h.act(rows * kv_width, 1), h.act(T * q_width)};
  const int kvn = int(kv_width);
  h.graph.ops = {
      {.kind = OpKind::KvStore, .dst = b.k_cache, .src0 = k, .n = kvn, .k = c.hd, .ctx = c.ctx, .rope = c.rope},
      {.kind = OpKind::KvStore, .dst = b.v_cache, .src0 = v, .n = kvn, .ctx = c.ctx},
      {.kind = OpKind::Attention,
       .dst = b.out,
       .src0 = q,
       .src1 = b.k_cache,
       .src2 = b.v_cache,
       .n = c.H,
       .k = c.hd,
       .kv_heads = c.KVH,
       .ctx = c.ctx,
       .rope = c.rope}};
  return b;
}

// A run of one step's tokens: slot, first position, count.
struct Run {
  int slot, pos, count;
};
// Runs a step of the given runs (random RoPE angles per token); returns its longest key count.
int attention_step(Harness& h, const std::vector<Run>& runs) {
  int T = 0, max_keys = 0;
  for (Run r : runs) T += r.count;
  StepInputs in = h.inputs(T);
  in.slot.clear();
  in.pos.clear();
  for (Run r : runs)
    for (int i = 0; i < r.count; i++) {
      in.slot.push_back(r.slot);
      in.pos.push_back(r.pos + i);
      max_keys = std::max(max_keys, r.pos + i + 1);
    }
  h.step(in);
  return max_keys;
}

TEST_CASE("vulkan ops: kv_store + attention, with and without RoPE fused in") {
  using Config = AttentionConfig;
  // Automatic splits (the single pass at these contexts), and 3 forced: split-K over short contexts, where the
  // splits of a short sequence after the first have no keys.
  for (const char* splits : {(const char*)nullptr, "3"}) {
    test::ScopedEnv env("MOLE_VK_ATTN_SPLITS", splits);
    for (Config c :
         {Config{"MHA", 4, 4, 64, 301, false}, Config{"GQA", 8, 2, 20, 333, false},
          Config{"MQA", 6, 1, 128, 300, false}, Config{"MHA", 4, 4, 64, 301, true}, Config{"GQA", 8, 2, 16, 333, true},
          Config{"MQA", 6, 1, 128, 300, true}, Config{"MHA", 3, 3, 2, 291, true}, Config{"MQA", 2, 1, 320, 300, true},
          Config{"MHA", 2, 2, 1024, 300, false}}) {
      Harness h;
      if (!h.start()) return;
      const AttentionBuffers b = attention_graph(h, c);
      const size_t kv_rows = size_t(kAttentionSlots * c.ctx), kv_width = size_t(c.KVH * c.hd);
      const std::string what = c.what() + (splits ? " splits " + std::string(splits) : "");
      // Rotation is a short sum: exact unless the device contracts it into an FMA.
      h.expect(b.k_cache, kv_rows * kv_width, Rows::All, c.rope ? kTight : kExact, "kv_store K cache " + what);
      h.expect(b.v_cache, kv_rows * kv_width, Rows::All, kExact, "kv_store V cache " + what);
      h.expect(b.out, size_t(c.H * c.hd), Rows::Tokens, kLongSum, "attention " + what);
      // Positions 255..258 cross attention's 256-key chunk edge.
      attention_step(h, {{0, 280, 10}, {1, 0, 5}, {2, 255, 4}});  // prefill chunks of three sequences
      attention_step(h, {{0, c.ctx - 1, 1}});                     // decode at the last cache row
      attention_step(h, {{2, 259, 1}, {1, 5, 1}, {0, 290, 1}});   // batched decode, slots out of order
      h.check_validation();
    }
  }
}

TEST_CASE("vulkan ops: split-K attention over long contexts") {
  using Config = AttentionConfig;
  // Splits automatic (split-K from 512 keys on a GPU, never on a CPU device), 1 (the single pass at every length), 5
  // and 32 (split-K at every length; 32 leaves most splits of a short sequence without keys).
  for (const char* splits : {(const char*)nullptr, "1", "5", "32"}) {
    test::ScopedEnv env("MOLE_VK_ATTN_SPLITS", splits);
    for (Config c : {Config{"MHA", 4, 4, 64, 3001, true}, Config{"GQA", 8, 2, 80, 3001, false},
                     Config{"GQA", 6, 3, 80, 2049, true}, Config{"MQA", 2, 1, 320, 3001, true}}) {
      Harness h;
      if (!h.start()) return;
      const AttentionBuffers b = attention_graph(h, c);
      const std::string what = c.what() + " splits " + (splits ? splits : "auto");
      h.expect(b.out, size_t(c.H * c.hd), Rows::Tokens, kLongSum, "attention " + what);
      h.profile_vulkan();
      uint64_t dispatches = 0;
      // Each step is the two KV stores and attention: one dispatch, or two where it splits (the combine).
      auto step = [&](const std::vector<Run>& runs) {
        const int max_keys = attention_step(h, runs);
        const bool split = splits ? std::string(splits) != "1" : max_keys >= 512 && !h.vulkan_on_cpu();
        const uint64_t now = h.vulkan_dispatches();
        CHECK_MESSAGE(now - dispatches == (split ? 4u : 3u), "attention " << what << str(" max keys ", max_keys));
        dispatches = now;
      };
      const int last = c.ctx - 1;
      step({{0, last, 1}});  // decode over the whole context
      // Batched decode: 8 tokens of the 3 sequences, with 1 to ctx - 1 keys, around the single pass's limit of two
      // chunks (511 and 513 keys), odd counts.
      step({{2, 510, 1},
            {0, 1234, 1},
            {1, 0, 1},
            {0, last - 1, 1},
            {2, 512, 1},
            {1, 2047, 1},
            {2, 100, 1},
            {1, last - 2, 1}});
      step({{0, 10, 1}, {1, 300, 1}});         // short contexts only
      step({{1, last - 19, 19}});              // a prefill chunk late in a long sequence
      step({{2, 511, 3}, {0, 2, 2}});          // 512 to 514 keys and 3 keys
      step({{0, last / 2, 1}, {2, last, 1}});  // decode of two long sequences
      h.check_validation();
    }
  }
}

TEST_CASE("vulkan ops: attention's split count (host rule)") {
  using vulkan::attention_splits;
  const uint32_t ls = 256, slots = vulkan::kAttentionSplitSlots;
  CHECK(attention_splits(1, 1, slots, 0, ls) == 1);
  CHECK(attention_splits(511, 1, slots, 0, ls) == 1);  // below two chunks of the local size: the single pass
  CHECK(attention_splits(512, 1, slots, 0, ls) == 2);
  CHECK(attention_splits(513, 1, slots, 0, ls) == 4);    // 3 splits of 256 keys, rounded up to a power of two
  CHECK(attention_splits(3000, 8, slots, 0, ls) == 16);  // 12 rounded up
  CHECK(attention_splits(100000, 1, slots, 0, ls) == vulkan::kAttentionMaxSplits);
  CHECK(attention_splits(100000, 19, slots, 0, ls) == slots / 19);  // the scratch holds `slots` token-splits
  CHECK(attention_splits(100000, 512, slots, 0, ls) == 1);
  CHECK(attention_splits(1, 1, slots, 5, ls) == 5);  // forced (MOLE_VK_ATTN_SPLITS), even over one key
  CHECK(attention_splits(3000, 1, slots, 1, ls) == 1);
  CHECK(attention_splits(1, 1, slots, 1000, ls) == vulkan::kAttentionMaxSplits);
  CHECK(attention_splits(1, 1, 32, 5, ls) == 5);  // a decode-only graph (max_tokens 1): 32 slots
}

TEST_CASE("vulkan ops: router_lut (rmsnorm and the router's product fused in)") {
  const int L = 2, D = 37, V = 40;  // L*E*D even: 16-bit rows are whole 32-bit words
  for (int E : {1, 3, 16, 64, 257})
    for (DType dt : kDtypes)
      for (LutPlacement p : {LutPlacement::Device, LutPlacement::Host, LutPlacement::Disk}) {
        Harness h;
        if (!h.start()) return;
        h.vocab = V;
        h.graph.max_tokens = 12;
        h.lut(V, int64_t(L) * E * D, dt, p);
        // The router and norm weights in other dtypes than the table's; logits spread over about [-4, 4].
        const DType router_dt = dt == DType::F32 ? DType::BF16 : DType::F32, norm_dt = DType::F16;
        for (int layer = 0; layer < L; layer++) {
          BufferId x = h.act(size_t(12 * D), 3, true), dst = h.act(size_t(12 * D));
          BufferId router = h.weight({E, D}, router_dt, 4.0f / std::sqrt(float(D)));
          BufferId norm = h.weight({D}, norm_dt, 1.5f);
          h.graph.ops.push_back({.kind = OpKind::RouterLut,
                                 .dst = dst,
                                 .src0 = x,
                                 .src1 = router,
                                 .src2 = norm,
                                 .n = E,
                                 .k = D,
                                 .layer = layer,
                                 .eps = 1e-5f});
          h.expect(dst, size_t(D), Rows::Tokens, kLongSum,
                   name("router_lut", dt) + str(" E=", E) + str(" layer=", layer) + " lut " + placement_name(p) +
                       " router " + dtype_name(router_dt));
        }
        for (int T : {1, 12}) h.step(h.inputs(T));  // 12 ids from 40: repeated rows are likely
        h.check_validation();
      }
}

TEST_CASE("vulkan ops: gather, then norm_matmul on the output rows into the logits") {
  Harness h;
  if (!h.start()) return;
  const int D = 37, V = 301, R = 4;
  h.graph.max_tokens = 12;
  h.graph.max_out_rows = R;
  BufferId x = h.act(size_t(12 * D), 2, true), wide = h.act(12 * 300, 2, true);
  BufferId g = h.act(size_t(R * D)), g_wide = h.act(size_t(R * 300));
  BufferId norm_w = h.weight({D}, DType::F16, 2), head = h.weight({V, D}, DType::BF16);
  h.graph.logits = h.act(size_t(R * V));
  h.graph.ops = {{.kind = OpKind::Gather, .dst = g, .src0 = x, .n = D},
                 {.kind = OpKind::Gather, .dst = g_wide, .src0 = wide, .n = 300},
                 {.kind = OpKind::NormMatMul,
                  .dst = h.graph.logits,
                  .src0 = g,
                  .src1 = head,
                  .src2 = norm_w,
                  .n = V,
                  .k = D,
                  .eps = 1e-5f,
                  .on_out_rows = true}};
  h.expect(g, D, Rows::OutRows, kExact, str("gather n=", D));
  h.expect(g_wide, 300, Rows::OutRows, kExact, "gather n=300");
  h.expect(h.graph.logits, V, Rows::OutRows, kLongSum,
           "norm_matmul BF16, norm F16, on output rows into the logits K=37 N=301");
  for (auto [T, rows] : std::vector<std::pair<int, std::vector<int32_t>>>{{1, {0}}, {12, {11}}, {12, {11, 0, 5, 5}}}) {
    StepInputs in = h.inputs(T);
    in.out_rows = rows;
    h.step(in);
  }
  h.check_validation();
}

TEST_CASE("vulkan ops: argmax, the lowest index on ties") {
  Harness h;
  if (!h.start()) return;
  const int R = 5;
  h.graph.max_tokens = R;
  h.graph.max_out_rows = R;
  std::mt19937 rng(7);
  for (int V : {1, 7, 300, 50304}) {
    BufferId logits = h.act(size_t(R * V)), ids = h.act(size_t(R));
    h.graph.ops.push_back({.kind = OpKind::Argmax, .dst = ids, .src0 = logits, .n = V, .on_out_rows = true});
    h.expect(ids, 1, Rows::OutRows, kExact, str("argmax V=", V));
  }
  h.graph.logits = h.act(R);  // what the backend copies back with every step: one float per row
  for (int round = 0; round < 3; round++) {
    // Few distinct values, so most rows hold their maximum more than once; round 2 has a negative maximum.
    for (size_t op = 0; op < h.graph.ops.size(); op++) {
      const int V = h.graph.ops[op].n;
      std::vector<float> v(size_t(R * V));
      for (float& x : v) x = float(int(rng() % 5)) - (round == 2 ? 10.0f : 0.0f);
      h.set(h.graph.ops[op].src0, v);
    }
    StepInputs in = h.inputs(R);
    in.out_rows = {0, 1, 2, 3, 4};
    h.step(in);
  }
  h.check_validation();
}

#else

TEST_CASE("vulkan ops: not built") {
  mole::test::skip_no_device("this build has no Vulkan backend (Vulkan headers or glslang missing)");
}

#endif
