// Parses and validates config.json. Defaults are LlamaConfig's where the official MoLE configs omit a field.
#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>

#include "model/error.h"
#include "model/user_files.h"

namespace mole {
namespace {

int get_int(const nlohmann::json& j, const char* key, std::optional<int> fallback, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback) return *fallback;
    throw Error(src + ": missing required field \"" + key + "\"");
  }
  const auto& v = j[key];
  if (!v.is_number_integer()) throw Error(src + ": field \"" + key + "\" must be an integer, got " + v.dump());
  int64_t x = v.get<int64_t>();
  if (x < 0 || x > (int64_t(1) << 31) - 1) throw Error(src + ": field \"" + key + "\" is out of range: " + v.dump());
  return int(x);
}

double get_num(const nlohmann::json& j, const char* key, double fallback, const std::string& src) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const auto& v = j[key];
  if (!v.is_number()) throw Error(src + ": field \"" + key + "\" must be a number, got " + v.dump());
  return v.get<double>();
}

// A token id field: an integer, or a list whose first element is one (HF allows a list); anything else is none.
std::optional<int> get_token_id(const nlohmann::json& j, const char* key, const std::string& src) {
  if (!j.contains(key)) return std::nullopt;
  const nlohmann::json* v = &j[key];
  if (v->is_array() && !v->empty()) v = &(*v)[0];
  if (!v->is_number_integer()) return std::nullopt;
  const bool in_range = v->is_number_unsigned() ? v->get<uint64_t>() <= uint64_t(INT32_MAX)
                                                : v->get<int64_t>() >= 0 && v->get<int64_t>() <= INT32_MAX;
  if (!in_range) throw Error(src + ": field \"" + key + "\" must be a token id in [0, 2^31), got " + v->dump());
  return int(v->get<int64_t>());
}

// The product of `factors` (each positive), or nullopt when it is above `limit` (checked without overflow).
std::optional<int64_t> product_within(std::initializer_list<int64_t> factors, int64_t limit) {
  int64_t p = 1;
  for (int64_t f : factors)
    if (__builtin_mul_overflow(p, f, &p) || p > limit) return std::nullopt;
  return p;
}

void require(bool ok, const std::string& src, const std::string& what) {
  if (!ok) throw Error(src + ": " + what);
}

}  // namespace

Config Config::from_json(const nlohmann::json& j, const std::string& src) {
  require(j.is_object(), src, "expected a JSON object");
  Config c;
  c.raw = j;
  c.vocab_size = get_int(j, "vocab_size", std::nullopt, src);
  c.hidden_size = get_int(j, "hidden_size", std::nullopt, src);
  c.intermediate_size = get_int(j, "intermediate_size", std::nullopt, src);
  c.num_layers = get_int(j, "num_hidden_layers", std::nullopt, src);
  c.num_heads = get_int(j, "num_attention_heads", std::nullopt, src);
  c.num_kv_heads = get_int(j, "num_key_value_heads", c.num_heads, src);
  c.num_experts = get_int(j, "num_experts", 0, src);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", 2048, src);
  // Checked before it is narrowed to float: 1e300 would overflow it and 1e-86 become 0 (found by fuzz_config).
  const double eps = get_num(j, "rms_norm_eps", 1e-6, src);
  require(eps >= std::numeric_limits<float>::min() && eps <= 1, src,
          "rms_norm_eps must be a positive number from 1.2e-38 (the least float32) to 1");
  c.rms_norm_eps = float(eps);
  c.rope_theta = get_num(j, "rope_theta", 10000.0, src);
  c.bos_token_id = get_token_id(j, "bos_token_id", src);
  c.eos_token_id = get_token_id(j, "eos_token_id", src);
  if (j.contains("tie_word_embeddings")) {
    require(j["tie_word_embeddings"].is_boolean(), src, "field \"tie_word_embeddings\" must be true or false");
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }

  for (auto [name, v] : {std::pair{"vocab_size", c.vocab_size},
                         {"hidden_size", c.hidden_size},
                         {"intermediate_size", c.intermediate_size},
                         {"num_hidden_layers", c.num_layers},
                         {"num_attention_heads", c.num_heads},
                         {"num_key_value_heads", c.num_kv_heads},
                         {"max_position_embeddings", c.max_position_embeddings}}) {
    require(v > 0, src, std::string("field \"") + name + "\" must be positive");
  }
  require(c.max_position_embeddings <= kMaxContext, src,
          "max_position_embeddings (" + std::to_string(c.max_position_embeddings) + ") is more than " +
              std::to_string(kMaxContext) + " positions, the longest context mole runs");
  // Sizes derived from the fields, in 64 bits: no tensor the config implies may pass kMaxTensorElements.
  const int64_t V = c.vocab_size, D = c.hidden_size, F = c.intermediate_size, L = c.num_layers;
  const int64_t E = std::max(c.num_experts, 1);
  struct Implied {
    const char* what;
    int64_t a, b, c, d;
  };
  for (const Implied& t :
       {Implied{"vocab_size x hidden_size (the embeddings)", V, D, 1, 1},
        Implied{"intermediate_size x hidden_size (an MLP matrix)", F, D, 1, 1},
        Implied{"vocab_size x num_hidden_layers x num_experts x hidden_size (the lookup table)", V, L, E, D}}) {
    require(product_within({t.a, t.b, t.c, t.d}, kMaxTensorElements).has_value(), src,
            std::string("the fields imply a tensor of more than 2^40 values, ") + t.what +
                "; no checkpoint is that large: check these fields");
  }
  require(c.hidden_size % c.num_heads == 0, src,
          "hidden_size (" + std::to_string(c.hidden_size) + ") must be divisible by num_attention_heads (" +
              std::to_string(c.num_heads) + ")");
  c.head_dim = c.hidden_size / c.num_heads;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    require(get_int(j, "head_dim", 0, src) == c.head_dim, src,
            "head_dim must equal hidden_size / num_attention_heads (" + std::to_string(c.head_dim) +
                "); other head sizes are not part of the MoLE architecture");
  }
  require(c.head_dim % 2 == 0, src, "head dimension (hidden_size / num_attention_heads) must be even for RoPE");
  require(c.num_heads % c.num_kv_heads == 0, src,
          "num_attention_heads (" + std::to_string(c.num_heads) + ") must be a multiple of num_key_value_heads (" +
              std::to_string(c.num_kv_heads) + ")");
  require(c.rope_theta > 0 && std::isfinite(c.rope_theta), src, "rope_theta must be a positive number");
  if (j.contains("attention_bias") && j["attention_bias"].is_boolean() && j["attention_bias"].get<bool>())
    throw Error(src + ": attention_bias=true is not part of the MoLE architecture (q/k/v/o have no bias)");

  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& rs = j["rope_scaling"];
    require(rs.is_object(), src, "rope_scaling must be null or an object like {\"type\": \"linear\", \"factor\": 2.0}");
    std::string type;
    if (rs.contains("type") && rs["type"].is_string())
      type = rs["type"].get<std::string>();
    else if (rs.contains("rope_type") && rs["rope_type"].is_string())
      type = rs["rope_type"].get<std::string>();
    require(rs.contains("factor") && rs["factor"].is_number(), src, "rope_scaling needs a numeric \"factor\"");
    c.rope_factor = rs["factor"].get<double>();
    require(c.rope_factor > 0 && std::isfinite(c.rope_factor), src, "rope_scaling.factor must be positive");
    // The context it stretches to, in double (1e300 would overflow any integer), before default_context() uses it.
    const double stretched = double(c.max_position_embeddings) * std::max(1.0, c.rope_factor);
    require(stretched <= kMaxContext, src,
            "rope_scaling.factor " + rs["factor"].dump() + " is out of range: max_position_embeddings (" +
                std::to_string(c.max_position_embeddings) + ") times the factor must be at most " +
                std::to_string(kMaxContext) + " positions, the longest context mole runs");
    if (type == "linear")
      c.rope_scaling = RopeScaling::Linear;
    else if (type == "dynamic")
      c.rope_scaling = RopeScaling::Dynamic;
    else if (type == "default")
      c.rope_scaling = RopeScaling::None;
    else
      throw Error(src + ": rope_scaling type \"" + type + "\" is not supported (supported: linear, dynamic)");
  }
  return c;
}

Config Config::load_dir(const std::string& dir) {
  const PathKind kind = path_kind(dir);
  if (kind == PathKind::Missing) throw Error(dir + ": no such directory (expected a Hugging Face model directory)");
  if (kind != PathKind::Directory)
    throw Error(dir + ": not a directory (expected a Hugging Face model directory holding config.json)");
  return load_file(dir + "/config.json");
}

Config Config::load_file(const std::string& path) {
  if (path_kind(path) == PathKind::Missing)
    throw Error(path + ": cannot open config.json: no such file (is -m a Hugging Face model directory?)");
  return from_json(load_json_file(path, "config.json"), path);
}

}  // namespace mole
