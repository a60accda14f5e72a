// The subcommands other than `run`, each a function of its parsed flags returning the exit code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "apps/mole_common.h"

namespace mole::app {

struct LogitsArgs {
  RunFlags f;
  std::string ids;
  bool json = false;
};
struct TokenizeArgs {
  std::string model, tokenizer, text, file;
  bool text_given = false;  // --text, even "" (the empty text encodes to no ids)
  bool json = false;
};
inline BackendFlags cpu_flags() {
  BackendFlags f;
  f.backend = "cpu";
  return f;
}
struct ConvertArgs {
  std::string in, out, dtype = "f16";
  BackendFlags bf = cpu_flags();  // --backend (default cpu): where the experts are evaluated
  int threads = 0;
  bool quiet = false;
};
struct InfoArgs {
  std::string model;
  bool json = false;
};
struct SynthArgs {
  std::string preset = "tiny", out, form = "auto", dtype = "bf16", table_dtype = "f16", set;
  uint64_t seed = 0;
  bool quiet = false;
};
struct BenchArgs {
  RunFlags f;
  int prompt_tokens = 128, n_predict = 64;
  std::string placements = "device,host,disk", text_file;
  std::string output;  // -o: the JSON results also go to this file
  bool json = false;
  bool record = false;  // --record: keep a confirmed read-mode choice for --lut auto on this device
};

struct ParityArgs {
  std::vector<std::string> backends;  // --backend, repeatable; none: every available GPU backend
  BackendFlags bf;                    // the other backend flags (--validate, --tune, ...)
  std::string op;                     // --op: only this op's cases
  std::string model;                  // -m: also compare this model's logits
  int tokens = 32;                    // prompt length for -m
  bool json = false;
};

int cmd_logits(LogitsArgs& a);
int cmd_tokenize(TokenizeArgs& a);
int cmd_detokenize(TokenizeArgs& a);
int cmd_convert(ConvertArgs& a);
int cmd_info(InfoArgs& a);
int cmd_synth(SynthArgs& a);
int cmd_devices();
int cmd_bench(BenchArgs& a);
int cmd_parity(ParityArgs& a);

// The commit mole was built from: a short hash, "-dirty" after it for a build with uncommitted changes, or "unknown"
// (built outside a git checkout). apps/mole_version.cpp.
const char* build_commit();

}  // namespace mole::app
