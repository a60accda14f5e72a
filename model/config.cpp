// Parses and validates config.json. Defaults are LlamaConfig's where the official MoLE configs omit a field.
#include "model/config.h"

#include <cmath>

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

std::optional<int> get_token_id(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return std::nullopt;
  const auto& v = j[key];
  if (v.is_number_integer()) return v.get<int>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int>();  // HF allows a list
  return std::nullopt;
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
  c.rms_norm_eps = float(get_num(j, "rms_norm_eps", 1e-6, src));
  c.rope_theta = get_num(j, "rope_theta", 10000.0, src);
  c.bos_token_id = get_token_id(j, "bos_token_id");
  c.eos_token_id = get_token_id(j, "eos_token_id");
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
  require(c.rms_norm_eps > 0 && std::isfinite(c.rms_norm_eps), src, "rms_norm_eps must be a positive number");
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
