// Weights: the immutable tensors of a checkpoint, mmap'd and checked against the shapes the Config implies.
// Three forms load: Train (per-layer experts + expert_layernorm, table computed at load), Infer (the table
// model.moe_table.weight) and Dense (no router, experts or table). Tensor names are the official modeling_mole*.py
// ones.
#pragma once

#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"

namespace mole {

enum class Form { Dense, Train, Infer };
const char* form_name(Form f);

struct ExpertWeights {
  const TensorView* up = nullptr;    // (F, D)
  const TensorView* down = nullptr;  // (D, F)
};

struct LayerWeights {
  const TensorView* input_norm = nullptr;   // (D)
  const TensorView* q = nullptr;            // (H*hd, D)
  const TensorView* k = nullptr;            // (KVH*hd, D)
  const TensorView* v = nullptr;            // (KVH*hd, D)
  const TensorView* o = nullptr;            // (D, H*hd)
  const TensorView* post_norm = nullptr;    // (D)
  const TensorView* up = nullptr;           // (F, D)
  const TensorView* down = nullptr;         // (D, F)
  const TensorView* router = nullptr;       // (E, D), MoLE only
  const TensorView* expert_norm = nullptr;  // (D), training form only
  std::vector<ExpertWeights> experts;       // E entries, training form only
};

struct Weights {
  TensorSet tensors;  // owns the mmaps every view below points into
  Form form = Form::Dense;
  const TensorView* embed = nullptr;       // (V, D)
  const TensorView* final_norm = nullptr;  // (D)
  const TensorView* lm_head = nullptr;     // (V, D); the embedding when tie_word_embeddings
  const TensorView* moe_table = nullptr;   // (V, L*E*D), inference form only
  std::vector<LayerWeights> layers;        // L

  // Opens DIR's safetensors and checks every tensor: missing, extra or wrongly shaped ones are errors that name
  // the tensor, the expected and the found shape.
  static Weights load(const std::string& dir, const Config& cfg);
  int64_t parameter_count() const;  // every stored element, the table included
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace mole
