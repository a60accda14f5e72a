// mole-studio's worker thread (see worker.h).
#include "apps/studio/worker.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <new>

#include "apps/backends.h"
#include "model/error.h"

namespace mole::studio {

using app::load_options;

namespace {

constexpr int kTopTokens = 5;        // alternatives shown when a token is hovered
constexpr size_t kMaxPlotted = 512;  // points kept for the live plots

// The resident set of this process, from /proc/self/statm (pages); 0 where it cannot be read.
uint64_t resident_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? uint64_t(resident) * uint64_t(sysconf(_SC_PAGESIZE)) : 0;
}

// What went wrong, for the window: a user's mistake as mole says it, anything else named as unexpected.
std::string describe(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error& err) {
    return err.what();
  } catch (const std::bad_alloc&) {
    return "out of memory";
  } catch (const std::exception& err) {
    return std::string("unexpected error: ") + err.what();
  } catch (...) {
    return "unexpected error";
  }
}

void keep_last(std::vector<float>& v, float x) {
  v.push_back(x);
  if (v.size() > kMaxPlotted) v.erase(v.begin(), v.begin() + long(v.size() - kMaxPlotted));
}

std::string label_of(const LoadedModel& m) {
  const BackendInfo info = m.backend->info();
  return info.name + " (" + info.device + "), lut " + placement_name(m.placement) +
         (info.lut_read.empty() ? "" : ", rows " + info.lut_read);
}

}  // namespace

Worker::Worker() : thread_([this](std::stop_token) { run(); }) {}

Worker::~Worker() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
    jobs_.clear();
    current_.request_stop();
  }
  cv_.notify_all();
  thread_.join();
}

void Worker::post(std::function<void(std::stop_token)> job) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void Worker::run() {
  for (;;) {
    std::function<void(std::stop_token)> job;
    std::stop_token token;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return quit_ || !jobs_.empty(); });
      if (quit_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      current_ = std::stop_source();
      token = current_.get_token();
      running_job_ = true;
    }
    job(token);
    std::lock_guard lock(mu_);
    running_job_ = false;
    state_.host_memory = resident_bytes();
  }
}

bool Worker::busy() const {
  std::lock_guard lock(mu_);
  return running_job_ || !jobs_.empty();
}

Snapshot Worker::snapshot() const {
  std::lock_guard lock(mu_);
  return state_;
}

void Worker::stop() {
  std::lock_guard lock(mu_);
  current_.request_stop();
}

void Worker::clear_history() {
  std::lock_guard lock(mu_);
  state_.history.clear();
}

void Worker::probe_backends() {
  post([this](std::stop_token) {
    std::vector<BackendChoice> out;
    const BackendOptions opt = backend_options(BackendFlags{});
    for (const BackendEntry& e : backend_registry()) {
      if (e.hidden) continue;
      const BackendProbe p = e.probe(opt);
      out.push_back({e.name, p.available, p.detail});
    }
    std::lock_guard lock(mu_);
    state_.backends = std::move(out);
  });
}

void Worker::load(const RunFlags& flags) {
  {
    std::lock_guard lock(mu_);
    state_.model.loading = true;
    state_.model.error.clear();
  }
  post([this, flags](std::stop_token) { do_load(flags); });
}

void Worker::do_load(const RunFlags& flags) {
  session_.reset();  // the old model's memory goes first: the new one may need it
  {
    std::lock_guard lock(mu_);
    state_.model.loaded = false;
    state_.compare = CompareState{};
  }
  ModelState ms;
  try {
    LoadOptions o = load_options(flags, true);
    o.engine.router_probs = true;  // the heat map
    o.profile = true;              // the time per phase
    o.progress = false;
    session_ = std::make_unique<Session>(o);
    const LoadedModel& m = session_->model();
    ms.loaded = true;
    ms.dir = m.dir;
    ms.cfg = m.cfg;
    ms.summary = summarize(m.cfg, m.weights);
    ms.context = m.engine->max_context();
    ms.lut = placement_name(m.placement);
    ms.load_seconds = m.load_seconds;
  } catch (...) {
    session_.reset();
    ms.error = describe(std::current_exception());
  }
  std::lock_guard lock(mu_);
  state_.model = std::move(ms);
  refresh_backend_info();
}

void Worker::refresh_backend_info() {
  if (!session_) return;
  const BackendInfo info = session_->model().backend->info();
  ModelState& ms = state_.model;
  ms.backend = info.name;
  ms.device = info.device;
  ms.lut_read = info.lut_read;
  ms.lut_note = info.lut_table_note;
  ms.device_memory = info.device_memory;
  ms.device_memory_used = info.device_memory_used;
  ms.runs_on_cpu = info.runs_on_cpu;
  state_.host_memory = resident_bytes();
}

void Worker::generate(const GenerateRequest& r) {
  {
    std::lock_guard lock(mu_);
    state_.gen = GenState{};
    state_.gen.running = true;
    state_.gen.prompt = r.prompt;
  }
  post([this, r](std::stop_token stop) { do_generate(r, stop); });
}

void Worker::do_generate(const GenerateRequest& r, std::stop_token stop) {
  std::string error;
  GenerateResult res;
  try {
    if (!session_) throw Error("no model is loaded: choose a model folder and press Load");
    LoadedModel& m = session_->model();
    const std::vector<int32_t> ids = session_->encode(r.prompt, "the prompt");
    GenerateOptions go = r.options;
    go.top_k = kTopTokens;
    if (!r.ignore_eos) {
      if (m.cfg.eos_token_id) go.eos_ids.push_back(*m.cfg.eos_token_id);
      if (m.tokenizer->eos_id()) go.eos_ids.push_back(*m.tokenizer->eos_id());
    }
    const Tokenizer& tok = *m.tokenizer;
    const int L = m.cfg.num_layers, E = m.cfg.num_experts;
    res = session_->generate(
        ids, go,
        [&](const TokenEvent& ev) {
          TokenView tv;
          tv.id = ev.id;
          tv.piece = ev.piece;
          tv.text = tok.decode({ev.id});
          tv.prob = ev.prob;
          for (const auto& [id, p] : ev.top) tv.top.push_back({tok.decode({id}), p});
          const std::string input = tok.decode({ev.input_id});
          std::lock_guard lock(mu_);
          GenState& g = state_.gen;
          g.tokens.push_back(std::move(tv));
          const double wall = std::max(ev.times.wall, 1e-9);
          if (ev.index > 0) keep_last(g.tokens_per_s, float(1.0 / wall));  // decode steps: one token each
          keep_last(g.lut_mb_per_s, float(double(ev.lut_bytes) / wall / 1e6));
          g.lut_rows += ev.lut_rows;
          g.lut_bytes += ev.lut_bytes;
          g.last = ev.times;
          if (ev.index > 0) {
            g.decode_steps++;
            for (auto [sum, x] : {std::pair{&g.total.wall, ev.times.wall},
                                  {&g.total.attention, ev.times.attention},
                                  {&g.total.mlp, ev.times.mlp},
                                  {&g.total.lut, ev.times.lut},
                                  {&g.total.other, ev.times.other},
                                  {&g.total.lut_copy, ev.times.lut_copy},
                                  {&g.total.lut_copy_hidden, ev.times.lut_copy_hidden},
                                  {&g.total.lut_copy_exposed, ev.times.lut_copy_exposed},
                                  {&g.total.sampling, ev.times.sampling}})
              *sum += x;
          }
          if (!ev.router.empty()) {
            g.router = ev.router;
            g.router_layers = L;
            g.router_experts = E;
            g.router_token = g.tokens.back().text;
            g.router_input = input;
            g.router_index = ev.index;
          }
        },
        stop);
  } catch (...) {
    error = describe(std::current_exception());
  }
  std::lock_guard lock(mu_);
  GenState& g = state_.gen;
  g.running = false;
  g.error = error;
  g.tail = res.tail;
  g.stop_reason = error.empty() ? res.stop_reason : "error";
  g.prefill_tokens_per_s = res.prefill_tokens_per_s();
  g.decode_tokens_per_s = res.decode_tokens_per_s();
  if (error.empty())
    state_.history.push_back(
        {g.prompt, res.text, state_.model.backend, res.stop_reason, int(res.tokens.size()), res.decode_tokens_per_s()});
  refresh_backend_info();
}

void Worker::compare(const std::string& prompt, int steps, const RunFlags& other) {
  {
    std::lock_guard lock(mu_);
    state_.compare = CompareState{};
    state_.compare.running = true;
  }
  post([this, prompt, steps, other](std::stop_token stop) { do_compare(prompt, steps, other, stop); });
}

void Worker::do_compare(const std::string& prompt, int steps, const RunFlags& other, std::stop_token stop) {
  CompareState c;
  try {
    if (!session_) throw Error("no model is loaded: choose a model folder and press Load");
    LoadedModel& a = session_->model();
    RunFlags fb = other;
    fb.model = a.dir;
    fb.quiet = true;
    LoadOptions ob = load_options(fb, false);
    ob.engine.max_context = a.engine->max_context();
    std::unique_ptr<LoadedModel> b = load_model(ob);
    c.a.label = label_of(a);
    c.b.label = label_of(*b);
    std::vector<int32_t> tokens = session_->encode(prompt, "the prompt");
    if (int(tokens.size()) + steps > a.engine->max_context())
      throw Error("the prompt and " + std::to_string(steps) + " steps are longer than the context of " +
                  std::to_string(a.engine->max_context()) + " positions");
    a.engine->reset(0);
    b->engine->reset(0);
    std::vector<int32_t> ids_a, ids_b;
    double time_a = 0, time_b = 0;
    using clock = std::chrono::steady_clock;
    for (int s = 0; s < steps && !stop.stop_requested(); s++) {
      auto t0 = clock::now();
      const std::vector<float> la = a.engine->step({{0, tokens}}).at(0);
      auto t1 = clock::now();
      const std::vector<float> lb = b->engine->step({{0, tokens}}).at(0);
      auto t2 = clock::now();
      if (s > 0) {  // decode steps only: the prefill is not a token rate
        time_a += std::chrono::duration<double>(t1 - t0).count();
        time_b += std::chrono::duration<double>(t2 - t1).count();
      }
      const int32_t ta = argmax(la), tb = argmax(lb);
      if (ta < 0 || tb < 0)  // a NaN: no token to compare or to feed on
        throw nan_logits_error("step " + std::to_string(s) + " of the comparison, on side " + (ta < 0 ? "A" : "B"));
      double diff = 0;
      for (size_t i = 0; i < la.size() && i < lb.size(); i++)
        diff = std::max(diff, std::fabs(double(la[i]) - double(lb[i])));
      ids_a.push_back(ta);
      ids_b.push_back(tb);
      c.steps++;
      c.agree += ta == tb ? 1 : 0;
      if (ta != tb && c.first_difference < 0) c.first_difference = s;
      c.max_logit_diff = std::max(c.max_logit_diff, diff);
      tokens = {ta};  // both read the first side's choice
      c.a.text = a.tokenizer->decode(ids_a);
      c.b.text = a.tokenizer->decode(ids_b);
      if (c.steps > 1) {
        c.a.tokens_per_s = (c.steps - 1) / std::max(time_a, 1e-9);
        c.b.tokens_per_s = (c.steps - 1) / std::max(time_b, 1e-9);
      }
      std::lock_guard lock(mu_);
      state_.compare = c;
      state_.compare.running = true;
    }
    c.done = true;
  } catch (...) {
    c.error = describe(std::current_exception());
  }
  std::lock_guard lock(mu_);
  state_.compare = c;
  state_.compare.running = false;
  refresh_backend_info();
}

}  // namespace mole::studio
