// The backend registry: a table of the backends this build has, one row each from its backend's public header
// (model/cpu_backend.h, vk-runtime/vk_backend.h, cuda-backend/cuda_backend.h), in the order --backend auto prefers
// them; `mole devices`, --backend, `mole parity` and the cross-backend tests read it. Also the backend flags every
// command that runs a model shares, and their environment defaults: the one place outside the Vulkan loader where
// mole reads the environment (README, "Environment").
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/backend.h"

namespace mole {

// The rows, visible ones first in auto's order, then hidden test rows. Tests may add rows.
std::vector<BackendEntry>& backend_registry();
// The row named `name`; throws mole::Error listing the names when there is none.
const BackendEntry& find_backend(const std::string& name);
// One line for the user (what --backend auto passed over, what --lut auto chose); print_notice is the commands' sink.
using BackendNotice = std::function<void(const std::string&)>;
// The backend `name` made with `opt`. Throws mole::Error for an unknown name, or the row's own error when it cannot
// be made here (not built, no device), naming --backend.
// "auto": the first visible row whose probe finds a GPU (a CPU implementation only with allow_cpu_device) and that
// starts, else the CPU reference. Where it passes over a GPU row this build has (unavailable here, or it failed to
// start: the next one is tried), `notice` gets one line naming each and why, and what auto took instead.
std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& opt,
                                      const BackendNotice& notice = {});
// "mole: LINE" on stderr, each distinct line once in a process (a command may make several backends).
void print_notice(const std::string& line);

// The flags that choose and configure a backend (--backend, --device, --lut-read, --validate, --pipeline-cache,
// --memory-limit, --allow-cpu-device, --tune), each with its environment default.
struct BackendFlags {
  std::string backend = "auto";
  int device = -1;
  std::string lut_read = "auto";
  std::string validate = "off";
  std::string pipeline_cache;
  double memory_limit_mib = 0;
  bool allow_cpu_device = false;
  std::string tune;
};
// `with_backend` false: all but --backend (a command with its own, e.g. `mole parity`'s repeatable one).
// Flag check: a finite number in [lo, hi] (CLI11's Range lets "nan" through); `note` (what -1 means, say) is added
// to the message. An integer flag's value is then converted by CLI11, which refuses fractions.
CLI::Validator number_in(double lo, double hi, const std::string& note = "");

void add_backend_flags(CLI::App& cmd, BackendFlags& f, bool with_backend = true);
// After a command-line error `message`: for each backend flag it names that is not on the command line (`args`) but
// set by its environment variable, one line on stderr saying the variable and its value: the user typed no flag at
// all (MOLE_DEVICE=abc gives "--device: ...").
void note_environment_defaults(const std::string& message, const std::vector<std::string>& args);
// The options the flags say, with the cache directory ($XDG_CACHE_HOME/mole, else ~/.cache/mole) filled in.
BackendOptions backend_options(const BackendFlags& f);
// Parses --tune's "key=value,key=value" (README lists the keys); throws mole::Error naming the bad key or value.
BackendTuning parse_tuning(const std::string& s);

}  // namespace mole
