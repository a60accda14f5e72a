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
// Ctrl-C during a long job (convert, synth, table computation) sets a flag that the job polls, so it can remove
// its partial output and exit cleanly instead of leaving a file that looks complete.
void install_interrupt_handler();
bool interrupted();
void throw_if_interrupted();  // throws mole::Error("interrupted")
}  // namespace mole
