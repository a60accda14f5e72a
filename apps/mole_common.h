// Shared pieces of the mole CLI: loading a model directory into what a run needs, parsing id lists, printing.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/backends.h"
#include "model/backend.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/lut.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace mole::app {

// Everything a run holds, in dependency order (the engine points into the others).
struct LoadedModel {
  std::string dir;
  Config cfg;
  Weights weights;
  std::optional<LutStore> lut;
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<Backend> backend;
  LutPlacement placement = LutPlacement::Host;  // --lut, with auto resolved
  std::unique_ptr<Engine> engine;
  double load_seconds = 0;
};

struct RunFlags {
  std::string model;
  BackendFlags bf;  // --backend, --device, --lut-read, --validate, ... (apps/backends.h)
  std::string lut = "auto";
  std::string lut_dtype = "f16";
  int ctx_size = 0;
  int batch = 1;
  int ubatch = 512;  // longest step; longer prompts are processed in chunks
  int threads = 0;
  bool quiet = false;
  bool profile = false;
};

std::string default_model_dir();
// Table rows computed on a backend of its own (a backend runs one graph), for convert and training-form loads.
class OwnedBackendLutRows final : public LutRowSource {
 public:
  OwnedBackendLutRows(const Config& cfg, const Weights& w, std::unique_ptr<Backend> backend);
  int64_t block() const override { return rows_->block(); }
  void rows(int64_t first, int64_t count, float* out) override { rows_->rows(first, count, out); }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LutRowSource> rows_;
};
// Loads config, weights (mmap), the table (computed for a training-form checkpoint), the tokenizer when the
// directory has one (required if need_tokenizer), the backend and, if make_engine, the engine.
std::unique_ptr<LoadedModel> load_model(const RunFlags& f, bool need_tokenizer, bool make_engine = true);
Tokenizer load_tokenizer_for(const std::string& model_dir);  // DIR/tokenizer.json
// The whole file, for a flag that names one (-f, --file, --text-file); errors name the flag and path.
std::string read_file_arg(const std::string& path, const std::string& flag);
// Writes PATH.partial, then renames it to PATH: a failed write leaves no half-written PATH. Errors name the flag.
void write_file_atomically(const std::string& path, const std::string& contents, const std::string& flag);
std::vector<int32_t> parse_ids(const std::string& s, const std::string& flag);
DType parse_dtype_flag(const std::string& s, const std::string& flag);
// Flag check: a finite number in [lo, hi] (CLI11's Range lets "nan" through); `note` (what -1 means, say) is added
// to the message. An integer flag's value is then converted by CLI11, which refuses fractions.
CLI::Validator number_in(double lo, double hi, const std::string& note = "");
// Adds the flags of RunFlags to a subcommand.
void add_run_flags(CLI::App& cmd, RunFlags& f);
// Prints a per-op table (time, share, bytes moved, achieved GB/s) aggregated by op kind, and the LUT copy time and
// how much of it the compute before the first LUT sum can hide.
void print_profile(const StepProfile& p, const std::string& backend);
// Prints logits rows as {"logits": [[...], ...]} with enough digits to round-trip float32.
void print_logits_json(const std::vector<std::vector<float>>& rows);

}  // namespace mole::app
