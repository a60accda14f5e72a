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
#include "model/session.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace mole::app {

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
// The load options the flags say: -m (default: the built-in model, or $MOLE_MODEL), --backend and its flags, --lut,
// --lut-dtype, context and step sizes, threads; the backend comes from the registry (apps/backends.h).
LoadOptions load_options(const RunFlags& f, bool need_tokenizer, bool make_engine = true);
// load_model(load_options(...)).
std::unique_ptr<LoadedModel> load_model(const RunFlags& f, bool need_tokenizer, bool make_engine = true);
// The whole file, for a flag that names one (-f, --file, --text-file); errors name the flag and path.
std::string read_file_arg(const std::string& path, const std::string& flag);
// Writes PATH.partial, then renames it to PATH: a failed write leaves no half-written PATH. Errors name the flag.
void write_file_atomically(const std::string& path, const std::string& contents, const std::string& flag);
// Throws Error "FLAG PATH: ..." unless a file could be written at `path` (an existing file that is writable, or a
// new name in a writable directory); touches nothing.
void check_writable(const std::string& path, const std::string& flag);
std::vector<int32_t> parse_ids(const std::string& s, const std::string& flag);
DType parse_dtype_flag(const std::string& s, const std::string& flag);
// Flag check: not the empty string (`-p ""`, `-o ""`), which would otherwise read as the flag not given; the
// message says to give `what`.
CLI::Validator non_empty(const std::string& what);
// Adds the flags of RunFlags to a subcommand.
void add_run_flags(CLI::App& cmd, RunFlags& f);
// Prints a per-op table (time, share, bytes moved, achieved GB/s) aggregated by op kind, and the LUT copy time and
// how much of it the compute before the first LUT sum can hide.
void print_profile(const StepProfile& p, const std::string& backend);
// {"logits": [[...], ...]}: %.9g each (exact for float32); a NaN or infinity as NaN, Infinity or -Infinity.
void print_logits_json(const std::vector<std::vector<float>>& rows);

}  // namespace mole::app
