// Progress line implementation.
#include "model/progress.h"

#include <unistd.h>

#include <cstdio>

namespace mole {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, u++;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", b, units[u]);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit, bool enabled)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), enabled_(enabled), tty_(isatty(2)) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_ && enabled_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

void Progress::add(int64_t n) {
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.25 : 10.0)) draw(false);
}

void Progress::finish() {
  if (!finished_) draw(true);
  finished_ = true;
}

void Progress::draw(bool final) {
  if (!enabled_) return;
  last_draw_ = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(last_draw_ - start_).count();
  double rate = elapsed > 0 ? double(done_) / elapsed : 0.0;
  double eta = rate > 0 ? double(total_ - done_) / rate : 0.0;
  int pct = total_ > 0 ? int(100.0 * double(done_) / double(total_)) : 100;
  const int width = 30;
  int filled = total_ > 0 ? int(double(width) * double(done_) / double(total_)) : width;
  std::string bar(size_t(filled), '#');
  bar.resize(width, '.');
  if (final) {
    std::fprintf(stderr, "%s%s [%s] %lld/%lld %s in %.1fs (%.0f %s/s)\n", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
                 (long long)done_, (long long)total_, unit_.c_str(), elapsed, rate, unit_.c_str());
  } else {
    std::fprintf(stderr, "%s%s [%s] %3d%% %lld/%lld %s, %.0f %s/s, ETA %.0fs%s", tty_ ? "\r" : "", label_.c_str(),
                 bar.c_str(), pct, (long long)done_, (long long)total_, unit_.c_str(), rate, unit_.c_str(), eta,
                 tty_ ? "   " : "\n");
  }
  std::fflush(stderr);
}

}  // namespace mole

#include <atomic>
#include <csignal>

#include "model/error.h"

namespace mole {
namespace {
std::atomic<int> g_signal{0};  // lock-free: written in a signal handler
// The first signal sets the flag; a second one, for a job that has not stopped yet, ends the process at once.
extern "C" void on_sigint(int sig) {
  if (g_signal.exchange(sig) != 0) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}
}  // namespace

void install_interrupt_handler() {
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  // SIGHUP too (a closed terminal or ssh session), unless the process was started ignoring it (nohup).
  struct sigaction old {};
  if (sigaction(SIGHUP, nullptr, &old) != 0 || old.sa_handler != SIG_IGN) std::signal(SIGHUP, on_sigint);
}
bool interrupted() {
  return g_signal != 0;
}
int interrupt_signal() {
  return g_signal;
}
void throw_if_interrupted(const char* note) {
  if (interrupted()) throw Error(*note ? std::string("interrupted; ") + note : std::string("interrupted"));
}
}  // namespace mole
