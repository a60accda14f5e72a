// Binds checkpoint tensors to the model's roles and checks their shapes against config.json.
#include "model/weights.h"

#include <set>

#include "model/error.h"

namespace mole {

const char* form_name(Form f) {
  switch (f) {
    case Form::Dense:
      return "dense";
    case Form::Train:
      return "training (experts, table computed at load)";
    case Form::Infer:
      return "inference (lookup table)";
  }
  return "?";
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

namespace {

struct Binder {
  const TensorSet& set;
  const std::string& dir;
  std::set<std::string> used;

  const TensorView* get(const std::string& name, std::vector<int64_t> shape) {
    const TensorView* t = set.find(name);
    if (!t) {
      throw Error(dir + ": missing tensor '" + name + "' of shape " + shape_str(shape) +
                  " (is this a MoLE/dense checkpoint of the official layout, and does config.json match it?)");
    }
    if (t->shape != shape) {
      throw Error(t->file + ": tensor '" + name + "' has shape " + shape_str(t->shape) + " but config.json implies " +
                  shape_str(shape));
    }
    used.insert(name);
    return t;
  }
};

// Buffers some exporters save although the model recomputes them; safe to ignore.
bool ignorable(const std::string& name) {
  return name.ends_with("rotary_emb.inv_freq") || name.ends_with("causal_mask");
}

}  // namespace

Weights Weights::load(const std::string& dir, const Config& c) {
  Weights w;
  w.tensors = TensorSet::open_dir(dir);
  const int64_t V = c.vocab_size, D = c.hidden_size, F = c.intermediate_size, E = c.num_experts;
  const int64_t qdim = int64_t(c.num_heads) * c.head_dim, kvdim = int64_t(c.num_kv_heads) * c.head_dim;

  bool has_table = w.tensors.find("model.moe_table.weight") != nullptr;
  bool has_experts = w.tensors.find("model.layers.0.experts.0.up_proj.weight") != nullptr;
  if (!c.is_mole()) {
    if (has_table || has_experts || w.tensors.find("model.layers.0.router.weight"))
      throw Error(dir +
                  ": config.json has no num_experts (dense), but the checkpoint holds MoLE tensors; add "
                  "\"num_experts\" to config.json");
    w.form = Form::Dense;
  } else if (has_table && has_experts) {
    throw Error(dir + ": checkpoint holds both model.moe_table.weight and training-form experts; keep one form");
  } else if (has_table) {
    w.form = Form::Infer;
  } else if (has_experts) {
    // The authors' MoE baseline (modeling_moe.py) names its experts and router as MoLE's training form does, but
    // its experts take the hidden state (top-k routed), with no shared MLP and no expert_layernorm: no table can
    // stand in for them.
    if (!w.tensors.find("model.layers.0.mlp.up_proj.weight") &&
        !w.tensors.find("model.layers.0.expert_layernorm.weight"))
      throw Error(dir +
                  ": a Mixture-of-Experts checkpoint (experts on the hidden state, no shared mlp.* and no "
                  "expert_layernorm, as the MoLE authors' MoE baseline): mole runs MoLE and dense checkpoints only");
    w.form = Form::Train;
  } else {
    throw Error(dir + ": config.json says num_experts=" + std::to_string(E) +
                " but the checkpoint has neither model.moe_table.weight (inference form) nor "
                "model.layers.N.experts.M.* (training form)");
  }

  Binder b{w.tensors, dir, {}};
  w.embed = b.get("model.embed_tokens.weight", {V, D});
  w.final_norm = b.get("model.norm.weight", {D});
  if (c.tie_word_embeddings) {
    w.lm_head = w.embed;
    if (w.tensors.find("lm_head.weight")) w.lm_head = b.get("lm_head.weight", {V, D});
  } else {
    w.lm_head = b.get("lm_head.weight", {V, D});
  }
  if (w.form == Form::Infer) w.moe_table = b.get("model.moe_table.weight", {V, c.lut_row_elems()});

  for (int l = 0; l < c.num_layers; l++) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights lw;
    lw.input_norm = b.get(p + "input_layernorm.weight", {D});
    lw.q = b.get(p + "self_attn.q_proj.weight", {qdim, D});
    lw.k = b.get(p + "self_attn.k_proj.weight", {kvdim, D});
    lw.v = b.get(p + "self_attn.v_proj.weight", {kvdim, D});
    lw.o = b.get(p + "self_attn.o_proj.weight", {D, qdim});
    lw.post_norm = b.get(p + "post_attention_layernorm.weight", {D});
    lw.up = b.get(p + "mlp.up_proj.weight", {F, D});
    lw.down = b.get(p + "mlp.down_proj.weight", {D, F});
    if (c.is_mole()) lw.router = b.get(p + "router.weight", {E, D});
    if (w.form == Form::Train) {
      lw.expert_norm = b.get(p + "expert_layernorm.weight", {D});
      for (int e = 0; e < E; e++) {
        std::string ep = p + "experts." + std::to_string(e) + ".";
        lw.experts.push_back({b.get(ep + "up_proj.weight", {F, D}), b.get(ep + "down_proj.weight", {D, F})});
      }
    }
    w.layers.push_back(std::move(lw));
  }

  for (const std::string& name : w.tensors.names()) {
    if (!b.used.count(name) && !ignorable(name)) {
      throw Error(w.tensors.find(name)->file + ": unexpected tensor '" + name + "' in a checkpoint of " +
                  form_name(w.form) + " form with " + std::to_string(c.num_layers) + " layers and " +
                  std::to_string(E) + " experts (does config.json match the checkpoint?)");
    }
  }
  return w;
}

int64_t Weights::parameter_count() const {
  int64_t n = 0;
  for (const std::string& name : tensors.names()) n += tensors.find(name)->numel();
  return n;
}

}  // namespace mole
