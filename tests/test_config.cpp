// config.json parsing: defaults, scaling, and an error naming the field for each invalid value.
#include <doctest/doctest.h>

#include "model/config.h"
#include "model/error.h"

using namespace mole;

namespace {
nlohmann::json base() {
  return {{"vocab_size", 100},      {"hidden_size", 64},        {"intermediate_size", 128},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_experts", 4}};
}
void check_error(nlohmann::json j, const char* needle) {
  CHECK_THROWS_WITH_AS(Config::from_json(j, "cfg.json"), doctest::Contains(needle), Error);
}
}  // namespace

TEST_CASE("LlamaConfig defaults fill what MoLE configs omit") {
  Config c = Config::from_json(base(), "cfg.json");
  CHECK(c.num_kv_heads == 4);
  CHECK(c.head_dim == 16);
  CHECK(c.max_position_embeddings == 2048);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.rms_norm_eps == doctest::Approx(1e-6));
  CHECK(c.rope_scaling == RopeScaling::None);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.lut_row_elems() == 2 * 4 * 64);
  auto d = base();
  d.erase("num_experts");
  CHECK_FALSE(Config::from_json(d, "cfg.json").is_mole());
}

TEST_CASE("rope_scaling accepts type or rope_type") {
  auto j = base();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  CHECK(Config::from_json(j, "c").rope_scaling == RopeScaling::Linear);
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  Config c = Config::from_json(j, "c");
  CHECK(c.rope_scaling == RopeScaling::Dynamic);
  CHECK(c.rope_factor == 2.0);
}

TEST_CASE("invalid configs are errors naming the field") {
  // Each case: a JSON merge patch applied to a valid config (null removes a field), and what the error must say.
  const std::vector<std::pair<nlohmann::json, const char*>> cases = {
      {{{"hidden_size", nullptr}}, "hidden_size"},
      {{{"hidden_size", 65}}, "divisible"},
      {{{"num_key_value_heads", 3}}, "num_key_value_heads"},
      {{{"vocab_size", -5}}, "vocab_size"},
      {{{"vocab_size", "many"}}, "vocab_size"},
      {{{"rope_scaling", {{"type", "yarn"}, {"factor", 2.0}}}}, "yarn"},
      {{{"rope_scaling", {{"type", "linear"}}}}, "factor"},
      {{{"rms_norm_eps", 0}}, "rms_norm_eps"},
      {{{"hidden_size", 12}, {"num_attention_heads", 4}}, "even"},  // head dim 3
      {{{"attention_bias", true}}, "attention_bias"},
  };
  for (const auto& [patch, needle] : cases) {
    CAPTURE(patch.dump());
    auto j = base();
    j.merge_patch(patch);
    check_error(j, needle);
  }
  check_error(nlohmann::json::array(), "object");
}
