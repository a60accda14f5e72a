// CPU reference backend. "Device" memory is host memory, so --lut device and --lut host both hold the whole
// table in RAM (a copy of a file-backed table, so no row is read from disk while running), and --lut disk reads
// each step's rows from the file mapping after asking the kernel to prefetch them.
#include "model/cpu_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>

#include "model/cpu_ops.h"
#include "model/error.h"
#include "model/parallel.h"
#include "model/sampling.h"

namespace mole {
namespace {

struct Buffer {
  std::unique_ptr<float[]> data;       // activations and caches; uninitialised, so pages are touched only when used
  TensorView weight;                   // weights: a view into the checkpoint mapping (data is null), or into stacked
  std::unique_ptr<uint8_t[]> stacked;  // a stacked weight's own bytes (upload_stacked)
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(std::optional<OpKind> perturb = std::nullopt) : perturb_(perturb) {}

  BackendInfo info() const override {
    BackendInfo i;
    i.name = perturb_ ? "cpu-perturbed" : "cpu";
    const int threads = num_threads();
    i.device = "CPU reference (float32), " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");
    if (perturb_) i.device += std::string(", ") + op_name(*perturb_) + " off by 0.1%";
    // For the CPU the page cache already is host memory: reading rows from the mapping costs no copy of the table.
    i.preferred_lut = LutPlacement::Disk;
    i.runs_on_cpu = true;
    i.lut_rows_moved = rows_moved_;
    i.lut_bytes_moved = lut_ ? rows_moved_ * lut_->row_bytes() : 0;
    return i;
  }

  BufferId upload_weight(const TensorView& t) override {
    Buffer b;
    b.weight = t;
    bufs_.push_back(std::move(b));
    return BufferId(bufs_.size() - 1);
  }

  BufferId upload_stacked(const std::vector<const TensorView*>& parts) override {
    Buffer b;
    b.weight = stack_check(parts);
    b.stacked.reset(new uint8_t[b.weight.nbytes]);
    size_t at = 0;
    for (const TensorView* t : parts) {
      std::memcpy(b.stacked.get() + at, t->data, t->nbytes);
      at += t->nbytes;
    }
    b.weight.data = b.stacked.get();
    bufs_.push_back(std::move(b));
    return BufferId(bufs_.size() - 1);
  }

  BufferId alloc(size_t count, const char* what) override {
    Buffer b;
    try {
      b.data.reset(new float[count]);
    } catch (const std::bad_alloc&) {
      throw Error(std::string("out of host memory allocating ") + what + " (" + std::to_string(count * 4 >> 20) +
                  " MiB); try a smaller --ctx-size or batch");
    }
    bufs_.push_back(std::move(b));
    return BufferId(bufs_.size() - 1);
  }

  void write(BufferId buf, size_t first, size_t count, const float* src) override {
    std::memcpy(bufs_.at(size_t(buf)).data.get() + first, src, count * sizeof(float));
  }

  void set_lut(const LutStore& lut, LutPlacement placement, int /*max_step_tokens*/) override {
    lut_ = &lut;
    placement_ = placement;
    copy_.clear();
    if (placement != LutPlacement::Disk && lut.file_backed()) {
      try {
        copy_.assign(lut.data(), lut.data() + lut.bytes());
      } catch (const std::bad_alloc&) {
        throw Error("not enough memory to hold the whole lookup table (" + std::to_string(lut.bytes() >> 20) +
                    " MiB) with --lut " + placement_name(placement) + "; use --lut disk");
      }
    }
  }

  void stream_lut_rows(const std::vector<int32_t>& ids) override {
    if (lut_ && placement_ == LutPlacement::Disk) lut_->prefetch(ids);
    if (lut_) rows_moved_ += ids.size();
  }

  void run_step(const StepGraph& g, const StepInputs& in) override {
    check_step_slots(g, in);
    if (profiling_ && prof_.ops.size() != g.ops.size()) prof_.ops.assign(g.ops.size(), {});
    for (size_t i = 0; i < g.ops.size(); i++) {
      if (in.cancelled && in.cancelled()) throw StepCancelled();
      const auto t0 = std::chrono::steady_clock::now();
      run_op(g.ops[i], in);
      if (perturb_ == g.ops[i].kind) perturb(g.ops[i], in);
      if (!profiling_) continue;
      OpProfile& p = prof_.ops[i];
      p.kind = g.ops[i].kind;
      p.calls++;
      p.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      p.bytes += op_bytes(g.ops[i], in, weight_elem_bytes(g.ops[i]), lut_ ? dtype_size(lut_->dtype()) : 0);
    }
    if (profiling_) prof_.steps++;
  }

  void set_profiling(bool on) override { profiling_ = on; }
  StepProfile profile() override { return prof_; }

  void read_back(BufferId buf, size_t first, size_t count, float* dst) override {
    std::memcpy(dst, bufs_.at(size_t(buf)).data.get() + first, count * sizeof(float));
  }

  void synchronize() override {}

 private:
  // The deliberate error of the cpu-perturbed backend: every value of the op's dst, 0.1% too large.
  void perturb(const Op& op, const StepInputs& in) {
    const size_t rows = size_t(op.on_out_rows ? in.out_rows.size() : size_t(in.tokens()));
    size_t width = size_t(op.n);
    if (op.kind == OpKind::Attention) width = size_t(op.n) * size_t(op.k);
    if (op.kind == OpKind::RouterLut) width = size_t(op.k);
    if (op.kind == OpKind::Argmax) width = 1;
    float* dst = act(op.dst);
    if (op.kind == OpKind::RouterProbs) {  // its layer's columns of each output row
      for (size_t r = 0; r < in.out_rows.size(); r++)
        for (size_t e = 0; e < size_t(op.n); e++)
          dst[(r * size_t(op.layers) + size_t(op.layer)) * size_t(op.n) + e] *= 1.001f;
      return;
    }
    for (size_t i = 0; i < rows * width; i++) dst[i] *= 1.001f;
  }

  float* act(BufferId id) { return bufs_.at(size_t(id)).data.get(); }
  const TensorView& weight(BufferId id) { return bufs_.at(size_t(id)).weight; }

  const uint8_t* lut_row(int32_t id) const {
    if (!copy_.empty()) return copy_.data() + size_t(id) * lut_->row_bytes();
    return lut_->row(id);
  }

  void run_op(const Op& op, const StepInputs& in) {
    const int64_t T = in.tokens();
    switch (op.kind) {
      case OpKind::Embed: {
        const TensorView& w = weight(op.src0);
        const int64_t D = w.shape[1];
        for (int64_t t = 0; t < T; t++) w.to_f32(int64_t(in.ids[size_t(t)]) * D, D, act(op.dst) + t * D);
        break;
      }
      case OpKind::NormMatMul: {  // unfused: the normed rows go through a scratch buffer
        const int64_t rows = rows_of(op, in);
        normed_.resize(size_t(rows * op.k));
        cpu::rmsnorm(act(op.src0), weight(op.src2), op.eps, rows, op.k, normed_.data());
        cpu::matmul(normed_.data(), weight(op.src1), rows, op.k, op.n, act(op.dst), false);
        if (op.gelu) cpu::gelu(act(op.dst), rows * op.n);
        break;
      }
      case OpKind::MatMul:
        cpu::matmul(act(op.src0), weight(op.src1), rows_of(op, in), op.k, op.n, act(op.dst), op.accumulate);
        if (op.src2 != kNoBuffer) {
          float* d = act(op.dst);
          const float* a = act(op.src2);
          for (int64_t i = 0; i < rows_of(op, in) * op.n; i++) d[i] += a[i];
        }
        break;
      case OpKind::Attention:
        kv_store(op, in);
        attention(op, in);
        break;
      case OpKind::RouterLut:
        router_lut(op, in);
        break;
      case OpKind::RouterProbs:
        router_probs(op, in);
        break;
      case OpKind::Argmax: {
        const float* l = act(op.src0);
        for (size_t r = 0; r < in.out_rows.size(); r++)
          act(op.dst)[r] = float(argmax(l + r * size_t(op.n), size_t(op.n)));
        break;
      }
      case OpKind::Gather: {
        for (size_t r = 0; r < in.out_rows.size(); r++)
          std::memcpy(act(op.dst) + r * size_t(op.n), act(op.src0) + size_t(in.out_rows[r]) * size_t(op.n),
                      size_t(op.n) * sizeof(float));
        break;
      }
    }
  }

  size_t weight_elem_bytes(const Op& op) const {
    BufferId w = op_weight(op);
    return w >= 0 ? dtype_size(bufs_.at(size_t(w)).weight.dtype) : 0;
  }

  static int64_t rows_of(const Op& op, const StepInputs& in) {
    return op.on_out_rows ? int64_t(in.out_rows.size()) : in.tokens();
  }

  // Rotates one head u (hd) by token t's RoPE angles, rotate_half form: pairs (i, i + hd/2).
  static void rope(float* u, int64_t hd, const StepInputs& in, int64_t t) {
    const int64_t half = hd / 2;
    const float* c = in.rope_cos.data() + t * half;
    const float* s = in.rope_sin.data() + t * half;
    for (int64_t i = 0; i < half; i++) {
      float x1 = u[i], x2 = u[i + half];
      u[i] = x1 * c[i] - x2 * s[i];
      u[i + half] = x2 * c[i] + x1 * s[i];
    }
  }

  // Attention's first half: the step's keys (rotated) and values, the q/k/v rows' last 2*KVH*hd columns, into
  // their cache rows. Attention then reads them from there like any earlier key.
  void kv_store(const Op& op, const StepInputs& in) {
    const int64_t kvd = int64_t(op.kv_heads) * op.k, w = int64_t(op.n) * op.k + 2 * kvd;
    float* cache = act(op.src1);
    const float* src = act(op.src0);
    for (int64_t t = 0; t < in.tokens(); t++) {
      float* row = cache + (int64_t(in.slot[size_t(t)]) * op.ctx + in.pos[size_t(t)]) * 2 * kvd;
      std::memcpy(row, src + t * w + int64_t(op.n) * op.k, size_t(2 * kvd) * sizeof(float));
      if (op.rope)
        for (int64_t h = 0; h < op.kv_heads; h++) rope(row + h * op.k, op.k, in, t);
    }
  }

  void attention(const Op& op, const StepInputs& in) {
    const int64_t T = in.tokens(), H = op.n, hd = op.k;
    const float scale = 1.0f / std::sqrt(float(hd));
    // In slabs of 64 tokens: a thread's share of a slab costs about what the others' do (over the whole step, the
    // last tokens' rows, which see the most keys, would all fall to the last thread), and a long prompt's attention,
    // which can take seconds, is asked between slabs whether its step is cancelled. Each (token, head) item is
    // computed alone, so the slabs change no value.
    const int64_t slab = 64;
    for (int64_t t0 = 0; t0 < T; t0 += slab) {
      if (t0 > 0 && in.cancelled && in.cancelled()) throw StepCancelled();
      parallel_for((std::min(T, t0 + slab) - t0) * H, [&](int64_t i0, int64_t i1) {
        if (cpu::avx2())
          attention_items_avx2(op, in, t0 * H + i0, t0 * H + i1, scale);
        else
          attention_items(op, in, t0 * H + i0, t0 * H + i1, scale);
      });
    }
  }

  // The same items compiled for AVX2 (without FMA, so the same values bit for bit): dot()'s eight lanes in one
  // register, the value rows' sums eight columns at a time.
#if defined(__x86_64__) || defined(__i386__)
  __attribute__((target("avx2")))
#endif
  void
  attention_items_avx2(const Op& op, const StepInputs& in, int64_t i0, int64_t i1, float scale) {
    attention_items(op, in, i0, i1, scale);
  }

  // Attention's (token, head) items [i0, i1): item i is token i / H's head i % H.
  __attribute__((always_inline)) void attention_items(const Op& op, const StepInputs& in, int64_t i0, int64_t i1,
                                                      float scale) {
    const int64_t H = op.n, hd = op.k, KVH = op.kv_heads, group = H / KVH;
    const int64_t w = (H + 2 * KVH) * hd, kv_w = 2 * KVH * hd;  // a q/k/v row's width, a cache row's
    const float* q = act(op.src0);
    const float* kc = act(op.src1);
    const float* vc = kc + KVH * hd;  // each cache row: keys, then values
    float* out = act(op.dst);
    std::vector<float> score, q_rot(static_cast<size_t>(hd));
    for (int64_t i = i0; i < i1; i++) {
      int64_t t = i / H, h = i % H, kvh = h / group;
      int64_t base = int64_t(in.slot[size_t(t)]) * op.ctx, n = in.pos[size_t(t)] + 1;
      const float* qv = q + t * w + h * hd;
      if (op.rope) {
        std::copy(qv, qv + hd, q_rot.begin());
        rope(q_rot.data(), hd, in, t);
        qv = q_rot.data();
      }
      score.resize(size_t(n));
      for (int64_t j = 0; j < n; j++) score[size_t(j)] = cpu::dot(qv, kc + (base + j) * kv_w + kvh * hd, hd) * scale;
      cpu::softmax(score.data(), n);
      float* o = out + (t * H + h) * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t j = 0; j < n; j++) {
        const float* vv = vc + (base + j) * kv_w + kvh * hd;
        for (int64_t d = 0; d < hd; d++) o[d] += score[size_t(j)] * vv[d];
      }
    }
  }

  // The router's weights of `rows` rows of x (T, D), row i being x's row at[i]: rmsnorm, the router's product,
  // softmax, unfused. Into probs_ (rows, E). RouterLut and RouterProbs both call it, so their weights are the same.
  void router_weights(const Op& op, const std::vector<int32_t>& at) {
    const int64_t rows = int64_t(at.size()), E = op.n, D = op.k;
    picked_.resize(size_t(rows * D));
    for (int64_t i = 0; i < rows; i++)
      std::copy(act(op.src0) + int64_t(at[size_t(i)]) * D, act(op.src0) + (int64_t(at[size_t(i)]) + 1) * D,
                picked_.begin() + i * D);
    normed_.resize(size_t(rows * D));
    probs_.resize(size_t(rows * E));
    cpu::rmsnorm(picked_.data(), weight(op.src2), op.eps, rows, D, normed_.data());
    cpu::matmul(normed_.data(), weight(op.src1), rows, D, E, probs_.data(), false);
    for (int64_t i = 0; i < rows; i++) cpu::softmax(probs_.data() + i * E, E);
  }

  // The router's weights, then the weighted sum of each token's table row into dst.
  void router_lut(const Op& op, const StepInputs& in) {
    const int64_t T = in.tokens(), E = op.n, D = op.k;
    const int64_t row_elems = lut_->row_elems();
    std::vector<int32_t> all(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; t++) all[size_t(t)] = int32_t(t);
    router_weights(op, all);
    float* x = act(op.dst);
    std::fill(x, x + T * D, 0.0f);
    std::vector<float> slice(static_cast<size_t>(D));
    TensorView view;  // a row slice of the table as a tensor, to reuse the dtype conversion
    view.dtype = lut_->dtype();
    for (int64_t t = 0; t < T; t++) {
      const float* r = probs_.data() + t * E;
      view.data = lut_row(in.ids[size_t(t)]);
      view.shape = {row_elems};
      view.nbytes = lut_->row_bytes();
      for (int64_t e = 0; e < E; e++) {
        view.to_f32((int64_t(op.layer) * E + e) * D, D, slice.data());
        for (int64_t d = 0; d < D; d++) x[t * D + d] += r[e] * slice[size_t(d)];
      }
    }
  }

  // The output rows' router weights into their layer's columns of dst (R, layers * E).
  void router_probs(const Op& op, const StepInputs& in) {
    const int64_t E = op.n, cols = int64_t(op.layers) * E;
    router_weights(op, in.out_rows);
    for (size_t r = 0; r < in.out_rows.size(); r++)
      std::copy(probs_.data() + int64_t(r) * E, probs_.data() + (int64_t(r) + 1) * E,
                act(op.dst) + int64_t(r) * cols + int64_t(op.layer) * E);
  }

  std::vector<Buffer> bufs_;
  std::vector<float> normed_;  // (rows, K) NormMatMul and router scratch
  std::vector<float> picked_;  // (rows, D) the rows of x the router reads
  std::vector<float> probs_;   // (rows, E) the router's weights
  const LutStore* lut_ = nullptr;
  LutPlacement placement_ = LutPlacement::Host;
  std::vector<uint8_t> copy_;  // the whole table, for Device/Host placement of a file-backed table
  bool profiling_ = false;
  StepProfile prof_;
  std::optional<OpKind> perturb_;  // cpu-perturbed: the op whose output is made wrong on purpose
  uint64_t rows_moved_ = 0;        // table rows the steps read
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(std::optional<OpKind> perturb) {
  return std::make_unique<CpuBackend>(perturb);
}

BackendEntry cpu_backend_entry() {
  return {"cpu",
          [](const BackendOptions&) {
            return BackendProbe{true, make_cpu_backend()->info().device, "", false};
          },
          [](const BackendOptions&) { return make_cpu_backend(); },
          {}};
}

BackendEntry cpu_perturbed_backend_entry() {
  return {"cpu-perturbed",
          [](const BackendOptions&) {
            return BackendProbe{true, "the CPU reference with one op's output 0.1% off (--tune perturb=OP)", "", false};
          },
          [](const BackendOptions& o) {
            const std::string name = o.tuning.perturb_op.empty() ? "matmul" : o.tuning.perturb_op;
            for (int k = 0; k <= int(OpKind::Argmax); k++)
              if (name == op_name(OpKind(k))) return make_cpu_backend(OpKind(k));
            throw Error("--tune perturb=" + name +
                        ": not an op (embed, norm_matmul, matmul, attention, "
                        "router_lut, router_probs, gather, argmax)");
          },
          {"perturb"},
          /*hidden=*/true};
}

}  // namespace mole
