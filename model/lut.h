// The lookup table LUT (V, L*E*D) as the host holds it, and where a backend keeps it while running.
// Row `id` is contiguous, laid out [layer][expert][hidden]; a step needs only its tokens' rows.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"
#include "model/weights.h"

namespace mole {

// Where the whole table lives during a run (every backend offers the three):
//   Device: all of it in the compute device's memory.
//   Host:   all of it in host memory; each step copies only the current tokens' rows to the device.
//   Disk:   it stays in the mmap'd checkpoint file; rows are read on demand, the next step's as soon as its
//           token is known.
enum class LutPlacement { Device, Host, Disk };
std::optional<LutPlacement> parse_lut_placement(std::string_view s);
const char* placement_name(LutPlacement p);

class LutRowSource;

class LutStore {
 public:
  // Inference form: a view into the checkpoint's model.moe_table.weight (no copy; rows come from the mmap).
  static LutStore from_tensor(const TensorView& table, int64_t row_elems);
  // Training form: evaluates every expert on every vocabulary row (reparameterization) into owned memory, on the
  // CPU or, given a source, wherever it computes.
  static LutStore compute(const Config& cfg, const Weights& w, DType dtype, bool progress,
                          LutRowSource* source = nullptr);

  DType dtype() const { return dtype_; }
  int64_t rows() const { return rows_; }            // V
  int64_t row_elems() const { return row_elems_; }  // L*E*D
  size_t row_bytes() const { return size_t(row_elems_) * dtype_size(dtype_); }
  size_t bytes() const { return row_bytes() * size_t(rows_); }
  const uint8_t* data() const { return data_; }
  const uint8_t* row(int32_t id) const { return data_ + size_t(id) * row_bytes(); }
  // True when rows are read from a file mapping (the table can stay on disk); false for a computed table.
  bool file_backed() const { return owned_.empty(); }
  // Asks the kernel to start reading these rows from disk now (file-backed tables; no-op otherwise).
  void prefetch(const std::vector<int32_t>& ids) const;
  // The same for the whole table.
  void prefetch_all() const;
  // File-backed: the mapping of the file that holds the table (TensorView::mapping), for a device that imports the
  // table's pages instead of copying them; nullptr and 0 otherwise.
  const uint8_t* mapping() const { return mapping_; }
  size_t mapping_bytes() const { return mapping_bytes_; }

 private:
  DType dtype_ = DType::F16;
  int64_t rows_ = 0, row_elems_ = 0;
  const uint8_t* data_ = nullptr;
  const uint8_t* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  std::vector<uint8_t> owned_;
};

// Reparameterization for rows [first, first+count): out (count, L, E, D) float32, where
// out[r][l][e] = down_e(gelu(up_e(expert_layernorm_l(embed[first + r])))) with layer l's expert e.
void compute_lut_rows(const Config& cfg, const Weights& w, int64_t first, int64_t count, float* out);

// Where table rows are computed: the CPU loops above, or a compute backend (model/reparam.h).
class LutRowSource {
 public:
  virtual ~LutRowSource() = default;
  virtual int64_t block() const = 0;  // most rows per call
  // out (count, L, E, D) float32, count <= block(), as compute_lut_rows() defines them.
  virtual void rows(int64_t first, int64_t count, float* out) = 0;
};

class CpuLutRows final : public LutRowSource {
 public:
  CpuLutRows(const Config& cfg, const Weights& w) : cfg_(cfg), w_(w) {}
  // 64 rows per call: enough to reuse each converted weight row, little memory.
  int64_t block() const override { return 64; }
  void rows(int64_t first, int64_t count, float* out) override { compute_lut_rows(cfg_, w_, first, count, out); }

 private:
  const Config& cfg_;
  const Weights& w_;
};

}  // namespace mole
