// config.json parsing: defaults, scaling, and an error naming the field for each invalid value.
#include <doctest/doctest.h>

#include "model/config.h"
#include "model/error.h"
#include "model/forward.h"
#include "model/progress.h"

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

TEST_CASE("sizes derived from config.json are range-checked in 64 bits, naming the field") {
  // max_position_embeddings times the RoPE factor: 1e300 (or an int overflow, 2^24 times 200) is out of range,
  // reported as the field it is, before default_context() converts it to an int.
  for (double factor : {1e300, 200.0, 4097.0}) {
    CAPTURE(factor);
    auto j = base();
    j["max_position_embeddings"] = factor == 200.0 ? kMaxContext : 4096;
    j["rope_scaling"] = {{"type", "linear"}, {"factor", factor}};
    check_error(j, "rope_scaling.factor");
  }
  auto at_limit = base();
  at_limit["max_position_embeddings"] = 4096;
  at_limit["rope_scaling"] = {{"type", "dynamic"}, {"factor", 4096.0}};
  CHECK(default_context(Config::from_json(at_limit, "c")) == kMaxContext);
  at_limit["rope_scaling"]["factor"] = 0.5;  // a factor below 1 never shortens the default context
  CHECK(default_context(Config::from_json(at_limit, "c")) == 4096);

  const std::vector<std::pair<nlohmann::json, const char*>> cases = {
      {{{"max_position_embeddings", kMaxContext + 1}}, "max_position_embeddings"},
      {{{"vocab_size", 1073741824}, {"hidden_size", 2048}}, "the embeddings"},  // V*D = 2^41
      {{{"intermediate_size", 2147483647}, {"hidden_size", 1048576}}, "an MLP matrix"},
      {{{"num_hidden_layers", 2147483647}, {"num_experts", 2147483647}}, "the lookup table"},  // L*E*D overflows int64
      {{{"rms_norm_eps", 1e300}}, "rms_norm_eps"},  // would overflow the float it is stored in
      {{{"rms_norm_eps", 1e-86}}, "rms_norm_eps"},  // would become 0 in it (found by fuzz_config)
      {{{"eos_token_id", 4294967296}}, "eos_token_id"},
      {{{"eos_token_id", nlohmann::json::parse("4294967296")}}, "eos_token_id"},  // as read from a file: unsigned
      {{{"bos_token_id", {-1}}}, "bos_token_id"},
  };
  for (const auto& [patch, needle] : cases) {
    CAPTURE(patch.dump());
    auto j = base();
    j.merge_patch(patch);
    check_error(j, needle);
  }
  auto ids = base();
  ids["eos_token_id"] = {7, 8};
  CHECK(Config::from_json(ids, "c").eos_token_id == 7);
}

TEST_CASE("human_bytes: whole bytes below 1 KiB, then two decimals in powers of 1024") {
  CHECK(mole::human_bytes(0) == "0 B");
  CHECK(mole::human_bytes(1023) == "1023 B");
  CHECK(mole::human_bytes(1024) == "1.00 KiB");
  CHECK(mole::human_bytes(4096 + 512) == "4.50 KiB");
  CHECK(mole::human_bytes(196.5 * 1024 * 1024) == "196.50 MiB");
  CHECK(mole::human_bytes(3.0 * (uint64_t(1) << 40) * 1024) == "3072.00 TiB");  // no unit above TiB
}
