// The subcommands other than `run`, each a function of its parsed flags returning the exit code.
#pragma once

#include <cstdint>
#include <string>

#include "apps/mole_common.h"

namespace mole::app {

struct LogitsArgs {
  RunFlags f;
  std::string ids;
  bool json = false;
};
struct TokenizeArgs {
  std::string model, tokenizer, text, file;
  bool json = false;
};
struct ConvertArgs {
  std::string in, out, dtype = "f16", backend = "cpu";
  int device = -1;
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

int cmd_logits(LogitsArgs& a);
int cmd_tokenize(TokenizeArgs& a);
int cmd_detokenize(TokenizeArgs& a);
int cmd_convert(ConvertArgs& a);
int cmd_info(InfoArgs& a);
int cmd_synth(SynthArgs& a);
int cmd_devices();
int cmd_bench(BenchArgs& a);

}  // namespace mole::app
