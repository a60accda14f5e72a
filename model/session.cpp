// Loading a model for a run, and the generation loop with its per-token events (see session.h).
// Timing, as `mole run` has always reported it: prefill covers the prompt and the first sampled token; decode covers
// every later step, the callbacks included.
#include "model/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "model/error.h"
#include "model/parallel.h"
#include "model/paths.h"
#include "model/reparam.h"
#include "model/user_files.h"

namespace mole {

Tokenizer load_tokenizer_for(const std::string& dir) {
  std::string path = dir + "/tokenizer.json";
  if (path_kind(path) == PathKind::Missing)
    throw Error(dir +
                ": no tokenizer.json; add the model's tokenizer file, or pass token ids where the command "
                "takes them (run --prompt-ids)");
  return Tokenizer::load(path);
}

std::unique_ptr<LoadedModel> load_model(const LoadOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.threads > 0) set_num_threads(o.threads);
  auto m = std::make_unique<LoadedModel>();
  m->dir = o.model_dir;
  m->cfg = Config::load_dir(m->dir);
  m->weights = Weights::load(m->dir, m->cfg);
  if (o.make_backend) m->backend = o.make_backend(o.backend, o.backend_options);
  const bool on_cpu = !m->backend || m->backend->info().runs_on_cpu;
  LutPlacement placement = LutPlacement::Host;
  if (o.lut)
    placement = *o.lut;
  else if (m->weights.form != Form::Train && m->backend)
    placement = m->backend->info().preferred_lut;
  if (!o.lut && m->weights.form == Form::Infer && placement != LutPlacement::Disk) {
    std::string note;
    placement = auto_lut_placement(placement, m->weights.moe_table->nbytes,
                                   o.host_memory_available ? o.host_memory_available : host_memory_available(), &note);
    if (!note.empty() && o.notice) o.notice(note);
  }
  m->placement = placement;
  if (m->weights.form == Form::Infer) {
    m->lut = LutStore::from_tensor(*m->weights.moe_table, m->cfg.lut_row_elems());
  } else if (m->weights.form == Form::Train) {
    if (placement == LutPlacement::Disk)
      throw Error(m->dir + ": a training-form checkpoint has no table on disk; run `mole convert -m " + m->dir +
                  " -o OUT` once and use OUT, or choose --lut host");
    if (on_cpu) {
      m->lut = LutStore::compute(m->cfg, m->weights, o.lut_dtype, o.progress);
    } else {
      // On a GPU the table is computed there, on a backend of its own, freed before the run's backend is made.
      m->backend.reset();
      {
        OwnedBackendLutRows rows(m->cfg, m->weights, o.make_backend(o.backend, o.backend_options));
        m->lut = LutStore::compute(m->cfg, m->weights, o.lut_dtype, o.progress, &rows);
      }
      m->backend = o.make_backend(o.backend, o.backend_options);
    }
  }
  if (o.need_tokenizer || path_kind(m->dir + "/tokenizer.json") != PathKind::Missing)
    m->tokenizer = load_tokenizer_for(m->dir);
  if (m->backend && o.make_engine) {
    EngineOptions eo = o.engine;
    eo.lut = placement;
    if (o.profile) m->backend->set_profiling(true);
    m->profiling = o.profile;
    m->engine = std::make_unique<Engine>(m->cfg, m->weights, m->table(), *m->backend, eo);
    m->engine->set_cancel(o.cancel);
  }
  m->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

LutPlacement auto_lut_placement(LutPlacement preferred, uint64_t table_bytes, uint64_t available_bytes,
                                std::string* note) {
  if (preferred == LutPlacement::Disk || available_bytes == 0 || table_bytes <= available_bytes / 2) return preferred;
  if (note) {
    char text[256];
    std::snprintf(text, sizeof text,
                  "--lut auto: the table (%.1f GiB) is more than half of the host memory available (%.1f GiB), so "
                  "its rows are read from the file (--lut disk); --lut %s holds it in memory",
                  double(table_bytes) / double(1ull << 30), double(available_bytes) / double(1ull << 30),
                  placement_name(preferred));
    *note = text;
  }
  return LutPlacement::Disk;
}

uint64_t host_memory_available() {
  std::ifstream f("/proc/meminfo");
  unsigned long long kib = 0;
  for (std::string line; std::getline(f, line);)
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kib) == 1) return uint64_t(kib) * 1024;
  return 0;
}

ModelSummary summarize(const Config& c, const Weights& w) {
  ModelSummary s;
  s.form = form_name(w.form);
  s.parameters_total = w.parameter_count();
  s.table_parameters = w.moe_table ? w.moe_table->numel() : 0;
  std::map<std::string, int64_t> by_dtype;
  for (const auto& name : w.tensors.names()) {
    const TensorView* t = w.tensors.find(name);
    by_dtype[dtype_name(t->dtype)] += t->numel();
    if (name.find(".experts.") != std::string::npos) s.parameters_training_experts += t->numel();
  }
  s.dtypes.assign(by_dtype.begin(), by_dtype.end());
  s.parameters_dense_part = s.parameters_total - s.table_parameters - s.parameters_training_experts;
  s.lut_elements = c.is_mole() ? int64_t(c.vocab_size) * c.lut_row_elems() : 0;
  s.lut_dtype_size = w.moe_table ? dtype_size(w.moe_table->dtype) : 2;
  s.lut_dtype = w.moe_table ? dtype_name(w.moe_table->dtype) : "F16 (computed at load)";
  s.lut_bytes = s.lut_elements * int64_t(s.lut_dtype_size);
  s.lut_bytes_per_token = c.lut_row_elems() * int64_t(s.lut_dtype_size);
  s.file_bytes = w.tensors.total_bytes();
  return s;
}

std::string StopFilter::push(const std::string& piece, bool& stopped) {
  held_ += piece;
  for (const auto& s : stops_) {
    size_t at = held_.find(s);
    if (!s.empty() && at != std::string::npos) {
      stopped = true;
      std::string out = held_.substr(0, at);
      held_.clear();
      return out;
    }
  }
  size_t keep = 0;
  for (const auto& s : stops_)
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; n--)
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

namespace {

enum class Phase { Attention, Mlp, Lut, Other };

// Which phase each op of the engine's graph belongs to. The MLP is the GELU product and the product that reads its
// output; the other products of a layer are attention's.
std::vector<Phase> phases_of(const StepGraph& g) {
  std::vector<Phase> out;
  std::vector<BufferId> mlp_hidden;
  for (const Op& op : g.ops) {
    Phase p = Phase::Other;
    switch (op.kind) {
      case OpKind::NormMatMul:
        if (op.gelu) {
          p = Phase::Mlp;
          mlp_hidden.push_back(op.dst);
        } else if (!op.on_out_rows) {
          p = Phase::Attention;
        }
        break;
      case OpKind::MatMul:
        p = std::find(mlp_hidden.begin(), mlp_hidden.end(), op.src0) != mlp_hidden.end() ? Phase::Mlp
                                                                                         : Phase::Attention;
        break;
      case OpKind::Attention:
        p = Phase::Attention;
        break;
      case OpKind::RouterLut:
      case OpKind::RouterProbs:
        p = Phase::Lut;
        break;
      case OpKind::Embed:
      case OpKind::Gather:
      case OpKind::Argmax:
        break;
    }
    out.push_back(p);
  }
  return out;
}

// Adds what the profile measured between two snapshots to `t`.
void add_profile_delta(const StepProfile& before, const StepProfile& after, const std::vector<Phase>& phases,
                       StepTimes& t) {
  for (size_t i = 0; i < after.ops.size() && i < phases.size(); i++) {
    const double s = after.ops[i].seconds - (i < before.ops.size() ? before.ops[i].seconds : 0.0);
    switch (phases[i]) {
      case Phase::Attention:
        t.attention += s;
        break;
      case Phase::Mlp:
        t.mlp += s;
        break;
      case Phase::Lut:
        t.lut += s;
        break;
      case Phase::Other:
        t.other += s;
        break;
    }
  }
  t.lut_copy = std::max(0.0, after.lut_copy_seconds - before.lut_copy_seconds);
  const double window = std::max(0.0, after.lut_window_seconds - before.lut_window_seconds);
  t.lut_copy_hidden = std::min(t.lut_copy, window);
  t.lut_copy_exposed = t.lut_copy - t.lut_copy_hidden;
}

// The token's probability and the k most likely tokens, from softmax(logits) (in double: exact enough to show).
void top_probabilities(const std::vector<float>& logits, int32_t id, int k, TokenEvent& ev) {
  const std::vector<int32_t> top = top_ids(logits, size_t(k), "position " + std::to_string(ev.position));
  const float mx = logits[size_t(top[0])];  // the largest
  double sum = 0;
  for (float v : logits) sum += softmax_term(v, mx);
  auto p = [&](int32_t i) { return float(softmax_term(logits[size_t(i)], mx) / sum); };
  ev.prob = p(id);
  for (int32_t i : top) ev.top.push_back({i, p(i)});
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Session::Session(std::unique_ptr<LoadedModel> m) : m_(std::move(m)) {
  if (!m_ || !m_->engine) throw Error("a session needs a model loaded with a backend and an engine");
}

std::vector<int32_t> Session::encode(const std::string& text, const std::string& source) const {
  if (!m_->tokenizer)
    throw Error(source + ": " + m_->dir + " has no tokenizer.json to encode text; pass token ids instead");
  std::vector<int32_t> ids;
  try {
    ids = m_->tokenizer->encode(text);
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  for (int32_t id : ids)
    if (id >= m_->cfg.vocab_size)
      throw Error(source + ": the tokenizer gives token id " + std::to_string(id) +
                  ", outside the model's vocabulary [0, " + std::to_string(m_->cfg.vocab_size) + "): does " + m_->dir +
                  "/tokenizer.json belong to this model?");
  return ids;
}

GenerateResult Session::generate(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                 const std::function<void(const TokenEvent&)>& on_token, std::stop_token stop) {
  Engine& engine = *m_->engine;
  Backend& backend = *m_->backend;
  if (prompt.empty()) throw Error("the prompt is empty: give -p TEXT or --prompt-ids with at least one token");
  if (int(prompt.size()) > engine.max_context())
    throw Error("the prompt has " + std::to_string(prompt.size()) + " tokens but the context holds " +
                std::to_string(engine.max_context()) + "; shorten it, or raise -c/--ctx-size");
  if (!opt.stop_strings.empty() && !m_->tokenizer)
    throw Error("--stop needs the model's tokenizer.json to decode text");
  using clock = std::chrono::steady_clock;
  GenerateResult res;
  res.prompt_tokens = int(prompt.size());
  if (stop.stop_requested()) {
    res.stop_reason = "cancelled";
    return res;
  }
  engine.reset(0);
  // The stop token is asked between the ops of a long step too, not only between tokens (with the engine's own
  // check, which may read a signal's flag): a long prompt on the CPU stops within an op, its step void.
  struct RestoreCancel {
    Engine& engine;
    std::function<bool()> before;
    ~RestoreCancel() { engine.set_cancel(before); }
  } restore_cancel{engine, engine.cancel()};
  engine.set_cancel([&stop, before = restore_cancel.before] { return stop.stop_requested() || (before && before()); });
  Sampler sampler(opt.sampling);
  std::vector<int32_t> history = prompt;
  std::optional<Tokenizer::StreamDecoder> decoder;
  if (m_->tokenizer) decoder.emplace(*m_->tokenizer);
  StopFilter filter(opt.stop_strings);
  const std::vector<Phase> phases = m_->profiling ? phases_of(engine.graph()) : std::vector<Phase>{};
  StepProfile profile_before = m_->profiling ? backend.profile() : StepProfile{};
  BackendInfo info_before = backend.info();

  // Greedy without a repetition penalty needs only the argmax, which the backend computes (a GPU then sends back
  // one id per step instead of V logits), unless the caller wants the probabilities.
  const bool greedy = sampler.argmax_only() && opt.top_k <= 0;
  TokenEvent ev;  // the event of the token being chosen
  auto next_of = [&](const std::vector<int32_t>& tokens) {
    const auto t0 = clock::now();
    ev = TokenEvent{};
    ev.position = engine.length(0) + int(tokens.size()) - 1;
    ev.input_id = tokens.back();
    ev.step_tokens = int(tokens.size());
    int32_t id = 0;
    if (greedy) {
      id = engine.step_argmax({{0, tokens}}).at(0);
    } else {
      const std::vector<float> logits = engine.step({{0, tokens}}).at(0);
      const auto s0 = clock::now();
      id = sampler.sample(logits, history, "position " + std::to_string(ev.position));
      ev.times.sampling = seconds_since(s0);
      if (opt.top_k > 0) top_probabilities(logits, id, opt.top_k, ev);
    }
    ev.id = id;
    ev.times.wall = seconds_since(t0);
    if (!engine.router_probs().empty()) ev.router = engine.router_probs().back();
    if (m_->profiling) {
      StepProfile now = backend.profile();
      add_profile_delta(profile_before, now, phases, ev.times);
      profile_before = std::move(now);
    }
    const BackendInfo info = backend.info();
    ev.lut_rows = info.lut_rows_moved - info_before.lut_rows_moved;
    ev.lut_bytes = info.lut_bytes_moved - info_before.lut_bytes_moved;
    info_before = info;
    return id;
  };

  const auto t0 = clock::now();
  int32_t next = 0;
  try {
    next = next_of(prompt);
  } catch (const StepCancelled&) {
    res.prefill_seconds = seconds_since(t0);
    res.stop_reason = "cancelled";
    return res;
  }
  res.prefill_seconds = seconds_since(t0);
  res.prefilled = true;
  if (opt.on_prefilled) opt.on_prefilled();
  const auto t1 = clock::now();
  res.stop_reason = "length";
  for (int i = 0; opt.max_new_tokens < 0 || i < opt.max_new_tokens; i++) {
    if (std::find(opt.eos_ids.begin(), opt.eos_ids.end(), next) != opt.eos_ids.end()) {
      res.stop_reason = "eos";
      break;
    }
    res.tokens.push_back(next);
    history.push_back(next);
    ev.index = i;
    bool stopped = false;
    if (decoder) ev.piece = filter.push(decoder->push(next), stopped);
    res.text += ev.piece;
    if (on_token) on_token(ev);
    if (stopped) {
      res.stop_reason = "stop";
      break;
    }
    if (opt.max_new_tokens >= 0 && i + 1 == opt.max_new_tokens) break;
    if (engine.length(0) >= engine.max_context()) {
      res.stop_reason = "context";
      break;
    }
    if (stop.stop_requested()) {
      res.stop_reason = "cancelled";
      break;
    }
    try {
      next = next_of({next});
    } catch (const StepCancelled&) {
      res.stop_reason = "cancelled";
      break;
    }
  }
  if (decoder && res.stop_reason != "stop") {
    bool stopped = false;
    res.tail = filter.push(decoder->finish(), stopped);
    if (!stopped) res.tail += filter.flush();
    res.text += res.tail;
  }
  res.decode_seconds = seconds_since(t1);
  return res;
}

}  // namespace mole
