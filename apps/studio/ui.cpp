// mole-studio's panels (see ui.h). Layout: model, its facts and the sampling controls on the left; the prompt, the
// generated text and the history in the middle, the comparison of two backends below them; the live measurements
// and the router's heat map on the right.
#include "apps/studio/ui.h"

#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cstdio>

#include "model/lut.h"
#include "model/progress.h"

namespace mole::studio {
namespace {

const ImVec4 kGrey(0.6f, 0.6f, 0.65f, 1.0f);
const ImVec4 kErrorColor(1.0f, 0.3f, 0.3f, 1.0f);  // load and generation errors (the tests look for it)
const ImVec4 kGood(0.4f, 0.9f, 0.5f, 1.0f);
const char* kPlacements[] = {"auto", "device", "host", "disk"};

std::string fmt(const char* f, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a);
  return buf;
}

std::string millions(int64_t n) {
  return fmt("%.2fM", double(n) / 1e6);
}

// A token's text as one line: newlines and tabs shown as escapes.
std::string visible(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else
      out += c;
  }
  return out;
}

// A colour ramp for weights in [0, 1]: dark blue, teal, green, yellow (viridis, in four stops).
ImU32 ramp(float v) {
  static const float stops[4][3] = {
      {0.27f, 0.00f, 0.33f}, {0.13f, 0.57f, 0.55f}, {0.37f, 0.79f, 0.38f}, {0.99f, 0.91f, 0.14f}};
  v = std::clamp(v, 0.0f, 1.0f) * 3.0f;
  const int i = std::min(int(v), 2);
  const float f = v - float(i);
  float c[3];
  for (int k = 0; k < 3; k++) c[k] = stops[i][k] + (stops[i + 1][k] - stops[i][k]) * f;
  return ImGui::ColorConvertFloat4ToU32(ImVec4(c[0], c[1], c[2], 1.0f));
}

void section(const char* title) {
  ImGui::Spacing();
  ImGui::TextColored(ImVec4(0.55f, 0.75f, 1.0f, 1.0f), "%s", title);
  ImGui::Separator();
}

// A combo over `items` that edits `value`.
void combo(const char* label, std::string& value, const std::vector<std::string>& items) {
  if (ImGui::BeginCombo(label, value.c_str())) {
    for (const std::string& it : items)
      if (ImGui::Selectable(it.c_str(), it == value)) value = it;
    ImGui::EndCombo();
  }
}

std::vector<std::string> backend_names(const Snapshot& s) {
  std::vector<std::string> names = {"auto"};
  for (const BackendChoice& b : s.backends) names.push_back(b.name);
  return names;
}

Rect rect_of(ImVec2 min, ImVec2 max) {
  const ImVec2 origin = ImGui::GetMainViewport()->Pos;
  return {min.x - origin.x, min.y - origin.y, max.x - min.x, max.y - min.y};
}

}  // namespace

Ui::Ui(Worker& worker, const RunFlags& flags) : worker_(worker), flags_(flags), compare_flags_(flags) {
  model_dir_ = flags.model;
  sampling_.temperature = 0.8f;
  compare_flags_.lut = "host";
}

GenerateRequest Ui::request() const {
  GenerateRequest r;
  r.prompt = prompt_;
  r.options.sampling = sampling_;
  r.options.max_new_tokens = max_tokens_;
  r.ignore_eos = ignore_eos_;
  return r;
}

void Ui::draw(float width, float height) {
  snap_ = worker_.snapshot();
  heat_map_ = {};
  error_ = {};
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  ImGui::SetNextWindowPos(vp->Pos);
  ImGui::SetNextWindowSize(ImVec2(width, height));
  const ImGuiWindowFlags full = ImGuiWindowFlags_NoDecoration | ImGuiWindowFlags_NoMove |
                                ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;
  ImGui::Begin("mole-studio", nullptr, full);
  const float left = 330, right = 400, gap = ImGui::GetStyle().ItemSpacing.x;
  const float middle = std::max(200.0f, width - left - right - 4 * gap);
  const float tall = height - 2 * ImGui::GetStyle().WindowPadding.y;

  ImGui::BeginChild("left", ImVec2(left, tall), true);
  model_panel();
  info_panel();
  sampling_panel();
  ImGui::EndChild();
  ImGui::SameLine();

  ImGui::BeginGroup();
  const float compare_h = 190;
  ImGui::BeginChild("middle", ImVec2(middle, tall - compare_h - gap), true);
  prompt_panel();
  output_panel();
  history_panel();
  ImGui::EndChild();
  ImGui::BeginChild("compare", ImVec2(middle, compare_h), true);
  compare_panel();
  ImGui::EndChild();
  ImGui::EndGroup();
  ImGui::SameLine();

  ImGui::BeginChild("right", ImVec2(right, tall), true);
  speed_panel();
  phase_panel();
  lut_panel();
  memory_panel();
  heat_map_panel();
  ImGui::EndChild();
  ImGui::End();
}

void Ui::model_panel() {
  section("Model");
  const ModelState& m = snap_.model;
  ImGui::SetNextItemWidth(-60);
  ImGui::InputTextWithHint("folder", "(built-in model)", &model_dir_);
  std::vector<std::string> names = backend_names(snap_);
  ImGui::SetNextItemWidth(120);
  combo("backend", flags_.bf.backend, names);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(60);
  ImGui::InputInt("device", &flags_.bf.device, 0);
  ImGui::SetNextItemWidth(120);
  combo("lut", flags_.lut, {std::begin(kPlacements), std::end(kPlacements)});
  ImGui::SameLine();
  const bool busy = m.loading || snap_.gen.running || snap_.compare.running;
  ImGui::BeginDisabled(busy);
  if (ImGui::Button(m.loaded ? "Reload" : "Load")) {
    flags_.model = model_dir_;
    worker_.load(flags_);
  }
  ImGui::EndDisabled();
  for (const BackendChoice& b : snap_.backends)
    if (b.name == flags_.bf.backend && !b.available)
      ImGui::TextColored(kGrey, "%s: %s", b.name.c_str(), b.detail.c_str());
  if (m.loading)
    ImGui::TextColored(kGrey, "loading %s ...", model_dir_.empty() ? "the built-in model" : model_dir_.c_str());
  if (!m.error.empty()) {
    const ImVec2 at = ImGui::GetCursorScreenPos();
    ImGui::PushStyleColor(ImGuiCol_Text, kErrorColor);
    ImGui::TextWrapped("Could not load the model: %s", m.error.c_str());
    ImGui::PopStyleColor();
    error_ = rect_of(at, ImVec2(at.x + ImGui::GetContentRegionAvail().x, ImGui::GetItemRectMax().y));
  }
}

void Ui::info_panel() {
  const ModelState& m = snap_.model;
  if (!m.loaded) return;
  section("Model facts");
  const Config& c = m.cfg;
  const ModelSummary& s = m.summary;
  ImGui::TextWrapped("%s", m.dir.c_str());
  ImGui::TextWrapped("form: %s", s.form.c_str());
  ImGui::Text("L=%d D=%d F=%d H=%d KVH=%d hd=%d", c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads,
              c.num_kv_heads, c.head_dim);
  ImGui::Text("E=%d experts, V=%d", c.num_experts, c.vocab_size);
  ImGui::Text("context %d positions", m.context);
  ImGui::Text("parameters: %s activated per token", millions(s.parameters_dense_part).c_str());
  ImGui::Text("            %s in the table", millions(s.lut_elements).c_str());
  if (c.is_mole()) {
    ImGui::Text("table %s (%s)", human_bytes(double(s.lut_bytes)).c_str(), s.lut_dtype.c_str());
    ImGui::Text("      %s per token", human_bytes(double(s.lut_bytes_per_token)).c_str());
  }
  ImGui::Text("backend %s", m.backend.c_str());
  ImGui::TextWrapped("device %s", m.device.c_str());
  ImGui::Text("lut %s%s%s", m.lut.c_str(), m.lut_read.empty() ? "" : ", rows read by ", m.lut_read.c_str());
  if (!m.lut_note.empty()) ImGui::TextWrapped("%s", m.lut_note.c_str());
  ImGui::Text("loaded in %.2f s", m.load_seconds);
}

void Ui::sampling_panel() {
  section("Sampling");
  ImGui::PushItemWidth(150);
  ImGui::SliderFloat("temperature", &sampling_.temperature, 0.0f, 2.0f, "%.2f");
  ImGui::SliderInt("top-k", &sampling_.top_k, 0, 200);
  ImGui::SliderFloat("top-p", &sampling_.top_p, 0.0f, 1.0f, "%.2f");
  ImGui::SliderFloat("min-p", &sampling_.min_p, 0.0f, 1.0f, "%.2f");
  ImGui::SliderFloat("repeat penalty", &sampling_.repeat_penalty, 1.0f, 2.0f, "%.2f");
  int seed = int(sampling_.seed);
  if (ImGui::InputInt("seed", &seed)) sampling_.seed = uint64_t(std::max(seed, 0));
  ImGui::SliderInt("max tokens", &max_tokens_, 1, 1024);
  ImGui::Checkbox("ignore end of sequence", &ignore_eos_);
  ImGui::PopItemWidth();
  ImGui::TextColored(kGrey, "temperature 0 is greedy");
}

void Ui::prompt_panel() {
  section("Prompt");
  ImGui::InputTextMultiline("##prompt", &prompt_, ImVec2(-1, 60));
  const bool loaded = snap_.model.loaded, running = snap_.gen.running;
  ImGui::BeginDisabled(!loaded || running || snap_.compare.running || snap_.model.loading);
  if (ImGui::Button("Generate")) worker_.generate(request());
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::BeginDisabled(!running && !snap_.compare.running);
  if (ImGui::Button("Stop")) worker_.stop();
  ImGui::EndDisabled();
  ImGui::SameLine();
  const GenState& g = snap_.gen;
  if (running)
    ImGui::TextColored(kGrey, "generating: %zu tokens", g.tokens.size());
  else if (!g.stop_reason.empty())
    ImGui::TextColored(kGrey, "%zu tokens, stop: %s", g.tokens.size(), g.stop_reason.c_str());  // speeds: right
  if (!g.error.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, kErrorColor);
    ImGui::TextWrapped("%s", g.error.c_str());
    ImGui::PopStyleColor();
  }
}

// The generated text, token by token, each on a background whose strength says how unlikely it was; hovering one
// shows its probability and the five most likely tokens.
void Ui::output_panel() {
  section("Output (hover a token)");
  const GenState& g = snap_.gen;
  ImGui::BeginChild("text", ImVec2(-1, -150), false);
  if (!g.prompt.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, kGrey);
    ImGui::TextWrapped("%s", g.prompt.c_str());
    ImGui::PopStyleColor();
  }
  const float avail = ImGui::GetContentRegionAvail().x;
  float line = 0;  // width used on the current line
  ImDrawList* dl = ImGui::GetWindowDrawList();
  auto segment = [&](const std::string& text, const TokenView* t, bool first_of_token) {
    const ImVec2 size = ImGui::CalcTextSize(text.c_str());
    if (line > 0 && line + size.x <= avail)
      ImGui::SameLine(0, 0);
    else
      line = 0;
    (void)first_of_token;
    const ImVec2 at = ImGui::GetCursorScreenPos();
    if (t) {
      const float unlikely = 1.0f - std::clamp(t->prob, 0.0f, 1.0f);
      dl->AddRectFilled(at, ImVec2(at.x + size.x, at.y + size.y),
                        ImGui::ColorConvertFloat4ToU32(ImVec4(0.9f, 0.35f, 0.2f, 0.15f + 0.55f * unlikely)));
    }
    ImGui::TextUnformatted(text.c_str());
    line += size.x;
    if (t && ImGui::IsItemHovered()) {
      ImGui::BeginTooltip();
      ImGui::Text("token %d  \"%s\"  p = %.4f", t->id, visible(t->text).c_str(), t->prob);
      ImGui::Separator();
      for (const auto& [text_k, p] : t->top) {
        ImGui::ProgressBar(p, ImVec2(120, 0), fmt("%.4f", p).c_str());
        ImGui::SameLine();
        ImGui::Text("\"%s\"", visible(text_k).c_str());
      }
      ImGui::EndTooltip();
    }
  };
  for (const TokenView& t : g.tokens) {
    // A piece may hold newlines: each starts a new line; an empty piece (a character still incomplete) shows
    // nothing but its tooltip target.
    size_t start = 0;
    bool first = true;
    for (;;) {
      const size_t nl = t.piece.find('\n', start);
      const std::string part = t.piece.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if (!part.empty() || first) segment(part.empty() ? std::string(" ") : part, &t, first);
      first = false;
      if (nl == std::string::npos) break;
      line = avail + 1;  // the next segment starts a line
      start = nl + 1;
    }
  }
  if (!g.tail.empty()) segment(g.tail, nullptr, true);
  if (g.running && ImGui::GetScrollY() >= ImGui::GetScrollMaxY() - 20) ImGui::SetScrollHereY(1.0f);
  ImGui::EndChild();
}

void Ui::history_panel() {
  section("History");
  ImGui::SameLine(ImGui::GetContentRegionAvail().x - 40);
  if (ImGui::SmallButton("Clear")) worker_.clear_history();
  ImGui::BeginChild("history", ImVec2(-1, -1), false);
  for (auto it = snap_.history.rbegin(); it != snap_.history.rend(); ++it) {
    ImGui::TextColored(kGrey, "[%s, %d tokens, %.1f tokens/s, %s]", it->backend.c_str(), it->tokens, it->tokens_per_s,
                       it->stop_reason.c_str());
    ImGui::TextWrapped("%s|%s", it->prompt.c_str(), it->text.c_str());
  }
  ImGui::EndChild();
}

void Ui::speed_panel() {
  section("Tokens per second");
  const std::vector<float>& v = snap_.gen.tokens_per_s;
  float top = 1;
  for (float x : v) top = std::max(top, x);
  const std::string overlay = v.empty() ? "no tokens yet" : fmt("%.1f tokens/s", double(v.back()));
  // PlotLines takes no negative width for "all that is left".
  ImGui::PlotLines("##tps", v.data(), int(v.size()), 0, overlay.c_str(), 0.0f, top * 1.1f,
                   ImVec2(ImGui::GetContentRegionAvail().x, 70));
  if (snap_.gen.prefill_tokens_per_s > 0)
    ImGui::TextColored(kGrey, "prompt %.1f tokens/s, decode %.1f tokens/s", snap_.gen.prefill_tokens_per_s,
                       snap_.gen.decode_tokens_per_s);
}

// The last step's time, and the decode steps' average, split into phases: a stacked bar each.
void Ui::phase_panel() {
  section("Time per step");
  const GenState& g = snap_.gen;
  struct Part {
    const char* name;
    ImU32 color;
  };
  const Part parts[] = {{"attention", IM_COL32(90, 160, 240, 255)}, {"MLP", IM_COL32(120, 200, 120, 255)},
                        {"LUT sum", IM_COL32(240, 180, 60, 255)},   {"LUT copy", IM_COL32(240, 90, 70, 255)},
                        {"sampling", IM_COL32(200, 120, 220, 255)}, {"other", IM_COL32(150, 150, 150, 255)}};
  auto split = [](const StepTimes& t, double n) {
    const double device = t.attention + t.mlp + t.lut + t.other + t.lut_copy_exposed + t.sampling;
    return std::vector<double>{t.attention / n,        t.mlp / n,      t.lut / n,
                               t.lut_copy_exposed / n, t.sampling / n, (t.other + std::max(0.0, t.wall - device)) / n};
  };
  auto bar = [&](const char* label, const std::vector<double>& ms_parts) {
    double total = 0;
    for (double x : ms_parts) total += x;
    ImGui::Text("%-9s %7.3f ms", label, total * 1e3);
    const ImVec2 at = ImGui::GetCursorScreenPos();
    const float w = ImGui::GetContentRegionAvail().x, h = 12;
    ImDrawList* dl = ImGui::GetWindowDrawList();
    dl->AddRectFilled(at, ImVec2(at.x + w, at.y + h), IM_COL32(40, 40, 48, 255));
    float x = at.x;
    for (size_t i = 0; i < ms_parts.size() && total > 0; i++) {
      const float pw = float(ms_parts[i] / total) * w;
      dl->AddRectFilled(ImVec2(x, at.y), ImVec2(x + pw, at.y + h), parts[i].color);
      x += pw;
    }
    ImGui::Dummy(ImVec2(w, h));
  };
  bar("last", split(g.last, 1));
  bar("average", g.decode_steps ? split(g.total, g.decode_steps) : std::vector<double>(6, 0.0));
  for (size_t i = 0; i < std::size(parts); i++) {
    if (i % 3) ImGui::SameLine();
    ImGui::ColorButton(parts[i].name, ImGui::ColorConvertU32ToFloat4(parts[i].color),
                       ImGuiColorEditFlags_NoTooltip | ImGuiColorEditFlags_NoBorder, ImVec2(10, 10));
    ImGui::SameLine();
    ImGui::Text("%-10s", parts[i].name);
  }
}

void Ui::lut_panel() {
  section("Lookup table traffic");
  const GenState& g = snap_.gen;
  const std::vector<float>& v = g.lut_mb_per_s;
  float top = 0.001f;
  for (float x : v) top = std::max(top, x);
  const std::string overlay = v.empty() ? "" : fmt("%.2f MB/s", double(v.back()));
  ImGui::PlotLines("##lut", v.data(), int(v.size()), 0, overlay.c_str(), 0.0f, top * 1.1f,
                   ImVec2(ImGui::GetContentRegionAvail().x, 45));
  ImGui::Text("%llu rows, %s moved this run", (unsigned long long)g.lut_rows, human_bytes(double(g.lut_bytes)).c_str());
  if (g.decode_steps > 0 && g.total.wall > 0)
    ImGui::Text(
        "decode: %.0f rows/s, %s/s", g.decode_steps / g.total.wall,
        human_bytes(double(g.lut_bytes) / double(g.lut_rows ? g.lut_rows : 1) * g.decode_steps / g.total.wall).c_str());
  const double copy = g.total.lut_copy, hidden = g.total.lut_copy_hidden;
  if (copy > 0)
    ImGui::Text("copy %.3f ms/step, %.0f%% hidden behind compute", 1e3 * copy / std::max(g.decode_steps, 1),
                100.0 * hidden / copy);
  else if (snap_.model.loaded)
    ImGui::TextColored(kGrey, "no copy: rows read where they are (%s)",
                       snap_.model.lut_read.empty() ? "host memory" : snap_.model.lut_read.c_str());
}

void Ui::memory_panel() {
  section("Memory");
  const ModelState& m = snap_.model;
  ImGui::Text("host: %s resident", human_bytes(double(snap_.host_memory)).c_str());
  if (m.device_memory_used > 0 || m.device_memory > 0) {
    const float used = m.device_memory ? float(double(m.device_memory_used) / double(m.device_memory)) : 0.0f;
    ImGui::ProgressBar(used, ImVec2(-1, 0),
                       (human_bytes(double(m.device_memory_used)) + " of " + human_bytes(double(m.device_memory))).c_str());
  } else if (m.loaded) {
    ImGui::TextColored(kGrey, "device: %s", m.backend == "cpu" ? "the host (CPU reference)" : "not reported");
  }
}

// Layers down, experts across: each cell the weight the router gave that expert for the last token's step.
void Ui::heat_map_panel() {
  section("Router weights (layers x experts)");
  const GenState& g = snap_.gen;
  const int L = g.router_layers, E = g.router_experts;
  const ImVec2 at = ImGui::GetCursorScreenPos();
  const float w = ImGui::GetContentRegionAvail().x, h = std::max(80.0f, ImGui::GetContentRegionAvail().y - 24);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  heat_map_ = rect_of(at, ImVec2(at.x + w, at.y + h));
  dl->AddRectFilled(at, ImVec2(at.x + w, at.y + h), IM_COL32(30, 30, 36, 255));
  if (L > 0 && E > 0 && g.router.size() == size_t(L * E)) {
    const float label = 28, cw = (w - label) / float(E), ch = h / float(L);
    for (int l = 0; l < L; l++) {
      dl->AddText(ImVec2(at.x + 2, at.y + l * ch + ch / 2 - 7), IM_COL32(170, 170, 180, 255),
                  fmt("L%.0f", double(l)).c_str());
      for (int e = 0; e < E; e++) {
        const float v = g.router[size_t(l * E + e)];
        const ImVec2 a(at.x + label + e * cw + 1, at.y + l * ch + 1), b(a.x + cw - 2, a.y + ch - 2);
        dl->AddRectFilled(a, b, ramp(v));
        if (cw > 34 && ch > 14)
          dl->AddText(ImVec2(a.x + 3, a.y + (ch - 2) / 2 - 7), v > 0.6f ? IM_COL32(20, 20, 20, 255) : IM_COL32_WHITE,
                      fmt("%.2f", v).c_str());
      }
    }
  } else {
    dl->AddText(ImVec2(at.x + 8, at.y + 8), IM_COL32(150, 150, 160, 255),
                snap_.model.loaded && !snap_.model.cfg.is_mole() ? "a dense model has no router" : "generate to see");
  }
  ImGui::Dummy(ImVec2(w, h));
  if (g.router_index >= 0)
    ImGui::Text("token %d: \"%s\" (chosen after \"%s\")", g.router_index, visible(g.router_token).c_str(),
                visible(g.router_input).c_str());
}

void Ui::compare_panel() {
  section("Compare two backends or placements (greedy, same tokens in)");
  const CompareState& c = snap_.compare;
  std::vector<std::string> names = backend_names(snap_);
  ImGui::Text("A: the loaded model  B:");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(100);
  combo("##bbackend", compare_flags_.bf.backend, names);
  ImGui::SameLine();
  ImGui::SetNextItemWidth(80);
  combo("##blut", compare_flags_.lut, {std::begin(kPlacements), std::end(kPlacements)});
  ImGui::SameLine();
  ImGui::SetNextItemWidth(70);
  ImGui::SliderInt("##steps", &compare_steps_, 1, 256, "%d steps");
  ImGui::SameLine();
  ImGui::BeginDisabled(!snap_.model.loaded || snap_.gen.running || c.running);
  if (ImGui::Button("Compare")) worker_.compare(prompt_, compare_steps_, compare_flags_);
  ImGui::EndDisabled();
  if (!c.error.empty()) {
    ImGui::PushStyleColor(ImGuiCol_Text, kErrorColor);
    ImGui::TextWrapped("%s", c.error.c_str());
    ImGui::PopStyleColor();
  }
  if (c.steps == 0) return;
  ImGui::TextColored(c.agree == c.steps ? kGood : kErrorColor,
                     "greedy agreement %d of %d steps%s   largest logit difference %.3g", c.agree, c.steps,
                     c.first_difference >= 0 ? fmt(" (first difference at step %.0f)", c.first_difference).c_str() : "",
                     c.max_logit_diff);
  if (ImGui::BeginTable("sides", 2, ImGuiTableFlags_BordersInnerV)) {
    for (const CompareSide* s : {&c.a, &c.b}) {
      ImGui::TableNextColumn();
      ImGui::TextWrapped("%s", s->label.c_str());
      ImGui::Text("%.1f tokens/s", s->tokens_per_s);
      ImGui::PushStyleColor(ImGuiCol_Text, kGrey);
      ImGui::TextWrapped("%s", s->text.c_str());
      ImGui::PopStyleColor();
    }
    ImGui::EndTable();
  }
}

}  // namespace mole::studio
