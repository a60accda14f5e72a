// mole-studio's worker: everything that touches a model runs here, on one thread of its own, so the window stays
// responsive while a model loads or generates. The UI thread sends requests (load, generate, compare, stop) and
// reads a copy of the state (snapshot()) once per frame; the worker fills it in as it goes, under a mutex. Every
// failure a user can cause (a bad model folder, a device that cannot be had, out of memory) becomes an error
// message in the state, never an exception out of the worker.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "apps/mole_common.h"
#include "model/session.h"

namespace mole::studio {

using app::RunFlags;

// A backend of the registry as the UI offers it.
struct BackendChoice {
  std::string name;
  bool available = false;
  std::string detail;  // the device it would use, or why it cannot run here
};

// The loaded model and what its backend reports.
struct ModelState {
  bool loading = false, loaded = false;
  std::string error;  // the last load's failure ("" when it worked)
  std::string dir, backend, device, lut, lut_read, lut_note;
  Config cfg;
  ModelSummary summary;
  int context = 0;
  double load_seconds = 0;
  uint64_t device_memory = 0, device_memory_used = 0;
  bool runs_on_cpu = false;
};

// One generated token as the text view shows it.
struct TokenView {
  int32_t id = 0;
  std::string piece;  // its text (what TokenEvent::piece released)
  std::string text;   // the token alone, decoded (for the tooltip)
  float prob = 0;
  std::vector<std::pair<std::string, float>> top;  // the 5 most likely tokens, decoded, with their probabilities
};

// The current (or last) generation and its live measurements.
struct GenState {
  bool running = false;
  std::string prompt, tail, stop_reason, error;
  std::vector<TokenView> tokens;
  std::vector<float> tokens_per_s;  // per decode step (1 / its wall time)
  StepTimes last;                   // the last step's times
  StepTimes total;                  // summed over the decode steps (index > 0)
  int decode_steps = 0;
  std::vector<float> lut_mb_per_s;  // table traffic per step, MB/s
  uint64_t lut_rows = 0, lut_bytes = 0;
  std::vector<float> router;  // (L, E) of the last token's step
  int router_layers = 0, router_experts = 0;
  std::string router_token;  // the token that step chose, and the input it weighed
  std::string router_input;
  int router_index = -1;
  double prefill_tokens_per_s = 0, decode_tokens_per_s = 0;
};

struct HistoryEntry {
  std::string prompt, text, backend, stop_reason;
  int tokens = 0;
  double tokens_per_s = 0;
};

// Two backends or placements on the same prompt, in lockstep: both read the same tokens (the first side's greedy
// choices), so their logits are comparable at every step.
struct CompareSide {
  std::string label;  // backend, device and placement
  std::string text;   // the greedy continuation this side chose
  double tokens_per_s = 0;
};
struct CompareState {
  bool running = false, done = false;
  std::string error;
  CompareSide a, b;
  int steps = 0, agree = 0, first_difference = -1;
  double max_logit_diff = 0;  // the largest |logit_a - logit_b| over every step and vocabulary entry
};

struct Snapshot {
  std::vector<BackendChoice> backends;
  ModelState model;
  GenState gen;
  std::vector<HistoryEntry> history;
  CompareState compare;
  uint64_t host_memory = 0;  // resident set of the process, bytes
};

// What the UI asks for. A model is named the way the CLI names it (RunFlags: -m, --backend, --device, --lut).
struct GenerateRequest {
  std::string prompt;
  GenerateOptions options;  // sampling and length; eos ids, top_k and the router's weights are filled in
  bool ignore_eos = false;
};

class Worker {
 public:
  Worker();
  ~Worker();  // stops the current request and joins the thread
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void probe_backends();
  void load(const RunFlags& flags);
  void generate(const GenerateRequest& r);
  // Runs `steps` greedy steps of `prompt` on the loaded model and on a second one loaded from `other`.
  void compare(const std::string& prompt, int steps, const RunFlags& other);
  void stop();  // the current request stops within one step
  void clear_history();
  Snapshot snapshot() const;
  bool busy() const;  // a request is running or queued

 private:
  void post(std::function<void(std::stop_token)> job);
  void run();
  void do_load(const RunFlags& flags);
  void do_generate(const GenerateRequest& r, std::stop_token stop);
  void do_compare(const std::string& prompt, int steps, const RunFlags& other, std::stop_token stop);
  void refresh_backend_info();  // under mu_

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void(std::stop_token)>> jobs_;
  bool running_job_ = false, quit_ = false;
  std::stop_source current_;
  Snapshot state_;
  std::unique_ptr<Session> session_;  // used on the worker thread only
  std::jthread thread_;               // last: started after everything above exists
};

}  // namespace mole::studio
