// config.json parsing: defaults, scaling, and an error naming the field for each invalid value.
#include <doctest/doctest.h>

#include "model/config.h"
#include "model/error.h"

using namespace mole;

namespace {
nlohmann::json base() {
  return {{"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"num_experts", 4}};
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
  auto j = base();
  j.erase("hidden_size");
  check_error(j, "hidden_size");
  j = base();
  j["hidden_size"] = 65;
  check_error(j, "divisible");
  j = base();
  j["num_key_value_heads"] = 3;
  check_error(j, "num_key_value_heads");
  j = base();
  j["vocab_size"] = -5;
  check_error(j, "vocab_size");
  j = base();
  j["vocab_size"] = "many";
  check_error(j, "vocab_size");
  j = base();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}};
  check_error(j, "yarn");
  j = base();
  j["rope_scaling"] = {{"type", "linear"}};
  check_error(j, "factor");
  j = base();
  j["rms_norm_eps"] = 0;
  check_error(j, "rms_norm_eps");
  j = base();
  j["hidden_size"] = 12;
  j["num_attention_heads"] = 4;  // head dim 3 is odd
  check_error(j, "even");
  check_error(nlohmann::json::array(), "object");
}
