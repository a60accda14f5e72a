// The backend registry and the backend flags (see backends.h).
#include "apps/backends.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "model/cpu_backend.h"
#include "model/error.h"

#ifdef MOLE_HAVE_VULKAN
#include "vk-runtime/vk_backend.h"
#endif
#ifdef MOLE_HAVE_CUDA
#include "cuda-backend/cuda_backend.h"
#endif

namespace mole {
namespace {

// The row of a backend this build does not have: its probe says why, its factory refuses.
[[maybe_unused]] BackendEntry not_built(const std::string& name, const std::string& why) {
  return {
      name,
      [why](const BackendOptions&) {
        return BackendProbe{false, why, "", false};
      },
      [name, why](const BackendOptions&) -> std::unique_ptr<Backend> { throw Error("--backend " + name + ": " + why); },
      {},
      false,
      /*built=*/false};
}

}  // namespace

std::vector<BackendEntry>& backend_registry() {
  static std::vector<BackendEntry> rows = {
#ifdef MOLE_HAVE_CUDA
      cuda::cuda_backend_entry(),
#else
      not_built("cuda",
                "this build has no CUDA backend (no CUDA toolkit was found when it was configured; install "
                "one, e.g. under /usr/local/cuda, and build again)"),
#endif
#ifdef MOLE_HAVE_VULKAN
      vulkan::vulkan_backend_entry(),
#else
      not_built("vulkan",
                "this build has no Vulkan backend (Vulkan headers or glslangValidator were missing when it "
                "was configured; run scripts/setup.sh)"),
#endif
      cpu_backend_entry(),
      cpu_perturbed_backend_entry(),
  };
  return rows;
}

const BackendEntry& find_backend(const std::string& name) {
  std::string names;
  for (const BackendEntry& e : backend_registry()) {
    if (e.name == name) return e;
    if (!e.hidden) names += e.name + ", ";
  }
  throw Error("--backend " + name + ": unknown backend (choose auto, " + names.substr(0, names.size() - 2) + ")");
}

std::unique_ptr<Backend> make_backend(const std::string& name, const BackendOptions& opt, const BackendNotice& notice) {
  if (name != "auto") return find_backend(name).make(opt);
  std::string passed;  // "NAME: why; NAME: why"
  auto pass = [&](const std::string& why) { passed += (passed.empty() ? "" : "; ") + why; };
  for (const BackendEntry& e : backend_registry()) {
    if (e.hidden || e.name == "cpu") continue;
    const BackendProbe p = e.probe(opt);
    if (p.available && p.gpu) {
      try {
        std::unique_ptr<Backend> b = e.make(opt);
        if (!passed.empty() && notice) notice("--backend auto: " + passed + "; using " + e.name);
        return b;
      } catch (const Error& err) {
        pass(e.name + " did not start: " + err.what());
      }
    } else if (e.built) {
      pass(e.name + ": " + (p.available ? "its only device is a CPU implementation (--allow-cpu-device)" : p.detail));
    }
  }
  if (notice) notice("--backend auto: no GPU backend runs here (" + passed + "); using the CPU reference");
  return find_backend("cpu").make(opt);
}

void print_notice(const std::string& line) {
  static std::mutex mu;
  static std::set<std::string> printed;
  std::lock_guard<std::mutex> lock(mu);
  if (printed.insert(line).second) std::fprintf(stderr, "mole: %s\n", line.c_str());
}

namespace {

// The flag's value as a finite number, or an error message.
std::optional<double> finite_number(const std::string& s, std::string& error) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) {
    error = "'" + s + "' is not a number";
    return std::nullopt;
  }
  if (!std::isfinite(v) || errno == ERANGE) {
    error = "'" + s + "' is not a finite number";
    return std::nullopt;
  }
  return v;
}

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

}  // namespace

CLI::Validator number_in(double lo, double hi, const std::string& note) {
  const std::string range = "[" + number_text(lo) + ", " + number_text(hi) + "]";
  return CLI::Validator(
      [lo, hi, range, note](std::string& s) -> std::string {
        std::string error;
        auto v = finite_number(s, error);
        if (!v) return error;
        if (*v >= lo && *v <= hi) return "";
        return s + " is outside " + range + (note.empty() ? "" : " (" + note + ")");
      },
      "in " + range);
}

void note_environment_defaults(const std::string& message, const std::vector<std::string>& args) {
  static const std::pair<const char*, const char*> flags[] = {{"--device", "MOLE_DEVICE"},
                                                              {"--lut-read", "MOLE_LUT_READ"},
                                                              {"--validate", "MOLE_VALIDATE"},
                                                              {"--pipeline-cache", "MOLE_PIPELINE_CACHE"},
                                                              {"--memory-limit", "MOLE_MEMORY_LIMIT_MB"},
                                                              {"--allow-cpu-device", "MOLE_ALLOW_CPU_DEVICE"},
                                                              {"--tune", "MOLE_TUNE"}};
  for (const auto& [flag, env] : flags) {
    const char* value = std::getenv(env);
    const std::string prefix = std::string(flag) + "=";
    const bool typed = std::any_of(args.begin(), args.end(),
                                   [&](const std::string& a) { return a == flag || a.rfind(prefix, 0) == 0; });
    if (value && !typed && message.find(flag) != std::string::npos)
      std::fprintf(stderr, "mole: note: %s=%s in the environment gives %s its value\n", env, value, flag);
  }
}

void add_backend_flags(CLI::App& cmd, BackendFlags& f, bool with_backend) {
  if (with_backend)
    cmd.add_option("--backend", f.backend, "Compute backend: auto, cuda, vulkan or cpu (see `mole devices`)")
        ->capture_default_str();
  cmd.add_option("--device", f.device, "GPU index from `mole devices` (default: the best)")
      ->envname("MOLE_DEVICE")
      ->check(number_in(-1, 1 << 20, "-1 = the best"));
  cmd.add_option("--lut-read", f.lut_read,
                 "How a GPU reads the table's rows: copy (to the device beside the first ops, then read), direct "
                 "(in place, over the bus) or auto (what `mole bench --record` measured, else the device's rule)")
      ->envname("MOLE_LUT_READ")
      ->check(CLI::IsMember({"auto", "copy", "direct"}))
      ->capture_default_str();
  cmd.add_flag("--validate{on}", f.validate,
               "Run under the Khronos validation layer (Vulkan); --validate=sync adds synchronization validation")
      ->envname("MOLE_VALIDATE")
      ->check(CLI::IsMember({"off", "on", "sync", "1", "0"}));
  cmd.add_option("--pipeline-cache", f.pipeline_cache,
                 "Vulkan pipeline cache file, or off (default: in ~/.cache/mole, per device)")
      ->envname("MOLE_PIPELINE_CACHE");
  cmd.add_option("--memory-limit", f.memory_limit_mib,
                 "Use at most this many MiB of GPU memory (Vulkan, CUDA; try what fits)")
      ->envname("MOLE_MEMORY_LIMIT_MB")
      ->check(number_in(1.0 / 1024, 1e12));
  cmd.add_flag("--allow-cpu-device", f.allow_cpu_device,
               "Let --backend auto pick a CPU implementation of a GPU API (e.g. lavapipe)")
      ->envname("MOLE_ALLOW_CPU_DEVICE");
  cmd.add_option("--tune", f.tune,
                 "Kernel choices, key=value,...: subgroups=0|1, tiled-min-rows=N, attention-splits=0..32, "
                 "attention-store=auto|pass, lut-chunk-bytes=N, lut-gather=auto|thread|inline, lut-import=auto|off, "
                 "lut-copy=auto|dma|kernel, matvec=auto|warp|staged, matvec-loads=1|4|8, pdl=off|on, "
                 "persistent=off|on|no-prefetch, host-wait=auto|spin|block, chain=off|on (README)")
      ->envname("MOLE_TUNE")
      ->check(CLI::Validator(
          [](std::string& s) {
            try {
              parse_tuning(s);
            } catch (const Error& e) {
              return std::string(e.what());
            }
            return std::string();
          },
          "KEY=VALUE,..."));
}

BackendOptions backend_options(const BackendFlags& f) {
  BackendOptions o;
  o.device = f.device;
  o.lut_read = parse_lut_read(f.lut_read).value_or(LutRead::Auto);
  o.validation = f.validate == "sync"                      ? BackendOptions::Validation::Sync
                 : f.validate == "on" || f.validate == "1" ? BackendOptions::Validation::On
                                                           : BackendOptions::Validation::Off;
  o.pipeline_cache = f.pipeline_cache;
  o.memory_limit_mib = f.memory_limit_mib;
  o.allow_cpu_device = f.allow_cpu_device;
  o.tuning = parse_tuning(f.tune);
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  if (xdg && xdg[0] == '/')
    o.cache_dir = std::string(xdg) + "/mole";
  else if (home && *home)
    o.cache_dir = std::string(home) + "/.cache/mole";
  return o;
}

BackendTuning parse_tuning(const std::string& s) {
  BackendTuning t;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
    auto whole = [&](int64_t lo, int64_t hi, const char* what) {
      char* end = nullptr;
      errno = 0;
      const double x = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0' || errno != 0 || !std::isfinite(x) || x != std::floor(x) || x < double(lo) ||
          x > double(hi))
        throw Error("--tune " + item + ": " + key + " must be " + what);
      return int64_t(x);
    };
    auto choice = [&](std::initializer_list<const char*> choices) {
      std::string list;
      for (const char* c : choices) {
        if (value == c) return value;
        list += (list.empty() ? "" : ", ") + std::string(c);
      }
      throw Error("--tune " + item + ": " + key + " must be one of " + list);
    };
    if (key == "subgroups") {
      t.subgroups = int(whole(0, 1, "0 (off) or 1 (where the device can)"));
    } else if (key == "tiled-min-rows") {
      t.tiled_min_rows = int(whole(1, 1000000000, "a whole number of rows from 1 to 1000000000"));
    } else if (key == "attention-splits") {
      t.attention_splits = int(whole(0, 32, "a whole number from 0 (automatic) to 32"));
    } else if (key == "attention-store") {
      t.attention_store_pass = choice({"auto", "pass"}) == "pass";
    } else if (key == "lut-chunk-bytes") {
      t.lut_chunk_bytes = uint64_t(whole(1, int64_t(1) << 40, "a whole number of bytes from 1 to 2^40"));
    } else if (key == "lut-gather") {
      const std::string v = choice({"auto", "thread", "inline"});
      t.lut_gather = v == "thread"   ? BackendTuning::Gather::Thread
                     : v == "inline" ? BackendTuning::Gather::Inline
                                     : BackendTuning::Gather::Auto;
    } else if (key == "lut-import") {
      t.lut_import = choice({"auto", "off"}) == "auto";
    } else if (key == "lut-copy") {
      const std::string v = choice({"auto", "dma", "kernel"});
      t.lut_copy = v == "dma"      ? BackendTuning::LutCopy::Dma
                   : v == "kernel" ? BackendTuning::LutCopy::Kernel
                                   : BackendTuning::LutCopy::Auto;
    } else if (key == "matvec") {
      const std::string v = choice({"auto", "warp", "staged"});
      t.matvec = v == "warp"     ? BackendTuning::MatVec::Warp
                 : v == "staged" ? BackendTuning::MatVec::Staged
                                 : BackendTuning::MatVec::Auto;
    } else if (key == "matvec-loads") {
      t.matvec_loads = std::stoi(choice({"1", "4", "8"}));
    } else if (key == "persistent") {
      const std::string v = choice({"off", "on", "no-prefetch"});
      t.persistent = v == "on"            ? BackendTuning::Persistent::On
                     : v == "no-prefetch" ? BackendTuning::Persistent::NoPrefetch
                                          : BackendTuning::Persistent::Off;
    } else if (key == "pdl") {
      t.pdl = choice({"off", "on"}) == "on";
    } else if (key == "host-wait") {
      const std::string v = choice({"auto", "spin", "block"});
      t.host_wait = v == "spin"    ? BackendTuning::HostWait::Spin
                    : v == "block" ? BackendTuning::HostWait::Block
                                   : BackendTuning::HostWait::Auto;
    } else if (key == "chain") {
      t.chain = choice({"off", "on"}) == "on";
    } else if (key == "perturb") {
      t.perturb_op = value;
    } else {
      throw Error("--tune " + item + ": unknown key '" + key +
                  "' (subgroups, tiled-min-rows, attention-splits, attention-store, lut-chunk-bytes, lut-gather, "
                  "lut-import, lut-copy, matvec, matvec-loads, pdl, persistent, host-wait, chain)");
    }
  }
  // The persistent kernel fetches the table's rows itself (the graphs of its other steps by kernel, too).
  if (t.persistent != BackendTuning::Persistent::Off && t.lut_copy == BackendTuning::LutCopy::Dma)
    throw Error("--tune " + s +
                ": persistent copies the table's rows by kernel, so lut-copy=dma cannot go with it "
                "(leave lut-copy out, or set persistent=off)");
  return t;
}

}  // namespace mole
