// mole-studio's window: the panels, drawn with Dear ImGui once per frame from the worker's snapshot. What the user
// types and picks lives here (the UI thread's own state); what they ask for goes to the worker as a request.
#pragma once

#include <string>

#include "apps/studio/worker.h"

struct ImVec2;

namespace mole::studio {

// A rectangle of the window, in pixels from its top-left corner.
struct Rect {
  float x = 0, y = 0, w = 0, h = 0;
};

class Ui {
 public:
  // `flags`: the model, backend and placement to start with (the command line's); `prompt`, `max_tokens` and
  // `temperature` the initial prompt and sampling.
  Ui(Worker& worker, const RunFlags& flags);

  // Draws every panel over the whole display (width x height pixels).
  void draw(float width, float height);

  // What headless mode and the tests need.
  void set_prompt(const std::string& p) { prompt_ = p; }
  GenerateRequest request() const;  // the prompt and the sampling controls, as Generate sends them
  SamplingParams& sampling() { return sampling_; }
  int& max_tokens() { return max_tokens_; }
  RunFlags& compare_flags() { return compare_flags_; }
  int& compare_steps() { return compare_steps_; }
  const Snapshot& shown() const { return snap_; }   // the snapshot the last frame drew
  Rect heat_map_rect() const { return heat_map_; }  // where the last frame drew the router heat map
  Rect error_rect() const { return error_; }        // where it drew the model's load error (w = 0: none)

 private:
  void model_panel();
  void info_panel();
  void sampling_panel();
  void prompt_panel();
  void output_panel();
  void history_panel();
  void speed_panel();
  void phase_panel();
  void lut_panel();
  void memory_panel();
  void heat_map_panel();
  void compare_panel();

  Worker& worker_;
  Snapshot snap_;
  RunFlags flags_;          // the model, backend and placement Load uses
  RunFlags compare_flags_;  // the second side of Compare (its -m is the loaded model's)
  std::string model_dir_;   // the folder field
  std::string prompt_ = "In the beginning God created";
  SamplingParams sampling_;
  int max_tokens_ = 64;
  int compare_steps_ = 32;
  bool ignore_eos_ = false;
  Rect heat_map_, error_;
};

}  // namespace mole::studio
