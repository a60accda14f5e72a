// A progress line on stderr with count, rate and ETA. Redrawn in place at most 4 times a second on a terminal;
// elsewhere (logs, CI) a plain line every 10 seconds and one at the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mole {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit, bool enabled = true);
  void add(int64_t n);
  void finish();
  ~Progress();

 private:
  void draw(bool final);
  std::string label_, unit_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// A size for people: "512 B", "4.00 KiB", "196.50 MiB" (powers of 1024, two decimals from KiB on).
std::string human_bytes(double bytes);

}  // namespace mole

namespace mole {
// Ctrl-C (SIGINT), SIGTERM or SIGHUP during a long job (convert, synth, table computation, generation, bench, parity)
// sets a flag that the job polls, so it can remove its partial output and exit cleanly instead of leaving a file that
// looks complete, and stop within a step instead of running to its end. A second signal ends the process at once.
void install_interrupt_handler();
bool interrupted();
int interrupt_signal();  // the signal that interrupted (SIGINT, SIGTERM or SIGHUP); 0 if none
// Throws mole::Error("interrupted; <note>"), or "interrupted" with an empty note, once interrupted.
void throw_if_interrupted(const char* note = "partial output removed");
}  // namespace mole
