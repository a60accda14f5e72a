// logits, tokenize, detokenize, convert, info, synth, devices, bench.
#include "apps/mole_commands.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/backends.h"
#include "model/checkpoint_io.h"
#include "model/error.h"
#include "model/parallel.h"
#include "model/progress.h"
#include "model/reparam.h"
#include "model/sampling.h"
#include "model/user_files.h"

namespace mole::app {
namespace {

Tokenizer tokenizer_from(const TokenizeArgs& a) {
  if (!a.tokenizer.empty() && !a.model.empty()) throw Error("give -m DIR or --tokenizer FILE, not both");
  if (!a.tokenizer.empty()) return Tokenizer::load(a.tokenizer);
  return load_tokenizer_for(a.model.empty() ? default_model_dir() : a.model);
}

}  // namespace

int cmd_logits(LogitsArgs& a) {
  std::vector<int32_t> ids = parse_ids(a.ids, "--ids");
  a.f.quiet = true;
  a.f.batch = 1;
  a.f.ubatch = std::max(a.f.ubatch, int(ids.size()));  // one pass, as a Hugging Face forward over the ids
  if (a.f.ctx_size == 0) {
    // Scaled RoPE stretches the context: size it to the input rather than refuse a long one.
    Config c = Config::load_dir(a.f.model.empty() ? default_model_dir() : a.f.model);
    if (c.rope_scaling != RopeScaling::None) a.f.ctx_size = std::max(default_context(c), int(ids.size()));
  }
  auto m = load_model(a.f, false);
  print_logits_json(m->engine->step({{0, ids}}, true));
  if (a.f.profile) print_profile(m->backend->profile(), m->backend->info().name);
  return 0;
}

int cmd_tokenize(TokenizeArgs& a) {
  if (a.text_given == !a.file.empty()) throw Error("give exactly one of --text TEXT or --file PATH");
  Tokenizer tok = tokenizer_from(a);
  std::string text = a.file.empty() ? a.text : read_file_arg(a.file, "--file");
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const Error& e) {
    throw Error((a.file.empty() ? std::string("--text: ") : "--file " + a.file + ": ") + e.what());
  }
  if (a.json) {
    nlohmann::json tokens = nlohmann::json::array();
    for (int32_t id : ids) tokens.push_back(tok.id_to_token(id));
    std::cout << nlohmann::json{{"ids", ids}, {"tokens", tokens}}.dump() << "\n";
  } else {
    for (size_t i = 0; i < ids.size(); i++) std::printf(i ? ",%d" : "%d", ids[i]);
    std::printf("\n");
  }
  return 0;
}

int cmd_detokenize(TokenizeArgs& a) {
  Tokenizer tok = tokenizer_from(a);
  const std::vector<int32_t> ids = parse_ids(a.text, "--ids");
  // As Hugging Face's decode: an id the tokenizer does not know (a model's vocabulary padding past it) decodes to
  // nothing. Said on stderr, so that a wrong id is not mistaken for an empty token.
  std::string unknown;
  for (int32_t id : ids)
    if (id >= tok.vocab_size()) unknown += (unknown.empty() ? "" : ",") + std::to_string(id);
  if (!unknown.empty())
    std::fprintf(stderr, "mole: note: --ids %s: not in the tokenizer's vocabulary [0, %d); decoded to nothing\n",
                 unknown.c_str(), tok.vocab_size());
  std::string text = tok.decode(ids);
  if (a.json)
    std::cout << nlohmann::json{{"text", text}}.dump() << "\n";
  else
    std::cout << text << "\n";
  return 0;
}

int cmd_convert(ConvertArgs& a) {
  if (a.threads > 0) set_num_threads(a.threads);
  ConvertOptions o;
  o.table_dtype = parse_dtype_flag(a.dtype, "--dtype");
  o.progress = !a.quiet;
  const BackendOptions opt = backend_options(a.bf);
  if (a.bf.backend != "cpu") {
    const BackendNotice notice = a.quiet ? BackendNotice() : print_notice;
    make_backend(a.bf.backend, opt, notice).reset();  // an unusable --backend fails before any work
    o.rows = [&](const Config& cfg, const Weights& w) -> std::unique_ptr<LutRowSource> {
      return std::make_unique<OwnedBackendLutRows>(cfg, w, make_backend(a.bf.backend, opt, notice));
    };
  }
  auto t0 = std::chrono::steady_clock::now();
  convert_checkpoint(a.in, a.out, o);
  if (!a.quiet)
    std::fprintf(stderr, "wrote %s in %.1fs\n", a.out.c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

int cmd_info(InfoArgs& a) {
  std::string dir = a.model.empty() ? default_model_dir() : a.model;
  Config c = Config::load_dir(dir);
  Weights w = Weights::load(dir, c);
  const ModelSummary sm = summarize(c, w);
  const int64_t total = sm.parameters_total, table = sm.table_parameters, experts = sm.parameters_training_experts,
                attn_mlp = sm.parameters_dense_part, lut_elems = sm.lut_elements;
  const size_t lut_dtype_size = sm.lut_dtype_size;
  const std::map<std::string, int64_t> by_dtype(sm.dtypes.begin(), sm.dtypes.end());
  nlohmann::json j = {{"model", dir},
                      {"form", form_name(w.form)},
                      {"layers", c.num_layers},
                      {"hidden_size", c.hidden_size},
                      {"intermediate_size", c.intermediate_size},
                      {"heads", c.num_heads},
                      {"kv_heads", c.num_kv_heads},
                      {"head_dim", c.head_dim},
                      {"experts", c.num_experts},
                      {"vocab_size", c.vocab_size},
                      {"max_position_embeddings", c.max_position_embeddings},
                      {"parameters_total", total},
                      {"parameters_dense_part", attn_mlp},
                      {"parameters_training_experts", experts},
                      {"lut_elements", lut_elems},
                      {"lut_bytes", lut_elems * int64_t(lut_dtype_size)},
                      {"lut_bytes_per_token", c.lut_row_elems() * int64_t(lut_dtype_size)},
                      {"dtypes", by_dtype},
                      {"file_bytes", w.tensors.total_bytes()}};
  if (a.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::printf("model          %s\n", dir.c_str());
  std::printf("form           %s\n", form_name(w.form));
  std::printf("shape          L=%d layers, D=%d hidden, F=%d ffn, H=%d heads (KVH=%d, hd=%d), E=%d experts, V=%d\n",
              c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads, c.head_dim, c.num_experts,
              c.vocab_size);
  std::printf("context        %d positions, rope_theta %g%s\n", c.max_position_embeddings, c.rope_theta,
              c.rope_scaling == RopeScaling::Linear    ? ", linear scaling"
              : c.rope_scaling == RopeScaling::Dynamic ? ", dynamic NTK scaling"
                                                       : "");
  std::printf("parameters     %.2fM stored (%.2fM attention/MLP/embeddings, %.2fM training experts, %.2fM table)\n",
              total / 1e6, attn_mlp / 1e6, experts / 1e6, table / 1e6);
  if (c.is_mole())
    std::printf("lookup table   (%d, %lld) = %.2fM values, %s in %s; %s per token\n", c.vocab_size,
                (long long)c.lut_row_elems(), lut_elems / 1e6,
                human_bytes(double(lut_elems) * double(lut_dtype_size)).c_str(), sm.lut_dtype.c_str(),
                human_bytes(double(c.lut_row_elems()) * double(lut_dtype_size)).c_str());
  std::string dts;
  for (auto& [k, v] : by_dtype) dts += (dts.empty() ? "" : ", ") + k + " " + std::to_string(v);
  std::printf("dtypes         %s\n", dts.c_str());
  std::printf("files          %s of tensors\n", human_bytes(double(w.tensors.total_bytes())).c_str());
  return 0;
}

int cmd_synth(SynthArgs& a) {
  SynthOptions o;
  o.preset = a.preset;
  preset_config(a.preset);  // unknown preset: error before anything else
  if (a.form == "auto")
    o.form = a.preset.starts_with("dense") ? Form::Dense : Form::Infer;
  else
    o.form = a.form == "train" ? Form::Train : a.form == "dense" ? Form::Dense : Form::Infer;
  o.dtype = parse_dtype_flag(a.dtype, "--dtype");
  o.table_dtype = parse_dtype_flag(a.table_dtype, "--table-dtype");
  o.seed = a.seed;
  o.progress = !a.quiet;
  if (!a.set.empty()) {
    const std::string expected = "expected a JSON object, e.g. '{\"num_key_value_heads\": 1}', got: " +
                                 (a.set.size() > 80 ? a.set.substr(0, 77) + "..." : a.set);
    o.overrides = parse_json(a.set, "--set", "the value", expected);
    if (!o.overrides.is_object()) throw Error("--set: " + expected);
  }
  synth_checkpoint(a.out, o);
  return 0;
}

int cmd_devices() {
  const BackendOptions opt = backend_options(BackendFlags{});
  std::string details;
  for (const BackendEntry& e : backend_registry()) {
    if (e.hidden) continue;
    const BackendProbe p = e.probe(opt);
    std::printf("%-7s %-11s %s\n", e.name.c_str(), p.available ? "available" : "unavailable", p.detail.c_str());
    details += p.devices;
  }
  std::fputs(details.c_str(), stdout);
  return 0;
}

}  // namespace mole::app
