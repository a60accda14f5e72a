// A generation session: a model loaded from a plain options struct (no command-line library here), then text
// generation that reports one event per generated token (its id and text, the step's time per phase, the table's
// traffic, optionally the router's weights and the most likely tokens) and stops early when asked. `mole run` and
// mole-studio both use it; so do the tests, through load_model() (a model without a backend: config, weights, table).
//
// Legend: L layers, E experts, V vocabulary.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "model/backend.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/lut.h"
#include "model/sampling.h"
#include "model/tokenizer.h"
#include "model/weights.h"

namespace mole {

// Makes the backend `name` (a registry name, or "auto") with `opt`, or throws mole::Error naming --backend. The
// registry is the caller's (apps/backends.h's make_backend() is the usual factory).
using BackendFactory = std::function<std::unique_ptr<Backend>(const std::string& name, const BackendOptions& opt)>;

// What to load and how to run it. Errors name the file and the flag a user would change (-m, --lut, ...).
struct LoadOptions {
  std::string model_dir;            // a checkpoint directory (config.json, *.safetensors, tokenizer.json)
  std::string backend = "cpu";      // handed to make_backend
  BackendOptions backend_options;   // device, read mode, validation, caches, tuning
  BackendFactory make_backend;      // null: no backend and no engine (config, weights, table and tokenizer only)
  std::optional<LutPlacement> lut;  // where the table lives; nullopt: the backend's choice (--lut auto)
  DType lut_dtype = DType::F16;     // precision of a table computed at load (training-form checkpoint)
  bool need_tokenizer = false;      // a missing tokenizer.json is an error (else it is loaded when present)
  bool make_engine = true;          // false: the backend but no engine (mole bench makes its own)
  EngineOptions engine;             // batch, context, step size, router weights; .lut comes from `lut`
  int threads = 0;                  // CPU threads (model/parallel.h); 0: leave as they are
  bool progress = false;            // progress bar on stderr while a table is computed
  bool profile = false;             // per-op profiling from the start (the session's per-phase times need it)
  // One-line notices for the user (what --lut auto chose and why); none: silent.
  std::function<void(const std::string&)> notice;
  // The engine's cancel check (Engine::set_cancel): asked between the pieces and ops of a long step, so a flag a
  // signal handler sets (Ctrl-C) ends it within an op; none: never (a Session still asks its stop token).
  std::function<bool()> cancel;
  uint64_t host_memory_available = 0;  // bytes of host memory free for the table; 0: MemAvailable (/proc/meminfo)
};

// Everything a run holds, in dependency order (the engine points into the others, so it is never moved).
struct LoadedModel {
  std::string dir;
  Config cfg;
  Weights weights;
  std::optional<LutStore> lut;  // (V, L*E*D); none for a dense model
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<Backend> backend;
  LutPlacement placement = LutPlacement::Host;  // the resolved --lut
  std::unique_ptr<Engine> engine;
  bool profiling = false;  // the backend profiles every step
  double load_seconds = 0;

  const LutStore* table() const { return lut ? &*lut : nullptr; }
};

// Loads config, weights (mmap), the table (computed for a training-form checkpoint: on a GPU backend, on a backend
// of its own, freed before the run's is made), the tokenizer, the backend and the engine, as `o` says.
std::unique_ptr<LoadedModel> load_model(const LoadOptions& o);

// --lut auto for a table in a file: the backend's preferred placement, except that a table bigger than half of the
// host memory available (`available_bytes`; 0: unknown, no bound) stays on disk instead of being copied or pinned
// in memory (a GPU backend's host placement), with `note` (when given) saying so; else `preferred`.
LutPlacement auto_lut_placement(LutPlacement preferred, uint64_t table_bytes, uint64_t available_bytes,
                                std::string* note);
// /proc/meminfo's MemAvailable in bytes: what the host can give without swapping; 0 where it cannot be read.
uint64_t host_memory_available();

// DIR/tokenizer.json; a missing one is an error saying what to do.
Tokenizer load_tokenizer_for(const std::string& model_dir);

// Shapes and sizes of a checkpoint, for `mole info` and mole-studio's model panel.
struct ModelSummary {
  std::string form;                         // "train", "infer" or "dense"
  int64_t parameters_total = 0;             // every stored tensor's values
  int64_t parameters_dense_part = 0;        // attention, MLP, embeddings, norms, routers: what each token runs
  int64_t parameters_training_experts = 0;  // a training-form checkpoint's experts (turned into the table)
  int64_t table_parameters = 0;             // the stored table's values (inference form)
  int64_t lut_elements = 0;                 // V * L * E * D, stored or to be computed
  size_t lut_dtype_size = 2;                // bytes per table value (a computed table: f16 unless told)
  std::string lut_dtype;                    // "F16", ... or "F16 (computed at load)"
  int64_t lut_bytes = 0;                    // the whole table
  int64_t lut_bytes_per_token = 0;          // one row: what a token reads from it
  std::vector<std::pair<std::string, int64_t>> dtypes;  // values per stored dtype, by name
  uint64_t file_bytes = 0;
};
ModelSummary summarize(const Config& c, const Weights& w);

// Holds back the tail of generated text that could still become a stop string, so that a stop string is never
// shown (llama.cpp's behaviour).
class StopFilter {
 public:
  explicit StopFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Returns the text safe to show now; sets `stopped` once a stop string appears (the text before it is returned).
  std::string push(const std::string& piece, bool& stopped);
  // What is still held back, released (at the end of a generation that no stop string ended).
  std::string flush() { return std::exchange(held_, ""); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

struct GenerateOptions {
  int max_new_tokens = 128;  // -n; < 0: until EOS or the context is full
  SamplingParams sampling;
  std::vector<int32_t> eos_ids;           // stop after any of these (never handed on, not in the text)
  std::vector<std::string> stop_strings;  // stop once the text contains one (needs the tokenizer); not shown
  int top_k = 0;  // > 0: each event carries its token's probability and the top_k most likely tokens (the step
                  //   then reads back the logits even when decoding is greedy)
  // Called once the prompt has run, before the first token is handed on: a caller prints the prompt here, so a run
  // that fails on its prompt (too long, an id the model lacks, a device error) has printed nothing.
  std::function<void()> on_prefilled;
};

// Time of one step, split by phase. Device times come from the backend's profile (LoadOptions::profile; zero
// without it) and are the ops' own times: on a GPU, ops that overlap share their time out in recording order.
struct StepTimes {
  double wall = 0;       // the step as the caller waited for it: inputs, the step, read-back, sampling
  double attention = 0;  // the q/k/v product, attention (with the KV store), o
  double mlp = 0;        // up (with GELU) and down
  double lut = 0;        // the router and the table's weighted sum (RouterLut, RouterProbs)
  double other = 0;      // embedding, output rows, lm_head, argmax
  double lut_copy = 0;   // the table's rows moved to the device (a transfer beside compute; 0 where none moves)
  double lut_copy_hidden = 0, lut_copy_exposed = 0;  // of that, what the compute before the first LUT sum covers
  double sampling = 0;                               // host time choosing the token from the logits
};

struct TokenEvent {
  int index = 0;   // 0 for the first generated token
  int32_t id = 0;  // the token
  // The text this token adds (UTF-8 held back until a character is whole, and anything that may become a stop
  // string held back until it cannot); "" without a tokenizer. The concatenated pieces, then GenerateResult::tail,
  // are the generated text.
  std::string piece;
  // The step that chose this token: the position of its last input token (the prompt's last for index 0, else the
  // previous generated token), that input token, and how many tokens the step ran.
  int position = 0;
  int32_t input_id = 0;
  int step_tokens = 0;
  StepTimes times;
  uint64_t lut_rows = 0, lut_bytes = 0;  // the table's rows and bytes the step moved to where router_lut reads them
  // (L, E) layer-major: the router's weights at that input position, the weights its table rows were summed with.
  // Only where the engine computes them (EngineOptions::router_probs); else empty.
  std::vector<float> router;
  float prob = 0;                              // with top_k: this token's probability, softmax(logits)
  std::vector<std::pair<int32_t, float>> top;  // with top_k: the top_k most likely tokens, most likely first
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (EOS excluded)
  std::string text;             // the generated text (without the prompt; stop string and what follows excluded)
  std::string tail;             // the part of `text` released only at the end, after the last event's piece
  std::string stop_reason;      // "eos", "stop", "length", "context", "cancelled"
  int prompt_tokens = 0;
  bool prefilled = false;  // the prompt ran to its end (not when it was cancelled part-way)
  double prefill_seconds = 0, decode_seconds = 0;
  double prefill_tokens_per_s() const { return prefilled && prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tokens_per_s() const {
    return decode_seconds > 0 && tokens.size() > 1 ? double(tokens.size() - 1) / decode_seconds : 0;
  }
};

// A loaded model with an engine, generating on sequence slot 0 (reset at the start of each generate()).
class Session {
 public:
  // `m` must have an engine (LoadOptions::make_engine and a backend factory).
  explicit Session(std::unique_ptr<LoadedModel> m);
  explicit Session(const LoadOptions& o) : Session(load_model(o)) {}

  LoadedModel& model() { return *m_; }
  const LoadedModel& model() const { return *m_; }

  // The ids of `text` through the model's tokenizer, each checked against the model's vocabulary. `source` names
  // the text in errors ("-p", "-f FILE", "the prompt").
  std::vector<int32_t> encode(const std::string& text, const std::string& source) const;

  // Prefills `prompt`, then samples until EOS, a stop string, max_new_tokens, a full context, or `stop` (checked
  // before each step and each piece of a long prompt, and on the CPU between a step's ops: a request is honoured
  // within one op, its result's stop_reason "cancelled", a step it cut short void). `on_token` runs
  // on the caller's thread for each token as soon as it is chosen. Throws mole::Error for a prompt the context
  // cannot hold, a stop string without a tokenizer, or what the backend throws.
  GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                          const std::function<void(const TokenEvent&)>& on_token, std::stop_token stop = {});

 private:
  std::unique_ptr<LoadedModel> m_;
};

}  // namespace mole
