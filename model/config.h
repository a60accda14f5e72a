// Config: the model's blueprint, parsed from a Hugging Face config.json (LlamaConfig fields plus MoLE's
// num_experts). Dimension legend used across model/: B sequences, T tokens in a step, D hidden, F FFN width,
// H query heads, KVH key/value heads, hd head dim, E experts, L layers, V vocabulary, S context length.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace mole {

enum class RopeScaling { None, Linear, Dynamic };

// The longest context mole runs (S): 16M positions. max_position_embeddings, times the RoPE scaling factor, must
// stay within it, and so must --ctx-size and --ubatch-size; every size derived from them then fits in 64 bits.
constexpr int kMaxContext = 1 << 24;
// The most values any tensor config.json implies may hold (the table: V*L*E*D), 2^40 (the largest MoLE tables are
// ~2^34): products of the fields are checked against it, in 64 bits, before anything is sized from them.
constexpr int64_t kMaxTensorElements = int64_t(1) << 40;

struct Config {
  int vocab_size = 0;               // V
  int hidden_size = 0;              // D
  int intermediate_size = 0;        // F (shared MLP and each training-form expert)
  int num_layers = 0;               // L
  int num_heads = 0;                // H
  int num_kv_heads = 0;             // KVH (GQA/MQA when < H)
  int head_dim = 0;                 // hd = D / H
  int num_experts = 0;              // E; 0 means a dense checkpoint (no router, no experts, no table)
  int max_position_embeddings = 0;  // S limit, and the dynamic-NTK threshold
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = RopeScaling::None;
  double rope_factor = 1.0;
  bool tie_word_embeddings = false;
  std::optional<int> bos_token_id;
  std::optional<int> eos_token_id;
  nlohmann::json raw;  // the file as read, written back unchanged (but for what convert changes)

  bool is_mole() const { return num_experts > 0; }
  // Values per token in the lookup table: L*E*D (validated by from_json to fit kMaxTensorElements).
  int64_t lut_row_elems() const { return int64_t(num_layers) * num_experts * hidden_size; }

  // Throws mole::Error naming `source` and the field on a missing, mistyped or contradictory value.
  static Config from_json(const nlohmann::json& j, const std::string& source);
  static Config load_file(const std::string& path);
  // Checks that `dir` is a directory first, so `-m FILE` gets an error that says so.
  static Config load_dir(const std::string& dir);
};

}  // namespace mole
