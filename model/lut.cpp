// LUT store and the CPU reparameterization (shared by `mole convert` and by running a training-form checkpoint).
#include "model/lut.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "model/cpu_ops.h"
#include "model/error.h"
#include "model/progress.h"

namespace mole {

std::optional<LutPlacement> parse_lut_placement(std::string_view s) {
  if (s == "device") return LutPlacement::Device;
  if (s == "host") return LutPlacement::Host;
  if (s == "disk") return LutPlacement::Disk;
  return std::nullopt;
}

const char* placement_name(LutPlacement p) {
  switch (p) {
    case LutPlacement::Device:
      return "device";
    case LutPlacement::Host:
      return "host";
    case LutPlacement::Disk:
      return "disk";
  }
  return "?";
}

LutStore LutStore::from_tensor(const TensorView& table, int64_t row_elems) {
  LutStore s;
  s.dtype_ = table.dtype;
  s.row_elems_ = row_elems;
  s.rows_ = table.shape.at(0);
  s.data_ = table.data;
  s.mapping_ = table.mapping;
  s.mapping_bytes_ = table.mapping_bytes;
  return s;
}

void compute_lut_rows(const Config& c, const Weights& w, int64_t first, int64_t count, float* out) {
  const int64_t D = c.hidden_size, F = c.intermediate_size, E = c.num_experts, L = c.num_layers;
  std::vector<float> emb(size_t(count * D)), u(size_t(count * D)), h(size_t(count * F)), o(size_t(count * D));
  w.embed->to_f32(first * D, count * D, emb.data());
  for (int64_t l = 0; l < L; l++) {
    const LayerWeights& lw = w.layers[size_t(l)];
    cpu::rmsnorm(emb.data(), *lw.expert_norm, c.rms_norm_eps, count, D, u.data());
    for (int64_t e = 0; e < E; e++) {
      cpu::matmul(u.data(), *lw.experts[size_t(e)].up, count, D, F, h.data());
      cpu::gelu(h.data(), count * F);
      cpu::matmul(h.data(), *lw.experts[size_t(e)].down, count, F, D, o.data());
      for (int64_t r = 0; r < count; r++)
        std::memcpy(out + (r * L * E + l * E + e) * D, o.data() + r * D, size_t(D) * sizeof(float));
    }
  }
}

LutStore LutStore::compute(const Config& c, const Weights& w, DType dtype, bool progress, LutRowSource* source) {
  assert(w.form == Form::Train && "LutStore::compute needs a training-form checkpoint");
  CpuLutRows cpu(c, w);
  if (!source) source = &cpu;
  LutStore s;
  s.dtype_ = dtype;
  s.rows_ = c.vocab_size;
  s.row_elems_ = c.lut_row_elems();
  try {
    s.owned_.resize(s.bytes());
  } catch (const std::bad_alloc&) {
    throw Error("not enough host memory to compute the lookup table (" + std::to_string(s.bytes() >> 20) + " MiB in " +
                dtype_name(dtype) + "); run `mole convert` once and use --lut disk");
  }
  s.data_ = s.owned_.data();
  const int64_t block = source->block();
  std::vector<float> buf(size_t(block * s.row_elems_));
  Progress bar("computing lookup table", s.rows_, "rows", progress);
  for (int64_t r0 = 0; r0 < s.rows_; r0 += block) {
    throw_if_interrupted();
    int64_t n = std::min(block, s.rows_ - r0);
    source->rows(r0, n, buf.data());
    f32_to_bytes(buf.data(), size_t(n * s.row_elems_), dtype, s.owned_.data() + size_t(r0) * s.row_bytes());
    bar.add(n);
  }
  bar.finish();
  return s;
}

// Asks the kernel to read [p, p + n) of a mapping now (madvise wants a page-aligned start).
static void will_need(const uint8_t* p, size_t n) {
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  madvise(reinterpret_cast<void*>(begin), reinterpret_cast<uintptr_t>(p) + n - begin, MADV_WILLNEED);
}

void LutStore::prefetch(const std::vector<int32_t>& ids) const {
  if (!file_backed()) return;
  for (int32_t id : ids) will_need(row(id), row_bytes());
}

void LutStore::prefetch_all() const {
  if (file_backed() && bytes() > 0) will_need(data_, bytes());
}

}  // namespace mole
