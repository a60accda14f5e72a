// Model loading and small helpers shared by the mole subcommands.
#include "apps/mole_common.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "apps/backends.h"
#include "model/error.h"
#include "model/parallel.h"
#include "model/paths.h"
#include "model/progress.h"
#include "model/reparam.h"
#include "model/user_files.h"

namespace mole::app {

std::string default_model_dir() {
  if (const char* env = std::getenv("MOLE_MODEL"); env && *env) return env;
  return builtin_model_dir();
}

CLI::Validator non_empty(const std::string& what) {
  return CLI::Validator([what](std::string& s) -> std::string { return s.empty() ? "is empty: give " + what : ""; },
                        "");
}

void add_run_flags(CLI::App& cmd, RunFlags& f) {
  cmd.add_option("-m,--model", f.model,
                 "Model directory (Hugging Face layout: config.json, *.safetensors, tokenizer.json); default: the "
                 "built-in model, or $MOLE_MODEL");
  add_backend_flags(cmd, f.bf);
  cmd.add_option("--lut", f.lut,
                 "Where the lookup table lives: device, host or disk; auto = the backend's choice (cuda, vulkan: "
                 "host, but disk for a table in a file bigger than half of the free host memory; cpu: disk for a "
                 "table in a file; host for one computed at load)")
      ->check(CLI::IsMember({"auto", "device", "host", "disk"}))
      ->capture_default_str();
  cmd.add_option("--lut-dtype", f.lut_dtype,
                 "Precision of a table computed at load from a training-form checkpoint: f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  cmd.add_option("-c,--ctx-size", f.ctx_size,
                 "Context length in tokens (default: max_position_embeddings, times the RoPE scaling factor if any; "
                 "past max_position_embeddings only with rope_scaling in config.json)")
      ->check(number_in(0, kMaxContext, "0 = the model's"));
  cmd.add_option("--ubatch-size", f.ubatch, "Most tokens per step; longer prompts run in chunks")
      ->capture_default_str()
      ->check(number_in(1, kMaxStepTokens));
  cmd.add_option("-t,--threads", f.threads,
                 "CPU threads (default: one per core this process may use: its CPU affinity and cgroup quota)")
      ->check(number_in(0, kMaxThreads, "0 = one per core this process may use"));
  cmd.add_flag("-q,--quiet", f.quiet, "No progress bars or load messages on stderr");
  cmd.add_flag("--profile", f.profile,
               "Print a per-op time table on stderr at the end (Vulkan: GPU timestamps; CUDA: events; CPU: wall time)");
}

std::string read_file_arg(const std::string& path, const std::string& flag) {
  try {
    if (path == "-") return read_file("/dev/stdin", "standard input", true);  // the usual name for it
    return read_file(path, "a text file", true);
  } catch (const Error& e) {
    throw Error(flag + " " + e.what());
  }
}

void check_writable(const std::string& path, const std::string& flag) {
  const PathKind kind = path_kind(path);
  if (kind == PathKind::Directory) throw Error(flag + " " + path + ": is a directory (give the name of a file)");
  if (kind != PathKind::Missing) {
    if (::access(path.c_str(), W_OK) != 0)
      throw Error(flag + " " + path + ": cannot write it: " + std::strerror(errno));
    return;
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  if (path_kind(dir) != PathKind::Directory) throw Error(flag + " " + path + ": its folder " + dir + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    throw Error(flag + " " + path + ": cannot create it in " + dir + ": " + std::strerror(errno));
}

void write_file_atomically(const std::string& path, const std::string& contents, const std::string& flag) {
  bool in_place = false;
  const std::string target = output_target(path, &in_place);
  if (path_kind(target) == PathKind::Directory)
    throw Error(flag + " " + path + ": is a directory (give the name of a file to write)");
  if (in_place) {  // a device or a FIFO: written to, not replaced
    std::ofstream out(target, std::ios::binary);
    out.write(contents.data(), std::streamsize(contents.size()));
    out.close();
    if (!out) throw Error(flag + " " + path + ": writing failed");
    return;
  }
  const std::string tmp = target + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(flag + " " + path + ": cannot write " + tmp);
    out.write(contents.data(), std::streamsize(contents.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(flag + " " + path + ": writing failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error(flag + " " + path + ": cannot rename " + tmp + " to " + target + " (" + ec.message() + ")");
  }
}

DType parse_dtype_flag(const std::string& s, const std::string& flag) {
  auto d = parse_dtype(s);
  if (!d) throw Error(flag + " " + s + ": unknown dtype (choose f32, f16 or bf16)");
  return *d;
}

std::vector<int32_t> parse_ids(const std::string& s, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == ',' || s[i] == '[' || s[i] == ']' || s[i] == '\n')) i++;
    if (i == s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] != ',' && s[j] != ' ' && s[j] != ']' && s[j] != '\n') j++;
    std::string tok = s.substr(i, j - i);
    try {
      size_t used = 0;
      long long v = std::stoll(tok, &used);
      if (used != tok.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(tok);
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      throw Error(flag + ": '" + tok + "' is not a token id (expected non-negative integers like 1,2,3)");
    }
    i = j;
  }
  if (ids.empty()) throw Error(flag + ": no token ids given (expected a list like 1,2,3)");
  return ids;
}

LoadOptions load_options(const RunFlags& f, bool need_tokenizer, bool make_engine) {
  LoadOptions o;
  o.model_dir = f.model.empty() ? default_model_dir() : f.model;
  if (f.model.empty() && path_kind(o.model_dir) != PathKind::Directory)
    throw Error("the built-in default model is missing at " + o.model_dir +
                " (build it with `cmake --build build`, or install it with `cmake --install build`), or pass -m DIR");
  o.backend = f.bf.backend;
  o.backend_options = backend_options(f.bf);
  o.notice = f.quiet ? BackendNotice() : print_notice;
  o.make_backend = [notice = o.notice](const std::string& name, const BackendOptions& opt) {
    return make_backend(name, opt, notice);
  };
  if (f.lut != "auto") {
    o.lut = parse_lut_placement(f.lut);
    if (!o.lut) throw Error("--lut " + f.lut + ": choose auto, device, host or disk");
  }
  o.lut_dtype = parse_dtype_flag(f.lut_dtype, "--lut-dtype");
  o.need_tokenizer = need_tokenizer;
  o.make_engine = make_engine;
  o.cancel = [] { return interrupted(); };  // Ctrl-C ends a long step (a long prompt on the CPU) within an op
  o.engine.max_batch = f.batch;
  o.engine.max_context = f.ctx_size;
  o.engine.max_step_tokens = f.ubatch;
  o.threads = f.threads;
  o.progress = !f.quiet;
  o.profile = f.profile;
  return o;
}

std::unique_ptr<LoadedModel> load_model(const RunFlags& f, bool need_tokenizer, bool make_engine) {
  return mole::load_model(load_options(f, need_tokenizer, make_engine));
}

void print_profile(const StepProfile& p, const std::string& backend) {
  if (p.steps == 0 || p.ops.empty()) {
    std::fprintf(stderr, "profile: the %s backend measured nothing\n", backend.c_str());
    return;
  }
  struct Row {
    int calls = 0;
    double seconds = 0;
    uint64_t bytes = 0;
  };
  std::map<std::string, Row> by_kind;
  double total = 0;
  for (const OpProfile& o : p.ops) {
    Row& r = by_kind[op_name(o.kind)];
    r.calls += o.calls;
    r.seconds += o.seconds;
    r.bytes += o.bytes;
    total += o.seconds;
  }
  std::fprintf(stderr, "\nprofile (%s, %d steps): per step\n", backend.c_str(), p.steps);
  std::fprintf(stderr, "%-12s %8s %11s %7s %12s %9s\n", "op", "calls", "ms", "share", "MB", "GB/s");
  for (const auto& [name, r] : by_kind) {
    double ms = 1e3 * r.seconds / p.steps, mb = double(r.bytes) / p.steps / 1e6;
    std::fprintf(stderr, "%-12s %8.1f %11.3f %6.1f%% %12.3f %9.2f\n", name.c_str(), double(r.calls) / p.steps, ms,
                 total > 0 ? 100.0 * r.seconds / total : 0.0, mb,
                 r.seconds > 0 ? double(r.bytes) / r.seconds / 1e9 : 0);
  }
  std::fprintf(stderr, "%-12s %8s %11.3f\n", "total", "", 1e3 * total / p.steps);
  if (p.replayed_steps > 0)
    std::fprintf(stderr, "host launch  %.1f us per replayed step (inputs written + %.1f queue submits)\n",
                 1e6 * p.host_launch_seconds / p.replayed_steps, double(p.submits) / p.replayed_steps);
  if (p.dispatches > 0)
    std::fprintf(stderr,
                 "dispatches   %.1f per step, %.1f barriers between them (ops between two barriers may overlap, and "
                 "their times above are shared out in recording order)\n",
                 double(p.dispatches) / p.steps, double(p.barriers) / p.steps);
  int attention_calls = 0;
  for (const OpProfile& o : p.ops) attention_calls += o.kind == OpKind::Attention ? o.calls : 0;
  if (p.dispatches > 0 && attention_calls > 0)
    std::fprintf(stderr,
                 "split-K      %.1f of %.1f attention calls per step, %.1f splits each (--tune attention-splits)\n",
                 double(p.split_attention) / p.steps, double(attention_calls) / p.steps,
                 p.split_attention > 0 ? double(p.attention_splits) / double(p.split_attention) : 1.0);
  if (p.lut_copy_seconds > 0) {
    double copy = p.lut_copy_seconds / p.steps, window = p.lut_window_seconds / p.steps;
    std::fprintf(stderr,
                 "lut copy     %.3f ms per step; compute before the first LUT sum %.3f ms: up to %.0f%% of the copy "
                 "hidden\n",
                 1e3 * copy, 1e3 * window, copy > 0 ? 100.0 * std::min(1.0, window / copy) : 100.0);
  }
}

void print_logits_json(const std::vector<std::vector<float>>& rows) {
  std::string out = "{\"logits\": [";
  char buf[32];
  for (size_t r = 0; r < rows.size(); r++) {
    out += r ? ", [" : "[";
    for (size_t i = 0; i < rows[r].size(); i++) {
      const float v = rows[r][i];
      if (i) out += ", ";
      if (std::isnan(v)) {  // JSON has no word for these: Python's json module's, which it reads back
        out += "NaN";
      } else if (std::isinf(v)) {
        out += v > 0 ? "Infinity" : "-Infinity";
      } else {
        const int n = std::snprintf(buf, sizeof buf, "%.9g", double(v));
        out.append(buf, size_t(n));
      }
    }
    out += "]";
  }
  out += "]}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace mole::app
