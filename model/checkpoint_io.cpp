// convert and synth: both stream tensors through SafetensorsWriter into OUT.partial/, then rename.
#include "model/checkpoint_io.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "model/config.h"
#include "model/error.h"
#include "model/lut.h"
#include "model/parallel.h"
#include "model/paths.h"
#include "model/progress.h"
#include "model/user_files.h"

namespace fs = std::filesystem;

namespace mole {
namespace {

// OUT.partial/ while writing; finish() renames it to OUT; the destructor removes it if finish() never ran. An OUT that
// is a symbolic link (to an empty directory) is written where it leads, and stays a link. OUT.partial holds a marker
// file until finish(): one left by a run that was killed is removed, anything else there is the user's and stops
// the run.
class PartialDir {
 public:
  static constexpr const char* kMarker = ".mole-partial";
  explicit PartialDir(const std::string& out) : out_(resolved(out)), tmp_(out_ + ".partial") {
    std::error_code ec;
    const PathKind kind = path_kind(out_);  // throws for a link loop, say, naming the path
    if (kind == PathKind::File || kind == PathKind::Other)
      throw Error(out_ + ": exists and is a file; -o needs a new (or empty) directory");
    if (kind == PathKind::Directory && !fs::is_empty(out_, ec))
      throw Error(out_ + ": already exists and is not empty; choose another -o or remove it");
    if (ec) throw Error(out_ + ": cannot list directory: " + ec.message());
    if (path_kind(tmp_) != PathKind::Missing) {
      if (path_kind(tmp_ + "/" + kMarker) != PathKind::File)
        throw Error(tmp_ + ": exists and was not left by mole; remove it or choose another -o");
      fs::remove_all(tmp_, ec);  // left by an earlier run that was killed
    }
    if (!fs::create_directories(tmp_, ec) || ec) throw Error(tmp_ + ": cannot create directory (" + ec.message() + ")");
    std::ofstream(tmp_ + "/" + kMarker) << "mole writes " << out_ << " here; it removes this folder if it stops\n";
  }
  ~PartialDir() {
    std::error_code ec;
    if (!done_) fs::remove_all(tmp_, ec);
  }
  std::string path(const std::string& name) const { return tmp_ + "/" + name; }
  void finish() {
    std::error_code ec;
    fs::remove(tmp_ + "/" + kMarker, ec);
    if (fs::exists(out_, ec)) fs::remove(out_, ec);  // the empty directory checked above
    fs::rename(tmp_, out_, ec);
    if (ec) throw Error(out_ + ": cannot rename " + tmp_ + " into place (" + ec.message() + ")");
    done_ = true;
  }

 private:
  static std::string resolved(const std::string& out) {
    bool in_place = false;
    return output_target(out, &in_place);
  }
  std::string out_, tmp_;
  bool done_ = false;
};

void write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  if (!f.good()) throw Error(path + ": write failed (disk full?)");
}

void copy_file(const fs::path& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (!ec) return;
  // A full disk can come back as an I/O error from the kernel's copy: say what the space is.
  std::error_code ec2;
  const uintmax_t size = fs::file_size(from, ec2);
  const fs::space_info space = fs::space(fs::path(to).parent_path(), ec2);
  if (!ec2 && space.available < size) {
    throw Error(to + ": cannot copy from " + from.string() + " (" + ec.message() + "): the disk has " +
                human_bytes(double(space.available)) + " free, the file is " + human_bytes(double(size)) +
                "; free space or write to another disk");
  }
  throw Error(to + ": cannot copy from " + from.string() + " (" + ec.message() + ")");
}

bool is_training_only(const std::string& name) {
  return name.find(".experts.") != std::string::npos || name.find(".expert_layernorm.") != std::string::npos;
}

// A counter-based normal generator (splitmix64 + Box-Muller): the same values on every platform and thread count.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }
  float normal() { return float(std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform())); }
};

uint64_t hash_name(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

}  // namespace

void convert_checkpoint(const std::string& in_dir, const std::string& out_dir, const ConvertOptions& opt) {
  Config cfg = Config::load_dir(in_dir);
  Weights w = Weights::load(in_dir, cfg);
  if (w.form == Form::Infer) throw Error(in_dir + ": already in inference form (has model.moe_table.weight)");
  if (w.form == Form::Dense) throw Error(in_dir + ": a dense checkpoint has no experts to reparameterize");
  PartialDir out(out_dir);
  // The small files first, then the table's file, whose whole size the writer reserves: a disk that cannot hold the
  // output fails here, before the experts are evaluated, not minutes later.
  write_json(out.path("config.json"), cfg.raw);
  std::error_code ec;
  for (fs::directory_iterator it(in_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name == "config.json" || name.ends_with(".safetensors") || name == "model.safetensors.index.json" ||
        name.ends_with(".bin") || name.ends_with(".pt") || path_kind(it->path().string()) != PathKind::File)
      continue;
    copy_file(it->path(), out.path(name));  // tokenizer files, generation_config.json, README, ...
  }
  if (ec) throw Error(in_dir + ": cannot list directory: " + ec.message());

  std::vector<SafetensorsWriter::Entry> entries;
  for (const std::string& name : w.tensors.names()) {
    if (is_training_only(name)) continue;
    const TensorView* t = w.tensors.find(name);
    entries.push_back({name, t->dtype, t->shape});
  }
  const int64_t V = cfg.vocab_size, row = cfg.lut_row_elems();
  entries.push_back({"model.moe_table.weight", opt.table_dtype, {V, row}});
  SafetensorsWriter writer(out.path("model.safetensors"), entries);
  for (const auto& e : entries) {
    if (e.name == "model.moe_table.weight") continue;
    const TensorView* t = w.tensors.find(e.name);
    writer.write(t->data, t->nbytes);
  }
  std::unique_ptr<LutRowSource> source =
      opt.rows ? opt.rows(cfg, w) : std::unique_ptr<LutRowSource>(new CpuLutRows(cfg, w));
  const int64_t block = source->block();
  std::vector<float> rows(size_t(block * row));
  std::vector<uint8_t> bytes(size_t(block * row) * dtype_size(opt.table_dtype));
  Progress bar(
      "reparameterizing " + std::to_string(cfg.num_layers) + "x" + std::to_string(cfg.num_experts) + " experts", V,
      "rows", opt.progress);
  for (int64_t r0 = 0; r0 < V; r0 += block) {
    throw_if_interrupted();
    int64_t n = std::min(block, V - r0);
    source->rows(r0, n, rows.data());
    f32_to_bytes(rows.data(), size_t(n * row), opt.table_dtype, bytes.data());
    writer.write(bytes.data(), size_t(n * row) * dtype_size(opt.table_dtype));
    bar.add(n);
  }
  writer.finish();
  bar.finish();

  out.finish();
}

const std::vector<std::string>& synth_presets() {
  static const std::vector<std::string> names = {"tiny",       "dense-160m",   "mole-160m-4e",  "mole-160m-16e",
                                                 "dense-410m", "mole-410m-4e", "mole-410m-16e", "mole-1b-4e"};
  return names;
}

nlohmann::json preset_config(const std::string& preset) {
  struct Shape {
    int layers, hidden, heads, kv_heads, ffn, experts, vocab, ctx;
  };
  Shape s{};
  if (preset == "tiny")
    s = {2, 64, 4, 2, 128, 4, 50304, 512};
  else if (preset == "dense-160m")
    s = {12, 768, 12, 12, 3072, 0, 50304, 2048};
  else if (preset == "mole-160m-4e")
    s = {12, 768, 12, 12, 3072, 4, 50304, 2048};
  else if (preset == "mole-160m-16e")
    s = {12, 768, 12, 12, 3072, 16, 50304, 2048};
  else if (preset == "dense-410m")
    s = {24, 1024, 16, 16, 4096, 0, 50304, 2048};
  else if (preset == "mole-410m-4e")
    s = {24, 1024, 16, 16, 4096, 4, 50304, 2048};
  else if (preset == "mole-410m-16e")
    s = {24, 1024, 16, 16, 4096, 16, 50304, 2048};
  else if (preset == "mole-1b-4e")
    s = {16, 2048, 8, 8, 8192, 4, 50304, 2048};
  else {
    std::string list;
    for (const auto& n : synth_presets()) list += (list.empty() ? "" : ", ") + n;
    throw Error("--preset " + preset + ": unknown preset (choose one of " + list + ")");
  }
  nlohmann::json j = {{"architectures", {"MoleForCausalLM"}},
                      {"model_type", "llama"},
                      {"vocab_size", s.vocab},
                      {"hidden_size", s.hidden},
                      {"intermediate_size", s.ffn},
                      {"num_hidden_layers", s.layers},
                      {"num_attention_heads", s.heads},
                      {"num_key_value_heads", s.kv_heads},
                      {"max_position_embeddings", s.ctx},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"rope_scaling", nullptr},
                      {"hidden_act", "gelu"},
                      {"tie_word_embeddings", false},
                      {"bos_token_id", 0},
                      {"eos_token_id", 0},
                      {"torch_dtype", "float32"}};
  if (s.experts > 0) j["num_experts"] = s.experts;
  return j;
}

void synth_checkpoint(const std::string& out_dir, const SynthOptions& opt) {
  nlohmann::json cj = preset_config(opt.preset);
  if (opt.form == Form::Dense) cj.erase("num_experts");
  cj.merge_patch(opt.overrides);
  static const char* kTorchDtype[] = {"float32", "float16", "bfloat16"};
  cj["torch_dtype"] = kTorchDtype[int(opt.dtype)];
  Config c = Config::from_json(cj, "synthetic config (--preset " + opt.preset + " with --set)");
  if (opt.form != Form::Dense && !c.is_mole())
    throw Error("--preset " + opt.preset + " is dense: use --form dense, or a mole-* preset");
  const fs::path tokenizer_dir = fs::path(data_dir()) / "gpt-neox-tokenizer";  // before writing anything
  PartialDir out(out_dir);

  // The small files first, then the weights' file, whose whole size the writer reserves (as convert does).
  write_json(out.path("config.json"), cj);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"})
    copy_file(tokenizer_dir / f, out.path(f));

  const int64_t V = c.vocab_size, D = c.hidden_size, F = c.intermediate_size, E = c.num_experts;
  const int64_t qd = int64_t(c.num_heads) * c.head_dim, kvd = int64_t(c.num_kv_heads) * c.head_dim;
  struct Spec {
    std::string name;
    std::vector<int64_t> shape;
    float scale, offset;  // value = offset + scale * N(0, 1)
  };
  std::vector<Spec> specs = {{"model.embed_tokens.weight", {V, D}, 1.0f, 0.0f}, {"model.norm.weight", {D}, 0.1f, 1.0f}};
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {V, D}, 1.0f / std::sqrt(float(D)), 0.0f});
  auto lin = [](int64_t fan_in) { return 1.0f / std::sqrt(float(fan_in)); };
  for (int l = 0; l < c.num_layers; l++) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    specs.push_back({p + "input_layernorm.weight", {D}, 0.1f, 1.0f});
    specs.push_back({p + "self_attn.q_proj.weight", {qd, D}, lin(D), 0.0f});
    specs.push_back({p + "self_attn.k_proj.weight", {kvd, D}, lin(D), 0.0f});
    specs.push_back({p + "self_attn.v_proj.weight", {kvd, D}, lin(D), 0.0f});
    specs.push_back({p + "self_attn.o_proj.weight", {D, qd}, lin(qd), 0.0f});
    specs.push_back({p + "post_attention_layernorm.weight", {D}, 0.1f, 1.0f});
    specs.push_back({p + "mlp.up_proj.weight", {F, D}, lin(D), 0.0f});
    specs.push_back({p + "mlp.down_proj.weight", {D, F}, lin(F), 0.0f});
    if (E > 0) specs.push_back({p + "router.weight", {E, D}, lin(D), 0.0f});
    if (opt.form == Form::Train) {
      specs.push_back({p + "expert_layernorm.weight", {D}, 0.1f, 1.0f});
      for (int e = 0; e < E; e++) {
        std::string ep = p + "experts." + std::to_string(e) + ".";
        specs.push_back({ep + "up_proj.weight", {F, D}, lin(D), 0.0f});
        specs.push_back({ep + "down_proj.weight", {D, F}, lin(F), 0.0f});
      }
    }
  }
  std::vector<SafetensorsWriter::Entry> entries;
  for (const Spec& s : specs) entries.push_back({s.name, opt.dtype, s.shape});
  const int64_t row = c.lut_row_elems();
  if (opt.form == Form::Infer) entries.push_back({"model.moe_table.weight", opt.table_dtype, {V, row}});
  SafetensorsWriter writer(out.path("model.safetensors"), entries);

  int64_t total = 0;
  for (const Spec& s : specs) total += s.shape.size() == 2 ? s.shape[0] * s.shape[1] : s.shape[0];
  if (opt.form == Form::Infer) total += V * row;
  Progress bar("writing " + opt.preset, total, "values", opt.progress);
  // Values are generated in blocks of rows, each block from its own counter-based stream, so the output depends on
  // the seed alone (not on the thread count).
  auto emit = [&](const std::string& name, int64_t rows, int64_t cols, DType dt, float scale, float offset) {
    const int64_t block = std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(1, cols));
    std::vector<float> vals;
    std::vector<uint8_t> bytes;
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      throw_if_interrupted();
      int64_t n = std::min(block, rows - r0);
      vals.resize(size_t(n * cols));
      parallel_for(n, [&](int64_t a, int64_t b) {
        for (int64_t r = a; r < b; r++) {
          Rng rng{hash_name(name, opt.seed) ^ (uint64_t(r0 + r) * 0xd1b54a32d192ed03ull)};
          for (int64_t i = 0; i < cols; i++) vals[size_t(r * cols + i)] = offset + scale * rng.normal();
        }
      });
      bytes.resize(vals.size() * dtype_size(dt));
      f32_to_bytes(vals.data(), vals.size(), dt, bytes.data());
      writer.write(bytes.data(), bytes.size());
      bar.add(n * cols);
    }
  };
  for (const Spec& s : specs) {
    int64_t rows = s.shape.size() == 2 ? s.shape[0] : 1, cols = s.shape.back();
    emit(s.name, rows, cols, opt.dtype, s.scale, s.offset);
  }
  if (opt.form == Form::Infer) emit("model.moe_table.weight", V, row, opt.table_dtype, 0.5f, 0.0f);
  writer.finish();
  bar.finish();
  out.finish();
}

}  // namespace mole
