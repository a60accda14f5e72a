// The reparameterization graph: for a block of T vocabulary rows,
//   emb = embed[ids]; for each layer l: u = expert_layernorm_l(emb); for each expert e: out[l][e] = down(gelu(up(u))).
#include "model/reparam.h"

#include <cstring>

namespace mole {

BackendLutRows::BackendLutRows(const Config& c, const Weights& w, Backend& backend, int block_rows)
    : cfg_(c), backend_(backend), block_(block_rows) {
  const int D = c.hidden_size, F = c.intermediate_size, T = block_rows;
  graph_.max_tokens = T;
  graph_.max_out_rows = T;
  BufferId emb = backend.alloc(size_t(T) * D, "reparameterization: embeddings");
  BufferId h = backend.alloc(size_t(T) * F, "reparameterization: expert hidden");
  auto& ops = graph_.ops;
  ops.push_back({.kind = OpKind::Embed, .dst = emb, .src0 = backend.upload_weight(*w.embed), .n = D});
  for (int l = 0; l < c.num_layers; l++) {
    const LayerWeights& lw = w.layers[size_t(l)];
    BufferId expert_norm = backend.upload_weight(*lw.expert_norm);
    for (int e = 0; e < c.num_experts; e++) {
      std::string what = "reparameterization: layer " + std::to_string(l) + " expert " + std::to_string(e);
      BufferId out = backend.alloc(size_t(T) * D, what.c_str());
      outs_.push_back(out);
      ops.push_back({.kind = OpKind::NormMatMul,  // gelu(up(expert_layernorm(emb)))
                     .dst = h,
                     .src0 = emb,
                     .src1 = backend.upload_weight(*lw.experts[size_t(e)].up),
                     .src2 = expert_norm,
                     .n = F,
                     .k = D,
                     .eps = c.rms_norm_eps,
                     .gelu = true});
      ops.push_back({.kind = OpKind::MatMul,
                     .dst = out,
                     .src0 = h,
                     .src1 = backend.upload_weight(*lw.experts[size_t(e)].down),
                     .n = D,
                     .k = F});
    }
  }
  graph_.logits = outs_.back();  // what the backend returns each step; the other outputs are read back too
}

void BackendLutRows::rows(int64_t first, int64_t count, float* out) {
  StepInputs in;
  for (int64_t r = 0; r < count; r++) {
    in.ids.push_back(int32_t(first + r));
    in.slot.push_back(0);
    in.pos.push_back(0);
    in.out_rows.push_back(int32_t(r));
  }
  backend_.run_step(graph_, in);
  const int64_t D = cfg_.hidden_size, per_row = cfg_.lut_row_elems();
  std::vector<float> block(size_t(count * D));
  for (size_t le = 0; le < outs_.size(); le++) {
    backend_.read_back(outs_[le], 0, block.size(), block.data());
    for (int64_t r = 0; r < count; r++)
      std::memcpy(out + r * per_row + int64_t(le) * D, block.data() + r * D, size_t(D) * sizeof(float));
  }
}

}  // namespace mole
