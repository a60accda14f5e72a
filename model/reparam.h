// Reparameterization on a compute backend: the expert MLPs of every layer evaluated on blocks of vocabulary rows
// as a StepGraph of Embed, NormMatMul (expert norm and up, with GELU) and MatMul (down) ops, so `mole convert --backend
// vulkan` and a training-form checkpoint run on a GPU compute the table with the GPU's matrix products.
#pragma once

#include <memory>
#include <vector>

#include "model/backend.h"
#include "model/lut.h"

namespace mole {

class BackendLutRows final : public LutRowSource {
 public:
  // `backend` runs only this graph (a backend runs one graph); it and the weights must outlive this object.
  BackendLutRows(const Config& cfg, const Weights& w, Backend& backend, int block_rows = 512);
  int64_t block() const override { return block_; }
  void rows(int64_t first, int64_t count, float* out) override;

 private:
  const Config& cfg_;
  Backend& backend_;
  int64_t block_;
  StepGraph graph_;
  std::vector<BufferId> outs_;  // (block, D) per (layer, expert), in [l][e] order
};

// The same rows on a backend this object owns (a backend runs one graph), for convert and training-form loads.
class OwnedBackendLutRows final : public LutRowSource {
 public:
  OwnedBackendLutRows(const Config& cfg, const Weights& w, std::unique_ptr<Backend> backend)
      : backend_(std::move(backend)), rows_(std::make_unique<BackendLutRows>(cfg, w, *backend_)) {}
  int64_t block() const override { return rows_->block(); }
  void rows(int64_t first, int64_t count, float* out) override { rows_->rows(first, count, out); }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LutRowSource> rows_;
};

}  // namespace mole
