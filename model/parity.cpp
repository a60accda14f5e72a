// Backend parity: the harness, the op cases and the model comparisons (see parity.h).
#include "model/parity.h"

#include <algorithm>
#include <cmath>
#include <exception>

#include "model/config.h"
#include "model/cpu_backend.h"
#include "model/error.h"
#include "model/forward.h"
#include "model/sampling.h"
#include "model/weights.h"

namespace mole {
namespace {

constexpr DType kDtypes[] = {DType::F32, DType::F16, DType::BF16};

double nmse(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  if (!std::isfinite(num)) return INFINITY;  // a NaN or infinity anywhere fails every bound
  return den > 0 ? num / den : num;
}

// ||a - b|| / ||b||
double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); i++) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  const double r = std::sqrt(num / den);
  return std::isfinite(r) && a.size() == b.size() ? r : INFINITY;
}

std::string str(const char* what, int64_t a) {
  return std::string(what) + std::to_string(a);
}

// op(what, variant)
std::string label(const std::string& op, const std::string& what, const std::string& variant) {
  return op + "(" + what + (variant.empty() ? "" : ", " + variant) + ")";
}

}  // namespace

// ---- the harness ----

ParityHarness::ParityHarness(std::unique_ptr<Backend> dut, std::string variant)
    : variant_(std::move(variant)), ref_(make_cpu_backend()), dut_(std::move(dut)) {}

ParityHarness::~ParityHarness() = default;

BufferId ParityHarness::same(BufferId a, BufferId b) {
  if (a != b) throw Error("the backend numbers its buffers differently from the reference (model/backend.h)");
  return a;
}

BufferId ParityHarness::act(size_t count, float range, bool per_step) {
  BufferId id = same(ref_->alloc(count, "parity"), dut_->alloc(count, "parity"));
  if (range > 0) fill(id, count, range);
  if (per_step) refills_.push_back({id, count, range});
  return id;
}

BufferId ParityHarness::weight(std::vector<int64_t> shape, DType dtype, float range) {
  TensorView t = view(std::move(shape), dtype, range);
  return same(ref_->upload_weight(t), dut_->upload_weight(t));
}

BufferId ParityHarness::stacked_weight(const std::vector<int64_t>& rows, int64_t width, DType dtype, float range) {
  std::deque<TensorView> views;  // stable addresses for the pointers
  std::vector<const TensorView*> parts;
  for (int64_t r : rows) parts.push_back(&views.emplace_back(view({r, width}, dtype, range)));
  return same(ref_->upload_stacked(parts), dut_->upload_stacked(parts));
}

void ParityHarness::lut(int64_t V, int64_t row_elems, DType dtype, LutPlacement placement) {
  lut_ = LutStore::from_tensor(view({V, row_elems}, dtype, 1), row_elems);
  ref_->set_lut(*lut_, placement, graph.max_tokens);
  dut_->set_lut(*lut_, placement, graph.max_tokens);
}

void ParityHarness::set(BufferId id, const std::vector<float>& v) {
  ref_->write(id, 0, v.size(), v.data());
  dut_->write(id, 0, v.size(), v.data());
}

void ParityHarness::expect(BufferId buf, size_t width, ParityRows rows, double bound, const std::string& op,
                           const std::string& what) {
  outputs_.push_back({buf, width, rows, bound, op, what});
}

void ParityHarness::expect_columns(BufferId buf, size_t rows, size_t stride, size_t first, size_t cols, double bound,
                                   const std::string& op, const std::string& what) {
  outputs_.push_back({buf, rows * stride, ParityRows::All, bound, op, what, 0, stride, first, cols});
}

StepInputs ParityHarness::inputs(int T) {
  StepInputs in;
  for (int t = 0; t < T; t++) {
    in.ids.push_back(int32_t(rng_() % uint32_t(vocab)));
    in.slot.push_back(0);
    in.pos.push_back(t);
    const float p = float(rng_() % 2048);
    for (int i = 0; i < rope_half; i++) {
      const float angle = p * std::pow(10000.0f, -float(i) / float(rope_half));
      in.rope_cos.push_back(std::cos(angle));
      in.rope_sin.push_back(std::sin(angle));
    }
  }
  in.out_rows = {0};
  return in;
}

void ParityHarness::step(const StepInputs& in) {
  if (graph.logits == kNoBuffer) {  // GPU backends copy (R, V) logits back every step: give them one float
    graph.logits = act(1);
    graph.max_out_rows = std::max(graph.max_out_rows, 1);
  }
  for (const Refill& r : refills_) fill(r.buf, r.count, r.range);
  for (Backend* b : {ref_.get(), dut_.get()}) {
    if (lut_) b->stream_lut_rows(in.ids);
    b->run_step(graph, in);
  }
  const size_t T = size_t(in.tokens()), R = in.out_rows.size();
  for (Output& o : outputs_) {
    const size_t n = o.rows == ParityRows::Tokens ? T * o.width : o.rows == ParityRows::OutRows ? R * o.width : o.width;
    std::vector<float> ref(n), got(n);
    ref_->read_back(o.buf, 0, n, ref.data());
    dut_->read_back(o.buf, 0, n, got.data());
    if (o.stride > 0) {  // only the columns asked for, row after row
      size_t kept = 0;
      for (size_t r = 0; r < n / o.stride; r++)
        for (size_t c = o.first; c < o.first + o.cols; c++, kept++) {
          ref[kept] = ref[r * o.stride + c];
          got[kept] = got[r * o.stride + c];
        }
      ref.resize(kept);
      got.resize(kept);
    }
    o.worst = std::max(o.worst, nmse(got, ref));
  }
}

std::vector<ParityResult> ParityHarness::results() const {
  std::vector<ParityResult> out;
  for (const Output& o : outputs_)
    out.push_back({o.op, label(o.op, o.what, variant_), o.worst, o.bound, o.worst <= o.bound, ""});
  const BackendInfo info = dut_->info();
  if (info.validation_messages > 0)
    out.push_back({"validation", label("validation", "messages", variant_), double(info.validation_messages), 0, false,
                   info.validation_log});
  return out;
}

std::vector<float> ParityHarness::random(size_t n, float range) {
  std::uniform_real_distribution<float> u(-range, range);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng_);
  return v;
}

void ParityHarness::fill(BufferId id, size_t count, float range) {
  set(id, random(count, range));
}

TensorView ParityHarness::view(std::vector<int64_t> shape, DType dtype, float range) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  const std::vector<float> v = random(size_t(n), range);
  const std::vector<uint8_t>& bytes = bytes_.emplace_back(f32_to_bytes(v.data(), v.size(), dtype));
  TensorView t;
  t.name = "parity weight";
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = bytes.data();
  t.nbytes = bytes.size();
  return t;
}

// ---- the op cases ----

namespace {

std::string dt(DType d) {
  return dtype_name(d);
}

void embed_case(ParityHarness& h) {
  h.vocab = 67;
  h.graph.max_tokens = 13;
  for (DType d : kDtypes)
    for (int D : {1, 37, 300}) {
      BufferId w = h.weight({67, D}, d), dst = h.act(size_t(13 * D));
      h.graph.ops.push_back({.kind = OpKind::Embed, .dst = dst, .src0 = w, .n = D});
      h.expect(dst, size_t(D), ParityRows::Tokens, kParityExact, "embed", str("D=", D) + ", " + dt(d));
    }
  for (int T : {1, 13}) h.step(h.inputs(T));
}

struct MatMulShape {
  int K, N;
};

// K = 77, 1030 (scalar loads for 16-bit weights; 1030 is not a multiple of 4 either), 64 and 1024 (vector loads),
// 1. 70 rows: more than one 64-row tile of a tiled kernel.
void matmul_case(ParityHarness& h) {
  h.graph.max_tokens = 70;
  for (MatMulShape s :
       {MatMulShape{77, 13}, MatMulShape{1, 3}, MatMulShape{64, 5000}, MatMulShape{1030, 31}, MatMulShape{1024, 129}}) {
    BufferId x = h.act(size_t(70 * s.K), 1, true);
    for (DType d : kDtypes) {
      BufferId w = h.weight({s.N, s.K}, d, 1.0f / std::sqrt(float(s.K)));
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
        h.expect(y, size_t(s.N), ParityRows::Tokens, kParityLongSum, "matmul",
                 str("K=", s.K) + str(" N=", s.N) + ", " + dt(d) + (acc ? ", accumulate" : "") +
                     (mode == 2 ? " + addend" : ""));
      }
    }
  }
  for (int T : {1, 3, 9, 33, 70}) h.step(h.inputs(T));
}

void norm_matmul_case(ParityHarness& h) {
  h.graph.max_tokens = 70;
  for (MatMulShape s : {MatMulShape{1, 3}, MatMulShape{37, 13}, MatMulShape{64, 300}, MatMulShape{256, 129},
                        MatMulShape{2053, 31}, MatMulShape{768, 40}}) {
    // x with a large spread (the norm must bring it back), norm weights in [-2, 2], products spanning GELU's curved
    // range [-6, 6] and beyond.
    BufferId x = h.act(size_t(70 * s.K), 30, true);
    for (DType d : kDtypes) {
      const DType norm_dt = d == DType::F16 ? DType::F32 : d == DType::BF16 ? DType::F16 : DType::BF16;
      BufferId w = h.weight({s.N, s.K}, d, 3.0f / std::sqrt(float(s.K)));
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
        h.expect(y, size_t(s.N), ParityRows::Tokens, kParityLongSum, "norm_matmul",
                 str("K=", s.K) + str(" N=", s.N) + ", " + dt(d) + ", norm " + dt(norm_dt) + (gelu ? ", gelu" : ""));
      }
    }
  }
  // A weight stacked from three tensors (q, k and v's product), the parts of odd row counts so that a part of a
  // 16-bit dtype starts at a 2-byte offset.
  BufferId x = h.act(size_t(70 * 96), 30, true);
  for (DType d : kDtypes) {
    BufferId w = h.stacked_weight({33, 11, 11}, 96, d, 3.0f / std::sqrt(96.0f));
    BufferId nw = h.weight({96}, DType::F32, 2);
    BufferId y = h.act(size_t(70 * 55));
    h.graph.ops.push_back(
        {.kind = OpKind::NormMatMul, .dst = y, .src0 = x, .src1 = w, .src2 = nw, .n = 55, .k = 96, .eps = 1e-5f});
    h.expect(y, 55, ParityRows::Tokens, kParityLongSum, "norm_matmul", "K=96 N=33+11+11 stacked, " + dt(d));
  }
  for (int T : {1, 2, 8, 19, 70}) h.step(h.inputs(T));
}

// An attention case: heads, head dimension, context rows per slot, RoPE.
struct AttentionConfig {
  const char* name;
  int H, KVH, hd, ctx;
  bool rope;  // keys rotated as they are stored, queries as attention reads them
  std::string what() const {
    return std::string(name) + str(" H=", H) + str(" KVH=", KVH) + str(" hd=", hd) + str(" ctx=", ctx) +
           (rope ? ", rope" : "");
  }
};
constexpr int kAttentionSlots = 3;      // B
constexpr int kLongAttentionSlots = 8;  // B of the long cases: a batched decode of 8 sequences
constexpr int kAttentionMaxTokens = 19;

struct AttentionBuffers {
  BufferId kv_cache, out;
};
// Attention over `slots` slots of c.ctx rows, storing the step's keys and values first. q, k and v are one
// buffer, as the q/k/v product writes them. The cache starts out random: rows no step stores stand for earlier
// tokens, and a later step reads the rows an earlier one stored.
AttentionBuffers attention_graph(ParityHarness& h, const AttentionConfig& c, int slots) {
  const int T = kAttentionMaxTokens;
  h.graph.max_tokens = T;
  h.rope_half = c.rope ? c.hd / 2 : 0;
  const size_t q_width = size_t(c.H * c.hd), kv_width = size_t(c.KVH * c.hd);
  const size_t rows = size_t(slots) * size_t(c.ctx);
  BufferId qkv = h.act(T * (q_width + 2 * kv_width), 3, true);
  AttentionBuffers b{h.act(rows * 2 * kv_width, 1), h.act(T * q_width)};
  h.graph.ops = {attention_op(qkv, b.kv_cache, b.out, c.H, c.hd, c.KVH, c.ctx, c.rope)};
  return b;
}

// A run of one step's tokens: slot, first position, count.
struct Run {
  int slot, pos, count;
};
void attention_step(ParityHarness& h, const std::vector<Run>& runs) {
  int T = 0;
  for (Run r : runs) T += r.count;
  StepInputs in = h.inputs(T);
  in.slot.clear();
  in.pos.clear();
  for (Run r : runs)
    for (int i = 0; i < r.count; i++) {
      in.slot.push_back(r.slot);
      in.pos.push_back(r.pos + i);
    }
  h.step(in);
}

// The whole cache after each step: the rows the step stored, and every other row as it was.
void expect_cache(ParityHarness& h, const AttentionConfig& c, BufferId kv_cache) {
  const size_t kv_rows = size_t(kAttentionSlots * c.ctx), kv_width = size_t(c.KVH * c.hd);
  // Rotation is a short sum: exact unless the device contracts it into an FMA; values are copied, exactly.
  h.expect_columns(kv_cache, kv_rows, 2 * kv_width, 0, kv_width, c.rope ? kParityTight : kParityExact, "attention",
                   "K cache, " + c.what());
  h.expect_columns(kv_cache, kv_rows, 2 * kv_width, kv_width, kv_width, kParityExact, "attention",
                   "V cache, " + c.what());
}

void attention_case(ParityHarness& h, const AttentionConfig& c) {
  const AttentionBuffers b = attention_graph(h, c, kAttentionSlots);
  expect_cache(h, c, b.kv_cache);
  h.expect(b.out, size_t(c.H * c.hd), ParityRows::Tokens, kParityLongSum, "attention", c.what());
  // Positions 255..258 cross a 256-key chunk edge.
  attention_step(h, {{0, 280, 10}, {1, 0, 5}, {2, 255, 4}});  // prefill chunks of three sequences
  attention_step(h, {{0, c.ctx - 1, 1}});                     // decode at the last cache row
  attention_step(h, {{2, 259, 1}, {1, 5, 1}, {0, 290, 1}});   // batched decode, slots out of order
}

const AttentionConfig kAttentionConfigs[] = {
    {"MHA", 4, 4, 64, 301, false}, {"GQA", 8, 2, 20, 333, false}, {"MQA", 6, 1, 128, 300, false},
    {"MHA", 4, 4, 64, 301, true},  {"GQA", 8, 2, 16, 333, true},  {"MQA", 6, 1, 128, 300, true},
    {"MHA", 3, 3, 2, 291, true},   {"MQA", 2, 1, 320, 300, true}, {"MHA", 2, 2, 1024, 300, false}};

// Long contexts: decode over the whole context, batched decode of 8 tokens with 1 to ctx - 1 keys (around 511-513
// keys, odd counts), short contexts only, a late prefill chunk, 512 to 514 keys, two long sequences.
void long_attention_case(ParityHarness& h, const AttentionConfig& c) {
  const AttentionBuffers b = attention_graph(h, c, kLongAttentionSlots);
  h.expect(b.out, size_t(c.H * c.hd), ParityRows::Tokens, kParityLongSum, "attention", c.what());
  const int last = c.ctx - 1;
  attention_step(h, {{0, last, 1}});
  attention_step(h, {{2, 510, 1},
                     {0, 1234, 1},
                     {1, 0, 1},
                     {3, last - 1, 1},
                     {4, 512, 1},
                     {5, 2047, 1},
                     {6, 100, 1},
                     {7, last - 2, 1}});
  attention_step(h, {{0, 10, 1}, {1, 300, 1}});
  attention_step(h, {{1, last - 19, 19}});
  attention_step(h, {{2, 511, 3}, {0, 2, 2}});
  attention_step(h, {{0, last / 2, 1}, {2, last, 1}});
}

const AttentionConfig kLongAttentionConfigs[] = {{"MHA", 4, 4, 64, 3001, true},
                                                 {"GQA", 8, 2, 80, 3001, false},
                                                 {"GQA", 6, 3, 80, 2049, true},
                                                 {"MQA", 2, 1, 320, 3001, true}};

// D = 300 for 3 and 16 experts: more dims than a GPU workgroup has threads (256), so a token's sum spans several
// workgroups, each with its own copy of the router's weights.
void router_lut_case(ParityHarness& h, int E, DType d, LutPlacement p) {
  const int L = 2, D = E == 3 || E == 16 ? 300 : 37, V = 40;  // L*E*D even: 16-bit rows are whole 32-bit words
  h.vocab = V;
  h.graph.max_tokens = 12;
  h.lut(V, int64_t(L) * E * D, d, p);
  // The router and norm weights in other dtypes than the table's; logits spread over about [-4, 4].
  const DType router_dt = d == DType::F32 ? DType::BF16 : DType::F32, norm_dt = DType::F16;
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
    h.expect(dst, size_t(D), ParityRows::Tokens, kParityLongSum, "router_lut",
             str("E=", E) + str(" layer=", layer) + ", table " + dt(d) + " " + placement_name(p) + ", router " +
                 dt(router_dt));
  }
  for (int T : {1, 12}) h.step(h.inputs(T));  // 12 ids from 40: repeated rows are likely
}

// The router's weights of a step's output rows, two layers into one (R, 2E) buffer; E up to 257 (more than a
// workgroup's threads on some backends), router weights in each dtype, repeated and unordered output rows.
void router_probs_case(ParityHarness& h, int E, DType router_dt) {
  const int L = 2, D = 37, R = 4;
  h.graph.max_tokens = 12;
  h.graph.max_out_rows = R;
  BufferId dst = h.act(size_t(R * L * E));
  for (int layer = 0; layer < L; layer++) {
    BufferId x = h.act(size_t(12 * D), 3, true);
    BufferId router = h.weight({E, D}, router_dt, 4.0f / std::sqrt(float(D)));
    BufferId norm = h.weight({D}, layer == 0 ? DType::F16 : DType::F32, 1.5f);
    h.graph.ops.push_back({.kind = OpKind::RouterProbs,
                           .dst = dst,
                           .src0 = x,
                           .src1 = router,
                           .src2 = norm,
                           .n = E,
                           .k = D,
                           .layer = layer,
                           .layers = L,
                           .eps = 1e-5f});
  }
  h.graph.logits = h.act(R);  // what a GPU backend copies back with every step: one float per row
  h.expect(dst, size_t(L * E), ParityRows::OutRows, kParityLongSum, "router_probs",
           str("E=", E) + str(" L=", L) + ", router " + dt(router_dt));
  for (auto [T, rows] : std::vector<std::pair<int, std::vector<int32_t>>>{{1, {0}}, {12, {11}}, {12, {11, 0, 5, 5}}}) {
    StepInputs in = h.inputs(T);
    in.out_rows = rows;
    h.step(in);
  }
}

void gather_case(ParityHarness& h) {
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
  h.expect(g, D, ParityRows::OutRows, kParityExact, "gather", str("n=", D));
  h.expect(g_wide, 300, ParityRows::OutRows, kParityExact, "gather", "n=300");
  h.expect(h.graph.logits, V, ParityRows::OutRows, kParityLongSum, "norm_matmul",
           "on output rows into the logits, K=37 N=301, BF16, norm F16");
  for (auto [T, rows] : std::vector<std::pair<int, std::vector<int32_t>>>{{1, {0}}, {12, {11}}, {12, {11, 0, 5, 5}}}) {
    StepInputs in = h.inputs(T);
    in.out_rows = rows;
    h.step(in);
  }
}

void argmax_case(ParityHarness& h) {
  const int R = 5;
  h.graph.max_tokens = R;
  h.graph.max_out_rows = R;
  std::mt19937 rng(7);
  for (int V : {1, 7, 300, 50304}) {
    BufferId logits = h.act(size_t(R * V)), ids = h.act(size_t(R));
    h.graph.ops.push_back({.kind = OpKind::Argmax, .dst = ids, .src0 = logits, .n = V, .on_out_rows = true});
    h.expect(ids, 1, ParityRows::OutRows, kParityExact, "argmax",
             str("V=", V) + ", ties to the lowest index, NaN rows -1");
  }
  h.graph.logits = h.act(R);  // what a GPU backend copies back with every step: one float per row
  for (int round = 0; round < 4; round++) {
    // Few distinct values, so most rows hold their maximum more than once; round 2 has a negative maximum. Round 3
    // puts NaNs (of both signs; rows 1 and 3, row 3 two, so -1) and infinities (rows 0 and 2, two +inf in row 2).
    for (const Op& op : h.graph.ops) {
      std::vector<float> v(size_t(R * op.n));
      for (float& x : v) x = float(int(rng() % 5)) - (round == 2 ? 10.0f : 0.0f);
      if (round == 3) {
        const size_t n = size_t(op.n);
        auto at = [&](int r, uint64_t i) -> float& { return v[size_t(r) * n + size_t(i % n)]; };
        at(0, rng()) = -INFINITY;
        at(1, rng()) = NAN;
        at(2, rng()) = INFINITY;
        at(2, rng()) = INFINITY;
        at(3, rng()) = -NAN;
        at(3, rng()) = NAN;
      }
      h.set(op.src0, v);
    }
    StepInputs in = h.inputs(R);
    in.out_rows = {0, 1, 2, 3, 4};
    h.step(in);
  }
}

// The matrix-product kernels a backend may choose between: its own choice, without subgroup reductions, the tiled
// kernel for every step, the column kernel that stages x in shared memory for every step, the column kernel with one
// weight load or eight in flight per lane (--tune matvec-loads; the default is 4, on a CPU Vulkan driver 1).
struct KernelVariant {
  const char* name;
  std::vector<std::string> needs;
  std::function<void(BackendOptions&)> configure;
};

// The column kernel for every row count, with `loads` weight loads in flight per lane.
std::function<void(BackendOptions&)> column_loads(int loads) {
  return [loads](BackendOptions& o) {
    o.tuning.matvec_loads = loads;
    o.tuning.tiled_min_rows = 1000000;
  };
}

const KernelVariant kKernelVariants[] = {
    {"", {}, [](BackendOptions&) {}},
    {"no subgroups, column kernel",
     {"subgroups", "tiled-min-rows"},
     [](BackendOptions& o) {
       o.tuning.subgroups = 0;
       o.tuning.tiled_min_rows = 1000000;
     }},
    {"tiled", {"tiled-min-rows"}, [](BackendOptions& o) { o.tuning.tiled_min_rows = 1; }},
    {"staged column kernel",
     {"matvec", "tiled-min-rows"},
     [](BackendOptions& o) {
       o.tuning.matvec = BackendTuning::MatVec::Staged;
       o.tuning.tiled_min_rows = 1000000;
     }},
    {"column kernel, 1 load in flight", {"matvec-loads", "tiled-min-rows"}, column_loads(1)},
    {"column kernel, 8 loads in flight", {"matvec-loads", "tiled-min-rows"}, column_loads(8)},
};

std::function<void(BackendOptions&)> splits(int n) {
  return [n](BackendOptions& o) { o.tuning.attention_splits = n; };
}

// Reductions through shared memory only (--tune subgroups=0), where a backend would use subgroup arithmetic.
void no_subgroups(BackendOptions& o) {
  o.tuning.subgroups = 0;
}

std::vector<OpCase> make_op_cases() {
  std::vector<OpCase> cases;
  auto none = [](BackendOptions&) {};
  cases.push_back({"embed", "", {}, none, embed_case});
  for (const KernelVariant& k : kKernelVariants) cases.push_back({"matmul", k.name, k.needs, k.configure, matmul_case});
  for (const KernelVariant& k : kKernelVariants)
    cases.push_back({"norm_matmul", k.name, k.needs, k.configure, norm_matmul_case});
  // Attention at short contexts with the backend's own split rule, and with 3 splits forced (split-K over short
  // contexts, where the splits of a short sequence after the first have no keys); both again with the store pass
  // in every step (decode steps otherwise store their keys inside attention).
  auto store_pass = [](int n) {
    return [n](BackendOptions& o) {
      o.tuning.attention_splits = n;
      o.tuning.attention_store_pass = true;
    };
  };
  for (const AttentionConfig& c : kAttentionConfigs) {
    auto run = [c](ParityHarness& h) { attention_case(h, c); };
    cases.push_back({"attention", "", {}, none, run});
    cases.push_back({"attention", "3 splits", {"attention-splits"}, splits(3), run});
    cases.push_back({"attention", "store pass", {"attention-store"}, store_pass(0), run});
    cases.push_back({"attention", "store pass, 3 splits", {"attention-splits", "attention-store"}, store_pass(3), run});
    cases.push_back({"attention", "no subgroups", {"subgroups"}, no_subgroups, run});
    cases.push_back({"attention",
                     "no subgroups, 3 splits",
                     {"subgroups", "attention-splits"},
                     [](BackendOptions& o) {
                       no_subgroups(o);
                       o.tuning.attention_splits = 3;
                     },
                     run});
  }
  // Long contexts: automatic, one pass, 5 and 32 splits (32 leaves most splits of a short sequence without keys).
  for (const AttentionConfig& c : kLongAttentionConfigs) {
    cases.push_back({"attention", "", {}, none, [c](ParityHarness& h) { long_attention_case(h, c); }});
    for (int n : {1, 5, 32})
      cases.push_back({"attention",
                       n == 1 ? std::string("one pass") : std::to_string(n) + " splits",
                       {"attention-splits"},
                       splits(n),
                       [c](ParityHarness& h) { long_attention_case(h, c); }});
  }
  for (int E : {1, 3, 16, 64, 257})
    for (DType d : kDtypes)
      for (LutPlacement p : {LutPlacement::Device, LutPlacement::Host, LutPlacement::Disk}) {
        auto run = [E, d, p](ParityHarness& h) { router_lut_case(h, E, d, p); };
        cases.push_back({"router_lut", "", {}, none, run, {"lut-read"}});
        for (LutRead r : {LutRead::Copy, LutRead::Direct}) {
          if (p == LutPlacement::Disk && r == LutRead::Direct) continue;  // disk always copies
          cases.push_back({"router_lut",
                           std::string("rows ") + lut_read_name(r),
                           {"lut-read"},
                           [r](BackendOptions& o) { o.lut_read = r; },
                           run});
          if (p == LutPlacement::Host)  // the shared-memory reductions, each way of reading the rows
            cases.push_back({"router_lut",
                             std::string("rows ") + lut_read_name(r) + ", no subgroups",
                             {"lut-read", "subgroups"},
                             [r](BackendOptions& o) {
                               o.lut_read = r;
                               no_subgroups(o);
                             },
                             run});
        }
      }
  for (int E : {1, 3, 16, 64, 257})
    for (DType d : kDtypes) {
      auto run = [E, d](ParityHarness& h) { router_probs_case(h, E, d); };
      cases.push_back({"router_probs", "", {}, none, run});
      cases.push_back({"router_probs", "no subgroups", {"subgroups"}, no_subgroups, run});
    }
  cases.push_back({"gather", "", {}, none, gather_case});
  cases.push_back({"argmax", "", {}, none, argmax_case});
  return cases;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = make_op_cases();
  return cases;
}

bool op_case_applies(const OpCase& c, const BackendEntry& entry) {
  auto honours = [&](const std::string& k) {
    return std::find(entry.tuning_keys.begin(), entry.tuning_keys.end(), k) != entry.tuning_keys.end();
  };
  for (const std::string& k : c.needs)
    if (!honours(k)) return false;
  for (const std::string& k : c.unless)
    if (honours(k)) return false;
  return true;
}

std::vector<ParityResult> run_op_case(const OpCase& c, const BackendEntry& entry, BackendOptions opt) {
  c.configure(opt);
  try {
    ParityHarness h(entry.make(opt), c.variant);
    c.run(h);
    return h.results();
  } catch (const std::exception& e) {
    return {{c.op, label(c.op, "case", c.variant), INFINITY, 0, false, e.what()}};
  }
}

// ---- whole models ----

const std::vector<ModelCase>& model_cases() {
  static const std::vector<ModelCase> cases = {
      {"gqa_f32_infer", Form::Infer, {{"num_key_value_heads", 2}}, DType::F32, 37},
      {"mha_f16_train", Form::Train, {{"num_key_value_heads", 4}}, DType::F16, 300},
      {"mqa_bf16_infer_linear",
       Form::Infer,
       {{"num_key_value_heads", 1}, {"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}},
       DType::BF16,
       65},
      {"dynamic_dense",
       Form::Dense,
       {{"max_position_embeddings", 32}, {"rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}}},
       DType::BF16,
       50},
      {"odd_sizes",
       Form::Infer,
       {{"hidden_size", 36},
        {"num_attention_heads", 3},
        {"num_key_value_heads", 1},
        {"intermediate_size", 77},
        {"vocab_size", 301},
        {"num_experts", 3}},
       DType::F16,
       19},
  };
  return cases;
}

std::vector<ParityResult> run_model_case(const ModelCase& c, const std::string& dir, const BackendEntry& entry,
                                         const BackendOptions& opt) {
  try {
    SynthOptions o;
    o.form = c.form;
    o.dtype = c.dtype;
    o.seed = 1;
    o.progress = false;
    o.overrides = {{"vocab_size", 384}};
    o.overrides.merge_patch(c.set);
    synth_checkpoint(dir, o);
  } catch (const std::exception& e) {
    return {{"model", label("model", c.name, ""), INFINITY, 0, false, e.what()}};
  }
  return compare_model(dir, c.tokens, entry, opt, c.name);
}

std::vector<int32_t> random_ids(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % uint32_t(vocab));
  return ids;
}

bool clear_winner(const std::vector<float>& logits) {
  float first = -INFINITY, second = -INFINITY;
  for (float v : logits) {
    if (v > first) {
      second = first;
      first = v;
    } else if (v > second) {
      second = v;
    }
  }
  return first - second > 1e-3f;
}

std::vector<ParityResult> compare_model(const std::string& dir, int tokens, const BackendEntry& entry,
                                        const BackendOptions& opt, const std::string& name) {
  std::vector<ParityResult> out;
  auto failed = [&](const std::string& what, const std::string& why) {
    out.push_back({"model", label("model", name + ", " + what, ""), INFINITY, 0, false, why});
  };
  try {
    const Config cfg = Config::load_dir(dir);
    const Weights w = Weights::load(dir, cfg);
    std::optional<LutStore> lut;
    if (w.form == Form::Infer) lut = LutStore::from_tensor(*w.moe_table, cfg.lut_row_elems());
    if (w.form == Form::Train) lut = LutStore::compute(cfg, w, DType::F16, false);
    const LutStore* table = lut ? &*lut : nullptr;
    tokens = std::max(1, std::min(tokens, default_context(cfg) - 20));
    const std::vector<int32_t> ids = random_ids(tokens, cfg.vocab_size, 11);
    EngineOptions eo;
    eo.max_context = std::min(default_context(cfg), std::max(tokens, 64));
    eo.max_step_tokens = tokens;
    auto cpu = make_cpu_backend();
    const auto ref = Engine(cfg, w, table, *cpu, eo).step({{0, ids}}, true);

    std::vector<LutPlacement> placements = {LutPlacement::Host};
    if (table) placements = {LutPlacement::Device, LutPlacement::Host};
    if (table && table->file_backed()) placements.push_back(LutPlacement::Disk);
    for (LutPlacement p : placements) {
      const std::string what = std::string("logits of ") + std::to_string(tokens) + " positions, lut " +
                               (table ? placement_name(p) : "none");
      try {
        auto be = entry.make(opt);
        eo.lut = p;
        const auto got = Engine(cfg, w, table, *be, eo).step({{0, ids}}, true);
        double worst = 0;
        for (size_t t = 0; t < ref.size(); t++) worst = std::max(worst, rel_l2(got.at(t), ref[t]));
        const BackendInfo info = be->info();
        out.push_back({"model", label("model", name + ", " + what, ""), worst, kParityModelRelL2,
                       worst < kParityModelRelL2 && info.validation_messages == 0, info.validation_log});
      } catch (const std::exception& e) {
        failed(what, e.what());
      }
      if (!table) break;
    }

    // The router's weights of every position (RouterProbs in the graph), against the reference's.
    if (table) {
      const std::string what = "router weights of " + std::to_string(tokens) + " positions";
      try {
        EngineOptions ro = eo;
        ro.lut = LutPlacement::Host;
        ro.router_probs = true;
        auto cpu_r = make_cpu_backend();
        Engine ref_engine(cfg, w, table, *cpu_r, ro);
        ref_engine.step({{0, ids}}, true);
        auto be = entry.make(opt);
        Engine dut_engine(cfg, w, table, *be, ro);
        dut_engine.step({{0, ids}}, true);
        const auto& want = ref_engine.router_probs();
        const auto& got = dut_engine.router_probs();
        double worst = want.size() == size_t(tokens) && got.size() == want.size() ? 0 : INFINITY;
        for (size_t t = 0; t < want.size() && t < got.size(); t++) worst = std::max(worst, rel_l2(got[t], want[t]));
        const BackendInfo info = be->info();
        out.push_back({"model", label("model", name + ", " + what, ""), worst, kParityModelRelL2,
                       worst < kParityModelRelL2 && info.validation_messages == 0, info.validation_log});
      } catch (const std::exception& e) {
        failed(what, e.what());
      }
    }

    // One sequence decoding, a token a step: the steps that run as one kernel where --tune persistent is on (CUDA;
    // the batched steps below, of 3 output rows, never do) or chained where --tune chain is on (Vulkan). The logits of
    // every step against the reference's, and, on a second engine, the greedy ids (on the device) against its argmax;
    // both follow the reference's tokens.
    {
      const std::string what = "decode of one sequence, 16 steps: logits and greedy ids";
      try {
        const int steps = 16;
        EngineOptions so;
        so.max_context = std::min(default_context(cfg), 64);
        so.max_step_tokens = 32;
        auto be = entry.make(opt);
        auto be_ids = entry.make(opt);
        auto cpu3 = make_cpu_backend();
        Engine ec(cfg, w, table, *cpu3, so), ed(cfg, w, table, *be, so), ei(cfg, w, table, *be_ids, so);
        std::vector<int32_t> next =
            random_ids(std::max(1, std::min(5, so.max_context - steps - 1)), cfg.vocab_size, 200);
        double worst = 0;
        int compared = 0, agreed = 0;
        for (int step = 0; step < steps && ec.length(0) + int(next.size()) <= so.max_context; step++) {
          const auto lc = ec.step({{0, next}}, false).at(0);
          const auto ld = ed.step({{0, next}}, false).at(0);
          const int32_t id = ei.step_argmax({{0, next}}).at(0);
          worst = std::max(worst, rel_l2(ld, lc));
          const int32_t tc = argmax(lc);
          if (tc < 0) throw nan_logits_error("decode step " + std::to_string(step) + " of the CPU reference");
          if (clear_winner(lc)) {
            compared++;
            agreed += id == tc ? 1 : 0;
          }
          next = {tc};
        }
        const BackendInfo info = be->info(), info_ids = be_ids->info();
        const bool ok = worst < kParityModelRelL2 && agreed == compared && compared > steps / 2 &&
                        info.validation_messages == 0 && info_ids.validation_messages == 0;
        std::string log = std::to_string(agreed) + " of " + std::to_string(compared) + " clear greedy tokens agree";
        for (const std::string& l : {info.validation_log, info_ids.validation_log})
          if (!l.empty()) log += "; " + l;
        out.push_back({"model", label("model", name + ", " + what, ""), worst, kParityModelRelL2, ok, log});
      } catch (const std::exception& e) {
        failed(what, e.what());
      }
    }

    // Batched greedy decoding: 3 sequences, 16 steps; the backend's greedy ids (on the device) against the
    // reference's argmax, both following the reference's tokens so that the sequences stay comparable.
    const std::string what = "greedy ids, batch of 3, 16 steps";
    try {
      const int B = 3, steps = 16;
      EngineOptions go;
      go.max_batch = B;
      go.max_context = std::min(default_context(cfg), 64);
      go.max_step_tokens = 32;
      auto be = entry.make(opt);
      auto cpu2 = make_cpu_backend();
      Engine ec(cfg, w, table, *cpu2, go), ed(cfg, w, table, *be, go);
      std::vector<Engine::Chunk> chunks;
      for (int s = 0; s < B; s++)
        chunks.push_back(
            {s, random_ids(std::min(3 + 7 * s, go.max_context - steps - 1), cfg.vocab_size, uint32_t(100 + s))});
      int compared = 0, agreed = 0;
      for (int step = 0; step < steps; step++) {
        const auto lc = ec.step(chunks);
        const auto id = ed.step_argmax(chunks);
        chunks.clear();
        for (int s = 0; s < B; s++) {
          const int32_t tc = argmax(lc.at(size_t(s)));
          if (tc < 0)
            throw nan_logits_error("step " + std::to_string(step) + " of the CPU reference's sequence " +
                                   std::to_string(s));
          if (clear_winner(lc[size_t(s)])) {
            compared++;
            agreed += id.at(size_t(s)) == tc ? 1 : 0;
          }
          chunks.push_back({s, {tc}});
        }
      }
      const BackendInfo info = be->info();
      const bool ok = agreed == compared && compared > steps * B / 2 && info.validation_messages == 0;
      out.push_back({"model", label("model", name + ", " + what, ""), double(compared - agreed), 0, ok,
                     std::to_string(agreed) + " of " + std::to_string(compared) + " clear greedy tokens agree" +
                         (info.validation_log.empty() ? "" : "; " + info.validation_log)});
    } catch (const std::exception& e) {
      failed(what, e.what());
    }
  } catch (const std::exception& e) {
    failed("load", e.what());
  }
  return out;
}

}  // namespace mole
