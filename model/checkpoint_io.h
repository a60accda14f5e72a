// Writing checkpoints: `mole convert` (training form -> inference form, the official reparameterization) and
// `mole synth` (random weights in exactly the published layout). Both write into OUT.partial/ and rename it to
// OUT only when every file is complete, so an interrupted or failed run never leaves a directory that looks done.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "model/lut.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace mole {

struct ConvertOptions {
  DType table_dtype = DType::F16;
  bool progress = true;
  // Makes the source of table rows once the checkpoint is loaded (null: the CPU). The source may hold a backend.
  std::function<std::unique_ptr<LutRowSource>(const Config&, const Weights&)> rows;
};
// Throws mole::Error if IN is not a training-form MoLE checkpoint or OUT exists and is not empty.
void convert_checkpoint(const std::string& in_dir, const std::string& out_dir, const ConvertOptions& opt);

struct SynthOptions {
  std::string preset = "tiny";
  Form form = Form::Infer;
  DType dtype = DType::BF16;       // weights
  DType table_dtype = DType::F16;  // the table of the inference form
  uint64_t seed = 0;
  nlohmann::json overrides = nlohmann::json::object();  // merged into config.json (JSON merge patch)
  bool progress = true;
};
const std::vector<std::string>& synth_presets();
nlohmann::json preset_config(const std::string& preset);  // throws mole::Error for an unknown name
void synth_checkpoint(const std::string& out_dir, const SynthOptions& opt);

}  // namespace mole
