// Backend parity, as a library: the op cases and whole-model cases that `mole parity` and the cross-backend tests
// run on any backend of the registry against the CPU reference (llama.cpp's test-backend-ops is the model).
//
// An op case builds a small StepGraph by hand on a ParityHarness, which makes the same buffers on the reference and
// on the backend under test, runs the same steps through the Backend interface and compares every named output by
// NMSE = sum((got - ref)^2) / sum(ref^2) with a bound per op: 0 for copies, 1e-12 for elementwise ops and short sums,
// 1e-10 for long sums (matmul, attention). A model case synthesizes a checkpoint (random weights in the published
// layout), runs prompts and greedy decoding on both backends and compares the logits by relative L2 error (bound
// 1e-3) and the greedy tokens where the reference's best token leads by more than 1e-3.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "model/backend.h"
#include "model/checkpoint_io.h"
#include "model/lut.h"

namespace mole {

constexpr double kParityExact = 0, kParityTight = 1e-12, kParityLongSum = 1e-10;  // NMSE bounds
constexpr double kParityModelRelL2 = 1e-3;                                        // whole-model logits

// n token ids drawn from [0, vocab) by a generator seeded with `seed`.
std::vector<int32_t> random_ids(int n, int vocab, uint32_t seed);
// Whether the top logit leads the second by more than 1e-3, so that any backend within the model bound must pick
// the same greedy token (closer calls are not compared).
bool clear_winner(const std::vector<float>& logits);

// One compared output (or one failure) of a case on one backend.
struct ParityResult {
  std::string op;     // "matmul", ...; "model" for model cases
  std::string label;  // what was compared: op(shape, dtype, variant)
  double error = 0;   // worst NMSE over the case's steps (model cases: worst relative L2)
  double bound = 0;
  bool ok = false;
  std::string note;  // why it failed besides the error bound (an exception, validation messages, greedy tokens)
};

// How many rows of an output a step compares: the step's tokens, its output rows, or the whole buffer (caches).
enum class ParityRows { Tokens, OutRows, All };

// The same buffers and steps on the CPU reference and on the backend under test (see the top of this file).
class ParityHarness {
 public:
  ParityHarness(std::unique_ptr<Backend> dut, std::string variant);
  ~ParityHarness();

  StepGraph graph;
  int vocab = 1;      // token ids are drawn from [0, vocab)
  int rope_half = 0;  // hd/2 of the graph's RoPE'd ops; 0: no RoPE inputs

  // A float32 buffer of `count` elements. range > 0: filled with uniform values in [-range, range] now, and again
  // before every step when per_step (step inputs, and destinations that ops update in place).
  BufferId act(size_t count, float range = 0, bool per_step = false);
  // A weight of the given shape in `dtype`, uniform in [-range, range] (rounded to the dtype on both sides alike).
  BufferId weight(std::vector<int64_t> shape, DType dtype, float range = 1);
  // A weight stacked from tensors of `rows` rows each (one width, one dtype) by upload_stacked(), as q/k/v are.
  BufferId stacked_weight(const std::vector<int64_t>& rows, int64_t width, DType dtype, float range = 1);
  // A table (V, row_elems) in `dtype` at `placement` on both backends, for steps of up to graph.max_tokens tokens.
  void lut(int64_t V, int64_t row_elems, DType dtype, LutPlacement placement);
  // Writes the same values into a buffer on both backends.
  void set(BufferId id, const std::vector<float>& v);
  // Compares `width` elements per row of buf after every step; `what` names the shape and dtype.
  void expect(BufferId buf, size_t width, ParityRows rows, double bound, const std::string& op,
              const std::string& what);
  // Compares columns [first, first + cols) of each of the `rows` rows of `stride` elements that make up buf (the whole
  // buffer, as ParityRows::All) after every step: part of a cache row (its keys, or its values).
  void expect_columns(BufferId buf, size_t rows, size_t stride, size_t first, size_t cols, double bound,
                      const std::string& op, const std::string& what);
  // Default inputs of a T-token step: random ids, slot 0, positions 0..T-1, one output row (row 0), RoPE angles of
  // random positions. Cases change what they need before step().
  StepInputs inputs(int T);
  // Runs one step on both backends and compares every expected output.
  void step(const StepInputs& in);

  Backend& dut() { return *dut_; }
  // One result per expected output (its worst step), plus one for validation messages if there were any.
  std::vector<ParityResult> results() const;

 private:
  struct Refill {
    BufferId buf;
    size_t count;
    float range;
  };
  struct Output {
    BufferId buf;
    size_t width;
    ParityRows rows;
    double bound;
    std::string op, what;
    double worst = 0;
    size_t stride = 0, first = 0, cols = 0;  // expect_columns(): width = rows * stride elements, these compared
  };
  BufferId same(BufferId a, BufferId b);
  std::vector<float> random(size_t n, float range);
  void fill(BufferId id, size_t count, float range);
  TensorView view(std::vector<int64_t> shape, DType dtype, float range);

  std::string variant_;
  std::mt19937 rng_{20250601};
  std::deque<std::vector<uint8_t>> bytes_;  // weight and table bytes: the CPU backend keeps views into them
  std::optional<LutStore> lut_;             // outlives both backends (declared before them)
  std::unique_ptr<Backend> ref_, dut_;
  std::vector<Refill> refills_;
  std::vector<Output> outputs_;
};

// One op case: `run` builds its graph on the harness and runs its steps. `variant` ("" for the backend's own
// choices) names what `configure` asks of the backend; `needs` are the keys a backend must honour for the variant to
// mean anything (BackendEntry::tuning_keys): a backend without them skips the case; `unless`: keys whose backends
// skip it (they run the variants that name them instead).
struct OpCase {
  std::string op;
  std::string variant;
  std::vector<std::string> needs;
  std::function<void(BackendOptions&)> configure;
  std::function<void(ParityHarness&)> run;
  std::vector<std::string> unless = {};
};
const std::vector<OpCase>& op_cases();
// Whether the backend honours every key the case needs.
bool op_case_applies(const OpCase& c, const BackendEntry& entry);
// Runs the case on a backend made by `entry` from `opt` (then configured by the case); an exception is a failed
// result naming it.
std::vector<ParityResult> run_op_case(const OpCase& c, const BackendEntry& entry, BackendOptions opt);

// A synthesized model: its form, config overrides, weight dtype and prompt length.
struct ModelCase {
  std::string name;
  Form form;
  nlohmann::json set;
  DType dtype;
  int tokens;
};
const std::vector<ModelCase>& model_cases();
// Synthesizes the case's checkpoint in `dir` (a fresh folder) and compares the backend with the CPU reference on it
// (compare_model()).
std::vector<ParityResult> run_model_case(const ModelCase& c, const std::string& dir, const BackendEntry& entry,
                                         const BackendOptions& opt);
// A checkpoint directory on the backend against the CPU reference, for every table placement it has (the whole
// table on the device, in host memory, and for an inference-form checkpoint read from the file): the logits of every
// position of a `tokens`-token prompt, for a MoLE model the router's weights of every position (RouterProbs), 16
// decode steps of one sequence (their logits, and on a second engine their greedy ids), then 16 steps of batched
// greedy decoding of 3 sequences, the backend's greedy ids (computed on the device) against the reference's.
std::vector<ParityResult> compare_model(const std::string& dir, int tokens, const BackendEntry& entry,
                                        const BackendOptions& opt, const std::string& name);

}  // namespace mole
