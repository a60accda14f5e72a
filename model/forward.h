// Engine: the MoLE/dense forward pass, written once as a StepGraph, driving any Backend. It owns the run state
// (KV caches, activations on the backend; sequence lengths here) and turns token chunks into step inputs.
#pragma once

#include <functional>
#include <vector>

#include "model/backend.h"
#include "model/config.h"
#include "model/lut.h"
#include "model/weights.h"

namespace mole {

// The context a model runs with unless told otherwise: max_position_embeddings, times the RoPE scaling factor when
// config.json sets one (linear or dynamic NTK scaling exist to stretch the trained context).
int default_context(const Config& c);

// The most sequence slots an engine holds.
constexpr int kMaxBatch = 4096;
// The most tokens one step holds (--ubatch-size): the GPU kernels' grids hold a step's rows within their 65535 blocks
// a dimension (CUDA's matrix products: 8 rows a block), and nothing gains from longer steps.
constexpr int kMaxStepTokens = 1 << 16;

struct EngineOptions {
  int max_batch = 1;          // B: sequence slots (independent KV caches), 1 to kMaxBatch
  int max_context = 0;        // S: positions per sequence, at most kMaxContext; 0 = default_context()
  int max_step_tokens = 512;  // longest step (1 to kMaxStepTokens); longer prompts run in chunks of this many tokens
  LutPlacement lut = LutPlacement::Host;
  bool router_probs = false;  // a MoLE model's graph also computes the router's weights of every returned row
                              //   (RouterProbs ops, model/backend.h), for router_probs(); off: not computed at all
};

class Engine {
 public:
  // `lut` may be null for a dense model. Everything passed in must outlive the engine.
  Engine(const Config& cfg, const Weights& w, const LutStore* lut, Backend& backend, EngineOptions opt);

  struct Chunk {
    int slot = 0;                 // which sequence
    std::vector<int32_t> tokens;  // appended after what the sequence already holds
  };
  // Appends each chunk's tokens to its sequence and returns float32 logits rows of V values: for each chunk in
  // order, its last token's row, or every token's row if all_logits. Throws mole::Error for a token id outside the
  // vocabulary, a slot outside [0, max_batch) or a sequence that would pass the context length. A step the backend
  // fails to run (its error is rethrown) leaves every sequence as it was before the step, as a cancelled one does.
  std::vector<std::vector<float>> step(const std::vector<Chunk>& chunks, bool all_logits = false);
  // The same step, returning for each chunk only its last token's greedy next id (the logits' argmax, the lowest id
  // on ties, as mole::argmax), computed on the backend: a GPU backend then brings back R ids, not R*V logits. Logits
  // that hold a NaN have no greedy id: a mole::Error (nan_logits_error), as Sampler::sample gives.
  std::vector<int32_t> step_argmax(const std::vector<Chunk>& chunks);

  // With EngineOptions::router_probs, the router's weights of the rows the last step() or step_argmax() returned,
  // one row each, in the same order: (L, E) values per row, layer-major, each layer's E weights summing to 1.
  // Empty otherwise (and for a dense model).
  const std::vector<std::vector<float>>& router_probs() const { return router_rows_; }

  void reset(int slot);  // forgets a sequence (its cache rows are simply overwritten later)
  int length(int slot) const { return lengths_.at(size_t(slot)); }
  int max_context() const { return ctx_; }
  const StepGraph& graph() const { return graph_; }
  // Host time spent preparing and launching the steps so far (inputs, RoPE angles, the table's rows, the backend's
  // run_step()), not waiting for their results. For a GPU backend, time a decode step's GPU may sit idle (the next
  // step's input is the last one's output): `mole bench` reports it per token.
  double launch_seconds() const { return launch_seconds_; }

  // Asked before each piece of a step (a prompt longer than max_step_tokens runs in pieces) and, by the CPU
  // backend, between a piece's ops: true ends the step with StepCancelled and leaves every sequence as it was
  // before the step. Empty (the default): never.
  void set_cancel(std::function<bool()> cancelled) { cancel_ = std::move(cancelled); }
  const std::function<bool()>& cancel() const { return cancel_; }

 private:
  // Rows of logits, or with ids_only rows of one float: the greedy id.
  std::vector<std::vector<float>> step_rows(const std::vector<Chunk>& chunks, bool all_logits, bool ids_only);
  // Also appends the step's router rows to `router` when the graph computes them.
  std::vector<std::vector<float>> run_one(const std::vector<Chunk>& chunks, bool all_logits, bool ids_only,
                                          std::vector<std::vector<float>>& router);
  void rope_for(const std::vector<Chunk>& chunks, StepInputs& in) const;

  const Config& cfg_;
  Backend& backend_;
  EngineOptions opt_;
  int ctx_ = 0;
  StepGraph graph_;
  std::vector<int> lengths_;                     // B: tokens held per slot
  std::vector<std::vector<float>> router_rows_;  // (rows, L*E) of the last step, with EngineOptions::router_probs
  double launch_seconds_ = 0;                    // launch_seconds()
  std::function<bool()> cancel_;                 // set_cancel()
};

}  // namespace mole
