// The forward pass of MoLE (and of the dense baseline), as the official modeling_mole*.py compute it:
//   h   = x + o_proj(attn(rope(q, k), v))           with q, k, v from input_layernorm(x)
//   y   = post_attention_layernorm(h)
//   x'  = h + down_proj(gelu(up_proj(y))) + sum_e softmax(router(y))_e * LUT[id][l][e]
// then logits = lm_head(norm(x)). RoPE angles are computed here, on the host, in float64 per token, so every
// backend applies identical cos/sin tables and the scaling rules (linear, dynamic NTK) live in one place.
#include "model/forward.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>

#include "model/error.h"
#include "model/sampling.h"

namespace mole {

Engine::Engine(const Config& c, const Weights& w, const LutStore* lut, Backend& backend, EngineOptions opt)
    : cfg_(c), backend_(backend), opt_(opt) {
  ctx_ = opt.max_context > 0 ? opt.max_context : default_context(c);
  if (ctx_ > c.max_position_embeddings && c.rope_scaling == RopeScaling::None)
    throw Error("--ctx-size " + std::to_string(ctx_) + " is past this model's max_position_embeddings (" +
                std::to_string(c.max_position_embeddings) + ") and config.json sets no rope_scaling");
  if (ctx_ > kMaxContext)
    throw Error("--ctx-size " + std::to_string(ctx_) + " is more than " + std::to_string(kMaxContext) +
                " positions, the longest context mole runs");
  if (opt.max_batch < 1 || opt.max_batch > kMaxBatch)
    throw Error("batch size " + std::to_string(opt.max_batch) + " is outside [1, " + std::to_string(kMaxBatch) + "]");
  if (opt.max_step_tokens < 1 || opt.max_step_tokens > kMaxStepTokens)
    throw Error("--ubatch-size " + std::to_string(opt.max_step_tokens) + " is outside [1, " +
                std::to_string(kMaxStepTokens) + "], the tokens one step may hold");
  assert((!c.is_mole() || lut) && "a MoLE model needs its lookup table");
  lengths_.assign(size_t(opt.max_batch), 0);

  const int D = c.hidden_size, F = c.intermediate_size, E = c.num_experts, V = c.vocab_size;
  const int H = c.num_heads, KVH = c.num_kv_heads, hd = c.head_dim, qd = H * hd, kvd = KVH * hd;
  // A step never holds more tokens than the batch's sequences can (B*S), so a larger --ubatch-size sizes nothing
  // beyond that; both are bounded above, so every buffer size below fits in 64 bits.
  const int T = int(std::min<int64_t>(opt.max_step_tokens, int64_t(opt.max_batch) * ctx_));
  const int R = std::max(T, opt.max_batch), B = opt.max_batch;
  opt_.max_step_tokens = T;
  graph_.max_tokens = T;
  graph_.max_out_rows = R;

  BufferId x = backend.alloc(size_t(T) * D, "residual stream");
  BufferId qkv = backend.alloc(size_t(T) * (qd + 2 * kvd), "queries, keys and values");
  BufferId att = backend.alloc(size_t(T) * qd, "attention output");
  BufferId ffn = backend.alloc(size_t(T) * F, "MLP hidden");
  BufferId lut_sum = c.is_mole() ? backend.alloc(size_t(T) * D, "LUT sums") : kNoBuffer;
  const bool router_probs = opt.router_probs && c.is_mole();
  if (router_probs) graph_.router_probs = backend.alloc(size_t(R) * c.num_layers * E, "router weights");
  BufferId g = backend.alloc(size_t(R) * D, "output rows");
  graph_.logits = backend.alloc(size_t(R) * V, "logits");
  graph_.argmax = backend.alloc(size_t(R), "greedy token ids");
  if (lut) backend.set_lut(*lut, opt.lut, T);

  auto& ops = graph_.ops;
  ops.push_back({.kind = OpKind::Embed, .dst = x, .src0 = backend.upload_weight(*w.embed), .n = D});
  for (int l = 0; l < c.num_layers; l++) {
    const LayerWeights& lw = w.layers[size_t(l)];
    std::string name = "KV cache of layer " + std::to_string(l);
    BufferId kv = backend.alloc(size_t(B) * ctx_ * 2 * kvd, name.c_str());  // each row: keys, then values
    // Into the residual stream, plus `addend` if given.
    auto matmul = [&](BufferId dst, BufferId src, const TensorView* wt, int n, int kk, BufferId addend) {
      ops.push_back({.kind = OpKind::MatMul,
                     .dst = dst,
                     .src0 = src,
                     .src1 = backend.upload_weight(*wt),
                     .src2 = addend,
                     .n = n,
                     .k = kk,
                     .accumulate = true});
    };
    // rmsnorm(x) * norm_w @ wt^T, with the norm fused into the product.
    auto norm_matmul = [&](BufferId dst, BufferId norm_w, BufferId wt, int n, bool gelu) {
      ops.push_back({.kind = OpKind::NormMatMul,
                     .dst = dst,
                     .src0 = x,
                     .src1 = wt,
                     .src2 = norm_w,
                     .n = n,
                     .k = D,
                     .eps = c.rms_norm_eps,
                     .gelu = gelu});
    };
    // h = x + o(attention(rope(q), rope(k), v)) with q, k, v = rmsnorm(x) @ [q; k; v]^T, one product.
    BufferId input_norm = backend.upload_weight(*lw.input_norm);
    norm_matmul(qkv, input_norm, backend.upload_stacked({lw.q, lw.k, lw.v}), qd + 2 * kvd, false);
    // The step's keys and values go into the cache within attention, RoPE fused into both reads.
    ops.push_back(attention_op(qkv, kv, att, H, hd, KVH, ctx_, true));
    matmul(x, att, lw.o, D, qd, kNoBuffer);
    // out = h + down(gelu(up(y))) + sum_e softmax(router(y))_e * LUT[id][l][e], y = rmsnorm_post(h). The LUT sum
    // (router and norm fused in) and the MLP hidden are both computed from h, side by side; down() adds itself and
    // the LUT sum into x.
    BufferId post_norm = backend.upload_weight(*lw.post_norm);
    if (c.is_mole())
      ops.push_back({.kind = OpKind::RouterLut,
                     .dst = lut_sum,
                     .src0 = x,
                     .src1 = backend.upload_weight(*lw.router),
                     .src2 = post_norm,
                     .n = E,
                     .k = D,
                     .layer = l,
                     .eps = c.rms_norm_eps});
    // The same weights again, for the output rows only, where a caller asked to see them.
    if (router_probs) {
      Op probs = ops.back();
      probs.kind = OpKind::RouterProbs;
      probs.dst = graph_.router_probs;
      probs.layers = c.num_layers;
      ops.push_back(probs);
    }
    norm_matmul(ffn, post_norm, backend.upload_weight(*lw.up), F, true);
    matmul(x, ffn, lw.down, D, F, lut_sum);
  }
  ops.push_back({.kind = OpKind::Gather, .dst = g, .src0 = x, .n = D});
  ops.push_back({.kind = OpKind::NormMatMul,
                 .dst = graph_.logits,
                 .src0 = g,
                 .src1 = backend.upload_weight(*w.lm_head),
                 .src2 = backend.upload_weight(*w.final_norm),
                 .n = V,
                 .k = D,
                 .eps = c.rms_norm_eps,
                 .on_out_rows = true});
  ops.push_back({.kind = OpKind::Argmax, .dst = graph_.argmax, .src0 = graph_.logits, .n = V, .on_out_rows = true});
}

int default_context(const Config& c) {
  if (c.rope_scaling == RopeScaling::None) return c.max_position_embeddings;
  // Config::from_json keeps max_position_embeddings * factor within kMaxContext; the clamp keeps the conversion
  // defined for a Config made some other way.
  const double stretched = std::floor(double(c.max_position_embeddings) * std::max(1.0, c.rope_factor));
  return int(std::clamp(stretched, 1.0, double(kMaxContext)));
}

void Engine::reset(int slot) {
  lengths_.at(size_t(slot)) = 0;
}

void Engine::rope_for(const std::vector<Chunk>& chunks, StepInputs& in) const {
  const int hd = cfg_.head_dim, half = hd / 2;
  in.rope_cos.resize(in.ids.size() * size_t(half));
  in.rope_sin.resize(in.ids.size() * size_t(half));
  size_t t = 0;
  for (const Chunk& ch : chunks) {
    const int start = lengths_[size_t(ch.slot)];
    double base = cfg_.rope_theta;
    if (cfg_.rope_scaling == RopeScaling::Dynamic) {
      // Dynamic NTK (as transformers computes it): the base grows with the sequence length seen by this step.
      double seq_len = double(start + int(ch.tokens.size()));
      double maxpos = double(cfg_.max_position_embeddings), f = cfg_.rope_factor;
      if (seq_len > maxpos) base = cfg_.rope_theta * std::pow(f * seq_len / maxpos - (f - 1.0), double(hd) / (hd - 2));
    }
    for (size_t j = 0; j < ch.tokens.size(); j++, t++) {
      double p = double(start + int(j));
      if (cfg_.rope_scaling == RopeScaling::Linear) p /= cfg_.rope_factor;
      for (int i = 0; i < half; i++) {
        double angle = p / std::pow(base, double(2 * i) / hd);
        in.rope_cos[t * size_t(half) + size_t(i)] = float(std::cos(angle));
        in.rope_sin[t * size_t(half) + size_t(i)] = float(std::sin(angle));
      }
    }
  }
}

std::vector<std::vector<float>> Engine::step(const std::vector<Chunk>& chunks, bool all_logits) {
  return step_rows(chunks, all_logits, false);
}

std::vector<int32_t> Engine::step_argmax(const std::vector<Chunk>& chunks) {
  std::vector<int32_t> ids;
  for (const auto& row : step_rows(chunks, false, true)) ids.push_back(int32_t(row.at(0)));
  for (size_t s = 0; s < ids.size(); s++) {
    if (ids[s] >= 0) continue;  // the Argmax op's -1: the row held a NaN
    const int slot = chunks[s].slot;
    throw nan_logits_error("position " + std::to_string(lengths_[size_t(slot)] - 1) +
                           (opt_.max_batch > 1 ? " of sequence " + std::to_string(slot) : ""));
  }
  return ids;
}

std::vector<std::vector<float>> Engine::step_rows(const std::vector<Chunk>& chunks, bool all_logits, bool ids_only) {
  std::vector<bool> seen(size_t(opt_.max_batch), false);
  for (const Chunk& ch : chunks) {
    if (ch.slot >= 0 && ch.slot < opt_.max_batch && seen[size_t(ch.slot)])
      throw Error("sequence slot " + std::to_string(ch.slot) + " appears twice in one step");
    if (ch.slot >= 0 && ch.slot < opt_.max_batch) seen[size_t(ch.slot)] = true;
    if (ch.slot < 0 || ch.slot >= opt_.max_batch)
      throw Error("sequence slot " + std::to_string(ch.slot) + " is outside the batch of " +
                  std::to_string(opt_.max_batch));
    if (ch.tokens.empty()) throw Error("a step needs at least one token per sequence");
    for (int32_t id : ch.tokens)
      if (id < 0 || id >= cfg_.vocab_size)
        throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                    std::to_string(cfg_.vocab_size) + ")");
    if (lengths_[size_t(ch.slot)] + int64_t(ch.tokens.size()) > ctx_)
      throw Error("sequence of " + std::to_string(lengths_[size_t(ch.slot)] + ch.tokens.size()) +
                  " tokens is longer than the context of " + std::to_string(ctx_) +
                  " positions (max_position_embeddings, or --ctx-size); shorten the prompt or -n");
  }
  // Split into steps of at most max_step_tokens, keeping each chunk's tokens in order.
  std::vector<std::vector<float>> out, router;
  std::vector<Chunk> pending;
  int pending_tokens = 0;
  const std::vector<int> lengths_before = lengths_;  // what a cancelled or failed step goes back to
  auto flush = [&] {
    if (pending.empty()) return;
    std::vector<std::vector<float>> rows;
    try {
      if (cancel_ && cancel_()) throw StepCancelled();
      rows = run_one(pending, all_logits, ids_only, router);
    } catch (...) {  // cancelled, or the backend failed (a GPU step that could not finish, say)
      lengths_ = lengths_before;  // the cache rows the pieces wrote are simply overwritten later
      throw;
    }
    for (auto& r : rows) out.push_back(std::move(r));
    pending.clear();
    pending_tokens = 0;
  };
  std::vector<std::vector<float>> last_rows;  // with !all_logits, only each chunk's final piece yields its row
  std::vector<int> owner;                     // chunk index of each row of `out` when !all_logits
  for (size_t ci = 0; ci < chunks.size(); ci++) {
    const Chunk& ch = chunks[ci];
    size_t done = 0;
    while (done < ch.tokens.size()) {
      if (pending_tokens == opt_.max_step_tokens) flush();
      size_t take = std::min(ch.tokens.size() - done, size_t(opt_.max_step_tokens - pending_tokens));
      pending.push_back(
          {ch.slot, std::vector<int32_t>(ch.tokens.begin() + long(done), ch.tokens.begin() + long(done + take))});
      pending_tokens += int(take);
      done += take;
      if (!all_logits) owner.push_back(done == ch.tokens.size() ? int(ci) : -1);
    }
  }
  flush();
  router_rows_.clear();
  if (all_logits) {
    router_rows_ = std::move(router);
    return out;
  }
  for (size_t i = 0; i < out.size(); i++) {
    if (owner[i] < 0) continue;
    last_rows.push_back(std::move(out[i]));
    if (!router.empty()) router_rows_.push_back(std::move(router[i]));
  }
  return last_rows;
}

std::vector<std::vector<float>> Engine::run_one(const std::vector<Chunk>& chunks, bool all_logits, bool ids_only,
                                                std::vector<std::vector<float>>& router) {
  const auto t0 = std::chrono::steady_clock::now();
  StepInputs in;
  in.want_logits = !ids_only;
  in.cancelled = cancel_;
  for (const Chunk& ch : chunks) {
    for (size_t j = 0; j < ch.tokens.size(); j++) {
      in.ids.push_back(ch.tokens[j]);
      in.slot.push_back(ch.slot);
      in.pos.push_back(lengths_[size_t(ch.slot)] + int(j));
      if (all_logits || j + 1 == ch.tokens.size()) in.out_rows.push_back(int(in.ids.size()) - 1);
    }
  }
  rope_for(chunks, in);
  backend_.stream_lut_rows(in.ids);
  backend_.run_step(graph_, in);
  launch_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const Chunk& ch : chunks) lengths_[size_t(ch.slot)] += int(ch.tokens.size());

  const size_t V = ids_only ? 1 : size_t(cfg_.vocab_size);  // a row: the greedy id, or the logits
  std::vector<float> all(in.out_rows.size() * V);
  backend_.read_back(ids_only ? graph_.argmax : graph_.logits, 0, all.size(), all.data());
  std::vector<std::vector<float>> rows(in.out_rows.size());
  for (size_t r = 0; r < rows.size(); r++) rows[r].assign(all.begin() + long(r * V), all.begin() + long((r + 1) * V));
  if (graph_.router_probs != kNoBuffer) {
    const size_t W = size_t(cfg_.num_layers) * size_t(cfg_.num_experts);
    std::vector<float> probs(in.out_rows.size() * W);
    backend_.read_back(graph_.router_probs, 0, probs.size(), probs.data());
    for (size_t r = 0; r < in.out_rows.size(); r++)
      router.emplace_back(probs.begin() + long(r * W), probs.begin() + long((r + 1) * W));
  }
  return rows;
}

}  // namespace mole
